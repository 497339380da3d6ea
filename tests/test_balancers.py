"""The balancers of an upstream (roundrobin, least_conn, chash, ewma) and node priority: the ring
and the costs through their small Python API, then each behaviour through a real gateway in front
of several real upstreams."""
from __future__ import annotations

import http.client
import random
import socket
import struct
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import pytest

from gateway._proto import ChashBalancer, EwmaBalancer, UpstreamGroup, UpstreamNode
from gateway.upstream.compile import chash_key_function
from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

KEYS = [f"user-{i}" for i in range(10_000)]


def nodes(*ports: int, weight: int = 1) -> list[UpstreamNode]:
    return [UpstreamNode("127.0.0.1", port, weight) for port in ports]


def placement(ring: ChashBalancer) -> dict[str, int]:
    out = {}
    for key in KEYS:
        node = ring.node_for(key)
        assert node is not None
        out[key] = node.port
    return out


# -- the ring -----------------------------------------------------------------------------------

def test_chash_adding_a_node_moves_only_that_nodes_share() -> None:
    before = placement(ChashBalancer(nodes(1, 2, 3)))
    after = placement(ChashBalancer(nodes(1, 2, 3, 4)))
    kept = sum(before[k] == after[k] for k in KEYS)
    assert kept >= 0.70 * len(KEYS)  # ideally 3/4
    # every key that moved went to the new node: no reshuffling among the old ones
    assert {after[k] for k in KEYS if before[k] != after[k]} == {4}
    # and removing it again puts them back where they were
    assert placement(ChashBalancer(nodes(1, 2, 3))) == before


def test_chash_removing_a_node_moves_only_its_keys() -> None:
    before = placement(ChashBalancer(nodes(1, 2, 3, 4)))
    after = placement(ChashBalancer(nodes(1, 2, 4)))
    assert all(after[k] == before[k] for k in KEYS if before[k] != 3)


def test_chash_spreads_keys_by_weight() -> None:
    ring = ChashBalancer([*nodes(1, 2), *nodes(3, weight=2)])
    shares = Counter(placement(ring).values())
    assert ring.size == 4 * 640
    for port in (1, 2):
        assert 0.18 < shares[port] / len(KEYS) < 0.32
    assert 0.40 < shares[3] / len(KEYS) < 0.60


def test_chash_retry_walks_on_to_the_next_node() -> None:
    ring = ChashBalancer(nodes(1, 2, 3))
    first = ring.node_for("k")
    assert first is not None
    second = ring.node_for("k", {first})
    assert second is not None and second is not first
    assert ring.node_for("k", set(ring.nodes)) is None


class View:
    """The request variables a chash key reads (a stand-in for the exchange)."""

    def __init__(self, headers: dict[str, str] | None = None, query: str = "", cookies: dict[str, str] | None = None,
                 consumer: Any = None, client_ip: str = "10.0.0.9") -> None:
        self.headers = headers or {}
        self.query_string = query
        self.args = dict(p.split("=", 1) for p in query.split("&") if p)
        self.cookies = cookies or {}
        self.consumer = consumer
        self.client_ip = client_ip
        self.path = "/p"


@pytest.mark.parametrize(
    ("hash_on", "key", "view", "expected"),
    [
        ("vars", "arg_user", View(query="user=ann"), "ann"),
        ("vars", "uri", View(), "/p"),
        ("header", "X-User", View(headers={"x-user": "bob"}), "bob"),
        ("header", "x_user", View(headers={"x-user": "bob"}), "bob"),  # as nginx's $http_x_user
        ("cookie", "sid", View(cookies={"sid": "s1"}), "s1"),
        ("consumer", None, View(consumer=type("C", (), {"username": "carol"})()), "carol"),
        ("vars_combinations", "$arg_user-$uri", View(query="user=ann"), "ann-/p"),
        # no key in the request: the client's address (APISIX)
        ("vars", "arg_user", View(), "10.0.0.9"),
        ("header", "X-User", View(), "10.0.0.9"),
        ("cookie", "sid", View(), "10.0.0.9"),
        ("consumer", None, View(), "10.0.0.9"),
        ("vars_combinations", "$arg_user$http_x_user", View(), "10.0.0.9"),
    ],
)
def test_chash_keys_are_read_through_the_request_variables(hash_on: str, key: str | None, view: View,
                                                            expected: str) -> None:
    assert chash_key_function(hash_on, key)(view) == expected  # type: ignore[arg-type]


