"""Plugins used by the tests to exercise every hook point through real requests."""
from __future__ import annotations

import asyncio
from typing import Any

from gateway._proto import Response
from gateway.plugins import Plugin, PluginConfig


class TagConfig(PluginConfig):
    tag: str = "t"


class Tag(Plugin):
    """rewrite, before_proxy and header_filter in one: marks the request and the response."""
    name = "test-tag"
    priority = 100
    Config = TagConfig

    def rewrite(self, ctx: Any) -> None:
        ctx.set_upstream_header("X-Rewritten", self.config.tag)
        ctx.remove_upstream_header("X-Secret")
        if ctx.path == "/rename":
            ctx.set_upstream_uri("/echo/renamed?by=" + self.config.tag)

    def before_proxy(self, ctx: Any) -> None:
        ctx.set_upstream_header("X-Node", f"{ctx.node.host}:{ctx.node.port}")

    def header_filter(self, ctx: Any) -> None:
        ctx.set_response_header("X-Tag", self.config.tag)
        ctx.remove_response_header("X-Upstream")
        if ctx.path.startswith("/status/"):
            ctx.status = 299


class Upper(Plugin):
    """Serves /upper/<path> from the upstream's /<path>, upper-cased, with a "!" at the end."""
    name = "test-upper"

    def rewrite(self, ctx: Any) -> None:
        ctx.set_upstream_uri(ctx.path.removeprefix("/upper"))

    def body_filter(self, ctx: Any, chunk: bytes, last: bool) -> bytes:
        return chunk.upper() + (b"!" if last else b"")


class Boom(Plugin):
    name = "test-boom"

    def access(self, ctx: Any) -> None:
        raise RuntimeError("plugin bug")


class SlowDeny(Plugin):
    """An async access phase: waits, then answers when the header asks for it."""
    name = "test-slow-deny"

    async def access(self, ctx: Any) -> Response | None:
        await asyncio.sleep(0.01)
        if ctx.header("x-deny"):
            return Response(403, b"denied\n", [("X-Denied-By", "test")])
        return None


class Params(Plugin):
    """Answers with the route params and request details the context exposes."""
    name = "test-params"

    def access(self, ctx: Any) -> Response:
        body = f"{ctx.route_id} {dict(ctx.params)} {ctx.method} {ctx.path} {ctx.query_string} {ctx.client_ip}"
        return Response(200, body.encode())
