"""proxy-rewrite, response-rewrite, cors and request-id through real requests: a master with two
worker processes in front of a real upstream that echoes what reached it (GET /echo/...), so
every assertion about the upstream side is about bytes that crossed the proxy, and every
assertion about the client side is about what http.client parsed off the wire."""
from __future__ import annotations

import base64
import gzip
import http.client
import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.config_check import config_issues, write_plugin_config
from tests.support.gateway import GatewayProcess, base_config, raw_exchange
from tests.support.upstream import Upstream, free_port

BINARY = bytes(range(256))
UUID = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$")


class Reply:
    def __init__(self, response: http.client.HTTPResponse, body: bytes) -> None:
        self.status = response.status
        self.body = body
        self.pairs = [(k.lower(), v) for k, v in response.getheaders()]

    def header(self, name: str) -> str | None:
        values = [v for k, v in self.pairs if k == name.lower()]
        return ", ".join(values) if values else None

    def echo(self) -> dict[str, Any]:
        assert self.status == 200, (self.status, self.body)
        return json.loads(self.body)


def request(port: int, path: str, headers: dict[str, str] | None = None, method: str = "GET"
            ) -> Reply:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        return Reply(response, response.read())
    finally:
        conn.close()


def upstream_headers(echo: dict[str, Any]) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for name, value in echo["headers"]:
        out.setdefault(name, []).append(value)
    return out


def routes() -> list[dict[str, Any]]:
    def route(route_id: str, plugins: dict[str, Any]) -> dict[str, Any]:
        return {"id": route_id, "uri": f"/{route_id}/*", "upstream_id": "up", "plugins": plugins}

    def unprefixed(route_id: str, plugins: dict[str, Any]) -> dict[str, Any]:
        """/<route_id>/bytes/10 reaches the upstream as /bytes/10, so the upstream's endpoints
        (its framings, statuses) can be used behind the route."""
        strip = {"proxy-rewrite": {"regex_uri": [f"^/{route_id}(/.*)", "$1"]}}
        return route(route_id, {**strip, **plugins})

    return [
        # -- proxy-rewrite
        # ("$${" is the config file's escape for a literal "${": ${NAME} is an environment
        # variable there; $name needs no escape)
        route("pr-uri", {"proxy-rewrite": {
            "uri": "/echo/new/$arg_id",
            "headers": {"add": {"X-Added": "a-$remote_addr"},
                        "set": {"X-Set": "s", "X-Replace": "new-$${http_x_replace}"},
                        "remove": ["X-Drop"]}}}),
        route("pr-regex", {"proxy-rewrite": {
            "regex_uri": [r"^/pr-regex/(\w+)/(\w+)$", "/echo/$2/$1",
                          r"^/pr-regex/(.*)", "/echo/other/$1"],
            "headers": {"set": {"X-Group": "$1"}}}}),
        route("pr-host", {"proxy-rewrite": {"uri": "/echo/q?fixed=1", "host": "backend.internal"}}),
        route("pr-method", {"proxy-rewrite": {"uri": "/echo/m", "method": "POST"}}),
        route("pr-flat", {"proxy-rewrite": {"headers": {"X-Flat": "1", "X-Gone": ""}}}),
        route("pr-unsafe", {"proxy-rewrite": {"use_real_request_uri_unsafe": True}}),
        # -- response-rewrite
        unprefixed("rr-all", {"response-rewrite": {
            "status_code": 202, "body": "replaced\n",
            "headers": {"add": ["X-Added: 1", "X-Added: 2"],
                        "set": {"X-Upstream": "hidden", "X-Client": "$remote_addr"},
                        "remove": ["Content-Type"]}}}),
        unprefixed("rr-vars", {"response-rewrite": {
            "vars": [["status", "==", 200]], "body": "ok-only\n",
            "headers": {"set": {"X-Rewritten": "yes"}}}}),
        unprefixed("rr-b64", {"response-rewrite": {
            "vars": [["arg_rewrite", "==", "1"]], "body": base64.b64encode(BINARY).decode(),
            "body_base64": True, "headers": {"set": {"Content-Type": "application/octet-stream"}}}}),
        unprefixed("rr-once", {"response-rewrite": {"filters": [{"regex": "x", "replace": "y"}]}}),
        unprefixed("rr-global", {"response-rewrite": {"filters": [
                                {"regex": "X{2}", "replace": "[$0]", "scope": "global",
                                 "options": "i"}]}}),
        unprefixed("rr-echo", {"response-rewrite": {"filters": [
                              {"regex": r'"method": "(\w+)"', "replace": '"method": "was-$1"'}]}}),
        unprefixed("rr-headers-only", {"response-rewrite": {"headers": {"X-Flat": "flat",
                                                                    "X-Upstream": ""}}}),
        route("rr-generated", {"ip-restriction": {"blacklist": ["127.0.0.0/8"]},
                               "response-rewrite": {"status_code": 451,
                                                    "headers": {"set": {"X-Rewritten": "yes"}}}}),
        # -- cors
        route("cors-list", {"cors": {
            "allow_origins": "https://a.example,https://b.example",
            "allow_methods": "GET,POST", "allow_headers": "X-Token,Content-Type",
            "expose_headers": "X-Upstream", "max_age": 600, "allow_credential": True,
            "timing_allow_origins": "https://a.example"}}),
        route("cors-star", {"cors": {}}),
        route("cors-regex", {"cors": {"allow_origins_by_regex": [r"^https://[a-z]+\.example\.org$"],
                                      "allow_headers": "**", "allow_credential": True,
                                      "allow_methods": "**"}}),
        route("cors-auth", {"cors": {"allow_origins": "https://a.example"}, "key-auth": {},
                            "request-id": {}}),
        # -- request-id
        route("rid", {"request-id": {},
                      "proxy-rewrite": {"headers": {"set": {"X-Seen-Id": "$request_id"}}}}),
        route("rid-nano", {"request-id": {"algorithm": "nanoid", "header_name": "X-Trace",
                                          "include_in_response": False}}),
        route("rid-range", {"request-id": {"algorithm": "range_id",
                                           "range_id": {"char_set": "abcdef", "length": 8}}}),
    ]


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, Upstream]]:
    with Upstream("up") as up:
        port = free_port()
        config = base_config(port)
        config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": up.port}]}]
        config["routes"] = routes()
        config["consumers"] = [{"username": "alice", "plugins": {"key-auth": {"key": "k1"}}}]
        with GatewayProcess(tmp_path_factory.mktemp("transform"), config):
            yield port, up


