"""Which nodes have health checks, and the name each one's shared state is kept under: the
workers (which read and report it) and the master (which probes) must agree on both."""
from __future__ import annotations

from dataclasses import dataclass

from gateway.config import Config, Upstream

#: What the balancer's outcomes are called in the shared table and in /status.
SUCCESS, HTTP_FAILURE, TCP_FAILURE, TIMEOUT = "success", "http_status", "tcp_failure", "timeout"


@dataclass(frozen=True)
class CheckedUpstream:
    #: The upstream's id, or "route:<route id>" for an upstream written inside a route: stable
    #: across config versions that keep it, so its nodes keep their state.
    key: str
    upstream: Upstream


def node_label(upstream_key: str, host: str, port: int) -> str:
    """A node's name in the shared health table."""
    return f"{upstream_key}\x1f{host}:{port}"


def inline_key(route_id: str) -> str:
    return f"route:{route_id}"


def checked_upstreams(config: Config) -> list[CheckedUpstream]:
    """The upstreams of ``config`` that have ``checks``, in document order."""
    out = [CheckedUpstream(u.id, u) for u in config.upstreams
           if u.checks is not None and u.id is not None]
    out += [CheckedUpstream(inline_key(r.id), r.upstream) for r in config.routes
            if r.upstream is not None and r.upstream.checks is not None]
    return out
