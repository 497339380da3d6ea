"""TLS termination through real gateway processes (2 workers), with real clients: Python's ssl
and curl. Every certificate is made by the test (tests/support/certs.py)."""
from __future__ import annotations

import http.client
import json
import os
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.certs import Issued, cert_fingerprint, fingerprint
from tests.support.gateway import GatewayProcess, base_config
from tests.support.pki import Pki
from tests.support.upstream import Upstream, free_port

#: How a refused handshake looks to the client: an alert, or the connection closed mid-handshake.
HANDSHAKE_REFUSED = (ssl.SSLError, ConnectionError)

#: Request variables the route hands to the upstream, so the test sees what the gateway saw.
SHOWN = {"X-Scheme": "$scheme", "X-SNI": "$ssl_server_name", "X-Client-DN": "$ssl_client_s_dn",
         "X-Client-Verify": "$ssl_client_verify", "X-TLS": "$ssl_protocol"}


class Certs(Pki):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory)
        self.exact = self.ca.issue("exact", "api.example.com", ["api.example.com"])
        self.wild = self.ca.issue("wild", "*.example.com", ["*.example.com"])
        self.secure = self.ca.issue("secure", "secure.example.org", ["secure.example.org"])
        self.alice = self.client_ca.issue("alice", "alice", client=True)
        self.mallory = self.rogue_ca.issue("mallory", "mallory", client=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("pki"))


def tls_config(pki: Certs, port: int, tls_port: int, upstream_port: int, **gateway: Any) -> dict[str, Any]:
    config = base_config(port, upstream_port, tls_listen=[f"127.0.0.1:{tls_port}"], **gateway)
    config["routes"][0]["plugins"] = {"proxy-rewrite": {"headers": {"set": SHOWN}}}
    config["ssls"] = [
        # paths, relative to the config file's directory for one of them
        {"id": "exact", "snis": ["api.example.com"], "cert": str(pki.exact.cert_path),
         "key": str(pki.exact.key_path)},
        # the PEM inline
        {"id": "wild", "snis": ["*.example.com"], "cert": pki.wild.cert_pem, "key": pki.wild.key_pem},
        {"id": "secure", "sni": "secure.example.org", "cert": str(pki.secure.cert_path),
         "key": str(pki.secure.key_path), "client": {"ca": str(pki.client_ca.path)}},
        # a second mTLS name, trusting another CA
        {"id": "vault", "snis": ["vault.example.org"], "cert": str(pki.secure.cert_path),
         "key": str(pki.secure.key_path), "client": {"ca": str(pki.rogue_ca.path)}},
    ]
    return config


@pytest.fixture(scope="module")
def gateway(tmp_path_factory: pytest.TempPathFactory, pki: Certs) -> Iterator[tuple[GatewayProcess, int, Upstream]]:
    tmp_path = tmp_path_factory.mktemp("tls")
    with Upstream("up") as upstream:
        tls_port = free_port()
        config = tls_config(pki, free_port(), tls_port, upstream.port, client_header_timeout=1.5)
        with GatewayProcess(tmp_path, config, workers=2) as gw:
            yield gw, tls_port, upstream


# -- clients ----------------------------------------------------------------------------------

def client_context(pki: Certs, client: Issued | None = None, **versions: ssl.TLSVersion) -> ssl.SSLContext:
    ctx = ssl.create_default_context(cafile=str(pki.ca.path))
    for name, version in versions.items():
        setattr(ctx, name, version)
    if client is not None:
        ctx.load_cert_chain(client.cert_path, client.key_path)
    return ctx


def connect(port: int, server_name: str | None, ctx: ssl.SSLContext) -> ssl.SSLSocket:
    """A TLS connection to 127.0.0.1:port sending `server_name` as SNI (None: no SNI)."""
    if server_name is None:
        ctx.check_hostname = False
    raw = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        return ctx.wrap_socket(raw, server_hostname=server_name)
    except BaseException:
        raw.close()
        raise


def request(sock: ssl.SSLSocket | socket.socket, host: str, path: str = "/echo") -> tuple[int, bytes]:
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: {host}\r\n\r\n".encode())
    response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
    response.begin()
    body = response.read()
    return response.status, body


def served_fingerprint(port: int, server_name: str | None, pki: Certs) -> str:
    ctx = client_context(pki)
    ctx.check_hostname = False
    with connect(port, server_name, ctx) as sock:
        der = sock.getpeercert(binary_form=True)
        assert der is not None
        return fingerprint(der)


def upstream_saw(body: bytes) -> dict[str, str]:
    return dict(json.loads(body)["headers"])


