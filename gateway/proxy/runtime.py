"""Compiles a validated Config into a ``Runtime``: the router, route entries with plugin chains
ordered by priority, and upstream groups. Workers build one per config version and swap it in
atomically; a request keeps the runtime it started with."""
from __future__ import annotations

from dataclasses import replace
from typing import Any

from gateway._native import Router, SharedLimiter
from gateway._proto import RouteEntry, Runtime, UpstreamGroup
from gateway.config import Config, Route, Upstream
from gateway.plugins import Plugin, hook_chains
from gateway.plugins.base import PluginEnv
from gateway.plugins.consumers import ConsumerEntry, ConsumerIndex
from gateway.plugins.registry import instantiate
from gateway.upstream.compile import compile_upstream, with_timeout
from gateway.upstream.health import inline_key
from gateway.upstream.names import Addresses


class CompileError(ValueError):
    """A config that validated but cannot be compiled (e.g. an invalid route pattern, a plugin
    whose ``bind`` refuses what it was given); ``path`` is where in the document."""

    def __init__(self, message: str, path: str = "") -> None:
        super().__init__(message)
        self.path = path


def _compile_upstream(upstream: Upstream, label: str, route_timeout: Any = None,
                      health: Any = None, health_key: str | None = None,
                      addresses: Addresses | None = None) -> UpstreamGroup:
    try:
        return compile_upstream(upstream, label, route_timeout, health, health_key, addresses)
    except ValueError as exc:  # a chash key the loader let through but no getter exists for
        raise CompileError(str(exc), f"{label}.key") from None


def bind_plugin(plugin: Plugin, env: PluginEnv, path: str) -> None:
    """A plugin's ``bind`` sees other parts of the config (upstream ids, consumers): what it
    refuses there is a config error at the plugin's place in the document."""
    try:
        plugin.bind(env)
    except (ValueError, KeyError, TypeError) as exc:
        message = exc.args[0] if isinstance(exc, KeyError) and exc.args else str(exc)
        raise CompileError(str(message), f"{path}.{plugin.config_key}") from None


_local_limiter: SharedLimiter | None = None


def local_limiter() -> SharedLimiter:
    """A small process-local limiter for compiling outside a worker (``gateway check``)."""
    global _local_limiter
    if _local_limiter is None:
        _local_limiter = SharedLimiter.create(1024, 1024)
    return _local_limiter


def build_plugins(plugins: dict[str, Any]) -> list[Plugin]:
    built: list[Plugin] = []
    for key, raw in plugins.items():
        plugin = instantiate(key, raw)
        if plugin is not None:
            plugin.config_key = key  # how the document names it, for error paths
            built.append(plugin)
    return built


def compile_runtime(config: Config, version: int, limiter: SharedLimiter | None = None,
                    metrics: Any = None, worker_id: int = -1, health: Any = None,
                    addresses: Addresses | None = None) -> Runtime:
    """``health``: the shared node health table (a worker's); None compiles without it.
    ``addresses``: the current addresses of the host names in nodes (the master resolves
    them); None keeps names as they are (``gateway check``)."""
    groups: dict[str, UpstreamGroup] = {}
    for i, upstream in enumerate(config.upstreams):
        groups[upstream.id or f"upstreams[{i}]"] = _compile_upstream(
            upstream, f"upstreams[{i}]", health=health, health_key=upstream.id,
            addresses=addresses)
    consumers = ConsumerIndex(
        ConsumerEntry(c.username, c.group_id, dict(c.labels), {p.name: p for p in build_plugins(c.plugins)})
        for c in config.consumers)
    env = PluginEnv(limiter=limiter or local_limiter(), consumers=consumers, upstreams=groups,
                    metrics=metrics, worker_id=worker_id, addresses=addresses)
    global_plugins = build_plugins(config.global_plugins)
    for plugin in global_plugins:
        bind_plugin(plugin, env, "global_rules.plugins")
    for i, consumer in enumerate(consumers.entries):
        for plugin in consumer.plugins.values():
            bind_plugin(plugin, env, f"consumers[{i}].plugins")

    specs: list[tuple[list[str], list[str], list[str], int]] = []
    entries: list[RouteEntry] = []
    for i, route in enumerate(config.routes):
        if route.status == 0:
            continue
        entries.append(compile_route(route, i, len(entries), groups, global_plugins, env, health))
        specs.append(route_spec(route))
    try:
        router = Router(specs)
    except ValueError as exc:
        raise CompileError(f"routes: {exc}") from None
    gw = config.gateway
    return Runtime(
        version,
        router,
        entries,
        gw.max_request_line,
        gw.max_header_size,
        gw.max_headers,
        float(gw.client_header_timeout),
        float(gw.client_body_timeout),
        float(gw.keepalive_timeout),
        float(gw.send_timeout),
        gw.client_max_body_size,
        gw.http2.max_concurrent_streams,
        gw.http2.max_header_list_size,
    )


def route_spec(route: Route) -> tuple[list[str], list[str], list[str], int]:
    paths = list(route.uris) if route.uris else [route.uri or "/*"]
    hosts = list(route.hosts) if route.hosts else ([route.host] if route.host else [])
    return paths, hosts, list(route.methods or []), route.priority


def compile_route(route: Route, config_index: int, index: int, groups: dict[str, UpstreamGroup],
                  global_plugins: list[Plugin], env: PluginEnv, health: Any = None) -> RouteEntry:
    label = f"routes[{config_index}]"
    group: UpstreamGroup | None = None
    if route.upstream is not None:
        group = _compile_upstream(route.upstream, f"{label}.upstream", route.timeout, health,
                                  inline_key(route.id), env.addresses)
    elif route.upstream_id is not None:
        group = groups[route.upstream_id]
        if route.timeout is not None:
            group = with_timeout(group, route.timeout)
    plugins = build_plugins(route.plugins)
    route_env = replace(env, route_id=route.id)
    for plugin in plugins:
        bind_plugin(plugin, route_env, f"{label}.plugins")
    names = {p.name for p in plugins}
    merged = plugins + [p for p in global_plugins if p.name not in names]
    chain = hook_chains(merged)  # the builder of consumers' chains too
    return RouteEntry(index, route.id, group, chain["rewrite"], chain["access"],
                      chain["before_proxy"], chain["header_filter"], chain["body_filter"],
                      chain["log"], {p.name: p for p in merged}, route.enable_websocket)
