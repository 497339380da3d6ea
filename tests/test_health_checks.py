"""Upstream health checks through a real gateway (a master and two workers) in front of real
upstream servers that are killed, stalled and restarted: active checks in the master, passive
checks counted by both workers into the same shared state, priority failover, failing open or
not, state kept across a reload, and the admin listener's ``GET /status``."""
from __future__ import annotations

import gzip
import http.client
import json
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from gateway._native import SharedHealth
from gateway._proto import PassiveChecks, UpstreamGroup, UpstreamNode
from tests.support.gateway import GatewayProcess, raw_exchange, wait_until
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import Upstream, free_port
from tests.support.upstream_process import UpstreamProcess

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


@contextmanager
def load(port: int, clients: int) -> Iterator[list[tuple[float, int, str]]]:
    """``clients`` threads sending requests until the block ends; yields their results as
    (time, status, answering upstream), filled while they run."""
    results: list[tuple[float, int, str]] = []
    stop = threading.Event()

    def client() -> None:
        while not stop.is_set():
            code, server, _ = get(port)
            results.append((time.monotonic(), code, server))
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for t in threads:
        t.start()
    try:
        yield results
    finally:
        stop.set()
        for t in threads:
            t.join()


# -- the balancer and the shared table, in process ------------------------------------------

def watched(table: SharedHealth, *specs: tuple[str, int]) -> list[UpstreamNode]:
    nodes = [UpstreamNode(host, 80, 1, priority) for host, priority in specs]
    for n in nodes:
        n.watch_health(table, table.slot(f"up\x1f{n.host}:80"))
    return nodes


def mark(table: SharedHealth, node: UpstreamNode, outcome: str) -> str | None:
    return table.report(table.slot(f"up\x1f{node.host}:80"), "active", outcome, 0, (1, 1, 1, 1))


def test_the_balancer_skips_down_nodes_then_lower_priorities_then_fails_open() -> None:
    table = SharedHealth.create(16)
    a, b, low = watched(table, ("a", 1), ("b", 1), ("low", 0))
    group = UpstreamGroup("up", [a, b, low])
    strict = UpstreamGroup("up", [a, b, low], fail_open=False)
    assert group.checked and {group.pick().host for _ in range(4)} == {"a", "b"}
    assert mark(table, a, "tcp_failure") == "down" and a.down
    assert {group.pick().host for _ in range(4)} == {"b"}
    mark(table, b, "timeout")
    assert {group.pick().host for _ in range(4)} == {"low"}
    mark(table, low, "http_status")
    assert {group.pick().host for _ in range(4)} == {"a", "b"}, "fail open: priority order"
    assert strict.pick() is None
    assert group.pick(exclude={a, b}).host == "low"
    assert mark(table, low, "success") == "up"
    assert strict.pick().host == "low"


def test_nodes_without_checks_are_never_down() -> None:
    group = UpstreamGroup("up", [UpstreamNode("a", 80), UpstreamNode("b", 80)], fail_open=False)
    assert not group.checked and group.passive is None
    assert {group.pick().host for _ in range(4)} == {"a", "b"}
    # passive settings are dropped when no node has a slot to count into
    passive = PassiveChecks("up", [200], [500], 1, 1, 1, 1)
    assert UpstreamGroup("up", [UpstreamNode("a", 80)], passive=passive).passive is None


# -- a real gateway ---------------------------------------------------------------------------

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


def test_a_node_killed_under_load_gets_no_more_connections(tmp_path: Path) -> None:
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        a = stack.enter_context(Upstream("a"))
        b = stack.enter_context(UpstreamProcess("b"))
        c = stack.enter_context(Upstream("c"))
        checks = {"active": {"type": "tcp", "healthy": FAST,
                             "unhealthy": {**FAST, "tcp_failures": 2}},
                  "passive": {"unhealthy": {"tcp_failures": 2}}}
        upstream = {"id": "shop", "nodes": [node(a), node(b), node(c)], "checks": checks}
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, [upstream])))
        with load(port, 4) as results:
            time.sleep(0.5)
            b.kill()
            wait_health(admin_port, "shop", b.port, healthy=False)
            marked = time.monotonic()
            time.sleep(0.3)  # requests that picked b just before it was marked end first
            failures = health_of(admin_port, "shop", b.port)["passive"]["failures"]
            refusals = gw.logs().count(f"cannot connect to upstream 127.0.0.1:{b.port}")
            time.sleep(1.5)
        assert health_of(admin_port, "shop", b.port)["passive"]["failures"] == failures
        assert gw.logs().count(f"cannot connect to upstream 127.0.0.1:{b.port}") == refusals
        after = [(code, server) for at, code, server in results if at > marked]
        assert len(after) > 20 and set(after) <= {(200, "a"), (200, "c")}, Counter(after)
        assert (200, "b") in {(code, server) for at, code, server in results if at < marked}
        gw.stop()


