"""The `ssls` certificates, keys and client CAs, and the upstreams' `tls` files: read (a path or
the PEM inline), checked, and carried inline in the validated config.

Each problem names the file it is in and why: unreadable (the OS error), not PEM, an encrypted
key, a key that does not belong to the certificate (mismatched key), a certificate that has
expired or is not valid yet. Paths are read here, once, by whoever validates (the master, `gateway
check`), and the validated config holds the PEM itself: the workers never open the files, all of
them serve the same bytes, and a certificate replaced under the same path changes the config's
fingerprint, so a reload applies it.
"""

from __future__ import annotations

import datetime
import os

import msgspec
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from .issues import ConfigIssue, DocPath, issue_at
from .schema import Config, Ssl, Upstream, UpstreamTls

__all__ = ["inline_certificates", "is_inline_pem"]

_PEM_START = "-----BEGIN "


def is_inline_pem(value: str) -> bool:
    return value.lstrip().startswith(_PEM_START)


def inline_certificates(config: Config, file: str) -> tuple[Config, list[ConfigIssue]]:
    """`config` with every ssl's cert, key and client CA as PEM text, and what is wrong with them.

    Relative paths are relative to the config file's directory (the working directory for a
    config that is not a file).
    """
    upstream_tls = any(u.tls is not None for u in config.upstreams) or any(
        r.upstream is not None and r.upstream.tls is not None for r in config.routes)
    if not config.ssls and not upstream_tls:
        return config, []
    base = os.path.dirname(os.path.abspath(file)) if os.path.isfile(file) else os.getcwd()
    issues: list[ConfigIssue] = []
    ssls = [_inline_ssl(ssl, ("ssls", i), base, file, issues) for i, ssl in enumerate(config.ssls)]
    config = msgspec.structs.replace(config, ssls=ssls)
    if upstream_tls:
        upstreams = [_inline_upstream(u, ("upstreams", i), base, file, issues)
                     for i, u in enumerate(config.upstreams)]
        routes = [r if r.upstream is None else msgspec.structs.replace(
                      r, upstream=_inline_upstream(r.upstream, ("routes", i, "upstream"), base,
                                                   file, issues))
                  for i, r in enumerate(config.routes)]
        config = msgspec.structs.replace(config, upstreams=upstreams, routes=routes)
    return config, issues


def _inline_upstream(upstream: Upstream, path: DocPath, base: str, file: str,
                     issues: list[ConfigIssue]) -> Upstream:
    """An upstream's `tls` files read and checked like an ssl's: the client certificate and
    key (a pair, the key matching), the CA."""
    tls = upstream.tls
    if tls is None:
        return upstream
    path = (*path, "tls")
    if upstream.scheme not in ("https", "grpcs"):
        issues.append(issue_at(file, path, f"tls applies to schemes https and grpcs only (the "
                                           f"scheme is {upstream.scheme})"))
    if (tls.client_cert is None) != (tls.client_key is None):
        given, missing = ("client_cert", "client_key") if tls.client_key is None \
            else ("client_key", "client_cert")
        issues.append(issue_at(file, (*path, missing), f"{given} is set without {missing}"))
    client_cert, client_key, ca = tls.client_cert, tls.client_key, tls.ca
    cert: x509.Certificate | None = None
    cert_name = ""
    if client_cert is not None:
        client_cert, cert_name, problem = _read_pem(client_cert, base)
        if problem is None:
            cert, problem = _leaf_certificate(client_cert, cert_name)
        if problem is not None:
            issues.append(issue_at(file, (*path, "client_cert"), problem))
    if client_key is not None:
        client_key, key_name, problem = _read_pem(client_key, base)
        if problem is None:
            problem = _key_problem(client_key, key_name, cert, cert_name)
        if problem is not None:
            issues.append(issue_at(file, (*path, "client_key"), problem))
    if ca is not None:
        ca, ca_name, problem = _read_pem(ca, base)
        if problem is None:
            problem = _ca_problem(ca, ca_name)
        if problem is not None:
            issues.append(issue_at(file, (*path, "ca"), problem))
    return msgspec.structs.replace(upstream, tls=UpstreamTls(
        client_cert=client_cert, client_key=client_key, verify=tls.verify, ca=ca))


def _inline_ssl(ssl: Ssl, path: DocPath, base: str, file: str, issues: list[ConfigIssue]) -> Ssl:
    cert_pem, cert_name, problem = _read_pem(ssl.cert, base)
    cert: x509.Certificate | None = None
    if problem is None:
        cert, problem = _leaf_certificate(cert_pem, cert_name)
    if problem is not None:
        issues.append(issue_at(file, (*path, "cert"), problem))
    key_pem, key_name, problem = _read_pem(ssl.key, base)
    if problem is None:
        problem = _key_problem(key_pem, key_name, cert, cert_name)
    if problem is not None:
        issues.append(issue_at(file, (*path, "key"), problem))
    client = ssl.client
    if client is not None:
        ca_pem, ca_name, problem = _read_pem(client.ca, base)
        if problem is None:
            problem = _ca_problem(ca_pem, ca_name)
        if problem is not None:
            issues.append(issue_at(file, (*path, "client", "ca"), problem))
        client = msgspec.structs.replace(client, ca=ca_pem)
    return msgspec.structs.replace(ssl, cert=cert_pem, key=key_pem, client=client)


def _read_pem(value: str, base: str) -> tuple[str, str, str | None]:
    """(PEM text, how to name it in a message, the problem or None)."""
    if is_inline_pem(value):
        return value, "the inline PEM", None
    path = os.path.join(base, value)
    try:
        with open(path, "rb") as fh:
            raw = fh.read()
    except OSError as exc:
        return value, path, f"{path}: cannot read it: {exc.strerror or exc} (unreadable)"
    try:
        text = raw.decode("ascii")
    except UnicodeDecodeError:
        return value, path, f"{path}: not a PEM file (binary content; DER is not accepted)"
    return text, path, None


def _leaf_certificate(pem: str, name: str) -> tuple[x509.Certificate | None, str | None]:
    try:
        chain = x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError as exc:
        return None, f"{name}: not a PEM certificate ({exc})"
    leaf = chain[0]
    now = datetime.datetime.now(datetime.UTC)
    if leaf.not_valid_after_utc < now:
        return leaf, f"{name}: the certificate expired on {leaf.not_valid_after_utc:%Y-%m-%d %H:%M:%S} UTC (expired)"
    if leaf.not_valid_before_utc > now:
        return leaf, (f"{name}: the certificate is not valid before "
                      f"{leaf.not_valid_before_utc:%Y-%m-%d %H:%M:%S} UTC (not yet valid)")
    return leaf, None


def _key_problem(pem: str, name: str, cert: x509.Certificate | None, cert_name: str) -> str | None:
    try:
        key = serialization.load_pem_private_key(pem.encode("ascii"), password=None)
    except TypeError:
        return f"{name}: the key is encrypted (keys with a passphrase are not supported)"
    except (ValueError, x509.UnsupportedGeneralNameType) as exc:
        return f"{name}: not a PEM private key ({exc})"
    if cert is None:
        return None
    spki = serialization.PublicFormat.SubjectPublicKeyInfo
    der = serialization.Encoding.DER
    if key.public_key().public_bytes(der, spki) != cert.public_key().public_bytes(der, spki):
        return f"{name}: the key does not belong to the certificate {cert_name} (mismatched key)"
    return None


def _ca_problem(pem: str, name: str) -> str | None:
    try:
        x509.load_pem_x509_certificates(pem.encode("ascii"))
    except ValueError as exc:
        return f"{name}: not a PEM CA certificate ({exc})"
    return None
