"""Takeover: a gateway starting on the ports of a running one receives its listening sockets.

The running master answers on an abstract Unix socket named after each listen address with that
address's sockets (SCM_RIGHTS), in their reuseport-group order. The new gateway's workers then
accept from the very same sockets (and queues) as the old one's, so when the old gateway drains
(`gateway stop --graceful`) no queued connection is reset: the sockets stay open in the new one.
This is how nginx's binary upgrade, HAProxy's ``-x`` and Envoy's hot restart avoid the reset that
closing an SO_REUSEPORT socket causes. Only a process of the same user gets the sockets
(SO_PEERCRED is checked), since a listening socket lets its holder read the clients' traffic.
"""
from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import socket
import struct
from collections.abc import Callable

log = logging.getLogger("gateway.master")

_CRED = struct.Struct("3i")
MAX_SOCKETS = 1024


def rendezvous(address: str) -> str:
    """Abstract-namespace name (Linux; scoped to the network namespace, nothing on disk)."""
    return f"\0gateway/listen/{address}"


def peer_uid(conn: socket.socket) -> int:
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, _CRED.size)
    return int(_CRED.unpack(raw)[2])


def request_sockets(address: str, timeout: float = 2.0) -> list[socket.socket]:
    """The listening sockets of the gateway that serves ``address`` now; [] when none does."""
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(timeout)
    try:
        conn.connect(rendezvous(address))
    except OSError:
        conn.close()
        return []
    try:
        message, fds, _flags, _addr = socket.recv_fds(conn, 65536, MAX_SOCKETS)
    except OSError as exc:
        log.warning("takeover of %s failed: %s; listening on new sockets", address, exc)
        return []
    finally:
        conn.close()
    sockets = [socket.socket(fileno=fd) for fd in fds]
    try:
        header = json.loads(message.decode())
        if header.get("address") != address or len(sockets) != header.get("count"):
            raise ValueError(f"unexpected answer {header!r}")
    except ValueError as exc:
        for sock in sockets:
            sock.close()
        log.warning("takeover of %s failed: %s; listening on new sockets", address, exc)
        return []
    for sock in sockets:
        sock.set_inheritable(False)
    return sockets


class HandoffServer:
    """Answers takeover requests for one address while this gateway owns it."""

    def __init__(self, address: str, sockets: Callable[[], list[socket.socket]]) -> None:
        self.address = address
        self.sockets = sockets
        self.listener: socket.socket | None = None
        self.task: asyncio.Task[None] | None = None

    def try_start(self) -> bool:
        """False while another gateway still answers for the address (after a takeover, the
        one being replaced): the caller tries again later."""
        if self.listener is not None:
            return True
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.bind(rendezvous(self.address))
            sock.listen(8)
        except OSError:
            sock.close()
            return False
        sock.setblocking(False)
        self.listener = sock
        self.task = asyncio.ensure_future(self.serve(sock))
        return True

    async def serve(self, listener: socket.socket) -> None:
        loop = asyncio.get_running_loop()
        while True:
            try:
                conn, _ = await loop.sock_accept(listener)
            except OSError as exc:  # a full fd table passes; the next request is answered
                log.warning("takeover listener for %s: %s", self.address, exc)
                await asyncio.sleep(0.5)
                continue
            with contextlib.closing(conn):
                try:
                    if peer_uid(conn) != os.getuid():
                        log.warning("refused a takeover request for %s from another user",
                                    self.address)
                        continue
                    sockets = self.sockets()
                    header = json.dumps({"address": self.address, "count": len(sockets)})
                    conn.setblocking(True)
                    conn.settimeout(2.0)
                    socket.send_fds(conn, [header.encode()], [s.fileno() for s in sockets])
                    log.info("handed %d listening socket(s) on %s to a new gateway",
                             len(sockets), self.address)
                except OSError as exc:
                    log.warning("takeover request for %s failed: %s", self.address, exc)

    def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None
        if self.listener is not None:
            self.listener.close()
            self.listener = None