def test_three_nodes_one_killed_under_load_no_request_fails_and_it_is_used_again_when_back(
        tmp_path: Path) -> None:
    """Issue 10's first showing: retries hide the kill from every client, health checks keep
    the dead node out of the rotation once the thresholds are met, and active checks bring it
    back when it serves again on its port."""
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        a, b, c = (stack.enter_context(UpstreamProcess(name, one_write=True)) for name in "abc")
        checks = {"active": {"type": "http", "http_path": "/healthz", "timeout": 1,
                             "healthy": {**FAST, "successes": 2},
                             "unhealthy": {**FAST, "tcp_failures": 2}},
                  "passive": {"unhealthy": {"tcp_failures": 2}}}
        upstream = {"id": "shop", "nodes": [node(a), node(b), node(c)], "checks": checks}
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, [upstream])))
        with load(port, 6) as results:
            time.sleep(0.5)
            b.kill()
            wait_health(admin_port, "shop", b.port, healthy=False)
            # requests that picked b just before it was marked end first
            time.sleep(0.3)
            refused = f"cannot connect to upstream 127.0.0.1:{b.port}"
            refusals = gw.logs().count(refused)
            time.sleep(1.0)
            tried_while_down = gw.logs().count(refused) - refusals
            b.start()
            wait_health(admin_port, "shop", b.port, healthy=True)
            back = time.monotonic()
            time.sleep(1.0)
        gw.stop()
    assert len(results) > 100
    failed = Counter((code, server) for _, code, server in results if code != 200)
    assert not failed, f"requests failed while a node died and came back: {failed}"
    assert tried_while_down == 0, f"{tried_while_down} connects to b after it was marked down"
    assert "b" in {server for at, _, server in results if at > back}, "b never got traffic back"


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


def coded_or_plain(head: bytes) -> bytes:
    """gzip-coded answers (read to the close, or chunked) for /coded*, a plain one otherwise."""
    coded = gzip.compress(b"coded", mtime=0)
    if head.startswith(b"GET /coded-chunked "):
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
                + b"%x\r\n%b\r\n0\r\n\r\n" % (len(coded), coded))
    if head.startswith(b"GET /coded "):
        return b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\n\r\n" + coded
    return b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Upstream: raw\r\n\r\nplain"


def test_a_transfer_coding_an_http10_client_cannot_receive_is_not_the_nodes_failure(
        tmp_path: Path) -> None:
    # The node answers soundly; only the client (HTTP/1.0) may not be sent a transfer coding, so
    # its 502s are no failure of the node: passive checks that would mark it down at the first
    # one leave it up, and with fail_open off a plain request still reaches it
    port, admin_port = free_port(), free_port()
    with ExitStack() as stack:
        up = stack.enter_context(RawUpstream(coded_or_plain, close_after=True))
        slow = {"interval": 60}
        checks = {"active": {"type": "tcp", "healthy": slow, "unhealthy": slow},
                  "passive": {"unhealthy": {"http_statuses": [502], "http_failures": 1,
                                            "tcp_failures": 1, "timeouts": 1}},
                  "fail_open": False}
        upstream = {"id": "coded", "retries": 0, "checks": checks,
                    "nodes": [{"host": "127.0.0.1", "port": up.port}]}
        gw = stack.enter_context(GatewayProcess(tmp_path, config(port, admin_port, [upstream])))
        for path in [b"/coded", b"/coded-chunked"] * 3:
            raw = raw_exchange(port, b"GET " + path + b" HTTP/1.0\r\nHost: a.test\r\n\r\n")
            assert raw.startswith(b"HTTP/1.1 502 "), raw[:200]
        health = health_of(admin_port, "coded", up.port)
        assert health["healthy"] and health["passive"]["failures"] == 0, health
        assert get(port, "/plain") == (200, "raw", b"plain")
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
