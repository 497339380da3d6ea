"""A worker process: accepts on its slot's SO_REUSEPORT listening sockets (the master owns them,
see listeners.py), receives versioned config snapshots from the master, compiles and swaps them
atomically, and proxies on uvloop."""
from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import signal
import socket
import sys
import time
from typing import Any

import uvloop

from gateway import heap
from gateway._native import SharedHealth, SharedLimiter, SharedMetrics
from gateway._proto import Server
from gateway.config import Config, config_from_bytes
from gateway.observability.access_log import AccessLog
from gateway.proxy.route_updates import with_route_changes
from gateway.proxy.runtime import CompiledParts, compile_parts, runtime_of
from gateway.server.acceptor import Acceptor
from gateway.server.config_delta import apply_changes, decode_changes
from gateway.server.fd_limits import FdWatch, raise_fd_limit
from gateway.server.ipc import encode_frame, read_frame
from gateway.server.sockets import BACKLOG
from gateway.server.tls import TlsListener
from gateway.server.worker_boot import EXIT_CANNOT_START

log = logging.getLogger("gateway.worker")


def sweep_interval(config: Config) -> float:
    """Timeouts are enforced by a periodic sweep; a quarter of the shortest one keeps each
    within 25% of its setting (bounded to 50 ms .. 500 ms)."""
    gw = config.gateway
    timeouts = [gw.client_header_timeout, gw.keepalive_timeout, gw.client_body_timeout]
    upstreams = list(config.upstreams) + [r.upstream for r in config.routes if r.upstream]
    for up in upstreams:
        timeouts += [up.timeout.connect, up.timeout.send, up.timeout.read]
    for route in config.routes:
        if route.timeout is not None:
            timeouts += [route.timeout.connect, route.timeout.send, route.timeout.read]
    shortest = min((t for t in timeouts if t > 0), default=2.0)
    return min(max(shortest / 4, 0.05), 0.5)


