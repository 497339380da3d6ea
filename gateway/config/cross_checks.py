"""The checks a schema cannot express, on a decoded Config: references between resources,
duplicate ids, address and URI syntax, field combinations. All issues, not the first.

They run for every source of config: files, the Admin API and the etcd store.
"""

from __future__ import annotations

import ipaddress
import math
import re
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from gateway.requestvars.table import families, is_variable, variable_names

from .addresses import (
    is_hostname,
    is_ip,
    is_wildcard_host,
    listen_overlaps,
    parse_listen,
    parse_nameserver,
    sni_candidates,
)
from .health_checks import check_health_checks
from .issues import ConfigIssue, DocPath, issue_at
from .schema import GRPC_SCHEMES, HTTP_METHODS, Config, Consumer, GatewaySettings, GlobalRules, Route, Ssl, Upstream

__all__ = [
    "check_chash_key",
    "check_consumers",
    "check_gateway",
    "check_global_rules",
    "check_plugin_values",
    "check_route",
    "check_ssls",
    "check_upstream",
    "check_uri",
    "validate_config",
]

_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")  # APISIX's id syntax; ids appear in Admin API URLs
_BAD_ID = "1-64 characters of A-Z a-z 0-9 _ . -"
_USERNAME = re.compile(r"[A-Za-z0-9_\-]+\Z")
_PARAM = re.compile(r":[A-Za-z_][A-Za-z0-9_]*\Z")
_WILDCARD_SEG = re.compile(r"\*(?:[A-Za-z_][A-Za-z0-9_]*)?\Z")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+\Z")  # RFC 9110 token: header and cookie names
_PEM = re.compile(r"-----BEGIN [A-Z0-9 ]+-----[\s\S]+-----END [A-Z0-9 ]+-----")
_VAR_REF = re.compile(r"\$\{?([A-Za-z0-9_]+)")
#: Variables that have no value yet when the balancer chooses a node (response-side ones):
#: hashing on them would send every request to the node of the empty key.
_AFTER_BALANCING = frozenset({"status", "upstream_addr", "upstream_status",
                              "upstream_response_time", "bytes_sent", "request_time"})
_AFTER_BALANCING_FAMILIES = ("sent_http_", "upstream_http_")


def validate_config(config: Config, file: str = "<config>") -> list[ConfigIssue]:
    """Every cross-field and syntax check on a decoded config; all issues, not the first.

    Also for the Admin API and the etcd store, which build a Config
    without going through a file.
    """
    out = check_gateway(config.gateway, file)
    upstream_ids: dict[str, int] = {}
    for i, up in enumerate(config.upstreams):
        out.extend(check_upstream(up, ("upstreams", i), file, inline=False))
        if up.id is not None:
            if up.id in upstream_ids:
                message = f"duplicate upstream id {up.id!r} (first at upstreams[{upstream_ids[up.id]}])"
                out.append(issue_at(file, ("upstreams", i, "id"), message))
            else:
                upstream_ids[up.id] = i
    route_ids: dict[str, int] = {}
    for i, r in enumerate(config.routes):
        out.extend(check_route(r, ("routes", i), file, upstream_ids))
        named = config.upstreams[upstream_ids[r.upstream_id]] if r.upstream_id in upstream_ids else None
        if r.enable_websocket and named is not None and named.scheme in GRPC_SCHEMES:
            out.append(issue_at(file, ("routes", i, "enable_websocket"),
                                f"a WebSocket cannot be proxied to upstream {named.id!r} "
                                f"(scheme {named.scheme})"))
        if r.id in route_ids:
            message = f"duplicate route id {r.id!r} (first at routes[{route_ids[r.id]}])"
            out.append(issue_at(file, ("routes", i, "id"), message))
        else:
            route_ids[r.id] = i
    out.extend(check_consumers(config.consumers, file))
    out.extend(check_global_rules(config, file))
    out.extend(check_ssls(config.ssls, config.gateway.fallback_sni, file))
    for name, metadata in config.plugin_metadata.items():
        out.extend(check_plugin_values({name: metadata}, ("plugin_metadata",), file))
    return out


