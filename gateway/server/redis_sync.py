"""The node's one Redis syncer for limit-count and limit-req with ``policy: redis`` (not
strict), run by the master. The workers decide in the node's shared-memory limiter as for
``policy: local``, under synced keys (rust/limiter/src/synced.rs) whose tag names the limit's
parameters; every ``sync_interval`` this task

1. lists the live synced keys by scanning the limiter's counter table (no message from the
   workers per key: a per-client key is known as soon as a worker counted it),
2. sends, per Redis, one pipeline holding one Lua script call per limit (all its keys; they
   share a hash tag, so a cluster would keep them in one slot): limit-count pushes each key's
   new requests and gets the window's global total back, limit-req pushes the requests each
   bucket admitted and gets the global bucket's backlog back,
3. adds what the other nodes counted to the shared memory (``count_add``) or raises the node's
   bucket to the global backlog (``bucket_raise``), so the workers' next decisions see them.

The price is an overshoot of about nodes x rate x interval (README, bench/redis_limits.py).
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from gateway._native import synced_tag
from gateway.plugins._redis_limit import (
    COUNT_SYNC_SCRIPT,
    REQ_CONSUMED_WINDOW,
    REQ_SYNC_SCRIPT,
    RedisLink,
    Scripts,
    count_sync_key,
    redis_errors,
    req_sync_key,
    synced_tag_of,
)

log = logging.getLogger("gateway.limits.redis")

#: Keys per script call: bounds the time one call holds Redis (a script runs alone).
BATCH = 1000


@dataclass
class SyncPlan:
    """One synced limit's parameters, for every key under its tag."""
    tag: int
    kind: str  # "limit-count" or "limit-req"
    window: float  # limit-count: the window; limit-req: the window of its admission counter
    interval_us: int  # limit-req: microseconds per request at its rate
    sync_interval: float
    link: RedisLink
    keys: list[int] = field(default_factory=list)


def sync_plans(config: Any) -> dict[int, SyncPlan]:
    """The synced limits of ``config`` (routes, consumers, global rules) by tag."""
    return merged_plans([plans_of(route.plugins) for route in config.routes if route.plugins]
                        + _other_plans(config))


def _other_plans(config: Any) -> list[list[SyncPlan]]:
    return [plans_of(c.plugins) for c in config.consumers] + \
        [plans_of(rule.plugins) for rule in config.global_rule_list]


def plans_of(plugins: Any) -> list[SyncPlan]:
    """The synced limits of one set of plugin configs (a route's, a consumer's, a rule's)."""
    from gateway.plugins.limit_count import LimitCountConfig
    from gateway.plugins.limit_req import LimitReqConfig

    out: list[SyncPlan] = []
    for name, struct in (("limit-count", LimitCountConfig), ("limit-req", LimitReqConfig)):
        raw = plugins.get(name) if plugins else None
        if not isinstance(raw, dict) or raw.get("policy") not in ("redis", "redis-cluster"):
            continue
        try:
            conf: Any = msgspec.convert(raw, struct)
        except (msgspec.ValidationError, ValueError):
            continue  # the config check reports it; nothing to sync
        if name == "limit-count":
            tag = synced_tag_of(conf, name, conf.time_window)
            window, interval_us = float(conf.time_window), 0
        else:
            tag = synced_tag_of(conf, name, conf.rate)
            window, interval_us = REQ_CONSUMED_WINDOW, round(1e6 / conf.rate)
        if tag is not None:
            out.append(SyncPlan(tag, name, window, interval_us, float(conf.sync_interval),
                                RedisLink.of(conf)))
    return out


def merged_plans(groups: list[list[SyncPlan]]) -> dict[int, SyncPlan]:
    """One plan per tag (the shortest sync interval of those sharing it)."""
    plans: dict[int, SyncPlan] = {}
    for group in groups:
        for found in group:
            plan = SyncPlan(found.tag, found.kind, found.window, found.interval_us,
                            found.sync_interval, found.link)
            tag, name = plan.tag, plan.kind
            known = plans.get(tag)
            if known is None:
                plans[tag] = plan
            elif (known.kind, known.window, known.interval_us, known.link) != \
                    (plan.kind, plan.window, plan.interval_us, plan.link):
                # a 20-bit tag shared by two different limits (about one chance in a million
                # per pair): their keys cannot be told apart, so neither is synced
                log.error("%s limits with different settings share the sync tag %05x; neither "
                          "is shared through Redis (change a time_window or rate slightly)",
                          name, tag)
                plans[tag] = SyncPlan(tag, "collision", 0, 0, plan.sync_interval, plan.link)
            else:
                known.sync_interval = min(known.sync_interval, plan.sync_interval)
    return {tag: plan for tag, plan in plans.items() if plan.kind != "collision"}


