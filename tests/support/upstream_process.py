"""An upstream in a process of its own, for tests that kill a node while load runs: SIGKILL gives
it no goodbye, the kernel resets or closes its connections as it would for a crashed backend.

    with OneWriteUpstream("a") as a:
        ...a.port...
        a.kill()
        a.start()  # serves again on the same port

It answers every request (keep-alive, Content-Length bodies read and dropped) with 200,
``x-upstream: <name>`` and a small JSON body naming the node, head and body in one write, as most servers write a small
response: a kill finds each response either whole or not begun, so a client can lose one only
through the proxy. (tests.support.upstream writes a head and its body separately: a kill
between the two leaves a response the proxy must cut, which no retry may repair.)
"""
from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class OneWriteUpstream:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> OneWriteUpstream:
        return self.start()

    def start(self) -> OneWriteUpstream:
        """Starts the process: on a port of the OS's choosing the first time, then on the same."""
        self._close_pipes()
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.upstream_process", self.name, str(self.port)],
            cwd=ROOT, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"upstream process {self.name} did not start")
        self.port = int(line)
        return self

    def _close_pipes(self) -> None:
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
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


def main() -> None:
    async def serve() -> None:
        loop = asyncio.get_running_loop()
        server = await loop.create_server(lambda: _OneWrite(sys.argv[1].encode()), "127.0.0.1",
                                          int(sys.argv[2]), backlog=1024, reuse_address=True)
        print(server.sockets[0].getsockname()[1], flush=True)
        # serves until the test closes our stdin (or kills us)
        await loop.run_in_executor(None, sys.stdin.read)

    asyncio.run(serve())


if __name__ == "__main__":
    main()
