"""The config file as text cut at its resources, so that an Admin API write re-renders one
resource instead of the whole document (a ruamel round trip of 10k routes takes over a second).

The file is read once with PyYAML's C composer, which gives each node's place: every block list
of resources (``routes:``, ``upstreams:``, ...) is cut into items, each the text of one
resource (its lines, a comment at the end of its last line included) followed by the comment and
blank lines up to the next one. A write replaces one item's own lines with the resource rendered
by ruamel (as the whole-document dump renders it, re-indented to the list's column), removes
them, or adds an item after the last one; every other byte of the file stays as it was.
The lines after an item (a comment written above the next resource) stay in place when the item
is replaced or removed.

Where the file is not cut this way (a section in flow style ``routes: [...]``, a section not
there yet, ``global_rules`` in its one-rule form, ``plugin_metadata``, a list item whose dash is
alone on its line, line breaks other than ``\\n`` and ``\\r\\n``), :meth:`SplicedFile.edited`
returns None and the caller renders the whole document.
"""
from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import yaml

_Loader = yaml.CSafeLoader if yaml.__with_libyaml__ else yaml.SafeLoader
_DASH = re.compile(r"( *)- +\Z")
#: Line breaks YAML counts that str.split("\n") would not (or would count differently).
_OTHER_BREAKS = re.compile("\r(?!\n)|[\x85\u2028\u2029]")


@dataclass
class Section:
    #: the column of the items' dashes
    dash: int
    #: each item's name
    names: list[str] = field(default_factory=list)
    #: each item's body then its trailing lines (flat lists: 10k items are copied, searched
    #: and joined at C speed)
    texts: list[str] = field(default_factory=list)


class SplicedFile:
    def __init__(self, pieces: list[str | Section], sections: dict[str, Section]) -> None:
        self.pieces = pieces
        self.sections = sections

    @classmethod
    def parse(cls, text: str, key_fields: Mapping[str, str]) -> SplicedFile:
        """``key_fields``: section name -> the field naming its resources (``routes`` -> ``id``)."""
        empty = cls([text], {})
        if _OTHER_BREAKS.search(text):
            return empty
        try:
            root = yaml.compose(text, Loader=_Loader)
        except yaml.YAMLError:
            return empty
        if not isinstance(root, yaml.MappingNode):
            return empty
        lines = text.split("\n")
        offsets = [0]
        for line in lines:
            offsets.append(offsets[-1] + len(line) + 1)

        def at(line: int) -> int:
            return min(offsets[line], len(text))

        found: list[tuple[int, int, str, Section]] = []  # (first line, end line, name, section)
        keys = root.value
        for k, (key, value) in enumerate(keys):
            name = str(key.value) if isinstance(key, yaml.ScalarNode) else ""
            if name not in key_fields or not isinstance(value, yaml.SequenceNode) \
                    or value.flow_style or not value.value:
                continue
            end = keys[k + 1][0].start_mark.line if k + 1 < len(keys) else len(lines)
            section = _section(value.value, key_fields[name], lines, end,
                               lambda a, b: text[at(a):at(b)] if b > a else "")
            if section is not None:
                first = value.value[0].start_mark.line
                found.append((first, end, name, section))
        pieces: list[str | Section] = []
        cursor = 0
        for first, end, _name, section in sorted(found, key=lambda f: f[0]):
            pieces.append(text[at(cursor):at(first)])
            pieces.append(section)
            cursor = end
        pieces.append(text[at(cursor):])
        return cls(pieces, {name: section for _f, _e, name, section in found})

    def render(self) -> str:
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
            else:
                out.extend(piece.texts)
        return "".join(out)

    def edited(self, section_name: str, name: str,
               render: Callable[[], str] | None) -> tuple[str, Callable[[], None]] | None:
        """The file's text with resource ``name`` of the section replaced or added (``render``
        gives its text as a one-item list at column 0) or removed (None), and what makes this
        the file's state once it is written. None: the section is not cut (see above)."""
        section = self.sections.get(section_name)
        if section is None:
            return None
        names, texts = list(section.names), list(section.texts)
        index = names.index(name) if name in names else -1
        if render is None:
            if index <= 0:  # missing; or the first, whose following lines need a new owner
                return None
            texts[2 * index - 1] += texts[2 * index + 1]  # the lines below it stay where they were
            del texts[2 * index:2 * index + 2]
            del names[index]
        else:
            body = _indented(render(), section.dash)
            if index >= 0:
                texts[2 * index] = body
            elif names:
                texts[-1:] = ["", body, texts[-1]]  # the list's following lines stay after it
                names.append(name)
            else:
                return None
        before = section.names, section.texts
        section.names, section.texts = names, texts
        text = self.render()
        section.names, section.texts = before

        def keep() -> None:
            section.names, section.texts = names, texts
        return text, keep


def _section(nodes: list[yaml.Node], key_field: str, lines: list[str], end: int,
             cut: Callable[[int, int], str]) -> Section | None:
    """The items of one block list; ``cut(a, b)``: the text of lines a..b-1."""
    starts: list[int] = []
    names: list[str] = []
    dash = -1
    for node in nodes:
        line, column = node.start_mark.line, node.start_mark.column
        m = _DASH.match(lines[line][:column]) if line < len(lines) else None
        name = _key(node, key_field)
        if m is None or name is None or (dash >= 0 and len(m.group(1)) != dash):
            return None
        dash = len(m.group(1))
        starts.append(line)
        names.append(name)
    texts: list[str] = []
    for i, node in enumerate(nodes):
        last = _last_line(node)
        following = starts[i + 1] if i + 1 < len(nodes) else end
        if last >= following:
            return None
        texts += [cut(starts[i], last + 1), cut(last + 1, following)]
    return Section(dash, names, texts)


def _key(node: yaml.Node, key_field: str) -> str | None:
    if not isinstance(node, yaml.MappingNode):
        return None
    for key, value in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value == key_field and isinstance(value, yaml.ScalarNode):
            return str(value.value)
    return None


def _last_line(node: yaml.Node) -> int:
    """The last line holding any of the node's text (a block collection ends where the next
    token starts, after any comment: its children tell where its text ends)."""
    last = node.start_mark.line
    block = isinstance(node, (yaml.MappingNode, yaml.SequenceNode)) and not node.flow_style
    if not block:
        end = node.end_mark
        last = max(last, end.line - 1 if end.column == 0 else end.line)
    if isinstance(node, yaml.MappingNode):
        for key, value in node.value:
            last = max(last, _last_line(key), _last_line(value))
    elif isinstance(node, yaml.SequenceNode):
        for value in node.value:
            last = max(last, _last_line(value))
    return last


def _indented(text: str, dash: int) -> str:
    """A one-item list rendered at any column, moved to column ``dash``."""
    lines = text.rstrip("\n").split("\n")
    strip = len(lines[0]) - len(lines[0].lstrip(" "))
    pad = " " * dash
    return "".join(pad + line[strip:] + "\n" if line.strip() else "\n" for line in lines)
