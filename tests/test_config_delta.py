"""A config version sent as a delta must rebuild in the worker exactly the master's config, and
the worker's routes compiled from the previous version must route like a whole compile."""
from __future__ import annotations

from typing import Any

import hypothesis.strategies as st
import msgspec
from hypothesis import given, settings

from gateway.config import Config, Route, Upstream, decode_config
from gateway.proxy.route_updates import with_route_changes
from gateway.proxy.runtime import compile_parts
from gateway.server.config_delta import (
    Shipment,
    apply_changes,
    changes_between,
    decode_changes,
)
from gateway.server.ipc import _decoder

BASE = decode_config({
    "gateway": {"listen": ["127.0.0.1:19080"]},
    "upstreams": [{"id": f"u{i}", "nodes": [{"host": "127.0.0.1", "port": 1 + i}]} for i in range(3)],
    "routes": [{"id": f"r{i}", "uri": f"/r/{i}" if i % 3 else "/r/*", "upstream_id": "u0",
                "priority": i % 2, "status": 0 if i == 4 else 1} for i in range(8)],
})

route = st.builds(lambda i, uri, prio, status: Route(id=f"r{i}", uri=uri, upstream_id="u1", priority=prio,
                                                      status=status),
                  st.integers(0, 11), st.sampled_from(["/r/1", "/r/*", "/x", "/r/:p"]), st.integers(0, 1),
                  st.sampled_from([0, 1, 1, 1]))
edit = st.one_of(
    st.tuples(st.just("put"), route),
    st.tuples(st.just("delete"), st.integers(0, 11)),
    st.tuples(st.just("upstream"), st.integers(0, 4)),
    st.tuples(st.just("shuffle"), st.just(0)),
    st.tuples(st.just("recreate"), route),
)


def edited(config: Config, step: tuple[str, Any]) -> Config:
    """The config an Admin API write (or a file reload, for shuffle) would make."""
    what, arg = step
    routes = list(config.routes)
    if what == "put":
        found = [i for i, r in enumerate(routes) if r.id == arg.id]
        if found:
            routes[found[0]] = arg
        else:
            routes.append(arg)
    elif what == "delete":
        routes = [r for r in routes if r.id != f"r{arg}"]
    elif what == "recreate":  # an etcd key deleted and created again: it comes last
        routes = [r for r in routes if r.id != arg.id] + [arg]
    elif what == "upstream":
        ups = [u for u in config.upstreams if u.id != f"u{arg}"] + [
            Upstream(id=f"u{arg}", nodes=config.upstreams[0].nodes)]
        return msgspec.structs.replace(config, upstreams=ups)
    else:
        routes.reverse()
    return msgspec.structs.replace(config, routes=routes)


def requests(parts: Any) -> list[Any]:
    paths = ["/r/1", "/r/2", "/r/x", "/x", "/r/", "/nothing"]
    out = []
    for path in paths:
        code, params, _ = parts.router.match(b"GET", b"", path.encode())
        out.append((path, parts.entries[code].id if code >= 0 else code, params))
    return out


@settings(max_examples=200, deadline=None)
@given(st.lists(edit, min_size=1, max_size=8))
def test_deltas_rebuild_the_config_and_route_like_a_whole_compile(steps: list[Any]) -> None:
    config = BASE
    parts = compile_parts(config)
    shipment = Shipment()
    shipment.adopt(config, 1)
    for step in steps:
        new = edited(config, step)
        shipment.adopt(new, shipment.version + 1)
        frame = _decoder.decode(shipment.frame(shipment.version - 1, {})[4:])
        if frame["type"] == "config":  # a snapshot: the worker compiles it whole
            assert shipment.changes is None
            config, parts = new, compile_parts(new)
            continue
        changes = decode_changes(frame["changes"])
        rebuilt = apply_changes(config, changes)
        assert rebuilt == new
        updated = with_route_changes(parts, rebuilt, changes)
        whole = compile_parts(rebuilt)
        if updated is not None:
            assert requests(updated) == requests(whole)
        config, parts = rebuilt, updated or whole


def test_a_route_write_is_sent_as_one_change() -> None:
    new = edited(BASE, ("put", Route(id="r2", uri="/changed", upstream_id="u0")))
    assert changes_between(BASE, new) == [("routes", "r2", new.routes[2])]
    shipment = Shipment()
    shipment.adopt(BASE, 1)
    shipment.adopt(new, 2)
    assert _decoder.decode(shipment.frame(1, {})[4:])["type"] == "delta"
    assert _decoder.decode(shipment.frame(0, {})[4:])["type"] == "config"  # it missed version 1
    settings_changed = msgspec.structs.replace(new, gateway=msgspec.structs.replace(
        new.gateway, keepalive_timeout=5))
    assert changes_between(new, settings_changed) is None


def test_a_route_created_again_is_sent_as_its_removal_and_its_addition() -> None:
    moved = Route(id="r2", uri="/moved", upstream_id="u0")
    new = edited(BASE, ("recreate", moved))
    assert changes_between(BASE, new) == [("routes", "r2", None), ("routes", "r2", moved)]
    assert apply_changes(BASE, changes_between(BASE, new) or []) == new
    parts = with_route_changes(compile_parts(BASE), new, changes_between(BASE, new) or [])
    assert parts is not None and requests(parts) == requests(compile_parts(new))
