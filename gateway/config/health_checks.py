"""What the schema cannot say about an upstream's health `checks`: active checks are required,
the probe's path, host and headers are well formed, and no status is both healthy and not."""
from __future__ import annotations

import re

from .addresses import is_hostname, is_ip
from .issues import ConfigIssue, DocPath, issue_at
from .schema import Checks

__all__ = ["check_health_checks"]

_TOKEN = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z\-]+\Z")  # RFC 9110 field name
_FIELD_VALUE = re.compile(r"[\t\x20-\x7e\x80-\xff]*\Z")


def check_health_checks(checks: Checks, path: DocPath, file: str) -> list[ConfigIssue]:
    out: list[ConfigIssue] = []
    if checks.active is None:
        message = ("required: passive checks can mark a node down, but only active checks "
                   "bring it back (a down node gets no traffic to count)")
        return [issue_at(file, path + ("active",), message)]
    active = checks.active
    apath = path + ("active",)
    if not active.http_path.startswith("/") or any(c.isspace() for c in active.http_path):
        out.append(issue_at(file, apath + ("http_path",),
                            f"invalid path {active.http_path!r}: it must start with '/' and "
                            "contain no spaces"))
    if active.host is not None and not (is_ip(active.host) or is_hostname(active.host)):
        out.append(issue_at(file, apath + ("host",), f"invalid host {active.host!r}"))
    for i, header in enumerate(active.req_headers or []):
        name, colon, value = header.partition(":")
        if not colon or not _TOKEN.match(name) or not _FIELD_VALUE.match(value):
            out.append(issue_at(file, apath + ("req_headers", i),
                                f"invalid header {header!r}: expected 'Name: value'"))
    out += _overlap(active.healthy.http_statuses, active.unhealthy.http_statuses, apath, file)
    if checks.passive is not None:
        passive = checks.passive
        out += _overlap(passive.healthy.http_statuses, passive.unhealthy.http_statuses,
                        path + ("passive",), file)
    return out


def _overlap(healthy: list[int], unhealthy: list[int], path: DocPath,
             file: str) -> list[ConfigIssue]:
    good = set(healthy)
    return [issue_at(file, path + ("unhealthy", "http_statuses", i),
                     f"status {status} is also listed in healthy.http_statuses")
            for i, status in enumerate(unhealthy) if status in good]
