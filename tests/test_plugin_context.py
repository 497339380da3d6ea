"""The plugin API's types and the one builder of hook chains, checked directly (no process)."""
from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

from gateway import _proto
from gateway.plugins import Context, Plugin, Response, hook_chains
from gateway.plugins.consumers import ConsumerEntry
from gateway.requestvars import RequestView

ROOT = Path(__file__).resolve().parent.parent


def test_public_names() -> None:
    assert Response is _proto.Response
    assert RequestView in Context.__mro__  # variables read the same object


def test_one_name_for_per_request_state() -> None:
    members = {name for cls in Context.__mro__ for name in vars(cls)}
    assert "state" in members
    assert "vars" not in members  # request variables live in gateway.requestvars


def test_plugins_and_examples_do_not_import_the_private_module() -> None:
    files = [*(ROOT / "gateway" / "plugins").glob("*.py"), *(ROOT / "examples").rglob("*.py")]
    for path in files:
        if path.name == "__init__.py" and path.parent.name == "plugins":
            continue  # the one re-export
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.module == "gateway._proto":
                assert node.names[0].name != "Response", path
    assert "gateway._proto import" not in (ROOT / "README.md").read_text()


def test_phase_methods_are_typed_with_context() -> None:
    for path in (ROOT / "gateway" / "plugins").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for arg in node.args.args:
                    if arg.arg == "ctx":
                        assert arg.annotation is not None, (path.name, node.name)
                        assert ast.unparse(arg.annotation) in ("Context", "RequestView"), \
                            (path.name, node.name, ast.unparse(arg.annotation))


class _P(Plugin):
    name = "p"

    def __init__(self, name: str, priority: int, credential: bool = False) -> None:
        super().__init__(None)
        self.label, self.priority, self.credential = name, priority, credential  # type: ignore[misc]

    def access(self, ctx: Any) -> None: ...

    def log(self, ctx: Any) -> None: ...


def labels(hooks: tuple[Any, ...]) -> list[str]:
    return [hook.__self__.label for hook in hooks]


def test_hook_chains_order_by_priority_ties_in_given_order() -> None:
    a, b, c = _P("a", 10), _P("b", 20), _P("c", 10)
    chains = hook_chains([a, b, c])
    assert labels(chains["access"]) == ["b", "a", "c"]
    assert labels(chains["log"]) == ["b", "a", "c"]
    assert chains["rewrite"] == () and chains["body_filter"] == ()


def test_consumers_use_the_same_builder() -> None:
    plugins = {"x": _P("x", 5), "y": _P("y", 50), "cred": _P("cred", 99, credential=True)}
    entry = ConsumerEntry("alice", None, {}, plugins)  # type: ignore[arg-type]
    assert entry.phase_hooks == hook_chains([plugins["x"], plugins["y"]])
    assert labels(entry.phase_hooks["access"]) == ["y", "x"]