def check_global_rules(config: Config, file: str) -> list[ConfigIssue]:
    """Rule ids (valid, unique) and plugins: one rule per plugin, since the rules run as one set."""
    if isinstance(config.global_rules, GlobalRules):
        return check_plugin_values(config.global_rules.plugins, ("global_rules", "plugins"), file)
    out: list[ConfigIssue] = []
    ids: dict[str, int] = {}
    owner: dict[str, int] = {}
    for i, rule in enumerate(config.global_rules):
        if not _ID.match(rule.id):
            out.append(issue_at(file, ("global_rules", i, "id"), f"invalid id {rule.id!r}: {_BAD_ID}"))
        if rule.id in ids:
            message = f"duplicate global rule id {rule.id!r} (first at global_rules[{ids[rule.id]}])"
            out.append(issue_at(file, ("global_rules", i, "id"), message))
        ids.setdefault(rule.id, i)
        for name in rule.plugins:
            if name in owner:
                message = f"plugin {name!r} is already in global_rules[{owner[name]}]"
                out.append(issue_at(file, ("global_rules", i, "plugins", name), message))
            owner.setdefault(name, i)
        out.extend(check_plugin_values(rule.plugins, ("global_rules", i, "plugins"), file))
    return out

    return out


def check_gateway(gw: GatewaySettings, file: str) -> list[ConfigIssue]:
    """Listen addresses (valid, and no two that cannot both be bound) and the admin access list."""
    out: list[ConfigIssue] = []
    if not gw.listen:
        out.append(issue_at(file, ("gateway", "listen"), "at least one listen address is required"))
    parsed: list[tuple[str, int, tuple[str, int]]] = []
    for key, addresses in (("listen", gw.listen), ("tls_listen", gw.tls_listen)):
        for i, addr in enumerate(addresses):
            try:
                hp = parse_listen(addr)
            except ValueError as exc:
                out.append(issue_at(file, ("gateway", key, i), str(exc)))
                continue
            for other_key, j, other in parsed:
                if listen_overlaps(hp, other):
                    message = f"{addr!r} duplicates or overlaps {other_key}[{j}] {addr_of(gw, other_key, j)!r}"
                    out.append(issue_at(file, ("gateway", key, i), message))
                    break
            parsed.append((key, i, hp))
    admin_path = ("gateway", "admin", "listen")
    try:
        admin = parse_listen(gw.admin.listen)
    except ValueError as exc:
        out.append(issue_at(file, admin_path, str(exc)))
    else:
        for other_key, j, other in parsed:
            if listen_overlaps(admin, other):
                message = f"{gw.admin.listen!r} conflicts with proxy {other_key}[{j}] {addr_of(gw, other_key, j)!r}"
                out.append(issue_at(file, admin_path, message))
    for i, server in enumerate(gw.resolvers):
        try:
            parse_nameserver(server)
        except ValueError as exc:
            out.append(issue_at(file, ("gateway", "resolvers", i), str(exc)))
    for i, cidr in enumerate(gw.admin.allow_admin):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            out.append(issue_at(file, ("gateway", "admin", "allow_admin", i), f"invalid CIDR {cidr!r}"))
    out.extend(check_etcd_store(gw, file))
    return out


def check_etcd_store(gw: GatewaySettings, file: str) -> list[ConfigIssue]:
    etcd = gw.etcd
    if etcd is None:
        return []
    out: list[ConfigIssue] = []
    if not etcd.endpoints:
        out.append(issue_at(file, ("gateway", "store", "endpoints"), "at least one endpoint is required"))
    for i, url in enumerate(etcd.endpoints):
        try:
            parts = urlsplit(url)
            usable = parts.scheme in ("http", "https") and bool(parts.hostname) \
                and parts.path in ("", "/")
        except ValueError:  # urlsplit refuses some malformed URLs ("http://10.]0.0.6:2379")
            usable = False
        if not usable:
            out.append(issue_at(file, ("gateway", "store", "endpoints", i),
                                f"expected http://host:port or https://host:port, got {url!r}"))
    if not etcd.prefix.startswith("/") or etcd.prefix.endswith("/") or "//" in etcd.prefix:
        out.append(issue_at(file, ("gateway", "store", "prefix"),
                            f"expected a key prefix like /gateway (starts with /, no trailing /), got {etcd.prefix!r}"))
    if (etcd.user is None) != (etcd.password is None):
        out.append(issue_at(file, ("gateway", "store", "user" if etcd.user is None else "password"),
                            "user and password go together"))
    if (etcd.cert_file is None) != (etcd.key_file is None):
        out.append(issue_at(file, ("gateway", "store", "cert_file" if etcd.cert_file is None else "key_file"),
                            "cert_file and key_file go together"))
    return out


