"""Load, validate and serialise the gateway configuration.

Pipeline for a YAML file: read -> compose the YAML node tree -> expand
`${VAR}` in string scalars (on the nodes, so every substitution knows its
path and line) -> construct plain data -> normalise the APISIX shorthand forms
-> msgspec decode into :class:`Config` -> cross checks -> caller's extra checks.

Any problem becomes a :class:`ConfigIssue` naming file, document path and
line; problems are collected and raised together as one :class:`ConfigError`.
The master validates before it sends a snapshot, so nothing here is on the
request path; still, the happy path does one YAML parse and one msgspec
decode, and line numbers are only looked up when there is an issue.
"""

from __future__ import annotations

import difflib
import importlib.resources
import ipaddress
import json
import math
import os
import re
import types
import typing
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Literal, Union

import msgspec
import yaml

from gateway.requestvars.table import families, is_variable, variable_names

from .schema import HTTP_METHODS, Config, Route, Upstream

__all__ = [
    "ConfigError",
    "ConfigIssue",
    "ExtraCheck",
    "config_from_bytes",
    "config_to_bytes",
    "decode_config",
    "default_config",
    "dump_config",
    "load_config",
    "parse_config_file",
    "parse_config_text",
    "read_config_file",
    "validate_config",
]


class ConfigIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One problem in a configuration document."""

    file: str
    #: Document path, e.g. "routes[2].upstream_id"; "" for the document root.
    path: str
    message: str
    #: 1-based line of the offending YAML node, when known.
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A configuration was rejected; `issues` lists every reason."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


#: A check the plugin system (or anything else) adds: (config, file name) -> issues.
ExtraCheck = Callable[[Config, str], list[ConfigIssue]]
#: How much of a file's own checks apply to a text (see parse_config_text).
FileChecks = Literal["none", "file", "reload"]

Segment = str | int
Path = tuple[Segment, ...]

# ------------------------------------------------------------------------ paths

_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_\-]+\Z")
_PATH_TOKEN = re.compile(r'\.?([A-Za-z0-9_\-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def format_path(path: Iterable[Segment]) -> str:
    """("routes", 2, "upstream_id") -> "routes[2].upstream_id"."""
    out: list[str] = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _SIMPLE_KEY.match(seg):
            out.append(f".{seg}" if out else seg)
        else:
            # Keys like label names ("app.kubernetes.io/name") would be ambiguous unquoted.
            out.append(f"[{json.dumps(seg)}]")
    return "".join(out)


def _split_path(text: str) -> Path | None:
    """Inverse of format_path; None when `text` is not in that syntax."""
    segs: list[Segment] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None or (m.group(1) is not None and pos > 0 and text[pos] != "."):
            return None
        if m.group(1) is not None:
            segs.append(m.group(1))
        elif m.group(2) is not None:
            segs.append(int(m.group(2)))
        else:
            segs.append(json.loads(m.group(3)))
        pos = m.end()
    return tuple(segs)


def _issue(file: str, path: Path, message: str, line: int | None = None) -> ConfigIssue:
    return ConfigIssue(file=file, path=format_path(path), message=message, line=line)


# ------------------------------------------------------------------------- YAML


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """Safe loader without YAML 1.1 timestamps: config values are JSON-like,
    and a date turning into a `datetime` would break msgpack/JSON round trips."""


_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_STR_TAG = "tag:yaml.org,2002:str"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def _compose(text: str, source: str) -> tuple[Any, yaml.Node | None]:
    """Parse once; keep the node tree for env expansion and line lookup."""
    loader = _Loader(text)
    try:
        root = loader.get_single_node()
        return loader, root
    except yaml.MarkedYAMLError as exc:
        loader.dispose()
        mark = exc.problem_mark or exc.context_mark
        parts = [p for p in (exc.context, exc.problem) if p]
        line = mark.line + 1 if mark is not None else None
        raise ConfigError(
            [ConfigIssue(file=source, path="", message="YAML syntax error: " + ", ".join(parts), line=line)]
        ) from None
    except yaml.YAMLError as exc:
        loader.dispose()
        raise ConfigError([ConfigIssue(file=source, path="", message=f"YAML error: {exc}")]) from None


def _line_for(root: yaml.Node | None, path: Path) -> int | None:
    """1-based line of the node at `path`, or of its deepest existing ancestor."""
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for seg in path:
        if isinstance(node, yaml.MappingNode):
            pair = None
            if isinstance(seg, int):
                # The APISIX nodes mapping {"host:port": weight} is turned into
                # a list; its i-th element is the mapping's i-th key.
                if 0 <= seg < len(node.value):
                    pair = node.value[seg]
            else:
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == seg:
                        pair = (k, v)
            if pair is None:
                return line
            key, value = pair
            # The key's line, not the value's: a block collection starts on
            # the line after its key, and the key is what people look for.
            line = key.start_mark.line + 1
            node = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(seg, int):
            if not 0 <= seg < len(node.value):
                return line
            node = node.value[seg]
            line = node.start_mark.line + 1
        else:
            return line
    return line


# -------------------------------------------------------------------- ${VAR}

# `$${` escapes, `${NAME}` / `${NAME:=default}` substitute, any other `${` is malformed.
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}|\$\{")


def _expand(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    errors: list[str] = []

    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "$${":
            return "${"
        name = m.group(1)
        if name is None:
            errors.append("malformed ${...} reference (expected ${NAME} or ${NAME:=default}; write $${ for a literal ${)")
            return text
        default = m.group(2)
        found = env.get(name)
        if default is not None:
            # Shell semantics for ":=": an empty variable also takes the default.
            return found if found else default
        if found is None:
            errors.append(f"environment variable {name} is not set (use ${{{name}:=default}} for a default)")
            return text
        return found

    return _ENV_REF.sub(sub, value), errors


def _expand_tree(root: yaml.Node, env: Mapping[str, str], file: str) -> list[ConfigIssue]:
    """Expand string scalars in place; strings only, so `${X}` never turns
    into structure. Typed fields still accept e.g. `port: ${PORT}` because
    decoding coerces numeric strings to the schema's type."""
    issues: list[ConfigIssue] = []
    seen: set[int] = set()  # anchors/aliases share nodes: expand once, and don't loop on recursive ones

    def scalar(node: yaml.ScalarNode, path: Path) -> None:
        if node.tag == _STR_TAG and "$" in node.value:
            node.value, errors = _expand(node.value, env)
            for e in errors:
                issues.append(_issue(file, path, e, node.start_mark.line + 1))

    def walk(node: yaml.Node, path: Path) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            scalar(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and id(k) not in seen:
                    seen.add(id(k))
                    scalar(k, path + (k.value,))
                walk(v, path + ((k.value if isinstance(k, yaml.ScalarNode) else "?"),))

    walk(root, ())
    return issues


def _duplicate_keys(root: yaml.Node, file: str) -> list[ConfigIssue]:
    """YAML silently keeps the last of two equal keys; for a config that
    hides a mistake (e.g. two `plugins:` blocks), so it is an error here."""
    issues: list[ConfigIssue] = []
    seen: set[int] = set()

    def walk(node: yaml.Node, path: Path) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))
        elif isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in keys:
                        issues.append(_issue(file, path + (name,), "duplicate key", k.start_mark.line + 1))
                    keys.add(k.value)
                walk(v, path + (name,))

    walk(root, ())
    return issues


