"""One active health probe (the master's) against real sockets: refused, silent, HTTP statuses
sorted by the check's lists, TCP checks, and HTTPS with and without certificate verification
against a TLS server with a self-signed certificate."""
from __future__ import annotations

import asyncio
import datetime
import ssl
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from gateway.config import ActiveCheck
from gateway.upstream.health_checker import probe, probe_request
from tests.support.upstream import free_port

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


def check(**fields: Any) -> ActiveCheck:
    return msgspec.convert({"timeout": 0.5, **fields}, ActiveCheck)


def answering(status_line: bytes, seen: list[bytes] | None = None) -> Handler:
    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        if seen is not None:
            seen.append(head)
        writer.write(status_line + b"\r\nContent-Length: 0\r\n\r\n")
        await writer.drain()
        writer.close()
    return handle


async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    await asyncio.sleep(5)


def run(handler: Handler | None, active: ActiveCheck,
        tls: ssl.SSLContext | None = None) -> tuple[str | None, int]:
    async def main() -> tuple[str | None, int]:
        if handler is None:
            return await probe(active, "127.0.0.1", free_port())  # nothing listens there
        server = await asyncio.start_server(handler, "127.0.0.1", 0, ssl=tls)
        port = server.sockets[0].getsockname()[1]
        try:
            return await probe(active, "127.0.0.1", port)
        finally:
            server.close()
    return asyncio.run(main())


def test_refused_is_a_tcp_failure_and_silence_a_timeout() -> None:
    assert run(None, check()) == ("tcp_failure", 0)
    assert run(silent, check()) == ("timeout", 0)
    assert run(None, check(type="tcp")) == ("tcp_failure", 0)


def test_a_tcp_check_only_connects() -> None:
    assert run(silent, check(type="tcp")) == ("success", 0)


def test_statuses_are_sorted_by_the_lists() -> None:
    assert run(answering(b"HTTP/1.1 200 OK"), check()) == ("success", 200)
    assert run(answering(b"HTTP/1.1 503 Busy"), check()) == ("http_status", 503)
    assert run(answering(b"HTTP/1.1 418 Teapot"), check()) == (None, 418), "in neither list"
    custom = check(healthy={"http_statuses": [418]}, unhealthy={"http_statuses": [200]})
    assert run(answering(b"HTTP/1.1 200 OK"), custom) == ("http_status", 200)
    assert run(answering(b"garbage"), check()) == ("tcp_failure", 0)


def test_the_request_has_the_path_host_and_headers() -> None:
    seen: list[bytes] = []
    active = check(http_path="/healthz?deep=1", host="shop.example",
                   req_headers=["X-Check: yes"])
    assert run(answering(b"HTTP/1.0 200 OK", seen), active) == ("success", 200)
    lines = seen[0].decode().split("\r\n")
    assert lines[0] == "GET /healthz?deep=1 HTTP/1.0"
    assert lines[1].startswith("Host: shop.example:")
    assert "X-Check: yes" in lines
    assert probe_request(check(), "::1", 80).split(b"\r\n")[1] == b"Host: [::1]"


def self_signed(tmp_path: Path) -> ssl.SSLContext:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "node.test")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("node.test")]), False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "cert.pem", tmp_path / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                           serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert_path, key_path)
    return context


def test_https_checks_verify_the_certificate_unless_told_not_to(tmp_path: Path) -> None:
    tls = self_signed(tmp_path)
    ok = answering(b"HTTP/1.1 200 OK")
    assert run(ok, check(type="https", host="node.test"), tls) == ("tcp_failure", 0)
    unverified = check(type="https", host="node.test", https_verify_certificate=False)
    assert run(ok, unverified, tls) == ("success", 200)
    # plain HTTP to a TLS port is no answer either
    assert run(ok, check(), tls)[0] in ("tcp_failure", "timeout")

