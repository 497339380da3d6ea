"""The last good copy of the config on disk (``last-good.yaml``, see state.py): the config a
restart on a broken file serves.

A reload writes it before any worker runs the new version. An Admin API write keeps the file
itself, so its copy is written off the loop, a moment later (only the newest of a burst of writes
is written), and re-renders only the routes that changed (``dump_config`` with the previous
copy's route texts): a copy of 10k routes takes a second to render, and a thread rendering it
holds the GIL the master's loop needs for the next write.
"""
from __future__ import annotations

import asyncio

from gateway.config import Config, dump_config
from gateway.config.snapshot import RouteTexts
from gateway.server.state import InstanceState

#: Seconds an Admin API write's copy waits for a newer version to write instead.
DELAY = 0.5


class LastGoodCopy:
    def __init__(self, state: InstanceState) -> None:
        self.state = state
        self.lock = asyncio.Lock()
        self.route_texts: RouteTexts = {}
        self.latest: Config | None = None

    def save(self, config: Config) -> None:
        """Now, on the caller's thread."""
        self.latest = config
        self.state.save_last_good(dump_config(config, self.route_texts))

    async def save_soon(self, config: Config) -> None:
        """In a moment, in a thread, unless a newer version came meanwhile."""
        self.latest = config
        await asyncio.sleep(DELAY)
        async with self.lock:
            if config is self.latest:
                await asyncio.to_thread(lambda: self.state.save_last_good(dump_config(config, self.route_texts)))
