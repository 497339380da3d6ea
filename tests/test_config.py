"""Tests of gateway.config: schema defaults, YAML loading, env expansion,
error reporting (paths and lines), cross checks and serialisation."""

from __future__ import annotations

import textwrap
from pathlib import Path
from typing import Any

import msgspec
import pytest

from gateway.config import (
    Config,
    ConfigError,
    ConfigIssue,
    FileChecks,
    GatewaySettings,
    Node,
    Route,
    Upstream,
    config_from_bytes,
    config_to_bytes,
    decode_config,
    default_config,
    dump_config,
    load_config,
    parse_config_file,
    parse_config_text,
    validate_config,
)

DESIGN_EXAMPLE = """\
gateway:                      # node settings
  listen: ["127.0.0.1:9080"]
  workers: auto
  admin: {listen: "127.0.0.1:9180", key: "${GATEWAY_ADMIN_KEY}"}
  store: file                 # file | etcd
upstreams:
  - id: users
    type: roundrobin          # roundrobin | least_conn | chash | ewma
    nodes: [{host: 127.0.0.1, port: 9001, weight: 1}]
    timeout: {connect: 1.0, send: 5.0, read: 5.0}
    retries: 2
    keepalive: {size: 320, idle_timeout: 60, requests: 10000}
routes:
  - id: user-api
    uri: /api/users/:id       # also uris: [...], prefix "/static/*"
    hosts: ["api.example.com", "*.example.com"]
    methods: [GET, POST]
    priority: 0
    upstream_id: users        # or an inline upstream: {...}
    plugins:
      key-auth: {}
      limit-req: {rate: 100, burst: 50, key: consumer}
consumers:
  - username: alice
    plugins: {key-auth: {key: "alice-key"}}
global_rules:
  plugins: {prometheus: {}}
"""

ENV = {"GATEWAY_ADMIN_KEY": "s3cret"}


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def errors(tmp_path: Path, text: str, env: dict[str, str] | None = None) -> list[ConfigIssue]:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path, env=env or {})
    return info.value.issues


def only(issues: list[ConfigIssue]) -> ConfigIssue:
    assert len(issues) == 1, [str(i) for i in issues]
    return issues[0]


def find(issues: list[ConfigIssue], path: str) -> ConfigIssue:
    for issue in issues:
        if issue.path == path:
            return issue
    raise AssertionError(f"no issue at {path!r} in {[str(i) for i in issues]}")


# ------------------------------------------------------------------- defaults


def test_empty_document_gives_defaults() -> None:
    config = parse_config_text("# nothing\n", env={})
    assert config == Config()
    gw = config.gateway
    assert gw.listen == ["127.0.0.1:9080"]
    assert gw.workers == "auto"
    assert gw.store == "file"
    assert gw.admin.listen == "127.0.0.1:9180"
    assert gw.admin.key is None
    assert gw.admin.allow_admin == ["127.0.0.0/8", "::1/128"]
    assert (gw.client_header_timeout, gw.client_body_timeout) == (10.0, 60.0)
    assert (gw.keepalive_timeout, gw.send_timeout) == (60.0, 60.0)
    assert (gw.max_request_line, gw.max_header_size, gw.max_headers) == (8192, 32768, 100)
    assert gw.client_max_body_size == 0
    assert gw.graceful_shutdown_timeout == 10.0
    assert gw.access_log is None and gw.state_dir is None
    assert config.upstreams == [] and config.routes == [] and config.consumers == []
    assert config.global_rules.plugins == {}


