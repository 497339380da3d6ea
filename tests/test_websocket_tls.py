"""wss:// on the TLS listener: a real WebSocket client (the `websockets` library, over TLS) through
a real gateway (2 workers) to a real WebSocket server, for routes with `enable_websocket`."""
from __future__ import annotations

import asyncio
import socket
import ssl
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed, InvalidStatus
from websockets.sync.client import ClientConnection, connect

from tests.support.certs import CertAuthority
from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import free_port

NAME = "ws.example.com"


class EchoServer:
    """A WebSocket server echoing every message, in a background event loop."""

    def __init__(self, ssl_context: ssl.SSLContext | None = None) -> None:
        self.ssl_context = ssl_context
        self.port = 0
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    async def echo(self, ws: ServerConnection) -> None:
        try:
            async for message in ws:
                await ws.send(message)
        except ConnectionClosed:
            pass

    def __enter__(self) -> EchoServer:
        self.thread.start()

        async def start() -> Any:
            return await serve(self.echo, "127.0.0.1", 0, max_size=None, ssl=self.ssl_context)
        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(10)
        self.port = next(iter(self.server.sockets)).getsockname()[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            self.server.close()
            await self.server.wait_closed()
        asyncio.run_coroutine_threadsafe(stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[int, CertAuthority]]:
    ca = CertAuthority(tmp_path_factory.mktemp("pki"))
    cert = ca.issue("ws", NAME, [NAME])
    upstream_cert = ca.issue("ws-upstream", "ws.internal", ["ws.internal"])
    upstream_tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    upstream_tls.load_cert_chain(upstream_cert.cert_path, upstream_cert.key_path)
    with EchoServer() as upstream, EchoServer(upstream_tls) as tls_upstream:
        tls_port = free_port()
        config = base_config(free_port(), tls_listen=[f"127.0.0.1:{tls_port}"])
        config["upstreams"] = [
            {"id": "ws", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]},
            {"id": "wss", "scheme": "https", "tls": {"ca": str(ca.path)},
             "nodes": [{"host": "127.0.0.1", "port": tls_upstream.port}],
             "pass_host": "rewrite", "upstream_host": "ws.internal"},
        ]
        config["routes"] = [
            {"id": "ws", "uri": "/ws", "upstream_id": "ws", "enable_websocket": True},
            {"id": "idle", "uri": "/idle", "upstream_id": "ws", "enable_websocket": True,
             "timeout": {"connect": 2, "send": 1, "read": 1}},
            {"id": "nows", "uri": "/nows", "upstream_id": "ws"},
            {"id": "tls-upstream", "uri": "/tls-upstream", "upstream_id": "wss",
             "enable_websocket": True},
        ]
        config["ssls"] = [{"id": "ws", "snis": [NAME], "cert": str(cert.cert_path),
                           "key": str(cert.key_path)}]
        with GatewayProcess(tmp_path_factory.mktemp("wss"), config, workers=2):
            yield tls_port, ca


def wss(setup: tuple[int, CertAuthority], path: str) -> ClientConnection:
    port, ca = setup
    ctx = ssl.create_default_context(cafile=str(ca.path))
    return connect(f"wss://{NAME}:{port}{path}", ssl=ctx, server_hostname=NAME,
                   sock=_socket(port), max_size=None, open_timeout=10, ping_interval=None)


def _socket(port: int) -> socket.socket:
    return socket.create_connection(("127.0.0.1", port), timeout=10)


def test_wss_messages_round_trip(setup: tuple[int, CertAuthority]) -> None:
    with wss(setup, "/ws") as ws:
        for text in ("hello", "wörld", "x" * 70000):
            ws.send(text)
            assert ws.recv(timeout=10) == text
        ws.send(b"\x00\x01binary")
        assert ws.recv(timeout=10) == b"\x00\x01binary"


def test_wss_large_messages_keep_flowing_with_back_pressure(setup: tuple[int, CertAuthority]) -> None:
    # several MB each way: more than the socket and TLS buffers hold, so both directions pause
    # and resume on the way
    payload = bytes(range(256)) * 16384  # 4 MiB
    with wss(setup, "/ws") as ws:
        for _ in range(3):
            ws.send(payload)
            assert ws.recv(timeout=30) == payload


def test_wss_to_a_tls_upstream(setup: tuple[int, CertAuthority]) -> None:
    payload = b"y" * 300000
    with wss(setup, "/tls-upstream") as ws:
        for message in ("over", "tls", payload):
            ws.send(message)
            assert ws.recv(timeout=10) == message


def test_wss_idle_tunnel_is_closed_after_the_read_timeout(setup: tuple[int, CertAuthority]) -> None:
    with wss(setup, "/idle") as ws:
        ws.send("ping")
        assert ws.recv(timeout=5) == "ping"
        started = time.monotonic()
        with pytest.raises(ConnectionClosed):
            ws.recv(timeout=10)
        assert time.monotonic() - started < 6


def test_wss_needs_enable_websocket(setup: tuple[int, CertAuthority]) -> None:
    with pytest.raises(InvalidStatus):
        wss(setup, "/nows").close()

