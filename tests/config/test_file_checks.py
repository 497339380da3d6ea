"""The checks only a whole file can fail, and the one choice that selects them."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.config import ConfigError, parse_config_file, parse_config_text
from gateway.config.file_checks import END_MARKER, FileChecks, file_issues

EMPTY = "the config file is empty (no YAML document in it)"
INCOMPLETE = ("no `gateway` or `routes` section: an incomplete file? "
              "(write a temp file and rename it over the config)")
NO_MARKER = "the file does not end with a #END line: not applied until the writer finishes"


def messages(text: str, data: Any, checks: FileChecks) -> list[str]:
    return [i.message for i in file_issues(text, data, "g.yaml", checks)]


@pytest.mark.parametrize("data", [None, {"upstreams": []}, {"gateway": {"require_end_marker": True}}])
def test_a_text_that_is_not_a_file_passes_them_all(data: Any) -> None:
    assert file_issues("", data, "g.yaml", FileChecks.NONE) == []


@pytest.mark.parametrize("checks", [FileChecks.FILE, FileChecks.RELOAD])
def test_a_file_must_hold_a_document(checks: FileChecks) -> None:
    assert file_issues("# nothing\n", None, "g.yaml", checks)[0].message == EMPTY


def test_only_a_reload_must_keep_a_gateway_or_routes_section() -> None:
    assert messages("upstreams: []\n", {"upstreams": []}, FileChecks.FILE) == []
    assert messages("upstreams: []\n", {"upstreams": []}, FileChecks.RELOAD) == [INCOMPLETE]
    assert messages("routes: []\n", {"routes": []}, FileChecks.RELOAD) == []
    assert messages("gateway: {}\n", {"gateway": {}}, FileChecks.RELOAD) == []


@pytest.mark.parametrize("checks", [FileChecks.FILE, FileChecks.RELOAD])
def test_require_end_marker_wants_the_marker_as_the_last_line(checks: FileChecks) -> None:
    data = {"gateway": {"require_end_marker": True}}
    text = "gateway: {require_end_marker: true}\n"
    [issue] = file_issues(text, data, "g.yaml", checks)
    assert (issue.path, issue.message) == ("gateway.require_end_marker", NO_MARKER)
    assert file_issues(text + END_MARKER + "\n  \n\n", data, "g.yaml", checks) == []
    assert messages(text + END_MARKER + "\nroutes: []\n", data, checks) == [NO_MARKER]
    assert messages(text + "# " + END_MARKER + "\n", data, checks) == [NO_MARKER]
    assert messages(text, {"gateway": {"require_end_marker": False}}, checks) == []


def test_the_entry_points_take_the_same_choice() -> None:
    with pytest.raises(ConfigError, match="empty"):
        parse_config_text("# nothing\n", file_checks=FileChecks.FILE)
    with pytest.raises(ConfigError, match="incomplete"):
        parse_config_text("upstreams: []\n", file_checks=FileChecks.RELOAD)
    assert parse_config_file(b"# nothing\n", "g.yaml", file_checks=FileChecks.NONE).routes == []
    with pytest.raises(ConfigError, match="empty"):
        parse_config_file(b"# nothing\n", "g.yaml")  # a file is checked as a file unless told otherwise
