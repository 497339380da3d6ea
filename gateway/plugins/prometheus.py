"""``prometheus``: request metrics per route, status code, consumer and upstream node (APISIX's
plugin of the same name).

Each request costs one cached lookup and one call into the shared-memory store that the master
created (``gateway._native.SharedMetrics``): a status counter +1, the request latency and the
upstream latency into histograms (milliseconds, APISIX's default buckets), and the bytes in and
out. The master reads the same memory for ``/metrics`` on the admin listener, so a scrape never
touches a worker; see ``gateway.observability.metrics`` for the names.

Differences from APISIX:

* metrics are served by the admin listener (``gateway.admin.listen``, with the admin key) at
  ``/metrics``; there is no ``export_uri``/``export_addr`` plugin attribute and no way to expose
  them on the public listener;
* no ``prefer_name`` (labels carry the route id), no ``matched_uri``/``matched_host``/``service``
  labels, no ``type="apisix"`` latency (request minus upstream: subtract the two histograms'
  sums), fixed buckets (no ``default_buckets``);
* counters have the ``_total`` suffix (``gateway_http_status_total``), and an empty ``consumer``
  or ``node`` label is left out (the same series for Prometheus);
* requests that match no route run no plugin, so a global rule does not count them.
"""
from __future__ import annotations

from typing import Any

from gateway._proto import PrometheusLog
from gateway.observability.metrics import series_label, status_label
from gateway.plugins import Context
from gateway.plugins.base import Plugin, PluginConfig, PluginEnv

#: Cached slot pairs per plugin instance; beyond this many label sets the slots are still found
#: (in the store), just not remembered, so a flood of distinct consumers cannot grow memory.
CACHE_MAX = 65536


class PrometheusConfig(PluginConfig):
    pass


_local_store: Any = None


def local_store() -> Any:
    """A process-local store for a runtime compiled outside a worker (tests, tools)."""
    global _local_store
    if _local_store is None:
        from gateway._native import SharedMetrics
        _local_store = SharedMetrics.create(1024)
    return _local_store


class Prometheus(Plugin):
    name = "prometheus"
    priority = 500
    Config = PrometheusConfig

    def __init__(self, config: PrometheusConfig) -> None:
        super().__init__(config)
        self.store: Any = None
        # (route id, consumer, node, status) -> (series slot, status slot). Consumer and node
        # objects belong to this config version, like this instance, so identity keys are safe.
        self.slots: dict[tuple[Any, ...], tuple[int, int]] = {}
        self.native_log = PrometheusLog(self, "log")
        self.native_hooks = {"log": self.native_log}

    def bind(self, env: PluginEnv) -> None:
        self.store = env.metrics
        self.native_log.bind_store(env.metrics)

    def log(self, ctx: Context) -> None:
        """The reference path (the native hook records the same, in C): also what runs
        outside a worker, into a process-local store."""
        store = self.store
        if store is None:
            store = self.store = local_store()
        slots = self.claim_slots(store, ctx.route_id, ctx.consumer, ctx.node, ctx.status)
        store.record(slots[0], slots[1], ctx.elapsed, ctx.upstream_latency, ctx.request_bytes,
                     ctx.bytes_sent)

    def claim_slots(self, store: Any, route_id: str | None, consumer: Any, node: Any,
                    status: int) -> tuple[int, int]:
        """The (series, status) slots of a label set, claimed in the store when new."""
        key = (route_id, consumer, node, status)
        slots = self.slots.get(key)
        if slots is not None:
            return slots
        consumer_name = consumer.username if consumer is not None else None
        node_name = f"{node.host}:{node.port}" if node is not None else None
        slots = (store.slot(series_label(route_id, consumer_name, node_name), series=True),
                 store.slot(status_label(status, route_id, consumer_name, node_name)))
        if len(self.slots) < CACHE_MAX:
            self.slots[key] = slots
        return slots
