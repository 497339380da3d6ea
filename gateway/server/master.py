"""The master process: owns the config and its version, validates every candidate before any
worker sees it, persists the last good one, starts and restarts workers, and drives reload and
shutdown. It never touches a request."""
from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway._native import SharedLimiter, SharedMetrics
from gateway.admin import AdminServer
from gateway.config import (
    Config,
    ConfigError,
    ConfigIssue,
    FileChecks,
    config_to_bytes,
    default_config,
    dump_config,
    parse_config_file,
)
from gateway.plugins.registry import PluginLoadError, check_plugin_configs
from gateway.proxy.runtime import CompileError, compile_runtime
from gateway.server.config_file import ConfigFile
from gateway.server.fd_limits import FdWatch, raise_fd_limit
from gateway.server.ipc import encode_frame, read_frame
from gateway.server.sockets import check_bindable
from gateway.server.state import InstanceState
from gateway.server.worker_boot import worker_command

log = logging.getLogger("gateway.master")

# A worker that dies sooner than this after starting counts as a crash loop and is restarted
# with a growing delay instead of at once.
CRASH_WINDOW = 2.0
MAX_RESTART_DELAY = 5.0
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
    return []


CHECKS = (check_plugin_configs, compile_check)


def load_and_check(path: str) -> Config:
    with open(path, "rb") as fh:
        raw = fh.read()
    return parse_config_file(raw, path, extra_checks=CHECKS)


def check_bytes(raw: bytes, path: str, file_checks: FileChecks = FileChecks.FILE) -> Config:
    return parse_config_file(raw, path, extra_checks=CHECKS, file_checks=file_checks)


