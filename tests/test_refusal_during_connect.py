"""A request the gateway answered itself while its upstream connection was still being opened
(refused for a broken body, here) never goes upstream once that connection opens: the client
gets its one answer, the upstream sees nothing of the request, and the worker goes on serving.

The connect is made slow for real: the upstream's listen backlog is full, so the kernel drops
the gateway's SYN and sends it again about a second later, after the test has made room."""
from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from tests.support.gateway import GatewayProcess, base_config, http_get, parse_responses, wait_until
from tests.support.upstream import free_port

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
SYN_SENT = "02"  # the TCP state in /proc/net/tcp


def connecting_to(port: int) -> bool:
    """Whether some socket on this host is in SYN_SENT towards 127.0.0.1:``port``."""
    with open("/proc/net/tcp") as table:
        for line in table.readlines()[1:]:
            fields = line.split()
            remote, state = fields[2], fields[3]
            if state == SYN_SENT and remote == f"0100007F:{port:04X}":
                return True
    return False


class BackloggedUpstream:
    """A listener with a full backlog (one connection queued and not accepted) until
    ``make_room``; after that it answers every request head with 200 and keeps every byte that
    arrived, per connection."""

    def __init__(self) -> None:
        self.listener = socket.socket()
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(0)
        self.port: int = self.listener.getsockname()[1]
        self.filler = socket.create_connection(("127.0.0.1", self.port), timeout=5)
        self.received: list[bytearray] = []
        self.ended: set[int] = set()  # connections the gateway closed
        self.stopped = threading.Event()
        self.threads: list[threading.Thread] = []

    def make_room(self) -> None:
        queued, _ = self.listener.accept()
        queued.close()
        self.filler.close()
        self.listener.settimeout(0.1)
        self.spawn(self.accept_loop)

    def spawn(self, target: Callable[..., None], *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True)
        thread.start()
        self.threads.append(thread)

    def accept_loop(self) -> None:
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.received.append(bytearray())
            self.spawn(self.serve, conn, len(self.received) - 1)

    def serve(self, conn: socket.socket, index: int) -> None:
        conn.settimeout(0.2)
        pending = b""
        with conn:
            while not self.stopped.is_set():
                try:
                    chunk = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    self.ended.add(index)
                    return
                self.received[index].extend(chunk)
                pending += chunk
                while b"\r\n\r\n" in pending:
                    _, _, pending = pending.partition(b"\r\n\r\n")
                    conn.sendall(OK)

    def close(self) -> None:
        self.stopped.set()
        self.filler.close()
        self.listener.close()
        for thread in self.threads:
            thread.join(5)


@contextmanager
def backlogged_upstream() -> Iterator[BackloggedUpstream]:
    upstream = BackloggedUpstream()
    try:
        yield upstream
    finally:
        upstream.close()


def read_until_closed(sock: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            chunk = sock.recv(65536)
        except ConnectionResetError:
            return data
        if not chunk:
            return data
        data += chunk


def test_a_request_refused_while_its_upstream_connects_is_not_sent_upstream(tmp_path: Path) -> None:
    with backlogged_upstream() as upstream:
        config = base_config(free_port(), upstream.port)
        config["upstreams"][0]["timeout"] = {"connect": 10, "send": 5, "read": 5}
        config["upstreams"][0]["retries"] = 0
        with GatewayProcess(tmp_path, config, workers=1) as gw, \
                socket.create_connection(("127.0.0.1", gw.port), timeout=10) as client:
            worker = gw.worker_pids()
            client.sendall(b"POST /refused HTTP/1.1\r\nHost: example.test\r\n"
                           b"Transfer-Encoding: chunked\r\n\r\n")
            wait_until(lambda: connecting_to(upstream.port), 5,
                       "the gateway never started connecting to the upstream")
            client.sendall(b"zz\r\n")  # not a chunk size: the body is refused
            answer = read_until_closed(client)  # the gateway half-closes and lingers
            assert [status for status, _, _ in parse_responses(answer)] == [400], answer
            assert answer.count(b"HTTP/1.1 ") == 1, answer

            # while the refused client is still connected, the kernel's next SYN gets through
            upstream.make_room()
            wait_until(lambda: len(upstream.received) >= 1, 10,
                       "the gateway's connect never completed")
            response, body = http_get(gw.port, "/after")
            assert (response.status, body) == (200, b"ok")
            # the connection opened for the refused request is reused for /after or closed;
            # whatever it carried has arrived by then
            wait_until(lambda: b"\r\n\r\n" in upstream.received[0] or 0 in upstream.ended, 5,
                       "the connection opened during the refusal neither carried a request "
                       "nor was closed")
            sent = [bytes(c) for c in upstream.received]
            assert not any(b"/refused" in c for c in sent), f"refused request went upstream: {sent}"
            assert sum(c.count(b" HTTP/1.1\r\n") for c in sent) == 1, sent
            assert read_until_closed(client) == b""
            # a second answer to the lingering client would fail on its half-closed transport
            assert "Traceback" not in gw.logs(), gw.logs()
            assert gw.worker_pids() == worker
