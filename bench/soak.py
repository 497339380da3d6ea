"""Soak: a long run at many connections, for memory growth, leaked descriptors and errors.

    python bench/soak.py                          # 10 minutes, 1,000 connections, 2 workers
    python bench/soak.py --minutes 2 --json out.json

The gateway runs as `gateway run` (master + workers) with key-auth + limit-count + prometheus on
the route, in front of an nginx upstream; wrk holds `--connections` keep-alive connections for
the whole run, sending the consumer's key. Measured:

* **worker RSS growth** after warm-up: each worker's RSS at the end of the warm-up (the first
  `--warmup` seconds) against its RSS at the end of the run, sampled every `--sample` seconds
  in between (the samples are in the JSON);
* **descriptors**: each worker's open fds before the load (after a 3-second burst of 200
  connections has filled the upstream keep-alive pools, which stay open by design), at the peak
  and `--settle` seconds after wrk stopped: they must be back at the baseline;
* **errors**: wrk's socket errors and non-2xx responses.

Targets (issue 13): RSS growth under 5% after warm-up, fds back to baseline, zero errors. The
script exits 1 when one is missed. A bench script, not a test: it needs nginx and wrk.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
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
    process_tree,
    repo_env,
    rss_bytes,
    spawn,
    wait_ready,
    wrk_command,
)
from bench.peers import API_KEY, HUGE, start_upstream  # noqa: E402

PLUGINS: dict[str, Any] = {
    "key-auth": {},
    "limit-count": {"count": HUGE, "time_window": 60, "key": "remote_addr",
                    "rejected_code": 503},
    "prometheus": {},
}


def gateway_config(port: int, admin: int, upstream_port: int) -> dict[str, Any]:
    return {
        "gateway": {"listen": [f"127.0.0.1:{port}"], "admin": {"listen": f"127.0.0.1:{admin}"}},
        "upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream_port}],
                       "keepalive": {"size": 64, "requests": 100000}}],
        "routes": [{"id": "soak", "uri": "/*", "upstream_id": "up", "plugins": PLUGINS}],
        "consumers": [{"username": "soak", "plugins": {"key-auth": {"key": API_KEY}}}],
    }


def open_fds(pid: int) -> int | None:
    try:
        return len(os.listdir(f"/proc/{pid}/fd"))
    except OSError:
        return None


def workers_of(master: int) -> list[int]:
    return [pid for pid in process_tree(master) if pid != master]


def snapshot(pids: list[int]) -> dict[str, dict[str, int | None]]:
    return {str(pid): {"rss": rss_bytes(pid), "fds": open_fds(pid)} for pid in pids}


def soak(args: argparse.Namespace) -> dict[str, Any]:
    nginx, wrk = nginx_and_wrk()
    seconds = args.minutes * 60
    if args.warmup >= seconds:
        raise BenchError("--warmup must be shorter than the run")
    result: dict[str, Any] = {"settings": vars(args), "samples": []}
    with tempfile.TemporaryDirectory(prefix="soak-") as tmp:
        upstream = start_upstream(nginx, tmp)
        port, admin = free_port(), free_port()
        conf = os.path.join(tmp, "gateway.yaml")
        with open(conf, "w") as fh:
            json.dump(gateway_config(port, admin, upstream.port), fh)
        env = repo_env(XDG_STATE_HOME=os.path.join(tmp, "state"))
        gateway = spawn("gateway", [sys.executable, "-m", "gateway", "run", "-c", conf,
                                    "-w", str(args.workers)], tmp, port, env=env,
                        expected_procs=1 + args.workers, log_name="gateway.log")
        try:
            wait_ready(gateway, path="/soak", headers={"apikey": API_KEY})
            workers = workers_of(gateway.pid)
            # The baseline has the upstream pools filled (keepalive size 64 per worker): those
            # connections stay open by design and are not what a leak would look like.
            prime = wrk_command(wrk, port, 3, 200, "/soak", headers={"apikey": API_KEY})
            subprocess.run(prime, capture_output=True, timeout=60, check=True)
            time.sleep(args.settle)
            result["baseline"] = snapshot(workers)
            cmd = wrk_command(wrk, port, seconds, args.connections, "/soak",
                              headers={"apikey": API_KEY})
            log(f"soak: {' '.join(cmd)}")
            started = time.monotonic()
            load = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
            peak_fds = {str(pid): 0 for pid in workers}
            while load.poll() is None:
                time.sleep(args.sample)
                elapsed = time.monotonic() - started
                sample = snapshot(workers)
                for pid, values in sample.items():
                    peak_fds[pid] = max(peak_fds[pid], values["fds"] or 0)
                result["samples"].append({"t": round(elapsed, 1), "workers": sample})
                if "warm" not in result and elapsed >= args.warmup:
                    result["warm"] = sample
                    log(f"soak: warm-up over at {elapsed:.0f} s: {sample}")
            out, err = load.communicate()
            if load.returncode != 0:
                raise BenchError(f"wrk failed: {err.strip()[:300]}")
            result["end"] = result["samples"][-1]["workers"] if result["samples"] else {}
            result["wrk"] = {k: v for k, v in parse_wrk(out).items()}
            time.sleep(args.settle)
            result["settled"] = snapshot(workers)
            result["peak_fds"] = peak_fds
            result["workers_alive"] = all(os.path.exists(f"/proc/{pid}") for pid in workers)
        finally:
            gateway.stop()
            upstream.stop()
    return result


def verdict(result: dict[str, Any]) -> tuple[list[str], bool]:
    lines, ok = [], True
    for pid, warm in result.get("warm", {}).items():
        end = result["end"].get(pid, {})
        if warm["rss"] and end.get("rss"):
            growth = (end["rss"] - warm["rss"]) / warm["rss"] * 100
            ok &= growth < 5
            lines.append(f"worker {pid}: RSS {warm['rss'] / 2**20:.1f} MiB after warm-up -> "
                         f"{end['rss'] / 2**20:.1f} MiB at the end ({growth:+.2f}%; target < 5%)")
        base = result["baseline"].get(pid, {}).get("fds")
        settled = result["settled"].get(pid, {}).get("fds")
        ok &= base is not None and settled is not None and settled <= base
        lines.append(f"worker {pid}: fds {base} before, {result['peak_fds'].get(pid)} at peak, "
                     f"{settled} after (target: back to {base})")
    wrk = result.get("wrk", {})
    ok &= wrk.get("errors", 1) == 0 and result.get("workers_alive", False)
    lines.append(f"wrk: {wrk.get('requests')} requests, {wrk.get('rps')} req/s, p99 "
                 f"{wrk.get('p99_ms')} ms, socket errors {wrk.get('socket_errors')}, non-2xx "
                 f"{wrk.get('non_2xx')} (target: 0); workers alive: {result.get('workers_alive')}")
    return lines, ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--minutes", type=float, default=10.0)
    parser.add_argument("--warmup", type=float, default=60.0, help="seconds")
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--sample", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--settle", type=float, default=3.0,
                        help="seconds after the load before counting fds again")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    return judged("soak", lambda: soak(args), verdict,
                  ("all targets met", "a target was missed"), args.json)


if __name__ == "__main__":
    sys.exit(main())