class RedisLimitSyncer:
    def __init__(self, limiter: Any) -> None:
        self.limiter = limiter
        self.plans: dict[int, SyncPlan] = {}
        #: per synced key: (local window index, the local count already accounted for in Redis)
        self.bases: dict[int, tuple[int, int]] = {}
        #: per Redis link: when its last push went through (limit-req's span)
        self.pushed_at: dict[int, float] = {}
        self.task: asyncio.Task[None] | None = None
        self.closed = False
        #: route id -> its synced limits (routes without any are left out), of the config ``last``
        self.route_plans: dict[str, list[SyncPlan]] = {}
        self.last: Any = None

    def apply(self, config: Any, base: Any = None, changes: Sequence[tuple[str, str, Any]] | None = None) -> None:
        """Syncs the limits of ``config``; ``changes``: what changed since ``base`` (config_delta),
        when that is the config applied last: the routes' limits are kept by route id and only
        the changed routes are read again."""
        last, self.last = self.last, config
        if changes is None or base is None or base is not last:
            self.route_plans = {}
            for route in config.routes:
                found = plans_of(route.plugins) if route.plugins else []
                if found:
                    self.route_plans[route.id] = found
        else:
            for section, key, value in changes:
                if section == "routes":
                    found = plans_of(value.plugins) if value is not None and value.plugins else []
                    if found:
                        self.route_plans[key] = found
                    else:
                        self.route_plans.pop(key, None)
        self.plans = merged_plans(list(self.route_plans.values()) + _other_plans(config))
        if self.plans and self.task is None and not self.closed:
            self.task = asyncio.ensure_future(self.run())

    async def run(self) -> None:
        # not only the cancellation: redis-py can turn a cancellation that lands in its
        # socket timeout into a TimeoutError, which the sync takes for an outage
        while not self.closed:
            plans = self.plans
            await asyncio.sleep(min((p.sync_interval for p in plans.values()), default=1.0))
            try:
                await self.sync_once()
            except Exception:
                log.exception("Redis limit sync failed")

    async def sync_once(self) -> None:
        plans = self.plans
        for plan in plans.values():
            plan.keys = []
        for key in self.limiter.synced_counter_keys():
            tag = synced_tag(key)
            owner = plans.get(tag) if tag is not None else None
            if owner is not None:
                owner.keys.append(key)
        live: set[int] = set()
        by_link: dict[int, list[SyncPlan]] = {}
        for plan in plans.values():
            if plan.keys:
                by_link.setdefault(id(plan.link), []).append(plan)
                live.update(plan.keys)
        for group in by_link.values():
            link = group[0].link
            if link.usable():
                await self.sync_link(link, group)
        for gone in self.bases.keys() - live:
            del self.bases[gone]

    def _pushes(self, plan: SyncPlan) -> list[tuple[int, int, int, int]]:
        """(key, local window index, local count, new requests) of the plan's keys that
        counted anything in their current window."""
        now_ns = time.monotonic_ns()
        local_window = now_ns // max(1, round(plan.window * 1e9))
        out = []
        for key in plan.keys:
            used = self.limiter.count_used(key, plan.window)
            if used == 0:
                continue  # idle in this window: nothing to push, nobody here to limit
            window_index, base = self.bases.get(key, (local_window, 0))
            if window_index != local_window:
                base = 0  # the local window moved on: its count started again from zero
            out.append((key, local_window, used, max(0, used - base)))
        return out

    async def sync_link(self, link: RedisLink, plans: list[SyncPlan]) -> None:
        calls: list[tuple[SyncPlan, list[tuple[int, int, int, int]]]] = []
        for plan in plans:
            pushes = self._pushes(plan)
            for start in range(0, len(pushes), BATCH):
                calls.append((plan, pushes[start:start + BATCH]))
        if not calls:
            return
        now = time.monotonic()
        interval = min(plan.sync_interval for plan in plans)
        span_us = round(1e6 * (now - self.pushed_at.get(id(link), now - interval)))
        try:
            client = link.connect()
            scripts = Scripts.of(client)
            if link.cluster_nodes and not link.scripts_loaded:
                await client.script_load(COUNT_SYNC_SCRIPT)  # on every primary
                await client.script_load(REQ_SYNC_SCRIPT)
                link.scripts_loaded = True
            async with client.pipeline(transaction=False) as pipe:
                for plan, batch in calls:
                    deltas = [delta for *_, delta in batch]
                    if plan.kind == "limit-count":
                        window_ms = count_sync_key(plan.tag, 0, plan.window)[1]
                        keys = [count_sync_key(plan.tag, key, plan.window)[0]
                                for key, *_ in batch]
                        await scripts.count_sync(keys=keys, args=[window_ms, *deltas],
                                                 client=pipe)
                    else:
                        keys = [req_sync_key(plan.tag, key) for key, *_ in batch]
                        await scripts.req_sync(keys=keys,
                                               args=[plan.interval_us, span_us, *deltas],
                                               client=pipe)
                results = await pipe.execute()
        except redis_errors() as exc:
            if not self.closed:  # else the "error" is our own cancellation
                link.failed(exc)
            return
        link.succeeded()
        self.pushed_at[id(link)] = now
        for (plan, batch), replies in zip(calls, results):
            for (key, local_window, used, _), reply in zip(batch, replies):
                if plan.kind == "limit-count":
                    total = int(reply)
                    if total > used:
                        self.limiter.count_add(key, plan.window, total - used)
                    self.bases[key] = (local_window, max(total, used))
                else:
                    self.limiter.bucket_raise(key, int(reply) / 1e6)
                    self.bases[key] = (local_window, used)

    async def close(self) -> None:
        self.closed = True
        if self.task is not None:
            self.task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self.task
            self.task = None
