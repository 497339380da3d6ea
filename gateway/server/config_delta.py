"""Config versions shipped to the workers as what changed since the version before.

A write through the Admin API (whatever the store: the file or etcd) changes one resource, yet a
snapshot of 10k routes is megabytes to encode, send and decode in every worker. So the master
sends a version as a *delta* (``{"type": "delta", "version": v, "base": v - 1, "changes":
[[section, key, resource or None], ...]}``) to a worker that was sent version v - 1, and a full
snapshot (``"type": "config"``) otherwise: a new or restarted worker, a gateway settings change,
global rules or plugin metadata changed (they touch every route), many changes at once, or a
list whose order changed other than by adding at its end. A worker that does not run the base
version answers ``{"type": "resync"}`` and gets the full snapshot.

:func:`changes_between` and :func:`apply_changes` are the two halves: the worker rebuilds the
master's config exactly (same lists, same order), so a delta and a snapshot of a version give
the same config.
"""
from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any

import msgspec

from gateway.config import Config, Consumer, Route, Ssl, Upstream, config_to_bytes
from gateway.server.ipc import encode_frame

#: The sections a delta carries, with the field that names a resource and its type.
SECTIONS: dict[str, tuple[str, type[msgspec.Struct]]] = {
    "upstreams": ("id", Upstream), "routes": ("id", Route),
    "consumers": ("username", Consumer), "ssls": ("id", Ssl),
}
#: More changes than this are sent as a snapshot.
MAX_CHANGES = 256

#: (section, key, the resource, or None when it was removed)
Change = tuple[str, str, Any]


def changes_between(old: Config, new: Config) -> list[Change] | None:
    """What turns ``old`` into ``new``; None when a snapshot must be sent instead."""
    if old.gateway != new.gateway or old.global_rules != new.global_rules \
            or old.plugin_metadata != new.plugin_metadata:
        return None
    out: list[Change] = []
    for section, (field, _type) in SECTIONS.items():
        before, after = getattr(old, section), getattr(new, section)
        if before is after:
            continue
        changes = _list_changes(before, after, field)
        if changes is None or len(out) + len(changes) > MAX_CHANGES:
            return None
        out += [(section, key, value) for key, value in changes]
    return out


def apply_changes(config: Config, changes: Sequence[Change]) -> Config:
    """``config`` with ``changes`` applied: a changed resource in its place, a new one at the end
    of its list, a removed one gone."""
    by_section: dict[str, list[tuple[str, Any]]] = {}
    for section, key, value in changes:
        by_section.setdefault(section, []).append((key, value))
    lists = {section: _applied(list(getattr(config, section)), SECTIONS[section][0], items)
             for section, items in by_section.items()}
    return msgspec.structs.replace(config, **lists)


def decode_changes(raw: Sequence[Sequence[Any]]) -> list[Change]:
    """A delta's changes as read from the control channel: plain data back into resources."""
    return [(section, key, None if value is None else msgspec.convert(value, SECTIONS[section][1]))
            for section, key, value in raw]


def _key(item: Any, field: str) -> str:
    key: str = getattr(item, field)
    return key


def _list_changes(before: Sequence[Any], after: Sequence[Any], field: str) -> list[tuple[str, Any]] | None:
    quick = _one_edit(before, after, field)
    if quick is not None:
        return quick
    old = {_key(item, field): item for item in before}
    if len(old) != len(before):
        return None
    changes: list[tuple[str, Any]] = []
    keys: list[str] = []
    for item in after:
        key = _key(item, field)
        keys.append(key)
        previous = old.get(key)
        if previous is None or (previous is not item and previous != item):
            changes.append((key, item))
    kept = set(keys)
    changes += [(key, None) for key in old if key not in kept]
    # the worker must rebuild this very order
    if [k for k, _ in _applied_keys(list(old), changes)] != keys:
        return _moves(old, after, keys, field)
    return changes


