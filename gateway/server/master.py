"""The master process: owns the config and its version, validates every candidate before any
worker sees it, persists the last good one, starts and restarts workers, and drives reload and
shutdown. It never touches a request."""
from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import json
import logging
import os
import signal
import socket
import ssl
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway._native import SharedHealth, SharedLimiter, SharedMetrics
from gateway.admin import AdminServer
from gateway.admin.api import AdminApi
from gateway.config import (
    Config,
    ConfigError,
    ConfigIssue,
    FileChecks,
    config_to_bytes,
    decode_config,
    default_config,
    dump_config,
    parse_config_file,
)
from gateway.plugins.registry import PluginLoadError, check_plugin_configs
from gateway.proxy.runtime import CompileError, compile_runtime
from gateway.server import rolling
from gateway.server.config_file import ConfigFile
from gateway.server.fd_limits import FdWatch, raise_fd_limit
from gateway.server.file_store import FileConfigStore
from gateway.server.handoff import HandoffServer, request_sockets
from gateway.server.ipc import encode_frame, read_frame
from gateway.server.listeners import Listeners
from gateway.server.plugin_code import PluginCode
from gateway.server.redis_sync import RedisLimitSyncer
from gateway.server.state import InstanceState
from gateway.server.status_report import WorkerPolls, gateway_status
from gateway.server.tls import check_ssl_contexts
from gateway.server.worker_boot import worker_command
from gateway.upstream.health_checker import HealthChecker
from gateway.upstream.names import node_names
from gateway.upstream.resolver import NodeResolver

log = logging.getLogger("gateway.master")

# A worker that dies sooner than this after starting counts as a crash loop and is restarted
# with a growing delay instead of at once.
CRASH_WINDOW = 2.0
MAX_RESTART_DELAY = 5.0
#: Config files larger than this are parsed for the Admin API as soon as they are loaded.
PRELOAD_SIZE = 256 * 1024
#: How long the first start of the workers may take before the start is called failed.
START_TIMEOUT = 30.0


class StartupError(Exception):
    """The gateway cannot start; the message is the one line `gateway run` prints."""


def compile_check(config: Config, file: str) -> list[ConfigIssue]:
    """Extra check run with the config loader: the config must also compile (router patterns,
    balancer types), so nothing that validates can fail later in a worker."""
    try:
        compile_runtime(config, 0)
    except CompileError as exc:
        return [ConfigIssue(file=file, path=exc.path, message=str(exc), line=None)]
    except (ValueError, TypeError, KeyError, ImportError, PluginLoadError):
        return []  # a plugin that cannot be built: check_plugin_configs reports it with its path
    except ssl.SSLError as exc:  # files the certificate checks accepted, refused by OpenSSL
        return [ConfigIssue(file=file, path="", message=f"OpenSSL refuses an upstream's tls "
                            f"settings: {exc}", line=None)]
    except OSError:
        return []  # an unreadable tls file: the certificate checks report it with its path
    return []


def tls_check(config: Config, file: str) -> list[ConfigIssue]:
    """Extra check: rustls must accept every ssl (the loader checked the PEM with
    `cryptography`), so a worker never meets a certificate it cannot load."""
    return [ConfigIssue(file=file, path=f"ssls[{i}]", message=f"rustls refuses it: {reason}",
                        line=None)
            for i, reason in check_ssl_contexts(config.ssls)]


CHECKS = (check_plugin_configs, compile_check, tls_check)


def load_and_check(path: str) -> Config:
    with open(path, "rb") as fh:
        raw = fh.read()
    return parse_config_file(raw, path, extra_checks=CHECKS)


def check_bytes(raw: bytes, path: str, file_checks: FileChecks = FileChecks.FILE) -> Config:
    return parse_config_file(raw, path, extra_checks=CHECKS, file_checks=file_checks)


def listen_addresses(config: Config) -> list[str]:
    """Every address the workers accept on (plain, then TLS): the master owns their sockets."""
    return [*config.gateway.listen, *config.gateway.tls_listen]


@dataclass(eq=False)  # hashed by identity: kept in sets while retiring
class WorkerHandle:
    index: int
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    started: float
    version: int = 0
    acks: dict[int, asyncio.Future[bool]] = field(default_factory=dict)
    #: Resolved with None once the worker serves its first config, or with why it cannot.
    ready: asyncio.Future[str | None] | None = None
    fatal: str | None = None
    #: Replaced or removed: drains and exits, and is not restarted.
    retiring: bool = False
    #: In place in Master.workers (a successor is not until it serves): only these restart.
    registered: bool = True