def test_struct_defaults() -> None:
    up = Upstream(id="u", nodes=[Node(host="127.0.0.1", port=80)])
    assert up.type == "roundrobin" and up.scheme == "http" and up.pass_host == "pass"
    assert (up.timeout.connect, up.timeout.send, up.timeout.read) == (6.0, 60.0, 60.0)
    assert (up.keepalive.size, up.keepalive.idle_timeout, up.keepalive.requests) == (320, 60.0, 1000)
    assert up.retries is None and up.effective_retries == 0
    assert up.nodes[0].weight == 1 and up.nodes[0].priority == 0
    r = Route(id="r", uri="/", hosts=["API.Example.COM"], methods=["get"], plugins={"x": {}})
    assert r.hosts == ["api.example.com"] and r.methods == ["GET"]
    assert r.status == 1 and r.enable_websocket is False and r.priority == 0
    assert r.paths == ["/"] and r.host_list == ["api.example.com"]


def test_structs_are_frozen() -> None:
    with pytest.raises(AttributeError):
        GatewaySettings().workers = 3  # type: ignore[misc]


# ------------------------------------------------------------ DESIGN example


def test_design_example_parses(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE), env=ENV)
    assert config.gateway.admin.key == "s3cret"
    up = config.upstream_by_id()["users"]
    assert up.nodes == [Node(host="127.0.0.1", port=9001, weight=1)]
    assert (up.timeout.connect, up.retries, up.keepalive.requests) == (1.0, 2, 10000)
    assert up.keepalive.idle_timeout == 60.0
    route = config.routes[0]
    assert route.uri == "/api/users/:id"
    assert route.hosts == ["api.example.com", "*.example.com"]
    assert route.methods == ["GET", "POST"]
    assert route.upstream_id == "users"
    assert route.plugins == {"key-auth": {}, "limit-req": {"rate": 100, "burst": 50, "key": "consumer"}}
    assert config.consumers[0].username == "alice"
    assert config.consumers[0].plugins == {"key-auth": {"key": "alice-key"}}
    assert config.global_rules.plugins == {"prometheus": {}}


