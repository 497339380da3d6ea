"""A real HTTP/1.1 upstream for the tests: an asyncio server (h11 for parsing) on loopback, run in
a background thread with its own event loop. It records what reached it, so tests can assert what
the gateway forwarded, and serves the shapes a proxy must relay: content-length, chunked and
close-delimited bodies, slow responses, informational responses."""
from __future__ import annotations

import asyncio
import hashlib
import json
import socket
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlsplit

import h11

PIECE = 65536


@dataclass
class Received:
    method: str
    target: str
    headers: list[tuple[str, str]]
    http_version: str
    body_length: int = 0
    body_sha256: str = ""
    body_framing: str = "none"  # none | length | chunked

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.headers if k == name.lower()]
        return ", ".join(values) if values else None

    def as_json(self, name: str = "") -> dict[str, Any]:
        return {"method": self.method, "target": self.target, "headers": self.headers,
                "http_version": self.http_version, "body_length": self.body_length,
                "body_sha256": self.body_sha256, "body_framing": self.body_framing,
                "upstream": name}


class _Connection(asyncio.Protocol):
    def __init__(self, upstream: Upstream) -> None:
        self.upstream = upstream
        self.conn = h11.Connection(h11.SERVER)
        self.transport: asyncio.Transport | None = None
        self.queue: asyncio.Queue[Any] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None
        self.can_write = asyncio.Event()
        self.can_write.set()
        self.raw = bytearray()  # what arrived on this connection (first 64 MiB), for byte checks
        upstream.raw_connections.append(self.raw)
        upstream.accepted += 1

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        # asyncio sets TCP_NODELAY only for sockets it creates with IPPROTO_TCP: without it every
        # small response waits ~40 ms for Nagle and the client's delayed ACK.
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.upstream.connections += 1
        self.task = asyncio.ensure_future(self.serve())

    def data_received(self, data: bytes) -> None:
        if len(self.raw) < 1 << 26:
            self.raw += data
        self.queue.put_nowait(data)

    def eof_received(self) -> bool:
        self.queue.put_nowait(b"")
        return True

    def connection_lost(self, exc: Exception | None) -> None:
        self.queue.put_nowait(None)
        self.can_write.set()

    def pause_writing(self) -> None:
        self.upstream.write_pauses += 1
        self.can_write.clear()

    def resume_writing(self) -> None:
        self.can_write.set()

    async def next_event(self) -> Any:
        while True:
            event = self.conn.next_event()
            if event is not h11.NEED_DATA:
                return event
            data = await self.queue.get()
            if data is None:
                return None
            self.conn.receive_data(data)

    async def send(self, *events: Any) -> None:
        assert self.transport is not None
        for event in events:
            out = self.conn.send(event)
            if out:
                await self.can_write.wait()
                if self.transport.is_closing():
                    raise ConnectionError("closed")
                self.transport.write(out)

    async def serve(self) -> None:
        assert self.transport is not None
        try:
            while True:
                event = await self.next_event()
                if event is None or isinstance(event, h11.ConnectionClosed):
                    break
                if not isinstance(event, h11.Request):
                    break
                await self.handle(event)
                if self.conn.our_state is h11.MUST_CLOSE or self.transport.is_closing():
                    break
                try:
                    self.conn.start_next_cycle()
                except h11.LocalProtocolError:
                    break
        except (h11.RemoteProtocolError, ConnectionError) as exc:
            self.upstream.errors.append(repr(exc))
        except asyncio.CancelledError:
            pass
        finally:
            if not self.transport.is_closing():
                self.transport.close()

    async def handle(self, request: h11.Request) -> None:
        headers = [(k.decode("latin-1"), v.decode("latin-1")) for k, v in request.headers]
        framing = "none"
        for k, _v in headers:
            if k == "transfer-encoding":
                framing = "chunked"
            elif k == "content-length" and framing == "none":
                framing = "length"
        received = Received(request.method.decode(), request.target.decode("latin-1"), headers,
                            request.http_version.decode(), body_framing=framing)
        self.upstream.received.append(received)
        url = urlsplit(received.target)
        parts = [p for p in url.path.split("/") if p]
        query = {k: v[-1] for k, v in parse_qs(url.query).items()}
        # /slow delays before reading the body, so a slow upstream really is slow
        if parts[:1] == ["slow"]:
            await asyncio.sleep(float(parts[1]) if len(parts) > 1 else 1.0)
        digest = hashlib.sha256()
        while True:
            event = await self.next_event()
            if event is None:
                return
            if isinstance(event, h11.Data):
                received.body_length += len(event.data)
                digest.update(event.data)
                if "read_delay" in query:
                    await asyncio.sleep(float(query["read_delay"]))
            elif isinstance(event, h11.EndOfMessage):
                break
        received.body_sha256 = digest.hexdigest()
        if self.upstream.delay:
            await asyncio.sleep(self.upstream.delay)
        await self.respond(parts, query, received, request)

    async def respond(self, parts: list[str], query: dict[str, str], received: Received,
                      request: h11.Request) -> None:
        name = self.upstream.name.encode()
        kind = parts[0] if parts else "echo"
        extra = [(b"x-upstream", name)]
        if kind in ("bytes", "chunked", "close"):
            size = int(parts[1]) if len(parts) > 1 else 0
            if kind == "close":
                # No Content-Length, no chunked: the body ends when the connection closes.
                assert self.transport is not None
                self.transport.write(b"HTTP/1.1 200 OK\r\nx-upstream: " + name +
                                     b"\r\nConnection: close\r\n\r\n")
                await self.stream_raw(size)
                self.transport.close()
                return
            head = [(b"content-type", b"application/octet-stream")] + extra
            if kind == "bytes":
                head.append((b"content-length", str(size).encode()))
            await self.send(h11.Response(status_code=200, headers=head))
            sent = 0
            while sent < size:
                n = min(PIECE, size - sent)
                await self.send(h11.Data(data=b"x" * n))
                sent += n
                self.upstream.bytes_sent += n
            await self.send(h11.EndOfMessage())
            return
        if kind == "status":
            status = int(parts[1])
            body = b"" if status in (204, 304) else f"status {status}\n".encode()
            head = extra + ([(b"content-length", str(len(body)).encode())] if status not in (204, 304) else [])
            await self.send(h11.Response(status_code=status, headers=head))
            if body:
                await self.send(h11.Data(data=body))
            await self.send(h11.EndOfMessage())
            return
        if kind == "then-close":
            # Answers as if keeping the connection, then closes it: what an upstream with a short
            # keep-alive timeout does to a pooled connection.
            body = b"ok\n"
            await self.send(h11.Response(status_code=200, headers=extra + [(b"content-length", b"3")]),
                            h11.Data(data=body), h11.EndOfMessage())
            assert self.transport is not None
            self.transport.close()
            return
        if kind == "early-hints":
            await self.send(h11.InformationalResponse(status_code=103, headers=[(b"link", b"</a.css>; rel=preload")]))
        body = json.dumps(received.as_json(self.upstream.name)).encode()
        head = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())] + extra
        if kind == "hop":
            head += [(b"connection", b"keep-alive, x-hop"), (b"x-hop", b"1"), (b"keep-alive", b"timeout=5")]
        await self.send(h11.Response(status_code=200, headers=head))
        if request.method != b"HEAD":
            await self.send(h11.Data(data=body))
        await self.send(h11.EndOfMessage())

    async def stream_raw(self, size: int) -> None:
        assert self.transport is not None
        sent = 0
        while sent < size:
            n = min(PIECE, size - sent)
            await self.can_write.wait()
            self.transport.write(b"x" * n)
            sent += n


