"""etcd mode checks a few changed keys on the part of the config they can affect
(``incremental.changed_config``); the result must be the whole state's compose, the reference:
random writes of every kind, valid and not, new names (last in creation order) sorting before,
between and after the others, agree on the config produced or on every issue reported (with the key it is placed at)."""
from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import orjson
from hypothesis import HealthCheck, given, settings

from gateway.admin.api.resources import KINDS
from gateway.config import Config, ConfigError, decode_config
from gateway.etcd.incremental import changed_config, changes_in_order, state_config
from gateway.etcd.keys import compose, document_resources, key_of
from gateway.server.master import CHECKS
from tests.config.test_write_check import BASE, WRITES

PREFIX = "/t"
GATEWAY = BASE["gateway"]


def validate(data: Any) -> Config:
    return decode_config(data, f"etcd {PREFIX}", extra_checks=CHECKS)


STATE = {key_of(PREFIX, kind, name): orjson.dumps(value) for kind, name, value in document_resources(BASE)}
#: names that sort before, between and after the others
NAMES = st.sampled_from(["0", "r05", "r3x", "zz"])


def outcome(check: Any, *args: Any) -> Any:
    try:
        return "ok", check(*args).fingerprint()
    except ConfigError as exc:
        return "refused", sorted((i.file, i.path, i.message) for i in exc.issues)


def whole(kvs: dict[str, bytes]) -> Config:
    return compose(PREFIX, GATEWAY, kvs.items(), validate)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(WRITES, st.tuples(st.sampled_from(["routes", "upstreams", "consumers"]), NAMES,
                                            st.none() | st.sampled_from([{"uri": "/n", "upstream_id": "a"},
                                                                         {"nodes": [{"host": "h", "port": 1}]}, {}]))),
                min_size=1, max_size=4))
def test_a_changed_key_checked_alone_equals_the_whole_state(writes: list[Any]) -> None:
    kvs = dict(STATE)
    config = whole(kvs)
    for kind, name, value in writes:
        key = key_of(PREFIX, KINDS[kind], name)
        raw = None if value is None else orjson.dumps(value)
        after = dict(kvs)
        if raw is None:
            after.pop(key, None)
        else:
            after[key] = raw
        if raw is None and key not in kvs:
            continue  # not a change: the watch never checks it
        part = outcome(changed_config, config, PREFIX, key, raw, validate)
        assert part == outcome(whole, after), (kind, name, value)
        if part[0] == "ok":
            kvs, config = after, changed_config(config, PREFIX, key, raw, validate)


def test_a_burst_applies_what_others_name_first() -> None:
    base = dict(STATE)
    kvs = {**base, key_of(PREFIX, KINDS["routes"], "a"): b'{"uri": "/n", "upstream_id": "c"}',
           key_of(PREFIX, KINDS["upstreams"], "c"): b'{"nodes": [{"host": "h", "port": 1}]}'}
    del kvs[key_of(PREFIX, KINDS["routes"], "r0")]
    changes = changes_in_order(base, kvs, set(kvs) | set(base))
    assert [k for k, _ in changes] == ["/t/upstreams/c", "/t/routes/a", "/t/routes/r0"]
    config = whole(base)
    for key, raw in changes:
        config = changed_config(config, PREFIX, key, raw, validate)
    assert config.fingerprint() == whole(kvs).fingerprint()


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(WRITES, st.tuples(st.sampled_from(["routes", "upstreams"]), NAMES,
                                            st.sampled_from([{"uri": "/n", "upstream_id": "a"},
                                                             {"nodes": [{"host": "h", "port": 1}]}]))),
                min_size=1, max_size=5),
       st.sets(st.integers(0, 4)))
def test_a_burst_checked_change_by_change_equals_the_whole_state(writes: list[Any], recreate: set[int]) -> None:
    """Several keys changed at once, some deleted and created again (they come last): the
    running config changed key by key is the whole state's, or both refuse it, naming at least
    the keys the whole check names (unless the burst is left to the whole check)."""
    base = dict(STATE)
    kvs = dict(base)
    recreated: set[str] = set()
    for i, (kind, name, value) in enumerate(writes):
        key = key_of(PREFIX, KINDS[kind], name)
        if value is None:
            kvs.pop(key, None)
        else:
            if i in recreate and key in kvs:
                del kvs[key]  # deleted, then created again: last in creation order
            if key not in kvs and key in base:
                recreated.add(key)  # as the watch sees it: created after it was deleted
            kvs[key] = orjson.dumps(value)
    keys = {k for k in set(base) | set(kvs) if base.get(k) != kvs.get(k)} | recreated
    try:
        part: Any = state_config(whole(base), PREFIX, base, kvs, keys, recreated, validate)
        part = None if part is None else ("ok", part.fingerprint())
    except ConfigError as exc:
        part = ("refused", sorted({i.file for i in exc.issues}))
    if part is None:
        return  # left to the whole check
    reference = outcome(whole, kvs)
    if reference[0] == "ok":
        assert part == reference
    else:
        # the whole check stops at its first failing phase (a key not a resource hides
        # another's bad reference): each key alone goes through every phase
        assert part[0] == "refused"
        if f"etcd {PREFIX}" not in part[1]:  # the router's messages name no key, either check
            assert {file for file, _path, _message in reference[1]} <= set(part[1])