# -- costs and priorities -----------------------------------------------------------------------

def test_ewma_prefers_the_node_with_the_lower_latency() -> None:
    fast, slow = nodes(1, 2)
    balancer = EwmaBalancer([fast, slow])
    balancer.record(fast, 0.01)
    balancer.record(slow, 0.10)
    assert [balancer.choose() for _ in range(50)] == [fast] * 50
    # a slower response counts in full at once (peak); one faster one does not erase it
    balancer.record(fast, 0.5)
    fast_cost = balancer.cost(fast)
    assert fast_cost is not None and fast_cost > 0.45
    balancer.record(fast, 0.01)
    fast_cost = balancer.cost(fast)
    assert fast_cost is not None and fast_cost > 0.4
    assert balancer.choose() is slow
    assert balancer.choose({slow}) is fast


def test_ewma_cost_decays_while_a_node_is_not_used() -> None:
    (node,) = nodes(1)
    balancer = EwmaBalancer([node], decay_time=0.05)
    balancer.record(node, 1.0)
    time.sleep(0.15)
    cost = balancer.cost(node)
    assert cost is not None and cost < 0.1


@pytest.mark.parametrize("kind", ["roundrobin", "least_conn", "chash", "ewma"])
def test_priority_levels_are_tried_highest_first(kind: str) -> None:
    low = UpstreamNode("127.0.0.1", 1, 1, -1)
    high = [UpstreamNode("127.0.0.1", port, 1, 5) for port in (2, 3)]
    group = UpstreamGroup("u", [low, *high], kind, key_of=(lambda ctx: "k") if kind == "chash" else None)
    assert [b.nodes for b in group.balancers] == [tuple(high), (low,)]
    assert {group.pick() for _ in range(20)} <= set(high)
    assert group.pick(None, {high[0]}) is high[1]
    assert group.pick(None, set(high)) is low
    assert group.pick(None, {low, *high}) is None


def test_roundrobin_keeps_exact_weights() -> None:
    a, b = nodes(1, 2)
    heavy = UpstreamNode("127.0.0.1", 3, 3)
    group = UpstreamGroup("u", [a, b, heavy])
    picks = [group.pick() for _ in range(50)]
    assert Counter(p.port for p in picks if p is not None) == {1: 10, 2: 10, 3: 30}


# -- through the gateway ------------------------------------------------------------------------

def upstream_config(port: int, upstream: dict[str, Any], plugins: dict[str, Any] | None = None,
                    **extra: Any) -> dict[str, Any]:
    config = base_config(port)
    config["upstreams"].append({"id": "u", **upstream})
    config["routes"].append({"id": "r", "uri": "/*", "upstream_id": "u", "plugins": plugins or {}})
    config.update(extra)
    return config


def node_list(*ups: Upstream, **fields: Any) -> list[dict[str, Any]]:
    return [{"host": "127.0.0.1", "port": up.port, **fields} for up in ups]


