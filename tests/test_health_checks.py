"""Upstream health checks through a real gateway (a master and two workers) in front of real
upstream servers that are killed, stalled and restarted: active checks in the master, passive
checks counted by both workers into the same shared state, priority failover, failing open or
not, state kept across a reload, and the admin listener's ``GET /status``."""
from __future__ import annotations

import http.client
import json
from collections import Counter
from contextlib import ExitStack
from pathlib import Path
from typing import Any

from tests.support.gateway import GatewayProcess, wait_until
from tests.support.upstream import Upstream, UpstreamProcess, free_port

ADMIN_KEY = "health-test-key-0123456789"
FAST = {"interval": 0.2}


def config(port: int, admin_port: int, upstreams: list[dict[str, Any]],
           routes: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    return {
        "gateway": {"listen": [f"127.0.0.1:{port}"],
                    "admin": {"listen": f"127.0.0.1:{admin_port}", "key": ADMIN_KEY}},
        "upstreams": upstreams,
        "routes": routes or [{"id": "all", "uri": "/*", "upstream_id": upstreams[0]["id"]}],
    }


def node(up: Upstream | UpstreamProcess, **extra: Any) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": up.port, **extra}


def get(port: int, path: str = "/", headers: dict[str, str] | None = None,
        timeout: float = 10) -> tuple[int, str, bytes]:
    """Status, the answering upstream's name ("" for the gateway's own answer) and body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.getheader("x-upstream") or "", response.read()
    finally:
        conn.close()


def status(admin_port: int) -> dict[str, Any]:
    code, _, body = get(admin_port, "/status", {"X-API-KEY": ADMIN_KEY})
    assert code == 200, body
    result: dict[str, Any] = json.loads(body)
    return result


def health_of(admin_port: int, upstream: str, port: int) -> dict[str, Any]:
    for entry in status(admin_port)["upstreams"]:
        if entry["id"] == upstream:
            for n in entry["nodes"]:
                if n["port"] == port:
                    health: dict[str, Any] = n["health"]
                    return health
    raise AssertionError(f"no node {upstream}/{port} in /status")


def wait_health(admin_port: int, upstream: str, port: int, healthy: bool,
                timeout: float = 10) -> dict[str, Any]:
    seen: dict[str, Any] = {}

    def reached() -> bool:
        seen.update(health_of(admin_port, upstream, port))
        return bool(seen["healthy"] == healthy)
    wait_until(reached, timeout, lambda: f"node {port} not healthy={healthy}: {seen}")
    return seen


def spread(port: int, n: int, path: str = "/") -> Counter[tuple[int, str]]:
    """Who answered ``n`` requests, each on a new connection (so both workers serve some)."""
    return Counter(get(port, path)[:2] for _ in range(n))


def test_a_killed_node_gets_no_traffic_and_gets_it_again_when_back(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        a = stack.enter_context(Upstream("a"))
        b = stack.enter_context(UpstreamProcess("b"))
        checks = {"active": {"type": "http", "http_path": "/healthz", "timeout": 1,
                             "healthy": {**FAST, "successes": 2},
                             "unhealthy": {**FAST, "tcp_failures": 2}}}
        upstream = {"id": "shop", "retries": 0, "nodes": [node(a), node(b)], "checks": checks}
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, [upstream])))
        assert set(spread(port, 20)) == {(200, "a"), (200, "b")}
        b.kill()
        health = wait_health(admin_port, "shop", b.port, healthy=False)
        assert health["unhealthy_reason"]["failure"] == "tcp_failure"
        # no retries configured: any request sent to b would fail
        assert spread(port, 30) == {(200, "a"): 30}
        assert any(r.target == "/healthz" for r in a.received), "a is probed too"
        b.start()
        wait_health(admin_port, "shop", b.port, healthy=True)
        assert set(spread(port, 20)) == {(200, "a"), (200, "b")}
        gw.stop()


def test_a_stalled_node_is_marked_down_by_passive_checks_and_back_by_active_ones(
        tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        a = stack.enter_context(Upstream("a"))
        b = stack.enter_context(Upstream("b"))
        # active checks cannot mark a node down here (thresholds out of reach): only the
        # workers' passive timeouts can
        checks = {"active": {"http_path": "/healthz", "timeout": 0.5,
                             "healthy": {"interval": 30, "successes": 2},
                             "unhealthy": {**FAST, "timeouts": 254, "tcp_failures": 254,
                                           "http_failures": 254}},
                  "passive": {"unhealthy": {"timeouts": 2}}}
        upstream = {"id": "shop", "retries": 0, "nodes": [node(a), node(b)], "checks": checks,
                    "timeout": {"connect": 1, "send": 1, "read": 0.5}}
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, [upstream])))
        b.delay = 5.0  # accepts, reads the request, never answers in time
        answers = spread(port, 8)
        assert answers[(504, "")] >= 2, answers
        health = wait_health(admin_port, "shop", b.port, healthy=False, timeout=2)
        assert health["unhealthy_reason"] == {"source": "passive", "failure": "timeout",
                                              "status": None}
        assert health["passive"]["failures"] >= 2
        assert spread(port, 20) == {(200, "a"): 20}
        b.delay = 0.0
        health = wait_health(admin_port, "shop", b.port, healthy=True)
        assert health["active"]["last_result"] == "success"
        wait_until(lambda: get(port)[:2] == (200, "b"), 5, "b gets no traffic after recovering")
        gw.stop()


def test_lower_priority_nodes_take_over_when_the_higher_ones_are_down(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        high1 = stack.enter_context(UpstreamProcess("high1"))
        high2 = stack.enter_context(UpstreamProcess("high2"))
        low = stack.enter_context(Upstream("low"))
        checks = {"active": {"type": "tcp", "timeout": 1, "healthy": {**FAST, "successes": 1},
                             "unhealthy": {**FAST, "tcp_failures": 1}}}
        upstream = {"id": "tiered", "retries": 0, "checks": checks,
                    "nodes": [node(high1, priority=1), node(high2, priority=1),
                              node(low, priority=0)]}
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, [upstream])))
        assert set(spread(port, 10)) == {(200, "high1"), (200, "high2")}
        high1.kill()
        wait_health(admin_port, "tiered", high1.port, healthy=False)
        assert spread(port, 10) == {(200, "high2"): 10}, "one higher node left: it takes all"
        high2.kill()
        wait_health(admin_port, "tiered", high2.port, healthy=False)
        assert spread(port, 10) == {(200, "low"): 10}
        high1.start()
        wait_health(admin_port, "tiered", high1.port, healthy=True)
        assert spread(port, 10) == {(200, "high1"): 10}
        gw.stop()


def test_every_node_down_fails_open_unless_configured_strict(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        a = stack.enter_context(Upstream("a"))
        b = stack.enter_context(Upstream("b"))
        # the health endpoint answers 500: both nodes are down, yet they serve requests
        active = {"http_path": "/status/500", "healthy": FAST,
                  "unhealthy": {**FAST, "http_failures": 1}}
        nodes = [node(a), node(b)]
        upstreams = [{"id": "open", "retries": 0, "nodes": nodes, "checks": {"active": active}},
                     {"id": "strict", "retries": 0, "nodes": nodes,
                      "checks": {"active": active, "fail_open": False}}]
        routes = [{"id": "open", "uri": "/open/*", "upstream_id": "open"},
                  {"id": "strict", "uri": "/strict/*", "upstream_id": "strict"}]
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, upstreams,
                                                                  routes)))
        for name in ("open", "strict"):
            for up in (a, b):
                health = wait_health(admin_port, name, up.port, healthy=False)
                assert health["unhealthy_reason"] == {"source": "active",
                                                      "failure": "http_status", "status": 500}
        assert set(spread(port, 10, "/open/x")) == {(200, "a"), (200, "b")}
        code, server, body = get(port, "/strict/x")
        assert (code, server) == (502, "")
        assert b"no upstream node available" in body
        assert not [r for up in (a, b) for r in up.received if r.target.startswith("/strict")]
        gw.stop()


def test_a_reload_that_keeps_a_node_keeps_its_state(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        a = stack.enter_context(Upstream("a"))
        b = stack.enter_context(Upstream("b"))
        # slow active checks (one success would not bring a node back anyway): the node goes
        # down by a passive 500, and only a reset of its state could bring it back soon
        checks = {"active": {"http_path": "/", "healthy": {"interval": 60, "successes": 2},
                             "unhealthy": {"interval": 60}},
                  "passive": {"unhealthy": {"http_statuses": [500], "http_failures": 1}},
                  "fail_open": False}
        upstream = {"id": "keep", "retries": 0, "nodes": [node(a)], "checks": checks}
        cfg = config(port, admin_port, [upstream])
        gw = stack.enter_context(GatewayProcess(tmp_path, cfg))
        assert get(port, "/status/500")[:2] == (500, "a")
        before = wait_health(admin_port, "keep", a.port, healthy=False, timeout=2)
        assert before["unhealthy_reason"] == {"source": "passive", "failure": "http_status",
                                              "status": 500}
        assert get(port, "/x")[:2] == (502, "")
        upstream["nodes"] = [node(a), node(b)]
        cfg["routes"].append({"id": "extra", "uri": "/extra", "upstream_id": "keep"})
        gw.write_config(cfg)
        gw.wait_version(2)
        after = health_of(admin_port, "keep", a.port)
        assert not after["healthy"]
        assert after["changed_at"] == before["changed_at"]
        assert health_of(admin_port, "keep", b.port)["healthy"], "a new node starts healthy"
        assert spread(port, 10, "/y") == {(200, "b"): 10}
        gw.stop()


def test_status_reports_nodes_and_workers_and_needs_the_key(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        a = stack.enter_context(Upstream("a"))
        checks = {"active": {"http_path": "/ping", "healthy": FAST, "unhealthy": FAST},
                  "passive": {}}
        upstreams = [{"id": "checked", "nodes": [node(a)], "checks": checks},
                     {"id": "plain", "nodes": [node(a)]}]
        routes = [{"id": "r", "uri": "/*", "upstream_id": "checked"}]
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, upstreams,
                                                                  routes)))
        assert get(admin_port, "/status")[0] == 401
        assert get(admin_port, "/status", {"X-API-KEY": "wrong"})[0] == 401
        assert get(port, "/")[0] == 200
        wait_until(lambda: health_of(admin_port, "checked", a.port)["active"]["last_check_at"]
                   is not None, 5, "no active check ran")
        report = status(admin_port)
        assert report["master"]["version"] == 1
        workers = report["workers"]
        assert [w["index"] for w in workers] == [0, 1]
        for w in workers:
            assert w["responding"] and w["version"] == 1
            assert isinstance(w["active_connections"], int)
            assert isinstance(w["upstream_idle"], dict)
        # the request above left one pooled connection in the worker that served it
        assert sum(sum(w["upstream_idle"].values()) for w in workers) == 1
        assert f"127.0.0.1:{a.port}" in next(w for w in workers if w["upstream_idle"])["upstream_idle"]
        checked, plain = report["upstreams"]
        assert checked["checks"] == {"active": "http", "passive": True, "fail_open": True}
        health = checked["nodes"][0]["health"]
        assert health["healthy"] and health["unhealthy_reason"] is None
        assert health["active"]["last_result"] == "success"
        assert health["active"]["last_status"] == 200
        assert set(health["counters"]) == {"successes", "http_failures", "tcp_failures",
                                           "timeouts"}
        assert plain["checks"] is None and plain["nodes"][0]["health"] is None
        gw.stop()
