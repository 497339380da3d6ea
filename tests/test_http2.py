"""HTTP/2 downstream (README "HTTP/2") through a real gateway process: curl and httpx as
clients, over TLS (ALPN h2) and h2c (prior knowledge), requests proxied to a real HTTP/1.1
upstream with the routes' plugins; flow control that follows the upstream; the CVE-2023-44487
and CVE-2024-27316 protections and GOAWAY on drain, driven with hand-built frames."""
from __future__ import annotations

import asyncio
import hashlib
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import h2.events
import httpx
import pytest

from tests.support.certs import CertAuthority, Issued
from tests.support.gateway import GatewayProcess, base_config
from tests.support.h2_raw import (
    CONTINUATION,
    DATA,
    END_STREAM,
    ENHANCE_YOUR_CALM,
    GOAWAY,
    HEADERS,
    INTERNAL_ERROR,
    NO_ERROR,
    PREFACE,
    SETTINGS,
    RawH2,
    frame,
    goaway_of,
    read_frames,
)
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import Upstream, free_port

SHOWN = {"X-Scheme": "$scheme", "X-Protocol": "$server_protocol", "X-Client-Port": "$remote_port"}
MAX_STREAMS = 64
MiB = 1 << 20


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[CertAuthority, Issued]:
    ca = CertAuthority(tmp_path_factory.mktemp("pki"))
    return ca, ca.issue("api", "api.example.com", ["api.example.com"])


@pytest.fixture(scope="module")
def upstream() -> Iterator[Upstream]:
    with Upstream() as up:
        yield up


@pytest.fixture(scope="module")
def stalled() -> Iterator[RawUpstream]:
    """An upstream that accepts and never reads: the request body's far end is full."""
    with RawUpstream(stall=True) as up:
        yield up


def h2_config(port: int, tls_port: int, upstream_port: int, cert: Issued, log: Path,
              stalled_port: int | None = None) -> dict[str, Any]:
    config = base_config(port, upstream_port, tls_listen=[f"127.0.0.1:{tls_port}"],
                         access_log=str(log),
                         http2={"max_concurrent_streams": MAX_STREAMS})
    config["routes"][0]["plugins"] = {"proxy-rewrite": {"headers": {"set": SHOWN}}}
    config["routes"] += [
        {"id": "key", "uri": "/key/*", "upstream_id": "up", "plugins": {"key-auth": {}}},
        {"id": "count", "uri": "/count/*", "upstream_id": "up",
         "plugins": {"limit-count": {"count": 2, "time_window": 3600, "key": "remote_addr"}}},
    ]
    if stalled_port is not None:
        config["routes"].append({"id": "stall", "uri": "/stall/*", "upstream": {
            "nodes": [{"host": "127.0.0.1", "port": stalled_port}]}})
    config["consumers"] = [{"username": "alice", "plugins": {"key-auth": {"key": "alice-key"}}}]
    config["ssls"] = [{"id": "api", "snis": ["api.example.com"], "cert": str(cert.cert_path),
                       "key": str(cert.key_path)}]
    return config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, upstream: Upstream, stalled: RawUpstream,
            cert: tuple[CertAuthority, Issued]) -> Iterator[tuple[GatewayProcess, int, int]]:
    d = tmp_path_factory.mktemp("h2")
    port, tls_port = free_port(), free_port()
    gw = GatewayProcess(d, h2_config(port, tls_port, upstream.port, cert[1], d / "access.log",
                                     stalled.port), workers=1)
    gw.start()
    try:
        yield gw, port, tls_port
    finally:
        gw.stop()
    gw.assert_no_lost_exceptions()


def curl(*args: str) -> subprocess.CompletedProcess[str]:
    exe = shutil.which("curl")
    if exe is None:
        pytest.skip("curl not installed")
    return subprocess.run([exe, "-sS", "-v", *args], capture_output=True, timeout=20, text=True)


def upstream_saw(body: str) -> dict[str, str]:
    return dict(json.loads(body)["headers"])


# -- real clients ---------------------------------------------------------------------------------

