"""`scheme: grpc` / `grpcs` on upstreams: accepted with their settings, combinations that
cannot work rejected with the place and the reason."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from gateway.config import ConfigError, parse_config_file
from gateway.upstream.compile import compile_upstream
from tests.support.certs import CertAuthority


def load(tmp_path: Path, upstream: dict[str, Any], **route: Any) -> Any:
    path = tmp_path / "gateway.yaml"
    path.write_text(yaml.safe_dump({
        "gateway": {"listen": ["127.0.0.1:9080"]},
        "upstreams": [{"id": "svc", "nodes": [{"host": "127.0.0.1", "port": 50051}], **upstream}],
        "routes": [{"id": "rpc", "uri": "/test.Echo/*", "upstream_id": "svc", **route}]}))
    return parse_config_file(path.read_bytes(), str(path))


def errors(tmp_path: Path, upstream: dict[str, Any], **route: Any) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        load(tmp_path, upstream, **route)
    return [(i.path, i.message) for i in info.value.issues]


def test_grpc_and_grpcs_compile_to_grpc_groups(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path / "ca")
    plain = load(tmp_path, {"scheme": "grpc"}).upstreams[0]
    group = compile_upstream(plain, "svc")
    assert group.grpc and group.nodes[0].ssl is None
    secure = load(tmp_path, {"scheme": "grpcs", "tls": {"ca": str(ca.path)}}).upstreams[0]
    group = compile_upstream(secure, "svc")
    node = group.nodes[0]
    assert group.grpc and node.ssl is not None and node.server_hostname == "127.0.0.1"
    https = compile_upstream(load(tmp_path, {"scheme": "https", "tls": {"ca": str(ca.path)}})
                             .upstreams[0], "svc")
    # grpcs offers h2 in ALPN: never the same context (or pooled TLS connection) as https
    assert not https.grpc and https.nodes[0].ssl is not node.ssl


def test_tls_settings_need_a_tls_scheme(tmp_path: Path) -> None:
    assert ("upstreams[0].tls",
            "tls applies to schemes https and grpcs only (the scheme is grpc)") in \
        errors(tmp_path, {"scheme": "grpc", "tls": {"verify": False}})


def test_unknown_scheme_is_named(tmp_path: Path) -> None:
    [(path, message)] = errors(tmp_path, {"scheme": "h2c"})
    assert path == "upstreams[0].scheme" and "grpcs" in message


def test_retry_on_statuses_does_not_apply_to_grpc(tmp_path: Path) -> None:
    [(path, message)] = errors(tmp_path, {"scheme": "grpc", "retry_on_statuses": [503]})
    assert path == "upstreams[0].retry_on_statuses" and "grpc-status" in message


def test_websocket_route_to_grpc_upstream(tmp_path: Path) -> None:
    [(path, message)] = errors(tmp_path, {"scheme": "grpc"}, enable_websocket=True)
    assert path == "routes[0].enable_websocket" and "grpc" in message
