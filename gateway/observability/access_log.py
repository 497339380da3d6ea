"""The access log: one line per request, written after the response (the log phase), buffered so
it costs a string format and no syscall per request.

A log that cannot be written (disk full, file system gone read-only) never fails a request and
never floods the error log: the failure is logged once, the lines are dropped while it lasts, and
one line says when writing works again and how many lines were lost.
"""
from __future__ import annotations

import logging
import os
import time

from gateway.requestvars import RequestView, var_getter

# One entry per try ("a, b" after a retry), read through the request-variable table.
_upstream_addr = var_getter("upstream_addr")
_upstream_status = var_getter("upstream_status")
_upstream_response_time = var_getter("upstream_response_time")

#: Bytes buffered before a write (one syscall per ~600 lines).
BUFFER_SIZE = 1 << 16

log = logging.getLogger("gateway.access_log")


class AccessLog:
    def __init__(self, target: str) -> None:
        self.target = target
        self.fd = 1 if target == "stdout" else os.open(
            target, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o644)
        self.buffer: list[str] = []
        self.buffered = 0
        self.failing: str | None = None  # the error while writes fail
        self.dropped = 0  # lines lost since writes started failing

    def write(self, ctx: RequestView) -> None:
        # Secrets (auth headers, query keys) are never logged: only method, path, status, timing.
        line = (f'{ctx.client_ip} - [{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{ctx.method} '
                f'{ctx.path} HTTP/{ctx.http_version}" {ctx.status} {ctx.bytes_sent} '
                f'route={ctx.route_id} upstream_latency={ctx.upstream_latency * 1000:.2f}ms '
                f'upstream_addr="{_upstream_addr(ctx) or "-"}" '
                f'upstream_status="{_upstream_status(ctx) or "-"}" '
                f'upstream_response_time="{_upstream_response_time(ctx) or "-"}"\n')
        self.buffer.append(line)
        self.buffered += len(line)
        if self.buffered >= BUFFER_SIZE:
            self.flush()

    def flush(self) -> None:
        if not self.buffer:
            return
        lines = len(self.buffer)
        data = "".join(self.buffer).encode("utf-8", "replace")
        self.buffer.clear()
        self.buffered = 0
        try:
            while data:
                data = data[os.write(self.fd, data):]
        except OSError as exc:
            self.dropped += lines
            if self.failing is None:
                self.failing = exc.strerror or str(exc)
                log.error("access log %s cannot be written (%s): its lines are dropped until it "
                          "can; requests are served as usual", self.target, self.failing)
            return
        if self.failing is not None:
            log.warning("access log %s is written again; %d lines were dropped (%s)",
                        self.target, self.dropped, self.failing)
            self.failing = None
            self.dropped = 0

    def close(self) -> None:
        self.flush()
        if self.fd != 1:
            os.close(self.fd)
