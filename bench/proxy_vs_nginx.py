"""Side-by-side benchmark: the gateway and nginx proxying the same upstream, in one run.

    python bench/proxy_vs_nginx.py [--quick] [--workers 1] [--duration 10] [--connections 50]
                                   [--runs 3] [--json OUT] [--gateway-only | --nginx-only]

An nginx instance serves a fixed 12-byte body (the upstream). Two proxies sit in front of it:
nginx (``proxy_pass`` with an upstream keep-alive pool) and the gateway (``gateway run``). wrk
loads each proxy in turn, alternating nginx, gateway, nginx, gateway, ... so that drift on a
shared machine hits both alike. For each measured run the script reads the CPU time (utime +
stime from /proc/<pid>/stat) of every process of the proxy and of the upstream before and after,
and divides by the requests wrk completed: CPU microseconds per proxied request, the figure that
matters. It also runs wrk straight at the upstream (the "direct" row, the ceiling).

Output: a Markdown table on stdout with the median of each figure over the runs, then the
gateway/nginx ratios. Progress goes to stderr. ``--json OUT`` writes every figure, per run too.
Exit status: 0 ok, 1 setup failure (missing tool, a server that does not start), 3 when a
measured run saw socket errors or non-2xx responses (the figures are printed but flagged).
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time

if __package__ in (None, ""):  # run as a script: make `bench` (and the gateway) importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402  (the machinery shared with `python -m bench`)
    CLK_TCK,
    PROXY_BODY,
    BenchError,
    Server,
    cpu_delta,
    find_nginx,
    free_port,
    log,
    process_tree,
    repo_env,
    run_wrk,
    spawn_gateway,
    start_hello_upstream,
    start_nginx,
    tool_version,
    wait_ready,
    write_text,
    wrk_cpu,
)
from bench.peers import GATEWAY_ONE_ROUTE  # noqa: E402

WARMUP_SECONDS = 2


# --------------------------------------------------------------------------- gateway

def start_gateway(tmp: str, workers: int, upstream_port: int) -> Server:
    port, admin = free_port(), free_port()
    conf = write_text(tmp, "gateway.yaml", GATEWAY_ONE_ROUTE.format(
        port=port, admin=admin, upstream=upstream_port, gateway_extra="", extra=""))
    # Benchmark this checkout: the in-place build (`pip install -e .`) lives in the repository.
    return spawn_gateway(tmp, conf, port, workers=workers)


# --------------------------------------------------------------------------- measure

def measure(label: str, target: Server | None, upstream: Server, wrk: str, port: int,
            args: argparse.Namespace, run_no: int) -> dict:
    """Warm-up, then one measured wrk run with CPU snapshots of the proxy and the upstream."""
    prefix = f"run {run_no}/{args.runs} {label}"
    log(f"{prefix}: warm-up {WARMUP_SECONDS}s")
    run_wrk(wrk, port, WARMUP_SECONDS, args.connections)
    log(f"{prefix}: measuring {args.duration:g}s")
    proxy_before = target.cpu() if target else {}
    up_before = upstream.cpu()
    result = run_wrk(wrk, port, args.duration, args.connections)
    proxy_after = target.cpu() if target else {}
    up_after = upstream.cpu()
    requests = result["requests"] or 1
    result["target"] = label
    result["run"] = run_no
    if target is not None:
        result["proxy_cpu_s"] = cpu_delta(proxy_before, proxy_after)
        result["proxy_cpu_us_per_req"] = result["proxy_cpu_s"] / requests * 1e6
        result["proxy_processes"] = len(proxy_after)
        if len(proxy_after) != target.expected_procs or set(proxy_before) != set(proxy_after):
            log(f"{prefix}: WARNING: process tree changed or unexpected size "
                f"({len(proxy_before)} -> {len(proxy_after)} processes, expected "
                f"{target.expected_procs}); CPU of exited processes is not counted")
    else:
        result["proxy_cpu_s"] = None
        result["proxy_cpu_us_per_req"] = None
    result["upstream_cpu_s"] = cpu_delta(up_before, up_after)
    result["upstream_cpu_us_per_req"] = result["upstream_cpu_s"] / requests * 1e6
    cpu_txt = (f", proxy {result['proxy_cpu_us_per_req']:.1f} us/req"
               if result["proxy_cpu_us_per_req"] is not None else "")
    err_txt = f", ERRORS {result['errors']}" if result["errors"] else ""
    log(f"{prefix}: {result['rps']:.0f} req/s, p50 {result['p50_ms']:.3f} ms, "
        f"p99 {result['p99_ms']:.3f} ms{cpu_txt}, upstream "
        f"{result['upstream_cpu_us_per_req']:.1f} us/req{err_txt}")
    return result


# --------------------------------------------------------------------------- report

METRICS = ("rps", "p50_ms", "p99_ms", "proxy_cpu_us_per_req", "upstream_cpu_us_per_req")


def summarize(runs: list[dict]) -> dict:
    summary: dict = {"runs": len(runs), "errors": sum(r["errors"] for r in runs)}
    for metric in METRICS:
        values = [r[metric] for r in runs if r.get(metric) is not None]
        summary[metric] = statistics.median(values) if values else None
    return summary


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def ratio(a, b) -> float | None:
    return a / b if a is not None and b else None


def render(summaries: dict[str, dict], workers: int, ratios: dict) -> str:
    lines = ["| target | workers | req/s | p50 ms | p99 ms | proxy CPU µs/req "
             "| upstream CPU µs/req | errors |",
             "|---|---:|---:|---:|---:|---:|---:|---:|"]
    for name, s in summaries.items():
        errors = f"{s['errors']} (!)" if s["errors"] else "0"
        lines.append(f"| {name} | {'-' if name == 'direct' else workers} | {_fmt(s['rps'], ',.0f')} "
                     f"| {_fmt(s['p50_ms'], '.3f')} | {_fmt(s['p99_ms'], '.3f')} "
                     f"| {_fmt(s['proxy_cpu_us_per_req'], '.1f')} "
                     f"| {_fmt(s['upstream_cpu_us_per_req'], '.1f')} | {errors} |")
    out = "\n".join(lines) + "\n"
    if ratios:
        out += "\n"
        out += (f"gateway/nginx CPU per request: {_fmt(ratios['cpu_per_request'], '.2f')}x "
                "(lower is better)\n")
        out += (f"gateway/nginx requests/s: {_fmt(ratios['requests_per_second'], '.2f')}x "
                "(higher is better)\n")
        out += f"gateway/nginx p99 latency: {_fmt(ratios['p99'], '.2f')}x (lower is better)\n"
    return out


# --------------------------------------------------------------------------- main

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="CPU per proxied request: the gateway vs nginx, side by side.")
    parser.add_argument("--quick", action="store_true", help="1 run of 5 s")
    parser.add_argument("--workers", type=int, default=1, help="proxy worker processes (default 1)")
    parser.add_argument("--duration", type=float, default=None,
                        help="seconds per measured run (default 10, 5 with --quick)")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections (default 50)")
    parser.add_argument("--runs", type=int, default=None,
                        help="alternating runs per proxy (default 3, 1 with --quick)")
    parser.add_argument("--json", metavar="OUT", help="also write every figure as JSON to OUT")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--gateway-only", action="store_true", help="skip the nginx proxy")
    only.add_argument("--nginx-only", action="store_true", help="skip the gateway")
    parser.add_argument("--no-direct", action="store_true", help="skip the direct (ceiling) row")
    args = parser.parse_args(argv)
    if args.duration is None:
        args.duration = 5.0 if args.quick else 10.0
    if args.runs is None:
        args.runs = 1 if args.quick else 3
    if args.workers < 1 or args.runs < 1 or args.connections < 1 or args.duration <= 0:
        parser.error("--workers, --runs, --connections and --duration must be positive")
    return args


def find_tools() -> tuple[str, str]:
    nginx = find_nginx()
    wrk = shutil.which("wrk")
    missing = [name for name, path in (("nginx", nginx), ("wrk", wrk)) if not path]
    if missing:
        raise BenchError(f"{' and '.join(missing)} not found: install nginx-light and wrk "
                         "(apt-get install nginx-light wrk)")
    if wrk_cpu() is not None and not shutil.which("taskset"):
        raise BenchError("taskset not found (util-linux), needed to pin wrk")
    return nginx, wrk


def check_gateway() -> None:
    proc = subprocess.run([sys.executable, "-c", "import gateway._native"], env=repo_env(),
                          capture_output=True, text=True)
    if proc.returncode != 0:
        detail = proc.stderr.strip().splitlines()[-1] if proc.stderr.strip() else ""
        raise BenchError("the gateway is not built (import gateway._native failed): run "
                         f"`pip install -e .` in the repository, or pass --nginx-only\n{detail}")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    # A SIGTERM to the script must still run the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        nginx, wrk = find_tools()
        if not args.nginx_only:
            check_gateway()
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1

    targets = [] if args.gateway_only else ["nginx"]
    if not args.nginx_only:
        targets.append("gateway")
    order = []
    for run_no in range(1, args.runs + 1):
        pair = targets if run_no % 2 else targets[::-1]  # n g, g n, n g ... balances position
        order += [(run_no, name) for name in pair]
        if not args.no_direct:
            order.append((run_no, "direct"))

    base = tempfile.mkdtemp(prefix="gw-bench-")
    servers: dict[str, Server] = {}
    results: dict[str, list[dict]] = {name: [] for name in ["direct"] * (not args.no_direct)
                                      + targets}
    try:
        servers["upstream"] = start_hello_upstream(nginx, os.path.join(base, "upstream"),
                                                   "upstream nginx")
        up_port = servers["upstream"].port
        wait_ready(servers["upstream"])
        log(f"upstream nginx pid {servers['upstream'].pid} on 127.0.0.1:{up_port}")
        if "nginx" in targets:
            port = free_port()
            servers["nginx"] = start_nginx(
                "nginx proxy", nginx, os.path.join(base, "nginx"), args.workers,
                PROXY_BODY.format(port=port, upstream=up_port), port)
            wait_ready(servers["nginx"])
            log(f"nginx proxy pid {servers['nginx'].pid} on 127.0.0.1:{port}, "
                f"{len(process_tree(servers['nginx'].pid))} processes")
        if "gateway" in targets:
            servers["gateway"] = start_gateway(os.path.join(base, "gateway"), args.workers, up_port)
            wait_ready(servers["gateway"])
            log(f"gateway pid {servers['gateway'].pid} on 127.0.0.1:{servers['gateway'].port}, "
                f"{len(process_tree(servers['gateway'].pid))} processes")
        cpu = wrk_cpu()
        log(f"wrk pinned to cpu {cpu}" if cpu is not None else "single cpu: wrk not pinned")

        for run_no, name in order:
            if name == "direct":
                result = measure("direct", None, servers["upstream"], wrk, up_port, args, run_no)
            else:
                server = servers[name]
                if server.proc.poll() is not None:
                    raise BenchError(f"{server.name} exited during the benchmark "
                                     f"(status {server.proc.returncode}):\n{server.tail_log()}")
                result = measure(name, server, servers["upstream"], wrk, server.port, args,
                                 run_no)
            results[name].append(result)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    finally:
        for name in reversed(list(servers)):  # proxies first, the upstream last
            servers[name].stop()
        shutil.rmtree(base, ignore_errors=True)

    summaries = {name: summarize(runs) for name, runs in results.items()}
    ratios: dict = {}
    if "nginx" in summaries and "gateway" in summaries:
        n, g = summaries["nginx"], summaries["gateway"]
        ratios = {
            "cpu_per_request": ratio(g["proxy_cpu_us_per_req"], n["proxy_cpu_us_per_req"]),
            "requests_per_second": ratio(g["rps"], n["rps"]),
            "p99": ratio(g["p99_ms"], n["p99_ms"]),
            # Ratios of each alternating pair, to judge the spread between runs.
            "cpu_per_request_by_run": [
                ratio(gr["proxy_cpu_us_per_req"], nr["proxy_cpu_us_per_req"])
                for nr, gr in zip(results["nginx"], results["gateway"])],
        }
    flagged = any(s["errors"] for s in summaries.values())

    print(render(summaries, args.workers, ratios), end="")
    if flagged:
        print("\nWARNING: some measured runs had socket errors or non-2xx responses "
              "(errors column); their figures are suspect.")

    if args.json:
        doc = {
            "settings": {"workers": args.workers, "duration_s": args.duration,
                         "connections": args.connections, "runs": args.runs,
                         "warmup_s": WARMUP_SECONDS, "wrk_threads": 1,
                         "wrk_cpu": wrk_cpu(), "cpus": sorted(os.sched_getaffinity(0)),
                         "clk_tck": CLK_TCK},
            "environment": {"nginx": tool_version([nginx, "-v"]),
                            "wrk": tool_version([wrk, "--version"]),
                            "python": platform.python_version(),
                            "machine": platform.machine(), "kernel": platform.release(),
                            "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
            "summary": summaries,
            "ratios": ratios,
            "flagged": flagged,
            "runs": results,
        }
        with open(args.json, "w") as fh:
            json.dump(doc, fh, indent=2)
        log(f"wrote {args.json}")
    return 3 if flagged else 0


if __name__ == "__main__":
    sys.exit(main())
