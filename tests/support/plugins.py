"""Plugins used by the tests to exercise every hook point through real requests."""
from __future__ import annotations

import asyncio
import json
from typing import Any

from gateway.plugins import Context, Plugin, PluginConfig, Response


class TagConfig(PluginConfig):
    tag: str = "t"


class Tag(Plugin):
    """rewrite, before_proxy and header_filter in one: marks the request and the response."""
    name = "test-tag"
    priority = 100
    Config = TagConfig

    def rewrite(self, ctx: Context) -> None:
        ctx.set_upstream_header("X-Rewritten", self.config.tag)
        ctx.remove_upstream_header("X-Secret")
        if ctx.path == "/rename":
            ctx.set_upstream_uri("/echo/renamed?by=" + self.config.tag)

    def before_proxy(self, ctx: Context) -> None:
        ctx.set_upstream_header("X-Node", f"{ctx.node.host}:{ctx.node.port}")

    def header_filter(self, ctx: Context) -> None:
        ctx.set_response_header("X-Tag", self.config.tag)
        ctx.remove_response_header("X-Upstream")
        if ctx.path.startswith("/status/"):
            ctx.status = 299


class Upper(Plugin):
    """Serves /upper/<path> from the upstream's /<path>, upper-cased, with a "!" at the end."""
    name = "test-upper"

    def rewrite(self, ctx: Context) -> None:
        ctx.set_upstream_uri(ctx.path.removeprefix("/upper"))

    def body_filter(self, ctx: Context, chunk: bytes, last: bool) -> bytes:
        return chunk.upper() + (b"!" if last else b"")


class Boom(Plugin):
    name = "test-boom"

    def access(self, ctx: Context) -> None:
        raise RuntimeError("plugin bug")


class ShortAnswers(Plugin):
    """An access phase answering in the README's short forms: `/tuple` a (status, body,
    headers) tuple, `/tuple2` a (status, body) one, `/status` a bare status."""
    name = "test-short-answers"

    def access(self, ctx: Context) -> Any:
        kind = ctx.path.rsplit("/", 1)[-1]
        if kind == "tuple":
            return 418, b"short and stout\n", {"X-Teapot": "yes"}
        if kind == "tuple2":
            return 409, b"conflict\n"
        if kind == "status":
            return 403
        return None


class SlowDeny(Plugin):
    """An async access phase: waits, then answers when the header asks for it."""
    name = "test-slow-deny"

    async def access(self, ctx: Context) -> Response | None:
        await asyncio.sleep(0.01)
        if ctx.header("x-deny"):
            return Response(403, b"denied\n", [("X-Denied-By", "test")])
        return None


class FixedAnswerConfig(PluginConfig):
    status: int = 403
    grpc_status: int = -1


class FixedAnswer(Plugin):
    """Answers every request with ``status``, naming its own ``grpc_status`` when >= 0 (else a
    gRPC client reads the gateway's mapping of ``status``)."""
    name = "test-fixed-answer"
    Config = FixedAnswerConfig

    def access(self, ctx: Context) -> Response:
        return Response(self.config.status, b'{"error_msg": "fixed answer"}',
                        [("Content-Type", "application/json")],
                        grpc_status=self.config.grpc_status)


class Params(Plugin):
    """Answers with the route params and request details the context exposes."""
    name = "test-params"

    def access(self, ctx: Context) -> Response:
        body = f"{ctx.route_id} {dict(ctx.params)} {ctx.method} {ctx.path} {ctx.query_string} {ctx.client_ip}"
        return Response(200, body.encode())


class TrailConfig(PluginConfig):
    mark: str = "x"


class _Trail(Plugin):
    """Records the order plugins ran in; the response says it (X-Trail)."""
    Config = TrailConfig

    def access(self, ctx: Context) -> None:
        ctx.state.setdefault("trail", []).append(self.config.mark)

    def header_filter(self, ctx: Context) -> None:
        ctx.set_response_header("X-Trail", ",".join(ctx.state.get("trail", [])))


class TrailLow(_Trail):
    name = "test-trail-low"
    priority = 10


class TrailHigh(_Trail):
    name = "test-trail-high"
    priority = 20


