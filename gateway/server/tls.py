"""TLS on the `tls_listen` sockets: rustls (rust/tls), driven by the Cython TlsTransport one
call per socket read and per response write (README "TLS" says why, with the measurements).

Every worker has one TlsEngine. Its table of sites (one per ssl: certificate, key, client CA)
is chosen from per handshake by the ClientHello's SNI (exact name, then wildcards, longest
first; `fallback_sni` for clients that send none) and replaced whole by a config reload:
handshakes that start after the reload see the new certificates, connections already open
keep the site they were made with. An ssl that did not change keeps its site. Session tickets
are sealed with the engine's keys, which live as long as the worker, so they survive reloads.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

from gateway._native import TlsEngine
from gateway.config import Ssl

#: ALPN protocols offered, preferred first: the negotiated one picks the connection's protocol
#: (ClientConnection.connection_made hands "h2" to the HTTP/2 session).
ALPN_PROTOCOLS = [b"h2", b"http/1.1"]


def _site(entry: Ssl) -> tuple[str, list[str], str, str, str | None]:
    return (entry.id, list(entry.snis), entry.cert, entry.key,
            entry.client.ca if entry.client is not None else None)


class TlsListener:
    """A worker's TLS engine and what the protocol asks of it per request."""

    def __init__(self) -> None:
        self.engine = TlsEngine(ALPN_PROTOCOLS)
        self.wants_client_certs = False

    def update(self, ssls: Sequence[Ssl], fallback_sni: str | None) -> None:
        """Builds every site first, then swaps: a failure (ValueError) leaves the running ones."""
        self.engine.update([_site(entry) for entry in ssls], fallback_sni)
        self.wants_client_certs = any(entry.client is not None for entry in ssls)

    @property
    def misdirected_check(self) -> Callable[[bytes, str | None], bool] | None:
        """What the protocol calls per request on TLS connections, None when no ssl verifies
        clients (nothing to check, nothing paid)."""
        return self.misdirected if self.wants_client_certs else None

    def misdirected(self, host: bytes, ssl_id: str | None) -> bool:
        """Does a request for `host` (the Host header, maybe with a port), on a connection
        whose handshake chose `ssl_id`, ask for a name that requires client certificates the
        connection was not verified for? (nginx's 421: a client must not reach an mTLS name
        through a handshake for another name.)"""
        name = host.decode("latin-1")
        if name.startswith("["):
            return False  # an IP address: no SNI names it
        name = name.rpartition(":")[0] if ":" in name else name
        serving = self.engine.serving(name)
        return serving is not None and serving[1] and serving[0] != ssl_id


def check_ssl_contexts(ssls: Sequence[Ssl]) -> list[tuple[int, str]]:
    """(index, rustls's reason) for each ssl rustls refuses; run by the master before a
    config is sent, so a worker never meets a site it cannot build."""
    out: list[tuple[int, str]] = []
    for i, entry in enumerate(ssls):
        reason = TlsEngine.refusal(*_site(entry)[2:])
        if reason is not None:
            out.append((i, reason))
    return out
