"""`${VAR}` expansion: the string rules, and the walk over the YAML node tree."""

from __future__ import annotations

import pytest
import yaml

from gateway.config.env_expand import expand_env, expand_env_in_tree
from gateway.config.source import YamlDocument

ENV = {"HOST": "10.0.0.1", "PORT": "8080", "EMPTY": ""}


@pytest.mark.parametrize(
    ("value", "expanded"),
    [
        ("${HOST}", "10.0.0.1"),
        ("http://${HOST}:${PORT}/x", "http://10.0.0.1:8080/x"),
        ("${UNSET:=fallback}", "fallback"),
        ("${HOST:=fallback}", "10.0.0.1"),
        ("${EMPTY:=fallback}", "fallback"),  # shell ":=": empty takes the default too
        ("${UNSET:=}", ""),
        ("$${HOST}", "${HOST}"),
        ("cost: $5 and $HOST", "cost: $5 and $HOST"),  # only ${...} is a reference
    ],
)
def test_expand_env(value: str, expanded: str) -> None:
    assert expand_env(value, ENV) == (expanded, [])


def test_an_unset_variable_is_left_as_written_and_reported() -> None:
    result, errors = expand_env("${HOST}/${NOPE}/${ALSO_NOPE}", ENV)
    assert result == "10.0.0.1/${NOPE}/${ALSO_NOPE}"
    assert errors == [
        "environment variable NOPE is not set (use ${NOPE:=default} for a default)",
        "environment variable ALSO_NOPE is not set (use ${ALSO_NOPE:=default} for a default)",
    ]


@pytest.mark.parametrize("value", ["${}", "${1X}", "${A-B}", "${HOST:-x}", "${HOST"])
def test_a_malformed_reference_is_reported(value: str) -> None:
    result, errors = expand_env(value, ENV)
    assert result == value
    assert errors == ["malformed ${...} reference (expected ${NAME} or ${NAME:=default}; write $${ for a literal ${)"]


def expand_text(text: str, env: dict[str, str]) -> tuple[object, list[tuple[str, str, int | None]]]:
    with YamlDocument(text, "t.yaml") as doc:
        assert doc.root is not None
        issues = expand_env_in_tree(doc.root, env, "t.yaml")
        return doc.to_data(), [(i.path, i.message, i.line) for i in issues]


def test_string_scalars_are_expanded_in_values_lists_and_keys() -> None:
    data, issues = expand_text('a: ${HOST}\nb: ["${PORT}", x]\n${HOST}: key\n', ENV)
    assert issues == []
    assert data == {"a": "10.0.0.1", "b": ["8080", "x"], "10.0.0.1": "key"}


def test_only_strings_are_expanded_and_never_into_structure() -> None:
    data, issues = expand_text("n: 5\nlist: ${L}\ntagged: !!str ${HOST}\n", {"L": "[1, 2]", "HOST": "h"})
    assert issues == []
    assert data == {"n": 5, "list": "[1, 2]", "tagged": "h"}


def test_a_scalar_tagged_as_another_type_is_not_expanded() -> None:
    with YamlDocument('port: !!int "${PORT}"\n', "t.yaml") as doc:
        assert isinstance(doc.root, yaml.MappingNode)
        assert expand_env_in_tree(doc.root, ENV, "t.yaml") == []
        assert doc.root.value[0][1].value == "${PORT}"


def test_a_value_under_a_key_that_is_not_a_scalar_is_located_by_a_question_mark() -> None:
    with YamlDocument("? [a, b]\n: ${NOPE}\n", "t.yaml") as doc:
        assert doc.root is not None
        [issue] = expand_env_in_tree(doc.root, ENV, "t.yaml")
    assert (issue.path, issue.line) == ('["?"]', 2)


def test_an_issue_has_the_path_and_line_of_its_scalar() -> None:
    _, issues = expand_text("routes:\n  - id: r\n    uri: /${NOPE}\n", ENV)
    assert issues == [
        ("routes[0].uri", "environment variable NOPE is not set (use ${NOPE:=default} for a default)", 3)
    ]


def test_a_shared_node_is_expanded_once() -> None:
    # Expanding the anchored "$${X}" twice would turn it into "${X}" and then fail on X.
    data, issues = expand_text('a: &lit "$${X}"\nb: *lit\n', {})
    assert issues == []
    assert data == {"a": "${X}", "b": "${X}"}


def test_a_shared_key_is_expanded_once() -> None:
    data, issues = expand_text('a: {&k "$${X}": 1}\nb: {*k : 2}\n', {})
    assert issues == []
    assert data == {"a": {"${X}": 1}, "b": {"${X}": 2}}


def test_a_recursive_alias_does_not_loop() -> None:
    with YamlDocument('a: &a ["${HOST}", *a]\n', "t.yaml") as doc:
        assert doc.root is not None
        assert expand_env_in_tree(doc.root, ENV, "t.yaml") == []
        seq = doc.root.value[0][1]
        assert isinstance(seq, yaml.SequenceNode)
        assert seq.value[0].value == "10.0.0.1"
