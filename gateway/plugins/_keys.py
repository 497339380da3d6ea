"""Request variables by APISIX name (``remote_addr``, ``http_x_api_key``, ``arg_name``, ...) and
the limit keys built from them (``key`` + ``key_type`` of limit-req/-count/-conn).

Everything is resolved to a small function when the config loads, so a request only pays for
the variables its plugins name. Variable names follow APISIX/nginx: ``http_<name>`` is the
request header ``<name>`` with ``_`` read as ``-`` (``http_x_api_key`` is ``X-Api-Key``),
``arg_<name>`` a query argument, ``cookie_<name>`` a cookie.
"""
from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

VarGetter = Callable[[Any], "str | None"]


def _remote_addr(ctx: Any) -> str:
    return ctx.client_ip


def _consumer_name(ctx: Any) -> str | None:
    consumer = ctx.consumer
    return consumer.username if consumer is not None else None


def _consumer_group_id(ctx: Any) -> str | None:
    consumer = ctx.consumer
    return consumer.group_id if consumer is not None else None


def _request_uri(ctx: Any) -> str:
    return ctx.raw_target.decode("latin-1")


_PLAIN_VARS: dict[str, VarGetter] = {
    "remote_addr": _remote_addr,
    "remote_port": lambda ctx: str(ctx.client_port),
    "consumer_name": _consumer_name,
    "consumer": _consumer_name,  # the name DESIGN.md's examples use
    "consumer_group_id": _consumer_group_id,
    "route_id": lambda ctx: ctx.route_id,
    "uri": lambda ctx: ctx.path,
    "request_uri": _request_uri,
    "args": lambda ctx: ctx.query_string,
    "query_string": lambda ctx: ctx.query_string,
    "host": lambda ctx: ctx.host,
    "request_method": lambda ctx: ctx.method,
    "server_protocol": lambda ctx: "HTTP/" + ctx.http_version,
}

#: Variables APISIX has that the gateway does not expose to plugins (a config error, not a
#: silently empty key).
_UNAVAILABLE = {"server_addr", "server_port", "scheme", "binary_remote_addr"}


def var_getter(name: str) -> VarGetter:
    """The function reading variable ``name`` from a request; ValueError for unknown names."""
    if name in _PLAIN_VARS:
        return _PLAIN_VARS[name]
    if name.startswith("http_") and len(name) > 5:
        header = name[5:].replace("_", "-").lower()
        return lambda ctx: ctx.headers.get(header)
    if name.startswith("arg_") and len(name) > 4:
        arg = name[4:]
        return lambda ctx: ctx.args.get(arg) if ctx.query_string else None
    if name.startswith("cookie_") and len(name) > 7:
        cookie = name[7:]
        return lambda ctx: ctx.cookies.get(cookie)
    if name in _UNAVAILABLE:
        raise ValueError(f"variable '{name}' is not available in this gateway")
    known = ", ".join(sorted(_PLAIN_VARS))
    raise ValueError(f"unknown variable '{name}' (known: {known}, http_<header>, arg_<name>, "
                     "cookie_<name>)")


_VAR_IN_TEXT = re.compile(r"\$(?:\{(\w+)\}|(\w+))")


def template(text: str) -> Callable[[Any], tuple[str, bool]]:
    """``text`` with ``$name`` / ``${name}`` replaced by request variables (missing ones by
    ""): returns (the string, whether any variable had a value). Text without variables costs
    nothing per request."""
    pieces: list[str | VarGetter] = []
    pos = 0
    for match in _VAR_IN_TEXT.finditer(text):
        if match.start() > pos:
            pieces.append(text[pos:match.start()])
        pieces.append(var_getter(match.group(1) or match.group(2)))
        pos = match.end()
    if pos < len(text):
        pieces.append(text[pos:])
    if not any(callable(p) for p in pieces):
        return lambda ctx: (text, True)

    def render(ctx: Any) -> tuple[str, bool]:
        out: list[str] = []
        found = False
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                value = piece(ctx)
                if value:
                    found = True
                    out.append(value)
        return "".join(out), found

    return render


def key_function(key: str, key_type: str) -> Callable[[Any], str]:
    """The limit key of a request as APISIX's limit plugins compute it: ``var`` names one
    variable, ``var_combination`` is text with ``$variables``, ``constant`` is the text itself.
    An empty result (the variables are missing) falls back to ``remote_addr``, as in APISIX.
    Raises ValueError for an unknown variable or key type."""
    if key_type == "constant":
        return lambda ctx: key
    if key_type == "var":
        getter = var_getter(key[1:] if key.startswith("$") else key)
        if getter is _remote_addr:
            return _remote_addr

        def var_key(ctx: Any) -> str:
            return getter(ctx) or ctx.client_ip

        return var_key
    if key_type == "var_combination":
        if not _VAR_IN_TEXT.search(key):
            raise ValueError("a var_combination key needs at least one $variable, e.g. "
                             "\"$remote_addr $http_x_api_key\"")
        render = template(key)

        def combined_key(ctx: Any) -> str:
            text, found = render(ctx)
            return text if found else ctx.client_ip

        return combined_key
    raise ValueError(f"unknown key_type '{key_type}'")


class LimitKey:
    """The shared-memory key of a request for one limit plugin instance: a scope, then the
    request's key (``key`` + ``key_type``). Scopes: a route's plugin is limited per route (two
    routes share a limit only when they name the same ``group``); a consumer's plugin per route
    and consumer (APISIX's "route&consumer"); a global rule's across all routes. ``bind`` fixes
    the scope once the plugin knows where it is configured."""

    __slots__ = ("plugin", "request_key", "scope", "group")

    def __init__(self, plugin: Any, key: str, key_type: str, group: str | None = None) -> None:
        self.plugin = plugin
        self.request_key = key_function(key, key_type)
        self.group = group
        self.scope: str | None = None

    def bind(self, route_id: str | None) -> None:
        name = self.plugin.name
        if self.group:
            self.scope = f"{name}\x00group\x00{self.group}\x00"
        elif route_id is not None:
            self.scope = f"{name}\x00route\x00{route_id}\x00"
        else:
            self.scope = None  # a global rule or a consumer's plugin: decided per request

    def bind_native(self, hook: Any, limiter: Any) -> None:
        """Gives a plugin's native access hook (gateway._proto.LimitAccess) this key: the fixed
        scope, and the client address built in C or else the key function."""
        hook.bind_limiter(limiter, self.scope, self.request_key,
                          self.request_key is _remote_addr)

    def __call__(self, ctx: Any) -> str:
        scope = self.scope
        if scope is None:
            consumer = ctx.consumer
            name = self.plugin.name
            if consumer is not None and consumer.plugins.get(name) is self.plugin:
                scope = f"{name}\x00consumer\x00{ctx.route_id}\x00{consumer.username}\x00"
            else:
                scope = f"{name}\x00global\x00"
        return scope + self.request_key(ctx)
