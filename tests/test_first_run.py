"""The first run: `gateway run` from a directory that holds a copy of the source tree (what a user
does in a fresh clone after `pip install .`) serves, and a worker that cannot start makes the
command exit non-zero with one line naming the cause instead of restarting it forever."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import yaml

from tests.support.gateway import GatewayProcess, base_config, http_get
from tests.support.upstream import Upstream, free_port

REPO = Path(__file__).resolve().parent.parent
GATEWAY_SCRIPT = Path(sys.executable).parent / "gateway"


def copy_source_tree(target: Path) -> None:
    """The repository's Python sources without anything built: no extension module in it."""
    shutil.copytree(REPO / "gateway", target / "gateway",
                    ignore=shutil.ignore_patterns("*.so", "__pycache__"))
    shutil.copy(REPO / "pyproject.toml", target / "pyproject.toml")


def test_gateway_run_from_a_copy_of_the_source_tree_serves(tmp_path: Path) -> None:
    assert GATEWAY_SCRIPT.exists(), f"the console script is installed beside {sys.executable}"
    clone = tmp_path / "clone"
    copy_source_tree(clone)
    port = free_port()
    config = base_config(port)
    config["routes"] = [{"id": "demo", "uri": "/*", "plugins": {"mocking": {
        "response_status": 200, "response_example": "hello"}}}]
    (clone / "gateway.yaml").write_text(yaml.safe_dump(config))
    log = tmp_path / "run.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([str(GATEWAY_SCRIPT), "run", "-c", "gateway.yaml", "-w", "2"],
                                cwd=clone, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "XDG_STATE_HOME": str(tmp_path / "state")})
    try:
        deadline = time.monotonic() + 20
        while True:
            assert proc.poll() is None, log.read_text()
            try:
                response, body = http_get(port, "/anything")
                break
            except OSError:
                assert time.monotonic() < deadline, log.read_text()
                time.sleep(0.1)
        assert response.status == 200 and body == b"hello"
        # one worker may answer before the other has acknowledged: wait for the master's word
        while "2 workers serving" not in log.read_text():
            assert time.monotonic() < deadline, log.read_text()
            time.sleep(0.05)
        assert "ModuleNotFoundError" not in log.read_text()
    finally:
        proc.terminate()
        assert proc.wait(15) == 0, log.read_text()
    assert "Task exception was never retrieved" not in log.read_text()


FAILS_IN_WORKERS = '''
import sys
if "--control-fd" in sys.argv:  # only in a worker: the master imports it fine
    raise ImportError("no module named 'only_on_the_build_host'")
from gateway.plugins import Plugin, PluginConfig

class Config(PluginConfig):
    pass

class Picky(Plugin):
    name = "picky"
    priority = 1
    Config = Config

    def access(self, ctx):
        return None
'''


def test_a_worker_that_cannot_start_makes_run_exit_with_the_cause(tmp_path: Path) -> None:
    (tmp_path / "picky_plugin.py").write_text(FAILS_IN_WORKERS)
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        config["routes"][0]["plugins"] = {"picky_plugin:Picky": {}}
        gw = GatewayProcess(tmp_path, config,
                            env={"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"})
        gw.start(wait=False)
        assert gw.proc is not None
        try:
            code = gw.proc.wait(30)
        finally:
            gw.stop()
    assert code != 0
    logs = gw.logs()
    fatal = [line for line in logs.splitlines() if line.startswith("gateway: ")]
    assert len(fatal) == 1, logs
    assert "worker" in fatal[0] and "only_on_the_build_host" in fatal[0], fatal
    assert "workers serving" not in logs
    assert logs.count("restarting") == 0, logs


def test_port_in_use_exits_non_zero_with_one_line(tmp_path: Path) -> None:
    import socket

    holder = socket.socket()
    holder.bind(("127.0.0.1", 0))
    holder.listen(1)
    port = holder.getsockname()[1]
    try:
        gw = GatewayProcess(tmp_path, base_config(port))
        gw.start(wait=False)
        assert gw.proc is not None
        code = gw.proc.wait(30)
        gw.stop()
    finally:
        holder.close()
    assert code == 1
    fatal = [line for line in gw.logs().splitlines() if line.startswith("gateway: ")]
    assert len(fatal) == 1 and "Address already in use" in fatal[0], gw.logs()
