"""Where the Admin API reads and writes resources: the contract every store keeps.

A store holds the resources as their documents have them (``${VAR}`` references unexpanded) with
APISIX's ``createdIndex``/``modifiedIndex``: the revision of the store at which the resource was
created and last changed. The file store counts its own revisions; an etcd store would use
etcd's ``create_revision``/``mod_revision``. A write names the ``modifiedIndex`` it expects (the
client's ``If-Match``) and fails with 412 when the resource moved on; the store validates the
whole resulting config with the config checker before anything is kept or applied.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from gateway.admin.api.resources import Kind


@dataclass(frozen=True)
class Resource:
    name: str
    value: Any
    created: int
    modified: int


@dataclass
class StoreError(Exception):
    """A refused request: its HTTP status, the reason, and (for 400) each issue's path."""
    status: int
    message: str
    errors: list[dict[str, str]] = field(default_factory=list)

    def __str__(self) -> str:
        return self.message


class ConfigStore(Protocol):
    async def list(self, kind: Kind) -> list[Resource]: ...

    async def get(self, kind: Kind, name: str) -> Resource | None: ...

    async def put(self, kind: Kind, name: str, value: Any, expect: int | None,
                  create_only: bool = False) -> tuple[Resource, bool]:
        """Creates or replaces a resource; True when it was created. ``expect``: the
        ``modifiedIndex`` the client read (412 when it is not the current one, or the resource
        is gone); ``create_only``: 409 when the name is taken."""
        ...

    async def delete(self, kind: Kind, name: str, expect: int | None) -> Resource:
        """Removes a resource (404 when missing, 409 when the config still needs it)."""
        ...
