"""The resource kinds of the Admin API: their URL segment, config section, key field and schema.

The section of the config a kind lives in is named like its URL segment (``routes`` in the YAML
is ``/apisix/admin/routes``), so a resource body is the YAML resource as JSON.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from gateway.config import Consumer, GlobalRule, Route, Ssl, Upstream


@dataclass(frozen=True)
class Kind:
    #: URL segment and config section.
    name: str
    #: The field that names a resource in its body; None for plugin_metadata (a mapping by name).
    key_field: str | None
    #: The msgspec type of one resource (None: an open object, a plugin's metadata).
    schema: Any
    #: POST creates it with a generated id.
    generated_ids: bool = True

    def key(self, name: str) -> str:
        """The resource's key in APISIX's form (``/apisix/routes/1``), as the API shows it."""
        return f"/apisix/{self.name}/{name}"


KINDS: dict[str, Kind] = {kind.name: kind for kind in (
    Kind("routes", "id", Route),
    Kind("upstreams", "id", Upstream),
    Kind("consumers", "username", Consumer, generated_ids=False),
    Kind("global_rules", "id", GlobalRule),
    Kind("ssls", "id", Ssl),
    Kind("plugin_metadata", None, None, generated_ids=False),
)}
