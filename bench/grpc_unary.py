"""gRPC unary calls through the gateway, through nginx (`grpc_pass`) and straight to the
upstream, in one run, one worker each.

    python bench/grpc_unary.py [--duration 10] [--runs 3] [--clients 10] [--streams 10]
                               [--json OUT]

The upstream is nginx answering every call over h2c with one gRPC message and
`grpc-status: 0` in trailers (a static reply, so that the upstream costs little and the same for
every target; a grpcio server would be the bottleneck of all three). Before measuring, a grpcio
client calls each target once and checks the reply and the status. h2load (Debian's
nghttp2-client) then sends unary calls (POST, application/grpc, te: trailers, a 5-byte message)
over `--clients` connections with `--streams` concurrent streams each, alternating the targets
run by run. Figures: calls per second, and CPU microseconds per call of the proxy's processes
(/proc utime + stime, divided by the calls h2load completed).
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import struct
import sys
import time
from contextlib import ExitStack

if __package__ in (None, ""):  # run as a script: make `bench` (and the gateway) importable
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    BenchError,
    Server,
    cpu_during,
    find_nginx,
    free_port,
    log,
    run_h2load,
    scratch_dir,
    spawn_gateway,
    start_nginx,
    write_json,
    write_text,
)

REPLY = b"hello"
METHOD = "/bench.Echo/Unary"

UPSTREAM = """\
    server {{
        listen 127.0.0.1:{port} http2;
        http2_max_requests 1000000;
        keepalive_requests 1000000;
        root {root};
        # every call is a POST of the reply file, which static files refuse (405): the error
        # page serves the file instead, 200, with the gRPC content type and status trailer
        error_page 405 =200 /reply;
        location / {{
            try_files /reply =404;
        }}
        location = /reply {{
            default_type application/grpc;
            add_trailer grpc-status 0 always;
        }}
    }}"""

NGINX_PROXY = """\
    upstream grpc_backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 1000000;
    }}
    server {{
        listen 127.0.0.1:{port} http2 reuseport;
        http2_max_requests 1000000;
        keepalive_requests 1000000;
        location / {{
            grpc_pass grpc://grpc_backend;
        }}
    }}"""

GATEWAY_CONFIG = """\
gateway:
  listen: ["127.0.0.1:{port}"]
  admin: {{listen: "127.0.0.1:{admin}"}}
upstreams:
  - id: up
    scheme: grpc
    nodes: [{{host: 127.0.0.1, port: {upstream}}}]
