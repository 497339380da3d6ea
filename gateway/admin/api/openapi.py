"""The OpenAPI 3.1 document of the Admin API, made from the msgspec types that validate the
config (``msgspec.json.schema_components``), so the document cannot drift from the checker.

Only the envelopes around a resource (APISIX's ``{"key", "value", ...}``) are declared here, and
they are msgspec types too. A request body is the resource's schema without its name field
(the path names the resource).
"""
from __future__ import annotations

import copy
import functools
from typing import Any

import msgspec

from gateway.admin.api.resources import KINDS, Kind

REF = "#/components/schemas/{name}"
ID_PATTERN = r"^[A-Za-z0-9_.\-]{1,64}$"
USERNAME_PATTERN = r"^[A-Za-z0-9_\-]+$"


class Error(msgspec.Struct):
    """An error answer: APISIX's ``error_msg`` and each issue's path in the body."""
    error_msg: str
    errors: list[dict[str, str]] = []


class Deleted(msgspec.Struct):
    deleted: str
    key: str


def _type_name(kind: Kind) -> str:
    return kind.schema.__name__ if kind.schema is not None else "PluginMetadata"


def _envelopes(kind: Kind) -> tuple[type, type]:
    value: Any = kind.schema if kind.schema is not None else dict[str, Any]
    name = _type_name(kind)
    item = msgspec.defstruct(f"{name}Item", [("key", str), ("value", value), ("createdIndex", int),
                                             ("modifiedIndex", int)])
    listing = msgspec.defstruct(f"{name}List", [("total", int), ("list", list[item])])  # type: ignore[valid-type]
    return item, listing


@functools.cache
def openapi_document() -> dict[str, Any]:
    envelopes = {name: _envelopes(kind) for name, kind in KINDS.items()}
    types: list[Any] = [Error, Deleted]
    for item, listing in envelopes.values():
        types += [item, listing]
    _, schemas = msgspec.json.schema_components(types, ref_template=REF)
    for kind in KINDS.values():
        if kind.schema is not None and kind.key_field is not None:
            body = copy.deepcopy(schemas[_type_name(kind)])
            body["required"] = [f for f in body.get("required", []) if f != kind.key_field]
            if not body["required"]:
                del body["required"]
            schemas[f"{_type_name(kind)}Body"] = body
    paths: dict[str, Any] = {}
    for kind in KINDS.values():
        paths.update(_kind_paths(kind))
    paths["/apisix/admin/plugins/list"] = {"get": _op(
        "the plugins this gateway can load", {"200": _json({"type": "array", "items": {"type": "string"}})})}
    schema_op = {"get": _op("a plugin's config schema (JSON Schema)", {
        "200": _json({"type": "object"}), "404": _error()}, [_path_param("name", None)])}
    paths["/apisix/admin/plugins/{name}"] = schema_op
    paths["/apisix/admin/schema/plugins/{name}"] = schema_op
    paths["/openapi.json"] = {"get": _op("this document", {"200": _json({"type": "object"})})}
    return {
        "openapi": "3.1.0",
        "info": {"title": "gateway Admin API", "version": "3",
                 "description": "APISIX Admin API v3 paths over the gateway's own config schema."},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"apiKey": {"type": "apiKey", "in": "header", "name": "X-API-KEY"},
                                "bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{"apiKey": []}, {"bearer": []}],
    }


def _ref(name: str) -> dict[str, str]:
    return {"$ref": REF.format(name=name)}


def _json(schema: dict[str, Any], description: str = "OK") -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _error(description: str = "refused") -> dict[str, Any]:
    return _json(_ref("Error"), description)


def _op(summary: str, responses: dict[str, Any], parameters: list[dict[str, Any]] | None = None,
        body: dict[str, Any] | None = None) -> dict[str, Any]:
    op: dict[str, Any] = {"summary": summary,
                          "responses": {**responses, "401": _error("no or wrong admin key"),
                                        "403": _error("client address not in allow_admin")}}
    if parameters:
        op["parameters"] = parameters
    if body is not None:
        op["requestBody"] = {"required": True, "content": {"application/json": {"schema": body}}}
    return op


def _path_param(name: str, pattern: str | None) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "string", "minLength": 1}
    if pattern:
        schema["pattern"] = pattern
    return {"name": name, "in": "path", "required": True, "schema": schema}


IF_MATCH = {"name": "If-Match", "in": "header", "required": False,
            "description": "the modifiedIndex the write is based on (412 when it is stale)",
            "schema": {"type": "string", "pattern": r'^"?[0-9]{1,15}"?$'}}


def _kind_paths(kind: Kind) -> dict[str, Any]:
    name = _type_name(kind)
    item, listing = _ref(f"{name}Item"), _ref(f"{name}List")
    body = _ref(f"{name}Body") if kind.schema is not None else {"type": "object"}
    what = kind.name
    collection: dict[str, Any] = {"get": _op(f"list {what}", {"200": _json(listing)})}
    write = {"200": _json(item, "replaced"), "201": _json(item, "created"), "400": _error("invalid"),
             "409": _error("conflicts with the config or the file"), "412": _error("stale If-Match")}
    if kind.generated_ids:
        collection["post"] = _op(f"create one of {what} with a generated id",
                                 {k: v for k, v in write.items() if k != "200"}, body=body)
    if kind.name == "consumers":
        collection["put"] = _op("create or replace a consumer named by its username", write,
                                [IF_MATCH], body=_ref(name))
    pattern = USERNAME_PATTERN if kind.name == "consumers" else ID_PATTERN if kind.key_field else None
    key = _path_param("name", pattern)
    one = {
        "get": _op(f"one of {what}", {"200": _json(item), "404": _error("not found")}, [key]),
        "put": _op(f"create or replace one of {what}", write, [key, IF_MATCH], body=body),
        "patch": _op(f"merge a JSON merge patch (RFC 7396) into one of {what}",
                     {**write, "404": _error("not found")}, [key, IF_MATCH], body={"type": "object"}),
        "delete": _op(f"delete one of {what}", {
            "200": _json(_ref("Deleted")), "404": _error("not found"),
            "409": _error("still used by the config, or the file changed"),
            "412": _error("stale If-Match"), "400": _error("bad If-Match")}, [key, IF_MATCH]),
    }
    return {f"/apisix/admin/{kind.name}": collection, f"/apisix/admin/{kind.name}/{{name}}": one}
