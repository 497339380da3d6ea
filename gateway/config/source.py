"""Reading a config document: file bytes to text, text to one YAML node tree, the tree to
plain data; and what only the tree knows: lines and duplicate keys.

The text is parsed once. The node tree is kept because `${VAR}` expansion works on it
(every substitution knows its path and line), and line numbers are looked up in it only
when there is an issue to report, so the happy path pays for nothing else.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from types import TracebackType
from typing import Any

import msgspec
import yaml

from .issues import ConfigError, ConfigIssue, DocPath, issue_at, parse_path

__all__ = ["YamlDocument", "decode_file", "duplicate_keys", "line_for", "read_config_file", "with_lines"]


class _Loader(yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader):  # type: ignore[misc]
    """Safe loader without YAML 1.1 timestamps: config values are JSON-like,
    and a date turning into a `datetime` would break msgpack/JSON round trips."""


_TIMESTAMP_TAG = "tag:yaml.org,2002:timestamp"
_Loader.yaml_implicit_resolvers = {
    first: [(tag, rx) for tag, rx in resolvers if tag != _TIMESTAMP_TAG]
    for first, resolvers in yaml.SafeLoader.yaml_implicit_resolvers.items()
}


def read_config_file(path: str | os.PathLike[str]) -> bytes:
    """The raw bytes of a config file; an unreadable file is a ConfigError like any other."""
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            return fh.read()
    except OSError as exc:
        message = f"cannot read config file: {exc.strerror or exc}"
        raise ConfigError([ConfigIssue(file=name, path="", message=message)]) from None


def decode_file(raw: bytes, name: str) -> str:
    """A config file's text; a byte-order mark (Windows editors write one) is dropped."""
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError([ConfigIssue(file=name, path="", message="file is not valid UTF-8", line=line)]) from None


class YamlDocument:
    """One YAML text composed into its node tree; `root` is None for a text with no document.

    Use it as a context manager: the (libyaml) loader behind it holds a parser to release.
    """

    def __init__(self, text: str, source: str) -> None:
        self.source = source
        self._loader = _Loader(text)
        try:
            self.root: yaml.Node | None = self._loader.get_single_node()
        except yaml.MarkedYAMLError as exc:
            self._loader.dispose()
            mark = exc.problem_mark or exc.context_mark
            parts = [p for p in (exc.context, exc.problem) if p]
            line = mark.line + 1 if mark is not None else None
            message = "YAML syntax error: " + ", ".join(parts)
            raise ConfigError([ConfigIssue(file=source, path="", message=message, line=line)]) from None
        except yaml.YAMLError as exc:
            self._loader.dispose()
            raise ConfigError([ConfigIssue(file=source, path="", message=f"YAML error: {exc}")]) from None

    def to_data(self) -> Any:
        """Plain Python data built from the node tree as it is now (after any expansion)."""
        if self.root is None:
            return None
        try:
            return self._loader.construct_document(self.root)
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            message = f"YAML error: {getattr(exc, 'problem', exc)}"
            line = mark.line + 1 if mark else None
            raise ConfigError([ConfigIssue(file=self.source, path="", message=message, line=line)]) from None

    def close(self) -> None:
        self._loader.dispose()

    def __enter__(self) -> YamlDocument:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def line_for(root: yaml.Node | None, path: DocPath) -> int | None:
    """1-based line of the node at `path`, or of its deepest existing ancestor."""
    if root is None:
        return None
    node: yaml.Node = root
    line = node.start_mark.line + 1
    for seg in path:
        if isinstance(node, yaml.MappingNode):
            pair = None
            if isinstance(seg, int):
                # The APISIX nodes mapping {"host:port": weight} is turned into
                # a list; its i-th element is the mapping's i-th key.
                if 0 <= seg < len(node.value):
                    pair = node.value[seg]
            else:
                for k, v in node.value:
                    if isinstance(k, yaml.ScalarNode) and k.value == seg:
                        pair = (k, v)
            if pair is None:
                return line
            key, value = pair
            # The key's line, not the value's: a block collection starts on
            # the line after its key, and the key is what people look for.
            line = key.start_mark.line + 1
            node = value
        elif isinstance(node, yaml.SequenceNode) and isinstance(seg, int):
            if not 0 <= seg < len(node.value):
                return line
            node = node.value[seg]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def with_lines(issues: Iterable[ConfigIssue], root: yaml.Node | None) -> list[ConfigIssue]:
    """The issues, each one that has no line given the line its path points at in `root`.

    Checks on decoded data (msgspec, cross checks, plugins) know paths, not lines.
    """
    out: list[ConfigIssue] = []
    for it in issues:
        if it.line is None and root is not None:
            segs = parse_path(it.path)
            if segs is not None:
                it = msgspec.structs.replace(it, line=line_for(root, segs))
        out.append(it)
    return out


def duplicate_keys(root: yaml.Node, file: str) -> list[ConfigIssue]:
    """YAML silently keeps the last of two equal keys; for a config that
    hides a mistake (e.g. two `plugins:` blocks), so it is an error here."""
    issues: list[ConfigIssue] = []
    seen: set[int] = set()

    def walk(node: yaml.Node, path: DocPath) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))
        elif isinstance(node, yaml.MappingNode):
            keys: set[str] = set()
            for k, v in node.value:
                name = k.value if isinstance(k, yaml.ScalarNode) else "?"
                if isinstance(k, yaml.ScalarNode) and k.value != "<<":
                    if k.value in keys:
                        issues.append(issue_at(file, path + (name,), "duplicate key", k.start_mark.line + 1))
                    keys.add(k.value)
                walk(v, path + (name,))

    walk(root, ())
    return issues
