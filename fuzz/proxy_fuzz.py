"""The whole proxy fuzzed from both sides: a real gateway (one worker, built with AddressSanitizer
by fuzz/build_asan.sh) between a client sending mutated requests and a raw-socket upstream
sending mutated responses, cut into pieces. Mutations start from the conformance vectors
(fuzz/seeds.py: ../shared/conformance and the tests' own requests and responses).

    python fuzz/proxy_fuzz.py --duration 60            # ASan build from fuzz/asan/site
    python fuzz/proxy_fuzz.py --duration 60 --no-asan  # the installed build

A finding is any of: the worker dies (a new pid, or ASan's report in its log directory); a
client waits longer than the gateway's own timeouts allow for an answer or a close; an answer
that is not HTTP/1.1 with a 1xx-5xx status; for a well-formed request, an answer that h11
cannot read, or a status other than the upstream's or 502/504; the gateway stops answering a
plain request. Each finding is written to fuzz/proxy-findings/ (the exchange's bytes) and the
exit status is 1.
"""
from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import random
import re
import socket
import sys
import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h11

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import seeds  # noqa: E402  (puts the repository on sys.path)

from tests.support.gateway import GatewayProcess  # noqa: E402
from tests.support.raw_upstream import RawUpstream  # noqa: E402
from tests.support.upstream import free_port  # noqa: E402

# The gateway's timeouts in this harness; a client waits for at most their sum plus slack.
UPSTREAM_TIMEOUT = 2.0
CLIENT_TIMEOUT = 2.0
DEADLINE = UPSTREAM_TIMEOUT + CLIENT_TIMEOUT + 4.0

OK = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
STATUS_LINE = re.compile(rb"HTTP/1\.1 [1-5]\d\d[ \r]")
# Bytes and lines that matter to HTTP framing, spliced in by the mutator.
TOKENS = [b"\r\n", b"\n", b"\r", b" ", b"\t", b":", b",", b";", b"\x00", b"\x7f", b"\x80", b"\xff",
          b"0", b"1", b"9", b"f", b"-", b"%", b"/", b"..", b"?", b"#", b'"', b"\\",
          b"HTTP/1.1", b"HTTP/1.0", b"chunked", b"gzip", b"close", b"keep-alive", b"upgrade",
          b"100-continue", b"\r\n\r\n", b"0\r\n\r\n", b"18446744073709551616", b"ffffffffffffffff"]
FIELDS = [b"Content-Length: 5", b"Content-Length: 0", b"Content-Length: 99999", b"Content-Length: -1",
          b"Transfer-Encoding: chunked", b"Transfer-Encoding: gzip, chunked",
          b"Transfer-Encoding: chunked, identity", b"Transfer-Encoding : chunked", b"Connection: close",
          b"Connection: keep-alive", b"Connection: upgrade", b"Upgrade: websocket", b"Host: a.test",
          b"Host:", b"Expect: 100-continue", b"Trailer: X-T", b"Keep-Alive: timeout=1",
          b"X-Long: " + b"v" * 9000, b"Date: Sun, 06 Nov 1994 08:49:37 GMT"]


def mutate(rng: random.Random, data: bytes, others: list[bytes]) -> bytes:
    """A few of: flip, insert a token, delete or repeat a range, add a field line, splice."""
    buf = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        pos = rng.randint(0, len(buf))
        op = rng.randrange(7)
        if op == 0 and buf:
            buf[min(pos, len(buf) - 1)] = rng.randrange(256)
        elif op == 1:
            buf[pos:pos] = rng.choice(TOKENS)
        elif op == 2:
            del buf[pos:pos + rng.randint(1, 16)]
        elif op == 3:
            buf[pos:pos] = buf[pos:pos + rng.randint(1, 32)] * rng.randint(1, 3)
        elif op == 4:
            line_end = buf.find(b"\r\n")
            at = line_end + 2 if line_end >= 0 else len(buf)
            buf[at:at] = rng.choice(FIELDS) + b"\r\n"
        elif op == 5:
            other = rng.choice(others)
            cut = rng.randint(0, len(other))
            buf[pos:] = other[cut:]
        else:
            buf[pos:pos] = b"\r\n"
    return bytes(buf)


def cut(rng: random.Random, data: bytes) -> list[bytes]:
    """The bytes in one to four pieces, cut anywhere."""
    points = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(0, 3)))) if len(data) > 1 else []
    bounds = [0, *points, len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:], strict=False)]


