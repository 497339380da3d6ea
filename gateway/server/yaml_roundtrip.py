"""The config file as an editable document for the Admin API: ruamel.yaml's round-trip mode
keeps the comments, key order, quoting and flow style of everything a write does not replace.

What is lost: a replaced resource is written in block style with no comments (its own comments
go with it, and ruamel keeps a comment written just above an item with the item before it, so
replacing or deleting an item can take the comment above the next one); anchors and aliases
inside a replaced resource are expanded. ruamel writes YAML 1.2 while the loader reads YAML 1.1,
so a string the 1.1 loader would take for something else (``yes``, ``on``, ``0x1f``) is quoted.
"""
from __future__ import annotations

import datetime
import io
from typing import Any

import yaml
from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.scalarstring import DoubleQuotedScalarString

_resolver = yaml.resolver.Resolver()
_STR_TAG = "tag:yaml.org,2002:str"


def _yaml() -> YAML:
    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.indent(mapping=2, sequence=4, offset=2)
    rt.default_flow_style = False
    rt.width = 4096  # long values (PEM certificates, keys) stay on one line
    return rt


def load(text: str) -> Any:
    """The document's root (a CommentedMap), or None for an empty file."""
    return _yaml().load(text)


def dump(root: Any) -> str:
    out = io.StringIO()
    _yaml().dump(root, out)
    return out.getvalue()


_item_yaml: YAML | None = None


def dump_item(value: Any) -> str:
    """One resource (JSON data) as the whole-document dump renders an item of its list (one
    YAML object kept: making one looks for plugins on disk; writes are serialised by the store)."""
    global _item_yaml
    if _item_yaml is None:
        _item_yaml = _yaml()
    out = io.StringIO()
    _item_yaml.dump(CommentedSeq([from_plain(value)]), out)
    return out.getvalue()


def to_plain(value: Any) -> Any:
    """ruamel's node types as JSON data (dates, which the config loader reads as text, as text)."""
    if isinstance(value, dict):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list):
        return [to_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (datetime.date, datetime.datetime)):
        return value.isoformat()
    return str(value)


def from_plain(value: Any) -> Any:
    """JSON data as nodes ruamel writes so that the config loader reads them back unchanged."""
    if isinstance(value, dict):
        node = CommentedMap()
        for k, v in value.items():
            node[k] = from_plain(v)
        return node
    if isinstance(value, list):
        seq = CommentedSeq()
        seq.extend(from_plain(v) for v in value)
        return seq
    if isinstance(value, str) and (not value or _resolver.resolve(yaml.ScalarNode, value, (True, False)) != _STR_TAG):
        return DoubleQuotedScalarString(value)
    return value
