"""The admin HTTP/1.1 server: asyncio streams on the master's loop, request heads parsed by the
same strict Rust parser as the data plane (``gateway._native.parse_request``), keep-alive,
bodies by Content-Length (a chunked body is answered 411).

Every request passes two gates before the router: the client address must be in
``allow_admin`` (else 403) and the request must carry the admin key (else 401). Key and networks
are read from the current config at each request, so a reload changes them; the listen address
changes at the next start.
"""
from __future__ import annotations

import asyncio
import contextlib
import http
import logging
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST

from gateway._native import HttpParseError, parse_request
from gateway.admin.auth import AllowList, generated_key, key_matches, presented_key
from gateway.admin.router import Reply, Request, Router
from gateway.config import parse_listen
from gateway.observability.metrics import MetricsExporter

if TYPE_CHECKING:
    from gateway._native import SharedMetrics
    from gateway.config.schema import AdminSettings

log = logging.getLogger("gateway.admin")

IDLE_TIMEOUT = 60.0
BODY_TIMEOUT = 60.0
MAX_HEAD = 32768
MAX_BODY = 16 * 1024 * 1024
#: A render slower than this makes scrapes answer from the last render (see metrics()).
SLOW_RENDER_SECONDS = 0.25


class AdminServer:
    def __init__(self, settings: Callable[[], AdminSettings], state_dir: Path,
                 metrics: SharedMetrics | None = None,
                 status: Callable[[], Awaitable[dict[str, Any]]] | None = None,
                 slow_render_seconds: float = SLOW_RENDER_SECONDS) -> None:
        self.settings = settings
        self.slow_render_seconds = slow_render_seconds
        self.state_dir = state_dir
        self.router = Router()
        self.server: asyncio.AbstractServer | None = None
        self._generated: str | None = None
        self._allow: AllowList | None = None
        self.connections = 0
        self.refused_since_report = 0
        self.last_refusal_report = 0.0
        if metrics is not None:
            self.exporter = MetricsExporter(metrics)
            self.scrape: asyncio.Future[tuple[bytes, float]] | None = None
            self.last_render: tuple[bytes, float] | None = None
            self.render_seconds = 0.0
            self.router.add("GET", "/metrics", self.metrics)
        if status is not None:
            self.status = status
            self.router.add("GET", "/status", self.status_reply)

    # ---------------------------------------------------------------- lifecycle

    async def start(self) -> None:
        settings = self.settings()
        if not settings.key:
            self._generated = generated_key(self.state_dir)
        host, port = parse_listen(settings.listen)
        try:
            self.server = await asyncio.start_server(self.serve, host, port, reuse_address=True,
                                                     limit=MAX_HEAD)
        except OSError as exc:
            # The data plane does not depend on the admin listener: keep serving traffic and say
            # loudly that administration (and /metrics) is unavailable.
            log.error("admin API cannot listen on %s: %s; running without it", settings.listen,
                      exc)
            return
        log.info("admin API on http://%s (clients from %s)", settings.listen,
                 ", ".join(settings.allow_admin) or "nowhere")

    def close(self) -> None:
        if self.server is not None:
            self.server.close()
            self.server = None

    # ---------------------------------------------------------------- gates

    def expected_key(self) -> str:
        settings = self.settings()
        if settings.key:
            return settings.key
        if self._generated is None:  # the config dropped its key on a reload
            self._generated = generated_key(self.state_dir)
        return self._generated

    def allow_list(self) -> AllowList:
        cidrs = self.settings().allow_admin
        if self._allow is None or self._allow.cidrs != list(cidrs):
            self._allow = AllowList(cidrs)
        return self._allow

    async def dispatch(self, request: Request) -> Reply:
        if not self.allow_list().allows(request.client_ip):
            return Reply.error(403, "client address not allowed")
        if not key_matches(presented_key(request.headers), self.expected_key()):
            reply = Reply.error(401, "missing or invalid admin key")
            reply.headers.append(("WWW-Authenticate", 'Bearer realm="gateway admin"'))
            return reply
        target = self.router.resolve(request)
        if isinstance(target, Reply):
            return target
        try:
            return await target(request)
        except Exception:
            log.exception("admin handler failed: %s %s", request.method, request.path)
            return Reply.error(500, "internal error")

    # ---------------------------------------------------------------- handlers

    async def metrics(self, request: Request) -> Reply:
        # Rendering a large store takes a while (prometheus_client formats every sample in
        # Python, ~10 us each: seconds for 10k busy routes). It runs off the loop, so the master
        # keeps supervising workers, and scrapes that arrive during a render share it. When
        # renders are quick every scrape gets a fresh one; once they are slow, a scrape is
        # answered at once with the last render (its age in X-Metrics-Age) while the next one
        # is made in the background, so a big config never makes a scrape slow.
        if self.scrape is None:
            self.scrape = asyncio.get_running_loop().run_in_executor(None, self._render)
            self.scrape.add_done_callback(self._scrape_done)
        if self.last_render is not None and self.render_seconds >= self.slow_render_seconds:
            body, made_at = self.last_render
        else:
            body, made_at = await asyncio.shield(self.scrape)
        age = max(time.monotonic() - made_at, 0.0)
        return Reply(200, body, [("Content-Type", CONTENT_TYPE_LATEST),
                                 ("X-Metrics-Age", "%.3f" % age)])

    async def status_reply(self, request: Request) -> Reply:
        return Reply.json(200, await self.status())

    def _render(self) -> tuple[bytes, float]:
        started = time.monotonic()
        body = self.exporter.render()
        self.render_seconds = time.monotonic() - started
        return body, started

    def _scrape_done(self, future: asyncio.Future[tuple[bytes, float]]) -> None:
        self.scrape = None
        if not future.cancelled() and future.exception() is None:
            self.last_render = future.result()

    # ---------------------------------------------------------------- HTTP/1.1

    def refuse(self, writer: asyncio.StreamWriter, limit: int) -> None:
        self.refused_since_report += 1
        now = time.monotonic()
        if now - self.last_refusal_report >= 10.0:
            log.warning("admin connection limit (%d) reached: closed %d new connection(s)",
                        limit, self.refused_since_report)
            self.last_refusal_report = now
            self.refused_since_report = 0
        writer.transport.abort()

    async def serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        settings = self.settings()
        if self.connections >= settings.max_connections:
            self.refuse(writer, settings.max_connections)
            return
        self.connections += 1
        try:
            await self.serve_connection(reader, writer, settings.header_timeout)
        except asyncio.CancelledError:
            # the master stops with keep-alive connections open: nothing is lost by ending them
            writer.transport.abort()
        finally:
            self.connections -= 1

    async def serve_connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                               header_timeout: float) -> None:
        peer = writer.get_extra_info("peername")
        client_ip = str(peer[0]) if isinstance(peer, tuple) else ""
        buffer = b""
        served = 0
        try:
            while True:
                head = None
                # A connection must send its first request within the header timeout: an idle
                # one costs the master a descriptor and needs no key to be opened.
                timeout = IDLE_TIMEOUT if served and not buffer else header_timeout
                while head is None:
                    try:
                        head = parse_request(buffer, max_head_size=MAX_HEAD)
                    except HttpParseError as exc:
                        await self.send(writer, Reply.error(exc.status, exc.reason), False, False)
                        return
                    if head is None:
                        if len(buffer) > MAX_HEAD:
                            await self.send(writer, Reply.error(431, "request head too large"),
                                            False, False)
                            return
                        chunk = await asyncio.wait_for(reader.read(65536), timeout)
                        if not chunk:
                            return
                        buffer += chunk
                        timeout = header_timeout
                buffer = buffer[head.head_len:]
                keep_alive = head.keep_alive
                is_head = head.method == "HEAD"
                if head.body_kind == "chunked":
                    await self.send(writer, Reply.error(411, "send the body with Content-Length"),
                                    False, is_head)
                    return
                size = head.content_length if head.body_kind == "length" else 0
                if size > MAX_BODY:
                    await self.send(writer, Reply.error(413, "request body too large"), False,
                                    is_head)
                    return
                if len(buffer) < size:
                    buffer += await asyncio.wait_for(reader.readexactly(size - len(buffer)),
                                                     BODY_TIMEOUT)
                body, buffer = buffer[:size], buffer[size:]
                request = Request(
                    method=head.method,
                    path=head.path.decode("latin-1"),
                    query=head.query.decode("latin-1"),
                    headers={k.decode("latin-1").lower(): v.decode("latin-1")
                             for k, v in head.headers},
                    body=body,
                    client_ip=client_ip,
                )
                reply = await self.dispatch(request)
                served += 1
                await self.send(writer, reply, keep_alive, is_head)
                if not keep_alive:
                    return
        except (TimeoutError, asyncio.IncompleteReadError, ConnectionError):
            return
        finally:
            with contextlib.suppress(Exception):
                writer.close()

    @staticmethod
    async def send(writer: asyncio.StreamWriter, reply: Reply, keep_alive: bool,
                   is_head: bool) -> None:
        lines = [f"HTTP/1.1 {reply.status} {_reason(reply.status)}",
                 f"Content-Length: {len(reply.body)}",
                 "Connection: " + ("keep-alive" if keep_alive else "close"),
                 "Cache-Control: no-store"]
        lines += [f"{name}: {value}" for name, value in reply.headers]
        head = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        # one write: a head and a body sent apart wait on the client's delayed ACK (Nagle)
        writer.write(head if is_head else head + reply.body)
        await writer.drain()


def _reason(status: int) -> str:
    try:
        return http.HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"
