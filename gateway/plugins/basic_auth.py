"""``basic-auth``: HTTP Basic authentication (RFC 7617) against consumers' usernames and
passwords (APISIX's plugin, names and defaults).

On a consumer: ``{username, password}``. On a route or global rule: ``hide_credentials``,
``realm`` (default ``basic``) and ``anonymous_consumer``. Every 401 carries
``WWW-Authenticate: Basic realm="basic"``.

Differs from APISIX: the password is everything after the first colon (RFC 7617; APISIX cuts it
at a second colon and strips whitespace from both parts), the auth scheme is matched
case-insensitively, passwords are compared in constant time, and two consumers with the same
username are a config error.
"""
from __future__ import annotations

import binascii
import hmac
from typing import TYPE_CHECKING, Annotated, Any

import msgspec

from gateway.plugins import Context
from gateway.plugins._auth import AuthPlugin
from gateway.plugins.base import PluginConfig

if TYPE_CHECKING:
    from gateway.plugins.consumers import ConsumerEntry

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]

# Compared against when the username is unknown, so that a wrong username costs the same time
# as a wrong password.
_NO_PASSWORD = b"\x00" * 32


class BasicAuthConfig(PluginConfig):
    # route / global rule
    hide_credentials: bool = False
    realm: str = "basic"
    anonymous_consumer: str | None = None
    # consumer
    username: NonEmpty | msgspec.UnsetType = msgspec.UNSET
    password: NonEmpty | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if isinstance(self.username, str) and ":" in self.username:
            raise ValueError("username: must not contain ':' (RFC 7617) - at `$.username`")


class BasicAuth(AuthPlugin):
    name = "basic-auth"
    priority = 2520
    Config = BasicAuthConfig
    CREDENTIAL_FIELDS = ("username", "password")
    LOOKUP_FIELD = "username"
    CHALLENGE_SCHEME = "Basic"
    config: BasicAuthConfig

    def __init__(self, config: BasicAuthConfig) -> None:
        super().__init__(config)
        self.password = config.password.encode() if isinstance(config.password, str) else b""

    def bind_consumer(self, owner: ConsumerEntry, index: Any) -> None:
        super().bind_consumer(owner, index)
        if not self.password:
            raise ValueError("a consumer's basic-auth needs 'password'")

    def authenticate(self, ctx: Context) -> tuple[ConsumerEntry | None, str]:
        header = ctx.header("authorization")
        if header is None:
            return None, "Missing authorization in request"
        scheme, _, encoded = header.strip().partition(" ")
        if scheme.lower() != "basic":
            return None, "Invalid authorization in request"
        try:
            decoded = binascii.a2b_base64(encoded.strip(), strict_mode=True)
        except (binascii.Error, ValueError):
            return None, "Invalid authorization in request"
        username_bytes, colon, password = decoded.partition(b":")
        if not colon:
            return None, "Invalid authorization in request"
        try:
            username = username_bytes.decode()
        except UnicodeDecodeError:
            username = username_bytes.decode("latin-1")
        assert self.index is not None
        entry = self.index.by_value.get(username)
        expected = self.credential_of(entry).password if entry is not None else _NO_PASSWORD
        if not hmac.compare_digest(password, expected) or entry is None:
            return None, "Invalid user authorization"
        if self.config.hide_credentials:
            ctx.remove_upstream_header("authorization")
        return entry, ""
