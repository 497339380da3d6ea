"""limit-count and limit-req with ``policy: redis`` (strict and synced modes): real
redis-server processes and two real gateway nodes (separate ``gateway run`` processes, 2
workers each) sharing one Redis; Redis killed under load and brought back; config errors from
``gateway check``."""
from __future__ import annotations

import http.client
import time
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from gateway.plugins._redis_limit import (
    COUNT_SYNC_PREFIX,
    REQ_SYNC_PREFIX,
    REQ_SYNC_SCRIPT,
    RETRY_AFTER,
)
from tests.support.config_check import check_refuses_plugins
from tests.support.gateway import GatewayProcess, base_config, wait_until
from tests.support.redis_server import RedisCluster, RedisServer
from tests.support.upstream import Upstream, free_port

PASSWORD = "s3cret-redis-pass"


def redis_keys(server: RedisServer, **extra: Any) -> dict[str, Any]:
    return {"policy": "redis", "redis_strict": True, "redis_host": "127.0.0.1",
            "redis_port": server.port, "redis_password": PASSWORD, "redis_timeout": 500,
            **extra}


def node_config(upstream: Upstream, routes: list[dict[str, Any]]) -> dict[str, Any]:
    config = base_config(free_port())
    config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
    config["routes"] = routes
    return config


def node_dir(tmp_path: Path, name: str) -> Path:
    (tmp_path / name).mkdir()
    return tmp_path / name


def route(name: str, plugins: dict[str, Any]) -> dict[str, Any]:
    return {"id": name, "uri": "/*", "hosts": [f"{name}.test"], "upstream_id": "up",
            "plugins": plugins}


def get(port: int, host: str, client: str = "") -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", "/echo", headers={"Host": host, "Connection": "close",
                                              "X-Client": client})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def spread(ports: list[int], host: str, n: int, client: str = "") -> Counter[int]:
    """``n`` requests on fresh connections, alternating between the nodes, 8 at a time."""
    with ThreadPoolExecutor(8) as pool:
        return Counter(pool.map(lambda i: get(ports[i % len(ports)], host, client), range(n)))


@pytest.fixture
def redis_server(tmp_path: Path) -> Iterator[RedisServer]:
    (tmp_path / "redis").mkdir()
    with RedisServer(tmp_path / "redis", password=PASSWORD) as server:
        yield server


def far_from_hour_boundary() -> None:
    """limit-count's Redis windows are wall-clock windows: keep a test inside one."""
    left = 3600 - time.time() % 3600
    if left < 30:
        time.sleep(left + 0.5)


def test_two_nodes_share_an_exact_count(tmp_path: Path, redis_server: RedisServer) -> None:
    far_from_hour_boundary()
    routes = [route("count", {"limit-count": {
        "count": 30, "time_window": 3600, "key_type": "constant", "key": "all",
        "rejected_code": 429, **redis_keys(redis_server)}})]
    with Upstream("up") as upstream, \
            GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a, \
            GatewayProcess(node_dir(tmp_path, "b"), node_config(upstream, routes)) as b:
        statuses = spread([a.port, b.port], "count.test", 80)
        assert statuses == {200: 30, 429: 50}, statuses
        for node in (a, b):
            assert PASSWORD not in node.logs()


SYNC_INTERVAL = 0.1
#: Between two rounds of requests: several sync intervals, so that a loaded machine still syncs
#: both nodes within a round (the bounds below allow one round of overshoot).
REST = 6 * SYNC_INTERVAL


def synced_keys(server: RedisServer, **extra: Any) -> dict[str, Any]:
    keys = redis_keys(server, sync_interval=SYNC_INTERVAL, **extra)
    del keys["redis_strict"]
    return keys


def test_two_nodes_share_a_synced_count(tmp_path: Path, redis_server: RedisServer) -> None:
    """Delayed sync: each node counts locally and its master's syncer exchanges the counts
    with Redis every 0.1 s. Requests in rounds slower than the interval: the two nodes admit
    the count in total, plus at most one round (the documented overshoot)."""
    far_from_hour_boundary()
    routes = [route("count", {"limit-count": {
        "count": 30, "time_window": 3600, "key_type": "constant", "key": "all",
        "rejected_code": 429, **synced_keys(redis_server)}})]
    with Upstream("up") as upstream, \
            GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a, \
            GatewayProcess(node_dir(tmp_path, "b"), node_config(upstream, routes)) as b:
        admitted = 0
        for _ in range(10):
            admitted += spread([a.port, b.port], "count.test", 10)[200]
            time.sleep(REST)
        assert 30 <= admitted <= 40, admitted
        # the last rounds: both nodes know the global count, nothing more is admitted
        assert spread([a.port, b.port], "count.test", 10) == {429: 10}
        assert PASSWORD not in a.logs() + b.logs()


