"""``limit-conn``: concurrent requests in flight per key (APISIX's plugin, names and defaults:
``conn``, ``burst``, ``default_conn_delay``, ``only_use_default_delay`` false, ``key``
remote_addr, ``key_type`` var|var_combination, ``rejected_code`` 503, ``rejected_msg``,
``allow_degradation``).

A request takes one unit of its key's gauge in ``access`` and gives it back in ``log`` (after
the response is sent, whatever it was). The gauge is in the shared memory of ``env.limiter``,
so the limit holds for all worker processes together. Up to ``conn`` requests pass at once;
the next ``burst`` are admitted after a delay (lua-resty-limit-traffic's formula, which APISIX
uses: ``unit_delay * floor((in_flight - 1) / conn)``), where ``unit_delay`` starts at
``default_conn_delay`` and, unless ``only_use_default_delay``, follows the observed request
latency (each finished request moves it halfway towards its latency, per worker); beyond
``conn + burst`` requests are rejected with ``rejected_code``.

A request whose client goes away before the response (no log phase) gives its unit back when
the gateway drops the request context. Both phases run as compiled hooks
(``gateway._proto.LimitConnAccess``/``LimitConnLog``); the methods here are the reference and
take the requests whose key has no fixed scope (a global rule's or a consumer's instance).

Differs from APISIX: ``policy`` redis/redis-cluster are not supported (a config error);
``rules`` and variable-valued ``conn``/``burst`` are not supported; ``key`` defaults to
``remote_addr``. A worker process that dies with requests in flight leaks their units (so does
nginx's shared dict).
"""
from __future__ import annotations

import asyncio
from typing import Annotated, Any, Literal

import msgspec

from gateway._proto import LimitConnAccess, LimitConnLog
from gateway.plugins import Context
from gateway.plugins._keys import LimitKey
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv
from gateway.plugins.limit_req import Status, check_policy, rejection


class LimitConnConfig(PluginConfig):
    conn: Annotated[int, msgspec.Meta(gt=0)]
    burst: Annotated[int, msgspec.Meta(ge=0)]
    default_conn_delay: Annotated[float, msgspec.Meta(gt=0)]
    only_use_default_delay: bool = False
    key: Annotated[str, msgspec.Meta(min_length=1)] = "remote_addr"
    key_type: Literal["var", "var_combination"] = "var"
    rejected_code: Status = 503
    rejected_msg: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    allow_degradation: bool = False
    policy: str = "local"

    def __post_init__(self) -> None:
        check_policy(self.policy)


class _Lease:
    """One unit of a gauge held by a request; given back once, by ``log`` or, if the request
    never gets there (client gone), when the request context is dropped."""

    __slots__ = ("limiter", "key", "slot", "delay")

    def __init__(self, limiter: Any, key: str, slot: int, delay: float) -> None:
        self.limiter = limiter
        self.key = key
        self.slot = slot
        self.delay = delay

    def release(self) -> None:
        slot, self.slot = self.slot, -1
        if slot >= 0:
            self.limiter.gauge_release(self.key, slot)

    def __del__(self) -> None:
        self.release()


class LimitConn(Plugin):
    name = "limit-conn"
    priority = 1003
    Config = LimitConnConfig
    config: LimitConnConfig

    def __init__(self, config: LimitConnConfig) -> None:
        super().__init__(config)
        try:
            self.limit_key = LimitKey(self, config.key, config.key_type)
        except ValueError as exc:
            raise ValueError(f"key: {exc}") from None
        self.rejected = rejection(config.rejected_code, config.rejected_msg)
        self.conn = config.conn
        self.max_in_flight = config.conn + config.burst
        self.unit_delay = config.default_conn_delay
        self.adapt_delay = not config.only_use_default_delay
        self.limiter: Any = None
        self.native_access = LimitConnAccess(self, "access")
        self.native_access.rejected = self.rejected
        self.native_access.configure(config.conn, config.burst)
        native_log = LimitConnLog(self, "log")
        native_log.configure(self.adapt_delay)
        self.native_hooks = {"access": self.native_access, "log": native_log}

    def bind(self, env: PluginEnv) -> None:
        self.limiter = env.limiter
        self.limit_key.bind(env.route_id)
        self.limit_key.bind_native(self.native_access, env.limiter)

    def access(self, ctx: Context) -> Any:
        key = self.limit_key(ctx)
        try:
            admitted, in_flight, slot = self.limiter.gauge_acquire(key, self.max_in_flight)
        except Exception:
            if self.config.allow_degradation:
                return None
            raise
        if not admitted:
            return self.rejected
        delay = self.unit_delay * ((in_flight - 1) // self.conn) if in_flight > self.conn else 0.0
        if slot >= 0:
            ctx.state[self] = _Lease(self.limiter, key, slot, delay)
        if delay >= 0.001:
            return self._wait(delay)
        return None

    @staticmethod
    async def _wait(delay: float) -> None:
        await asyncio.sleep(delay)

    def log(self, ctx: Context) -> None:
        lease = ctx.state.pop(self, None)
        if lease is None:
            return
        lease.release()
        if self.adapt_delay:
            # The time the request really took, without the delay this plugin added.
            latency = ctx.upstream_latency if ctx.node is not None else ctx.elapsed - lease.delay
            if latency > 0:
                self.unit_delay = (self.unit_delay + latency) / 2
