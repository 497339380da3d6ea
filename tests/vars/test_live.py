"""Variables read from real requests through a gateway process: the values that come from the
data plane (the listener's address, the upstream's status, the Host header) rather than from
the config."""
from __future__ import annotations

import http.client
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

SHOW = {"X-Host": "$host", "X-Http-Host": "$http_host",
        "X-Server": "$scheme://$server_addr:$server_port",
        "X-Upstream-Status": "[$upstream_status]", "X-Status": "$status",
        "X-Route": "$route_id", "X-Request-Id": "$request_id"}


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Upstream]]:
    tmp_path: Path = tmp_path_factory.mktemp("vars")
    with Upstream("up") as upstream:
        port = free_port()
        config = base_config(port, upstream.port)
        config["routes"] = [
            {"id": "shown", "uri": "/*", "host": "vars.test", "upstream_id": "up",
             "plugins": {"response-rewrite": {"headers": {"set": SHOW}}}},
            {"id": "down", "uri": "/*", "host": "down.test",
             "upstream": {"nodes": [{"host": "127.0.0.1", "port": free_port()}], "retries": 0},
             "plugins": {"response-rewrite": {"headers": {"set": SHOW}}}},
        ]
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            yield gw.port, upstream


def get(port: int, host: str, path: str = "/status/201") -> http.client.HTTPResponse:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path, headers={"Host": host})
        response = conn.getresponse()
        response.read()
        return response
    finally:
        conn.close()


def test_variables_of_a_proxied_request(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    response = get(port, "Vars.TEST:8080")
    assert response.status == 201
    assert response.getheader("X-Host") == "vars.test"
    assert response.getheader("X-Http-Host") == "Vars.TEST:8080"
    assert response.getheader("X-Server") == f"http://127.0.0.1:{port}"
    assert response.getheader("X-Upstream-Status") == "[201]"
    assert response.getheader("X-Status") == "201"
    assert response.getheader("X-Route") == "shown"
    request_id = response.getheader("X-Request-Id")
    assert request_id is not None and len(request_id) == 32
    assert get(port, "vars.test").getheader("X-Request-Id") != request_id


def test_upstream_status_of_an_unreachable_upstream(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    response = get(port, "down.test")
    assert response.status == 502
    assert response.getheader("X-Upstream-Status") == "[502]"
    assert response.getheader("X-Route") == "down"
