"""etcd mode against an etcd of each test's own: one that comes back with a lower revision (its
data lost, or restored from an old backup), and one with authentication whose tokens expire."""
from __future__ import annotations

import shutil
import signal
import time
from pathlib import Path

import httpx
import pytest

from tests.etcd.support import EtcdNode, mock_route, requires_etcd
from tests.support.certs import CertAuthority
from tests.support.etcd_server import EtcdServer

pytestmark = requires_etcd


def test_a_revision_going_back_makes_the_node_read_everything_again(tmp_path: Path) -> None:
    with EtcdServer(tmp_path) as etcd:
        for i in range(5):
            etcd.put("/t7/routes/a", mock_route("a", f"A{i}"))
        before = etcd.put("/t7/routes/b", mock_route("b", "B"))
        node = EtcdNode(tmp_path / "node", etcd, "/t7").start()
        try:
            node.wait_revision(before)
            etcd.kill()
            shutil.rmtree(etcd.dir / "data")  # a new etcd on the same address: revisions restart
            etcd.start()
            now = etcd.put("/t7/routes/a", mock_route("a", "fresh"))
            assert now < before
            node.wait_body("/a", "200 fresh")
            deadline = time.monotonic() + 10
            while node.body("/b").startswith("200"):  # gone with the lost data
                assert time.monotonic() < deadline, node.process.logs()
                time.sleep(0.05)
            assert f"etcd's revision went back from {before}" in node.process.logs()
            node.wait_revision(now)
            assert node.worker_revisions() == [now]
        finally:
            node.close()


def auth_call(etcd: EtcdServer, path: str, body: dict[str, str]) -> None:
    reply = httpx.post(etcd.url + path, json=body, timeout=5).json()
    assert "error" not in reply, reply


def test_etcd_with_authentication_and_expiring_tokens(tmp_path: Path) -> None:
    with EtcdServer(tmp_path, ["--auth-token-ttl", "1"]) as etcd:
        etcd.put("/t8/routes/a", mock_route("a", "A1"))
        auth_call(etcd, "/v3/auth/user/add", {"name": "root", "password": "root-secret"})
        auth_call(etcd, "/v3/auth/user/grant", {"user": "root", "role": "root"})
        auth_call(etcd, "/v3/auth/enable", {})
        node = EtcdNode(tmp_path / "node", etcd, "/t8")
        node.node_config["gateway"]["store"].update(user="root", password="root-secret")
        node.process.write_config(node.node_config)
        node.start()
        try:
            assert node.body("/a") == "200 A1"
            time.sleep(1.5)  # the token expired: the next request authenticates again
            reply = node.admin.put("/apisix/admin/routes/b", json=mock_route("b", "B1"))
            assert reply.status_code == 201, reply.text
            assert node.body("/b") == "200 B1"
            assert "root-secret" not in node.process.logs()
        finally:
            node.close()
        wrong = EtcdNode(tmp_path / "wrong", etcd, "/t8")
        wrong.node_config["gateway"]["store"].update(user="root", password="not-it")
        wrong.process.write_config(wrong.node_config)
        with pytest.raises(RuntimeError, match="authentication failed"):
            wrong.start()
        assert "not-it" not in wrong.process.logs()
        wrong.admin.close()


def test_etcd_over_https_with_a_client_certificate(tmp_path: Path) -> None:
    ca = CertAuthority(tmp_path / "pki")
    server = ca.issue("etcd", "etcd", ip_addresses=["127.0.0.1"], also_client=True)
    client = ca.issue("gateway", "gateway", client=True)
    tls = (ca.path, server.cert_path, server.key_path, client.cert_path, client.key_path)
    with EtcdServer(tmp_path, tls=tls) as etcd:
        etcd.put("/t9/routes/a", mock_route("a", "A1"))
        node = EtcdNode(tmp_path / "node", etcd, "/t9")
        node.node_config["gateway"]["store"].update(
            ca_file=str(ca.path), cert_file=str(client.cert_path), key_file=str(client.key_path))
        node.process.write_config(node.node_config)
        node.start()
        try:
            assert node.body("/a") == "200 A1"
            revision = etcd.put("/t9/routes/a", mock_route("a", "A2"))  # through the watch
            node.wait_revision(revision)
            assert node.body("/a") == "200 A2"
        finally:
            node.close()


def test_progress_notifications_keep_a_quiet_watch_and_a_silent_one_is_made_again(tmp_path: Path) -> None:
    with EtcdServer(tmp_path) as etcd:
        etcd.put("/t11/routes/a", mock_route("a", "A1"))
        node = EtcdNode(tmp_path / "node", etcd, "/t11")  # a watch silent for 2 x 2 s + 1 s is dead
        node.start()
        try:
            time.sleep(6.0)  # nothing changes, but etcd says every second that the watch is alive
            assert "etcd unreachable" not in node.process.logs()
            assert etcd.proc is not None
            etcd.proc.send_signal(signal.SIGSTOP)  # the connection stays open, and says nothing
            try:
                deadline = time.monotonic() + 15
                while "etcd unreachable" not in node.process.logs():
                    assert time.monotonic() < deadline, node.process.logs()
                    time.sleep(0.1)
                assert "timed out" in node.process.logs()
                assert node.body("/a") == "200 A1"
            finally:
                etcd.proc.send_signal(signal.SIGCONT)
            revision = etcd.put("/t11/routes/a", mock_route("a", "A2"))
            node.wait_revision(revision)
            assert node.body("/a") == "200 A2"
        finally:
            node.close()
