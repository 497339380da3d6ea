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
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    UPSTREAM_BODY,
    BenchError,
    Server,
    cpu_delta,
    find_nginx,
    free_port,
    log,
    start_nginx,
    wait_ready,
    wrk_cpu,
)
from bench.tls_engines import make_cert, start_gateway  # noqa: E402

NGINX_H2 = """\
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 100000;
    }}
    server {{
        listen 127.0.0.1:{port} ssl http2 reuseport;
        listen 127.0.0.1:{plain} http2 reuseport;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_ciphers ECDHE+AESGCM:ECDHE+CHACHA20;
        http2_max_concurrent_streams 128;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""

CASES = (("h2 over TLS", True), ("h2c (prior knowledge)", False))


def h2load(url: str, requests: int, connections: int, streams: int) -> dict:
    exe = shutil.which("h2load")
    if exe is None:
        raise BenchError("h2load is needed (apt-get install nghttp2-client)")
    cmd = [exe, "-t1", f"-n{requests}", f"-c{connections}", f"-m{streams}", url]
    cpu = wrk_cpu()
    if cpu is not None and shutil.which("taskset"):
        cmd = ["taskset", "-c", str(cpu)] + cmd
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    done = re.search(r"requests: \d+ total, \d+ started, (\d+) done, (\d+) succeeded, (\d+) failed",
                     proc.stdout)
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", proc.stdout)
    if proc.returncode != 0 or done is None or rate is None:
        raise BenchError(f"h2load failed: {(proc.stderr or proc.stdout).strip()[-300:]}")
    return {"requests": int(done.group(2)), "failed": int(done.group(3)),
            "rps": float(rate.group(1))}


def measure(server: Server, url: str, args: argparse.Namespace) -> dict:
    h2load(url, max(1000, args.requests // 10), args.connections, args.streams)  # warm-up
    before = server.cpu()
    result = h2load(url, args.requests, args.connections, args.streams)
    after = server.cpu()
    result["cpu_us_per_req"] = cpu_delta(before, after) / (result["requests"] or 1) * 1e6
    return result


def run(args: argparse.Namespace, base: str) -> list[dict]:
    nginx = find_nginx()
    if nginx is None:
        raise BenchError("nginx is needed (apt-get install nginx-light)")
    cert, key = make_cert(base)
    up_port = free_port()
    upstream = start_nginx("upstream", nginx, os.path.join(base, "upstream"), 1,
                           UPSTREAM_BODY.format(port=up_port), up_port)
    servers: list[Server] = [upstream]
    rows: list[dict] = []
    try:
        wait_ready(upstream)
        port, plain = free_port(), free_port()
        proxy = start_nginx("nginx", nginx, os.path.join(base, "nginx"), 1,
                            NGINX_H2.format(port=port, plain=plain, upstream=up_port, cert=cert,
                                            key=key), plain)
        proxy.info["tls_port"] = port
        servers.append(proxy)
        gateway = start_gateway(os.path.join(base, "gateway"), up_port, cert, key)
        servers.append(gateway)
        wait_ready(gateway)
        for label, tls in CASES:
            for n in range(1, args.runs + 1):
                for server in ((proxy, gateway) if n % 2 else (gateway, proxy)):
                    url = (f"https://127.0.0.1:{server.info['tls_port']}/" if tls
                           else f"http://127.0.0.1:{server.port}/")
                    result = measure(server, url, args)
                    log(f"{label} run {n} {server.name}: {result['rps']:.0f} req/s, "
                        f"{result['cpu_us_per_req']:.1f} us CPU/req, failed {result['failed']}")
                    rows.append({"case": label, "server": server.name, "run": n, **result})
    finally:
        for server in reversed(servers):
            server.stop()
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
    base = tempfile.mkdtemp(prefix="gw-h2-bench-")
    os.chmod(base, 0o755)
    try:
        rows = run(args, base)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        shutil.rmtree(base, ignore_errors=True)
    print(render(rows))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)
    return 0


if __name__ == "__main__":
    sys.exit(main())
