"""`gateway.config` imports nothing else of the gateway (CONTRIBUTING.md, "Layers")."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import gateway.config

PACKAGE = Path(gateway.config.__file__).parent
MODULES = sorted(PACKAGE.glob("*.py"))


def imported_modules(source: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(source.read_text("utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level == 0:
                names.append(node.module or "")
            elif node.level > 1:
                names.append("." * node.level + (node.module or ""))  # climbs out of the package
    return names


def test_every_module_is_found() -> None:
    assert {"loader.py", "schema.py", "source.py", "cross_checks.py"} <= {m.name for m in MODULES}


@pytest.mark.parametrize("module", MODULES, ids=lambda m: m.name)
def test_the_config_package_imports_nothing_else_of_the_gateway(module: Path) -> None:
    """Only gateway.requestvars, the one vocabulary of request variables (itself free of the
    rest of the gateway), for the chash key check."""
    outside = [name for name in imported_modules(module)
               if name.startswith(".") or (name.split(".")[0] == "gateway"
                                           and not name.startswith(("gateway.config",
                                                                    "gateway.requestvars")))]
    assert outside == []
