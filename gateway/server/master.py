"""The master process: owns the config and its version, validates every candidate before any
worker sees it, persists the last good one, starts and restarts workers, and drives reload and
shutdown. It never touches a request."""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import signal
import socket
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gateway.config import Config, ConfigError, ConfigIssue, config_to_bytes, default_config, dump_config, load_config
from gateway.plugins.registry import check_plugin_configs
from gateway._native import SharedLimiter, SharedMetrics
from gateway.admin import AdminServer
from gateway.proxy.runtime import CompileError, compile_runtime
from gateway.server.ipc import encode_frame, read_frame
from gateway.server.sockets import check_bindable

log = logging.getLogger("gateway.master")

# A worker that dies sooner than this after starting counts as a crash loop and is restarted
# with a growing delay instead of at once.
CRASH_WINDOW = 2.0


def compile_check(config: Config, file: str) -> list[ConfigIssue]:
    """Extra check run with the config loader: the config must also compile (router patterns,
    balancer types), so nothing that validates can fail later in a worker."""
    try:
        compile_runtime(config, 0)
    except CompileError as exc:
        return [ConfigIssue(file=file, path=exc.path, message=str(exc), line=None)]
    except (ValueError, TypeError, KeyError, ImportError):
        return []  # a plugin that cannot be built: check_plugin_configs reports it with its path
    return []


def load_and_check(path: str) -> Config:
    return load_config(path, extra_checks=(check_plugin_configs, compile_check))


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "gateway"


@dataclass
class WorkerHandle:
    index: int
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    started: float
    version: int = 0
    acks: dict[int, asyncio.Future[bool]] = field(default_factory=dict)