@dataclass
class Finding:
    kind: str
    detail: str
    request: bytes
    response: list[bytes] | None
    answer: bytes = b""
    # for a dead worker: the exchanges just before, one of which killed it
    recent: list[tuple[bytes, list[bytes] | None]] = field(default_factory=list)


@dataclass
class Stats:
    exchanges: int = 0
    by_status: dict[str, int] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)


class Responses:
    """What the upstream answers: per request, the pieces the fuzzer chose (keyed by an id in
    the request target), or a plain 200 for requests the fuzzer did not prepare."""

    def __init__(self) -> None:
        self.planned: dict[bytes, list[bytes]] = {}

    def answer(self, head: bytes) -> bytes | list[bytes]:
        match = re.search(rb"/r(\d+)", head.split(b"\r\n", 1)[0])
        if match and match.group(1) in self.planned:
            return self.planned.pop(match.group(1))
        return OK


def asan_runtime() -> str:
    found = sorted(glob.glob("/usr/lib/llvm-*/lib/clang/*/lib/linux/libclang_rt.asan-x86_64.so"))
    if not found:
        sys.exit("proxy_fuzz: clang's ASan runtime is missing (apt-get install libclang-rt-14-dev)")
    return found[-1]


def asan_env(site: Path, log_dir: Path) -> dict[str, str]:
    so = next(site.glob("gateway/_native*.so"), None)
    if so is None or b"__asan_init" not in so.read_bytes():
        sys.exit(f"proxy_fuzz: no ASan build in {site}: run fuzz/build_asan.sh first")
    return {
        "PYTHONPATH": str(site),
        "LD_PRELOAD": asan_runtime(),
        # Python's own allocations go through malloc, so ASan sees them too; CPython leaks by
        # design at exit, so no leak report; a report goes to a file per process.
        "PYTHONMALLOC": "malloc",
        "ASAN_OPTIONS": f"detect_leaks=0:abort_on_error=1:log_path={log_dir}/asan",
    }


def config(port: int, closing: int, keeping: int) -> dict[str, object]:
    timeout = {"connect": 1.0, "send": UPSTREAM_TIMEOUT, "read": UPSTREAM_TIMEOUT}
    return {
        "gateway": {"listen": [f"127.0.0.1:{port}"], "admin": {"listen": f"127.0.0.1:{free_port()}"},
                    "client_header_timeout": CLIENT_TIMEOUT, "client_body_timeout": CLIENT_TIMEOUT,
                    "send_timeout": CLIENT_TIMEOUT, "keepalive_timeout": CLIENT_TIMEOUT},
        "upstreams": [
            {"id": "closing", "nodes": [{"host": "127.0.0.1", "port": closing}], "timeout": timeout,
             "retries": 0},
            {"id": "keeping", "nodes": [{"host": "127.0.0.1", "port": keeping}], "timeout": timeout,
             "retries": 0},
        ],
        "routes": [{"id": "keep", "uri": "/k/*", "upstream_id": "keeping"},
                   {"id": "all", "uri": "/*", "upstream_id": "closing"}],
    }


def exchange(port: int, pieces: list[bytes], half_close: bool,
             complete: Callable[[bytes], bool] = lambda _: False) -> tuple[bytes, bool]:
    """Sends the pieces, then reads until the gateway closes, what came back is `complete`, or
    DEADLINE passes. Returns what came back and whether it ended (close or complete) in time."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=DEADLINE)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    got = bytearray()
    end = time.monotonic() + DEADLINE
    try:
        try:
            for piece in pieces:
                sock.sendall(piece)
                time.sleep(0.001)
            if half_close:
                sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the gateway closed before reading everything (a refusal): read what it said
        while time.monotonic() < end:
            sock.settimeout(max(0.01, end - time.monotonic()))
            chunk = sock.recv(65536)
            if not chunk:
                return bytes(got), True
            got += chunk
            if complete(bytes(got)):
                return bytes(got), True
    except TimeoutError:
        pass
    except OSError:  # reset
        return bytes(got), True
    finally:
        sock.close()
    return bytes(got), False


def read_with_h11(method: bytes, raw: bytes) -> tuple[int, int]:
    """Reads the gateway's answer to one well-formed request the way a strict client does.
    Returns the final status and the number of body bytes; raises on anything h11 refuses."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "a.test")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    status, body = 0, 0
    while True:
        event = conn.next_event()
        if isinstance(event, h11.Response):
            status = event.status_code
            if status == 101:
                return status, body
        elif isinstance(event, h11.Data):
            body += len(event.data)
        elif isinstance(event, h11.EndOfMessage):
            return status, body
        elif event is h11.NEED_DATA:
            conn.receive_data(b"")  # the gateway closed: h11 decides if that ends the body
            event = conn.next_event()
            if isinstance(event, h11.EndOfMessage):
                return status, body
            if isinstance(event, h11.ConnectionClosed) and status:
                raise h11.RemoteProtocolError("closed in the middle of the response body")
            raise h11.RemoteProtocolError("closed before a complete response")
        elif isinstance(event, h11.ConnectionClosed):
            raise h11.RemoteProtocolError("closed before a response")


