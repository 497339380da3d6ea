"""The Admin API's HTTP side: paths, methods, bodies and status codes; the store does the rest.

Paths and answers follow APISIX's Admin API v3: ``{"key", "value", "createdIndex",
"modifiedIndex"}`` for one resource, ``{"total", "list"}`` for a list, ``{"error_msg"}`` for an
error (with ``errors``: each issue's path in the body and its reason). A resource's
``modifiedIndex`` is also its ETag; ``If-Match`` (or ``?modifiedIndex=``) makes a write
conditional (412 when stale).
"""
from __future__ import annotations

import secrets
import time
from collections.abc import Awaitable, Callable
from typing import Any
from urllib.parse import parse_qs

import orjson

from gateway.admin.api.merge_patch import merge_patch
from gateway.admin.api.openapi import openapi_document
from gateway.admin.api.plugin_info import plugin_list, plugin_schema
from gateway.admin.api.resources import KINDS, Kind
from gateway.admin.api.store import ConfigStore, Resource, StoreError
from gateway.admin.router import Reply, Request, Router

PREFIX = "/apisix/admin"
JSON = [("Content-Type", "application/json")]


def json_reply(status: int, payload: Any, headers: list[tuple[str, str]] | None = None) -> Reply:
    return Reply(status, orjson.dumps(payload) + b"\n", JSON + (headers or []))


def error_reply(error: StoreError) -> Reply:
    payload: dict[str, Any] = {"error_msg": error.message}
    if error.errors:
        payload["errors"] = error.errors
    return json_reply(error.status, payload)


def item(kind: Kind, resource: Resource) -> dict[str, Any]:
    return {"key": kind.key(resource.name), "value": resource.value,
            "createdIndex": resource.created, "modifiedIndex": resource.modified}


def etag(resource: Resource) -> tuple[str, str]:
    return ("ETag", f'"{resource.modified}"')


class AdminApi:
    def __init__(self, store: ConfigStore) -> None:
        self.store = store

    def register(self, router: Router) -> None:
        for kind in KINDS.values():
            collection = f"{PREFIX}/{kind.name}"
            router.add("GET", collection, self.bind(self.list, kind))
            if kind.generated_ids:
                router.add("POST", collection, self.bind(self.create, kind))
            if kind.name == "consumers":  # APISIX: PUT /consumers with the username in the body
                router.add("PUT", collection, self.bind(self.put_named_by_body, kind))
            one = collection + "/*"
            router.add("GET", one, self.bind(self.get, kind))
            router.add("PUT", one, self.bind(self.put, kind))
            router.add("PATCH", one, self.bind(self.patch, kind))
            router.add("DELETE", one, self.bind(self.delete, kind))
        router.add("GET", f"{PREFIX}/plugins/list", self.plugins)
        router.add("GET", f"{PREFIX}/plugins/*", self.schema)
        router.add("GET", f"{PREFIX}/schema/plugins/*", self.schema)
        router.add("GET", "/openapi.json", self.openapi)

    def bind(self, handler: Callable[[Kind, Request], Awaitable[Reply]], kind: Kind
             ) -> Callable[[Request], Awaitable[Reply]]:
        async def call(request: Request) -> Reply:
            try:
                return await handler(kind, request)
            except StoreError as error:
                return error_reply(error)
        return call

    # ---------------------------------------------------------------- reads

    async def list(self, kind: Kind, request: Request) -> Reply:
        resources = await self.store.list(kind)
        query = parse_qs(request.query)
        items = [item(kind, r) for r in resources]
        if "page" in query or "page_size" in query:  # APISIX v3 paging
            page = _int_param(query, "page", 1, 1, 1 << 31)
            size = _int_param(query, "page_size", 10, 10, 500)
            items = items[(page - 1) * size:page * size]
        return json_reply(200, {"total": len(resources), "list": items})

    async def get(self, kind: Kind, request: Request) -> Reply:
        resource = await self.store.get(kind, _name(request))
        if resource is None:
            raise StoreError(404, f"{kind.name[:-1] if kind.name.endswith('s') else kind.name} "
                                  f"{_name(request)!r} not found")
        return json_reply(200, item(kind, resource), [etag(resource)])

    # ---------------------------------------------------------------- writes

    async def put(self, kind: Kind, request: Request) -> Reply:
        name = _name(request)
        body = _named_body(kind, _body(request), name)
        resource, created = await self.store.put(kind, name, body, _expected(request))
        return json_reply(201 if created else 200, item(kind, resource), [etag(resource)])

    async def put_named_by_body(self, kind: Kind, request: Request) -> Reply:
        body = _body(request)
        name = body.get(kind.key_field) if isinstance(body, dict) and kind.key_field else None
        if not isinstance(name, str) or not name:
            raise StoreError(400, f"{kind.key_field}: missing required field",
                             [{"path": str(kind.key_field), "message": "missing required field"}])
        resource, created = await self.store.put(kind, name, body, _expected(request))
        return json_reply(201 if created else 200, item(kind, resource), [etag(resource)])

    async def create(self, kind: Kind, request: Request) -> Reply:
        body = _body(request)
        if isinstance(body, dict) and kind.key_field and kind.key_field in body:
            raise StoreError(400, f"{kind.key_field}: POST generates it; use PUT {PREFIX}/{kind.name}/{{id}}",
                             [{"path": kind.key_field, "message": "not allowed with POST"}])
        name = _generated_id()
        resource, _ = await self.store.put(kind, name, _named_body(kind, body, name), None,
                                           create_only=True)
        return json_reply(201, item(kind, resource), [etag(resource)])

    async def patch(self, kind: Kind, request: Request) -> Reply:
        name = _name(request)
        patch = _body(request)
        expect = _expected(request)
        current = await self.store.get(kind, name)
        if current is None:
            raise StoreError(404, f"{kind.name} {name!r} not found")
        if expect is None:
            expect = current.modified  # the merge is based on this version: refuse if it moves
        value = merge_patch(current.value, patch)
        if kind.key_field and isinstance(value, dict) and value.get(kind.key_field, name) != name:
            raise StoreError(400, f"{kind.key_field}: cannot be changed (it is the resource's name)",
                             [{"path": kind.key_field, "message": "cannot be changed"}])
        resource, _ = await self.store.put(kind, name, _named_body(kind, value, name), expect)
        return json_reply(200, item(kind, resource), [etag(resource)])

    async def delete(self, kind: Kind, request: Request) -> Reply:
        name = _name(request)
        resource = await self.store.delete(kind, name, _expected(request))
        return json_reply(200, {"deleted": "1", "key": kind.key(resource.name)})

    # ---------------------------------------------------------------- plugins, openapi

    async def plugins(self, request: Request) -> Reply:
        return json_reply(200, plugin_list())

    async def schema(self, request: Request) -> Reply:
        schema = plugin_schema(request.tail)
        if schema is None:
            return error_reply(StoreError(404, f"plugin {request.tail!r} not found"))
        return json_reply(200, schema)

    async def openapi(self, request: Request) -> Reply:
        return json_reply(200, openapi_document())


