"""etcd mode checks a change on the part of the config it affects, against the config of the last
good state, also where it used to check the whole state (seconds at 10k routes): while a refused
key stays in etcd, for an Admin API write made while the watch has changes it has not applied,
and for a key deleted and created again in one burst. The admin ``/status`` counts the states
checked change by change and whole (``store.checks``)."""
from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.etcd.support import EtcdNode, mock_route, requires_etcd
from tests.support.etcd_server import EtcdServer

pytestmark = requires_etcd


@pytest.fixture(scope="module")
def etcd(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EtcdServer]:
    with EtcdServer(tmp_path_factory.mktemp("etcd")) as server:
        yield server


def checks(node: EtcdNode) -> dict[str, int]:
    counted: dict[str, int] = node.admin.get("/status").json()["store"]["checks"]
    return counted


def wait_log(node: EtcdNode, text: str, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while text not in node.process.logs():
        assert time.monotonic() < deadline, f"{text!r} not logged:\n{node.process.logs()}"
        time.sleep(0.05)


class Paused:
    """The node's master stopped (SIGSTOP) while etcd changes: the watch then takes what
    happened meanwhile as one burst."""

    def __init__(self, node: EtcdNode) -> None:
        self.pid = int(node.status()["pid"])

    def __enter__(self) -> Paused:
        os.kill(self.pid, signal.SIGSTOP)
        return self

    def __exit__(self, *exc: Any) -> None:
        os.kill(self.pid, signal.SIGCONT)


def test_a_refused_key_left_in_etcd_is_checked_with_each_change_not_the_whole_state(
        tmp_path: Path, etcd: EtcdServer) -> None:
    etcd.put("/c1/upstreams/u", {"nodes": [{"host": "127.0.0.1", "port": 9}]})
    etcd.put("/c1/routes/a", mock_route("a", "A1"))
    node = EtcdNode(tmp_path, etcd, "/c1").start()
    try:
        before = checks(node)
        bad = etcd.put("/c1/routes/bad", mock_route("bad", "X", upstream_id="missing"))
        wait_log(node, f"etcd revision {bad} rejected")
        # each later change is refused for the key still at fault, named as the whole check names it
        for name in ("b", "c"):
            revision = etcd.put(f"/c1/routes/{name}", mock_route(name, name.upper()))
            wait_log(node, f"etcd revision {revision} rejected")
        assert node.process.logs().count("/c1/routes/bad: upstream_id: unknown upstream 'missing'") == 3
        assert node.body("/b").startswith("404")
        # an Admin API write meanwhile: the state it would make is refused for the other key
        reply = node.admin.put("/apisix/admin/routes/d", json=mock_route("d", "D"))
        assert reply.status_code == 409, reply.text
        assert reply.json()["errors"][0]["key"] == "/c1/routes/bad"
        # fixed: the state with every change made meanwhile is applied
        revision = etcd.put("/c1/routes/bad", mock_route("bad", "X2", upstream_id="u"))
        node.wait_revision(revision)
        assert [node.body(p) for p in ("/a", "/b", "/c", "/bad")] == ["200 A1", "200 B", "200 C", "200 X2"]
        after = checks(node)
        assert after["whole"] == before["whole"], after
        assert after["changes"] >= before["changes"] + 5, after
    finally:
        node.close()


def test_a_key_deleted_and_created_again_in_one_burst_comes_last(tmp_path: Path, etcd: EtcdServer) -> None:
    # two routes for one path: the first created wins (definition order breaks the tie)
    etcd.put("/c2/routes/a", {**mock_route("a", "A1"), "uri": "/same"})
    etcd.put("/c2/routes/b", {**mock_route("b", "B1"), "uri": "/same"})
    node = EtcdNode(tmp_path, etcd, "/c2", workers=2).start()
    try:
        assert node.body("/same") == "200 A1"
        before = checks(node)
        with Paused(node):
            etcd.delete("/c2/routes/a")
            revision = etcd.put("/c2/routes/a", {**mock_route("a", "A2"), "uri": "/same"})
            time.sleep(0.3)  # both events wait in the watch's stream
        node.wait_revision(revision)
        # created again, "a" comes after "b" now, as on a node that reads the whole state
        assert {node.body("/same") for _ in range(8)} == {"200 B1"}
        revision = etcd.put("/c2/routes/b", {**mock_route("b", "B2"), "uri": "/other"})
        node.wait_revision(revision)
        assert {node.body("/same") for _ in range(8)} == {"200 A2"}
        after = checks(node)
        assert after["whole"] == before["whole"], after
    finally:
        node.close()


def test_an_admin_api_write_while_the_watch_has_changes_pending_checks_only_the_changes(
        tmp_path: Path, etcd: EtcdServer) -> None:
    etcd.put("/c3/routes/a", mock_route("a", "A1"))
    node = EtcdNode(tmp_path, etcd, "/c3").start()
    try:
        before = checks(node)
        # another node's write the watch cannot apply yet: its upstream is missing
        pending = etcd.put("/c3/routes/p", mock_route("p", "P", upstream_id="later"))
        wait_log(node, f"etcd revision {pending} rejected")
        # the write that makes it good: checked with the pending change, not the whole state
        reply = node.admin.put("/apisix/admin/upstreams/later",
                               json={"nodes": [{"host": "127.0.0.1", "port": 9}]})
        assert reply.status_code == 201, reply.text
        node.wait_revision(int(reply.json()["modifiedIndex"]))
        assert [node.body(p) for p in ("/a", "/p")] == ["200 A1", "200 P"]
        # and one made while the watch may still be applying another node's write
        replies: list[Any] = []
        with Paused(node):
            etcd.put("/c3/routes/r", mock_route("r", "R"))
            writer = threading.Thread(target=lambda: replies.append(
                node.admin.put("/apisix/admin/routes/q", json=mock_route("q", "Q"))))
            writer.start()
            time.sleep(0.3)
        writer.join(30)
        assert replies and replies[0].status_code == 201, replies
        node.wait_revision(int(replies[0].json()["modifiedIndex"]))
        assert [node.body(p) for p in ("/r", "/q")] == ["200 R", "200 Q"]
        after = checks(node)
        assert after["whole"] == before["whole"], after
    finally:
        node.close()
