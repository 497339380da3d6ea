"""A new config version that changes only routes, compiled from the previous one: the changed
routes are compiled (their plugins and inline upstream) and set in a copy of the router
(``Router.edited``); every other route keeps its compiled entry, and nothing else is rebuilt.

A removed or disabled route leaves its slot empty (the router skips it), so the other routes keep
their slots; a new route takes the next slot, which keeps the router's order (definition order
breaks ties) only when it is the last in the config. Anything else is compiled whole.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace
from typing import Any

from gateway.config import Config
from gateway.proxy.runtime import CompiledParts, compile_route, route_spec

#: Empty slots beyond this (and beyond the routes in use) are compacted by a whole compile.
MAX_EMPTY_SLOTS = 1024


def with_route_changes(parts: CompiledParts, config: Config,
                       changes: Sequence[tuple[str, str, Any]]) -> CompiledParts | None:
    """``parts`` for ``config``, which differs from the previous version by ``changes``
    (section, route id, route or None); None when it must be compiled whole."""
    if any(section != "routes" for section, _key, _value in changes):
        return None
    slots = dict(parts.slots)
    entries = list(parts.entries)
    removed = {key for _s, key, route in changes if route is None}
    # new routes, and routes removed and added again (moved to the end: an etcd key recreated)
    added = [route for _s, key, route in changes
             if route is not None and route.status != 0 and (key not in slots or key in removed)]
    if added and not _appended(config, added):
        return None
    edits: list[tuple[int, Any]] = []
    for _section, key, route in changes:
        slot = slots.get(key)
        if route is None or route.status == 0:
            if slot is not None:
                edits.append((slot, None))
                del slots[key]
            continue
        at = len(entries) if slot is None else slot
        entry = compile_route(route, at, at, parts.groups, parts.global_plugins, parts.env,
                              parts.health)
        if slot is None:
            slots[key] = at
            entries.append(entry)
        else:
            entries[at] = entry
        edits.append((at, route_spec(route)))
    if len(entries) - len(slots) > max(MAX_EMPTY_SLOTS, len(slots)):
        return None
    return replace(parts, entries=entries, router=parts.router.edited(edits), slots=slots)


def _appended(config: Config, added: list[Any]) -> bool:
    """Whether the new enabled routes are the last enabled routes of the config, in order."""
    tail: list[Any] = []
    for route in reversed(config.routes):
        if len(tail) == len(added):
            break
        if route.status != 0:
            tail.append(route)
    tail.reverse()
    return [r.id for r in tail] == [r.id for r in added] and all(a is b or a == b for a, b in zip(tail, added))
