"""The Admin API against a real gateway (2 workers, a real upstream), through httpx: each
status code, the APISIX v3 answer shapes, and a route created by the API serving traffic."""
from __future__ import annotations

import http.client
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import yaml

from tests.admin.support import KEY, AdminGateway, admin_gateway, upstream_connections
from tests.support.certs import CertAuthority
from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import free_port

ROUTES = "/apisix/admin/routes"
UPSTREAMS = "/apisix/admin/upstreams"


@pytest.fixture(scope="module")
def gw(tmp_path_factory: pytest.TempPathFactory) -> Iterator[AdminGateway]:
    with admin_gateway(tmp_path_factory.mktemp("admin")) as gateway:
        yield gateway


def proxied(port: int, path: str) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


# ------------------------------------------------------------------- the key and the networks


def test_no_key_is_401_and_a_wrong_one_too(gw: AdminGateway) -> None:
    plain = httpx.get(gw.url + ROUTES)
    assert plain.status_code == 401
    assert "error_msg" in plain.json()
    assert httpx.get(gw.url + ROUTES, headers={"X-API-KEY": "wrong"}).status_code == 401
    assert httpx.put(gw.url + ROUTES + "/x", json={"uri": "/x", "upstream_id": "backend"}).status_code == 401
    assert httpx.get(gw.url + ROUTES, headers={"Authorization": f"Bearer {KEY}"}).status_code == 200


def test_outside_allow_admin_is_403(tmp_path: Path) -> None:
    config = base_config(free_port())
    config["gateway"]["admin"].update({"key": KEY, "allow_admin": ["192.0.2.0/24"]})
    with GatewayProcess(tmp_path, config, workers=1):
        admin = config["gateway"]["admin"]["listen"]
        reply = httpx.get(f"http://{admin}{ROUTES}", headers={"X-API-KEY": KEY})
        assert reply.status_code == 403


# ------------------------------------------------------------------- reads


def test_list_and_get_have_apisix_v3_shapes(gw: AdminGateway) -> None:
    listing = gw.client.get(UPSTREAMS)
    assert listing.status_code == 200
    body = listing.json()
    assert body["total"] == len(body["list"]) >= 1
    entry = next(e for e in body["list"] if e["value"]["id"] == "backend")
    assert entry["key"] == "/apisix/upstreams/backend"
    assert isinstance(entry["createdIndex"], int) and isinstance(entry["modifiedIndex"], int)
    one = gw.client.get(UPSTREAMS + "/backend")
    assert one.status_code == 200
    assert one.json() == entry
    assert one.headers["etag"] == f'"{entry["modifiedIndex"]}"'


def test_missing_resource_is_404(gw: AdminGateway) -> None:
    for method in ("GET", "PATCH", "DELETE"):
        reply = gw.client.request(method, ROUTES + "/no-such-route", json={} if method == "PATCH" else None)
        assert reply.status_code == 404, (method, reply.text)
        assert "not found" in reply.json()["error_msg"]


def test_plugins_list_and_schema(gw: AdminGateway) -> None:
    names = gw.client.get("/apisix/admin/plugins/list").json()
    assert "key-auth" in names and "limit-count" in names
    for path in ("/apisix/admin/plugins/limit-count", "/apisix/admin/schema/plugins/limit-count"):
        schema = gw.client.get(path).json()
        assert schema["type"] == "object" and "count" in schema["properties"]
    assert gw.client.get("/apisix/admin/plugins/no-such-plugin").status_code == 404


# ------------------------------------------------------------------- writes


def test_put_post_patch_delete(gw: AdminGateway) -> None:
    created = gw.client.put(ROUTES + "/crud", json={"uri": "/crud/*", "upstream_id": "backend"})
    assert created.status_code == 201, created.text
    assert created.json()["value"] == {"id": "crud", "uri": "/crud/*", "upstream_id": "backend"}
    assert proxied(gw.port, "/crud/1")[0] == 200
    replaced = gw.client.put(ROUTES + "/crud", json={"uri": "/crud2/*", "upstream_id": "backend"})
    assert replaced.status_code == 200
    assert replaced.json()["modifiedIndex"] > created.json()["modifiedIndex"]
    assert replaced.json()["createdIndex"] == created.json()["createdIndex"]
    assert proxied(gw.port, "/crud/1")[0] == 404
    patched = gw.client.patch(ROUTES + "/crud", json={"methods": ["GET"], "uri": "/crud3/*"})
    assert patched.status_code == 200, patched.text
    assert patched.json()["value"] == {"id": "crud", "uri": "/crud3/*", "upstream_id": "backend",
                                       "methods": ["GET"]}
    removed = gw.client.patch(ROUTES + "/crud", json={"methods": None})
    assert "methods" not in removed.json()["value"]
    posted = gw.client.post(ROUTES, json={"uri": "/posted", "upstream_id": "backend"})
    assert posted.status_code == 201, posted.text
    new_id = posted.json()["value"]["id"]
    assert posted.json()["key"] == f"/apisix/routes/{new_id}"
    assert gw.client.get(f"{ROUTES}/{new_id}").status_code == 200
    for name in ("crud", new_id):
        deleted = gw.client.delete(f"{ROUTES}/{name}")
        assert deleted.status_code == 200
        assert deleted.json() == {"deleted": "1", "key": f"/apisix/routes/{name}"}
        assert gw.client.get(f"{ROUTES}/{name}").status_code == 404
    assert proxied(gw.port, "/crud3/1")[0] == 404


