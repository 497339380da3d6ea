"""The ``vars`` expression engine: lua-resty-expr's operators and logic."""
from __future__ import annotations

from typing import Any

import pytest

from gateway.requestvars import compile_vars, register_var, unregister_var
from tests.vars.request import FakeRequest


def matches(expression: Any, request: FakeRequest) -> bool:
    test = compile_vars(expression)
    assert test is not None
    return test(request)


def q(query: str, **kw: Any) -> FakeRequest:
    return FakeRequest(query_string=query, **kw)


def test_empty_expression_matches_everything() -> None:
    assert compile_vars(None) is None
    assert compile_vars([]) is None


@pytest.mark.parametrize(("condition", "query", "expected"), [
    (["arg_name", "==", "jack"], "name=jack", True),
    (["arg_name", "==", "jack"], "name=jill", False),
    (["arg_name", "==", "jack"], "", False),
    (["arg_name", "~=", "jack"], "name=jill", True),
    (["arg_name", "~=", "jack"], "", True),  # a missing variable is not equal
    (["arg_n", "==", 10], "n=10.0", True),  # a number compares numerically
    (["arg_n", "==", "10"], "n=10.0", False),  # text compares as text
    (["arg_n", "==", 10], "n=ten", False),
    (["arg_on", "==", True], "on=true", True),
    (["arg_x", "==", None], "", True),  # null: the variable is missing
    (["arg_x", "==", None], "x=1", False),
    (["arg_x", "~=", None], "x=", True),
    (["arg_n", ">", 10], "n=11", True),
    (["arg_n", ">", 10], "n=10", False),
    (["arg_n", ">=", "10"], "n=10", True),
    (["arg_n", "<", 10], "n=9.5", True),
    (["arg_n", "<=", 10], "n=10", True),
    (["arg_n", "<", 10], "n=abc", False),
    (["arg_n", "<", 10], "", False),
    (["arg_name", "~~", "^ja"], "name=jack", True),
    (["arg_name", "~~", "^ja"], "name=Jack", False),
    (["arg_name", "~*", "^ja"], "name=Jack", True),
    (["arg_name", "~~", "."], "", False),
    (["arg_v", "in", ["1", "2", 3]], "v=3", True),
    (["arg_v", "IN", ["1", "2"]], "v=4", False),
    (["arg_v", "in", ["1"]], "", False),
    (["arg_name", "!", "==", "jack"], "name=jack", False),
    (["arg_name", "!", "~~", "^ja"], "name=jill", True),
])
def test_operators(condition: list[Any], query: str, expected: bool) -> None:
    assert matches([condition], q(query)) is expected
    assert matches(condition, q(query)) is expected  # a single condition may stand alone


def test_has_reads_list_items_and_comma_separated_headers() -> None:
    request = FakeRequest(header_list=[("Accept-Encoding", "gzip, br"), ("X-Tags", "a b")])
    assert matches(["http_accept_encoding", "has", "br"], request)
    assert matches(["http_accept_encoding", "has", "gzip"], request)
    assert not matches(["http_accept_encoding", "has", "deflate"], request)
    assert not matches(["http_x_tags", "has", "a"], request)  # items are comma separated
    assert not matches(["http_missing", "has", "a"], request)
    register_var("t_roles", lambda ctx: ["admin", "ops"])
    try:
        assert matches(["t_roles", "has", "ops"], request)
        assert not matches(["t_roles", "has", "op"], request)
        assert matches(["t_roles", "HAS", "admin"], request)
    finally:
        unregister_var("t_roles")


@pytest.mark.parametrize(("address", "networks", "expected"), [
    ("192.0.2.7", ["192.0.2.0/24"], True),
    ("192.0.2.7", "192.0.2.7", True),
    ("192.0.3.7", ["192.0.2.0/24", "10.0.0.0/8"], False),
    ("10.9.9.9", ["192.0.2.0/24", "10.0.0.0/8"], True),
    ("::1", ["::1/128"], True),
    ("2001:db8::5", ["2001:db8::/32", "192.0.2.0/24"], True),
    ("::ffff:192.0.2.7", ["192.0.2.0/24"], False),  # families are not mixed
    ("not-an-ip", ["0.0.0.0/0"], False),
])
def test_ipmatch(address: str, networks: Any, expected: bool) -> None:
    assert matches(["remote_addr", "ipmatch", networks], FakeRequest(client_ip=address)) \
        is expected
    assert matches(["remote_addr", "IPMATCH", networks], FakeRequest(client_ip=address)) \
        is expected


def test_a_list_of_conditions_must_all_hold() -> None:
    expression = [["arg_a", "==", "1"], ["arg_b", "==", "2"]]
    assert matches(expression, q("a=1&b=2"))
    assert not matches(expression, q("a=1&b=3"))


@pytest.mark.parametrize(("query", "expected"), [
    ("a=1&b=2", False), ("a=1&b=3", False), ("a=1&b=3&c=5", True), ("a=2&b=2", True),
])
def test_logical_operators_nest(query: str, expected: bool) -> None:
    # not (a == 1 and (b == 2 or not c > 3))
    expression = ["!AND", ["arg_a", "==", "1"],
                  ["OR", ["arg_b", "==", "2"], ["arg_c", "!", ">", 3]]]
    assert matches(expression, q(query)) is expected


def test_each_logical_operator() -> None:
    a, b = ["arg_a", "==", "1"], ["arg_b", "==", "1"]
    cases = {"AND": [False, False, False, True], "OR": [False, True, True, True],
             "!AND": [True, True, True, False], "!OR": [True, False, False, False]}
    queries = ["", "b=1", "a=1", "a=1&b=1"]
    for mode, expected in cases.items():
        assert [matches([mode, a, b], q(query)) for query in queries] == expected, mode
    assert matches(["!OR", a], q("")) and not matches(["!OR", a], q("a=1"))
    assert matches(["OR", [a, b], ["arg_c", "==", "1"]], q("c=1"))


@pytest.mark.parametrize(("expression", "message"), [
    ("arg_a", "expected a list of conditions"),
    ([["arg_a", "=", "1"]], "vars[0]: unknown operator '='"),
    ([["arg_a", "~~", "("]], "vars[0]: invalid regex"),
    ([["arg_a", "~~", 5]], "a regex must be a string"),
    ([["arg_a", ">", "ten"]], "'>' needs a number"),
    ([["arg_a", "in", "1"]], "'in' needs a list"),
    ([["arg_a", "has", ["1"]]], "'has' needs one value"),
    ([["remote_addr", "ipmatch", ["10.0.0.0/33"]]], "'10.0.0.0/33' is not an IP address or CIDR"),
    ([["remote_addr", "ipmatch", []]], "needs at least one"),
    ([["no_such_var", "==", "1"]], "vars[0]: unknown variable 'no_such_var'"),
    ([["arg_a", "==", "1", "2"]], "a condition is"),
    ([["arg_a", "=="]], "a condition is"),
    ([["arg_a", 1, "x"]], "an operator is a string"),
    ([[1, "==", "x"]], "starts with a variable name"),
    (["OR"], "'OR' needs at least one expression"),
    (["AND", ["arg_a", "==", "1"], ["OR", ["arg_b", "=", "1"]]], "vars[2][1]: unknown operator"),
    ([[]], "expected a non-empty list"),
])
def test_errors_say_what_and_where(expression: Any, message: str) -> None:
    with pytest.raises(ValueError) as info:
        compile_vars(expression)
    assert message in str(info.value)
