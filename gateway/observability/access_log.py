"""The access log: one line per request, written after the response (the log phase), buffered so
it costs a string format and no syscall per request."""
from __future__ import annotations

import sys
import time
from typing import TextIO

from gateway.requestvars import RequestView, var_getter

# One entry per try ("a, b" after a retry), read through the request-variable table.
_upstream_addr = var_getter("upstream_addr")
_upstream_status = var_getter("upstream_status")
_upstream_response_time = var_getter("upstream_response_time")


class AccessLog:
    def __init__(self, target: str) -> None:
        self.target = target
        self.stream: TextIO = sys.stdout if target == "stdout" else open(  # noqa: SIM115
            target, "a", buffering=1 << 16, encoding="utf-8")

    def write(self, ctx: RequestView) -> None:
        # Secrets (auth headers, query keys) are never logged: only method, path, status, timing.
        self.stream.write(
            f'{ctx.client_ip} - [{time.strftime("%d/%b/%Y:%H:%M:%S %z")}] "{ctx.method} '
            f'{ctx.path} HTTP/{ctx.http_version}" {ctx.status} {ctx.bytes_sent} '
            f'route={ctx.route_id} upstream_latency={ctx.upstream_latency * 1000:.2f}ms '
            f'upstream_addr="{_upstream_addr(ctx) or "-"}" '
            f'upstream_status="{_upstream_status(ctx) or "-"}" '
            f'upstream_response_time="{_upstream_response_time(ctx) or "-"}"\n')

    def close(self) -> None:
        self.stream.flush()
        if self.stream is not sys.stdout:
            self.stream.close()
