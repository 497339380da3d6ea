"""What ``/apisix/admin/plugins/list`` and the plugin schema paths answer: the plugins this
gateway can load and the JSON Schema of each one's config, made from its msgspec ``Config``."""
from __future__ import annotations

from typing import Any

import msgspec

from gateway.plugins.registry import PluginLoadError, available, get_plugin_class, metadata_schema


def plugin_list() -> list[str]:
    return sorted(available())


def plugin_schema(name: str) -> dict[str, Any] | None:
    """The plugin's config schema (and its metadata schema, when it has one); None when there
    is no such plugin."""
    if name not in available():
        return None
    try:
        cls = get_plugin_class(name)
        metadata = metadata_schema(name)
    except (KeyError, PluginLoadError):
        return None
    schema = _inline(msgspec.json.schema(cls.Config))
    schema["x-priority"] = cls.priority
    if metadata is not None:
        schema["x-metadata-schema"] = _inline(msgspec.json.schema(metadata))
    return schema


def _inline(schema: dict[str, Any]) -> dict[str, Any]:
    """msgspec's ``{"$ref": ..., "$defs": ...}`` as the referenced schema itself (what APISIX
    answers), its ``$defs`` kept for the nested references."""
    ref = schema.get("$ref")
    defs = schema.get("$defs", {})
    if not isinstance(ref, str) or not ref.startswith("#/$defs/"):
        return schema
    top = dict(defs[ref.rsplit("/", 1)[1]])
    top["$defs"] = defs
    return top
