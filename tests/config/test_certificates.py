"""The ssls' certificates and keys through the whole loader: each problem names the file and
says why (unreadable, not PEM, encrypted, mismatched, expired); good ones end up inline."""
from __future__ import annotations

import datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from gateway.config import ConfigError, parse_config_file, parse_config_text
from tests.support.certs import CertAuthority, Issued


@pytest.fixture(scope="module")
def ca(tmp_path_factory: pytest.TempPathFactory) -> CertAuthority:
    return CertAuthority(tmp_path_factory.mktemp("ca"))


@pytest.fixture(scope="module")
def good(ca: CertAuthority) -> Issued:
    return ca.issue("good", "api.example.com", ["api.example.com"])


def load(tmp_path: Path, ssls: list[dict[str, Any]], **gateway: Any) -> Any:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({"gateway": {"listen": ["127.0.0.1:9080"],
                                                "tls_listen": ["127.0.0.1:9443"], **gateway},
                                    "ssls": ssls}))
    return parse_config_file(path.read_bytes(), str(path))


def errors(tmp_path: Path, ssls: list[dict[str, Any]], **gateway: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, ssls, **gateway)
    return [(i.path, i.message) for i in info.value.issues]


def ssl(cert: str | Path, key: str | Path, **extra: Any) -> dict[str, Any]:
    return {"id": "shop", "snis": ["api.example.com"], "cert": str(cert), "key": str(key), **extra}


def test_paths_are_read_into_the_config(tmp_path: Path, good: Issued, ca: CertAuthority) -> None:
    config = load(tmp_path, [ssl(good.cert_path, good.key_path, client={"ca": str(ca.path)})])
    entry = config.ssls[0]
    assert entry.cert == good.cert_pem and entry.key == good.key_pem
    assert entry.client.ca == ca.path.read_text()


def test_relative_paths_are_relative_to_the_config_file(tmp_path: Path, good: Issued) -> None:
    (tmp_path / "certs").mkdir()
    (tmp_path / "certs" / "a.crt").write_text(good.cert_pem)
    (tmp_path / "certs" / "a.key").write_text(good.key_pem)
    config = load(tmp_path, [ssl("certs/a.crt", "certs/a.key")])
    assert config.ssls[0].cert == good.cert_pem


def test_inline_pem(tmp_path: Path, good: Issued) -> None:
    config = load(tmp_path, [ssl(good.cert_pem, good.key_pem)])
    assert config.ssls[0].key == good.key_pem


def test_mismatched_key_names_both_files(tmp_path: Path, good: Issued, ca: CertAuthority) -> None:
    other = ca.issue("other", "other.example.com", ["other.example.com"])
    assert errors(tmp_path, [ssl(good.cert_path, other.key_path)]) == [
        ("ssls[0].key", f"{other.key_path}: the key does not belong to the certificate "
                        f"{good.cert_path} (mismatched key)")]


def test_expired_certificate(tmp_path: Path, ca: CertAuthority) -> None:
    old = ca.issue("old", "api.example.com", ["api.example.com"], expired=True)
    [(path, message)] = errors(tmp_path, [ssl(old.cert_path, old.key_path)])
    assert path == "ssls[0].cert"
    assert message.startswith(f"{old.cert_path}: the certificate expired on ")
    assert message.endswith("(expired)")


def test_unreadable_files(tmp_path: Path, good: Issued) -> None:
    missing = tmp_path / "missing.crt"
    assert errors(tmp_path, [ssl(missing, tmp_path)]) == [
        ("ssls[0].cert", f"{missing}: cannot read it: No such file or directory (unreadable)"),
        ("ssls[0].key", f"{tmp_path}: cannot read it: Is a directory (unreadable)"),
    ]


def test_not_pem_and_encrypted_keys(tmp_path: Path, good: Issued) -> None:
    junk = tmp_path / "junk.crt"
    junk.write_text("hello\n")
    locked = tmp_path / "locked.key"
    key = serialization.load_pem_private_key(good.key_path.read_bytes(), None)
    locked.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                         serialization.PrivateFormat.PKCS8,
                                         serialization.BestAvailableEncryption(b"secret")))
    found = errors(tmp_path, [ssl(junk, locked)])
    assert [p for p, _ in found] == ["ssls[0].cert", "ssls[0].key"]
    assert found[0][1].startswith(f"{junk}: not a PEM certificate")
    assert found[1][1] == f"{locked}: the key is encrypted (keys with a passphrase are not supported)"


