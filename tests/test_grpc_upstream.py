"""The upstream half of gRPC proxying, in-process: GrpcCall on the worker's pool of HTTP/2
sessions (nghttp2 client) against a real grpcio server, driven by a Python downstream. The
whole path through the gateway, with grpcio clients, is in tests/test_grpc_proxy.py."""
from __future__ import annotations

import asyncio
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import uvloop

from gateway._proto import (
    GrpcCall,
    H2UpstreamPool,
    PyGrpcDownstream,
    UpstreamGroup,
    UpstreamNode,
    grpc_message_encode,
    grpc_status_for_http,
    grpc_timeout_seconds,
    grpc_timeout_value,
)
from gateway.config import UpstreamTls
from gateway.upstream.tls import build_context
from tests.support.certs import CertAuthority
from tests.support.grpc_backend import SERVICE, GrpcBackend
from tests.support.upstream import free_port


def frame(message: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(message)) + message


def messages(data: bytes) -> list[bytes]:
    out = []
    while data:
        size = struct.unpack(">I", data[1:5])[0]
        out.append(data[5:5 + size])
        data = data[5 + size:]
    return out


class Downstream:
    """What a call sends its client; acknowledges response DATA at once, like a fast client."""

    def __init__(self) -> None:
        self.head: list[tuple[bytes, bytes]] | None = None
        self.trailers_only = False
        self.body = b""
        self.tail: list[tuple[bytes, bytes]] | None = None
        self.consumed = 0
        self.finished = asyncio.Event()
        self.call: Any = None
        self.got_data = asyncio.Event()

    def response(self, fields: list[tuple[bytes, bytes]], end_stream: bool) -> None:
        self.head = fields
        self.trailers_only = end_stream

    def data(self, data: bytes) -> None:
        self.body += data
        self.got_data.set()
        self.call.response_sent(len(data))

    def trailers(self, fields: list[tuple[bytes, bytes]]) -> None:
        self.tail = fields

    def consume(self, n: int) -> None:
        self.consumed += n

    def reset(self, code: int) -> None:
        raise AssertionError(f"reset {code}")

    def done(self, call: Any) -> None:
        self.finished.set()

    @property
    def status(self) -> dict[bytes, bytes]:
        return dict(self.tail if self.tail is not None else self.head or [])


def request_fields(method: str, **metadata: str) -> list[tuple[bytes, bytes]]:
    return [(b":method", b"POST"), (b":scheme", b"http"), (b":path", f"/{SERVICE}/{method}".encode()),
            (b":authority", b"gateway.test"), (b"content-type", b"application/grpc"),
            (b"te", b"trailers"), *((k.encode(), v.encode()) for k, v in metadata.items())]


class Harness:
    def __init__(self, group: UpstreamGroup) -> None:
        self.group = group
        self.pool = H2UpstreamPool()

    def call(self, method: str, **metadata: str) -> tuple[Any, Downstream]:
        down = Downstream()
        call = GrpcCall(PyGrpcDownstream(down), self.pool, asyncio.get_running_loop(), self.group,
                        request_fields(method, **metadata), b"127.0.0.1")
        down.call = call
        call.begin()
        return call, down


def run(coro: Any) -> Any:
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        return runner.run(asyncio.wait_for(coro, 20))


@pytest.fixture
def backend() -> Iterator[GrpcBackend]:
    with GrpcBackend() as b:
        yield b


def group_for(*ports: int, retries: int = 0, ssl: Any = None, **kw: Any) -> UpstreamGroup:
    nodes = [UpstreamNode("127.0.0.1", p, ssl=ssl, server_hostname="localhost" if ssl else None)
             for p in ports]
    return UpstreamGroup("svc", nodes, retries=retries, connect_timeout=2.0, grpc=True, **kw)


def test_unary_call_and_its_trailers(backend: GrpcBackend) -> None:
    async def main() -> Downstream:
        h = Harness(group_for(backend.port))
        call, down = h.call("Unary", **{"x-meta": "m1"})
        call.request_data(frame(b"hello"), True)
        await down.finished.wait()
        assert len(h.pool) == 1
        return down
    down = run(main())
    assert dict(down.head)[b":status"] == b"200"
    assert messages(down.body) == [b"hello"]
    assert down.status[b"grpc-status"] == b"0"
    assert down.status[b"x-trailer"] == b"done-unary"
    assert down.status[b"x-bin-bin"]  # binary trailers pass as they came
    assert down.consumed == len(frame(b"hello"))
    assert backend.seen[0]["x-meta"] == "m1"
    assert backend.seen[0]["x-forwarded-for"] == "127.0.0.1"


