"""The Admin API's store in file mode: the YAML file the gateway runs is the store.

Reads come from the file's document as it was when the running config was loaded (so
``${VAR}`` references show as written, never their secret values). A write:

1. is refused (409) when the file on disk is not the one the running config came from: a hand
   edit not applied yet (or rejected), which a write would silently undo;
2. checks the client's ``modifiedIndex`` (412 when stale) and builds the whole resulting config
   (the running config with this one resource changed; ``${VAR}`` in the body expanded as in
   the file) and validates it with the checker every config goes through (400 with the path);
3. sends it to the workers and, meanwhile, writes the file back (temp file + fsync + rename):
   only the changed resource is rendered, spliced into the file's text (yaml_splice), or the
   whole document when the file is not cut that way (ruamel round trip); a write that fails
   puts the previous config back. The answer comes once the file is durable.

Revisions: the store counts them. Loading a file is one revision; a resource keeps its
``modifiedIndex`` until its content changes (by the API or by a hand edit).
"""
from __future__ import annotations

import asyncio
import builtins
import functools
import hashlib
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, Protocol

import msgspec
import orjson

from gateway import heap
from gateway.admin.api import Resource, StoreError
from gateway.admin.api.resources import KINDS, Kind
from gateway.atomic_file import write_atomically
from gateway.config import Config
from gateway.server import yaml_roundtrip
from gateway.server.candidate import candidate_config
from gateway.server.yaml_splice import SplicedFile

log = logging.getLogger("gateway.admin")

#: The sections the file's text is cut into resources for (yaml_splice).
KEY_FIELDS = {kind.name: kind.key_field for kind in KINDS.values() if kind.key_field is not None}

class StoreHost(Protocol):
    """What the store needs of the master."""
    config: Config | None
    #: The bytes of the file the running config was loaded from; None when it did not come
    #: from the file (the embedded default, or the last good config after a bad start).
    config_raw: bytes | None
    reload_lock: asyncio.Lock

    def validate(self, data: Any) -> Config: ...

    def apply(self, config: Config, reason: str) -> Awaitable[bool]: ...

    def file_written(self, raw: bytes) -> None:
        """The config file now holds ``raw``, the running config's document."""


def _fingerprint(value: Any) -> bytes:
    return hashlib.sha256(orjson.dumps(value, option=orjson.OPT_SORT_KEYS)).digest()


