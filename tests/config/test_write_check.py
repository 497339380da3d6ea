"""An Admin API write is checked on the part of the config it can affect (candidate_config); the
result must be the one checking the whole config gives (whole_candidate_config): random writes
of every kind, valid and not, agree on the config produced or on every issue reported."""
from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
from hypothesis import HealthCheck, given, settings

from gateway.admin.api import StoreError
from gateway.admin.api.resources import KINDS
from gateway.config import Config, decode_config
from gateway.server.candidate import candidate_config, whole_candidate_config
from gateway.server.master import CHECKS

BASE: dict[str, Any] = {
    "gateway": {"listen": ["127.0.0.1:19080"]},
    "upstreams": [{"id": "a", "nodes": [{"host": "127.0.0.1", "port": 1}]},
                  {"id": "b", "nodes": [{"host": "127.0.0.1", "port": 2}]}],
    "consumers": [{"username": "alice", "plugins": {"key-auth": {"key": "k-alice"}}}],
    "global_rules": [{"id": "g1", "plugins": {"request-id": {}}}],
    "routes": [
        {"id": "r0", "uri": "/r0", "upstream_id": "a"},
        {"id": "r1", "uri": "/r1/*", "upstream_id": "b", "status": 0},
        {"id": "r2", "uris": ["/r2/:x", "/r2b"], "upstream_id": "a", "methods": ["GET"]},
        {"id": "r3", "uri": "/r3", "upstream_id": "a",
         "plugins": {"key-auth": {}, "consumer-restriction": {"whitelist": ["alice"]}}},
        {"id": "r4", "uri": "/r4", "upstream_id": "a", "plugins": {
            "traffic-split": {"rules": [{"weighted_upstreams": [{"upstream_id": "b", "weight": 1}]}]}}},
        {"id": "r5", "uri": "/r5", "upstream_id": "b", "timeout": {"connect": 1, "send": 1, "read": 1}},
    ],
}


def validate(data: Any) -> Config:
    return decode_config(data, "admin API", extra_checks=CHECKS)


RUNNING = validate(BASE)

uris = st.sampled_from(["/w", "/w/:id", "/w/*", "w-no-slash", "/w//x", "/r0", "/a b", "/w/*/x"])
upstream_ids = st.sampled_from(["a", "b", "gone"])
plugins = st.sampled_from([
    {}, {"key-auth": {}}, {"limit-count": {"count": 1, "time_window": 60}},
    {"limit-count": {"count": -1}}, {"no-such-plugin": {}},
    {"consumer-restriction": {"whitelist": ["alice"]}},
    {"traffic-split": {"rules": [{"weighted_upstreams": [{"upstream_id": "gone", "weight": 1}]}]}},
    {"traffic-split": {"rules": [{"weighted_upstreams": [{"upstream_id": "a", "weight": 1}]}]}},
])
routes = st.fixed_dictionaries({"uri": uris}, optional={
    "upstream_id": upstream_ids, "plugins": plugins, "status": st.sampled_from([0, 1, 7]),
    "methods": st.sampled_from([["GET"], ["get"], [], ["BREW"]]),
    "hosts": st.sampled_from([["x.example"], ["*.example"], ["bad host"]]),
    "priority": st.integers(-2, 2)})
upstreams = st.fixed_dictionaries({"nodes": st.sampled_from([
    [{"host": "127.0.0.1", "port": 3}], [], [{"host": "127.0.0.1", "port": 70000}],
    {"127.0.0.1:4": 1}])}, optional={"type": st.sampled_from(["roundrobin", "chash", "nope"])})
consumers = st.fixed_dictionaries({}, optional={"plugins": st.sampled_from([
    {"key-auth": {"key": "k2"}}, {"key-auth": {"key": "k-alice"}}, {"key-auth": {}}])})
global_rules = st.fixed_dictionaries({"plugins": plugins})

WRITES = st.one_of(
    st.tuples(st.just("routes"), st.sampled_from(["r0", "r1", "r3", "r4", "new"]), st.none() | routes),
    st.tuples(st.just("upstreams"), st.sampled_from(["a", "b", "c"]), st.none() | upstreams),
    st.tuples(st.just("consumers"), st.sampled_from(["alice", "bob"]), st.none() | consumers),
    st.tuples(st.just("global_rules"), st.sampled_from(["g1", "g2"]), st.none() | global_rules),
    st.tuples(st.just("plugin_metadata"), st.sampled_from(["prometheus", "nope"]),
              st.none() | st.sampled_from([{}, {"x": 1}])),
)


def outcome(check: Any, config: Config, kind: str, name: str, value: Any) -> Any:
    k = KINDS[kind]
    if value is not None and k.key_field is not None:
        value = {**value, k.key_field: name}
    try:
        return ("ok", check(config, k, name, value, validate).fingerprint())
    except StoreError as exc:
        return (exc.status, sorted((e["config_path"], e["message"]) for e in exc.errors))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(WRITES, min_size=1, max_size=4))
def test_checking_the_affected_part_equals_checking_everything(writes: list[Any]) -> None:
    config = RUNNING
    for kind, name, value in writes:
        part = outcome(candidate_config, config, kind, name, value)
        whole = outcome(whole_candidate_config, config, kind, name, value)
        assert part == whole, (kind, name, value)
        if part[0] == "ok":  # the next write starts from this one's config
            k = KINDS[kind]
            body = value if value is None or k.key_field is None else {**value, k.key_field: name}
            config = candidate_config(config, k, name, body, validate)


def test_a_route_write_keeps_the_other_routes_objects() -> None:
    """The workers recompile only what changed: the unchanged routes are the same objects."""
    new = candidate_config(RUNNING, KINDS["routes"], "r0", {"id": "r0", "uri": "/changed", "upstream_id": "a"},
                         validate)
    assert new.routes[0].uri == "/changed"
    assert all(a is b for a, b in zip(new.routes[1:], RUNNING.routes[1:], strict=True))
    assert new.upstreams is RUNNING.upstreams