def test_bad_client_ca(tmp_path: Path, good: Issued) -> None:
    assert errors(tmp_path, [ssl(good.cert_path, good.key_path, client={"ca": "nope.crt"})]) == [
        ("ssls[0].client.ca",
         f"{tmp_path / 'nope.crt'}: cannot read it: No such file or directory (unreadable)")]


def test_snis_and_fallback(tmp_path: Path, good: Issued) -> None:
    first = ssl(good.cert_path, good.key_path, snis=["api.example.com", "*.example.com"])
    second = ssl(good.cert_path, good.key_path, snis=["API.example.com", "*.example.com", "10.0.0.1"])
    found = errors(tmp_path, [first, second], fallback_sni="example.org")
    assert found == [
        ("ssls[1].id", "duplicate ssl id 'shop' (first at ssls[0])"),
        ("ssls[1].snis[0]", "invalid SNI 'API.example.com': a lower-case host name or a wildcard "
                            "\"*.example.com\" (clients send no SNI for IP addresses: see fallback_sni)"),
        ("ssls[1].snis[1]", "SNI '*.example.com' is already served by ssls[0]"),
        ("ssls[1].snis[2]", "invalid SNI '10.0.0.1': a lower-case host name or a wildcard "
                            "\"*.example.com\" (clients send no SNI for IP addresses: see fallback_sni)"),
        ("gateway.fallback_sni", "no ssl serves 'example.org' (it must match one of the ssls' snis)"),
    ]
    # a wildcard serves a fallback name
    assert load(tmp_path, [first], fallback_sni="shop.example.com").gateway.fallback_sni == "shop.example.com"


def test_apisix_single_sni(tmp_path: Path, good: Issued) -> None:
    entry = {"id": "one", "sni": "api.example.com", "cert": str(good.cert_path), "key": str(good.key_path)}
    assert load(tmp_path, [entry]).ssls[0].snis == ["api.example.com"]


def test_tls_listen_must_not_collide(tmp_path: Path) -> None:
    found = errors(tmp_path, [], tls_listen=["127.0.0.1:9080", "nope"])
    assert found == [
        ("gateway.tls_listen[0]", "'127.0.0.1:9080' duplicates or overlaps listen[0] '127.0.0.1:9080'"),
        ("gateway.tls_listen[1]", "invalid address 'nope': expected host:port, IPv6 as [addr]:port"),
    ]


def test_unreadable_upstream_tls_files_are_issues_with_their_paths(tmp_path: Path) -> None:
    # Found by fuzz/config_fuzz.py (seeded from the README): the compile check opened the
    # missing files itself and failed with FileNotFoundError instead of leaving them to the
    # certificate checks.
    from gateway.server.master import CHECKS
    text = """\
upstreams:
  - id: payments
    scheme: https
    nodes: [{host: payments.internal, port: 443}]
    tls: {ca: /nonexistent/ca.crt, client_cert: /nonexistent/gw.crt, client_key: /nonexistent/gw.key}
"""
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, str(tmp_path / "gateway.yaml"), env={}, extra_checks=CHECKS)
    paths = {issue.path for issue in info.value.issues}
    assert paths == {"upstreams[0].tls.ca", "upstreams[0].tls.client_cert",
                     "upstreams[0].tls.client_key"}, info.value.issues
    assert not any(" failed: " in issue.message for issue in info.value.issues)


def test_upstream_tls_files_openssl_refuses_are_an_issue_at_their_tls(tmp_path: Path) -> None:
    # cryptography reads a 1024-bit RSA client key and its certificate without complaint;
    # OpenSSL (security level 2) refuses them when the worker builds the upstream's context.
    from gateway.server.master import CHECKS
    key = rsa.generate_private_key(public_exponent=65537, key_size=1024)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "weak client")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(1)
            .not_valid_before(now - datetime.timedelta(days=1))
            .not_valid_after(now + datetime.timedelta(days=1)).sign(key, hashes.SHA256()))
    (tmp_path / "weak.crt").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "weak.key").write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption()))
    text = f"""\
upstreams:
  - id: payments
    scheme: https
    nodes: [{{host: payments.internal, port: 443}}]
    tls: {{client_cert: {tmp_path / "weak.crt"}, client_key: {tmp_path / "weak.key"}}}
"""
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, str(tmp_path / "gateway.yaml"), env={}, extra_checks=CHECKS)
    [issue] = info.value.issues
    assert issue.path == "upstreams[0].tls", issue
    assert issue.message.startswith("OpenSSL refuses these tls settings: "), issue
    assert "key too small" in issue.message, issue
