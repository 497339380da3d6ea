"""What each built-in plugin adds to a proxied request: µs of CPU and instructions.

    python bench/plugin_cost.py                      # CPU pairs + callgrind, every case (~4 min)
    python bench/plugin_cost.py --no-callgrind       # CPU pairs only
    python bench/plugin_cost.py --cases key-auth,B   # some cases

The gateway is served in this process's child (one worker's code, no master: the same
`Server` and compiled runtime a worker runs), the load comes from a client process and the
upstream is an nginx, so the figures are the proxy's own cost.

* **CPU**: each case and the no-plugin baseline alternate (`--runs` pairs), each run serving
  `--requests` keep-alive requests from `--connections` clients; the figure is the CPU time of
  the serving process per request, the added cost the median of the pairwise differences.
* **Instructions** (`valgrind --tool=callgrind`, repeatable on a shared machine): the serving
  process is run twice per case, for N1 and N2 requests on one connection; (Ir(N2) - Ir(N1)) /
  (N2 - N1) is the per-request count, start-up and compile cancel out. Only the instructions
  inside the two connections' ``data_received`` callbacks are counted (every phase of a
  keep-alive request runs in them): the event loop's own polling varies with timing from run to
  run, and the same for every case, so leaving it out makes the counts repeat exactly.

Writes the table to stdout (Markdown) and, with `--json`, every figure.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import BenchError, find_nginx, free_port, log  # noqa: E402
from bench.peers import API_KEY, HUGE, start_upstream  # noqa: E402

LIMIT_REQ = {"rate": HUGE, "burst": HUGE, "key": "remote_addr", "rejected_code": 503,
             "nodelay": True}
LIMIT_COUNT = {"count": HUGE, "time_window": 60, "key": "remote_addr", "rejected_code": 503}
#: policy redis, synced (not strict): the workers only count in shared memory (the master's
#: syncer talks to Redis, and there is no master here), so no Redis is needed to measure them
SYNCED = {"policy": "redis", "redis_host": "127.0.0.1", "redis_port": 6379}

#: case -> the route's plugins. B and C are the APISIX benchmark's cases.
CASES: dict[str, dict[str, Any]] = {
    "key-auth": {"key-auth": {}},
    "limit-req": {"limit-req": LIMIT_REQ},
    "limit-count": {"limit-count": LIMIT_COUNT},
    "limit-req synced": {"limit-req": {**LIMIT_REQ, **SYNCED}},
    "limit-count synced": {"limit-count": {**LIMIT_COUNT, **SYNCED}},
    "limit-conn": {"limit-conn": {"conn": HUGE, "burst": 0, "default_conn_delay": 0.1,
                                  "key": "remote_addr"}},
    "prometheus": {"prometheus": {}},
    "request-id": {"request-id": {}},
    "proxy-rewrite": {"proxy-rewrite": {"headers": {"set": {"X-Via": "gateway"}}}},
    "cors": {"cors": {}},
    "ip-restriction": {"ip-restriction": {"whitelist": ["127.0.0.0/8"]}},
    "5 no-op plugins": {f"bench.noop_plugins:Noop{i}": {} for i in range(1, 6)},
    "B: limit-count + prometheus": {"limit-count": LIMIT_COUNT, "prometheus": {}},
    "C: key-auth + limit-req + prometheus": {"key-auth": {}, "limit-req": LIMIT_REQ,
                                             "prometheus": {}},
}
SHORT = {"B": "B: limit-count + prometheus", "C": "C: key-auth + limit-req + prometheus"}
BASELINE = "none"


def config_for(plugins: dict[str, Any], upstream_port: int, port: int) -> dict[str, Any]:
    return {
        "gateway": {"listen": [f"127.0.0.1:{port}"]},
        "upstreams": [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream_port}],
                       "keepalive": {"size": 64, "requests": 1000000}}],
        "routes": [{"id": "all", "uri": "/*", "upstream_id": "up", "plugins": plugins}],
        "consumers": [{"username": "bench", "plugins": {"key-auth": {"key": API_KEY}}}],
    }


# --------------------------------------------------------------------------- the serving side

def serve(config_path: str, port: int, requests: int) -> None:
    """Serves until `requests` responses have been logged, then prints its CPU seconds."""
    import uvloop

    from gateway._native import SharedLimiter, SharedMetrics
    from gateway._proto import Server
    from gateway.config import load_config
    from gateway.proxy.runtime import compile_runtime
    from gateway.server.sockets import reuseport_socket

    config = load_config(config_path)
    limiter, metrics = SharedLimiter.create(), SharedMetrics.create()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        runtime = compile_runtime(config, 1, limiter=limiter, metrics=metrics, worker_id=0)
        server = Server(loop, runtime, 0.5)
        count = 0
        start = 0.0

        def on_log(ctx: Any) -> None:
            nonlocal count, start
            count += 1
            if count == 1:
                start = time.process_time()
            if count == requests + 1 and not done.done():
                done.set_result(time.process_time() - start)

        server.on_log = on_log
        sock = reuseport_socket(f"127.0.0.1:{port}")
        listener = await loop.create_server(server.protocol_factory, sock=sock)
        print("ready", flush=True)
        cpu = await done
        listener.close()
        server.close_all()
        print(f"cpu {cpu:.6f}", flush=True)

    uvloop.run(main())


# --------------------------------------------------------------------------- the client side

def client(port: int, requests: int, connections: int) -> None:
    """`requests` + 1 GETs (the first only starts the clock) over `connections` keep-alive
    connections, each waiting for its response before the next request."""
    request = (f"GET /bench HTTP/1.1\r\nHost: bench\r\napikey: {API_KEY}\r\n"
               "User-Agent: plugin-cost\r\n\r\n").encode()

    async def one(n: int) -> None:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        for _ in range(n):
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 200"):
                raise BenchError(f"unexpected response: {head[:80]!r}")
            length = int(re.search(rb"(?i)content-length: *(\d+)", head).group(1))
            await reader.readexactly(length)
        writer.close()

    async def main() -> None:
        await one(1)
        share = [requests // connections + (i < requests % connections)
                 for i in range(connections)]
        await asyncio.gather(*(one(n) for n in share if n))

    asyncio.run(main())


# --------------------------------------------------------------------------- orchestration

def wait_port(port: int, proc: subprocess.Popen, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise BenchError(f"server exited: {proc.stderr.read() if proc.stderr else ''}")
        try:
            socket.create_connection(("127.0.0.1", port), 0.2).close()
            return
        except OSError:
            time.sleep(0.05)
    raise BenchError("server did not listen")


def run_once(tmp: str, plugins: dict[str, Any], upstream_port: int, requests: int,
             connections: int, callgrind: str | None = None) -> float:
    """CPU seconds of serving `requests`, or with `callgrind`, the instructions executed."""
    port = free_port()
    path = os.path.join(tmp, f"gateway-{port}.json")
    with open(path, "w") as fh:
        json.dump(config_for(plugins, upstream_port, port), fh)
    cmd = [sys.executable, __file__, "serve", path, str(port), str(requests)]
    if callgrind:
        # CALLGRIND_OPTIONS: more valgrind options (e.g. --dump-instr=yes to annotate)
        cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={callgrind}",
               "--toggle-collect=*data_received*",
               *os.environ.get("CALLGRIND_OPTIONS", "").split(), *cmd]
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    try:
        wait_port(port, server)
        subprocess.run([sys.executable, __file__, "client", str(port), str(requests),
                        str(connections)], check=True, env=env)
        out, err = server.communicate(timeout=300)
    finally:
        if server.poll() is None:
            server.kill()
    if server.returncode != 0:
        raise BenchError(f"server failed: {err[-2000:]}")
    if callgrind:
        match = re.search(r"Collected : (\d+)", err)
        if match is None:
            raise BenchError(f"no callgrind total: {err[-1000:]}")
        return float(match.group(1))
    return float(out.split("cpu ")[1])


def measure(args: argparse.Namespace, cases: list[str]) -> dict[str, Any]:
    nginx = find_nginx()
    if nginx is None:
        raise BenchError("nginx is needed for the upstream (apt-get install nginx-light)")
    if not args.no_callgrind and shutil.which("valgrind") is None:
        raise BenchError("valgrind is needed for instruction counts (or --no-callgrind)")
    results: dict[str, Any] = {"settings": vars(args), "cases": {}}
    with tempfile.TemporaryDirectory(prefix="plugin-cost-") as tmp:
        upstream = start_upstream(nginx, tmp)
        try:
            for case in [BASELINE, *cases]:
                plugins = {} if case == BASELINE else CASES[case]
                entry: dict[str, Any] = {}
                if case != BASELINE and args.runs > 0:
                    entry["cpu_us"], entry["baseline_cpu_us"] = [], []
                    for i in range(args.runs):
                        order = [(case, plugins), (BASELINE, {})]
                        for name, p in (order if i % 2 == 0 else order[::-1]):
                            cpu = run_once(tmp, p, upstream.port, args.requests,
                                           args.connections)
                            key = "cpu_us" if name == case else "baseline_cpu_us"
                            entry[key].append(cpu / args.requests * 1e6)
                    entry["added_cpu_us"] = statistics.median(
                        a - b for a, b in zip(entry["cpu_us"], entry["baseline_cpu_us"]))
                if not args.no_callgrind:
                    counts = []
                    for n in (args.callgrind_requests, 2 * args.callgrind_requests):
                        out = os.path.join(tmp, f"callgrind.{len(counts)}")
                        counts.append(run_once(tmp, plugins, upstream.port, n, 1, callgrind=out))
                    entry["instructions"] = (counts[1] - counts[0]) / args.callgrind_requests
                results["cases"][case] = entry
                log(f"{case}: {json.dumps({k: v for k, v in entry.items() if not isinstance(v, list)})}")
        finally:
            upstream.stop()
    base = results["cases"][BASELINE].get("instructions")
    for case, entry in results["cases"].items():
        if base is not None and case != BASELINE:
            entry["added_instructions"] = entry["instructions"] - base
    return results


def table(results: dict[str, Any]) -> str:
    rows = ["| case | added CPU µs/req (median of pairs) | CPU µs/req: with / without | "
            "instructions/req | added instructions/req |", "|---|---:|---:|---:|---:|"]
    for case, e in results["cases"].items():
        cpu = f"{e['added_cpu_us']:+.2f}" if "added_cpu_us" in e else "-"
        pair = (f"{statistics.median(e['cpu_us']):.1f} / {statistics.median(e['baseline_cpu_us']):.1f}"
                if e.get("cpu_us") else "-")
        ins = f"{e['instructions']:,.0f}" if "instructions" in e else "-"
        added = f"{e['added_instructions']:+,.0f}" if "added_instructions" in e else "-"
        rows.append(f"| {case} | {cpu} | {pair} | {ins} | {added} |")
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "serve":
        serve(argv[1], int(argv[2]), int(argv[3]))
        return 0
    if argv and argv[0] == "client":
        client(int(argv[1]), int(argv[2]), int(argv[3]))
        return 0
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cases", default=",".join(CASES),
                        help="comma-separated case names (B and C for the APISIX cases)")
    parser.add_argument("--runs", type=int, default=5,
                        help="CPU pairs per case (0: instruction counts only)")
    parser.add_argument("--requests", type=int, default=20000, help="requests per CPU run")
    parser.add_argument("--connections", type=int, default=20)
    parser.add_argument("--callgrind-requests", type=int, default=500,
                        help="N1 of the instruction count (N2 = 2 x N1)")
    parser.add_argument("--no-callgrind", action="store_true")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    cases = [SHORT.get(c, c) for c in args.cases.split(",") if c]
    unknown = [c for c in cases if c not in CASES]
    if unknown:
        parser.error(f"unknown case(s): {', '.join(unknown)} (known: {', '.join(CASES)})")
    try:
        results = measure(args, cases)
    except BenchError as exc:
        print(f"plugin_cost: {exc}", file=sys.stderr)
        return 1
    print(table(results))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
