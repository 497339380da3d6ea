"""The APISIX shorthand forms and the schema's single form."""

from __future__ import annotations

import copy
from typing import Any

from gateway.config.normalise import normalise


def test_a_nodes_mapping_becomes_a_list_of_nodes() -> None:
    data, issues = normalise({"upstreams": [{"id": "u", "nodes": {"10.0.0.1:8080": 2, "[::1]:81": 0, "h": 1}}]}, "f")
    assert issues == []
    assert data["upstreams"][0]["nodes"] == [
        {"host": "10.0.0.1", "port": 8080, "weight": 2},
        {"host": "::1", "port": 81, "weight": 0},
        {"host": "h", "port": 80, "weight": 1},  # no port: the scheme's default
    ]


def test_an_inline_route_upstream_is_normalised_too() -> None:
    data, issues = normalise({"routes": [{"id": "r", "upstream": {"nodes": {"a:1": 1}}}]}, "f")
    assert issues == []
    assert data["routes"][0]["upstream"]["nodes"] == [{"host": "a", "port": 1, "weight": 1}]


def test_a_node_key_that_is_not_host_port_is_an_issue_at_its_index() -> None:
    data, issues = normalise(
        {"upstreams": [{"nodes": {"a:1": 1, "a:b:c": 1}}], "routes": [{"upstream": {"nodes": {"[::1": 1}}}]}, "f.yaml"
    )
    assert [(i.file, i.path, i.message) for i in issues] == [
        ("f.yaml", "upstreams[0].nodes[1]", "invalid node 'a:b:c': expected 'host:port' or '[v6addr]:port'"),
        ("f.yaml", "routes[0].upstream.nodes[0]", "invalid node '[::1': expected 'host:port' or '[v6addr]:port'"),
    ]
    assert data["upstreams"][0]["nodes"] == [{"host": "a", "port": 1, "weight": 1}]


def test_a_nodes_list_is_left_alone() -> None:
    nodes = [{"host": "a", "port": 1}]
    data, _ = normalise({"upstreams": [{"nodes": nodes}]}, "f")
    assert data["upstreams"][0]["nodes"] == nodes


def test_a_single_listen_address_becomes_a_list() -> None:
    data, _ = normalise({"gateway": {"listen": "127.0.0.1:9080", "workers": 2}}, "f")
    assert data["gateway"] == {"listen": ["127.0.0.1:9080"], "workers": 2}


def test_empty_sections_and_x_keys_are_dropped() -> None:
    data, _ = normalise({"gateway": None, "routes": [], "x-common": {"a": 1}, "upstreams": None}, "f")
    assert data == {"routes": []}


def test_a_plugin_without_config_gets_an_empty_one() -> None:
    data, _ = normalise(
        {
            "routes": [{"id": "r", "plugins": {"prometheus": None, "limit-req": {"rate": 1}}}],
            "consumers": [{"username": "u", "plugins": {"key-auth": None}}],
            "global_rules": {"plugins": {"prometheus": None}},
        },
        "f",
    )
    assert data["routes"][0]["plugins"] == {"prometheus": {}, "limit-req": {"rate": 1}}
    assert data["consumers"][0]["plugins"] == {"key-auth": {}}
    assert data["global_rules"]["plugins"] == {"prometheus": {}}


def test_the_callers_data_is_not_modified() -> None:
    original: dict[str, Any] = {
        "gateway": {"listen": "127.0.0.1:1"},
        "upstreams": [{"nodes": {"a:1": 1}}],
        "routes": [{"plugins": {"p": None}, "upstream": {"nodes": {"b:2": 1}}}],
        "x-anchor": 1,
    }
    before = copy.deepcopy(original)
    normalise(original, "f")
    assert original == before


def test_what_is_not_a_mapping_is_returned_for_the_decoder_to_reject() -> None:
    assert normalise(["routes"], "f") == (["routes"], [])
    assert normalise("text", "f") == ("text", [])
    data, issues = normalise({"routes": "nope", "upstreams": [5]}, "f")
    assert (data, issues) == ({"routes": "nope", "upstreams": [5]}, [])
