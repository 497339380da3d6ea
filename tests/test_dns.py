"""Nodes by name: host names in upstream nodes are resolved by the master with a real DNS server
on loopback (tests/support/dns_server.py) as the only nameserver, so a worker that resolved a
name itself (getaddrinfo) would fail: the names exist nowhere else. Then IPv6 node literals end
to end."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import socket
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from gateway.config import ConfigError, Node, parse_config_text
from gateway.upstream.compile import compile_upstream
from gateway.upstream.names import node_addresses, node_names
from gateway.upstream.resolver import NodeResolver
from tests.support.dns_server import DnsServer
from tests.support.gateway import GatewayProcess, base_config, http_get
from tests.support.upstream import Upstream, free_port


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


needs_ipv6 = pytest.mark.skipif(not has_ipv6_loopback(), reason="no IPv6 loopback (::1) here")


def until(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if check():
            return
        time.sleep(0.05)
    raise AssertionError(f"not within {timeout} s: {what}")


def served_by(port: int) -> dict[str, Any]:
    response, body = http_get(port, "/echo")
    assert response.status == 200, body
    return json.loads(body)


def named_config(port: int, dns: DnsServer, nodes: list[dict[str, Any]], **upstream: Any
                 ) -> dict[str, Any]:
    config = base_config(port, resolvers=[dns.address])
    config["upstreams"].append({"id": "named", "nodes": nodes, **upstream})
    config["routes"].append({"id": "all", "uri": "/*", "upstream_id": "named"})
    return config


# -- weights and names, without processes -------------------------------------------------------

def test_a_names_weight_is_split_between_its_addresses() -> None:
    nodes = [Node(host="svc.test", port=80, weight=1), Node(host="10.0.0.9", port=80, weight=1)]
    entries = node_addresses(nodes, {"svc.test": ["10.0.0.1", "10.0.0.2"]})
    assert entries == [[("10.0.0.1", "svc.test", 1), ("10.0.0.2", "svc.test", 1)],
                       [("10.0.0.9", None, 2)]]
    # three addresses beside two: scaled by 6, each name keeps its share exactly
    nodes = [Node(host="a.test", port=80, weight=2), Node(host="b.test", port=80, weight=1)]
    entries = node_addresses(nodes, {"a.test": ["1.1.1.1", "1.1.1.2", "1.1.1.3"],
                                     "b.test": ["2.2.2.1", "2.2.2.2"]})
    assert [w for _, _, w in entries[0]] == [4, 4, 4] and [w for _, _, w in entries[1]] == [3, 3]
    # a name with no address yet has no node; without a map (gateway check) names stay
    assert node_addresses(nodes, {}) == [[], []]
    assert node_addresses(nodes, None) == [[("a.test", None, 2)], [("b.test", None, 1)]]


def test_named_nodes_compile_to_addresses_that_keep_the_name_for_host() -> None:
    config = parse_config_text(
        "upstreams:\n"
        "  - id: u\n"
        "    pass_host: node\n"
        "    nodes: [{host: svc.test, port: 8080}, {host: '[::1]', port: 81}]\n", "t.yaml")
    group = compile_upstream(config.upstreams[0], "u", addresses={"svc.test": ["127.0.0.5", "::2"]})
    shown = [(n.host, n.port, n.name, n.host_header) for n in group.nodes]
    assert shown == [("127.0.0.5", 8080, "svc.test", b"svc.test:8080"),
                     ("::2", 8080, "svc.test", b"svc.test:8080"),
                     ("::1", 81, None, b"[::1]:81")]
    assert [n.key for n in group.nodes][:2] == [("127.0.0.5", 8080), ("::2", 8080)]


def test_node_names_are_found_in_upstreams_routes_and_plugin_upstreams() -> None:
    config = parse_config_text(
        "upstreams:\n"
        "  - {id: u, nodes: [{host: a.test, port: 80}, {host: 127.0.0.1, port: 81}]}\n"
        "routes:\n"
        "  - id: r\n"
        "    uri: /x\n"
        "    upstream: {nodes: {'b.test:80': 1, '[::1]:80': 1}}\n"
        "    plugins:\n"
        "      traffic-split:\n"
        "        rules: [{weighted_upstreams: [{upstream: {nodes: {'c.test:80': 1}}, weight: 1}]}]\n",
        "t.yaml")
    names = node_names(config)
    assert sorted(names) == ["a.test", "b.test", "c.test"]
    assert names["a.test"] == "upstreams[0].nodes[0].host"


def test_resolvers_are_checked_when_the_config_loads() -> None:
    good = parse_config_text("gateway: {resolvers: ['10.0.0.2', '10.0.0.3:5353', '[fd00::2]:53']}\n",
                             "t.yaml")
    assert good.gateway.resolvers == ["10.0.0.2", "10.0.0.3:5353", "[fd00::2]:53"]
    with pytest.raises(ConfigError) as info:
        parse_config_text("gateway: {resolvers: ['10.0.0.2', 'dns.example.com', '1.2.3.4:99999']}\n",
                          "t.yaml")
    text = str(info.value)
    assert "gateway.resolvers[1]" in text and "expected an IP address" in text
    assert "gateway.resolvers[2]" in text and "port must be 1..65535" in text


# -- the resolver against a real DNS server ------------------------------------------------------

def test_resolver_follows_the_ttl_and_keeps_the_last_good_answer(caplog: pytest.LogCaptureFixture
                                                                ) -> None:
    changes: list[dict[str, list[str]]] = []

    async def scenario(dns: DnsServer) -> None:
        resolver = NodeResolver([dns.address], changes.append)
        try:
            await resolver.update({"svc.test": "upstreams[0].nodes[0].host"})
            assert resolver.addresses() == {"svc.test": ["127.0.0.1"]}
            assert changes == []  # the first answer comes with the config, not as a change
            dns.set("svc.test", ["127.0.0.2", "::1"], ttl=1)
            deadline = time.monotonic() + 5
            while not changes and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            assert changes == [{"svc.test": ["127.0.0.2", "::1"]}]  # A and AAAA, after the TTL
            dns.failing = True
            asked = dns.queries_for("svc.test")
            await asyncio.sleep(4.5)  # the TTL, then retries after 1 s and 2 s
            assert dns.queries_for("svc.test") >= asked + 3 * 2  # 3 attempts, A and AAAA each
            assert resolver.addresses() == {"svc.test": ["127.0.0.2", "::1"]}
            assert len(changes) == 1
            dns.failing = False
            await asyncio.sleep(4.5)  # the next retry (4 s after the last) succeeds
        finally:
            await resolver.close()

    with DnsServer() as dns, caplog.at_level(logging.INFO, logger="gateway.resolver"):
        dns.set("svc.test", ["127.0.0.1"], ttl=1)
        asyncio.run(scenario(dns))
    failures = [r.getMessage() for r in caplog.records if "cannot resolve" in r.getMessage()]
    assert len(failures) == 1, failures  # logged once, not once per retry
    assert "keeping its last addresses 127.0.0.2, ::1" in failures[0]
    assert "upstreams[0].nodes[0].host" in failures[0]
    assert any("svc.test resolves again" in r.getMessage() for r in caplog.records)


# -- through the gateway -------------------------------------------------------------------------

def test_traffic_follows_a_names_new_address_after_its_ttl(tmp_path: Path) -> None:
    port = free_port()
    with DnsServer() as dns, Upstream("first") as first, \
            Upstream("second", port=first.port, host="127.0.0.2") as second:
        dns.set("svc.test", ["127.0.0.1"], ttl=1)
        config = named_config(port, dns, [{"host": "svc.test", "port": first.port}],
                              pass_host="node")
        with GatewayProcess(tmp_path, config):
            answer = served_by(port)
            assert answer["upstream"] == "first"
            # the name reaches the upstream, not the address it resolved to
            assert dict(answer["headers"])["host"] == f"svc.test:{first.port}"
            dns.set("svc.test", ["127.0.0.2"], ttl=1)
            until(lambda: all(served_by(port)["upstream"] == "second" for _ in range(6)), 10,
                  "every worker sends to the new address")
            assert dict(served_by(port)["headers"])["host"] == f"svc.test:{second.port}"


def test_a_failing_name_keeps_its_last_addresses_and_is_logged_once(tmp_path: Path) -> None:
    port = free_port()
    with DnsServer() as dns, Upstream("first") as first:
        dns.set("svc.test", ["127.0.0.1"], ttl=1)
        config = named_config(port, dns, [{"host": "svc.test", "port": first.port}])
        with GatewayProcess(tmp_path, config) as gw:
            assert served_by(port)["upstream"] == "first"
            dns.failing = True
            asked = dns.queries_for("svc.test")
            until(lambda: dns.queries_for("svc.test") >= asked + 6, 10, "three failed attempts")
            for _ in range(6):
                assert served_by(port)["upstream"] == "first"
            logs = gw.logs()
            assert logs.count("cannot resolve svc.test") == 1, logs
            assert "keeping its last addresses 127.0.0.1" in logs


def test_a_name_with_two_addresses_spreads_traffic_to_both(tmp_path: Path) -> None:
    port = free_port()
    with DnsServer() as dns, Upstream("first") as first, \
            Upstream("second", port=first.port, host="127.0.0.2"):
        dns.set("svc.test", ["127.0.0.1", "127.0.0.2"], ttl=300)
        config = named_config(port, dns, [{"host": "svc.test", "port": first.port}])
        with GatewayProcess(tmp_path, config, workers=1):
            seen = Counter(served_by(port)["upstream"] for _ in range(20))
    assert seen == {"first": 10, "second": 10}  # one worker, smooth round robin: exact


def test_a_name_unresolvable_at_start_is_logged_and_used_once_it_resolves(tmp_path: Path) -> None:
    port = free_port()
    with DnsServer() as dns, Upstream("late") as late:
        config = named_config(port, dns, [{"host": "late.test", "port": late.port}])
        with GatewayProcess(tmp_path, config) as gw:  # starts: other routes keep working
            assert "cannot resolve late.test (upstreams[0].nodes[0].host): Domain name not found" \
                in gw.logs()
            response, body = http_get(port, "/echo")
            assert response.status == 502 and late.received == []
            dns.set("late.test", ["127.0.0.1"], ttl=300)
            # retried 1, 2, 4, 8, 10 s apart while it fails
            until(lambda: http_get(port, "/echo")[0].status == 200, 15, "the name is used")
            assert served_by(port)["upstream"] == "late"


@needs_ipv6
@pytest.mark.parametrize("form", ["list", "mapping"])
def test_ipv6_node_literal_end_to_end(tmp_path: Path, form: str) -> None:
    port = free_port()
    with Upstream("v6", host="::1") as up:
        config = base_config(port)
        nodes: Any = ([{"host": "[::1]", "port": up.port}] if form == "list"
                      else {f"[::1]:{up.port}": 1})
        config["upstreams"].append({"id": "v6", "nodes": nodes, "pass_host": "node"})
        config["routes"].append({"id": "all", "uri": "/*", "upstream_id": "v6"})
        with GatewayProcess(tmp_path, config):
            answer = served_by(port)
    assert answer["upstream"] == "v6"
    assert dict(answer["headers"])["host"] == f"[::1]:{up.port}"


@needs_ipv6
def test_a_name_with_an_aaaa_record_reaches_an_ipv6_upstream(tmp_path: Path) -> None:
    port = free_port()
    with DnsServer() as dns, Upstream("v6", host="::1") as up:
        dns.set("v6.test", ["::1"], ttl=300)
        config = named_config(port, dns, [{"host": "v6.test", "port": up.port}])
        with GatewayProcess(tmp_path, config):
            assert served_by(port)["upstream"] == "v6"


def test_a_reload_that_adds_a_name_serves_it_at_once(tmp_path: Path) -> None:
    """The master resolves a new name before the workers get the config that names it."""
    port = free_port()
    with DnsServer() as dns, Upstream("ip") as ip, Upstream("named") as named:
        dns.set("new.test", ["127.0.0.1"], ttl=300)
        config = named_config(port, dns, [{"host": "127.0.0.1", "port": ip.port}])
        with GatewayProcess(tmp_path, config) as gw:
            assert served_by(port)["upstream"] == "ip"
            config["upstreams"][0]["nodes"] = [{"host": "new.test", "port": named.port}]
            gw.write_config(config)
            gw.wait_version(2)
            assert [served_by(port)["upstream"] for _ in range(4)] == ["named"] * 4


def test_a_restarted_worker_gets_the_current_addresses(tmp_path: Path) -> None:
    port = free_port()
    with DnsServer() as dns, Upstream("first") as first, \
            Upstream("second", port=first.port, host="127.0.0.2"):
        dns.set("svc.test", ["127.0.0.1"], ttl=1)
        config = named_config(port, dns, [{"host": "svc.test", "port": first.port}])
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            assert served_by(port)["upstream"] == "first"
            dns.set("svc.test", ["127.0.0.2"], ttl=300)
            until(lambda: served_by(port)["upstream"] == "second", 10, "the new address is used")
            old = gw.worker_pids()
            os.kill(old[0], signal.SIGKILL)
            until(lambda: gw.worker_pids() not in ([], old), 10, "the worker is replaced")
            gw.wait_version(1)
            until(lambda: http_get(port, "/echo")[0].status == 200, 10, "the new worker serves")
            assert [served_by(port)["upstream"] for _ in range(4)] == ["second"] * 4


def test_a_name_in_a_traffic_split_upstream_is_resolved_too(tmp_path: Path) -> None:
    port = free_port()
    with DnsServer() as dns, Upstream("route") as route_up, Upstream("canary") as canary:
        dns.set("canary.test", ["127.0.0.1"], ttl=300)
        config = base_config(port, resolvers=[dns.address])
        config["routes"].append({
            "id": "split", "uri": "/*",
            "upstream": {"nodes": [{"host": "127.0.0.1", "port": route_up.port}]},
            "plugins": {"traffic-split": {"rules": [{"weighted_upstreams": [
                {"upstream": {"nodes": {f"canary.test:{canary.port}": 1}}, "weight": 1}]}]}}})
        with GatewayProcess(tmp_path, config):
            assert [served_by(port)["upstream"] for _ in range(3)] == ["canary"] * 3


def test_a_nameserver_that_never_answers_delays_the_first_answer_only_briefly(
        caplog: pytest.LogCaptureFixture) -> None:
    """A start, or a reload, waits for a new name's first answer: bounded when DNS is silent."""
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))  # receives, never answers
    server = f"127.0.0.1:{silent.getsockname()[1]}"

    async def scenario() -> float:
        resolver = NodeResolver([server], lambda _: None)
        started = time.monotonic()
        try:
            await resolver.update({"quiet.test": "upstreams[0].nodes[0].host"})
            assert resolver.addresses() == {}
            return time.monotonic() - started
        finally:
            await resolver.close()

    with silent, caplog.at_level(logging.INFO, logger="gateway.resolver"):
        waited = asyncio.run(scenario())
    assert waited < 3.5  # QUERY_TIMEOUT (2 s), not c-ares's own retries for ever
    message = next(r.getMessage() for r in caplog.records if "cannot resolve" in r.getMessage())
    assert "quiet.test (upstreams[0].nodes[0].host)" in message
    assert "the node has no address" in message


