"""msgspec's decode errors rewritten for people who edit YAML.

msgspec reports "Object contains unknown field `retires` - at `$.upstreams[0]`"; a user
should read "upstreams[0].retires: unknown field 'retires' (did you mean 'retries'?)",
with a line. This module turns the message into a document path (the line is looked up
from the path by the caller) and a message in the loader's words.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from typing import Any, Literal, Union

import msgspec

from .issues import DocPath, Segment
from .schema import Config

__all__ = ["describe_validation_error"]

_MSGSPEC_AT = re.compile(r"^(?P<msg>.*) - at (?:`(?P<key>key)` in )?`(?P<path>\$[^`]*)`$", re.S)
_MSGSPEC_TOKEN = re.compile(r"\.([^.\[]+)|\[(\d+)\]|\[\.\.\.\]")
_UNKNOWN_FIELD = re.compile(r"Object contains unknown field `(.+)`$")
_MISSING_FIELD = re.compile(r"Object missing required field `(.+)`$")


def describe_validation_error(exc: msgspec.ValidationError, data: Any) -> tuple[DocPath, str]:
    """Where in `data` (the plain data decoded as a Config) the error is, and what it says."""
    text = str(exc)
    m = _MSGSPEC_AT.match(text)
    path: DocPath
    if m is None:
        # Errors at the document root come without a " - at `$`" suffix.
        path, tp, msg, key_error = (), Config, text, False
    else:
        path, tp = _resolve_msgspec_path(m.group("path"), data)
        msg, key_error = m.group("msg"), m.group("key") is not None
    unknown = _UNKNOWN_FIELD.match(msg)
    if unknown:
        name = unknown.group(1)
        message = f"unknown field {name!r}"
        struct = _struct_at(tp)
        if struct is not None:
            close = difflib.get_close_matches(name, [f.encode_name for f in msgspec.structs.fields(struct)], n=1)
            if close:
                message += f" (did you mean {close[0]!r}?)"
        return path + (name,), message
    missing = _MISSING_FIELD.match(msg)
    if missing:
        return path + (missing.group(1),), "missing required field"
    if msg.startswith("Invalid enum value"):
        choices = [a for t in _members(tp) if typing.get_origin(t) is Literal for a in typing.get_args(t)]
        if choices:
            expected = ", ".join(repr(c) for c in choices)
            return path, f"invalid value {_value_at(data, path)!r}, expected one of {expected}"
    if key_error:
        return path, "invalid key: " + _humanise(msg)
    return path, _humanise(msg)


def _resolve_msgspec_path(text: str, data: Any) -> tuple[DocPath, Any]:
    """msgspec's "$.routes[0].plugins[...]" -> concrete path and the static
    type there. msgspec does not say which dict key failed, so find it."""
    path: list[Segment] = []
    tp: Any = Config
    for m in _MSGSPEC_TOKEN.finditer(text[1:]):
        if m.group(1) is not None:
            seg: Segment = m.group(1)
        elif m.group(2) is not None:
            seg = int(m.group(2))
        else:
            value_type = _child_type(tp, None)
            seg = "..."
            if isinstance(data, dict):
                for k, v in data.items():
                    if not isinstance(k, str) or (value_type is not None and _fails(v, value_type)):
                        seg = k if isinstance(k, str) else str(k)
                        data = v
                        break
            path.append(seg)
            tp = value_type
            continue
        path.append(seg)
        tp = _child_type(tp, seg)
        try:
            data = data[seg]
        except (KeyError, IndexError, TypeError):
            data = None
    return tuple(path), tp


def _unwrap(tp: Any) -> Any:
    while typing.get_origin(tp) is typing.Annotated:
        tp = typing.get_args(tp)[0]
    return tp


def _members(tp: Any) -> tuple[Any, ...]:
    tp = _unwrap(tp)
    if typing.get_origin(tp) in (Union, types.UnionType):
        return tuple(_unwrap(a) for a in typing.get_args(tp))
    return (tp,)


def _child_type(tp: Any, seg: Segment | None) -> Any:
    """Static type one step down from `tp`; `seg` None means "a dict value"."""
    for t in _members(tp):
        if isinstance(t, type) and issubclass(t, msgspec.Struct) and isinstance(seg, str):
            for f in msgspec.structs.fields(t):
                if f.encode_name == seg:
                    return f.type
        origin = typing.get_origin(t)
        if origin is list and isinstance(seg, int):
            return typing.get_args(t)[0]
        if origin is dict and (seg is None or isinstance(seg, str)):
            return typing.get_args(t)[1]
    return None


def _struct_at(tp: Any) -> type[msgspec.Struct] | None:
    for t in _members(tp):
        if isinstance(t, type) and issubclass(t, msgspec.Struct):
            return t
    return None


def _fails(value: Any, tp: Any) -> bool:
    try:
        msgspec.convert(value, tp, strict=False)
    except msgspec.ValidationError:
        return True
    return False


def _value_at(data: Any, path: DocPath) -> Any:
    for seg in path:
        try:
            data = data[seg]
        except (KeyError, IndexError, TypeError):
            return None
    return data


def _humanise(msg: str) -> str:
    msg = msg.replace("`", "")
    return msg[:1].lower() + msg[1:]
