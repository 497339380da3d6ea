"""Restarts under load: what each zero-downtime operation costs the clients.

    python bench/restarts.py                      # 2 workers, 15 s of load per operation
    python bench/restarts.py --seconds 6 --json out.json

The gateway runs as `gateway run` (master + workers, the count from the config so a reload can
change it) in front of an nginx upstream. For each operation two wrk runs load it: one on
keep-alive connections, one sending `Connection: close` (a new connection per request, which is
what meets an accept queue being closed). The operation starts `--lead` seconds into the load:

* `workers 2 -> 3` and `workers 3 -> 2`: a reload that adds, then retires, a worker;
* `listen change`: a reload that adds a listen address, so every worker is restarted in turn;
* `takeover`: a second gateway started on the same ports, then `gateway stop --graceful` on the
  first.

Reported per operation: requests, non-2xx, socket errors (connect, read, write, timeout) of each
wrk run, and how long the operation took. Target (issue 10): zero non-2xx and zero socket errors.
The script exits 1 when one is missed. A bench script, not a test: it needs nginx and wrk.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import (  # noqa: E402
    BenchError,
    free_port,
    judged,
    log,
    nginx_and_wrk,
    parse_wrk,
    repo_env,
    wrk_command,
)
from bench.peers import start_upstream  # noqa: E402


class Gateway:
    """One `gateway run` on its own config file and state dir."""

    def __init__(self, tmp: str, name: str, config: dict[str, Any]) -> None:
        self.dir = os.path.join(tmp, name)
        os.makedirs(self.dir, exist_ok=True)
        self.config_path = os.path.join(self.dir, "gateway.yaml")
        self.config = config
        self.env = repo_env(XDG_STATE_HOME=os.path.join(self.dir, "state"))
        self.proc: subprocess.Popen[bytes] | None = None
        self.write()

    def write(self) -> None:
        tmp = self.config_path + ".tmp"
        with open(tmp, "w") as fh:
            json.dump(self.config, fh)
        os.replace(tmp, self.config_path)

    def start(self) -> None:
        logfile = open(os.path.join(self.dir, "gateway.log"), "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "gateway", "run", "-c",
                                      self.config_path], stdout=logfile,
                                     stderr=subprocess.STDOUT, env=self.env)
        self.wait(1, self.config["gateway"]["workers"])

    def status(self) -> dict[str, Any]:
        from gateway.server.state import InstanceState

        state = InstanceState(self.config_path,
                              default_dir=Path(self.env["XDG_STATE_HOME"]) / "gateway")
        try:
            return dict(json.loads(state.status.read_text()))
        except (OSError, ValueError):
            return {}

    def wait(self, version: int, workers: int, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc is not None
            if self.proc.poll() is not None:
                raise BenchError(f"gateway exited with {self.proc.returncode}")
            st = self.status()
            ws = st.get("workers", [])
            if st.get("pid") == self.proc.pid and len(ws) == workers and \
                    all(w["version"] >= version for w in ws):
                return
            time.sleep(0.05)
        raise BenchError(f"workers did not reach version {version}")

    def cli(self, *args: str) -> None:
        subprocess.run([sys.executable, "-m", "gateway", *args, "-c", self.config_path],
                       env=self.env, check=True, capture_output=True, timeout=120)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()


def measure(wrk: str, port: int, args: argparse.Namespace, name: str,
            operation: Callable[[], None]) -> dict[str, Any]:
    runs = {
        "keep-alive": wrk_command(wrk, port, args.seconds, args.connections, "/"),
        "new connections": wrk_command(wrk, port, args.seconds, args.connections, "/",
                                       headers={"Connection": "close"}),
    }
    procs = {k: subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for k, cmd in runs.items()}
    time.sleep(args.lead)
    started = time.monotonic()
    operation()
    took = time.monotonic() - started
    outcome: dict[str, Any] = {"operation": name, "seconds": round(took, 2),
                               "within_load": all(p.poll() is None for p in procs.values())}
    for kind, proc in procs.items():
        out, err = proc.communicate()
        if proc.returncode != 0:
            raise BenchError(f"wrk failed: {err.strip()[:300]}")
        parsed = parse_wrk(out)
        outcome[kind] = {k: parsed[k] for k in ("requests", "non_2xx", "socket_errors")}
    log(f"restarts: {name}: {outcome}")
    return outcome


def run(args: argparse.Namespace) -> list[dict[str, Any]]:
    nginx, wrk = nginx_and_wrk()
    results = []
    with tempfile.TemporaryDirectory(prefix="restarts-") as tmp:
        upstream = start_upstream(nginx, tmp)
        port = free_port()
        config: dict[str, Any] = {
            "gateway": {"listen": [f"127.0.0.1:{port}"], "workers": args.workers,
                        "admin": {"listen": f"127.0.0.1:{free_port()}"},
                        "graceful_shutdown_timeout": 5},
            "upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}],
            "routes": [{"id": "all", "uri": "/*", "upstream_id": "up"}],
        }
        first = Gateway(tmp, "first", config)
        second: Gateway | None = None
        try:
            first.start()

            def set_workers(count: int, version: int) -> Callable[[], None]:
                def operation() -> None:
                    first.config["gateway"]["workers"] = count
                    first.write()
                    first.cli("reload")
                    first.wait(version, count)
                return operation

            def listen_change() -> None:
                first.config["gateway"]["listen"].append(f"127.0.0.1:{free_port()}")
                first.write()
                first.cli("reload")
                first.wait(4, args.workers)

            def takeover() -> None:
                nonlocal second
                config2 = json.loads(json.dumps(first.config))
                config2["gateway"]["admin"]["listen"] = f"127.0.0.1:{free_port()}"
                second = Gateway(tmp, "second", config2)
                second.start()
                first.cli("stop", "--graceful")

            results.append(measure(wrk, port, args, f"workers {args.workers} -> "
                                   f"{args.workers + 1}", set_workers(args.workers + 1, 2)))
            results.append(measure(wrk, port, args, f"workers {args.workers + 1} -> "
                                   f"{args.workers}", set_workers(args.workers, 3)))
            results.append(measure(wrk, port, args, "listen change (every worker restarted)",
                                   listen_change))
            results.append(measure(wrk, port, args, "takeover + graceful stop", takeover))
        finally:
            first.stop()
            if second is not None:
                second.stop()
            upstream.stop()
    return results


def report(results: list[dict[str, Any]]) -> tuple[list[str], bool]:
    lines, ok = [], True
    for r in results:
        parts = []
        for kind in ("keep-alive", "new connections"):
            w = r[kind]
            errors = sum(w["socket_errors"].values())
            ok &= errors == 0 and w["non_2xx"] == 0
            parts.append(f"{kind}: {w['requests']} requests, {w['non_2xx']} non-2xx, "
                         f"{errors} socket errors")
        ok &= r["within_load"]
        late = "" if r["within_load"] else ", OUTLASTED THE LOAD"
        lines.append(f"{r['operation']} ({r['seconds']} s{late}): " + "; ".join(parts))
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--seconds", type=int, default=15, help="load per operation")
    parser.add_argument("--lead", type=float, default=2.0,
                        help="seconds of load before the operation starts")
    parser.add_argument("--connections", type=int, default=32, help="per wrk run")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    return judged("restarts", lambda: run(args), report,
                  ("zero failed requests", "a request failed"), args.json,
                  (BenchError, subprocess.CalledProcessError))


if __name__ == "__main__":
    sys.exit(main())
