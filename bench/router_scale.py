"""Scenario 5, run in a fresh process per size: the Rust router through its Python API.

    python -m bench.router_scale 10000          # prints one JSON object

Routes are generated like an API's route table (bench.peers.route_pattern: ``:param`` paths,
``/prefix/*`` and exact paths mixed, one in eight with a host). It reports the compile time
(``Router(specs)``), the memory the compiled router holds (RSS growth of this fresh process
across the compile; the Python spec list is built before and not counted), and the time of one
``match()`` call for the first route, the last-added route, one in the middle and a miss. A
lookup time includes the Python call (about 0.1 µs here): it is what a plugin or a test pays.
"""
from __future__ import annotations

import gc
import json
import os
import statistics
import sys
import time

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from bench.peers import route_pattern  # noqa: E402

PAGE = os.sysconf("SC_PAGE_SIZE")


def rss() -> int:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * PAGE


def host_of(i: int) -> str | None:
    return f"svc{i}.example.com" if i % 8 == 5 else None


def specs(count: int) -> list[tuple[list[str], list[str], list[str], int]]:
    out = []
    for i in range(count):
        host = host_of(i)
        out.append(([route_pattern(i)[0]], [host] if host else [], [], 0))
    return out


def time_lookup(router, method: bytes, host: bytes, path: bytes, budget: float = 0.2) -> float:
    """Nanoseconds per match(), the median of 5 batches."""
    match = router.match
    n = 1000
    while True:  # size a batch to about budget/5 seconds
        t0 = time.perf_counter_ns()
        for _ in range(n):
            match(method, host, path)
        elapsed = time.perf_counter_ns() - t0
        if elapsed > budget / 5 * 1e9 or n >= 10 ** 7:
            break
        n *= 4
    batches = []
    for _ in range(5):
        t0 = time.perf_counter_ns()
        for _ in range(n):
            match(method, host, path)
        batches.append((time.perf_counter_ns() - t0) / n)
    return statistics.median(batches)


def measure(count: int) -> dict:
    from gateway._native import NOT_FOUND, Router

    route_specs = specs(count)
    gc.collect()
    before = rss()
    t0 = time.perf_counter()
    router = Router(route_specs)
    compile_s = time.perf_counter() - t0
    held = rss() - before
    compiles = [compile_s]
    if count <= 10000:  # small tables: the median of 3 compiles
        for _ in range(2):
            t0 = time.perf_counter()
            Router(route_specs)
            compiles.append(time.perf_counter() - t0)
    result = {"routes": count, "compile_ms": statistics.median(compiles) * 1e3,
              "memory_bytes": held, "lookups_ns": {}}
    probes = {"first": 0, "middle": count // 2, "last": count - 1}
    for label, i in probes.items():
        host = (host_of(i) or "bench.example.org").encode()
        path = route_pattern(i)[1].encode()
        index = router.match(b"GET", host, path)[0]
        if index != i:
            raise SystemExit(f"route {i} ({path!r}) matched {index}")
        result["lookups_ns"][label] = time_lookup(router, b"GET", host, path)
    miss = b"/nothing/here/at/all"
    if router.match(b"GET", b"x", miss)[0] != NOT_FOUND:
        raise SystemExit("miss matched a route")
    result["lookups_ns"]["miss"] = time_lookup(router, b"GET", b"bench.example.org", miss)
    return result


if __name__ == "__main__":
    print(json.dumps(measure(int(sys.argv[1]))))
