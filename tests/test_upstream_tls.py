"""TLS to upstreams (`scheme: https`) through a real gateway (2 workers) to real TLS upstreams
(asyncio + ssl, certificates made by the test): verification, SNI, mTLS, pooling, resumption,
config errors."""
from __future__ import annotations

import http.client
import json
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.support.config_check import check_refuses
from tests.support.gateway import GatewayProcess, base_config, wait_until
from tests.support.pki import Pki
from tests.support.tls_upstream import TlsUpstream
from tests.support.upstream import free_port


class Certs(Pki):
    def __init__(self, directory: Path) -> None:
        super().__init__(directory, "Upstream CA")
        self.server = self.ca.issue("server", "localhost", ["localhost", "backend.internal"])
        self.rogue_server = self.rogue_ca.issue("rogue", "localhost",
                                                ["localhost", "backend.internal"])
        self.ip_server = self.ca.issue("ip", "127.0.0.1", ip_addresses=["127.0.0.1"])
        self.gateway_client = self.client_ca.issue("gateway", "the-gateway", client=True)


@pytest.fixture(scope="module")
def pki(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    return Certs(tmp_path_factory.mktemp("pki"))


@dataclass
class Setup:
    gw: GatewayProcess
    good: TlsUpstream
    rogue: TlsUpstream
    mtls: TlsUpstream
    ip: TlsUpstream


def https(port: int, pki: Certs, **more: Any) -> dict[str, Any]:
    """An https upstream of one node: by default the address, with the name the certificate
    has as upstream_host (so it is the server name). "localhost" as the node may resolve to
    ::1 as well, where the test upstreams do not listen."""
    tls = {"ca": str(pki.ca.path), **more.pop("tls", {})}
    node = {"host": more.pop("host", "127.0.0.1"), "port": port}
    if node["host"] == "127.0.0.1" and more.get("pass_host") != "pass":
        more = {"pass_host": "rewrite", "upstream_host": "localhost", **more}
    return {"scheme": "https", "nodes": [node], "tls": tls, **more}


def upstream_tls_config(pki: Certs, good: int, rogue: int, mtls: int, ip: int) -> dict[str, Any]:
    config = base_config(free_port())
    client = {"client_cert": str(pki.gateway_client.cert_path),
              "client_key": str(pki.gateway_client.key_path)}
    upstreams = {
        "good": https(good, pki),
        "named": https(good, pki, host="localhost"),
        "rewrite": https(good, pki, upstream_host="backend.internal"),
        "fresh": https(good, pki, keepalive={"size": 0}),
        "system": {"scheme": "https", "nodes": [{"host": "127.0.0.1", "port": good}],
                   "pass_host": "rewrite", "upstream_host": "localhost"},
        "rogue": https(rogue, pki),
        "noverify": https(rogue, pki, tls={"verify": False}),
        "mtls": https(mtls, pki, tls=client),
        "mtls-nocert": https(mtls, pki),
        # an IP node with pass_host pass: the address is the name checked, no SNI is sent
        "ip": https(ip, pki, pass_host="pass"),
        "ip-wrong": https(good, pki, pass_host="pass"),
    }
    for name, upstream in upstreams.items():
        config["upstreams"].append({"id": name, **upstream})
        config["routes"].append({"id": name, "uri": f"/{name}/*", "upstream_id": name})
    return config


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory, pki: Certs) -> Iterator[Setup]:
    with TlsUpstream(pki.server.cert_path, pki.server.key_path) as good, \
            TlsUpstream(pki.rogue_server.cert_path, pki.rogue_server.key_path) as rogue, \
            TlsUpstream(pki.server.cert_path, pki.server.key_path, pki.client_ca.path) as mtls, \
            TlsUpstream(pki.ip_server.cert_path, pki.ip_server.key_path) as ip:
        config = upstream_tls_config(pki, good.port, rogue.port, mtls.port, ip.port)
        with GatewayProcess(tmp_path_factory.mktemp("upstls"), config, workers=2) as gw:
            yield Setup(gw, good, rogue, mtls, ip)


def get(conn: http.client.HTTPConnection, path: str) -> tuple[int, Any]:
    conn.request("GET", path, headers={"Host": "client.example"})
    response = conn.getresponse()
    body = response.read()
    if response.status != 200:
        return response.status, body
    return response.status, json.loads(body)


def fresh_get(setup: Setup, path: str) -> tuple[int, Any]:
    conn = http.client.HTTPConnection("127.0.0.1", setup.gw.port, timeout=10)
    try:
        return get(conn, path)
    finally:
        conn.close()


def test_https_upstream_gets_the_node_name_as_sni(setup: Setup) -> None:
    status, seen = fresh_get(setup, "/named/x")
    assert status == 200
    assert seen["sni"] == "localhost"
    assert seen["target"] == "/named/x"
    assert seen["host"] == "client.example"  # pass_host pass: the Host is the client's


