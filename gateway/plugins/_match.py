"""APISIX's request-matching language (lua-resty-expr ``vars``) and ``$var`` templates, compiled
once when the config loads into plain functions of the request context.

An expression is a list of conditions that must all hold (``[["arg_name", "==", "jack"],
["http_x_canary", "~~", "^on$"]]``); a list may instead start with ``"AND"``, ``"OR"``,
``"!AND"`` or ``"!OR"`` to combine nested expressions. A condition is ``[var, op, value]`` or
``[var, "!", op, value]`` (negated). Operators: ``==``, ``~=``, ``>``, ``>=``, ``<``, ``<=``,
``~~`` (regex search), ``~*`` (case-insensitive regex), ``in``/``IN`` (value in a list),
``has`` (a list-valued variable, or a comma-separated header, contains the value) and
``ipmatch`` (the address is in one of the CIDRs). A number on the right compares numerically,
as in lua-resty-expr; a missing variable matches nothing but ``~=``.

Variables follow APISIX/nginx names: ``uri``, ``request_uri``, ``host``, ``remote_addr``,
``remote_port``, ``request_method``, ``args``/``query_string``, ``route_id``, ``consumer_name``,
``consumer_group_id``, ``server_protocol``, ``scheme``, ``request_id`` (set by the request-id
plugin), ``arg_<name>``, ``http_<header>`` (``_`` read as ``-``), ``cookie_<name>``; in response
phases also ``status`` and ``sent_http_<header>``/``upstream_http_<header>``. Regexes are
Python's ``re`` dialect (close to PCRE for what routes use). An unknown variable, operator or
malformed regex is a config error, not a condition that silently never matches.
"""
from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any

Getter = Callable[[Any], Any]
Predicate = Callable[[Any], bool]


def _consumer_attr(attr: str) -> Getter:
    def get(ctx: Any) -> Any:
        consumer = ctx.consumer
        return getattr(consumer, attr, None) if consumer is not None else None
    return get


def _response_header(name: str) -> Getter:
    def get(ctx: Any) -> str | None:
        headers = ctx.response_headers
        if not headers:
            return None
        values = [value for key, value in headers if key.lower() == name]
        return ", ".join(values) if values else None
    return get


def _query_arg(name: str) -> Getter:
    def get(ctx: Any) -> str | None:
        return ctx.args.get(name) if ctx.query_string else None
    return get


def _header(name: str) -> Getter:
    return lambda ctx: ctx.headers.get(name)


def _cookie(name: str) -> Getter:
    return lambda ctx: ctx.cookies.get(name)


def _host_name(ctx: Any) -> str:
    """nginx's $host: the Host header without its port, lower-cased."""
    host = ctx.host
    if host.startswith("["):
        return host[:host.find("]") + 1].lower()
    return host.partition(":")[0].lower()


_PLAIN: dict[str, Getter] = {
    "uri": lambda ctx: ctx.path,
    "request_uri": lambda ctx: ctx.raw_target.decode("latin-1"),
    "host": _host_name,
    "http_host": lambda ctx: ctx.host,
    "remote_addr": lambda ctx: ctx.client_ip,
    "remote_port": lambda ctx: str(ctx.client_port),
    "request_method": lambda ctx: ctx.method,
    "args": lambda ctx: ctx.query_string,
    "query_string": lambda ctx: ctx.query_string,
    "is_args": lambda ctx: "?" if ctx.query_string else "",
    "route_id": lambda ctx: ctx.route_id,
    "consumer_name": _consumer_attr("username"),
    "consumer_group_id": _consumer_attr("group_id"),
    "server_protocol": lambda ctx: "HTTP/" + ctx.http_version,
    "scheme": lambda ctx: "http",
    "request_id": lambda ctx: ctx.vars.get("request_id"),
    "status": lambda ctx: ctx.status or None,
}

_PREFIXED: tuple[tuple[str, Callable[[str], Getter], bool], ...] = (
    # (prefix, getter factory, whether "_" in the rest means "-")
    ("arg_", _query_arg, False),
    ("http_", _header, True),
    ("cookie_", _cookie, False),
    ("sent_http_", _response_header, True),
    ("upstream_http_", _response_header, True),
)