@dataclass(frozen=True)
class ByteMark:
    accepted: int
    sizes: list[int]


class Upstream:
    """Start with ``with Upstream() as up:``; ``up.port`` is the listening port (``port``: that
    one, e.g. one a test kept refused until now). ``delay``: seconds every response waits
    (settable while it runs: an upstream that turns slow). ``host``: the loopback address to
    listen on ("::1" for IPv6, "127.0.0.2" for a second address on the same port)."""

    def __init__(self, name: str = "up", port: int = 0, delay: float = 0.0,
                 host: str = "127.0.0.1") -> None:
        self.name = name
        self.delay = delay
        self.received: list[Received] = []
        self.errors: list[str] = []
        self.raw_connections: list[bytearray] = []
        self.connections = 0
        self.accepted = 0  # connections accepted, counted before any byte is read
        self.write_pauses = 0  # times a connection's peer (the gateway) stopped reading
        self.bytes_sent = 0  # response body bytes written by /bytes/N
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET)
        if port:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.sock = sock
        self.server: asyncio.AbstractServer | None = None

    def mark(self) -> ByteMark:
        """Where every connection's byte record stands now: ``bytes_since(mark)`` is what
        arrived after it, whether or not h11 could parse it."""
        return ByteMark(self.accepted, [len(c) for c in list(self.raw_connections)])

    def bytes_since(self, mark: ByteMark) -> list[bytes]:
        """The bytes each connection received after ``mark`` (only connections that got any)."""
        out = []
        for i, conn in enumerate(list(self.raw_connections)):
            start = mark.sizes[i] if i < len(mark.sizes) else 0
            if len(conn) > start:
                out.append(bytes(conn[start:]))
        return out

    def assert_nothing_forwarded(self, mark: ByteMark, grace: float = 0.2) -> None:
        """Fails if any byte reached this upstream after ``mark``, or a connection was opened to
        it: checked on the raw connections, not on what h11 parsed (a smuggled request h11
        rejects is never in ``received``). ``grace`` lets bytes already in flight land first."""
        time.sleep(grace)
        got = self.bytes_since(mark)
        assert not got, f"bytes reached the upstream: {got!r}"
        assert self.accepted == mark.accepted, \
            f"{self.accepted - mark.accepted} connection(s) opened to the upstream"

    def __enter__(self) -> Upstream:
        self.thread.start()
        future = asyncio.run_coroutine_threadsafe(self._start(), self.loop)
        future.result(5)
        return self

    async def _start(self) -> None:
        self.server = await self.loop.create_server(lambda: _Connection(self), sock=self.sock,
                                                    backlog=1024)

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            assert self.server is not None
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(5)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


_handed_out: set[int] = set()


def free_port() -> int:
    """A port free now and not handed out before by this process: a test often picks several
    ports before anything binds them, and the kernel would happily offer the same one twice."""
    while True:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port not in _handed_out:
            _handed_out.add(port)
            return port
