"""How the resources sit in etcd: one key per resource, ``<prefix>/<kind>/<name>``
(``/gateway/routes/users``), its value the resource as JSON (the body the Admin API takes).

A state read from etcd becomes a config document here (the node file's ``gateway`` section plus
every resource, in the order the keys were created: ``create_revision``, the same on every node,
so that a new resource comes last in its section and the routes' definition order, which breaks
ties between routes of equal priority, is the same on every node), and the checker's issues, which name document paths
(``routes[3].uri``), are turned back into the key they came from (``/gateway/routes/a: uri``).
"""
from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

import orjson

from gateway.admin.api.resources import KINDS, Kind
from gateway.config import ConfigError, ConfigIssue, expand_env_in_data, format_path

#: The order resources are written in by `gateway config import`: what others name comes first,
#: so a batched import passes through states that are valid.
WRITE_ORDER = ("upstreams", "consumers", "ssls", "plugin_metadata", "global_rules", "routes")


def key_of(prefix: str, kind: Kind, name: str) -> str:
    return f"{prefix}/{kind.name}/{name}"


def parse_key(prefix: str, key: str) -> tuple[Kind, str] | str:
    """(kind, name) of a key, or why it is not a resource's key."""
    rest = key[len(prefix) + 1:]
    kind_name, _, name = rest.partition("/")
    kind = KINDS.get(kind_name)
    if kind is None:
        return f"{kind_name!r} is not a resource kind (expected one of {', '.join(KINDS)})"
    if not name or "/" in name:
        return f"expected {prefix}/{kind_name}/<name>"
    return kind, name


def decode_value(kind: Kind, name: str, raw: bytes) -> Any:
    """The resource in a value (ValueError: why it is not one); its name comes from the key."""
    try:
        value = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        raise ValueError(f"the value is not JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError("the value must be a JSON object")
    if kind.key_field is not None:
        given = value.get(kind.key_field, name)
        if given != name:
            raise ValueError(f"{kind.key_field}: {given!r} differs from {name!r} in the key")
        value = {kind.key_field: name, **value}
    return value


class Places:
    """Which key each resource of a composed document came from."""

    def __init__(self) -> None:
        self.bases: list[tuple[str, str]] = []  # (document path, key)

    def add(self, path: tuple[str | int, ...], key: str) -> None:
        self.bases.append((format_path(path), key))

    def locate(self, issue: ConfigIssue) -> ConfigIssue:
        for base, key in self.bases:
            if issue.path == base:
                return ConfigIssue(file=key, path="", message=issue.message)
            if issue.path.startswith(base + ".") or issue.path.startswith(base + "["):
                return ConfigIssue(file=key, path=issue.path[len(base):].lstrip("."), message=issue.message)
        return issue


def sections(prefix: str, kvs: Iterable[tuple[str, bytes]], expand: bool
             ) -> tuple[dict[str, Any], Places, list[ConfigIssue]]:
    """The resources of a state (in creation order) as config sections; ``expand``:
    ``${VAR}`` expanded as in a file (for the running config; not for an export)."""
    data: dict[str, Any] = {kind.name: ({} if kind.key_field is None else []) for kind in KINDS.values()}
    places = Places()
    issues: list[ConfigIssue] = []
    for key, raw in kvs:
        parsed = parse_key(prefix, key)
        if isinstance(parsed, str):
            issues.append(ConfigIssue(file=key, path="", message=parsed))
            continue
        kind, name = parsed
        try:
            value = decode_value(kind, name, raw)
        except ValueError as exc:
            issues.append(ConfigIssue(file=key, path="", message=str(exc)))
            continue
        if expand:
            value, problems = expand_env_in_data(value, os.environ, key)
            if problems:
                issues.extend(problems)
                continue
        section = data[kind.name]
        if kind.key_field is None:
            places.add((kind.name, name), key)
            section[name] = value
        else:
            places.add((kind.name, len(section)), key)
            section.append(value)
    return data, places, issues


def compose(prefix: str, gateway: dict[str, Any], kvs: Iterable[tuple[str, bytes]],
            validate: Any) -> Any:
    """The config of one etcd state: ``gateway`` (the node file's settings) and the resources,
    checked by ``validate`` (the checker every config goes through); a ConfigError names the
    keys at fault."""
    data, places, issues = sections(prefix, kvs, expand=True)
    if issues:
        raise ConfigError(issues)
    try:
        return validate({"gateway": gateway, **data})
    except ConfigError as exc:
        raise ConfigError([places.locate(issue) for issue in exc.issues]) from None


def document_resources(data: Any) -> list[tuple[Kind, str, Any]]:
    """Every resource of a config document (plain data, as written) with its kind and name, in
    WRITE_ORDER; the one-rule form of ``global_rules`` is the rule "1", as the Admin API shows."""
    out: list[tuple[Kind, str, Any]] = []
    if not isinstance(data, dict):
        return out
    for kind_name in WRITE_ORDER:
        kind = KINDS[kind_name]
        section = data.get(kind_name)
        if kind_name == "global_rules" and isinstance(section, dict):
            section = [{"id": "1", **section}] if section.get("plugins") else []
        if kind.key_field is None:
            out += [(kind, str(name), value) for name, value in (section or {}).items()]
        else:
            out += [(kind, str(value[kind.key_field]), value) for value in section or []]
    return out
