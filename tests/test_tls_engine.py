"""The rustls engine (gateway._native.TlsEngine) in memory against Python's ssl client: every
key the config loader accepts is served (RSA and EC, PKCS#8, PKCS#1 and SEC1 PEM, Ed25519), and
what rustls cannot serve is a config error from the master's check, not a worker failure."""
from __future__ import annotations

import datetime
import ssl

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.x509.oid import NameOID

from gateway._native import TlsConnection, TlsEngine
from gateway.config.schema import Ssl
from gateway.server.tls import ALPN_PROTOCOLS, check_ssl_contexts

PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | ed25519.Ed25519PrivateKey
NAME = "keys.example.com"


def self_signed(key: PrivateKey) -> str:
    now = datetime.datetime.now(datetime.UTC)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, NAME)])
    algorithm = None if isinstance(key, ed25519.Ed25519PrivateKey) else hashes.SHA256()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(NAME)]), critical=False)
            .sign(key, algorithm))
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def key_pem(key: PrivateKey, form: serialization.PrivateFormat) -> str:
    return key.private_bytes(serialization.Encoding.PEM, form, serialization.NoEncryption()).decode()


KEYS = {
    "rsa-2048-pkcs1": (lambda: rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.TraditionalOpenSSL),
    "rsa-2048-pkcs8": (lambda: rsa.generate_private_key(65537, 2048), serialization.PrivateFormat.PKCS8),
    "p256-sec1": (lambda: ec.generate_private_key(ec.SECP256R1()), serialization.PrivateFormat.TraditionalOpenSSL),
    "p384-pkcs8": (lambda: ec.generate_private_key(ec.SECP384R1()), serialization.PrivateFormat.PKCS8),
    "p521-sec1": (lambda: ec.generate_private_key(ec.SECP521R1()), serialization.PrivateFormat.TraditionalOpenSSL),
    "ed25519-pkcs8": (lambda: ed25519.Ed25519PrivateKey.generate(), serialization.PrivateFormat.PKCS8),
}


class Client:
    """Python's ssl client, through memory BIOs, against a TlsConnection whose records land in
    `received`."""

    def __init__(self, conn: TlsConnection, cert_pem: str, received: list[bytes]) -> None:
        ctx = ssl.create_default_context(cadata=cert_pem)
        self.conn, self.received = conn, received
        self.incoming, self.outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        self.tls = ctx.wrap_bio(self.incoming, self.outgoing, server_hostname=NAME)
        for _ in range(10):
            try:
                self.tls.do_handshake()
                conn.receive(self.outgoing.read())  # the client's Finished
                self.take()
                return
            except ssl.SSLWantReadError:
                pass
            conn.receive(self.outgoing.read())
            self.take()
        raise AssertionError("the handshake did not finish")

    def take(self) -> None:
        while self.received:
            self.incoming.write(self.received.pop(0))


@pytest.mark.parametrize("kind", sorted(KEYS))
def test_every_key_form_is_served(kind: str) -> None:
    make, form = KEYS[kind]
    key = make()
    cert = self_signed(key)
    entry = Ssl(id=kind, snis=[NAME], cert=cert, key=key_pem(key, form))
    assert check_ssl_contexts([entry]) == []
    engine = TlsEngine(ALPN_PROTOCOLS)
    engine.update([(kind, [NAME], cert, entry.key, None)])
    received: list[bytes] = []
    conn = engine.connection(received.append)
    client = Client(conn, cert, received)
    assert not conn.handshaking and conn.server_name == NAME and conn.ssl_id == kind
    assert conn.protocol == client.tls.version()
    cipher = client.tls.cipher()
    assert cipher is not None and conn.cipher == cipher[0]  # OpenSSL's name, as nginx's
    assert conn.alpn_protocol is None  # this client offered none
    client.tls.write(b"GET / HTTP/1.1\r\n\r\n")
    assert conn.receive(client.outgoing.read()) == b"GET / HTTP/1.1\r\n\r\n"
    conn.send(b"HTTP/1.1 204 No Content\r\n\r\n")
    client.take()
    while True:  # TLS 1.3 tickets come first
        try:
            assert client.tls.read(1024) == b"HTTP/1.1 204 No Content\r\n\r\n"
            break
        except ssl.SSLWantReadError:
            raise AssertionError("no response") from None


def test_keys_rustls_cannot_serve_are_config_errors() -> None:
    key = rsa.generate_private_key(65537, 1024)  # cryptography loads it; aws-lc-rs signs >= 2048
    entry = Ssl(id="rsa1024", snis=[NAME], cert=self_signed(key),
                key=key_pem(key, serialization.PrivateFormat.PKCS8))
    [(index, reason)] = check_ssl_contexts([entry])
    assert index == 0 and "unsupported private key" in reason
    engine = TlsEngine(ALPN_PROTOCOLS)
    with pytest.raises(ValueError, match=r"ssls\[0\]: key: unsupported private key"):
        engine.update([("rsa1024", [NAME], entry.cert, entry.key, None)])
