"""The benchmark suite: the gateway side by side with nginx, HAProxy, Caddy and the Python
proxies a Python user would pick, against the same upstream, under the same load.

    python -m bench                      # everything installed, ~15 min on 2 cores
    python -m bench --quick              # the same, shorter runs, < 3 min
    python -m bench --peers gateway,nginx --scenarios plain,apisix --duration 3

It installs nothing: it looks for each peer (nginx, haproxy, caddy, the Python packages) and
reports the missing ones as "not installed". Everything it starts lives under one temp dir,
listens on free loopback ports and is stopped at the end (also on Ctrl-C / SIGTERM).

Output: ``bench/results/<date>/`` (``<date>-quick`` with --quick, or ``--out DIR``):
``results.json`` (every figure, every run, settings, versions), ``results.md`` (the tables)
and PNG plots (when matplotlib is installed). See bench/README.md for how to read them.
"""
from __future__ import annotations

import argparse
import datetime as _dt
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time

if __package__ in (None, ""):  # run as bench/run.py
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench import report  # noqa: E402
from bench.common import (  # noqa: E402
    CLK_TCK,
    REPO_ROOT,
    BenchError,
    Server,
    cpu_delta,
    find_nginx,
    log,
    parse_wrk,
    repo_env,
    run_wrk,
    set_log_sink,
    tool_version,
    tree_rss,
    wait_ready,
    wrk_command,
    wrk_cpu,
)
from bench.peers import (  # noqa: E402
    ALL_PEERS,
    AUTH_HEADERS,
    PEER_NAMES,
    Gateway,
    Peer,
    Unsupported,
    peer,
    route_pattern,
    start_upstream,
)

SCENARIOS = ["plain", "apisix", "sizes", "workers", "plugins", "router", "reload", "memory"]
DISPLAY_ORDER = ["plain", "apisix", "sizes", "workers", "router", "reload", "memory", "plugins"]
SCENARIO_TITLES = {
    "plain": "1. Plain proxy, 1 route",
    "apisix": "2. APISIX benchmark cases",
    "sizes": "3. Response and request sizes",
    "workers": "4. 1 worker and N workers",
    "router": "5. Router scale",
    "reload": "6. Hot reload under load",
    "memory": "7. Memory per worker",
    "plugins": "Plugin overhead: 5 no-op Python plugins",
}
#: scenario 3's request kinds: name -> (path, wrk script or None)
SIZE_CASES = {"1 KiB response": ("/1k", None), "64 KiB response": ("/64k", None),
              "1 MiB POST upload": ("/upload", "upload")}
APISIX_CASES = {"no plugins": "plain",
                "limit-count + prometheus": "limit-count",
                "key-auth + limit-req + prometheus": "key-auth"}
UPLOAD_LUA = """\
wrk.method = "POST"
wrk.body = string.rep("x", 1048576)
wrk.headers["Content-Type"] = "application/octet-stream"
"""


# --------------------------------------------------------------------------- progress

class Progress:
    """A progress bar over the planned steps (tqdm when installed, plain lines otherwise),
    each step weighted by about how long it takes so that the bar's ETA means something."""

    def __init__(self, steps: dict[str, int], weights: dict[str, float],
                 enabled: bool = True) -> None:
        self.weights = weights
        self.total = max(sum(n * weights[k] for k, n in steps.items()), 1.0)
        self.done = 0
        self.bar = None
        if enabled:
            try:
                from tqdm import tqdm
                self.bar = tqdm(total=self.total, unit="step", file=sys.stderr,
                                dynamic_ncols=True, smoothing=0.1,
                                bar_format="{l_bar}{bar}| [{elapsed}<{remaining}]")
                set_log_sink(lambda line: self.bar.write(line, file=sys.stderr))
            except ImportError:
                pass

    def describe(self, text: str) -> None:
        if self.bar is not None:
            self.bar.set_description_str(text[:60])
        else:
            print(f"[bench] [{100 * self.done / self.total:3.0f}%] {text}", file=sys.stderr,
                  flush=True)

    def step(self, n: int = 1, kind: str = "load") -> None:
        amount = min(n * self.weights[kind], self.total - self.done)
        self.done += amount
        if self.bar is not None and amount > 0:
            self.bar.update(amount)

    def close(self) -> None:
        if self.bar is not None:
            if self.total - self.done > 0:
                self.bar.update(self.total - self.done)
            self.bar.close()
            set_log_sink(lambda line: print(line, file=sys.stderr, flush=True))


# --------------------------------------------------------------------------- settings

