"""Files other processes read while we replace them (the last good config, status.json, the
admin key): written whole or not at all."""
from __future__ import annotations

import contextlib
import os
from pathlib import Path


def write_atomically(path: Path, data: bytes, mode: int = 0o644, durable: bool = True) -> None:
    """Temp file, fsync, rename: a reader sees the old file or the new one, never a part.
    ``durable=False`` skips the fsync: still whole for readers, but a crash of the machine may
    lose it (for files rewritten all the time that nothing needs after a crash)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            if durable:
                os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
