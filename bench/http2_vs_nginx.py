"""HTTP/2 downstream against nginx: CPU per request with h2load, the same upstream, one
worker each, alternating in the same run.

    python bench/http2_vs_nginx.py [--quick] [--requests 100000] [--runs 3]
                                   [--connections 5] [--streams 10] [--json OUT]

Both servers proxy to one nginx upstream over HTTP/1.1 keep-alive: nginx with
`listen ... ssl http2` (TLS, ALPN h2) and `listen ... http2` (h2c with prior knowledge; the
nginx 1.22 syntax), the gateway with `tls_listen` (ALPN h2) and `listen` (h2c preface). h2load
(Debian's nghttp2-client) sends ``--requests`` requests over ``--connections`` connections
with ``--streams`` concurrent streams each (5 x 10: 50 requests in flight, as the wrk benches'
50 connections; above the 64 pooled upstream connections both proxies would churn them). CPU
is utime + stime of the server's processes from /proc, divided by the requests h2load
completed. Output: a Markdown table on stdout, progress on stderr.
"""
from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
from contextlib import ExitStack

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    BenchError,
    Server,
    cpu_during,
    find_nginx,
    log,
    run_h2load,
    scratch_dir,
    wait_ready,
    write_json,
)
from bench.peers import (  # noqa: E402
    alternating,
    make_cert,
    start_tls_peers,
    url_of,
)

CASES = (("h2 over TLS", True), ("h2c (prior knowledge)", False))


def h2load(url: str, requests: int, connections: int, streams: int) -> dict:
    result = run_h2load([f"-n{requests}", f"-c{connections}", f"-m{streams}", url], 300)
    return {"requests": result["succeeded"], "failed": result["failed"], "rps": result["rps"]}


def measure(server: Server, url: str, args: argparse.Namespace) -> dict:
    h2load(url, max(1000, args.requests // 10), args.connections, args.streams)  # warm-up
    result, cpu = cpu_during(server.pid, lambda: h2load(url, args.requests, args.connections,
                                                        args.streams))
    result["cpu_us_per_req"] = cpu / (result["requests"] or 1) * 1e6
    return result


def run(args: argparse.Namespace, base: str) -> list[dict]:
    nginx = find_nginx()
    if nginx is None:
        raise BenchError("nginx is needed (apt-get install nginx-light)")
    cert, key = make_cert(base)
    rows: list[dict] = []
    with ExitStack() as servers:
        _, proxy, gateway = start_tls_peers(servers, nginx, base, cert, key, http2=True)
        wait_ready(gateway)
        for label, tls in CASES:
            for n, server in alternating([proxy, gateway], args.runs):
                result = measure(server, url_of(server, tls), args)
                log(f"{label} run {n} {server.name}: {result['rps']:.0f} req/s, "
                    f"{result['cpu_us_per_req']:.1f} us CPU/req, failed {result['failed']}")
                rows.append({"case": label, "server": server.name, "run": n, **result})
    return rows


def render(rows: list[dict]) -> str:
    """Medians over the runs; the ratio is the median of run i's gateway / run i's nginx (each
    pair measured back to back, so the machine's drift hits both)."""
    out = ["| case | nginx CPU µs/req | gateway CPU µs/req | gateway/nginx | nginx req/s | "
           "gateway req/s | failed |", "|---|---:|---:|---:|---:|---:|---:|"]
    for label, _tls in CASES:
        by = {name: {r["run"]: r for r in rows if r["case"] == label and r["server"] == name}
              for name in ("nginx", "gateway")}
        runs = sorted(set(by["nginx"]) & set(by["gateway"]))
        if not runs:
            continue
        ratio = statistics.median(by["gateway"][n]["cpu_us_per_req"] / by["nginx"][n]["cpu_us_per_req"]
                                  for n in runs)

        def med(name: str, key: str, by: dict = by, runs: list[int] = runs) -> float:
            return statistics.median(by[name][n][key] for n in runs)
        failed = sum(by[name][n]["failed"] for name in by for n in runs)
        out.append(f"| {label} | {med('nginx', 'cpu_us_per_req'):.1f} | "
                   f"{med('gateway', 'cpu_us_per_req'):.1f} | {ratio:.2f}x | "
                   f"{med('nginx', 'rps'):.0f} | {med('gateway', 'rps'):.0f} | {failed} |")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 20000 requests per case")
    parser.add_argument("--requests", type=int, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--connections", type=int, default=5)
    parser.add_argument("--streams", type=int, default=10)
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    args.requests = args.requests or (20_000 if args.quick else 100_000)
    args.runs = args.runs or (1 if args.quick else 3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    try:
        with scratch_dir("gw-h2-bench-") as base:
            rows = run(args, base)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(rows))
    write_json(args.json, rows)
    return 0


if __name__ == "__main__":
    sys.exit(main())
