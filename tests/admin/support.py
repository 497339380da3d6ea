"""A real gateway with its Admin API for the admin tests: a config file with comments, a real
upstream, and an httpx client carrying the admin key."""
from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx

from tests.support.gateway import GatewayProcess
from tests.support.upstream import Upstream, free_port

KEY = "test-admin-key"

CONFIG = """\
# The gateway of the admin tests.
gateway:
  listen: ["127.0.0.1:{port}"]
  admin:
    listen: "127.0.0.1:{admin_port}"   # the Admin API
    key: {key}

upstreams:
  # the test upstream: keep this comment
  - id: backend
    nodes: [{{host: 127.0.0.1, port: {upstream_port}}}]   # one node

routes:
  # hand-written route: keep this comment too
  - id: hand
    uri: /hand/*
    upstream_id: backend    # untouched by the API
"""


def config_text(port: int, admin_port: int, upstream_port: int) -> str:
    return CONFIG.format(port=port, admin_port=admin_port, upstream_port=upstream_port, key=KEY)


class AdminGateway:
    def __init__(self, tmp_path: Path, upstream: Upstream, workers: int = 2) -> None:
        self.port = free_port()
        self.admin_port = free_port()
        self.upstream = upstream
        self.text = config_text(self.port, self.admin_port, upstream.port)
        self.process = GatewayProcess(tmp_path, self.text, workers=workers)
        self.url = f"http://127.0.0.1:{self.admin_port}"
        self.client = httpx.Client(base_url=self.url, headers={"X-API-KEY": KEY}, timeout=30)

    @property
    def path(self) -> Path:
        return self.process.config_path

    def version(self) -> int:
        return int(self.process.status().get("version", 0))

    def close(self) -> None:
        self.client.close()


@contextmanager
def admin_gateway(tmp_path: Path, workers: int = 2) -> Iterator[AdminGateway]:
    with Upstream("backend") as upstream:
        gw = AdminGateway(tmp_path, upstream, workers)
        gw.process.start()
        try:
            yield gw
        finally:
            gw.close()
            gw.process.stop()


def upstream_connections(pid: int, upstream_port: int) -> int:
    """TCP connections process ``pid`` holds to the upstream's port (its keep-alive pool)."""
    inodes = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    port_hex = f":{upstream_port:04X}"
    count = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[2].endswith(port_hex) and fields[9] in inodes:
            count += 1
    return count
