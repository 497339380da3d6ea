"""The plugin API's own rules through real requests: order by priority and its per-route
override (``_meta``), response headers added before the response exists, a plugin choosing the
upstream, and plugin ``bind`` errors reported as config errors."""
from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.support.gateway import GatewayProcess, base_config
from tests.support.gateway import http_get as get
from tests.support.upstream import Upstream, free_port

P = "tests.support.plugins:"


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    with Upstream("main") as main, Upstream("other") as other:
        port = free_port()
        config: dict[str, Any] = base_config(port)
        config["upstreams"] = [
            {"id": "main", "nodes": [{"host": "127.0.0.1", "port": main.port}]},
            {"id": "other", "nodes": [{"host": "127.0.0.1", "port": other.port}]},
        ]
        trail = {P + "TrailLow": {"mark": "low"}, P + "TrailHigh": {"mark": "high"}}
        config["routes"] = [
            {"id": "default-order", "uri": "/order/default", "upstream_id": "main",
             "plugins": trail},
            {"id": "overridden", "uri": "/order/override", "upstream_id": "main",
             "plugins": {P + "TrailLow": {"mark": "low", "_meta": {"priority": 30}},
                         P + "TrailHigh": {"mark": "high"}}},
            {"id": "disabled", "uri": "/order/disabled", "upstream_id": "main",
             "plugins": {P + "TrailLow": {"mark": "low"},
                         P + "TrailHigh": {"mark": "high", "_meta": {"disable": True}}}},
            {"id": "added", "uri": "/added/*", "upstream_id": "main",
             "plugins": {P + "AddHeaders": {}}},
            {"id": "reroute", "uri": "/reroute/*", "upstream_id": "main",
             "plugins": {P + "Reroute": {"upstream_id": "other"}}},
        ]
        with GatewayProcess(tmp_path_factory.mktemp("api"), config):
            yield port


def test_plugins_run_by_priority_higher_first(gateway: int) -> None:
    response, _ = get(gateway, "/order/default")
    assert response.status == 200
    assert response.getheader("X-Trail") == "high,low"


def test_meta_priority_overrides_the_order_on_one_route(gateway: int) -> None:
    response, _ = get(gateway, "/order/override")
    assert response.getheader("X-Trail") == "low,high"


def test_meta_disable_turns_a_plugin_off(gateway: int) -> None:
    response, _ = get(gateway, "/order/disabled")
    assert response.getheader("X-Trail") == "low"


def test_response_headers_added_in_access_reach_proxied_and_local_responses(gateway: int) -> None:
    response, body = get(gateway, "/added/x")
    assert response.status == 200 and json.loads(body)["upstream"] == "main"
    assert response.getheader("X-Added") == "yes"
    response, body = get(gateway, "/added/x", {"X-Refuse": "1"})
    assert response.status == 401 and body == b"no\n"
    assert response.getheader("X-Added") == "yes"


def test_plugin_can_choose_another_upstream(gateway: int) -> None:
    _, body = get(gateway, "/reroute/a")
    assert json.loads(body)["upstream"] == "main"
    _, body = get(gateway, "/reroute/a", {"X-Reroute": "1"})
    assert json.loads(body)["upstream"] == "other"


def test_plugin_bind_error_is_a_config_error_with_its_path(tmp_path: Path) -> None:
    config: dict[str, Any] = base_config(free_port())
    config["upstreams"] = [{"id": "main", "nodes": [{"host": "127.0.0.1", "port": 9}]}]
    config["routes"] = [{"id": "r", "uri": "/*", "upstream_id": "main",
                         "plugins": {P + "Reroute": {"upstream_id": "missing"}}}]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    out = result.stdout + result.stderr
    assert f"routes[0].plugins.{P}Reroute" in out
    assert "no upstream with id 'missing'" in out


def test_meta_with_unknown_key_is_a_config_error(tmp_path: Path) -> None:
    config: dict[str, Any] = base_config(free_port())
    config["routes"] = [{"id": "r", "uri": "/*", "plugins": {
        "mocking": {"response_example": "x", "_meta": {"priorty": 3}}}}]
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump(config))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                            capture_output=True, text=True, timeout=60)
    assert result.returncode != 0
    assert "routes[0].plugins.mocking._meta" in result.stdout + result.stderr


def test_log_phase_runs_with_499_when_the_client_goes_away(tmp_path: Path) -> None:
    import socket
    import struct
    import time
    log_file = tmp_path / "statuses.log"
    with Upstream("up") as upstream:
        port = free_port()
        config: dict[str, Any] = base_config(port, upstream.port)
        config["routes"][0]["plugins"] = {P + "LogStatus": {"path": str(log_file)}}
        with GatewayProcess(tmp_path, config):
            client = socket.create_connection(("127.0.0.1", port))
            client.sendall(b"GET /slow/30 HTTP/1.1\r\nHost: a\r\n\r\n")
            deadline = time.monotonic() + 10
            while not upstream.received and time.monotonic() < deadline:
                time.sleep(0.02)
            assert upstream.received, "the request never reached the upstream"
            # a reset, not a half-close: the client is gone, not just done sending
            client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            client.close()
            while time.monotonic() < deadline + 10:
                if log_file.exists() and log_file.read_text():
                    break
                time.sleep(0.05)
            assert log_file.read_text() == "all 499\n"
