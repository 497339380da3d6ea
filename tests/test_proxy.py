"""The data plane through real processes: a gateway with two workers in front of a real upstream,
driven by real clients over loopback sockets."""
from __future__ import annotations

import hashlib
import http.client
import json
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess, base_config, parse_responses, raw_exchange
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import Upstream, free_port

MiB = 1024 * 1024


def request(port: int, method: str, path: str, body: Any = None,
            headers: dict[str, str] | None = None, chunked: bool = False,
            timeout: float = 10.0) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request(method, path, body=body, headers=headers or {}, encode_chunked=chunked)
    response = conn.getresponse()
    data = response.read()
    conn.close()
    return response, data


def echo(port: int, method: str = "GET", path: str = "/echo", **kw: Any) -> dict[str, Any]:
    response, data = request(port, method, path, **kw)
    assert response.status == 200, data
    return json.loads(data)


def worker_peak_rss(gw: GatewayProcess) -> int:
    """The workers' peak resident memory (VmHWM): a body buffered whole and freed again still
    shows here, where the current RSS sampled afterwards would not see it."""
    total = 0
    for pid in gw.worker_pids():
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                total += int(line.split()[1]) * 1024
    return total


def pieces(size: int, piece: int = 65536) -> Iterator[bytes]:
    sent = 0
    while sent < size:
        n = min(piece, size - sent)
        yield b"a" * n
        sent += n


@pytest.mark.parametrize("size", [0, 1024, 16 * MiB])
@pytest.mark.parametrize("framing", ["length", "chunked"])
def test_post_body_is_streamed_to_upstream(gateway: GatewayProcess, upstream: Upstream,
                                           size: int, framing: str) -> None:
    before = worker_peak_rss(gateway)
    if framing == "length":
        body: Any = pieces(size)
        headers = {"Content-Length": str(size)}
        got = echo(gateway.port, "POST", "/upload", body=body, headers=headers)
    else:
        got = echo(gateway.port, "POST", "/upload", body=pieces(size), chunked=True)
    assert got["body_length"] == size
    assert got["body_sha256"] == hashlib.sha256(b"a" * size).hexdigest()
    assert got["body_framing"] == ("chunked" if framing == "chunked" else "length")
    if size >= MiB:
        # streamed, not buffered: the workers' peak did not grow by anything near the body size
        assert worker_peak_rss(gateway) - before < 6 * MiB


@pytest.mark.parametrize("size", [0, 1024, 16 * MiB])
@pytest.mark.parametrize("kind", ["bytes", "chunked", "close"])
def test_response_body_is_streamed_to_client(gateway: GatewayProcess, size: int, kind: str) -> None:
    before = worker_peak_rss(gateway)
    response, data = request(gateway.port, "GET", f"/{kind}/{size}")
    assert response.status == 200
    assert len(data) == size and data == b"x" * size
    if kind == "chunked":
        assert response.getheader("Transfer-Encoding") == "chunked"
    if kind == "close":
        # read until the upstream closed: the gateway closes the client connection too
        assert response.getheader("Connection") == "close"
    if size >= MiB:
        assert worker_peak_rss(gateway) - before < 6 * MiB


def test_get_forwards_path_query_and_rewrites_headers(gateway: GatewayProcess) -> None:
    got = echo(gateway.port, "GET", "/echo/a%20b?x=1&y=%2F", headers={
        "X-Custom": "kept",
        "Connection": "keep-alive, X-Drop-Me",
        "X-Drop-Me": "hop-by-hop because Connection names it",
        "Keep-Alive": "timeout=5",
        "Proxy-Connection": "keep-alive",
        "TE": "trailers",
        "X-Forwarded-For": "203.0.113.7",
        "X-Forwarded-Proto": "https",
        "X-Real-IP": "198.51.100.1",
    })
    headers = {k: v for k, v in got["headers"]}
    names = [k for k, _ in got["headers"]]
    assert got["target"] == "/echo/a%20b?x=1&y=%2F"
    assert headers["x-custom"] == "kept"
    for hop in ("x-drop-me", "keep-alive", "proxy-connection", "te", "upgrade", "trailer"):
        assert hop not in names
    assert headers.get("connection") in (None, "keep-alive")
    assert headers["x-forwarded-for"] == "203.0.113.7, 127.0.0.1"
    assert headers["x-real-ip"] == "127.0.0.1"
    assert headers["x-forwarded-proto"] == "http"
    assert headers["x-forwarded-host"] == f"127.0.0.1:{gateway.port}"
    assert headers["host"] == f"127.0.0.1:{gateway.port}"
    assert names.count("x-forwarded-for") == 1


