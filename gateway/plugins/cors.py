"""``cors``: Cross-Origin Resource Sharing with APISIX's keys and defaults (``allow_origins``
"*", ``allow_methods`` "*", ``allow_headers`` "*", ``expose_headers`` unset, ``max_age`` 5,
``allow_credential`` false, ``allow_origins_by_regex``, ``allow_origins_by_metadata``,
``timing_allow_origins``, ``timing_allow_origins_by_regex``).

Plugin metadata (``plugin_metadata: {cors: {allow_origins: {NAME: "origin,origin"}}}``, in
the file or at ``/apisix/admin/plugin_metadata/cors``) names lists of origins once for every
route; ``allow_origins_by_metadata: [NAME, ...]`` allows the origins of those lists. As in
APISIX, they are tried first, then ``allow_origins_by_regex``, then ``allow_origins``; a name
missing from the metadata allows nothing. A write of the metadata applies to every route at
once (every worker compiles the new config version).

A preflight (``OPTIONS`` with ``Origin`` and ``Access-Control-Request-Method``) is answered 200
by the gateway in the rewrite phase, before authentication, and never reaches the upstream.
Other requests are proxied and their response — or a response the gateway generates, such as an
auth plugin's 401 — gets the CORS headers when the ``Origin`` is allowed. A listed origin is
echoed with ``Vary: Origin``; "*" is sent as "*". ``**`` forces "allow everything" even with
credentials (the request's origin / method list / requested headers are echoed), as in APISIX;
``allow_credential: true`` with a "*" anywhere is a config error (browsers refuse it).

Differences from APISIX: only a real preflight is answered by the gateway (APISIX answers every
OPTIONS); a single configured origin is sent only to that origin (APISIX sends it to any
origin and leaves the refusal to the browser); with ``allow_origins_by_regex`` the unused
``allow_origins`` may keep its "*" under ``allow_credential``; with regexes configured, an
origin they do not match is refused rather than tried against ``allow_origins``.
"""
from __future__ import annotations

import re
from typing import Annotated

import msgspec

from gateway.plugins import Context, Response
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv

ALL_METHODS = "GET,POST,PUT,DELETE,PATCH,HEAD,OPTIONS,CONNECT,TRACE"


def _split(value: str) -> list[str]:
    return [item.strip() for item in value.split(",") if item.strip()]


def _regexes(patterns: list[str] | None, key: str) -> list[re.Pattern[str]]:
    out = []
    for pattern in patterns or ():
        try:
            out.append(re.compile(pattern))
        except re.error as exc:
            raise ValueError(f"{key}: invalid regex {pattern!r}: {exc}") from None
    return out


def _check_origins(key: str, value: str) -> None:
    for origin in _split(value):
        if not re.fullmatch(r"[A-Za-z][A-Za-z0-9+.-]*://[^/\s,]+|null", origin):
            raise ValueError(f"{key}: {origin!r} is not an origin (scheme://host[:port])")