def test_shorthands(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
        gateway:
          listen: "[::1]:9080"
          workers: 4
        upstreams:
          - id: u
            nodes: {"127.0.0.1:9001": 1, "[::1]:9002": 0, "backend.local": 3}
        routes:
          - id: r
            uris: [/a, /static/*]
            host: API.example.com
            upstream: {nodes: [{host: 10.0.0.1, port: 80}], type: chash, key: remote_addr}
            plugins:
              prometheus:
    """), env={})
    assert config.gateway.listen == ["[::1]:9080"]
    assert config.gateway.workers == 4
    assert config.upstreams[0].nodes == [
        Node(host="127.0.0.1", port=9001, weight=1),
        Node(host="::1", port=9002, weight=0),
        Node(host="backend.local", port=80, weight=3),
    ]
    route = config.routes[0]
    assert route.host == "api.example.com"
    assert route.upstream is not None and route.upstream.key == "remote_addr"
    assert route.plugins == {"prometheus": {}}


# ---------------------------------------------------------------------- env


def test_env_expansion(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
        gateway:
          admin: {key: "${KEY}"}
          access_log: "${LOG_DIR:=/var/log}/access.log"
          state_dir: ${STATE:=/var/lib/gw}
        upstreams:
          - id: u
            nodes:
              - host: "${HOST}"
                port: ${PORT}
        routes:
          - id: r
            uri: /x
            upstream_id: u
            plugins: {p: {literal: "$${NOT_EXPANDED}", mix: "a-${HOST}-b", empty: "${EMPTY:=fallback}"}}
    """), env={"KEY": "k1", "HOST": "10.1.2.3", "PORT": "9001", "EMPTY": ""})
    assert config.gateway.admin.key == "k1"
    assert config.gateway.access_log == "/var/log/access.log"
    assert config.gateway.state_dir == "/var/lib/gw"
    assert config.upstreams[0].nodes[0] == Node(host="10.1.2.3", port=9001)
    assert config.routes[0].plugins["p"] == {
        "literal": "${NOT_EXPANDED}",
        "mix": "a-10.1.2.3-b",
        "empty": "fallback",
    }


def test_env_uses_os_environ_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GATEWAY_ADMIN_KEY", "from-os")
    config = load_config(write(tmp_path, DESIGN_EXAMPLE))
    assert config.gateway.admin.key == "from-os"


def test_env_missing_variable(tmp_path: Path) -> None:
    issues = errors(tmp_path, """\
        gateway:
          admin:
            key: "${NOPE}"
        routes:
          - id: r
            uri: /x
            plugins: {p: {a: "${ALSO_MISSING}", b: "${bad"}}
    """)
    assert len(issues) == 3
    key = find(issues, "gateway.admin.key")
    assert key.line == 3 and "NOPE" in key.message
    assert "ALSO_MISSING" in find(issues, "routes[0].plugins.p.a").message
    assert "malformed" in find(issues, "routes[0].plugins.p.b").message
    assert str(key) == f"{tmp_path / 'gateway.yaml'}:3: gateway.admin.key: {key.message}"


def test_env_number_must_still_be_a_number(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        upstreams:
          - id: u
            nodes: [{host: h, port: "${PORT}"}]
    """, env={"PORT": "eighty"}))
    assert issue.path == "upstreams[0].nodes[0].port"
    assert issue.line == 3


# ------------------------------------------------------ decode errors (msgspec)


def test_unknown_key_names_path_and_suggests(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        upstreams:
          - id: u
            nodes: [{host: h, port: 80}]
        routes:
          - id: r
            uri: /x
            upsteam_id: u
    """))
    assert issue.path == "routes[0].upsteam_id"
    assert "unknown field 'upsteam_id'" in issue.message
    assert "upstream_id" in issue.message.replace("upsteam_id", "")
    assert issue.line == 7
    assert str(issue).endswith(":7: routes[0].upsteam_id: " + issue.message)


def test_unknown_top_level_key(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "gateway: {}\nroute: []\n"))
    assert issue.path == "route" and issue.line == 2 and "routes" in issue.message


def test_wrong_type(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        gateway:
          listen: ["127.0.0.1:9080"]
          workers: many
    """))
    assert issue.path == "gateway.workers" and issue.line == 3


def test_out_of_range(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        upstreams:
          - id: u
            nodes:
              - {host: a, port: 80}
              - {host: b, port: 70000}
    """))
    assert issue.path == "upstreams[0].nodes[1].port"
    assert "65535" in issue.message and issue.line == 5


def test_missing_required_field(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        routes:
          - uri: /x
            plugins: {p: {}}
    """))
    assert issue.path == "routes[0].id" and "missing" in issue.message and issue.line == 2


def test_invalid_enum_lists_choices(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        upstreams:
          - id: u
            type: random
            nodes: [{host: h, port: 80}]
    """))
    assert issue.path == "upstreams[0].type" and issue.line == 3
    assert "'random'" in issue.message and "'least_conn'" in issue.message


def test_bad_plugin_config_names_plugin(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        routes:
          - id: r
            uri: /x
            plugins:
              good: {}
              bad: 5
    """))
    assert issue.path == "routes[0].plugins.bad" and issue.line == 6


def test_bad_nodes_mapping_key(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        upstreams:
          - id: u
            nodes:
              "127.0.0.1:80": 1
              "::bad": 1
    """))
    assert issue.path == "upstreams[0].nodes[1]" and issue.line == 5


# ------------------------------------------------------------- cross checks

CROSS_CASES: list[tuple[str, str, str, int, str]] = [
    # (name, yaml, path, line, message fragment)
    ("dup upstream id", """\
        upstreams:
          - {id: u, nodes: [{host: a, port: 1}]}
          - {id: u, nodes: [{host: b, port: 1}]}
    """, "upstreams[1].id", 3, "duplicate upstream id"),
    ("dup route id", """\
        routes:
          - {id: r, uri: /a, plugins: {p: {}}}
          - {id: r, uri: /b, plugins: {p: {}}}
    """, "routes[1].id", 3, "duplicate route id"),
    ("dup consumer", """\
        consumers:
          - username: alice
          - username: alice
    """, "consumers[1].username", 3, "duplicate username"),
    ("bad username", """\
        consumers:
          - username: "al ice"
    """, "consumers[0].username", 2, "invalid username"),
    ("dangling upstream_id", """\
        routes:
          - id: r
            uri: /a
            upstream_id: nope
    """, "routes[0].upstream_id", 4, "unknown upstream 'nope'"),
    ("uri and uris", """\
        routes:
          - {id: r, uri: /a, uris: [/b], plugins: {p: {}}}
    """, "routes[0].uri", 2, "exactly one of"),
    ("no uri", """\
        routes:
          - id: r
            plugins: {p: {}}
    """, "routes[0].uri", 2, "exactly one of"),
    ("uri without slash", """\
        routes:
          - id: r
            uri: api/x
            plugins: {p: {}}
    """, "routes[0].uri", 3, "must start with '/'"),
    ("uris item", """\
        routes:
          - id: r
            uris:
              - /ok
              - /a/*/b
            plugins: {p: {}}
    """, "routes[0].uris[1]", 5, "'*'"),
    ("host and hosts", """\
        routes:
          - {id: r, uri: /, host: a.com, hosts: [b.com], plugins: {p: {}}}
    """, "routes[0].hosts", 2, "not both"),
    ("host with port", """\
        routes:
          - id: r
            uri: /
            hosts:
              - a.com
              - "b.com:8080"
            plugins: {p: {}}
    """, "routes[0].hosts[1]", 6, "ports"),
    ("bad wildcard host", """\
        routes:
          - id: r
            uri: /
            host: "a.*.com"
            plugins: {p: {}}
    """, "routes[0].host", 4, "invalid host"),
    ("bad method", """\
        routes:
          - id: r
            uri: /
            methods: [get, FETCH]
            plugins: {p: {}}
    """, "routes[0].methods[1]", 4, "unknown method 'FETCH'"),
    ("upstream_id and upstream", """\
        upstreams:
          - {id: u, nodes: [{host: a, port: 1}]}
        routes:
          - id: r
            uri: /
            upstream_id: u
            upstream: {nodes: [{host: a, port: 1}]}
    """, "routes[0].upstream", 7, "not both"),
    ("route answers nothing", """\
        routes:
          - id: r
            uri: /
    """, "routes[0]", 2, "needs an upstream_id"),
    ("chash without key", """\
        upstreams:
          - id: u
            type: chash
            nodes: [{host: a, port: 1}]
    """, "upstreams[0].key", 2, "requires `key`"),
    ("chash bad key", """\
        upstreams:
          - id: u
            type: chash
            key: "remote address"
            nodes: [{host: a, port: 1}]
    """, "upstreams[0].key", 4, "invalid chash key"),
    ("chash vars_combinations", """\
        upstreams:
          - id: u
            type: chash
            hash_on: vars_combinations
            key: "$remote_addr$nonsense"
            nodes: [{host: a, port: 1}]
    """, "upstreams[0].key", 5, "$nonsense"),
    ("chash on a response variable", """\
        upstreams:
          - id: u
            type: chash
            key: upstream_status
            nodes: [{host: a, port: 1}]
    """, "upstreams[0].key", 4, "no value until the response"),
    ("rewrite without upstream_host", """\
        upstreams:
          - id: u
            pass_host: rewrite
            nodes: [{host: a, port: 1}]
    """, "upstreams[0].upstream_host", 2, "required when pass_host"),
    ("upstream_host without rewrite", """\
        upstreams:
          - id: u
            upstream_host: example.com
            nodes: [{host: a, port: 1}]
    """, "upstreams[0].upstream_host", 3, "only used when"),
    ("empty nodes", """\
        upstreams:
          - id: u
            nodes: []
    """, "upstreams[0].nodes", 3, "at least one node"),
    ("bad node host", """\
        upstreams:
          - id: u
            nodes:
              - {host: "bad host", port: 1}
    """, "upstreams[0].nodes[0].host", 4, "invalid host"),
    ("dup node", """\
        upstreams:
          - id: u
            nodes:
              - {host: a, port: 1}
              - {host: a, port: 1}
    """, "upstreams[0].nodes[1]", 5, "duplicate node"),
    ("all weights zero", """\
        upstreams:
          - id: u
            nodes: [{host: a, port: 1, weight: 0}]
    """, "upstreams[0].nodes", 3, "weight 0"),
    ("top-level upstream without id", """\
        upstreams:
          - nodes: [{host: a, port: 1}]
    """, "upstreams[0].id", 2, "missing"),
    ("inline upstream with id", """\
        routes:
          - id: r
            uri: /
            upstream:
              id: x
              nodes: [{host: a, port: 1}]
    """, "routes[0].upstream.id", 5, "inline upstream"),
    ("bad listen", """\
        gateway:
          listen:
            - "127.0.0.1:9080"
            - "::1:9081"
    """, "gateway.listen[1]", 4, "[addr]:port"),
    ("listen port range", """\
        gateway:
          listen: "127.0.0.1:0"
    """, "gateway.listen[0]", 2, "1..65535"),
    ("dup listen", """\
        gateway:
          listen: ["127.0.0.1:9080", "0.0.0.0:9081", "127.0.0.1:9081"]
    """, "gateway.listen[2]", 2, "overlaps listen[1]"),
    ("admin on proxy listen", """\
        gateway:
          listen: ["0.0.0.0:9180"]
          admin:
            listen: "127.0.0.1:9180"
    """, "gateway.admin.listen", 4, "conflicts with proxy listen[0]"),
    ("bad cidr", """\
        gateway:
          admin:
            allow_admin: ["10.0.0.0/8", "10.0.0.0/33"]
    """, "gateway.admin.allow_admin[1]", 3, "invalid CIDR"),
    ("bad route id", """\
        routes:
          - id: "has space"
            uri: /
            plugins: {p: {}}
    """, "routes[0].id", 2, "invalid id"),
    ("duplicate yaml key", """\
        routes:
          - id: r
            uri: /a
            uri: /b
            plugins: {p: {}}
    """, "routes[0].uri", 4, "duplicate key"),
    ("non-json plugin value", """\
        global_rules:
          plugins:
            p: {when: !!binary aGVsbG8=}
    """, "global_rules.plugins.p.when", 3, "JSON"),
]


@pytest.mark.parametrize(("text", "path", "line", "fragment"),
                         [c[1:] for c in CROSS_CASES], ids=[c[0] for c in CROSS_CASES])
def test_cross_check(tmp_path: Path, text: str, path: str, line: int, fragment: str) -> None:
    issue = only(errors(tmp_path, text))
    assert issue.path == path
    assert fragment in issue.message
    assert issue.line == line
    assert issue.file == str(tmp_path / "gateway.yaml")


def test_many_issues_reported_at_once(tmp_path: Path) -> None:
    issues = errors(tmp_path, """\
        gateway:
          listen: ["127.0.0.1:9080", "127.0.0.1:9080"]
        upstreams:
          - {id: u, nodes: [{host: a, port: 1}]}
          - {id: u, nodes: [{host: b, port: 1}]}
        routes:
          - {id: r1, uri: /a, upstream_id: missing}
          - {id: r1, uri: b, upstream_id: u, methods: [YEET]}
        consumers:
          - username: bob
          - username: bob
    """)
    paths = {i.path: i.line for i in issues}
    assert paths == {
        "gateway.listen[1]": 2,
        "upstreams[1].id": 5,
        "routes[0].upstream_id": 7,
        "routes[1].uri": 8,
        "routes[1].methods[0]": 8,
        "routes[1].id": 8,
        "consumers[1].username": 11,
    }
    # str() lists every issue on its own line
    with pytest.raises(ConfigError) as info:
        load_config(tmp_path / "gateway.yaml", env={})
    assert len(str(info.value).splitlines()) == len(issues)


def test_chash_accepted_keys(tmp_path: Path) -> None:
    for hash_on, key in [("vars", "remote_addr"), ("vars", "uri"), ("vars", "http_x-user"),
                         ("vars", "http_x_user"), ("vars", "cookie_sid"), ("vars", "arg_id"),
                         ("vars", "consumer"), ("header", "X-User"), ("cookie", "sid"),
                         ("consumer", None), ("vars_combinations", "$remote_addr$uri")]:
        up = Upstream(id="u", type="chash", hash_on=hash_on, key=key,  # type: ignore[arg-type]
                      nodes=[Node(host="a", port=1)])
        assert validate_config(Config(upstreams=[up])) == [], (hash_on, key)
    # header_NAME is not a request variable: hash_on: header names the header
    up = Upstream(id="u", type="chash", hash_on="vars", key="header_x-user",
                  nodes=[Node(host="a", port=1)])
    assert "invalid chash key 'header_x-user'" in validate_config(Config(upstreams=[up]))[0].message


def test_extra_checks(tmp_path: Path) -> None:
    def plugins_known(config: Config, file: str) -> list[ConfigIssue]:
        return [
            ConfigIssue(file=file, path=f"routes[{i}].plugins.{name}", message="unknown plugin")
            for i, r in enumerate(config.routes) for name in r.plugins if name != "mocking"
        ]

    def broken(config: Config, file: str) -> list[ConfigIssue]:
        raise RuntimeError("boom")

    path = write(tmp_path, """\
        routes:
          - id: r
            uri: /
            plugins:
              mocking: {}
              nosuch: {}
    """)
    with pytest.raises(ConfigError) as info:
        load_config(path, env={}, extra_checks=[plugins_known, broken])
    issues = info.value.issues
    assert find(issues, "routes[0].plugins.nosuch").line == 6  # line filled in by the loader
    assert any("boom" in i.message for i in issues)


# ------------------------------------------------------------- file / YAML


def test_file_not_found(tmp_path: Path) -> None:
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    issue = only(info.value.issues)
    assert issue.file == str(missing) and issue.line is None and issue.path == ""
    assert str(missing) in str(info.value)


def test_yaml_syntax_error_has_line(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        gateway:
          listen: ["127.0.0.1:9080"
          workers: 2
        routes: []
    """))
    assert issue.line is not None and 2 <= issue.line <= 4
    assert "YAML" in issue.message
    assert str(issue).startswith(f"{tmp_path / 'gateway.yaml'}:{issue.line}: ")