def test_curl_h2c_prior_knowledge(gateway: tuple[GatewayProcess, int, int]) -> None:
    gw, port, _ = gateway
    proc = curl("--http2-prior-knowledge", f"http://127.0.0.1:{port}/echo?a=1")
    assert proc.returncode == 0, proc.stderr
    assert "< HTTP/2 200" in proc.stderr
    seen = upstream_saw(proc.stdout)
    assert seen["x-protocol"] == "HTTP/2.0"
    assert seen["x-scheme"] == "http"
    assert seen["via"] == "2 gateway"
    assert seen["host"] == f"127.0.0.1:{port}"  # :authority became Host
    deadline = time.monotonic() + 5
    log = gw.dir / "access.log"
    while time.monotonic() < deadline and (not log.exists() or "HTTP/2.0" not in log.read_text()):
        time.sleep(0.2)
    assert '"GET /echo HTTP/2.0" 200' in log.read_text()


def test_curl_h2c_upgrade(gateway: tuple[GatewayProcess, int, int]) -> None:
    """``Upgrade: h2c``: the request that asks is answered as stream 1 over HTTP/2; one with a
    body stays on HTTP/1.1 (the server may ignore the upgrade)."""
    _, port, _ = gateway
    proc = curl("--http2", f"http://127.0.0.1:{port}/echo?up=1")
    assert proc.returncode == 0, proc.stderr
    assert "< HTTP/1.1 101 Switching Protocols" in proc.stderr and "< HTTP/2 200" in proc.stderr
    seen = upstream_saw(proc.stdout)
    assert seen["x-protocol"] == "HTTP/2.0"
    assert "upgrade" not in seen and "http2-settings" not in seen
    proc = curl("--http2", "-d", "x=1", f"http://127.0.0.1:{port}/echo?up=2")
    assert proc.returncode == 0, proc.stderr
    assert "< HTTP/1.1 200" in proc.stderr
    assert upstream_saw(proc.stdout)["x-protocol"] == "HTTP/1.1"


def test_curl_h2_over_tls(gateway: tuple[GatewayProcess, int, int],
                          cert: tuple[CertAuthority, Issued]) -> None:
    _, _, tls_port = gateway
    proc = curl("--http2", "--resolve", f"api.example.com:{tls_port}:127.0.0.1",
                "--cacert", str(cert[0].path), "-d", "a=b",
                f"https://api.example.com:{tls_port}/echo")
    assert proc.returncode == 0, proc.stderr
    assert "ALPN: server accepted h2" in proc.stderr
    assert "< HTTP/2 200" in proc.stderr
    received = json.loads(proc.stdout)
    assert received["method"] == "POST" and received["body_length"] == 3
    seen = dict(received["headers"])
    assert seen["x-scheme"] == "https" and seen["x-forwarded-proto"] == "https"
    assert seen["x-protocol"] == "HTTP/2.0"


def test_httpx_streams_share_one_connection(gateway: tuple[GatewayProcess, int, int],
                                            cert: tuple[CertAuthority, Issued]) -> None:
    _, _, tls_port = gateway

    async def run() -> list[httpx.Response]:
        ctx = ssl.create_default_context(cafile=str(cert[0].path))
        async with httpx.AsyncClient(http2=True, verify=ctx) as client:
            url = f"https://api.example.com:{tls_port}/echo"
            ext = {"sni_hostname": "api.example.com"}
            return await asyncio.gather(*(
                client.get(url.replace("api.example.com", "127.0.0.1") + f"?n={i}",
                           headers={"Host": "api.example.com"}, extensions=ext)
                for i in range(200)))

    responses = asyncio.run(run())
    assert {r.status_code for r in responses} == {200}
    assert {r.http_version for r in responses} == {"HTTP/2"}
    assert [json.loads(r.text)["target"] for r in responses] == [f"/echo?n={i}" for i in range(200)]
    # one client connection carried them all (more than max_concurrent_streams: queued)
    assert len({upstream_saw(r.text)["x-client-port"] for r in responses}) == 1


