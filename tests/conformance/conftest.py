"""A real gateway (one worker) in front of a raw-socket upstream that keeps every byte it gets:
what the RFC 9110/9112 tests and the differential test send through, and judge on the wire."""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess, base_config, raw_exchange
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import free_port

# The upstream's answer carries no Date on purpose (the gateway must add one), except on
# /with-date; /early-hints sends a 103 first.
OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
UPSTREAM_DATE = b"Sun, 06 Nov 1994 08:49:37 GMT"


# Upstream answers outside RFC 9112's field and framing rules, by the name after /bad-response/.
BAD_RESPONSES = {
    b"space-before-colon": b"HTTP/1.1 200 OK\r\nX-A : 1\r\nContent-Length: 2\r\n\r\nok",
    b"obs-fold": b"HTTP/1.1 200 OK\r\nX-A: a\r\n b\r\nContent-Length: 2\r\n\r\nok",
    b"nul-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x00b\r\nContent-Length: 2\r\n\r\nok",
    b"cr-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\rb\r\nContent-Length: 2\r\n\r\nok",
    b"ctl-in-value": b"HTTP/1.1 200 OK\r\nX-A: a\x01b\r\nContent-Length: 2\r\n\r\nok",
    b"invalid-length": b"HTTP/1.1 200 OK\r\nContent-Length: 2x\r\n\r\nok",
    b"differing-lengths": b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
    b"length-list": b"HTTP/1.1 200 OK\r\nContent-Length: 2, 3\r\n\r\nok",
    b"length-and-chunked": (b"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n"
                            b"Transfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"),
    b"bad-name": b"HTTP/1.1 200 OK\r\nX(A): 1\r\nContent-Length: 2\r\n\r\nok",
}


def answer(head: bytes) -> bytes:
    target = head.split(b"\r\n", 1)[0].split(b" ")[1:2]
    if target == [b"/with-date"]:
        return b"HTTP/1.1 200 OK\r\nDate: " + UPSTREAM_DATE + b"\r\nContent-Length: 2\r\n\r\nok"
    if target == [b"/early-hints"]:
        return b"HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n" + OK
    if target == [b"/no-content"]:
        return b"HTTP/1.1 204 No Content\r\n\r\n"
    if target[0].startswith(b"/bad-response/") if target else False:
        return BAD_RESPONSES[target[0].removeprefix(b"/bad-response/")]
    if target == [b"/hop"]:
        return (b"HTTP/1.1 200 OK\r\nConnection: x-hop\r\nX-Hop: 1\r\nX-Kept: 1\r\n"
                b"Content-Length: 2\r\n\r\nok")
    return OK


@dataclass
class Response:
    status: int
    headers: list[tuple[bytes, bytes]]
    body: bytes
    closed: bool  # the gateway closed the connection after it
    raw: bytes = field(repr=False)

    def header(self, name: bytes) -> list[bytes]:
        return [v for k, v in self.headers if k.lower() == name.lower()]


def parse_response(raw: bytes, head_request: bool = False) -> Response:
    """The last final (non-1xx) response in ``raw`` (what raw_exchange returns)."""
    closed = raw.endswith(b"<EOF>") or raw.endswith(b"<RST>")
    data = raw.removesuffix(b"<EOF>").removesuffix(b"<RST>")
    while True:
        assert data.startswith(b"HTTP/1.1 "), raw[:300]
        head, _, rest = data.partition(b"\r\n\r\n")
        lines = head.split(b"\r\n")
        status = int(lines[0].split(b" ")[1])
        headers = [(k.strip(), v.strip(b" \t")) for k, _, v in (ln.partition(b":") for ln in lines[1:])]
        if 100 <= status < 200:
            data = rest
            continue
        size = 0 if head_request or status in (204, 304) else int(
            dict((k.lower(), v) for k, v in headers).get(b"content-length", b"0"))
        return Response(status, headers, rest[:size], closed, raw)


class Wire:
    """Sends raw requests to the gateway and tells what reached the upstream, byte for byte."""

    def __init__(self, gateway: GatewayProcess, upstream: RawUpstream) -> None:
        self.gateway = gateway
        self.upstream = upstream

    @property
    def port(self) -> int:
        return self.gateway.port

    def exchange(self, data: bytes, timeout: float = 3.0, head_request: bool = False,
                 half_close: bool = False) -> tuple[Response, list[bytes]]:
        """The gateway's answer to ``data`` and every request the upstream received for it
        (each request's exact bytes, as its framing delimits them)."""
        before = len(self.upstream.requests)
        raw = raw_exchange(self.port, data, timeout=timeout, half_close=half_close)
        return parse_response(raw, head_request), self.upstream.requests[before:]

    def refused(self, data: bytes, timeout: float = 3.0) -> Response:
        """Sends a request the gateway must refuse; fails if any byte of it reached the
        upstream (judged on the raw connections, not on what parsed)."""
        sizes = [len(c) for c in self.upstream.raw_connections]
        count = len(self.upstream.raw_connections)
        raw = raw_exchange(self.port, data, timeout=timeout)
        time.sleep(0.2)  # bytes the gateway might still be writing upstream land first
        leaked = [bytes(c[sizes[i] if i < count else 0:])
                  for i, c in enumerate(self.upstream.raw_connections)]
        assert not any(leaked), f"refused request reached the upstream: {leaked!r}"
        assert len(self.upstream.raw_connections) == count, "a connection was opened upstream"
        return parse_response(raw)


@pytest.fixture(scope="package")
def wire(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Wire]:
    with RawUpstream(answer, close_after=False, read_body=True) as upstream:
        port = free_port()
        tmp: Path = tmp_path_factory.mktemp("rfc")
        config = base_config(port, upstream.port)
        # a route outside the path grammar (UTF-8), telling the upstream it matched
        config["routes"].append({"id": "encoded", "uri": "/caf\u00e9/:name", "upstream_id": "up",
                                 "plugins": {"proxy-rewrite": {"headers": {"X-Route": "encoded"}}}})
        with GatewayProcess(tmp, config, workers=1) as gw:
            yield Wire(gw, upstream)
