"""The variable table: each built-in variable's nginx meaning, the families, register_var."""
from __future__ import annotations

import re
from collections.abc import Iterator

import pytest

from gateway.requestvars import (
    compile_template,
    compile_vars,
    is_variable,
    register_var,
    to_text,
    unregister_var,
    var_getter,
    variable_names,
)
from gateway.requestvars.table import families
from tests.vars.request import Consumer, FakeRequest


def value(name: str, request: FakeRequest) -> object:
    return var_getter(name)(request)


@pytest.mark.parametrize(("host", "expected"), [
    ("Example.COM:8080", "example.com"),
    ("example.com", "example.com"),
    ("[::1]:9080", "[::1]"),
    ("[FE80::1]", "[fe80::1]"),
    ("", ""),
])
def test_host_is_nginx_host_without_port_lowercased(host: str, expected: str) -> None:
    assert value("host", FakeRequest(host=host)) == expected


def test_http_host_is_the_header_as_sent() -> None:
    assert value("http_host", FakeRequest(host="Example.COM:8080")) == "Example.COM:8080"
    assert value("http_host", FakeRequest(host="")) is None


def test_request_line_variables() -> None:
    request = FakeRequest(method="POST", path="/a/b", query_string="x=1&y=%20z", http_version="1.0")
    assert value("uri", request) == "/a/b"
    assert value("request_uri", request) == "/a/b?x=1&y=%20z"
    assert value("args", request) == value("query_string", request) == "x=1&y=%20z"
    assert value("is_args", request) == "?"
    assert value("is_args", FakeRequest()) == ""
    assert value("request_method", request) == "POST"
    assert value("server_protocol", request) == "HTTP/1.0"


def test_connection_variables() -> None:
    request = FakeRequest(client_ip="10.1.2.3", client_port=5555, server_addr="10.0.0.1",
                          server_port=9443, scheme="https")
    assert value("remote_addr", request) == "10.1.2.3"
    assert value("remote_port", request) == "5555"
    assert value("server_addr", request) == "10.0.0.1"
    assert value("server_port", request) == "9443"
    assert value("scheme", request) == "https"
    assert value("server_port", FakeRequest(server_port=None)) is None


def test_families_read_headers_args_and_cookies() -> None:
    request = FakeRequest(query_string="name=jack&empty=&a.b=1",
                          header_list=[("X-Api-Key", "k1"), ("Accept", "a"), ("accept", "b"),
                                       ("Cookie", "sid=abc; theme=dark")])
    assert value("http_x_api_key", request) == "k1"
    assert value("http_x-api-key", request) == "k1"
    assert value("http_accept", request) == "a, b"
    assert value("http_missing", request) is None
    assert value("arg_name", request) == "jack"
    assert value("arg_empty", request) == ""
    assert value("arg_a.b", request) == "1"
    assert value("arg_nope", request) is None
    assert value("cookie_sid", request) == "abc"
    assert value("cookie_nope", request) is None


def test_args_are_not_parsed_for_a_request_without_a_query() -> None:
    request = FakeRequest()
    assert value("arg_name", request) is None
    assert "args" not in request.reads


def test_a_variable_reads_only_what_it_needs() -> None:
    request = FakeRequest(header_list=[("X-A", "1")], query_string="a=1")
    for name in ("uri", "host", "remote_addr", "request_method", "args", "route_id"):
        value(name, request)
    assert request.reads == {}


def test_response_variables() -> None:
    request = FakeRequest(status=503, upstream_status=502,
                          response_headers=[["Content-Type", "text/plain"], ["X-A", "1"],
                                            ["x-a", "2"]])
    assert value("status", request) == "503"
    assert value("upstream_status", request) == "502"
    assert value("sent_http_content_type", request) == "text/plain"
    assert value("upstream_http_x_a", request) == "1, 2"
    assert value("sent_http_missing", request) is None
    before_response = FakeRequest()
    assert value("status", before_response) is None
    assert value("upstream_status", before_response) is None
    assert value("upstream_response_time", before_response) is None
    assert value("sent_http_x_a", before_response) is None


def test_timing_and_size_variables() -> None:
    request = FakeRequest(elapsed=1.23456, upstream_latency=0.5, upstream_status=200,
                          bytes_sent=42, request_bytes=77)
    assert value("request_time", request) == "1.235"
    assert value("upstream_response_time", request) == "0.500"
    assert value("bytes_sent", request) == "42"
    assert value("request_length", request) == "77"