def addr_of(gw: GatewaySettings, key: str, index: int) -> str:
    return gw.tls_listen[index] if key == "tls_listen" else gw.listen[index]


def check_ssls(ssls: Sequence[Ssl], fallback_sni: str | None, file: str) -> list[ConfigIssue]:
    """Ids, SNI syntax, an SNI claimed by two ssls, and a fallback SNI that some ssl serves.
    (The certificates themselves are checked by `certificates`.)"""
    out: list[ConfigIssue] = []
    ids: dict[str, int] = {}
    owners: dict[str, int] = {}
    for i, ssl in enumerate(ssls):
        if not _ID.match(ssl.id):
            out.append(issue_at(file, ("ssls", i, "id"), f"invalid id {ssl.id!r}: {_BAD_ID}"))
        elif ssl.id in ids:
            message = f"duplicate ssl id {ssl.id!r} (first at ssls[{ids[ssl.id]}])"
            out.append(issue_at(file, ("ssls", i, "id"), message))
        else:
            ids[ssl.id] = i
        if not ssl.snis:
            out.append(issue_at(file, ("ssls", i, "snis"), "at least one SNI is required"))
        for k, sni in enumerate(ssl.snis):
            path = ("ssls", i, "snis", k)
            if sni != sni.lower() or not (is_hostname(sni) or is_wildcard_host(sni)) or is_ip(sni):
                message = (f"invalid SNI {sni!r}: a lower-case host name or a wildcard "
                           "\"*.example.com\" (clients send no SNI for IP addresses: see fallback_sni)")
                out.append(issue_at(file, path, message))
            elif sni in owners and owners[sni] != i:
                message = f"SNI {sni!r} is already served by ssls[{owners[sni]}]"
                out.append(issue_at(file, path, message))
            else:
                owners[sni] = i
    if fallback_sni is not None and not any(name in owners for name in sni_candidates(fallback_sni)):
        message = f"no ssl serves {fallback_sni!r} (it must match one of the ssls' snis)"
        out.append(issue_at(file, ("gateway", "fallback_sni"), message))
    return out


def check_upstream(up: Upstream, path: DocPath, file: str, inline: bool) -> list[ConfigIssue]:
    """One upstream, under `upstreams` (`inline` False: it needs an id) or inside a route."""
    out: list[ConfigIssue] = []
    if inline:
        if up.id is not None:
            message = "an inline upstream has no id; define it under `upstreams` and use upstream_id"
            out.append(issue_at(file, path + ("id",), message))
    elif up.id is None:
        out.append(issue_at(file, path + ("id",), "missing required field"))
    elif not _ID.match(up.id):
        out.append(issue_at(file, path + ("id",), f"invalid id {up.id!r}: {_BAD_ID}"))
    if not up.nodes:
        out.append(issue_at(file, path + ("nodes",), "at least one node is required"))
    seen: set[tuple[str, int]] = set()
    for i, node in enumerate(up.nodes):
        host = node.host[1:-1] if node.host.startswith("[") and node.host.endswith("]") else node.host
        if not (is_ip(host) or is_hostname(host)):
            out.append(issue_at(file, path + ("nodes", i, "host"), f"invalid host {node.host!r}"))
        ident = (host.lower(), node.port)
        if ident in seen:
            out.append(issue_at(file, path + ("nodes", i), f"duplicate node {node.host}:{node.port}"))
        seen.add(ident)
    if up.nodes and all(n.weight == 0 for n in up.nodes):
        out.append(issue_at(file, path + ("nodes",), "every node has weight 0; no traffic could be sent"))
    if up.type == "chash":
        problem = check_chash_key(up)
        if problem:
            out.append(issue_at(file, path + ("key",), problem))
    host_path = path + ("upstream_host",)
    if up.pass_host == "rewrite" and not up.upstream_host:
        out.append(issue_at(file, host_path, "required when pass_host is 'rewrite'"))
    elif up.pass_host != "rewrite" and up.upstream_host is not None:
        out.append(issue_at(file, host_path, "only used when pass_host is 'rewrite'"))
    elif up.upstream_host is not None and (not up.upstream_host.strip() or any(c.isspace() for c in up.upstream_host)):
        out.append(issue_at(file, host_path, f"invalid host {up.upstream_host!r}"))
    if up.checks is not None:
        out.extend(check_health_checks(up.checks, path + ("checks",), file))
    if up.scheme in GRPC_SCHEMES and up.retry_on_statuses:
        # a gRPC call's outcome is its grpc-status trailer, after the response has started
        out.append(issue_at(file, path + ("retry_on_statuses",),
                            f"does not apply to scheme {up.scheme}: gRPC answers HTTP 200 and "
                            "reports failures in the grpc-status trailer"))
    return out


