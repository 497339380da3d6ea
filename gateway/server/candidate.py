"""The config an Admin API write would make, checked whole: the running config with one
resource changed, through the same checker as a file (``Master.validate``). Any store (the
file today, etcd later) validates a write with this before it keeps anything."""
from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from gateway.admin.api import StoreError
from gateway.admin.api.resources import Kind
from gateway.config import Config, ConfigError, ConfigIssue, expand_env_in_data, format_path

SOURCE = "admin API"


def candidate_config(running: Config, kind: Kind, name: str, value: Any,
                     validate: Callable[[Any], Config]) -> Config:
    """``running`` with one resource replaced, added (``value``) or removed (None), validated
    by ``validate``; a StoreError (400, or 409 for a removal the config cannot do without)
    names each issue's path in the body and in the document."""
    data = dict(msgspec.to_builtins(running))
    prefix: tuple[str | int, ...]
    if value is not None:
        value, issues = expand_env_in_data(value, os.environ, SOURCE)
        if issues:
            errors = [{"path": i.path, "config_path": i.path, "message": i.message} for i in issues]
            raise StoreError(400, f"invalid: {issues[0].path}: {issues[0].message}", errors)
    if kind.key_field is None:
        mapping = dict(data.get(kind.name) or {})
        prefix = (kind.name, name)
        if value is None:
            mapping.pop(name, None)
        else:
            mapping[name] = value
        data[kind.name] = mapping
    else:
        if kind.name == "global_rules":
            items = [msgspec.to_builtins(r) for r in running.global_rule_list]
        else:
            items = list(data.get(kind.name) or [])
        found = [i for i, v in enumerate(items) if v.get(kind.key_field) == name]
        index = found[0] if found else len(items)
        prefix = (kind.name, index)
        if value is None:
            del items[index]
        elif found:
            items[index] = value
        else:
            items.append(value)
        data[kind.name] = items
    try:
        return validate(data)
    except ConfigError as exc:
        # A delete the rest of the config cannot do without conflicts with it.
        raise invalid(exc.issues, prefix, 409 if value is None else 400) from None


def invalid(issues: Sequence[ConfigIssue], prefix: tuple[str | int, ...], status: int) -> StoreError:
    base = format_path(prefix)
    errors = []
    for issue in issues:
        path = issue.path
        if path == base:
            path = ""
        elif path.startswith(base + ".") or path.startswith(base + "["):
            path = path[len(base):].lstrip(".")
        errors.append({"path": path, "config_path": issue.path, "message": issue.message})
    head = "; ".join(f"{e['config_path'] if status == 409 else e['path']}: {e['message']}"
                     if e["path"] or status == 409 else e["message"] for e in errors[:3])
    more = f" (and {len(errors) - 3} more)" if len(errors) > 3 else ""
    what = "still used: " if status == 409 else "invalid: "
    return StoreError(status, what + head + more, errors)
