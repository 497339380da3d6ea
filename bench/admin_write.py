"""Admin API write-to-served latency: how long after a write the new route answers.

    python bench/admin_write.py                        # 100 writes at 10 and at 10,000 routes
    python bench/admin_write.py --routes 10 --writes 20 --json out.json

A gateway (`gateway run -c`, `--workers` workers, file mode) starts with N generated routes
(bench.peers.generated_routes, all to one upstream). Each write PUTs a new route
(`/apisix/admin/routes/w<i>`, answered by the `mocking` plugin with its own body) while a
client polls the proxy on fresh connections for that path. Per write it records:

* **served**: from sending the PUT to the first 200 with the new body through the proxy (one
  worker serves it; new connections land on either);
* **acknowledged**: the PUT's round trip. The API answers once every worker confirmed the new
  config version and the file is written back, so this bounds "live on every worker".

It prints p50/p90/p99/max of both per route count, and the master's own account of each write
(its check; every worker's confirmation and the file written, after the check). A write is
checked on the part of the config it affects, sent to the workers as a delta, compiled route by
route into a copy of the router and spliced into the file's text (see the README's Admin API
section). Figures on a loaded shared machine mean little: quote them with the load.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import statistics
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import yaml  # noqa: E402

from bench.common import BenchError, Server, free_port, log, repo_env, spawn  # noqa: E402
from bench.peers import generated_routes  # noqa: E402

KEY = "bench-admin-key"


def request(port: int, method: str, path: str, body: bytes | None = None,
            headers: dict[str, str] | None = None, timeout: float = 60.0) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def percentiles(values: list[float]) -> dict[str, float]:
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]
    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


def wait_served(port: int, path: str, expect: bytes, started: float, deadline: float) -> float | None:
    while time.monotonic() < deadline:
        try:
            status, body = request(port, "GET", path, timeout=2.0)
            if status == 200 and body == expect:
                return time.monotonic() - started
        except OSError:
            pass
    return None


PHASES = re.compile(r"checked in ([0-9.]+) ms; every worker confirmed ([0-9.]+) ms after the check; "
                    r"file written after ([0-9.]+) ms")


def master_phases(log_path: str) -> dict[str, Any]:
    """The master's own account of each write (its log): the whole-config check, then every
    worker's confirmation and the file written, both counted from the end of the check."""
    with open(log_path, errors="replace") as fh:
        found = [tuple(float(x) for x in m.groups()) for m in PHASES.finditer(fh.read())]
    if not found:
        return {}
    return {"check_ms": percentiles([f[0] for f in found]),
            "workers_after_check_ms": percentiles([f[1] for f in found]),
            "file_after_check_ms": percentiles([f[2] for f in found])}


def cpu_split(gateway: Server) -> tuple[float, dict[int, float]]:
    """CPU seconds so far of the master and of each worker (by pid)."""
    tree = gateway.cpu()
    return tree.get(gateway.pid, 0.0), {pid: s for pid, s in tree.items() if pid != gateway.pid}


def cpu_per_write(before: tuple[float, dict[int, float]], after: tuple[float, dict[int, float]],
                  writes: int) -> dict[str, float]:
    """CPU milliseconds per write: the master's, and the mean of the workers' (a worker also
    answers the poller's requests: a few per write)."""
    workers = [after[1][pid] - before[1].get(pid, 0.0) for pid in after[1]]
    return {"master_ms": (after[0] - before[0]) * 1000 / writes,
            "worker_ms": (sum(workers) / len(workers) if workers else 0.0) * 1000 / writes}


def serving(admin: int, headers: dict[str, str], workers: int) -> bool:
    """Every worker runs the master's config version (the admin listener answers before the
    workers start: a write then would time the start too)."""
    try:
        status, body = request(admin, "GET", "/status", headers=headers, timeout=5.0)
    except OSError:
        return False
    if status != 200:
        return False
    report = json.loads(body)
    versions = [w.get("version") for w in report.get("workers", [])]
    return len(versions) == workers and all(v == report["master"]["version"] for v in versions)


def poll_into(result: dict[str, float | None], port: int, path: str, expect: bytes, started: float) -> None:
    result["served"] = wait_served(port, path, expect, started, started + 120)


