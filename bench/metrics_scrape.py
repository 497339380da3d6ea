"""The ``/metrics`` scrape at scale, and what the ``prometheus`` plugin costs per request.

    python -m bench.metrics_scrape                     # 10k routes x 3 status codes
    python -m bench.metrics_scrape --routes 1000 --statuses 2 --scrapes 5

Fills a fresh shared-memory store the way the plugin does (one series per route and node, one
counter per status code; every route has proxied traffic, so each has a request and an upstream
histogram), then times the scrape the admin listener runs: the store snapshot (Rust, reading the
shared pages) and the whole render (Rust, snapshot included): wall time and the CPU it costs the
master. ``--reference`` also times one render of the same store through prometheus_client's
formatter, which is what a scrape cost before. It also times ``Prometheus.log`` on a request
context stand-in with cached labels, i.e. the per-request cost a worker pays. Prints one JSON
object.
"""
from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from prometheus_client import CollectorRegistry, generate_latest  # noqa: E402

from gateway._native import SharedMetrics  # noqa: E402
from gateway.observability.metrics import (  # noqa: E402
    MetricsExporter,
    SharedMetricsCollector,
    series_label,
    status_label,
)
from gateway.plugins.base import PluginEnv  # noqa: E402
from gateway.plugins.prometheus import Prometheus, PrometheusConfig  # noqa: E402

STATUSES = (200, 404, 502, 401, 500)


class Node:
    host = "10.0.0.7"
    port = 8080


class Context:
    """The attributes Prometheus.log reads from a gateway._proto.Exchange."""
    route_id = "route-17"
    consumer = None
    node = Node()
    status = 200
    elapsed = 0.0042
    upstream_latency = 0.0031
    request_bytes = 312
    bytes_sent = 1480


def fill(store: SharedMetrics, routes: int, statuses: int) -> None:
    for r in range(routes):
        route, node = f"route-{r}", f"10.0.{r // 250}.{r % 250}:8080"
        series = store.slot(series_label(route, None, node), series=True)
        for i, code in enumerate(STATUSES[:statuses]):
            status = store.slot(status_label(code, route, None, node))
            for n in range(1 + i):
                store.record(series, status, 0.0005 * (r % 2000 + n), 0.0003 * (r % 1000), 300, 1500)


def per_request_ns(iterations: int = 200_000) -> float:
    store = SharedMetrics.create(1024)
    plugin = Prometheus(PrometheusConfig())
    plugin.bind(PluginEnv(limiter=None, consumers=None, metrics=store))  # type: ignore[arg-type]
    ctx: Any = Context()
    plugin.log(ctx)
    started = time.perf_counter_ns()
    for _ in range(iterations):
        plugin.log(ctx)
    return (time.perf_counter_ns() - started) / iterations


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--routes", type=int, default=10_000)
    parser.add_argument("--statuses", type=int, default=3, choices=range(1, len(STATUSES) + 1))
    parser.add_argument("--scrapes", type=int, default=3)
    parser.add_argument("--reference", action="store_true",
                        help="also time one render through prometheus_client (seconds)")
    args = parser.parse_args()

    store = SharedMetrics.create(65536)
    started = time.perf_counter()
    fill(store, args.routes, args.statuses)
    fill_s = time.perf_counter() - started
    exporter = MetricsExporter(store)
    snapshots, renders, cpu, size, text = [], [], [], 0, b""
    for _ in range(args.scrapes):
        started = time.perf_counter()
        store.snapshot()
        snapshots.append(time.perf_counter() - started)
        started, started_cpu = time.perf_counter(), time.process_time()
        text = exporter.render()
        cpu.append(time.process_time() - started_cpu)
        renders.append(time.perf_counter() - started)
        size = len(text)
    samples = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
    reference: dict[str, float] = {}
    if args.reference:
        # The same store through prometheus_client's formatter (the collector the Rust renderer
        # is tested against): what a scrape cost before.
        registry = CollectorRegistry(auto_describe=False)
        registry.register(SharedMetricsCollector(store))
        started, started_cpu = time.perf_counter(), time.process_time()
        generate_latest(registry)
        reference = {"reference_scrape_s": round(time.perf_counter() - started, 3),
                     "reference_scrape_cpu_s": round(time.process_time() - started_cpu, 3)}
    print(json.dumps({
        "routes": args.routes,
        "statuses_per_route": args.statuses,
        "slots_used": store.used,
        "fill_s": round(fill_s, 3),
        "samples": samples,
        "snapshot_ms_median": round(statistics.median(snapshots) * 1000, 2),
        "scrape_ms_median": round(statistics.median(renders) * 1000, 1),
        "scrape_cpu_ms_median": round(statistics.median(cpu) * 1000, 1),
        "exposition_bytes": size,
        **reference,
        "plugin_log_ns_per_request": round(per_request_ns()),
    }, indent=2))


if __name__ == "__main__":
    main()