class CorsMetadata(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """cors' plugin metadata: named lists of origins ("scheme://host[:port]", comma-separated)
    that routes allow with ``allow_origins_by_metadata``."""
    allow_origins: dict[Annotated[str, msgspec.Meta(min_length=1)],
                        Annotated[str, msgspec.Meta(min_length=1)]]

    def __post_init__(self) -> None:
        for name, value in self.allow_origins.items():
            _check_origins(f"allow_origins.{name}", value)


class CorsConfig(PluginConfig):
    allow_origins: str = "*"
    allow_methods: str = "*"
    allow_headers: str = "*"
    expose_headers: str | None = None
    max_age: int = 5
    allow_credential: bool = False
    allow_origins_by_regex: list[str] | None = None
    allow_origins_by_metadata: list[Annotated[str, msgspec.Meta(min_length=1)]] | None = None
    timing_allow_origins: str | None = None
    timing_allow_origins_by_regex: list[str] | None = None

    def __post_init__(self) -> None:
        if self.allow_credential:
            # with regexes, allow_origins is not used: its default "*" is no conflict
            keys = ("allow_methods", "allow_headers", "expose_headers") \
                if self.allow_origins_by_regex else \
                ("allow_origins", "allow_methods", "allow_headers", "expose_headers")
            starred = [key for key in keys if getattr(self, key) == "*"]
            if starred:
                raise ValueError(f"'*' cannot be used in {', '.join(starred)} when "
                                 "allow_credential is true (browsers refuse it); list the "
                                 "values, or use '**' to allow everything knowingly")
        for key in ("allow_origins", "timing_allow_origins"):
            value = getattr(self, key)
            if value is not None and value not in ("*", "**"):
                _check_origins(key, value)
        for key in ("allow_methods", "allow_headers", "expose_headers"):
            value = getattr(self, key)
            if value is not None and ("\r" in value or "\n" in value):
                raise ValueError(f"{key}: cannot contain CR or LF")
        _regexes(self.allow_origins_by_regex, "allow_origins_by_regex")
        _regexes(self.timing_allow_origins_by_regex, "timing_allow_origins_by_regex")


class Cors(Plugin):
    name = "cors"
    priority = 4000
    Config = CorsConfig
    Metadata = CorsMetadata
    config: CorsConfig

    def __init__(self, config: CorsConfig) -> None:
        super().__init__(config)
        self.any_origin = config.allow_origins == "*"
        self.echo_any_origin = config.allow_origins == "**"
        self.origins = frozenset(_split(config.allow_origins)) \
            if not (self.any_origin or self.echo_any_origin) else frozenset()
        self.origin_regexes = _regexes(config.allow_origins_by_regex, "allow_origins_by_regex")
        self.timing_any = config.timing_allow_origins == "*"
        self.timing_origins = frozenset(_split(config.timing_allow_origins or "")) \
            if not self.timing_any else frozenset()
        self.timing_regexes = _regexes(config.timing_allow_origins_by_regex,
                                       "timing_allow_origins_by_regex")
        self.echo_headers = config.allow_headers == "**"
        methods = ALL_METHODS if config.allow_methods == "**" else config.allow_methods
        # the headers that do not depend on the request, built once
        fixed = [("Access-Control-Allow-Methods", methods),
                 ("Access-Control-Max-Age", str(config.max_age))]
        if config.expose_headers is not None:
            fixed.append(("Access-Control-Expose-Headers", config.expose_headers))
        if not self.echo_headers:
            fixed.append(("Access-Control-Allow-Headers", config.allow_headers))
        if config.allow_credential:
            fixed.append(("Access-Control-Allow-Credentials", "true"))
        self.fixed = fixed
        self.preflight = Response(200, b"", [])
        self.metadata_origins: frozenset[str] = frozenset()

    def bind(self, env: PluginEnv) -> None:
        names = self.config.allow_origins_by_metadata
        metadata = env.plugin_metadata.get(self.name)
        if names and metadata is not None:
            self.metadata_origins = frozenset(
                origin for name in names
                for origin in _split(metadata.allow_origins.get(name, "")))

    def allowed_origin(self, origin: str | None) -> str | None:
        """The Access-Control-Allow-Origin to send for ``origin``; None: not allowed."""
        if origin and origin in self.metadata_origins:
            return origin
        if self.origin_regexes:
            # APISIX: with regexes configured, they alone decide
            if origin and any(r.search(origin) for r in self.origin_regexes):
                return origin
            return None
        if self.any_origin:
            return "*"
        if self.echo_any_origin:
            return origin or "*"
        if origin and origin in self.origins:
            return origin
        return None

    def rewrite(self, ctx: Context) -> Response | None:
        if ctx.method == "OPTIONS":
            headers = ctx.headers
            if "origin" in headers and "access-control-request-method" in headers:
                return self.preflight  # header_filter adds the CORS headers
        return None

    def header_filter(self, ctx: Context) -> None:
        origin = ctx.header("origin")
        allow = self.allowed_origin(origin)
        timing = self.timing_origin(origin)
        if allow is None and timing is None:
            return
        out: list[list[str]] = []
        if allow is not None:
            out.append(["Access-Control-Allow-Origin", allow])
            out.extend([name, value] for name, value in self.fixed)
            if self.echo_headers:
                requested = ctx.header("access-control-request-headers")
                if requested:
                    out.append(["Access-Control-Allow-Headers", requested])
        if timing is not None:
            out.append(["Timing-Allow-Origin", timing])
        # one pass: what we send replaces the upstream's own CORS headers of the same names
        replaced = {name.lower() for name, _ in out}
        headers = ctx.response_headers
        if headers is None:
            return  # (only outside header_filter)
        headers[:] = [h for h in headers if h[0].lower() not in replaced] + out
        if allow is not None and allow != "*":
            self._vary_origin(headers)

    def timing_origin(self, origin: str | None) -> str | None:
        if not origin:
            return None
        if self.timing_any:
            return "*"
        if origin in self.timing_origins or any(r.search(origin) for r in self.timing_regexes):
            return origin
        return None

    @staticmethod
    def _vary_origin(headers: list[list[str]]) -> None:
        for entry in headers:
            if entry[0].lower() == "vary":
                values = [v.strip().lower() for v in entry[1].split(",")]
                if "origin" not in values and "*" not in values:
                    entry[1] = f"{entry[1]}, Origin"
                return
        headers.append(["Vary", "Origin"])