def answered(method: bytes, raw: bytes) -> bool:
    """Whether `raw` holds a whole final response (so the client need not wait for a close)."""
    conn = h11.Connection(h11.CLIENT)
    conn.send(h11.Request(method=method, target="/", headers=[("Host", "a.test")]))
    conn.send(h11.EndOfMessage())
    conn.receive_data(raw)
    try:
        while True:
            event = conn.next_event()
            if isinstance(event, h11.EndOfMessage):
                return True
            if event is h11.NEED_DATA or isinstance(event, h11.ConnectionClosed):
                return False
            if isinstance(event, h11.Response) and event.status_code == 101:
                return True
    except h11.ProtocolError:
        return False


class Fuzzer:
    def __init__(self, rng: random.Random, gw: GatewayProcess, port: int, plan: Responses,
                 asan_logs: Path | None, upstreams: list[RawUpstream]) -> None:
        self.rng = rng
        self.gw = gw
        self.port = port
        self.plan = plan
        self.upstreams = upstreams
        self.asan_logs = asan_logs
        self.requests = seeds.requests()
        self.responses = seeds.responses()
        self.stats = Stats()
        self.recent: deque[tuple[bytes, list[bytes] | None]] = deque(maxlen=40)
        self.next_id = 0
        self.pid = self.worker_pid()

    def worker_pid(self, wait: float = 15.0) -> int:
        end = time.monotonic() + wait
        while time.monotonic() < end:
            pids = self.gw.worker_pids()
            if pids and all(os.path.exists(f"/proc/{p}") for p in pids):
                return pids[0]
            time.sleep(0.1)
        raise RuntimeError("no live worker")

    def count(self, raw: bytes) -> None:
        key = raw[9:12].decode("latin-1") if STATUS_LINE.match(raw) else ("none" if not raw else "bad")
        self.stats.by_status[key] = self.stats.by_status.get(key, 0) + 1
        self.stats.exchanges += 1

    def report(self, finding: Finding) -> None:
        finding.recent = list(self.recent)  # what --replay sends again (this exchange last)
        self.stats.findings.append(finding)
        print(f"proxy_fuzz: FINDING {finding.kind}: {finding.detail}", flush=True)

    def settle(self) -> None:
        """Waits until the upstreams have written all of their answers. An answer's pieces
        come 2 ms apart, and bytes past its framing (a body after a 304, a second response) can
        arrive after the gateway pooled the connection; a request sent on that connection
        meanwhile gets them as its response, as from any proxy (which cannot tell them from an
        answer), and its status would be judged against the wrong answer. Once they are in
        the gateway's socket, it reads them on the idle connection and closes it first."""
        for upstream in self.upstreams:
            upstream.wait_answered(DEADLINE)

    def request_round(self) -> None:
        """A mutated request to the well-behaved upstream's route."""
        data = mutate(self.rng, self.rng.choice(self.requests), self.requests)
        self.recent.append((data, None))
        raw, closed = exchange(self.port, cut(self.rng, data), half_close=True)
        self.settle()
        self.count(raw)
        if not closed:
            self.report(Finding("hang", f"no close within {DEADLINE} s", data, None, raw))
        elif raw and not STATUS_LINE.match(raw):
            self.report(Finding("bad-answer", repr(raw[:80]), data, None, raw))
        elif raw and raw[9:12] not in (b"100", b"200") and raw[9:10] not in (b"4", b"5"):
            # this upstream answers 200 only: anything else is the gateway's own 4xx/5xx
            self.report(Finding("status", repr(raw[:80]), data, None, raw))

    def response_round(self) -> None:
        """A well-formed request answered by a mutated response in pieces."""
        self.next_id += 1
        rid = str(self.next_id).encode()
        method = self.rng.choice([b"GET", b"GET", b"HEAD", b"POST"])
        prefix = b"/k" if self.rng.random() < 0.3 else b""
        body = b"hello" if method == b"POST" else b""
        length = b"Content-Length: 5\r\n" if body else b""
        request = (method + b" " + prefix + b"/r" + rid + b" HTTP/1.1\r\nHost: a.test\r\n" + length
                   + b"\r\n" + body)
        response = mutate(self.rng, self.rng.choice(self.responses), self.responses)
        pieces = cut(self.rng, response)
        self.plan.planned[rid] = pieces
        self.recent.append((request, pieces))
        raw, closed = exchange(self.port, [request], half_close=False,
                               complete=lambda got: answered(method, got))
        self.settle()
        self.plan.planned.pop(rid, None)
        self.count(raw)
        self.judge(method, request, pieces, raw, closed)

    def judge(self, method: bytes, request: bytes, pieces: list[bytes], raw: bytes,
              closed: bool) -> None:
        """The client's view of a well-formed request answered with ``pieces``."""
        response = b"".join(pieces)
        if not raw and not closed:
            self.report(Finding("hang", f"nothing within {DEADLINE} s", request, pieces))
            return
        try:
            status, _ = read_with_h11(method, raw)
        except h11.ProtocolError as exc:
            if not closed:
                self.report(Finding("hang", f"incomplete after {DEADLINE} s: {exc}", request, pieces, raw))
            elif raw and not raw.startswith(b"HTTP/1.1 200") and STATUS_LINE.match(raw) is None:
                self.report(Finding("bad-answer", str(exc), request, pieces, raw))
            # else: the gateway cut a relayed body short, which is how a proxy says the upstream
            # broke the message after its head was sent
            return
        # any status line of the upstream's bytes may be the final one (after 1xx heads)
        allowed = {502, 504} | {int(code) for code in re.findall(rb"HTTP/1\.[01] (\d\d\d)", response)}
        if status not in allowed and not (100 <= status < 200):
            self.report(Finding("status", f"{status} for an upstream answer of {response[:40]!r}",
                                request, pieces, raw))

    def check_alive(self) -> None:
        if self.asan_logs is not None:
            for report in self.asan_logs.glob("asan.*"):
                if report.suffix == ".seen":
                    continue
                self.report(Finding("asan", report.read_text(errors="replace")[:4000], b"", None))
                report.rename(report.with_name(report.name + ".seen"))
        try:
            pid = self.worker_pid()
        except RuntimeError:
            self.report(Finding("crash", "no live worker", b"", None))
            raise
        if pid != self.pid:
            self.report(Finding("crash", f"worker {self.pid} replaced by {pid}", b"", None))
            self.pid = pid
        raw = b""
        end = time.monotonic() + 15
        while time.monotonic() < end:  # a respawned worker takes a moment to listen
            try:
                raw, _ = exchange(self.port, [b"GET /alive HTTP/1.1\r\nHost: a.test\r\n\r\n"], True)
                break
            except ConnectionRefusedError:
                time.sleep(0.2)
        self.pid = self.worker_pid()
        if not raw.startswith(b"HTTP/1.1 200"):
            self.report(Finding("unresponsive", repr(raw[:80]), b"", None))

    def replay(self, record: dict[str, object]) -> Stats:
        """Sends again the exchanges a saved finding lists (its `recent`, the finding's own
        exchange last), in order, judging the answers to planned responses as a run does."""
        for entry in record.get("recent") or []:  # type: ignore[attr-defined]
            request = base64.b64decode(entry["request"])
            pieces = [base64.b64decode(p) for p in entry["response_pieces"]]
            method = request.split(b" ", 1)[0]
            self.recent.append((request, pieces or None))
            match = re.search(rb"/r(\d+)", request.split(b"\r\n", 1)[0])
            if pieces and match:
                self.plan.planned[match.group(1)] = pieces
            try:
                raw, closed = exchange(
                    self.port, [request], half_close=not pieces,
                    complete=lambda got, p=bool(pieces), m=method: p and answered(m, got))
            except ConnectionRefusedError:
                self.report(Finding("crash", "connection refused: the worker is gone", b"", None))
                break
            self.settle()
            self.count(raw)
            if pieces:
                self.judge(method, request, pieces, raw, closed)
        self.check_alive()
        return self.stats

    def run(self, duration: float) -> Stats:
        end = time.monotonic() + duration
        while time.monotonic() < end:
            try:
                for _ in range(20):
                    if self.rng.random() < 0.5:
                        self.request_round()
                    else:
                        self.response_round()
            except ConnectionRefusedError:
                # one worker: while it is dead nobody listens (check_alive waits for the next)
                self.report(Finding("crash", "connection refused: the worker is gone", b"", None))
            self.check_alive()
        return self.stats


