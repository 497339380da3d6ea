"""Chaos at the upstream while a pool of clients runs: the upstream killed, stalled, or resetting
its connection in the middle of a body (the request's or the response's). Each test says what
the clients of the broken upstream see and within how long, and that the same worker keeps
serving the clients of another upstream without a failure."""
from __future__ import annotations

import os
import signal
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.chaos.conftest import chaos_config
from tests.chaos.load import LoadPool, assert_all_served, summary
from tests.chaos.upstreams import ResettingUpstream, reset
from tests.support.gateway import GatewayProcess, wait_until
from tests.support.upstream import Upstream, free_port
from tests.support.upstream_process import UpstreamProcess

VICTIM, STEADY = "victim.test", "steady.test"
UPLOAD = b"u" * (1 << 20)


@contextmanager
def victim_under_load(tmp_path: Path, steady: Upstream, victim_port: int,
                      request: tuple[str, str, bytes | None]) -> Iterator[LoadPool]:
    """A one-worker gateway in front of the victim and the steady upstream, four clients of each
    in a loop: the victim's sending ``request`` (method, path, body), the steady one's GET /."""
    with GatewayProcess(tmp_path, chaos_config(free_port(), steady.port, victim_port),
                        workers=1) as gw, \
            LoadPool(gw.port, {VICTIM: (*request, 4), STEADY: ("GET", "/", None, 4)}) as load:
        yield load


def assert_steady_served(load: LoadPool, after: float, minimum: int = 20) -> None:
    """The other upstream's clients, on the same (single) worker, saw only complete 200s."""
    load.wait_for(STEADY, minimum, after=after)
    assert_all_served(load.seen(STEADY, after), minimum)


def test_upstream_killed_gives_502_at_once_and_is_used_again_when_back(
        tmp_path: Path, steady: Upstream) -> None:
    with UpstreamProcess("victim") as victim, \
            victim_under_load(tmp_path, steady, victim.port, ("GET", "/bytes/262144", None)) as load:
        load.wait_for(VICTIM, 20)
        assert all(o.whole for o in load.seen(VICTIM)), summary(load.seen(VICTIM))
        killed = time.monotonic()
        victim.kill()
        # requests in flight when it died: a whole response, a 502, or a body cut short (the
        # connection closed, so the client knows); none waits for a timeout
        settled = killed + 0.3
        load.wait_for(VICTIM, 40, after=settled)
        around = load.seen(VICTIM, killed - 1.0, settled)
        assert all(o.took < 2.0 and "timed out" not in (o.error or "") for o in around), \
            summary(around)
        after = load.seen(VICTIM, settled)
        assert all(o.status == 502 and o.error is None for o in after), summary(after)
        assert max(o.took for o in after) < 1.0, summary(after)  # refused: 502 at once
        assert_steady_served(load, killed)

        victim.start()  # back on the same port
        load.wait_served(VICTIM, time.monotonic(), "the upstream, back, was not used again")


def test_upstream_stalled_gives_504_after_its_read_timeout(tmp_path: Path, steady: Upstream) -> None:
    with UpstreamProcess("victim") as victim, \
            victim_under_load(tmp_path, steady, victim.port, ("GET", "/", None)) as load:
        load.wait_for(VICTIM, 20)
        stopped = time.monotonic()
        victim.signal(signal.SIGSTOP)  # the kernel still accepts for it; it answers nothing
        load.wait_for(VICTIM, 8, after=stopped + 0.1)
        stalled = load.seen(VICTIM, stopped + 0.1)
        # timeout.read is 1 s: a 504 no sooner (the gateway really waited) and no much later
        assert all(o.status == 504 and o.error is None for o in stalled), summary(stalled)
        assert all(0.9 <= o.took < 3.0 for o in stalled), summary(stalled)
        assert_steady_served(load, stopped)

        resumed = time.monotonic()
        victim.signal(signal.SIGCONT)
        load.wait_served(VICTIM, resumed, "the upstream, resumed, was not used again")


def test_upstream_reset_mid_response_body_reaches_the_client_as_a_cut(
        tmp_path: Path, steady: Upstream) -> None:
    with ResettingUpstream("response") as victim, \
            victim_under_load(tmp_path, steady, victim.port, ("GET", "/", None)) as load:
        started = time.monotonic()
        load.wait_for(VICTIM, 30)
        seen = load.seen(VICTIM)
        assert victim.resets >= 30
        # never a response that looks whole: the head was relayed (200) and the connection
        # closed before its Content-Length, or nothing was relayed yet and the client got 502
        assert not any(o.whole for o in seen), summary(seen)
        assert all((o.status == 200 and (o.error or not o.body_ok)) or o.status == 502
                   for o in seen), summary(seen)
        assert max(o.took for o in seen) < 2.0, summary(seen)
        assert_steady_served(load, started)


def test_upstream_reset_mid_request_body_gives_502_and_frees_the_client(
        tmp_path: Path, steady: Upstream) -> None:
    with ResettingUpstream("request") as victim, \
            victim_under_load(tmp_path, steady, victim.port,
                              ("POST", "/upload", UPLOAD)) as load:
        started = time.monotonic()
        load.wait_for(VICTIM, 20)
        seen = load.seen(VICTIM)
        assert victim.resets >= 20
        # the upstream went away before answering: a 502, or (when the gateway closed while the
        # client was still sending) a connection the client sees closed; never a success
        assert all(o.status == 502 or (o.status is None and o.error) for o in seen), summary(seen)
        assert sum(o.status == 502 for o in seen) >= len(seen) // 2, summary(seen)
        assert max(o.took for o in seen) < 2.0, summary(seen)
        assert_steady_served(load, started)


def open_fds(pid: int) -> int:
    return len(os.listdir(f"/proc/{pid}/fd"))


def test_clients_reset_mid_body_free_their_upstream_connections(
        tmp_path: Path, steady: Upstream) -> None:
    """The other direction: clients that reset their connection mid-upload and mid-download.
    The worker drops their upstream connections (nothing leaks) and serves everybody else."""
    with GatewayProcess(tmp_path, chaos_config(free_port(), steady.port, steady.port),
                        workers=1) as gw, \
            LoadPool(gw.port, {STEADY: ("GET", "/", None, 4)}) as load:
        (worker,) = gw.worker_pids()
        load.wait_for(STEADY, 20)
        baseline = open_fds(worker)
        started = time.monotonic()
        for i in range(60):
            sock = socket.create_connection(("127.0.0.1", gw.port), timeout=10)
            if i % 2:
                sock.sendall(b"POST /upload HTTP/1.1\r\nHost: steady.test\r\n"
                             b"Content-Length: 1048576\r\n\r\n" + b"u" * 65536)
            else:
                sock.sendall(b"GET /bytes/16777216 HTTP/1.1\r\nHost: steady.test\r\n\r\n")
                got = 0
                while got < 65536:
                    got += len(sock.recv(65536))
            time.sleep(0.02)  # the gateway has the exchange going with the upstream
            reset(sock)
        assert_steady_served(load, started)
        load.stop()
        wait_until(lambda: open_fds(worker) <= baseline + 4, 5,
                   lambda: f"{open_fds(worker) - baseline} descriptors more than before the resets")
        assert gw.worker_pids() == [worker]