def check_chash_key(up: Upstream) -> str | None:
    """What is wrong with a chash upstream's `key` for its `hash_on`; None when nothing is."""
    key = up.key
    if up.hash_on == "consumer":
        return None  # the authenticated consumer is the key; `key` is ignored as in APISIX
    if not key:
        return f"chash with hash_on {up.hash_on!r} requires `key`"
    if up.hash_on in ("header", "cookie"):
        # read as the variable http_<key> / cookie_<key>, as APISIX does
        prefix = "http_" if up.hash_on == "header" else "cookie_"
        if _TOKEN.match(key) and is_variable(prefix + key):
            return None
        return f"invalid {up.hash_on} name {key!r}"
    if up.hash_on == "vars":
        if not is_variable(key):
            return (f"invalid chash key {key!r}: expected a request variable: one of "
                    f"{', '.join(variable_names())}, or {', '.join(f + 'NAME' for f in families())}")
        return _known_after_balancing([key])
    refs = _VAR_REF.findall(key)
    if not refs:
        return f"vars_combinations key {key!r} must reference variables like '$remote_addr$uri'"
    bad = [r for r in refs if not is_variable(r)]
    if bad:
        return f"unknown variable(s) in key: {', '.join('$' + b for b in bad)}"
    return _known_after_balancing(refs)


def _known_after_balancing(names: Sequence[str]) -> str | None:
    late = [n for n in names if n in _AFTER_BALANCING or n.startswith(_AFTER_BALANCING_FAMILIES)]
    if not late:
        return None
    return (f"chash key variable(s) {', '.join(late)} have no value until the response: "
            "the node is chosen before it")


def check_route(r: Route, path: DocPath, file: str, upstream_ids: Mapping[str, int]) -> list[ConfigIssue]:
    """One route; `upstream_ids` are the ids defined under `upstreams`, for its upstream_id."""
    out: list[ConfigIssue] = []
    if not _ID.match(r.id):
        out.append(issue_at(file, path + ("id",), f"invalid id {r.id!r}: {_BAD_ID}"))
    out.extend(_check_route_uris(r, path, file))
    out.extend(_check_route_hosts(r, path, file))
    if r.methods is not None:
        if not r.methods:
            out.append(issue_at(file, path + ("methods",), "must not be empty; omit it to match every method"))
        for j, m in enumerate(r.methods):
            if m not in HTTP_METHODS:
                message = f"unknown method {m!r}; expected one of {', '.join(sorted(HTTP_METHODS))}"
                out.append(issue_at(file, path + ("methods", j), message))
    if r.upstream_id is not None and r.upstream is not None:
        message = "use either `upstream_id` or an inline `upstream`, not both"
        out.append(issue_at(file, path + ("upstream",), message))
    if r.upstream_id is not None and r.upstream_id not in upstream_ids:
        out.append(issue_at(file, path + ("upstream_id",), f"unknown upstream {r.upstream_id!r}"))
    if r.upstream is not None:
        out.extend(check_upstream(r.upstream, path + ("upstream",), file, inline=True))
        if r.enable_websocket and r.upstream.scheme in GRPC_SCHEMES:
            out.append(issue_at(file, path + ("enable_websocket",),
                                f"a WebSocket cannot be proxied to a {r.upstream.scheme} upstream"))
    if r.upstream_id is None and r.upstream is None and not r.plugins:
        out.append(issue_at(file, path, "a route needs an upstream_id, an inline upstream, or a plugin that answers"))
    out.extend(check_plugin_values(r.plugins, path + ("plugins",), file))
    return out


