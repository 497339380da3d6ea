"""Zero-downtime restarts under real load (wrk, keep-alive and a new connection per request):
a reload that needs new worker processes (worker count, listen addresses, plugin code) restarts
them one at a time, and a second gateway takes over the ports while the first drains. Nothing
may fail: no non-2xx, no socket error (connect, read, write, timeout)."""
from __future__ import annotations

import copy
import json
import signal
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from gateway.server.handoff import request_sockets
from gateway.server.listeners import ListenGroup, steering_program
from tests.support.gateway import GatewayProcess, base_config, http_get, wait_until
from tests.support.load import WRK, Load, serving_pids
from tests.support.processes import gone
from tests.support.upstream import Upstream, free_port

pytestmark = pytest.mark.skipif(WRK is None, reason="needs wrk")

LOAD_SECONDS = 10


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream("up") as up:
        yield up


def config_for(upstream: Upstream, port: int, workers: int = 2) -> dict[str, Any]:
    return base_config(port, upstream.port, workers=workers, graceful_shutdown_timeout=5)


def under_load(port: int, operation: Callable[[], None], seconds: int = LOAD_SECONDS) -> None:
    """Runs ``operation`` while wrk loads ``port``; fails on any failed request."""
    load = Load(port, seconds)
    try:
        time.sleep(1.0)
        operation()
        assert load.running(), "the operation outlasted the load: nothing was proved"
        results = load.results()
    finally:
        load.stop()
    for name, result in results.items():
        assert result.requests > 100, f"{name}: too little load\n{result.output}"
        assert result.errors == 0, f"{name}: {result.non_2xx} non-2xx, socket errors " \
                                   f"{result.socket_errors}\n{result.output}"


def wait_serving(pids: list[int], port: int) -> None:
    wait_until(lambda: all(n > 0 for n in serving_pids(pids, port).values()), 5,
               lambda: f"not every new worker serves: {serving_pids(pids, port)}")


def reload(gw: GatewayProcess) -> None:
    result = gw.cli("reload")
    assert result.returncode == 0, result.stderr
    assert f"master {gw.proc.pid if gw.proc else '?'}" in result.stdout


