"""A few keys changed in etcd, checked as the Admin API's writes in file mode are: only the part
of the config they can affect (``candidate_config``), not the whole state composed again.

The running config of etcd mode is in the keys' creation order (``keys.compose``), so a new
resource comes last in its section, as ``candidate_config`` puts it, and the result equals the
whole state's compose (``tests/etcd/test_etcd_incremental.py`` checks this); the workers then
compile only the changed route. The issues of a refused change are placed
at the keys they come from, as ``compose`` places them: a caller cannot tell which check ran.
"""
from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from typing import Any

import msgspec

from gateway.admin.api import StoreError
from gateway.admin.api.resources import KINDS, Kind
from gateway.config import Config, ConfigError, ConfigIssue, expand_env_in_data
from gateway.etcd.keys import WRITE_ORDER, Places, decode_value, key_of, parse_key
from gateway.server.candidate import candidate_config

#: More changed keys than this at once (an import, a restore) are checked as one whole state.
MAX_CHANGES = 32


def changed_config(running: Config, prefix: str, key: str, raw: bytes | None,
                   validate: Callable[[Any], Config]) -> Config:
    """``running`` (the config of some etcd state) with ``key`` set to ``raw`` (deleted: None),
    checked; a ConfigError names the keys at fault as ``compose`` would."""
    parsed = parse_key(prefix, key)
    if isinstance(parsed, str):
        raise ConfigError([ConfigIssue(file=key, path="", message=parsed)])
    kind, name = parsed
    value = None
    if raw is not None:
        try:
            value = decode_value(kind, name, raw)
        except ValueError as exc:
            raise ConfigError([ConfigIssue(file=key, path="", message=str(exc))]) from None
        _, problems = expand_env_in_data(value, os.environ, key)
        if problems:
            raise ConfigError(problems)
    try:
        return candidate_config(running, kind, name, value, validate)
    except StoreError as exc:
        places = _places(running, prefix, kind, name, removal=value is None)
        source = f"etcd {prefix}"
        raise ConfigError([places.locate(ConfigIssue(file=source, path=e["config_path"], message=e["message"]))
                           for e in exc.errors]) from None


def state_config(running: Config, prefix: str, base: dict[str, bytes], kvs: dict[str, bytes],
                 keys: Iterable[str], recreated: Iterable[str], validate: Callable[[Any], Config]
                 ) -> Config | None:
    """The config of the state ``kvs``, from ``running`` (the config of the state ``base``) and
    the ``keys`` that differ between them, each checked alone (``changed_config``); ``recreated``:
    keys deleted and created again since ``base``, which now come last in their section. A key
    refused is tried again once the others are in (what a burst adds may be what it needs);
    the ConfigError names every key still refused, as the whole state's check would. None when
    the whole state must be checked instead: a recreated key of a kind whose order this cannot
    redo, or a key that passed only on a second pass."""
    config = running
    moved = {key for key in recreated if key in base and key in kvs}
    pending = changes_in_order(base, kvs, set(keys) | moved, moved)
    retried = False
    while pending:
        refused: list[tuple[str, bytes | None]] = []
        issues: list[ConfigIssue] = []
        for key, raw in pending:
            start = config
            if key in moved:  # created again: it takes its place among the new ones
                moved_config = moved_last(config, prefix, key)
                if moved_config is None:
                    return None
                start = moved_config
            try:
                config = changed_config(start, prefix, key, raw, validate)
            except ConfigError as exc:
                refused.append((key, raw))
                issues += exc.issues
        if len(refused) == len(pending):
            raise ConfigError(issues)
        pending, retried = refused, retried or bool(refused)
    # a key taken in on a second pass may have come after one created later: the whole
    # state's check has the creation order
    return None if retried else config


def moved_last(config: Config, prefix: str, key: str) -> Config | None:
    """``config`` with the resource of ``key`` moved to the end of its list (where a key created
    again is in creation order); None for a kind that is not a list of resources by name."""
    parsed = parse_key(prefix, key)
    if isinstance(parsed, str) or parsed[0].name == "global_rules":
        return None
    kind, name = parsed
    field = kind.key_field
    if field is None:
        return None
    items = list(getattr(config, kind.name))
    at = [i for i, item in enumerate(items) if getattr(item, field) == name]
    if not at:
        return config
    items.append(items.pop(at[0]))
    return msgspec.structs.replace(config, **{kind.name: items})


def changes_in_order(base: dict[str, bytes], kvs: dict[str, bytes], keys: Iterable[str],
                     moved: Iterable[str] = ()) -> list[tuple[str, bytes | None]]:
    """The keys whose value differs between ``base`` and ``kvs``: puts first, what others name
    before what names it (WRITE_ORDER; within a kind in creation order, ``kvs``'s), then deletes
    the other way round, so that a burst that ends valid passes through valid states (else the
    caller checks the whole state)."""
    rank = {kind: i for i, kind in enumerate(WRITE_ORDER)}

    def order(key: str) -> int:
        kind = key.rsplit("/", 2)[-2] if key.count("/") >= 2 else ""
        return rank.get(kind, len(rank))

    wanted, again = set(keys), set(moved)  # ``moved``: created again, maybe with the same value
    created = [k for k in kvs if k in wanted and (base.get(k) != kvs[k] or k in again)]
    puts = sorted(created, key=order)  # stable: creation order within a kind
    deletes = sorted((k for k in keys if k not in kvs and k in base), key=lambda k: (-order(k), k))
    return [(k, kvs[k]) for k in puts] + [(k, None) for k in deletes]


def _places(running: Config, prefix: str, kind: Kind, name: str, removal: bool) -> Places:
    """Which key each resource of the checked document (``running`` changed: a new one last)
    came from."""
    places = Places()
    for each in KINDS.values():
        if each.key_field is None:
            for item in set(getattr(running, each.name) or {}) | ({name} if each is kind else set()):
                places.add((each.name, item), key_of(prefix, each, item))
            continue
        items = running.global_rule_list if each.name == "global_rules" else getattr(running, each.name)
        listed = [getattr(item, each.key_field) for item in items]
        if each is kind:
            listed = [item for item in listed if item != name] if removal else \
                listed + ([name] if name not in listed else [])
        for i, item in enumerate(listed):
            places.add((each.name, i), key_of(prefix, each, item))
    return places
