"""Machinery shared by the benchmark suite (``python -m bench``) and the bench scripts: free
ports, CPU time and RSS of a process tree from /proc, starting and stopping servers (nginx, the
gateway), running wrk and h2load and parsing their output.

Nothing here installs anything or touches files outside the temp dir the caller gives.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import NoReturn, TypeVar

REPO_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CLK_TCK = os.sysconf("SC_CLK_TCK")
PAGE_SIZE = os.sysconf("SC_PAGE_SIZE")
BODY = b"hello world\n"
T = TypeVar("T")


class BenchError(Exception):
    """A setup failure with a message meant for the user."""


#: Where progress lines go; the suite swaps in tqdm.write so lines do not break the bar.
def _to_stderr(line: str) -> None:
    print(line, file=sys.stderr, flush=True)


_log_sink: Callable[[str], None] = _to_stderr


def set_log_sink(sink: Callable[[str], None]) -> None:
    global _log_sink
    _log_sink = sink


def log(message: str) -> None:
    _log_sink(f"[bench] {message}")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def repo_env(**extra: str) -> dict[str, str]:
    """The environment with the repository root first on PYTHONPATH (benchmark this checkout)."""
    env = dict(os.environ, **extra)
    env["PYTHONPATH"] = REPO_ROOT + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH")
                                     else "")
    return env


def write_text(directory: str, name: str, text: str) -> str:
    """Writes ``text`` to directory/name (making the directory) and returns the path."""
    os.makedirs(directory, exist_ok=True)
    path = os.path.join(directory, name)
    with open(path, "w") as fh:
        fh.write(text)
    return path


@contextmanager
def scratch_dir(prefix: str) -> Iterator[str]:
    """A temp dir for one run's servers and files, removed afterwards. It is world-readable:
    when the bench runs as root, nginx's workers run as nobody and read files in it."""
    base = tempfile.mkdtemp(prefix=prefix)
    os.chmod(base, 0o755)
    try:
        yield base
    finally:
        shutil.rmtree(base, ignore_errors=True)


def exit_with(name: str, main: Callable[[], int]) -> NoReturn:
    """Runs a bench's ``main`` as the script's exit status; a setup failure is one line on
    stderr and status 1."""
    try:
        status = main()
    except BenchError as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        status = 1
    sys.exit(status)


def write_json(path: str | None, doc: object) -> None:
    """``doc`` as indented JSON to ``path`` (the --json option), when one is given."""
    if path:
        with open(path, "w") as fh:
            json.dump(doc, fh, indent=2)


def percentiles(values: list[float]) -> dict[str, float]:
    """p50, p90, p99, max and mean of ``values`` (nearest rank)."""
    ordered = sorted(values)

    def at(q: float) -> float:
        return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]
    return {"p50": at(0.5), "p90": at(0.9), "p99": at(0.99), "max": ordered[-1],
            "mean": statistics.fmean(ordered)}


# --------------------------------------------------------------------------- /proc helpers

def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat, numbered from 1 like proc(5) (index 0 is unused)."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as fh:
            data = fh.read().decode("ascii", "replace")
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None
    # comm (field 2) is in parentheses and may contain spaces: split after the last ')'.
    head, _, rest = data.rpartition(")")
    pid_str, _, comm = head.partition(" (")
    return ["", pid_str, comm] + rest.split()


def cpu_seconds(pid: int) -> float | None:
    """utime + stime (fields 14 and 15) of one process (all its threads), in seconds."""
    fields = _stat_fields(pid)
    if fields is None:
        return None
    return (int(fields[14]) + int(fields[15])) / CLK_TCK


def start_time(pid: int) -> int | None:
    """Field 22 (start time in ticks since boot): tells a live pid from a reused one."""
    fields = _stat_fields(pid)
    return None if fields is None else int(fields[22])


def rss_bytes(pid: int) -> int | None:
    """Resident set size (statm field 2, pages) of one process."""
    try:
        with open(f"/proc/{pid}/statm") as fh:
            return int(fh.read().split()[1]) * PAGE_SIZE
    except (OSError, IndexError, ValueError):
        return None


