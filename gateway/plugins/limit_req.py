"""``limit-req``: request rate per key with a leaky bucket (APISIX's plugin, names and defaults:
``rate``, ``burst``, ``key``, ``key_type`` var|var_combination, ``rejected_code`` 503,
``rejected_msg``, ``nodelay`` false, ``allow_degradation``, ``policy`` local).

The bucket is the shared-memory GCRA of ``env.limiter``: one bucket per key for all worker
processes, so the node admits ``rate`` r/s, not ``rate`` x workers. As in nginx, a request
within ``burst`` above the rate is delayed until it conforms (``nodelay``: passed at once);
beyond that it is rejected.

``policy: redis`` with ``redis_strict: true`` shares the bucket between nodes through Redis
(one GCRA script call per request on Redis' clock; see ``_redis_limit``).

Differs from APISIX: ``policy`` redis-cluster is not supported (a config error), nor redis
without ``redis_strict``; ``key`` defaults to
``remote_addr``; the bucket is per route unless the plugin is a global rule (APISIX also
restarts buckets when the route's config changes, we keep them across reloads).
"""
from __future__ import annotations

import asyncio
import json
from typing import Annotated, Any, Literal

import msgspec

from gateway._proto import LimitReqAccess
from gateway.plugins import Context, Response
from gateway.plugins._keys import LimitKey
from gateway.plugins._redis_limit import RedisFields, RedisLink, Scripts, check_redis_policy, masked_repr, redis_errors
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv

#: gRPC's status for a refused quota (what a limit answers a gRPC client; README "gRPC").
GRPC_RESOURCE_EXHAUSTED = 8

Status = Annotated[int, msgspec.Meta(ge=200, le=599)]


def check_policy(policy: str) -> None:
    """limit-conn's policy: its gauges live in shared memory only."""
    if policy != "local":
        raise ValueError(f"policy '{policy}' is not supported: limits are kept in shared memory, "
                         "exact across the worker processes of this node (use policy: local)")


def rejection(status: int, message: str | None) -> Response:
    """The answer of a limit plugin: ``{"error_msg": rejected_msg}`` as APISIX sends it, or an
    empty body without a message. A gRPC client is told RESOURCE_EXHAUSTED (8) whatever the
    HTTP status (limit plugins default to 503, which alone would read as UNAVAILABLE)."""
    if message is None:
        return Response(status, b"", grpc_status=GRPC_RESOURCE_EXHAUSTED)
    return Response(status, json.dumps({"error_msg": message}).encode(),
                    [("Content-Type", "application/json")], grpc_status=GRPC_RESOURCE_EXHAUSTED)


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
        self.native_access.configure(self.rate, self.burst, self.nodelay)
        # policy redis: every request goes through the Python access (one Redis call each)
        self.redis = RedisLink.of(config) if config.policy == "redis" and config.redis_strict \
            else None
        self.native_hooks = {} if self.redis else {"access": self.native_access}

    def bind(self, env: PluginEnv) -> None:
        self.limiter = env.limiter
        self.limit_key.bind(env.route_id)
        if self.redis is None:
            self.limit_key.bind_native(self.native_access, env.limiter)

    def access(self, ctx: Context) -> Any:
        if self.redis is not None:
            return self._redis_access(self.limit_key(ctx))
        return self._local_access(self.limit_key(ctx))

    def _local_access(self, key: str) -> Any:
        try:
            admitted, delay = self.limiter.acquire(key, self.rate, self.burst)
        except Exception:
            if self.config.allow_degradation:
                return None
            raise
        return self._answer(admitted, delay)

    async def _redis_access(self, key: str) -> Any:
        link = self.redis
        assert link is not None
        if link.usable():
            interval_us = 1e6 / self.rate
            try:
                scripts = Scripts.of(link.connect())
                admitted, delay_us = await scripts.req(
                    keys=[f"gateway:limit-req:{key}"],
                    args=[round(interval_us), round(interval_us * self.burst)])
            except redis_errors() as exc:
                link.failed(exc)
            except Exception:
                if self.config.allow_degradation:
                    return None
                raise
            else:
                link.succeeded()
                answer = self._answer(bool(admitted), int(delay_us) / 1e6)
                return await answer if asyncio.iscoroutine(answer) else answer
        fallback = self.config.redis_failure
        if fallback == "allow":
            return None
        if fallback == "deny":
            return self.rejected
        answer = self._local_access(key)
        return await answer if asyncio.iscoroutine(answer) else answer

    def _answer(self, admitted: bool, delay: float) -> Any:
        if not admitted:
            return self.rejected
        if delay > 0.001 and not self.nodelay:
            return self._wait(delay)
        return None

    @staticmethod
    async def _wait(delay: float) -> None:
        await asyncio.sleep(delay)
