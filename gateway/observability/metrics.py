"""Request metrics: the label encoding the ``prometheus`` plugin writes into the shared-memory
store (``gateway._native.SharedMetrics``) and the prometheus_client collector that reads it in
the master for ``/metrics``.

The workers write, the master reads the same pages: a scrape never reaches a worker, so it costs
the data plane nothing however often Prometheus asks or however many routes there are.

Metric names follow APISIX's with our prefix (``gateway_``). Counters carry the ``_total``
suffix that the Prometheus naming rules (and prometheus_client) require, so APISIX's
``apisix_http_status`` is ``gateway_http_status_total`` here.
"""
from __future__ import annotations

import hashlib
import socket
from collections.abc import Iterator
from typing import TYPE_CHECKING

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector
from prometheus_client.samples import Sample
from prometheus_client.utils import floatToGoString

if TYPE_CHECKING:
    from gateway._native import SharedMetrics

PREFIX = "gateway_"
SEP = "\x1f"
#: Longest encoding of one label value; a longer one keeps a readable head and a digest of the
#: whole, so distinct values stay distinct and a full label set fits the store's 192 bytes
#: (3-digit code + 3 values + 3 separators).
VALUE_MAX = 60
_SERIES_LABELS = ["route", "consumer", "node"]


def label_value(value: str | None) -> str:
    if not value:
        return ""
    if SEP in value:
        value = value.replace(SEP, "?")
    if len(value.encode()) <= VALUE_MAX:
        return value
    digest = hashlib.sha256(value.encode()).hexdigest()[:12]
    head = value.encode()[:VALUE_MAX - 13].decode(errors="ignore")
    return f"{head}~{digest}"


def series_label(route: str | None, consumer: str | None, node: str | None) -> str:
    """The store label of a (route, consumer, node) series: latency histograms and bandwidth."""
    return SEP.join((label_value(route), label_value(consumer), label_value(node)))


def status_label(code: int, route: str | None, consumer: str | None, node: str | None) -> str:
    """The store label of a status-code counter."""
    return f"{code}{SEP}{series_label(route, consumer, node)}"


class SharedMetricsCollector(Collector):
    """Yields the metric families of one SharedMetrics store (one snapshot per scrape)."""

    def __init__(self, store: SharedMetrics, prefix: str = PREFIX) -> None:
        self.store = store
        self.prefix = prefix
        bounds = [floatToGoString(ms) for ms in store.latency_buckets_ms] + ["+Inf"]
        self.bounds = bounds
        self.hostname = socket.gethostname()

    def collect(self) -> Iterator[Metric]:
        p = self.prefix
        requests, dropped, used, counters, series = self.store.snapshot()
        # Samples are appended directly (not through add_metric) so that an empty consumer or
        # node label is left out: Prometheus treats a missing label and an empty one alike, and
        # every label costs the text renderer ~4 us per sample (a third of a 10k-route scrape).
        status = CounterMetricFamily(
            f"{p}http_status", "HTTP status codes per route, consumer and upstream node",
            labels=["code", *_SERIES_LABELS])
        status_total = f"{p}http_status_total"
        samples = status.samples
        for label, value in counters:
            code, route, consumer, node = label.split(SEP)
            samples.append(Sample(status_total, _labels(route, consumer, node, code=code), value))
        latency = HistogramMetricFamily(
            f"{p}http_latency",
            "Latency in milliseconds: the whole request (type=request) and waiting for the "
            "upstream's response head (type=upstream)",
            labels=["type", *_SERIES_LABELS])
        bandwidth = CounterMetricFamily(
            f"{p}bandwidth", "Bytes received from clients (type=ingress) and sent to them "
                             "(type=egress)",
            labels=["type", *_SERIES_LABELS])
        bounds = self.bounds
        bucket_name, count_name, sum_name = (f"{p}http_latency{s}" for s in ("_bucket", "_count", "_sum"))
        bandwidth_name = f"{p}bandwidth_total"
        hist, bw = latency.samples, bandwidth.samples
        for label, request, upstream, bytes_in, bytes_out in series:
            route, consumer, node = label.split(SEP)
            for kind, (buckets, total_ms) in (("request", request), ("upstream", upstream)):
                if not buckets[-1]:
                    continue  # nothing proxied on this series: no upstream histogram
                labels = _labels(route, consumer, node, type=kind)
                for le, value in zip(bounds, buckets):
                    hist.append(Sample(bucket_name, {**labels, "le": le}, value))
                hist.append(Sample(count_name, labels, buckets[-1]))
                hist.append(Sample(sum_name, labels, total_ms))
            bw.append(Sample(bandwidth_name, _labels(route, consumer, node, type="ingress"), bytes_in))
            bw.append(Sample(bandwidth_name, _labels(route, consumer, node, type="egress"), bytes_out))
        yield status
        yield latency
        yield bandwidth
        yield CounterMetricFamily(f"{p}http_requests", "Requests recorded by the prometheus plugin",
                                  value=requests)
        yield CounterMetricFamily(
            f"{p}metrics_dropped",
            "Observations lost because the shared metrics table was full", value=dropped)
        slots = GaugeMetricFamily(f"{p}metrics_slots", "Label sets in the shared metrics table",
                                  labels=["state"])
        slots.add_metric(["used"], used)
        slots.add_metric(["capacity"], self.store.capacity)
        yield slots
        info = GaugeMetricFamily(f"{p}node_info", "Information of the gateway node",
                                 labels=["hostname"])
        info.add_metric([self.hostname], 1)
        yield info


def _labels(route: str, consumer: str, node: str, **first: str) -> dict[str, str]:
    labels = {**first, "route": route}
    if consumer:
        labels["consumer"] = consumer
    if node:
        labels["node"] = node
    return labels


class MetricsExporter:
    """Renders a store in the Prometheus text format. The text is written in Rust from the shared
    pages (``SharedMetrics.render_exposition``): at 10k busy routes the collector above, through
    prometheus_client's formatter, costs the master seconds per scrape. The collector stays the
    reference the tests compare this output with, and serves code that embeds the store in its
    own prometheus_client registry."""

    def __init__(self, store: SharedMetrics, prefix: str = PREFIX) -> None:
        self.store = store
        self.prefix = prefix
        self.hostname = socket.gethostname()

    def render(self) -> bytes:
        return self.store.render_exposition(self.prefix, self.hostname)