class FileConfigStore:
    def __init__(self, host: StoreHost, path: Path | None) -> None:
        self.host = host
        self.path = path
        self.doc: Any = None
        self.doc_raw: bytes | None = None
        self.doc_config: Config | None = None
        #: the file's text cut at its resources; None: cut it again before the next write
        self.spliced: SplicedFile | None = None
        #: section -> the name of each of its items (see names_of)
        self.names: dict[str, builtins.list[str | None]] = {}
        self.revision = 0
        #: the bytes being parsed, and the parse (document, cut text)
        self.parsing: tuple[bytes, asyncio.Future[tuple[Any, SplicedFile | None]]] | None = None
        #: a write holds the document between its edit and the file on disk
        self.committing = False
        #: (kind, name) -> (createdIndex, modifiedIndex, fingerprint of the value)
        self.versions: dict[tuple[str, str], tuple[int, int, bytes]] = {}

    # ---------------------------------------------------------------- the document

    async def sync(self) -> None:
        """The document of the running config (parsed again when the running config changed)."""
        host = self.host
        if self.committing or (self.doc is not None and self.doc_raw is host.config_raw
                               and self.doc_config is host.config):
            return
        raw, config = host.config_raw, host.config
        if raw is not None:
            known = self.parsing
            if known is not None and known[0] is raw:
                parsing = known
            else:
                # one parse of a document at a time (seconds for 10k routes, holding the GIL):
                # a read arriving while the preload parses waits for it
                text = raw.decode("utf-8-sig")
                parsing = (raw, asyncio.ensure_future(asyncio.to_thread(
                    lambda: (yaml_roundtrip.load(text), SplicedFile.parse(text, KEY_FIELDS)))))
                self.parsing = parsing
            try:
                doc, spliced = await asyncio.shield(parsing[1])
            finally:
                if self.parsing is parsing and parsing[1].done():
                    self.parsing = None
            if self.doc_raw is raw and self.doc_config is config and self.doc is not None:
                return  # another caller waiting on the same parse took it in
        else:
            doc = msgspec.to_builtins(config) if config is not None else {}
            spliced = None
        self.doc, self.doc_raw, self.doc_config = (doc if doc is not None else {}), raw, config
        self.spliced = spliced
        self.names = {}
        self.renumber()
        heap.settle()  # the document of a big file: hundreds of thousands of objects

    def renumber(self) -> None:
        """Revisions for the document just loaded: changed or new resources move on."""
        self.revision += 1
        versions: dict[tuple[str, str], tuple[int, int, bytes]] = {}
        for kind in KINDS.values():
            for name, value in self.entries(kind):
                fp = _fingerprint(value)
                old = self.versions.get((kind.name, name))
                if old is not None and old[2] == fp:
                    versions[(kind.name, name)] = old
                else:
                    created = old[0] if old is not None else self.revision
                    versions[(kind.name, name)] = (created, self.revision, fp)
        self.versions = versions

    def section(self, kind: Kind) -> Any:
        section = self.doc.get(kind.name) if isinstance(self.doc, dict) else None
        if kind.name == "global_rules" and isinstance(section, dict):
            # the one-rule form is shown as the rule "1" (Config.global_rule_list)
            return [{"id": "1", **yaml_roundtrip.to_plain(section)}] if section.get("plugins") else []
        return section

    def nodes(self, kind: Kind) -> list[tuple[str, Any]]:
        """(name, document node) of every resource of a kind, in document order."""
        return list(self.iter_nodes(kind))

    def iter_nodes(self, kind: Kind) -> Iterator[tuple[str, Any]]:
        section = self.section(kind)
        if kind.key_field is None:
            if isinstance(section, dict):
                yield from ((str(k), v) for k, v in section.items())
            return
        if isinstance(section, list):
            key = kind.key_field
            yield from ((value[key], value) for value in section
                        if isinstance(value, dict) and isinstance(value.get(key), str))

    def entries(self, kind: Kind) -> list[tuple[str, Any]]:
        return [(name, yaml_roundtrip.to_plain(node)) for name, node in self.nodes(kind)]

    def resource(self, kind: Kind, name: str, value: Any) -> Resource:
        created, modified, _ = self.versions.get((kind.name, name), (self.revision, self.revision, b""))
        return Resource(name, value, created, modified)

    # ---------------------------------------------------------------- reads

    async def list(self, kind: Kind) -> list[Resource]:
        await self.sync()
        return [self.resource(kind, name, value) for name, value in self.entries(kind)]

    async def get(self, kind: Kind, name: str) -> Resource | None:
        await self.sync()
        section = self.section(kind)
        if kind.key_field is not None and isinstance(section, list) and section is self.doc.get(kind.name):
            names = self.names_of(kind, section)
            node = section[names.index(name)] if name in names else None
            return None if node is None else self.resource(kind, name, yaml_roundtrip.to_plain(node))
        for key, node in self.iter_nodes(kind):
            if key == name:
                return self.resource(kind, name, yaml_roundtrip.to_plain(node))
        return None

    def names_of(self, kind: Kind, section: builtins.list[Any]) -> builtins.list[str | None]:
        """The name of each item of a list section, kept beside the document (finding one of
        10k resources by scanning ruamel's nodes costs milliseconds)."""
        names = self.names.get(kind.name)
        if names is None or len(names) != len(section):
            key = kind.key_field
            names = self.names[kind.name] = [
                v.get(key) if isinstance(v, dict) and isinstance(v.get(key), str) else None for v in section]
        return names

    # ---------------------------------------------------------------- writes

    async def put(self, kind: Kind, name: str, value: Any, expect: int | None,
                  create_only: bool = False) -> tuple[Resource, bool]:
        async with self.host.reload_lock:
            current = await self.writable(kind, name, expect)
            if current is not None and create_only:
                raise StoreError(409, f"{kind.key(name)} exists")
            await self.commit(kind, name, value)
            created = current is None
            return (await self.get_unlocked(kind, name)), created

    async def delete(self, kind: Kind, name: str, expect: int | None) -> Resource:
        async with self.host.reload_lock:
            current = await self.writable(kind, name, expect)
            if current is None:
                raise StoreError(404, f"{kind.key(name)} not found")
            await self.commit(kind, name, None)
            return current

    async def get_unlocked(self, kind: Kind, name: str) -> Resource:
        resource = await self.get(kind, name)
        assert resource is not None
        return resource

    async def writable(self, kind: Kind, name: str, expect: int | None) -> Resource | None:
        """The resource as it is now, once the write may go ahead."""
        await self.sync()
        if self.path is None:
            raise StoreError(409, "the gateway runs without a config file (no -c): there is nothing to write to")
        if self.host.config_raw is None:
            raise StoreError(409, f"{self.path} is invalid and the gateway runs its last good config: "
                                  "fix the file first (see the log)")
        try:
            on_disk = self.path.read_bytes()  # a local file: faster than a thread's round trip
        except OSError as exc:
            raise StoreError(409, f"cannot read {self.path}: {exc.strerror or exc}") from None
        if on_disk != self.host.config_raw:
            raise StoreError(409, f"{self.path} was changed on disk since the gateway loaded it (an edit not "
                                  "applied yet, or rejected: see the log); refusing to overwrite it")
        current = await self.get(kind, name)
        if expect is not None and (current is None or current.modified != expect):
            now = "gone" if current is None else f"at modifiedIndex {current.modified}"
            raise StoreError(412, f"{kind.key(name)} is {now}, not at {expect}: read it again")
        return current

    async def commit(self, kind: Kind, name: str, value: Any) -> None:
        assert self.path is not None
        started = time.monotonic()
        if kind.name == "routes":
            # one route is checked: a few milliseconds, less than a thread's round trip on a
            # busy machine
            config = self.validated(kind, name, value)
        else:  # may check every route (global rules): off the loop
            config = await asyncio.to_thread(self.validated, kind, name, value)
        checked = time.monotonic()
        reason = f"admin API: {'DELETE' if value is None else 'PUT'} {kind.key(name)}"
        previous = self.host.config
        undo = self.edit(kind, name, value)
        self.committing = True
        try:
            # The workers compile while the file is rendered and written: rendering a big file
            # with its comments takes longer than compiling it.
            applied = asyncio.ensure_future(self.host.apply(config, reason))
            confirmed = [0.0]
            applied.add_done_callback(lambda _: confirmed.__setitem__(0, time.monotonic()))
            try:
                raw, keep = await asyncio.to_thread(self.rendered, kind, name, value)
                await asyncio.to_thread(write_atomically, self.path, raw, _file_mode(self.path))
                keep()
            except Exception as exc:
                undo()
                await applied
                if previous is not None:
                    await self.host.apply(previous, "admin API: the file write failed; back to the previous config")
                if isinstance(exc, OSError):
                    raise StoreError(503, f"cannot write {self.path}: {exc.strerror or exc}; nothing changed") from None
                raise
            written = time.monotonic()
            self.host.file_written(raw)
            ok = await applied
        finally:
            self.committing = False
        self.doc_raw, self.doc_config = self.host.config_raw, self.host.config
        self.bump(kind, name, value)
        log.info("%s: checked in %.1f ms; every worker %s %.1f ms after the check; file written after %.1f ms",
                 reason, (checked - started) * 1000, "confirmed" if ok else "did NOT confirm",
                 (confirmed[0] - checked) * 1000, (written - checked) * 1000)
        if not ok:
            raise StoreError(503, f"{reason} saved, but not every worker confirmed it (see the log)")

    def bump(self, kind: Kind, name: str, value: Any) -> None:
        """The revision of one write: only the resource it changed moves on."""
        self.revision += 1
        key = (kind.name, name)
        if value is None:
            self.versions.pop(key, None)
            return
        old = self.versions.get(key)
        self.versions[key] = (old[0] if old else self.revision, self.revision, _fingerprint(value))

    def rendered(self, kind: Kind, name: str, value: Any) -> tuple[bytes, Callable[[], None]]:
        """The file's new bytes (the edited document's), and what to call once they are on
        disk. The old bytes are cut at their resources once, then only the changed one is
        rendered; the whole document when the file is not cut that way."""
        if self.spliced is None and self.doc_raw is not None:
            self.spliced = SplicedFile.parse(self.doc_raw.decode("utf-8-sig"), KEY_FIELDS)
        render = None if value is None else functools.partial(yaml_roundtrip.dump_item, value)
        edited = self.spliced.edited(kind.name, name, render) if self.spliced is not None else None
        if edited is not None:
            text, keep = edited
            return text.encode(), keep
        def cut_again() -> None:
            self.spliced = None  # cut from the new bytes at the next write
        return yaml_roundtrip.dump(self.doc).encode(), cut_again

    def validated(self, kind: Kind, name: str, value: Any) -> Config:
        assert self.host.config is not None
        return candidate_config(self.host.config, kind, name, value, self.host.validate)

    def edit(self, kind: Kind, name: str, value: Any) -> Any:
        """Applies the change to the document; returns what undoes it."""
        doc = self.doc
        node = yaml_roundtrip.from_plain(value) if value is not None else None
        if kind.key_field is None:
            section = doc.get(kind.name)
            if not isinstance(section, dict):
                section = doc[kind.name] = yaml_roundtrip.from_plain({})
            old = section.get(name)
            if node is None:
                section.pop(name, None)
            else:
                section[name] = node

            def undo_mapping() -> None:
                if old is None:
                    section.pop(name, None)
                else:
                    section[name] = old
            return undo_mapping
        section = doc.get(kind.name)
        old_section = section
        if kind.name == "global_rules" and isinstance(section, dict):
            section = doc[kind.name] = yaml_roundtrip.from_plain(self.section(kind))
        elif not isinstance(section, list):
            section = doc[kind.name] = yaml_roundtrip.from_plain([])
        names = self.names_of(kind, section)
        if name in names:
            index = names.index(name)
            old_item = section[index]
            if node is None:
                del section[index]
                del names[index]
            else:
                section[index] = node
        else:
            index, old_item = -1, None
            section.append(node)
            names.append(name)

        def undo_list() -> None:
            self.names.pop(kind.name, None)
            if old_section is not section:
                if old_section is None:
                    doc.pop(kind.name, None)
                else:
                    doc[kind.name] = old_section
            elif old_item is None:
                section.pop()
            elif node is None:
                section.insert(index, old_item)
            else:
                section[index] = old_item
        return undo_list


def _file_mode(path: Path) -> int:
    try:
        return os.stat(path).st_mode & 0o777
    except OSError:
        return 0o644