@dataclass
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
        self.payload = b""
        self.version = 0
        self.workers: dict[int, WorkerHandle] = {}
        self.serving = False
        self.stopping = False
        self.fast_stop = False
        self.done = asyncio.Event()
        self.crashes: dict[int, int] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.state = InstanceState(self.config_path)
        self.reload_lock = asyncio.Lock()
        self.reloads = ReloadCounts()
        self.fd_watch = FdWatch(log, "the master")
        # Shared memory the workers attach to (rate limits exact across workers); created once,
        # so limits survive worker restarts and config reloads.
        self.limiter = SharedLimiter.create()
        # Request metrics: workers write, the admin listener's /metrics reads; created once, so
        # counters survive worker restarts and reloads.
        self.metrics = SharedMetrics.create()
        self.admin: AdminServer | None = None

    # ---------------------------------------------------------------- config

    def initial_config(self) -> Config:
        if self.config_file is None:
            return default_config()
        digest: str | None = None
        try:
            raw, digest = self.config_file.read()
            config = check_bytes(raw, str(self.config_file.path))
        except ConfigError as exc:
            fallback = self.state.find_last_good()
            log.error("config %s is invalid:\n%s", self.config_path, exc)
            if fallback is None:
                raise
            log.warning("starting with the last good config persisted at %s", fallback)
            config = load_and_check(str(fallback))
        self.config_file.seen_digest = digest  # the broken bytes too: not re-checked unchanged
        return config

    def adopt(self, config: Config) -> None:
        self.config = config
        self.version += 1
        self.payload = config_to_bytes(config)
        if config.gateway.state_dir and Path(config.gateway.state_dir) != self.state.state_dir:
            self.state.move_to(Path(config.gateway.state_dir))
        self.state.save_last_good(dump_config(config))

    def worker_count(self) -> int:
        wanted: int | str = self.workers_override or (self.config.gateway.workers if self.config else 1)
        if wanted == "auto":
            return len(os.sched_getaffinity(0)) or 1
        return int(wanted)

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self.loop_exception)
        raise_fd_limit()
        config = self.initial_config()
        for address in config.gateway.listen:
            try:
                check_bindable(address)
            except OSError as exc:
                raise StartupError(f"cannot listen on {address}: {exc.strerror or exc}") from None
        self.adopt(config)
        self.admin = AdminServer(lambda: self.config.gateway.admin if self.config else config.gateway.admin,
                                 self.state.state_dir, self.metrics)
        await self.admin.start()
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self.reload("SIGHUP")))
        loop.add_signal_handler(signal.SIGTERM, lambda: self.spawn(self.stop(fast=False)))
        loop.add_signal_handler(signal.SIGINT, lambda: self.spawn(self.stop(fast=self.stopping)))  # twice: now
        loop.add_signal_handler(signal.SIGQUIT, lambda: self.spawn(self.stop(fast=True)))
        count = self.worker_count()
        await self.start_all(count)
        self.serving = True
        log.info("gateway master %d: %d workers serving %s (config version %d)", os.getpid(),
                 count, ", ".join(config.gateway.listen), self.version)
        self.write_status()
        if self.config_file is not None:
            self.spawn(self.watch())
        self.spawn(self.housekeeping())
        await self.done.wait()
        return 0

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

    async def start_worker(self, index: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            argv, extra_env = worker_command([
                "--id", str(index), "--control-fd", str(child.fileno()),
                "--limiter-fd", str(self.limiter.fd), "--metrics-fd", str(self.metrics.fd)])
            process = await asyncio.create_subprocess_exec(
                *argv, pass_fds=(child.fileno(), self.limiter.fd, self.metrics.fd),
                env={**os.environ, **extra_env})
        except BaseException:
            parent.close()
            raise
        finally:
            child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        handle = WorkerHandle(index, process, writer, time.monotonic())
        handle.ready = asyncio.get_running_loop().create_future()
        self.workers[index] = handle
        self.spawn(self.read_worker(handle, reader))
        self.spawn(self.supervise(handle))
        self.send_config(handle)

    def send_config(self, handle: WorkerHandle) -> asyncio.Future[bool]:
        future: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        handle.acks[self.version] = future
        if not handle.writer.is_closing():
            handle.writer.write(encode_frame({"type": "config", "version": self.version,
                                              "config": self.payload}))
        return future

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
        self.write_status()
        if self.stopping:
            if not self.workers:
                self.done.set()
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
        async with self.reload_lock:
            if settle:
                await self.config_file.settled(self.settle_time())
            try:
                raw, digest = self.config_file.read()
            except ConfigError as exc:
                log.error("reload (%s) rejected; still serving version %d:\n%s", reason,
                          self.version, exc)
                return False
            if settle and not self.config_file.changed(digest):
                return True  # the same bytes as the running (or last rejected) version
            self.config_file.seen_digest = digest
            self.reloads.checked += 1
            started = time.monotonic()
            try:
                config = check_bytes(raw, str(self.config_file.path), file_checks=FileChecks.RELOAD)
            except ConfigError as exc:
                self.reloads.rejected += 1
                log.error("reload (%s) rejected; still serving version %d:\n%s", reason,
                          self.version, exc)
                self.write_status()
                return False
            if self.config is not None and config.fingerprint() == self.config.fingerprint():
                return True
            if self.config is not None and list(config.gateway.listen) != list(self.config.gateway.listen):
                log.warning("listen addresses changed: they apply at the next restart")
            self.adopt(config)
            self.reloads.applied += 1
            for handle in list(self.workers.values()):
                self.send_config(handle)
            ok = await self.wait_converged(self.version, timeout=30.0)
            log.info("config version %d (%s) %s in %.1f ms", self.version, reason,
                     "applied by every worker" if ok else "NOT applied by every worker",
                     (time.monotonic() - started) * 1000)
            self.write_status()
            return ok

    def settle_time(self) -> float:
        return self.config.gateway.config_settle_time if self.config else 0.2

    async def watch(self) -> None:
        """Applies saved edits of the config file (editors that replace the file included)."""
        from watchfiles import awatch

        assert self.config_file is not None
        target = self.config_file.path
        async for _changes in awatch(target.parent, debounce=50, step=20, rust_timeout=200,
                                    yield_on_timeout=True,
                                    watch_filter=lambda _c, p: Path(p) == target):
            if self.stopping:
                return
            # The first (empty) wake-up means the watch is in place: an edit saved while it was
            # being set up is caught here; the same bytes as the running version are skipped.
            if target.exists():
                await self.reload("file changed", settle=True)

    async def housekeeping(self) -> None:
        while not self.stopping:
            await asyncio.sleep(1.0)
            self.fd_watch.check()

    async def stop(self, fast: bool) -> None:
        if self.stopping and not fast:
            return
        self.stopping = True
        if self.admin is not None:
            self.admin.close()
        sig = signal.SIGQUIT if fast else signal.SIGTERM
        log.info("stopping (%s): %d workers", "now" if fast else "draining", len(self.workers))
        for handle in list(self.workers.values()):
            with contextlib.suppress(ProcessLookupError):
                handle.process.send_signal(sig)
        if not self.workers:
            self.done.set()
            return
        grace = (self.config.gateway.graceful_shutdown_timeout if self.config else 10.0) + 5.0
        try:
            await asyncio.wait_for(self.done.wait(), timeout=0.5 if fast else grace)
        except TimeoutError:
            for handle in list(self.workers.values()):
                with contextlib.suppress(ProcessLookupError):
                    handle.process.kill()
            self.done.set()

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
