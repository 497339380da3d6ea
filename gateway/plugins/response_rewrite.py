"""``response-rewrite``: changes the response the client gets — ``status_code``, ``headers``
(``{add: ["Name: value"], set: {...}, remove: [...]}``, run in that order, or APISIX's older flat
map where each entry is set and an empty value removes the header), and the body: ``body``
(``body_base64`` to decode it from the config) or ``filters`` (regex substitutions over the
whole body, ``scope`` once or global). ``vars`` limits all of it to the responses that match
(request variables, ``status``, ``sent_http_<header>``). Header values may hold ``$var``s.

Status and headers change in the header phase, for proxied and gateway-generated responses
alike. A new body replaces the upstream's as it streams (nothing of it is sent); ``filters``
hold the body until it ends, then send it substituted (a gzip body is decompressed first, as
APISIX does). The core then frames the body chunked (close-delimited for HTTP/1.0), so no stale
Content-Length is sent; ETag and Content-MD5 are dropped with the old body.

Differences from APISIX: the body of a response the gateway itself generates (an auth plugin's
401, a 502) and of an upstream response without a body (204, 304, Content-Length: 0, HEAD) is
not replaced — the core passes only upstream bodies through body filters. Regexes are Python's
``re`` dialect; filter ``options`` understand i, m, s, x (j and o are accepted and ignored).
"""
from __future__ import annotations

import base64
import binascii
import re
import zlib
from typing import Annotated, Any, Literal

import msgspec

from gateway.plugins import Context
from gateway.plugins._headers import check_header_name, check_header_value
from gateway.plugins.base import Plugin, PluginConfig
from gateway.requestvars import Predicate, Template, compile_template, compile_vars

_ACTIONS = {"add", "set", "remove"}
_REGEX_OPTIONS = {"i": re.IGNORECASE, "m": re.MULTILINE, "s": re.DOTALL, "x": re.VERBOSE,
                  "j": 0, "o": 0, "u": 0, "D": 0}


