"""``policy: redis`` of limit-count and limit-req: counters shared by every gateway node through
one Redis (APISIX's keys: ``redis_host``, ``redis_port``, ``redis_password``,
``redis_database``, ``redis_timeout`` in milliseconds).

Without ``redis_strict`` (limit-count with a constant key), the workers count in the node's
shared memory as for ``policy: local`` and the master's one syncer
(gateway/server/redis_sync.py) exchanges the counts with Redis every ``sync_interval``.
Strict mode (``redis_strict: true``) makes one Lua script call per request, so the limit is
exact across nodes at the price of a Redis round trip per request (for low rates). When Redis
cannot be reached, ``redis_failure`` decides: ``local`` (default) keeps limiting with the
node's shared-memory limiter, ``allow`` admits, ``deny`` rejects. The outage is logged once,
Redis is retried at most once a second, and its return is logged once too.

The client is redis-py's asyncio client with the hiredis parser: the maintained client of the
Redis project itself, with pipelining, Lua scripts by SHA (``EVALSHA`` with ``EVAL`` fallback)
and cluster support, and hiredis' C parser for the replies.
"""
from __future__ import annotations

import inspect
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, ClassVar, Literal

import msgspec

log = logging.getLogger("gateway.limits.redis")

Port = Annotated[int, msgspec.Meta(ge=1, le=65535)]
POLICIES = ("local", "redis")
#: How long after a failed call Redis is left alone (requests use the fallback meanwhile).
RETRY_AFTER = 1.0


class RedisFields(msgspec.Struct, kw_only=True):
    """The Redis keys shared by limit-count and limit-req (mixed into their configs)."""
    redis_host: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    redis_port: Port = 6379
    redis_password: str | None = None
    redis_database: Annotated[int, msgspec.Meta(ge=0)] = 0
    redis_timeout: Annotated[int, msgspec.Meta(gt=0)] = 1000
    redis_cluster_nodes: list[str] | None = None
    redis_strict: bool = False
    redis_failure: Literal["local", "allow", "deny"] = "local"
    sync_interval: Annotated[float, msgspec.Meta(gt=0)] = 0.1


def check_redis_policy(config: Any, syncable: bool = False) -> None:
    """Raises ValueError naming the offending key when the policy's keys do not fit."""
    policy = config.policy
    if policy == "redis-cluster":
        raise ValueError("policy: 'redis-cluster' is not supported yet (use policy: redis)")
    if policy not in POLICIES:
        raise ValueError(f"policy: '{policy}' is not supported (use local or redis)")
    if policy == "local":
        return
    if config.redis_host is None:
        raise ValueError("redis_host: required with policy: redis")
    if config.redis_cluster_nodes is not None:
        raise ValueError("redis_cluster_nodes: only with policy: redis-cluster, which is "
                         "not supported yet")
    if config.redis_strict:
        return
    if not syncable:
        raise ValueError("redis_strict: policy: redis needs redis_strict: true here (the "
                         "per-node syncer covers limit-count)")
    if config.key_type != "constant":
        raise ValueError("key_type: policy: redis without redis_strict needs key_type: constant "
                         "for now (the per-node syncer knows the keys from the config)")
    if config.redis_failure != "local":
        raise ValueError("redis_failure: only 'local' without redis_strict (the workers count "
                         "locally and the syncer catches up)")


def masked_repr(config: msgspec.Struct) -> str:
    """The config's repr with ``redis_password`` hidden (reprs reach logs and error pages)."""
    fields = []
    for name in config.__struct_fields__:
        value = getattr(config, name)
        if name == "redis_password" and value is not None:
            value = "***"
        fields.append(f"{name}={value!r}")
    return f"{type(config).__name__}({', '.join(fields)})"


