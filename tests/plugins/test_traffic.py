"""traffic-split, ip-restriction and ua-restriction through real requests: a master with two
worker processes in front of two real upstreams ("up" and "canary", each answering with its
name in X-Upstream), listening on 127.0.0.1 and on [::1] so the address checks see real IPv4
and IPv6 peers."""
from __future__ import annotations

import http.client
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.config_check import config_issues, write_plugin_config
from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

Reply = tuple[int, dict[str, str], bytes]


def request(port: int, path: str, headers: dict[str, str] | None = None, host: str = "127.0.0.1",
            source: str | None = None) -> Reply:
    conn = http.client.HTTPConnection(host, port, timeout=10,
                                      source_address=(source, 0) if source else None)
    try:
        conn.request("GET", path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def answered_by(reply: Reply) -> str:
    status, headers, _ = reply
    assert status == 200, reply
    return headers["x-upstream"]


def routes(up_port: int, canary_port: int) -> list[dict[str, Any]]:
    def route(route_id: str, plugins: dict[str, Any]) -> dict[str, Any]:
        return {"id": route_id, "uri": f"/{route_id}/*", "upstream_id": "up", "plugins": plugins}

    canary_inline = {"nodes": {f"127.0.0.1:{canary_port}": 1}}  # APISIX's map form
    return [
        route("split", {"traffic-split": {"rules": [{"weighted_upstreams": [
            {"upstream_id": "canary", "weight": 1},
            {"weight": 9},  # no upstream: the route's own
        ]}]}}),
        route("header", {"traffic-split": {"rules": [{
            "match": [{"vars": [["http_x_canary", "==", "yes"]]}],
            "weighted_upstreams": [{"upstream_id": "canary"}]}]}}),
        route("cookie", {"traffic-split": {"rules": [{
            "match": [{"vars": [["cookie_release", "~~", "^canary-[0-9]+$"]]}],
            "weighted_upstreams": [{"upstream": canary_inline, "weight": 1}]}]}}),
        route("ordered", {"traffic-split": {"rules": [
            # any of the match entries: a query argument in a list, or a numeric header
            {"match": [{"vars": [["arg_user", "in", ["ann", "bob"]]]},
                       {"vars": [["http_x_build", ">", 41], ["http_x_build", "<", 100]]}],
             "weighted_upstreams": [{"upstream_id": "canary"}]},
            # every other request: all to the route's upstream (canary weight 0)
            {"weighted_upstreams": [{"upstream_id": "canary", "weight": 0}, {"weight": 1}]},
        ]}}),
        route("negated", {"traffic-split": {"rules": [{
            "match": [{"vars": [["http_user_agent", "!", "~*", "mobile"]]}],
            "weighted_upstreams": [{"upstream_id": "canary"}]}]}}),
        route("logic", {"traffic-split": {"rules": [{
            "match": [{"vars": ["OR", ["arg_beta", "==", 1],
                                ["remote_addr", "ipmatch", ["::1/128", "192.0.2.0/24"]]]}],
            "weighted_upstreams": [{"upstream_id": "canary"}]}]}}),
        route("ip6-allow", {"ip-restriction": {"whitelist": ["::1/128"]}}),
        route("ip6-deny", {"ip-restriction": {"blacklist": ["::1"]}}),
        route("ip6-elsewhere", {"ip-restriction": {"whitelist": ["fe80::/10", "2001:db8::/32"]}}),
        route("ip-not-listed", {"ip-restriction": {"blacklist": ["fe80::/10", "2001:db8::/32",
                                                                "10.0.0.0/8"]}}),
        route("ip4-allow", {"ip-restriction": {"whitelist": ["127.0.0.0/8"]}}),
        route("ip4-deny", {"ip-restriction": {"blacklist": ["127.0.0.1/32"],
                                              "message": "go away", "response_code": 404}}),
        route("ip4-one", {"ip-restriction": {"whitelist": ["127.0.0.2", "2001:db8::1"]}}),
        route("ua-deny", {"ua-restriction": {"denylist": [r"(Baiduspider)/(\d+)\.(\d+)",
                                                          "bad-bot"]}}),
        route("ua-allow", {"ua-restriction": {"allowlist": ["^my-app/"], "bypass_missing": True,
                                              "message": "apps only"}}),
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Upstream, Upstream]]:
    with Upstream("up") as up, Upstream("canary") as canary:
        port = free_port()
        config = base_config(port)
        config["gateway"]["listen"] = [f"127.0.0.1:{port}", f"[::1]:{port}"]
        config["upstreams"] = [
            {"id": "up", "nodes": [{"host": "127.0.0.1", "port": up.port}]},
            {"id": "canary", "nodes": [{"host": "127.0.0.1", "port": canary.port}]},
        ]
        config["routes"] = routes(up.port, canary.port)
        with GatewayProcess(tmp_path_factory.mktemp("traffic"), config):
            yield port, up, canary