def test_streams_share_one_connection(backend: GrpcBackend) -> None:
    async def main() -> tuple[list[Downstream], dict[str, Any]]:
        h = Harness(group_for(backend.port))
        downs = []
        for i in range(20):
            call, down = h.call("Unary")
            call.request_data(frame(b"%d" % i), True)
            downs.append(down)
        counts = h.pool.session_counts()
        await asyncio.gather(*(d.finished.wait() for d in downs))
        return downs, counts
    downs, counts = run(main())
    assert counts == {f"127.0.0.1:{backend.port}": (1, 20)} or \
        counts == {f"127.0.0.1:{backend.port}": (1, 0)}
    assert [messages(d.body) for d in downs] == [[b"%d" % i] for i in range(20)]


def test_server_client_and_bidi_streaming(backend: GrpcBackend) -> None:
    async def main() -> tuple[Downstream, Downstream, Downstream]:
        h = Harness(group_for(backend.port))
        call, server_stream = h.call("ServerStream")
        call.request_data(frame(b"5"), True)
        call, client_stream = h.call("ClientStream")
        for part in (b"a", b"b", b"c"):
            call.request_data(frame(part), False)
            await asyncio.sleep(0.01)
        call.request_data(b"", True)
        call, bidi = h.call("Bidi")
        call.request_data(frame(b"one"), False)
        await bidi.got_data.wait()  # answered before the request ended: really bidirectional
        assert messages(bidi.body) == [b"echo one"]
        call.request_data(frame(b"two"), True)
        await asyncio.gather(server_stream.finished.wait(), client_stream.finished.wait(),
                             bidi.finished.wait())
        return server_stream, client_stream, bidi
    server_stream, client_stream, bidi = run(main())
    assert messages(server_stream.body) == [b"message %d" % i for i in range(5)]
    assert messages(client_stream.body) == [b"a|b|c"]
    assert messages(bidi.body) == [b"echo one", b"echo two"]
    for down, name in ((server_stream, "server_stream"), (client_stream, "client_stream"),
                       (bidi, "bidi")):
        assert down.status[b"grpc-status"] == b"0"
        assert down.status[b"x-trailer"] == f"done-{name}".encode()


def test_upstream_status_and_message_pass_through(backend: GrpcBackend) -> None:
    async def main() -> Downstream:
        call, down = Harness(group_for(backend.port)).call(
            "Unary", **{"x-fail": "NOT_FOUND:no such thing é"})
        call.request_data(frame(b"x"), True)
        await down.finished.wait()
        return down
    down = run(main())
    assert down.status[b"grpc-status"] == b"5"
    assert down.status[b"grpc-message"] == b"no such thing %C3%A9"


def test_deadline_cancels_the_upstream_and_answers_deadline_exceeded(backend: GrpcBackend) -> None:
    async def main() -> Downstream:
        call, down = Harness(group_for(backend.port)).call(
            "Unary", **{"grpc-timeout": "300m", "x-sleep": "5"})
        call.request_data(frame(b"x"), True)
        await down.finished.wait()
        return down
    down = run(main())
    assert down.trailers_only
    assert down.status[b"grpc-status"] == b"4"
    assert backend.cancelled.wait(5), "the upstream call was not cancelled"
    # the node was told the time left, not more
    assert 0 < backend.time_left[0] <= 0.3


def test_unreachable_upstream_is_unavailable_and_retried_elsewhere(backend: GrpcBackend) -> None:
    dead = free_port()

    async def main() -> tuple[Downstream, Downstream]:
        call, down = Harness(group_for(dead)).call("Unary")
        call.request_data(frame(b"x"), True)
        await down.finished.wait()
        # a node that refuses is left for one that answers (the call never reached it)
        h = Harness(group_for(dead, backend.port, retries=1, type="roundrobin"))
        outs = []
        for _ in range(2):
            call, retried = h.call("Unary")
            call.request_data(frame(b"y"), True)
            outs.append(retried)
        await asyncio.gather(*(o.finished.wait() for o in outs))
        return down, outs
    down, retried = run(main())
    assert down.trailers_only
    assert dict(down.head) == {b":status": b"200", b"content-type": b"application/grpc",
                               b"grpc-status": b"14", b"grpc-message": b"upstream connect failed"}
    assert [messages(r.body) for r in retried] == [[b"y"], [b"y"]]


