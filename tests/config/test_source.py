"""Reading a document: bytes to text, text to the YAML node tree and plain data, line lookup,
duplicate keys."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from gateway.config.issues import ConfigError, ConfigIssue
from gateway.config.source import YamlDocument, decode_file, duplicate_keys, line_for, read_config_file, with_lines

DOC = textwrap.dedent(
    """\
    gateway:
      listen: ["127.0.0.1:9080"]
    upstreams:
      - id: u
        nodes:
          "10.0.0.1:80": 1
          "10.0.0.2:80": 2
    routes:
      - id: r
        uri: /a
        plugins:
          key-auth: {}
    """
)


def root_of(text: str) -> yaml.Node:
    with YamlDocument(text, "t.yaml") as doc:
        assert doc.root is not None
        return doc.root


def test_the_document_becomes_plain_data() -> None:
    with YamlDocument(DOC, "t.yaml") as doc:
        data = doc.to_data()
    assert data["routes"] == [{"id": "r", "uri": "/a", "plugins": {"key-auth": {}}}]
    assert data["upstreams"][0]["nodes"] == {"10.0.0.1:80": 1, "10.0.0.2:80": 2}


@pytest.mark.parametrize("text", ["", "# only a comment\n", "\n\n"])
def test_a_text_without_a_document_has_no_root_and_no_data(text: str) -> None:
    with YamlDocument(text, "t.yaml") as doc:
        assert doc.root is None
        assert doc.to_data() is None


def test_dates_stay_strings() -> None:
    # YAML 1.1 would make a datetime of it, which neither msgpack nor JSON round-trips.
    with YamlDocument("released: 2024-01-02\nat: 2024-01-02 10:00:00\n", "t.yaml") as doc:
        assert doc.to_data() == {"released": "2024-01-02", "at": "2024-01-02 10:00:00"}


def test_a_syntax_error_names_file_and_line() -> None:
    with pytest.raises(ConfigError) as info:
        YamlDocument("routes:\n  - id: a\n   bad: [\n", "broken.yaml")
    assert info.value.issues == [
        ConfigIssue(
            file="broken.yaml",
            path="",
            message="YAML syntax error: while parsing a block collection, did not find expected '-' indicator",
            line=3,
        )
    ]


def test_a_character_yaml_does_not_allow_is_an_error_without_a_line() -> None:
    with pytest.raises(ConfigError) as info:
        YamlDocument("a: \x07\n", "t.yaml")
    message = ('YAML error: unacceptable character #x0007: control characters are not allowed\n'
               '  in "<unicode string>", position 3')
    assert info.value.issues == [ConfigIssue(file="t.yaml", path="", message=message)]


def test_two_documents_in_one_text_are_an_error() -> None:
    with pytest.raises(ConfigError, match="YAML syntax error: .*expected a single document"):
        YamlDocument("a: 1\n---\nb: 2\n", "t.yaml")


def test_a_construction_error_is_reported_with_its_line() -> None:
    with YamlDocument("a: 1\nb: !!python/object:os.system x\n", "t.yaml") as doc:
        with pytest.raises(ConfigError) as info:
            doc.to_data()
    message = "YAML error: could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'"
    assert info.value.issues == [ConfigIssue(file="t.yaml", path="", message=message, line=2)]


def test_data_is_built_from_the_tree_as_it_is_when_asked() -> None:
    with YamlDocument("key: before\n", "t.yaml") as doc:
        assert isinstance(doc.root, yaml.MappingNode)
        doc.root.value[0][1].value = "after"
        assert doc.to_data() == {"key": "after"}


@pytest.mark.parametrize(
    ("path", "line"),
    [
        ((), 1),
        (("gateway",), 1),
        (("gateway", "listen"), 2),
        (("gateway", "listen", 0), 2),
        (("routes", 0), 9),
        (("routes", 0, "uri"), 10),
        (("routes", 0, "plugins", "key-auth"), 12),
        # The nodes mapping becomes a list: index i is the i-th key.
        (("upstreams", 0, "nodes", 0), 6),
        (("upstreams", 0, "nodes", 1), 7),
        (("upstreams", 0, "nodes", 1, "host"), 7),
        # What the document does not have: the deepest ancestor it does.
        (("routes", 0, "upstream_id"), 9),
        (("routes", 1), 8),
        (("routes", 5), 8),
        (("routes", "id"), 8),  # a name into a list
        (("upstreams", 0, "nodes", 2), 5),
        (("upstreams", 0, "nodes", 9), 5),
    ],
)
def test_line_for_finds_the_key_of_a_path_or_its_deepest_ancestor(path: tuple[str | int, ...], line: int) -> None:
    assert line_for(root_of(DOC), path) == line


def test_line_for_without_a_tree_is_none() -> None:
    assert line_for(None, ("routes",)) is None


def test_with_lines_fills_in_only_missing_lines_of_paths_it_can_read() -> None:
    root = root_of(DOC)
    issues = [
        ConfigIssue(file="t.yaml", path="routes[0].uri", message="a"),
        ConfigIssue(file="t.yaml", path="routes[0].uri", message="b", line=99),
        ConfigIssue(file="t.yaml", path="routes..uri", message="c"),
    ]
    located = with_lines(issues, root)
    assert [i.line for i in located] == [10, 99, None]
    assert [i.message for i in located] == ["a", "b", "c"]
    assert with_lines(issues, None) == issues


def test_duplicate_keys_are_reported_where_the_second_one_is() -> None:
    text = "routes:\n  - id: a\n    uri: /a\n    id: b\ngateway: {}\ngateway: {}\n"
    issues = duplicate_keys(root_of(text), "t.yaml")
    assert [(i.path, i.message, i.line) for i in issues] == [
        ("routes[0].id", "duplicate key", 4),
        ("gateway", "duplicate key", 6),
    ]


def test_merge_keys_and_aliases_are_not_duplicates() -> None:
    text = "x-base: &base {a: 1}\nx-more: &more {b: 2}\nthing:\n  <<: *base\n  <<: *more\nother: *base\n"
    assert duplicate_keys(root_of(text), "t.yaml") == []


def test_a_duplicate_under_a_key_that_is_not_a_scalar_is_located_by_a_question_mark() -> None:
    [issue] = duplicate_keys(root_of("? [a]\n: {k: 1, k: 2}\n"), "t.yaml")
    assert (issue.path, issue.line) == ('["?"].k', 2)


def test_duplicate_keys_walks_a_recursive_alias_once() -> None:
    assert duplicate_keys(root_of("a: &a [*a, {k: 1, k: 2}]\n"), "t.yaml")[0].path == "a[1].k"


def test_decode_file_drops_a_byte_order_mark() -> None:
    assert decode_file("\ufeffroutes: []\n".encode(), "g.yaml") == "routes: []\n"


def test_decode_file_names_the_line_of_the_first_bad_byte() -> None:
    with pytest.raises(ConfigError) as info:
        decode_file(b"a: 1\nb: 2\nc: \xff\n", "g.yaml")
    assert info.value.issues == [ConfigIssue(file="g.yaml", path="", message="file is not valid UTF-8", line=3)]


def test_read_config_file(tmp_path: Path) -> None:
    path = tmp_path / "g.yaml"
    path.write_bytes(b"routes: []\n")
    assert read_config_file(path) == b"routes: []\n"
    with pytest.raises(ConfigError) as info:
        read_config_file(tmp_path / "missing.yaml")
    [issue] = info.value.issues
    assert issue.file == str(tmp_path / "missing.yaml")
    assert issue.message == "cannot read config file: No such file or directory"
