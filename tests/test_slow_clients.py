"""Clients that do not read, and upstreams that do not read: what one connection may make a
worker hold is bounded, and the side that stalls is the one blamed and cut."""
from __future__ import annotations

import re
import socket
import threading
import time
from pathlib import Path

from tests.support.gateway import GatewayProcess, base_config, wait_until
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import Upstream, free_port


def rss_kib(pid: int) -> int:
    """Peak resident memory (VmHWM): what the worker held at its worst, not what is left."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1])
    raise AssertionError("no VmHWM")


def test_pipelining_client_that_never_reads_is_bounded_and_cut(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("up") as upstream:
        config = base_config(port, upstream.port, send_timeout=2)
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            (worker,) = gw.worker_pids()
            before = rss_kib(worker)
            sock = socket.create_connection(("127.0.0.1", port))
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            request = b"GET /bytes/65536 HTTP/1.1\r\nHost: a\r\n\r\n"
            sock.settimeout(5)
            # 3,000 pipelined requests (~190 MiB of responses), none of them read back. The
            # requests themselves fit in the kernel's buffers; what must stay bounded is how many
            # the gateway answers (and holds) once the client's write buffer is full.
            for _ in range(150):
                sock.sendall(request * 20)
            time.sleep(1.0)
            answered = len(upstream.received)
            grown_mib = (rss_kib(worker) - before) / 1024
            assert answered < 200, f"the gateway fetched {answered} responses nobody reads"
            assert grown_mib < 24, f"worker RSS grew {grown_mib:.1f} MiB"
            # No progress for send_timeout: the connection is closed and it is logged like nginx.
            wait_until(lambda: "client timed out while sending" in gw.logs(), 10, gw.logs)
            sock.settimeout(5)
            closed = False
            try:
                while sock.recv(1 << 20):
                    pass
                closed = True
            except (TimeoutError, ConnectionResetError):
                closed = True
            assert closed
            sock.close()
            # the worker keeps serving everybody else
            other = socket.create_connection(("127.0.0.1", port), timeout=5)
            other.sendall(b"GET /echo HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
            assert other.recv(100).startswith(b"HTTP/1.1 200")
            other.close()
            assert gw.worker_pids() == [worker]


def test_slow_reader_that_makes_progress_is_not_cut(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("up") as upstream:
        config = base_config(port, upstream.port, send_timeout=1)
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            size = 16 * 1024 * 1024  # more than the kernel's buffers, so the gateway's fills
            sock.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" % size)
            received = 0
            started = time.monotonic()
            # ~3 s of reading in small sips, longer than send_timeout, but never idle for it
            while True:
                chunk = sock.recv(65536)
                if not chunk:
                    break
                received += len(chunk)
                if time.monotonic() - started < 3:
                    time.sleep(0.02)
            sock.close()
            assert received > size, received
            assert "client timed out while sending" not in gw.logs()


def test_upload_to_an_upstream_that_stops_reading_is_504_not_408(tmp_path: Path) -> None:
    port = free_port()
    with RawUpstream(stall=True) as up:
        config = base_config(port, up.port, client_body_timeout=1)
        config["upstreams"][0]["timeout"] = {"connect": 1, "send": 2, "read": 30}
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            sock = socket.create_connection(("127.0.0.1", port), timeout=15)
            size = 256 * 1024 * 1024
            sock.sendall(b"POST /upload HTTP/1.1\r\nHost: a\r\nContent-Length: %d\r\n\r\n" % size)
            stop = threading.Event()

            def pump() -> None:
                piece = b"x" * 65536
                try:
                    while not stop.is_set():
                        sock.send(piece)
                except OSError:
                    pass

            sender = threading.Thread(target=pump, daemon=True)
            sender.start()
            response = b""
            try:
                while b"\r\n\r\n" not in response:
                    chunk = sock.recv(65536)
                    if not chunk:
                        break
                    response += chunk
            finally:
                stop.set()
                sock.close()
                sender.join(5)
            assert response.startswith(b"HTTP/1.1 504 "), response[:200]
            # the log says how long the upstream left the request unread (send timeout: 2 s)
            took = re.search(r"upstream timed out after (\d+\.\d+) s while sending request to",
                             gw.logs())
            assert took and 2 <= float(took[1]) < 4, gw.logs()


def test_a_slow_client_slows_the_upstream_down(tmp_path: Path) -> None:
    """README: back-pressure from a slow client reaches the upstream. A client that reads
    nothing of a 256 MiB response makes the gateway stop reading its upstream, which then
    stops writing; the client reading again lets it all through."""
    port = free_port()
    size = 256 * 1024 * 1024
    with Upstream("up") as upstream:
        with GatewayProcess(tmp_path, base_config(port, upstream.port), workers=1) as gw:
            (worker,) = gw.worker_pids()
            before = rss_kib(worker)
            sock = socket.create_connection(("127.0.0.1", port), timeout=10)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 16384)
            sock.sendall(b"GET /bytes/%d HTTP/1.1\r\nHost: a\r\n\r\n" % size)
            wait_until(lambda: upstream.write_pauses > 0, 10,
                       "the upstream was never made to wait")
            time.sleep(1.0)
            held = upstream.bytes_sent
            time.sleep(1.0)
            # stalled: the upstream wrote next to nothing more while the client read nothing
            assert upstream.bytes_sent - held <= 1024 * 1024, upstream.bytes_sent - held
            assert upstream.bytes_sent < size // 4
            assert (rss_kib(worker) - before) / 1024 < 24
            received = 0
            while received < size:  # reading again: everything arrives
                chunk = sock.recv(1 << 20)
                assert chunk, f"closed after {received} bytes"
                received += len(chunk)
            sock.close()
            assert received >= size