class Filter(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    regex: Annotated[str, msgspec.Meta(min_length=1)]
    scope: Literal["once", "global"] = "once"
    replace: str
    options: str = "jo"

    def compiled(self) -> re.Pattern[str]:
        flags = 0
        for option in self.options:
            if option not in _REGEX_OPTIONS:
                raise ValueError(f"filters: unknown regex option {option!r}")
            flags |= _REGEX_OPTIONS[option]
        try:
            return re.compile(self.regex, flags)
        except re.error as exc:
            raise ValueError(f"filters: invalid regex {self.regex!r}: {exc}") from None

    def replacement(self) -> str:
        """``replace`` (nginx's ``$1``/``${1}`` groups) as a Python ``re.sub`` template."""
        template = compile_template(self.replace, captures=True, variables=False)
        out = []
        for piece in template.pieces:
            if isinstance(piece, str):
                out.append(piece.replace("\\", "\\\\"))
            else:
                assert isinstance(piece, int)
                if piece > self.compiled().groups:
                    raise ValueError(f"filters: replace {self.replace!r} names group {piece}; "
                                     f"the regex has {self.compiled().groups}")
                out.append(f"\\g<{piece}>")
        return "".join(out)

    def __post_init__(self) -> None:
        self.replacement()


class ResponseRewriteConfig(PluginConfig):
    status_code: Annotated[int, msgspec.Meta(ge=200, le=598)] | None = None
    body: str | None = None
    body_base64: bool = False
    headers: dict[str, Any] | None = None
    vars: list[Any] | None = None
    filters: Annotated[list[Filter], msgspec.Meta(min_length=1)] | None = None

    def __post_init__(self) -> None:
        if self.status_code in (204, 304):
            raise ValueError(f"status_code {self.status_code} cannot be set: a response that "
                             "had a body would keep it under a status that must have none")
        if self.body is not None and self.filters is not None:
            raise ValueError("body and filters cannot be used together")
        if self.body_base64:
            if self.body is None:
                raise ValueError("body_base64 needs a body")
            decoded_body(self)
        compile_vars(self.vars)
        response_header_actions(self.headers)


def decoded_body(config: ResponseRewriteConfig) -> bytes | None:
    if config.body is None:
        return None
    if not config.body_base64:
        return config.body.encode()
    try:
        return base64.b64decode(config.body, validate=True)
    except (binascii.Error, ValueError):
        raise ValueError("body is not valid base64 (body_base64 is true)") from None


def response_header_actions(headers: dict[str, Any] | None
                            ) -> tuple[list[tuple[str, str]], list[str], list[tuple[str, str]]]:
    """(add, remove, set) from either header shape; ValueError for malformed ones."""
    if not headers:
        return [], [], []
    add: list[tuple[str, str]] = []
    set_: list[tuple[str, str]] = []
    if _ACTIONS & headers.keys():
        unknown = headers.keys() - _ACTIONS
        if unknown:
            raise ValueError(f"headers: unknown action(s) {sorted(unknown)}; use add, set, "
                             "remove (or a flat map of headers to set)")
        raw_add = headers.get("add") or []
        if not isinstance(raw_add, list):
            raise ValueError('headers.add is a list of "Name: value" strings')
        for line in raw_add:
            name, sep, value = str(line).partition(":")
            if not sep:
                raise ValueError(f'headers.add: {line!r} is not "Name: value"')
            add.append((name.strip(), value.strip()))
        raw_set = headers.get("set") or {}
        if not isinstance(raw_set, dict):
            raise ValueError("headers.set maps header names to values")
        set_ = [(str(k), str(v)) for k, v in raw_set.items()]
        remove = headers.get("remove") or []
        if not isinstance(remove, list):
            raise ValueError("headers.remove is a list of header names")
        remove = [str(n) for n in remove]
    else:
        set_ = [(str(k), str(v)) for k, v in headers.items() if v != ""]
        remove = [str(k) for k, v in headers.items() if v == ""]
    for kind, pairs in (("add", add), ("set", set_)):
        for name, value in pairs:
            check_header_name(name, f"headers.{kind}")
            check_header_value(value, f"headers.{kind}.{name}")
    for name in remove:
        check_header_name(name, "headers.remove")
    return add, remove, set_


class ResponseRewrite(Plugin):
    name = "response-rewrite"
    priority = 899
    Config = ResponseRewriteConfig

    def __init__(self, config: ResponseRewriteConfig) -> None:
        super().__init__(config)
        self.matcher: Predicate | None = compile_vars(config.vars)
        add, remove, set_ = response_header_actions(config.headers)
        self.add: list[tuple[str, Template]] = [(n, compile_template(v)) for n, v in add]
        self.remove = remove
        self.set: list[tuple[str, Template]] = [(n, compile_template(v)) for n, v in set_]
        self.status = config.status_code
        self.body = decoded_body(config)
        self.filters = [(f.compiled(), f.replacement(),
                         0 if f.scope == "global" else 1) for f in config.filters or ()]
        self.changes_body = self.body is not None or bool(self.filters)
        # per-request state of this instance (a route may be configured more than once through
        # a consumer): the body to send or the buffer of the filtered one
        self.state_key = f"response-rewrite:{id(self)}"

    def phases(self) -> dict[str, str]:  # type: ignore[override]
        """body_filter only when the body changes: without it the response streams untouched."""
        phases = super().phases()
        if not self.changes_body:
            phases.pop("body_filter", None)
        return phases

    def header_filter(self, ctx: Context) -> None:
        headers = ctx.response_headers
        if headers is None or (self.matcher is not None and not self.matcher(ctx)):
            return  # (headers are None only outside header_filter)
        if self.status is not None:
            if ctx.status in (204, 304) and not any(k.lower() == "content-length"
                                                    for k, _ in headers):
                # a 204/304 comes without framing; the new status needs one to end the body
                headers.append(["Content-Length", "0"])
            ctx.status = self.status
        for name, value in self.add:
            headers.append([name, value.render(ctx)])
        for name in self.remove:
            ctx.remove_response_header(name)
        for name, value in self.set:
            ctx.set_response_header(name, value.render(ctx))
        if self.changes_body and not any(k.lower() == "content-length" for k, _ in headers):
            # (the core drops Content-Length when it passes the body through body filters, so
            # one still here means a response without a body to replace: HEAD, 204, length 0)
            ctx.remove_response_header("ETag")
            ctx.remove_response_header("Content-MD5")
            encoding = next((v.strip().lower() for k, v in headers
                             if k.lower() == "content-encoding"), "")
            if self.body is not None:
                ctx.remove_response_header("Content-Encoding")
                ctx.state[self.state_key] = True
            elif encoding in ("", "identity", "gzip"):
                if encoding == "gzip":
                    ctx.remove_response_header("Content-Encoding")
                ctx.state[self.state_key] = _Buffer(encoding == "gzip")
            # any other coding (br, deflate) is passed through unfiltered: it cannot be read

    def body_filter(self, ctx: Context, chunk: bytes, last: bool) -> bytes | None:
        state = ctx.state.get(self.state_key)
        if state is None:
            return None
        if state is True:
            return self.body if last else b""
        state.parts.append(chunk)
        if not last:
            return b""
        body = b"".join(state.parts)
        state.parts.clear()
        if state.gzip:
            try:
                body = zlib.decompress(body, 47)  # 32 + 15: a gzip (or zlib) wrapper
            except zlib.error:
                return body  # not what it claimed: sent as received
        text = body.decode("utf-8", "surrogateescape")
        for pattern, replacement, count in self.filters:
            text = pattern.sub(replacement, text, count=count)
        return text.encode("utf-8", "surrogateescape")


class _Buffer:
    __slots__ = ("parts", "gzip")

    def __init__(self, gzip: bool) -> None:
        self.parts: list[bytes] = []
        self.gzip = gzip
