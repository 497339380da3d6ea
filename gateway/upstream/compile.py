"""Upstreams as the data plane proxies to them: a config ``Upstream`` compiled to the
protocol's ``UpstreamGroup``. Used by the runtime compiler and by plugins that route to an upstream
of their own (traffic-split), so it depends on the config and the protocol only."""
from __future__ import annotations

from typing import Any

from gateway._proto import UpstreamGroup, UpstreamNode
from gateway.config import Upstream

PASS_HOST = {"pass": 0, "node": 1, "rewrite": 2}

# Balancers the data plane implements; the others in the schema are refused by name instead of
# being silently treated as round robin.
SUPPORTED_BALANCERS = {"roundrobin"}



class UnsupportedBalancer(ValueError):
    """An upstream asks for a balancer the data plane does not implement."""


def compile_upstream(upstream: Upstream, label: str, route_timeout: Any = None) -> UpstreamGroup:
    if upstream.type not in SUPPORTED_BALANCERS:
        raise UnsupportedBalancer(f"{label}: balancer type '{upstream.type}' is not supported yet "
                           f"(supported: {', '.join(sorted(SUPPORTED_BALANCERS))})")
    nodes = [UpstreamNode(n.host, n.port, n.weight) for n in upstream.nodes]
    timeout = route_timeout or upstream.timeout
    retries = upstream.retries if upstream.retries is not None else max(len(nodes) - 1, 0)
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
    )


def with_timeout(group: UpstreamGroup, timeout: Any) -> UpstreamGroup:
    """A route's own timeouts over a shared upstream: same nodes (and balancer state)."""
    copy = UpstreamGroup(group.id, group.nodes, group.type, group.retries, float(timeout.connect),
                         float(timeout.send), float(timeout.read), group.keepalive_size,
                         group.keepalive_idle, group.keepalive_requests, group.pass_host,
                         group.upstream_host)
    return copy
