"""Maps (method, path) to handlers. Paths are exact or end in ``/*`` (a prefix); the handler of
the longest matching pattern wins, so ``/routes/*`` and ``/routes`` can coexist."""
from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Request:
    method: str
    path: str
    query: str
    headers: dict[str, str]
    body: bytes
    client_ip: str
    #: the part of the path matched by a ``/*`` pattern's star
    tail: str = ""


@dataclass
class Reply:
    status: int
    body: bytes = b""
    headers: list[tuple[str, str]] = field(default_factory=list)

    @classmethod
    def json(cls, status: int, payload: Any) -> Reply:
        return cls(status, json.dumps(payload).encode() + b"\n",
                   [("Content-Type", "application/json")])

    @classmethod
    def error(cls, status: int, message: str) -> Reply:
        # APISIX's admin API answers errors as {"error_msg": ...}
        return cls.json(status, {"error_msg": message})


Handler = Callable[[Request], Awaitable[Reply]]


class Router:
    def __init__(self) -> None:
        self.exact: dict[str, dict[str, Handler]] = {}
        self.prefixes: list[tuple[str, dict[str, Handler]]] = []

    def add(self, methods: str | list[str], pattern: str, handler: Handler) -> None:
        names = [methods] if isinstance(methods, str) else methods
        if pattern.endswith("/*"):
            prefix = pattern[:-1]
            table = next((t for p, t in self.prefixes if p == prefix), None)
            if table is None:
                table = {}
                self.prefixes.append((prefix, table))
                self.prefixes.sort(key=lambda item: -len(item[0]))
        else:
            table = self.exact.setdefault(pattern, {})
        for method in names:
            table[method.upper()] = handler
            if method.upper() == "GET":
                table.setdefault("HEAD", handler)

    def resolve(self, request: Request) -> Handler | Reply:
        """The handler for the request, or the 404/405 reply."""
        table = self.exact.get(request.path)
        if table is None:
            for prefix, candidate in self.prefixes:
                if request.path.startswith(prefix):
                    table = candidate
                    request.tail = request.path[len(prefix):]
                    break
        if table is None:
            return Reply.error(404, "not found")
        handler = table.get(request.method)
        if handler is None:
            reply = Reply.error(405, "method not allowed")
            reply.headers.append(("Allow", ", ".join(sorted(table))))
            return reply
        return handler