@dataclass
class ReloadCounts:
    checked: int = 0
    applied: int = 0
    rejected: int = 0


class Master:
    def __init__(self, config_path: str | None, workers: int | None = None) -> None:
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.config_file = ConfigFile(self.config_path) if self.config_path else None
        self.workers_override = workers
        self.config: Config | None = None
        #: The file bytes the running config came from (None: not from the file); the Admin
        #: API's file store edits this document and refuses to write over any other.
        self.config_raw: bytes | None = None
        self.payload = b""
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
        self.save_lock = asyncio.Lock()
        self.reloads = ReloadCounts()
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

    def adopt(self, config: Config, persist: bool = True) -> None:
        self.config = config
        self.version += 1
        self.payload = config_to_bytes(config)
        self.health_checker.apply(config, self.addresses)
        self.redis_syncer.apply(config)
        if config.gateway.state_dir and Path(config.gateway.state_dir) != self.state.state_dir:
            self.state.move_to(Path(config.gateway.state_dir))
        if persist:
            self.state.save_last_good(dump_config(config))

    def validate(self, data: Any) -> Config:
        """An Admin API candidate (plain data) through the file's checker (may run in a thread)."""
        return decode_config(data, "admin API", extra_checks=CHECKS)

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
            self.spawn(self.save_last_good(config))
        ok = await self.wait_converged(self.version, timeout=30.0)
        log.info("config version %d (%s) %s in %.1f ms", self.version, reason,
                 "applied by every worker" if ok else "NOT applied by every worker",
                 (time.monotonic() - started) * 1000)
        self.write_status()
        return ok

    async def save_last_good(self, config: Config) -> None:
        async with self.save_lock:
            if config is self.config:  # a newer version, when there is one, is saved instead
                await asyncio.to_thread(lambda: self.state.save_last_good(dump_config(config)))

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
        count = self.count = self.worker_count_of(config)
        self.open_listeners(listen_addresses(config), count)
        await self.follow_names(config)
        self.adopt(config)
        self.plugin_code.record(config)
        self.admin = AdminServer(lambda: self.config.gateway.admin if self.config else config.gateway.admin,
                                 self.state.state_dir, self.metrics, self.status)
        store = self.store = FileConfigStore(self, self.config_file.path if self.config_file else None)
        AdminApi(store).register(self.admin.router)
        await self.admin.start()
        self.preload_document()
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self.reload("SIGHUP")))
        loop.add_signal_handler(signal.SIGTERM, lambda: self.spawn(self.stop(fast=False)))
        loop.add_signal_handler(signal.SIGINT, lambda: self.spawn(self.stop(fast=self.stopping)))  # twice: now
        loop.add_signal_handler(signal.SIGQUIT, lambda: self.spawn(self.stop(fast=True)))
        await self.start_all(count)
        self.serving = True
        log.info("gateway master %d: %d workers serving %s (config version %d)", os.getpid(),
                 count, ", ".join(listen_addresses(config)), self.version)
        self.write_status()
        if self.config_file is not None:
            self.spawn(self.watch())
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

    async def start_worker(self, index: int, register: bool = True) -> WorkerHandle:
        """Starts worker ``index`` on the slot's listening sockets; ``register=False`` starts a
        successor that the caller puts in place once it serves."""
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        listen = self.listeners.fds(index, listen_addresses(self.config) if self.config else [])
        try:
            argv, extra_env = worker_command([
                "--id", str(index), "--control-fd", str(child.fileno()),
                "--limiter-fd", str(self.limiter.fd), "--metrics-fd", str(self.metrics.fd),
                "--health-fd", str(self.health.fd), "--listen-fds", json.dumps(listen)])
            process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(child.fileno(), self.limiter.fd, self.metrics.fd, self.health.fd,
                                 *(fd for _address, fd in listen)),
                env={**os.environ, **extra_env})
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        handle = WorkerHandle(index, process, writer, time.monotonic(), registered=register)
        handle.ready = asyncio.get_running_loop().create_future()
        if register:
            self.workers[index] = handle
        self.spawn(self.read_worker(handle, reader))
        self.spawn(self.supervise(handle))
        self.send_config(handle)
        return handle

    def send_config(self, handle: WorkerHandle) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        handle.acks[self.version] = future
        if not handle.writer.is_closing():
            handle.writer.write(encode_frame({"type": "config", "version": self.version,
                                              "config": self.payload,
                                              "addresses": self.addresses}))
        return future

    async def follow_names(self, config: Config) -> None:
        """Resolves the host names of ``config``'s nodes before any worker compiles it (a name
        that cannot be resolved is logged and its node left out until it resolves)."""
        names = node_names(config)
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

    @staticmethod
    def set_ready(handle: WorkerHandle, problem: str | None) -> None:
        if handle.ready is not None and not handle.ready.done():
            handle.ready.set_result(problem)

    async def read_worker(self, handle: WorkerHandle, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                message = await read_frame(reader)
            except (ConnectionError, ValueError) as exc:
                log.warning("worker %d control channel failed: %s", handle.index, exc)
                return
            if message is None:
                return
            kind = message.get("type")
            version = message.get("version", 0)
            if kind == "ack":
                handle.version = version
                self.set_ready(handle, None)
                future = handle.acks.pop(version, None)
                if future is not None and not future.done():
                    future.set_result(True)
                self.write_status()
            elif kind == "pong":
                self.worker_polls.answer(handle, message)
            elif kind == "fatal":
                handle.fatal = str(message.get("message"))
                self.set_ready(handle, handle.fatal)
            elif kind == "error":
                log.error("worker %d rejected config version %d: %s", handle.index, version,
                          message.get("message"))
                future = handle.acks.pop(version, None)
                if future is not None and not future.done():
                    future.set_result(False)

    async def supervise(self, handle: WorkerHandle) -> None:
        code = await handle.process.wait()
        handle.writer.close()
        self.set_ready(handle, handle.fatal or f"exited with status {code} before serving")
        for future in handle.acks.values():
            if not future.done():
                future.set_result(False)
        if self.workers.get(handle.index) is handle:
            del self.workers[handle.index]
        self.retiring.discard(handle)
        self.write_status()
        if self.stopping:
            if not self.workers and not self.retiring:
                self.done.set()
            return
        if handle.retiring or not handle.registered:
            log.info("worker %d (pid %d) %s exited with %s", handle.index, handle.process.pid,
                     "drained and" if handle.retiring else "(a successor that never served)",
                     code)
            return
        if not self.serving:
            return  # the first start failed: start_all reports it and stops
        lived = time.monotonic() - handle.started
        crashes = self.crashes.get(handle.index, 0) + 1 if lived < CRASH_WINDOW else 0
        self.crashes[handle.index] = crashes
        delay = min(0.1 * (2 ** (crashes - 1)), MAX_RESTART_DELAY) if crashes else 0.0
        cause = f": {handle.fatal}" if handle.fatal else ""
        log.error("worker %d (pid %d) exited with %s%s; restarting%s", handle.index,
                  handle.process.pid, code, cause, f" in {delay:.1f}s" if delay else "")
        await self.respawn(handle.index, delay)

    async def respawn(self, index: int, delay: float) -> None:
        """Starts worker ``index`` again, retrying with back-off for as long as it takes: the
        master never gives up on a worker (a full fd table or process table passes)."""
        while not self.stopping:
            if delay:
                await asyncio.sleep(delay)
            if self.stopping:
                return
            try:
                await self.start_worker(index)
                return
            except OSError as exc:
                delay = min(max(delay * 2, 0.1), MAX_RESTART_DELAY)
                log.error("respawn of worker %d failed: %s; retrying in %.1f s", index, exc, delay)
                self.fd_watch.check()

    async def wait_converged(self, version: int, timeout: float) -> bool:
        futures = [h.acks[version] for h in self.workers.values() if version in h.acks]
        if not futures:
            return all(h.version >= version for h in self.workers.values())
        done, _ = await asyncio.wait(futures, timeout=timeout)
        return len(done) == len(futures) and all(f.result() for f in done)

    async def reload(self, reason: str, settle: bool = False) -> bool:
        """Validates the file and, only if it is good and new, sends it to every worker."""
        if self.config_file is None or self.stopping:
            return False
        if settle:
            # outside the lock: an Admin API write need not wait for a file to settle
            await self.config_file.settled(self.settle_time())
        async with self.reload_lock:
            try:
                raw, digest = self.config_file.read()
            except ConfigError as exc:
                if self.config_file.first_failure or not settle:  # SIGHUP always gets an answer
                    log.error("reload (%s) rejected; still serving version %d:\n%s", reason,
                              self.version, exc)
                return False
            if settle and not self.config_file.changed(digest):
                return True  # the same bytes as the running (or last rejected) version
            self.config_file.seen_digest = digest
            self.reloads.checked += 1
            started = time.monotonic()
            code_changed = self.plugin_code.changed()
            try:
                self.plugin_code.reimport(code_changed)
            except Exception as exc:  # noqa: BLE001 - a plugin module may fail in any way
                self.reloads.rejected += 1
                self.config_file.seen_digest = None  # the same file is tried again
                log.error("reload (%s) rejected; still serving version %d: plugin module %s "
                          "cannot be imported: %s: %s", reason, self.version,
                          ", ".join(code_changed), type(exc).__name__, exc)
                self.write_status()
                return False
            try:
                config = check_bytes(raw, str(self.config_file.path), file_checks=FileChecks.RELOAD)
            except ConfigError as exc:
                self.reloads.rejected += 1
                log.error("reload (%s) rejected; still serving version %d:\n%s", reason,
                          self.version, exc)
                self.write_status()
                return False
            if self.config is not None and config.fingerprint() == self.config.fingerprint() \
                    and not code_changed and not self.restart_unfinished:
                self.config_raw = raw  # comments or layout changed: the Admin API edits these bytes
                return True
            change = self.process_change(config, code_changed)
            if change.needed:
                try:
                    self.listeners.ensure(listen_addresses(config), change.new_count)
                except OSError as exc:
                    self.reloads.rejected += 1
                    log.error("reload (%s) rejected; still serving version %d: %s", reason,
                              self.version, exc.strerror or exc)
                    self.write_status()
                    return False
            log.info("reload (%s) checked in %.1f ms", reason, (time.monotonic() - started) * 1000)
            self.config_raw = raw
            if not change.needed:
                applied = await self.apply(config, reason, save_first=True)
                self.preload_document()
                return applied
            await self.follow_names(config)
            self.adopt(config)
            self.reloads.applied += 1
            log.info("config version %d needs new worker processes (%s): restarting them "
                     "one at a time", self.version, change.describe())
            ok = await rolling.roll(self, change)
            self.count = change.new_count if ok else len(self.workers)
            self.restart_unfinished = not ok and change.restart_all
            self.plugin_code.record(config)
            if ok:  # else workers not yet replaced still serve the old addresses
                self.listeners.drop_addresses(listen_addresses(config))
            self.open_listeners(listen_addresses(config), change.new_count)
            log.info("config version %d (%s) %s in %.1f ms", self.version, reason,
                     "applied by every worker" if ok else "NOT applied by every worker",
                     (time.monotonic() - started) * 1000)
            self.write_status()
            self.preload_document()
            return ok

    def process_change(self, config: Config, code_changed: list[str]) -> rolling.ProcessChange:
        old_listen = listen_addresses(self.config) if self.config else []
        new_count = self.worker_count_of(config)
        return rolling.ProcessChange(
            old_count=self.count, new_count=new_count,
            listen_changed=listen_addresses(config) != old_listen,
            code_changed=[m for m in code_changed if m in self.plugin_code.files],
            unfinished=self.restart_unfinished)

    def settle_time(self) -> float:
        return self.config.gateway.config_settle_time if self.config else 0.2

    async def watch(self) -> None:
        """Applies saved edits of the config file (editors that replace the file included)."""
        from watchfiles import awatch

        assert self.config_file is not None
        target = self.config_file.path
        first = True
        async for changes in awatch(target.parent, debounce=50, step=20, rust_timeout=200,
                                    yield_on_timeout=True,
                                    watch_filter=lambda _c, p: Path(p) == target):
            if self.stopping:
                return
            # The first (empty) wake-up means the watch is in place: an edit saved while it was
            # being set up is caught here; the same bytes as the running version are skipped.
            # Later empty wake-ups are only timeouts: reading the file then would poll it.
            if (changes or first) and target.exists():
                await self.reload("file changed", settle=True)
            first = False

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
                                    self.worker_polls, self.health_checker)

    def write_status(self) -> None:
        """A small JSON file describing the running processes (tests and tools read it)."""
        self.state.save_status({
            "pid": os.getpid(),
            "version": self.version,
            "config": self.config_path,
            "serving": self.serving,
            "reloads": {"checked": self.reloads.checked, "applied": self.reloads.applied,
                        "rejected": self.reloads.rejected},
            "workers": [{"index": h.index, "pid": h.process.pid, "version": h.version}
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
