"""How the master starts a worker so that it imports exactly what the master imported.

``python -m gateway.server.worker`` would put the current directory first on ``sys.path``: run
from a source checkout, the worker would import the checkout's ``gateway/`` (which has no
compiled extension) instead of the installed package the master runs. So the worker is started
with ``-P`` (no directory prepended) and the master's own ``sys.path``, and a worker that cannot
even import tells the master why over its control channel before it exits.
"""
from __future__ import annotations

import json
import os
import sys

SYS_PATH_ENV = "GATEWAY_WORKER_SYS_PATH"
#: Exit status of a worker that could not start (import error, listen failure, bad config).
EXIT_CANNOT_START = 3

BOOT = ("import json, os, sys; "
        f"sys.path[:] = json.loads(os.environ.pop({SYS_PATH_ENV!r})); "
        "from gateway.server.worker_boot import boot; boot()")


def worker_command(args: list[str]) -> tuple[list[str], dict[str, str]]:
    """argv and the extra environment that start a worker with the master's import path."""
    return [sys.executable, "-P", "-c", BOOT, *args], {SYS_PATH_ENV: json.dumps(sys.path)}


def control_fd(argv: list[str]) -> int | None:
    try:
        return int(argv[argv.index("--control-fd") + 1])
    except (ValueError, IndexError):
        return None


def report_fatal(message: str, argv: list[str] | None = None) -> None:
    """Tells the master, in one line, why this worker cannot start."""
    fd = control_fd(sys.argv if argv is None else argv)
    line = message.splitlines()[0] if message else "unknown error"
    if fd is not None:
        try:
            from gateway.server.ipc import encode_frame

            os.write(fd, encode_frame({"type": "fatal", "message": line, "pid": os.getpid()}))
        except Exception:  # the master still sees the exit status, and stderr has the line
            pass
    sys.stderr.write(f"worker {os.getpid()} cannot start: {line}\n")


def boot() -> None:
    sys.argv = ["gateway-worker", *sys.argv[1:]]
    try:
        from gateway.server.worker import main
    except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
        report_fatal(f"cannot import the worker: {type(exc).__name__}: {exc}")
        sys.exit(EXIT_CANNOT_START)
    sys.exit(main())
