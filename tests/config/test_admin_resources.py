"""The config sections the Admin API added: APISIX's list form of global_rules, ssls and
plugin_metadata, checked through the whole pipeline like any file."""
from __future__ import annotations

import pytest

from gateway.config import ConfigError, expand_env_in_data, parse_config_text
from gateway.server.master import CHECKS


def issues(text: str) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_config_text(text, "t.yaml", env={}, extra_checks=CHECKS)
    return [(i.path, i.message) for i in info.value.issues]


def test_global_rules_in_both_forms() -> None:
    one = parse_config_text("global_rules: {plugins: {request-id: {}}}", env={}, extra_checks=CHECKS)
    assert [r.id for r in one.global_rule_list] == ["1"] and one.global_plugins == {"request-id": {}}
    listed = parse_config_text(
        "global_rules:\n  - {id: a, plugins: {request-id: {}}}\n  - {id: b, plugins: {prometheus: {}}}\n",
        env={}, extra_checks=CHECKS)
    assert set(listed.global_plugins) == {"request-id", "prometheus"}
    assert [r.id for r in listed.global_rule_list] == ["a", "b"]


def test_global_rules_list_problems_name_their_path() -> None:
    found = issues("global_rules:\n  - {id: a, plugins: {request-id: {}}}\n"
                   "  - {id: a, plugins: {request-id: {}, nope: {}}}\n")
    assert ("global_rules[1].id", "duplicate global rule id 'a' (first at global_rules[0])") in found
    assert ("global_rules[1].plugins.request-id", "plugin 'request-id' is already in global_rules[0]") in found
    assert ("global_rules[1].plugins.nope", "unknown plugin 'nope'") in found


def test_plugin_metadata_needs_a_plugin_that_takes_it() -> None:
    found = issues("plugin_metadata: {nope: {a: 1}, key-auth: {a: 1}}")
    assert ("plugin_metadata.nope", "unknown plugin 'nope'") in found
    assert ("plugin_metadata.key-auth", "plugin 'key-auth' takes no metadata") in found


def test_env_expansion_of_plain_data_reports_paths() -> None:
    data, problems = expand_env_in_data({"a": ["${X}", "$${Y}", "${MISSING}"]}, {"X": "x"}, "api")
    assert data == {"a": ["x", "${Y}", "${MISSING}"]}
    assert [(p.path, p.message.split(" (")[0]) for p in problems] == [
        ("a[2]", "environment variable MISSING is not set")]


def test_plugin_metadata_of_a_plugin_that_takes_it() -> None:
    config = parse_config_text(
        "plugin_metadata: {cors: {allow_origins: {partners: 'https://a.example,https://b.example'}}}",
        env={}, extra_checks=CHECKS)
    assert config.plugin_metadata == {"cors": {"allow_origins": {
        "partners": "https://a.example,https://b.example"}}}
    found = issues("plugin_metadata: {cors: {allow_origins: {partners: 'a.example'}}}")
    assert ("plugin_metadata.cors",
            "allow_origins.partners: 'a.example' is not an origin (scheme://host[:port])") in found
    found = issues("plugin_metadata: {cors: {allow_origins: {partners: 7}}}")
    assert ("plugin_metadata.cors.allow_origins.partners", "Expected `str`, got `int`") in found
