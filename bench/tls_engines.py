"""TLS engines, measured: what to terminate TLS with, and what it costs against nginx.

    python bench/tls_engines.py [--quick] [--duration 5] [--runs 2] [--connections 50]
                                [--json OUT] [--skip-engines | --skip-servers]

Part 1, the engines alone (no sockets): the server side of one keep-alive request (decrypt a
~60-byte request, encrypt a ~200-byte response) and of one full handshake (ECDSA P-256), in
memory:
  - stdlib `ssl` through `SSLObject` + `MemoryBIO`: what uvloop's TLS transport does per read
    (the gateway's engine before rustls),
  - the engine the gateway ships: `gateway._native.TlsEngine` (rust/tls: rustls 0.23 with
    aws-lc-rs) called from Python as the Cython TlsTransport calls it, one `receive` per read
    and one `send` per response,
  - rustls 0.23 with each crypto provider (aws-lc-rs, ring) driven sans-IO in Rust, without
    Python: the program in bench/tls_engine_rustls (built with cargo on first use).
Part 2, the servers: wrk over https, one worker each, the same nginx upstream, alternating runs:
  - nginx (`ssl`, `proxy_pass` with upstream keep-alive) and the gateway (`tls_listen`, the
    engine it ships: rustls under the Cython TlsTransport), keep-alive requests (CPU per
    request) and one request per connection (full handshakes: CPU per connection),
  - the same two over plain http, so the TLS share of each is visible,
  - with `--baseline PYTHON`, a third server: the gateway installed in that interpreter's
    environment (e.g. a build of an older commit), measured in the same run.

CPU is utime + stime of the server's processes from /proc, divided by the requests wrk
completed. Output: Markdown tables on stdout, progress on stderr.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import ssl
import statistics
import subprocess
import sys
import time
from contextlib import ExitStack

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.common import (  # noqa: E402
    BenchError,
    Server,
    cpu_during,
    log,
    nginx_and_wrk,
    run_wrk,
    scratch_dir,
    wait_ready,
    write_json,
)
from bench.peers import (  # noqa: E402
    alternating,
    make_cert,
    start_tls_gateway,
    start_tls_peers,
    url_of,
)

RUSTLS_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "tls_engine_rustls")
REQUEST = b"GET /bench HTTP/1.1\r\nHost: bench.test\r\nUser-Agent: wrk\r\n\r\n"
RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 128\r\nContent-Type: text/plain\r\n\r\n" + b"x" * 128


# --------------------------------------------------------------------------- part 1: engines

def _stdlib_pair(server_ctx: ssl.SSLContext, client_ctx: ssl.SSLContext) -> tuple[object, ...]:
    si, so, ci, co = ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO(), ssl.MemoryBIO()
    started = time.perf_counter()
    server = server_ctx.wrap_bio(si, so, server_side=True)
    spent = time.perf_counter() - started
    client = client_ctx.wrap_bio(ci, co, server_hostname="bench.test")
    client_done = server_done = False
    while not (client_done and server_done):
        if not client_done:
            try:
                client.do_handshake()
                client_done = True
            except ssl.SSLWantReadError:
                pass
        si.write(co.read())
        started = time.perf_counter()
        if not server_done:
            try:
                server.do_handshake()
                server_done = True
            except ssl.SSLWantReadError:
                pass
        out = so.read()
        spent += time.perf_counter() - started
        ci.write(out)
    try:
        client.read(1)  # takes the TLS 1.3 session tickets
    except ssl.SSLWantReadError:
        pass
    return server, client, si, so, ci, co, spent


def stdlib_engine(cert: str, key: str, requests: int, handshakes: int) -> dict:
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(cert, key)
    server_ctx.set_alpn_protocols(["http/1.1"])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    client_ctx.set_alpn_protocols(["http/1.1"])
    handshake = sum(_stdlib_pair(server_ctx, client_ctx)[-1] for _ in range(handshakes))  # type: ignore[misc]
    server, client, si, so, ci, co, _ = _stdlib_pair(server_ctx, client_ctx)
    spent = 0.0
    for _ in range(requests):
        client.write(REQUEST)  # type: ignore[attr-defined]
        wire = co.read()  # type: ignore[attr-defined]
        started = time.perf_counter()
        si.write(wire)  # type: ignore[attr-defined]
        server.read(65536)  # type: ignore[attr-defined]
        server.write(RESPONSE)  # type: ignore[attr-defined]
        out = so.read()  # type: ignore[attr-defined]
        spent += time.perf_counter() - started
        ci.write(out)  # type: ignore[attr-defined]
        client.read(65536)  # type: ignore[attr-defined]
    return {"engine": f"stdlib ssl ({ssl.OPENSSL_VERSION.split(' ')[1]}), SSLObject + MemoryBIO",
            "request_us": spent / requests * 1e6, "handshake_us": handshake / handshakes * 1e6}


def shipped_engine(cert: str, key: str, requests: int, handshakes: int) -> dict:
    """gateway._native's rustls engine, driven from Python as TlsTransport drives it."""
    from gateway._native import TlsEngine

    with open(cert) as fh:
        cert_pem = fh.read()
    with open(key) as fh:
        key_pem = fh.read()
    engine = TlsEngine([b"http/1.1"])
    engine.update([("bench", ["bench.test"], cert_pem, key_pem, None)])
    client_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    client_ctx.load_verify_locations(cert)
    client_ctx.set_alpn_protocols(["http/1.1"])

    def pair() -> tuple[object, object, ssl.MemoryBIO, ssl.MemoryBIO, list[bytes], float]:
        sent: list[bytes] = []
        incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
        client = client_ctx.wrap_bio(incoming, outgoing, server_hostname="bench.test")
        started = time.perf_counter()
        conn = engine.connection(sent.append)
        spent = time.perf_counter() - started
        while True:
            try:
                client.do_handshake()
                done = True
            except ssl.SSLWantReadError:
                done = False
            wire = outgoing.read()
            started = time.perf_counter()
            conn.receive(wire)
            spent += time.perf_counter() - started
            while sent:
                incoming.write(sent.pop(0))
            if done:
                break
        try:
            client.read(1)  # takes the TLS 1.3 session tickets
        except ssl.SSLWantReadError:
            pass
        return conn, client, incoming, outgoing, sent, spent

    handshake = sum(pair()[-1] for _ in range(handshakes))  # type: ignore[misc]
    conn, client, incoming, outgoing, sent, _ = pair()
    spent = 0.0
    for _ in range(requests):
        client.write(REQUEST)  # type: ignore[attr-defined]
        wire = outgoing.read()
        started = time.perf_counter()
        conn.receive(wire)  # type: ignore[attr-defined]
        conn.send(RESPONSE)  # type: ignore[attr-defined]
        spent += time.perf_counter() - started
        incoming.write(sent.pop())
        client.read(65536)  # type: ignore[attr-defined]
    return {"engine": "gateway._native.TlsEngine (rustls 0.23, aws-lc-rs), called from Python",
            "request_us": spent / requests * 1e6, "handshake_us": handshake / handshakes * 1e6}


