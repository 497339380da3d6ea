"""etcd mode with a real etcd (Debian's etcd-server) on loopback: the config comes from etcd,
Admin API writes go there, every change arrives through the master's one watch, and a node
keeps serving (and starts) while etcd is down."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.etcd.support import EtcdNode, mock_route, requires_etcd
from tests.support.etcd_server import EtcdServer, b64
from tests.support.upstream import free_port

pytestmark = requires_etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    """One etcd for the module: each test has a prefix of its own."""
    with EtcdServer(tmp_path_factory.mktemp("etcd")) as server:
        yield server


def test_config_comes_from_etcd_and_follows_every_write(tmp_path: Path, etcd: EtcdServer) -> None:
    etcd.put("/t1/routes/a", mock_route("a", "A1"))
    node = EtcdNode(tmp_path, etcd, "/t1", workers=2).start()
    try:
        assert node.body("/a") == "200 A1"
        # an Admin API write lands in etcd, as the body, and both workers serve it on return
        reply = node.admin.put("/apisix/admin/routes/b", json=mock_route("b", "B1"))
        assert reply.status_code == 201, reply.text
        written = reply.json()["modifiedIndex"]
        assert etcd.get("/t1/routes/b") == {"id": "b", **mock_route("b", "B1")}
        assert node.worker_revisions() == [written, written]
        assert {node.body("/b") for _ in range(8)} == {"200 B1"}
        # a put made with another tool arrives through the watch
        revision = etcd.put("/t1/routes/a", mock_route("a", "A2"))
        node.wait_revision(revision)
        assert {node.body("/a") for _ in range(8)} == {"200 A2"}
        status = node.admin.get("/status").json()
        assert status["store"]["revision"] == revision
        assert [w["revision"] for w in status["workers"]] == [revision, revision]
        # and a delete
        revision = etcd.delete("/t1/routes/a")
        node.wait_revision(revision)
        assert node.body("/a").startswith("404")
        assert "watching" not in node.process.logs()  # one watch, never made again
    finally:
        node.close()


def test_an_invalid_state_is_logged_with_its_key_and_the_last_good_config_stays(
        tmp_path: Path, etcd: EtcdServer) -> None:
    etcd.put("/t2/routes/a", mock_route("a", "A1"))
    node = EtcdNode(tmp_path, etcd, "/t2").start()
    try:
        bad = etcd.put("/t2/routes/a", mock_route("a", "A2", upstream_id="missing"))
        logs = node.process.logs
        deadline = time.monotonic() + 10
        # its own state (a put made before the watch is in place comes with the next one)
        while f"etcd revision {bad} rejected" not in logs():
            assert time.monotonic() < deadline, logs()
            time.sleep(0.05)
        etcd.put("/t2/routes/junk", "{not json")
        while "/t2/routes/junk: the value is not JSON" not in logs():
            assert time.monotonic() < deadline, logs()
            time.sleep(0.05)
        assert "/t2/routes/a: upstream_id: unknown upstream 'missing'" in logs()
        assert f"etcd revision {bad} rejected" in logs()
        assert node.body("/a") == "200 A1"
        # fixed in etcd: the state is good again and applied
        etcd.delete("/t2/routes/junk")
        revision = etcd.put("/t2/routes/a", mock_route("a", "A3"))
        node.wait_revision(revision)
        assert node.body("/a") == "200 A3"
        # the Admin API refuses what the checker refuses, naming the field
        reply = node.admin.put("/apisix/admin/routes/c", json={"uri": "/c", "upstream_id": "nope"})
        assert reply.status_code == 400
        assert reply.json()["errors"][0]["path"] == "upstream_id"
        assert etcd.get("/t2/routes/c") is None
    finally:
        node.close()


def test_conditional_writes_compare_the_mod_revision(tmp_path: Path, etcd: EtcdServer) -> None:
    node = EtcdNode(tmp_path, etcd, "/t3").start()
    try:
        created = node.admin.put("/apisix/admin/routes/a", json=mock_route("a", "A1")).json()
        assert created["createdIndex"] == created["modifiedIndex"]
        index = created["modifiedIndex"]
        newer = etcd.put("/t3/routes/a", mock_route("a", "A2"))  # someone else's write
        stale = node.admin.put("/apisix/admin/routes/a", json=mock_route("a", "A3"),
                               headers={"If-Match": f'"{index}"'})
        assert stale.status_code == 412, stale.text
        assert etcd.get("/t3/routes/a") == mock_route("a", "A2")
        fresh = node.admin.put("/apisix/admin/routes/a", json=mock_route("a", "A3"),
                               headers={"If-Match": f'"{newer}"'})
        assert fresh.status_code == 200, fresh.text
        assert fresh.json()["createdIndex"] == index
        assert node.body("/a") == "200 A3"
        read = node.admin.get("/apisix/admin/routes/a")
        assert read.headers["ETag"] == f'"{fresh.json()["modifiedIndex"]}"'
        assert node.admin.delete("/apisix/admin/routes/a", params={"modifiedIndex": index}).status_code == 412
        assert node.admin.delete("/apisix/admin/routes/a").status_code == 200
        assert node.body("/a").startswith("404")
        assert node.admin.delete("/apisix/admin/routes/a").status_code == 404
        # a delete the rest still needs names what needs it by its key
        etcd.put("/t3/upstreams/u", {"nodes": [{"host": "127.0.0.1", "port": 9}]})
        revision = etcd.put("/t3/routes/uses-u", {"uri": "/u", "upstream_id": "u"})
        node.wait_revision(revision)
        refused = node.admin.delete("/apisix/admin/upstreams/u")
        assert refused.status_code == 409
        assert refused.json()["errors"][0]["key"] == "/t3/routes/uses-u"
        assert "/t3/routes/uses-u: upstream_id: unknown upstream 'u'" in refused.json()["error_msg"]
    finally:
        node.close()


def test_resources_in_the_node_file_are_refused(tmp_path: Path, etcd: EtcdServer) -> None:
    node = EtcdNode(tmp_path, etcd, "/t4")
    node.process.write_config({**node.node_config, "routes": [{"id": "x", **mock_route("x", "X")}]})
    with pytest.raises(RuntimeError, match="in etcd mode the resources live in etcd"):
        node.start()
    node.admin.close()


def gateway_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "gateway", *args], capture_output=True, text=True,
                          timeout=60)


def test_export_and_import_round_trip(tmp_path: Path, etcd: EtcdServer) -> None:
    node = EtcdNode(tmp_path, etcd, "/t5")  # only its node file, whose first endpoint is dead
    node.node_config["gateway"]["store"]["endpoints"].insert(0, f"http://127.0.0.1:{free_port()}")
    node.process.write_config(node.node_config)
    node_file = str(node.process.config_path)
    resources = {
        "upstreams": [{"id": "u", "nodes": [{"host": "127.0.0.1", "port": 9}]}],
        "routes": [{"id": "r1", "uri": "/r1", "upstream_id": "u"}, {"id": "r2", **mock_route("r2", "R2")}],
        "consumers": [{"username": "alice", "plugins": {"key-auth": {"key": "${ALICE_KEY}"}}}],
        "global_rules": [{"id": "g", "plugins": {"request-id": {}}}],
    }
    source = tmp_path / "resources.yaml"
    source.write_text(yaml.safe_dump(resources, sort_keys=False))
    etcd.put("/t5/routes/old", mock_route("old", "O"))  # not in the file: deleted by the import
    os.environ["ALICE_KEY"] = "alice-secret"
    try:
        done = gateway_cli("config", "import", str(source), "-c", node_file)
    finally:
        del os.environ["ALICE_KEY"]
    assert done.returncode == 0, done.stderr
    assert "one transaction" in done.stdout
    assert etcd.keys("/t5/") == ["/t5/consumers/alice", "/t5/global_rules/g",
                                 "/t5/routes/r1", "/t5/routes/r2", "/t5/upstreams/u"]
    assert etcd.get("/t5/consumers/alice")["plugins"]["key-auth"]["key"] == "${ALICE_KEY}"
    exported = tmp_path / "exported.yaml"
    done = gateway_cli("config", "export", "-c", node_file, "--to", str(exported))
    assert done.returncode == 0, done.stderr
    assert yaml.safe_load(exported.read_text()) == resources
    checked = gateway_cli("check", "-c", node_file)
    assert checked.returncode == 0 and "etcd mode: the resources are under /t5 in etcd" in checked.stdout
    # an invalid file: every issue with its path, nothing written
    broken = tmp_path / "broken.yaml"
    broken.write_text("routes:\n  - id: r1\n    uri: /r1\n    upstream_id: gone\n")
    before = etcd.revision()
    done = gateway_cli("config", "import", str(broken), "-c", node_file)
    assert done.returncode == 2
    assert "routes[0].upstream_id: unknown upstream 'gone'" in done.stderr
    assert "nothing was written" in done.stderr
    assert etcd.revision() == before


def test_outage_restart_compaction_and_two_nodes_converging(tmp_path: Path) -> None:
    """Two nodes on one etcd (of this test's own: it is killed): they converge on every write,
    keep serving while etcd is down, a node restarted meanwhile serves its on-disk copy, and what
    changed while a node was away arrives, a compaction of what it missed included."""
    with EtcdServer(tmp_path) as etcd:
        etcd.put("/t6/routes/a", mock_route("a", "A1"))
        first = EtcdNode(tmp_path / "first", etcd, "/t6").start()
        second = EtcdNode(tmp_path / "second", etcd, "/t6").start()
        try:
            reply = first.admin.put("/apisix/admin/routes/b", json=mock_route("b", "B1"))
            assert reply.status_code == 201, reply.text
            written = reply.json()["modifiedIndex"]
            second.wait_revision(written, timeout=1.0)  # within a second of the write
            assert first.worker_revisions() == second.worker_revisions() == [written]
            assert second.body("/b") == "200 B1"

            etcd.kill()
            for node in (first, second):
                node.process.wait_version(1)
                deadline = time.monotonic() + 10
                while node.status()["store"]["connected"]:
                    assert time.monotonic() < deadline
                    time.sleep(0.05)
                assert (node.body("/a"), node.body("/b")) == ("200 A1", "200 B1")
            assert first.admin.put("/apisix/admin/routes/c", json=mock_route("c", "C")).status_code == 503

            first.stop()  # started again while etcd is down: serves its on-disk copy
            first.start()
            assert (first.body("/a"), first.body("/b")) == ("200 A1", "200 B1")
            assert "starting from the on-disk copy of etcd revision" in first.process.logs()

            # the second node is away while etcd comes back, changes, and compacts what it missed
            assert second.process.proc is not None
            os.kill(second.process.proc.pid, signal.SIGSTOP)
            try:
                etcd.start()
                etcd.put("/t6/routes/a", mock_route("a", "A2"))
                changed = etcd.put("/t6/routes/b", mock_route("b", "B2"))
                etcd.compact(changed)
            finally:
                os.kill(second.process.proc.pid, signal.SIGCONT)
            for node in (first, second):
                node.wait_revision(changed)
                assert (node.body("/a"), node.body("/b")) == ("200 A2", "200 B2")
            assert f"etcd compacted revision {changed}" in second.process.logs()
            assert first.worker_revisions() == second.worker_revisions() == [changed]
        finally:
            first.close()
            second.close()


def test_gateway_routes_shows_the_etcd_revision_of_each_worker(tmp_path: Path, etcd: EtcdServer) -> None:
    revision = etcd.put("/t10/routes/a", mock_route("a", "A1"))
    node = EtcdNode(tmp_path, etcd, "/t10").start()
    try:
        shown = node.process.cli("routes")
        assert shown.returncode == 0, shown.stderr
        assert f"worker 0 pid {node.process.worker_pids()[0]}: version 1 (etcd revision {revision})" \
            in shown.stdout
        assert "a   /a    *" in shown.stdout
    finally:
        node.close()


def test_node_file_edits_apply_with_etcds_resources_and_the_store_stays(tmp_path: Path, etcd: EtcdServer) -> None:
    etcd.put("/t12/routes/a", mock_route("a", "A1"))
    node = EtcdNode(tmp_path, etcd, "/t12").start()
    try:
        moved = {"gateway": {**node.node_config["gateway"],
                             "store": {**node.node_config["gateway"]["store"], "prefix": "/elsewhere"}}}
        node.process.write_config(moved)
        deadline = time.monotonic() + 10
        while "gateway.store: the store changes only on restart" not in node.process.logs():
            assert time.monotonic() < deadline, node.process.logs()
            time.sleep(0.05)
        node.process.write_config({"gateway": {**node.node_config["gateway"], "client_max_body_size": 10}})
        node.process.wait_version(2)
        assert node.body("/a") == "200 A1"  # the node's settings changed; the resources are etcd's
    finally:
        node.close()


def test_an_import_larger_than_one_transaction_is_batched_in_order(tmp_path: Path, etcd: EtcdServer) -> None:
    node = EtcdNode(tmp_path, etcd, "/t13")
    routes = [{"id": f"r{i:03}", "uri": f"/r{i}", "upstream_id": "u"} for i in range(150)]
    source = tmp_path / "many.yaml"
    source.write_text(yaml.safe_dump({"upstreams": [{"id": "u", "nodes": [{"host": "127.0.0.1", "port": 9}]}],
                                      "routes": routes}))
    done = gateway_cli("config", "import", str(source), "-c", str(node.process.config_path))
    assert done.returncode == 0, done.stderr
    assert "151 resources" in done.stdout and "(2 transactions)" in done.stdout
    assert len(etcd.keys("/t13/")) == 151
    # the upstream the routes name went in with the first transaction
    revisions = {kv["key"]: int(kv["mod_revision"]) for kv in etcd.call(
        "/v3/kv/range", {"key": b64("/t13/"), "range_end": b64("/t130")})["kvs"]}
    upstream = revisions.pop(b64("/t13/upstreams/u"))
    assert upstream == min(revisions.values()) < max(revisions.values())
    node.admin.close()