def plugin_config_issues(tmp_path: Path, plugins: dict[str, Any]) -> list[tuple[str, str]]:
    return config_issues(write_plugin_config(tmp_path, plugins), full=False)


# -- proxy-rewrite ------------------------------------------------------------------------------

def test_uri_template_and_header_actions(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = request(port, "/pr-uri/x?id=7&k=v", {"X-Replace": "old", "X-Drop": "d",
                                                "X-Added": "orig", "X-Kept": "kept"}).echo()
    # the original query string is kept, after the new path
    assert echo["target"] == "/echo/new/7?id=7&k=v"
    headers = upstream_headers(echo)
    assert headers["x-added"] == ["orig", "a-127.0.0.1"]  # add keeps the client's line
    assert headers["x-set"] == ["s"]
    assert headers["x-replace"] == ["new-old"]
    assert "x-drop" not in headers
    assert headers["x-kept"] == ["kept"]
    # a missing variable is empty, as in nginx
    assert request(port, "/pr-uri/x").echo()["target"] == "/echo/new/"
    # a decoded argument is escaped again in the path
    assert request(port, "/pr-uri/x?id=a%20b%2Fc").echo()["target"] == \
        "/echo/new/a%20b/c?id=a%20b%2Fc"


def test_regex_uri_pairs_and_groups_in_headers(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = request(port, "/pr-regex/ab/cd?q=1").echo()
    assert echo["target"] == "/echo/cd/ab?q=1"
    assert upstream_headers(echo)["x-group"] == ["ab"]
    echo = request(port, "/pr-regex/a/b/c").echo()  # the first pair does not match: the second
    assert echo["target"] == "/echo/other/a/b/c"
    assert upstream_headers(echo)["x-group"] == ["a/b/c"]


def test_host_and_a_uri_with_its_own_query(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = request(port, "/pr-host/z?x=2", {"Host": "public.example"}).echo()
    assert echo["target"] == "/echo/q?fixed=1&x=2"
    headers = upstream_headers(echo)
    assert headers["host"] == ["backend.internal"]
    assert headers["x-forwarded-host"] == ["public.example"]


def test_method_is_rewritten_and_a_bodiless_request_says_its_body_is_empty(
        gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = request(port, "/pr-method/x").echo()
    assert echo["method"] == "POST" and echo["target"] == "/echo/m"
    assert upstream_headers(echo)["content-length"] == ["0"]


def test_flat_headers_map_sets_and_empty_removes(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    echo = request(port, "/pr-flat/echo", {"X-Flat": "client", "X-Gone": "x"}).echo()
    headers = upstream_headers(echo)
    assert headers["x-flat"] == ["1"]
    assert "x-gone" not in headers
    assert echo["target"] == "/pr-flat/echo"  # no uri configured: the path is untouched


def test_real_request_uri_is_forwarded_unnormalised(gateway: tuple[int, Upstream]) -> None:
    port, up = gateway
    before = len(up.received)
    raw = raw_exchange(port, b"GET /pr-unsafe/a/./b//c%2Fd?x=1 HTTP/1.1\r\nHost: t\r\n"
                             b"Connection: close\r\n\r\n")
    assert raw.startswith(b"HTTP/1.1 200"), raw[:200]
    assert up.received[before].target == "/pr-unsafe/a/./b//c%2Fd?x=1"


# -- response-rewrite ---------------------------------------------------------------------------

@pytest.mark.parametrize("path", ["/rr-all/echo", "/rr-all/bytes/200000", "/rr-all/chunked/70000",
                                  "/rr-all/close/5000"])
def test_status_headers_and_body_replace_any_upstream_framing(gateway: tuple[int, Upstream],
                                                              path: str) -> None:
    port, _ = gateway
    reply = request(port, path)
    assert reply.status == 202
    assert reply.body == b"replaced\n"
    assert reply.header("X-Added") == "1, 2"
    assert reply.header("X-Upstream") == "hidden"
    assert reply.header("X-Client") == "127.0.0.1"
    assert reply.header("Content-Type") is None
    # the old length must not survive: the gateway frames the new body itself
    assert reply.header("Content-Length") is None
    assert reply.header("Transfer-Encoding") == "chunked"


def test_replaced_body_on_a_kept_alive_connection(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for path in ("/rr-all/bytes/1000", "/rr-vars/echo", "/rr-all/echo", "/rr-vars/status/404"):
            conn.request("GET", path)
            response = conn.getresponse()
            body = response.read()
            assert body in (b"replaced\n", b"ok-only\n", b"status 404\n"), body
    finally:
        conn.close()


def test_new_status_on_a_bodiless_response_is_framed(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        for _ in range(2):  # the connection stays usable: the 202 was delimited
            conn.request("GET", "/rr-all/status/204")
            response = conn.getresponse()
            assert (response.status, response.read()) == (202, b"")
            assert response.getheader("Content-Length") == "0"
            conn.request("HEAD", "/rr-all/bytes/100")
            response = conn.getresponse()
            assert (response.status, response.read()) == (202, b"")
    finally:
        conn.close()


def test_http10_client_gets_the_new_body_close_delimited(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    raw = raw_exchange(port, b"GET /rr-all/bytes/3000 HTTP/1.0\r\n\r\n")
    head, _, body = raw.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 202")
    assert b"content-length" not in head.lower() and b"transfer-encoding" not in head.lower()
    assert body == b"replaced\n<EOF>"


def test_vars_limit_the_rewrite_to_matching_responses(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    reply = request(port, "/rr-vars/echo")
    assert (reply.status, reply.body, reply.header("X-Rewritten")) == (200, b"ok-only\n", "yes")
    reply = request(port, "/rr-vars/status/404")
    assert (reply.status, reply.body, reply.header("X-Rewritten")) == (404, b"status 404\n", None)
    # unmatched, the upstream body passes whole (re-framed chunked)
    reply = request(port, "/rr-vars/status/500")
    assert (reply.status, reply.body) == (500, b"status 500\n")


def test_base64_body_on_request_condition(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    reply = request(port, "/rr-b64/echo?rewrite=1")
    assert reply.body == BINARY
    assert reply.header("Content-Type") == "application/octet-stream"
    assert request(port, "/rr-b64/echo?rewrite=0").echo()["target"] == "/echo?rewrite=0"


def test_filters_once_global_and_groups(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    assert request(port, "/rr-once/bytes/100000").body == b"y" + b"x" * 99999
    assert request(port, "/rr-once/chunked/10").body == b"y" + b"x" * 9
    assert request(port, "/rr-global/bytes/7").body == b"[xx][xx][xx]x"
    assert request(port, "/rr-global/chunked/150000").body == b"[xx]" * 75000
    echo = json.loads(request(port, "/rr-echo/echo/a").body)
    assert echo["method"] == "was-GET"


def test_headers_only_rewrite_keeps_streaming_with_its_length(gateway: tuple[int, Upstream]
                                                              ) -> None:
    port, _ = gateway
    reply = request(port, "/rr-headers-only/bytes/5000")
    assert reply.body == b"x" * 5000
    assert reply.header("Content-Length") == "5000"  # no body hook: nothing re-framed
    assert reply.header("X-Flat") == "flat"
    assert reply.header("X-Upstream") is None


def test_headers_and_status_on_a_generated_response(gateway: tuple[int, Upstream]) -> None:
    port, up = gateway
    before = len(up.received)
    reply = request(port, "/rr-generated/echo")
    assert reply.status == 451
    assert reply.header("X-Rewritten") == "yes"
    assert json.loads(reply.body) == {"message": "Your IP address is not allowed"}
    assert len(up.received) == before


def test_response_rewrite_config_errors(tmp_path: Path) -> None:
    issues = plugin_config_issues(tmp_path, {"response-rewrite": {
        "body": "x", "filters": [{"regex": "a", "replace": "b"}]}})
    assert issues == [("routes[0].plugins.response-rewrite",
                       "body and filters cannot be used together")]
    issues = plugin_config_issues(tmp_path, {"response-rewrite": {"body": "%%%",
                                                                  "body_base64": True}})
    assert "not valid base64" in issues[0][1]
    issues = plugin_config_issues(tmp_path, {"response-rewrite": {"status_code": 99}})
    assert issues[0][0] == "routes[0].plugins.response-rewrite.status_code"
    issues = plugin_config_issues(tmp_path, {"response-rewrite": {"status_code": 204}})
    assert "status_code 204 cannot be set" in issues[0][1]
    issues = plugin_config_issues(tmp_path, {"response-rewrite": {"headers": {"add": ["bad"]}}})
    assert 'is not "Name: value"' in issues[0][1]


def test_gzip_body_is_filtered_decompressed() -> None:
    # a unit check of the decompression step: the upstream test server has no gzip endpoint
    from gateway.plugins.registry import build_config
    from gateway.plugins.response_rewrite import ResponseRewrite, ResponseRewriteConfig, _Buffer
    config = build_config("response-rewrite", {"filters": [{"regex": "cat", "replace": "dog",
                                                            "scope": "global"}]})
    assert isinstance(config, ResponseRewriteConfig)
    plugin = ResponseRewrite(config)

    class Ctx:
        state = {plugin.state_key: _Buffer(True)}
    payload = gzip.compress(b"cat and cat")
    assert plugin.body_filter(Ctx, payload[:5], False) == b""
    assert plugin.body_filter(Ctx, payload[5:], True) == b"dog and dog"


# -- cors ---------------------------------------------------------------------------------------

def test_preflight_is_answered_by_the_gateway(gateway: tuple[int, Upstream]) -> None:
    port, up = gateway
    before = len(up.received)
    reply = request(port, "/cors-list/x", {"Origin": "https://a.example",
                                           "Access-Control-Request-Method": "POST",
                                           "Access-Control-Request-Headers": "X-Token"},
                    method="OPTIONS")
    assert reply.status == 200 and reply.body == b""
    assert reply.header("Access-Control-Allow-Origin") == "https://a.example"
    assert reply.header("Access-Control-Allow-Methods") == "GET,POST"
    assert reply.header("Access-Control-Allow-Headers") == "X-Token,Content-Type"
    assert reply.header("Access-Control-Max-Age") == "600"
    assert reply.header("Access-Control-Allow-Credentials") == "true"
    assert reply.header("Vary") == "Origin"
    assert len(up.received) == before
    # an OPTIONS that is not a preflight is the upstream's to answer
    echo = request(port, "/cors-list/echo", {"Origin": "https://a.example"},
                   method="OPTIONS").echo()
    assert echo["method"] == "OPTIONS"


def test_simple_request_with_credentials(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    reply = request(port, "/cors-list/echo", {"Origin": "https://b.example", "Cookie": "s=1"})
    assert reply.echo()["target"] == "/cors-list/echo"
    assert reply.header("Access-Control-Allow-Origin") == "https://b.example"
    assert reply.header("Access-Control-Allow-Credentials") == "true"
    assert reply.header("Access-Control-Expose-Headers") == "X-Upstream"
    assert reply.header("Vary") == "Origin"
    assert reply.header("Timing-Allow-Origin") is None
    reply = request(port, "/cors-list/echo", {"Origin": "https://a.example"})
    assert reply.header("Timing-Allow-Origin") == "https://a.example"


@pytest.mark.parametrize("method", ["GET", "OPTIONS"])
def test_disallowed_origin_gets_no_cors_headers(gateway: tuple[int, Upstream], method: str) -> None:
    port, _ = gateway
    reply = request(port, "/cors-list/echo", {"Origin": "https://evil.example",
                                              "Access-Control-Request-Method": "GET"},
                    method=method)
    assert reply.status == 200
    assert not [k for k, _ in reply.pairs if k.startswith("access-control-")], reply.pairs
    reply = request(port, "/cors-list/echo")  # no Origin at all: not a CORS request
    assert reply.header("Access-Control-Allow-Origin") is None


def test_star_allows_any_origin_without_vary(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    reply = request(port, "/cors-star/echo", {"Origin": "https://anyone.example"})
    assert reply.header("Access-Control-Allow-Origin") == "*"
    assert reply.header("Access-Control-Allow-Methods") == "*"
    assert reply.header("Access-Control-Max-Age") == "5"
    assert reply.header("Access-Control-Allow-Credentials") is None
    assert reply.header("Access-Control-Expose-Headers") is None
    assert reply.header("Vary") is None


def test_regex_origins_and_double_star(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    reply = request(port, "/cors-regex/x", {"Origin": "https://shop.example.org",
                                            "Access-Control-Request-Method": "PUT",
                                            "Access-Control-Request-Headers": "X-A, X-B"},
                    method="OPTIONS")
    assert reply.status == 200
    assert reply.header("Access-Control-Allow-Origin") == "https://shop.example.org"
    assert reply.header("Access-Control-Allow-Headers") == "X-A, X-B"  # "**" echoes the ask
    assert "TRACE" in (reply.header("Access-Control-Allow-Methods") or "")
    reply = request(port, "/cors-regex/echo", {"Origin": "https://shop.example.org.evil"})
    assert reply.header("Access-Control-Allow-Origin") is None


def test_preflight_skips_auth_and_auth_errors_carry_cors_headers(gateway: tuple[int, Upstream]
                                                                 ) -> None:
    port, _ = gateway
    origin = {"Origin": "https://a.example"}
    reply = request(port, "/cors-auth/x", {**origin, "Access-Control-Request-Method": "GET"},
                    method="OPTIONS")
    assert reply.status == 200
    assert reply.header("Access-Control-Allow-Origin") == "https://a.example"
    reply = request(port, "/cors-auth/x", origin)
    assert reply.status == 401
    assert reply.header("Access-Control-Allow-Origin") == "https://a.example"
    assert UUID.match(reply.header("X-Request-Id") or ""), reply.pairs
    reply = request(port, "/cors-auth/echo", {**origin, "apikey": "k1"})
    assert reply.echo()["target"] == "/cors-auth/echo"
    assert reply.header("Access-Control-Allow-Origin") == "https://a.example"


def test_credentials_with_a_star_is_a_config_error(tmp_path: Path) -> None:
    issues = plugin_config_issues(tmp_path, {"cors": {"allow_credential": True,
                                                      "allow_origins": "https://a.example",
                                                      "allow_methods": "GET"}})
    assert [p for p, _ in issues] == ["routes[0].plugins.cors"]
    assert "'*' cannot be used in allow_headers when allow_credential is true" in issues[0][1]
    issues = plugin_config_issues(tmp_path, {"cors": {"allow_credential": True}})
    assert "allow_origins, allow_methods, allow_headers" in issues[0][1]
    issues = plugin_config_issues(tmp_path, {"cors": {"allow_origins": "a.example"}})
    assert "is not an origin" in issues[0][1]


# -- request-id ---------------------------------------------------------------------------------

def test_request_id_generated_sent_upstream_and_returned(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    seen = set()
    for _ in range(3):
        reply = request(port, "/rid/echo")
        headers = upstream_headers(reply.echo())
        request_id = reply.header("X-Request-Id")
        assert request_id is not None and UUID.match(request_id), request_id
        assert headers["x-request-id"] == [request_id]
        # other plugins read it: proxy-rewrite's $request_id
        assert headers["x-seen-id"] == [request_id]
        seen.add(request_id)
    assert len(seen) == 3


def test_incoming_request_id_is_propagated(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    reply = request(port, "/rid/echo", {"X-Request-Id": "abc-123"})
    headers = upstream_headers(reply.echo())
    assert headers["x-request-id"] == ["abc-123"]
    assert headers["x-seen-id"] == ["abc-123"]
    assert reply.header("X-Request-Id") == "abc-123"


def test_nanoid_and_range_id(gateway: tuple[int, Upstream]) -> None:
    port, _ = gateway
    reply = request(port, "/rid-nano/echo")
    trace = upstream_headers(reply.echo())["x-trace"]
    assert len(trace) == 1 and re.fullmatch(r"[A-Za-z0-9_-]{21}", trace[0]), trace
    assert reply.header("X-Trace") is None  # include_in_response: false
    reply = request(port, "/rid-range/echo")
    request_id = upstream_headers(reply.echo())["x-request-id"][0]
    assert re.fullmatch(r"[a-f]{8}", request_id)
    assert reply.header("X-Request-Id") == request_id
