"""Which process holds the server side of a client's connection (Linux /proc): how a test sees
which worker accepted it."""
from __future__ import annotations

import os
import socket


def _inode(local_port: int, peer_port: int) -> str | None:
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = open(table).read().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            local, remote = fields[1], fields[2]
            if int(local.rsplit(":", 1)[1], 16) == local_port and \
                    int(remote.rsplit(":", 1)[1], 16) == peer_port:
                return fields[9]
    return None


def owner(client: socket.socket, pids: list[int]) -> int | None:
    """The pid among ``pids`` holding the accepted end of ``client``'s connection."""
    server_port = client.getpeername()[1]
    inode = _inode(server_port, client.getsockname()[1])
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in pids:
        try:
            fds = os.listdir(f"/proc/{pid}/fd")
        except OSError:
            continue
        for fd in fds:
            try:
                if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                    return pid
            except OSError:
                continue
    return None