routes:
  - id: all
    uri: /*
    upstream_id: up
"""


def start_gateway(tmp: str, upstream_port: int) -> Server:
    port, admin = free_port(), free_port()
    conf = write_text(tmp, "gateway.yaml",
                      GATEWAY_CONFIG.format(port=port, admin=admin, upstream=upstream_port))
    return spawn_gateway(tmp, conf, port)


def check_call(server: Server, timeout: float = 20.0) -> None:
    """One real gRPC call (grpcio) through ``server``: the reply and grpc-status 0."""
    import grpc
    deadline = time.monotonic() + timeout
    last = ""
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited; its log ends with:\n{server.tail_log()}")
        with grpc.insecure_channel(f"127.0.0.1:{server.port}") as channel:
            call = channel.unary_unary(METHOD)
            try:
                reply = call(b"ping", timeout=2)
            except grpc.RpcError as exc:
                last = f"{exc.code()}: {exc.details()}"
                time.sleep(0.2)
                continue
        if reply != REPLY:
            raise BenchError(f"{server.name} answered {reply!r}")
        return
    raise BenchError(f"{server.name}: no successful gRPC call within {timeout:.0f}s ({last})")


def h2load(port: int, seconds: float, args: argparse.Namespace, body: str) -> dict:
    result = run_h2load(["-D", str(max(1, round(seconds))), "-c", str(args.clients),
                         "-m", str(args.streams), "-d", body,
                         "-H", "content-type: application/grpc", "-H", "te: trailers",
                         f"http://127.0.0.1:{port}{METHOD}"], seconds + 30, pin=False)
    return {"rps": result["rps"], "calls": result["done"],
            "failed": result["failed"] + result["errored"],
            "non_2xx": result["3xx"] + result["4xx"] + result["5xx"]}


def measure(name: str, target: Server, proxy: Server | None, body: str,
            args: argparse.Namespace) -> dict:
    h2load(target.port, 2, args, body)  # warm-up: connections pooled, caches filled
    if proxy is None:
        result = h2load(target.port, args.duration, args, body)
        result["cpu_us_per_call"] = None
    else:
        result, cpu = cpu_during(proxy.pid, lambda: h2load(target.port, args.duration, args,
                                                           body))
        result["cpu_us_per_call"] = cpu / (result["calls"] or 1) * 1e6
    cpu_text = f", proxy {result['cpu_us_per_call']:.1f} us/call" if proxy else ""
    log(f"{name}: {result['rps']:.0f} calls/s{cpu_text}, failed {result['failed']}, "
        f"non-2xx {result['non_2xx']}")
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=10.0)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--clients", type=int, default=10, help="h2load connections")
    parser.add_argument("--streams", type=int, default=10, help="concurrent streams each")
    parser.add_argument("--json", metavar="OUT")
    args = parser.parse_args(argv)
    nginx = find_nginx()
    if nginx is None or shutil.which("h2load") is None:
        log("needs nginx (nginx-light) and h2load (nghttp2-client)")
        return 1
    with scratch_dir("grpc-bench-") as tmp, ExitStack() as servers:
        # world-readable (scratch_dir): run as root, nginx's workers (nobody) read the reply
        root = os.path.join(tmp, "root")
        os.makedirs(root)
        with open(os.path.join(root, "reply"), "wb") as fh:
            fh.write(b"\x00" + struct.pack(">I", len(REPLY)) + REPLY)
        os.chmod(root, 0o755)
        body = os.path.join(tmp, "request")
        with open(body, "wb") as fh:
            fh.write(b"\x00" + struct.pack(">I", 5) + b"hello")
        up_port = free_port()
        upstream = start_nginx("upstream", nginx, os.path.join(tmp, "up"), 1,
                               UPSTREAM.format(port=up_port, root=root), up_port)
        servers.callback(upstream.stop)
        proxy_port = free_port()
        nginx_proxy = start_nginx("nginx", nginx, os.path.join(tmp, "nginx"), 1,
                                  NGINX_PROXY.format(port=proxy_port, upstream=up_port),
                                  proxy_port)
        servers.callback(nginx_proxy.stop)
        gateway = start_gateway(os.path.join(tmp, "gateway"), up_port)
        servers.callback(gateway.stop)
        for server in (upstream, nginx_proxy, gateway):
            check_call(server)
        results: dict[str, list[dict]] = {"direct": [], "nginx": [], "gateway": []}
        for run in range(args.runs):
            log(f"run {run + 1}/{args.runs}")
            results["direct"].append(measure("direct", upstream, None, body, args))
            results["nginx"].append(measure("nginx", nginx_proxy, nginx_proxy, body, args))
            results["gateway"].append(measure("gateway", gateway, gateway, body, args))
    summary = {}
    print("| target | calls/s | proxy CPU µs/call | failed | non-2xx |")
    print("|---|---:|---:|---:|---:|")
    for name, runs in results.items():
        rps = statistics.median(r["rps"] for r in runs)
        cpu = statistics.median(r["cpu_us_per_call"] for r in runs) \
            if runs[0]["cpu_us_per_call"] is not None else None
        failed = sum(r["failed"] for r in runs)
        non_2xx = sum(r["non_2xx"] for r in runs)
        summary[name] = {"rps": rps, "cpu_us_per_call": cpu, "failed": failed, "non_2xx": non_2xx}
        print(f"| {name} | {rps:,.0f} | {'-' if cpu is None else f'{cpu:.1f}'} | {failed} "
              f"| {non_2xx} |")
    g, n = summary["gateway"], summary["nginx"]
    print(f"\ngateway/nginx calls per second: {g['rps'] / n['rps']:.2f}x (higher is better)")
    print(f"gateway/nginx CPU per call: {g['cpu_us_per_call'] / n['cpu_us_per_call']:.2f}x "
          "(lower is better)")
    write_json(args.json, {"args": vars(args), "summary": summary, "runs": results})
    bad = any(s["failed"] or s["non_2xx"] for s in summary.values())
    return 3 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