def test_two_nodes_share_synced_counts_per_client(tmp_path: Path,
                                                  redis_server: RedisServer) -> None:
    """Per-request keys in synced mode: each client's count is shared by the two nodes (the
    masters find the clients' keys in their shared memory), and the clients' counts stay
    apart."""
    far_from_hour_boundary()
    routes = [route("count", {"limit-count": {
        "count": 10, "time_window": 3600, "key": "http_x_client", "rejected_code": 429,
        **synced_keys(redis_server)}})]
    with Upstream("up") as upstream, \
            GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a, \
            GatewayProcess(node_dir(tmp_path, "b"), node_config(upstream, routes)) as b:
        admitted: Counter[str] = Counter()
        for _ in range(8):
            for client in ("alice", "bob"):
                admitted[client] += spread([a.port, b.port], "count.test", 4, client)[200]
            time.sleep(REST)
        # 10 each, plus at most one round's share of the other node (the overshoot)
        for client in ("alice", "bob"):
            assert 10 <= admitted[client] <= 12, (admitted, a.logs(), b.logs())
            assert spread([a.port, b.port], "count.test", 6, client) == {429: 6}
        assert len(redis_server.client().keys(f"{COUNT_SYNC_PREFIX}:*")) == 2


def test_two_nodes_share_a_synced_rate(tmp_path: Path, redis_server: RedisServer) -> None:
    """limit-req in synced mode: one request per node per round, both nodes together admit
    about the one rate (each alone would admit 3 + 4 over the 4 s: 14 in total)."""
    routes = [route("rate", {"limit-req": {
        "rate": 1, "burst": 2, "nodelay": True, "key": "http_x_client", "rejected_code": 429,
        **synced_keys(redis_server)}})]
    with Upstream("up") as upstream, \
            GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a, \
            GatewayProcess(node_dir(tmp_path, "b"), node_config(upstream, routes)) as b:
        admitted = 0
        start = time.monotonic()
        for _ in range(10):
            admitted += spread([a.port, b.port], "rate.test", 2, "carol")[200]
            time.sleep(REST)
        elapsed = time.monotonic() - start
        # 3 at once (1 + burst), then 1 per second, plus one round (2) of overshoot
        assert 3 + int(elapsed) - 2 <= admitted <= 3 + elapsed + 2, (admitted, elapsed)
        assert redis_server.client().keys(f"{REQ_SYNC_PREFIX}:*")


def test_synced_bucket_queues_pushes_over_the_same_span(redis_server: RedisServer) -> None:
    """The synced limit-req bucket in Redis (the script the syncer calls): node a pushes 5
    requests admitted over the last 100 ms at 10 ms each, which conformed (its bucket emptied
    50 ms ago); node b then pushes 8 admitted over the same 100 ms. Together 13 requests in
    100 ms: b's queue behind a's, 30 ms over the rate, and b is told so."""
    script = redis_server.client().register_script(REQ_SYNC_SCRIPT)
    key = f"{REQ_SYNC_PREFIX}:{{00001}}:spans"
    interval_us, span_us = 10_000, 100_000
    assert script(keys=[key], args=[interval_us, span_us, 5]) == [0]
    backlog = script(keys=[key], args=[interval_us, span_us, 8])[0]
    assert 20_000 <= backlog <= 30_000, backlog


def test_two_nodes_share_limits_through_a_redis_cluster(tmp_path: Path) -> None:
    """policy: redis-cluster on three real cluster masters: a synced per-client count (each
    limit's keys share one hash tag, so its script call stays in one slot) and a strict
    limit-req (one key per call), shared by two nodes."""
    far_from_hour_boundary()
    (tmp_path / "cluster").mkdir()
    with RedisCluster(tmp_path / "cluster", password=PASSWORD) as cluster:
        keys = {"policy": "redis-cluster", "redis_cluster_nodes": cluster.nodes[:1],
                "redis_password": PASSWORD, "redis_timeout": 500}
        routes = [
            route("count", {"limit-count": {
                "count": 10, "time_window": 3600, "key": "http_x_client", "rejected_code": 429,
                "sync_interval": SYNC_INTERVAL, **keys}}),
            route("rate", {"limit-req": {
                "rate": 0.1, "burst": 2, "nodelay": True, "key": "http_x_client",
                "rejected_code": 429, "redis_strict": True, **keys}}),
        ]
        with Upstream("up") as upstream, \
                GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a, \
                GatewayProcess(node_dir(tmp_path, "b"), node_config(upstream, routes)) as b:
            admitted: Counter[str] = Counter()
            for _ in range(8):
                for client in ("alice", "bob"):
                    admitted[client] += spread([a.port, b.port], "count.test", 4, client)[200]
                time.sleep(REST)
            for client in ("alice", "bob"):
                assert 10 <= admitted[client] <= 12, (admitted, a.logs(), b.logs())
            # strict: 1 at the rate + a burst of 2 over both nodes, per client
            for client in ("carol", "dave"):
                assert spread([a.port, b.port], "rate.test", 10, client) == {200: 3, 429: 7}
            stored = [str(key) for server in cluster.servers
                      for key in server.client().keys("gateway:*")]
            assert any(key.startswith(COUNT_SYNC_PREFIX) for key in stored), stored
            assert PASSWORD not in a.logs() + b.logs()


