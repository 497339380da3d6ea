"""The master's reload of the config file: on SIGHUP, ``gateway reload`` and every saved edit
(watched, and applied once the file has settled), the file is checked and, when it is good and
new, applied to the running workers or, when it needs new worker processes, rolled out one
worker at a time. A mixin of ``Master`` (master.py), whose state it uses."""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

from gateway import heap
from gateway.config import Config, ConfigError, FileChecks
from gateway.server import rolling
from gateway.server.config_file import ConfigFile
from gateway.server.file_watch import watch_config_file
from gateway.server.plugin_code import PluginCode
from gateway.server.worker_supervision import WorkerSupervision, listen_addresses

log = logging.getLogger("gateway.master")


@dataclass
class ReloadCounts:
    checked: int = 0
    applied: int = 0
    rejected: int = 0



class ConfigReload(WorkerSupervision):
    # Master's state (set in Master.__init__) and methods this part uses, beyond the workers'.
    config_file: ConfigFile | None
    config_raw: bytes | None
    count: int
    restart_unfinished: bool
    reload_lock: asyncio.Lock
    reloads: ReloadCounts
    plugin_code: PluginCode

    if TYPE_CHECKING:
        async def apply(self, config: Config, reason: str, save_first: bool = False) -> bool: ...
        async def follow_names(self, config: Config) -> None: ...
        def adopt(self, config: Config, persist: bool = True) -> None: ...
        def preload_document(self) -> None: ...
        def open_listeners(self, addresses: list[str], count: int) -> None: ...
        def worker_count_of(self, config: Config | None) -> int: ...
        def check_file(self, raw: bytes, file_checks: FileChecks) -> Config: ...

    async def reload(self, reason: str, settle: bool = False) -> bool:
        """Validates the file and, only if it is good and new, sends it to every worker."""
        if self.config_file is None or self.stopping:
            return False
        if settle:
            # outside the lock: an Admin API write need not wait for a file to settle
            await self.config_file.settled(self.settle_time())
        async with self.reload_lock:
            try:
                raw, digest = self.config_file.read()
            except ConfigError as exc:
                if self.config_file.first_failure or not settle:  # SIGHUP always gets an answer
                    log.error("reload (%s) rejected; still serving version %d:\n%s", reason,
                              self.version, exc)
                return False
            if settle and not self.config_file.changed(digest):
                return True  # the same bytes as the running (or last rejected) version
            self.config_file.seen_digest = digest
            self.reloads.checked += 1
            started = time.monotonic()
            code_changed = self.plugin_code.changed()
            try:
                self.plugin_code.reimport(code_changed)
            except Exception as exc:  # noqa: BLE001 - a plugin module may fail in any way
                self.reloads.rejected += 1
                self.config_file.seen_digest = None  # the same file is tried again
                log.error("reload (%s) rejected; still serving version %d: plugin module %s "
                          "cannot be imported: %s: %s", reason, self.version,
                          ", ".join(code_changed), type(exc).__name__, exc)
                self.write_status()
                return False
            try:
                config = self.check_file(raw, FileChecks.RELOAD)
            except ConfigError as exc:
                self.reloads.rejected += 1
                log.error("reload (%s) rejected; still serving version %d:\n%s", reason,
                          self.version, exc)
                self.write_status()
                return False
            if self.config is not None and config.fingerprint() == self.config.fingerprint() \
                    and not code_changed and not self.restart_unfinished:
                self.config_raw = raw  # comments or layout changed: the Admin API edits these bytes
                return True
            change = self.process_change(config, code_changed)
            if change.needed:
                try:
                    self.listeners.ensure(listen_addresses(config), change.new_count)
                except OSError as exc:
                    self.reloads.rejected += 1
                    log.error("reload (%s) rejected; still serving version %d: %s", reason,
                              self.version, exc.strerror or exc)
                    self.write_status()
                    return False
            log.info("reload (%s) checked in %.1f ms", reason, (time.monotonic() - started) * 1000)
            self.config_raw = raw
            if not change.needed:
                applied = await self.apply(config, reason, save_first=True)
                heap.settle()
                self.preload_document()
                return applied
            await self.follow_names(config)
            self.adopt(config)
            self.reloads.applied += 1
            log.info("config version %d needs new worker processes (%s): restarting them "
                     "one at a time", self.version, change.describe())
            ok = await rolling.roll(self, change)
            self.count = change.new_count if ok else len(self.workers)
            self.restart_unfinished = not ok and change.restart_all
            self.plugin_code.record(config)
            if ok:  # else workers not yet replaced still serve the old addresses
                self.listeners.drop_addresses(listen_addresses(config))
            self.open_listeners(listen_addresses(config), change.new_count)
            log.info("config version %d (%s) %s in %.1f ms", self.version, reason,
                     "applied by every worker" if ok else "NOT applied by every worker",
                     (time.monotonic() - started) * 1000)
            self.write_status()
            heap.settle()
            self.preload_document()
            return ok

    def process_change(self, config: Config, code_changed: list[str]) -> rolling.ProcessChange:
        old_listen = listen_addresses(self.config) if self.config else []
        new_count = self.worker_count_of(config)
        return rolling.ProcessChange(
            old_count=self.count, new_count=new_count,
            listen_changed=listen_addresses(config) != old_listen,
            code_changed=[m for m in code_changed if m in self.plugin_code.files],
            unfinished=self.restart_unfinished)

    def settle_time(self) -> float:
        return self.config.gateway.config_settle_time if self.config else 0.2

    async def watch(self) -> None:
        """Applies saved edits of the config file (in etcd mode: the node's settings)."""
        assert self.config_file is not None
        await watch_config_file(self.config_file.path, lambda: self.reload("file changed", settle=True),
                                lambda: self.stopping)
