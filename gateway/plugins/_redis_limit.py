"""``policy: redis`` of limit-count and limit-req: counters shared by every gateway node through
one Redis (APISIX's keys: ``redis_host``, ``redis_port``, ``redis_password``,
``redis_database``, ``redis_timeout`` in milliseconds).

Without ``redis_strict`` (synced mode), the workers count in the node's shared memory as for
``policy: local``, under a *synced key* (rust/limiter/src/synced.rs: a flag bit, a tag naming
the limit's parameters, the hash of the request's key), and the master's one syncer
(gateway/server/redis_sync.py) finds the live keys by iterating the shared table and exchanges
their counts with Redis every ``sync_interval``: no Redis round trip on the hot path, any key
(per client, per consumer, constant). Strict mode (``redis_strict: true``) makes one Lua script
call per request, so the limit is exact across nodes at the price of a Redis round trip per
request (for low rates). When Redis cannot be reached, ``redis_failure`` decides: ``local``
(default) keeps limiting with the node's shared-memory limiter, ``allow`` admits, ``deny``
rejects. The outage is logged once, Redis is retried at most once a second, and its return is
logged once too.

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
POLICIES = ("local", "redis", "redis-cluster")
#: How long after a failed call Redis is left alone (requests use the fallback meanwhile).
RETRY_AFTER = 1.0


class RedisFields(msgspec.Struct, kw_only=True):
    """The Redis keys shared by limit-count and limit-req (mixed into their configs)."""
    redis_host: Annotated[str, msgspec.Meta(min_length=1)] | None = None
    redis_port: Port = 6379
    redis_password: str | None = None
    redis_database: Annotated[int, msgspec.Meta(ge=0)] = 0
    redis_timeout: Annotated[int, msgspec.Meta(gt=0)] = 1000
    #: policy redis-cluster: "host:port" of some of the cluster's nodes (the client asks them
    #: for the others).
    redis_cluster_nodes: list[Annotated[str, msgspec.Meta(pattern=r"^[^\s:]+:[0-9]{1,5}$")]] | None = None
    redis_strict: bool = False
    redis_failure: Literal["local", "allow", "deny"] = "local"
    sync_interval: Annotated[float, msgspec.Meta(gt=0)] = 0.1


def check_redis_policy(config: Any) -> None:
    """Raises ValueError naming the offending key when the policy's keys do not fit."""
    policy = config.policy
    if policy not in POLICIES:
        raise ValueError(f"policy: '{policy}' is not supported (use local, redis or "
                         "redis-cluster)")
    if policy == "local":
        return
    if policy == "redis-cluster":
        if not config.redis_cluster_nodes:
            raise ValueError("redis_cluster_nodes: required with policy: redis-cluster")
        if config.redis_database != 0:
            raise ValueError("redis_database: a Redis cluster has database 0 only")
    elif config.redis_host is None:
        raise ValueError("redis_host: required with policy: redis")
    elif config.redis_cluster_nodes is not None:
        raise ValueError("redis_cluster_nodes: only with policy: redis-cluster")
    if config.redis_strict:
        return
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

    def __init__(self, host: str | None, port: int, password: str | None, database: int,
                 timeout_ms: int, cluster_nodes: tuple[str, ...] = ()) -> None:
        self.where = f"cluster {','.join(cluster_nodes)}" if cluster_nodes else \
            f"{host}:{port}/{database}"
        self.params = (host, port, password, database, timeout_ms / 1000.0)
        self.cluster_nodes = cluster_nodes
        self.client: Any = None
        #: cluster: the sync scripts are loaded on every primary (its pipelines do not load them)
        self.scripts_loaded = False
        self.down_until = 0.0
        self.down = False

    @classmethod
    def of(cls, config: Any) -> RedisLink:
        nodes = tuple(config.redis_cluster_nodes or ()) if config.policy == "redis-cluster" \
            else ()
        key = (None if nodes else config.redis_host, config.redis_port, config.redis_password,
               config.redis_database, config.redis_timeout, nodes)
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
            if self.cluster_nodes:
                from redis.asyncio.cluster import ClusterNode, RedisCluster

                startup = [ClusterNode(*node.rsplit(":", 1)) for node in self.cluster_nodes]
                self.client = RedisCluster(
                    startup_nodes=startup, password=password, socket_timeout=timeout,
                    socket_connect_timeout=timeout, retry=Retry(NoBackoff(), 0))
                return self.client
            # no retries: a failed call takes the fallback at once (the default retries with
            # back-off for seconds, which would hold requests)
            assert host is not None  # the config check requires it without cluster nodes
            self.client = redis.asyncio.Redis(
                host=host, port=port, password=password, db=database,
                socket_timeout=timeout, socket_connect_timeout=timeout,
                retry=Retry(NoBackoff(), 0))
        return self.client

    def failed(self, exc: BaseException) -> None:
        self.scripts_loaded = False
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

    # a cluster without a node for a slot (one down, before failover) is an outage too
    return (redis.exceptions.ConnectionError, redis.exceptions.TimeoutError,
            redis.exceptions.ClusterError, redis.exceptions.ClusterDownError,
            redis.exceptions.NoScriptError, OSError)


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
        self.count_sync = client.register_script(COUNT_SYNC_SCRIPT)
        self.req_sync = client.register_script(REQ_SYNC_SCRIPT)

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



