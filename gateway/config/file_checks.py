"""What only a whole file can get wrong: being empty, or cut short by a writer that has not
finished. A string in code is none of that, so the caller says which checks apply."""

from __future__ import annotations

import enum
from typing import Any

from .issues import ConfigIssue

__all__ = ["END_MARKER", "FileChecks", "file_issues"]

#: A line of its own at the end of a file: the writer finished (APISIX standalone mode's marker).
END_MARKER = "#END"


class FileChecks(enum.Enum):
    """Which of the file checks a YAML text must pass."""

    #: A text that is not a config file (a string in code, the embedded default).
    NONE = "none"
    #: A whole config file: it must hold a document, and honour `require_end_marker`.
    FILE = "file"
    #: A file about to replace the running config: also, it must not drop every route.
    RELOAD = "reload"


def file_issues(text: str, data: Any, name: str, checks: FileChecks) -> list[ConfigIssue]:
    """The file checks `checks` selects, on a file's text and the data built from it.

    A reload to a config with no `gateway` and no `routes` section is never what anybody
    meant: it would drop every route (and the admin key) of the running gateway.
    """
    if checks is FileChecks.NONE:
        return []
    if data is None:
        return [ConfigIssue(file=name, path="", message="the config file is empty (no YAML document in it)")]
    if checks is FileChecks.RELOAD and isinstance(data, dict) and "gateway" not in data and "routes" not in data:
        message = ("no `gateway` or `routes` section: an incomplete file? "
                   "(write a temp file and rename it over the config)")
        return [ConfigIssue(file=name, path="", message=message)]
    gateway = data.get("gateway") if isinstance(data, dict) else None
    if isinstance(gateway, dict) and gateway.get("require_end_marker") is True and not _ends_with_marker(text):
        message = f"the file does not end with a {END_MARKER} line: not applied until the writer finishes"
        return [ConfigIssue(file=name, path="gateway.require_end_marker", message=message)]
    return []


def _ends_with_marker(text: str) -> bool:
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return bool(lines) and lines[-1] == END_MARKER