def test_other_resolvers_are_asked_at_once_and_keep_the_last_addresses(
        caplog: pytest.LogCaptureFixture) -> None:
    """A reload that changes ``resolvers``: every name is asked the new servers straight away
    (not when its TTL ends), and keeps its addresses if they cannot answer."""
    async def scenario(first: DnsServer, second: DnsServer) -> None:
        resolver = NodeResolver([first.address], lambda _: None)
        try:
            await resolver.update({"svc.test": "here"})
            assert resolver.addresses() == {"svc.test": ["127.0.0.1"]}
            await resolver.set_nameservers([second.address])
            await resolver.update({"svc.test": "here"})
            assert resolver.addresses() == {"svc.test": ["127.0.0.3"]}  # TTL 300 not waited for
            first.failing = True
            await resolver.set_nameservers([first.address])
            await resolver.update({"svc.test": "here"})
            assert resolver.addresses() == {"svc.test": ["127.0.0.3"]}
        finally:
            await resolver.close()

    with DnsServer() as first, DnsServer() as second, \
            caplog.at_level(logging.INFO, logger="gateway.resolver"):
        first.set("svc.test", ["127.0.0.1"], ttl=300)
        second.set("svc.test", ["127.0.0.3"], ttl=300)
        asyncio.run(scenario(first, second))
    failures = [r.getMessage() for r in caplog.records if "cannot resolve" in r.getMessage()]
    assert len(failures) == 1 and "keeping its last addresses 127.0.0.3" in failures[0], failures
