"""An upstream that answers with exact bytes: for responses no well-behaved server library would
send (leading empty lines, invalid statuses, bodies cut short) and for peers that stop reading.

``RawUpstream(answer)`` reads each request head (up to the blank line; bodies are not read unless
``read_body``) and writes ``answer(request_head)`` back, then keeps or closes the connection as
the answer says (``close_after``). ``stall=True`` accepts connections and never reads a byte.

Every byte that arrives is kept, per connection, in ``raw_connections`` (whether or not it parses);
with ``read_body=True`` each request's exact bytes (head and body, as its Content-Length or chunked
framing delimits them) are in ``requests``: what differential tests hand to other parsers.
``wait_answered`` waits until every answer is written (and, with ``close_after``, its connection
closed): a caller that must not race an answer's late pieces (fuzz/proxy_fuzz.py).
"""
from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable

# bytes, or a list of pieces sent apart (a short pause between them), so the gateway's parser
# meets the response cut where the caller says (fuzz/proxy_fuzz.py)
Answer = Callable[[bytes], bytes | list[bytes]]


class RawUpstream:
    def __init__(self, answer: Answer | bytes = b"", close_after: bool = True,
                 stall: bool = False, hold: float = 0.0, read_body: bool = False,
                 drop_after: int | None = None) -> None:
        self.answer: Answer = answer if callable(answer) else (lambda _head, a=answer: a)
        self.close_after = close_after
        self.stall = stall
        self.hold = hold  # seconds to keep the connection open after answering
        self.heads: list[bytes] = []
        self.read_body = read_body
        # after answering drop_after requests on a connection, the next one is read and the
        # connection closed unanswered: a pooled connection that went stale just as it was reused
        self.drop_after = drop_after
        self.dropped = 0
        self.requests: list[bytes] = []  # with read_body: each request's bytes, head and body
        self.raw_connections: list[bytearray] = []
        self.peer_closed: set[int] = set()  # indexes in raw_connections the gateway closed (EOF/RST)
        self.unframed: list[bytes] = []  # bytes read_body could not delimit (bad framing)
        self.sending: set[int] = set()  # connections (indexes) whose answer is being written
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
        raw = bytearray()
        index = len(self.raw_connections)
        self.raw_connections.append(raw)
        buffer = b""

        def more() -> bool:
            nonlocal buffer
            try:
                chunk = conn.recv(65536)
            except ConnectionResetError:
                self.peer_closed.add(index)
                raise
            if not chunk:
                self.peer_closed.add(index)
            raw.extend(chunk)
            buffer += chunk
            return bool(chunk)

        answered = 0
        try:
            while not self.stopped.is_set():
                while b"\r\n\r\n" not in buffer:
                    if not more():
                        return
                head, _, buffer = buffer.partition(b"\r\n\r\n")
                self.heads.append(head)
                if self.drop_after is not None and answered == self.drop_after:
                    self.dropped += 1
                    return
                answered += 1
                if self.read_body:
                    whole = head + b"\r\n\r\n"
                    end = body_end(head, buffer)
                    while end is None:
                        if not more():
                            self.unframed.append(whole + buffer)
                            return
                        end = body_end(head, buffer)
                    if end < 0:
                        self.unframed.append(whole + buffer)
                        return
                    self.requests.append(whole + buffer[:end])
                    buffer = buffer[end:]
                self.sending.add(index)
                self._send(conn, self.answer(head))
                if self.close_after:
                    if self.hold:
                        time.sleep(self.hold)
                    return  # still "sending" until the connection is closed, below
                self.sending.discard(index)
        except OSError:
            return
        finally:
            conn.close()
            self.sending.discard(index)


    def wait_answered(self, timeout: float) -> bool:
        """Waits until no answer is being written (with ``close_after``: and its connection is
        closed), so every byte of it is in the peer's receive buffer. False on timeout."""
        deadline = time.monotonic() + timeout
        while self.sending:
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.001)
        return True

    @staticmethod
    def _send(conn: socket.socket, reply: bytes | list[bytes]) -> None:
        if isinstance(reply, bytes):
            conn.sendall(reply)
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for piece in reply:
            conn.sendall(piece)
            time.sleep(0.002)


def body_end(head: bytes, data: bytes) -> int | None:
    """Where the body of the request with ``head`` ends in ``data``: an offset, None if more
    bytes are needed, -1 if the framing is not one this simple reader trusts."""
    lengths: list[bytes] = []
    codings: list[bytes] = []
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.lower() == b"content-length":
            lengths.append(value.strip(b" \t"))
        elif name.lower() == b"transfer-encoding":
            codings.append(value.strip(b" \t").lower())
    if codings:
        if lengths or not b",".join(codings).replace(b" ", b"").endswith(b"chunked"):
            return -1
        pos = 0
        while True:
            eol = data.find(b"\r\n", pos)
            if eol < 0:
                return None
            size_text = data[pos:eol].split(b";")[0].strip(b" \t")
            try:
                size = int(size_text, 16)
            except ValueError:
                return -1
            pos = eol + 2
            if size == 0:
                while True:  # trailer fields, then the empty line
                    eol = data.find(b"\r\n", pos)
                    if eol < 0:
                        return None
                    pos, empty = eol + 2, eol == pos
                    if empty:
                        return pos
            if len(data) < pos + size + 2:
                return None
            if data[pos + size:pos + size + 2] != b"\r\n":
                return -1
            pos += size + 2
    if len(set(lengths)) > 1 or (lengths and not lengths[0].isdigit()):
        return -1
    size = int(lengths[0]) if lengths else 0
    return size if len(data) >= size else None
