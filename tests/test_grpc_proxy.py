"""gRPC through a real gateway process (README "gRPC"): grpcio clients over h2c to grpcio
servers behind `scheme: grpc` / `grpcs` upstreams. The four call kinds, trailers, deadlines
(also one the gateway enforces before the client, with curl), gateway errors as grpc-status,
key-auth from call metadata and limit-count, refusals' statuses (mapped from HTTP, or the
plugin's own)."""
from __future__ import annotations

import struct
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import grpc
import pytest

from tests.support.certs import CertAuthority
from tests.support.gateway import GatewayProcess, base_config
from tests.support.grpc_backend import SERVICE, EchoClient, GrpcBackend
from tests.support.upstream import free_port


@dataclass
class Setup:
    gw: GatewayProcess
    backend: GrpcBackend
    tls_backend: GrpcBackend
    tls_port: int
    ca: CertAuthority

    def client(self, authority: str = "plain.test") -> EchoClient:
        return EchoClient(f"127.0.0.1:{self.gw.port}",
                          options=[("grpc.default_authority", authority),
                                   ("grpc.enable_retries", 0)])


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Setup]:
    tmp = tmp_path_factory.mktemp("grpc")
    ca = CertAuthority(tmp / "ca")
    server = ca.issue("server", "127.0.0.1", ip_addresses=["127.0.0.1"])
    tls = (server.key_path.read_bytes(), server.cert_path.read_bytes())
    with GrpcBackend() as backend, GrpcBackend(tls=tls) as tls_backend:
        port, tls_port = free_port(), free_port()
        listener = ca.issue("listener", "grpc.test", ["grpc.test"])
        config = base_config(port, tls_listen=[f"127.0.0.1:{tls_port}"])
        config["ssls"] = [{"id": "grpc", "snis": ["grpc.test"], "cert": str(listener.cert_path),
                           "key": str(listener.key_path)}]
        config["upstreams"] = [
            {"id": "echo", "scheme": "grpc", "nodes": [{"host": "127.0.0.1", "port": backend.port}]},
            {"id": "echo-tls", "scheme": "grpcs", "tls": {"ca": str(ca.path)},
             "nodes": [{"host": "127.0.0.1", "port": tls_backend.port}]},
            {"id": "down", "scheme": "grpc", "nodes": [{"host": "127.0.0.1", "port": free_port()}]},
        ]
        config["routes"] = [
            {"id": "echo", "uri": f"/{SERVICE}/*", "upstream_id": "echo"},
            {"id": "tls", "uri": f"/{SERVICE}/*", "hosts": ["tls.test"], "upstream_id": "echo-tls"},
            {"id": "down", "uri": f"/{SERVICE}/*", "hosts": ["down.test"], "upstream_id": "down"},
            {"id": "guarded", "uri": f"/{SERVICE}/*", "hosts": ["guarded.test"], "upstream_id": "echo",
             "plugins": {"key-auth": {"header": "apikey", "hide_credentials": True},
                         "limit-count": {"count": 2, "time_window": 3600, "key_type": "var",
                                         "key": "consumer_name", "rejected_code": 429}}},
            {"id": "limited", "uri": f"/{SERVICE}/*", "hosts": ["limited.test"],
             "upstream_id": "echo",
             "plugins": {"limit-req": {"rate": 0.001, "burst": 0, "nodelay": True}}},
            {"id": "own-status", "uri": f"/{SERVICE}/*", "hosts": ["own-status.test"],
             "upstream_id": "echo",
             "plugins": {"tests.support.plugins:FixedAnswer": {"status": 503,
                                                               "grpc_status": 9}}},
        ]
        config["consumers"] = [{"username": "alice", "plugins": {"key-auth": {"key": "alice-key"}}}]
        gw = GatewayProcess(tmp, config, workers=1)
        with gw:
            yield Setup(gw, backend, tls_backend, tls_port, ca)


def test_unary_call_with_metadata_and_trailers(setup: Setup) -> None:
    with setup.client() as client:
        reply, call = client.unary.with_call(b"hello", metadata=[("x-meta", "m1")], timeout=10)
    assert reply == b"hello"
    trailers = dict(call.trailing_metadata())
    assert trailers["x-trailer"] == "done-unary"
    assert trailers["x-bin-bin"] == b"\x00\x01"
    seen = setup.backend.seen[-1]
    assert seen["x-meta"] == "m1" and seen["x-forwarded-for"] == "127.0.0.1"


def test_streaming_calls(setup: Setup) -> None:
    with setup.client() as client:
        assert list(client.server_stream(b"4", timeout=10)) == [b"message %d" % i for i in range(4)]
        reply, call = client.client_stream.with_call(iter([b"a", b"b", b"c"]), timeout=10)
        assert reply == b"a|b|c"
        assert dict(call.trailing_metadata())["x-trailer"] == "done-client_stream"
        # bidirectional: each answer arrives before the next request is sent
        import queue
        requests: queue.Queue[bytes | None] = queue.Queue()
        requests.put(b"one")
        responses = client.bidi(iter(requests.get, None), timeout=10)
        got = [next(responses)]
        requests.put(b"two")
        got.append(next(responses))
        requests.put(None)
        assert got == [b"echo one", b"echo two"] and list(responses) == []
        # a large server stream, to see flow control carry it through
        big = list(client.server_stream(b"100:32768", timeout=20))
        assert len(big) == 100 and all(len(m) > 32768 for m in big)


