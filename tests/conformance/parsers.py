"""Two independent HTTP/1.1 request parsers (h11, and llhttp through its Python binding) reduced
to one shape, so the differential test can compare what each reads in the bytes the gateway
forwarded."""
from __future__ import annotations

from dataclasses import dataclass

import h11
import llhttp  # type: ignore[import-untyped]


@dataclass(frozen=True)
class Parsed:
    method: bytes
    target: bytes
    headers: tuple[tuple[bytes, bytes], ...]  # names lower-cased, in order
    body: bytes  # decoded (de-chunked)
    trailers: tuple[tuple[bytes, bytes], ...] = ()
    trailing: bytes = b""  # bytes after the end of the message


class ParseError(Exception):
    pass


def parse_h11(data: bytes) -> Parsed:
    conn = h11.Connection(h11.SERVER)
    conn.receive_data(data)
    request: h11.Request | None = None
    body = b""
    trailers: tuple[tuple[bytes, bytes], ...] = ()
    try:
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                raise ParseError("h11: message incomplete")
            if isinstance(event, h11.Request):
                request = event
            elif isinstance(event, h11.Data):
                body += event.data
            elif isinstance(event, h11.EndOfMessage):
                trailers = tuple((bytes(k).lower(), bytes(v)) for k, v in event.headers.raw_items())
                break
    except h11.RemoteProtocolError as exc:
        raise ParseError(f"h11: {exc}") from exc
    assert request is not None
    headers = tuple((bytes(k), bytes(v)) for k, v in request.headers.raw_items())
    return Parsed(bytes(request.method), bytes(request.target),
                  tuple((k.lower(), v) for k, v in headers), body, trailers, conn.trailing_data[0])


class _LlhttpRequest(llhttp.Request):
    def __init__(self) -> None:
        super().__init__()
        self.url = b""
        self.fields: list[tuple[bytes, bytes]] = []
        self.trailers: list[tuple[bytes, bytes]] = []
        self.in_trailers = False
        self.name = b""
        self.value = b""
        self.body = b""
        self.complete_at = -1

    def on_url(self, data: bytes) -> None:
        self.url += bytes(data)

    def on_header_field(self, data: bytes) -> None:
        self.name += bytes(data)

    def on_header_value(self, data: bytes) -> None:
        self.value += bytes(data)

    def on_header_value_complete(self) -> None:
        (self.trailers if self.in_trailers else self.fields).append((self.name.lower(), self.value))
        self.name, self.value = b"", b""

    def on_headers_complete(self) -> None:
        self.in_trailers = True

    def on_body(self, data: bytes) -> None:
        self.body += bytes(data)

    def on_message_complete(self) -> None:
        self.complete_at = 1
        self.pause()  # stop at the end of the first message, so trailing bytes stay visible


def parse_llhttp(data: bytes) -> Parsed:
    parser = _LlhttpRequest()
    try:
        consumed = parser.execute(data)
    except llhttp.Error as exc:
        if parser.complete_at < 0 or not parser.is_paused:
            raise ParseError(f"llhttp: {exc}") from exc
        consumed = len(data)
    if parser.complete_at < 0:
        raise ParseError("llhttp: message incomplete")
    return Parsed(str(parser.method).encode(), parser.url, tuple(parser.fields), parser.body,
                  tuple(parser.trailers), data[consumed:])