def process_tree(root: int) -> list[int]:
    """root and all its descendants, from /proc/<pid>/task/<tid>/children."""
    result: list[int] = []
    stack = [root]
    seen: set[int] = set()
    while stack:
        pid = stack.pop()
        if pid in seen or not os.path.exists(f"/proc/{pid}"):
            continue
        seen.add(pid)
        result.append(pid)
        try:
            tids = os.listdir(f"/proc/{pid}/task")
        except OSError:
            tids = [str(pid)]
        for tid in tids:
            try:
                with open(f"/proc/{pid}/task/{tid}/children") as fh:
                    stack.extend(int(child) for child in fh.read().split())
            except OSError:
                pass
    return result


def tree_cpu(root: int) -> dict[int, float]:
    """CPU seconds of every process in the tree of root, by pid."""
    snapshot = {}
    for pid in process_tree(root):
        value = cpu_seconds(pid)
        if value is not None:
            snapshot[pid] = value
    return snapshot


def tree_rss(root: int) -> dict[int, int]:
    """RSS bytes of every process in the tree of root, by pid (the root first)."""
    out = {}
    for pid in process_tree(root):
        value = rss_bytes(pid)
        if value is not None:
            out[pid] = value
    return out


def cpu_delta(before: dict[int, float], after: dict[int, float]) -> float:
    """CPU seconds spent between two snapshots; a process born in between counts from zero.

    A process that died in between is lost (its time goes to its parent's cutime, which we do
    not read); the number of processes is reported so such a run can be spotted.
    """
    return sum(value - before.get(pid, 0.0) for pid, value in after.items())


def cpu_during(root: int, load: Callable[[], T]) -> tuple[T, float]:
    """What ``load`` returned, and the CPU seconds the tree of ``root`` spent while it ran."""
    before = tree_cpu(root)
    result = load()
    return result, cpu_delta(before, tree_cpu(root))


# --------------------------------------------------------------------------- processes

@dataclass
class Server:
    name: str
    port: int
    proc: subprocess.Popen
    log_path: str
    expected_procs: int = 0
    #: extra facts (admin port, state dir, config path...) a scenario may need
    info: dict = field(default_factory=dict)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def cpu(self) -> dict[int, float]:
        return tree_cpu(self.pid)

    def rss(self) -> dict[int, int]:
        return tree_rss(self.pid)

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail_log(self, lines: int = 20) -> str:
        try:
            with open(self.log_path, errors="replace") as fh:
                return "".join(fh.readlines()[-lines:])
        except OSError:
            return "(no log)"

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM the master, wait, then SIGKILL whatever of its tree is still alive."""
        tree = [(pid, start_time(pid)) for pid in process_tree(self.pid)]
        if self.proc.poll() is None:
            try:
                self.proc.send_signal(signal.SIGTERM)
            except ProcessLookupError:
                pass
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            master_done = self.proc.poll() is not None
            alive = [pid for pid, started in tree
                     if pid != self.pid and started is not None and start_time(pid) == started]
            if master_done and not alive:
                return
            time.sleep(0.05)
        log(f"{self.name}: still running {timeout:.0f}s after SIGTERM, sending SIGKILL")
        for pid, started in tree:
            if started is not None and start_time(pid) == started:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass


def spawn(name: str, cmd: list[str], tmp: str, port: int, *, env: dict | None = None,
          expected_procs: int = 1, log_name: str = "stdout.log") -> Server:
    """Starts cmd in its own session, stdout and stderr to a log file in tmp."""
    os.makedirs(tmp, exist_ok=True)
    log_path = os.path.join(tmp, log_name)
    out = open(log_path, "ab")
    try:
        proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=out,
                                stderr=subprocess.STDOUT, env=env, cwd=tmp,
                                start_new_session=True)
    finally:
        out.close()
    return Server(name, port, proc, log_path, expected_procs=expected_procs)


def http_request(port: int, path: str = "/", timeout: float = 1.0, method: str = "GET",
                 headers: dict | None = None, body: bytes | None = None) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        response = conn.getresponse()
        return response.status, response.read()
    finally:
        conn.close()


def http_get(port: int, timeout: float = 1.0) -> tuple[int, bytes]:
    return http_request(port, "/", timeout)


def wait_status_200(server: Server, port: int, path: str, timeout: float,
                    headers: dict | None = None) -> None:
    """Polls GET path on ``port`` (an admin listener, say) until it answers 200, whatever the
    body; fails once ``server`` exits or ``timeout`` has passed."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            if http_request(port, path, timeout=60.0, headers=headers)[0] == 200:
                return
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"{server.name} did not start:\n{server.tail_log()}")
        time.sleep(0.1)