def test_synced_count_goes_on_locally_without_redis(tmp_path: Path,
                                                    redis_server: RedisServer) -> None:
    far_from_hour_boundary()
    routes = [route("count", {"limit-count": {
        "count": 100, "time_window": 3600, "key_type": "constant", "key": "all",
        "rejected_code": 429, **synced_keys(redis_server)}})]
    with Upstream("up") as upstream, \
            GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a:
        assert spread([a.port], "count.test", 10) == {200: 10}
        client = redis_server.client()

        def pushed() -> bool:
            return [client.get(k) for k in client.keys(f"{COUNT_SYNC_PREFIX}:*")] == ["10"]

        wait_until(pushed, 5, "the node's 10 requests pushed to Redis")
        rkey = str(client.keys(f"{COUNT_SYNC_PREFIX}:*")[0])
        with ThreadPoolExecutor(1) as pool:  # killed mid-load
            load = pool.submit(spread, [a.port], "count.test", 30)
            redis_server.kill()
            assert load.result() == {200: 30}  # served, counted locally
        time.sleep(1.0)
        assert outage_logs(a, "unreachable") == 1, a.logs()  # the master's one syncer, once
        redis_server.start()  # empty, as after a restart without persistence
        client = redis_server.client()
        # back: the requests of the outage are pushed (what was pushed before is lost with
        # Redis' memory) and the log says so once
        wait_until(lambda: client.get(rkey) == "30", 10, lambda: repr(client.get(rkey)))
        assert outage_logs(a, "reachable again") == 1, a.logs()
        # another node's 50 requests arrive through Redis: 80 of 100 used, 20 left
        client.incrby(rkey, 50)
        time.sleep(REST)
        assert spread([a.port], "count.test", 30) == {200: 20, 429: 10}
        assert PASSWORD not in a.logs()


def test_two_nodes_share_a_strict_rate(tmp_path: Path, redis_server: RedisServer) -> None:
    routes = [route("rate", {"limit-req": {
        "rate": 0.1, "burst": 2, "nodelay": True, "key": "http_host",
        "rejected_code": 429, **redis_keys(redis_server)}})]
    with Upstream("up") as upstream, \
            GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a, \
            GatewayProcess(node_dir(tmp_path, "b"), node_config(upstream, routes)) as b:
        # 1 at the rate + a burst of 2; the next token is 10 s away
        statuses = spread([a.port, b.port], "rate.test", 20)
        assert statuses == {200: 3, 429: 17}, statuses


def outage_logs(node: GatewayProcess, what: str) -> int:
    return node.logs().count(what)


