"""``jwt-auth``: a consumer is identified by a signed JSON Web Token (APISIX's plugin, names and
defaults).

On a consumer: ``key`` (the value of the token's key claim), ``algorithm`` (HS256, HS384, HS512,
RS256, RS384, RS512, ES256, ES384, ES512, PS256, PS384, PS512, EdDSA; default HS256), ``secret``
(HS*) with ``base64_secret``, ``public_key`` (PEM, the other algorithms), ``exp`` (lifetime of
tokens the consumer is issued; kept for APISIX compatibility, unused when verifying) and
``lifetime_grace_period`` (seconds of clock skew allowed on ``exp``/``nbf``).

On a route or global rule: where the token is read, in this order: ``header`` (default
``authorization``, with or without ``Bearer``), ``query`` (default ``jwt``), ``cookie`` (default
``jwt``); ``hide_credentials`` removes it before proxying; ``key_claim_name`` (default ``key``),
``claims_to_verify`` (default ``[exp, nbf]``), ``store_in_ctx`` (the payload goes to
``ctx.state["jwt_auth_payload"]``), ``realm`` (default ``jwt``) and ``anonymous_consumer``.

The token's payload is read unverified only to find the consumer; its signature is then checked
with that consumer's key and algorithm (the token's ``alg`` must be the consumer's: no algorithm
confusion), then ``exp``/``nbf``. A verified token is remembered per config version, so a client
reusing its token costs a dict lookup and the time checks, not a signature check.

Differs from APISIX: an HS* consumer must have a ``secret`` (APISIX generates a random one for
its token-signing endpoint, which this gateway does not have); ``public_key`` must be a public
key and is loaded when the config loads; two consumers with the same key are a config error.
Secrets and tokens are never logged.
"""
from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from typing import TYPE_CHECKING, Annotated, Any, Literal

import msgspec
from jwt.algorithms import get_default_algorithms
from jwt.exceptions import InvalidKeyError

from gateway.plugins import Context
from gateway.plugins._auth import AuthPlugin, field_error, hide_query_arg, is_set
from gateway.plugins.base import PluginConfig

if TYPE_CHECKING:
    from gateway.plugins.consumers import ConsumerEntry

log = logging.getLogger("gateway.plugins.jwt_auth")

NonEmpty = Annotated[str, msgspec.Meta(min_length=1)]
Algorithm = Literal["HS256", "HS384", "HS512", "RS256", "RS384", "RS512", "ES256", "ES384",
                    "ES512", "PS256", "PS384", "PS512", "EdDSA"]
_ALGORITHMS = get_default_algorithms()
# Verified tokens remembered per route plugin instance; past this many the memory starts over.
_VERIFIED_CACHE_SIZE = 4096


class JwtAuthConfig(PluginConfig):
    # route / global rule
    header: NonEmpty = "authorization"
    query: NonEmpty = "jwt"
    cookie: NonEmpty = "jwt"
    hide_credentials: bool = False
    key_claim_name: NonEmpty = "key"
    claims_to_verify: list[Literal["exp", "nbf"]] = msgspec.field(
        default_factory=lambda: ["exp", "nbf"])
    store_in_ctx: bool = False
    realm: str = "jwt"
    anonymous_consumer: str | None = None
    # consumer
    key: NonEmpty | msgspec.UnsetType = msgspec.UNSET
    secret: NonEmpty | msgspec.UnsetType = msgspec.UNSET
    public_key: NonEmpty | msgspec.UnsetType = msgspec.UNSET
    algorithm: Algorithm | msgspec.UnsetType = msgspec.UNSET
    exp: Annotated[int, msgspec.Meta(ge=1)] | msgspec.UnsetType = msgspec.UNSET
    base64_secret: bool | msgspec.UnsetType = msgspec.UNSET
    lifetime_grace_period: Annotated[int, msgspec.Meta(ge=0)] | msgspec.UnsetType = msgspec.UNSET

    def __post_init__(self) -> None:
        if len(set(self.claims_to_verify)) != len(self.claims_to_verify):
            raise field_error("claims_to_verify", "items must be unique")
        if is_set(self.key):
            verification_key(self)  # refuses a missing or unusable secret / public key

    @property
    def algorithm_name(self) -> str:
        return self.algorithm if isinstance(self.algorithm, str) else "HS256"


