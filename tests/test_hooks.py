"""The plugin hook points of the data plane, exercised through real requests with the test
plugins in tests/support/plugins.py (loaded by import path)."""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.gateway import GatewayProcess, base_config, raw_exchange
from tests.support.gateway import http_get as get
from tests.support.upstream import Upstream, free_port

P = "tests.support.plugins:"


@pytest.fixture(scope="module")
def hooked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Upstream]]:
    with Upstream("up") as upstream:
        port = free_port()
        config: dict[str, Any] = base_config(port)
        config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
        config["routes"] = [
            {"id": "tag", "uri": "/*", "upstream_id": "up", "plugins": {P + "Tag": {"tag": "hello"}}},
            {"id": "upper", "uri": "/upper/*", "upstream_id": "up", "plugins": {P + "Upper": {}}},
            {"id": "boom", "uri": "/boom", "upstream_id": "up", "plugins": {P + "Boom": {}}},
            {"id": "slow", "uri": "/slow-deny/*", "upstream_id": "up", "plugins": {P + "SlowDeny": {}}},
            {"id": "short", "uri": "/short/*", "upstream_id": "up",
             "plugins": {P + "ShortAnswers": {}}},
            {"id": "params", "uri": "/users/:id/items/:item", "plugins": {P + "Params": {}}},
            {"id": "headers", "uri": "/shaped/*", "upstream_id": "up",
             "plugins": {P + "UpstreamHeaders": {}}},
            {"id": "lookup", "uri": "/lookup/*", "upstream_id": "up",
             "plugins": {P + "HeaderLookup": {}}},
            {"id": "defaults", "uri": "/defaults/*", "upstream_id": "up",
             "plugins": {P + "DefaultHeaders": {}}},
            {"id": "defaults-filtered", "uri": "/defaults-filtered/*", "upstream_id": "up",
             "plugins": {P + "DefaultHeaders": {}, P + "Tag": {"tag": "t"}}},
        ]
        with GatewayProcess(tmp_path_factory.mktemp("hooks"), config):
            yield port, upstream


def test_rewrite_before_proxy_and_header_filter(hooked: tuple[int, Upstream]) -> None:
    port, upstream = hooked
    response, body = get(port, "/echo/x", {"X-Secret": "s3cret"})
    got = json.loads(body)
    headers = dict(got["headers"])
    assert headers["x-rewritten"] == "hello"
    assert headers["x-node"] == f"127.0.0.1:{upstream.port}"
    assert "x-secret" not in headers
    assert response.getheader("X-Tag") == "hello"
    assert response.getheader("X-Upstream") is None
    response, body = get(port, "/rename")
    assert json.loads(body)["target"] == "/echo/renamed?by=hello"
    response, _ = get(port, "/status/200")
    assert response.status == 299


def test_upstream_headers_through_context_methods(hooked: tuple[int, Upstream]) -> None:
    port, upstream = hooked
    _, body = get(port, "/shaped/echo", {"X-Set": "client", "X-Gone": "client", "X-Multi": "c"})
    pairs = [(name, value) for name, value in json.loads(body)["headers"]]
    assert [v for n, v in pairs if n == "x-multi"] == ["c", "a", "b"]  # add keeps the others
    assert [v for n, v in pairs if n == "x-set"] == ["2"]  # set replaces client's and added
    assert [v for n, v in pairs if n == "x-gone"] == []  # remove drops both
    assert ("x-state", "/shaped/echo") in pairs  # per-request state from rewrite
    assert ("x-deprecated-alias", "True") in pairs  # ctx.vars is ctx.state


def test_header_lookup_without_the_mapping_agrees_with_it(hooked: tuple[int, Upstream]) -> None:
    """ctx.header scans the parsed head (no mapping built): any case, repeated lines joined
    with ", " (RFC 9110 5.3), the default when absent or for a name no line can have."""
    port, _ = hooked
    raw = raw_exchange(port, b"GET /lookup/echo HTTP/1.1\r\nHost: t\r\nX-ONE: 1\r\n"
                             b"x-many: a\r\nX-Many: b, c\r\n"
                             b"Connection: close\r\n\r\n")
    echo = json.loads(raw.partition(b"\r\n\r\n")[2].split(b"<EOF>")[0])
    headers = dict(echo["headers"])
    lookup, mapping = json.loads(headers["x-lookup"]), json.loads(headers["x-mapping"])
    assert lookup == {"x-one": "1", "X-Many": "a, b, c", "x-missing": "<absent>",
                      "x-\u20ac": "<absent>"}
    assert lookup == mapping