def test_yaml_tab_error_line(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "gateway:\n  workers: 2\n\tstore: file\n"))
    assert issue.line == 3


def test_top_level_must_be_mapping(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, "- a\n- b\n"))
    assert issue.path == "" and "object" in issue.message


def test_issue_str_formats() -> None:
    assert str(ConfigIssue(file="gateway.yaml", path="routes[2].upstream_id",
                           message="unknown upstream 'x'", line=14)) \
        == "gateway.yaml:14: routes[2].upstream_id: unknown upstream 'x'"
    assert str(ConfigIssue(file="g.yaml", path="", message="m")) == "g.yaml: m"


def test_parse_config_text_source_name() -> None:
    with pytest.raises(ConfigError) as info:
        parse_config_text("routes: 5\n", source="inline.yaml", env={})
    issue = only(info.value.issues)
    assert (issue.file, issue.path, issue.line) == ("inline.yaml", "routes", 1)


def test_decode_config_from_plain_data() -> None:
    data: dict[str, Any] = {"routes": [{"id": "r", "uri": "/", "upstream": {"nodes": {"10.0.0.1:80": 2}}}]}
    config = decode_config(data)
    assert config.routes[0].upstream is not None
    assert config.routes[0].upstream.nodes == [Node(host="10.0.0.1", port=80, weight=2)]
    assert data["routes"][0]["upstream"]["nodes"] == {"10.0.0.1:80": 2}  # input not mutated
    with pytest.raises(ConfigError) as info:
        decode_config({"routes": [{"id": "r", "uri": "/", "upstream_id": "x"}]}, source="admin")
    assert str(only(info.value.issues)) == "admin: routes[0].upstream_id: unknown upstream 'x'"