def test_bad_body_is_400_naming_the_field(gw: AdminGateway) -> None:
    before = gw.path.read_bytes()
    bad_port = gw.client.put(UPSTREAMS + "/bad", json={"nodes": [{"host": "127.0.0.1", "port": 70000}]})
    assert bad_port.status_code == 400
    error = bad_port.json()
    assert error["errors"][0]["path"] == "nodes[0].port"
    assert "nodes[0].port" in error["error_msg"]
    unknown = gw.client.put(ROUTES + "/bad", json={"uri": "/bad", "upstream_id": "backend", "upsteam": 1})
    assert unknown.status_code == 400
    assert unknown.json()["errors"][0]["path"] == "upsteam"
    dangling = gw.client.put(ROUTES + "/bad", json={"uri": "/bad", "upstream_id": "nowhere"})
    assert dangling.status_code == 400
    assert dangling.json()["errors"][0] == {"path": "upstream_id", "config_path": "routes[1].upstream_id",
                                            "message": "unknown upstream 'nowhere'"}
    plugin = gw.client.put(ROUTES + "/bad", json={"uri": "/bad", "upstream_id": "backend",
                                                  "plugins": {"limit-count": {"count": -1}}})
    assert plugin.status_code == 400
    assert plugin.json()["errors"][0]["path"].startswith("plugins.limit-count")
    assert gw.client.put(ROUTES + "/bad", content=b"{not json").status_code == 400
    assert gw.client.put(ROUTES + "/bad", json=[1, 2]).status_code == 400
    other_name = gw.client.put(ROUTES + "/bad", json={"id": "other", "uri": "/bad", "upstream_id": "backend"})
    assert other_name.status_code == 400
    assert gw.path.read_bytes() == before  # nothing written
    assert gw.client.get(ROUTES + "/bad").status_code == 404


def test_deleting_an_upstream_a_route_uses_is_409(gw: AdminGateway) -> None:
    reply = gw.client.delete(UPSTREAMS + "/backend")
    assert reply.status_code == 409
    assert "routes[0].upstream_id" in reply.json()["error_msg"]
    assert gw.client.get(UPSTREAMS + "/backend").status_code == 200
    assert proxied(gw.port, "/hand/x")[0] == 200


def test_post_of_an_existing_name_and_put_of_a_consumer(gw: AdminGateway) -> None:
    consumer = gw.client.put("/apisix/admin/consumers", json={"username": "alice",
                                                              "plugins": {"key-auth": {"key": "alice-key"}}})
    assert consumer.status_code == 201, consumer.text
    assert gw.client.get("/apisix/admin/consumers/alice").json()["value"]["username"] == "alice"
    assert gw.client.delete("/apisix/admin/consumers/alice").status_code == 200


def test_stale_if_match_is_412(gw: AdminGateway) -> None:
    first = gw.client.put(ROUTES + "/cas", json={"uri": "/cas", "upstream_id": "backend"})
    index = first.json()["modifiedIndex"]
    second = gw.client.put(ROUTES + "/cas", json={"uri": "/cas2", "upstream_id": "backend"},
                           headers={"If-Match": f'"{index}"'})
    assert second.status_code == 200, second.text
    stale = gw.client.put(ROUTES + "/cas", json={"uri": "/cas3", "upstream_id": "backend"},
                          headers={"If-Match": f'"{index}"'})
    assert stale.status_code == 412
    assert gw.client.get(ROUTES + "/cas").json()["value"]["uri"] == "/cas2"
    assert gw.client.delete(ROUTES + f"/cas?modifiedIndex={index}").status_code == 412
    assert gw.client.patch(ROUTES + "/cas", json={"uri": "/x"}, headers={"If-Match": f'"{index}"'}).status_code == 412
    current = second.json()["modifiedIndex"]
    assert gw.client.delete(ROUTES + "/cas", headers={"If-Match": f'"{current}"'}).status_code == 200


def test_global_rules_ssls_and_plugin_metadata(gw: AdminGateway, tmp_path: Path) -> None:
    rule = gw.client.put("/apisix/admin/global_rules/1", json={"plugins": {"request-id": {}}})
    assert rule.status_code == 201, rule.text
    status, _ = proxied(gw.port, "/hand/x")
    assert status == 200
    assert gw.client.delete("/apisix/admin/global_rules/1").status_code == 200
    bad_ssl = gw.client.put("/apisix/admin/ssls/1", json={"cert": "x", "key": "y", "snis": ["a.example"]})
    assert bad_ssl.status_code == 400
    assert {"cert", "key"} <= {e["path"] for e in bad_ssl.json()["errors"]}
    issued = CertAuthority(tmp_path / "ca").issue("a", "a.example", ["a.example"])
    pem_cert, pem_key = issued.cert_pem, issued.key_pem
    ssl = gw.client.put("/apisix/admin/ssls/1", json={"cert": pem_cert, "key": pem_key, "snis": ["a.example"]})
    assert ssl.status_code == 201, ssl.text
    assert gw.client.get("/apisix/admin/ssls/1").json()["value"]["cert"] == pem_cert
    assert gw.client.delete("/apisix/admin/ssls/1").status_code == 200
    metadata = gw.client.put("/apisix/admin/plugin_metadata/key-auth", json={"x": 1})
    assert metadata.status_code == 400
    assert "takes no metadata" in metadata.json()["error_msg"]