class Worker:
    def __init__(self, worker_id: int, control: socket.socket, listen_fds: list[tuple[str, int]],
                 limiter: SharedLimiter | None = None, metrics: SharedMetrics | None = None,
                 health: SharedHealth | None = None) -> None:
        self.worker_id = worker_id
        self.listen_fds = listen_fds
        self.control = control
        self.limiter = limiter
        self.metrics = metrics
        self.health = health
        self.loop = asyncio.get_running_loop()
        self.server: Server | None = None
        self.listeners: list[asyncio.AbstractServer] = []
        self.acceptor: Acceptor | None = None
        self.config: Config | None = None
        #: the running config compiled, for compiling the next version's changed routes only
        self.parts: CompiledParts | None = None
        self.version = 0
        self.stopping = asyncio.Event()
        self.quit_now = False
        self.access_log: AccessLog | None = None
        self.writer: asyncio.StreamWriter | None = None
        self.fatal: str | None = None
        self.fd_watch = FdWatch(log, f"worker {worker_id}")
        self.watcher: asyncio.TimerHandle | None = None
        #: The master's current addresses of the host names in nodes (it resolves them).
        self.addresses: dict[str, list[str]] = {}
        self.tls = TlsListener()

    async def run(self) -> int:
        self.loop.set_exception_handler(self._loop_exception)
        reader, self.writer = await asyncio.open_unix_connection(sock=self.control)
        self.loop.add_signal_handler(signal.SIGTERM, self.stopping.set)
        self.loop.add_signal_handler(signal.SIGQUIT, self._quit)
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # the master coordinates Ctrl-C
        control = asyncio.create_task(self._control_loop(reader))
        await self.stopping.wait()
        control.cancel()
        await self._shutdown()
        if self.fatal is not None:
            return EXIT_CANNOT_START
        return 0

    def _loop_exception(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno == 24:
            self.fd_watch.check()
            return
        log.error("worker %d: %s", self.worker_id, context.get("message", "event loop error"),
                  exc_info=exc)

    def _watch_fds(self) -> None:
        # uvloop drops connections silently at the fd limit; say so (see fd_limits).
        if self.server is not None:
            stats = self.server.stats
            self.fd_watch.check(stats["clients"] + stats["upstream_connections"])
        if self.access_log is not None:
            self.access_log.flush()  # a quiet gateway's lines reach the file within a second
        self.watcher = self.loop.call_later(1.0, self._watch_fds)

    def _cannot_start(self, message: str) -> None:
        """The first config cannot be served: tell the master in one line and exit."""
        self.fatal = message
        log.error("worker %d cannot start: %s", self.worker_id, message)
        self._send({"type": "fatal", "message": message, "pid": os.getpid()})
        self.quit_now = True
        self.stopping.set()

    def _quit(self) -> None:
        self.quit_now = True
        self.stopping.set()

    async def _control_loop(self, reader: asyncio.StreamReader) -> None:
        while True:
            message = await read_frame(reader)
            if message is None:
                log.warning("worker %d: master went away; draining", self.worker_id)
                self.stopping.set()
                return
            kind = message.get("type")
            if kind == "config":
                self.addresses = message.get("addresses") or {}
                await self._apply(message["version"], message["config"])
            elif kind == "delta":  # see config_delta.py
                self.addresses = message.get("addresses") or {}
                if self.config is None or message.get("base") != self.version:
                    self._send({"type": "resync", "version": message["version"]})
                else:
                    await self._apply(message["version"], None, message["changes"])
            elif kind == "addresses":
                self._readdress(message.get("addresses") or {})
            elif kind == "drain":
                self.stopping.set()
            elif kind == "ping":
                self._send({"type": "pong", "version": self.version, "stats": self._stats()})

    def _stats(self) -> dict[str, Any]:
        if self.server is None:
            return {}
        return dict(self.server.stats)

    def _send(self, message: dict[str, Any]) -> None:
        if self.writer is not None and not self.writer.is_closing():
            self.writer.write(encode_frame(message))

    async def _apply(self, version: int, payload: bytes | None, delta: Any = None) -> None:
        """Serves a version sent whole (``payload``) or as changes to the running one."""
        try:
            changes = decode_changes(delta) if delta is not None else None
            if changes is not None and self.config is not None:
                config = apply_changes(self.config, changes)
            else:
                assert payload is not None
                config = config_from_bytes(payload)
            parts = None
            if changes is not None and self.parts is not None \
                    and self.parts.env.addresses == self.addresses:  # else nodes need them
                parts = with_route_changes(self.parts, config, changes)
            whole = parts is None
            if parts is None:
                parts = self._compile(config, self.addresses)
            runtime = runtime_of(parts, config, version)
            if changes is None or any(section == "ssls" for section, _k, _v in changes):
                # new handshakes take the new certificates; open connections keep theirs
                self.tls.update(config.ssls, config.gateway.fallback_sni)
        except Exception as exc:  # the master validated it; say why if it still fails here
            if self.server is None:
                log.exception("worker %d: config version %d rejected", self.worker_id, version)
                self._cannot_start(f"config version {version}: {type(exc).__name__}: {exc}")
                return
            log.exception("worker %d: config version %d rejected", self.worker_id, version)
            self._send({"type": "error", "version": version, "message": str(exc),
                        "pid": os.getpid()})
            return
        if self.server is None:
            try:
                await self._start(config, runtime)
            except OSError as exc:
                self._cannot_start(str(exc))
                return
            except Exception as exc:  # a defect: say so, or the master waits on a silent worker
                log.exception("worker %d: could not start serving", self.worker_id)
                self._cannot_start(f"{type(exc).__name__}: {exc}")
                return
        else:
            self.server.set_runtime(runtime)
            self.server.tls_misdirected = self.tls.misdirected_check
            self.server.sweep_interval = sweep_interval(config)
            self._configure_access_log(config)
            self._configure_limit(config)
        self.config = config
        self.parts = parts
        self.version = version
        self._send({"type": "ack", "version": version, "pid": os.getpid()})
        if whole:
            heap.settle()  # after the ack: the master need not wait for it

    def _compile(self, config: Config, addresses: dict[str, list[str]]) -> CompiledParts:
        return compile_parts(config, limiter=self.limiter, metrics=self.metrics,
                             worker_id=self.worker_id, health=self.health, addresses=addresses)

    def _readdress(self, addresses: dict[str, list[str]]) -> None:
        """A host name in the nodes resolves to other addresses: the running config is compiled
        again with them, as a reload would (warm connections to unchanged addresses are kept)."""
        self.addresses = addresses
        if self.server is None or self.config is None:
            return
        try:
            parts = self._compile(self.config, addresses)
        except Exception:  # the same config compiled before: only the node lists changed
            log.exception("worker %d: new node addresses not applied", self.worker_id)
            return
        self.parts = parts
        self.server.set_runtime(runtime_of(parts, self.config, self.version))

    async def _start(self, config: Config, runtime: Any) -> None:
        self.server = Server(self.loop, runtime, sweep_interval(config))
        self.server.tls_misdirected = self.tls.misdirected_check
        self.server.tls_engine = self.tls.engine
        self._configure_access_log(config)
        gw = config.gateway
        sockets = self._sockets()
        plain = [sock for address, sock in sockets if address not in gw.tls_listen]
        if gw.max_connections:
            self.acceptor = Acceptor(self.loop, plain, self.server.protocol_factory,
                                     gw.max_connections, self.fd_watch)
            self.server.acceptor = self.acceptor
            self.acceptor.start()
        for sock in plain if self.acceptor is None else []:
            await self._listen(sock, self.server.protocol_factory)
        for address, sock in sockets:
            if address in gw.tls_listen:
                # TlsTransport runs the handshake (within the header timeout) and the records
                await self._listen(sock, self.server.tls_protocol_factory)
        self._watch_fds()
        log.info("worker %d (pid %d) serving %s", self.worker_id, os.getpid(),
                 ", ".join(list(gw.listen) + [f"https://{a}" for a in gw.tls_listen]))

    async def _listen(self, sock: socket.socket, factory: Any) -> None:
        # create_server listens again: without the backlog it would be asyncio's 100.
        listener = await self.loop.create_server(factory, sock=sock, backlog=BACKLOG)
        self.listeners.append(listener)

    def _sockets(self) -> list[tuple[str, socket.socket]]:
        """The listening sockets the master lent this worker's slot (it owns and binds them, so
        a takeover or a rolling restart hands the same sockets on and no connection is refused)."""
        return [(address, socket.socket(fileno=fd)) for address, fd in self.listen_fds]

    def _configure_access_log(self, config: Config) -> None:
        target = config.gateway.access_log
        if self.access_log is not None and self.access_log.target == target:
            return
        if self.access_log is not None:
            self.access_log.close()
            self.access_log = None
        if target and self.server is not None:
            self.access_log = AccessLog(target)
        if self.server is not None:
            self.server.on_log = self.access_log.write if self.access_log else None

    def _configure_limit(self, config: Config) -> None:
        limit = config.gateway.max_connections
        if self.acceptor is not None and limit:
            self.acceptor.set_limit(limit)
        elif (self.acceptor is not None) != bool(limit):
            log.warning("worker %d: turning max_connections on or off applies only on restart",
                        self.worker_id)

    async def _shutdown(self) -> None:
        for listener in self.listeners:
            listener.close()
        if self.acceptor is not None:
            self.acceptor.close()
        if self.watcher is not None:
            self.watcher.cancel()
        if self.server is not None:
            self.server.start_draining()
            if not self.quit_now:
                grace = self.config.gateway.graceful_shutdown_timeout if self.config else 10.0
                deadline = time.monotonic() + grace
                while self.server.active_clients and time.monotonic() < deadline:
                    await asyncio.sleep(0.02)
                if self.server.in_flight:
                    log.warning("worker %d: graceful shutdown timed out: closing %d "
                                "connection(s) with a request in flight", self.worker_id,
                                self.server.in_flight)
            self.server.close_all()
        if self.access_log is not None:
            self.access_log.close()
        if self.writer is not None:
            self.writer.close()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="gateway-worker")
    parser.add_argument("--id", type=int, required=True)
    parser.add_argument("--control-fd", type=int, required=True)
    parser.add_argument("--limiter-fd", type=int, default=None)
    parser.add_argument("--metrics-fd", type=int, default=None)
    parser.add_argument("--health-fd", type=int, default=None)
    parser.add_argument("--listen-fds", type=json.loads, required=True,
                        help="JSON list of [address, fd]: listening sockets lent by the master")
    args = parser.parse_args(argv)
    raise_fd_limit()
    logging.basicConfig(level=os.environ.get("GATEWAY_LOG_LEVEL", "INFO"),
                        format=f"%(asctime)s [worker {args.id} %(process)d] %(levelname)s %(message)s",
                        stream=sys.stderr)
    control = socket.socket(fileno=args.control_fd)
    limiter = SharedLimiter.attach(args.limiter_fd) if args.limiter_fd is not None else None
    metrics = SharedMetrics.attach(args.metrics_fd) if args.metrics_fd is not None else None
    health = SharedHealth.attach(args.health_fd) if args.health_fd is not None else None

    async def run() -> int:
        listen = [(str(a), int(fd)) for a, fd in args.listen_fds]
        return await Worker(args.id, control, listen, limiter, metrics, health).run()

    return uvloop.run(run())


if __name__ == "__main__":
    sys.exit(main())
