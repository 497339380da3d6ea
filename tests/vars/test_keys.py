"""Limit keys built from request variables (limit-req/-count/-conn's ``key`` + ``key_type``)."""
from __future__ import annotations

import pytest

from gateway.plugins._keys import LimitKey, key_function
from tests.vars.request import Consumer, FakeRequest


def test_var_key_reads_the_variable_and_falls_back_to_remote_addr() -> None:
    key = key_function("http_x_api_key", "var")
    assert key(FakeRequest(header_list=[("X-Api-Key", "k1")])) == "k1"
    assert key(FakeRequest(client_ip="10.0.0.5")) == "10.0.0.5"
    assert key_function("$consumer_name", "var")(FakeRequest(consumer=Consumer("bob"))) == "bob"


def test_host_key_is_the_host_without_port() -> None:
    key = key_function("host", "var")
    assert key(FakeRequest(host="API.example.com:8443")) == "api.example.com"


def test_var_combination_key() -> None:
    key = key_function("$remote_addr $http_x_user", "var_combination")
    assert key(FakeRequest(client_ip="10.0.0.5", header_list=[("X-User", "u")])) == "10.0.0.5 u"
    only_missing = key_function("$http_x_a:$http_x_b", "var_combination")
    assert only_missing(FakeRequest(client_ip="10.0.0.6")) == "10.0.0.6"
    with pytest.raises(ValueError, match="at least one"):
        key_function("no variables", "var_combination")


def test_constant_key_and_errors() -> None:
    assert key_function("all", "constant")(FakeRequest()) == "all"
    with pytest.raises(ValueError, match="unknown variable 'no_such_var'"):
        key_function("no_such_var", "var")
    with pytest.raises(ValueError, match="unknown key_type"):
        key_function("x", "nope")


class _Plugin:
    name = "limit-count"


def test_limit_key_scopes() -> None:
    plugin = _Plugin()
    key = LimitKey(plugin, "remote_addr", "var")
    key.bind("r1")
    assert key(FakeRequest(client_ip="10.0.0.1")) == "limit-count\x00route\x00r1\x0010.0.0.1"
    grouped = LimitKey(plugin, "remote_addr", "var", group="g")
    grouped.bind("r1")
    assert grouped(FakeRequest()) == "limit-count\x00group\x00g\x00127.0.0.1"
    global_key = LimitKey(plugin, "remote_addr", "var")
    global_key.bind(None)
    assert global_key(FakeRequest()) == "limit-count\x00global\x00127.0.0.1"