def served_by(port: int, path: str = "/echo", headers: dict[str, str] | None = None) -> str:
    """Which upstream answered one request on a fresh connection (its x-upstream header)."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=15)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    response.read()
    conn.close()
    assert response.status == 200, response.status
    name = response.getheader("x-upstream")
    assert name is not None
    return name


@pytest.fixture
def three() -> Iterator[list[Upstream]]:
    with ExitStack() as stack:
        yield [stack.enter_context(Upstream(name)) for name in ("a", "b", "c")]


CHASH_CASES: dict[str, tuple[dict[str, Any], Any]] = {
    "header": ({"hash_on": "header", "key": "X-User"}, lambda k: ("/echo", {"X-User": k})),
    "cookie": ({"hash_on": "cookie", "key": "sid"}, lambda k: ("/echo", {"Cookie": f"a=1; sid={k}"})),
    "arg": ({"hash_on": "vars", "key": "arg_user"}, lambda k: (f"/echo?user={k}", {})),
    "consumer": ({"hash_on": "consumer"}, lambda k: ("/echo", {"apikey": f"{k}-key"})),
    "combination": ({"hash_on": "vars_combinations", "key": "$arg_user/$http_x_team"},
                    lambda k: (f"/echo?user={k}", {"X-Team": "t"})),
}


@pytest.mark.parametrize("case", sorted(CHASH_CASES))
def test_chash_sends_equal_keys_to_one_node_and_spreads_different_keys(
        tmp_path: Path, three: list[Upstream], case: str) -> None:
    fields, request_for = CHASH_CASES[case]
    users = [f"user{i}" for i in range(12)]
    extra: dict[str, Any] = {}
    plugins: dict[str, Any] = {}
    if case == "consumer":
        plugins = {"key-auth": {}}
        extra["consumers"] = [{"username": u, "plugins": {"key-auth": {"key": f"{u}-key"}}} for u in users]
    config = upstream_config(free_port(), {"type": "chash", "nodes": node_list(*three), **fields},
                             plugins, **extra)
    with GatewayProcess(tmp_path, config) as gw:  # two workers: both must agree
        placed: dict[str, set[str]] = {}
        for user in users:
            path, headers = request_for(user)
            placed[user] = {served_by(gw.port, path, headers) for _ in range(4)}
    assert all(len(names) == 1 for names in placed.values()), placed
    assert len({next(iter(names)) for names in placed.values()}) >= 2, placed
    if case == "header":
        # the node is the ring's: the gateway hashes the header's value, nothing else
        ring = ChashBalancer(nodes(*(up.port for up in three)))
        by_port = {up.port: up.name for up in three}
        for user in users:
            node = ring.node_for(user)
            assert node is not None
            assert placed[user] == {by_port[node.port]}


@pytest.mark.parametrize("seed", range(5))
def test_chash_keeps_70_percent_of_keys_whatever_the_addresses(seed: int) -> None:
    rng = random.Random(seed)
    ports = rng.sample(range(1024, 65536), 4)
    before = placement(ChashBalancer(nodes(*ports[:3])))
    after = placement(ChashBalancer(nodes(*ports)))
    assert sum(before[k] == after[k] for k in KEYS) >= 0.70 * len(KEYS)


def test_chash_keeps_most_keys_on_their_node_when_a_node_is_added(tmp_path: Path, three: list[Upstream]) -> None:
    users = [f"user{i}" for i in range(60)]
    port = free_port()
    with Upstream("d") as fourth:
        config = upstream_config(port, {"type": "chash", "hash_on": "header", "key": "X-User",
                                        "nodes": node_list(*three)})
        with GatewayProcess(tmp_path, config) as gw:
            before = {u: served_by(gw.port, "/echo", {"X-User": u}) for u in users}
            config["upstreams"][0]["nodes"] = node_list(*three, fourth)
            gw.write_config(config)
            gw.wait_version(2)
            after = {u: served_by(gw.port, "/echo", {"X-User": u}) for u in users}
    # the gateway places keys as the ring does (whose 70% is tested above with 10000 keys)...
    by_port = {up.port: up.name for up in [*three, fourth]}
    for placed, ring in ((before, ChashBalancer(nodes(*(up.port for up in three)))),
                         (after, ChashBalancer(nodes(*(up.port for up in [*three, fourth]))))):
        predicted = {u: by_port[node.port] for u in users if (node := ring.node_for(u)) is not None}
        assert placed == predicted
    # ...and the keys that moved all went to the new node
    moved = [u for u in users if before[u] != after[u]]
    assert moved and all(after[u] == "d" for u in moved), (before, after)
    assert len(moved) <= 0.5 * len(users)


def hold(port: int, path: str = "/echo") -> threading.Thread:
    """A request in the background (one the upstream keeps waiting)."""
    def run() -> None:
        try:
            served_by(port, path)
        except (OSError, AssertionError, http.client.HTTPException):
            pass
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def wait_until(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_least_conn_prefers_the_node_with_fewer_requests_in_flight(tmp_path: Path) -> None:
    with Upstream("slow", delay=4.0) as slow, Upstream("fast", delay=1.0) as fast:
        config = upstream_config(free_port(), {"type": "least_conn", "nodes": node_list(slow, fast)})
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            held = [hold(gw.port) for _ in range(4)]  # all in flight at once: spread 2 and 2
            wait_until(lambda: len(slow.received) + len(fast.received) == 4)
            assert len(slow.received) == 2
            fast.delay = 0.0
            wait_until(lambda: sum(not t.is_alive() for t in held) == 2)  # the fast node's are done
            # two requests in flight on the slow node, none on the fast one
            answered = Counter(served_by(gw.port) for _ in range(10))
            assert answered == {"fast": 10}
            for thread in held:
                thread.join(10)
            # the held requests are done: the counts went back down, both nodes share again
            slow.delay = 0.0
            assert Counter(served_by(gw.port) for _ in range(10)) == {"slow": 5, "fast": 5}


def test_in_flight_counts_drop_when_the_client_goes_away(tmp_path: Path) -> None:
    with Upstream("slow", delay=1.0) as slow, Upstream("fast") as fast:
        config = upstream_config(free_port(), {"type": "least_conn", "nodes": node_list(slow, fast)})
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            for gone in range(1, 7):  # clients that give up while their request is in flight
                sock = socket.create_connection(("127.0.0.1", gw.port))
                sock.sendall(b"GET /echo HTTP/1.1\r\nHost: x\r\n\r\n")
                wait_until(lambda n=gone: len(slow.received) + len(fast.received) >= n)
                # a reset, not a FIN (a half-closed client still gets its response)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                sock.close()
                time.sleep(0.2)  # the gateway sees the client go before the next request
            # each left both nodes idle again: they took turns (a leaked count would keep
            # every later request off the slow node)
            assert len(slow.received) == 3
            time.sleep(1.3)  # the slow node has answered the abandoned requests
            slow.delay = 0.0
            assert Counter(served_by(gw.port) for _ in range(10)) == {"slow": 5, "fast": 5}


def test_in_flight_counts_drop_when_a_node_fails_and_the_request_is_retried(tmp_path: Path) -> None:
    down_port = free_port()  # refused until the upstream below starts
    with Upstream("live") as live:
        nodes_cfg = [{"host": "127.0.0.1", "port": down_port}, {"host": "127.0.0.1", "port": live.port}]
        config = upstream_config(free_port(), {"type": "least_conn", "nodes": nodes_cfg})
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            assert {served_by(gw.port) for _ in range(6)} == {"live"}  # retried on the live node
            with Upstream("back", port=down_port):
                assert Counter(served_by(gw.port) for _ in range(10)) == {"back": 5, "live": 5}


def test_ewma_moves_traffic_away_from_a_node_that_turns_slow(tmp_path: Path) -> None:
    with Upstream("a", delay=0.01) as a, Upstream("b", delay=0.01) as b:
        config = upstream_config(free_port(), {"type": "ewma", "nodes": node_list(a, b)})
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            early = Counter(served_by(gw.port) for _ in range(20))
            assert set(early) == {"a", "b"}  # equal nodes share
            b.delay = 0.1
            late = [served_by(gw.port) for _ in range(40)]
    assert late.count("b") <= 4, late  # round robin would send it 20


def test_priority_failover_and_back(tmp_path: Path) -> None:
    high_port = free_port()  # nothing listens there yet: connections are refused
    with Upstream("low") as low:
        nodes_cfg = [{"host": "127.0.0.1", "port": high_port, "priority": 10},
                     {"host": "127.0.0.1", "port": low.port, "priority": 0}]
        config = upstream_config(free_port(), {"nodes": nodes_cfg})
        with GatewayProcess(tmp_path, config) as gw:
            assert {served_by(gw.port) for _ in range(6)} == {"low"}
            with Upstream("high", port=high_port):
                assert {served_by(gw.port) for _ in range(6)} == {"high"}
            assert {served_by(gw.port) for _ in range(6)} == {"low"}