def rustls_engine(requests: int, handshakes: int) -> list[dict]:
    binary = os.path.join(RUSTLS_DIR, "target", "release", "tls-engine-rustls")
    if not os.path.exists(binary):
        if shutil.which("cargo") is None:
            log("cargo not found: rustls alone is not measured")
            return []
        log("building bench/tls_engine_rustls (cargo build --release)")
        subprocess.run(["cargo", "build", "--release", "-q"], cwd=RUSTLS_DIR, check=True)
    out = subprocess.run([binary, str(requests), str(handshakes)], check=True,
                         capture_output=True, text=True).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


# --------------------------------------------------------------------------- part 2: servers

def measure(server: Server, url: str, args: argparse.Namespace, close: bool) -> dict:
    headers = {"Connection": "close"} if close else None
    run_wrk(args.wrk, 0, 1, args.connections, headers=headers, url=url)  # warm-up
    result, cpu = cpu_during(server.pid, lambda: run_wrk(args.wrk, 0, args.duration,
                                                         args.connections, headers=headers,
                                                         url=url))
    result["cpu_us_per_req"] = cpu / (result["requests"] or 1) * 1e6
    return result


CASES = (  # (label, tls, new connection per request)
    ("https keep-alive", True, False),
    ("https, a handshake per request", True, True),
    ("http keep-alive", False, False),
)