def test_worker_count_change_adds_and_retires_workers_under_load(
        tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config = config_for(upstream, port)
    with GatewayProcess(tmp_path, config, workers=2, workers_flag=False) as gw:
        first = gw.worker_pids()
        grown: list[int] = []

        def grow_then_shrink() -> None:
            config["gateway"]["workers"] = 3
            gw.write_config(config)
            reload(gw)
            gw.workers = 3
            gw.wait_version(2)
            grown[:] = gw.worker_pids()
            wait_serving(grown[2:], port)
            config["gateway"]["workers"] = 2
            gw.write_config(config)
            reload(gw)
            gw.workers = 2
            gw.wait_version(3)
            wait_until(lambda: gone(grown[2]), 10, "the retired worker did not exit")

        under_load(port, grow_then_shrink)
        # the others only took the new config: adding or removing a worker restarts nobody
        assert grown[:2] == first and grown[2] not in first
        assert gw.worker_pids() == first
        assert "workers 2 -> 3" in gw.logs() and "workers 3 -> 2" in gw.logs()


def test_listen_change_restarts_workers_one_at_a_time_under_load(
        tmp_path: Path, upstream: Upstream) -> None:
    port, added = free_port(), free_port()
    config = config_for(upstream, port)
    with GatewayProcess(tmp_path, config) as gw:
        old = gw.worker_pids()

        def add_listen_address() -> None:
            config["gateway"]["listen"].append(f"127.0.0.1:{added}")
            gw.write_config(config)
            reload(gw)
            gw.wait_version(2)
            new = gw.worker_pids()
            assert set(new).isdisjoint(old)
            wait_until(lambda: all(gone(p) for p in old), 10, "old workers did not exit")
            wait_serving(new, port)

        under_load(port, add_listen_address)
        assert http_get(added, "/echo")[0].status == 200
        logs = gw.logs()
        # each new worker served before its predecessor was told to drain
        assert logs.count("replaced: pid") == 2, logs


def test_reload_with_an_address_that_cannot_be_bound_is_rejected(
        tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config = config_for(upstream, port)
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen(1)  # no SO_REUSEPORT: nobody else can listen here
    try:
        with GatewayProcess(tmp_path, config) as gw:
            pids = gw.worker_pids()
            bad = copy.deepcopy(config)
            bad["gateway"]["listen"].append(f"127.0.0.1:{taken.getsockname()[1]}")
            gw.write_config(bad)
            reload(gw)
            wait_until(lambda: gw.status().get("reloads", {}).get("rejected", 0) >= 1, 10,
                       gw.logs)
            assert f"cannot listen on 127.0.0.1:{taken.getsockname()[1]}" in gw.logs()
            assert gw.status()["version"] == 1 and gw.worker_pids() == pids
            assert http_get(port, "/echo")[0].status == 200
    finally:
        taken.close()


PLUGIN = '''
from typing import Any
from gateway.plugins import Plugin


class Stamp(Plugin):
    name = "stamp"

    def access(self, ctx: Any) -> None:
        ctx.set_upstream_header("X-Code", "{version}")
'''


@contextmanager
def stamped_gateway(tmp_path: Path, upstream: Upstream,
                    port: int) -> Iterator[tuple[GatewayProcess, Path, Callable[[], str]]]:
    """A gateway whose route runs the plugin code of tmp_path/code/rolling_stamp.py (PLUGIN,
    version v1): the gateway, that module's file, and the version a request sees now."""
    code = tmp_path / "code"
    code.mkdir()
    module = code / "rolling_stamp.py"
    module.write_text(PLUGIN.format(version="v1"))
    config = config_for(upstream, port)
    config["routes"][0]["plugins"] = {"rolling_stamp:Stamp": {}}
    with GatewayProcess(tmp_path, config, env={"PYTHONPATH": str(code)}) as gw:

        def seen_code() -> str:
            body = json.loads(http_get(port, "/echo")[1])
            return dict(body["headers"]).get("x-code", "")

        yield gw, module, seen_code


def test_plugin_code_change_restarts_workers_under_load(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    with stamped_gateway(tmp_path, upstream, port) as (gw, module, seen_code):
        old = gw.worker_pids()
        assert seen_code() == "v1"

        def change_the_code() -> None:
            module.write_text(PLUGIN.format(version="v2"))
            reload(gw)
            gw.wait_version(2)
            wait_until(lambda: all(gone(p) for p in old), 10, "old workers did not exit")

        under_load(port, change_the_code)
        assert set(gw.worker_pids()).isdisjoint(old)
        assert seen_code() == "v2"
        assert "plugin code changed: rolling_stamp" in gw.logs()
        # broken code is refused, and the running workers keep the last good code
        module.write_text("raise RuntimeError('half-written')\n")
        pids = gw.worker_pids()
        reload(gw)
        wait_until(lambda: "cannot be imported: RuntimeError: half-written" in gw.logs(), 10,
                   gw.logs)
        assert gw.worker_pids() == pids and seen_code() == "v2"


WORKER_ONLY_FAILURE = """
import os, sys
# imports in the master, fails in a new worker while the marker file exists
if sys.argv[0] == "gateway-worker" and os.path.exists({marker!r}):
    raise RuntimeError("no such resource in a worker")
"""


def test_a_worker_that_cannot_start_stops_the_restart_and_the_old_workers_serve(
        tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    with stamped_gateway(tmp_path, upstream, port) as (gw, module, seen_code):
        old = gw.worker_pids()
        marker = tmp_path / "worker-cannot-start"

        def fail_then_fix() -> None:
            marker.touch()
            module.write_text(WORKER_ONLY_FAILURE.format(marker=str(marker))
                              + PLUGIN.format(version="v2"))
            reload(gw)
            wait_until(lambda: "rolling restart stopped at worker 0" in gw.logs(), 15, gw.logs)
            assert gw.worker_pids() == old and seen_code() == "v1"
            # nothing changed in the files, but the next reload finishes the restart
            marker.unlink()
            reload(gw)
            wait_until(lambda: set(gw.worker_pids()).isdisjoint(old)
                       and all(w["version"] == gw.status()["version"]
                               for w in gw.status()["workers"]), 15, gw.logs)

        under_load(port, fail_then_fix, seconds=15)
        assert seen_code() == "v2"
        assert "the last rolling restart did not finish" in gw.logs()


@pytest.mark.parametrize("before, after", [(2, 2), (3, 2)])
def test_second_gateway_takes_over_while_the_first_drains_under_load(
        tmp_path: Path, upstream: Upstream, before: int, after: int) -> None:
    """With fewer workers than sockets handed over, a worker accepts on several."""
    port = free_port()
    config = config_for(upstream, port)
    (tmp_path / "old").mkdir()
    (tmp_path / "new").mkdir()
    first = GatewayProcess(tmp_path / "old", config, workers=before).start()
    second_config = copy.deepcopy(config)
    second_config["gateway"]["admin"]["listen"] = f"127.0.0.1:{free_port()}"
    second = GatewayProcess(tmp_path / "new", second_config, workers=after)
    try:
        old = first.worker_pids()

        def take_over() -> None:
            second.start()
            assert f"taking over {before} listening socket(s) on" in second.logs()
            stopped = first.cli("stop", "--graceful")
            assert stopped.returncode == 0, stopped.stderr
            assert first.proc is not None and first.proc.wait(5) == 0
            assert all(gone(p) for p in old)
            wait_serving(second.worker_pids(), port)

        under_load(port, take_over, seconds=15)
        assert http_get(port, "/echo")[0].status == 200
        first.assert_no_lost_exceptions()
        # the new gateway answers takeover requests once the old one has let go: a third
        # deploy can take over from it
        handed: list[socket.socket] = []
        wait_until(lambda: bool(handed.extend(request_sockets(f"127.0.0.1:{port}")) or handed),
                   5, second.logs)
        assert len(handed) == before
        for sock in handed:
            sock.close()
    finally:
        first.stop(signal.SIGQUIT)
        second.stop()


def test_stop_and_reload_commands_say_when_nothing_runs(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, base_config(free_port()))
    for command in (["reload"], ["stop", "--graceful"]):
        result = gw.cli(*command)
        assert result.returncode == 1
        assert "no gateway is running for" in result.stderr


def test_steering_program_picks_only_the_sockets_that_stay() -> None:
    """The cBPF program returns one of the given group indices for any random value."""
    group = []
    first = socket.socket()
    try:
        first.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        first.bind(("127.0.0.1", 0))
        group.append(first)
        port = first.getsockname()[1]
        for _ in range(3):
            sock = socket.socket()
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            sock.bind(("127.0.0.1", port))
            group.append(sock)
        for sock in group:
            sock.listen(64)
            sock.setblocking(False)
        steered = ListenGroup(f"127.0.0.1:{port}")
        for slot, sock in enumerate(group):
            steered.add(sock, slot)
        steered.steer({1, 3})
        clients = [socket.create_connection(("127.0.0.1", port)) for _ in range(40)]
        time.sleep(0.1)
        accepted = []
        for sock in group:
            count = 0
            while True:
                try:
                    sock.accept()[0].close()
                    count += 1
                except BlockingIOError:
                    break
            accepted.append(count)
        assert accepted[1] == accepted[3] == 0 and accepted[0] + accepted[2] == 40, accepted
        assert len(steering_program([0, 2])) == 8 * 5
        for client in clients:
            client.close()
    finally:
        for sock in group:
            sock.close()
