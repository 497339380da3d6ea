"""etcd mode's config source: the master's one watch on the prefix, and the states it applies.

- Start: one consistent read of the prefix; when etcd does not answer (or holds an invalid
  state), the on-disk copy of the last good state (``store.backup``) is served instead.
- Then one watch per node (the master's; workers get snapshots as in file mode) from the revision
  after that read. A canceled watch with ``compact_revision`` (the revision it wanted was
  compacted) or a revision lower than the one already seen (etcd restored from a backup) means
  events were lost: the whole prefix is read again at one revision, and watched from there.
  A lost connection is watched again with back-off; progress notifications tell a silent watch
  from a dead one.
- Each state (coalesced: a burst of events is one candidate) goes through the checker every
  config goes through: the few keys changed since the running config's state one by one, on the
  part of the config each can affect (``incremental.py``; a key refused alone is tried again
  after the others, and one deleted and created again moves last), else (many keys, a full
  read) the whole state; an invalid one is logged with the keys and the reasons and the running
  config stays. A refused key left in etcd stays among the changes checked against the running
  config until it is fixed. A good one is applied to every worker (as a delta) and, a
  moment later, written to the on-disk copy (``backup.py``).

The running config is labelled with the etcd revision of the state it came from: status.json
and the admin ``/status`` give each worker's, and nodes on one etcd converge on the same.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, Protocol

import msgspec
import orjson

from gateway import heap
from gateway.atomic_file import write_atomically
from gateway.config import Config, ConfigError, ConfigIssue, EtcdStore
from gateway.etcd.backup import BackupWriter
from gateway.etcd.client import EtcdClient, EtcdError, WatchResponse, by_creation
from gateway.etcd.incremental import MAX_CHANGES, state_config
from gateway.etcd.keys import compose
from gateway.server.state import InstanceState

log = logging.getLogger("gateway.etcd")
# httpx logs every request at INFO: one per Admin API read, one per watch made
logging.getLogger("httpx").setLevel(logging.WARNING)

RESOURCES = ("routes", "upstreams", "consumers", "global_rules", "ssls", "plugin_metadata")
MIN_BACKOFF = 0.1
MAX_BACKOFF = 3.0


class SourceHost(Protocol):
    """What the source needs of the master."""
    config: Config | None
    version: int
    reload_lock: asyncio.Lock
    state: InstanceState

    def validate(self, data: Any, source: str = ...) -> Config: ...

    def apply(self, config: Config, reason: str) -> Awaitable[bool]: ...

    def write_status(self) -> None: ...


class StartError(Exception):
    """The node cannot start in etcd mode: the message says why."""


def node_settings(file_config: Config, file: str, strict: bool = True) -> dict[str, Any]:
    """The node file's ``gateway`` section; in etcd mode the resources live in etcd only
    (``strict=False``: a last good copy, whose resources are dropped)."""
    present = [name for name in RESOURCES if strict and getattr(
        file_config, "global_rule_list" if name == "global_rules" else name)]
    if present:
        raise ConfigError([ConfigIssue(
            file=file, path=name, message="in etcd mode the resources live in etcd: move them there "
            "with `gateway config import` and keep only `gateway:` in this file") for name in present])
    settings: dict[str, Any] = msgspec.to_builtins(file_config.gateway)
    return settings


class EtcdSource:
    def __init__(self, host: SourceHost, settings: EtcdStore, gateway: dict[str, Any]) -> None:
        self.host = host
        self.settings = settings
        self.prefix = settings.prefix
        self.gateway = gateway
        self.client = EtcdClient(settings)
        #: etcd's state under the prefix (key -> value) as of ``position``
        self.kvs: dict[str, bytes] = {}
        self.position = 0
        #: the revision of the state the running config came from
        self.running = 0
        #: master config version -> the etcd revision it came from
        self.revisions: dict[int, int] = {}
        self.connected = False
        self.full_read_needed = False
        self.changed = asyncio.Event()
        self.waiters: list[tuple[int, asyncio.Future[bool]]] = []
        self.tasks: list[asyncio.Task[None]] = []
        self.last_error = ""
        #: (state, its config) an Admin API write checked: applied as is when it arrives
        self.expected: tuple[dict[str, bytes], Config] | None = None
        #: the state the master's running config came from (None: not known, check whole)
        self.base: dict[str, bytes] | None = None
        self.base_config: Config | None = None
        #: the keys changed since ``base`` (None: too many, or a full read: check whole)
        self.unapplied: set[str] | None = None
        #: of those, the keys deleted and created again (their resource now comes last)
        self.recreated: set[str] = set()
        #: the keys of the state being checked and applied now (not yet ``base``)
        self.in_flight: tuple[set[str] | None, set[str]] = (set(), set())
        #: how many states were checked change by change, and whole
        self.checks = {"changes": 0, "whole": 0}
        self.backup_writer = BackupWriter(self)

    @property
    def backup(self) -> Path:
        if self.settings.backup:
            return Path(self.settings.backup)
        return self.host.state.directory / "etcd-snapshot.json"

    def validate(self, data: Any) -> Config:
        return self.host.validate(data, f"etcd {self.prefix}")

    def compose(self, kvs: dict[str, bytes]) -> Config:
        return compose(self.prefix, self.gateway, kvs.items(), self.validate)

    # ---------------------------------------------------------------- start

    async def first_config(self) -> Config:
        """The config to start with: etcd's, else the on-disk copy of the last good one."""
        try:
            revision, kvs = await self.client.range_prefix(self.prefix + "/")
        except EtcdError as exc:
            self.last_error = str(exc)
            log.error("etcd (%s) cannot be read: %s", ", ".join(self.settings.endpoints), exc)
            return await self.start_from_backup()
        self.connected = True
        self.kvs = {kv.key: kv.value for kv in by_creation(kvs)}
        self.position = revision
        try:
            config = await asyncio.to_thread(self.compose, self.kvs)
        except ConfigError as exc:
            log.error("etcd revision %d is invalid:\n%s", revision, exc)
            return await self.start_from_backup()
        self.label_next(revision)
        self.based_on(self.kvs, config)
        await asyncio.to_thread(self.save_backup, revision, dict(self.kvs))
        log.info("config from etcd revision %d (%d keys under %s)", revision, len(kvs), self.prefix)
        return config

    async def start_from_backup(self) -> Config:
        try:
            saved = orjson.loads(self.backup.read_bytes())
            revision = int(saved["revision"])
            kvs = {str(k): str(v).encode() for k, v in saved["kvs"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
            raise StartError(f"etcd has no good config for this node and there is no on-disk copy "
                             f"of one ({self.backup}: {getattr(exc, 'strerror', None) or exc})") from None
        try:
            config = await asyncio.to_thread(self.compose, kvs)
        except ConfigError as exc:
            raise StartError(f"the on-disk copy {self.backup} is not valid with this node's "
                             f"settings:\n{exc}") from None
        log.warning("starting from the on-disk copy of etcd revision %d (%s); etcd's changes will "
                    "be applied once it answers", revision, self.backup)
        self.full_read_needed = True
        self.label_next(revision)
        self.based_on(kvs, config)
        return config

    def label_next(self, revision: int) -> None:
        """The next config version the master adopts comes from ``revision``."""
        self.running = revision
        self.revisions[self.host.version + 1] = revision
        for version in sorted(self.revisions)[:-64]:  # workers run one of the last few
            del self.revisions[version]

    def node_file(self, file_config: Config, file: str) -> Config:
        """A reload of the node file: its settings with the resources etcd holds now."""
        if file_config.gateway.etcd != self.settings:
            raise ConfigError([ConfigIssue(file=file, path="gateway.store",
                                           message="the store changes only on restart")])
        gateway = node_settings(file_config, file)
        config = compose(self.prefix, gateway, self.kvs.items(), self.validate)
        self.gateway = gateway
        self.label_next(self.position)
        self.based_on(self.kvs, config)
        return config

    def based_on(self, kvs: dict[str, bytes], config: Config) -> None:
        """``config`` (the next running one) is the one of the state ``kvs``."""
        self.base, self.base_config = dict(kvs), config
        self.unapplied = set()
        self.recreated = set()

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self.tasks = [loop.create_task(self.watch_forever()), loop.create_task(self.apply_forever())]
        for task in self.tasks:
            task.add_done_callback(_log_failure)

    async def close(self) -> None:
        for task in self.tasks:
            task.cancel()
        await asyncio.gather(*self.tasks, return_exceptions=True)
        await self.backup_writer.flush()
        await self.client.close()

    # ---------------------------------------------------------------- watching

    async def watch_forever(self) -> None:
        delay = MIN_BACKOFF
        while True:
            try:
                if self.full_read_needed:
                    await self.full_read()
                await self.watch_once()
            except Exception as exc:  # noqa: BLE001 - the watch outlives any one failure
                if not isinstance(exc, EtcdError):
                    log.error("etcd watch failed", exc_info=exc)
                if self.connected or str(exc) != self.last_error:
                    log.error("etcd unreachable (%s): still serving revision %d; trying again",
                              exc, self.running)
                self.connected = False
                self.last_error = str(exc)
                self.host.write_status()
                await asyncio.sleep(delay)
                delay = min(delay * 2, MAX_BACKOFF)
            else:
                delay = MIN_BACKOFF

    async def full_read(self) -> None:
        revision, kvs = await self.client.range_prefix(self.prefix + "/")
        if revision < self.position:
            log.warning("etcd's revision went back from %d to %d (restored from a backup?)",
                        self.position, revision)
        self.kvs = {kv.key: kv.value for kv in by_creation(kvs)}
        self.position = revision
        self.full_read_needed = False
        self.unapplied = None
        log.info("read etcd's whole state at revision %d (%d keys)", revision, len(kvs))
        self.changed.set()

    async def watch_once(self) -> None:
        """Watches until the stream ends; returns when a full read is needed first."""
        idle = 2 * self.settings.progress_interval + self.settings.timeout
        # closed on return: the stream's connection is let go at once, not when collected
        async with contextlib.aclosing(self.client.watch(self.prefix + "/", self.position + 1, idle)) as stream:
            async for response in stream:
                if not self.connected:
                    log.info("etcd is back: watching %s from revision %d", self.prefix, self.position + 1)
                    self.connected = True
                    self.host.write_status()
                if self.lost_events(response):
                    self.full_read_needed = True
                    return
                self.take(response)

    def lost_events(self, response: WatchResponse) -> bool:
        if response.canceled:
            if response.compact_revision:
                log.warning("etcd compacted revision %d before it could be watched: reading the "
                            "whole state again", response.compact_revision)
                return True
            raise EtcdError(f"etcd canceled the watch: {response.cancel_reason or 'no reason given'}")
        if response.created and response.revision < self.position:
            log.warning("etcd's revision went back from %d to %d (restored from a backup?): "
                        "reading the whole state again", self.position, response.revision)
            return True
        return False

    def take(self, response: WatchResponse) -> None:
        if not response.events:
            return  # created, or a progress notification: the watch is alive
        for event in response.events:
            if event.deleted:
                self.kvs.pop(event.kv.key, None)
            else:
                self.kvs[event.kv.key] = event.kv.value
            self.position = max(self.position, event.kv.mod_revision)
            if self.unapplied is not None:
                if event.kv.key in self.unapplied and event.kv.create_revision == event.kv.mod_revision:
                    # deleted and created again: same value maybe, but its place is now the last
                    self.recreated.add(event.kv.key)
                self.unapplied.add(event.kv.key)
                if len(self.unapplied) > MAX_CHANGES:
                    self.unapplied = None
        self.changed.set()

    # ---------------------------------------------------------------- applying

    async def apply_forever(self) -> None:
        while True:
            await self.changed.wait()
            self.changed.clear()
            keys, recreated = self.unapplied, self.recreated
            self.unapplied, self.recreated = set(), set()
            self.in_flight = (keys, recreated)
            try:
                await self.apply_state(self.position, dict(self.kvs), keys, recreated)
            except Exception:  # noqa: BLE001 - the next state is applied all the same
                self.unapplied = None  # which keys the running config lacks is not known
                log.exception("etcd revision %d could not be applied", self.position)
            finally:
                self.in_flight = (set(), set())

    def pending(self) -> tuple[set[str] | None, set[str]]:
        """The keys that differ between ``base`` and ``kvs`` now (None: not known), and which of
        them were created again: those the watch has not applied yet and those it is applying."""
        (flying, flying_recreated), unapplied = self.in_flight, self.unapplied
        if flying is None or unapplied is None:
            return None, set()
        return flying | unapplied, flying_recreated | self.recreated

    async def apply_state(self, revision: int, kvs: dict[str, bytes], keys: set[str] | None = None,
                          recreated: set[str] | None = None) -> None:
        """One state of etcd, checked; applied to every worker when it is good and new.
        ``keys``: those changed since ``base`` (checked one by one when they are few), of which
        ``recreated`` were deleted and created again."""
        started = time.monotonic()
        host = self.host
        try:
            expected = self.expected
            changed: Config | None = None
            if expected is not None and expected[0] == kvs:
                changed = expected[1]  # checked by the Admin API write that made this state
            else:
                async with host.reload_lock:
                    base, base_config = self.base, self.base_config
                    changed = await asyncio.to_thread(self.changed_config, base, base_config, kvs,
                                                      keys, recreated or set())
            config = changed if changed is not None else await asyncio.to_thread(self.compose_counted, kvs)
        except ConfigError as exc:
            log.error("etcd revision %d rejected; still serving revision %d:\n%s", revision,
                      self.running, exc)
            # the running config still comes from ``base``: the next state is checked against
            # it, change by change (a key refused stays among the changes until it is fixed)
            self.unapplied = None if keys is None or self.unapplied is None else self.unapplied | keys
            self.recreated |= recreated or set()
            self.processed(revision, False)
            return
        async with host.reload_lock:
            # a config built change by change from the running one is new: the whole check's
            # may be the running one again (a state equal to it), which is not applied again
            if config is host.config or (changed is None and host.config is not None
                                         and config.fingerprint() == host.config.fingerprint()):
                self.running = self.revisions[host.version] = revision
                host.write_status()
                ok = True
            else:
                self.label_next(revision)
                ok = await host.apply(config, f"etcd revision {revision}")
            self.base, self.base_config = kvs, config
        log.debug("etcd revision %d checked and applied in %.1f ms", revision,
                  (time.monotonic() - started) * 1000)
        if ok:
            self.backup_writer.save_soon(revision, kvs)
        self.processed(revision, ok)
        if changed is None:
            heap.settle()  # the whole state was composed: a new config of every route

    def changed_config(self, base: dict[str, bytes] | None, config: Config | None,
                       kvs: dict[str, bytes], keys: set[str] | None, recreated: set[str]) -> Config | None:
        """The config of ``base`` (the running one) with the few ``keys`` changed one by one
        (``incremental.state_config``; a ConfigError names the keys refused); None when the
        whole state must be checked instead: many keys, or a full read."""
        if keys is None or base is None or config is None or len(keys) > MAX_CHANGES:
            return None
        try:
            changed = state_config(config, self.prefix, base, kvs, keys, recreated, self.validate)
        except ConfigError:
            self.checks["changes"] += 1
            raise
        if changed is not None:
            self.checks["changes"] += 1
        return changed

    def compose_counted(self, kvs: dict[str, bytes]) -> Config:
        """The whole state checked (counted: status.json's ``store.checks``)."""
        self.checks["whole"] += 1
        return self.compose(kvs)

    def expect(self, kvs: dict[str, bytes], config: Config) -> None:
        """An Admin API write checked the state ``kvs`` as ``config``."""
        self.expected = (kvs, config)

    def processed(self, revision: int, ok: bool) -> None:
        waiting = []
        for wanted, future in self.waiters:
            if wanted <= revision:
                if not future.done():
                    future.set_result(ok)
            else:
                waiting.append((wanted, future))
        self.waiters = waiting

    async def wait_applied(self, revision: int, timeout: float) -> bool:
        """True once a state at ``revision`` or later runs on every worker; False when it was
        rejected or did not arrive within ``timeout``."""
        if self.running >= revision:
            return True
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self.waiters.append((revision, future))
        try:
            return await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False

    def save_backup(self, revision: int, kvs: dict[str, bytes]) -> None:
        """The on-disk copy a node started while etcd is down serves (values may hold secrets:
        owner-only)."""
        document = {"revision": revision, "prefix": self.prefix,
                    "kvs": {key: value.decode("utf-8", "replace") for key, value in kvs.items()}}
        try:
            write_atomically(self.backup, orjson.dumps(document), 0o600)
        except OSError as exc:
            log.warning("cannot write the on-disk copy of the etcd state to %s: %s", self.backup,
                        exc.strerror or exc)

    # ---------------------------------------------------------------- reports

    def revision_of(self, version: int) -> int | None:
        known = [v for v in self.revisions if v <= version]
        return self.revisions[max(known)] if known else None

    def report(self) -> dict[str, Any]:
        return {"type": "etcd", "prefix": self.prefix, "revision": self.running,
                "watched_revision": self.position, "connected": self.connected,
                "checks": dict(self.checks)}


def _log_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("etcd task failed", exc_info=task.exception())

