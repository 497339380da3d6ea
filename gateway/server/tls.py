"""TLS on the `tls_listen` sockets: OpenSSL through the stdlib's `ssl`, run by uvloop's TLS
transport (bench/tls_engines.py measures it against rustls and nginx; README "TLS" says why).

Every worker has one listening context. Its SNI callback chooses, per handshake, the context of
the ssl serving the name (exact name, then wildcards, longest first) from a table that a config
reload replaces in one assignment: handshakes that start after the reload see the new
certificates, connections already open keep the context they were made with. An ssl that did
not change keeps its context. Session tickets are sealed by the listening context (OpenSSL's
session context is the one a handshake starts on), so they survive reloads, per worker.
"""
from __future__ import annotations

import os
import ssl
from collections.abc import Callable, Sequence

from gateway.config import Ssl, is_ip, sni_candidates

#: ALPN protocols offered, preferred first: the negotiated one picks the connection's protocol
#: (ClientConnection.connection_made hands "h2" to the HTTP/2 session).
ALPN_PROTOCOLS = ["h2", "http/1.1"]
#: TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3's suites are all AEAD already).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"


class GatewaySSLObject(ssl.SSLObject):
    """uvloop's per-connection TLS object, remembering the server name the client sent."""

    server_name_indication: str | None = None


class SniContext(ssl.SSLContext):
    """The context of one ssl resource: its certificate, and its client CA when mTLS is on."""

    ssl_id: str = ""
    #: Requests on a connection without a verified client certificate are refused (400).
    client_cert_required: bool = False


def _harden(ctx: ssl.SSLContext) -> None:
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.maximum_version = ssl.TLSVersion.TLSv1_3
    ctx.set_ciphers(TLS12_CIPHERS)
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE | ssl.OP_NO_RENEGOTIATION
    ctx.set_alpn_protocols(ALPN_PROTOCOLS)


def ssl_context(entry: Ssl) -> SniContext:
    """The context serving one (validated, PEM-inline) ssl; ssl.SSLError if OpenSSL refuses it."""
    ctx = SniContext(ssl.PROTOCOL_TLS_SERVER)
    _harden(ctx)
    # load_cert_chain reads files only: the PEM goes through an anonymous memory file, so the
    # key never touches a disk.
    fd = os.memfd_create("gateway-ssl", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as fh:
            fh.write(entry.cert.rstrip().encode("ascii") + b"\n" + entry.key.encode("ascii"))
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)
    ctx.ssl_id = entry.id
    if entry.client is not None:
        ctx.load_verify_locations(cadata=entry.client.ca)
        # OPTIONAL at the TLS level: a missing certificate is answered 400 after the handshake
        # (nginx's "No required SSL certificate was sent"); a bad one fails the handshake.
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.client_cert_required = True
    return ctx


class SniTable:
    """Server name -> context, for one config version."""

    def __init__(self, contexts: dict[str, SniContext], fallback_sni: str | None,
                 wants_client_certs: bool) -> None:
        self.contexts = contexts
        self.fallback_sni = fallback_sni
        self.wants_client_certs = wants_client_certs

    def find(self, server_name: str | None) -> SniContext | None:
        # RFC 6066 section 3: an SNI is never an IP address; clients that send one anyway (wrk
        # does) are treated as sending none
        name = server_name if server_name is not None and not is_ip(server_name) \
            else self.fallback_sni
        if name is None:
            return None
        for candidate in sni_candidates(name):
            ctx = self.contexts.get(candidate)
            if ctx is not None:
                return ctx
        return None


class TlsListener:
    """The listening context of a worker's TLS sockets and the SNI table it consults."""

    def __init__(self) -> None:
        self.context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        _harden(self.context)
        self.context.sslobject_class = GatewaySSLObject
        self.context.sni_callback = self._choose
        self.table = SniTable({}, None, False)
        self._built: dict[tuple[str, str, str, str | None], SniContext] = {}

    def update(self, ssls: Sequence[Ssl], fallback_sni: str | None) -> None:
        """Builds every context first, then swaps: a failure leaves the running table."""
        built: dict[tuple[str, str, str, str | None], SniContext] = {}
        contexts: dict[str, SniContext] = {}
        for entry in ssls:
            key = (entry.id, entry.cert, entry.key, entry.client.ca if entry.client else None)
            ctx = self._built.get(key) or ssl_context(entry)
            built[key] = ctx
            for sni in entry.snis:
                contexts[sni] = ctx
        wants_client_certs = any(entry.client is not None for entry in ssls)
        self.table = SniTable(contexts, fallback_sni, wants_client_certs)
        self._built = built
        # The verify mode of a handshake is the listening context's (OpenSSL does not take it
        # from the context the SNI callback switches to): ask for client certificates only
        # when some ssl verifies them.
        self.context.verify_mode = ssl.CERT_OPTIONAL if wants_client_certs else ssl.CERT_NONE
        # Tickets are sealed by the listening context, for every server name alike: a TLS 1.3
        # ticket from one SNI resumes under another SNI's context with the first one's client
        # certificate, unverified by the second's CA. With client CAs configured, no TLS 1.3
        # tickets. (TLS 1.2 resumes under the session's own name: `misdirected` covers it.)
        self.context.num_tickets = 0 if wants_client_certs else 2

    @property
    def misdirected_check(self) -> Callable[[bytes, str | None], bool] | None:
        """What the protocol calls per request on TLS connections, None when no ssl verifies
        clients (nothing to check, nothing paid)."""
        return self.misdirected if self.table.wants_client_certs else None

    def misdirected(self, host: bytes, ssl_id: str | None) -> bool:
        """Does a request for `host` (the Host header, maybe with a port), on a connection
        whose handshake chose `ssl_id`, ask for a name that requires client certificates the
        connection was not verified for? (nginx's 421: a client must not reach an mTLS name
        through a handshake for another name, or a TLS 1.2 session resumed from one.)"""
        name = host.decode("latin-1")
        if name.startswith("["):
            return False  # an IP address: no SNI names it
        name = name.rpartition(":")[0] if ":" in name else name
        ctx = self.table.find(name)
        return ctx is not None and ctx.client_cert_required and ctx.ssl_id != ssl_id

    def _choose(self, ssl_object: ssl.SSLObject, server_name: str | None,
                _listening: ssl.SSLContext) -> int | None:
        ctx = self.table.find(server_name)
        if ctx is None:
            # no SNI and no fallback_sni, or a name no ssl serves: the handshake fails here
            return ssl.ALERT_DESCRIPTION_UNRECOGNIZED_NAME if server_name is not None \
                else ssl.ALERT_DESCRIPTION_HANDSHAKE_FAILURE
        ssl_object.context = ctx
        if isinstance(ssl_object, GatewaySSLObject):
            ssl_object.server_name_indication = server_name
        return None


def check_ssl_contexts(ssls: Sequence[Ssl]) -> list[tuple[int, str]]:
    """(index, OpenSSL's reason) for each ssl OpenSSL refuses; run by the master before a
    config is sent, so a worker never meets a context it cannot build."""
    out: list[tuple[int, str]] = []
    for i, entry in enumerate(ssls):
        try:
            ssl_context(entry)
        except (ssl.SSLError, ValueError, OSError) as exc:
            out.append((i, str(exc)))
    return out
