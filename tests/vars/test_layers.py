"""The request variables are one package that the config loader and the plugins share: it
imports nothing else of the gateway, and no other module keeps a vocabulary of its own."""
from __future__ import annotations

import ast
from pathlib import Path

GATEWAY = Path(__file__).resolve().parents[2] / "gateway"


def gateway_imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
    return {name for name in found if name == "gateway" or name.startswith("gateway.")}


def test_requestvars_imports_only_itself() -> None:
    for path in (GATEWAY / "requestvars").glob("*.py"):
        outside = {m for m in gateway_imports(path) if not m.startswith("gateway.requestvars")}
        assert not outside, (path.name, outside)


def test_config_uses_requestvars_not_plugins() -> None:
    for path in (GATEWAY / "config").glob("*.py"):
        imports = gateway_imports(path)
        assert not any(m.startswith("gateway.plugins") for m in imports), path.name
    # the chash key check (the one place the config names request variables)
    assert "gateway.requestvars.table" in gateway_imports(GATEWAY / "config" / "cross_checks.py")


def test_no_second_vocabulary() -> None:
    """Variable names are looked up in the table; no module lists them on its own."""
    for path in GATEWAY.rglob("*.py"):
        if path.parent.name == "requestvars":
            continue
        text = path.read_text()
        for marker in ('"remote_port":', '"request_uri":', '"consumer_group_id":'):
            assert marker not in text, (path, marker)