def _check_route_uris(r: Route, path: DocPath, file: str) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    if (r.uri is None) == (r.uris is None):
        out.append(issue_at(file, path + ("uri",), "exactly one of `uri` or `uris` is required"))
    if r.uri is not None:
        problem = check_uri(r.uri)
        if problem:
            out.append(issue_at(file, path + ("uri",), f"invalid uri {r.uri!r}: {problem}"))
    if r.uris is not None:
        if not r.uris:
            out.append(issue_at(file, path + ("uris",), "must not be empty"))
        for j, u in enumerate(r.uris):
            problem = check_uri(u)
            if problem:
                out.append(issue_at(file, path + ("uris", j), f"invalid uri {u!r}: {problem}"))
    return out


def _check_route_hosts(r: Route, path: DocPath, file: str) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    if r.host is not None and r.hosts is not None:
        out.append(issue_at(file, path + ("hosts",), "use either `host` or `hosts`, not both"))
    host_items: list[tuple[DocPath, str]] = []
    if r.host is not None:
        host_items.append((path + ("host",), r.host))
    if r.hosts is not None:
        if not r.hosts:
            out.append(issue_at(file, path + ("hosts",), "must not be empty; omit it to match any host"))
        host_items.extend((path + ("hosts", j), h) for j, h in enumerate(r.hosts))
    for p, h in host_items:
        if ":" in h and not h.startswith("["):
            out.append(issue_at(file, p, f"invalid host {h!r}: ports are not part of a route host"))
        elif not (is_hostname(h) or is_wildcard_host(h)):
            out.append(issue_at(file, p, f"invalid host {h!r}: expected a host name or '*.suffix'"))
    return out


def check_uri(uri: str) -> str | None:
    """What is wrong with a route URI pattern; None when nothing is."""
    if not uri.startswith("/"):
        return "must start with '/'"
    if any(c.isspace() or ord(c) < 0x20 or c in "?#" for c in uri):
        return "must not contain whitespace, control characters, '?' or '#'"
    segments = uri.split("/")[1:]
    for i, seg in enumerate(segments):
        if seg.startswith(":") and not _PARAM.match(seg):
            return f"bad parameter segment {seg!r} (expected :name)"
        if "*" in seg:
            if i != len(segments) - 1 or not _WILDCARD_SEG.match(seg):
                return "'*' is only allowed as the last segment ('/prefix/*' or '/prefix/*name')"
    return None


def check_consumers(consumers: Sequence[Consumer], file: str) -> list[ConfigIssue]:
    """Usernames (valid, and unique: a consumer is known by its username) and plugin values."""
    out: list[ConfigIssue] = []
    names: dict[str, int] = {}
    for i, c in enumerate(consumers):
        path = ("consumers", i, "username")
        if not _USERNAME.match(c.username):
            out.append(issue_at(file, path, f"invalid username {c.username!r}: only A-Z a-z 0-9 _ -"))
        if c.username in names:
            message = f"duplicate username {c.username!r} (first at consumers[{names[c.username]}])"
            out.append(issue_at(file, path, message))
        else:
            names[c.username] = i
        out.extend(check_plugin_values(c.plugins, ("consumers", i, "plugins"), file))
    return out


def check_plugin_values(plugins: Mapping[str, Any], path: DocPath, file: str) -> list[ConfigIssue]:
    """Plugin configs must be JSON data: they are hashed as JSON and shipped
    to workers as msgpack, and both must round-trip them exactly."""
    out: list[ConfigIssue] = []

    def walk(v: Any, p: DocPath) -> None:
        if v is None or isinstance(v, (str, bool, int)):
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                out.append(issue_at(file, p, "non-finite number is not allowed"))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, p + (i,))
        elif isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    out.append(issue_at(file, p, f"key {k!r} must be a string"))
                else:
                    walk(item, p + (k,))
        else:
            out.append(issue_at(file, p, f"unsupported value of type {type(v).__name__}; use JSON types"))

    for name, conf in plugins.items():
        walk(conf, path + (name,))
    return out
