"""The template renderer: ``$var``/``${var}``, regex groups, and what is an error."""
from __future__ import annotations

import pytest

from gateway.requestvars import compile_template
from tests.vars.request import Consumer, FakeRequest

REQUEST = FakeRequest(host="api.example.com:8080", path="/users/7", query_string="page=2",
                      client_ip="10.0.0.9", consumer=Consumer("alice"),
                      header_list=[("X-Tenant", "acme")])


def test_text_without_references_is_static() -> None:
    template = compile_template("plain text")
    assert template.static and template.names == ()
    assert template.render() == "plain text"
    assert template.render(REQUEST) == "plain text"
    assert compile_template("").render() == ""


@pytest.mark.parametrize(("text", "expected"), [
    ("$host", "api.example.com"),
    ("${host}:$remote_addr", "api.example.com:10.0.0.9"),
    ("/v2$uri?$args", "/v2/users/7?page=2"),
    ("${arg_page}nd", "2nd"),
    ("$arg_pagend", ""),  # the longest name is the variable, as in nginx
    ("t=$http_x_tenant;u=$consumer_name", "t=acme;u=alice"),
    ("[$http_missing]", "[]"),  # a missing variable renders as nothing
    ("cost: $", "cost: $"),  # a $ that starts no name is text
    ("$ 5 and ${", "$ 5 and ${"),
    ("a$$host", "a$api.example.com"),
])
def test_variables(text: str, expected: str) -> None:
    template = compile_template(text)
    assert template.render(REQUEST) == expected
    assert template.static is (template.names == ())


def test_names_in_order() -> None:
    assert compile_template("$uri-${host}-$uri").names == ("uri", "host", "uri")


def test_groups_with_captures() -> None:
    template = compile_template("/$1/${2}/$0/$9/$host", captures=True)
    groups = ("/a/b", "a", None)
    assert template.render(REQUEST, groups) == "/a///a/b//api.example.com"
    assert compile_template("${12}x", captures=True).render(None, tuple("0123456789abc")) == "cx"


def test_groups_only_where_there_are_captures() -> None:
    with pytest.raises(ValueError, match="regex groups"):
        compile_template("/$1")
    with pytest.raises(ValueError, match="regex groups"):
        compile_template("/${1}")


def test_groups_only_mode_leaves_dollar_names_as_text() -> None:
    template = compile_template("/$host/$1/${2}", captures=True, variables=False)
    assert template.names == ()
    assert template.render(None, ("x", "a", "b")) == "/$host/a/b"


def test_unknown_variable_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown variable 'nope'"):
        compile_template("x $nope y")
    with pytest.raises(ValueError, match="unknown variable 'nope'"):
        compile_template("${nope}")


def test_render_found_reports_whether_any_variable_had_a_value() -> None:
    template = compile_template("$http_x_tenant:$http_x_user")
    assert template.render_found(REQUEST) == ("acme:", True)
    assert template.render_found(FakeRequest()) == (":", False)
    assert compile_template("constant").render_found(FakeRequest()) == ("constant", True)


def test_values_that_are_not_text() -> None:
    from gateway.requestvars import register_var, unregister_var
    register_var("t_number", lambda ctx: 5.0)
    register_var("t_flag", lambda ctx: True)
    register_var("t_zero", lambda ctx: 0)
    try:
        assert compile_template("$t_number/$t_flag").render(FakeRequest()) == "5/true"
        # 0 is a value ("0"), not a missing variable
        assert compile_template("n=$t_zero").render_found(FakeRequest()) == ("n=0", True)
    finally:
        unregister_var("t_number")
        unregister_var("t_flag")
        unregister_var("t_zero")
