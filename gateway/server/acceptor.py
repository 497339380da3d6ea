"""Accepting with a limit (``gateway.max_connections``): at the limit the worker stops watching
its listen sockets, so further clients wait in the kernel's listen backlog (their connect has
succeeded; nothing is refused or reset) until a connection closes and accepting resumes. This is
nginx's worker_connections with accept events disabled, not a refusal.

uvloop's own server accepts everything the kernel has queued in one go and cannot be paused, so
with a limit the worker accepts here and hands each socket to the loop. Without a limit the
worker keeps uvloop's server: an unconfigured feature costs nothing.
"""
from __future__ import annotations

import asyncio
import errno
import functools
import logging
import socket
from collections.abc import Callable
from typing import Any

from gateway.server.fd_limits import FdWatch

#: Out of descriptors: accepting stops this long (nginx waits 500 ms too) instead of spinning.
EMFILE_PAUSE = 0.5
_OUT_OF_FDS = (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM)

log = logging.getLogger("gateway.worker")


class Acceptor:
    def __init__(self, loop: asyncio.AbstractEventLoop, sockets: list[socket.socket],
                 protocol_factory: Callable[[], Any], limit: int, fd_watch: FdWatch) -> None:
        self.loop = loop
        self.sockets = sockets
        self.protocol_factory = protocol_factory
        self.limit = limit
        self.fd_watch = fd_watch
        #: connections accepted and not yet gone (the server reports each one gone once)
        self.held = 0
        self.paused = True
        self.closed = False
        self.retry: asyncio.TimerHandle | None = None

    def start(self) -> None:
        self.resume()

    def resume(self) -> None:
        if not self.paused or self.closed:
            return
        self.paused = False
        for sock in self.sockets:
            self.loop.add_reader(sock.fileno(), self._accept, sock)

    def pause(self) -> None:
        if self.paused:
            return
        self.paused = True
        for sock in self.sockets:
            self.loop.remove_reader(sock.fileno())

    def connection_gone(self) -> None:
        self.held -= 1
        if self.paused and self.retry is None and self.held < self.limit:
            self.resume()

    def _accept(self, sock: socket.socket) -> None:
        while self.held < self.limit:
            try:
                conn, _ = sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except ConnectionAbortedError:
                continue  # the client gave up while queued
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    self.fd_watch.check()
                    self.pause()
                    self.retry = self.loop.call_later(EMFILE_PAUSE, self._retry)
                    return
                log.error("accept on %s failed: %s", sock.getsockname(), exc)
                return
            conn.setblocking(False)
            self.held += 1
            task = self.loop.create_task(
                self.loop.connect_accepted_socket(self.protocol_factory, conn))
            task.add_done_callback(functools.partial(self._made, conn=conn))
        self.pause()

    def set_limit(self, limit: int) -> None:
        self.limit = limit
        if self.paused and self.retry is None and self.held < limit:
            self.resume()

    def _made(self, task: asyncio.Task[Any], *, conn: socket.socket) -> None:
        if task.cancelled() or task.exception() is not None:
            # never became a client, so the server will not report it gone
            conn.close()
            self.connection_gone()

    def _retry(self) -> None:
        self.retry = None
        if self.held < self.limit:
            self.resume()

    def close(self) -> None:
        self.pause()
        self.closed = True
        if self.retry is not None:
            self.retry.cancel()
        for sock in self.sockets:
            sock.close()
