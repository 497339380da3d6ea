"""JSON Merge Patch (RFC 7396), what PATCH applies: objects merge key by key, ``null`` removes a
key, anything else (arrays included) replaces the target's value."""
from __future__ import annotations

from typing import Any


def merge_patch(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return patch
    merged = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            merged.pop(key, None)
        else:
            merged[key] = merge_patch(merged.get(key), value)
    return merged
