"""A real redis-server (Debian's) on loopback for the tests: its own directory, no
persistence, a port of its own; kill() and start() again on the same port to test outages."""
from __future__ import annotations

import subprocess
import time
from pathlib import Path
from typing import Any

import redis

from tests.support.upstream import free_port


class RedisServer:
    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.dir = directory
        self.port = free_port()
        self.password = password
        self.proc: subprocess.Popen[bytes] | None = None
        self.extra_args: list[str] = []

    def start(self) -> RedisServer:
        args = ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1",
                "--dir", str(self.dir), "--save", "", "--appendonly", "no", *self.extra_args]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdout=open(self.dir / "redis.log", "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 10
        while True:
            try:
                if self.client().ping():
                    return self
            except redis.ConnectionError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError(f"redis-server did not start on {self.port}")
            time.sleep(0.05)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, password=self.password, socket_timeout=5,
                           decode_responses=True)

    def __enter__(self) -> RedisServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()



class RedisCluster:
    """Three redis-server masters in cluster mode on loopback, joined by ``redis-cli --cluster
    create`` (no replicas: the tests need the slots spread, not failover)."""

    def __init__(self, directory: Path, password: str | None = None) -> None:
        self.servers: list[RedisServer] = []
        for i in range(3):
            (directory / f"node{i}").mkdir()
            server = RedisServer(directory / f"node{i}", password)
            while server.port > 55535:  # a cluster node's bus listens on its port + 10000
                server.port = free_port()
            self.servers.append(server)
        self.password = password

    @property
    def nodes(self) -> list[str]:
        return [f"127.0.0.1:{server.port}" for server in self.servers]

    def __enter__(self) -> RedisCluster:
        for server in self.servers:
            server.extra_args = ["--cluster-enabled", "yes", "--cluster-config-file",
                                 str(server.dir / "nodes.conf")]
            server.start()
        auth = ["-a", self.password, "--no-auth-warning"] if self.password else []
        subprocess.run(["redis-cli", *auth, "--cluster", "create", *self.nodes, "--cluster-yes"],
                       check=True, capture_output=True, timeout=60)
        deadline = time.monotonic() + 20
        while self.servers[0].client().cluster("info")["cluster_state"] != "ok":
            if time.monotonic() > deadline:
                raise RuntimeError("the Redis cluster did not come up")
            time.sleep(0.1)
        return self

    def __exit__(self, *exc: Any) -> None:
        for server in self.servers:
            server.kill()
