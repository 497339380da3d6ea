"""Upstreams as the data plane proxies to them: a config ``Upstream`` compiled to the
protocol's ``UpstreamGroup``. Used by the runtime compiler and by plugins that route to an upstream
of their own (traffic-split), so it depends on the config and the protocol only."""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway._proto import UpstreamGroup, UpstreamNode
from gateway.config import Upstream
from gateway.requestvars import RequestView, compile_template, to_text, var_getter

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


def compile_upstream(upstream: Upstream, label: str, route_timeout: Any = None) -> UpstreamGroup:
    nodes = [UpstreamNode(n.host, n.port, n.weight, n.priority) for n in upstream.nodes]
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
        retry_timeout=float(upstream.retry_timeout or 0.0),
        retry_statuses=frozenset(upstream.retry_on_statuses) or None,
    )


def with_timeout(group: UpstreamGroup, timeout: Any) -> UpstreamGroup:
    """A route's own timeouts over a shared upstream: same nodes (and balancer state)."""
    return group.with_timeouts(float(timeout.connect), float(timeout.send), float(timeout.read))
