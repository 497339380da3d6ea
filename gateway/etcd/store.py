"""The Admin API's store in etcd mode: each resource is its key, ``createdIndex`` and
``modifiedIndex`` are etcd's ``create_revision`` and ``mod_revision``.

Reads go to etcd (what another node wrote is there at once). A write is validated first, the
running config with this one resource changed, by the checker every config goes through (400
with the path); then it is one transaction: the put (or delete) if the key's ``mod_revision`` is
still the one the client expects (``If-Match``: 412 otherwise; a create by POST: the key must
not exist). The value is the body as written (``${VAR}`` unexpanded: secrets stay out of etcd).
The answer comes once this node's workers serve the write (it arrives through the watch, like
anybody's write), so a client reading its own write through the proxy finds it.
"""
from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from typing import Any, Protocol

import orjson

from gateway.admin.api import Resource, StoreError
from gateway.admin.api.resources import Kind
from gateway.config import Config, ConfigIssue
from gateway.etcd.client import EtcdError, EtcdUnavailable, b64, key_value
from gateway.etcd.keys import decode_value, key_of, sections
from gateway.etcd.source import EtcdSource
from gateway.server.candidate import candidate_config

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
        current = await self.get(kind, name)
        if current is not None and create_only:
            raise StoreError(409, f"{kind.key(name)} exists")
        self.check_expected(kind, name, current, expect)
        await self.validate(kind, name, value)
        key = key_of(self.source.prefix, kind, name)
        compare = []
        if expect is not None:
            compare.append({"key": b64(key), "target": "MOD", "result": "EQUAL", "mod_revision": str(expect)})
        elif create_only:
            compare.append({"key": b64(key), "target": "CREATE", "result": "EQUAL", "create_revision": "0"})
        put = {"request_put": {"key": b64(key), "value": b64(orjson.dumps(value)), "prev_kv": True}}
        with etcd_errors():
            succeeded, revision, responses = await self.client.txn(compare, [put])
        if not succeeded:
            raise self.moved(kind, name, expect)
        previous = (responses[0].get("response_put") or {}).get("prev_kv") if responses else None
        created = key_value(previous).create_revision if previous else revision
        await self.wait_applied(kind, name, revision)
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

    async def validate(self, kind: Kind, name: str, value: Any) -> None:
        running = self.checker.config
        if running is None:
            raise StoreError(503, "the gateway has no running config yet")
        try:
            await asyncio.to_thread(candidate_config, running, kind, name, value, self.checker.validate)
        except StoreError as exc:
            raise self.with_keys(exc) from None

    def with_keys(self, error: StoreError) -> StoreError:
        """A refusal naming the other resources it is about by their etcd keys (``routes[3]``
        means nothing to someone who sees only keys), while the running config is etcd's state."""
        source = self.source
        if error.status != 409 or source.running != source.position:
            return error
        _, places, _ = sections(source.prefix, source.kvs.items(), expand=False)
        for item in error.errors:
            located = places.locate(ConfigIssue(file="", path=item["config_path"], message=""))
            if located.file:
                item["key"] = located.file
                item["path"] = located.path
        head = "; ".join(f"{e.get('key', '')}: {e['path']}: {e['message']}" for e in error.errors[:3])
        return StoreError(409, f"still used: {head}", error.errors)

    async def wait_applied(self, kind: Kind, name: str, revision: int) -> None:
        if not await self.source.wait_applied(revision, APPLY_TIMEOUT):
            raise StoreError(503, f"{kind.key(name)} was written to etcd (revision {revision}) but this "
                                  "gateway does not serve it (rejected, or etcd's watch is late: see the log)")


@contextlib.contextmanager
def etcd_errors() -> Iterator[None]:
    """etcd's failures as the Admin API's answers: 503 when etcd is unreachable."""
    try:
        yield
    except EtcdUnavailable as exc:
        raise StoreError(503, f"etcd is unreachable: {exc}") from None
    except EtcdError as exc:
        raise StoreError(503, f"etcd refused the request: {exc}") from None
