"""Finds the master of a running gateway (through its instance's status.json) and signals it:
what `gateway reload` and `gateway stop` do."""
from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

from gateway.server.state import InstanceState


class NotRunning(Exception):
    """No live master for this config; the message says where we looked."""


def status_file(config_path: str | None) -> Path:
    state = InstanceState(config_path)
    recorded = state.recorded_state_dir()
    if recorded is not None:
        state.state_dir = recorded
    return state.status


def is_gateway(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return False
    return any(b"gateway" in part for part in cmdline)


def master_pid(config_path: str | None) -> int:
    path = status_file(config_path)
    try:
        pid = int(json.loads(path.read_text())["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        raise NotRunning(f"no gateway is running for {config_path or 'the default config'} "
                         f"(no status in {path})") from None
    if not is_gateway(pid):
        raise NotRunning(f"no gateway is running for {config_path or 'the default config'} "
                         f"(pid {pid} from {path} is gone)")
    return pid


def signal_master(config_path: str | None, sig: int) -> int:
    pid = master_pid(config_path)
    os.kill(pid, sig)
    return pid


def wait_gone(pid: int, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not is_gateway(pid):
            return True
        time.sleep(0.05)
    return False


STOP_SIGNALS = {True: signal.SIGTERM, False: signal.SIGQUIT}
