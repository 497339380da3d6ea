"""How a configuration problem is reported.

Every problem becomes a :class:`ConfigIssue` naming the file, the path in the document
("routes[2].upstream_id") and, when known, the line; problems are collected and raised
together as one :class:`ConfigError`, so a user fixes a file in one round, not one error
at a time.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence

import msgspec

__all__ = ["ConfigError", "ConfigIssue", "DocPath", "Segment", "format_path", "issue_at", "parse_path"]

#: One step into a document: a mapping key or a list index.
Segment = str | int
#: A location in a document, ("routes", 2, "upstream_id"); () is the root.
DocPath = tuple[Segment, ...]


class ConfigIssue(msgspec.Struct, frozen=True, kw_only=True):
    """One problem in a configuration document."""

    file: str
    #: Document path, e.g. "routes[2].upstream_id"; "" for the document root.
    path: str
    message: str
    #: 1-based line of the offending YAML node, when known.
    line: int | None = None

    def __str__(self) -> str:
        where = self.file if self.line is None else f"{self.file}:{self.line}"
        if self.path:
            return f"{where}: {self.path}: {self.message}"
        return f"{where}: {self.message}"


class ConfigError(Exception):
    """A configuration was rejected; `issues` lists every reason."""

    def __init__(self, issues: Sequence[ConfigIssue]) -> None:
        self.issues: list[ConfigIssue] = list(issues)
        super().__init__("\n".join(str(i) for i in self.issues))

    def __str__(self) -> str:
        return "\n".join(str(i) for i in self.issues)


_SIMPLE_KEY = re.compile(r"[A-Za-z0-9_\-]+\Z")
_PATH_TOKEN = re.compile(r'\.?([A-Za-z0-9_\-]+)|\[(\d+)\]|\[("(?:[^"\\]|\\.)*")\]')


def format_path(path: Iterable[Segment]) -> str:
    """("routes", 2, "upstream_id") -> "routes[2].upstream_id"."""
    out: list[str] = []
    for seg in path:
        if isinstance(seg, int):
            out.append(f"[{seg}]")
        elif _SIMPLE_KEY.match(seg):
            out.append(f".{seg}" if out else seg)
        else:
            # Keys like label names ("app.kubernetes.io/name") would be ambiguous unquoted.
            out.append(f"[{json.dumps(seg)}]")
    return "".join(out)


def parse_path(text: str) -> DocPath | None:
    """Inverse of format_path; None when `text` is not in that syntax.

    Issues carry their path as text (that is what users read); turning it back into
    segments is how a line number is found for an issue that was made without one.
    """
    segs: list[Segment] = []
    pos = 0
    while pos < len(text):
        m = _PATH_TOKEN.match(text, pos)
        if m is None or (m.group(1) is not None and pos > 0 and text[pos] != "."):
            return None
        if m.group(1) is not None:
            segs.append(m.group(1))
        elif m.group(2) is not None:
            segs.append(int(m.group(2)))
        else:
            segs.append(json.loads(m.group(3)))
        pos = m.end()
    return tuple(segs)


def issue_at(file: str, path: DocPath, message: str, line: int | None = None) -> ConfigIssue:
    """An issue located by path segments rather than by already formatted text."""
    return ConfigIssue(file=file, path=format_path(path), message=message, line=line)
