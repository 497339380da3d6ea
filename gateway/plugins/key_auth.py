"""``key-auth``: a consumer is identified by an API key sent in a header or a query argument
(APISIX's plugin, names and defaults).

On a consumer: ``{key: "..."}``. On a route or global rule: ``header`` (default ``apikey``),
``query`` (default ``apikey``), ``hide_credentials``, ``bearer_token`` (read the key from
``Authorization: Bearer ...`` instead of ``header``), ``realm`` and ``anonymous_consumer``.

Differs from APISIX: two consumers with the same key are a config error (APISIX lets one of
them win silently); keys are compared by a dict lookup built once per config version.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import msgspec

from gateway._proto import KeyAuthAccess
from gateway.plugins import Context
from gateway.plugins._auth import AuthPlugin, CredentialIndex, hide_query_arg
from gateway.plugins.base import PluginConfig, PluginEnv

if TYPE_CHECKING:
    from gateway.plugins.consumers import ConsumerEntry

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]


class KeyAuthConfig(PluginConfig):
    # route / global rule
    header: NonEmpty = "apikey"
    query: NonEmpty = "apikey"
    hide_credentials: bool = False
    bearer_token: bool = False
    realm: str = "key"
    anonymous_consumer: str | None = None
    # consumer
    key: NonEmpty | msgspec.UnsetType = msgspec.UNSET


class KeyAuth(AuthPlugin):
    name = "key-auth"
    priority = 2500
    Config = KeyAuthConfig
    CREDENTIAL_FIELDS = ("key",)
    LOOKUP_FIELD = "key"
    CHALLENGE_SCHEME = "apikey"
    config: KeyAuthConfig

    def __init__(self, config: KeyAuthConfig) -> None:
        super().__init__(config)
        self.header = "authorization" if config.bearer_token else config.header.lower()
        self.challenge_scheme = "Bearer" if config.bearer_token else "apikey"
        self.native_access = KeyAuthAccess(self, "access")
        self.native_hooks = {"access": self.native_access}

    def bind_route(self, env: PluginEnv, index: CredentialIndex) -> None:
        super().bind_route(env, index)
        if not self.config.bearer_token and not self.config.hide_credentials:
            self.native_access.bind_index(self.header, index.by_value)

    def authenticate(self, ctx: Context) -> tuple[ConsumerEntry | None, str]:
        config = self.config
        key = ctx.header(self.header)
        from_header = key is not None
        if key is None and ctx.query_string:
            key = ctx.args.get(config.query)
        if key is None:
            return None, "Missing API key in request"
        if config.bearer_token and from_header:
            scheme, _, key = key.partition(" ")
            if scheme.lower() != "bearer":
                return None, "Invalid Bearer token format"
            key = key.strip()
        assert self.index is not None
        entry = self.index.by_value.get(key)
        if entry is None:
            return None, "Invalid API key in request"
        if config.hide_credentials:
            if from_header:
                ctx.remove_upstream_header(self.header)
            else:
                hide_query_arg(ctx, config.query)
        return entry, ""
