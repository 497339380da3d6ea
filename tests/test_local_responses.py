"""Responses the gateway writes itself carry the registered reason phrase of their status."""
from __future__ import annotations

from pathlib import Path

import pytest

from gateway._proto import reason_phrase
from tests.support.gateway import GatewayProcess, base_config, raw_exchange
from tests.support.upstream import free_port


@pytest.mark.parametrize(("status", "phrase"), [
    (200, "OK"), (201, "Created"), (202, "Accepted"), (206, "Partial Content"),
    (307, "Temporary Redirect"), (308, "Permanent Redirect"), (410, "Gone"),
    (413, "Content Too Large"), (414, "URI Too Long"), (422, "Unprocessable Content"),
    (451, "Unavailable For Legal Reasons"), (503, "Service Unavailable"),
])
def test_reason_table_is_complete(status: int, phrase: str) -> None:
    assert reason_phrase(status) == phrase


def test_unregistered_status_has_an_empty_phrase() -> None:
    assert reason_phrase(299) == ""


def test_plugin_response_status_line(tmp_path: Path) -> None:
    port = free_port()
    config = base_config(port)
    config["routes"] = [
        {"id": "created", "uri": "/created", "plugins": {"mocking": {
            "response_status": 201, "response_example": "{}"}}},
        {"id": "odd", "uri": "/odd", "plugins": {"mocking": {
            "response_status": 299, "response_example": "{}"}}},
    ]
    with GatewayProcess(tmp_path, config, workers=1):
        close = b"Host: a\r\nConnection: close\r\n\r\n"
        assert raw_exchange(port, b"GET /created HTTP/1.1\r\n" + close).startswith(
            b"HTTP/1.1 201 Created\r\n")
        assert raw_exchange(port, b"GET /odd HTTP/1.1\r\n" + close).startswith(
            b"HTTP/1.1 299 \r\n")