# -- certificate selection ----------------------------------------------------------------------

def test_exact_sni_beats_wildcard(gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, _ = gateway
    assert served_fingerprint(port, "api.example.com", pki) == cert_fingerprint(pki.exact)
    assert served_fingerprint(port, "shop.example.com", pki) == cert_fingerprint(pki.wild)
    assert served_fingerprint(port, "API.Example.COM", pki) == cert_fingerprint(pki.exact)


def test_without_sni_or_with_an_unknown_name_the_handshake_fails(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, _ = gateway
    # refused at once with an alert naming why (no hang; the timeout is 10 s)
    with pytest.raises(ssl.SSLError, match="ALERT_HANDSHAKE_FAILURE"):
        connect(port, None, client_context(pki))
    with pytest.raises(ssl.SSLError, match="UNRECOGNIZED_NAME"):
        connect(port, "nobody.test", client_context(pki))
    # the worker that failed those handshakes still serves
    with connect(port, "api.example.com", client_context(pki)) as sock:
        assert request(sock, "api.example.com")[0] == 200


@pytest.mark.filterwarnings("ignore:ssl.TLSVersion.TLSv1_1 is deprecated:DeprecationWarning")
def test_only_tls_1_2_and_1_3(gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, _ = gateway
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        ctx = client_context(pki, minimum_version=version, maximum_version=version)
        with connect(port, "api.example.com", ctx) as sock:
            assert sock.version() == version.name.replace("v1_", "v1.")
    old = client_context(pki, minimum_version=ssl.TLSVersion.TLSv1_1,
                         maximum_version=ssl.TLSVersion.TLSv1_1)
    old.set_ciphers("DEFAULT:@SECLEVEL=0")  # this client could speak TLS 1.1: the server refuses
    with pytest.raises(HANDSHAKE_REFUSED):
        connect(port, "api.example.com", old)


def test_openssl_s_client_tls_1_1_is_refused(gateway: tuple[GatewayProcess, int, Upstream]) -> None:
    _, port, _ = gateway
    openssl = shutil.which("openssl")
    if openssl is None:
        pytest.skip("openssl CLI not installed")
    proc = subprocess.run([openssl, "s_client", "-connect", f"127.0.0.1:{port}", "-servername",
                           "api.example.com", "-tls1_1", "-cipher", "DEFAULT:@SECLEVEL=0"],
                          input=b"", capture_output=True, timeout=20)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert b"no peer certificate available" in out and b"New, (NONE), Cipher is (NONE)" in out


def test_alpn_picks_h2_or_http_1_1(gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, _ = gateway
    ctx = client_context(pki)
    ctx.set_alpn_protocols(["h2", "http/1.1"])
    with connect(port, "api.example.com", ctx) as sock:
        assert sock.selected_alpn_protocol() == "h2"  # tests/test_http2.py speaks it
    ctx = client_context(pki)
    ctx.set_alpn_protocols(["http/1.1"])
    with connect(port, "api.example.com", ctx) as sock:
        assert sock.selected_alpn_protocol() == "http/1.1"
        assert request(sock, "api.example.com")[0] == 200


# -- what the upstream sees ---------------------------------------------------------------------

def test_curl_through_the_tls_listener(gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, _ = gateway
    curl = shutil.which("curl")
    if curl is None:
        pytest.skip("curl not installed")
    proc = subprocess.run(
        [curl, "-sS", "--http1.1", "-v", "--resolve", f"api.example.com:{port}:127.0.0.1",
         "--cacert", str(pki.ca.path), f"https://api.example.com:{port}/echo"],
        capture_output=True, timeout=20, text=True)
    assert proc.returncode == 0, proc.stderr
    assert "ALPN: server accepted http/1.1" in proc.stderr
    seen = upstream_saw(proc.stdout.encode())
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-scheme"] == "https"
    assert seen["x-sni"] == "api.example.com"
    assert seen["x-client-verify"] == "NONE"
    assert seen["x-tls"] in ("TLSv1.2", "TLSv1.3")
    assert seen.get("x-client-dn", "") == ""  # no client certificate: the variable is empty


def test_plain_listener_still_says_http(gateway: tuple[GatewayProcess, int, Upstream]) -> None:
    gw, _, _ = gateway
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10)
    conn.request("GET", "/echo", headers={"X-Forwarded-Proto": "https"})
    seen = upstream_saw(conn.getresponse().read())
    conn.close()
    assert seen["x-forwarded-proto"] == "http"  # the client's claim is replaced
    assert seen["x-scheme"] == "http"
    assert seen.get("x-sni", "") == "" and seen.get("x-client-verify", "") == ""


def test_client_cannot_claim_https_or_sni(gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, _ = gateway
    with connect(port, "shop.example.com", client_context(pki)) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: shop.example.com\r\n"
                     b"X-Forwarded-Proto: http\r\nX-SNI: forged\r\n\r\n")
        response = http.client.HTTPResponse(sock)  # type: ignore[arg-type]
        response.begin()
        seen = upstream_saw(response.read())
    assert seen["x-forwarded-proto"] == "https"
    assert seen["x-sni"] == "shop.example.com"


# -- client certificates (mTLS for one SNI) ------------------------------------------------------

def test_mtls_accepts_a_client_certificate_from_its_ca(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, _ = gateway
    with connect(port, "secure.example.org", client_context(pki, pki.alice)) as sock:
        status, body = request(sock, "secure.example.org")
    assert status == 200
    seen = upstream_saw(body)
    assert seen["x-client-verify"] == "SUCCESS"
    assert seen["x-client-dn"] == "CN=alice,O=Gateway Tests"
    assert seen["x-sni"] == "secure.example.org"


def test_mtls_without_a_certificate_is_refused(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, upstream = gateway
    mark = upstream.mark()
    with connect(port, "secure.example.org", client_context(pki)) as sock:
        status, body = request(sock, "secure.example.org")
    assert status == 400
    assert b"No required SSL certificate was sent" in body
    upstream.assert_nothing_forwarded(mark)


def test_mtls_refuses_a_certificate_from_another_ca(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    _, port, upstream = gateway
    mark = upstream.mark()
    with pytest.raises((ssl.SSLError, ConnectionError)):
        # TLS 1.3 sends the client certificate after the server's Finished: the refusal (an
        # alert) arrives at the client's first read
        with connect(port, "secure.example.org", client_context(pki, pki.mallory)) as sock:
            request(sock, "secure.example.org")
    upstream.assert_nothing_forwarded(mark)


def test_mtls_is_per_sni(gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    """The SNI without client.ca needs no client certificate on the same listener."""
    _, port, _ = gateway
    with connect(port, "api.example.com", client_context(pki)) as sock:
        status, body = request(sock, "api.example.com")
    assert status == 200 and upstream_saw(body)["x-client-verify"] == "NONE"


def test_an_mtls_host_through_another_names_handshake_is_misdirected(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    """A handshake for api.example.com (no client certificate) must not carry requests for
    secure.example.org (mTLS): 421, as nginx; the other way round is allowed."""
    _, port, upstream = gateway
    mark = upstream.mark()
    with connect(port, "api.example.com", client_context(pki)) as sock:
        status, body = request(sock, "secure.example.org")
    assert status == 421 and b"Misdirected Request" in body
    upstream.assert_nothing_forwarded(mark)
    with connect(port, "secure.example.org", client_context(pki, pki.alice)) as sock:
        assert request(sock, "api.example.com:443")[0] == 200
    with connect(port, "secure.example.org", client_context(pki, pki.alice)) as sock:
        # alice is not trusted for vault.example.org (another CA)
        assert request(sock, "vault.example.org")[0] == 421


def test_a_tls_1_2_session_of_another_name_does_not_open_an_mtls_name(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    """A TLS 1.2 session made for api.example.com (no client certificate) offered with the
    mTLS name's SNI is not resumed (rustls resumes a session under its own name only): a full
    handshake without a certificate, refused with 400, and nothing reaches the upstream. The
    same session offered for its own name does resume, so resumption itself works."""
    _, port, upstream = gateway
    ctx = client_context(pki, maximum_version=ssl.TLSVersion.TLSv1_2)
    ctx.check_hostname = False
    resumed_own_name = False
    for _ in range(20):  # sessions are per worker: some attempts meet the issuing worker
        with connect(port, "api.example.com", ctx) as first:
            assert request(first, "api.example.com")[0] == 200
            session = first.session
        mark = upstream.mark()
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="secure.example.org", session=session) as again:
            status, _ = request(again, "secure.example.org")
            assert not again.session_reused
        assert status == 400
        upstream.assert_nothing_forwarded(mark, grace=0)
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="api.example.com", session=session) as own:
            assert request(own, "api.example.com")[0] == 200
            resumed_own_name |= own.session_reused
    assert resumed_own_name, "the TLS 1.2 session never resumed for its own name"


def test_a_client_certificate_offered_to_a_name_without_client_ca_is_not_asked_for(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Pki) -> None:
    """Client certificates are requested per SNI: a client holding one still reaches a name
    whose ssl has no client.ca, and that name's requests see no client certificate."""
    _, port, _ = gateway
    with connect(port, "api.example.com", client_context(pki, pki.alice)) as sock:
        status, body = request(sock, "api.example.com")
    assert status == 200
    assert upstream_saw(body)["x-client-verify"] == "NONE"


def test_tls_1_3_sessions_resume_while_other_names_verify_clients(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Pki) -> None:
    """Tickets are issued with client CAs configured (a ticket resumes under its own name
    only), so api.example.com's TLS 1.3 sessions resume."""
    _, port, _ = gateway
    ctx = client_context(pki, minimum_version=ssl.TLSVersion.TLSv1_3)
    for _ in range(20):  # tickets are per worker
        with connect(port, "api.example.com", ctx) as first:
            assert request(first, "api.example.com")[0] == 200  # the tickets arrive
            session = first.session
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        with ctx.wrap_socket(raw, server_hostname="api.example.com", session=session) as again:
            assert request(again, "api.example.com")[0] == 200
            if again.session_reused:
                return
    pytest.fail("no TLS 1.3 session resumed")


def test_a_tls_1_3_client_certificate_does_not_carry_over_to_another_mtls_name(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    """alice's certificate is trusted for secure.example.org, not for vault.example.org (another
    CA): a session from the first must not resume into the second."""
    _, port, upstream = gateway
    ctx = client_context(pki, pki.alice, minimum_version=ssl.TLSVersion.TLSv1_3)
    ctx.check_hostname = False
    for _ in range(6):
        with connect(port, "secure.example.org", ctx) as first:
            assert request(first, "secure.example.org")[0] == 200
            session = first.session
        mark = upstream.mark()
        raw = socket.create_connection(("127.0.0.1", port), timeout=10)
        try:
            with ctx.wrap_socket(raw, server_hostname="vault.example.org", session=session) as again:
                assert not again.session_reused
                status, _ = request(again, "vault.example.org")
                assert status != 200
        except HANDSHAKE_REFUSED:
            pass
        finally:
            raw.close()
        upstream.assert_nothing_forwarded(mark, grace=0)


def test_both_workers_listen_for_tls(gateway: tuple[GatewayProcess, int, Upstream]) -> None:
    gw, port, _ = gateway
    assert len(gw.worker_pids()) == 2
    port_hex = f"{port:04X}"
    listening = {line.split()[9] for line in Path("/proc/net/tcp").read_text().splitlines()[1:]
                 if line.split()[1].endswith(":" + port_hex) and line.split()[3] == "0A"}
    assert len(listening) == 2


def test_a_silent_client_is_closed_after_the_header_timeout(
        gateway: tuple[GatewayProcess, int, Upstream]) -> None:
    """The handshake has client_header_timeout (1.5 s here) to finish, as a request head has."""
    _, port, _ = gateway
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        started = time.monotonic()
        try:
            assert sock.recv(1) == b""
        except ConnectionResetError:
            pass
        assert 1.0 <= time.monotonic() - started < 8


def test_a_client_that_never_answers_close_notify_is_let_go(
        gateway: tuple[GatewayProcess, int, Upstream], pki: Certs) -> None:
    """After `Connection: close` the gateway sends close_notify and closes the socket, without
    waiting for the client's (as nginx does)."""
    _, port, _ = gateway
    with connect(port, "api.example.com", client_context(pki)) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: api.example.com\r\nConnection: close\r\n\r\n")
        response = b""
        while chunk := sock.recv(65536):  # b"": the gateway's close_notify (none is sent back)
            response += chunk
        assert response.startswith(b"HTTP/1.1 200")
        # the same TCP connection, below TLS: its end (FIN) is the gateway letting go
        with socket.socket(fileno=os.dup(sock.fileno())) as raw:
            raw.settimeout(40)
            started = time.monotonic()
            while raw.recv(65536):
                pass
            assert time.monotonic() - started < 10


def test_plain_http_on_the_tls_port_is_closed(gateway: tuple[GatewayProcess, int, Upstream]) -> None:
    _, port, upstream = gateway
    mark = upstream.mark()
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /echo HTTP/1.1\r\nHost: api.example.com\r\n\r\n")
        try:
            assert b"HTTP/1.1" not in sock.recv(4096)
        except ConnectionResetError:
            pass
    upstream.assert_nothing_forwarded(mark)


def test_gateway_check_names_the_bad_key(tmp_path: Path, pki: Certs) -> None:
    config = tls_config(pki, free_port(), free_port(), free_port())
    config["ssls"][0]["key"] = str(pki.secure.key_path)
    path = tmp_path / "gateway.yaml"
    path.write_text(json.dumps(config))
    proc = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0
    assert (f"ssls[0].key: {pki.secure.key_path}: the key does not belong to the certificate "
            f"{pki.exact.cert_path} (mismatched key)") in proc.stdout + proc.stderr


# -- reload ---------------------------------------------------------------------------------------

def test_reload_replaces_certificates_without_dropping_connections(tmp_path: Path, pki: Certs) -> None:
    ca = pki.ca
    live = ca.issue("live", "api.example.com", ["api.example.com"])
    with Upstream("up") as upstream:
        tls_port = free_port()
        config = tls_config(pki, free_port(), tls_port, upstream.port)
        config["ssls"][0].update(cert=str(live.cert_path), key=str(live.key_path))
        with GatewayProcess(tmp_path, config, workers=2) as gw:
            old_fp = cert_fingerprint(live)
            held = connect(tls_port, "api.example.com", client_context(pki))
            try:
                assert request(held, "api.example.com")[0] == 200
                # no SNI: refused until fallback_sni names a served name
                with pytest.raises(ssl.SSLError):
                    connect(tls_port, None, client_context(pki))

                # a new certificate and key under the same paths, and a fallback SNI
                fresh = ca.issue("fresh", "api.example.com", ["api.example.com"])
                shutil.copy(fresh.cert_path, live.cert_path)
                shutil.copy(fresh.key_path, live.key_path)
                config["gateway"]["fallback_sni"] = "api.example.com"
                gw.write_config(config)
                assert gw.proc is not None
                gw.proc.send_signal(signal.SIGHUP)
                gw.wait_version(2)

                new_fp = cert_fingerprint(fresh)
                assert new_fp != old_fp
                for _ in range(4):  # both workers
                    assert served_fingerprint(tls_port, "api.example.com", pki) == new_fp
                    assert served_fingerprint(tls_port, None, pki) == new_fp
                # an IP address as SNI (RFC 6066 forbids it; wrk sends one) counts as none
                openssl = shutil.which("openssl")
                if openssl is not None:
                    proc = subprocess.run(
                        [openssl, "s_client", "-connect", f"127.0.0.1:{tls_port}", "-servername",
                         "127.0.0.1", "-CAfile", str(pki.ca.path)],
                        input=b"", capture_output=True, timeout=20)
                    # (s_client prints a verify code even for a failed handshake: the cipher
                    # line is what says it succeeded)
                    assert b", Cipher is TLS_" in proc.stdout, proc.stdout + proc.stderr
                    assert b"Verify return code: 0 (ok)" in proc.stdout
                # the connection made before the reload keeps working, on its old certificate
                assert request(held, "api.example.com")[0] == 200
                der = held.getpeercert(binary_form=True)
                assert der is not None and fingerprint(der) == old_fp

                # a broken pair is rejected, naming the file; the running certificate stays
                shutil.copy(pki.wild.key_path, live.key_path)
                gw.proc.send_signal(signal.SIGHUP)
                deadline = time.monotonic() + 10
                while "mismatched key" not in gw.logs() and time.monotonic() < deadline:
                    time.sleep(0.05)
                assert f"{live.key_path}: the key does not belong to the certificate" in gw.logs()
                assert served_fingerprint(tls_port, "api.example.com", pki) == new_fp
                assert request(held, "api.example.com")[0] == 200
            finally:
                held.close()


def test_sessions_resume_across_a_reload(tmp_path: Path, pki: Certs) -> None:
    """One worker: a TLS 1.3 ticket issued before a reload still resumes after it (no ssl with
    client.ca here: with one, TLS 1.3 tickets are off)."""
    with Upstream("up") as upstream:
        tls_port = free_port()
        config = tls_config(pki, free_port(), tls_port, upstream.port)
        config["ssls"] = [s for s in config["ssls"] if "client" not in s]
        with GatewayProcess(tmp_path, config, workers=1) as gw:
            ctx = client_context(pki)
            with connect(tls_port, "api.example.com", ctx) as first:
                assert request(first, "api.example.com")[0] == 200  # the ticket arrives
                session = first.session
            raw = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="api.example.com", session=session) as again:
                assert again.session_reused
            config["routes"][0]["priority"] = 1
            gw.write_config(config)
            assert gw.proc is not None
            gw.proc.send_signal(signal.SIGHUP)
            gw.wait_version(2)
            raw = socket.create_connection(("127.0.0.1", tls_port), timeout=10)
            with ctx.wrap_socket(raw, server_hostname="api.example.com", session=session) as after:
                assert after.session_reused
                assert request(after, "api.example.com")[0] == 200
