"""An upstream that fails on purpose: a raw one that resets its connection in the middle of a
body, either direction. (One killed, stopped and brought back is
``tests.support.upstream_process.UpstreamProcess``.)"""
from __future__ import annotations

import socket
import struct
import threading


def reset(sock: socket.socket) -> None:
    """Close with SO_LINGER 0: the peer gets a RST, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


class ResettingUpstream:
    """Resets every connection mid-body. ``during="response"``: reads the request head, sends a
    head announcing ``length`` bytes and ``sent`` of them, then resets. ``during="request"``:
    reads the head and ``read`` bytes of the request body, then resets without answering."""

    def __init__(self, during: str, length: int = 1 << 20, sent: int = 1 << 16,
                 read: int = 1 << 16) -> None:
        assert during in ("request", "response")
        self.during = during
        self.length, self.sent, self.read = length, sent, read
        self.resets = 0
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(256)
        self.port: int = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> ResettingUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.listener.shutdown(socket.SHUT_RDWR)
        self.listener.close()
        self.thread.join(5)

    def _accept_loop(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        data = b""
        try:
            while b"\r\n\r\n" not in data:
                chunk = conn.recv(65536)
                if not chunk:
                    conn.close()
                    return
                data += chunk
            if self.during == "request":
                body = len(data.partition(b"\r\n\r\n")[2])
                while body < self.read:
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    body += len(chunk)
            else:
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                             b"Content-Length: %d\r\n\r\n" % self.length + b"x" * self.sent)
        except OSError:
            conn.close()
            return
        self.resets += 1
        reset(conn)