# ------------------------------------------------------------ serialisation


def test_msgpack_round_trip(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE), env=ENV)
    data = config_to_bytes(config)
    assert isinstance(data, bytes)
    back = config_from_bytes(data)
    assert back == config
    assert back.fingerprint() == config.fingerprint()


def test_dump_round_trip(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, DESIGN_EXAMPLE.replace("alice-key", "lit-$${X}-key")), env=ENV)
    assert config.consumers[0].plugins["key-auth"]["key"] == "lit-${X}-key"
    text = dump_config(config)
    assert parse_config_text(text, env={}) == config


def test_fingerprint_stable_and_sensitive(tmp_path: Path) -> None:
    path = write(tmp_path, DESIGN_EXAMPLE)
    first = load_config(path, env=ENV).fingerprint()
    assert first == load_config(path, env=ENV).fingerprint()
    assert len(first) == 64 and int(first, 16) >= 0
    # formatting, comments and key order do not matter ...
    reformatted = DESIGN_EXAMPLE.replace("# node settings", "").replace(
        "limit-req: {rate: 100, burst: 50, key: consumer}", "limit-req: {key: consumer, burst: 50, rate: 100}")
    assert load_config(write(tmp_path, reformatted, "b.yaml"), env=ENV).fingerprint() == first
    # ... content does
    edited = DESIGN_EXAMPLE.replace("rate: 100", "rate: 101")
    assert load_config(write(tmp_path, edited, "c.yaml"), env=ENV).fingerprint() != first
    assert load_config(path, env={"GATEWAY_ADMIN_KEY": "other"}).fingerprint() != first