def save(findings: list[Finding], folder: Path) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    for i, f in enumerate(findings):
        record = {"kind": f.kind, "detail": f.detail,
                  "request": base64.b64encode(f.request).decode(),
                  "response_pieces": [base64.b64encode(p).decode() for p in f.response or []],
                  "answer": base64.b64encode(f.answer).decode(),
                  "recent": [{"request": base64.b64encode(r).decode(),
                              "response_pieces": [base64.b64encode(p).decode() for p in ps or []]}
                             for r, ps in f.recent]}
        (folder / f"{int(time.time())}-{i}-{f.kind}.json").write_text(json.dumps(record, indent=1))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of fuzzing")
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--no-asan", action="store_true", help="run the installed (non-ASan) build")
    parser.add_argument("--site", type=Path, default=HERE / "asan" / "site")
    parser.add_argument("--findings", type=Path, default=HERE / "proxy-findings")
    parser.add_argument("--replay", type=Path, help="a finding's JSON: send its recent exchanges again")
    args = parser.parse_args()
    args.findings = args.findings.resolve()  # the gateway runs from a temporary directory
    args.replay = args.replay.resolve() if args.replay else None
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    rng = random.Random(seed)
    if not seeds.conformance_present():
        print(f"proxy_fuzz: {seeds.CONFORMANCE} is absent: mutating the tests' own vectors only")
    plan = Responses()
    with tempfile.TemporaryDirectory(prefix="proxy-fuzz-") as tmp:
        work = Path(tmp)
        env: dict[str, str] = {}
        asan_logs = None
        if not args.no_asan:
            asan_logs = work / "asan"
            asan_logs.mkdir()
            env = asan_env(args.site.resolve(), asan_logs)
            os.chdir(work)  # `python -m gateway` must not find the repository's own build first
        port = free_port()
        with RawUpstream(plan.answer, close_after=True) as closing, \
                RawUpstream(plan.answer, close_after=False) as keeping:
            gw = GatewayProcess(work, config(port, closing.port, keeping.port), workers=1, env=env)
            with gw:
                fuzzer = Fuzzer(rng, gw, port, plan, asan_logs, [closing, keeping])
                if asan_logs is not None:
                    maps = Path(f"/proc/{fuzzer.pid}/maps").read_text()
                    assert "libclang_rt.asan" in maps, "the worker runs without the ASan runtime"
                started = time.monotonic()
                if args.replay:
                    stats = fuzzer.replay(json.loads(args.replay.read_text()))
                else:
                    stats = fuzzer.run(args.duration)
                elapsed = time.monotonic() - started
            log = gw.log_path.read_text(errors="replace")
    statuses = ", ".join(f"{k}: {v}" for k, v in sorted(stats.by_status.items()))
    print(f"proxy_fuzz: seed {seed}, {stats.exchanges} exchanges in {elapsed:.0f} s "
          f"({'ASan' if asan_logs else 'no ASan'}); answers {statuses}")
    tracebacks = log.count("Traceback")
    if tracebacks:
        # each traceback with the log line that introduced it, up to the next log line
        blocks = re.findall(r"[^\n]*\n(?:Traceback[^\n]*\n(?:[^\n]*\n)*?)(?=\d{4}-\d\d-\d\d |\Z)", log)
        print(f"proxy_fuzz: the gateway logged {tracebacks} tracebacks:\n" + "".join(blocks[:3]))
        stats.findings.append(Finding("traceback", f"{tracebacks} in the log", b"", None))
    if stats.findings:
        save(stats.findings, args.findings)
        print(f"proxy_fuzz: {len(stats.findings)} findings, written to {args.findings}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
