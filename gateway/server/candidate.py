"""The config an Admin API write would make, checked by the file's checker: the running config
with one resource changed, through ``Master.validate``. Any store (the file, etcd) validates a
write with :func:`candidate_config` before it keeps anything.

The checker is not run on the whole config but on the part the write can affect (see
``write_scope``): every section except the routes, plus the routes the changed resource takes
part in. Routes are the only section that grows to thousands; a route depends on the upstreams,
consumers, global rules and plugin metadata (all kept), never on another route. So the checks
that ran are the same functions as for a file, on fewer routes; issues are reported at the
routes' places in the whole config. :func:`whole_candidate_config` checks everything and is the
reference the tests compare this with (``tests/config/test_write_check.py``).
"""
from __future__ import annotations

import operator
import os
import re
from collections.abc import Callable, Sequence
from typing import Any

import msgspec

from gateway.admin.api import StoreError
from gateway.admin.api.resources import Kind
from gateway.config import Config, ConfigError, ConfigIssue, Route, expand_env_in_data, format_path
from gateway.server.write_scope import routes_in_scope

SOURCE = "admin API"

_ROUTE_AT = re.compile(r"routes\[(\d+)\]")
#: The router's own messages count enabled routes ("routes: route 3: path ...").
_ROUTER_INDEX = re.compile(r"^routes: route (\d+):")


def candidate_config(running: Config, kind: Kind, name: str, value: Any,
                     validate: Callable[[Any], Config]) -> Config:
    """``running`` with one resource replaced, added (``value``) or removed (None), validated
    by ``validate``; a StoreError (400, or 409 for a removal the config cannot do without)
    names each issue's path in the body and in the document."""
    value = _expanded(value)
    routes = running.routes
    target = _position(running, kind, name)
    data = dict(msgspec.to_builtins(msgspec.structs.replace(running, routes=[])))
    if kind.name == "routes":
        positions = [] if value is None else [target]
        data["routes"] = [] if value is None else [value]
    else:
        positions = routes_in_scope(running, kind.name, name, value is None)
        data["routes"] = [msgspec.to_builtins(routes[i]) for i in positions]
        _change_section(data, running, kind, name, value)
    try:
        checked = validate(data)
    except ConfigError as exc:
        after = _routes_after(running, kind, target, value)
        issues = [_relocated(i, positions, after) for i in exc.issues]
        raise invalid(issues, _prefix(kind, name, target), 409 if value is None else 400) from None
    return _merged(running, checked, kind, target, value)


def whole_candidate_config(running: Config, kind: Kind, name: str, value: Any,
                           validate: Callable[[Any], Config]) -> Config:
    """The same write checked on the whole config: what :func:`candidate_config` must equal."""
    value = _expanded(value)
    data = dict(msgspec.to_builtins(running))
    target = _position(running, kind, name)
    _change_section(data, running, kind, name, value)
    try:
        return validate(data)
    except ConfigError as exc:
        raise invalid(exc.issues, _prefix(kind, name, target), 409 if value is None else 400) from None


def _expanded(value: Any) -> Any:
    if value is None:
        return None
    value, issues = expand_env_in_data(value, os.environ, SOURCE)
    if issues:
        errors = [{"path": i.path, "config_path": i.path, "message": i.message} for i in issues]
        raise StoreError(400, f"invalid: {issues[0].path}: {issues[0].message}", errors)
    return value


def _items(running: Config, kind: Kind) -> list[Any]:
    if kind.name == "global_rules":
        return running.global_rule_list
    return list(getattr(running, kind.name))


def _position(running: Config, kind: Kind, name: str) -> int:
    """Where the resource is (or goes: the end) in its section; -1 for plugin_metadata."""
    if kind.key_field is None:
        return -1
    items = _items(running, kind)
    names = list(map(operator.attrgetter(kind.key_field), items))  # 10k routes: C speed
    return names.index(name) if name in names else len(items)


def _prefix(kind: Kind, name: str, target: int) -> tuple[str | int, ...]:
    return (kind.name, name) if kind.key_field is None else (kind.name, target)


def _change_section(data: dict[str, Any], running: Config, kind: Kind, name: str, value: Any) -> None:
    """The change applied to the plain data of the config (every section but ``routes`` whole)."""
    if kind.key_field is None:
        mapping = dict(data.get(kind.name) or {})
        if value is None:
            mapping.pop(name, None)
        else:
            mapping[name] = value
        data[kind.name] = mapping
        return
    if kind.name == "global_rules":
        items = [msgspec.to_builtins(r) for r in running.global_rule_list]
    else:
        items = list(data.get(kind.name) or [])
    found = [i for i, v in enumerate(items) if v.get(kind.key_field) == name]
    if value is None:
        if found:
            del items[found[0]]
    elif found:
        items[found[0]] = value
    else:
        items.append(value)
    data[kind.name] = items


def _routes_after(running: Config, kind: Kind, target: int, value: Any) -> list[Any]:
    """The routes of the whole candidate config, as far as their count and enabled flags go
    (the changed one as a placeholder): where issues of the checked routes belong."""
    routes: list[Any] = list(running.routes)
    if kind.name != "routes":
        return routes
    if value is None:
        del routes[target:target + 1]
    else:
        placeholder = Route(id="-", uri="/", status=0 if isinstance(value, dict) and value.get("status") == 0 else 1)
        if target < len(routes):
            routes[target] = placeholder
        else:
            routes.append(placeholder)
    return routes


def _relocated(issue: ConfigIssue, positions: Sequence[int], routes: list[Any]) -> ConfigIssue:
    """An issue of the checked routes at its place in the whole config."""
    def whole(match: re.Match[str]) -> str:
        k = int(match.group(1))
        return f"routes[{positions[k]}]" if k < len(positions) else match.group(0)

    def router_index(match: re.Match[str]) -> str:
        # k-th enabled checked route -> its index among the whole config's enabled routes
        enabled = [p for p in positions if p < len(routes) and routes[p].status != 0]
        k = int(match.group(1))
        if k >= len(enabled):
            return match.group(0)
        at = sum(1 for r in routes[:enabled[k]] if r.status != 0)
        return f"routes: route {at}:"

    path = _ROUTE_AT.sub(whole, issue.path)
    message = _ROUTER_INDEX.sub(router_index, _ROUTE_AT.sub(whole, issue.message))
    if path == issue.path and message == issue.message:
        return issue
    return msgspec.structs.replace(issue, path=path, message=message)


def _merged(running: Config, checked: Config, kind: Kind, target: int, value: Any) -> Config:
    """The new config: the running one's unchanged routes (the same objects: what the workers
    already compiled) with the checked sections."""
    if kind.name != "routes":
        return msgspec.structs.replace(checked, routes=running.routes)
    routes = list(running.routes)
    if value is None:
        del routes[target:target + 1]
    elif target < len(routes):
        routes[target] = checked.routes[0]
    else:
        routes.append(checked.routes[0])
    return msgspec.structs.replace(running, routes=routes)


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
