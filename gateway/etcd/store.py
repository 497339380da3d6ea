"""The Admin API's store in etcd mode: each resource is its key, ``createdIndex`` and
``modifiedIndex`` are etcd's ``create_revision`` and ``mod_revision``.

Reads go to etcd (what another node wrote is there at once). A write is validated first: the
state etcd would hold with it, checked as the watch does (the changes the watch has not applied
yet and the write, on the part of the config they can affect, from the config of the state it
applied last; the whole state composed when those are many; 400 with the path in the body; 409
naming the keys of the others at fault). Then it is one transaction: the put (or
delete) if the key's ``mod_revision`` is still the one the client expects (``If-Match``: 412
otherwise; a create by POST: the key must not exist). The value is the body as written
(``${VAR}`` unexpanded: secrets stay out of etcd). The answer comes once this node's workers
serve the write (it arrives through the watch, like anybody's write), so a client reading its
own write through the proxy finds it.
"""
from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Iterator
from typing import Any, Protocol

import orjson

from gateway.admin.api import Resource, StoreError
from gateway.admin.api.resources import Kind
from gateway.config import Config, ConfigError
from gateway.etcd.client import EtcdError, EtcdUnavailable, b64, key_value
from gateway.etcd.keys import decode_value, key_of
from gateway.etcd.source import EtcdSource

log = logging.getLogger("gateway.admin")

#: How long a write waits for this node's workers to serve it.
APPLY_TIMEOUT = 30.0


class Checker(Protocol):
    config: Config | None

    def validate(self, data: Any, source: str = ...) -> Config: ...


