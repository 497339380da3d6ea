"""Gateway nodes in etcd mode for the tests: a node file with only ``gateway:`` settings, the
resources in a real etcd under a prefix of the test's own."""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.support.etcd_server import EtcdServer
from tests.support.gateway import GatewayProcess, http_get
from tests.support.upstream import free_port

KEY = "etcd-test-key"

#: The tests start Debian's etcd-server (`etcd`); .ci/run installs it.
requires_etcd = pytest.mark.skipif(shutil.which("etcd") is None,
                                   reason="etcd is not installed (apt-get install etcd-server)")


def mock_route(route_id: str, body: str, **extra: Any) -> dict[str, Any]:
    return {"uri": f"/{route_id}", "plugins": {"mocking": {"response_example": body}}, **extra}


class EtcdNode:
    def __init__(self, tmp_path: Path, etcd: EtcdServer, prefix: str, workers: int = 1) -> None:
        tmp_path.mkdir(parents=True, exist_ok=True)
        self.port = free_port()
        self.admin_port = free_port()
        self.node_config = {"gateway": {
            "listen": [f"127.0.0.1:{self.port}"],
            "admin": {"listen": f"127.0.0.1:{self.admin_port}", "key": KEY},
            "store": {"type": "etcd", "endpoints": [etcd.url], "prefix": prefix, "timeout": 1,
                      "progress_interval": 2},  # etcd notifies every second
        }}
        self.process = GatewayProcess(tmp_path, self.node_config, workers=workers)
        self.admin = httpx.Client(base_url=f"http://127.0.0.1:{self.admin_port}",
                                  headers={"X-API-KEY": KEY}, timeout=40)

    def start(self) -> EtcdNode:
        self.process.start()
        return self

    def stop(self) -> None:
        self.process.stop()

    def body(self, path: str) -> str:
        response, body = http_get(self.port, path)
        return f"{response.status} {body.decode(errors='replace')}"

    def status(self) -> dict[str, Any]:
        return self.process.status()

    def worker_revisions(self) -> list[int | None]:
        return [w.get("revision") for w in self.status().get("workers", [])]

    def wait_revision(self, revision: int, timeout: float = 10.0) -> None:
        """Every worker of this node runs the config of etcd ``revision`` (or a later one)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            revisions = self.worker_revisions()
            if len(revisions) == self.process.workers and all((r or 0) >= revision for r in revisions):
                return
            time.sleep(0.02)
        raise AssertionError(f"workers at {self.worker_revisions()}, not {revision}:\n{self.process.logs()}")

    def wait_body(self, path: str, expected: str, timeout: float = 10.0) -> None:
        deadline = time.monotonic() + timeout
        while (got := self.body(path)) != expected:
            assert time.monotonic() < deadline, f"{path}: {got!r}, not {expected!r}:\n{self.process.logs()}"
            time.sleep(0.05)

    def close(self) -> None:
        self.admin.close()
        self.stop()
