"""A hand-driven HTTP/2 client for the tests that need what real clients never do: windows
left closed, streams reset in bulk, frames built byte by byte. The `h2` library frames and
parses; the test decides every flow-control step."""
from __future__ import annotations

import socket
import struct
import time
from typing import Any

import h2.config
import h2.connection
import h2.events
import h2.settings

PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

# frame types and flags (RFC 9113 section 6)
DATA, HEADERS, RST_STREAM, SETTINGS, GOAWAY, CONTINUATION = 0x0, 0x1, 0x3, 0x4, 0x7, 0x9
END_STREAM, END_HEADERS = 0x1, 0x4
NO_ERROR, PROTOCOL_ERROR, INTERNAL_ERROR, ENHANCE_YOUR_CALM = 0x0, 0x1, 0x2, 0xB


def frame(kind: int, flags: int, stream_id: int, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload))[1:] + bytes([kind, flags]) + \
        struct.pack(">I", stream_id) + payload


def read_frames(sock: socket.socket, timeout: float) -> tuple[list[tuple[int, int, int, bytes]], bool]:
    """Every frame the server sends until it closes or ``timeout`` passes: (type, flags,
    stream, payload), and whether it closed."""
    sock.settimeout(0.2)
    data = b""
    closed = False
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            chunk = sock.recv(65536)
        except TimeoutError:
            continue
        except ConnectionResetError:
            closed = True
            break
        if not chunk:
            closed = True
            break
        data += chunk
    frames = []
    while len(data) >= 9:
        length = int.from_bytes(data[:3], "big")
        if len(data) < 9 + length:
            break
        frames.append((data[3], data[4], int.from_bytes(data[5:9], "big") & 0x7FFFFFFF,
                       data[9:9 + length]))
        data = data[9 + length:]
    return frames, closed


def goaway_of(frames: list[tuple[int, int, int, bytes]]) -> tuple[int, int] | None:
    """(last stream id, error code) of the first GOAWAY, or None."""
    for kind, _flags, _stream, payload in frames:
        if kind == GOAWAY:
            return (int.from_bytes(payload[:4], "big") & 0x7FFFFFFF,
                    int.from_bytes(payload[4:8], "big"))
    return None


class RawH2:
    """One h2c connection (prior knowledge) whose windows only open when the test says so."""

    def __init__(self, port: int, window: int = 65535) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=5)
        # without it each window's last DATA waits for the gateway's delayed ACK (~40 ms)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.conn = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
        self.conn.local_settings = h2.settings.Settings(
            client=True, initial_values={h2.settings.SettingCodes.INITIAL_WINDOW_SIZE: window})
        self.conn.initiate_connection()
        self.flush()
        self.events: list[Any] = []
        self.closed = False

    def flush(self) -> None:
        data = self.conn.data_to_send()
        if data:
            self.sock.sendall(data)

    def request(self, method: str, path: str, end_stream: bool = True,
                headers: list[tuple[str, str]] | None = None) -> int:
        stream = self.conn.get_next_available_stream_id()
        self.conn.send_headers(stream, [(":method", method), (":path", path), (":scheme", "http"),
                                        (":authority", "gateway.test"), *(headers or [])],
                               end_stream=end_stream)
        self.flush()
        return stream

    def pump(self, seconds: float, first: bool = False) -> list[Any]:
        """Reads for ``seconds`` (``first``: until the first bytes), acknowledging no DATA: the
        windows stay as they are."""
        self.sock.settimeout(0.05)
        deadline = time.monotonic() + seconds
        got = []
        while time.monotonic() < deadline and not self.closed:
            try:
                chunk = self.sock.recv(65536)
            except TimeoutError:
                continue
            if not chunk:
                self.closed = True
                break
            got.extend(self.conn.receive_data(chunk))
            self.flush()
            if first:
                break
        self.events.extend(got)
        return got

    def close(self) -> None:
        self.sock.close()
