"""etcd mode's write-to-served latency: how long after a write the new route answers.

    python bench/etcd_write.py                        # 100 writes at 10 and at 10,000 routes
    python bench/etcd_write.py --routes 10 --writes 20 --json out.json

Starts its own etcd (Debian's etcd-server, on loopback, in a temp dir), imports N generated
routes with `gateway config import`, and runs a gateway node (`--workers` workers) on it. Then,
per write, a new route answered by the `mocking` plugin with its own body, two ways:

* **api**: a PUT to the Admin API (checked, written to etcd in a transaction, answered once this
  node's workers serve it): *served* is from sending the PUT to the first 200 with the new body
  through the proxy; *acknowledged* is the PUT's round trip;
* **etcd**: a put straight into etcd (another node's write, or etcdctl): *served* only, the
  watch's path (event, check of the changed key, every worker).

As in admin_write.py, a change is checked on the part of the config it affects and compiled
route by route. Figures on a loaded shared machine mean little: quote them with the load.
"""
from __future__ import annotations

import base64
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

import yaml  # noqa: E402

from bench.admin_write import ADMIN_HEADERS, KEY  # noqa: E402
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
)
from bench.peers import generated_routes  # noqa: E402

PREFIX = "/bench"


def start_etcd(tmp: str) -> tuple[subprocess.Popen[bytes], int]:
    if shutil.which("etcd") is None:
        raise BenchError("etcd is not installed (apt-get install etcd-server)")
    port, peer = free_port(), free_port()
    url, peer_url = f"http://127.0.0.1:{port}", f"http://127.0.0.1:{peer}"
    proc = subprocess.Popen(
        ["etcd", "--name", "bench", "--data-dir", os.path.join(tmp, "etcd"),
         "--listen-client-urls", url, "--advertise-client-urls", url, "--listen-peer-urls", peer_url,
         "--initial-advertise-peer-urls", peer_url, "--initial-cluster", f"bench={peer_url}",
         "--quota-backend-bytes", str(8 << 30)],
        stdout=open(os.path.join(tmp, "etcd.log"), "ab"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            if http_request(port, "/version", timeout=1.0)[0] == 200:
                return proc, port
        except OSError:
            time.sleep(0.1)
    proc.kill()
    raise BenchError("etcd did not start")


def etcd_put(port: int, key: str, value: Any) -> None:
    body = json.dumps({"key": base64.b64encode(key.encode()).decode(),
                       "value": base64.b64encode(json.dumps(value).encode()).decode()}).encode()
    status, answer = http_request(port, "/v3/kv/put", 60.0, "POST", body=body)
    if status != 200 or b"error" in answer:
        raise BenchError(f"etcd put: {status} {answer[:200]!r}")


def measure(routes: int, writes: int, workers: int) -> dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="etcd-write-") as tmp:
        etcd, etcd_port = start_etcd(tmp)
        port, admin, dead = free_port(), free_port(), free_port()
        node = os.path.join(tmp, "node.yaml")
        with open(node, "w") as fh:
            yaml.safe_dump({"gateway": {
                "listen": [f"127.0.0.1:{port}"], "admin": {"listen": f"127.0.0.1:{admin}", "key": KEY},
                "store": {"type": "etcd", "endpoints": [f"http://127.0.0.1:{etcd_port}"],
                          "prefix": PREFIX}}}, fh)
        resources = os.path.join(tmp, "resources.yaml")
        with open(resources, "w") as fh:
            yaml.safe_dump({"upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": dead}]}],
                            "routes": generated_routes(routes)}, fh, sort_keys=False)
        env = repo_env(XDG_STATE_HOME=os.path.join(tmp, "state"))
        done = subprocess.run([sys.executable, "-m", "gateway", "config", "import", resources, "-c", node],
                              capture_output=True, text=True, env=env, timeout=600)
        if done.returncode != 0:
            etcd.kill()
            raise BenchError(f"import failed: {done.stderr}")
        gateway = spawn_gateway(tmp, node, port, workers=workers, env=env)
        try:
            wait_status_200(gateway, admin, "/status", 300, ADMIN_HEADERS)
            wait_workers_serving(gateway, admin, ADMIN_HEADERS, workers, 300)
            result: dict[str, Any] = {"routes": routes, "writes": writes, "workers": workers}
            for way in ("api", "etcd"):
                served: list[float] = []
                acked: list[float] = []
                cpu_before = cpu_split(gateway)
                for i in range(writes):
                    path = f"/bench-{way}/{i}"
                    expect = f"{way} write {i}".encode()
                    value = {"uri": path, "plugins": {"mocking": {"response_example": expect.decode()}}}
                    seen: dict[str, float | None] = {}
                    started = time.monotonic()
                    poller = threading.Thread(target=poll_into, args=(seen, port, path, expect, started))
                    poller.start()
                    if way == "api":
                        status, answer = http_request(admin, f"/apisix/admin/routes/{way}{i}", 60.0,
                                                      "PUT", ADMIN_HEADERS, json.dumps(value).encode())
                        if status not in (200, 201):
                            raise BenchError(f"write {i}: {status} {answer[:300]!r}")
                        acked.append((time.monotonic() - started) * 1000)
                    else:
                        etcd_put(etcd_port, f"{PREFIX}/routes/{way}{i}", value)
                    poller.join()
                    if seen.get("served") is None:
                        raise BenchError(f"{way} write {i} never served:\n{gateway.tail_log()}")
                    served.append(float(seen["served"] or 0) * 1000)
                result[f"{way}_served_ms"] = percentiles(served)
                result[f"{way}_cpu_per_write"] = cpu_per_write(cpu_before, cpu_split(gateway), writes)
                if acked:
                    result["api_acknowledged_ms"] = percentiles(acked)
            result["load_average"] = os.getloadavg()
            return result
        finally:
            gateway.stop()
            etcd.kill()
            etcd.wait()


def main() -> int:
    args = route_count_parser(__doc__.split("\n\n")[0],
                              "writes per route count and way (100)").parse_args()
    results = []
    for count in (int(c) for c in args.routes.split(",")):
        log(f"etcd write: {count} routes, {args.writes} writes each way, {args.workers} workers")
        result = measure(count, args.writes, args.workers)
        results.append(result)
        api, direct, acked = result["api_served_ms"], result["etcd_served_ms"], result["api_acknowledged_ms"]
        print(f"{count:>6} routes: Admin API served p50 {api['p50']:.1f} p99 {api['p99']:.1f} ms "
              f"(acknowledged p50 {acked['p50']:.1f} p99 {acked['p99']:.1f}); etcd put served p50 "
              f"{direct['p50']:.1f} p99 {direct['p99']:.1f} ms (load {result['load_average'][0]:.1f})",
              flush=True)
        for way in ("api", "etcd"):
            cpu = result[f"{way}_cpu_per_write"]
            print(f"        CPU per {way} write: master {cpu['master_ms']:.1f} ms, each worker "
                  f"{cpu['worker_ms']:.1f} ms", flush=True)
    write_json(args.json, results)
    return 0


if __name__ == "__main__":
    exit_with("etcd_write", main)
