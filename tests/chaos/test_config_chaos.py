"""The config file broken while clients run: cut short in the middle of a write, replaced by
garbage, made unreadable. The running config keeps serving every client, one clear log line
names the file and the reason, and the next good version is applied."""
from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.chaos.conftest import chaos_config
from tests.chaos.load import LoadPool, assert_all_served
from tests.support.gateway import GatewayProcess, http_get, wait_until
from tests.support.upstream import Upstream, free_port

HOST = "steady.test"


def with_extra_route(config: dict[str, Any]) -> dict[str, Any]:
    """The next version: one more route, so a test can tell which version serves."""
    routes = [{"id": "extra", "uri": "/extra", "hosts": ["extra.test"],
               "plugins": {"mocking": {"response_example": "extra-version"}}}]
    return {**config, "routes": routes + config["routes"]}


def extra_route_served(gw: GatewayProcess) -> bool:
    response, body = http_get(gw.port, "/extra", {"Host": "extra.test"})
    return response.status == 200 and body == b"extra-version"


def wait_log(gw: GatewayProcess, text: str, timeout: float = 10.0) -> str:
    wait_until(lambda: text in gw.logs(), timeout, lambda: f"{text!r} never logged:\n{gw.logs()}")
    return gw.logs()


def test_config_cut_short_mid_write_is_not_applied_until_the_writer_finishes(
        tmp_path: Path, steady: Upstream) -> None:
    config = chaos_config(free_port(), steady.port, steady.port, require_end_marker=True)
    text = yaml.safe_dump(config, sort_keys=False) + "#END\n"
    with GatewayProcess(tmp_path, text) as gw, \
            LoadPool(gw.port, {HOST: ("GET", "/", None, 4)}) as load:
        new = yaml.safe_dump(with_extra_route(config), sort_keys=False) + "#END\n"
        # cut where what was written so far is a valid config: the new route, and none of the
        # routes the clients use (applied, it would answer them all 404)
        cut = new.index("- id: victim", new.index("routes:"))
        with open(gw.config_path, "r+") as fh:  # written in place, the way `>` does
            fh.truncate(0)
            fh.write(new[:cut])
        logs = wait_log(gw, "not applied until the writer finishes")
        assert "reload (file changed) rejected; still serving version 1" in logs
        assert str(gw.config_path) in logs
        assert not extra_route_served(gw)
        time.sleep(1.0)  # the half-written file stays as it is a while: still not applied
        assert not extra_route_served(gw)
        with open(gw.config_path, "a") as fh:
            fh.write(new[cut:])
        gw.wait_version(2)
        assert extra_route_served(gw)
        assert_all_served(load.stop(), 21)
        assert gw.status()["version"] == 2


def test_config_replaced_by_garbage_is_rejected_once_and_the_old_one_serves(
        tmp_path: Path, steady: Upstream) -> None:
    config = chaos_config(free_port(), steady.port, steady.port)
    with GatewayProcess(tmp_path, config) as gw, \
            LoadPool(gw.port, {HOST: ("GET", "/", None, 4)}) as load:
        garbage = bytes(range(256)) * 16 + os.urandom(4096)
        tmp = gw.config_path.with_suffix(".new")
        tmp.write_bytes(garbage)
        os.replace(tmp, gw.config_path)
        logs = wait_log(gw, "reload (file changed) rejected; still serving version 1")
        assert f"{gw.config_path}: file is not valid UTF-8" in logs or \
            str(gw.config_path) in logs.split("rejected", 1)[1][:500], logs
        time.sleep(1.5)  # the watcher wakes several times: the same bytes are not judged again
        assert gw.logs().count("rejected; still serving") == 1, gw.logs()
        gw.write_config(with_extra_route(config))
        gw.wait_version(2)
        assert extra_route_served(gw)
        assert_all_served(load.stop(), 21)


def test_config_made_unreadable_is_rejected_with_the_reason_and_the_old_one_serves(
        tmp_path: Path, steady: Upstream) -> None:
    wrapper: list[str] = []
    if os.geteuid() == 0:
        # root reads any file: run the gateway without the capabilities that let it
        setpriv = shutil.which("setpriv")
        if setpriv is None:
            pytest.skip("running as root and no setpriv to drop CAP_DAC_OVERRIDE: "
                        "a mode 000 file stays readable")
        wrapper = [setpriv, "--bounding-set", "-dac_override,-dac_read_search", "--"]
    config = chaos_config(free_port(), steady.port, steady.port)
    with GatewayProcess(tmp_path, config, wrapper=wrapper) as gw, \
            LoadPool(gw.port, {HOST: ("GET", "/", None, 4)}) as load:
        os.chmod(gw.config_path, 0)
        assert gw.proc is not None
        gw.proc.send_signal(signal.SIGHUP)
        logs = wait_log(gw, "cannot read config file: Permission denied")
        assert "reload (SIGHUP) rejected; still serving version 1" in logs
        assert str(gw.config_path) in logs
        time.sleep(1.5)  # the file watcher keeps waking: the same failure is said once
        assert gw.logs().count("Permission denied") == 1, gw.logs()
        os.chmod(gw.config_path, 0o600)
        gw.write_config(with_extra_route(config))
        gw.wait_version(2)
        assert extra_route_served(gw)
        assert_all_served(load.stop(), 21)
