"""The node's one Redis syncer for ``limit-count`` with ``policy: redis`` (not strict), run by
the master: the workers count in the node's shared-memory limiter as for ``policy: local``
(no Redis round trip per request); every ``sync_interval`` this task pushes each limit's new
local requests to Redis (one pipeline of Lua script calls per Redis) and adds what the other
nodes counted to the shared memory, so the workers' next decisions see the global count.

The price is an overshoot of about nodes x rate x interval (README). Only ``key_type:
constant`` keys are synced today: the master knows them from the config, while per-request keys
would need the workers to report the keys they see.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

from gateway.plugins._redis_limit import RedisLink, Scripts, redis_errors, window_key

log = logging.getLogger("gateway.limits.redis")

PREFIX = "gateway:limit-count-sync"


@dataclass(frozen=True)
class SyncedLimit:
    key: str  # the shared-memory key, exactly as the workers' LimitKey builds it
    window: float
    interval: float
    link: RedisLink


def synced_limits(config: Any) -> list[SyncedLimit]:
    """The delayed-sync limit-count instances of ``config`` (routes and global rules)."""
    found: dict[str, SyncedLimit] = {}

    def visit(plugins: Any, scope_route: str | None) -> None:
        conf = plugins.get("limit-count") if plugins else None
        if not isinstance(conf, dict) or conf.get("policy") != "redis" or conf.get("redis_strict"):
            return
        if conf.get("group"):
            scope = f"limit-count\x00group\x00{conf['group']}\x00"
        elif scope_route is not None:
            scope = f"limit-count\x00route\x00{scope_route}\x00"
        else:
            scope = "limit-count\x00global\x00"
        key = scope + str(conf.get("key", "remote_addr"))
        link = RedisLink.of(_RedisKeys(conf))
        found[key] = SyncedLimit(key, float(conf["time_window"]),
                                 float(conf.get("sync_interval", 0.1)), link)

    for route in config.routes:
        visit(route.plugins, route.id)
    rules = config.global_rules
    for rule in rules if isinstance(rules, list) else [rules]:
        visit(rule.plugins, None)
    return list(found.values())


class _RedisKeys:
    """The ``redis_*`` keys of a plugin's raw config, with the plugin's defaults."""

    def __init__(self, conf: dict[str, Any]) -> None:
        self.redis_host = conf["redis_host"]
        self.redis_port = conf.get("redis_port", 6379)
        self.redis_password = conf.get("redis_password")
        self.redis_database = conf.get("redis_database", 0)
        self.redis_timeout = conf.get("redis_timeout", 1000)


class RedisLimitSyncer:
    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter
        self.limits: list[SyncedLimit] = []
        #: per key: (local window index, the local count already accounted for in Redis)
        self.bases: dict[str, tuple[int, int]] = {}
        self.task: asyncio.Task[None] | None = None

    def apply(self, config: Any) -> None:
        self.limits = synced_limits(config)
        if self.limits and self.task is None:
            self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        while True:
            limits = self.limits
            await asyncio.sleep(min((lim.interval for lim in limits), default=1.0))
            try:
                await self.sync_once(self.limits)
            except Exception:
                log.exception("Redis limit sync failed")

    async def sync_once(self, limits: list[SyncedLimit]) -> None:
        by_link: dict[int, list[SyncedLimit]] = {}
        for lim in limits:
            by_link.setdefault(id(lim.link), []).append(lim)
        for group in by_link.values():
            link = group[0].link
            if link.usable():
                await self.sync_link(link, group)

    async def sync_link(self, link: RedisLink, limits: list[SyncedLimit]) -> None:
        now_ns = time.monotonic_ns()
        pushes = []
        for lim in limits:
            local_window = now_ns // max(1, round(lim.window * 1e9))
            window_index, base = self.bases.get(lim.key, (local_window, 0))
            if window_index != local_window:
                base = 0  # the local window moved on: its count started again from zero
            used = self.limiter.count_used(lim.key, lim.window)
            rkey, window_ms, _ = window_key(PREFIX, lim.key, lim.window)
            pushes.append((lim, local_window, used, rkey, window_ms, max(0, used - base)))
        try:
            client = link.connect()
            scripts = Scripts.of(client)
            async with client.pipeline(transaction=False) as pipe:
                for _, _, _, rkey, window_ms, delta in pushes:
                    await scripts.count(keys=[rkey], args=[delta, window_ms], client=pipe)
                results = await pipe.execute()
        except redis_errors() as exc:
            link.failed(exc)
            return
        link.succeeded()
        for (lim, local_window, used, *_), (total, _ttl) in zip(pushes, results):
            total = int(total)
            if total > used:
                self.limiter.count_add(lim.key, lim.window, total - used)
            self.bases[lim.key] = (local_window, max(total, used))

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