class AddHeaders(Plugin):
    """add_response_header from access, on proxied and on gateway-generated responses."""
    name = "test-add-headers"
    priority = 50

    def access(self, ctx: Context) -> Response | None:
        ctx.add_response_header("X-Added", "yes")
        if ctx.header("x-refuse"):
            return Response(401, b"no\n", [("Content-Type", "text/plain")])
        return None


class RerouteConfig(PluginConfig):
    upstream_id: str


class Reroute(Plugin):
    """Sends requests carrying X-Reroute to another configured upstream (ctx.set_upstream)."""
    name = "test-reroute"
    Config = RerouteConfig

    def bind(self, env: Any) -> None:
        if self.config.upstream_id not in env.upstreams:
            raise ValueError(f"no upstream with id '{self.config.upstream_id}'")
        self.group = env.upstreams[self.config.upstream_id]

    def access(self, ctx: Context) -> None:
        if ctx.header("x-reroute"):
            ctx.set_upstream(self.group)


class LogStatusConfig(PluginConfig):
    path: str


class LogStatus(Plugin):
    """Appends "<route> <status>" to a file in the log phase."""
    name = "test-log-status"
    Config = LogStatusConfig

    def log(self, ctx: Context) -> None:
        with open(self.config.path, "a") as out:
            out.write(f"{ctx.route_id} {ctx.status}\n")


class UpstreamHeaders(Plugin):
    """Shapes the upstream request through the context's methods only, and passes state from
    rewrite to before_proxy."""

    name = "test-upstream-headers"
    priority = 90

    def rewrite(self, ctx: Context) -> None:
        ctx.add_upstream_header("X-Multi", "a")
        ctx.add_upstream_header("X-Multi", "b")
        ctx.set_upstream_header("X-Set", "1")
        ctx.set_upstream_header("x-set", "2")  # replaces the line set before, any case
        ctx.add_upstream_header("X-Gone", "added")
        ctx.remove_upstream_header("X-Gone")  # the client's and the added line
        ctx.state["seen"] = ctx.path

    def before_proxy(self, ctx: Context) -> None:
        ctx.set_upstream_header("X-State", ctx.state["seen"])
        ctx.set_upstream_header("X-Deprecated-Alias", str(ctx.vars is ctx.state))  # type: ignore[attr-defined]


class HeaderLookup(Plugin):
    """Reports what ``ctx.header`` finds (before anything built the header mapping) and what
    the mapping says, as upstream headers: the two must agree."""
    name = "test-header-lookup"

    def rewrite(self, ctx: Context) -> None:
        found = {name: ctx.header(name, "<absent>")
                 for name in ("x-one", "X-Many", "x-missing", "x-\u20ac")}
        ctx.set_upstream_header("X-Lookup", json.dumps(found))
        mapping = ctx.headers
        ctx.set_upstream_header("X-Mapping", json.dumps(
            {name: mapping.get(name.lower(), "<absent>") for name in found}))


class DefaultHeaders(Plugin):
    """Response headers only for a response that lacks them: the upstream's X-Upstream wins,
    X-Default is filled in; ``/deny/...`` is answered here, with the defaults too."""
    name = "test-default-headers"
    priority = 50

    def rewrite(self, ctx: Context) -> Response | None:
        ctx.set_default_response_header("X-Upstream", "from-plugin")
        ctx.set_default_response_header("X-Default", "filled")
        ctx.add_response_header("X-Added", "added")
        ctx.set_default_response_header("x-added", "not-twice")
        if "/deny/" in ctx.path:
            return Response(403, b"no\n")
        return None


class CountTries(Plugin):
    """before_proxy numbers the tries of a request: each upstream request carries its try's
    number and node (X-Try, X-Node), so an upstream shows which call reached it."""
    name = "test-count-tries"

    def before_proxy(self, ctx: Context) -> None:
        tries = ctx.state.get("tries", 0) + 1
        ctx.state["tries"] = tries
        ctx.set_upstream_header("X-Try", str(tries))
        assert ctx.node is not None
        ctx.set_upstream_header("X-Node", f"{ctx.node.host}:{ctx.node.port}")