def var_getter(name: str) -> Getter:
    """The function reading variable ``name`` from a request; ValueError for unknown names."""
    if name in _PLAIN:
        return _PLAIN[name]
    # longest prefix first: "sent_http_x" is not "http_..."
    for prefix, factory, dashes in sorted(_PREFIXED, key=lambda p: -len(p[0])):
        if name.startswith(prefix) and len(name) > len(prefix):
            rest = name[len(prefix):]
            return factory(rest.replace("_", "-").lower() if dashes else rest)
    raise ValueError(f"unknown variable '{name}' (known: {', '.join(sorted(_PLAIN))}, "
                     "arg_<name>, http_<header>, cookie_<name>, sent_http_<header>)")


# -- expressions -------------------------------------------------------------------------------

_LOGICAL = {"AND", "OR", "!AND", "!OR"}


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _to_number(value: Any) -> float | None:
    if value is None:
        return None
    if _is_number(value):
        return float(value)
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _as_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _compile_regex(pattern: Any, flags: int, where: str) -> re.Pattern[str]:
    if not isinstance(pattern, str):
        raise ValueError(f"{where}: a regex must be a string, got {pattern!r}")
    try:
        return re.compile(pattern, flags)
    except re.error as exc:
        raise ValueError(f"{where}: invalid regex {pattern!r}: {exc}") from None


def _networks(value: Any, where: str) -> list[ipaddress.IPv4Network | ipaddress.IPv6Network]:
    items = value if isinstance(value, list) else [value]
    out = []
    for item in items:
        try:
            out.append(ipaddress.ip_network(str(item), strict=False))
        except ValueError:
            raise ValueError(f"{where}: {item!r} is not an IP address or CIDR") from None
    return out


def _condition(get: Getter, op: str, value: Any, where: str) -> Predicate:
    """One comparison, with lua-resty-expr's coercions decided now rather than per request."""
    if op == "==":
        if _is_number(value):
            expected = float(value)
            return lambda ctx: _to_number(get(ctx)) == expected
        text = _as_text(value)
        return lambda ctx: (v := get(ctx)) is not None and _as_text(v) == text
    if op == "~=":
        equal = _condition(get, "==", value, where)
        return lambda ctx: not equal(ctx)
    if op in (">", ">=", "<", "<="):
        bound = _to_number(value)
        if bound is None:
            raise ValueError(f"{where}: '{op}' needs a number, got {value!r}")
        number: float = bound
        compare: Callable[[float, float], bool] = {
            ">": float.__gt__, ">=": float.__ge__, "<": float.__lt__, "<=": float.__le__}[op]

        def ordered(ctx: Any) -> bool:
            left = _to_number(get(ctx))
            return left is not None and compare(left, number)
        return ordered
    if op in ("~~", "~*"):
        regex = _compile_regex(value, re.IGNORECASE if op == "~*" else 0, where)
        return lambda ctx: (v := get(ctx)) is not None and regex.search(_as_text(v)) is not None
    if op in ("in", "IN"):
        if not isinstance(value, list):
            raise ValueError(f"{where}: 'in' needs a list, got {value!r}")
        members = {_as_text(item) for item in value}
        return lambda ctx: (v := get(ctx)) is not None and _as_text(v) in members
    if op in ("has", "HAS"):
        wanted = _as_text(value)

        def has(ctx: Any) -> bool:
            v = get(ctx)
            if v is None:
                return False
            items = v if isinstance(v, (list, tuple, set)) else _as_text(v).split(",")
            return any(_as_text(item).strip() == wanted for item in items)
        return has
    if op in ("ipmatch", "IPMATCH"):
        nets = _networks(value, where)

        def ipmatch(ctx: Any) -> bool:
            v = get(ctx)
            try:
                address = ipaddress.ip_address(_as_text(v))
            except ValueError:
                return False
            return any(address in net for net in nets if net.version == address.version)
        return ipmatch
    raise ValueError(f"{where}: unknown operator {op!r} (==, ~=, >, >=, <, <=, ~~, ~*, in, has, "
                     "ipmatch, optionally after '!')")


