"""The built-in plugins' compiled hooks: which phases run natively, and that a third-party
plugin keeps the plain Python call. What the hooks do is asserted through real requests in
test_auth.py, test_limits.py and test_prometheus.py (every request there takes these hooks)."""
from __future__ import annotations

from typing import Any

from gateway._proto import (
    KeyAuthAccess,
    LimitConnAccess,
    LimitConnLog,
    LimitCountAccess,
    LimitReqAccess,
    NativeHook,
    PrometheusLog,
    RequestIdRewrite,
)
from gateway.config import decode_config
from gateway.proxy.runtime import compile_runtime


def compiled_route(plugins: dict[str, Any], consumers: list[dict[str, Any]] | None = None) -> Any:
    config = decode_config({
        "upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": 9}]}],
        "routes": [{"id": "r", "uri": "/*", "upstream_id": "up", "plugins": plugins}],
        "consumers": consumers or [],
    })
    return compile_runtime(config, 1).routes[0]


def test_hot_builtins_run_as_native_hooks() -> None:
    route = compiled_route(
        {"key-auth": {}, "limit-count": {"count": 5, "time_window": 60},
         "limit-req": {"rate": 10, "burst": 5}, "prometheus": {}},
        [{"username": "alice", "plugins": {"key-auth": {"key": "k"}}}])
    assert [type(h) for h in route.access] == [KeyAuthAccess, LimitCountAccess, LimitReqAccess]
    assert [type(h) for h in route.log] == [PrometheusLog]
    assert [h.plugin.name for h in route.access] == ["key-auth", "limit-count", "limit-req"]
    route = compiled_route({"limit-conn": {"conn": 1, "burst": 0, "default_conn_delay": 0.1}})
    assert [type(h) for h in route.access] == [LimitConnAccess]
    assert [type(h) for h in route.log] == [LimitConnLog]
    route = compiled_route({"request-id": {}})
    assert [type(h) for h in route.rewrite] == [RequestIdRewrite]
    assert route.header_filter == ()  # the response header is a default, not a filter


def test_third_party_plugins_keep_the_python_call() -> None:
    route = compiled_route({"tests.support.plugins:Tag": {"tag": "t"}})
    hooks = route.rewrite + route.before_proxy + route.header_filter
    assert len(hooks) == 3 and not any(isinstance(h, NativeHook) for h in hooks)
    assert all(h.__self__.name == "test-tag" for h in hooks)


def test_consumer_plugins_use_the_same_hooks() -> None:
    route = compiled_route(
        {"key-auth": {}},
        [{"username": "alice", "plugins": {"key-auth": {"key": "k"},
                                           "limit-count": {"count": 1, "time_window": 60}}}])
    consumer = route.plugins["key-auth"].index.by_value["k"]
    assert [type(h) for h in consumer.phase_hooks["access"]] == [LimitCountAccess]


def test_synced_redis_limits_run_as_native_hooks() -> None:
    # policy redis without redis_strict counts in shared memory only (the master's syncer talks
    # to Redis): the compiled hooks, counting under synced keys; strict mode calls Redis per
    # request, from the plugin's Python access
    redis = {"policy": "redis", "redis_host": "127.0.0.1"}
    route = compiled_route({"limit-count": {"count": 5, "time_window": 60, **redis},
                            "limit-req": {"rate": 10, "burst": 5, **redis}})
    assert [type(h) for h in route.access] == [LimitCountAccess, LimitReqAccess]
    strict = {**redis, "redis_strict": True}
    route = compiled_route({"limit-count": {"count": 5, "time_window": 60, **strict},
                            "limit-req": {"rate": 10, "burst": 5, **strict}})
    assert not any(isinstance(h, NativeHook) for h in route.access)
    assert [h.__self__.name for h in route.access] == ["limit-count", "limit-req"]
