"""What the master derives from every route (the host names to resolve, the Redis-synced limits)
is kept by route id across versions and read again only for the routes a delta changes; after
any series of writes it must equal what a whole read of the config gives."""
from __future__ import annotations

import asyncio
from typing import Any

import hypothesis.strategies as st
import msgspec
from hypothesis import given, settings

from gateway.config import Config, Route, decode_config
from gateway.server.config_delta import changes_between
from gateway.server.redis_sync import RedisLimitSyncer, sync_plans
from gateway.upstream.names import NodeNames, node_names

BASE = decode_config({
    "gateway": {"listen": ["127.0.0.1:19080"]},
    "upstreams": [{"id": "u", "nodes": [{"host": "up.test", "port": 1}]}],
    "routes": [{"id": f"r{i}", "uri": f"/r/{i}", "upstream_id": "u"} for i in range(6)],
}, "t.yaml")


def synced(window: int) -> dict[str, Any]:
    return {"limit-count": {"count": 10, "time_window": window, "policy": "redis",
                            "redis_host": "127.0.0.1", "redis_port": 1}}


def inline(host: str) -> dict[str, Any]:
    return {"upstream": {"nodes": [{"host": host, "port": 80}]}}


route = st.builds(
    lambda i, extra: Route(id=f"r{i}", uri=f"/w/{i}", **msgspec.convert(extra, dict)),
    st.integers(0, 9),
    st.sampled_from([{"upstream_id": "u"}, {"upstream_id": "u", "plugins": synced(60)},
                     {"upstream_id": "u", "plugins": synced(3600)}, inline("a.test"),
                     inline("b.test"), inline("127.0.0.1")]))
write = st.one_of(st.tuples(st.just("put"), route), st.tuples(st.just("delete"), st.integers(0, 9)))


def written(config: Config, step: tuple[str, Any]) -> Config:
    what, arg = step
    routes = list(config.routes)
    if what == "delete":
        routes = [r for r in routes if r.id != f"r{arg}"]
    else:
        found = [i for i, r in enumerate(routes) if r.id == arg.id]
        if found:
            routes[found[0]] = arg
        else:
            routes.append(arg)
    document = {**msgspec.to_builtins(BASE), "routes": [msgspec.to_builtins(arg)]} if what == "put" else None
    checked = decode_config(document, "t.yaml").routes[0] if document is not None else None
    return msgspec.structs.replace(config, routes=[checked if r is arg else r for r in routes])


def plan_view(plans: dict[int, Any]) -> dict[int, Any]:
    return {tag: (p.kind, p.window, p.interval_us, p.sync_interval) for tag, p in plans.items()}


@settings(max_examples=100, deadline=None)
@given(st.lists(write, min_size=1, max_size=8))
def test_names_and_synced_limits_kept_across_deltas_equal_a_whole_read(steps: list[Any]) -> None:
    async def run() -> None:
        names, syncer = NodeNames(), RedisLimitSyncer(None)
        config = BASE
        names.update(config, None, None)
        syncer.apply(config)
        try:
            for step in steps:
                new = written(config, step)
                changes = changes_between(config, new)
                assert set(names.update(new, config, changes)) == set(node_names(new))
                syncer.apply(new, config, changes)
                assert plan_view(syncer.plans) == plan_view(sync_plans(new))
                config = new
        finally:
            await syncer.close()
    asyncio.run(run())