# -------------------------------------------------------------- normalisation

_NODE_KEY = re.compile(r"^(?:\[(?P<v6>[^\]]+)\]|(?P<host>[^:\[\]]+))(?::(?P<port>\d+))?\Z")


def _normalise_upstream(up: Any, path: Path, file: str, issues: list[ConfigIssue]) -> Any:
    if not isinstance(up, dict) or not isinstance(up.get("nodes"), dict):
        return up
    nodes: list[Any] = []
    for i, (key, weight) in enumerate(up["nodes"].items()):
        m = _NODE_KEY.match(key) if isinstance(key, str) else None
        if m is None:
            issues.append(_issue(file, path + ("nodes", i), f"invalid node {key!r}: expected 'host:port' or '[v6addr]:port'"))
            continue
        port = m.group("port")
        # APISIX: a node without a port uses the scheme's default port.
        nodes.append({"host": m.group("v6") or m.group("host"), "port": int(port) if port else 80, "weight": weight})
    return {**up, "nodes": nodes}


def _normalise_plugins(obj: Any) -> Any:
    # `prometheus:` with nothing after it is how people write "enabled, default config".
    if isinstance(obj, dict) and isinstance(obj.get("plugins"), dict):
        plugins = obj["plugins"]
        if any(v is None for v in plugins.values()):
            return {**obj, "plugins": {k: ({} if v is None else v) for k, v in plugins.items()}}
    return obj


