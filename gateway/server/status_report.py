"""``GET /status`` on the admin listener: every upstream node's health (from the shared health
table), and what each worker says of itself (config version, connections, pooled upstream
connections) when asked over its control channel."""
from __future__ import annotations

import asyncio
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from gateway.config import Config
from gateway.server.ipc import encode_frame
from gateway.upstream.health import inline_key
from gateway.upstream.health_checker import HealthChecker
from gateway.upstream.names import node_addresses

if TYPE_CHECKING:
    from gateway.server.worker_supervision import WorkerHandle

#: How long a worker has to answer; one that does not is reported as not responding.
WORKER_REPLY_TIMEOUT = 1.0


@dataclass
class StoreReport:
    """Where the config comes from (``store`` in the status) and, in etcd mode, the etcd revision
    a config version came from (each worker's ``revision``)."""
    store: dict[str, Any]
    revision_of: Callable[[int], int | None] | None = None

    def revision(self, version: int) -> dict[str, int | None]:
        return {} if self.revision_of is None else {"revision": self.revision_of(version)}


class WorkerPolls:
    """Pings workers and hands each one's pong to whoever waits for it."""

    def __init__(self) -> None:
        self.waiting: dict[int, list[asyncio.Future[dict[str, Any]]]] = {}

    def answer(self, handle: WorkerHandle, message: dict[str, Any]) -> None:
        """A pong arrived from ``handle`` (called by the master's control-channel reader)."""
        for future in self.waiting.pop(id(handle), []):
            if not future.done():
                future.set_result(message)

    async def poll(self, handle: WorkerHandle) -> dict[str, Any]:
        entry: dict[str, Any] = {"index": handle.index, "pid": handle.process.pid,
                                 "version": handle.version, "responding": False}
        if handle.writer.is_closing():
            return entry
        future: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.waiting.setdefault(id(handle), []).append(future)
        handle.writer.write(encode_frame({"type": "ping"}))
        try:
            message = await asyncio.wait_for(future, WORKER_REPLY_TIMEOUT)
        except TimeoutError:
            self.waiting.pop(id(handle), None)
            return entry
        stats = message.get("stats") or {}
        entry.update(version=message.get("version", handle.version), responding=True,
                     requests=stats.get("requests"), active_connections=stats.get("clients"),
                     upstream_connections=stats.get("upstream_connections"),
                     upstream_idle=stats.get("upstream_idle", {}))
        return entry


def upstream_report(config: Config, checker: HealthChecker) -> list[dict[str, Any]]:
    """Each upstream (those under ``upstreams``, then those written inside routes) and the
    health of its nodes; ``health`` is None for a node without checks."""
    upstreams = [(u.id or "", u) for u in config.upstreams]
    upstreams += [(inline_key(r.id), r.upstream) for r in config.routes if r.upstream is not None]
    out = []
    for key, upstream in upstreams:
        checks = upstream.checks
        out.append({
            "id": key,
            "checks": None if checks is None else {
                "active": checks.active.type if checks.active else None,
                "passive": checks.passive is not None,
                "fail_open": checks.fail_open,
            },
            "nodes": [{"host": n.host, "address": address, "port": n.port, "weight": n.weight,
                       "priority": n.priority,
                       "health": checker.node_status(key, address, n.port) if checks else None}
                      for n, entries in zip(upstream.nodes,
                                            node_addresses(upstream.nodes, checker.addresses))
                      for address, _, _ in entries],
        })
    return out


async def gateway_status(config: Config | None, version: int, workers: list[WorkerHandle],
                         polls: WorkerPolls, checker: HealthChecker,
                         store: StoreReport | None = None) -> dict[str, Any]:
    replies = await asyncio.gather(*(polls.poll(h) for h in sorted(workers, key=lambda h: h.index)))
    store = store or StoreReport({})
    return {
        "master": {"pid": os.getpid(), "version": version, **store.revision(version)},
        "store": store.store,
        "workers": [{**reply, **store.revision(reply["version"])} for reply in replies],
        "upstreams": upstream_report(config, checker) if config is not None else [],
    }