class EtcdConfigStore:
    def __init__(self, source: EtcdSource, checker: Checker) -> None:
        self.source = source
        self.client = source.client
        self.checker = checker

    # ---------------------------------------------------------------- reads

    async def list(self, kind: Kind) -> list[Resource]:
        section = f"{self.source.prefix}/{kind.name}/"
        with etcd_errors():
            _, kvs = await self.client.range_prefix(section)
        return [self.resource(kind, kv.key[len(section):], kv.value, kv.create_revision, kv.mod_revision)
                for kv in kvs if "/" not in kv.key[len(section):]]

    async def get(self, kind: Kind, name: str) -> Resource | None:
        with etcd_errors():
            _, kv = await self.client.get(key_of(self.source.prefix, kind, name))
        if kv is None:
            return None
        return self.resource(kind, name, kv.value, kv.create_revision, kv.mod_revision)

    @staticmethod
    def resource(kind: Kind, name: str, raw: bytes, created: int, modified: int) -> Resource:
        try:
            value = decode_value(kind, name, raw)
        except ValueError:
            value = raw.decode("utf-8", "replace")  # shown as it is: the watch log says why
        return Resource(name, value, created, modified)

    # ---------------------------------------------------------------- writes

    async def put(self, kind: Kind, name: str, value: Any, expect: int | None,
                  create_only: bool = False) -> tuple[Resource, bool]:
        started = time.monotonic()
        current = await self.get(kind, name)
        if current is not None and create_only:
            raise StoreError(409, f"{kind.key(name)} exists")
        self.check_expected(kind, name, current, expect)
        raw = orjson.dumps(value)
        read = time.monotonic()
        await self.validate(kind, name, raw)
        checked = time.monotonic()
        key = key_of(self.source.prefix, kind, name)
        compare = []
        if expect is not None:
            compare.append({"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(expect)})
        elif create_only:
            compare.append({"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
        put = {"request_put": {"key": b64(key), "value": b64(raw), "prev_kv": True}}
        with etcd_errors():
            succeeded, revision, responses = await self.client.txn(compare, [put])
        if not succeeded:
            raise self.moved(kind, name, expect)
        previous = (responses[0].get("response_put") or {}).get("prev_kv") if responses else None
        created = key_value(previous).create_revision if previous else revision
        written = time.monotonic()
        await self.wait_applied(kind, name, revision)
        log.info("admin API: PUT %s: read from etcd in %.1f ms, checked in %.1f ms, etcd's transaction "
                 "%.1f ms, every worker serves it %.1f ms after", kind.key(name), (read - started) * 1000,
                 (checked - read) * 1000, (written - checked) * 1000, (time.monotonic() - written) * 1000)
        return Resource(name, value, created, revision), previous is None

    async def delete(self, kind: Kind, name: str, expect: int | None) -> Resource:
        current = await self.get(kind, name)
        if current is None:
            raise StoreError(404, f"{kind.key(name)} not found")
        self.check_expected(kind, name, current, expect)
        await self.validate(kind, name, None)
        key = key_of(self.source.prefix, kind, name)
        # the delete that was checked is the one done: it is refused if the key moved meanwhile
        compare = [{"key": b64(key), "target": "MOD", "result": "EQUAL",
                    "mod_revision": str(current.modified)}]
        with etcd_errors():
            succeeded, revision, _ = await self.client.txn(
                compare, [{"request_delete_range": {"key": b64(key)}}])
        if not succeeded:
            raise self.moved(kind, name, expect if expect is not None else current.modified)
        await self.wait_applied(kind, name, revision)
        return current

    @staticmethod
    def check_expected(kind: Kind, name: str, current: Resource | None, expect: int | None) -> None:
        if expect is not None and (current is None or current.modified != expect):
            now = "gone" if current is None else f"at modifiedIndex {current.modified}"
            raise StoreError(412, f"{kind.key(name)} is {now}, not at {expect}: read it again")

    @staticmethod
    def moved(kind: Kind, name: str, expect: int | None) -> StoreError:
        if expect is None:
            return StoreError(409, f"{kind.key(name)} exists")
        return StoreError(412, f"{kind.key(name)} changed after modifiedIndex {expect}: read it again")

    async def validate(self, kind: Kind, name: str, value: bytes | None) -> None:
        """The state etcd would hold after this write, composed and checked exactly as the watch
        will (same order, same expansion); the watch then applies this very config when that
        state arrives instead of checking it again."""
        source = self.source
        if self.checker.config is None:
            raise StoreError(503, "the gateway has no running config yet")
        key = key_of(source.prefix, kind, name)
        kvs = dict(source.kvs)
        # the config of the state the watch applied last, and the keys it has not applied yet
        # (seen, or being checked): only those and the write are checked
        keys, recreated = source.pending()
        base, base_config = source.base, source.base_config
        if value is None:
            kvs.pop(key, None)
        else:
            if key not in kvs and base is not None and key in base:
                recreated = recreated | {key}  # deleted since ``base``: created again, it comes last
            kvs[key] = value
        try:
            if kind.name == "routes" and keys == set():
                # one route is checked: a few milliseconds, less than a thread's round trip
                config = self.checked(base, base_config, kvs, keys, recreated, key)
            else:
                config = await asyncio.to_thread(self.checked, base, base_config, kvs, keys, recreated, key)
        except ConfigError as exc:
            raise refusal(exc, key, deleting=value is None) from None
        source.expect(kvs, config)

    def checked(self, base: dict[str, bytes] | None, base_config: Config | None, kvs: dict[str, bytes],
                keys: set[str] | None, recreated: set[str], key: str) -> Config:
        """The state ``kvs`` (etcd's with this write) checked: change by change from the config
        of ``base`` when the keys changed since are known and few, the whole state otherwise."""
        source = self.source
        changed = source.changed_config(base, base_config, kvs, None if keys is None else keys | {key},
                                        recreated)
        return changed if changed is not None else source.compose_counted(kvs)

    async def wait_applied(self, kind: Kind, name: str, revision: int) -> None:
        if not await self.source.wait_applied(revision, APPLY_TIMEOUT):
            raise StoreError(503, f"{kind.key(name)} was written to etcd (revision {revision}) but this "
                                  "gateway does not serve it (rejected, or etcd's watch is late: see the log)")


def refusal(error: ConfigError, key: str, deleting: bool) -> StoreError:
    """The checker's issues as the Admin API's answer: 400 when the written resource is at
    fault (``path`` inside its body), 409 when others are (a delete they need; ``key`` names
    each)."""
    errors = [{"path": issue.path if issue.file == key else "", "config_path": issue.path,
               "key": issue.file, "message": issue.message} for issue in error.issues]
    if not deleting and any(issue.file == key for issue in error.issues):
        head = "; ".join(f"{e['path']}: {e['message']}" if e["path"] else e["message"]
                         for e in errors[:3] if e["key"] == key)
        return StoreError(400, f"invalid: {head}", errors)
    head = "; ".join(f"{e['key']}: {e['config_path']}: {e['message']}" for e in errors[:3])
    return StoreError(409, f"{'still used' if deleting else 'conflicts with etcd'}: {head}", errors)


@contextlib.contextmanager
def etcd_errors() -> Iterator[None]:
    """etcd's failures as the Admin API's answers: 503 when etcd is unreachable."""
    try:
        yield
    except EtcdUnavailable as exc:
        raise StoreError(503, f"etcd is unreachable: {exc}") from None
    except EtcdError as exc:
        raise StoreError(503, f"etcd refused the request: {exc}") from None