# ----------------------------------------------------------------- default


def test_default_config() -> None:
    config = default_config(env={})
    assert config.gateway.listen == ["127.0.0.1:9080"]
    assert config.gateway.admin.listen == "127.0.0.1:9180"
    assert config.gateway.admin.key == ""
    assert config.upstreams == []
    (route,) = config.routes
    assert route.id == "demo" and route.uri == "/*" and route.upstream is None and route.upstream_id is None
    mocking = route.plugins["mocking"]
    assert mocking["response_status"] == 200
    assert mocking["content_type"] == "application/json"
    assert msgspec.json.decode(mocking["response_example"]) == {"message": "hello from gateway"}
    assert default_config(env={"GATEWAY_ADMIN_KEY": "k"}).gateway.admin.key == "k"


def test_non_string_plugin_key(tmp_path: Path) -> None:
    issue = only(errors(tmp_path, """\
        routes:
          - id: r
            uri: /
            plugins:
              q: {}
              p: {2: 3}
    """))
    assert issue.path == "routes[0].plugins.p" and issue.line == 6 and "key" in issue.message


def test_empty_sections_and_anchor_keys(tmp_path: Path) -> None:
    config = load_config(write(tmp_path, """\
        x-node: &node {host: 10.0.0.1, port: 80}
        gateway:
        upstreams:
          - id: u
            nodes: [*node]
    """), env={})
    assert config.gateway == GatewaySettings()
    assert config.upstreams[0].nodes == [Node(host="10.0.0.1", port=80)]


