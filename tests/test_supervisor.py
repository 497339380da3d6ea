"""The master must not give up: a connection flood on the admin listener cannot take the fds the
supervisor needs, a failed respawn is retried, and accept failures are logged like nginx's."""
from __future__ import annotations

import os
import resource
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.support.gateway import GatewayProcess, base_config, http_get
from tests.support.upstream import Upstream, free_port


def admin_port(gw: GatewayProcess) -> int:
    import yaml

    return int(yaml.safe_load(gw.config_path.read_text())["gateway"]["admin"]["listen"]
               .rsplit(":", 1)[1])


def open_idle(port: int, count: int) -> list[socket.socket]:
    out = []
    for _ in range(count):
        try:
            out.append(socket.create_connection(("127.0.0.1", port), timeout=2))
        except OSError:
            break
    return out


def wait_replaced(gw: GatewayProcess, victim: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        workers = gw.status().get("workers", [])
        pids = [w["pid"] for w in workers]
        if len(workers) == gw.workers and victim not in pids and all(w["version"] >= 1 for w in workers):
            return
        assert time.monotonic() < deadline, gw.logs()
        time.sleep(0.05)


def test_admin_connection_flood_does_not_stop_the_supervisor(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        with GatewayProcess(tmp_path, config) as gw:
            assert gw.proc is not None
            # The master keeps the fd limit it was given here (1024, a common default).
            resource.prlimit(gw.proc.pid, resource.RLIMIT_NOFILE, (1024, 1024))
            flood = open_idle(admin_port(gw), 1500)
            try:
                time.sleep(0.5)
                victim = gw.worker_pids()[0]
                os.kill(victim, signal.SIGKILL)
                wait_replaced(gw, victim, 10)
                assert http_get(gw.port, "/echo")[0].status == 200
                assert "admin connection limit" in gw.logs()
            finally:
                for sock in flood:
                    sock.close()


def test_idle_admin_connections_are_closed_after_the_header_timeout(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        config["gateway"]["admin"]["header_timeout"] = 0.5
        with GatewayProcess(tmp_path, config) as gw:
            sock = socket.create_connection(("127.0.0.1", admin_port(gw)), timeout=5)
            sock.settimeout(5)
            assert sock.recv(100) == b""  # closed by the master, no key ever needed
            sock.close()


def test_respawn_that_fails_is_retried_until_it_succeeds(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        config["gateway"]["admin"]["max_connections"] = 100
        with GatewayProcess(tmp_path, config) as gw:
            assert gw.proc is not None
            master = gw.proc.pid
            flood = open_idle(admin_port(gw), 60)
            late: list[socket.socket] = []
            try:
                time.sleep(0.5)
                used = len(os.listdir(f"/proc/{master}/fd"))
                # Fewer fds than the master holds now: respawning a worker needs a socketpair and
                # fails with EMFILE until the admin clients go; new admin clients cannot be
                # accepted either.
                resource.prlimit(master, resource.RLIMIT_NOFILE, (used - 20, used - 20))
                late += open_idle(admin_port(gw), 3)
                victim = gw.worker_pids()[0]
                os.kill(victim, signal.SIGKILL)
                deadline = time.monotonic() + 10
                while "respawn of worker" not in gw.logs():
                    assert time.monotonic() < deadline, gw.logs()
                    time.sleep(0.05)
                assert "Too many open files" in gw.logs()
            finally:
                for sock in flood + late:
                    sock.close()
            wait_replaced(gw, victim, 15)
            assert http_get(gw.port, "/echo")[0].status == 200
            assert "accept4() failed (24: Too many open files)" in gw.logs()
            assert "Task exception was never retrieved" not in gw.logs()


def test_worker_accept_failures_are_logged(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            (worker,) = gw.worker_pids()
            used = len(os.listdir(f"/proc/{worker}/fd"))
            soft, hard = resource.prlimit(worker, resource.RLIMIT_NOFILE)
            resource.prlimit(worker, resource.RLIMIT_NOFILE, (used + 4, hard))
            clients = open_idle(gw.port, 20)
            try:
                deadline = time.monotonic() + 10
                while "accept4() failed (24: Too many open files)" not in gw.logs():
                    assert time.monotonic() < deadline, gw.logs()
                    time.sleep(0.05)
            finally:
                for sock in clients:
                    sock.close()
            resource.prlimit(worker, resource.RLIMIT_NOFILE, (soft, hard))
            assert http_get(gw.port, "/echo")[0].status == 200
            assert gw.worker_pids() == [worker]


def test_listen_backlog_is_the_one_asked_for(tmp_path: Path) -> None:
    somaxconn = int(Path("/proc/sys/net/core/somaxconn").read_text())
    with Upstream("up") as upstream:
        with GatewayProcess(tmp_path, base_config(free_port(), upstream.port)) as gw:
            out = subprocess.run(["ss", "-ltnH", f"sport = :{gw.port}"], capture_output=True,
                                 text=True, check=True).stdout
            backlogs = {int(line.split()[2]) for line in out.splitlines() if line.strip()}
            assert backlogs == {min(4096, somaxconn)}, out
