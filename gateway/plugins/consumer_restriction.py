"""``consumer-restriction``: allows or refuses a request by who sent it (APISIX's plugin, names
and defaults). Runs after the authentication plugins (priority 2400 < 2500..2520).

``type`` says what is checked: ``consumer_name`` (the consumer's username, the default),
``consumer_group_id`` (its ``group_id``) or ``route_id`` (the route, for the plugin configured
on a consumer: the routes that consumer may use). ``blacklist`` refuses, and wins over
``whitelist``, which refuses everything not listed; ``allowed_by_methods`` (``[{user, methods}]``)
limits each listed value that is not whitelisted to its methods (values it does not list pass,
as in APISIX). A refusal answers
``rejected_code`` (403) with ``{"message": rejected_msg}``, by default
``"The <type> is forbidden."``; a request without the value (no consumer authenticated it)
answers 401 ``{"message": "Missing authentication or identity verification."}``.

Differs from APISIX: there are no services here, so no ``service_id`` type.
"""
from __future__ import annotations

from typing import Annotated, Literal

import msgspec

from gateway.plugins import Context, Response
from gateway.plugins._auth import message_response
from gateway.plugins.base import Plugin, PluginConfig
from gateway.requestvars import var_getter

Method = Literal["GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS", "CONNECT", "TRACE",
                 "PURGE"]


class AllowedMethods(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    user: Annotated[str, msgspec.Meta(min_length=1)]
    methods: list[Method] = msgspec.field(default_factory=list)


class ConsumerRestrictionConfig(PluginConfig):
    type: Literal["consumer_name", "consumer_group_id", "route_id"] = "consumer_name"
    whitelist: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    blacklist: Annotated[list[str], msgspec.Meta(min_length=1)] | None = None
    allowed_by_methods: Annotated[list[AllowedMethods], msgspec.Meta(min_length=1)] | None = None
    rejected_code: Annotated[int, msgspec.Meta(ge=200, le=599)] = 403
    rejected_msg: str | None = None

    def __post_init__(self) -> None:
        if self.whitelist is None and self.blacklist is None and self.allowed_by_methods is None:
            raise ValueError("one of whitelist, blacklist or allowed_by_methods is required")


class ConsumerRestriction(Plugin):
    name = "consumer-restriction"
    priority = 2400
    Config = ConsumerRestrictionConfig
    config: ConsumerRestrictionConfig

    def __init__(self, config: ConsumerRestrictionConfig) -> None:
        super().__init__(config)
        # the types are request variables of the same names
        self.value_of = var_getter(config.type)
        self.whitelist = frozenset(config.whitelist) if config.whitelist is not None else None
        self.blacklist = frozenset(config.blacklist or ())
        self.methods_of: dict[str, frozenset[str]] | None = None
        if config.allowed_by_methods is not None:
            self.methods_of = {}
            for allowed in config.allowed_by_methods:
                # APISIX reads the first entry of a user
                self.methods_of.setdefault(allowed.user, frozenset(allowed.methods))
        self.missing = message_response(401, "Missing authentication or identity verification.")
        self.rejected = message_response(
            config.rejected_code, config.rejected_msg or f"The {config.type} is forbidden.")

    def access(self, ctx: Context) -> Response | None:
        value = self.value_of(ctx)
        if value is None:
            return self.missing
        if value in self.blacklist:
            return self.rejected
        if self.whitelist is not None:
            if value in self.whitelist:
                return None
            return self.rejected
        if self.methods_of is not None:
            methods = self.methods_of.get(value)
            if methods is not None and ctx.method not in methods:
                return self.rejected
        return None
