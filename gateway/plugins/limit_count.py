"""``limit-count``: at most ``count`` requests per ``time_window`` seconds per key (APISIX's
plugin, names and defaults: ``key`` remote_addr, ``key_type`` var|var_combination|constant,
``rejected_code`` 503, ``rejected_msg``, ``policy`` local, ``allow_degradation``,
``show_limit_quota_header`` true, ``group``, ``window_type`` fixed|sliding).

The counters live in the shared memory of ``env.limiter``: one count per key for every worker
process of the node. With ``show_limit_quota_header`` the response, proxied or rejected,
carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and ``X-RateLimit-Reset`` (seconds
until the window ends, rounded up).

``policy: redis`` shares the counters between nodes through Redis: counted here under a synced
key and synced by the master every ``sync_interval`` (gateway/server/redis_sync.py), whatever
the key type; with ``redis_strict: true``, one script call per request (windows of the wall
clock so every node agrees; see ``_redis_limit``).

``policy: redis-cluster`` does the same through a Redis cluster (``redis_cluster_nodes``).

Differs from APISIX: ``policy`` redis-sentinel is not supported (a config error), nor sliding
windows with redis; ``rules``
and variable-valued ``count``/``time_window`` are not supported;
``time_window`` may be fractional. Fixed windows are aligned to multiples of ``time_window``
of the monotonic clock (all keys' windows end together) rather than starting at each key's
first request.
"""
from __future__ import annotations

import math
from typing import Annotated, Any, Literal

import msgspec

from gateway._native import synced_key
from gateway._proto import LimitCountAccess
from gateway.plugins import Context
from gateway.plugins._keys import LimitKey
from gateway.plugins._redis_limit import (
    RedisFields,
    RedisLink,
    check_redis_policy,
    masked_repr,
    strict_access,
    synced_tag_of,
    window_key,
)
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv
from gateway.plugins.limit_req import Status, rejection

MAX_COUNT = (1 << 32) - 1


class LimitCountConfig(PluginConfig, RedisFields):
    count: Annotated[int, msgspec.Meta(gt=0, le=MAX_COUNT)]
    time_window: Annotated[float, msgspec.Meta(gt=0)]
    key: Annotated[str, msgspec.Meta(min_length=1)] = "remote_addr"
    key_type: Literal["var", "var_combination", "constant"] = "var"
    rejected_code: Status = 503
    rejected_msg: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    policy: str = "local"
    allow_degradation: bool = False
    show_limit_quota_header: bool = True
    group: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    window_type: Literal["fixed", "sliding"] = "fixed"

    def __post_init__(self) -> None:
        check_redis_policy(self)
        if self.policy != "local" and self.window_type == "sliding":
            raise ValueError("window_type: 'sliding' is not supported with policy: redis")

    def __repr__(self) -> str:
        return masked_repr(self)


class LimitCount(Plugin):
    name = "limit-count"
    priority = 1002
    Config = LimitCountConfig
    config: LimitCountConfig

    def __init__(self, config: LimitCountConfig) -> None:
        super().__init__(config)
        try:
            self.limit_key = LimitKey(self, config.key, config.key_type, config.group)
        except ValueError as exc:
            raise ValueError(f"key: {exc}") from None
        self.count = config.count
        self.window = float(config.time_window)
        self.sliding = config.window_type == "sliding"
        self.headers = config.show_limit_quota_header
        self.limit_header = str(config.count)
        self.rejected = rejection(config.rejected_code, config.rejected_msg)
        self.limiter: Any = None
        self.native_access = LimitCountAccess(self, "access")
        self.native_access.rejected = self.rejected
        self.native_access.configure(config.count, self.window, self.sliding, self.headers)
        # policy redis, strict: every request goes through the Python access (one Redis call
        # each); synced: counted in shared memory under a synced key, by the native hook as
        # for a local limit, where the master's syncer finds it and shares it through Redis
        self.redis = RedisLink.of(config) if config.policy != "local" and config.redis_strict \
            else None
        self.sync_tag = synced_tag_of(config, self.name, self.window)
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
            return self._redis_access(ctx, self.limit_key(ctx))
        if self.sync_tag is not None:
            return self._local_access(ctx, synced_key(self.limit_key(ctx), self.sync_tag))
        return self._local_access(ctx, self.limit_key(ctx))

    def _local_access(self, ctx: Context, key: str | int) -> Any:
        try:
            admitted, remaining, reset = self.limiter.count(
                key, self.count, self.window, 1, self.sliding)
        except Exception:
            if self.config.allow_degradation:
                return None
            raise
        return self._answer(ctx, admitted, remaining, reset)

    async def _redis_access(self, ctx: Context, key: str) -> Any:
        assert self.redis is not None
        rkey, window_ms, reset = window_key("gateway:limit-count", key, self.window)

        def answer(reply: Any) -> Any:
            used = int(reply[0])
            return self._answer(ctx, used <= self.count, max(0, self.count - used), reset)

        return await strict_access(
            self.config, self.redis, self.rejected,
            lambda scripts: scripts.count(keys=[rkey], args=[1, window_ms]),
            answer, lambda: self._local_access(ctx, key))

    def _answer(self, ctx: Context, admitted: bool, remaining: int, reset: float) -> Any:
        if self.headers:
            ctx.add_response_header("X-RateLimit-Limit", self.limit_header)
            ctx.add_response_header("X-RateLimit-Remaining", str(remaining))
            ctx.add_response_header("X-RateLimit-Reset", str(math.ceil(reset)))
        if not admitted:
            return self.rejected
        return None