def test_a_node_lost_mid_call_is_unavailable_and_not_retried() -> None:
    """A node that reads the call and drops the connection: the call may have run there, so it
    is not sent to the other node; the client gets UNAVAILABLE."""
    async def main() -> tuple[Downstream, int]:
        got = asyncio.Event()

        async def drop(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await reader.read(65536)  # the preface, SETTINGS and the call's HEADERS
            got.set()
            writer.transport.abort()

        server = await asyncio.start_server(drop, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        with GrpcBackend() as other:
            call, down = Harness(group_for(port, other.port, retries=1)).call("Unary")
            call.request_data(frame(b"x"), True)
            await down.finished.wait()
            calls = other.calls
        server.close()
        return down, calls
    down, other_calls = run(main())
    assert down.status[b"grpc-status"] == b"14"
    assert down.status[b"grpc-message"] == b"upstream connection lost"
    assert other_calls == 0


def test_grpcs_upstream_with_a_test_ca(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path / "ca")
    server = ca.issue("server", "localhost", ["localhost"])
    tls = (server.key_path.read_bytes(), server.cert_path.read_bytes())
    with GrpcBackend(tls=tls) as backend:
        async def main(ctx: Any) -> Downstream:
            call, down = Harness(group_for(backend.port, ssl=ctx)).call("Unary")
            call.request_data(frame(b"secret"), True)
            await down.finished.wait()
            return down
        good = run(main(build_context(UpstreamTls(ca=str(ca.path)), h2=True)))
        assert messages(good.body) == [b"secret"] and good.status[b"grpc-status"] == b"0"
        # the system store does not know the test CA: refused, answered UNAVAILABLE
        bad = run(main(build_context(UpstreamTls(), h2=True)))
        assert bad.status[b"grpc-status"] == b"14"


def test_a_client_that_does_not_read_holds_the_upstream_to_a_window(backend: GrpcBackend) -> None:
    """Response DATA is acknowledged to the node only as the downstream takes it: a stalled
    client stops the node after about a stream window, and the rest follows once it reads."""
    async def main() -> tuple[int, int, Downstream]:
        call, down = Harness(group_for(backend.port)).call("ServerStream")
        acks: list[int] = []
        down.data = lambda data: (setattr(down, "body", down.body + data), acks.append(len(data)))
        call.request_data(frame(b"200:16384"), True)  # 3.2 MB
        await asyncio.sleep(1.0)
        held = len(down.body)
        for n in acks:
            call.response_sent(n)
        down.data = lambda data: (setattr(down, "body", down.body + data), call.response_sent(len(data)))
        await down.finished.wait()
        return held, backend.streamed, down
    held, streamed, down = run(main())
    assert 0 < held <= 300_000, held  # the 256 KiB stream window (and frames in flight)
    assert len(messages(down.body)) == 200 and down.status[b"grpc-status"] == b"0"


def test_client_reset_cancels_the_upstream_call(backend: GrpcBackend) -> None:
    async def main() -> H2UpstreamPool:
        h = Harness(group_for(backend.port))
        call, down = h.call("Unary", **{"x-sleep": "5"})
        call.request_data(frame(b"x"), True)
        await asyncio.sleep(0.3)
        call.client_reset()
        assert down.finished.is_set() and down.head is None  # nothing more goes downstream
        await asyncio.sleep(0.1)
        return h.pool
    pool = run(main())
    assert backend.cancelled.wait(5), "the upstream call was not cancelled"
    assert list(pool.session_counts().values()) == [(1, 0)]  # the connection stays, for others


def test_keepalive_requests_retires_a_session(backend: GrpcBackend) -> None:
    """After keepalive.requests calls a session takes no more; it closes once they end."""
    async def main() -> tuple[list[int], dict[str, Any]]:
        h = Harness(group_for(backend.port, keepalive_requests=2))
        sessions = []
        for i in range(5):
            call, down = h.call("Unary")
            call.request_data(frame(b"%d" % i), True)
            await down.finished.wait()
            sessions.append(len(h.pool))
        await asyncio.sleep(0.05)
        return sessions, h.pool.session_counts()
    sessions, counts = run(main())
    # calls 1-2 on the first session, 3-4 on the second, 5 on a third; a retired one closes
    # after its last call
    assert sessions == [1, 0, 1, 0, 1] and list(counts.values()) == [(1, 0)]


def test_helpers() -> None:
    assert grpc_timeout_seconds(b"100m") == pytest.approx(0.1)
    assert grpc_timeout_seconds(b"2S") == 2.0 and grpc_timeout_seconds(b"1H") == 3600.0
    assert grpc_timeout_seconds(b"123456789S") == -1 and grpc_timeout_seconds(b"5x") == -1
    assert grpc_timeout_seconds(b"m") == -1
    assert grpc_timeout_value(0.25) == b"250m" and grpc_timeout_value(0.0001) == b"1m"
    assert grpc_timeout_value(-1) == b"1m" and grpc_timeout_value(200000) == b"200000S"
    assert [grpc_status_for_http(s) for s in (401, 403, 404, 429, 503, 500)] == [16, 7, 12, 8, 14, 2]
    assert grpc_message_encode("50% off\n") == b"50%25 off%0A"