def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="short runs (1 run of 1 s per target, 10 reloads): under 3 minutes")
    p.add_argument("--peers", default=None,
                   help=f"comma-separated subset of: {','.join(PEER_NAMES)} (default: all)")
    p.add_argument("--scenarios", default=None,
                   help=f"comma-separated subset of: {','.join(SCENARIOS)} (default: all)")
    p.add_argument("--no-direct", action="store_true",
                   help="skip the 'direct' row (wrk straight at the upstream)")
    p.add_argument("--duration", type=float, help="seconds per measured run (5; 1 --quick)")
    p.add_argument("--warmup", type=float,
                   help="seconds of wrk warm-up before the first measured run of each server "
                        "and request kind (2; --quick: 1, once per server)")
    p.add_argument("--runs", type=int, help="alternating runs per target (3; 1 --quick)")
    p.add_argument("--connections", type=int, default=50, help="wrk connections (50)")
    p.add_argument("--workers", type=int, default=None,
                   help="N of the N-worker, reload and memory scenarios (default: CPUs, >= 2)")
    p.add_argument("--reloads", type=int, help="reloads in scenario 6 (100; 10 --quick)")
    p.add_argument("--router-sizes", default="10,1000,10000,100000",
                   help="route counts of scenario 5")
    p.add_argument("--memory-routes", default="10,10000", help="route counts of scenario 7")
    p.add_argument("--out", help="results directory (default bench/results/<date>[-quick])")
    p.add_argument("--no-plots", action="store_true", help="skip the PNG plots")
    p.add_argument("--no-progress", action="store_true", help="plain progress lines, no bar")
    args = p.parse_args(argv)
    args.duration = args.duration or (1.0 if args.quick else 5.0)
    args.warmup = args.warmup if args.warmup is not None else (1.0 if args.quick else 2.0)
    args.runs = args.runs or (1 if args.quick else 3)
    # a difference of ~1 µs in ~15: more pairs than the other scenarios
    args.plugin_runs = args.runs if args.quick else max(args.runs, 7)
    args.size_runs = 1 if args.quick else max(1, min(args.runs, 2))
    args.workers_n = args.workers or max(2, len(os.sched_getaffinity(0)))
    args.reloads = args.reloads or (10 if args.quick else 100)
    try:
        args.router_sizes = [int(x) for x in args.router_sizes.split(",") if x]
        args.memory_routes = [int(x) for x in args.memory_routes.split(",") if x]
    except ValueError:
        p.error("--router-sizes and --memory-routes take comma-separated integers")
    args.peer_list = [x.strip() for x in args.peers.split(",")] if args.peers else PEER_NAMES
    args.scenario_list = ([x.strip() for x in args.scenarios.split(",")] if args.scenarios
                          else list(SCENARIOS))
    for name in args.peer_list:
        if name not in PEER_NAMES:
            p.error(f"unknown peer {name!r}; known: {', '.join(PEER_NAMES)}")
    args.peer_list = [name for name in PEER_NAMES if name in args.peer_list]  # nginx first
    for name in args.scenario_list:
        if name not in SCENARIOS:
            p.error(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    if args.duration < 1 or (args.warmup and args.warmup < 1):
        p.error("wrk runs whole seconds: --duration and --warmup must be >= 1 (or warmup 0)")
    if min(args.duration, args.runs, args.connections, args.workers_n, args.reloads) <= 0:
        p.error("--duration, --runs, --connections, --workers and --reloads must be positive")
    return args


# --------------------------------------------------------------------------- context

class Suite:
    def __init__(self, args: argparse.Namespace) -> None:
        self.args = args
        self.base = tempfile.mkdtemp(prefix="gw-benchsuite-")
        os.chmod(self.base, 0o755)  # nginx workers run as nobody when we are root
        self.servers: list[Server] = []
        self.wrk = shutil.which("wrk")
        self.nginx = find_nginx()
        self.upstream: Server | None = None
        self.peers: dict[str, dict] = {}
        self.results: dict = {}
        self.progress: Progress | None = None
        self.upload_script = os.path.join(self.base, "upload.lua")
        with open(self.upload_script, "w") as fh:
            fh.write(UPLOAD_LUA)
        self.flagged = False
        self.warmed: set = set()

    # -- servers --
    def start(self, p: Peer, label: str, workers: int, variant: str = "plain",
              routes: int = 0) -> Server:
        """Starts a peer and waits until it proxies; raises Unsupported or BenchError."""
        tmp = os.path.join(self.base, f"{label}-{p.name}-{variant}-w{workers}-r{routes}")
        server = p.start(tmp, workers, self.upstream.port, variant, routes)
        self.servers.append(server)
        headers = AUTH_HEADERS if variant == "key-auth" else None
        try:
            wait_ready(server, 30, headers=headers)
            if isinstance(p, Gateway):
                wait_gateway_version(server, 1)
        except BenchError:
            self.stop(server)
            raise
        return server

    def stop(self, server: Server | None) -> None:
        if server is None:
            return
        server.stop()
        if server in self.servers:
            self.servers.remove(server)

    def stop_all(self) -> None:
        for server in reversed(self.servers):
            server.stop()
        self.servers.clear()

    # -- load --
    def measure(self, label: str, server: Server | None, path: str = "/",
                script: str | None = None, headers: dict | None = None,
                duration: float | None = None) -> dict:
        """Warm-up, then one measured wrk run bracketed by CPU snapshots of the target's
        process tree and of the upstream's."""
        args = self.args
        port = server.port if server is not None else self.upstream.port
        if server is not None and not server.alive():
            raise BenchError(f"{server.name} exited (status {server.proc.returncode}):\n"
                             f"{server.tail_log()}")
        # Each server is warmed up once per request kind (--quick: once), before its first
        # measured run: pools filled, caches and branch predictors warm, the CPU clock up.
        warm_key = (server.pid if server else 0,) + (() if args.quick else (path, script))
        if args.warmup > 0 and warm_key not in self.warmed:
            run_wrk(self.wrk, port, args.warmup, args.connections, path, script, headers)
            self.warmed.add(warm_key)
        before = server.cpu() if server else {}
        up_before = self.upstream.cpu()
        result = run_wrk(self.wrk, port, duration or args.duration, args.connections, path,
                         script, headers)
        after = server.cpu() if server else {}
        up_after = self.upstream.cpu()
        if not result["requests"]:
            raise BenchError(f"no request completed in {duration or args.duration:g} s "
                             f"({result['errors']} errors)")
        requests = result["requests"]
        result["target"] = label
        if server is not None:
            result["proxy_cpu_s"] = cpu_delta(before, after)
            result["proxy_cpu_us_per_req"] = result["proxy_cpu_s"] / requests * 1e6
            result["proxy_processes"] = len(after)
            if set(before) != set(after):
                log(f"{label}: WARNING: the process tree changed during the run "
                    f"({len(before)} -> {len(after)}); CPU of exited processes is lost")
            rss = server.rss()
            result["rss_total_mib"] = sum(rss.values()) / 2 ** 20
            result["rss_max_process_mib"] = max(rss.values()) / 2 ** 20 if rss else None
        else:
            result["proxy_cpu_s"] = result["proxy_cpu_us_per_req"] = None
            result["rss_total_mib"] = result["rss_max_process_mib"] = None
        result["upstream_cpu_us_per_req"] = cpu_delta(up_before, up_after) / requests * 1e6
        if result["errors"]:
            self.flagged = True
        cpu_txt = (f", {result['proxy_cpu_us_per_req']:.1f} µs/req"
                   if result["proxy_cpu_us_per_req"] is not None else "")
        err_txt = f", ERRORS {result['errors']}" if result["errors"] else ""
        log(f"  {label}: {result['rps']:,.0f} req/s, p99 {result['p99_ms']:.2f} ms{cpu_txt}"
            f"{err_txt}")
        return result


def wait_gateway_version(server: Server, version: int, timeout: float = 30.0) -> float:
    """Waits until status.json says every worker runs config `version`; returns when."""
    path = os.path.join(server.info["state"], "status.json")
    workers = server.info["workers"]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with open(path) as fh:
                st = json.load(fh)
        except (OSError, ValueError):
            st = {}
        ws = st.get("workers", [])
        if (st.get("pid") == server.pid and st.get("version", 0) >= version
                and len(ws) == workers and all(w.get("version", 0) >= version for w in ws)):
            return time.monotonic()
        if not server.alive():
            raise BenchError(f"gateway exited:\n{server.tail_log()}")
        time.sleep(0.002)
    raise BenchError(f"gateway workers did not reach config version {version} in "
                     f"{timeout:.0f}s:\n{server.tail_log()}")


# --------------------------------------------------------------------------- figures

METRICS = ("rps", "p50_ms", "p99_ms", "proxy_cpu_us_per_req", "upstream_cpu_us_per_req",
           "rss_total_mib", "rss_max_process_mib")


def median(values):
    values = [v for v in values if v is not None]
    return statistics.median(values) if values else None


def summarize(runs: list[dict]) -> dict:
    out = {"runs": len(runs), "errors": sum(r["errors"] for r in runs),
           "requests": sum(r["requests"] for r in runs)}
    for metric in METRICS:
        out[metric] = median(r.get(metric) for r in runs)
    return out


def pair_ratios(runs: list[dict], anchor: list[dict]) -> dict:
    """Ratios to the anchor (nginx) pair by pair: run i of the target against run i of nginx,
    measured one after the other in the same invocation; the median of the pairs."""
    def by(metric):
        pairs = [(r.get(metric), a.get(metric)) for r, a in zip(runs, anchor)]
        values = [x / y for x, y in pairs if x is not None and y]
        return median(values), values
    cpu, cpu_runs = by("proxy_cpu_us_per_req")
    rps, _ = by("rps")
    p99, _ = by("p99_ms")
    return {"cpu_per_request": cpu, "requests_per_second": rps, "p99": p99,
            "cpu_per_request_by_run": cpu_runs}


def run_matrix(suite: Suite, title: str, entries: list[tuple[str, Server | None, dict]],
               runs: int) -> dict[str, list[dict]]:
    """Measures every entry `runs` times, alternating the order (forward, then backward...)
    so that no target always goes first. entry: (label, server, request kwargs)."""
    results: dict[str, list[dict]] = {label: [] for label, _, _ in entries}
    for run_no in range(1, runs + 1):
        order = entries if run_no % 2 else entries[::-1]
        for label, server, request in order:
            suite.progress.describe(f"{title}: {label} {run_no}/{runs}")
            try:
                results[label].append(suite.measure(label, server, **request))
            except BenchError as exc:
                log(f"  {label}: FAILED: {exc}")
                results[label].append({"failed": " ".join(str(exc).split())[:2000]})
            suite.progress.step()
    return results


def target_entry(runs: list[dict], note: str = "") -> dict:
    failed = [r["failed"] for r in runs if "failed" in r]
    good = [r for r in runs if "failed" not in r]
    if not good:
        return {"status": "failed", "reason": failed[0][:300] if failed else "no run"}
    entry = {"status": "ok", "summary": summarize(good), "runs": good}
    if note:
        entry["note"] = note
    if failed:
        entry["failed_runs"] = failed
    return entry


def add_ratios(case: dict) -> None:
    targets = case["targets"]
    anchor = targets.get("nginx")
    if not anchor or anchor.get("status") != "ok":
        return
    for label, entry in targets.items():
        if label not in ("nginx", "direct") and entry.get("status") == "ok":
            entry["vs_nginx"] = pair_ratios(entry["runs"], anchor["runs"])


# --------------------------------------------------------------------------- load scenarios

def load_case(suite: Suite, title: str, peers: list[Peer], variant: str, workers: int,
              requests: dict[str, dict], runs: int | dict[str, int],
              direct: bool) -> dict[str, dict]:
    """Starts every peer for `variant`, measures each request kind (case) on all of them
    (`runs` times, or runs[case]), stops them. Returns {case: {"targets": {label: entry}}}."""
    cases: dict[str, dict] = {name: {"targets": {}} for name in requests}
    servers: list[tuple[str, Server | None, str]] = []
    if direct:
        servers.append(("direct", None, ""))
    for p in peers:
        info = suite.peers[p.name]
        if not info["installed"]:
            for case in cases.values():
                case["targets"][p.name] = {"status": "not installed", "reason": info["version"]}
            continue
        suite.progress.describe(f"{title}: starting {p.name}")
        try:
            server = suite.start(p, title.split(".")[0], workers, variant)
            servers.append((p.name, server, server.info.get("note", "")))
        except Unsupported as exc:
            reason = str(exc)
            for case in cases.values():
                case["targets"][p.name] = {"status": "skipped", "reason": reason}
        except BenchError as exc:
            log(f"{p.name}: failed to start: {exc}")
            for case in cases.values():
                case["targets"][p.name] = {"status": "failed",
                                           "reason": " ".join(str(exc).split())[:300]}
    try:
        for case_name, request in requests.items():
            case_runs = runs[case_name] if isinstance(runs, dict) else runs
            planned = (len(peers) + direct) * case_runs
            if [s for s in servers if s[1] is not None]:
                entries = [(label, server, with_headers(request, server))
                       for label, server, _ in servers]
                log(f"{title} - {case_name}")
                res = run_matrix(suite, f"{title} {case_name}", entries, case_runs)
                for label, _server, note in servers:
                    cases[case_name]["targets"][label] = target_entry(res[label], note)
                add_ratios(cases[case_name])
                planned -= len(entries) * case_runs
            suite.progress.step(planned)  # the peers that could not run
    finally:
        for _, server, _ in servers:
            suite.stop(server)
    # Keep the table's order: direct, then the peers in ALL_PEERS order.
    order = ["direct"] + [p.name for p in peers]
    for case in cases.values():
        case["targets"] = {k: case["targets"][k] for k in order if k in case["targets"]}
    return cases


def with_headers(request: dict, server: Server | None) -> dict:
    """The request kind plus the headers a peer needs (proxy.py: Connection: close)."""
    extra = server.info.get("headers") if server is not None else None
    if not extra:
        return request
    return {**request, "headers": {**(request.get("headers") or {}), **extra}}


PLAIN_CASE = "GET / (12 bytes)"


def scenario_plain_sizes(suite: Suite, peers: list[Peer], plain: bool, sizes: bool) -> dict:
    """Scenarios 1 and 3 share one start of every peer (1 worker, no plugins)."""
    a = suite.args
    requests: dict[str, dict] = {}
    runs: dict[str, int] = {}
    if plain:
        requests[PLAIN_CASE] = {}
        runs[PLAIN_CASE] = a.runs
    if sizes:
        for name, (path, script) in SIZE_CASES.items():
            requests[name] = {"path": path, "script": suite.upload_script if script else None}
            runs[name] = a.size_runs
    title = "1. plain" if plain else "3. sizes"
    cases = load_case(suite, title, peers, "plain", 1, requests, runs, not a.no_direct)
    out = {}
    if plain:
        out["plain"] = {"title": SCENARIO_TITLES["plain"], "workers": 1,
                        "cases": {PLAIN_CASE: cases[PLAIN_CASE]}}
    if sizes:
        out["sizes"] = {"title": SCENARIO_TITLES["sizes"], "workers": 1,
                        "cases": {k: v for k, v in cases.items() if k != PLAIN_CASE}}
    return out


def scenario_apisix(suite: Suite, peers: list[Peer]) -> dict:
    a = suite.args
    cases: dict = {}
    for case_name, variant in APISIX_CASES.items():
        if variant == "plain" and "plain" in suite.results:
            cases[case_name] = {"same_as": "plain",
                                "note": "the same configuration as scenario 1 (one route, no "
                                        "plugins): see its figures"}
            continue
        headers = {"headers": AUTH_HEADERS} if variant == "key-auth" else {}
        got = load_case(suite, f"2. {case_name}", peers, variant, 1, {case_name: headers},
                        a.runs, False)
        cases[case_name] = got[case_name]
    return {"title": SCENARIO_TITLES["apisix"], "workers": 1, "cases": cases}


def scenario_workers(suite: Suite, peers: list[Peer]) -> dict:
    a = suite.args
    n = a.workers_n
    cases = load_case(suite, f"4. {n} workers", peers, "plain", n,
                      {f"GET /, {n} workers": {}}, a.size_runs, False)
    case = next(iter(cases.values()))
    one = suite.results.get("plain", {}).get("cases", {}).get(PLAIN_CASE, {})
    for label, entry in case["targets"].items():
        base = one.get("targets", {}).get(label, {})
        if (entry.get("status") == "ok" and base.get("status") == "ok"
                and base["summary"]["rps"]):
            entry["scaling"] = {
                "rps_1_worker": base["summary"]["rps"],
                "rps_n_workers": entry["summary"]["rps"],
                "ratio": entry["summary"]["rps"] / base["summary"]["rps"],
                "cpu_per_request_1_worker": base["summary"]["proxy_cpu_us_per_req"],
            }
    return {"title": SCENARIO_TITLES["workers"], "workers": n, "cases": cases,
            "note": "scaling = req/s with N workers / req/s with 1 worker (scenario 1); wrk has "
                    "one of the machine's CPUs, so on 2 cores N workers share the other one "
                    "with the upstream"}


def scenario_plugins(suite: Suite, peers: list[Peer]) -> dict:
    a = suite.args
    out = {"title": SCENARIO_TITLES["plugins"], "workers": 1}
    gw = peer("gateway")
    if not suite.peers["gateway"]["installed"]:
        out["status"] = "not installed"
        suite.progress.step(2 * a.plugin_runs)
        return out
    servers = []
    try:
        for variant in ("plain", "noop5"):
            suite.progress.describe(f"plugins: starting gateway {variant}")
            servers.append((variant, suite.start(gw, "plugins", 1, variant)))
        entries = [("gateway, no plugins" if v == "plain" else "gateway, 5 no-op plugins", s, {})
                   for v, s in servers]
        log("plugin overhead")
        res = run_matrix(suite, "plugins", entries, a.plugin_runs)
    except (Unsupported, BenchError) as exc:
        out["status"] = "skipped"
        out["reason"] = str(exc)[:300]
        suite.progress.step(2 * a.plugin_runs)
        return out
    finally:
        for _, server in servers:
            suite.stop(server)
    none_runs, noop_runs = res[entries[0][0]], res[entries[1][0]]
    diffs = [b["proxy_cpu_us_per_req"] - a_["proxy_cpu_us_per_req"]
             for a_, b in zip(none_runs, noop_runs)
             if "failed" not in a_ and "failed" not in b]
    out["targets"] = {label: target_entry(res[label]) for label, _, _ in entries}
    out["extra_cpu_us_per_request"] = median(diffs)
    out["extra_cpu_us_per_request_by_run"] = diffs
    out["extra_cpu_us_per_plugin"] = median(diffs) / 5 if diffs else None
    out["target_us"] = 2.0
    out["status"] = "ok" if diffs else "failed"
    return out


# --------------------------------------------------------------------------- other scenarios

def scenario_router(suite: Suite) -> dict:
    out = {"title": SCENARIO_TITLES["router"], "sizes": []}
    if not suite.peers.get("gateway", {}).get("installed"):
        suite.progress.step(len(suite.args.router_sizes), kind="router")
        return {**out, "status": "not installed"}
    for n in suite.args.router_sizes:
        suite.progress.describe(f"5. router: {n} routes")
        proc = subprocess.run([sys.executable, "-m", "bench.router_scale", str(n)],
                              capture_output=True, text=True, env=repo_env(), cwd=REPO_ROOT,
                              timeout=600)
        if proc.returncode != 0:
            out["sizes"].append({"routes": n, "failed": (proc.stderr or proc.stdout)[-500:]})
        else:
            res = json.loads(proc.stdout)
            out["sizes"].append(res)
            log(f"  router {n}: compile {res['compile_ms']:.1f} ms, last "
                f"{res['lookups_ns']['last']:.0f} ns, {res['memory_bytes'] / 2**20:.1f} MiB")
        suite.progress.step(kind="router")
    out["status"] = "ok"
    return out


def scenario_reload(suite: Suite) -> dict:
    """Time from a config file write to every worker running the new version (status.json),
    over `reloads` reloads, with wrk loading the gateway the whole time."""
    a = suite.args
    out = {"title": SCENARIO_TITLES["reload"], "workers": a.workers_n, "reloads": a.reloads}
    if not suite.peers.get("gateway", {}).get("installed"):
        suite.progress.step(a.reloads, kind="reload")
        return {**out, "status": "not installed"}
    server = None
    wrk_proc = None
    try:
        suite.progress.describe("6. reload: starting gateway")
        server = suite.start(peer("gateway"), "reload", a.workers_n, "plain", 10)
        config = server.info["config"]
        conf = server.info["conf"]
        # wrk for longer than the reloads can take; stopped (SIGINT: it still reports) after.
        budget = max(60.0, a.reloads * 2.0)
        cmd = wrk_command(suite.wrk, server.port, budget, a.connections, "/")
        wrk_proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    text=True)
        time.sleep(min(1.0, a.warmup or 1.0))
        times = []
        version = 1
        for i in range(a.reloads):
            suite.progress.describe(f"6. reload {i + 1}/{a.reloads}")
            config["routes"].insert(0, {"id": f"reload-{i}", "uri": f"/reload/{i}",
                                        "upstream_id": "up"})
            if len(config["routes"]) > 12:
                config["routes"].pop(1)
            tmp = conf + ".tmp"
            with open(tmp, "w") as fh:
                json.dump(config, fh)
            version += 1
            t0 = time.monotonic()
            os.replace(tmp, conf)  # atomic, like an editor's save
            t1 = wait_gateway_version(server, version, timeout=30)
            times.append((t1 - t0) * 1e3)
            suite.progress.step(kind="reload")
            time.sleep(0.02)
        wrk_proc.send_signal(signal.SIGINT)
        stdout, stderr = wrk_proc.communicate(timeout=30)
        try:
            load = parse_wrk(stdout)
        except BenchError:
            load = {"errors": None, "wrk_output": stdout + stderr}
        load["wrk_output"] = stdout
        out.update(status="ok", reload_ms=times, p50_ms=median(times),
                   p99_ms=percentile(times, 99), max_ms=max(times), load=load,
                   failed_requests=load.get("errors"))
        log(f"  reload: p50 {out['p50_ms']:.1f} ms, p99 {out['p99_ms']:.1f} ms, "
            f"failed requests {load.get('errors')} of {load.get('requests')}")
        if load.get("errors"):
            suite.flagged = True
    except (BenchError, Unsupported, subprocess.TimeoutExpired) as exc:
        out.update(status="failed", reason=str(exc)[:500])
        suite.progress.step(a.reloads - len(out.get("reload_ms", [])), kind="reload")
    finally:
        if wrk_proc is not None and wrk_proc.poll() is None:
            wrk_proc.kill()
            wrk_proc.wait()
        suite.stop(server)
    return out