# ------------------------------------------------------------------ synced mode (not strict)

#: Redis key prefixes of the synced counts and buckets.
COUNT_SYNC_PREFIX = "gateway:limit-count-sync"
REQ_SYNC_PREFIX = "gateway:limit-req-sync"
#: limit-req's synced keys count their admitted requests in a counter of this window, which the
#: syncer reads to know what to push (the bucket's TAT alone does not say how many passed).
REQ_CONSUMED_WINDOW = 3600.0
TAG_MASK = (1 << 20) - 1

#: The synced counts, for every key of one limit (KEYS share a cluster slot: one hash tag).
#: ARGV[1] the window in ms, ARGV[1 + i] the new local requests of KEYS[i]. Returns the total
#: of each key's window after the push.
COUNT_SYNC_SCRIPT = """
local window = ARGV[1]
local totals = {}
for i, key in ipairs(KEYS) do
  local delta = tonumber(ARGV[i + 1])
  local total
  if delta > 0 then
    total = redis.call('INCRBY', key, delta)
    if total == delta then redis.call('PEXPIRE', key, window) end
  else
    total = tonumber(redis.call('GET', key) or '0')
  end
  totals[i] = total
end
return totals
"""

#: The synced leaky buckets of one limit-req, on Redis' clock: ARGV[1] the interval per request
#: in microseconds, ARGV[2] how long ago the node's previous push was (its admissions were
#: spread over that span, so an empty bucket is filled from then, not from now: otherwise the
#: node would pay again for requests that conformed), ARGV[2 + i] the requests KEYS[i]
#: admitted on the node since. Returns each bucket's backlog (TAT - now) in microseconds.
#: A TAT already past is stored too: another node's push of requests admitted over the same
#: span must queue behind these, not start from its own span's beginning as if they had not
#: been (which lost them: the limit was overshot by up to a push per sync).
REQ_SYNC_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local interval = tonumber(ARGV[1])
local since = now - tonumber(ARGV[2])
local backlogs = {}
for i, key in ipairs(KEYS) do
  local added = tonumber(ARGV[i + 2])
  local tat = tonumber(redis.call('GET', key) or '0')
  if added > 0 then
    if tat < since then tat = since end
    tat = tat + added * interval
    redis.call('SET', key, string.format('%d', tat), 'PX',
               math.floor(math.max(tat - now, 0) / 1000) + 1000)
  end
  if tat < now then tat = now end
  backlogs[i] = math.floor(tat - now)
end
return backlogs
"""


def sync_tag(kind: str, measure: float, config: Any) -> int:
    """The tag of a synced limit's keys: names what the master's syncer needs to sync them (the
    plugin, its window or rate, the Redis it shares), the same in every process and node."""
    from gateway._native import hash_key

    where = (kind, float(measure), config.redis_host, config.redis_port, config.redis_database,
             config.policy, tuple(config.redis_cluster_nodes or ()))
    return hash_key(repr(where)) & TAG_MASK


def synced_tag_of(config: Any, kind: str, measure: float) -> int | None:
    """The sync tag when ``config`` is in synced mode (policy redis, not strict), else None."""
    if config.policy == "local" or config.redis_strict:
        return None
    return sync_tag(kind, measure, config)


def count_sync_key(tag: int, slot_key: int, window: float) -> tuple[str, int, float]:
    """Redis key of a synced count's current window (see window_key); the tag in braces keeps a
    limit's keys in one cluster slot."""
    return window_key(f"{COUNT_SYNC_PREFIX}:{{{tag:05x}}}", f"{slot_key:016x}", window)


def req_sync_key(tag: int, slot_key: int) -> str:
    return f"{REQ_SYNC_PREFIX}:{{{tag:05x}}}:{slot_key:016x}"
