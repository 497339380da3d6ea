"""Connection limits per worker: at ``max_connections`` a worker stops accepting (the kernel's
listen backlog holds the next clients: connected, never refused or reset) and accepts again when
one of its connections closes; and thousands of idle or slow clients do not slow the others."""
from __future__ import annotations

import resource
import socket
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

REQUEST = b"GET / HTTP/1.1\r\nHost: limits.test\r\n\r\n"


def read_response(sock: socket.socket) -> bytes:
    """One whole Content-Length framed response (the test upstream's echo)."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(65536)
        assert chunk, f"connection closed after {data!r}"
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = sock.recv(65536)
        assert chunk, "connection closed mid-body"
        body += chunk
    return head


def served(sock: socket.socket) -> bool:
    sock.sendall(REQUEST)
    return read_response(sock).startswith(b"HTTP/1.1 200 ")


def nothing_yet(sock: socket.socket, wait: float) -> None:
    """Nothing arrives within ``wait``: neither a response nor a close nor a reset."""
    sock.settimeout(wait)
    try:
        got = sock.recv(65536)
    except TimeoutError:
        return
    finally:
        sock.settimeout(10)
    raise AssertionError(f"a client over the limit got {got!r} instead of waiting")


def test_at_max_connections_further_clients_wait_and_are_served_when_one_closes(
        tmp_path: Path, upstream: Upstream) -> None:
    config = base_config(free_port(), upstream.port, max_connections=3)
    with GatewayProcess(tmp_path, config, workers=1) as gw:
        held = [socket.create_connection(("127.0.0.1", gw.port), timeout=10) for _ in range(3)]
        assert all(served(s) for s in held)
        # two more clients: their connect succeeds (the kernel's backlog), their requests wait
        waiting = [socket.create_connection(("127.0.0.1", gw.port), timeout=10) for _ in range(2)]
        for sock in waiting:
            sock.sendall(REQUEST)
        nothing_yet(waiting[0], 1.0)
        nothing_yet(waiting[1], 0.2)
        assert all(served(s) for s in held), "the worker stopped serving the clients it holds"

        held.pop().close()
        started = time.monotonic()
        first = read_response_from_either(waiting)
        assert time.monotonic() - started < 2.0
        other = waiting[1 - first]
        nothing_yet(other, 0.5)  # back at the limit: the second still waits
        held.pop().close()
        assert read_response(other).startswith(b"HTTP/1.1 200 ")
        for sock in held + waiting:
            sock.close()
        assert "Traceback" not in gw.logs()


def read_response_from_either(socks: list[socket.socket]) -> int:
    """Index of the one of two waiting clients that gets its response (within 2 s)."""
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for i, sock in enumerate(socks):
            sock.settimeout(0.05)
            try:
                first = sock.recv(1, socket.MSG_PEEK)
            except TimeoutError:
                continue
            finally:
                sock.settimeout(10)
            assert first == b"H", "the waiting client's connection was closed"
            assert read_response(sock).startswith(b"HTTP/1.1 200 ")
            return i
    raise AssertionError("no waiting client was served after a connection closed")


HELD = 2000


@pytest.fixture
def many_fds() -> Iterator[None]:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = HELD * 2 + 512
    if hard != resource.RLIM_INFINITY and hard < wanted:
        pytest.skip(f"the hard descriptor limit ({hard}) is below the {wanted} this test holds")
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, wanted), hard))
    yield
    resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


@pytest.mark.parametrize("max_connections", [0, 5000], ids=["no-limit", "under-the-limit"])
def test_2000_idle_and_slow_clients_do_not_slow_the_others(
        tmp_path: Path, upstream: Upstream, many_fds: None, max_connections: int) -> None:
    config = base_config(free_port(), upstream.port, max_connections=max_connections,
                         client_header_timeout=120, keepalive_timeout=120)
    with GatewayProcess(tmp_path, config, workers=2) as gw:
        idle, partial, readers = [], [], []
        try:
            for i in range(HELD):
                sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
                if i % 10 < 4:
                    idle.append(sock)  # connected, sends nothing
                elif i % 10 < 8:
                    sock.sendall(b"GET / HTTP/1.1\r\nHost: slow.test\r\nX-Slow: ")  # half a head
                    partial.append(sock)
                else:
                    # asks for 1 MiB and never reads it: back-pressure holds it in the gateway
                    sock.sendall(b"GET /bytes/1048576 HTTP/1.1\r\nHost: slow.test\r\n\r\n")
                    readers.append(sock)
            time.sleep(0.5)
            # a normal client, on new connections and on one kept alive: each request is served
            # well within a second although the workers hold 2,000 other connections; for 3 s,
            # so a stall that comes back periodically (a sweep over every connection) is met
            slowest = 0.0
            until = time.monotonic() + 3.0
            with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as kept:
                while time.monotonic() < until:
                    started = time.monotonic()
                    with socket.create_connection(("127.0.0.1", gw.port), timeout=10) as fresh:
                        assert served(fresh)
                    assert served(kept)
                    slowest = max(slowest, time.monotonic() - started)
            assert slowest < 1.0, f"a request took {slowest:.2f} s beside 2,000 held clients"
            # and the held clients were held, not dropped
            for sock in idle[::100]:
                nothing_yet(sock, 0.01)
            for sock in partial[::100]:
                sock.sendall(b"1\r\n\r\n")
                assert read_response(sock).startswith(b"HTTP/1.1 200 ")
        finally:
            for sock in idle + partial + readers:
                sock.close()
        assert "Too many open files" not in gw.logs()
