"""``gateway import apisix``: an APISIX standalone file (tests/data/apisix-standalone.yaml,
written from the structure APISIX's docs describe) becomes a config ``gateway check`` accepts, a
real gateway serves it, and every item it could not carry over is listed with its path."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import jwt
import pytest
import yaml

from gateway.config import parse_config_text
from tests.support.certs import CertAuthority
from tests.support.gateway import GatewayProcess, http_get
from tests.support.upstream import Upstream, free_port

DATA = Path(__file__).parent / "data" / "apisix-standalone.yaml"

#: Every item of the data file this gateway does not support, by its path in that file.
NOT_CARRIED = {
    "upstreams[1].nodes[0].metadata",
    "upstreams[1].keepalive_pool",
    "upstreams[2].discovery_type",
    "upstreams[2].service_name",
    "upstreams[2]",  # no nodes left: dropped
    "services[0].labels",
    "routes[1].vars",
    "routes[1].labels",
    "routes[1].plugins.serverless-pre-function",
    "routes[2]",  # its upstream was the discovery one
    "routes[3].remote_addrs",
    "routes[4].filter_func",
    "routes[4].plugins.proxy-cache",
    "consumers[2].plugins.hmac-auth",
    "global_rules[0].plugins.prometheus.prefer_name",
    "ssls[0].type",
    "ssls[0].status",
    "plugin_metadata[0]",
    "stream_routes",
}


def gateway_cli(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True,
                          text=True, timeout=60, cwd=cwd)


def apisix_file(tmp_path: Path, upstream_port: int, text: str | None = None) -> Path:
    ca = CertAuthority(tmp_path)
    shop = ca.issue("shop", "shop.example.com", ["shop.example.com"])
    text = (text or DATA.read_text()).replace("__UPSTREAM_PORT__", str(upstream_port))
    # JSON strings are YAML double-quoted scalars: the PEM goes in on one line
    text = text.replace("__CERT_PEM__", json.dumps(shop.cert_pem))
    text = text.replace("__KEY_PEM__", json.dumps(shop.key_pem))
    path = tmp_path / "apisix.yaml"
    path.write_text(text)
    return path


def listed_paths(stderr: str, source: str) -> set[str]:
    prefix = f"{source}: not carried over: "
    return {line[len(prefix):].split(": ", 1)[0] for line in stderr.splitlines()
            if line.startswith(prefix)}


def header_paths(output: str) -> set[str]:
    return {line[4:].split(": ", 1)[0] for line in output.splitlines()
            if line.startswith("#   ")}


def imported(tmp_path: Path, upstream_port: int) -> tuple[Path, subprocess.CompletedProcess[str]]:
    apisix_file(tmp_path, upstream_port)
    out = tmp_path / "imported.yaml"
    done = gateway_cli("import", "apisix", "apisix.yaml", "-o", str(out), cwd=tmp_path)
    return out, done


def test_import_lists_every_unsupported_item_and_the_result_passes_check(tmp_path: Path) -> None:
    out, done = imported(tmp_path, 18080)
    assert done.returncode == 0, done.stderr
    assert listed_paths(done.stderr, "apisix.yaml") == NOT_CARRIED
    text = out.read_text()
    assert header_paths(text) == NOT_CARRIED
    check = gateway_cli("check", "-c", str(out))
    assert check.returncode == 0, check.stderr

    config = yaml.safe_load(text)
    routes = {r["id"]: r for r in config["routes"]}
    assert set(routes) == {"users", "cart", "7", "images", "search", "suggest"}
    users = routes["users"]
    # the service gave its upstream, hosts and plugins; the plugin_config its plugins
    assert users["upstream_id"] == "1" and users["hosts"] == ["shop.example.com"]
    assert set(users["plugins"]) == {"limit-count", "cors", "proxy-rewrite", "key-auth"}
    assert routes["cart"]["plugins"] == {"jwt-auth": {}, "limit-req": {
        "rate": 10, "burst": 5, "key": "remote_addr", "_meta": {"disable": True}}}
    assert [u["id"] for u in config["upstreams"]] == ["1", "cart", "service-200"]
    # a service's inline upstream is shared by its routes, as in APISIX, not copied into each
    assert routes["search"]["upstream_id"] == routes["suggest"]["upstream_id"] == "service-200"
    assert config["upstreams"][2]["checks"]["active"]["type"] == "tcp"
    assert routes["search"]["plugins"] == {"request-size-limit": {"max_body_size": 1048576}}
    assert routes["suggest"]["plugins"] == {"request-size-limit": {"max_body_size": 1024}}
    assert config["upstreams"][0]["checks"]["active"]["http_path"] == "/healthz"
    assert config["upstreams"][1]["type"] == "chash"
    assert [c["username"] for c in config["consumers"]] == ["alice", "bob", "carol"]
    # APISIX's environment references become ours; a literal "${" stays literal
    assert config["consumers"][0]["plugins"]["key-auth"]["key"] == "${ALICE_KEY:=alice-key-0123}"
    assert users["desc"] == "users, see $${wiki}/users"
    loaded = parse_config_text(text, str(out), env={})
    assert loaded.routes[0].desc == "users, see ${wiki}/users"
    assert loaded.consumers[0].plugins["key-auth"]["key"] == "alice-key-0123"
    assert config["consumers"][2]["plugins"] == {}
    assert config["global_rules"][0]["plugins"]["prometheus"] == {}
    assert config["ssls"][0]["snis"] == ["shop.example.com"]


def test_an_imported_route_with_key_auth_proxies_to_a_real_upstream(tmp_path: Path) -> None:
    with Upstream("users") as upstream:
        out, done = imported(tmp_path, upstream.port)
        assert done.returncode == 0, done.stderr
        port = free_port()
        text = out.read_text() + (f"gateway:\n  listen: ['127.0.0.1:{port}']\n"
                                  f"  admin: {{listen: '127.0.0.1:{free_port()}', key: k-123}}\n")
        (tmp_path / "gw").mkdir()
        with GatewayProcess(tmp_path / "gw", text, workers=1) as gw:
            host = {"Host": "shop.example.com"}
            response, _ = http_get(port, "/api/users/42", host)
            assert response.status == 401
            response, body = http_get(port, "/api/users/42", {**host, "apikey": "alice-key-0123"})
            assert response.status == 200, body
            seen: dict[str, Any] = json.loads(body)
            assert seen["target"] == "/users/42"  # proxy-rewrite from the plugin_config
            assert ["x-gateway", "imported"] in [list(h) for h in seen["headers"]]
            assert response.getheader("Access-Control-Allow-Origin") is None  # no Origin sent
            response, body = http_get(port, "/status")
            assert response.status == 200 and json.loads(body) == {"status": "ok"}
            listed = gw.cli("routes")
            assert listed.returncode == 0, listed.stderr
            assert [line.split()[0] for line in listed.stdout.splitlines()[-6:]] == [
                "users", "cart", "7", "images", "search", "suggest"]
            token = jwt.encode({"key": "bob-jwt", "exp": int(time.time()) + 600},
                               "bob-secret-which-is-long-enough-for-hs256", algorithm="HS256")
            assert http_get(port, "/cart/items")[0].status == 401
            response, body = http_get(port, "/cart/items", {"Authorization": f"Bearer {token}",
                                                            "X-User-Id": "u1"})
            assert response.status == 200, body
            assert json.loads(body)["target"] == "/cart/items"
            response, body = http_get(port, "/search?q=x")
            assert response.status == 200 and json.loads(body)["target"] == "/search?q=x"
            gw.assert_no_lost_exceptions()


def test_a_result_that_would_not_load_is_not_written(tmp_path: Path) -> None:
    source = tmp_path / "apisix.yaml"
    source.write_text("routes:\n  - id: 1\n    uri: /a\n    upstream:\n      nodes:\n"
                      "        '127.0.0.1:80': 1\n    plugins:\n"
                      "      limit-count: {count: 0, time_window: 60}\n#END\n")
    out = tmp_path / "out.yaml"
    done = gateway_cli("import", "apisix", str(source), "-o", str(out))
    assert done.returncode == 1
    assert "routes[0].plugins.limit-count.count" in done.stderr
    assert "not written" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize("text", ["routes: [\n", "- just a list\n"])
def test_unreadable_input_is_an_error(tmp_path: Path, text: str) -> None:
    source = tmp_path / "apisix.yaml"
    source.write_text(text)
    done = gateway_cli("import", "apisix", str(source), "-o", str(tmp_path / "out.yaml"))
    assert done.returncode == 1
    assert not (tmp_path / "out.yaml").exists()


def test_without_output_the_result_goes_to_stdout(tmp_path: Path) -> None:
    out, done = imported(tmp_path, 18080)
    assert done.returncode == 0, done.stderr
    printed = gateway_cli("import", "apisix", "apisix.yaml", cwd=tmp_path)
    assert printed.returncode == 0
    assert printed.stdout == out.read_text()


def test_an_item_that_is_not_a_mapping_is_listed_and_the_others_keep_their_paths(
        tmp_path: Path) -> None:
    source = tmp_path / "apisix.yaml"
    source.write_text("routes:\n  - 5\n  - id: a\n    uri: /a\n    vars: [[arg_x, '==', '1']]\n"
                      "    upstream: {nodes: {'127.0.0.1:1980': 1}}\n#END\n")
    done = gateway_cli("import", "apisix", "apisix.yaml", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert listed_paths(done.stderr, "apisix.yaml") == {"routes[0]", "routes[1].vars"}
    assert [r["id"] for r in yaml.safe_load(done.stdout)["routes"]] == ["a"]