def wait_workers_serving(server: Server, admin: int, headers: dict, workers: int,
                         timeout: float) -> None:
    """Polls the admin ``/status`` until every worker runs the master's config version: the
    admin listener answers before the workers start, and a write timed then would time the
    start too."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            status, body = http_request(admin, "/status", timeout=5.0, headers=headers)
            if status == 200:
                report = json.loads(body)
                versions = [w.get("version") for w in report.get("workers", [])]
                if len(versions) == workers and all(
                        v == report["master"]["version"] for v in versions):
                    return
        except OSError:
            pass
        if server.proc.poll() is not None or time.monotonic() > deadline:
            raise BenchError(f"{server.name} did not serve:\n{server.tail_log()}")
        time.sleep(0.1)


def cpu_split(server: Server) -> tuple[float, dict[int, float]]:
    """CPU seconds so far of a gateway's master and of each worker (by pid)."""
    tree = server.cpu()
    return tree.get(server.pid, 0.0), {pid: s for pid, s in tree.items() if pid != server.pid}


def cpu_per_write(before: tuple[float, dict[int, float]], after: tuple[float, dict[int, float]],
                  writes: int) -> dict[str, float]:
    """CPU milliseconds per write: the master's, and the mean of the workers' (a worker also
    answers the poller's requests: a few per write)."""
    workers = [after[1][pid] - before[1].get(pid, 0.0) for pid in after[1]]
    return {"master_ms": (after[0] - before[0]) * 1000 / writes,
            "worker_ms": (sum(workers) / len(workers) if workers else 0.0) * 1000 / writes}


def wait_served(port: int, path: str, expect: bytes, started: float,
                deadline: float) -> float | None:
    """Polls GET path on fresh connections until it answers 200 with ``expect``: the seconds
    since ``started`` then, None if ``deadline`` came first."""
    while time.monotonic() < deadline:
        try:
            status, body = http_request(port, path, timeout=2.0)
            if status == 200 and body == expect:
                return time.monotonic() - started
        except OSError:
            pass
    return None


def poll_into(result: dict[str, float | None], port: int, path: str, expect: bytes,
              started: float) -> None:
    """wait_served for up to 120 s, into result["served"] (a thread's target)."""
    result["served"] = wait_served(port, path, expect, started, started + 120)


def route_count_parser(description: str, writes_help: str) -> argparse.ArgumentParser:
    """The options of the write-to-served benches (admin_write.py, etcd_write.py)."""
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--routes", default="10,10000", help="route counts, comma-separated (10,10000)")
    p.add_argument("--writes", type=int, default=100, help=writes_help)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--json", help="also write the results here")
    return p


def wait_ready(server: Server, timeout: float = 20.0, path: str = "/",
               headers: dict | None = None, expect: bytes = BODY) -> None:
    """Polls GET path until it answers 200 with the expected body; fails early if the process
    dies."""
    deadline = time.monotonic() + timeout
    last = "no answer"
    while time.monotonic() < deadline:
        if server.proc.poll() is not None:
            raise BenchError(f"{server.name} exited with status {server.proc.returncode} "
                             f"before answering; its log ends with:\n{server.tail_log()}")
        try:
            status, body = http_request(server.port, path, headers=headers)
            if status == 200 and body == expect:
                return
            last = f"status {status}, body {body[:80]!r}"
        except OSError as exc:
            last = f"{type(exc).__name__}: {exc}"
        time.sleep(0.1)
    raise BenchError(f"{server.name} did not answer GET {path} with 200 within {timeout:.0f}s "
                     f"(last: {last}); its log ends with:\n{server.tail_log()}")


# --------------------------------------------------------------------------- nginx

NGINX_COMMON = """\
daemon off;
master_process on;
worker_processes {workers};
pid {tmp}/x.pid;
error_log {tmp}/err.log;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    keepalive_requests 100000;
    client_body_temp_path {tmp}/client_body;
    proxy_temp_path {tmp}/proxy;
    fastcgi_temp_path {tmp}/fastcgi;
    uwsgi_temp_path {tmp}/uwsgi;
    scgi_temp_path {tmp}/scgi;
{body}
}}
"""

UPSTREAM_BODY = """\
    server {{
        listen 127.0.0.1:{port};
        location / {{
            default_type text/plain;
            return 200 "hello world\\n";
        }}
    }}"""

