"""`${VAR}` expansion from the environment, done on the YAML node tree.

Expanding on nodes rather than on the text or on built data means every substitution knows
its path and line for an error, and a value can never turn into structure: `${X}` holding
"[a, b]" stays that string.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import yaml

from .issues import ConfigIssue, DocPath, issue_at

__all__ = ["expand_env", "expand_env_in_data", "expand_env_in_tree"]

# `$${` escapes, `${NAME}` / `${NAME:=default}` substitute, any other `${` is malformed.
_ENV_REF = re.compile(r"\$\$\{|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::=([^}]*))?\}|\$\{")
_STR_TAG = "tag:yaml.org,2002:str"
_MALFORMED = "malformed ${...} reference (expected ${NAME} or ${NAME:=default}; write $${ for a literal ${)"


def expand_env(value: str, env: Mapping[str, str]) -> tuple[str, list[str]]:
    """`value` with every reference substituted, and one message per reference that could not be.

    A reference that fails is left as written, so the other references still expand and
    all the problems of a string are reported at once.
    """
    errors: list[str] = []

    def sub(m: re.Match[str]) -> str:
        text = m.group(0)
        if text == "$${":
            return "${"
        name = m.group(1)
        if name is None:
            errors.append(_MALFORMED)
            return text
        default = m.group(2)
        found = env.get(name)
        if default is not None:
            # Shell semantics for ":=": an empty variable also takes the default.
            return found if found else default
        if found is None:
            errors.append(f"environment variable {name} is not set (use ${{{name}:=default}} for a default)")
            return text
        return found

    return _ENV_REF.sub(sub, value), errors


def expand_env_in_tree(root: yaml.Node, env: Mapping[str, str], file: str) -> list[ConfigIssue]:
    """Expand string scalars in place; strings only, so `${X}` never turns
    into structure. Typed fields still accept e.g. `port: ${PORT}` because
    decoding coerces numeric strings to the schema's type."""
    issues: list[ConfigIssue] = []
    seen: set[int] = set()  # anchors/aliases share nodes: expand once, and don't loop on recursive ones

    def scalar(node: yaml.ScalarNode, path: DocPath) -> None:
        if node.tag == _STR_TAG and "$" in node.value:
            node.value, errors = expand_env(node.value, env)
            for e in errors:
                issues.append(issue_at(file, path, e, node.start_mark.line + 1))

    def walk(node: yaml.Node, path: DocPath) -> None:
        if id(node) in seen:
            return
        seen.add(id(node))
        if isinstance(node, yaml.ScalarNode):
            scalar(node, path)
        elif isinstance(node, yaml.SequenceNode):
            for i, item in enumerate(node.value):
                walk(item, path + (i,))
        elif isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if isinstance(k, yaml.ScalarNode) and id(k) not in seen:
                    seen.add(id(k))
                    scalar(k, path + (k.value,))
                walk(v, path + ((k.value if isinstance(k, yaml.ScalarNode) else "?"),))

    walk(root, ())
    return issues


def expand_env_in_data(data: Any, env: Mapping[str, str], file: str, path: DocPath = ()
                       ) -> tuple[Any, list[ConfigIssue]]:
    """The same expansion on plain data (an Admin API body): strings and mapping keys only.
    A new structure is returned; ``data`` is not changed."""
    issues: list[ConfigIssue] = []

    def walk(value: Any, at: DocPath) -> Any:
        if isinstance(value, str):
            if "$" not in value:
                return value
            expanded, errors = expand_env(value, env)
            issues.extend(issue_at(file, at, e) for e in errors)
            return expanded
        if isinstance(value, list):
            return [walk(v, at + (i,)) for i, v in enumerate(value)]
        if isinstance(value, dict):
            return {walk(k, at + (k,)) if isinstance(k, str) else k: walk(v, at + (k,))
                    for k, v in value.items()}
        return value

    return walk(data, path), issues
