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

import json
import os
import re
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import yaml  # noqa: E402

from bench.common import (  # noqa: E402
    BenchError,
    cpu_per_write,
    cpu_split,
    exit_with,
    free_port,
    http_request,
    log,
    percentiles,
    poll_into,
    repo_env,
    route_count_parser,
    spawn_gateway,
    wait_status_200,
    wait_workers_serving,
    write_json,
    write_text,
)
from bench.peers import generated_routes  # noqa: E402

KEY = "bench-admin-key"
#: What the Admin API wants with every request.
ADMIN_HEADERS = {"X-API-KEY": KEY, "Content-Type": "application/json"}


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


def measure(routes: int, writes: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="admin-write-") as tmp:
        port, admin, dead = free_port(), free_port(), free_port()
        config = {
            "gateway": {"listen": [f"127.0.0.1:{port}"],
                        "admin": {"listen": f"127.0.0.1:{admin}", "key": KEY}},
            "upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": dead}]}],
            "routes": generated_routes(routes),
        }
        conf = write_text(tmp, "gateway.yaml",
                          "# admin write bench\n" + yaml.safe_dump(config, sort_keys=False))
        env = repo_env(XDG_STATE_HOME=os.path.join(tmp, "state"))
        gateway = spawn_gateway(tmp, conf, port, workers=workers, env=env)
        try:
            # ready once the Admin API answers (its first read parses the file)
            wait_status_200(gateway, admin, "/apisix/admin/routes?page_size=10", 120,
                            ADMIN_HEADERS)
            wait_workers_serving(gateway, admin, ADMIN_HEADERS, workers, 120)
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
                status, answer = http_request(admin, f"/apisix/admin/routes/w{i}", 60.0, "PUT",
                                              ADMIN_HEADERS, body)
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
    args = route_count_parser(__doc__.split("\n\n")[0], "writes per route count (100)").parse_args()
    results = []
    for count in (int(c) for c in args.routes.split(",")):
        log(f"admin write: {count} routes, {args.writes} writes, {args.workers} workers")
        result = measure(count, args.writes, args.workers)
        results.append(result)
        s, a = result["served_ms"], result["acknowledged_ms"]
        print(f"{count:>6} routes: served p50 {s['p50']:.1f} p99 {s['p99']:.1f} max {s['max']:.1f} ms; "
              f"acknowledged (every worker + file) p50 {a['p50']:.1f} p99 {a['p99']:.1f} ms "
              f"(load {result['load_average'][0]:.1f})", flush=True)
        if "check_ms" in result:
            print(f"        master: check p50 {result['check_ms']['p50']:.1f} ms, then every worker "
                  f"p50 {result['workers_after_check_ms']['p50']:.1f} ms, the file p50 "
                  f"{result['file_after_check_ms']['p50']:.1f} ms", flush=True)
        cpu = result["cpu_per_write"]
        print(f"        CPU per write: master {cpu['master_ms']:.1f} ms, each worker "
              f"{cpu['worker_ms']:.1f} ms", flush=True)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    exit_with("admin_write", main)
