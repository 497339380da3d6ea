"""The one template renderer: text with ``$name`` / ``${name}`` request variables and, where a
regex matched, its groups ``$0``..``$9`` / ``${N}``; compiled once when the config loads.

A missing variable renders as "" (nginx's rule). A ``$`` not followed by a name is kept as
text. ``$1`` where no regex groups exist, and an unknown variable name, are config errors.
Used by every plugin that puts request data into text (proxy-rewrite's ``uri``, ``host`` and
headers, response-rewrite's headers, fault-injection's and api-breaker's responses), by the
``var_combination`` limit keys, and with ``variables=False`` for regex replacements that take
only groups (proxy-rewrite's ``regex_uri``, response-rewrite's ``filters``).
"""
from __future__ import annotations

import re
from collections.abc import Callable, Sequence

from gateway.requestvars.table import Getter, RequestView, to_text, var_getter

__all__ = ["Template", "compile_template"]

_REFERENCE = re.compile(r"\$(?:\{([A-Za-z_][A-Za-z0-9_]*|[0-9]+)\}|([0-9])|([A-Za-z_][A-Za-z0-9_]*))")
_GROUP = re.compile(r"\$(?:\{([0-9]+)\}|([0-9]))")

Groups = Sequence["str | None"]


class Template:
    """Compiled text: ``render(ctx, groups)`` gives the text for one request. ``static`` is
    True when the text names nothing (``text`` is then the whole result, at no cost)."""

    __slots__ = ("text", "pieces", "static", "names", "render_found")

    def __init__(self, text: str, pieces: tuple[str | int | Getter, ...], names: tuple[str, ...]):
        self.text = text
        #: literal text, group numbers and variable getters, in order
        self.pieces = pieces
        #: the variables the text names, in order
        self.names = names
        self.static = all(isinstance(piece, str) for piece in pieces)
        #: ``render_found(ctx)``: the text, and whether any variable had a non-empty value
        #: (for keys that fall back to another when every variable they name is missing)
        self.render_found: Callable[[RequestView], tuple[str, bool]] = _found_renderer(self)

    def render(self, ctx: RequestView | None = None, groups: Groups = ()) -> str:
        """The text for this request (``ctx`` may be None when the template names no
        variables) with ``groups`` the regex match's groups, ``groups[0]`` the whole match."""
        if self.static:
            return self.text
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
            elif isinstance(piece, int):
                if piece < len(groups):
                    group = groups[piece]
                    if group is not None:
                        out.append(group)
            else:
                value = piece(ctx)  # type: ignore[arg-type]
                if value is not None:
                    out.append(value if value.__class__ is str else to_text(value))
        return "".join(out)

    def __repr__(self) -> str:
        return f"Template({self.text!r})"


def _found_renderer(template: Template) -> Callable[[RequestView], tuple[str, bool]]:
    """``render_found`` of ``template`` as a closure: limit keys call it on every request."""
    if template.static:
        result = (template.text, True)
        return lambda ctx: result
    pieces = tuple(piece for piece in template.pieces if not isinstance(piece, int))

    def render_found(ctx: RequestView) -> tuple[str, bool]:
        out: list[str] = []
        found = False
        for piece in pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            value = piece(ctx)
            if value.__class__ is not str:
                if value is None:
                    continue
                value = to_text(value)
            if value:
                found = True
                out.append(value)
        return "".join(out), found
    return render_found


def compile_template(text: str, *, captures: bool = False, variables: bool = True) -> Template:
    """``text`` compiled. ``captures``: ``$0``..``$9`` and ``${N}`` are regex groups given to
    ``render``. ``variables=False``: only groups are references, every other ``$`` is text.
    ValueError for an unknown variable, or a group reference without ``captures``."""
    pieces: list[str | int | Getter] = []
    names: list[str] = []
    pos = 0
    pattern = _REFERENCE if variables else _GROUP
    for match in pattern.finditer(text):
        name = next(group for group in match.groups() if group is not None)
        piece: str | int | Getter
        if name.isdigit():
            if not captures:
                raise ValueError(f"'{match.group(0)}' in {text!r}: regex groups exist only in a "
                                 "regex replacement (e.g. with regex_uri)")
            piece = int(name)
        else:
            piece = var_getter(name)
            names.append(name)
        if match.start() > pos:
            pieces.append(text[pos:match.start()])
        pieces.append(piece)
        pos = match.end()
    if pos < len(text):
        pieces.append(text[pos:])
    return Template(text, tuple(pieces), tuple(names))