def test_response_hop_by_hop_headers_removed(gateway: GatewayProcess) -> None:
    response, _ = request(gateway.port, "GET", "/hop")
    assert response.status == 200
    assert response.getheader("X-Hop") is None
    assert response.getheader("Keep-Alive") is None
    assert response.getheader("X-Upstream") == "up"


def test_path_is_normalised_before_routing_and_forwarding(gateway: GatewayProcess) -> None:
    got = echo(gateway.port, "GET", "/public/../echo/./x//y?q=1")
    assert got["target"] == "/echo/x/y?q=1"
    response, _ = request(gateway.port, "GET", "/../../etc/passwd")
    assert response.status == 400


def test_no_route_is_404(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config = base_config(port)
    config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
    config["routes"] = [{"id": "api", "uri": "/api/*", "methods": ["GET"], "upstream_id": "up"}]
    with GatewayProcess(tmp_path, config):
        response, body = request(port, "GET", "/other")
        assert response.status == 404
        assert json.loads(body) == {"error_msg": "404 Route Not Found"}
        # the path matches but not the method: 404 as well, like APISIX (documented)
        response, _ = request(port, "POST", "/api/x", body=b"")
        assert response.status == 404
        response, _ = request(port, "GET", "/api/x")
        assert response.status == 200
    assert upstream.received and all(r.target.startswith("/api/") for r in upstream.received)


def test_path_params_hosts_and_priorities(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("a") as a, Upstream("b") as b, Upstream("c") as c:
        config = base_config(port)
        config["upstreams"] = [
            {"id": name, "nodes": [{"host": "127.0.0.1", "port": up.port}]}
            for name, up in (("a", a), ("b", b), ("c", c))]
        config["routes"] = [
            {"id": "user", "uri": "/users/:id", "upstream_id": "a"},
            {"id": "user-profile", "uri": "/users/:id/profile", "upstream_id": "b"},
            {"id": "host-exact", "uri": "/*", "hosts": ["api.example.com"], "upstream_id": "b"},
            {"id": "host-wild", "uri": "/*", "hosts": ["*.example.com"], "upstream_id": "c"},
            {"id": "low", "uri": "/p", "priority": 1, "upstream_id": "a"},
            {"id": "high", "uri": "/p", "priority": 5, "upstream_id": "c"},
        ]
        with GatewayProcess(tmp_path, config):
            def served_by(path: str, host: str | None = None) -> str | None:
                headers = {"Host": host} if host else {}
                response, _ = request(port, "GET", path, headers=headers)
                return response.getheader("X-Upstream") if response.status == 200 else str(response.status)

            assert served_by("/users/42") == "a"
            assert served_by("/users/42/profile") == "b"
            assert served_by("/users/42/other") == "404"
            assert served_by("/users/") == "404"
            assert served_by("/x", "api.example.com") == "b"
            assert served_by("/x", "API.example.com:8080") == "b"
            assert served_by("/x", "eu.example.com") == "c"
            assert served_by("/x", "example.com") == "404"
            assert served_by("/p") == "c"


def test_pipelined_requests_answered_in_order(gateway: GatewayProcess) -> None:
    requests = b"".join(
        f"GET /echo/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode() for i in range(20))
    requests += b"POST /echo/body HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello"
    requests += b"GET /echo/last HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    raw = raw_exchange(gateway.port, requests)
    assert raw.endswith(b"<EOF>")
    responses = parse_responses(raw)
    targets = [json.loads(body)["target"] for _, _, body in responses]
    assert targets == [f"/echo/{i}" for i in range(20)] + ["/echo/body", "/echo/last"]
    assert json.loads(responses[20][2])["body_length"] == 5


def complete_response(data: bytes) -> bool:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return False
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    return len(body) >= length


def test_keep_alive_reuses_client_and_upstream_connections(gateway: GatewayProcess, upstream: Upstream) -> None:
    # A raw socket, not http.client (which reconnects silently when the server closes): every
    # response must come back on this one connection.
    mark = upstream.mark()
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        for i in range(50):
            sock.sendall(f"GET /echo/{i} HTTP/1.1\r\nHost: x\r\n\r\n".encode())
            data = b""
            while not complete_response(data):
                chunk = sock.recv(65536)
                assert chunk, f"the gateway closed the client connection after {i} requests"
                data += chunk
            ((status, _, body),) = parse_responses(data)
            assert status == 200 and json.loads(body)["target"] == f"/echo/{i}"
    # one client connection is one worker's: one upstream connection carried all 50 requests
    assert upstream.accepted - mark.accepted == 1
    assert len(upstream.bytes_since(mark)) == 1


def test_head_and_bodyless_statuses(gateway: GatewayProcess) -> None:
    raw = raw_exchange(gateway.port, b"HEAD /bytes/1000 HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /status/204 HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /status/304 HTTP/1.1\r\nHost: x\r\n\r\n"
                       b"GET /status/201 HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    responses = raw.split(b"HTTP/1.1 ")[1:]
    assert [r[:3] for r in responses] == [b"200", b"204", b"304", b"201"]
    assert b"Content-Length: 1000" in responses[0] or b"content-length: 1000" in responses[0]
    assert responses[0].endswith(b"\r\n\r\n")  # no body after a HEAD response
    assert responses[1].endswith(b"\r\n\r\n") and responses[2].endswith(b"\r\n\r\n")
    assert responses[3].endswith(b"status 201\n<EOF>")


def test_http10_client(gateway: GatewayProcess) -> None:
    raw = raw_exchange(gateway.port, b"GET /echo HTTP/1.0\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200")
    assert raw.endswith(b"<EOF>")  # 1.0 without keep-alive: closed after the response
    # HTTP/1.0 with a chunked upstream response: the client gets the payload, close-delimited
    raw = raw_exchange(gateway.port, b"GET /chunked/3000 HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"chunked" not in head.lower()
    assert body == b"x" * 3000 + b"<EOF>"
    # HTTP/1.0 keep-alive is honoured
    raw = raw_exchange(gateway.port, b"GET /echo HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", timeout=1.0)
    assert b"Connection: keep-alive" in raw and not raw.endswith(b"<EOF>")


def test_expect_100_continue(gateway: GatewayProcess) -> None:
    with socket.create_connection(("127.0.0.1", gateway.port), timeout=5) as sock:
        sock.sendall(b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nExpect: 100-continue\r\n\r\n")
        assert sock.recv(100) == b"HTTP/1.1 100 Continue\r\n\r\n"
        sock.sendall(b"hello")
        data = b""
        while b"}" not in data:
            data += sock.recv(65536)
        assert data.startswith(b"HTTP/1.1 200")
        body = json.loads(data.split(b"\r\n\r\n", 1)[1])
        assert body["body_length"] == 5
        assert "expect" not in [k for k, _ in body["headers"]]


def test_informational_response_passed_through(gateway: GatewayProcess) -> None:
    raw = raw_exchange(gateway.port, b"GET /early-hints HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 103")
    assert b"\r\n\r\nHTTP/1.1 200 " in raw


def test_malformed_requests_get_400_and_close(gateway: GatewayProcess, upstream: Upstream) -> None:
    mark = upstream.mark()
    for bad in (b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
                b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
                b"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
                b"GET / HTTP/1.1\nHost: x\n\n",
                b"GARBAGE\r\n\r\n"):
        raw = raw_exchange(gateway.port, bad)
        assert raw.startswith(b"HTTP/1.1 400"), (bad, raw)
        assert b"Connection: close" in raw and raw.endswith(b"<EOF>")
    # judged on the upstream's raw bytes: h11 would refuse most of these, so a forwarded one
    # would never show in upstream.received
    upstream.assert_nothing_forwarded(mark)


def test_limits_414_431_413(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config = base_config(port, upstream.port, max_request_line=256, max_header_size=1024,
                         client_max_body_size=1000)
    with GatewayProcess(tmp_path, config):
        raw = raw_exchange(port, b"GET /" + b"a" * 400 + b" HTTP/1.1\r\nHost: x\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 414")
        raw = raw_exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 2000 + b"\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 431")
        raw = raw_exchange(port, b"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n" + b"c" * 5000)
        assert raw.startswith(b"HTTP/1.1 413") and raw.endswith(b"<EOF>")
        # chunked bodies are counted as they stream
        chunk = b"3e8\r\n" + b"d" * 1000 + b"\r\n"
        head = b"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"
        raw = raw_exchange(port, head + chunk * 3 + b"0\r\n\r\n")
        assert raw.startswith(b"HTTP/1.1 413") or raw in (b"<EOF>", b"<RST>")
        response, _ = request(port, "POST", "/upload", body=b"e" * 1000)
        assert response.status == 200
    assert all(r.body_length <= 1000 for r in upstream.received)


def test_slow_client_header_gets_408_and_idle_keepalive_closes(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config = base_config(port, upstream.port, client_header_timeout=0.5, keepalive_timeout=0.5)
    with GatewayProcess(tmp_path, config):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n")  # never finishes the head
            data = sock.recv(1000)
            assert data.startswith(b"HTTP/1.1 408")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
            # the whole response first: head and body may come in separate segments
            first = b""
            while b"\r\n\r\n" not in first or \
                    len(parse_responses(first)[0][2]) < int(parse_responses(first)[0][1]["content-length"]):
                chunk = sock.recv(65536)
                assert chunk, first
                first += chunk
            assert first.startswith(b"HTTP/1.1 200")
            started = time.monotonic()
            rest = sock.recv(65536)  # idle: closed quietly, no 408 on a keep-alive connection
            assert rest == b"" and time.monotonic() - started < 4


def test_upstream_down_is_502_promptly(tmp_path: Path) -> None:
    port = free_port()
    dead = free_port()
    with GatewayProcess(tmp_path, base_config(port, dead)):
        started = time.monotonic()
        response, body = request(port, "GET", "/")
        assert response.status == 502
        assert time.monotonic() - started < 3


def test_upstream_slow_is_504(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config = base_config(port, upstream.port)
    config["upstreams"][0]["timeout"] = {"connect": 1, "send": 1, "read": 0.5}
    with GatewayProcess(tmp_path, config):
        started = time.monotonic()
        response, _ = request(port, "GET", "/slow/3")
        assert response.status == 504
        # after the read timeout (the gateway waited for the upstream), not long after it
        assert 0.5 <= time.monotonic() - started < 2.5
        response, _ = request(port, "GET", "/echo")
        assert response.status == 200


def test_pooled_connection_closed_by_upstream_is_retried(tmp_path: Path) -> None:
    # Each upstream connection answers one request, then reads the next and closes unanswered:
    # every reuse of a pooled connection meets one that went stale, and only the gateway's
    # retry on a fresh connection turns it into a 200. (Closing after the answer, as /then-close
    # does, lets the gateway see the close before reuse: no retry happens at all.)
    port = free_port()
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\nok\n"
    with RawUpstream(answer, close_after=False, drop_after=1) as up:
        with GatewayProcess(tmp_path, base_config(port, up.port), workers=1):
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            for _ in range(20):
                conn.request("GET", "/echo")
                response = conn.getresponse()
                assert response.status == 200 and response.read() == b"ok\n"
            conn.close()
            # a POST is not retried (not idempotent): the stale connection costs it a 502
            response, _ = request(port, "POST", "/echo", body=b"x")
            assert response.status == 502
        assert up.dropped >= 20, up.dropped  # the retries really happened


def test_round_robin_over_weighted_nodes(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("a") as a, Upstream("b") as b:
        config = base_config(port)
        config["upstreams"] = [{"id": "up", "nodes": [
            {"host": "127.0.0.1", "port": a.port, "weight": 3},
            {"host": "127.0.0.1", "port": b.port, "weight": 1}]}]
        config["routes"] = [{"id": "all", "uri": "/*", "upstream_id": "up"}]
        with GatewayProcess(tmp_path, config, workers=1):
            for _ in range(40):
                response, _ = request(port, "GET", "/echo")
                assert response.status == 200
        assert (len(a.received), len(b.received)) == (30, 10)


def test_dead_node_is_skipped_by_retry(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("a") as a:
        config = base_config(port)
        config["upstreams"] = [{"id": "up", "retries": 1, "nodes": [
            {"host": "127.0.0.1", "port": free_port()}, {"host": "127.0.0.1", "port": a.port}]}]
        config["routes"] = [{"id": "all", "uri": "/*", "upstream_id": "up"}]
        with GatewayProcess(tmp_path, config):
            for _ in range(6):
                response, _ = request(port, "GET", "/echo")
                assert response.status == 200


def test_embedded_default_config_answers(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    env = {**os.environ, "XDG_STATE_HOME": str(tmp_path)}
    proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-w", "1"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                response, body = request(9080, "GET", "/anything")
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        assert response.status == 200
        assert json.loads(body) == {"message": "hello from gateway"}
    finally:
        proc.terminate()
        proc.wait(10)


class EchoAfterUpgrade:
    """A raw upstream that accepts an Upgrade with 101 and then echoes bytes upper-cased."""

    def __init__(self) -> None:
        import threading
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.port = self.sock.getsockname()[1]
        self.heads: list[bytes] = []
        threading.Thread(target=self.serve, daemon=True).start()

    def serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                head, _, rest = data.partition(b"\r\n\r\n")
                self.heads.append(head)
                conn.sendall(b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: echo\r\nConnection: Upgrade\r\n\r\n")
                if rest:
                    conn.sendall(rest.upper())
                while chunk := conn.recv(4096):
                    conn.sendall(chunk.upper())


def test_websocket_upgrade_is_tunnelled_when_enabled(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    echo_server = EchoAfterUpgrade()
    config = base_config(port)
    config["upstreams"] = [{"id": "ws", "nodes": [{"host": "127.0.0.1", "port": echo_server.port}]},
                           {"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
    config["routes"] = [{"id": "ws", "uri": "/ws", "upstream_id": "ws", "enable_websocket": True},
                        {"id": "plain", "uri": "/*", "upstream_id": "up"}]
    with GatewayProcess(tmp_path, config):
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(b"GET /ws HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nfirst")
            data = b""
            while b"FIRST" not in data:
                data += sock.recv(4096)
            assert data.startswith(b"HTTP/1.1 101 ")
            assert b"Upgrade: echo" in data and b"Connection: upgrade" in data
            for word in (b"hello", b"world"):
                sock.sendall(word)
                assert sock.recv(4096) == word.upper()
        head = echo_server.heads[0].lower()
        assert b"upgrade: echo" in head and b"connection: upgrade" in head
        # without enable_websocket the upgrade is not asked of the upstream
        got = echo(port, "GET", "/echo", headers={"Connection": "Upgrade", "Upgrade": "echo"})
        assert "upgrade" not in dict(got["headers"])
    echo_server.sock.close()
