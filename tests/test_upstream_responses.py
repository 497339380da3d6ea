"""Responses no well-behaved upstream sends, from a raw-socket upstream: the client gets a valid
HTTP/1.1 response or a 502, and the worker's memory stays intact (a bad copy in the head writer
used to corrupt the heap and abort the worker later)."""
from __future__ import annotations

import http.client
import socket
from pathlib import Path

import h11
import pytest

from tests.support.gateway import GatewayProcess, base_config, raw_exchange
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import free_port


def gateway_for(tmp_path: Path, upstream_port: int, websocket: bool = False) -> GatewayProcess:
    config = base_config(free_port(), upstream_port)
    if websocket:
        config["routes"][0]["enable_websocket"] = True
    return GatewayProcess(tmp_path, config)


def read_with_h11(port: int, request: bytes) -> list[object]:
    """What a strict client parser reads back: every event up to the end of the message."""
    conn = h11.Connection(h11.CLIENT)
    events: list[object] = []
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(request)
        while True:
            event = conn.next_event()
            if event is h11.NEED_DATA:
                data = sock.recv(65536)
                conn.receive_data(data)
                continue
            events.append(event)
            if isinstance(event, (h11.EndOfMessage, h11.ConnectionClosed)):
                return events


GET = b"GET /x HTTP/1.1\r\nHost: example.test\r\nConnection: close\r\n\r\n"


def test_leading_empty_lines_before_the_status_line_are_skipped(tmp_path: Path) -> None:
    # RFC 9112 section 2.2 lets a recipient skip empty lines before a start line; llhttp skips
    # them in responses as well, and so do we: the client must get a whole, valid response.
    answer = b"\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 5\r\nX-Up: raw\r\n\r\nhello"
    with RawUpstream(answer) as up, gateway_for(tmp_path, up.port) as gw:
        pids = gw.worker_pids()
        for _ in range(200):
            events = read_with_h11(gw.port, GET)
            response = events[0]
            assert isinstance(response, h11.Response), events
            assert response.status_code == 200
            assert response.reason == b"OK"
            assert (b"x-up", b"raw") in response.headers
            body = b"".join(e.data for e in events if isinstance(e, h11.Data))
            assert body == b"hello"
        # the workers that served those are the ones that started: none aborted
        assert gw.worker_pids() == pids
    assert "free()" not in gw.logs() and "corruption" not in gw.logs()
    assert "exited with" not in gw.logs()


def test_leading_empty_line_before_101_switching_protocols(tmp_path: Path) -> None:
    answer = (b"\r\nHTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n"
              b"Connection: Upgrade\r\n\r\n")
    with RawUpstream(answer) as up, gateway_for(tmp_path, up.port, websocket=True) as gw:
        pids = gw.worker_pids()
        for _ in range(50):
            raw = raw_exchange(gw.port, b"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\n"
                                        b"Connection: Upgrade\r\n\r\n", timeout=5)
            assert raw.startswith(b"HTTP/1.1 101 Switching Protocols\r\n"), raw
            assert b"\r\nUpgrade: websocket\r\n" in raw
        assert gw.worker_pids() == pids


