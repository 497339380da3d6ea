"""Runs the real gateway (``python -m gateway run``: a master and its worker processes) on a
config written to a temp dir, and tells the tests when every worker serves a given version."""
from __future__ import annotations

import http.client
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from gateway.server.state import InstanceState
from tests.support.upstream import free_port

LOST_EXCEPTION_MARKERS = ("exception was never retrieved", "Exception in callback",
                          "Unhandled error in exception handler")


class GatewayProcess:
    def __init__(self, tmp_path: Path, config: dict[str, Any] | str, workers: int | str = 2,
                 env: dict[str, str] | None = None, wrapper: list[str] | None = None,
                 workers_flag: bool = True) -> None:
        """``workers_flag=False`` leaves the count to the config's ``gateway.workers`` (so a
        reload can change it); ``workers`` is then what the tests expect."""
        self.dir = tmp_path
        self.workers_flag = workers_flag
        self.config_path = tmp_path / "gateway.yaml"
        self.state_dir = tmp_path / "state"
        self.log_path = tmp_path / "gateway.log"
        self.workers_arg = str(workers)  # what -w says: a number or "auto" (one per core)
        self.workers = workers if isinstance(workers, int) else len(os.sched_getaffinity(0))
        self.env = env or {}
        self.wrapper = wrapper or []  # a command the gateway runs under (setpriv ...)
        self.proc: subprocess.Popen[bytes] | None = None
        self.write_config(config)

    # -- config --
    def write_config(self, config: dict[str, Any] | str) -> None:
        text = config if isinstance(config, str) else yaml.safe_dump(config, sort_keys=False)
        tmp = self.config_path.with_suffix(".tmp")
        tmp.write_text(text)
        os.replace(tmp, self.config_path)  # atomic, like an editor's save

    @property
    def port(self) -> int:
        config = yaml.safe_load(self.config_path.read_text())
        return int(config["gateway"]["listen"][0].rsplit(":", 1)[1])

    # -- process --
    def start(self, wait: bool = True) -> GatewayProcess:
        env = {**os.environ, "XDG_STATE_HOME": str(self.state_dir),
               "GATEWAY_LOG_LEVEL": "INFO", **self.env}
        self.log = open(self.log_path, "ab")
        self.proc = subprocess.Popen(
            [*self.wrapper, sys.executable, "-m", "gateway", "run", "-c", str(self.config_path),
             *(["-w", self.workers_arg] if self.workers_flag else [])],
            stdout=self.log, stderr=subprocess.STDOUT, env=env)
        if wait:
            self.wait_version(1)
        return self

    @property
    def instance(self) -> InstanceState:
        """Where the master keeps this gateway's status and last good config."""
        root = Path(self.env.get("XDG_STATE_HOME", self.state_dir)) / "gateway"
        try:
            configured = (yaml.safe_load(self.config_path.read_text()) or {}).get("gateway", {})
        except (OSError, yaml.YAMLError, AttributeError):
            configured = {}
        state_dir = configured.get("state_dir") if isinstance(configured, dict) else None
        if state_dir:
            return InstanceState(str(self.config_path), Path(state_dir), root)
        default = InstanceState(str(self.config_path), root, root)
        # a broken file names no state dir: the master then uses the one it recorded
        recorded = default.recorded_state_dir()
        return InstanceState(str(self.config_path), recorded, root) if recorded else default

    def status(self) -> dict[str, Any]:
        try:
            return json.loads(self.instance.status.read_text())
        except (OSError, ValueError):
            return {}

    def worker_pids(self) -> list[int]:
        return [w["pid"] for w in self.status().get("workers", [])]

    def wait_replaced(self, victim: int, timeout: float) -> list[int]:
        """Waits until the master lists a full set of workers without ``victim``, in one read of
        status.json: two reads can straddle the write that drops the victim, before its successor
        is listed."""
        deadline = time.monotonic() + timeout
        while True:
            pids = self.worker_pids()
            if len(pids) == self.workers and victim not in pids:
                return pids
            assert time.monotonic() < deadline, f"no new worker within {timeout} s: {pids}"
            time.sleep(0.05)

    def wait_version(self, version: int, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise RuntimeError(f"gateway exited with {self.proc.returncode}:\n{self.logs()}")
            st = self.status()
            workers = st.get("workers", [])
            if (st.get("pid") == self.proc.pid and st.get("version", 0) >= version
                    and len(workers) == self.workers
                    and all(w["version"] >= version for w in workers)):
                return
            time.sleep(0.02)
        raise TimeoutError(f"workers did not reach config version {version}:\n{self.logs()}")

    def cli(self, *args: str) -> subprocess.CompletedProcess[str]:
        """Runs ``gateway <args> -c <this config>`` as an operator would, in this instance's
        environment."""
        env = {**os.environ, "XDG_STATE_HOME": str(self.state_dir), **self.env}
        return subprocess.run([sys.executable, "-m", "gateway", *args, "-c", str(self.config_path)],
                              capture_output=True, text=True, env=env, timeout=60)

    def logs(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(sig)
        try:
            code = self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
            raise
        finally:
            self.log.close()
        self.assert_no_lost_exceptions()
        return code

    def assert_no_lost_exceptions(self) -> None:
        """An exception nobody handled (a task's, a callback's) is a defect even when the
        test's own assertions pass: the master or a worker lost track of something."""
        logs = self.logs()
        for marker in LOST_EXCEPTION_MARKERS:
            assert marker not in logs, f"{marker!r} in the gateway's log:\n{logs}"

    def __enter__(self) -> GatewayProcess:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


def base_config(port: int, upstream_port: int | None = None, **gateway: Any) -> dict[str, Any]:
    admin_port = free_port()
    config: dict[str, Any] = {
        "gateway": {"listen": [f"127.0.0.1:{port}"], "admin": {"listen": f"127.0.0.1:{admin_port}"},
                    **gateway},
        "upstreams": [],
        "routes": [],
    }
    if upstream_port is not None:
        config["upstreams"].append({"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream_port}]})
        config["routes"].append({"id": "all", "uri": "/*", "upstream_id": "up"})
    return config


def http_get(port: int, path: str, headers: dict[str, str] | None = None
             ) -> tuple[http.client.HTTPResponse, bytes]:
    """One GET on a fresh connection: the response (headers readable) and its whole body."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    conn.request("GET", path, headers=headers or {})
    response = conn.getresponse()
    body = response.read()
    conn.close()
    return response, body


def raw_exchange(port: int, data: bytes, timeout: float = 5.0, half_close: bool = False) -> bytes:
    """Sends raw bytes and returns everything the gateway sends back until it closes (or the
    timeout passes, which tests treat as "not closed")."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        if half_close:
            sock.shutdown(socket.SHUT_WR)
        chunks = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                chunk = sock.recv(65536)
            except TimeoutError:
                break
            except ConnectionResetError:
                chunks.append(b"<RST>")
                break
            if not chunk:
                chunks.append(b"<EOF>")
                break
            chunks.append(chunk)
        return b"".join(chunks)


def parse_responses(raw: bytes, head_requests: int = 0) -> list[tuple[int, dict[str, str], bytes]]:
    """Splits a raw stream of content-length framed responses (what pipelining returns).
    The first ``head_requests`` responses are taken as answers to HEAD (no body)."""
    out: list[tuple[int, dict[str, str], bytes]] = []
    while raw.startswith(b"HTTP/"):
        head, _, rest = raw.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        status = int(lines[0].split()[1])
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        size = 0 if (status < 200 or status in (204, 304) or len(out) < head_requests) \
            else int(headers.get("content-length", "0"))
        out.append((status, headers, rest[:size]))
        raw = rest[size:]
    return out


def wait_until(predicate: Callable[[], bool], timeout: float, what: str | Callable[[], str]) -> None:
    """Polls ``predicate`` until it holds; fails with ``what`` (or what it returns) after
    ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, what() if callable(what) else what
        time.sleep(0.05)