def measure(routes: int, writes: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="admin-write-") as tmp:
        port, admin, dead = free_port(), free_port(), free_port()
        config = {
            "gateway": {"listen": [f"127.0.0.1:{port}"],
                        "admin": {"listen": f"127.0.0.1:{admin}", "key": KEY}},
            "upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": dead}]}],
            "routes": generated_routes(routes),
        }
        conf = os.path.join(tmp, "gateway.yaml")
        with open(conf, "w") as fh:
            fh.write("# admin write bench\n" + yaml.safe_dump(config, sort_keys=False))
        env = repo_env(XDG_STATE_HOME=os.path.join(tmp, "state"))
        gateway = spawn("gateway", [sys.executable, "-m", "gateway", "run", "-c", conf, "-w", str(workers)],
                        tmp, port, env=env, expected_procs=1 + workers, log_name="gateway.log")
        headers = {"X-API-KEY": KEY, "Content-Type": "application/json"}
        try:
            deadline = time.monotonic() + 120
            while True:  # ready once the Admin API answers (its first read parses the file)
                try:
                    status, _ = request(admin, "GET", "/apisix/admin/routes?page_size=10", headers=headers)
                    if status == 200 and serving(admin, headers, workers):
                        break
                except OSError:
                    pass
                if gateway.proc.poll() is not None or time.monotonic() > deadline:
                    raise BenchError(f"the gateway did not start:\n{gateway.tail_log()}")
                time.sleep(0.1)
            served: list[float] = []
            acked: list[float] = []
            cpu_before = cpu_split(gateway)
            for i in range(writes):
                path = f"/bench-write/{i}"
                expect = f"write {i}".encode()
                body = json.dumps({"uri": path, "plugins": {"mocking": {
                    "response_status": 200, "response_example": expect.decode()}}}).encode()
                result: dict[str, float | None] = {}
                started = time.monotonic()
                poller = threading.Thread(target=poll_into, args=(result, port, path, expect, started))
                poller.start()
                status, answer = request(admin, "PUT", f"/apisix/admin/routes/w{i}", body, headers)
                acked_after = time.monotonic() - started
                poller.join()
                if status not in (200, 201) or result.get("served") is None:
                    raise BenchError(f"write {i}: {status} {answer[:300]!r}; served: {result}")
                acked.append(acked_after * 1000)
                served.append(float(result["served"] or 0) * 1000)
            cpu = cpu_per_write(cpu_before, cpu_split(gateway), writes)
            return {"routes": routes, "writes": writes, "workers": workers,
                    "served_ms": percentiles(served), "acknowledged_ms": percentiles(acked),
                    "cpu_per_write": cpu,
                    **master_phases(gateway.log_path), "load_average": os.getloadavg()}
        finally:
            gateway.stop()


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--routes", default="10,10000", help="route counts, comma-separated (10,10000)")
    p.add_argument("--writes", type=int, default=100, help="writes per route count (100)")
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args()
    results = []
    for count in (int(c) for c in args.routes.split(",")):
        log(f"admin write: {count} routes, {args.writes} writes, {args.workers} workers")
        result = measure(count, args.writes, args.workers)
        results.append(result)
        s, a = result["served_ms"], result["acknowledged_ms"]
        print(f"{count:>6} routes: served p50 {s['p50']:.1f} p99 {s['p99']:.1f} max {s['max']:.1f} ms; "
              f"acknowledged (every worker + file) p50 {a['p50']:.1f} p99 {a['p99']:.1f} ms "
              f"(load {result['load_average'][0]:.1f})", flush=True)
        cpu = result["cpu_per_write"]
        print(f"        CPU per write: master {cpu['master_ms']:.1f} ms, each worker {cpu['worker_ms']:.1f} ms",
              flush=True)
        if "check_ms" in result:
            print(f"        master: check p50 {result['check_ms']['p50']:.1f} ms, then every worker "
                  f"p50 {result['workers_after_check_ms']['p50']:.1f} ms, the file p50 "
                  f"{result['file_after_check_ms']['p50']:.1f} ms", flush=True)
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except BenchError as exc:
        print(f"admin_write: {exc}", file=sys.stderr)
        sys.exit(1)