# ------------------------------------------------- what only a whole file can get wrong


@pytest.mark.parametrize("raw", [b"", b"\n\n", b"# only a comment\n"])
def test_a_file_with_no_document_is_an_error(raw: bytes) -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config_file(raw, "g.yaml")
    (issue,) = caught.value.issues
    assert issue.file == "g.yaml" and issue.path == "" and "empty" in issue.message


def test_a_reload_needs_a_gateway_or_routes_section() -> None:
    cut_short = b"upstreams: []\nconsumers: []\n"
    parse_config_file(cut_short, "g.yaml")  # as a file of its own: valid, if useless
    with pytest.raises(ConfigError) as caught:
        parse_config_file(cut_short, "g.yaml", file_checks=FileChecks.RELOAD)
    assert "no `gateway` or `routes` section" in str(caught.value)
    parse_config_file(b"routes: []\n", "g.yaml", file_checks=FileChecks.RELOAD)


def test_end_marker_is_required_only_when_asked_for() -> None:
    body = b"gateway: {require_end_marker: true}\nroutes: []\n"
    with pytest.raises(ConfigError) as caught:
        parse_config_file(body, "g.yaml")
    (issue,) = caught.value.issues
    assert issue.path == "gateway.require_end_marker" and "#END" in issue.message
    assert parse_config_file(body + b"#END\n", "g.yaml").gateway.require_end_marker
    assert parse_config_file(body + b"#END\n\n  \n", "g.yaml").routes == []
    parse_config_file(b"routes: []\n", "g.yaml")  # no marker asked for: none needed


