"""A Config written out as YAML (last-known-good file) and as msgpack (worker snapshots)."""

from __future__ import annotations

import msgspec
import pytest
import yaml

from gateway.config import parse_config_text
from gateway.config.file_checks import END_MARKER
from gateway.config.schema import Config, Consumer, GatewaySettings, Node, Route, Upstream
from gateway.config.snapshot import config_from_bytes, config_to_bytes, dump_config

CONFIG = Config(
    gateway=GatewaySettings(listen=["127.0.0.1:9080", "[::1]:9080"], require_end_marker=True),
    upstreams=[Upstream(id="u", type="chash", key="remote_addr", nodes=[Node(host="10.0.0.1", port=80, weight=3)])],
    routes=[Route(id="r", uris=["/a/:id", "/static/*"], upstream_id="u", plugins={"mock": {"body": "ünïcode ${X}"}})],
    consumers=[Consumer(username="alice", labels={"team": "$${not a ref}"}, plugins={"key-auth": {"key": "k"}})],
)


def test_the_dump_loads_back_to_an_equal_config_whatever_the_environment() -> None:
    text = dump_config(CONFIG)
    assert parse_config_text(text, env={}) == CONFIG
    assert parse_config_text(text, env={"X": "expanded"}) == CONFIG


def test_the_dump_escapes_references_so_they_are_not_expanded_again() -> None:
    data = yaml.safe_load(dump_config(CONFIG))
    assert data["routes"][0]["plugins"]["mock"]["body"] == "ünïcode $${X}"
    assert data["consumers"][0]["labels"]["team"] == "$$${not a ref}"


def test_the_dump_is_readable_yaml_that_ends_with_the_marker() -> None:
    text = dump_config(CONFIG)
    assert text.endswith("\n" + END_MARKER + "\n")
    assert "ünïcode" in text  # not \u escapes: people read and diff this file
    assert "{" not in text.split("plugins")[0]  # block style, not flow style
    assert text.index("gateway:") < text.index("upstreams:") < text.index("routes:")  # schema order


def test_msgpack_snapshots_round_trip() -> None:
    raw = config_to_bytes(CONFIG)
    assert isinstance(raw, bytes)
    assert config_from_bytes(raw) == CONFIG
    assert config_from_bytes(raw).fingerprint() == CONFIG.fingerprint()


def test_a_snapshot_is_typed_on_decode() -> None:
    raw = msgspec.msgpack.encode({"routes": [{"id": "r", "uri": "/", "nope": 1}]})
    with pytest.raises(msgspec.ValidationError, match="unknown field `nope`"):
        config_from_bytes(raw)


def test_a_dump_reusing_the_routes_texts_is_the_whole_dump() -> None:
    """The last good copy after an Admin API write re-renders only the routes that changed."""
    texts: dict[int, tuple[object, str]] = {}
    assert dump_config(CONFIG, texts) == dump_config(CONFIG)
    assert [route for route, _text in texts.values()] == CONFIG.routes
    extra = Route(id="s", uri="/s", upstream_id="u", methods=["GET"], plugins={"a": {"b": [1, {"c": "yes"}]}})
    changed = msgspec.structs.replace(CONFIG, routes=[*CONFIG.routes, extra])
    assert dump_config(changed, texts) == dump_config(changed)
    assert len(texts) == 2
    assert dump_config(msgspec.structs.replace(CONFIG, routes=[]), texts) == \
        dump_config(msgspec.structs.replace(CONFIG, routes=[]))
