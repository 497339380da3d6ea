"""An HTTPS upstream for the tests: asyncio + the stdlib's ssl in a background thread, answering
every GET (keep-alive) with JSON saying what its TLS side saw: the SNI, whether the session was
resumed, the client certificate's subject, and which TCP connection carried the request."""
from __future__ import annotations

import asyncio
import json
import ssl
import threading
from pathlib import Path
from typing import Any


class TlsUpstream:
    def __init__(self, cert: Path, key: Path, client_ca: Path | None = None) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self.context.load_cert_chain(cert, key)
        if client_ca is not None:
            self.context.load_verify_locations(cafile=str(client_ca))
            self.context.verify_mode = ssl.CERT_REQUIRED
        self.context.sni_callback = self._sni
        self.port = 0
        self.connections = 0
        self.handshakes_failed = 0
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
        self._server: asyncio.AbstractServer | None = None

    def _sni(self, obj: ssl.SSLObject, name: str | None, ctx: ssl.SSLContext) -> None:
        obj.sni = name  # type: ignore[attr-defined]

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        connection = self.connections
        obj = writer.get_extra_info("ssl_object")
        peer = obj.getpeercert() if obj is not None else None
        subject = dict(x[0] for x in peer["subject"]) if peer else {}
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                lines = head.decode("latin-1").split("\r\n")
                headers = {k.lower(): v.strip() for k, _, v in
                           (line.partition(":") for line in lines[1:] if line)}
                body = json.dumps({
                    "target": lines[0].split(" ")[1], "host": headers.get("host"),
                    "sni": getattr(obj, "sni", None), "reused": obj.session_reused,
                    "client_cn": subject.get("commonName"), "connection": connection,
                }).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
                             b"Content-Length: %d\r\n\r\n%s" % (len(body), body))
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    def __enter__(self) -> TlsUpstream:
        self._thread.start()

        async def start() -> asyncio.AbstractServer:
            return await asyncio.start_server(self._handle, "127.0.0.1", 0, ssl=self.context)
        self._server = asyncio.run_coroutine_threadsafe(start(), self._loop).result(10)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    def __exit__(self, *exc: Any) -> None:
        async def stop() -> None:
            assert self._server is not None
            self._server.close()
        asyncio.run_coroutine_threadsafe(stop(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