def test_dump_config_ends_with_the_marker() -> None:
    config = parse_config_text("gateway: {require_end_marker: true}\n", env={})
    dumped = dump_config(config)
    assert dumped.rstrip().splitlines()[-1] == "#END"
    assert parse_config_file(dumped.encode(), "last-good.yaml") == config


@pytest.mark.parametrize(("where", "value", "path"), [
    ("routes[0]", "priority: 2147483648", "routes[0].priority"),
    ("node", "priority: -2147483649", "upstreams[0].nodes[0].priority"),
    ("node", "weight: 2147483648", "upstreams[0].nodes[0].weight"),
    ("upstream", "retries: 2147483648", "upstreams[0].retries"),
    ("upstream", "keepalive: {requests: 99999999999999999999999}", "upstreams[0].keepalive.requests"),
    ("upstream", "keepalive: {size: 2147483648}", "upstreams[0].keepalive.size"),
    ("gateway", "client_max_body_size: 18446744073709551616", "gateway.client_max_body_size"),
])
def test_numbers_beyond_what_the_runtime_holds_are_config_errors(where: str, value: str, path: str) -> None:
    # Found by fuzz/config_fuzz.py: the schema took any int, and compiling the config raised
    # OverflowError (reported only as "check 'compile_check' failed: OverflowError(...)").
    from gateway.server.master import CHECKS
    parts = {"gateway": "", "upstream": "", "node": "", "routes[0]": ""}
    parts[where] = value
    text = textwrap.dedent(f"""\
        gateway:
          listen: ["127.0.0.1:9080"]
          {parts["gateway"]}
        upstreams:
          - id: u
            nodes: [{{host: 127.0.0.1, port: 9001{", " + parts["node"] if parts["node"] else ""}}}]
            {parts["upstream"]}
        routes:
          - id: r
            uri: /x
            upstream_id: u
            {parts["routes[0]"]}
        """)
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "g.yaml", extra_checks=CHECKS)
    assert [i.path for i in caught.value.issues] == [path], caught.value.issues
    assert "failed" not in str(caught.value)


def test_retry_settings(tmp_path: Path) -> None:
    config = parse_config_text(
        "upstreams:\n  - id: u\n    nodes: [{host: a, port: 1}, {host: b, port: 2}]\n"
        "    retry_timeout: 1.5\n    retry_on_statuses: [502, 503]\n", env={})
    up = config.upstreams[0]
    assert (up.effective_retries, up.retry_timeout, up.retry_on_statuses) == (1, 1.5, [502, 503])
    assert Upstream(id="u", nodes=[Node(host="a", port=1)]).retry_on_statuses == []
    issue = only(errors(tmp_path, """\
        upstreams:
          - id: u
            nodes: [{host: a, port: 1}]
            retry_on_statuses: [503, 200]
        """))
    assert issue.path == "upstreams[0].retry_on_statuses[1]" and issue.line == 4
    assert ">= 400" in issue.message, issue.message
    issue = only(errors(tmp_path, """\
        upstreams:
          - id: u
            nodes: [{host: a, port: 1}]
            retry_timeout: -1
        """))
    assert issue.path == "upstreams[0].retry_timeout"
