"""An etcd v3 client over etcd's HTTP/JSON gateway (``/v3/kv/range``, ``/v3/kv/txn``,
``/v3/watch``), spoken with httpx.

Why not a Python etcd library: python-etcd3 and etcd3-py are unmaintained (no release for years,
broken on current protobuf/grpcio), and the JSON gateway is part of every etcd since 3.4, so the
few calls the gateway needs are plain HTTP. Keys and values are base64 in JSON; 64-bit integers
(revisions) are strings; fields equal to their zero value are left out.

Endpoints are tried in turn: the first that answers is used until it fails.
"""
from __future__ import annotations

import base64
import contextlib
import json
import ssl
from collections.abc import AsyncGenerator
from dataclasses import dataclass
from typing import Any

import httpx

from gateway.config import EtcdStore

#: gRPC status codes etcd answers with (in the JSON error's ``code``).
OUT_OF_RANGE = 11  # a revision that was compacted
UNAUTHENTICATED = 16
#: Keys one range request returns at most: a big prefix is read in pages at one revision.
PAGE = 1000


class EtcdError(Exception):
    """etcd refused a request (the message is etcd's)."""

    def __init__(self, message: str, code: int = 0) -> None:
        super().__init__(message)
        self.code = code


class EtcdUnavailable(EtcdError):
    """No endpoint answered."""


@dataclass(frozen=True)
class KeyValue:
    key: str
    value: bytes
    create_revision: int
    mod_revision: int


def by_creation(kvs: list[KeyValue]) -> list[KeyValue]:
    """A range's keys (etcd answers in key order) in the order they were created."""
    return sorted(kvs, key=lambda kv: kv.create_revision)


@dataclass(frozen=True)
class Event:
    deleted: bool
    kv: KeyValue


@dataclass(frozen=True)
class WatchResponse:
    revision: int
    created: bool = False
    canceled: bool = False
    compact_revision: int = 0
    cancel_reason: str = ""
    events: tuple[Event, ...] = ()


def b64(text: str | bytes) -> str:
    return base64.b64encode(text.encode() if isinstance(text, str) else text).decode()


def prefix_end(prefix: str) -> str:
    """The range_end that makes a range cover every key starting with ``prefix``."""
    raw = bytearray(prefix.encode())
    raw[-1] += 1  # a prefix ends with "/", never with 0xff
    return b64(bytes(raw))


def key_value(data: dict[str, Any]) -> KeyValue:
    return KeyValue(key=base64.b64decode(data["key"]).decode("utf-8", "replace"),
                    value=base64.b64decode(data.get("value", "")),
                    create_revision=int(data.get("create_revision", 0)),
                    mod_revision=int(data.get("mod_revision", 0)))


def revision_of(data: dict[str, Any]) -> int:
    return int((data.get("header") or {}).get("revision", 0))


def tls_context(settings: EtcdStore) -> ssl.SSLContext | bool:
    if not any(e.startswith("https:") for e in settings.endpoints):
        return True
    context = ssl.create_default_context(cafile=settings.ca_file)
    if settings.cert_file and settings.key_file:
        context.load_cert_chain(settings.cert_file, settings.key_file)
    return context