def verification_key(config: JwtAuthConfig) -> Any:
    """The key a consumer's tokens are verified with, prepared for PyJWT's algorithm; raises
    ValueError at the field's path when the config cannot verify anything."""
    name = config.algorithm_name
    algorithm = _ALGORITHMS[name]
    if name.startswith("HS"):
        if is_set(config.public_key):
            raise field_error("public_key", f"not used with {name}: HS algorithms use 'secret'")
        if not isinstance(config.secret, str):
            raise field_error("secret", f"required when algorithm is {name}")
        secret: bytes = config.secret.encode()
        if config.base64_secret is True:
            try:
                secret = base64.b64decode(config.secret, validate=True)
            except (binascii.Error, ValueError):
                raise field_error("secret", "base64_secret is true but the secret is not "
                                            "base64") from None
        try:
            return algorithm.prepare_key(secret)
        except InvalidKeyError as exc:
            raise field_error("secret", str(exc)) from None
    if is_set(config.secret) or is_set(config.base64_secret):
        raise field_error("secret", f"not used with {name}: it verifies with 'public_key'")
    if not isinstance(config.public_key, str):
        raise field_error("public_key", f"required when algorithm is {name}")
    try:
        key = algorithm.prepare_key(config.public_key)
    except (InvalidKeyError, ValueError, TypeError) as exc:
        raise field_error("public_key", f"not a usable {name} public key (PEM): {exc}") from None
    if hasattr(key, "private_bytes"):
        raise field_error("public_key", "is a private key: give the public key only")
    return key


def _b64url(segment: str) -> bytes:
    return binascii.a2b_base64((segment + "=" * (-len(segment) % 4)).replace("-", "+")
                               .replace("_", "/"), strict_mode=True)


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


class _Verifier:
    """A consumer's verification settings, prepared once per config version."""

    __slots__ = ("algorithm_name", "algorithm", "key", "grace")

    def __init__(self, config: JwtAuthConfig) -> None:
        self.algorithm_name = config.algorithm_name
        self.algorithm = _ALGORITHMS[self.algorithm_name]
        self.key = verification_key(config)
        self.grace = config.lifetime_grace_period if isinstance(
            config.lifetime_grace_period, int) else 0