def test_large_bodies_both_ways(gateway: tuple[GatewayProcess, int, int]) -> None:
    _, port, _ = gateway
    body = os.urandom(8 * MiB)
    with httpx.Client(http1=False, http2=True, timeout=30) as client:
        r = client.post(f"http://127.0.0.1:{port}/echo?read_delay=0.001", content=body)
        assert r.status_code == 200 and r.http_version == "HTTP/2"
        received = r.json()
        assert received["body_length"] == len(body)
        assert received["body_sha256"] == hashlib.sha256(body).hexdigest()
        # a body of unknown length (no content-length) reaches the upstream chunked
        r = client.post(f"http://127.0.0.1:{port}/echo", content=iter([body[:MiB], body[MiB:2 * MiB]]))
        assert r.json()["body_framing"] == "chunked" and r.json()["body_length"] == 2 * MiB
        r = client.get(f"http://127.0.0.1:{port}/bytes/{20 * MiB}")
        assert r.status_code == 200 and len(r.content) == 20 * MiB
        r = client.get(f"http://127.0.0.1:{port}/chunked/{3 * MiB}")  # unchunked for HTTP/2
        assert len(r.content) == 3 * MiB and r.content == b"x" * (3 * MiB)


def test_plugins_apply_as_on_http1(gateway: tuple[GatewayProcess, int, int]) -> None:
    _, port, _ = gateway
    with httpx.Client(http1=False, http2=True) as client:
        base = f"http://127.0.0.1:{port}"
        assert client.get(f"{base}/key/a").status_code == 401
        assert client.get(f"{base}/key/a", headers={"apikey": "wrong"}).status_code == 401
        assert client.get(f"{base}/key/a", headers={"apikey": "alice-key"}).status_code == 200
        assert [client.get(f"{base}/count/a").status_code for _ in range(3)] == [200, 200, 503]


def test_settings_and_header_list_limit(gateway: tuple[GatewayProcess, int, int]) -> None:
    _, port, _ = gateway
    c = RawH2(port)
    try:
        c.pump(0.3)
        assert c.conn.remote_settings.max_concurrent_streams == MAX_STREAMS
        stream = c.request("GET", "/echo", headers=[("x-big", "v" * 40000)])
        events = c.pump(1.0)
        status = [dict(e.headers).get(b":status") for e in events
                  if isinstance(e, h2.events.ResponseReceived) and e.stream_id == stream]
        assert status == [b"431"]
    finally:
        c.close()


def test_request_head_is_checked_as_on_http1(gateway: tuple[GatewayProcess, int, int]) -> None:
    """A stream's header list becomes the Exchange's head under the HTTP/1.1 parser's checks:
    more fields than max_headers (431), an authority that is no valid Host (400). A valid one
    reaches the upstream with its fields, Host from :authority and the cookie crumbs joined
    (RFC 9113 8.2.3)."""
    _, port, _ = gateway
    c = RawH2(port)
    try:
        many = c.request("GET", "/echo", headers=[(f"x-f{i}", "1") for i in range(120)])
        bad_host = c.conn.get_next_available_stream_id()
        c.conn.send_headers(bad_host, [(":method", "GET"), (":path", "/echo"), (":scheme", "http"),
                                       (":authority", "exa[mple")], end_stream=True)
        c.flush()
        ok = c.request("GET", "/echo?q=1", headers=[("cookie", "a=1"), ("x-a", "v"),
                                                    ("cookie", "b=2")])
        events = c.pump(2.0)
        status = {e.stream_id: dict(e.headers)[b":status"] for e in events
                  if isinstance(e, h2.events.ResponseReceived)}
        assert status == {many: b"431", bad_host: b"400", ok: b"200"}
        body = b"".join(e.data for e in events
                        if isinstance(e, h2.events.DataReceived) and e.stream_id == ok)
        seen = upstream_saw(body.decode())
        assert seen["host"] == "gateway.test"
        assert seen["cookie"] == "a=1; b=2"
        assert seen["x-a"] == "v"
        assert json.loads(body)["target"] == "/echo?q=1"
    finally:
        c.close()