def percentile(values: list[float], pct: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = (len(ordered) - 1) * pct / 100
    lo, hi = int(k), min(int(k) + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (k - lo)


def scenario_memory(suite: Suite) -> dict:
    """RSS of every gateway process, idle and at the end of a load run, for each route count."""
    a = suite.args
    out = {"title": SCENARIO_TITLES["memory"], "workers": a.workers_n, "configs": []}
    if not suite.peers.get("gateway", {}).get("installed"):
        suite.progress.step(len(a.memory_routes), kind="memory")
        return {**out, "status": "not installed"}
    for n in a.memory_routes:
        suite.progress.describe(f"7. memory: {n} routes")
        server = None
        try:
            server = suite.start(peer("gateway"), "memory", a.workers_n, "plain", n)
            time.sleep(1.0)
            idle = split_rss(server)
            # Load the last-added route when there are routes (the catch-all otherwise).
            path = route_pattern(n - 1)[1] if n else "/"
            peak: dict = {}
            stop = threading.Event()

            def sample(stop=stop, server=server, peak=peak):
                while not stop.wait(0.25):
                    for key, value in split_rss(server).items():
                        if isinstance(value, list):
                            peak[key] = [max(x, y) for x, y in
                                         zip(value, peak.get(key, [0] * len(value)))]
                        else:
                            peak[key] = max(value, peak.get(key, 0))
            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            load = run_wrk(suite.wrk, server.port, a.duration, a.connections, path)
            stop.set()
            sampler.join()
            loaded = split_rss(server)
            entry = {"routes": n, "idle": idle, "under_load": loaded, "peak": peak,
                     "load_rps": load["rps"], "load_errors": load["errors"], "path": path}
            out["configs"].append(entry)
            log(f"  memory {n} routes: worker idle {max(idle['workers_mib']):.1f} MiB, "
                f"under load {max(loaded['workers_mib']):.1f} MiB")
        except (BenchError, Unsupported) as exc:
            out["configs"].append({"routes": n, "failed": str(exc)[:500]})
        finally:
            suite.stop(server)
        suite.progress.step(kind="memory")
    out["status"] = "ok"
    return out


def split_rss(server: Server) -> dict:
    rss = tree_rss(server.pid)
    master = rss.pop(server.pid, 0)
    return {"master_mib": master / 2 ** 20,
            "workers_mib": [v / 2 ** 20 for _, v in sorted(rss.items())]}


# --------------------------------------------------------------------------- main

def plan_steps(args: argparse.Namespace, peers: list[Peer]) -> tuple[dict, dict]:
    """(steps by kind, seconds per step by kind) of the whole run."""
    n_load = len(peers)
    direct = 0 if args.no_direct else 1
    load = 0
    s = args.scenario_list
    if "plain" in s:
        load += (n_load + direct) * args.runs
    if "apisix" in s:
        load += 2 * n_load * args.runs + (0 if "plain" in s else n_load * args.runs)
    if "sizes" in s:
        load += (n_load + direct) * len(SIZE_CASES) * args.size_runs
    if "workers" in s:
        load += n_load * args.size_runs
    if "plugins" in s:
        load += 2 * args.plugin_runs
    steps = {"load": load,
             "router": len(args.router_sizes) if "router" in s else 0,
             "reload": args.reloads if "reload" in s else 0,
             "memory": len(args.memory_routes) if "memory" in s else 0}
    weights = {"load": args.duration + 0.5, "router": 2.0, "reload": 0.1,
               "memory": args.duration + 4.0}
    return steps, weights


def environment(suite: Suite) -> dict:
    return {
        "wrk": tool_version([suite.wrk, "--version"]) if suite.wrk else "not installed",
        "python": platform.python_version(),
        "machine": platform.machine(), "kernel": platform.release(),
        "cpus": len(os.sched_getaffinity(0)),
        "wrk_cpu": wrk_cpu(),
        "clk_tck": CLK_TCK,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loadavg_start": os.getloadavg(),
    }


def run_scenario(suite: Suite, name: str, peers: list[Peer], doc: dict, t0: float):
    """Runs one scenario; returns its result (None when it was measured with another)."""
    args = suite.args
    if name in ("plain", "sizes"):
        if name in suite.results:
            return None  # measured together with the other
        both = scenario_plain_sizes(suite, peers, "plain" in args.scenario_list,
                                    "sizes" in args.scenario_list)
        for key, res in both.items():
            res["seconds"] = time.monotonic() - t0
            suite.results[key] = doc["scenarios"][key] = res
        return None
    if name == "apisix":
        return scenario_apisix(suite, peers)
    if name == "workers":
        return scenario_workers(suite, peers)
    if name == "plugins":
        return scenario_plugins(suite, peers)
    if name == "router":
        return scenario_router(suite)
    if name == "reload":
        return scenario_reload(suite)
    return scenario_memory(suite)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.monotonic()
    # A SIGTERM must still run the finally blocks that stop the servers.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    suite = Suite(args)
    today = _dt.date.today().isoformat()
    out_dir = args.out or os.path.join(REPO_ROOT, "bench", "results",
                                       today + ("-quick" if args.quick else ""))
    doc: dict = {"settings": {k: v for k, v in vars(args).items()
                              if k not in ("peers", "scenarios")},
                 "scenarios": {}}
    try:
        peers = [peer(name) for name in args.peer_list]
        for p in ALL_PEERS:
            if p.name in args.peer_list:
                installed, version = p.available()
                suite.peers[p.name] = {"installed": installed, "version": version,
                                       "description": p.description}
                log(f"{p.name}: {version if installed else 'not installed (' + version + ')'}")
        doc["peers"] = suite.peers
        load_scenarios = [s for s in args.scenario_list
                          if s in ("plain", "apisix", "sizes", "workers", "plugins", "reload",
                                   "memory")]
        missing = [name for name, path in (("wrk", suite.wrk), ("nginx", suite.nginx))
                   if not path]
        if missing and load_scenarios:
            reason = (f"{' and '.join(missing)} not installed (apt-get install nginx-light "
                      "wrk): the load scenarios need wrk and nginx (the upstream)")
            log(reason)
            for s in load_scenarios:
                doc["scenarios"][s] = {"title": SCENARIO_TITLES[s], "status": "skipped",
                                       "reason": reason}
            args.scenario_list = [s for s in args.scenario_list if s not in load_scenarios]
        suite.progress = Progress(*plan_steps(args, peers), enabled=not args.no_progress)
        if any(s in args.scenario_list for s in load_scenarios):
            suite.upstream = start_upstream(suite.nginx, os.path.join(suite.base, "upstream"))
            log(f"upstream nginx on 127.0.0.1:{suite.upstream.port}; wrk pinned to cpu "
                f"{wrk_cpu()}")
        load_peers = list(peers)
        for name in SCENARIOS:
            if name not in args.scenario_list:
                continue
            t0 = time.monotonic()
            try:
                res = run_scenario(suite, name, load_peers, doc, t0)
            except BenchError:
                raise
            except Exception as exc:  # a bug in one scenario must not lose the others
                import traceback
                log(f"scenario {name} failed: {exc!r}\n{traceback.format_exc()}")
                res = {"title": SCENARIO_TITLES[name], "status": "failed",
                       "reason": f"{type(exc).__name__}: {exc}"}
            if res is None:
                continue
            res["seconds"] = time.monotonic() - t0
            suite.results[name] = res
            doc["scenarios"][name] = res
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BenchError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    finally:
        if suite.progress is not None:
            suite.progress.close()
        suite.stop_all()
        if suite.upstream is not None:
            suite.upstream.stop()
        shutil.rmtree(suite.base, ignore_errors=True)

    doc["scenarios"] = {k: doc["scenarios"][k] for k in DISPLAY_ORDER if k in doc["scenarios"]}
    doc["environment"] = environment(suite)
    doc["environment"]["upstream"] = (tool_version([suite.nginx, "-v"]) + ", 1 worker"
                                      if suite.nginx else None)
    doc["duration_s"] = time.monotonic() - started
    doc["flagged"] = suite.flagged
    os.makedirs(out_dir, exist_ok=True)
    plots: list[str] = []
    if not args.no_plots:
        plots, note = report.plots(doc, out_dir)
        if note:
            log(note)
            doc["plots_note"] = note
    doc["plots"] = plots
    markdown = report.markdown(doc)
    with open(os.path.join(out_dir, "results.md"), "w") as fh:
        fh.write(markdown)
    with open(os.path.join(out_dir, "results.json"), "w") as fh:
        json.dump(doc, fh, indent=1, default=str)
    print(markdown)
    log(f"wrote {out_dir}/results.json, results.md"
        + (", " + ", ".join(plots) if plots else "")
        + f" in {doc['duration_s']:.0f} s")
    return 3 if suite.flagged else 0


if __name__ == "__main__":
    sys.exit(main())
