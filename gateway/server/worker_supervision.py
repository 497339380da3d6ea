"""The master's supervision of its worker processes: starting one on its slot's listening
sockets, reading its control channel (acks, errors, fatal start failures), restarting it with
back-off when it dies, and waiting until every worker runs a config version. A mixin of
``Master`` (master.py), whose state it uses."""
from __future__ import annotations

import asyncio
import json
import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from gateway._native import SharedHealth, SharedLimiter, SharedMetrics
from gateway.config import Config
from gateway.server.config_delta import Shipment
from gateway.server.fd_limits import FdWatch
from gateway.server.ipc import read_frame
from gateway.server.listeners import Listeners
from gateway.server.status_report import WorkerPolls
from gateway.server.worker_boot import worker_command

log = logging.getLogger("gateway.master")

# A worker that dies sooner than this after starting counts as a crash loop and is restarted
# with a growing delay instead of at once.
CRASH_WINDOW = 2.0
MAX_RESTART_DELAY = 5.0


@dataclass(eq=False)  # hashed by identity: kept in sets while retiring
class WorkerHandle:
    index: int
    process: asyncio.subprocess.Process
    writer: asyncio.StreamWriter
    started: float
    version: int = 0
    sent: int = 0  # the last config version sent to it (see config_delta.py)
    acks: dict[int, asyncio.Future[bool]] = field(default_factory=dict)
    #: Resolved with None once the worker serves its first config, or with why it cannot.
    ready: asyncio.Future[str | None] | None = None
    fatal: str | None = None
    #: Replaced or removed: drains and exits, and is not restarted.
    retiring: bool = False
    #: In place in Master.workers (a successor is not until it serves): only these restart.
    registered: bool = True


class WorkerSupervision:
    # Master's state (set in Master.__init__) and methods this part uses.
    config: Config | None
    version: int
    shipment: Shipment
    addresses: dict[str, list[str]]
    workers: dict[int, WorkerHandle]
    converging: int
    retiring: set[WorkerHandle]
    crashes: dict[int, int]
    listeners: Listeners
    limiter: SharedLimiter
    metrics: SharedMetrics
    health: SharedHealth
    worker_polls: WorkerPolls
    fd_watch: FdWatch
    serving: bool
    stopping: bool
    done: asyncio.Event

    if TYPE_CHECKING:
        def spawn(self, coro: Any) -> asyncio.Task[Any]: ...
        def write_status(self) -> None: ...
        def grace(self) -> float: ...

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
            handle.writer.write(self.shipment.frame(handle.sent, self.addresses))
            handle.sent = self.version
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
                if not self.converging:  # else the apply writes it once every worker has it
                    self.write_status()
            elif kind == "resync" and not handle.writer.is_closing():  # it missed a version
                handle.writer.write(self.shipment.full_frame(self.addresses))
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


def listen_addresses(config: Config) -> list[str]:
    """Every address the workers accept on (plain, then TLS): the master owns their sockets."""
    return [*config.gateway.listen, *config.gateway.tls_listen]