@pytest.mark.parametrize("prefix", ["/defaults", "/defaults-filtered"])
def test_default_response_headers_fill_only_what_is_missing(hooked: tuple[int, Upstream],
                                                            prefix: str) -> None:
    """Proxied (with and without a header_filter hook on the route) and answered locally."""
    port, _ = hooked
    raw = raw_exchange(port, f"GET {prefix}/echo HTTP/1.1\r\nHost: t\r\nConnection: close"
                             "\r\n\r\n".encode())
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").lower().split("\r\n")
    assert head[0].startswith("http/1.1 200")
    fields = [line.split(": ", 1) for line in head[1:]]
    # the upstream's is kept; with Tag's header_filter it is removed there, defaults included
    expected_upstream = ["up"] if prefix == "/defaults" else []
    assert [v for n, v in fields if n == "x-upstream"] == expected_upstream
    assert [v for n, v in fields if n == "x-default"] == ["filled"]
    assert [v for n, v in fields if n == "x-added"] == ["added"]  # an added one counts too
    raw = raw_exchange(port, f"GET {prefix}/deny/x HTTP/1.1\r\nHost: t\r\nConnection: "
                             "close\r\n\r\n".encode())
    head = raw.partition(b"\r\n\r\n")[0].decode("latin-1").lower().split("\r\n")
    assert head[0].startswith("http/1.1 403")
    fields = [line.split(": ", 1) for line in head[1:]]
    assert [v for n, v in fields if n == "x-default"] == ["filled"]
    # nothing to yield to here: the default is sent (unless header_filter removes it)
    expected_upstream = ["from-plugin"] if prefix == "/defaults" else []
    assert [v for n, v in fields if n == "x-upstream"] == expected_upstream


@pytest.mark.parametrize("path", ["/upper/bytes/100000", "/upper/chunked/100000", "/upper/close/5000"])
def test_body_filter_transforms_streamed_bodies(hooked: tuple[int, Upstream], path: str) -> None:
    port, _ = hooked
    response, body = get(port, path)
    size = int(path.rsplit("/", 1)[1])
    assert body == b"X" * size + b"!"
    assert response.getheader("Content-Length") is None
    assert response.getheader("Transfer-Encoding") == "chunked"


def test_body_filter_for_http10_client_is_close_delimited(hooked: tuple[int, Upstream]) -> None:
    port, _ = hooked
    raw = raw_exchange(port, b"GET /upper/chunked/3000 HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert b"transfer-encoding" not in head.lower() and b"content-length" not in head.lower()
    assert body == b"X" * 3000 + b"!<EOF>"


def test_plugin_exception_gives_500_and_worker_survives(tmp_path: Path, upstream: Upstream) -> None:
    port = free_port()
    config: dict[str, Any] = base_config(port, upstream.port)
    config["routes"].insert(0, {"id": "boom", "uri": "/boom", "upstream_id": "up",
                                "plugins": {P + "Boom": {}}})
    with GatewayProcess(tmp_path, config, workers=1) as gw:
        pids = gw.worker_pids()
        mark = upstream.mark()
        for _ in range(5):
            response, body = get(port, "/boom")
            assert response.status == 500
        upstream.assert_nothing_forwarded(mark)
        response, _ = get(port, "/echo/still-alive")
        assert response.status == 200
        assert gw.worker_pids() == pids, "the worker was replaced: it did not survive"
        logs = gw.logs()
        # the traceback names the plugin's own line, once per request
        assert logs.count("Traceback (most recent call last)") == 5, logs
        assert 'raise RuntimeError("plugin bug")' in logs and "RuntimeError: plugin bug" in logs


def test_access_phase_answers_with_a_tuple_or_a_bare_status(hooked: tuple[int, Upstream]) -> None:
    port, upstream = hooked
    mark = upstream.mark()
    response, body = get(port, "/short/tuple")
    assert (response.status, body, response.getheader("X-Teapot")) == (418, b"short and stout\n", "yes")
    response, body = get(port, "/short/tuple2")
    assert (response.status, body) == (409, b"conflict\n")
    response, _ = get(port, "/short/status")
    assert response.status == 403
    upstream.assert_nothing_forwarded(mark)
    response, _ = get(port, "/short/other")  # None: the request goes on to the upstream
    assert response.status == 200


def test_async_access_phase(hooked: tuple[int, Upstream]) -> None:
    port, upstream = hooked
    before = len(upstream.received)
    mark = upstream.mark()
    response, body = get(port, "/slow-deny/x", {"X-Deny": "1"})
    assert (response.status, body, response.getheader("X-Denied-By")) == (403, b"denied\n", "test")
    upstream.assert_nothing_forwarded(mark)
    response, _ = get(port, "/slow-deny/y")
    assert response.status == 200 and len(upstream.received) == before + 1


def test_context_exposes_params_and_request(hooked: tuple[int, Upstream]) -> None:
    port, _ = hooked
    response, body = get(port, "/users/42/items/abc?q=1")
    assert body == b"params {'id': '42', 'item': 'abc'} GET /users/42/items/abc q=1 127.0.0.1"


def test_unknown_plugin_is_a_config_error(tmp_path: Path) -> None:
    import subprocess
    import sys

    import yaml
    config = tmp_path / "bad.yaml"
    config.write_text(yaml.safe_dump({"routes": [
        {"id": "r", "uri": "/x", "plugins": {"no-such-plugin": {}, P + "Missing": {}}}]}))
    result = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(config)],
                            capture_output=True, text=True)
    assert result.returncode == 2
    assert "routes[0].plugins.no-such-plugin: unknown plugin" in result.stderr
    assert "Missing" in result.stderr


