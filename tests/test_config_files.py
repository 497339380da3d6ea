"""The config file as writers really treat it: written in place in pieces, emptied, cut short,
broken across a restart; and the state the master keeps for it (last good copy, status.json)."""
from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import yaml

from tests.support.gateway import GatewayProcess, base_config, http_get, wait_until
from tests.support.upstream import Upstream, free_port


def keyed_config(port: int, upstream_port: int, **gateway: Any) -> dict[str, Any]:
    config = base_config(port, upstream_port, **gateway)
    config["routes"][0]["plugins"] = {"key-auth": {}}
    config["consumers"] = [{"username": "alice", "plugins": {"key-auth": {"key": "alice-key"}}}]
    return config


def write_in_place(path: Path, pieces: list[str], pause: float) -> None:
    """How a writer that cannot rename saves: truncate, then write piece by piece."""
    fd = os.open(path, os.O_WRONLY | os.O_TRUNC)
    try:
        for i, piece in enumerate(pieces):
            if i:
                time.sleep(pause)
            os.write(fd, piece.encode())
            os.fsync(fd)
    finally:
        os.close(fd)


def wait_for_log(gw: GatewayProcess, text: str, timeout: float = 10.0) -> None:
    wait_until(lambda: text in gw.logs(), timeout, lambda: f"{text!r} not logged:\n{gw.logs()}")


def test_a_file_written_in_pieces_is_applied_only_once_complete(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("up") as upstream:
        config = keyed_config(port, upstream.port)
        with GatewayProcess(tmp_path, config) as gw:
            statuses: list[int] = []
            stop = threading.Event()

            def load() -> None:
                while not stop.is_set():
                    try:
                        response, _ = http_get(port, "/echo", {"apikey": "alice-key"})
                        statuses.append(response.status)
                    except OSError:
                        statuses.append(-1)

            thread = threading.Thread(target=load)
            thread.start()
            try:
                time.sleep(0.2)
                config["routes"].append({"id": "extra", "uri": "/extra", "upstream_id": "up"})
                text = yaml.safe_dump(config, sort_keys=False)
                cut = text.index("consumers:")  # a line boundary: the first piece is valid YAML
                write_in_place(gw.config_path, [text[:cut], text[cut:]], pause=0.15)
                gw.wait_version(2)
                time.sleep(0.5)
            finally:
                stop.set()
                thread.join()
            assert statuses and set(statuses) == {200}, sorted(set(statuses))
            assert gw.status()["version"] == 2  # the half file never became a version
            last_good = yaml.safe_load(gw.instance.last_good.read_text())
            assert last_good["consumers"][0]["username"] == "alice"


def test_an_empty_file_is_rejected_and_never_becomes_the_last_good(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        port = free_port()
        config = base_config(port, upstream.port)
        with GatewayProcess(tmp_path, config) as gw:
            before = gw.instance.last_good.read_text()
            gw.config_path.write_text("")
            wait_for_log(gw, "is empty")
            gw.config_path.write_text("consumers: []\n")  # the rest of the file not written yet
            wait_for_log(gw, "no `gateway` or `routes` section")
            time.sleep(0.5)
            assert gw.status()["version"] == 1
            assert http_get(port, "/echo")[0].status == 200
            assert gw.instance.last_good.read_text() == before


def test_check_refuses_an_empty_file(tmp_path: Path) -> None:
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(empty)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "is empty" in result.stderr


def test_end_marker_holds_an_edit_until_the_writer_finishes(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port, require_end_marker=True)
        gw = GatewayProcess(tmp_path, yaml.safe_dump(config, sort_keys=False) + "#END\n")
        with gw:
            config["routes"][0]["uri"] = "/echo"
            text = yaml.safe_dump(config, sort_keys=False)
            gw.config_path.write_text(text)  # complete YAML, but the writer has not said so
            wait_for_log(gw, "#END")
            time.sleep(0.6)
            assert gw.status()["version"] == 1
            assert http_get(gw.port, "/other")[0].status == 200  # still the old /* route
            with open(gw.config_path, "a") as fh:
                fh.write("#END\n")
            gw.wait_version(2)
            assert http_get(gw.port, "/other")[0].status == 404


def test_a_file_without_the_marker_requires_it_when_it_asks_for_it(tmp_path: Path) -> None:
    config = base_config(free_port(), require_end_marker=True)
    config["routes"] = [{"id": "r", "uri": "/x", "plugins": {"mocking": {"response_example": "x"}}}]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "#END" in result.stderr


def test_restart_on_a_broken_file_uses_the_last_good_in_the_configured_state_dir(
        tmp_path: Path) -> None:
    custom = tmp_path / "custom-state"
    port = free_port()
    with Upstream("up") as upstream:
        config = base_config(port, upstream.port, state_dir=str(custom))
        gw = GatewayProcess(tmp_path, config)
        with gw:
            assert gw.instance.last_good.is_relative_to(custom)
        gw.config_path.write_text("routes: [this is: not valid\n")
        with gw:  # starts (on the last good copy) instead of exiting 2
            assert http_get(port, "/echo")[0].status == 200
        assert "starting with the last good config" in gw.logs()


def sharing_state(directory: Path, config: dict[str, Any] | str, state: Path) -> GatewayProcess:
    """A gateway in ``directory`` whose state (last good copies, status) is under ``state``,
    as another gateway's on the same machine is."""
    directory.mkdir()
    gw = GatewayProcess(directory, config, env={"XDG_STATE_HOME": str(state)})
    gw.state_dir = state
    return gw


def test_last_good_copies_are_kept_per_config_file(tmp_path: Path) -> None:
    state = tmp_path / "shared-state"
    with Upstream("up") as upstream:
        with sharing_state(tmp_path / "a", base_config(free_port(), upstream.port), state):
            pass
        b = sharing_state(tmp_path / "b", "routes: [broken\n", state)
        b.start(wait=False)
        assert b.proc is not None
        assert b.proc.wait(30) == 2  # b never had a good config of its own: a's is not b's
        b.stop()
        assert "YAML syntax error" in b.logs()


def test_two_gateways_on_one_machine_keep_their_own_status(tmp_path: Path) -> None:
    state = tmp_path / "shared-state"
    with Upstream("up") as upstream:
        a = sharing_state(tmp_path / "a", base_config(free_port(), upstream.port), state)
        b = sharing_state(tmp_path / "b", base_config(free_port(), upstream.port), state)
        with a, b:
            assert a.instance.status != b.instance.status
            assert a.status()["pid"] == a.proc.pid  # type: ignore[union-attr]
            assert b.status()["pid"] == b.proc.pid  # type: ignore[union-attr]
            assert set(a.worker_pids()).isdisjoint(b.worker_pids())


def test_no_reload_right_after_start(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        with GatewayProcess(tmp_path, base_config(free_port(), upstream.port)) as gw:
            time.sleep(1.0)
            assert gw.status()["reloads"] == {"checked": 0, "applied": 0, "rejected": 0}
            config = yaml.safe_load(gw.config_path.read_text())
            config["routes"][0]["uri"] = "/echo"
            gw.write_config(config)
            gw.wait_version(2)
            assert gw.status()["reloads"]["applied"] == 1