def _name(request: Request) -> str:
    name = request.tail
    if not name or "/" in name:
        raise StoreError(404, "not found")
    return name


def _body(request: Request) -> Any:
    if not request.body:
        raise StoreError(400, "a JSON body is required")
    try:
        return orjson.loads(request.body)
    except orjson.JSONDecodeError as exc:
        raise StoreError(400, f"invalid JSON body: {exc}") from None


def _named_body(kind: Kind, body: Any, name: str) -> Any:
    """The body with its name field set from the path (a different name in the body is a 400)."""
    if not isinstance(body, dict):
        raise StoreError(400, "the body must be a JSON object", [{"path": "", "message": "expected an object"}])
    if kind.key_field is None:
        return body
    given = body.get(kind.key_field)
    if given is not None and given != name:
        message = f"{given!r} differs from {name!r} in the path"
        raise StoreError(400, f"{kind.key_field}: {message}", [{"path": kind.key_field, "message": message}])
    return {kind.key_field: name, **{k: v for k, v in body.items() if k != kind.key_field}}


def _expected(request: Request) -> int | None:
    """The modifiedIndex a conditional write expects: ``If-Match: "7"`` or ``?modifiedIndex=7``."""
    text = request.headers.get("if-match")
    if text is None:
        values = parse_qs(request.query).get("modifiedIndex")
        text = values[0] if values else None
    if text is None:
        return None
    text = text.strip()
    if text.startswith("W/"):
        text = text[2:]
    text = text.strip('"')
    if not text.isdigit():
        raise StoreError(400, "If-Match: expected the modifiedIndex of the resource, e.g. \"7\"")
    return int(text)


def _int_param(query: dict[str, list[str]], name: str, default: int, low: int, high: int) -> int:
    values = query.get(name)
    if not values:
        return default
    try:
        return min(max(int(values[0]), low), high)
    except ValueError:
        raise StoreError(400, f"{name}: expected an integer") from None


def _generated_id() -> str:
    # Time-ordered (lists sort by creation) and random enough that two writers never collide.
    return f"{time.time_ns() // 1000:x}{secrets.token_hex(3)}"
