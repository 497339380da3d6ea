"""The `checks` of an upstream (APISIX's keys): what the schema and the cross checks refuse, each
with its document path and line, and the defaults of what they accept."""
from __future__ import annotations

import textwrap

import pytest

from gateway.config import (
    ConfigError,
    ConfigIssue,
    config_from_bytes,
    config_to_bytes,
    dump_config,
    parse_config_text,
)

HEAD = """\
upstreams:
  - id: shop
    nodes: [{host: 127.0.0.1, port: 9001}]
    checks:
"""


def issues(checks: str) -> list[ConfigIssue]:
    text = HEAD + textwrap.indent(textwrap.dedent(checks), "      ")
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, "gw.yaml")
    return info.value.issues


def only(found: list[ConfigIssue]) -> ConfigIssue:
    assert len(found) == 1, [str(i) for i in found]
    return found[0]


def test_defaults_follow_apisix() -> None:
    config = parse_config_text(HEAD + "      active: {}\n      passive: {}\n", "gw.yaml")
    checks = config.upstreams[0].checks
    assert checks is not None and checks.active is not None and checks.passive is not None
    active, passive = checks.active, checks.passive
    assert (active.type, active.timeout, active.http_path) == ("http", 1.0, "/")
    assert (active.healthy.interval, active.healthy.successes) == (1.0, 2)
    assert active.healthy.http_statuses == [200, 302]
    assert (active.unhealthy.http_failures, active.unhealthy.tcp_failures,
            active.unhealthy.timeouts) == (5, 2, 3)
    assert passive.unhealthy.http_statuses == [429, 500, 503]
    assert (passive.healthy.successes, passive.unhealthy.timeouts) == (5, 7)
    assert checks.fail_open is True


@pytest.mark.parametrize(("checks", "path", "fragment"), [
    ("passive: {}\n", "upstreams[0].checks.active", "only active checks bring it back"),
    ("active: {type: udp}\n", "upstreams[0].checks.active.type", "http"),
    ("active: {healthy: {successes: 0}}\n", "upstreams[0].checks.active.healthy.successes",
     ">= 1"),
    ("active: {unhealthy: {timeouts: 255}}\n", "upstreams[0].checks.active.unhealthy.timeouts",
     "<= 254"),
    ("active: {healthy: {interval: 0}}\n", "upstreams[0].checks.active.healthy.interval", "> 0"),
    ("active: {healthy: {http_statuses: [200, 99]}}\n",
     "upstreams[0].checks.active.healthy.http_statuses[1]", ">= 200"),
    ("active: {http_path: healthz}\n", "upstreams[0].checks.active.http_path",
     "must start with '/'"),
    ("active: {host: 'bad host'}\n", "upstreams[0].checks.active.host", "invalid host"),
    ("active: {req_headers: ['X-Ok: 1', 'no colon']}\n",
     "upstreams[0].checks.active.req_headers[1]", "'Name: value'"),
    ("active: {unhealthy: {http_statuses: [500, 200]}}\n",
     "upstreams[0].checks.active.unhealthy.http_statuses[1]", "also listed in healthy"),
    ("active: {}\npassive: {unhealthy: {http_statuses: [201]}}\n",
     "upstreams[0].checks.passive.unhealthy.http_statuses[0]", "also listed in healthy"),
    ("active: {}\npassive: {unhealthy: {timeout: 3}}\n",
     "upstreams[0].checks.passive.unhealthy.timeout", "unknown"),
    ("active: {}\nfail_open: maybe\n", "upstreams[0].checks.fail_open", "bool"),
])
def test_refused_with_path(checks: str, path: str, fragment: str) -> None:
    issue = only(issues(checks))
    assert issue.path == path
    assert fragment in issue.message
    assert issue.file == "gw.yaml" and issue.line is not None


def test_every_issue_at_once() -> None:
    found = issues("""\
        active:
          http_path: x
          host: "a b"
          unhealthy: {http_statuses: [200]}
    """)
    assert {i.path for i in found} == {
        "upstreams[0].checks.active.http_path", "upstreams[0].checks.active.host",
        "upstreams[0].checks.active.unhealthy.http_statuses[0]"}


def test_checks_survive_the_worker_snapshot_and_the_last_good_file() -> None:
    config = parse_config_text(HEAD + textwrap.indent(textwrap.dedent("""\
        active: {http_path: /healthz, req_headers: ["X-A: 1"], unhealthy: {timeouts: 4}}
        passive: {healthy: {successes: 0}}
        fail_open: false
    """), "      "), "gw.yaml")
    assert config_from_bytes(config_to_bytes(config)) == config
    dumped = dump_config(config)
    text = dumped.decode() if isinstance(dumped, bytes) else dumped
    assert parse_config_text(text, "last-good.yaml") == config