PROXY_BODY = """\
    upstream backend {{
        server 127.0.0.1:{upstream};
        keepalive 64;
        keepalive_requests 100000;
    }}
    server {{
        listen 127.0.0.1:{port} reuseport;
        location / {{
            proxy_pass http://backend;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
        }}
    }}"""


def find_nginx() -> str | None:
    return shutil.which("nginx") or ("/usr/sbin/nginx" if os.access("/usr/sbin/nginx", os.X_OK)
                                     else None)


def nginx_and_wrk() -> tuple[str, str]:
    """nginx and wrk, for the benches that load the gateway in front of an nginx upstream."""
    nginx, wrk = find_nginx(), shutil.which("wrk")
    if nginx is None or wrk is None:
        raise BenchError("nginx and wrk are needed (apt-get install nginx-light wrk)")
    return nginx, wrk


def judged(name: str, run: Callable[[], T], verdict: Callable[[T], tuple[list[str], bool]],
           outcomes: tuple[str, str], json_out: str | None,
           failures: tuple[type[BaseException], ...] = (BenchError,)) -> int:
    """A bench with targets, run to its exit status: ``verdict``'s lines printed, then
    ``outcomes[0]`` when every target was met, else ``outcomes[1]``; what ``run`` measured
    written to ``json_out``. 1 when a target was missed or ``run`` failed with ``failures``."""
    try:
        result = run()
    except failures as exc:
        print(f"{name}: {exc}", file=sys.stderr)
        return 1
    lines, ok = verdict(result)
    print("\n".join(lines))
    print(f"{name}: {outcomes[0] if ok else outcomes[1]}")
    if json_out:
        with open(json_out, "w") as fh:
            json.dump(result, fh, indent=1)
    return 0 if ok else 1


def start_nginx(name: str, nginx: str, tmp: str, workers: int, body: str, port: int) -> Server:
    """nginx with its own prefix, config and -e error log: never reads /etc/nginx."""
    os.makedirs(tmp, exist_ok=True)
    os.chmod(tmp, 0o755)  # when run as root the workers run as nobody
    conf = write_text(tmp, "nginx.conf", NGINX_COMMON.format(workers=workers, tmp=tmp, body=body))
    err = os.path.join(tmp, "err.log")
    server = spawn(name, [nginx, "-p", tmp + "/", "-c", conf, "-e", err], tmp, port,
                   expected_procs=1 + workers)
    server.log_path = err
    server.info["conf"] = conf
    return server


def start_hello_upstream(nginx: str, tmp: str, name: str = "upstream") -> Server:
    """nginx, one worker, answering every path with BODY: the upstream the proxies under
    test forward to (not yet ready: pass it to wait_ready)."""
    port = free_port()
    return start_nginx(name, nginx, tmp, 1, UPSTREAM_BODY.format(port=port), port)


# --------------------------------------------------------------------------- gateway

def spawn_gateway(tmp: str, conf: str, port: int, *, workers: int = 1,
                  env: dict[str, str] | None = None, python: str | None = None,
                  name: str = "gateway") -> Server:
    """``gateway run -c conf -w workers`` in ``tmp`` (log: tmp/gateway.log): this checkout's
    gateway, or with ``python`` the one installed for that interpreter (a build of another
    commit, say). Its state goes to ``env``'s XDG_STATE_HOME, by default ``tmp``."""
    if env is None:
        env = repo_env(XDG_STATE_HOME=tmp) if python is None else dict(os.environ,
                                                                        XDG_STATE_HOME=tmp)
    return spawn(name, [python or sys.executable, "-m", "gateway", "run", "-c", conf,
                        "-w", str(workers)], tmp, port, env=env, expected_procs=1 + workers,
                 log_name="gateway.log")


# --------------------------------------------------------------------------- wrk

_UNIT_MS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3, "h": 3600e3}


def _to_ms(value: str, unit: str) -> float:
    return float(value) * _UNIT_MS[unit]


