"""``mocking``: answers with a static response instead of proxying (APISIX's plugin of the same
name and keys). The response is encoded once, when the config loads."""
from __future__ import annotations

import asyncio
import json
from typing import Any

import msgspec

from gateway.plugins import Context, Response
from gateway.plugins.base import Plugin, PluginConfig


class MockingConfig(PluginConfig):
    delay: float = 0.0
    response_status: int = 200
    content_type: str = "application/json;charset=utf8"
    response_example: str | None = None
    response_schema: dict[str, Any] | None = None
    with_mock_header: bool = True
    response_headers: dict[str, str] = msgspec.field(default_factory=dict)

    def __post_init__(self) -> None:
        if not 100 <= self.response_status <= 599:
            raise ValueError("response_status must be between 100 and 599")
        if self.delay < 0:
            raise ValueError("delay must be >= 0")
        if self.response_example is None and self.response_schema is None:
            raise ValueError("one of response_example or response_schema is required")


def example_from_schema(schema: dict[str, Any]) -> Any:
    """A value shaped like a JSON schema (APISIX's response_schema): defaults, examples or
    placeholders of the declared types."""
    if "example" in schema:
        return schema["example"]
    if "default" in schema:
        return schema["default"]
    if "enum" in schema and schema["enum"]:
        return schema["enum"][0]
    kind = schema.get("type", "object")
    if kind == "object":
        return {k: example_from_schema(v) for k, v in schema.get("properties", {}).items()}
    if kind == "array":
        return [example_from_schema(schema.get("items", {"type": "string"}))]
    if kind == "integer":
        return 0
    if kind == "number":
        return 0.0
    if kind == "boolean":
        return True
    return "string"


class Mocking(Plugin):
    name = "mocking"
    priority = 10900
    Config = MockingConfig

    def __init__(self, config: MockingConfig) -> None:
        super().__init__(config)
        if config.response_example is not None:
            body = config.response_example.encode()
        else:
            body = json.dumps(example_from_schema(config.response_schema or {})).encode()
        headers = {"Content-Type": config.content_type, **config.response_headers}
        if config.with_mock_header:
            headers["X-Mock-By"] = "gateway"
        self.response = Response(config.response_status, body, list(headers.items()))
        self.delay = config.delay

    def access(self, ctx: Context) -> Any:
        if self.delay:
            return self._delayed()
        return self.response

    async def _delayed(self) -> Response:
        await asyncio.sleep(self.delay)
        return self.response
