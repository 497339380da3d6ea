"""What the master keeps on disk for one gateway instance: the last good config and status.json.

An instance is one config file (by absolute path; the embedded default is its own instance), so
two gateways on one machine never read each other's last good config or overwrite each other's
status. Files live in ``<state dir>/instances/<name>-<hash>/``.

The state dir can be set in the config (``gateway.state_dir``), which the master only knows
after reading the file; when that file is broken at start, the master finds the instance's
directory through a small pointer kept in the default state dir.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import re
from pathlib import Path
from typing import Any

from gateway.atomic_file import write_atomically

log = logging.getLogger("gateway.master")

DEFAULT_INSTANCE = "default"


def default_state_dir() -> Path:
    base = os.environ.get("XDG_STATE_HOME") or os.path.join(os.path.expanduser("~"), ".local", "state")
    return Path(base) / "gateway"


def instance_name(config_path: str | None) -> str:
    """A directory name that is stable for a config file and differs between files."""
    if config_path is None:
        return DEFAULT_INSTANCE
    absolute = os.path.abspath(config_path)
    stem = re.sub(r"[^A-Za-z0-9_.-]", "_", Path(absolute).stem)[:40] or "config"
    digest = hashlib.sha256(absolute.encode()).hexdigest()[:12]
    return f"{stem}-{digest}"


class InstanceState:
    """The on-disk state of one instance under one state dir."""

    def __init__(self, config_path: str | None, state_dir: Path | None = None,
                 default_dir: Path | None = None) -> None:
        self.config_path = os.path.abspath(config_path) if config_path else None
        self.name = instance_name(config_path)
        self.default_dir = default_dir or default_state_dir()
        self.state_dir = state_dir or self.default_dir

    @property
    def directory(self) -> Path:
        return self.state_dir / "instances" / self.name

    @property
    def last_good(self) -> Path:
        return self.directory / "last-good.yaml"

    @property
    def status(self) -> Path:
        return self.directory / "status.json"

    @property
    def pointer(self) -> Path:
        """In the default state dir, whatever the configured one is."""
        return self.default_dir / "instances" / self.name / "state-dir"

    def move_to(self, state_dir: Path) -> None:
        """The config names its own state dir: use it, and remember it for a start on a broken
        file."""
        self.state_dir = state_dir
        if state_dir == self.default_dir:
            with contextlib.suppress(OSError):
                self.pointer.unlink()
            return
        try:
            write_atomically(self.pointer, str(state_dir).encode())
        except OSError as exc:
            log.warning("cannot record the state dir in %s: %s (a start on a broken config will "
                        "not find its last good copy)", self.pointer, exc)

    def recorded_state_dir(self) -> Path | None:
        """The state dir a previous run of this instance used, if it was not the default."""
        try:
            return Path(self.pointer.read_text().strip())
        except OSError:
            return None

    def save_last_good(self, text: str) -> None:
        # The dump holds expanded secrets (keys, credentials): owner-only.
        try:
            write_atomically(self.last_good, text.encode(), 0o600)
        except OSError as exc:
            log.warning("cannot persist the last good config to %s: %s", self.last_good, exc)

    def find_last_good(self) -> Path | None:
        """This instance's last good copy: in the state dir it last used, else the default."""
        for state_dir in (self.recorded_state_dir(), self.state_dir):
            if state_dir is not None:
                candidate = InstanceState(self.config_path, state_dir, self.default_dir).last_good
                if candidate.exists():
                    return candidate
        return None

    def save_status(self, status: dict[str, Any]) -> None:
        with contextlib.suppress(OSError):
            # rewritten at every worker's acknowledgement: no fsync on the master's loop
            write_atomically(self.status, json.dumps(status).encode(), durable=False)
