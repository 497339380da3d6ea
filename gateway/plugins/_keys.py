"""Limit keys (``key`` + ``key_type`` of limit-req/-count/-conn), built from the request
variables of :mod:`gateway.requestvars` (``remote_addr``, ``http_x_api_key``, ``consumer_name``,
...). Everything is resolved to a small function when the config loads, so a request only pays
for the variables its plugins name.
"""
from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gateway.plugins import Context
from gateway.requestvars import Getter as VarGetter
from gateway.requestvars import compile_template, var_getter

__all__ = ["LimitKey", "VarGetter", "key_function", "template", "var_getter"]

_remote_addr = var_getter("remote_addr")


def template(text: str) -> Callable[[Any], tuple[str, bool]]:
    """``text`` with ``$name`` / ``${name}`` replaced by request variables: a function of the
    request giving (the string, whether any variable had a value)."""
    return compile_template(text).render_found


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

        def var_key(ctx: Context) -> str:
            return getter(ctx) or ctx.client_ip

        return var_key
    if key_type == "var_combination":
        compiled = compile_template(key)
        if not compiled.names:
            raise ValueError("a var_combination key needs at least one $variable, e.g. "
                             "\"$remote_addr $http_x_api_key\"")
        render = compiled.render_found

        def combined_key(ctx: Context) -> str:
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

    def __call__(self, ctx: Context) -> str:
        scope = self.scope
        if scope is None:
            consumer = ctx.consumer
            name = self.plugin.name
            if consumer is not None and consumer.plugins.get(name) is self.plugin:
                scope = f"{name}\x00consumer\x00{ctx.route_id}\x00{consumer.username}\x00"
            else:
                scope = f"{name}\x00global\x00"
        return scope + self.request_key(ctx)