def test_rewritten_host_is_the_sni_and_the_name_checked(setup: Setup) -> None:
    status, seen = fresh_get(setup, "/rewrite/x")
    assert status == 200
    assert seen["sni"] == "backend.internal"
    assert seen["host"] == "backend.internal"


def test_an_ip_node_is_checked_against_the_certificate_ip_entries(setup: Setup) -> None:
    status, seen = fresh_get(setup, "/ip/x")
    assert status == 200
    assert seen["sni"] is None  # RFC 6066: no IP address as SNI
    # a certificate for names only does not pass for the address
    assert fresh_get(setup, "/ip-wrong/x")[0] == 502


def test_a_certificate_from_an_untrusted_ca_is_a_prompt_502_with_a_clear_log(setup: Setup) -> None:
    started = time.monotonic()
    status, _ = fresh_get(setup, "/rogue/x")
    assert status == 502
    assert time.monotonic() - started < 3
    wait_until(lambda: "upstream rogue: TLS to 127.0.0.1:" in setup.gw.logs(), 5,
               "the TLS failure log line")
    line = next(line for line in setup.gw.logs().splitlines() if "upstream rogue: TLS" in line)
    assert "(server name localhost)" in line
    assert "certificate verify failed: unable to get local issuer certificate" in line
    # one line says it: not also a misleading "refused or unreachable"
    assert f"cannot connect to upstream 127.0.0.1:{setup.rogue.port}" not in setup.gw.logs()


def test_verification_is_on_by_default_against_the_system_store(setup: Setup) -> None:
    # the test CA is in no system store
    assert fresh_get(setup, "/system/x")[0] == 502


def test_verify_false_turns_verification_off(setup: Setup) -> None:
    status, seen = fresh_get(setup, "/noverify/x")
    assert status == 200
    assert seen["sni"] == "localhost"


def test_mtls_upstream_gets_the_client_certificate(setup: Setup) -> None:
    status, seen = fresh_get(setup, "/mtls/x")
    assert status == 200
    assert seen["client_cn"] == "the-gateway"


def test_mtls_upstream_without_a_client_certificate_is_502(setup: Setup) -> None:
    assert fresh_get(setup, "/mtls-nocert/x")[0] == 502


def on_one_connection(setup: Setup, paths: list[str]) -> list[tuple[int, Any]]:
    """GET each of ``paths`` in turn on one client connection."""
    conn = http.client.HTTPConnection("127.0.0.1", setup.gw.port, timeout=10)
    try:
        return [get(conn, path) for path in paths]
    finally:
        conn.close()


def test_sequential_requests_share_one_pooled_tls_connection(setup: Setup) -> None:
    seen = on_one_connection(setup, [f"/good/{i}" for i in range(5)])
    assert all(status == 200 for status, _ in seen)
    # one client connection is served by one worker: its pooled upstream connection carries all
    assert len({body["connection"] for _, body in seen}) == 1


def test_a_new_tls_connection_resumes_the_session(setup: Setup) -> None:
    seen = on_one_connection(setup, [f"/fresh/{i}" for i in range(3)])
    assert all(status == 200 for status, _ in seen)
    # keepalive size 0: a new upstream connection each time; the later ones resume
    assert len({body["connection"] for _, body in seen}) == 3
    assert [body["reused"] for _, body in seen][1:] == [True, True]


# -- config errors --------------------------------------------------------------------------------

def test_config_errors_name_the_file_and_reason(tmp_path: Path, pki: Certs) -> None:
    config = base_config(free_port())
    missing = tmp_path / "missing-ca.crt"
    config["upstreams"] = [
        {"id": "a", **https(1, pki, tls={"ca": str(missing)})},
        {"id": "b", **https(1, pki, tls={"client_cert": str(pki.gateway_client.cert_path),
                                        "client_key": str(pki.server.key_path)})},
        {"id": "c", **https(1, pki, tls={"client_cert": str(pki.gateway_client.cert_path)})},
        {"id": "d", "nodes": [{"host": "127.0.0.1", "port": 1}], "tls": {"verify": False}},
    ]
    out = check_refuses(tmp_path, config)
    assert f"upstreams[0].tls.ca: {missing}: cannot read it" in out
    assert (f"upstreams[1].tls.client_key: {pki.server.key_path}: the key does not belong to the "
            f"certificate {pki.gateway_client.cert_path} (mismatched key)") in out
    assert "upstreams[2].tls.client_key: client_cert is set without client_key" in out
    assert "upstreams[3].tls: tls applies to schemes https and grpcs only (the scheme is http)" in out


def test_inline_route_upstream_files_are_checked_too(tmp_path: Path, pki: Certs) -> None:
    config = base_config(free_port())
    config["routes"] = [{"id": "r", "uri": "/*",
                         "upstream": https(1, pki, tls={"ca": str(pki.gateway_client.key_path)})}]
    out = check_refuses(tmp_path, config)
    assert f"routes[0].upstream.tls.ca: {pki.gateway_client.key_path}: not a PEM CA certificate" in out