def servers_part(args: argparse.Namespace, base: str, cert: str, key: str) -> list[dict]:
    nginx, args.wrk = nginx_and_wrk()
    rows: list[dict] = []
    with ExitStack() as servers:
        upstream, proxy, gateway = start_tls_peers(servers, nginx, base, cert, key, http2=False)
        measured = [proxy, gateway]
        if args.baseline:
            baseline = start_tls_gateway(os.path.join(base, "baseline"), upstream.port, cert,
                                         key, python=args.baseline, name="baseline")
            servers.callback(baseline.stop)
            measured.append(baseline)
        for server in measured:
            wait_ready(server)
        for label, tls, close in CASES:
            for run, server in alternating(measured, args.runs):
                result = measure(server, url_of(server, tls), args, close)
                log(f"{label} run {run} {server.name}: {result['rps']:.0f} req/s, "
                    f"{result['cpu_us_per_req']:.1f} us CPU/req, errors {result['errors']}")
                rows.append({"case": label, "server": server.name, "run": run,
                             **{k: result[k] for k in ("rps", "cpu_us_per_req", "errors",
                                                       "p99_ms")}})
    return rows


def render(engines: list[dict], rows: list[dict]) -> str:
    out = []
    if engines:
        out += ["| engine (server side, in memory) | µs per keep-alive request | µs per handshake |",
                "|---|---:|---:|"]
        out += [f"| {e['engine']} | {e['request_us']:.2f} | {e['handshake_us']:.0f} |" for e in engines]
        out.append("")
    if rows:
        out += ["| case | server | req/s | CPU µs/req | gateway/nginx CPU |", "|---|---|---:|---:|---:|"]
        for label, _, _ in CASES:
            med = {}
            for name in ("nginx", "gateway", "baseline"):
                mine = [r for r in rows if r["case"] == label and r["server"] == name]
                if mine:
                    med[name] = (statistics.median(r["rps"] for r in mine),
                                 statistics.median(r["cpu_us_per_req"] for r in mine),
                                 sum(r["errors"] for r in mine))
            for name, (rps, cpu, errors) in med.items():
                ratio = (f"{cpu / med['nginx'][1]:.2f}x" if name != "nginx" and "nginx" in med
                         else "")
                flag = f" ({errors} errors)" if errors else ""
                out.append(f"| {label} | {name} | {rps:,.0f}{flag} | {cpu:.1f} | {ratio} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="1 run of 3 s per case")
    parser.add_argument("--duration", type=float, default=None)
    parser.add_argument("--runs", type=int, default=None)
    parser.add_argument("--connections", type=int, default=50)
    parser.add_argument("--json", metavar="OUT")
    parser.add_argument("--baseline", metavar="PYTHON",
                        help="also measure the gateway installed for this interpreter")
    only = parser.add_mutually_exclusive_group()
    only.add_argument("--skip-engines", action="store_true")
    only.add_argument("--skip-servers", action="store_true")
    args = parser.parse_args(argv)
    args.duration = args.duration or (3.0 if args.quick else 8.0)
    args.runs = args.runs or (1 if args.quick else 3)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    engines: list[dict] = []
    rows: list[dict] = []
    try:
        with scratch_dir("gw-tls-bench-") as base:
            cert, key = make_cert(base)
            if not args.skip_engines:
                requests, handshakes = (30_000, 300) if args.quick else (200_000, 2_000)
                log("engines: stdlib ssl")
                engines.append(stdlib_engine(cert, key, requests, handshakes))
                log("engines: the gateway's (rustls, from Python)")
                engines.append(shipped_engine(cert, key, requests, handshakes))
                log("engines: rustls alone, per crypto provider")
                engines.extend(rustls_engine(requests, handshakes))
            if not args.skip_servers:
                rows = servers_part(args, base, cert, key)
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(render(engines, rows))
    write_json(args.json, {"engines": engines, "servers": rows})
    return 0


if __name__ == "__main__":
    sys.exit(main())
