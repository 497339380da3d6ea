"""The worked example in examples/hmac_signature, loaded both ways a third-party plugin can be:
by import path, and installed, by name through the ``gateway.plugins`` entry point."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "hmac_signature"
sys.path.insert(0, str(EXAMPLE))
from gateway_hmac_signature import sign  # noqa: E402

SECRET = "an-example-secret-of-some-length"


def request(port: int, path: str, headers: dict[str, str]) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers)
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response.status, body


def signed(path: str, secret: str = SECRET, at: float | None = None) -> dict[str, str]:
    date = "%d" % (time.time() if at is None else at)
    return {"X-Date": date, "X-Signature": sign(secret, "GET", path, date)}


def config_with(port: int, upstream_port: int, plugin_key: str) -> dict[str, Any]:
    config: dict[str, Any] = base_config(port, upstream_port)
    config["routes"][0]["plugins"] = {plugin_key: {"secret": SECRET}}
    return config


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream("up") as up:
        yield up


def check_signatures(port: int) -> None:
    status, body = request(port, "/echo/a", signed("/echo/a"))
    assert status == 200
    headers = dict(json.loads(body)["headers"])
    assert "x-signature" not in headers
    assert "x-signature-verified" in headers
    assert request(port, "/echo/a", {})[0] == 401
    assert request(port, "/echo/a", signed("/echo/b"))[0] == 401
    assert request(port, "/echo/a", signed("/echo/a", secret="x" * 20))[0] == 401
    status, body = request(port, "/echo/a", signed("/echo/a", at=time.time() - 3600))
    assert status == 401 and json.loads(body)["message"] == "signature expired"


def test_example_plugin_by_import_path(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config = config_with(port, upstream.port, "gateway_hmac_signature:HmacSignature")
    with GatewayProcess(tmp_path, config, env={"PYTHONPATH": str(EXAMPLE)}):
        check_signatures(port)


def test_example_plugin_installed_by_entry_point_name(tmp_path: Path, upstream: Upstream) -> None:
    target = tmp_path / "site"
    source = tmp_path / "source"  # setuptools builds in the source tree: keep the repo clean
    shutil.copytree(EXAMPLE, source, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps",
                    "--target", str(target), str(source)],
                   check=True, timeout=300)
    port = free_port()
    with GatewayProcess(tmp_path, config_with(port, upstream.port, "hmac-signature"),
                        env={"PYTHONPATH": str(target)}):
        check_signatures(port)


def test_example_plugin_config_is_checked_when_loading(tmp_path: Path) -> None:
    config = config_with(free_port(), 9, "gateway_hmac_signature:HmacSignature")
    config["routes"][0]["plugins"]["gateway_hmac_signature:HmacSignature"]["secret"] = "short"
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60,
                            env={**os.environ, "PYTHONPATH": str(EXAMPLE)})
    assert result.returncode != 0
    # a module:Class name is not a simple key, so the path quotes it (and the line is found)
    out = result.stdout + result.stderr
    assert 'gateway.yaml:10: routes[0].plugins["gateway_hmac_signature:HmacSignature"].secret' in out
