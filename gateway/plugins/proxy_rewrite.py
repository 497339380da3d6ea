"""``proxy-rewrite``: changes what is sent upstream — the path (``uri`` with ``$var``s, or
``regex_uri`` pattern/replacement pairs), the Host (``host``), the method (``method``) and
headers (``headers: {add, set, remove}``, or APISIX's older flat map where each entry is set and
an empty value removes the header). Keys and order follow APISIX: ``uri`` wins over
``regex_uri``; header actions run add, then remove, then set; values may hold ``$var``s and,
with ``regex_uri``, the groups ``$1``..``$9`` of the pattern that matched.

The original query string is kept: appended after ``?`` to a new path, or after ``&`` when the
new ``uri`` has its own query (APISIX's rule). ``use_real_request_uri_unsafe`` forwards the
request target exactly as the client sent it, without normalisation.

Differences from APISIX: regexes are Python's ``re`` dialect; ``scheme`` is not offered (the
gateway speaks HTTP to upstreams).
"""
from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import quote

from gateway.plugins import Context
from gateway.plugins._headers import check_header_name, check_header_value
from gateway.plugins.base import Plugin, PluginConfig
from gateway.requestvars import Template, compile_template

Method = Literal["GET", "POST", "PUT", "HEAD", "DELETE", "OPTIONS", "MKCOL", "COPY", "MOVE",
                 "PROPFIND", "LOCK", "UNLOCK", "PATCH", "TRACE"]

#: characters left as they are when the new path is made safe to send (RFC 3986 pchar and "/",
#: plus "%" so an already escaped path is not escaped twice)
_PATH_SAFE = "/:@!$&'()*+,;=-._~%"
_ACTIONS = {"add", "set", "remove"}


class ProxyRewriteConfig(PluginConfig):
    uri: str | None = None
    method: Method | None = None
    regex_uri: list[str] | None = None
    host: str | None = None
    headers: dict[str, Any] | None = None
    use_real_request_uri_unsafe: bool = False

    def __post_init__(self) -> None:
        if self.uri is not None:
            if not self.uri.startswith("/") and not self.uri.startswith("$"):
                raise ValueError("uri must start with '/'")
            compile_template(self.uri)
        if self.regex_uri is not None:
            if len(self.regex_uri) < 2 or len(self.regex_uri) % 2:
                raise ValueError("regex_uri must hold pattern, replacement pairs (an even number "
                                 "of strings)")
            for i in range(0, len(self.regex_uri), 2):
                try:
                    re.compile(self.regex_uri[i])
                except re.error as exc:
                    raise ValueError(f"regex_uri[{i}]: invalid regex: {exc}") from None
                _replacement(self.regex_uri[i + 1])
        if self.host is not None:
            check_header_value(self.host, "host")
        header_actions(self.headers)


def header_actions(headers: dict[str, Any] | None) -> tuple[dict[str, str], list[str],
                                                            dict[str, str]]:
    """(add, remove, set) from either header shape; ValueError for malformed ones."""
    if not headers:
        return {}, [], {}
    if _ACTIONS & headers.keys():
        unknown = headers.keys() - _ACTIONS
        if unknown:
            raise ValueError(f"headers: unknown action(s) {sorted(unknown)}; use add, set, "
                             "remove (or a flat map of headers to set)")
        add, set_, remove = headers.get("add") or {}, headers.get("set") or {}, \
            headers.get("remove") or []
        if not isinstance(add, dict) or not isinstance(set_, dict):
            raise ValueError("headers.add and headers.set map header names to values")
        if not isinstance(remove, list):
            raise ValueError("headers.remove is a list of header names")
    else:
        add = {}
        set_ = {k: v for k, v in headers.items() if v != ""}
        remove = [k for k, v in headers.items() if v == ""]
    out: list[Any] = []
    for kind, mapping in (("add", add), ("set", set_)):
        checked: dict[str, str] = {}
        for name, value in mapping.items():
            if not isinstance(value, (str, int, float)) or isinstance(value, bool):
                raise ValueError(f"headers.{kind}.{name}: value must be a string or number")
            check_header_name(str(name), f"headers.{kind}")
            check_header_value(str(value), f"headers.{kind}.{name}")
            checked[str(name)] = str(value)
        out.append(checked)
    for name in remove:
        check_header_name(str(name), "headers.remove")
    return out[0], [str(n) for n in remove], out[1]


def _replacement(text: str) -> Template:
    """A ``regex_uri`` replacement: nginx's regex substitution, where only the groups ``$1`` /
    ``${1}`` (``$0`` the whole match) are references."""
    return compile_template(text, captures=True, variables=False)


class ProxyRewrite(Plugin):
    name = "proxy-rewrite"
    priority = 1008
    Config = ProxyRewriteConfig

    def __init__(self, config: ProxyRewriteConfig) -> None:
        super().__init__(config)
        self.uri: Template | None = compile_template(config.uri) \
            if config.uri is not None else None
        self.regexes: list[tuple[re.Pattern[str], Template]] = []
        captures = False
        if config.uri is None and config.regex_uri:
            pairs = config.regex_uri
            self.regexes = [(re.compile(pairs[i]), _replacement(pairs[i + 1]))
                            for i in range(0, len(pairs), 2)]
            captures = True
        add, remove, set_ = header_actions(config.headers)
        host = config.host
        # "Host" among the headers is the upstream Host, which the core sets on its own
        for mapping in (set_, add):
            for name in list(mapping):
                if name.lower() == "host":
                    host = mapping.pop(name)
        self.host: Template | None = compile_template(host) if host is not None else None
        self.add = [(name.encode("latin-1"), compile_template(value, captures=captures))
                    for name, value in add.items()]
        self.remove = [name.encode("latin-1").lower() for name in remove]
        self.set = [(name.encode("latin-1"), compile_template(value, captures=captures))
                    for name, value in set_.items()]
        self.method = config.method
        self.unsafe = config.use_real_request_uri_unsafe
        self.rewrites_path = self.unsafe or self.uri is not None or bool(self.regexes)

    def rewrite(self, ctx: Context) -> None:
        groups: tuple[str | None, ...] = ()
        if self.rewrites_path:
            groups = self._rewrite_path(ctx)
        if self.method is not None:
            ctx.set_upstream_method(self.method)
        if self.host is not None:
            ctx.set_upstream_host(self.host.render(ctx, groups))
        for name, value in self.add:
            ctx.add_upstream_header(name, value.render(ctx, groups))
        for lname in self.remove:
            ctx.remove_upstream_header(lname)  # earlier plugins' and our own added lines too
        for name, value in self.set:
            ctx.set_upstream_header(name, value.render(ctx, groups))

    def _rewrite_path(self, ctx: Context) -> tuple[str | None, ...]:
        if self.unsafe:
            ctx.set_upstream_uri(ctx.raw_target)
            return ()
        groups: tuple[str | None, ...] = ()
        if self.uri is not None:
            path = self.uri.render(ctx)
        else:
            path = ctx.path
            for pattern, replacement in self.regexes:
                match = pattern.search(path)
                if match is None:
                    continue
                groups = (match.group(0),) + match.groups()
                new = replacement.render(None, groups)
                path = path[:match.start()] + new + path[match.end():]
                break
            else:
                return ()
        path, sep, own_query = path.partition("?")
        target = quote(path, safe=_PATH_SAFE) + sep + own_query
        query = ctx.query_string
        if query:
            target += ("&" if sep else "?") + query
        ctx.set_upstream_uri(target)
        return groups