def test_redis_down_mid_load_falls_back_and_resyncs(tmp_path: Path,
                                                    redis_server: RedisServer) -> None:
    far_from_hour_boundary()
    routes = [
        route("local", {"limit-count": {"count": 1000, "time_window": 3600,
                                        "key_type": "constant", "key": "all",
                                        **redis_keys(redis_server)}}),
        route("deny", {"limit-count": {"count": 1000, "time_window": 3600,
                                       "key_type": "constant", "key": "all",
                                       "rejected_code": 429,
                                       **redis_keys(redis_server, redis_failure="deny")}}),
        route("allow", {"limit-count": {"count": 1, "time_window": 3600,
                                        "key_type": "constant", "key": "all",
                                        "rejected_code": 429,
                                        **redis_keys(redis_server, redis_failure="allow")}}),
    ]
    with Upstream("up") as upstream, \
            GatewayProcess(node_dir(tmp_path, "a"), node_config(upstream, routes)) as a:
        assert spread([a.port], "local.test", 20) == {200: 20}
        assert spread([a.port], "allow.test", 3) == {200: 1, 429: 2}
        stop = time.monotonic() + 1.5
        results: Counter[int] = Counter()

        def load() -> None:
            while time.monotonic() < stop:
                results[get(a.port, "local.test")] += 1

        with ThreadPoolExecutor(4) as pool:
            running = [pool.submit(load) for _ in range(4)]
            time.sleep(0.5)
            redis_server.kill()
            for job in running:
                job.result()
        assert set(results) == {200}, results  # served throughout, never a 500
        assert spread([a.port], "local.test", 20) == {200: 20}
        assert spread([a.port], "deny.test", 4) == {429: 4}
        assert spread([a.port], "allow.test", 4) == {200: 4}
        # logged once per worker process, not per request
        assert 1 <= outage_logs(a, "unreachable") <= a.workers, a.logs()
        assert PASSWORD not in a.logs()

        redis_server.start()  # empty: the counts of the outage were kept locally
        time.sleep(RETRY_AFTER + 0.2)  # each worker leaves Redis alone that long after a failure
        assert spread([a.port], "deny.test", 4) == {200: 4}
        assert spread([a.port], "allow.test", 3) == {200: 1, 429: 2}
        keys = redis_server.client().keys("gateway:limit-count:*")
        assert keys, keys
        wait_until(lambda: outage_logs(a, "reachable again") >= 1, 10, a.logs)


BASE = {"count": 1, "time_window": 1, "policy": "redis", "redis_host": "127.0.0.1",
        "redis_strict": True, "redis_password": PASSWORD}


@pytest.mark.parametrize(("plugins", "path", "message"), [
    ({"limit-count": {**BASE, "redis_host": None}}, "routes[0].plugins.limit-count",
     "redis_host: required with policy: redis"),
    ({"limit-count": {**BASE, "policy": "redis-cluster"}}, "routes[0].plugins.limit-count",
     "redis_cluster_nodes: required with policy: redis-cluster"),
    ({"limit-count": {**BASE, "policy": "redis-cluster", "redis_cluster_nodes": ["a:1"],
                      "redis_database": 2}}, "routes[0].plugins.limit-count",
     "redis_database: a Redis cluster has database 0 only"),
    ({"limit-count": {**BASE, "redis_cluster_nodes": ["a:1"]}}, "routes[0].plugins.limit-count",
     "redis_cluster_nodes: only with policy: redis-cluster"),
    ({"limit-count": {**BASE, "policy": "redis-cluster", "redis_cluster_nodes": ["a"]}},
     "routes[0].plugins.limit-count.redis_cluster_nodes[0]", "Expected `str` matching"),
    ({"limit-count": {**BASE, "policy": "memcached"}}, "routes[0].plugins.limit-count",
     "policy: 'memcached' is not supported"),
    ({"limit-count": {**BASE, "redis_port": 70000}},
     "routes[0].plugins.limit-count.redis_port", "<= 65535"),
    ({"limit-count": {**BASE, "redis_failure": "maybe"}},
     "routes[0].plugins.limit-count.redis_failure", "Invalid enum value 'maybe'"),
    ({"limit-count": {**BASE, "redis_strict": False, "redis_failure": "deny"}},
     "routes[0].plugins.limit-count", "redis_failure: only 'local' without redis_strict"),
    ({"limit-count": {**BASE, "sync_interval": 0}},
     "routes[0].plugins.limit-count.sync_interval", "> 0"),
    ({"limit-req": {"rate": 1, "policy": "redis", "redis_host": "127.0.0.1",
                    "redis_failure": "allow"}},
     "routes[0].plugins.limit-req", "redis_failure: only 'local' without redis_strict"),
    ({"limit-count": {**BASE, "window_type": "sliding"}}, "routes[0].plugins.limit-count",
     "window_type: 'sliding' is not supported with policy: redis"),
    ({"limit-req": {"rate": 1, "policy": "redis", "redis_strict": True,
                    "redis_password": PASSWORD, "redis_timeout": 0}},
     "routes[0].plugins.limit-req.redis_timeout", ">= 1"),
    ({"limit-req": {"rate": 1, "policy": "redis", "redis_strict": True,
                    "redis_password": PASSWORD}},
     "routes[0].plugins.limit-req", "redis_host: required"),
])
def test_config_errors(tmp_path: Path, plugins: dict[str, Any], path: str, message: str) -> None:
    out = check_refuses_plugins(tmp_path, plugins)
    assert path in out and message in out, out
    assert PASSWORD not in out, out