def _moves(old: dict[str, Any], after: Sequence[Any], keys: list[str], field: str
           ) -> list[tuple[str, Any]] | None:
    """The changes when ``after`` keeps the old order but for items moved to its end (an etcd
    key deleted and created again comes last): each moved one removed and added again, after
    the new ones before it; None when the order changed otherwise."""
    position = {key: i for i, key in enumerate(old)}
    # the longest start of ``after`` that is old items in their old order stays in place
    start, last = 0, -1
    for key in keys:
        at = position.get(key)
        if at is None or at < last:
            break
        start, last = start + 1, at
    staying = set(keys[:start])
    changes: list[tuple[str, Any]] = [(key, item) for key, item in zip(keys[:start], after[:start])
                                      if old[key] is not item and old[key] != item]
    changes += [(key, None) for key in old if key not in staying]
    changes += [(key, item) for key, item in zip(keys[start:], after[start:])]
    if [k for k, _ in _applied_keys(list(old), changes)] != keys:
        return None
    return changes


def _one_edit(before: Sequence[Any], after: Sequence[Any], field: str) -> list[tuple[str, Any]] | None:
    """The changes when ``after`` is ``before`` with one item replaced in place, added at the end
    or removed, the others the same (an Admin API write); None when it is not that. The lists
    are compared at C speed (list equality tries identity first)."""
    n = len(before)
    if len(after) == n + 1 and before == after[:n]:
        key = _key(after[n], field)
        return None if key in list(map(operator.attrgetter(field), before)) else [(key, after[n])]
    if len(after) == n:
        differ = list(map(operator.is_not, before, after))
        count = differ.count(True)
        if count == 0:
            return []
        i = differ.index(True)
        if count == 1 and _key(before[i], field) == _key(after[i], field):
            return [] if before[i] == after[i] else [(_key(after[i], field), after[i])]
    if len(after) == n - 1 and n:
        differ = list(map(operator.is_not, before[:n - 1], after))
        i = differ.index(True) if True in differ else n - 1
        if before[i + 1:] == after[i:]:
            return [(_key(before[i], field), None)]
    return None


def _applied_keys(keys: list[str], changes: list[tuple[str, Any]]) -> list[tuple[str, Any]]:
    return _applied([(k, None) for k in keys], None, changes)


def _applied(items: list[Any], field: str | None, changes: Sequence[tuple[str, Any]]) -> list[Any]:
    """``items`` (resources named by ``field``, or (key, value) pairs when it is None) with the
    changes applied in place: a changed one where it was, a new one at the end, removed ones
    gone."""
    keys = list(map(operator.itemgetter(0) if field is None else operator.attrgetter(field), items))
    removed = False
    for key, value in changes:
        try:
            at = keys.index(key)
        except ValueError:
            at = -1
        if value is None:
            if at >= 0:
                keys[at] = None  # a key is a string: None marks the place as empty
                removed = True
        elif at >= 0:
            items[at] = (key, value) if field is None else value
        else:
            keys.append(key)
            items.append((key, value) if field is None else value)
    return [item for k, item in zip(keys, items) if k is not None] if removed else items


class Shipment:
    """The master's current config version as frames for the workers."""

    def __init__(self) -> None:
        self.config: Config | None = None
        self.version = 0
        #: the changes from version - 1, when they can be sent as a delta
        self.changes: list[Change] | None = None
        self._payload: bytes | None = None

    def adopt(self, config: Config, version: int, changes: list[Change] | None = None,
              known: bool = False) -> None:
        """``known``: ``changes`` is ``changes_between`` the config adopted last and this one
        (the caller had it already)."""
        previous = self.config
        follows = previous is not None and version == self.version + 1
        if follows and previous is not None and not known:
            changes = changes_between(previous, config)
        self.changes = changes if follows else None
        self.config, self.version, self._payload = config, version, None

    @property
    def payload(self) -> bytes:
        """The full snapshot (encoded once per version, when a worker needs it)."""
        if self._payload is None:
            assert self.config is not None
            self._payload = config_to_bytes(self.config)
        return self._payload

    def frame(self, sent: int, addresses: dict[str, list[str]]) -> bytes:
        """The frame for a worker that was last sent version ``sent``."""
        if self.changes is not None and sent == self.version - 1:
            return encode_frame({"type": "delta", "version": self.version, "base": sent,
                                 "changes": self.changes, "addresses": addresses})
        return self.full_frame(addresses)

    def full_frame(self, addresses: dict[str, list[str]]) -> bytes:
        return encode_frame({"type": "config", "version": self.version, "config": self.payload,
                             "addresses": addresses})
