"""``limit-req``: request rate per key with a leaky bucket (APISIX's plugin, names and defaults:
``rate``, ``burst``, ``key``, ``key_type`` var|var_combination, ``rejected_code`` 503,
``rejected_msg``, ``nodelay`` false, ``allow_degradation``, ``policy`` local).

The bucket is the shared-memory GCRA of ``env.limiter``: one bucket per key for all worker
processes, so the node admits ``rate`` r/s, not ``rate`` x workers. As in nginx, a request
within ``burst`` above the rate is delayed until it conforms (``nodelay``: passed at once);
beyond that it is rejected.

``policy: redis`` shares the bucket between nodes through Redis: each node decides with its own
bucket under a synced key and counts what it admits; the master's syncer pushes those counts
to a bucket in Redis every ``sync_interval`` and raises the node's bucket to the global backlog
(gateway/server/redis_sync.py). With ``redis_strict: true``, one GCRA script call per request
on Redis' clock instead (see ``_redis_limit``).

``policy: redis-cluster`` does the same through a Redis cluster (``redis_cluster_nodes``).

Differs from APISIX: ``key`` defaults to
``remote_addr``; the bucket is per route unless the plugin is a global rule (APISIX also
restarts buckets when the route's config changes, we keep them across reloads).
"""
from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import msgspec

from gateway._native import synced_key
from gateway._proto import LimitReqAccess
from gateway.plugins import Context, Response
from gateway.plugins._keys import LimitKey
from gateway.plugins._redis_limit import (
    REQ_CONSUMED_WINDOW,
    RedisFields,
    RedisLink,
    check_redis_policy,
    masked_repr,
    strict_access,
    synced_tag_of,
)
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv

Status = Annotated[int, msgspec.Meta(ge=200, le=599)]


def check_policy(policy: str) -> None:
    """limit-conn's policy: its gauges live in shared memory only."""
    if policy != "local":
        raise ValueError(f"policy '{policy}' is not supported: limits are kept in shared memory, "
                         "exact across the worker processes of this node (use policy: local)")


def rejection(status: int, message: str | None) -> Response:
    """The answer of a limit plugin: ``{"error_msg": rejected_msg}`` as APISIX sends it, or an
    empty body without a message. A gRPC client reads the grpc-status of ``status`` (mapped
    where local answers are rendered for gRPC: 429 is RESOURCE_EXHAUSTED, the default 503
    UNAVAILABLE; README "gRPC")."""
    if message is None:
        return Response(status, b"")
    return Response(status, json.dumps({"error_msg": message}).encode(),
                    [("Content-Type", "application/json")])


class LimitReqConfig(PluginConfig, RedisFields):
    rate: Annotated[float, msgspec.Meta(gt=0)]
    burst: Annotated[float, msgspec.Meta(ge=0)] = 0.0
    key: Annotated[str, msgspec.Meta(min_length=1)] = "remote_addr"
    key_type: Literal["var", "var_combination"] = "var"
    rejected_code: Status = 503
    rejected_msg: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    nodelay: bool = False
    allow_degradation: bool = False
    policy: str = "local"

    def __post_init__(self) -> None:
        check_redis_policy(self)

    def __repr__(self) -> str:
        return masked_repr(self)


class LimitReq(Plugin):
    name = "limit-req"
    priority = 1001
    Config = LimitReqConfig
    config: LimitReqConfig

    def __init__(self, config: LimitReqConfig) -> None:
        super().__init__(config)
        try:
            self.limit_key = LimitKey(self, config.key, config.key_type)
        except ValueError as exc:
            raise ValueError(f"key: {exc}") from None
        self.rejected = rejection(config.rejected_code, config.rejected_msg)
        self.rate = config.rate
        self.burst = config.burst
        self.nodelay = config.nodelay
        self.limiter: Any = None
        self.native_access = LimitReqAccess(self, "access")
        self.native_access.rejected = self.rejected
        self.native_access.configure(self.rate, self.burst, self.nodelay, REQ_CONSUMED_WINDOW)
        # policy redis, strict: every request goes through the Python access (one Redis call
        # each); synced: decided in shared memory under a synced key, by the native hook as for
        # a local limit, which also counts the admissions for the master's syncer
        self.redis = RedisLink.of(config) if config.policy != "local" and config.redis_strict \
            else None
        self.sync_tag = synced_tag_of(config, self.name, self.rate)
        if self.sync_tag is not None:
            self.native_access.sync_under(self.sync_tag)
        self.native_hooks = {} if self.redis is not None else {"access": self.native_access}

    def bind(self, env: PluginEnv) -> None:
        self.limiter = env.limiter
        self.limit_key.bind(env.route_id)
        if self.native_hooks:
            self.limit_key.bind_native(self.native_access, env.limiter)

    def access(self, ctx: Context) -> Any:
        if self.redis is not None:
            return self._redis_access(self.limit_key(ctx))
        if self.sync_tag is not None:
            return self._synced_access(synced_key(self.limit_key(ctx), self.sync_tag))
        return self._local_access(self.limit_key(ctx))

    def _synced_access(self, key: int) -> Any:
        try:
            admitted, delay = self.limiter.acquire(key, self.rate, self.burst)
            if admitted:
                self.limiter.count_add(key, REQ_CONSUMED_WINDOW, 1)
        except Exception:
            if self.config.allow_degradation:
                return None
            raise
        return self._answer(admitted, delay)

    def _local_access(self, key: str) -> Any:
        try:
            admitted, delay = self.limiter.acquire(key, self.rate, self.burst)
        except Exception:
            if self.config.allow_degradation:
                return None
            raise
        return self._answer(admitted, delay)

    async def _redis_access(self, key: str) -> Any:
        assert self.redis is not None
        interval_us = 1e6 / self.rate
        return await strict_access(
            self.config, self.redis, self.rejected,
            lambda scripts: scripts.req(keys=[f"gateway:limit-req:{key}"],
                                        args=[round(interval_us), round(interval_us * self.burst)]),
            lambda reply: self._answer(bool(reply[0]), int(reply[1]) / 1e6),
            lambda: self._local_access(key))

    def _answer(self, admitted: bool, delay: float) -> Any:
        if not admitted:
            return self.rejected
        if delay > 0.001 and not self.nodelay:
            return self._wait(delay)
        return None

    @staticmethod
    async def _wait(delay: float) -> None:
        await asyncio.sleep(delay)