class Master:
    def __init__(self, config_path: str | None, workers: int | None = None) -> None:
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.workers_override = workers
        self.config: Config | None = None
        self.payload = b""
        self.version = 0
        self.workers: dict[int, WorkerHandle] = {}
        self.stopping = False
        self.fast_stop = False
        self.done = asyncio.Event()
        self.crashes: dict[int, int] = {}
        self.tasks: set[asyncio.Task[Any]] = set()
        self.state_dir = default_state_dir()
        self.reload_lock = asyncio.Lock()
        # Shared memory the workers attach to (rate limits exact across workers); created once,
        # so limits survive worker restarts and config reloads.
        self.limiter = SharedLimiter.create()
        # Request metrics: workers write, the admin listener's /metrics reads; created once, so
        # counters survive worker restarts and reloads.
        self.metrics = SharedMetrics.create()
        self.admin: AdminServer | None = None

    # ---------------------------------------------------------------- config

    def last_good_path(self) -> Path:
        name = Path(self.config_path).name if self.config_path else "default.yaml"
        return self.state_dir / f"{name}.last-good.yaml"

    def initial_config(self) -> Config:
        if self.config_path is None:
            return default_config()
        try:
            return load_and_check(self.config_path)
        except ConfigError as exc:
            fallback = self.last_good_path()
            log.error("config %s is invalid:\n%s", self.config_path, exc)
            if fallback.exists():
                log.warning("starting with the last good config persisted at %s", fallback)
                return load_and_check(str(fallback))
            raise

    def persist(self, config: Config) -> None:
        target = self.last_good_path()
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            # The dump holds expanded secrets (keys, credentials): owner-only.
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(dump_config(config))
            os.replace(tmp, target)
        except OSError as exc:
            log.warning("cannot persist the last good config to %s: %s", target, exc)

    def adopt(self, config: Config) -> None:
        self.config = config
        self.version += 1
        self.payload = config_to_bytes(config)
        if config.gateway.state_dir:
            self.state_dir = Path(config.gateway.state_dir)
        self.persist(config)

    def worker_count(self) -> int:
        wanted: int | str = self.workers_override or (self.config.gateway.workers if self.config else 1)
        if wanted == "auto":
            return len(os.sched_getaffinity(0)) or 1
        return int(wanted)

    # ---------------------------------------------------------------- lifecycle

    async def run(self) -> int:
        config = self.initial_config()
        if config.gateway.state_dir:
            self.state_dir = Path(config.gateway.state_dir)
        for address in config.gateway.listen:
            check_bindable(address)
        self.adopt(config)
        self.admin = AdminServer(lambda: self.config.gateway.admin if self.config else config.gateway.admin,
                                 self.state_dir, self.metrics)
        await self.admin.start()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, lambda: self.spawn(self.reload("SIGHUP")))
        loop.add_signal_handler(signal.SIGTERM, lambda: self.spawn(self.stop(fast=False)))
        loop.add_signal_handler(signal.SIGINT, lambda: self.spawn(self.stop(fast=False)))
        loop.add_signal_handler(signal.SIGQUIT, lambda: self.spawn(self.stop(fast=True)))
        count = self.worker_count()
        await asyncio.gather(*(self.start_worker(i) for i in range(count)))
        await self.wait_converged(self.version, timeout=30.0)
        log.info("gateway master %d: %d workers serving %s (config version %d)", os.getpid(),
                 count, ", ".join(config.gateway.listen), self.version)
        self.write_status()
        if self.config_path:
            self.spawn(self.watch())
        await self.done.wait()
        return 0

    def spawn(self, coro: Any) -> asyncio.Task[Any]:
        task = asyncio.ensure_future(coro)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)
        return task

    async def start_worker(self, index: int) -> None:
        parent, child = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        env = dict(os.environ)
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "gateway.server.worker", "--id", str(index),
            "--control-fd", str(child.fileno()), "--limiter-fd", str(self.limiter.fd),
            "--metrics-fd", str(self.metrics.fd),
            pass_fds=(child.fileno(), self.limiter.fd, self.metrics.fd), env=env)
        child.close()
        reader, writer = await asyncio.open_unix_connection(sock=parent)
        handle = WorkerHandle(index, process, writer, time.monotonic())
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

    async def read_worker(self, handle: WorkerHandle, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_frame(reader)
            if message is None:
                return
            kind = message.get("type")
            version = message.get("version", 0)
            if kind == "ack":
                handle.version = version
                future = handle.acks.pop(version, None)
                if future is not None and not future.done():
                    future.set_result(True)
                self.write_status()
            elif kind == "error":
                log.error("worker %d rejected config version %d: %s", handle.index, version,
                          message.get("message"))
                future = handle.acks.pop(version, None)
                if future is not None and not future.done():
                    future.set_result(False)

    async def supervise(self, handle: WorkerHandle) -> None:
        code = await handle.process.wait()
        handle.writer.close()
        for future in handle.acks.values():
            if not future.done():
                future.set_result(False)
        if self.workers.get(handle.index) is handle:
            del self.workers[handle.index]
        if self.stopping:
            if not self.workers:
                self.done.set()
            return
        lived = time.monotonic() - handle.started
        crashes = self.crashes.get(handle.index, 0) + 1 if lived < CRASH_WINDOW else 0
        self.crashes[handle.index] = crashes
        delay = min(0.1 * (2 ** (crashes - 1)), 5.0) if crashes else 0.0
        log.error("worker %d (pid %d) exited with %s; restarting%s", handle.index,
                  handle.process.pid, code, f" in {delay:.1f}s" if delay else "")
        if delay:
            await asyncio.sleep(delay)
        if not self.stopping:
            await self.start_worker(handle.index)

    async def wait_converged(self, version: int, timeout: float) -> bool:
        futures = [h.acks[version] for h in self.workers.values() if version in h.acks]
        if not futures:
            return all(h.version >= version for h in self.workers.values())
        done, _ = await asyncio.wait(futures, timeout=timeout)
        return len(done) == len(futures) and all(f.result() for f in done)

    async def reload(self, reason: str) -> bool:
        """Validates the file and, only if it is good, sends it to every worker."""
        if self.config_path is None or self.stopping:
            return False
        async with self.reload_lock:
            started = time.monotonic()
            try:
                config = load_and_check(self.config_path)
            except ConfigError as exc:
                log.error("reload (%s) rejected; still serving version %d:\n%s", reason,
                          self.version, exc)
                return False
            if self.config is not None and config.fingerprint() == self.config.fingerprint():
                return True
            if self.config is not None and list(config.gateway.listen) != list(self.config.gateway.listen):
                log.warning("listen addresses changed: they apply at the next restart")
            self.adopt(config)
            for handle in list(self.workers.values()):
                self.send_config(handle)
            ok = await self.wait_converged(self.version, timeout=30.0)
            log.info("config version %d (%s) %s in %.1f ms", self.version, reason,
                     "applied by every worker" if ok else "NOT applied by every worker",
                     (time.monotonic() - started) * 1000)
            self.write_status()
            return ok

    async def watch(self) -> None:
        """Applies saved edits of the config file (editors that replace the file included)."""
        from watchfiles import awatch

        assert self.config_path is not None
        target = Path(self.config_path)
        settled = False
        async for changes in awatch(target.parent, debounce=50, step=20, rust_timeout=200,
                                    yield_on_timeout=True,
                                    watch_filter=lambda _c, p: Path(p) == target):
            if self.stopping:
                return
            # The first (empty) wake-up means the watch is in place: catch an edit saved while
            # it was being set up; reload() ignores a file whose content did not change.
            if (changes or not settled) and target.exists():
                await self.reload("file changed")
            settled = True

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
        except asyncio.TimeoutError:
            for handle in list(self.workers.values()):
                with contextlib.suppress(ProcessLookupError):
                    handle.process.kill()
            self.done.set()

    def write_status(self) -> None:
        """A small JSON file describing the running processes (tests and tools read it)."""
        status = {
            "pid": os.getpid(),
            "version": self.version,
            "config": self.config_path,
            "workers": [{"index": h.index, "pid": h.process.pid, "version": h.version}
                        for h in sorted(self.workers.values(), key=lambda h: h.index)],
        }
        path = self.state_dir / "status.json"
        with contextlib.suppress(OSError):
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(".tmp")
            tmp.write_text(json.dumps(status))
            os.replace(tmp, path)


def run_master(config_path: str | None, workers: int | None) -> int:
    import uvloop

    master = Master(config_path, workers)
    try:
        return uvloop.run(master.run())
    except ConfigError as exc:
        print(f"gateway: invalid configuration:\n{exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(f"gateway: cannot start: {exc}", file=sys.stderr)
        return 1
