"""File descriptor limits: raised to what the system allows at start (nginx's
worker_rlimit_nofile), and reported when reached.

uvloop (libuv) accepts with a reserve descriptor: at the limit it accepts and closes pending
connections without telling anybody, so nothing would ever say why clients are refused. The
processes watch their own descriptor count instead and log the condition as nginx does,
``accept4() failed (24: Too many open files)``.
"""
from __future__ import annotations

import errno
import logging
import os
import resource
import time

#: Repeated reports of the same condition are at most this often.
REPORT_INTERVAL = 10.0


def raise_fd_limit() -> int:
    """Soft limit up to the hard one; returns the soft limit in effect."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or hard > soft:
        wanted = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
            soft = wanted
        except (ValueError, OSError):
            pass
    return soft


def open_fds(limit: int) -> int:
    """Descriptors in use; ``limit`` when there is none left even to list them."""
    try:
        return len(os.listdir("/proc/self/fd")) - 1  # the listing's own descriptor
    except OSError as exc:
        return limit if exc.errno == errno.EMFILE else -1


class FdWatch:
    """Logs when the process runs out of descriptors. ``check(estimate)`` is cheap: the
    descriptors are only counted when ``estimate`` (what the caller knows it holds) comes within
    ``margin`` of the limit, or always when no estimate is given."""

    def __init__(self, logger: logging.Logger, what: str, margin: int = 64) -> None:
        self.log = logger
        self.what = what
        self.margin = margin
        self.last_report = 0.0

    def check(self, estimate: int | None = None) -> bool:
        soft = resource.getrlimit(resource.RLIMIT_NOFILE)[0]
        if soft == resource.RLIM_INFINITY:
            return False
        if estimate is not None and estimate + self.margin < soft:
            return False
        used = open_fds(soft)
        if used < soft - 1:  # libuv keeps one in reserve for its accept trick
            return False
        now = time.monotonic()
        if now - self.last_report >= REPORT_INTERVAL:
            self.last_report = now
            self.log.error("accept4() failed (24: Too many open files): %s holds %d of %d file "
                           "descriptors; new connections are refused", self.what, used, soft)
        return True