def _compile_node(node: Any, where: str) -> Predicate:
    if not isinstance(node, list) or not node:
        raise ValueError(f"{where}: expected a non-empty list, got {node!r}")
    head = node[0]
    if isinstance(head, list) or (isinstance(head, str) and head in _LOGICAL):
        return _compile_logical(node, where)
    if not isinstance(head, str):
        raise ValueError(f"{where}: a condition starts with a variable name, got {head!r}")
    negate = len(node) == 4 and node[1] == "!"
    if negate:
        _, _, op, value = node
    elif len(node) == 3:
        _, op, value = node
    else:
        raise ValueError(f"{where}: a condition is [var, op, value] or [var, '!', op, value], "
                         f"got {node!r}")
    if not isinstance(op, str):
        raise ValueError(f"{where}: operator must be a string, got {op!r}")
    test = _condition(var_getter(head), op, value, where)
    if negate:
        return lambda ctx: not test(ctx)
    return test


def _compile_logical(node: list[Any], where: str) -> Predicate:
    head = node[0]
    if isinstance(head, str):
        mode, parts = head, node[1:]
    else:
        mode, parts = "AND", node
    if not parts:
        raise ValueError(f"{where}: '{mode}' needs at least one expression")
    tests = tuple(_compile_node(part, f"{where}[{i}]") for i, part in enumerate(parts))
    if len(tests) == 1 and mode == "AND":
        return tests[0]
    if mode == "AND":
        return lambda ctx: all(t(ctx) for t in tests)
    if mode == "OR":
        return lambda ctx: any(t(ctx) for t in tests)
    if mode == "!AND":
        return lambda ctx: not all(t(ctx) for t in tests)
    return lambda ctx: not any(t(ctx) for t in tests)


def compile_vars(expression: Any, where: str = "vars") -> Predicate | None:
    """A ``vars`` expression compiled to a predicate of the request; None for an empty one
    (which matches everything). ValueError names what is wrong and where."""
    if expression is None:
        return None
    if not isinstance(expression, list):
        raise ValueError(f"{where}: expected a list of conditions, got {expression!r}")
    if not expression:
        return None
    if isinstance(expression[0], str) and expression[0] not in _LOGICAL:
        # a single condition written without the outer list: ["arg_x", "==", "1"]
        return _compile_node(expression, where)
    return _compile_logical(expression, where)


# -- templates ---------------------------------------------------------------------------------

_TEMPLATE_VAR = re.compile(r"\$(?:\{(\w+)\}|(\d|[A-Za-z_]\w*))")

Template = Callable[[Any, "tuple[str | None, ...]"], str]


def compile_template(text: str, captures: bool = False) -> Template | str:
    """``text`` with ``$name``/``${name}`` replaced by request variables (missing ones by "",
    as nginx does). With ``captures``, ``$1``..``$9`` (``$0`` the whole match) are regex
    groups passed at run time. Text without variables is returned as is: it costs nothing per
    request."""
    pieces: list[str | Getter | int] = []
    pos = 0
    for match in _TEMPLATE_VAR.finditer(text):
        name = match.group(1) or match.group(2)
        if name.isdigit():
            if not captures:
                raise ValueError(f"'${name}' in {text!r}: regex groups are only available "
                                 "with regex_uri")
            piece: str | Getter | int = int(name)
        else:
            piece = var_getter(name)
        if match.start() > pos:
            pieces.append(text[pos:match.start()])
        pieces.append(piece)
        pos = match.end()
    if not any(not isinstance(p, str) for p in pieces):
        return text
    if pos < len(text):
        pieces.append(text[pos:])
    frozen = tuple(pieces)

    def render(ctx: Any, groups: tuple[str | None, ...] = ()) -> str:
        out = []
        for piece in frozen:
            if isinstance(piece, str):
                out.append(piece)
            elif isinstance(piece, int):
                if piece < len(groups) and groups[piece] is not None:
                    out.append(groups[piece])  # type: ignore[arg-type]
            else:
                value = piece(ctx)
                if value is not None:
                    out.append(_as_text(value))
        return "".join(out)
    return render


def render(template: Template | str, ctx: Any, groups: tuple[str | None, ...] = ()) -> str:
    return template if isinstance(template, str) else template(ctx, groups)


def check_header_name(name: str, where: str) -> None:
    if not re.fullmatch(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+", name):
        raise ValueError(f"{where}: {name!r} is not a valid header name")


def check_header_value(value: str, where: str) -> None:
    if "\r" in value or "\n" in value or "\0" in value:
        raise ValueError(f"{where}: header values cannot contain CR, LF or NUL")
