"""A test upstream in a process of its own, for tests that kill a node (SIGKILL gives it no
goodbye: the kernel resets or closes its connections as it would for a crashed backend, the
gateway's pooled ones too) or stop it (SIGSTOP: the kernel still completes handshakes for it, and
it answers nothing).

    with UpstreamProcess("a") as a:
        ...a.port...
        a.kill()
        a.start()  # serves again on the same port

By default the process runs ``tests.support.upstream.Upstream`` (every shape it serves, answers
carrying ``x-upstream: <name>``). ``one_write=True`` runs a server that answers every request
(keep-alive, Content-Length bodies read and dropped) with 200, ``x-upstream: <name>`` and a small
JSON body naming the node, head and body in one write, as most servers write a small response: a
kill finds each response either whole or not begun, so a client can lose one only through the
proxy. (``Upstream`` writes a head and its body separately: a kill between the two leaves a
response the proxy must cut, which no retry may repair.)

``python -m tests.support.upstream_process NAME PORT [one-write]`` is the child: it prints the
port it listens on (PORT, or one of the OS's choosing for 0) and serves until its stdin closes
(the test ends) or it is killed.
"""
from __future__ import annotations

import asyncio
import signal
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from tests.support.upstream import Upstream, free_port

ROOT = Path(__file__).resolve().parents[2]
ONE_WRITE = "one-write"


class UpstreamProcess:
    def __init__(self, name: str, port: int = 0, one_write: bool = False) -> None:
        self.name = name
        # a port chosen here, not by the child: the listener is then bound with SO_REUSEADDR from
        # the first start, and a restart can bind it beside the killed one's closing connections
        self.port = port or free_port()
        self.one_write = one_write
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> UpstreamProcess:
        return self.start()

    def start(self) -> UpstreamProcess:
        """Starts the process (again) on its port."""
        self._close_pipes()
        args = [sys.executable, "-m", "tests.support.upstream_process", self.name, str(self.port)]
        self.proc = subprocess.Popen(args + ([ONE_WRITE] if self.one_write else []),
                                     cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"upstream process {self.name} did not start")
        self.port = int(line)
        return self

    def signal(self, sig: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(sig)

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGCONT)  # a stopped one ends as promptly as a running one
            self.kill()
        self._close_pipes()


class _OneWrite(asyncio.Protocol):
    def __init__(self, name: bytes) -> None:
        self.name = name
        self.buffer = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        assert self.transport is not None
        self.buffer += data
        while (end := self.buffer.find(b"\r\n\r\n")) >= 0:
            head = self.buffer[:end].split(b"\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            self.buffer = self.buffer[end + 4 + length:]
            target = head[0].split(b" ")[1]
            body = b'{"upstream": "%s", "target": "%s"}' % (self.name, target)
            self.transport.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                                 b"x-upstream: %s\r\nContent-Length: %d\r\n\r\n%s"
                                 % (self.name, len(body), body))


async def _serve_one_write(name: str, port: int) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(lambda: _OneWrite(name.encode()), "127.0.0.1", port,
                                      backlog=1024, reuse_address=True)
    print(server.sockets[0].getsockname()[1], flush=True)
    await loop.run_in_executor(None, sys.stdin.read)


def main() -> None:
    name, port = sys.argv[1], int(sys.argv[2])
    if sys.argv[3:] == [ONE_WRITE]:
        asyncio.run(_serve_one_write(name, port))
        return
    with Upstream(name, port=port) as up:
        print(up.port, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
