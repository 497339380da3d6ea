"""Keeps, of plain data, what a msgspec schema accepts, and says where the rest was.

The schema is the one list of what this gateway supports: a field the struct does not declare,
or a value outside a ``Literal``, is reported with its document path instead of being dropped
in silence (or rejected as a whole file by the loader's ``forbid_unknown_fields``).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from msgspec import inspect

from gateway.config import format_path

DocPath = tuple[str | int, ...]


@dataclass(frozen=True)
class Unsupported:
    """Something of the source document the output does not carry."""
    path: DocPath
    reason: str

    def __str__(self) -> str:
        return f"{format_path(self.path) or '<document>'}: {self.reason}"


def keep_supported(value: Any, schema: Any, path: DocPath, out: list[Unsupported]) -> Any:
    """``value`` without what ``schema`` (a msgspec type) does not declare; a field whose value
    the schema cannot take at all (a missing enum member) is dropped too. What remains may still
    break a rule the loader checks (a range, a reference): the caller validates the result."""
    return _walk(value, inspect.type_info(schema), path, out)


def _walk(value: Any, info: inspect.Type, path: DocPath, out: list[Unsupported]) -> Any:
    if isinstance(info, inspect.StructType) and isinstance(value, dict):
        known = {f.encode_name: f for f in info.fields}
        kept: dict[str, Any] = {}
        for key, item in value.items():
            field = known.get(key)
            if field is None:
                out.append(Unsupported((*path, key), "field not supported"))
                continue
            if not _fits_literals(item, field.type):
                out.append(Unsupported((*path, key), f"value {item!r} not supported "
                                                     f"(supported: {_literal_values(field.type)})"))
                continue
            kept[key] = _walk(item, field.type, (*path, key), out)
        return kept
    if isinstance(info, inspect.UnionType):
        for member in info.types:
            if isinstance(member, inspect.StructType) and isinstance(value, dict):
                return _walk(value, member, path, out)
            if isinstance(member, (inspect.ListType, inspect.DictType)) and isinstance(
                    value, list if isinstance(member, inspect.ListType) else dict):
                return _walk(value, member, path, out)
        return value
    if isinstance(info, inspect.ListType) and isinstance(value, list):
        return [_walk(v, info.item_type, (*path, i), out) for i, v in enumerate(value)]
    if isinstance(info, inspect.DictType) and isinstance(value, dict):
        return {k: _walk(v, info.value_type, (*path, k), out) for k, v in value.items()}
    return value


def _literals(info: inspect.Type) -> list[Any] | None:
    """The values a Literal (alone or in a union with other literals/None) allows; None when the
    type is not only literals."""
    if isinstance(info, inspect.LiteralType):
        return list(info.values)
    if isinstance(info, inspect.UnionType):
        values: list[Any] = []
        for member in info.types:
            if isinstance(member, inspect.LiteralType):
                values += member.values
            elif not isinstance(member, inspect.NoneType):
                return None
        return values
    return None


def _fits_literals(value: Any, info: inspect.Type) -> bool:
    values = _literals(info)
    return values is None or value is None or value in values


def _literal_values(info: inspect.Type) -> str:
    return ", ".join(repr(v) for v in _literals(info) or [])


__all__ = ["DocPath", "Unsupported", "keep_supported"]