class EtcdClient:
    def __init__(self, settings: EtcdStore) -> None:
        self.settings = settings
        self.endpoints = [e.rstrip("/") for e in settings.endpoints]
        self.current = 0
        self.token: str | None = None
        timeout = httpx.Timeout(settings.timeout)
        self.http = httpx.AsyncClient(timeout=timeout, verify=tls_context(settings), trust_env=False)

    async def close(self) -> None:
        await self.http.aclose()

    # ---------------------------------------------------------------- requests

    async def call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        """One request on the first endpoint that answers; a stale auth token is renewed once."""
        for attempt in range(2):
            reply = await self.post(path, body)
            error = reply.get("error")
            if error is None:
                return reply
            code = int(reply.get("code", 0))
            message = str(reply.get("message") or error)
            if attempt == 0 and self.settings.user and (code == UNAUTHENTICATED or "token" in message):
                self.token = None
                continue
            raise EtcdError(message, code)
        raise AssertionError("unreachable")

    async def post(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        failures = []
        for _ in range(len(self.endpoints)):
            endpoint = self.endpoints[self.current]
            try:
                headers = await self.auth_headers(endpoint)
                response = await self.http.post(endpoint + path, json=body, headers=headers)
                reply: dict[str, Any] = response.json()
                return reply
            except (httpx.HTTPError, ValueError) as exc:
                failures.append(f"{endpoint}: {describe(exc)}")
                self.current = (self.current + 1) % len(self.endpoints)
        raise EtcdUnavailable("; ".join(failures))

    async def auth_headers(self, endpoint: str) -> dict[str, str]:
        if not self.settings.user:
            return {}
        if self.token is None:
            response = await self.http.post(endpoint + "/v3/auth/authenticate", json={
                "name": self.settings.user, "password": self.settings.password or ""})
            reply = response.json()
            if "token" not in reply:
                raise EtcdError(f"etcd refused user {self.settings.user!r}: "
                                f"{reply.get('message') or reply.get('error')}", int(reply.get("code", 0)))
            self.token = str(reply["token"])
        return {"Authorization": self.token}

    # ---------------------------------------------------------------- kv

    async def range_prefix(self, prefix: str, revision: int = 0, keys_only: bool = False
                           ) -> tuple[int, list[KeyValue]]:
        """Every key under ``prefix`` as of one revision (the current one when 0), read in pages
        pinned to that revision, so the result is one consistent state."""
        out: list[KeyValue] = []
        start = b64(prefix)
        end = prefix_end(prefix)
        while True:
            body: dict[str, Any] = {"key": start, "range_end": end, "limit": PAGE}
            if revision:
                body["revision"] = str(revision)
            if keys_only:
                body["keys_only"] = True
            reply = await self.call("/v3/kv/range", body)
            revision = revision or revision_of(reply)
            kvs = [key_value(kv) for kv in reply.get("kvs", [])]
            out.extend(kvs)
            if not reply.get("more") or not kvs:
                return revision, out
            start = b64(kvs[-1].key.encode() + b"\0")

    async def get(self, key: str) -> tuple[int, KeyValue | None]:
        reply = await self.call("/v3/kv/range", {"key": b64(key)})
        kvs = reply.get("kvs", [])
        return revision_of(reply), (key_value(kvs[0]) if kvs else None)

    async def txn(self, compare: list[dict[str, Any]], success: list[dict[str, Any]]
                  ) -> tuple[bool, int, list[dict[str, Any]]]:
        """(whether the comparisons held, the revision after it, each operation's response)."""
        reply = await self.call("/v3/kv/txn", {"compare": compare, "success": success})
        return bool(reply.get("succeeded")), revision_of(reply), list(reply.get("responses", []))

    # ---------------------------------------------------------------- watch

    async def watch(self, prefix: str, start_revision: int, idle_timeout: float
                    ) -> AsyncGenerator[WatchResponse, None]:
        """The watch stream of every key under ``prefix`` from ``start_revision``, with progress
        notifications. Ends (EtcdUnavailable) when the connection is lost or nothing, not even a
        progress notification, arrived for ``idle_timeout`` seconds."""
        endpoint = self.endpoints[self.current]
        body = {"create_request": {"key": b64(prefix), "range_end": prefix_end(prefix),
                                   "start_revision": str(start_revision), "progress_notify": True}}
        timeout = httpx.Timeout(self.settings.timeout, read=idle_timeout)
        try:
            headers = await self.auth_headers(endpoint)
            async with self.http.stream("POST", endpoint + "/v3/watch", json=body, headers=headers,
                                        timeout=timeout) as response:
                async for line in response.aiter_lines():
                    if line.strip():
                        message = watch_response(json.loads(line))
                        if message.canceled and "Unauthenticated" in message.cancel_reason:
                            self.token = None  # expired: the next watch authenticates again
                        yield message
        except (httpx.HTTPError, ValueError) as exc:
            self.current = (self.current + 1) % len(self.endpoints)
            raise EtcdUnavailable(f"{endpoint}: {describe(exc)}") from None
        raise EtcdUnavailable(f"{endpoint}: the watch stream ended")


def watch_response(message: dict[str, Any]) -> WatchResponse:
    if "error" in message:
        error = message["error"]
        detail = error.get("message", error) if isinstance(error, dict) else error
        raise EtcdError(f"watch failed: {detail}")
    result = message.get("result") or {}
    events = tuple(Event(deleted=event.get("type") == "DELETE", kv=key_value(event["kv"]))
                   for event in result.get("events", []))
    return WatchResponse(revision=revision_of(result), created=bool(result.get("created")),
                         canceled=bool(result.get("canceled")),
                         compact_revision=int(result.get("compact_revision", 0)),
                         cancel_reason=str(result.get("cancel_reason", "")), events=events)


def describe(exc: BaseException) -> str:
    if isinstance(exc, httpx.TimeoutException):
        return "timed out"
    text = str(exc) or type(exc).__name__
    with contextlib.suppress(IndexError):
        text = text.splitlines()[0]
    return text
