"""The config file's watch: a saved edit (editors that replace the file included) is handed to
the master's reload, which checks it and applies it only when it is good and new."""
from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path

from watchfiles import awatch


async def watch_config_file(target: Path, reload: Callable[[], Awaitable[object]],
                            stopping: Callable[[], bool]) -> None:
    first = True
    # not recursive: the state dir (status.json at every write), logs or an etcd's data in
    # folders beside the file would wake the master at every write of theirs
    async for changes in awatch(target.parent, debounce=50, step=20, rust_timeout=200,
                                yield_on_timeout=True, recursive=False,
                                watch_filter=lambda _c, p: Path(p) == target):
        if stopping():
            return
        # The first (empty) wake-up means the watch is in place: an edit saved while it was
        # being set up is caught here; the same bytes as the running version are skipped.
        # Later empty wake-ups are only timeouts: reading the file then would poll it.
        if (changes or first) and target.exists():
            await reload()
        first = False