def _normalise(data: Any, file: str, issues: list[ConfigIssue]) -> Any:
    """Turn the shorthand forms into the schema's single form.

    Done on plain data (not in the structs) so the typed fields have one
    shape for every consumer. Builds new containers: the caller's data, e.g.
    an Admin API request body, is not modified.
    """
    if not isinstance(data, dict):
        return data
    # A section left empty (`gateway:` with everything below commented out)
    # means "defaults". Top-level `x-` keys are free for YAML anchors, as in
    # docker-compose, so shared fragments need not be repeated.
    data = {k: v for k, v in data.items() if v is not None and not (isinstance(k, str) and k.startswith("x-"))}
    gw = data.get("gateway")
    if isinstance(gw, dict) and isinstance(gw.get("listen"), str):
        data["gateway"] = {**gw, "listen": [gw["listen"]]}
    if isinstance(data.get("upstreams"), list):
        data["upstreams"] = [_normalise_upstream(u, ("upstreams", i), file, issues) for i, u in enumerate(data["upstreams"])]
    if isinstance(data.get("routes"), list):
        routes = []
        for i, r in enumerate(data["routes"]):
            r = _normalise_plugins(r)
            if isinstance(r, dict) and "upstream" in r:
                r = {**r, "upstream": _normalise_upstream(r["upstream"], ("routes", i, "upstream"), file, issues)}
            routes.append(r)
        data["routes"] = routes
    if isinstance(data.get("consumers"), list):
        data["consumers"] = [_normalise_plugins(c) for c in data["consumers"]]
    if "global_rules" in data:
        data["global_rules"] = _normalise_plugins(data["global_rules"])
    return data


# ------------------------------------------------------ msgspec error mapping

_MSGSPEC_AT = re.compile(r"^(?P<msg>.*) - at (?:`(?P<key>key)` in )?`(?P<path>\$[^`]*)`$", re.S)
_MSGSPEC_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple[Any, ...]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return tuple(_unwrap(a) for a in typing.get_args(tp))
    return (tp,)


def _child_type(tp: Any, seg: Segment | None) -> Any:
    """Static type one step down from `tp`; `seg` None means "a dict value"."""
    for t in _members(tp):
        if isinstance(t, type) and issubclass(t, msgspec.Struct) and isinstance(seg, str):
            for f in msgspec.structs.fields(t):
                if f.encode_name == seg:
                    return f.type
        origin = typing.get_origin(t)
        if origin is list and isinstance(seg, int):
            return typing.get_args(t)[0]
        if origin is dict and (seg is None or isinstance(seg, str)):
            return typing.get_args(t)[1]
    return None


def _struct_at(tp: Any) -> type[msgspec.Struct] | None:
    for t in _members(tp):
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            return t
    return None


