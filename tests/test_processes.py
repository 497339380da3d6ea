"""The process model: master + workers, respawn, reload under load, graceful stop, bad configs."""
from __future__ import annotations

import http.client
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from tests.support.gateway import GatewayProcess, base_config, wait_until
from tests.support.processes import alive
from tests.support.upstream import Upstream, free_port


def get(port: int, path: str = "/echo", timeout: float = 10.0) -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    conn.request("GET", path)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, {k.lower(): v for k, v in response.getheaders()}, body


def test_workers_use_reuseport_and_both_serve(gateway: GatewayProcess) -> None:
    pids = gateway.worker_pids()
    assert len(pids) == 2 and all(alive(p) for p in pids)
    # every worker has its own listening socket on the same port
    port_hex = f"{gateway.port:04X}"
    listening_inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1].endswith(":" + port_hex) and fields[3] == "0A":
            listening_inodes.add(fields[9])
    assert len(listening_inodes) == 2


def test_killed_worker_is_replaced(gateway: GatewayProcess) -> None:
    # a behavioural deadline (5 s); how fast it is, is bench/respawn.py's figure
    victim = gateway.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    killed_at = time.monotonic()
    while True:
        # the replacement is counted once it acknowledged the config, i.e. it serves
        workers = gateway.status().get("workers", [])
        if (len(workers) == 2 and victim not in [w["pid"] for w in workers]
                and all(w["version"] == 1 and alive(w["pid"]) for w in workers)):
            break
        assert time.monotonic() - killed_at < 5, gateway.logs()
        time.sleep(0.01)
    for _ in range(20):
        assert get(gateway.port)[0] == 200


def test_reload_under_load_has_no_failed_requests(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("a") as a, Upstream("b") as b:
        config = base_config(port, a.port)
        gw = GatewayProcess(tmp_path, config)
        with gw:
            failures: list[str] = []
            seen: set[str] = set()
            stop = threading.Event()

            def load() -> None:
                conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                while not stop.is_set():
                    try:
                        conn.request("GET", "/echo")
                        response = conn.getresponse()
                        response.read()
                        if response.status != 200:
                            failures.append(str(response.status))
                        seen.add(response.getheader("X-Upstream") or "?")
                    except Exception as exc:  # noqa: BLE001 - every failure counts
                        failures.append(repr(exc))
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
                conn.close()

            threads = [threading.Thread(target=load) for _ in range(4)]
            for t in threads:
                t.start()
            try:
                time.sleep(0.3)
                for version in range(2, 8):
                    target = b if version % 2 == 0 else a
                    config["upstreams"][0]["nodes"][0]["port"] = target.port
                    gw.write_config(config)
                    gw.wait_version(version)
                    time.sleep(0.15)
            finally:
                stop.set()
                for t in threads:
                    t.join()
            assert failures == []
            assert seen == {"a", "b"}
            assert get(port)[1]["x-upstream"] == "a"


def test_invalid_edit_is_rejected_and_old_config_keeps_serving(gateway: GatewayProcess) -> None:
    good = yaml.safe_load(gateway.config_path.read_text())
    bad = dict(good)
    bad["routes"] = [{"id": "all", "uri": "/*", "upstream_id": "missing"}]
    gateway.write_config(bad)
    deadline = time.monotonic() + 10
    while "unknown upstream" not in gateway.logs():
        assert time.monotonic() < deadline, gateway.logs()
        time.sleep(0.05)
    assert "routes[0].upstream_id" in gateway.logs()
    assert gateway.status()["version"] == 1
    assert get(gateway.port)[0] == 200
    # SIGHUP with the bad file: judged again (the rejection counted), still serving
    wait_until(lambda: gateway.status().get("reloads", {}).get("rejected") == 1, 10,
               gateway.logs)
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGHUP)
    wait_until(lambda: gateway.status()["reloads"]["rejected"] == 2, 10, gateway.logs)
    assert gateway.logs().count("reload (SIGHUP) rejected") == 1
    assert gateway.status()["version"] == 1
    assert get(gateway.port)[0] == 200
    # a good edit applies
    good["routes"][0]["uri"] = "/echo"
    gateway.write_config(good)
    gateway.wait_version(2)
    assert get(gateway.port, "/other")[0] == 404
    # the last good config was persisted
    persisted = gateway.instance.last_good
    assert yaml.safe_load(persisted.read_text())["routes"][0]["uri"] == "/echo"
    assert oct(persisted.stat().st_mode & 0o777) == "0o600"