class RedisLink:
    """One client per Redis address, user and database in a worker process, with the
    once-per-outage logging and the retry pause shared by every plugin using it."""

    _links: ClassVar[dict[tuple[Any, ...], RedisLink]] = {}

    def __init__(self, host: str, port: int, password: str | None, database: int,
                 timeout_ms: int) -> None:
        self.where = f"{host}:{port}/{database}"
        self.params = (host, port, password, database, timeout_ms / 1000.0)
        self.client: Any = None
        self.down_until = 0.0
        self.down = False

    @classmethod
    def of(cls, config: Any) -> RedisLink:
        key = (config.redis_host, config.redis_port, config.redis_password,
               config.redis_database, config.redis_timeout)
        link = cls._links.get(key)
        if link is None:
            link = cls._links[key] = cls(*key)
        return link

    def usable(self) -> bool:
        return not self.down or time.monotonic() >= self.down_until

    def connect(self) -> Any:
        if self.client is None:
            # imported here: only processes that use Redis pay for it
            import redis.asyncio
            from redis.asyncio.retry import Retry
            from redis.backoff import NoBackoff

            host, port, password, database, timeout = self.params
            # no retries: a failed call takes the fallback at once (the default retries with
            # back-off for seconds, which would hold requests)
            self.client = redis.asyncio.Redis(
                host=host, port=port, password=password, db=database,
                socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0))
        return self.client

    def failed(self, exc: BaseException) -> None:
        self.down_until = time.monotonic() + RETRY_AFTER
        if not self.down:
            self.down = True
            # the exception's type and text only: never the client (its repr holds the password)
            log.warning("Redis at %s unreachable (%s: %s); limits fall back until it is back",
                        self.where, type(exc).__name__, exc)

    def succeeded(self) -> None:
        if self.down:
            self.down = False
            log.warning("Redis at %s reachable again; limits shared again", self.where)


def redis_errors() -> tuple[type[BaseException], ...]:
    import redis.exceptions

    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError, OSError)


async def strict_access(config: Any, link: RedisLink, rejected: Any,
                        call: Callable[[Scripts], Awaitable[Any]],
                        answer: Callable[[Any], Any], local: Callable[[], Any]) -> Any:
    """One request of ``redis_strict`` mode: ``call`` runs the script and ``answer`` turns its
    reply into the plugin's answer. Redis unreachable (now, or failed less than RETRY_AFTER ago):
    ``redis_failure`` decides (``local`` is the node's own limiter, ``local()``). Any other error
    admits the request with ``allow_degradation``, else it is raised."""
    if link.usable():
        try:
            reply = await call(Scripts.of(link.connect()))
        except redis_errors() as exc:
            link.failed(exc)
        except Exception:
            if config.allow_degradation:
                return None
            raise
        else:
            link.succeeded()
            return await _settled(answer(reply))
    fallback = config.redis_failure
    if fallback == "allow":
        return None
    if fallback == "deny":
        return rejected
    return await _settled(local())


async def _settled(answer: Any) -> Any:
    """A limit's answer, awaited when it is a coroutine (limit-req's delay)."""
    return await answer if inspect.isawaitable(answer) else answer


#: limit-count, fixed window: KEYS[1] the window's key, ARGV cost, window in ms.
#: Returns {count after this request, ms until the window's key expires}.
COUNT_SCRIPT = """
local c = redis.call('INCRBY', KEYS[1], ARGV[1])
if c == tonumber(ARGV[1]) then redis.call('PEXPIRE', KEYS[1], ARGV[2]) end
return {c, redis.call('PTTL', KEYS[1])}
"""

#: limit-req, GCRA on Redis' clock: KEYS[1] the bucket, ARGV interval per request and burst
#: tolerance, both in microseconds. Returns {admitted 0/1, delay in microseconds}.
REQ_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local tolerance = tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if tat < now then tat = now end
local delay = tat - now
if delay > tolerance then return {0, delay} end
local new = tat + interval
redis.call('SET', KEYS[1], string.format('%d', new), 'PX', math.floor((new - now) / 1000) + 1000)
return {1, delay}
"""


class Scripts:
    """The Lua scripts registered on one client (redis-py sends EVALSHA, EVAL on NOSCRIPT)."""

    _by_client: ClassVar[dict[int, Scripts]] = {}

    def __init__(self, client: Any) -> None:
        self.count = client.register_script(COUNT_SCRIPT)
        self.req = client.register_script(REQ_SCRIPT)

    @classmethod
    def of(cls, client: Any) -> Scripts:
        scripts = cls._by_client.get(id(client))
        if scripts is None:
            scripts = cls._by_client[id(client)] = cls(client)
        return scripts


def window_key(prefix: str, key: str, window: float) -> tuple[str, int, float]:
    """Redis key of the current fixed window (wall clock, so every node agrees), its length in
    ms and the seconds until it ends."""
    window_ms = max(1, round(window * 1000))
    now_ms = time.time() * 1000
    index = int(now_ms // window_ms)
    reset = ((index + 1) * window_ms - now_ms) / 1000
    return f"{prefix}:{key}:{window_ms}:{index}", window_ms, reset