def _fails(value: Any, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError:
        return True
    return False


def _resolve_msgspec_path(text: str, data: Any) -> tuple[Path, Any]:
    """msgspec's "$.routes[0].plugins[...]" -> concrete path and the static
    type there. msgspec does not say which dict key failed, so find it."""
    path: list[Segment] = []
    tp: Any = Config
    tokens = list(_MSGSPEC_TOKEN.finditer(text[1:]))
    for m in tokens:
        if m.group(1) is not None:
            seg: Segment = m.group(1)
        elif m.group(2) is not None:
            seg = int(m.group(2))
        else:
            value_type = _child_type(tp, None)
            seg = "..."
            if isinstance(data, dict):
                for k, v in data.items():
                    if not isinstance(k, str) or (value_type is not None and _fails(v, value_type)):
                        seg = k if isinstance(k, str) else str(k)
                        data = v
                        break
            path.append(seg)
            tp = value_type
            continue
        path.append(seg)
        tp = _child_type(tp, seg)
        try:
            data = data[seg]
        except (KeyError, IndexError, TypeError):
            data = None
    return tuple(path), tp


def _validation_issue(exc: msgspec.ValidationError, data: Any) -> tuple[Path, str]:
    text = str(exc)
    m = _MSGSPEC_AT.match(text)
    path: tuple[Segment, ...]
    if m is None:
        # Errors at the document root come without a " - at `$`" suffix.
        path, tp, msg, key_error = (), Config, text, False
    else:
        path, tp = _resolve_msgspec_path(m.group("path"), data)
        msg, key_error = m.group("msg"), m.group("key") is not None
    unknown = re.match(r"Object contains unknown field `(.+)`$", msg)
    if unknown:
        name = unknown.group(1)
        message = f"unknown field {name!r}"
        struct = _struct_at(tp)
        if struct is not None:
            close = difflib.get_close_matches(name, [f.encode_name for f in msgspec.structs.fields(struct)], n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        return path + (name,), message
    missing = re.match(r"Object missing required field `(.+)`$", msg)
    if missing:
        return path + (missing.group(1),), "missing required field"
    if msg.startswith("Invalid enum value"):
        choices = [a for t in _members(tp) if typing.get_origin(t) is Literal for a in typing.get_args(t)]
        if choices:
            return path, f"invalid value {_value_at(data, path)!r}, expected one of " + ", ".join(repr(c) for c in choices)
    if key_error:
        return path, "invalid key: " + _humanise(msg)
    return path, _humanise(msg)


def _value_at(data: Any, path: Path) -> Any:
    for seg in path:
        try:
            data = data[seg]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _humanise(msg: str) -> str:
    msg = msg.replace("`", "")
    return msg[:1].lower() + msg[1:]


# ------------------------------------------------------------- cross checks

_ID = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")  # APISIX's id syntax; ids appear in Admin API URLs
_USERNAME = re.compile(r"[A-Za-z0-9_\-]+\Z")
_LABEL = r"[a-z0-9_](?:[a-z0-9_\-]{0,61}[a-z0-9_])?"
_HOSTNAME = re.compile(rf"{_LABEL}(?:\.{_LABEL})*\Z", re.I)
_WILDCARD_HOST = re.compile(rf"\*(?:\.{_LABEL})+\Z")
_PARAM = re.compile(r":[A-Za-z_][A-Za-z0-9_]*\Z")
_WILDCARD_SEG = re.compile(r"\*(?:[A-Za-z_][A-Za-z0-9_]*)?\Z")
_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+\Z")  # RFC 9110 token: header and cookie names
_VAR_REF = re.compile(r"\$([A-Za-z0-9_]+)")


def _is_hostname(host: str) -> bool:
    return len(host) <= 253 and _HOSTNAME.match(host) is not None


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def parse_listen(addr: str) -> tuple[str, int]:
    """"host:port" / "[v6]:port" -> (host without brackets, port); ValueError if invalid."""
    m = re.fullmatch(r"\[([^\]]+)\]:(\d{1,5})|([^:\[\]]+):(\d{1,5})", addr)
    if m is None:
        raise ValueError(f"invalid address {addr!r}: expected host:port, IPv6 as [addr]:port")
    if m.group(1) is not None:
        host, port = m.group(1), int(m.group(2))
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"invalid address {addr!r}: {host!r} is not an IPv6 address") from None
    else:
        host, port = m.group(3), int(m.group(4))
        if not (_is_ip(host) or _is_hostname(host)):
            raise ValueError(f"invalid address {addr!r}: bad host {host!r}")
    if not 1 <= port <= 65535:
        raise ValueError(f"invalid address {addr!r}: port must be 1..65535")
    return host.lower(), port


def _overlaps(a: tuple[str, int], b: tuple[str, int]) -> bool:
    """Would binding both conflict? A wildcard covers every address of its
    family (workers set IPV6_V6ONLY, so 0.0.0.0 and [::] do not overlap)."""
    if a[1] != b[1]:
        return False
    if a[0] == b[0]:
        return True
    try:
        ia, ib = ipaddress.ip_address(a[0]), ipaddress.ip_address(b[0])
    except ValueError:
        return False
    return ia.version == ib.version and (ia.is_unspecified or ib.is_unspecified)


def _check_uri(uri: str) -> str | None:
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


def _check_chash(up: Upstream) -> str | None:
    key = up.key
    if up.hash_on == "consumer":
        return None  # the authenticated consumer is the key; `key` is ignored as in APISIX
    if not key:
        return f"chash with hash_on {up.hash_on!r} requires `key`"
    if up.hash_on in ("header", "cookie"):
        return None if _TOKEN.match(key) else f"invalid {up.hash_on} name {key!r}"
    if up.hash_on == "vars":
        if is_variable(key):
            return None
        return (f"invalid chash key {key!r}: expected a request variable: one of "
                f"{', '.join(variable_names())}, or {', '.join(f + 'NAME' for f in families())}")
    refs = _VAR_REF.findall(key)
    if not refs:
        return f"vars_combinations key {key!r} must reference variables like '$remote_addr$uri'"
    bad = [r for r in refs if not is_variable(r)]
    return f"unknown variable(s) in key: {', '.join('$' + b for b in bad)}" if bad else None


def _check_upstream(up: Upstream, path: Path, file: str, inline: bool) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    if inline:
        if up.id is not None:
            out.append(_issue(file, path + ("id",), "an inline upstream has no id; define it under `upstreams` and use upstream_id"))
    elif up.id is None:
        out.append(_issue(file, path + ("id",), "missing required field"))
    elif not _ID.match(up.id):
        out.append(_issue(file, path + ("id",), f"invalid id {up.id!r}: 1-64 characters of A-Z a-z 0-9 _ . -"))
    if not up.nodes:
        out.append(_issue(file, path + ("nodes",), "at least one node is required"))
    seen: set[tuple[str, int]] = set()
    for i, node in enumerate(up.nodes):
        host = node.host[1:-1] if node.host.startswith("[") and node.host.endswith("]") else node.host
        if not (_is_ip(host) or _is_hostname(host)):
            out.append(_issue(file, path + ("nodes", i, "host"), f"invalid host {node.host!r}"))
        ident = (host.lower(), node.port)
        if ident in seen:
            out.append(_issue(file, path + ("nodes", i), f"duplicate node {node.host}:{node.port}"))
        seen.add(ident)
    if up.nodes and all(n.weight == 0 for n in up.nodes):
        out.append(_issue(file, path + ("nodes",), "every node has weight 0; no traffic could be sent"))
    if up.type == "chash":
        problem = _check_chash(up)
        if problem:
            out.append(_issue(file, path + ("key",), problem))
    if up.pass_host == "rewrite" and not up.upstream_host:
        out.append(_issue(file, path + ("upstream_host",), "required when pass_host is 'rewrite'"))
    elif up.pass_host != "rewrite" and up.upstream_host is not None:
        out.append(_issue(file, path + ("upstream_host",), "only used when pass_host is 'rewrite'"))
    elif up.upstream_host is not None and (not up.upstream_host.strip() or any(c.isspace() for c in up.upstream_host)):
        out.append(_issue(file, path + ("upstream_host",), f"invalid host {up.upstream_host!r}"))
    return out


def _check_plugin_values(plugins: Mapping[str, Any], path: Path, file: str) -> list[ConfigIssue]:
    """Plugin configs must be JSON data: they are hashed as JSON and shipped
    to workers as msgpack, and both must round-trip them exactly."""
    out: list[ConfigIssue] = []

    def walk(v: Any, p: Path) -> None:
        if v is None or isinstance(v, (str, bool, int)):
            return
        if isinstance(v, float):
            if not math.isfinite(v):
                out.append(_issue(file, p, "non-finite number is not allowed"))
        elif isinstance(v, list):
            for i, item in enumerate(v):
                walk(item, p + (i,))
        elif isinstance(v, dict):
            for k, item in v.items():
                if not isinstance(k, str):
                    out.append(_issue(file, p, f"key {k!r} must be a string"))
                else:
                    walk(item, p + (k,))
        else:
            out.append(_issue(file, p, f"unsupported value of type {type(v).__name__}; use JSON types"))

    for name, conf in plugins.items():
        walk(conf, path + (name,))
    return out


def validate_config(config: Config, file: str = "<config>") -> list[ConfigIssue]:
    """Every cross-field and syntax check on a decoded config; all issues, not the first.

    Also for the Admin API and the etcd store, which build a Config
    without going through a file.
    """
    out: list[ConfigIssue] = []
    gw = config.gateway

    # -- listen addresses
    if not gw.listen:
        out.append(_issue(file, ("gateway", "listen"), "at least one listen address is required"))
    parsed: list[tuple[int, tuple[str, int]]] = []
    for i, addr in enumerate(gw.listen):
        try:
            hp = parse_listen(addr)
        except ValueError as exc:
            out.append(_issue(file, ("gateway", "listen", i), str(exc)))
            continue
        for j, other in parsed:
            if _overlaps(hp, other):
                out.append(_issue(file, ("gateway", "listen", i), f"{addr!r} duplicates or overlaps listen[{j}] {gw.listen[j]!r}"))
                break
        parsed.append((i, hp))
    try:
        admin = parse_listen(gw.admin.listen)
    except ValueError as exc:
        out.append(_issue(file, ("gateway", "admin", "listen"), str(exc)))
    else:
        for j, other in parsed:
            if _overlaps(admin, other):
                out.append(_issue(file, ("gateway", "admin", "listen"), f"{gw.admin.listen!r} conflicts with proxy listen[{j}] {gw.listen[j]!r}"))
    for i, cidr in enumerate(gw.admin.allow_admin):
        try:
            ipaddress.ip_network(cidr, strict=False)
        except ValueError:
            out.append(_issue(file, ("gateway", "admin", "allow_admin", i), f"invalid CIDR {cidr!r}"))

    # -- upstreams
    ids: dict[str, int] = {}
    for i, up in enumerate(config.upstreams):
        out.extend(_check_upstream(up, ("upstreams", i), file, inline=False))
        if up.id is not None:
            if up.id in ids:
                out.append(_issue(file, ("upstreams", i, "id"), f"duplicate upstream id {up.id!r} (first at upstreams[{ids[up.id]}])"))
            else:
                ids[up.id] = i

    # -- routes
    route_ids: dict[str, int] = {}
    for i, r in enumerate(config.routes):
        out.extend(_check_route(r, ("routes", i), file, ids))
        if r.id in route_ids:
            out.append(_issue(file, ("routes", i, "id"), f"duplicate route id {r.id!r} (first at routes[{route_ids[r.id]}])"))
        else:
            route_ids[r.id] = i

    # -- consumers
    names: dict[str, int] = {}
    for i, c in enumerate(config.consumers):
        if not _USERNAME.match(c.username):
            out.append(_issue(file, ("consumers", i, "username"), f"invalid username {c.username!r}: only A-Z a-z 0-9 _ -"))
        if c.username in names:
            out.append(_issue(file, ("consumers", i, "username"), f"duplicate username {c.username!r} (first at consumers[{names[c.username]}])"))
        else:
            names[c.username] = i
        out.extend(_check_plugin_values(c.plugins, ("consumers", i, "plugins"), file))
    out.extend(_check_plugin_values(config.global_rules.plugins, ("global_rules", "plugins"), file))
    return out


def _check_route(r: Route, path: Path, file: str, upstream_ids: Mapping[str, int]) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    if not _ID.match(r.id):
        out.append(_issue(file, path + ("id",), f"invalid id {r.id!r}: 1-64 characters of A-Z a-z 0-9 _ . -"))
    if (r.uri is None) == (r.uris is None):
        out.append(_issue(file, path + ("uri",), "exactly one of `uri` or `uris` is required"))
    if r.uri is not None:
        problem = _check_uri(r.uri)
        if problem:
            out.append(_issue(file, path + ("uri",), f"invalid uri {r.uri!r}: {problem}"))
    if r.uris is not None:
        if not r.uris:
            out.append(_issue(file, path + ("uris",), "must not be empty"))
        for j, u in enumerate(r.uris):
            problem = _check_uri(u)
            if problem:
                out.append(_issue(file, path + ("uris", j), f"invalid uri {u!r}: {problem}"))
    if r.host is not None and r.hosts is not None:
        out.append(_issue(file, path + ("hosts",), "use either `host` or `hosts`, not both"))
    host_items: list[tuple[Path, str]] = []
    if r.host is not None:
        host_items.append((path + ("host",), r.host))
    if r.hosts is not None:
        if not r.hosts:
            out.append(_issue(file, path + ("hosts",), "must not be empty; omit it to match any host"))
        host_items.extend((path + ("hosts", j), h) for j, h in enumerate(r.hosts))
    for p, h in host_items:
        if ":" in h and not h.startswith("["):
            out.append(_issue(file, p, f"invalid host {h!r}: ports are not part of a route host"))
        elif not (_is_hostname(h) or _WILDCARD_HOST.match(h)):
            out.append(_issue(file, p, f"invalid host {h!r}: expected a host name or '*.suffix'"))
    if r.methods is not None:
        if not r.methods:
            out.append(_issue(file, path + ("methods",), "must not be empty; omit it to match every method"))
        for j, m in enumerate(r.methods):
            if m not in HTTP_METHODS:
                out.append(_issue(file, path + ("methods", j), f"unknown method {m!r}; expected one of {', '.join(sorted(HTTP_METHODS))}"))
    if r.upstream_id is not None and r.upstream is not None:
        out.append(_issue(file, path + ("upstream",), "use either `upstream_id` or an inline `upstream`, not both"))
    if r.upstream_id is not None and r.upstream_id not in upstream_ids:
        out.append(_issue(file, path + ("upstream_id",), f"unknown upstream {r.upstream_id!r}"))
    if r.upstream is not None:
        out.extend(_check_upstream(r.upstream, path + ("upstream",), file, inline=True))
    if r.upstream_id is None and r.upstream is None and not r.plugins:
        out.append(_issue(file, path, "a route needs an upstream_id, an inline upstream, or a plugin that answers"))
    out.extend(_check_plugin_values(r.plugins, path + ("plugins",), file))
    return out


# --------------------------------------------------------------- entry points


def _finish(
    data: Any,
    file: str,
    root: yaml.Node | None,
    issues: list[ConfigIssue],
    extra_checks: Sequence[ExtraCheck],
) -> Config:
    def located(items: Iterable[ConfigIssue]) -> list[ConfigIssue]:
        out: list[ConfigIssue] = []
        for it in items:
            if it.line is None and root is not None:
                segs = _split_path(it.path)
                if segs is not None:
                    it = msgspec.structs.replace(it, line=_line_for(root, segs))
            out.append(it)
        return out

    data = _normalise({} if data is None else data, file, issues)
    if issues:
        raise ConfigError(located(issues))
    try:
        # strict=False: `port: ${PORT}` yields a string and the schema decides
        # it is an int; the type still rejects anything that is not a number.
        config = msgspec.convert(data, Config, strict=False)
    except msgspec.ValidationError as exc:
        path, message = _validation_issue(exc, data)
        raise ConfigError(located([_issue(file, path, message)])) from None
    issues.extend(validate_config(config, file))
    for check in extra_checks:
        try:
            issues.extend(check(config, file))
        except Exception as exc:  # a buggy check must not take the master down with a traceback
            issues.append(ConfigIssue(file=file, path="", message=f"check {getattr(check, '__name__', check)!r} failed: {exc!r}"))
    if issues:
        raise ConfigError(located(issues))
    return config


def decode_config(data: Any, source: str = "<data>", extra_checks: Sequence[ExtraCheck] = ()) -> Config:
    """Validate already-parsed data (Admin API body, etcd) into a Config.

    No `${VAR}` expansion and no line numbers: those belong to files.
    """
    return _finish(data, source, None, [], extra_checks)


def parse_config_text(
    text: str,
    source: str = "<string>",
    env: Mapping[str, str] | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
    file_checks: FileChecks = "none",
) -> Config:
    """Parse and validate a YAML document; raise ConfigError listing every issue.
    ``file_checks``: "file" when the text is a whole config file (an empty one is an error),
    "reload" when it is also about to replace a running config."""
    env = os.environ if env is None else env
    loader, root = _compose(text, source)
    try:
        issues: list[ConfigIssue] = []
        data: Any = None
        if root is not None:
            issues.extend(_duplicate_keys(root, source))
            issues.extend(_expand_tree(root, env, source))
            try:
                data = loader.construct_document(root)
            except yaml.YAMLError as exc:
                mark = getattr(exc, "problem_mark", None)
                raise ConfigError(
                    [ConfigIssue(file=source, path="", message=f"YAML error: {getattr(exc, 'problem', exc)}",
                                 line=mark.line + 1 if mark else None)]
                ) from None
        if file_checks != "none":
            issues.extend(_file_checks(text, data, source, file_checks == "reload"))
        if issues:
            raise ConfigError(issues)
        return _finish(data, source, root, issues, extra_checks)
    finally:
        loader.dispose()


def read_config_file(path: str | os.PathLike[str]) -> bytes:
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ConfigError([ConfigIssue(file=name, path="", message=f"cannot read config file: {exc.strerror or exc}")]) from None


#: A line of its own at the end of a file: the writer finished (APISIX standalone mode's marker).
END_MARKER = "#END"


def _ends_with_marker(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return bool(lines) and lines[-1] == END_MARKER


def _file_checks(text: str, data: Any, name: str, replaces_running: bool) -> list[ConfigIssue]:
    """What only a file can get wrong: being empty or cut short by a writer that has not
    finished. A reload to a config with no `gateway` and no `routes` section is never what
    anybody meant: it would drop every route (and the admin key) of the running gateway."""
    if data is None:
        return [ConfigIssue(file=name, path="", message="the config file is empty (no YAML document in it)")]
    if replaces_running and isinstance(data, dict) and "gateway" not in data and "routes" not in data:
        return [ConfigIssue(file=name, path="", message="no `gateway` or `routes` section: "
                            "an incomplete file? (write a temp file and rename it over the config)")]
    gateway = data.get("gateway") if isinstance(data, dict) else None
    if isinstance(gateway, dict) and gateway.get("require_end_marker") is True and not _ends_with_marker(text):
        return [ConfigIssue(file=name, path="gateway.require_end_marker",
                            message=f"the file does not end with a {END_MARKER} line: not applied until the writer finishes")]
    return []


def parse_config_file(
    raw: bytes,
    name: str,
    env: Mapping[str, str] | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
    replaces_running: bool = False,
) -> Config:
    """Validate the bytes of a config file (read once by the caller, who may hash them)."""
    try:
        text = raw.decode("utf-8-sig")  # tolerate a BOM from Windows editors
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(file=name, path="", message="file is not valid UTF-8", line=line)]) from None
    return parse_config_text(text, name, env, extra_checks,
                             file_checks="reload" if replaces_running else "file")


