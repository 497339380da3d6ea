"""msgspec's decode errors as a document path and a message in the loader's words."""

from __future__ import annotations

from typing import Any

import msgspec
import pytest

from gateway.config.decode_errors import describe_validation_error
from gateway.config.schema import Config

NODES = [{"host": "a", "port": 1}]


def describe(data: Any) -> tuple[tuple[str | int, ...], str]:
    with pytest.raises(msgspec.ValidationError) as info:
        msgspec.convert(data, Config, strict=False)
    return describe_validation_error(info.value, data)


def test_an_unknown_field_is_named_with_a_suggestion() -> None:
    path, message = describe({"upstreams": [{"id": "u", "nodes": NODES, "retires": 2}]})
    assert path == ("upstreams", 0, "retires")
    assert message == "unknown field 'retires' (did you mean 'retries'?)"


def test_an_unknown_field_with_nothing_close_gets_no_suggestion() -> None:
    assert describe({"zzz": 1}) == (("zzz",), "unknown field 'zzz'")


def test_a_missing_field_is_located_at_the_field() -> None:
    assert describe({"routes": [{"uri": "/"}]}) == (("routes", 0, "id"), "missing required field")


def test_a_wrong_enum_value_lists_the_choices() -> None:
    path, message = describe({"upstreams": [{"id": "u", "nodes": NODES, "type": "fastest"}]})
    assert path == ("upstreams", 0, "type")
    assert message == "invalid value 'fastest', expected one of 'roundrobin', 'least_conn', 'chash', 'ewma'"


def test_an_enum_beside_another_type_lists_the_literal_choices() -> None:
    # workers: PositiveInt | Literal["auto"]; the int is not a choice to list.
    workers = describe({"gateway": {"workers": "many"}})
    assert workers == (("gateway", "workers"), "invalid value 'many', expected one of 'auto'")
    status = describe({"routes": [{"id": "r", "status": 3}]})
    assert status == (("routes", 0, "status"), "invalid value 3, expected one of 0, 1")


def test_a_wrong_type_is_said_in_lower_case_without_backticks() -> None:
    assert describe({"gateway": {"listen": [5]}}) == (("gateway", "listen", 0), "expected str, got int")


def test_a_failing_dict_value_is_named_by_its_key() -> None:
    # msgspec says `plugins[...]`; the path names the plugin whose config is not an object.
    data = {"routes": [{"id": "r", "uri": "/", "plugins": {"fine": {}, "broken": 5}}]}
    assert describe(data) == (("routes", 0, "plugins", "broken"), "expected object, got int")


def test_a_key_error_says_so() -> None:
    # msgspec does not say which key; the path stops at the mapping.
    path, message = describe({"consumers": [{"username": "u", "labels": {5: "x"}}]})
    assert (path, message) == (("consumers", 0, "labels"), "invalid key: expected str, got int")


def test_an_error_at_the_root_has_the_empty_path() -> None:
    assert describe(["routes"]) == ((), "expected object, got array")


def test_a_range_error_keeps_msgspecs_words() -> None:
    path, message = describe({"upstreams": [{"id": "u", "nodes": [{"host": "a", "port": 0}]}]})
    assert path == ("upstreams", 0, "nodes", 0, "port")
    assert message == "expected int >= 1"