# -- traffic-split ------------------------------------------------------------------------------

def test_weights_send_one_request_in_ten_to_the_canary(gateway: tuple[int, Upstream, Upstream]
                                                       ) -> None:
    port, _, _ = gateway
    total = 2000
    counts = {"up": 0, "canary": 0}
    # several keep-alive connections, so both workers take a share
    connections = [http.client.HTTPConnection("127.0.0.1", port, timeout=10) for _ in range(6)]
    try:
        for i in range(total):
            conn = connections[i % len(connections)]
            conn.request("GET", f"/split/{i}")
            response = conn.getresponse()
            response.read()
            assert response.status == 200
            counts[str(response.getheader("X-Upstream"))] += 1
    finally:
        for conn in connections:
            conn.close()
    assert counts["up"] + counts["canary"] == total
    assert abs(counts["canary"] - total * 0.10) <= total * 0.03, counts


def test_header_rule_sends_every_matching_request_to_the_canary(
        gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, _ = gateway
    assert {answered_by(request(port, "/header/x", {"X-Canary": "yes"})) for _ in range(40)} \
        == {"canary"}
    assert {answered_by(request(port, "/header/x", {"X-Canary": "no"})) for _ in range(20)} \
        == {"up"}
    assert {answered_by(request(port, "/header/x")) for _ in range(20)} == {"up"}


def test_cookie_rule_and_an_inline_upstream(gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, canary = gateway
    before = len(canary.received)
    for _ in range(20):
        assert answered_by(request(port, "/cookie/a", {"Cookie": "a=1; release=canary-7"})) \
            == "canary"
    assert len(canary.received) - before == 20
    assert answered_by(request(port, "/cookie/a", {"Cookie": "release=canary-x"})) == "up"
    assert answered_by(request(port, "/cookie/a", {"Cookie": "other=canary-7"})) == "up"
    assert answered_by(request(port, "/cookie/a")) == "up"


def test_rules_in_order_any_match_entry_and_numeric_comparison(
        gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, _ = gateway
    assert answered_by(request(port, "/ordered/x?user=bob")) == "canary"
    assert answered_by(request(port, "/ordered/x?user=ann&z=1")) == "canary"
    assert answered_by(request(port, "/ordered/x", {"X-Build": "42"})) == "canary"
    # both conditions of one match entry must hold; "100" is not < 100, "9" is not > 41
    for headers in ({"X-Build": "100"}, {"X-Build": "9"}, {"X-Build": "forty-two"}, {}):
        assert answered_by(request(port, "/ordered/x?user=carl", headers)) == "up", headers
    # the fallback rule's canary has weight 0: never picked
    assert {answered_by(request(port, "/ordered/y")) for _ in range(20)} == {"up"}


def test_negated_case_insensitive_regex(gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, _ = gateway
    assert answered_by(request(port, "/negated/x", {"User-Agent": "Desktop/1"})) == "canary"
    assert answered_by(request(port, "/negated/x", {"User-Agent": "Some MOBILE app"})) == "up"


def test_or_expression_with_ipmatch(gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, _ = gateway
    assert answered_by(request(port, "/logic/x", host="::1")) == "canary"
    assert answered_by(request(port, "/logic/x?beta=1")) == "canary"
    assert answered_by(request(port, "/logic/x?beta=1.0")) == "canary"  # compared as numbers
    assert answered_by(request(port, "/logic/x?beta=2")) == "up"
    assert answered_by(request(port, "/logic/x")) == "up"


@pytest.mark.parametrize("plugins, where, words", [
    ({"traffic-split": {"rules": [{"weighted_upstreams": [{"upstream_id": "nope"}]}]}},
     "routes[0].plugins.traffic-split", "no upstream with id 'nope'"),
    ({"traffic-split": {"rules": [{"match": [{"vars": [["arg_x", "=~", "1"]]}],
                                   "weighted_upstreams": [{"weight": 1}]}]}},
     "routes[0].plugins.traffic-split.rules[0].match[0]", "unknown operator"),
    ({"traffic-split": {"rules": [{"match": [{"vars": [["no_such_var", "==", "1"]]}],
                                   "weighted_upstreams": [{"weight": 1}]}]}},
     "routes[0].plugins.traffic-split.rules[0].match[0]", "unknown variable 'no_such_var'"),
    ({"traffic-split": {"rules": [{"weighted_upstreams": [{"weight": 0}]}]}},
     "routes[0].plugins.traffic-split.rules[0]", "at least one weight"),
    ({"traffic-split": {"rules": [{"weighted_upstreams": [
        {"upstream": {"nodes": [{"host": "127.0.0.1", "port": 0}]}}]}]}},
     "routes[0].plugins.traffic-split.rules[0].weighted_upstreams[0]", "upstream"),
    ({"traffic-split": {"rules": [{"weighted_upstreams": [
        {"upstream": {"nodes": [{"host": "127.0.0.1", "port": 1}], "checks": {"active": {}}}}]}]}},
     "routes[0].plugins.traffic-split.rules[0].weighted_upstreams[0]", "use upstream_id"),
    ({"ip-restriction": {"whitelist": ["10.0.0.0/33"]}},
     "routes[0].plugins.ip-restriction", "'10.0.0.0/33' is not an IP address or CIDR"),
    ({"ip-restriction": {"whitelist": ["::1"], "blacklist": ["::2"]}},
     "routes[0].plugins.ip-restriction", "exactly one of whitelist or blacklist"),
    ({"ua-restriction": {"denylist": ["(unclosed"]}},
     "routes[0].plugins.ua-restriction", "invalid regex"),
    ({"ua-restriction": {"bypass_missing": True}},
     "routes[0].plugins.ua-restriction", "exactly one of allowlist or denylist"),
])
def test_config_errors(tmp_path: Path, plugins: dict[str, Any], where: str, words: str) -> None:
    path = write_plugin_config(tmp_path, plugins)
    # an unknown upstream id is found when the plugin binds (the config compiles); the rest
    # when the plugin's config is decoded
    issues = config_issues(path, full="no upstream with id" in words)
    assert [p for p, _ in issues] == [where], issues
    assert words in issues[0][1], issues


# -- ip-restriction -----------------------------------------------------------------------------

def refused(reply: Reply, status: int = 403, message: str = "Your IP address is not allowed"
            ) -> None:
    got, headers, body = reply
    assert got == status, reply
    assert headers["content-type"] == "application/json"
    assert json.loads(body) == {"message": message}


def test_ipv6_cidrs(gateway: tuple[int, Upstream, Upstream]) -> None:
    port, up, _ = gateway
    v6, v4 = "::1", "127.0.0.1"
    # the peer address really is IPv6 on the [::1] listener
    assert answered_by(request(port, "/ip6-allow/x", host=v6)) == "up"
    assert json.loads(request(port, "/ip6-allow/echo", host=v6)[2])["headers"] and \
        dict(json.loads(request(port, "/ip6-allow/echo", host=v6)[2])["headers"])[
            "x-real-ip"] == "::1"
    mark = up.mark()
    refused(request(port, "/ip6-allow/x", host=v4))
    refused(request(port, "/ip6-deny/x", host=v6))
    up.assert_nothing_forwarded(mark)  # refusals never reach the upstream
    assert answered_by(request(port, "/ip6-deny/x", host=v4)) == "up"
    refused(request(port, "/ip6-elsewhere/x", host=v6))
    refused(request(port, "/ip6-elsewhere/x", host=v4))
    assert answered_by(request(port, "/ip-not-listed/x", host=v6)) == "up"
    assert answered_by(request(port, "/ip-not-listed/x", host=v4)) == "up"


def test_ipv4_cidrs(gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, _ = gateway
    assert answered_by(request(port, "/ip4-allow/x")) == "up"
    assert answered_by(request(port, "/ip4-allow/x", source="127.0.0.2")) == "up"
    refused(request(port, "/ip4-allow/x", host="::1"))
    refused(request(port, "/ip4-deny/x"), status=404, message="go away")
    assert answered_by(request(port, "/ip4-deny/x", source="127.0.0.2")) == "up"
    assert answered_by(request(port, "/ip4-deny/x", host="::1")) == "up"
    # a single address: only that client (twice, so the remembered decision is checked too)
    for _ in range(2):
        assert answered_by(request(port, "/ip4-one/x", source="127.0.0.2")) == "up"
        refused(request(port, "/ip4-one/x"))
        refused(request(port, "/ip4-one/x", host="::1"))


# -- ua-restriction -----------------------------------------------------------------------------

def test_ua_denylist(gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, _ = gateway
    for agent in ("Mozilla/5.0 (compatible; Baiduspider/2.0)", "a bad-bot here"):
        refused(request(port, "/ua-deny/x", {"User-Agent": agent}), message="Not allowed")
    assert answered_by(request(port, "/ua-deny/x", {"User-Agent": "Baiduspider/x"})) == "up"
    assert answered_by(request(port, "/ua-deny/x", {"User-Agent": "curl/8.5.0"})) == "up"
    # no User-Agent at all: refused unless bypass_missing
    refused(request(port, "/ua-deny/x"), message="Not allowed")


def test_ua_allowlist_with_bypass_missing(gateway: tuple[int, Upstream, Upstream]) -> None:
    port, _, _ = gateway
    assert answered_by(request(port, "/ua-allow/x", {"User-Agent": "my-app/1.2"})) == "up"
    refused(request(port, "/ua-allow/x", {"User-Agent": "curl/8 my-app/1.2"}), message="apps only")
    assert answered_by(request(port, "/ua-allow/x")) == "up"
