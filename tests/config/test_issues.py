"""Issues, the error that carries them, and the document paths they are located by."""

from __future__ import annotations

import pytest

from gateway.config.issues import ConfigError, ConfigIssue, format_path, issue_at, parse_path


@pytest.mark.parametrize(
    ("segments", "text"),
    [
        ((), ""),
        (("gateway",), "gateway"),
        (("routes", 2, "upstream_id"), "routes[2].upstream_id"),
        (("upstreams", 0, "nodes", 1, "host"), "upstreams[0].nodes[1].host"),
        (("routes", 0, "plugins", "key-auth"), "routes[0].plugins.key-auth"),
        (("consumers", 0, "labels", "app.kubernetes.io/name"), 'consumers[0].labels["app.kubernetes.io/name"]'),
        (("x", 'say "hi"'), 'x["say \\"hi\\""]'),
    ],
)
def test_format_path_and_parse_path_are_inverses(segments: tuple[str | int, ...], text: str) -> None:
    assert format_path(segments) == text
    assert parse_path(text) == segments


def test_a_key_that_is_not_a_plain_word_is_quoted_even_first() -> None:
    assert format_path(["a b", 0]) == '["a b"][0]'


@pytest.mark.parametrize("text", ["routes..id", "routes[x]", "routes[0]id", 'a["unterminated]', "a b"])
def test_parse_path_rejects_what_format_path_never_writes(text: str) -> None:
    assert parse_path(text) is None


def test_issue_text_names_file_line_and_path_when_known() -> None:
    assert str(ConfigIssue(file="g.yaml", path="routes[0].id", message="bad", line=4)) == "g.yaml:4: routes[0].id: bad"
    assert str(ConfigIssue(file="g.yaml", path="routes[0].id", message="bad")) == "g.yaml: routes[0].id: bad"
    assert str(ConfigIssue(file="g.yaml", path="", message="empty", line=1)) == "g.yaml:1: empty"
    assert str(ConfigIssue(file="g.yaml", path="", message="empty")) == "g.yaml: empty"


def test_issue_at_formats_the_path() -> None:
    issue = issue_at("g.yaml", ("routes", 1, "uri"), "bad uri", 7)
    assert issue == ConfigIssue(file="g.yaml", path="routes[1].uri", message="bad uri", line=7)


def test_config_error_keeps_every_issue_and_prints_one_per_line() -> None:
    issues = [issue_at("a.yaml", ("routes",), "one"), issue_at("a.yaml", (), "two", 3)]
    error = ConfigError(issues)
    assert error.issues == issues
    assert error.issues is not issues  # a copy: the caller's list may go on changing
    assert str(error) == "a.yaml: routes: one\na.yaml:3: two"
    assert error.args == ("a.yaml: routes: one\na.yaml:3: two",)


def test_an_issue_cannot_be_changed_once_made() -> None:
    issue = issue_at("g.yaml", ("routes",), "bad")
    with pytest.raises(AttributeError):
        issue.line = 3  # type: ignore[misc]
    assert {issue, issue_at("g.yaml", ("routes",), "bad")} == {issue}  # hashable: equal issues collapse
