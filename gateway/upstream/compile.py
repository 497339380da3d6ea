"""Upstreams as the data plane proxies to them: a config ``Upstream`` compiled to the
protocol's ``UpstreamGroup``. Used by the runtime compiler and by plugins that route to an upstream
of their own (traffic-split), so it depends on the config and the protocol only."""
from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from gateway._proto import PassiveChecks, UpstreamGroup, UpstreamNode
from gateway.config import GRPC_SCHEMES, Upstream
from gateway.requestvars import RequestView, compile_template, to_text, var_getter
from gateway.upstream.health import node_label
from gateway.upstream.names import Addresses, node_addresses
from gateway.upstream.tls import server_name, upstream_context

log = logging.getLogger("gateway.upstream")

PASS_HOST = {"pass": 0, "node": 1, "rewrite": 2}

#: A chash upstream's key of one request, as text.
KeyFunction = Callable[[RequestView], str]

_remote_addr = var_getter("remote_addr")


def chash_key_function(hash_on: str, key: str | None) -> KeyFunction:
    """What a chash upstream hashes, read through the request-variable table as APISIX does:
    ``vars`` names a variable, ``header`` a request header (``http_<key>``), ``cookie`` a cookie
    (``cookie_<key>``), ``consumer`` the authenticated consumer, ``vars_combinations`` a ``$var``
    template. A request without the key (empty, or every variable of the template missing)
    falls back to its client address. The loader has checked ``key`` (ValueError otherwise)."""
    if hash_on == "vars_combinations":
        render_found = compile_template(key or "").render_found

        def combined(ctx: RequestView) -> str:
            text, found = render_found(ctx)
            return text if found else _remote_addr(ctx)
        return combined
    if hash_on == "consumer":
        name = "consumer_name"
    elif hash_on == "header":
        name = "http_" + (key or "")
    elif hash_on == "cookie":
        name = "cookie_" + (key or "")
    else:
        name = key or ""
    getter = var_getter(name)

    def key_of(ctx: RequestView) -> str:
        value = getter(ctx)
        if value is None or value == "":
            return _remote_addr(ctx)
        return value if value.__class__ is str else to_text(value)
    return key_of


def watch_health(upstream: Upstream, nodes: list[UpstreamNode], health: Any,
                 health_key: str) -> PassiveChecks | None:
    """Points each node at its slot in the shared health table; the passive check settings,
    if the upstream has some."""
    checks = upstream.checks
    assert checks is not None
    for node in nodes:
        slot = health.slot(node_label(health_key, node.host, node.port))
        if slot < 0:
            log.error("upstream %s node %s:%d: no room in the health table (or the name is too "
                      "long); it is taken as always healthy", health_key, node.host, node.port)
            continue
        node.watch_health(health, slot)
    passive = checks.passive
    if passive is None:
        return None
    return PassiveChecks(health_key, passive.healthy.http_statuses,
                         passive.unhealthy.http_statuses, passive.healthy.successes,
                         passive.unhealthy.http_failures, passive.unhealthy.tcp_failures,
                         passive.unhealthy.timeouts)


def compile_upstream(upstream: Upstream, label: str, route_timeout: Any = None,
                     health: Any = None, health_key: str | None = None,
                     addresses: Addresses | None = None) -> UpstreamGroup:
    """``health`` (a SharedHealth) and ``health_key`` (see gateway.upstream.health): where the
    nodes' health lives, when the upstream has ``checks``; without them nodes are never down.
    ``addresses``: the resolver's current answers; a named node becomes one node per address
    (see ``node_addresses``), so the data plane only ever connects to IP addresses."""
    nodes = []
    ssl_context = upstream_context(upstream.tls, upstream.scheme == "grpcs") \
        if upstream.scheme in ("https", "grpcs") else None
    rewrite = upstream.pass_host == "rewrite"
    for config_node, entries in zip(upstream.nodes, node_addresses(upstream.nodes, addresses)):
        for address, name, weight in entries:
            sni = None if ssl_context is None else \
                server_name(address, name, upstream.upstream_host, rewrite)
            nodes.append(UpstreamNode(address, config_node.port, weight, config_node.priority, name,
                                      ssl_context, sni))
    passive = None
    if upstream.checks is not None and health is not None and health_key is not None:
        passive = watch_health(upstream, nodes, health, health_key)
    timeout = route_timeout or upstream.timeout
    retries = upstream.effective_retries
    key_of = chash_key_function(upstream.hash_on, upstream.key) if upstream.type == "chash" else None
    return UpstreamGroup(
        upstream.id or label,
        nodes,
        upstream.type,
        retries,
        float(timeout.connect),
        float(timeout.send),
        float(timeout.read),
        upstream.keepalive.size,
        float(upstream.keepalive.idle_timeout),
        upstream.keepalive.requests,
        PASS_HOST[upstream.pass_host],
        (upstream.upstream_host or "").encode(),
        key_of,
        passive=passive,
        fail_open=upstream.checks.fail_open if upstream.checks is not None else True,
        retry_timeout=float(upstream.retry_timeout or 0.0),
        retry_statuses=frozenset(upstream.retry_on_statuses) or None,
        grpc=upstream.scheme in GRPC_SCHEMES,
    )


def with_timeout(group: UpstreamGroup, timeout: Any) -> UpstreamGroup:
    """A route's own timeouts over a shared upstream: same nodes (and balancer state)."""
    return group.with_timeouts(float(timeout.connect), float(timeout.send), float(timeout.read))
