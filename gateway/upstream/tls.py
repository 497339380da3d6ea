"""TLS to upstream nodes (`scheme: https` and `grpcs`): one client context per upstream TLS setting, with
session resumption.

uvloop opens each upstream connection through `SSLContext.wrap_bio` without a session, and
OpenSSL's client side never resumes on its own. So the context remembers, per server name,
the TLS object of its latest connection and hands that connection's session (once it holds a
ticket: TLS 1.3 sends them after the handshake) to the next one. Contexts are kept across
config versions while their settings are unchanged, so a reload keeps the sessions too.
"""
from __future__ import annotations

import os
import ssl
from collections.abc import Sequence
from typing import Any

from gateway.config import Upstream, UpstreamTls, is_ip
from gateway.config.certificates import is_inline_pem

#: TLS 1.2 suites: forward secrecy and AEAD only (TLS 1.3's suites are all AEAD already).
TLS12_CIPHERS = "ECDHE+AESGCM:ECDHE+CHACHA20"

_DEFAULT_TLS = UpstreamTls()


class UpstreamSSLContext(ssl.SSLContext):
    """The client context of one upstream TLS setting, resuming sessions per server name."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self.latest: dict[str | bytes | None, ssl.SSLObject] = {}
        self.sessions: dict[str | bytes | None, ssl.SSLSession] = {}

    def wrap_bio(self, incoming: ssl.MemoryBIO, outgoing: ssl.MemoryBIO,
                 server_side: bool = False, server_hostname: str | bytes | None = None,
                 session: ssl.SSLSession | None = None) -> ssl.SSLObject:
        if session is None and not server_side:
            session = self.session_for(server_hostname)
        obj = super().wrap_bio(incoming, outgoing, server_side, server_hostname, session)
        self.latest[server_hostname] = obj
        return obj

    def session_for(self, server_hostname: str | bytes | None) -> ssl.SSLSession | None:
        """The newest resumable session with that server: from the latest connection if it
        has received a ticket by now, else the one kept before."""
        previous = self.latest.get(server_hostname)
        if previous is not None:
            try:
                latest = previous.session
            except (ValueError, AttributeError):
                latest = None
            if latest is not None and latest.has_ticket:
                self.sessions[server_hostname] = latest
        return self.sessions.get(server_hostname)


def _load_client_cert(ctx: ssl.SSLContext, cert: str, key: str) -> None:
    if not is_inline_pem(cert):
        ctx.load_cert_chain(cert, key)
        return
    # load_cert_chain reads files only: the PEM goes through an anonymous memory file, so the
    # key never touches a disk.
    fd = os.memfd_create("gateway-upstream-cert", os.MFD_CLOEXEC)
    try:
        with open(fd, "wb", closefd=False) as fh:
            fh.write(cert.rstrip().encode("ascii") + b"\n" + key.encode("ascii"))
        ctx.load_cert_chain(f"/proc/self/fd/{fd}")
    finally:
        os.close(fd)


def build_context(tls: UpstreamTls, h2: bool = False) -> UpstreamSSLContext:
    """A client context for these (loader-checked) settings; ssl.SSLError if OpenSSL refuses.
    ``h2``: for grpcs nodes, which must agree to HTTP/2 through ALPN."""
    ctx = UpstreamSSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)
    if h2:
        ctx.set_alpn_protocols(["h2"])
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_NO_RENEGOTIATION
    if tls.verify:
        ctx.check_hostname = True
        ctx.verify_mode = ssl.CERT_REQUIRED
        if tls.ca is None:
            ctx.load_default_certs(ssl.Purpose.SERVER_AUTH)
        elif is_inline_pem(tls.ca):
            ctx.load_verify_locations(cadata=tls.ca)
        else:
            ctx.load_verify_locations(cafile=tls.ca)
    else:
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
    if tls.client_cert is not None and tls.client_key is not None:
        _load_client_cert(ctx, tls.client_cert, tls.client_key)
    return ctx


def check_upstream_contexts(upstreams: Sequence[Upstream]) -> list[tuple[int, str]]:
    """(index, OpenSSL's reason) for each https upstream whose (loader-checked) tls settings
    OpenSSL refuses; run by the master before a config is sent, so a worker never meets a
    context it cannot build. Each setting is built once (kept for the compile check after)."""
    out: list[tuple[int, str]] = []
    for i, upstream in enumerate(upstreams):
        if upstream.scheme in ("https", "grpcs"):
            try:
                upstream_context(upstream.tls, h2=upstream.scheme == "grpcs")
            except ssl.SSLError as exc:
                out.append((i, str(exc)))
    return out


_contexts: dict[tuple[UpstreamTls, bool], UpstreamSSLContext] = {}
_MAX_CONTEXTS = 256


def upstream_context(tls: UpstreamTls | None, h2: bool = False) -> UpstreamSSLContext:
    """The worker's context for these settings (``h2``: offering only HTTP/2, for grpcs): the
    same object while they are unchanged (its sessions survive reloads)."""
    key = (tls or _DEFAULT_TLS, h2)
    ctx = _contexts.get(key)
    if ctx is None:
        if len(_contexts) >= _MAX_CONTEXTS:
            _contexts.clear()  # settings of old config versions; in use ones live on their nodes
        ctx = _contexts[key] = build_context(key[0], h2)
    return ctx


def server_name(node_host: str, node_name: str | None, upstream_host: str | None,
                rewrite: bool) -> str:
    """The name a node's certificate is checked against, and sent as SNI unless it is an IP
    address: `upstream_host` when the Host is rewritten to it, else the node's host name
    (the address for a node given as an IP address)."""
    if rewrite and upstream_host:
        name = upstream_host
        if not name.startswith("[") and name.count(":") == 1:
            name = name.split(":", 1)[0]  # a port in upstream_host is not part of the name
        return name.strip("[]")
    return node_name if node_name and not is_ip(node_name) else node_host
