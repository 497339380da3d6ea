"""The request context a plugin's phase methods receive, as a typing Protocol: what a plugin may
read and call. The data plane's ``gateway._proto.Exchange`` implements it (``gateway/_proto.pyi``
types it; mypy checks below that the two agree), and a test double only needs these members.

Reading is lazy: a header dict, the parsed query or the cookies are built the first time a
plugin asks. Writing goes through methods, never through the context's fields, so the core
keeps its invariants (the upstream head it builds, the headers it frames).
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from gateway.requestvars import RequestView

if TYPE_CHECKING:
    from gateway._proto import Exchange, RouteEntry, UpstreamGroup, UpstreamNode

__all__ = ["Context"]


class Context(RequestView, Protocol):
    """One request as plugins see it. The read side shared with request variables is
    :class:`gateway.requestvars.RequestView` (method, path, headers, args, cookies, host,
    client_ip, consumer, status, ...); this adds what only plugins use."""

    # -- reading (``state``, the per-request plugin state, is in RequestView) --
    @property
    def params(self) -> dict[str, str]:
        """Path parameters of the matched route (``/users/:id`` -> ``{"id": ...}``)."""
    @property
    def route(self) -> RouteEntry | None: ...
    @property
    def upstream(self) -> UpstreamGroup | None:
        """The group the request goes to: a plugin's choice, else the route's."""
    @property
    def upstream_path(self) -> bytes | None:
        """The upstream target a plugin set with ``set_upstream_uri`` (None: the client's)."""
    @property
    def node(self) -> UpstreamNode | None:
        """The upstream node chosen (before_proxy and later); None when none was reached."""
    @property
    def request_body_bytes(self) -> int: ...
    @property
    def start_time(self) -> float: ...
    @property
    def response_started(self) -> bool: ...

    def header(self, name: str, default: str | None = None) -> str | None:
        """One request header (case-insensitive), ``default`` when absent."""

    # -- header_filter may change the status and the response headers --
    status: int
    response_headers: list[list[str]] | None

    # -- shaping the request and the response --
    def attach_consumer(self, consumer: Any) -> None:
        """For authentication plugins: the request belongs to this ConsumerEntry; its own
        non-credential plugins join the request."""
    def set_upstream(self, group: UpstreamGroup) -> None:
        """Proxy to ``group`` instead of the route's upstream (rewrite/access)."""
    def set_upstream_uri(self, uri: str | bytes) -> None:
        """The target (path and query) sent upstream."""
    def set_upstream_host(self, host: str | bytes) -> None:
        """The Host header sent upstream, whatever the upstream's pass_host says."""
    def set_upstream_method(self, method: str | bytes) -> None:
        """The method sent upstream (an uppercase token); ValueError otherwise."""
    def set_upstream_header(self, name: str | bytes, value: str | bytes) -> None:
        """``name: value`` is sent upstream instead of the client's lines of that name and
        those plugins added before."""
    def add_upstream_header(self, name: str | bytes, value: str | bytes) -> None:
        """``name: value`` is sent upstream in addition to the lines of that name already
        there."""
    def remove_upstream_header(self, name: str | bytes) -> None:
        """No line of ``name`` is sent upstream (the client's nor ones plugins added)."""
    def add_response_header(self, name: str | bytes, value: str | bytes) -> None:
        """Added to the response, proxied or generated; call before the head is sent."""
    def set_default_response_header(self, name: str | bytes, value: str | bytes) -> None:
        """Sent with the response unless it already has a header of that name (the
        upstream's or an added one); needs no header_filter hook."""
    def set_response_header(self, name: str, value: str) -> None:
        """header_filter: replaces (or adds) a response header."""
    def remove_response_header(self, name: str) -> None:
        """header_filter: removes a response header."""
    def set_body_limit(self, limit: int) -> None:
        """Request bodies larger than ``limit`` bytes are answered 413."""


if TYPE_CHECKING:
    def _exchange_is_a_context(exchange: Exchange) -> Context:
        return exchange  # mypy: the stub of the data plane's class satisfies the Protocol
