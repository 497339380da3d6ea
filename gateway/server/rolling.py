"""Reloads that need new worker processes, done one worker at a time with nothing dropped.

A config snapshot is enough for most changes. New processes are needed when the listen addresses
change, when the worker count changes (workers are added or retired, the others only take the
snapshot) or when a plugin module's code changed (a module is imported once per process). Then
each slot's new worker starts on the slot's listening socket (the master owns the sockets, see
listeners.py) and serves its first config before the old worker is told to drain, so the accept
queue is never without a reader. A retired slot's sockets are first steered away from, then
closed once their worker is gone, so no queued connection is reset.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from gateway.server.worker_supervision import WorkerHandle, WorkerSupervision

log = logging.getLogger("gateway.master")

#: After steering new connections away from a retiring socket, the handshakes already under way
#: land in its queue within a round trip; its worker accepts them before it is told to drain.
STEER_SETTLE = 0.3
#: How long a new worker may take to serve its first config before the restart stops.
READY_TIMEOUT = 30.0


@dataclass
class ProcessChange:
    """What a reload needs beyond a config snapshot."""
    old_count: int
    new_count: int
    listen_changed: bool = False
    code_changed: list[str] = field(default_factory=list)
    #: The previous rolling restart stopped part-way: some workers still run older code.
    unfinished: bool = False

    @property
    def restart_all(self) -> bool:
        return self.listen_changed or bool(self.code_changed) or self.unfinished

    @property
    def needed(self) -> bool:
        return self.restart_all or self.old_count != self.new_count

    def describe(self) -> str:
        why = []
        if self.listen_changed:
            why.append("listen addresses changed")
        if self.code_changed:
            why.append("plugin code changed: " + ", ".join(self.code_changed))
        if self.unfinished:
            why.append("the last rolling restart did not finish")
        if self.old_count != self.new_count:
            why.append(f"workers {self.old_count} -> {self.new_count}")
        return "; ".join(why)


async def start_serving(master: WorkerSupervision, slot: int) -> WorkerHandle | None:
    """A new worker for ``slot`` that serves the master's current config, or None (logged)."""
    try:
        handle = await master.start_worker(slot, register=False)
    except OSError as exc:
        log.error("rolling restart: cannot start worker %d: %s", slot, exc)
        return None
    assert handle.ready is not None
    try:
        problem = await asyncio.wait_for(asyncio.shield(handle.ready), READY_TIMEOUT)
    except TimeoutError:
        problem = f"did not serve within {READY_TIMEOUT:.0f} s"
    if problem is not None:
        log.error("rolling restart: new worker %d could not start: %s", slot, problem)
        handle.retiring = True
        with contextlib.suppress(ProcessLookupError):
            handle.process.send_signal(signal.SIGQUIT)
        return None
    return handle


def retire(master: WorkerSupervision, handle: WorkerHandle) -> None:
    """The worker stops accepting, finishes its requests (graceful_shutdown_timeout) and exits."""
    handle.retiring = True
    master.retiring.add(handle)
    if master.workers.get(handle.index) is handle:
        del master.workers[handle.index]
    with contextlib.suppress(ProcessLookupError):
        handle.process.send_signal(signal.SIGTERM)


async def replace(master: WorkerSupervision, slot: int) -> bool:
    new = await start_serving(master, slot)
    if new is None:
        return False
    if master.stopping:  # stopped while it started: it drains with the others
        retire(master, new)
        return False
    old = master.workers.get(slot)
    if old is not None:
        retire(master, old)
    new.registered = True
    master.workers[slot] = new
    master.write_status()
    log.info("worker %d replaced: pid %d serves, pid %s drains", slot, new.process.pid,
             old.process.pid if old else "-")
    return True


async def retire_slots(master: WorkerSupervision, slots: list[int]) -> None:
    """Steer new connections away from the slots' sockets, let their queues empty, then retire
    the workers and close the sockets, one slot at a time (the kernel re-indexes the group at
    each close, which the steering program follows)."""
    groups = list(master.listeners.groups.values())
    for group in groups:
        group.steer(set(slots))
    await asyncio.sleep(STEER_SETTLE)
    grace = master.grace()
    for slot in sorted(slots, reverse=True):
        handle = master.workers.get(slot)
        if handle is not None:
            retire(master, handle)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(handle.process.wait(), grace + 5.0)
        for group in groups:
            group.close_slots({slot})
            group.steer(set(slots))
    for group in groups:
        group.unsteer()
    master.write_status()


async def roll(master: WorkerSupervision, change: ProcessChange) -> bool:
    """Applies the master's (already adopted) config with new processes where needed."""
    ok = True
    if change.restart_all:
        for slot in range(min(change.old_count, change.new_count)):
            if not await replace(master, slot):
                log.error("rolling restart stopped at worker %d: workers %d.. keep the "
                          "previous config", slot, slot)
                return False
    else:
        for handle in list(master.workers.values()):
            if handle.index < change.new_count:
                master.send_config(handle)
        ok = await master.wait_converged(master.version, timeout=READY_TIMEOUT)
    for slot in range(change.old_count, change.new_count):
        if not await replace(master, slot):
            return False
    if change.new_count < change.old_count:
        await retire_slots(master, list(range(change.new_count, change.old_count)))
    return ok
