"""The config file as the master reads it: only once a writer has finished with it.

A save that truncates the file and writes it in pieces passes through states that are valid
YAML but not the config anybody meant (everything before `consumers:`, say). So an edit is read
only after the file has kept the same size, mtime and inode for the settle time, and a content
that equals the one already running is not even validated again.
"""
from __future__ import annotations

import asyncio
import hashlib
import os
from pathlib import Path

from gateway.config import ConfigError, read_config_file


def file_identity(path: Path) -> tuple[int, int, int] | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino


class ConfigFile:
    def __init__(self, path: str) -> None:
        self.path = Path(path)
        #: sha256 of the bytes of the version that runs (or was last rejected), so an unchanged
        #: file is never validated twice.
        self.seen_digest: str | None = None
        #: whether the last failed read failed differently from the one before (the watcher
        #: re-reads the file often: an unreadable file is reported once, not at each wake-up)
        self.first_failure = True
        #: why the file could not be read the last time (None: it could)
        self.read_error: str | None = None

    def read(self) -> tuple[bytes, str]:
        try:
            raw = read_config_file(self.path)
        except ConfigError as exc:
            self.first_failure = str(exc) != self.read_error
            self.read_error = str(exc)
            raise
        self.read_error = None
        return raw, hashlib.sha256(raw).hexdigest()

    async def settled(self, settle_time: float, limit: float = 30.0) -> None:
        """Returns once the file stopped changing for ``settle_time`` seconds (or after
        ``limit``: a file rewritten without pause is read as it is then)."""
        if settle_time <= 0:
            return
        loop = asyncio.get_running_loop()
        give_up = loop.time() + limit
        before = file_identity(self.path)
        while loop.time() < give_up:
            await asyncio.sleep(settle_time)
            now = file_identity(self.path)
            if now == before:
                return
            before = now

    def changed(self, digest: str) -> bool:
        return digest != self.seen_digest
