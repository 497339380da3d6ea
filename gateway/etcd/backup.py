"""The on-disk copy of etcd's last good state (``etcd-snapshot.json``), written a moment after
the state is applied, in a thread, and only the newest of a burst: at 10k routes the copy is
megabytes of JSON, and a write to etcd must not wait for it (as ``server/last_good.py`` does for
file mode's copy).
"""
from __future__ import annotations

import asyncio
from typing import Protocol

#: Seconds a copy waits for a newer state to write instead.
DELAY = 0.5


class Saver(Protocol):
    def save_backup(self, revision: int, kvs: dict[str, bytes]) -> None: ...


class BackupWriter:
    def __init__(self, saver: Saver) -> None:
        self.saver = saver
        self.latest: tuple[int, dict[str, bytes]] | None = None
        self.task: asyncio.Task[None] | None = None

    def save_soon(self, revision: int, kvs: dict[str, bytes]) -> None:
        self.latest = (revision, kvs)
        if self.task is None or self.task.done():
            self.task = asyncio.get_running_loop().create_task(self.write_latest())

    async def write_latest(self) -> None:
        while self.latest is not None:
            await asyncio.sleep(DELAY)
            revision, kvs = self.latest
            self.latest = None
            await asyncio.to_thread(self.saver.save_backup, revision, kvs)

    async def flush(self) -> None:
        """On stop: the newest copy is written now, not lost with the delay."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.latest is not None:
            revision, kvs = self.latest
            self.latest = None
            await asyncio.to_thread(self.saver.save_backup, revision, kvs)
