"""The master process: owns the config and its version, validates every candidate before any
worker sees it, persists the last good one, starts and restarts workers, and drives reload and
shutdown. It never touches a request.

Its jobs beside this file: the workers' supervision (start, control channel, restart) in
worker_supervision.py, the config file's reloads in config_reload.py (both mixins of
``Master``), the checks a candidate config passes in checks.py."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import logging
import os
import signal
import socket
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gateway import heap
from gateway._native import SharedHealth, SharedLimiter, SharedMetrics
from gateway.admin import AdminServer
from gateway.admin.api import AdminApi
from gateway.config import (
    Config,
    ConfigError,
    FileChecks,
    decode_config,
    default_config,
)
from gateway.server.checks import CHECKS, check_bytes, check_file_mode, load_and_check
from gateway.server.config_delta import Change, Shipment, changes_between
from gateway.server.config_file import ConfigFile
from gateway.server.config_reload import ConfigReload, ReloadCounts
from gateway.server.fd_limits import FdWatch, raise_fd_limit
from gateway.server.file_store import FileConfigStore
from gateway.server.handoff import HandoffServer, request_sockets
from gateway.server.ipc import encode_frame
from gateway.server.last_good import LastGoodCopy
from gateway.server.listeners import Listeners
from gateway.server.plugin_code import PluginCode
from gateway.server.redis_sync import RedisLimitSyncer
from gateway.server.state import InstanceState
from gateway.server.status_report import StoreReport, WorkerPolls, gateway_status
from gateway.server.worker_supervision import WorkerHandle, WorkerSupervision, listen_addresses
from gateway.upstream.health_checker import HealthChecker
from gateway.upstream.names import NodeNames
from gateway.upstream.resolver import NodeResolver

if TYPE_CHECKING:
    from gateway.etcd.source import EtcdSource

log = logging.getLogger("gateway.master")

#: Config files larger than this are parsed for the Admin API as soon as they are loaded.
PRELOAD_SIZE = 256 * 1024
#: How long the first start of the workers may take before the start is called failed.
START_TIMEOUT = 30.0


class StartupError(Exception):
    """The gateway cannot start; the message is the one line `gateway run` prints."""


class Master(ConfigReload, WorkerSupervision):
    def __init__(self, config_path: str | None, workers: int | None = None) -> None:
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.config_file = ConfigFile(self.config_path) if self.config_path else None
        self.workers_override = workers
        self.config: Config | None = None
        #: The file bytes the running config came from (None: not from the file); the Admin
        #: API's file store edits this document and refuses to write over any other.
        self.config_raw: bytes | None = None
        self.shipment = Shipment()  # the running version as frames for the workers
        #: (running config, next config, changes_between them): computed once per version
        self.pending_changes: tuple[Config | None, Config, list[Change] | None] | None = None
        self.names = NodeNames()  # the host names in the running config's nodes
        self.version = 0
        self.workers: dict[int, WorkerHandle] = {}
        self.retiring: set[WorkerHandle] = set()
        self.count = 0  # worker slots
        self.restart_unfinished = False
        self.listeners = Listeners()
        self.handoffs: dict[str, HandoffServer] = {}
        self.plugin_code = PluginCode()
        self.serving = False
        self.stopping = False
        self.fast_stop = False
        self.done = asyncio.Event()
        self.crashes: dict[int, int] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.state = InstanceState(self.config_path)
        self.reload_lock = asyncio.Lock()
        self.last_good = LastGoodCopy(self.state)
        self.reloads = ReloadCounts()
        #: applies waiting for every worker's acknowledgement (each writes the status after)
        self.converging = 0
        self.fd_watch = FdWatch(log, "the master")
        # Shared memory the workers attach to (rate limits exact across workers); created once,
        # so limits survive worker restarts and config reloads.
        self.limiter = SharedLimiter.create()
        # Request metrics: workers write, the admin listener's /metrics reads; created once, so
        # counters survive worker restarts and reloads.
        self.metrics = SharedMetrics.create()
        # Node health: the master's active checks and every worker's passive checks write it,
        # the workers' balancers read it (see gateway/upstream/health_checker.py).
        self.health = SharedHealth.create()
        self.health_checker = HealthChecker(self.health)
        self.redis_syncer = RedisLimitSyncer(self.limiter)
        self.worker_polls = WorkerPolls()
        self.admin: AdminServer | None = None
        # Host names in nodes are resolved here, once per machine; workers get the addresses.
        self.resolver: NodeResolver | None = None
        self.addresses: dict[str, list[str]] = {}
        self.store: FileConfigStore | None = None
        #: etcd mode's watch and loader (gateway/etcd/); None in file mode
        self.etcd: EtcdSource | None = None

    # ---------------------------------------------------------------- config

    def initial_config(self) -> Config:
        if self.config_file is None:
            return default_config()
        digest: str | None = None
        try:
            raw, digest = self.config_file.read()
            config = check_bytes(raw, str(self.config_file.path))
            self.config_raw = raw
        except ConfigError as exc:
            fallback = self.state.find_last_good()
            log.error("config %s is invalid:\n%s", self.config_path, exc)
            if fallback is None:
                raise
            log.warning("starting with the last good config persisted at %s", fallback)
            config = load_and_check(str(fallback))
        self.config_file.seen_digest = digest  # the broken bytes too: not re-checked unchanged
        return config

    def changes_to(self, config: Config) -> list[Change] | None:
        """What turns the running config into ``config`` (config_delta), computed once for the
        shipment, the names and the limits; None: read it whole."""
        known = self.pending_changes
        if known is not None and known[0] is self.config and known[1] is config:
            return known[2]
        changes = changes_between(self.config, config) if self.config is not None else None
        self.pending_changes = (self.config, config, changes)
        return changes

    def adopt(self, config: Config, persist: bool = True) -> None:
        previous, changes = self.config, self.changes_to(config)
        self.pending_changes = None
        self.config = config
        self.version += 1
        self.shipment.adopt(config, self.version, changes, known=previous is not None)
        self.health_checker.apply(config, self.addresses)
        self.redis_syncer.apply(config, previous, changes)
        if config.gateway.state_dir and Path(config.gateway.state_dir) != self.state.state_dir:
            self.state.move_to(Path(config.gateway.state_dir))
        if persist:
            self.last_good.save(config)

    def validate(self, data: Any, source: str = "admin API") -> Config:
        """An Admin API or etcd candidate (plain data) through the file's checker (may run in a
        thread)."""
        return decode_config(data, source, extra_checks=CHECKS)

    def check_file(self, raw: bytes, file_checks: FileChecks) -> Config:
        assert self.config_file is not None
        path = str(self.config_file.path)
        config = check_bytes(raw, path, file_checks=file_checks)
        return self.etcd.node_file(config, path) if self.etcd else check_file_mode(config, path)

    async def start_etcd(self, file_config: Config) -> Config:
        """etcd mode: the node file holds the settings, etcd the resources (gateway/etcd/)."""
        from gateway.etcd.source import EtcdSource, StartError, node_settings

        assert file_config.gateway.etcd is not None
        if file_config.gateway.state_dir:  # where the on-disk copy of etcd's state is
            self.state.move_to(Path(file_config.gateway.state_dir))
        settings = node_settings(file_config, str(self.config_path), strict=self.config_raw is not None)
        self.etcd = EtcdSource(self, file_config.gateway.etcd, settings)
        try:
            return await self.etcd.first_config()
        except StartError as exc:
            raise StartupError(str(exc)) from None

    def preload_document(self) -> None:
        """A big file's document is parsed for the Admin API before its first request (seconds
        for 10k routes, off the loop); a small one when it is first used, so that a start or a
        reload costs no parse nobody asked for."""
        if self.store is not None and self.config_raw is not None and len(self.config_raw) > PRELOAD_SIZE:
            self.spawn(self.store.sync())

    def file_written(self, raw: bytes) -> None:
        """The Admin API wrote the config file: its bytes are the running config's, and the
        watcher's echo of the write is not a change."""
        self.config_raw = raw
        if self.config_file is not None:
            self.config_file.seen_digest = hashlib.sha256(raw).hexdigest()

    async def apply(self, config: Config, reason: str, save_first: bool = False) -> bool:
        """Makes a validated config the running one on every worker (the caller holds
        reload_lock); True once every worker confirmed it. ``save_first``: the last good copy
        is on disk before any worker runs it (a reload); otherwise (an Admin API write, which
        keeps the file itself) it is written off the loop once the workers have it, since a big
        config takes seconds to dump."""
        started = time.monotonic()
        await self.follow_names(config)  # the workers compile it with its names' addresses
        self.adopt(config, persist=save_first)
        self.reloads.applied += 1
        for handle in list(self.workers.values()):
            self.send_config(handle)
        if not save_first:
            self.spawn(self.last_good.save_soon(config))
        self.converging += 1
        try:
            ok = await self.wait_converged(self.version, timeout=30.0)
        finally:
            self.converging -= 1
        log.info("config version %d (%s) %s in %.1f ms", self.version, reason,
                 "applied by every worker" if ok else "NOT applied by every worker",
                 (time.monotonic() - started) * 1000)
        self.write_status()
        return ok

    def worker_count(self) -> int:
        return self.worker_count_of(self.config)

    def worker_count_of(self, config: Config | None) -> int:
        wanted: int | str = self.workers_override or (config.gateway.workers if config else 1)
        if wanted == "auto":
            return len(os.sched_getaffinity(0)) or 1
        return int(wanted)

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self.loop_exception)
        raise_fd_limit()
        config = self.initial_config()
        if config.gateway.etcd is not None:
            config = await self.start_etcd(config)
        count = self.count = self.worker_count_of(config)
        self.open_listeners(listen_addresses(config), count)
        await self.follow_names(config)
        self.adopt(config)
        self.plugin_code.record(config)
        self.admin = AdminServer(lambda: self.config.gateway.admin if self.config else config.gateway.admin,
                                 self.state.state_dir, self.metrics, self.status)
        if self.etcd is not None:
            from gateway.etcd.store import EtcdConfigStore
            AdminApi(EtcdConfigStore(self.etcd, self)).register(self.admin.router)
        else:
            self.store = FileConfigStore(self, self.config_file.path if self.config_file else None)
            AdminApi(self.store).register(self.admin.router)
        await self.admin.start()
        self.preload_document()
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self.reload("SIGHUP")))
        loop.add_signal_handler(signal.SIGTERM, lambda: self.spawn(self.stop(fast=False)))
        loop.add_signal_handler(signal.SIGINT, lambda: self.spawn(self.stop(fast=self.stopping)))  # twice: now
        loop.add_signal_handler(signal.SIGQUIT, lambda: self.spawn(self.stop(fast=True)))
        await self.start_all(count)
        heap.settle()  # before the status says it serves: the watches start right after that
        self.serving = True
        log.info("gateway master %d: %d workers serving %s (config version %d)", os.getpid(),
                 count, ", ".join(listen_addresses(config)), self.version)
        self.write_status()
        if self.config_file is not None:
            self.spawn(self.watch())
        if self.etcd is not None:
            self.etcd.start()
        self.spawn(self.housekeeping())
        await self.done.wait()
        self.listeners.close()
        return 0

    def open_listeners(self, addresses: list[str], count: int) -> None:
        """Takes over the sockets of a gateway already serving an address (see handoff.py),
        else binds new ones."""
        for address in addresses:
            if address in self.listeners.groups:
                continue
            handed = request_sockets(address)
            if handed:
                log.info("taking over %d listening socket(s) on %s from a running gateway",
                         len(handed), address)
                self.listeners.adopt(address, handed, count)
        try:
            self.listeners.ensure(addresses, count)
        except OSError as exc:
            raise StartupError(exc.strerror or str(exc)) from None
        for address in addresses:
            if address not in self.handoffs:
                self.handoffs[address] = HandoffServer(
                    address, functools.partial(self.listening_sockets, address))
        for address in [a for a in self.handoffs if a not in addresses]:
            self.handoffs.pop(address).close()
        self.offer_handoff()

    def listening_sockets(self, address: str) -> list[socket.socket]:
        group = self.listeners.groups.get(address)
        return list(group.order) if group else []

    def offer_handoff(self) -> None:
        if not self.stopping:
            for server in self.handoffs.values():
                server.try_start()

    def grace(self) -> float:
        return self.config.gateway.graceful_shutdown_timeout if self.config else 10.0

    async def start_all(self, count: int) -> None:
        """Every worker serves its first config, or the start fails with the first cause."""
        try:
            await asyncio.gather(*(self.start_worker(i) for i in range(count)))
        except OSError as exc:
            await self.abandon_start()
            raise StartupError(f"cannot start a worker: {exc}") from None
        waits = [h.ready for h in self.workers.values() if h.ready is not None]
        done, pending = await asyncio.wait(waits, timeout=START_TIMEOUT,
                                           return_when=asyncio.ALL_COMPLETED)
        problems = []
        for handle in sorted(self.workers.values(), key=lambda h: h.index):
            ready = handle.ready
            if ready is None or not ready.done():
                problems.append(f"worker {handle.index} did not start within {START_TIMEOUT:.0f} s")
            elif ready.result() is not None:
                problems.append(f"worker {handle.index} could not start: {ready.result()}")
        if problems:
            await self.abandon_start()
            raise StartupError(problems[0])

    async def abandon_start(self) -> None:
        self.stopping = True
        for handle in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                handle.process.send_signal(signal.SIGQUIT)
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*(h.process.wait() for h in self.workers.values())), 5)
        for handle in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                handle.process.kill()
        if self.admin is not None:
            self.admin.close()

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.task_done)
        return task

    def task_done(self, task: asyncio.Task[Any]) -> None:
        """No task's exception goes unretrieved: each is logged where it happened."""
        self.tasks.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            log.error("master task %s failed", task.get_coro(), exc_info=exc)

    def loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno == 24:
            self.fd_watch.check()
            return
        log.error("%s", context.get("message", "event loop error"), exc_info=exc)



    async def follow_names(self, config: Config) -> None:
        """Resolves the host names of ``config``'s nodes before any worker compiles it (a name
        that cannot be resolved is logged and its node left out until it resolves)."""
        names = self.names.update(config, self.config, self.changes_to(config))
        if self.resolver is None:
            if not names:
                return  # no name, no resolver: an all-IP config costs nothing
            self.resolver = NodeResolver(config.gateway.resolvers, self.addresses_changed)
        else:
            await self.resolver.set_nameservers(config.gateway.resolvers)
        await self.resolver.update(names)
        self.addresses = self.resolver.addresses()

    def addresses_changed(self, addresses: dict[str, list[str]]) -> None:
        """A name now resolves to other addresses: every worker recompiles its nodes."""
        self.addresses = addresses
        if self.config is not None:
            self.health_checker.apply(self.config, addresses)
        frame = encode_frame({"type": "addresses", "addresses": addresses})
        for handle in list(self.workers.values()):
            if not handle.writer.is_closing():
                handle.writer.write(frame)










    async def housekeeping(self) -> None:
        while not self.stopping:
            await asyncio.sleep(1.0)
            self.fd_watch.check()
            self.offer_handoff()  # after a takeover: once the old gateway has let go

    async def stop(self, fast: bool) -> None:
        if self.stopping and not fast:
            return
        self.stopping = True
        if self.admin is not None:
            self.admin.close()
        await self.health_checker.close()
        await self.redis_syncer.close()
        if self.etcd is not None:
            await self.etcd.close()
        for server in self.handoffs.values():
            server.close()  # a gateway taking over answers for the addresses from now on
        sig = signal.SIGQUIT if fast else signal.SIGTERM
        log.info("stopping (%s): %d workers", "now" if fast else "draining", len(self.workers))
        everyone = [*self.workers.values(), *self.retiring]
        for handle in everyone:
            with contextlib.suppress(ProcessLookupError):
                handle.process.send_signal(sig)
        if self.resolver is not None:
            resolver, self.resolver = self.resolver, None
            await resolver.close()
        # The workers close their copies as they stop accepting: with ours closed too, a new
        # connection is refused at once (or goes to a gateway that took the sockets over)
        # instead of waiting in a queue nobody reads.
        self.listeners.close()
        if not everyone:
            self.done.set()
            return
        grace = self.grace() + 5.0
        try:
            await asyncio.wait_for(self.done.wait(), timeout=0.5 if fast else grace)
        except TimeoutError:
            for handle in [*self.workers.values(), *self.retiring]:
                with contextlib.suppress(ProcessLookupError):
                    handle.process.kill()
            self.done.set()

    async def status(self) -> dict[str, Any]:
        """The admin listener's ``GET /status``."""
        return await gateway_status(self.config, self.version, list(self.workers.values()),
                                    self.worker_polls, self.health_checker, self.store_report())

    def store_report(self) -> StoreReport:
        """Where the config comes from and, in etcd mode, the revision each version came from."""
        if self.etcd is None:
            return StoreReport({"type": "file", "config": self.config_path})
        return StoreReport(self.etcd.report(), self.etcd.revision_of)

    def write_status(self) -> None:
        """A small JSON file describing the running processes (tests and tools read it)."""
        report = self.store_report()
        self.state.save_status({
            "pid": os.getpid(),
            "version": self.version,
            "store": report.store,
            "config": self.config_path,
            "serving": self.serving,
            "reloads": {"checked": self.reloads.checked, "applied": self.reloads.applied,
                        "rejected": self.reloads.rejected},
            "workers": [{"index": h.index, "pid": h.process.pid, "version": h.version,
                         **report.revision(h.version)}
                        for h in sorted(self.workers.values(), key=lambda h: h.index)],
            "draining": [{"index": h.index, "pid": h.process.pid, "version": h.version}
                         for h in sorted(self.retiring, key=lambda h: h.index)],
        })


def run_master(config_path: str | None, workers: int | None) -> int:
    import uvloop

    master = Master(config_path, workers)
    try:
        return uvloop.run(master.run())
    except ConfigError as exc:
        print(f"gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except StartupError as exc:
        print(f"gateway: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 1
