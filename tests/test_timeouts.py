"""Timeouts are deadlines: never early (a periodic sweep must not round them down), and what a
timeout or the end of a graceful shutdown cuts is logged."""
from __future__ import annotations

import signal
import socket
import threading
import time
from pathlib import Path

from tests.support.gateway import GatewayProcess, base_config, http_get
from tests.support.upstream import Upstream, free_port


def test_header_timeout_is_never_early(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port, client_header_timeout=1.0)
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            for _ in range(3):
                sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
                sock.sendall(b"GET / HTTP/1.1\r\nHost: a\r\n")  # head never finished
                started = time.monotonic()
                answer = sock.recv(1000)
                waited = time.monotonic() - started
                sock.close()
                assert answer.startswith(b"HTTP/1.1 408 ")
                assert waited >= 1.0, f"408 after {waited:.3f} s for a 1 s timeout"


def test_upstream_read_timeout_is_never_early(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        config["upstreams"][0]["timeout"] = {"connect": 1, "send": 1, "read": 0.6}
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            for _ in range(3):
                started = time.monotonic()
                response, _ = http_get(gw.port, "/slow/3")
                waited = time.monotonic() - started
                assert response.status == 504
                assert waited >= 0.6, f"504 after {waited:.3f} s for a 0.6 s timeout"


def test_requests_cut_by_the_end_of_a_graceful_shutdown_are_logged(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port, graceful_shutdown_timeout=0.5)
        gw = GatewayProcess(tmp_path, config, workers=1)
        with gw:
            outcome: dict[str, object] = {}

            def slow() -> None:
                try:
                    outcome["response"] = http_get(gw.port, "/slow/5")
                except OSError as exc:
                    outcome["error"] = exc

            thread = threading.Thread(target=slow)
            thread.start()
            time.sleep(0.3)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGTERM)
            thread.join(10)
            assert gw.proc.wait(10) == 0
        assert "error" in outcome  # the client saw its connection cut, not a hang
        assert "graceful shutdown timed out: closing 1 connection(s) with a request in flight" \
            in gw.logs()


def test_client_body_timeout_gives_408_between_two_reads_of_the_body(tmp_path: Path) -> None:
    """README: `client_body_timeout` is the longest wait between two reads of a request body;
    a client that stops sending gets 408 after it (not before), and nothing else waits."""
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port, client_body_timeout=1.0)
        config["upstreams"][0]["timeout"] = {"connect": 1, "send": 30, "read": 30}
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n")
            for _ in range(3):  # progress within the timeout keeps the request alive
                time.sleep(0.6)
                sock.sendall(b"x" * 10)
            started = time.monotonic()  # then the client stalls with 70 bytes still owed
            answer = sock.recv(1000)
            waited = time.monotonic() - started
            sock.close()
            assert answer.startswith(b"HTTP/1.1 408 "), answer
            assert 1.0 <= waited < 3.0, f"408 after {waited:.3f} s for a 1 s timeout"
            assert http_get(gw.port, "/echo")[0].status == 200


def test_upstream_connect_timeout_gives_504(tmp_path: Path) -> None:
    """README: `timeout.connect`. An upstream whose listen backlog is full: the kernel drops
    the gateway's SYNs, so the connect hangs until the timeout, then 504 (not before)."""
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    try:
        for _ in range(8):  # never accepted: the backlog is full after the first one or two
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(full.getsockname())
            fillers.append(filler)
        time.sleep(0.2)
        config = base_config(free_port(), full.getsockname()[1])
        config["upstreams"][0]["timeout"] = {"connect": 0.5, "send": 5, "read": 5}
        config["upstreams"][0]["retries"] = 0
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            for _ in range(2):
                started = time.monotonic()
                response, _ = http_get(gw.port, "/echo")
                waited = time.monotonic() - started
                assert response.status == 504
                assert 0.5 <= waited < 2.5, f"504 after {waited:.3f} s for a 0.5 s timeout"
            assert "cannot connect to upstream" in gw.logs()
    finally:
        for filler in fillers:
            filler.close()
        full.close()