def test_upstream_status_passes_through(setup: Setup) -> None:
    with setup.client() as client, pytest.raises(grpc.RpcError) as info:
        client.unary(b"x", metadata=[("x-fail", "PERMISSION_DENIED:not yours")], timeout=10)
    assert info.value.code() == grpc.StatusCode.PERMISSION_DENIED
    assert info.value.details() == "not yours"
    assert dict(info.value.trailing_metadata())["x-trailer"] == "done-unary"


def test_grpcs_upstream(setup: Setup) -> None:
    with setup.client("tls.test") as client:
        assert client.unary(b"over tls", timeout=10) == b"over tls"
    assert setup.tls_backend.seen


def test_grpc_over_the_tls_listener(setup: Setup) -> None:
    """A TLS client (ALPN h2) on tls_listen, the gateway's certificate checked against the CA."""
    credentials = grpc.ssl_channel_credentials(root_certificates=setup.ca.path.read_bytes())
    with EchoClient(f"127.0.0.1:{setup.tls_port}", credentials,
                    options=[("grpc.ssl_target_name_override", "grpc.test")]) as client:
        assert list(client.server_stream(b"3", timeout=10)) == [b"message %d" % i for i in range(3)]
    assert setup.backend.seen[-1]["x-forwarded-proto"] == "https"


def test_gateway_errors_are_grpc_statuses(setup: Setup) -> None:
    # the messages are the gateway's: a client maps a bare HTTP error by itself ("Received http2
    # header with status: 404"), so the details show the answer was a gRPC one
    with setup.client("down.test") as client, pytest.raises(grpc.RpcError) as info:
        client.unary(b"x", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNAVAILABLE
    assert info.value.details() == "upstream connect failed"
    with setup.client() as client, pytest.raises(grpc.RpcError) as info:
        client.channel.unary_unary("/other.Service/Method")(b"x", timeout=10)
    assert info.value.code() == grpc.StatusCode.UNIMPLEMENTED
    assert info.value.details() == "404 Route Not Found"


def test_key_auth_metadata_and_limit_count(setup: Setup) -> None:
    with setup.client("guarded.test") as client:
        with pytest.raises(grpc.RpcError) as info:
            client.unary(b"x", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details() == "Missing API key in request"
        with pytest.raises(grpc.RpcError) as info:
            client.unary(b"x", metadata=[("apikey", "wrong")], timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAUTHENTICATED
        good = [("apikey", "alice-key")]
        reply, call = client.unary.with_call(b"1", metadata=good, timeout=10)
        assert reply == b"1"
        # the plugin's response headers reach the client as metadata
        assert dict(call.initial_metadata())["x-ratelimit-remaining"] == "1"
        assert "apikey" not in setup.backend.seen[-1]  # hide_credentials
        assert client.unary(b"2", metadata=good, timeout=10) == b"2"
        with pytest.raises(grpc.RpcError) as info:
            client.unary(b"3", metadata=good, timeout=10)
        assert info.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED


def test_refusals_read_as_the_status_their_http_code_maps_to(setup: Setup) -> None:
    # one mapping, where local answers are rendered for gRPC: limit-req's default 503 is
    # UNAVAILABLE (the 429 of the guarded route's limit-count is RESOURCE_EXHAUSTED, above)
    with setup.client("limited.test") as client:
        assert client.unary(b"1", timeout=10) == b"1"
        with pytest.raises(grpc.RpcError) as info:
            client.unary(b"2", timeout=10)
        assert info.value.code() == grpc.StatusCode.UNAVAILABLE
        assert info.value.details() == "HTTP 503"


def test_a_plugin_names_its_own_grpc_status(setup: Setup) -> None:
    # Response(503, ..., grpc_status=9): the plugin's status, not 503's UNAVAILABLE
    with setup.client("own-status.test") as client, pytest.raises(grpc.RpcError) as info:
        client.unary(b"x", timeout=10)
    assert info.value.code() == grpc.StatusCode.FAILED_PRECONDITION
    assert info.value.details() == "fixed answer"


def test_client_deadline(setup: Setup) -> None:
    with setup.client() as client, pytest.raises(grpc.RpcError) as info:
        client.unary(b"x", metadata=[("x-sleep", "5")], timeout=0.5)
    assert info.value.code() == grpc.StatusCode.DEADLINE_EXCEEDED


def test_gateway_enforces_grpc_timeout(setup: Setup, tmp_path: Path) -> None:
    """curl sends grpc-timeout 300m and would wait 10 s: the gateway ends the call itself
    (DEADLINE_EXCEEDED in trailers-only form) and cancels it upstream."""
    body = tmp_path / "req"
    body.write_bytes(b"\x00" + struct.pack(">I", 1) + b"x")
    setup.backend.cancelled.clear()
    out = subprocess.run(
        ["curl", "-sS", "-v", "--http2-prior-knowledge", "--max-time", "10", "-o", "/dev/null",
         "-H", "content-type: application/grpc", "-H", "te: trailers", "-H", "grpc-timeout: 300m",
         "-H", "x-sleep: 5", "--data-binary", f"@{body}",
         f"http://127.0.0.1:{setup.gw.port}/{SERVICE}/Unary"],
        capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    assert "< grpc-status: 4" in out.stderr, out.stderr
    assert setup.backend.cancelled.wait(5), "the upstream call was not cancelled"
