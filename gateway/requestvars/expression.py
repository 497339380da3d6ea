"""The one ``vars`` expression engine (APISIX's lua-resty-expr language), compiled once when the
config loads into a predicate of the request.

An expression is a list of conditions that must all hold: ``[["arg_name", "==", "jack"],
["http_x_canary", "~~", "^on$"]]``. A list may instead start with ``"AND"``, ``"OR"``,
``"!AND"`` or ``"!OR"`` and combine conditions and nested lists the same way, to any depth. A
condition is ``[var, op, value]``, or ``[var, "!", op, value]`` for its negation; a single
condition may stand alone (``["arg_x", "==", "1"]``).

Operators (the word operators in either case):

``==`` / ``~=``        equal / not equal; a number on the right compares numerically, ``null``
                       stands for a missing variable
``>`` ``>=`` ``<`` ``<=``  numeric comparison; a missing or non-numeric variable fails
``~~`` / ``~*``        regex search / the same ignoring case (Python's ``re`` dialect)
``in``                 the variable is one of the listed values
``has``                the variable's items contain the value: a list-valued variable (one
                       added with ``register_var``), or a comma-separated header's items with
                       spaces around them trimmed
``ipmatch``            the variable is an IP address in one of the CIDRs / addresses given

A missing variable satisfies nothing but ``~=`` (and the negations). An unknown variable or
operator, a malformed regex, CIDR or value is a ValueError naming where it is.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

from gateway.requestvars.table import Getter, RequestView, to_text, var_getter

__all__ = ["Predicate", "compile_vars"]

Predicate = Callable[[RequestView], bool]

_LOGICAL = frozenset({"AND", "OR", "!AND", "!OR"})
_OPERATORS = "==, ~=, >, >=, <, <=, ~~, ~*, in, has, ipmatch (optionally after '!')"


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _number(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _regex(pattern: Any, flags: int, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: a regex must be a string, got {pattern!r}")
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regex {pattern!r}: {exc}") from None


def _networks(value: Any, where: str) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    items = value if isinstance(value, list) else [value]
    if not items:
        raise ValueError(f"{where}: 'ipmatch' needs at least one address or CIDR")
    networks = []
    for item in items:
        try:
            networks.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"{where}: {item!r} is not an IP address or CIDR") from None
    return tuple(networks)


def _equal(get: Getter, value: Any) -> Predicate:
    if value is None:
        return lambda ctx: get(ctx) is None
    if _is_number(value):
        number = float(value)
        return lambda ctx: _number(get(ctx)) == number
    text = to_text(value)

    def equal(ctx: RequestView) -> bool:
        got = get(ctx)
        return got is not None and to_text(got) == text
    return equal


def _ordered(get: Getter, op: str, value: Any, where: str) -> Predicate:
    bound = _number(value)
    if bound is None:
        raise ValueError(f"{where}: '{op}' needs a number, got {value!r}")
    limit: float = bound
    compare: Callable[[float, float], bool] = {
        ">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}[op]

    def ordered(ctx: RequestView) -> bool:
        got = _number(get(ctx))
        return got is not None and compare(got, limit)
    return ordered


def _search(get: Getter, op: str, value: Any, where: str) -> Predicate:
    regex = _regex(value, re.IGNORECASE if op == "~*" else 0, where)

    def search(ctx: RequestView) -> bool:
        got = get(ctx)
        return got is not None and regex.search(to_text(got)) is not None
    return search


def _member(get: Getter, value: Any, where: str) -> Predicate:
    if not isinstance(value, list):
        raise ValueError(f"{where}: 'in' needs a list, got {value!r}")
    members = frozenset(to_text(item) for item in value)

    def member(ctx: RequestView) -> bool:
        got = get(ctx)
        return got is not None and to_text(got) in members
    return member


def _has(get: Getter, value: Any, where: str) -> Predicate:
    if isinstance(value, (list, dict)) or value is None:
        raise ValueError(f"{where}: 'has' needs one value, got {value!r}")
    wanted = to_text(value)

    def has(ctx: RequestView) -> bool:
        got = get(ctx)
        if got is None:
            return False
        if isinstance(got, (list, tuple, set, frozenset)):
            return any(to_text(item) == wanted for item in got)
        return any(item.strip() == wanted for item in to_text(got).split(","))
    return has


def _ipmatch(get: Getter, value: Any, where: str) -> Predicate:
    networks = _networks(value, where)

    def ipmatch(ctx: RequestView) -> bool:
        got = get(ctx)
        if got is None:
            return False
        try:
            address = ipaddress.ip_address(to_text(got).strip("[]"))
        except ValueError:
            return False
        return any(address in network for network in networks
                   if network.version == address.version)
    return ipmatch


def _condition(get: Getter, op: str, value: Any, where: str) -> Predicate:
    """One comparison, with its coercions decided now rather than per request."""
    word = op.lower()
    if op == "==":
        return _equal(get, value)
    if op == "~=":
        equal = _equal(get, value)
        return lambda ctx: not equal(ctx)
    if op in (">", ">=", "<", "<="):
        return _ordered(get, op, value, where)
    if op in ("~~", "~*"):
        return _search(get, op, value, where)
    if word == "in":
        return _member(get, value, where)
    if word == "has":
        return _has(get, value, where)
    if word == "ipmatch":
        return _ipmatch(get, value, where)
    raise ValueError(f"{where}: unknown operator {op!r} ({_OPERATORS})")


def _node(node: Any, where: str) -> Predicate:
    if not isinstance(node, list) or not node:
        raise ValueError(f"{where}: expected a non-empty list, got {node!r}")
    head = node[0]
    if isinstance(head, list) or head in _LOGICAL:
        return _group(node, where)
    if not isinstance(head, str):
        raise ValueError(f"{where}: a condition starts with a variable name, got {head!r}")
    if len(node) == 4 and node[1] == "!":
        _, _, op, value = node
        negate = True
    elif len(node) == 3:
        _, op, value = node
        negate = False
    else:
        raise ValueError(f"{where}: a condition is [var, op, value] or [var, '!', op, value], "
                         f"got {node!r}")
    if not isinstance(op, str):
        raise ValueError(f"{where}: an operator is a string, got {op!r}")
    try:
        get = var_getter(head)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None
    test = _condition(get, op, value, where)
    if negate:
        return lambda ctx: not test(ctx)
    return test


def _group(node: list[Any], where: str) -> Predicate:
    head = node[0]
    if isinstance(head, str):
        mode, parts, first = head, node[1:], 1
    else:
        mode, parts, first = "AND", node, 0
    if not parts:
        raise ValueError(f"{where}: '{mode}' needs at least one expression")
    tests = tuple(_node(part, f"{where}[{first + i}]") for i, part in enumerate(parts))
    if len(tests) == 1:
        only = tests[0]
        if mode in ("AND", "OR"):
            return only
        return lambda ctx: not only(ctx)
    if mode == "AND":
        return lambda ctx: all(test(ctx) for test in tests)
    if mode == "OR":
        return lambda ctx: any(test(ctx) for test in tests)
    if mode == "!AND":
        return lambda ctx: not all(test(ctx) for test in tests)
    return lambda ctx: not any(test(ctx) for test in tests)


def compile_vars(expression: Any, where: str = "vars") -> Predicate | None:
    """A ``vars`` expression compiled to a predicate of the request; None for an empty one (it
    matches every request). ValueError says what is wrong and where."""
    if expression is None:
        return None
    if not isinstance(expression, list):
        raise ValueError(f"{where}: expected a list of conditions, got {expression!r}")
    if not expression:
        return None
    return _node(expression, where)