def test_upstream_variables_list_every_try() -> None:
    one = FakeRequest(upstream_addr="127.0.0.1:1", upstream_status=200, upstream_latency=0.25)
    assert value("upstream_addr", one) == "127.0.0.1:1"
    assert value("upstream_status", one) == "200"
    assert value("upstream_response_time", one) == "0.250"
    retried = FakeRequest(upstream_addr="127.0.0.1:3", upstream_status=200, upstream_latency=0.5,
                          previous_tries=[("127.0.0.1:1", 502, 0.001), ("127.0.0.1:2", 504, 1.0)])
    assert value("upstream_addr", retried) == "127.0.0.1:1, 127.0.0.1:2, 127.0.0.1:3"
    assert value("upstream_status", retried) == "502, 504, 200"
    assert value("upstream_response_time", retried) == "0.001, 1.000, 0.500"
    # the client left while the last try was connecting: that try has no status nor time
    abandoned = FakeRequest(upstream_addr="127.0.0.1:2", upstream_status=0,
                            previous_tries=[("127.0.0.1:1", 502, 0.001)])
    assert value("upstream_status", abandoned) == "502"
    assert value("upstream_response_time", abandoned) == "0.001"
    assert value("upstream_addr", FakeRequest()) is None


def test_route_and_consumer() -> None:
    request = FakeRequest(route_id="users", consumer=Consumer("alice", "gold"))
    assert value("route_id", request) == "users"
    assert value("consumer_name", request) == value("consumer", request) == "alice"
    assert value("consumer_group_id", request) == "gold"
    anonymous = FakeRequest()
    assert value("consumer_name", anonymous) is None
    assert value("consumer_group_id", anonymous) is None


def test_request_id_is_the_plugins_else_one_made_once() -> None:
    from_plugin = FakeRequest(state={"request_id": "abc-123"})
    assert value("request_id", from_plugin) == "abc-123"
    request = FakeRequest()
    first = value("request_id", request)
    assert isinstance(first, str) and re.fullmatch(r"[0-9a-f]{32}", first)
    assert value("request_id", request) == first  # one id per request, for every reader
    assert value("request_id", FakeRequest()) != first


def test_hostname_is_the_machines() -> None:
    import socket
    assert value("hostname", FakeRequest()) == socket.gethostname()


@pytest.mark.parametrize("name", ["no_such_var", "http_", "arg_", "cookie_", "sent_http_",
                                  "http_a b", "server_name", ""])
def test_unknown_variables_are_errors(name: str) -> None:
    with pytest.raises(ValueError, match="unknown variable") as info:
        var_getter(name)
    assert "remote_addr" in str(info.value) and "http_<name>" in str(info.value)
    assert not is_variable(name)


def test_vocabulary() -> None:
    names = variable_names()
    for name in ("host", "http_host", "uri", "request_uri", "args", "remote_addr", "remote_port",
                 "server_addr", "server_port", "scheme", "request_id", "route_id",
                 "consumer_name", "request_method", "server_protocol", "status",
                 "upstream_addr", "upstream_status"):
        assert name in names and is_variable(name)
    assert names == sorted(names)
    assert set(families()) == {"http_", "arg_", "cookie_", "sent_http_", "upstream_http_"}
    assert is_variable("http_x_user") and is_variable("cookie_sid")


@pytest.mark.parametrize(("raw", "text"), [
    ("a", "a"), (True, "true"), (False, "false"), (5, "5"), (5.0, "5"), (2.5, "2.5"),
    (["a", 1], "a, 1"), (b"x", "x"),
])
def test_values_as_text(raw: object, text: str) -> None:
    assert to_text(raw) == text


# -- register_var -----------------------------------------------------------------------------

@pytest.fixture
def tenant() -> Iterator[None]:
    register_var("tenant", lambda ctx: ctx.state.get("tenant"))
    register_var("roles", lambda ctx: ["reader", "writer"])
    yield
    unregister_var("tenant")
    unregister_var("roles")


def test_registered_variable_works_everywhere(tenant: None) -> None:
    request = FakeRequest(state={"tenant": "acme"})
    assert is_variable("tenant") and "tenant" in variable_names()
    assert var_getter("tenant")(request) == "acme"
    assert compile_template("t=$tenant").render(request) == "t=acme"
    match = compile_vars([["tenant", "==", "acme"], ["roles", "has", "writer"]])
    assert match is not None and match(request)
    assert match(FakeRequest(state={"tenant": "other"})) is False


def test_unregistered_variable_is_unknown_again(tenant: None) -> None:
    unregister_var("tenant")
    with pytest.raises(ValueError, match="unknown variable 'tenant'"):
        var_getter("tenant")


def test_registering_again_replaces(tenant: None) -> None:
    register_var("tenant", lambda ctx: "fixed")
    assert var_getter("tenant")(FakeRequest()) == "fixed"


@pytest.mark.parametrize("name", ["host", "remote_addr", "http_x_tenant", "arg_page",
                                  "cookie_sid", "sent_http_x"])
def test_builtin_names_cannot_be_replaced(name: str) -> None:
    with pytest.raises(ValueError, match="built in"):
        register_var(name, lambda ctx: "x")
    assert var_getter(name) is not None


@pytest.mark.parametrize("name", ["", "1abc", "a-b", "a b", "$x"])
def test_register_refuses_names_a_template_cannot_hold(name: str) -> None:
    with pytest.raises(ValueError, match="invalid variable name"):
        register_var(name, lambda ctx: "x")


def test_register_needs_a_callable() -> None:
    with pytest.raises(TypeError):
        register_var("not_callable", "x")  # type: ignore[arg-type]
    assert not is_variable("not_callable")
