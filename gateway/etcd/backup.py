"""The on-disk copy of etcd's last good state (``etcd-snapshot.json``), written a moment after
the state is applied, in a thread, and only the newest of a burst (or every few seconds during a
stream of writes): at 10k routes the copy is
megabytes of JSON, and a write to etcd must not wait for it (as ``server/last_good.py`` does for
file mode's copy).
"""
from __future__ import annotations

import asyncio
from typing import Protocol

#: Seconds a copy waits for a newer state to write instead.
DELAY = 0.5
#: A stream of states (a write every few hundred ms) is still copied this often: writing the
#: copy holds the interpreter lock for tens of ms on a busy machine, which the writes wait for.
MAX_DELAY = 5.0


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
        """Once no newer state came for DELAY (or MAX_DELAY after the first unsaved one)."""
        loop = asyncio.get_running_loop()
        while self.latest is not None:
            give_up = loop.time() + MAX_DELAY
            waited_for = None
            while self.latest is not waited_for and loop.time() < give_up:
                waited_for = self.latest
                await asyncio.sleep(DELAY)
            latest, self.latest = self.latest, None
            if latest is not None:
                await asyncio.to_thread(self.saver.save_backup, *latest)

    async def flush(self) -> None:
        """On stop: the newest copy is written now, not lost with the delay."""
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)
        if self.latest is not None:
            revision, kvs = self.latest
            self.latest = None
            await asyncio.to_thread(self.saver.save_backup, revision, kvs)
