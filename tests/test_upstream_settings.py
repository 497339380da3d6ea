"""Upstream settings the README documents, seen from a real upstream: `pass_host` (which Host
the upstream gets) and `keepalive` (`requests`, `idle_timeout`, `size` of the pool)."""
from __future__ import annotations

import json
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess, base_config, http_get
from tests.support.upstream import Upstream, free_port


def upstream_host(port: int, host: str) -> str:
    response, body = http_get(port, "/echo", {"Host": host})
    assert response.status == 200
    return str(dict(json.loads(body)["headers"])["host"])


@pytest.mark.parametrize("pass_host", ["pass", "node", "rewrite"])
def test_pass_host_decides_the_host_the_upstream_gets(tmp_path: Path, upstream: Upstream,
                                                      pass_host: str) -> None:
    config = base_config(free_port(), upstream.port)
    config["upstreams"][0]["pass_host"] = pass_host
    if pass_host == "rewrite":
        config["upstreams"][0]["upstream_host"] = "internal.example"
    with GatewayProcess(tmp_path, config, workers=1) as gw:
        got = upstream_host(gw.port, "public.example")
    assert got == {"pass": "public.example", "node": f"127.0.0.1:{upstream.port}",
                   "rewrite": "internal.example"}[pass_host]


def keepalive_config(port: int, upstream_port: int, **keepalive: Any) -> dict[str, Any]:
    config = base_config(port, upstream_port)
    config["upstreams"][0]["keepalive"] = keepalive
    return config


def test_keepalive_requests_closes_an_upstream_connection_after_that_many(
        tmp_path: Path, upstream: Upstream) -> None:
    with GatewayProcess(tmp_path, keepalive_config(free_port(), upstream.port, requests=3),
                        workers=1) as gw:
        mark = upstream.mark()
        for _ in range(9):
            assert http_get(gw.port, "/echo")[0].status == 200
        # 9 sequential requests, 3 per connection: 3 connections (without the limit: 1)
        assert upstream.accepted - mark.accepted == 3


def test_keepalive_idle_timeout_drops_an_idle_pooled_connection(
        tmp_path: Path, upstream: Upstream) -> None:
    with GatewayProcess(tmp_path, keepalive_config(free_port(), upstream.port, idle_timeout=0.5),
                        workers=1) as gw:
        mark = upstream.mark()
        assert http_get(gw.port, "/echo")[0].status == 200
        assert http_get(gw.port, "/echo")[0].status == 200  # reused at once
        assert upstream.accepted - mark.accepted == 1
        time.sleep(1.5)  # idle longer than idle_timeout: the pool closed it
        assert http_get(gw.port, "/echo")[0].status == 200
        assert upstream.accepted - mark.accepted == 2


def test_keepalive_size_bounds_the_idle_connections_kept(tmp_path: Path, upstream: Upstream) -> None:
    upstream.delay = 0.3  # so the requests overlap and each needs its own connection
    with GatewayProcess(tmp_path, keepalive_config(free_port(), upstream.port, size=2),
                        workers=1) as gw:
        mark = upstream.mark()
        threads = [threading.Thread(target=http_get, args=(gw.port, "/echo")) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert upstream.accepted - mark.accepted == 5
        # 5 connections came back to the pool, 2 were kept: 5 overlapping requests now need 3
        # new ones
        threads = [threading.Thread(target=http_get, args=(gw.port, "/echo")) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(10)
        assert upstream.accepted - mark.accepted == 8