class JwtAuth(AuthPlugin):
    name = "jwt-auth"
    priority = 2510
    Config = JwtAuthConfig
    CREDENTIAL_FIELDS = ("key", "secret", "public_key", "algorithm", "exp", "base64_secret",
                         "lifetime_grace_period")
    LOOKUP_FIELD = "key"
    CHALLENGE_SCHEME = "Bearer"
    config: JwtAuthConfig

    def __init__(self, config: JwtAuthConfig) -> None:
        super().__init__(config)
        self.verifier = _Verifier(config) if is_set(config.key) else None
        self.header = config.header.lower()
        self.check_exp = "exp" in config.claims_to_verify
        self.check_nbf = "nbf" in config.claims_to_verify
        #: token -> (consumer, payload) for tokens whose signature verified
        self.verified: dict[str, tuple[ConsumerEntry, dict[str, Any]]] = {}

    def authenticate(self, ctx: Context) -> tuple[ConsumerEntry | None, str]:
        token = self.fetch_token(ctx)
        if not token:
            return None, "Missing JWT token in request"
        known = self.verified.get(token)
        if known is not None:
            entry, payload = known
        else:
            found = self.verify_signature(token)
            if isinstance(found, str):
                return None, found
            entry, payload = found
        verifier = self.credential_of(entry).verifier
        assert verifier is not None  # a consumer's jwt-auth always has a key (bind_consumer)
        problem = self.claims_problem(payload, verifier.grace)
        if problem:
            log.info("jwt-auth: token of consumer '%s' refused: %s", entry.username, problem)
            return None, "failed to verify jwt"
        if known is None:
            if len(self.verified) >= _VERIFIED_CACHE_SIZE:
                self.verified.clear()
            self.verified[token] = (entry, payload)
        if self.config.store_in_ctx:
            ctx.state["jwt_auth_payload"] = payload
        return entry, ""

    def fetch_token(self, ctx: Context) -> str | None:
        config = self.config
        value = ctx.header(self.header)
        if value is not None:
            if config.hide_credentials:
                ctx.remove_upstream_header(self.header)
            value = value.strip()
            if value[:7].lower() == "bearer ":
                value = value[7:].strip()
            return value
        if ctx.query_string:
            value = ctx.args.get(config.query)
            if value is not None:
                if config.hide_credentials:
                    hide_query_arg(ctx, config.query)
                return value
        value = ctx.cookies.get(config.cookie)
        if value is not None and config.hide_credentials:
            self.hide_cookie(ctx)
        return value

    def hide_cookie(self, ctx: Context) -> None:
        # split like ctx.cookies does: several Cookie headers arrive joined by ", "
        parts = (ctx.header("cookie") or "").replace(",", ";").split(";")
        kept = [part.strip() for part in parts
                if part.strip() and part.strip().partition("=")[0] != self.config.cookie]
        if kept:
            ctx.set_upstream_header("Cookie", "; ".join(kept))
        else:
            ctx.remove_upstream_header("Cookie")

    def verify_signature(self, token: str) -> tuple[ConsumerEntry, dict[str, Any]] | str:
        """The consumer and payload of a token whose signature verifies, or the 401 message."""
        parts = token.split(".")
        if len(parts) != 3:
            return "JWT token invalid"
        try:
            header = json.loads(_b64url(parts[0]))
            payload = json.loads(_b64url(parts[1]))
            signature = _b64url(parts[2])
        except (binascii.Error, ValueError, UnicodeDecodeError):
            return "JWT token invalid"
        if not isinstance(header, dict) or not isinstance(payload, dict):
            return "JWT token invalid"
        user_key = payload.get(self.config.key_claim_name)
        if user_key is None:
            return "missing user key in JWT token"
        assert self.index is not None
        entry = self.index.by_value.get(user_key) if isinstance(user_key, str) else None
        if entry is None:
            return "Invalid user key in JWT token"
        verifier = self.credential_of(entry).verifier
        assert verifier is not None  # a consumer's jwt-auth always has a key (bind_consumer)
        if header.get("alg") != verifier.algorithm_name:
            log.info("jwt-auth: token of consumer '%s' refused: algorithm %r, expected %s",
                     entry.username, header.get("alg"), verifier.algorithm_name)
            return "failed to verify jwt"
        signing_input = token[:len(parts[0]) + 1 + len(parts[1])].encode("ascii", "replace")
        try:
            valid = verifier.algorithm.verify(signing_input, verifier.key, signature)
        except Exception:  # a malformed signature for the key type (e.g. wrong EC size)
            valid = False
        if not valid:
            log.info("jwt-auth: token of consumer '%s' refused: signature mismatch",
                     entry.username)
            return "failed to verify jwt"
        return entry, payload

    def claims_problem(self, payload: dict[str, Any], grace: int) -> str:
        now = time.time()
        if self.check_exp and "exp" in payload:
            exp = payload["exp"]
            if not _numeric(exp):
                return "exp is not a number"
            if exp <= now - grace:
                return "token expired"
        if self.check_nbf and "nbf" in payload:
            nbf = payload["nbf"]
            if not _numeric(nbf):
                return "nbf is not a number"
            if nbf > now + grace:
                return "token not valid yet (nbf)"
        return ""