def load_config(
    path: str | os.PathLike[str],
    env: Mapping[str, str] | None = None,
    extra_checks: Sequence[ExtraCheck] = (),
) -> Config:
    """Load and validate a config file; raise ConfigError listing every issue."""
    name = os.fspath(path)
    return parse_config_file(read_config_file(name), name, env, extra_checks)


def default_config(env: Mapping[str, str] | None = None) -> Config:
    """The embedded default served by `gateway run` without -c."""
    text = importlib.resources.files("gateway.config").joinpath("default.yaml").read_text("utf-8")
    return parse_config_text(text, "<default.yaml>", env)


# ---------------------------------------------------------------- serialising


def _escape(obj: Any) -> Any:
    # Values are already expanded; escape `${` so loading the dump does not expand them again.
    if isinstance(obj, str):
        return obj.replace("${", "$${")
    if isinstance(obj, list):
        return [_escape(v) for v in obj]
    if isinstance(obj, dict):
        return {_escape(k): _escape(v) for k, v in obj.items()}
    return obj


def dump_config(config: Config) -> str:
    """YAML text that loads back to an equal Config (for the last-known-good file).

    It holds expanded values, secrets included: write it with mode 0600.
    """
    data = _escape(msgspec.to_builtins(config))
    text = yaml.dump(data, Dumper=yaml.CSafeDumper if yaml.__with_libyaml__ else yaml.SafeDumper,
                     sort_keys=False, allow_unicode=True, default_flow_style=False)
    return text + END_MARKER + "\n"  # complete, whatever require_end_marker says


_msgpack_encoder = msgspec.msgpack.Encoder()
_msgpack_decoder = msgspec.msgpack.Decoder(Config)


def config_to_bytes(config: Config) -> bytes:
    """Snapshot for the master -> worker pipe."""
    return _msgpack_encoder.encode(config)


def config_from_bytes(data: bytes) -> Config:
    """Inverse of config_to_bytes. No cross checks: snapshots are validated before they are sent."""
    return _msgpack_decoder.decode(data)