def test_informational_response_is_rewritten_not_copied(tmp_path: Path) -> None:
    # Found by fuzz/proxy_fuzz.py: a 1xx head was relayed as the upstream's raw bytes, so the
    # empty line before it reached the client (which h11 refuses), with its hop-by-hop fields
    # and a Content-Length no 1xx may carry.
    answer = (b"\r\nHTTP/1.1 103 Early Hints\r\nLink: </a.css>\r\nConnection: x-hop\r\n"
              b"X-Hop: 1\r\nContent-Length: 5\r\n\r\n"
              b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
    with RawUpstream(answer) as up, gateway_for(tmp_path, up.port) as gw:
        raw = raw_exchange(gw.port, GET, timeout=5)
        assert raw.startswith(b"HTTP/1.1 103 Early Hints\r\n"), raw
        interim = raw.split(b"\r\n\r\n", 1)[0].lower()
        assert b"link: </a.css>" in interim
        for dropped in (b"connection", b"x-hop", b"content-length"):
            assert dropped not in interim, raw
    client = h11.Connection(h11.CLIENT)  # a strict client reads the whole exchange
    client.send(h11.Request(method="GET", target="/x", headers=[("Host", "example.test")]))
    client.send(h11.EndOfMessage())
    client.receive_data(raw)
    interim_event, final, body = client.next_event(), client.next_event(), client.next_event()
    assert isinstance(interim_event, h11.InformationalResponse) and interim_event.status_code == 103
    assert isinstance(final, h11.Response) and final.status_code == 200
    assert isinstance(body, h11.Data) and body.data == b"ok"


def test_bare_lf_before_the_status_line_is_502(tmp_path: Path) -> None:
    with RawUpstream(b"\nHTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok") as up, \
            gateway_for(tmp_path, up.port) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", "/x")
        assert conn.getresponse().status == 502


@pytest.mark.parametrize("status", [600, 999, 700])
def test_status_codes_above_599_are_502(tmp_path: Path, status: int) -> None:
    answer = b"HTTP/1.1 %d Odd\r\nContent-Length: 2\r\n\r\nok" % status
    with RawUpstream(answer) as up, gateway_for(tmp_path, up.port) as gw:
        conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
        conn.request("GET", "/x")
        response = conn.getresponse()
        assert response.status == 502
        response.read()
    assert "invalid status code" in gw.logs()


@pytest.mark.parametrize("status", [204, 304])
def test_204_and_304_are_relayed_without_content_length(tmp_path: Path, status: int) -> None:
    # RFC 9110 section 8.6: no Content-Length in a 204; a 304's would describe a body that is
    # not there, and clients that trust it wait for bytes that never come.
    answer = b"HTTP/1.1 %d Whatever\r\nContent-Length: 12\r\nETag: \"v1\"\r\n\r\n" % status
    with RawUpstream(answer, close_after=False) as up, gateway_for(tmp_path, up.port) as gw:
        keep_alive = GET.replace(b"Connection: close\r\n", b"")
        raw = raw_exchange(gw.port, keep_alive + GET, timeout=3)
        heads = [h for h in raw.split(b"\r\n\r\n") if h.startswith(b"HTTP/1.1")]
        assert len(heads) == 2, raw  # both answered on one connection: the framing held
        for head in heads:
            assert head.startswith(b"HTTP/1.1 %d " % status)
            assert b"content-length" not in head.lower()
            assert b'ETag: "v1"' in head


def test_long_reason_phrase_is_copied_whole(tmp_path: Path) -> None:
    reason = b"R" * 20000  # larger than the head writer's first buffer
    answer = b"HTTP/1.1 200 " + reason + b"\r\nContent-Length: 2\r\n\r\nok"
    with RawUpstream(answer) as up, gateway_for(tmp_path, up.port) as gw:
        pids = gw.worker_pids()
        for _ in range(20):
            raw = raw_exchange(gw.port, GET, timeout=5)
            assert raw.startswith(b"HTTP/1.1 200 " + reason + b"\r\n"), raw[:100]
            assert raw.split(b"\r\n\r\n", 1)[1].startswith(b"ok")
        assert gw.worker_pids() == pids


def test_response_cut_mid_body_is_logged(tmp_path: Path) -> None:
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n0123456789"
    with RawUpstream(answer) as up, gateway_for(tmp_path, up.port) as gw:
        raw = raw_exchange(gw.port, GET, timeout=5)
        assert raw.startswith(b"HTTP/1.1 200 OK")
        assert raw.endswith(b"<EOF>") or raw.endswith(b"<RST>")
        assert b"0123456789" in raw
        gw.stop()
    assert "upstream prematurely closed connection while reading response body" in gw.logs()