def parse_wrk(output: str) -> dict:
    """Requests/sec, p50/p99 (ms), total requests, socket errors and non-2xx from wrk's output."""
    result: dict = {}
    match = re.search(r"^Requests/sec:\s+([\d.]+)", output, re.M)
    if not match:
        raise BenchError(f"could not parse wrk output:\n{output}")
    result["rps"] = float(match.group(1))
    match = re.search(r"^\s*(\d+) requests in ([\d.]+)(us|ms|s|m|h),", output, re.M)
    result["requests"] = int(match.group(1)) if match else 0
    result["elapsed_s"] = _to_ms(match.group(2), match.group(3)) / 1e3 if match else None
    for pct in (50, 75, 90, 99):
        match = re.search(rf"^\s*{pct}(?:\.0+)?%\s+([\d.]+)(us|ms|s|m|h)\s*$", output, re.M)
        result[f"p{pct}_ms"] = _to_ms(match.group(1), match.group(2)) if match else None
    match = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                      output)
    names = ("connect", "read", "write", "timeout")
    result["socket_errors"] = (dict(zip(names, map(int, match.groups()))) if match
                               else dict.fromkeys(names, 0))
    match = re.search(r"Non-2xx or 3xx responses:\s+(\d+)", output)
    result["non_2xx"] = int(match.group(1)) if match else 0
    result["errors"] = sum(result["socket_errors"].values()) + result["non_2xx"]
    return result


def wrk_cpu() -> int | None:
    """The CPU wrk is pinned to (the last one), None on a single-CPU machine."""
    cpus = sorted(os.sched_getaffinity(0))
    return cpus[-1] if len(cpus) >= 2 else None


def pinned(cmd: list[str]) -> list[str]:
    """``cmd`` run by taskset on the load generator's CPU (wrk_cpu), when there is one."""
    cpu = wrk_cpu()
    if cpu is not None and shutil.which("taskset"):
        return ["taskset", "-c", str(cpu)] + cmd
    return cmd


def wrk_command(wrk: str, port: int, seconds: float, connections: int, path: str = "/",
                script: str | None = None, headers: dict | None = None,
                url: str | None = None) -> list[str]:
    """wrk loading http://127.0.0.1:port/path, or ``url`` when given."""
    # wrk takes whole seconds only
    cmd = [wrk, "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency",
           "--timeout", "5s"]
    for key, value in (headers or {}).items():
        cmd += ["-H", f"{key}: {value}"]
    if script:
        cmd += ["-s", script]
    cmd.append(url or f"http://127.0.0.1:{port}{path}")
    return pinned(cmd)


def run_wrk(wrk: str, port: int, seconds: float, connections: int, path: str = "/",
            script: str | None = None, headers: dict | None = None,
            url: str | None = None) -> dict:
    cmd = wrk_command(wrk, port, seconds, connections, path, script, headers, url)
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        text = (proc.stderr or proc.stdout).strip().splitlines()
        raise BenchError(f"wrk failed ({proc.returncode}): {text[0] if text else ''}")
    result = parse_wrk(proc.stdout)
    result["wrk_output"] = proc.stdout
    return result


# --------------------------------------------------------------------------- h2load

def run_h2load(args: list[str], timeout: float, pin: bool = True) -> dict:
    """h2load (Debian's nghttp2-client), one thread, with ``args``; pinned like wrk unless
    ``pin`` is false. Its figures: req/s, the request counts (done, succeeded, failed,
    errored) and the responses by status class (2xx ... 5xx)."""
    exe = shutil.which("h2load")
    if exe is None:
        raise BenchError("h2load is needed (apt-get install nghttp2-client)")
    cmd = [exe, "-t1", *args]
    proc = subprocess.run(pinned(cmd) if pin else cmd, capture_output=True, text=True,
                          timeout=timeout)
    out = proc.stdout + proc.stderr
    rate = re.search(r"finished in [\d.]+\w+, ([\d.]+) req/s", out)
    counts = re.search(r"requests: (\d+) total, (\d+) started, (\d+) done, (\d+) succeeded, "
                       r"(\d+) failed, (\d+) errored", out)
    codes = re.search(r"status codes: (\d+) 2xx, (\d+) 3xx, (\d+) 4xx, (\d+) 5xx", out)
    if proc.returncode != 0 or not rate or not counts or not codes:
        raise BenchError(f"h2load failed ({proc.returncode}): {out.strip()[-300:]}")
    result: dict = {"rps": float(rate.group(1))}
    result.update(zip(("done", "succeeded", "failed", "errored"),
                      map(int, counts.group(3, 4, 5, 6))))
    result.update(zip(("2xx", "3xx", "4xx", "5xx"), map(int, codes.groups())))
    return result


def tool_version(cmd: list[str]) -> str:
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
        return (proc.stdout + proc.stderr).strip().splitlines()[0]
    except (OSError, IndexError, subprocess.TimeoutExpired):
        return "unknown"
