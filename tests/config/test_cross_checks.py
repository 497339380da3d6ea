"""The checks a schema cannot express, one resource at a time and on a whole Config."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config.cross_checks import (
    check_chash_key,
    check_consumers,
    check_gateway,
    check_plugin_values,
    check_route,
    check_upstream,
    check_uri,
    validate_config,
)
from gateway.config.issues import ConfigIssue
from gateway.config.schema import (
    AdminSettings,
    Config,
    Consumer,
    GatewaySettings,
    GlobalRules,
    Node,
    Route,
    Upstream,
)

NODE = Node(host="10.0.0.1", port=80)


def found(issues: list[ConfigIssue]) -> list[tuple[str, str]]:
    return [(i.path, i.message) for i in issues]


def upstream(**fields: Any) -> Upstream:
    return Upstream(**{"id": "u", "nodes": [NODE], **fields})


def route(**fields: Any) -> Route:
    return Route(**{"id": "r", "uri": "/", "upstream_id": "u", **fields})


def test_a_valid_config_has_no_issues() -> None:
    config = Config(upstreams=[upstream()], routes=[route()], consumers=[Consumer(username="alice")])
    assert validate_config(config) == []


def test_issues_come_in_document_order_with_the_file_name() -> None:
    config = Config(
        gateway=GatewaySettings(listen=[]),
        upstreams=[upstream(), upstream(nodes=[])],
        routes=[route(upstream_id="nope"), route()],
        consumers=[Consumer(username="a"), Consumer(username="a")],
    )
    issues = validate_config(config, "g.yaml")
    assert {i.file for i in issues} == {"g.yaml"}
    assert found(issues) == [
        ("gateway.listen", "at least one listen address is required"),
        ("upstreams[1].nodes", "at least one node is required"),
        ("upstreams[1].id", "duplicate upstream id 'u' (first at upstreams[0])"),
        ("routes[0].upstream_id", "unknown upstream 'nope'"),
        ("routes[1].id", "duplicate route id 'r' (first at routes[0])"),
        ("consumers[1].username", "duplicate username 'a' (first at consumers[0])"),
    ]


def test_without_a_file_name_issues_name_the_config() -> None:
    assert [i.file for i in validate_config(Config(routes=[route()]))] == ["<config>"]


def test_listen_addresses_must_parse_and_not_overlap() -> None:
    gw = GatewaySettings(listen=["0.0.0.0:80", "127.0.0.1:80", "nope", "[::]:80"])
    assert found(check_gateway(gw, "f")) == [
        ("gateway.listen[1]", "'127.0.0.1:80' duplicates or overlaps listen[0] '0.0.0.0:80'"),
        ("gateway.listen[2]", "invalid address 'nope': expected host:port, IPv6 as [addr]:port"),
    ]


def test_the_admin_listen_must_not_take_a_proxy_address_and_its_networks_must_parse() -> None:
    # A network with host bits set ("10.0.0.1/8") is what people write for "this host's network".
    admin = AdminSettings(listen="0.0.0.0:9080", allow_admin=["10.0.0.1/8", "10.0.0.300/8"])
    gw = GatewaySettings(listen=["127.0.0.1:9080"], admin=admin)
    assert found(check_gateway(gw, "f")) == [
        ("gateway.admin.listen", "'0.0.0.0:9080' conflicts with proxy listen[0] '127.0.0.1:9080'"),
        ("gateway.admin.allow_admin[1]", "invalid CIDR '10.0.0.300/8'"),
    ]
    bad = GatewaySettings(admin=AdminSettings(listen="localhost"))
    assert found(check_gateway(bad, "f")) == [
        ("gateway.admin.listen", "invalid address 'localhost': expected host:port, IPv6 as [addr]:port")
    ]


def test_an_upstream_needs_a_valid_id_only_when_it_is_not_inline() -> None:
    path = ("upstreams", 0)
    assert found(check_upstream(upstream(id=None), path, "f", inline=False)) == [
        ("upstreams[0].id", "missing required field")
    ]
    assert found(check_upstream(upstream(id="a/b"), path, "f", inline=False)) == [
        ("upstreams[0].id", "invalid id 'a/b': 1-64 characters of A-Z a-z 0-9 _ . -")
    ]
    assert check_upstream(upstream(id=None), ("routes", 0, "upstream"), "f", inline=True) == []
    assert found(check_upstream(upstream(), ("routes", 0, "upstream"), "f", inline=True)) == [
        ("routes[0].upstream.id", "an inline upstream has no id; define it under `upstreams` and use upstream_id")
    ]


def test_upstream_nodes() -> None:
    nodes = [Node(host=host, port=port, weight=0) for host, port in [("a", 1), ("A", 1), ("bad host", 2)]]
    assert found(check_upstream(upstream(nodes=nodes), ("upstreams", 0), "f", inline=False)) == [
        ("upstreams[0].nodes[1]", "duplicate node A:1"),
        ("upstreams[0].nodes[2].host", "invalid host 'bad host'"),
        ("upstreams[0].nodes", "every node has weight 0; no traffic could be sent"),
    ]
    assert found(check_upstream(upstream(nodes=[]), ("upstreams", 0), "f", inline=False)) == [
        ("upstreams[0].nodes", "at least one node is required")
    ]
    assert check_upstream(upstream(nodes=[Node(host="[::1]", port=1)]), ("upstreams", 0), "f", inline=False) == []
    assert found(check_upstream(upstream(nodes=[Node(host="[::1", port=1)]), ("upstreams", 0), "f", inline=False)) == [
        ("upstreams[0].nodes[0].host", "invalid host '[::1'")
    ]


@pytest.mark.parametrize(
    ("fields", "problem"),
    [
        ({"pass_host": "rewrite"}, "required when pass_host is 'rewrite'"),
        ({"pass_host": "node", "upstream_host": "h"}, "only used when pass_host is 'rewrite'"),
        ({"pass_host": "rewrite", "upstream_host": "a b"}, "invalid host 'a b'"),
        ({"pass_host": "rewrite", "upstream_host": "  "}, "invalid host '  '"),
    ],
)
def test_upstream_host_goes_with_pass_host_rewrite(fields: dict[str, Any], problem: str) -> None:
    assert found(check_upstream(upstream(**fields), ("upstreams", 0), "f", inline=False)) == [
        ("upstreams[0].upstream_host", problem)
    ]


@pytest.mark.parametrize(
    ("hash_on", "key", "problem"),
    [
        ("consumer", None, None),
        ("vars", "remote_addr", None),
        ("vars", "arg_user", None),
        ("vars", "cookie_session", None),
        ("vars", None, "chash with hash_on 'vars' requires `key`"),
        ("header", "X-User", None),
        ("header", "bad header", "invalid header name 'bad header'"),
        ("cookie", "a;b", "invalid cookie name 'a;b'"),
        ("vars_combinations", "$remote_addr$arg_x", None),
        ("vars_combinations", "remote_addr", "vars_combinations key 'remote_addr' must reference variables like "
         "'$remote_addr$uri'"),
        ("vars_combinations", "$uri$nope$bad", "unknown variable(s) in key: $nope, $bad"),
        ("vars_combinations", "${arg_user}-${uri}", None),
        # read as http_<name>: a token that is no variable name cannot be hashed on
        ("header", "X!User", "invalid header name 'X!User'"),
        # the node is chosen before the response: response variables would be empty
        ("vars", "status", "chash key variable(s) status have no value until the response: the node is "
         "chosen before it"),
        ("vars_combinations", "$uri$sent_http_x_id", "chash key variable(s) sent_http_x_id have no value until "
         "the response: the node is chosen before it"),
    ],
)
def test_chash_keys(hash_on: str, key: str | None, problem: str | None) -> None:
    assert check_chash_key(upstream(type="chash", hash_on=hash_on, key=key)) == problem


CHASH_VARS = ["consumer", "host", "hostname", "query_string", "remote_addr", "remote_port", "request_uri", "scheme",
              "server_addr", "server_port", "uri"]


@pytest.mark.parametrize("var", CHASH_VARS)
def test_every_known_chash_variable_is_a_key(var: str) -> None:
    assert check_chash_key(upstream(type="chash", hash_on="vars", key=var)) is None
    assert check_chash_key(upstream(type="chash", hash_on="vars_combinations", key=f"${var}")) is None


def test_an_unknown_chash_variable_lists_the_known_ones() -> None:
    problem = check_chash_key(upstream(type="chash", hash_on="vars", key="nope"))
    assert problem is not None
    assert problem.startswith("invalid chash key 'nope': expected a request variable: one of ")
    named = problem.split("one of ", 1)[1]
    assert all(var in named for var in CHASH_VARS)
    assert "arg_NAME" in named and "http_NAME" in named and "cookie_NAME" in named


def test_the_chash_key_is_checked_only_for_chash() -> None:
    assert check_upstream(upstream(type="roundrobin", key="nope"), ("upstreams", 0), "f", inline=False) == []
    assert found(check_upstream(upstream(type="chash", key="nope"), ("upstreams", 0), "f", inline=False))[0][0] == (
        "upstreams[0].key"
    )


@pytest.mark.parametrize(
    ("uri", "problem"),
    [
        ("/", None),
        ("/users/:id/posts", None),
        ("/static/*", None),
        ("/static/*path", None),
        ("/Zoo/:id", None),
        ("users", "must start with '/'"),
        ("/a b", "must not contain whitespace, control characters, '?' or '#'"),
        ("/a?b=1", "must not contain whitespace, control characters, '?' or '#'"),
        ("/a#top", "must not contain whitespace, control characters, '?' or '#'"),
        ("/a\x01", "must not contain whitespace, control characters, '?' or '#'"),
        ("/users/:1d", "bad parameter segment ':1d' (expected :name)"),
        ("/a/*/b", "'*' is only allowed as the last segment ('/prefix/*' or '/prefix/*name')"),
        ("/a/x*", "'*' is only allowed as the last segment ('/prefix/*' or '/prefix/*name')"),
    ],
)
def test_uri_patterns(uri: str, problem: str | None) -> None:
    assert check_uri(uri) == problem


def check(r: Route, upstream_ids: tuple[str, ...] = ("u",)) -> list[tuple[str, str]]:
    return found(check_route(r, ("routes", 3), "f", {u: 0 for u in upstream_ids}))


def test_route_uri_and_uris() -> None:
    assert check(route(uri=None)) == [("routes[3].uri", "exactly one of `uri` or `uris` is required")]
    assert check(route(uris=["/b"])) == [("routes[3].uri", "exactly one of `uri` or `uris` is required")]
    assert check(route(uri=None, uris=[])) == [("routes[3].uris", "must not be empty")]
    assert check(route(uri=None, uris=["/a", "b"])) == [("routes[3].uris[1]", "invalid uri 'b': must start with '/'")]
    assert check(route(uri="b")) == [("routes[3].uri", "invalid uri 'b': must start with '/'")]


def test_route_hosts() -> None:
    both = [("routes[3].hosts", "use either `host` or `hosts`, not both")]
    assert check(route(host="a.com", hosts=["b.com"])) == both
    assert check(route(hosts=[])) == [("routes[3].hosts", "must not be empty; omit it to match any host")]
    port = [("routes[3].host", "invalid host 'a.com:80': ports are not part of a route host")]
    assert check(route(host="A.com:80")) == port
    assert check(route(hosts=["*.a.com", "a.*.com", "[::1]"])) == [
        ("routes[3].hosts[1]", "invalid host 'a.*.com': expected a host name or '*.suffix'"),
        ("routes[3].hosts[2]", "invalid host '[::1]': expected a host name or '*.suffix'"),
    ]


def test_route_methods() -> None:
    assert check(route(methods=[])) == [("routes[3].methods", "must not be empty; omit it to match every method")]
    known = "CONNECT, DELETE, GET, HEAD, OPTIONS, PATCH, POST, PURGE, PUT, TRACE"
    assert check(route(methods=["get", "FETCH"])) == [
        ("routes[3].methods[1]", f"unknown method 'FETCH'; expected one of {known}")
    ]


def test_route_upstreams() -> None:
    inline = Upstream(nodes=[NODE])
    assert check(route(upstream=inline)) == [
        ("routes[3].upstream", "use either `upstream_id` or an inline `upstream`, not both")
    ]
    assert check(route(upstream_id=None, upstream=inline)) == []
    assert check(route(upstream_id=None, upstream=Upstream(nodes=[]))) == [
        ("routes[3].upstream.nodes", "at least one node is required")
    ]
    assert check(route(), upstream_ids=()) == [("routes[3].upstream_id", "unknown upstream 'u'")]
    assert check(route(upstream_id=None)) == [
        ("routes[3]", "a route needs an upstream_id, an inline upstream, or a plugin that answers")
    ]
    assert check(route(upstream_id=None, plugins={"mock": {}})) == []


def test_route_ids() -> None:
    too_long = "a" * 65
    message = f"invalid id {too_long!r}: 1-64 characters of A-Z a-z 0-9 _ . -"
    assert check(route(id=too_long)) == [("routes[3].id", message)]
    assert check(route(id="v1.users-list_2")) == []


def test_consumers() -> None:
    consumers = [Consumer(username="ok-1"), Consumer(username="no way"), Consumer(username="ok-1")]
    assert found(check_consumers(consumers, "f")) == [
        ("consumers[1].username", "invalid username 'no way': only A-Z a-z 0-9 _ -"),
        ("consumers[2].username", "duplicate username 'ok-1' (first at consumers[0])"),
    ]


def test_plugin_values_must_be_json_data() -> None:
    plugins: dict[str, Any] = {
        "fine": {"a": [1, 2.5, "s", None, True, {"b": {}}]},
        "odd": {"inf": float("inf"), "nested": [{1: "x"}], "when": {"t": (1, 2)}},
    }
    assert found(check_plugin_values(plugins, ("routes", 0, "plugins"), "f")) == [
        ("routes[0].plugins.odd.inf", "non-finite number is not allowed"),
        ("routes[0].plugins.odd.nested[0]", "key 1 must be a string"),
        ("routes[0].plugins.odd.when.t", "unsupported value of type tuple; use JSON types"),
    ]


def test_plugin_values_are_checked_everywhere_plugins_appear() -> None:
    nan = {"p": {"x": float("nan")}}
    config = Config(
        upstreams=[upstream()],
        routes=[route(plugins=nan)],
        consumers=[Consumer(username="c", plugins=nan)],
        global_rules=GlobalRules(plugins=nan),
    )
    assert [i.path for i in validate_config(config)] == [
        "routes[0].plugins.p.x",
        "consumers[0].plugins.p.x",
        "global_rules.plugins.p.x",
    ]