# ------------------------------------------------------------------- live on every worker


def test_route_created_by_the_api_serves_on_every_worker(gw: AdminGateway) -> None:
    reply = gw.client.put(ROUTES + "/live", json={"uri": "/live/*", "upstream_id": "backend"})
    assert reply.status_code == 201
    version = gw.version()
    workers = gw.process.status()["workers"]
    assert len(workers) == 2 and all(w["version"] == version for w in workers)
    before = len(gw.upstream.received)
    for i in range(40):  # new connections: SO_REUSEPORT spreads them over both workers
        status, _ = proxied(gw.port, f"/live/{i}")
        assert status == 200
    reached = [r.target for r in gw.upstream.received[before:]]
    assert sorted(reached) == sorted(f"/live/{i}" for i in range(40))
    # each worker proxied some of them: each holds a pooled connection to the upstream
    for worker in workers:
        assert upstream_connections(worker["pid"], gw.upstream.port) >= 1, worker


# ------------------------------------------------------------------- the file


def test_the_file_is_written_back_with_its_comments(gw: AdminGateway) -> None:
    gw.client.put(ROUTES + "/written", json={"uri": "/written", "upstream_id": "backend", "desc": "yes"})
    text = gw.path.read_text()
    for comment in ("# The gateway of the admin tests.", "# the Admin API", "# the test upstream: keep this comment",
                    "# one node", "# hand-written route: keep this comment too", "# untouched by the API"):
        assert comment in text
    data = yaml.safe_load(text)
    written = next(r for r in data["routes"] if r["id"] == "written")
    assert written == {"id": "written", "uri": "/written", "upstream_id": "backend", "desc": "yes"}
    check = subprocess.run([sys.executable, "-m", "gateway", "check", "-c", str(gw.path)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert gw.client.delete(ROUTES + "/written").status_code == 200
    assert "id: written" not in gw.path.read_text()


def test_a_hand_edit_not_yet_loaded_is_not_overwritten(tmp_path: Path) -> None:
    with admin_gateway(tmp_path, workers=1) as gw:
        edited = gw.path.read_text().replace("uri: /hand/*", "uri: /hand/*\n    bogus: 1")
        gw.path.write_text(edited)  # invalid: the watcher rejects it, the old config runs on
        reply = gw.client.put(ROUTES + "/api", json={"uri": "/api", "upstream_id": "backend"})
        assert reply.status_code == 409, reply.text
        assert "changed on disk" in reply.json()["error_msg"]
        assert gw.path.read_text() == edited
        # the edit fixed and applied: the API writes on top of it
        fixed = gw.path.read_text().replace("    bogus: 1\n", "    desc: by hand\n")
        version = gw.version()
        gw.path.write_text(fixed)
        gw.process.wait_version(version + 1)
        reply = gw.client.put(ROUTES + "/api", json={"uri": "/api", "upstream_id": "backend"})
        assert reply.status_code == 201, reply.text
        text = gw.path.read_text()
        assert "desc: by hand" in text and "id: api" in text


def test_concurrent_writes_on_one_version_one_wins(gw: AdminGateway) -> None:
    from concurrent.futures import ThreadPoolExecutor

    index = gw.client.put(ROUTES + "/race", json={"uri": "/race", "upstream_id": "backend"}).json()["modifiedIndex"]

    def write(i: int) -> int:
        with httpx.Client(base_url=gw.url, headers={"X-API-KEY": KEY}, timeout=30) as client:
            return client.put(ROUTES + "/race", json={"uri": f"/race{i}", "upstream_id": "backend"},
                              headers={"If-Match": f'"{index}"'}).status_code

    with ThreadPoolExecutor(4) as pool:
        statuses = sorted(pool.map(write, range(4)))
    assert statuses == [200, 412, 412, 412]
    assert gw.client.delete(ROUTES + "/race").status_code == 200


def test_a_comment_edited_by_hand_is_kept_by_the_next_write(tmp_path: Path) -> None:
    with admin_gateway(tmp_path, workers=1) as gw:
        gw.path.write_text(gw.path.read_text().replace("# one node", "# one node, edited by hand"))
        # the same config: no new version, but the API now edits the new text
        deadline = time.monotonic() + 10
        while True:
            reply = gw.client.put(ROUTES + "/after-comment", json={"uri": "/c", "upstream_id": "backend"})
            if reply.status_code != 409 or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert reply.status_code == 201, reply.text
        text = gw.path.read_text()
        assert "# one node, edited by hand" in text and "id: after-comment" in text
