"""A stand-in for the request context (``gateway._proto.Exchange``) with the attributes request
variables read, built from plain values so a unit test states the request it means."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl


@dataclass
class Consumer:
    username: str
    group_id: str | None = None


@dataclass
class FakeRequest:
    method: str = "GET"
    path: str = "/"
    query_string: str = ""
    host: str = ""
    header_list: list[tuple[str, str]] = field(default_factory=list)
    client_ip: str = "127.0.0.1"
    client_port: int = 40000
    server_addr: str | None = "127.0.0.1"
    server_port: int | None = 9080
    scheme: str = "http"
    tls: Any = None
    route_id: str | None = "r1"
    http_version: str = "1.1"
    consumer: Any = None
    status: int = 0
    upstream_status: int = 0
    response_headers: list[list[str]] | None = None
    elapsed: float = 0.0
    upstream_latency: float = 0.0
    upstream_addr: str | None = None
    previous_tries: list[tuple[str, int, float]] | None = None
    bytes_sent: int = 0
    request_bytes: int = 0
    state: dict[Any, Any] = field(default_factory=dict)
    #: how many times each lazily built view was read (a variable must not build what it
    #: does not need)
    reads: dict[str, int] = field(default_factory=dict)

    @property
    def raw_target(self) -> bytes:
        target = self.path + ("?" + self.query_string if self.query_string else "")
        return target.encode("latin-1")

    @property
    def headers(self) -> dict[str, str]:
        self.reads["headers"] = self.reads.get("headers", 0) + 1
        out: dict[str, str] = {}
        for name, value in self.header_list:
            key = name.lower()
            out[key] = out[key] + ", " + value if key in out else value
        return out

    @property
    def args(self) -> dict[str, str]:
        self.reads["args"] = self.reads.get("args", 0) + 1
        return dict(parse_qsl(self.query_string, keep_blank_values=True))

    @property
    def cookies(self) -> dict[str, str]:
        jar: dict[str, str] = {}
        for part in self.headers.get("cookie", "").split(";"):
            name, sep, value = part.strip().partition("=")
            if sep and name not in jar:
                jar[name] = value
        return jar
