"""An upstream that answers with exact bytes: for responses no well-behaved server library would
send (leading empty lines, invalid statuses, bodies cut short) and for peers that stop reading.

``RawUpstream(answer)`` reads each request head (up to the blank line; bodies are not read unless
``read_body``) and writes ``answer(request_head)`` back, then keeps or closes the connection as
the answer says (``close_after``). ``stall=True`` accepts connections and never reads a byte.
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

Answer = Callable[[bytes], bytes]


class RawUpstream:
    def __init__(self, answer: Answer | bytes = b"", close_after: bool = True,
                 stall: bool = False, hold: float = 0.0) -> None:
        self.answer: Answer = answer if callable(answer) else (lambda _head, a=answer: a)
        self.close_after = close_after
        self.stall = stall
        self.hold = hold  # seconds to keep the connection open after answering
        self.heads: list[bytes] = []
        self.listener = socket.socket()
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind(("127.0.0.1", 0))
        if stall:
            # A small receive buffer, so a peer that never reads fills up quickly.
            self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.listener.listen(128)
        self.port: int = self.listener.getsockname()[1]
        self.stopped = threading.Event()
        self.held: list[socket.socket] = []
        self.thread = threading.Thread(target=self._accept_loop, daemon=True)

    def __enter__(self) -> RawUpstream:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stopped.set()
        self.listener.close()
        for sock in self.held:
            sock.close()
        self.thread.join(5)

    def _accept_loop(self) -> None:
        self.listener.settimeout(0.1)
        while not self.stopped.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            if self.stall:
                self.held.append(conn)  # never read: the sender's window closes
                continue
            threading.Thread(target=self._serve, args=(conn,), daemon=True).start()

    def _serve(self, conn: socket.socket) -> None:
        conn.settimeout(10)
        buffer = b""
        try:
            while not self.stopped.is_set():
                while b"\r\n\r\n" not in buffer:
                    chunk = conn.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)
                conn.sendall(self.answer(head))
                if self.close_after:
                    if self.hold:
                        time.sleep(self.hold)
                    return
        except OSError:
            return
        finally:
            conn.close()
