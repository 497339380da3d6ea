"""A real etcd (Debian's etcd-server) on loopback for the tests: its own data dir and ports,
progress notifications every second; kill() and start() again on the same ports and data to
test outages. The helpers speak etcd's HTTP/JSON gateway, as a tool of an operator would."""
from __future__ import annotations

import base64
import json
import ssl
import subprocess
import time
from pathlib import Path
from typing import Any

import httpx

from tests.support.upstream import free_port


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode()


class EtcdServer:
    def __init__(self, directory: Path, options: list[str] | None = None,
                 tls: tuple[Path, Path, Path, Path, Path] | None = None) -> None:
        """``tls``: (CA, server cert, server key, client cert, client key): https, and clients
        must show a certificate of that CA."""
        self.dir = directory
        self.options = options or []
        self.tls = tls
        self.port = free_port()
        self.peer_port = free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def http(self) -> httpx.Client:
        if self.tls is None:
            return httpx.Client(timeout=5)
        context = ssl.create_default_context(cafile=str(self.tls[0]))
        context.load_cert_chain(self.tls[3], self.tls[4])
        return httpx.Client(timeout=5, verify=context)

    def start(self) -> EtcdServer:
        peer = f"http://127.0.0.1:{self.peer_port}"
        args = ["etcd", "--name", "test", "--data-dir", str(self.dir / "data"),
                "--listen-client-urls", self.url, "--advertise-client-urls", self.url,
                "--listen-peer-urls", peer, "--initial-advertise-peer-urls", peer,
                "--initial-cluster", f"test={peer}",
                "--experimental-watch-progress-notify-interval", "1s", *self.options]
        if self.tls:
            ca, cert, key = self.tls[:3]
            args += ["--trusted-ca-file", str(ca), "--cert-file", str(cert), "--key-file", str(key),
                     "--client-cert-auth"]
        self.proc = subprocess.Popen(args, stdout=open(self.dir / "etcd.log", "ab"),
                                     stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 20
        while True:
            try:
                with self.http() as client:
                    client.get(self.url + "/version", timeout=1).raise_for_status()
                return self
            except httpx.HTTPError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"etcd did not start on {self.port}:\n"
                                   f"{(self.dir / 'etcd.log').read_text(errors='replace')[-3000:]}")
            time.sleep(0.1)

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None

    def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        with self.http() as client:
            reply: dict[str, Any] = client.post(self.url + path, json=body).json()
        if "error" in reply:
            raise RuntimeError(f"etcd: {reply}")
        return reply

    def revision(self) -> int:
        return int(self.call("/v3/kv/range", {"key": b64("/")})["header"]["revision"])

    def put(self, key: str, value: Any) -> int:
        raw = value if isinstance(value, str) else json.dumps(value)
        reply = self.call("/v3/kv/put", {"key": b64(key), "value": b64(raw)})
        return int(reply["header"]["revision"])

    def delete(self, key: str) -> int:
        return int(self.call("/v3/kv/deleterange", {"key": b64(key)})["header"]["revision"])

    def get(self, key: str) -> Any:
        kvs = self.call("/v3/kv/range", {"key": b64(key)}).get("kvs", [])
        return json.loads(base64.b64decode(kvs[0]["value"])) if kvs else None

    def keys(self, prefix: str) -> list[str]:
        end = prefix[:-1] + chr(ord(prefix[-1]) + 1)
        kvs = self.call("/v3/kv/range", {"key": b64(prefix), "range_end": b64(end),
                                         "keys_only": True}).get("kvs", [])
        return [base64.b64decode(kv["key"]).decode() for kv in kvs]

    def compact(self, revision: int) -> None:
        self.call("/v3/kv/compaction", {"revision": str(revision), "physical": True})

    def __enter__(self) -> EtcdServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.kill()