def test_sigterm_drains_in_flight_requests(gateway: GatewayProcess) -> None:
    result: dict[str, object] = {}

    def slow() -> None:
        result["response"] = get(gateway.port, "/slow/1")

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.3)
    assert gateway.proc is not None
    gateway.proc.send_signal(signal.SIGTERM)
    thread.join(10)
    status, headers, _ = result["response"]  # type: ignore[misc]
    assert status == 200
    assert gateway.proc.wait(10) == 0
    with pytest.raises(OSError):
        get(gateway.port, timeout=1)


def test_sighup_reloads(tmp_path: Path, upstream: Upstream) -> None:
    # The edit goes through a hard link in another directory, in place: the file watcher
    # (inotify on the config's directory) gets no event for it, so only SIGHUP can apply it.
    (tmp_path / "run").mkdir()
    (tmp_path / "elsewhere").mkdir()
    with GatewayProcess(tmp_path / "run", base_config(free_port(), upstream.port)) as gw:
        other = tmp_path / "elsewhere" / "gateway.yaml"
        os.link(gw.config_path, other)
        time.sleep(1.0)  # past the watcher's first wake-up, which reads the file whatever
        config = yaml.safe_load(other.read_text())
        config["routes"][0]["uri"] = "/echo"
        with open(other, "r+") as fh:
            fh.truncate(0)
            fh.write(yaml.safe_dump(config, sort_keys=False))
        assert yaml.safe_load(gw.config_path.read_text())["routes"][0]["uri"] == "/echo"
        time.sleep(1.0)
        assert gw.status()["version"] == 1, "applied without SIGHUP: the test proves nothing"
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        gw.wait_version(2)
        assert "config version 2 (SIGHUP)" in gw.logs()
        assert get(gw.port, "/nope")[0] == 404


def test_check_command_reports_every_error_with_its_path(tmp_path: Path) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({
        "upstreams": [{"id": "u", "nodes": [{"host": "127.0.0.1", "port": 1}]}],
        "routes": [{"id": "r1", "uri": "/a", "upstream_id": "nope"},
                   {"id": "r2", "uri": "b", "upstream_id": "u"}],
    }))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(config)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "routes[0].upstream_id" in result.stderr
    assert "routes[1].uri" in result.stderr
    assert str(config) in result.stderr
    good = tmp_path / "good.yaml"
    good.write_text(yaml.safe_dump({"routes": [{"id": "r", "uri": "/x", "plugins": {
        "mocking": {"response_example": "hi"}}}]}))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(good)],
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stderr


def test_invalid_config_at_start_exits_with_errors(tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("routes:\n  - id: r\n    uri: /x\n"
                      "    plugins: {mocking: {response_status: 999, response_example: x}}\n")
    result = subprocess.run([sys.executable, "-m", "gateway", "run", "-c", str(config)],
                            capture_output=True, text=True, timeout=30,
                            env={**os.environ, "XDG_STATE_HOME": str(tmp_path)})
    assert result.returncode == 2
    assert "routes[0].plugins.mocking" in result.stderr


def test_sigquit_stops_at_once_without_waiting_for_requests(gateway: GatewayProcess) -> None:
    """README: SIGQUIT stops at once, where SIGTERM would let in-flight requests finish."""
    result: dict[str, object] = {}

    def slow() -> None:
        try:
            result["response"] = get(gateway.port, "/slow/5")
        except OSError as exc:
            result["error"] = exc

    thread = threading.Thread(target=slow)
    thread.start()
    time.sleep(0.5)
    assert gateway.proc is not None
    started = time.monotonic()
    gateway.proc.send_signal(signal.SIGQUIT)
    gateway.proc.wait(10)
    stopped = time.monotonic() - started
    thread.join(10)
    # the 5 s request was cut, not waited for (graceful_shutdown_timeout is 10 s)
    assert "error" in result, result
    assert stopped < 3.0, f"SIGQUIT took {stopped:.2f} s"
    with pytest.raises(OSError):
        get(gateway.port, timeout=1)


def test_workers_auto_starts_one_worker_per_cpu(tmp_path: Path, upstream: Upstream) -> None:
    """README: `-w auto` (and `workers: auto`) runs one worker per core."""
    with GatewayProcess(tmp_path, base_config(free_port(), upstream.port), workers="auto") as gw:
        assert len(gw.worker_pids()) == len(os.sched_getaffinity(0))
        assert get(gw.port)[0] == 200

