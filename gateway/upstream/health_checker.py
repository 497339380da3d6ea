"""Active health checks, run by the master: one asyncio task per checked node, however many
workers there are. Each probe's outcome goes into the node's slot of the shared health table,
which every worker's balancer reads; nothing is sent to the workers.

Checks start as soon as a config is adopted (not on the first request to the upstream), each
node's first probe at a random point of its interval so that nodes are not probed in step. A
node that a new config keeps (same upstream key, host and port) keeps its slot, its state and,
when its check settings are unchanged, its running task; a node new to the config starts
healthy with no history.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import ssl
from dataclasses import dataclass
from typing import Any

from gateway._native import SharedHealth
from gateway.config import ActiveCheck, Config
from gateway.upstream.health import (
    HTTP_FAILURE,
    SUCCESS,
    TCP_FAILURE,
    TIMEOUT,
    CheckedUpstream,
    checked_upstreams,
    node_label,
)
from gateway.upstream.names import Addresses, node_addresses

log = logging.getLogger("gateway.health")

#: Each wait between probes is the configured interval +- this fraction, so that nodes probed
#: together once drift apart again.
JITTER = 0.1
MAX_STATUS_LINE = 4096


@dataclass(frozen=True)
class Target:
    upstream: str
    host: str
    port: int
    check: ActiveCheck
    #: The node's host name when ``host`` is one of its resolved addresses.
    name: str | None = None

    @property
    def thresholds(self) -> tuple[int, int, int, int]:
        check = self.check
        return (check.healthy.successes, check.unhealthy.http_failures,
                check.unhealthy.tcp_failures, check.unhealthy.timeouts)


def probe_request(check: ActiveCheck, host: str, port: int, name: str | None = None) -> bytes:
    """The check's GET: HTTP/1.0 so the node closes after answering."""
    host_header = check.host or name or (f"[{host}]" if ":" in host else host)
    if port not in (80, 443):
        host_header += f":{port}"
    lines = [f"GET {check.http_path} HTTP/1.0", f"Host: {host_header}",
             "User-Agent: gateway-health-check", *(check.req_headers or []),
             "Connection: close", "", ""]
    return "\r\n".join(lines).encode("latin-1")


def status_of(line: bytes) -> int | None:
    """The status code of an HTTP/1.x status line, None if it is not one."""
    parts = line.split(None, 2)
    if len(parts) < 2 or not parts[0].startswith(b"HTTP/1.") or not parts[1].isdigit():
        return None
    status = int(parts[1])
    return status if 100 <= status <= 599 else None


def tls_context(check: ActiveCheck) -> ssl.SSLContext:
    context = ssl.create_default_context()
    if not check.https_verify_certificate:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context


async def probe(check: ActiveCheck, host: str, port: int,
                name: str | None = None) -> tuple[str | None, int]:
    """One check of one node: (outcome, HTTP status or 0). The outcome is None for a status
    listed neither as healthy nor as unhealthy (not counted, as in APISIX)."""
    port = check.port or port
    tls = tls_context(check) if check.type == "https" else None
    writer: asyncio.StreamWriter | None = None
    try:
        async with asyncio.timeout(check.timeout):
            reader, writer = await asyncio.open_connection(
                host, port, ssl=tls, server_hostname=(check.host or name or host) if tls else None,
                limit=MAX_STATUS_LINE)
            if check.type == "tcp":
                return SUCCESS, 0
            writer.write(probe_request(check, host, port, name))
            line = await reader.readline()
    except TimeoutError:
        return TIMEOUT, 0
    except (OSError, ssl.SSLError, ValueError):
        return TCP_FAILURE, 0
    finally:
        if writer is not None:
            writer.close()
    status = status_of(line)
    if status is None:
        return TCP_FAILURE, 0
    if status in check.healthy.http_statuses:
        return SUCCESS, status
    if status in check.unhealthy.http_statuses:
        return HTTP_FAILURE, status
    return None, status


class HealthChecker:
    """The master's active checks over the shared table ``table``."""

    def __init__(self, table: SharedHealth) -> None:
        self.table = table
        self.tasks: dict[str, tuple[Target, asyncio.Task[None]]] = {}
        self.slots: dict[str, int] = {}
        self.upstreams: list[CheckedUpstream] = []
        self.addresses: Addresses | None = None

    def apply(self, config: Config, addresses: Addresses | None = None) -> None:
        """Checks exactly the nodes of ``config`` that have ``checks``; a named node at each of
        its current ``addresses`` (the workers' nodes), under the same labels as the workers."""
        self.addresses = addresses
        self.upstreams = checked_upstreams(config)
        targets: dict[str, Target] = {}
        for checked in self.upstreams:
            assert checked.upstream.checks is not None
            active = checked.upstream.checks.active
            if active is None:
                continue
            nodes = checked.upstream.nodes
            for node, entries in zip(nodes, node_addresses(nodes, addresses)):
                for address, name, _ in entries:
                    label = node_label(checked.key, address, node.port)
                    targets[label] = Target(checked.key, address, node.port, active, name)
        for label, (target, task) in list(self.tasks.items()):
            if targets.get(label) != target:
                task.cancel()
                del self.tasks[label]
        slots: dict[str, int] = {}
        for label, target in targets.items():
            slot = self.table.slot(label)
            if slot < 0:
                log.error("upstream %s node %s:%d: no room in the health table; not checked",
                          target.upstream, target.host, target.port)
                continue
            if label not in self.slots:
                self.table.reset(slot)  # new to the config: healthy, no history
            slots[label] = slot
            if label not in self.tasks:
                task = asyncio.get_running_loop().create_task(self.run(target, slot))
                self.tasks[label] = (target, task)
        self.slots = slots

    async def run(self, target: Target, slot: int) -> None:
        check = target.check
        await self.pause(check, slot, random.uniform(0, 1))
        while True:
            try:
                outcome, status = await probe(check, target.host, target.port, target.name)
            except Exception:  # a probe must never end the node's checks
                log.exception("health check of %s:%d failed", target.host, target.port)
                outcome, status = None, 0
            if outcome is not None:
                change = self.table.report(slot, "active", outcome, status, target.thresholds)
                if change == "down":
                    log.warning("upstream %s node %s:%d marked unhealthy by active checks (%s%s)",
                                target.upstream, target.host, target.port, outcome,
                                f" {status}" if status else "")
                elif change == "up":
                    log.warning("upstream %s node %s:%d healthy again (active checks)",
                                target.upstream, target.host, target.port)
            await self.pause(check, slot, random.uniform(1 - JITTER, 1 + JITTER))

    async def pause(self, check: ActiveCheck, slot: int, factor: float) -> None:
        """Waits ``factor`` times the interval of the node's state, re-read every
        ``unhealthy.interval``: a node that passive checks mark down while it waits out a long
        healthy interval is probed at the (shorter) unhealthy interval from then on."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        while True:
            left = start + self.interval(check, slot) * factor - loop.time()
            if left <= 0:
                return
            await asyncio.sleep(min(left, check.unhealthy.interval))

    def interval(self, check: ActiveCheck, slot: int) -> float:
        return check.unhealthy.interval if self.table.is_down(slot) else check.healthy.interval

    def node_status(self, upstream_key: str, host: str, port: int) -> dict[str, Any] | None:
        """What the table says of a node (None when it has no checks)."""
        slot = self.slots.get(node_label(upstream_key, host, port))
        return None if slot is None else self.table.node(slot)

    async def close(self) -> None:
        tasks = [task for _, task in self.tasks.values()]
        self.tasks.clear()
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