def test_plugin_issue_path_quotes_a_name_that_is_not_a_simple_key() -> None:
    # Found by fuzz/config_fuzz.py: the plugin name was pasted into the path unquoted
    # ('routes[0].plugins.a "b.c'), a path that cannot be parsed back, so the issue lost its line.
    from gateway.config import ConfigError, parse_config_text
    from gateway.server.master import CHECKS
    text = 'routes:\n  - id: r\n    uri: /x\n    plugins:\n      \'a "b.c\': {}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "g.yaml", extra_checks=CHECKS)
    [issue] = caught.value.issues
    assert issue.path == 'routes[0].plugins["a \\"b.c"]'
    assert issue.line == 5
    assert "unknown plugin" in issue.message


@pytest.mark.parametrize("name", [":Cls", "no_such_module_x:Cls", "gateway.plugins.base:NoSuchClass"])
def test_unloadable_plugin_is_one_issue_with_its_path(name: str) -> None:
    # Found by fuzz/config_fuzz.py: a module:Class name that cannot be imported made the
    # compile check fail with PluginLoadError ("check 'compile_check' failed") beside the
    # plugin check's own issue.
    from gateway.config import ConfigError, parse_config_text
    from gateway.server.master import CHECKS
    text = f'routes:\n  - id: r\n    uri: /x\n    plugins:\n      "{name}": {{}}\n'
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "g.yaml", extra_checks=CHECKS)
    [issue] = caught.value.issues
    assert issue.path == f'routes[0].plugins["{name}"]', issue
    assert "failed" not in issue.message, issue


@pytest.mark.parametrize(("metadata", "path", "line"), [
    # one key: named in the path, so the issue finds its line
    ('{allow_origins: {partners: null}}', 'plugin_metadata.cors.allow_origins.partners', 3),
    # a key msgspec does not name among several: the path stops at the dict
    ('{allow_origins: {a: "https://x", b: 1}}', 'plugin_metadata.cors.allow_origins', 3),
])
def test_metadata_issue_in_a_dict_value_has_a_path_that_parses(metadata: str, path: str,
                                                               line: int) -> None:
    # Found by fuzz/config_fuzz.py in CI: msgspec writes a dict's key as "[...]", which was pasted
    # into the path ("plugin_metadata.cors.allow_origins[...]"), a path that cannot be parsed back.
    from gateway.config import ConfigError, parse_config_text
    from gateway.config.issues import parse_path
    from gateway.server.master import CHECKS
    text = f"plugin_metadata:\n  cors:\n    {metadata}\n"
    with pytest.raises(ConfigError) as caught:
        parse_config_text(text, "g.yaml", extra_checks=CHECKS)
    [issue] = caught.value.issues
    assert issue.path == path, issue
    assert parse_path(issue.path) is not None
    assert issue.line == line, issue