# -- flow control follows the upstream ----------------------------------------------------------

def test_response_waits_for_the_client_window(gateway: tuple[GatewayProcess, int, int],
                                              upstream: Upstream) -> None:
    """A client that leaves its stream window closed holds the upstream back: the gateway
    does not read the whole response into memory."""
    _, port, _ = gateway
    size = 96 * MiB
    before = upstream.bytes_sent
    c = RawH2(port)
    try:
        c.request("GET", f"/bytes/{size}")
        c.pump(2.0)
        held = upstream.bytes_sent - before
        assert 0 < held < 24 * MiB, held
    finally:
        c.close()


def test_request_body_waits_for_the_upstream(gateway: tuple[GatewayProcess, int, int]) -> None:
    """The client's stream window reopens only as the upstream takes the body: an upstream
    that reads nothing stops the client once the sockets between are full."""
    _, port, _ = gateway
    c = RawH2(port)
    sent = 0
    try:
        stream = c.request("POST", "/stall/upload", end_stream=False)
        c.pump(0.2)
        deadline = time.monotonic() + 2.0
        chunk = b"y" * 16384
        while time.monotonic() < deadline:
            window = min(c.conn.local_flow_control_window(stream), len(chunk),
                         c.conn.max_outbound_frame_size)
            if window <= 0:
                c.pump(0.05, first=True)  # a WINDOW_UPDATE, if the gateway sends one
                continue
            c.conn.send_data(stream, chunk[:window])
            c.flush()
            sent += window
            if sent > 64 * MiB:
                break
        assert 0 < sent < 24 * MiB, sent
    finally:
        c.close()


# -- attacks -----------------------------------------------------------------------------------

def test_rapid_reset_ends_the_connection(gateway: tuple[GatewayProcess, int, int]) -> None:
    """CVE-2023-44487: streams opened and reset at once, over and over. Past nghttp2's reset
    budget (1000 at once, 33/s) the gateway ends the connection with GOAWAY."""
    _, port, _ = gateway
    c = RawH2(port)
    try:
        try:
            for _ in range(1200):
                stream = c.request("GET", "/echo")
                c.conn.reset_stream(stream)
                c.flush()
        except (BrokenPipeError, ConnectionResetError):
            pass  # cut off while still sending: what the test is after
        frames, closed = read_frames(c.sock, 3.0)
    finally:
        c.close()
    goaway = goaway_of(frames)
    assert goaway is not None and goaway[1] == INTERNAL_ERROR, frames[-3:]
    assert closed


def test_continuation_flood_ends_the_connection(gateway: tuple[GatewayProcess, int, int]) -> None:
    """CVE-2024-27316: one header block spread over endless CONTINUATION frames is cut off
    after a few, with GOAWAY ENHANCE_YOUR_CALM, instead of buffering them."""
    _, port, _ = gateway
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        # indexed :method GET, :scheme http, :path /; then literal fields without indexing
        block = bytes([0x82, 0x86, 0x84])
        literal = bytes([0x00, 0x03]) + b"x-a" + bytes([0x7F, 0x81, 0x07]) + b"v" * 1000
        out = PREFACE + frame(SETTINGS, 0, 0, b"") + frame(HEADERS, END_STREAM, 1, block)
        out += b"".join(frame(CONTINUATION, 0, 1, literal) for _ in range(200))
        try:
            sock.sendall(out)
        except (BrokenPipeError, ConnectionResetError):
            pass
        frames, closed = read_frames(sock, 3.0)
    goaway = goaway_of(frames)
    assert goaway is not None and goaway[1] == ENHANCE_YOUR_CALM, frames
    assert closed
    assert not any(kind == HEADERS for kind, _f, _s, _p in frames)  # no request was run


@pytest.mark.parametrize("how", ["stop", "reload"])
def test_goaway_on_drain_lets_streams_finish(tmp_path: Path, upstream: Upstream,
                                             cert: tuple[CertAuthority, Issued], how: str) -> None:
    """A draining worker (stop --graceful, or retired by a reload that changes the listen
    addresses) says GOAWAY NO_ERROR at once, finishes the streams it has, then closes."""
    port = free_port()
    config = h2_config(port, free_port(), upstream.port, cert[1], tmp_path / "access.log")
    gw = GatewayProcess(tmp_path, config, workers=1)
    gw.start()
    c = RawH2(port)
    try:
        # long enough to be in flight when the (re)started worker takes over
        stream = c.request("GET", "/slow/1.5" if how == "stop" else "/slow/5")
        time.sleep(0.3)
        assert gw.proc is not None
        if how == "stop":
            gw.proc.send_signal(signal.SIGTERM)
        else:
            config["gateway"]["listen"].append(f"127.0.0.1:{free_port()}")
            gw.write_config(config)  # new listen address: the worker is replaced
        # raw frames: the h2 library stops reading at a GOAWAY, which is the point here
        frames, closed = read_frames(c.sock, 10.0)
        kinds = [(kind, s_id) for kind, _flags, s_id, _p in frames if kind in (GOAWAY, HEADERS, DATA)]
        assert goaway_of(frames) == (stream, NO_ERROR), frames
        assert (HEADERS, stream) in kinds and kinds.index((GOAWAY, 0)) < kinds.index((HEADERS, stream))
        last = [f for f in frames if f[0] == DATA and f[2] == stream][-1]
        assert last[1] & END_STREAM  # the response finished after the GOAWAY
        assert closed
    finally:
        c.close()
        gw.stop()


def raw_answer(head: bytes) -> bytes:
    """Responses with fields HTTP/2 must not carry, names in mixed case and no Date."""
    target = head.split(b" ", 2)[1]
    if target.startswith(b"/chunked"):
        return (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nX-Kind: Chunked\r\n\r\n"
                b"2\r\nok\r\n0\r\n\r\n")
    if target.startswith(b"/nocontent"):
        return b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\nX-Kind: None\r\n\r\n"
    return (b"HTTP/1.1 200 OK\r\nX-Mixed-Case: v\r\nKeep-Alive: timeout=5\r\n"
            b"Proxy-Connection: keep-alive\r\nConnection: X-Hop\r\nX-Hop: 1\r\n"
            b"Content-Length: 2\r\n\r\n" + (b"" if head.startswith(b"HEAD ") else b"ok"))


def test_response_fields_become_http2_fields(tmp_path: Path) -> None:
    """RFC 9113 8.2: names lowercased, connection-specific fields (and those Connection names)
    dropped, framing left to HTTP/2; Date added as on HTTP/1.1."""
    forbidden = {"keep-alive", "proxy-connection", "connection", "x-hop", "transfer-encoding"}
    with RawUpstream(raw_answer) as up:
        port = free_port()
        gw = GatewayProcess(tmp_path, base_config(port, up.port), workers=1)
        gw.start()
        try:
            with httpx.Client(http1=False, http2=True, timeout=10) as client:
                base = f"http://127.0.0.1:{port}"
                r = client.get(f"{base}/fields")
                assert r.http_version == "HTTP/2" and r.status_code == 200 and r.content == b"ok"
                assert r.headers["x-mixed-case"] == "v" and r.headers["content-length"] == "2"
                assert "date" in r.headers
                assert [k for k, _ in r.headers.raw if k != k.lower()] == []  # as sent
                assert not forbidden & set(r.headers.keys()), r.headers
                r = client.head(f"{base}/fields")
                assert r.status_code == 200 and r.content == b""
                assert r.headers["content-length"] == "2"
                r = client.get(f"{base}/chunked")
                assert r.content == b"ok" and r.headers["x-kind"] == "Chunked"
                assert not forbidden & set(r.headers.keys()), r.headers
                r = client.get(f"{base}/nocontent")
                assert r.status_code == 204 and r.content == b""
                assert "content-length" not in r.headers and r.headers["x-kind"] == "None"
        finally:
            gw.stop()
        gw.assert_no_lost_exceptions()
