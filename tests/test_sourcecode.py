"""The checks that keep the code the way it is written (uvloop keeps the same file): lint, types,
the native modules' stubs, Rust formatting and clippy. They run with the test suite, so the
README's test command enforces them; each skips with a reason when its tool is not installed."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run(*command: str, env: dict[str, str] | None = None) -> None:
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, timeout=900,
                            env={**os.environ, **(env or {})})
    assert result.returncode == 0, f"{' '.join(command)}:\n{result.stdout}\n{result.stderr}"


def python_tool(module: str) -> None:
    try:
        __import__(module)
    except ImportError:
        pytest.skip(f"{module} is not installed (pip install -e '.[test]')")


def test_ruff() -> None:
    python_tool("ruff")
    run(sys.executable, "-m", "ruff", "check", ".")


def test_mypy() -> None:
    python_tool("mypy")
    run(sys.executable, "-m", "mypy")  # files and settings: [tool.mypy] in pyproject.toml


def test_stubtest() -> None:
    """gateway/_native.pyi and gateway/_proto.pyi say what the built modules define: every public
    name, signature, @final (PyO3 classes) and @disjoint_base (Cython cdef classes)."""
    python_tool("mypy")
    run(sys.executable, "-m", "mypy.stubtest", "gateway._native", "gateway._proto",
        "--allowlist", "tests/stubtest-allowlist.txt")


def test_cargo_fmt() -> None:
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    run("cargo", "fmt", "--all", "--check")


def test_cargo_clippy() -> None:
    if shutil.which("cargo") is None:
        pytest.skip("cargo is not installed")
    python_tool("Cython")  # build.rs translates pyext/ with this interpreter's Cython
    run("cargo", "clippy", "--workspace", "--all-targets", "--all-features", "--quiet", "--",
        "-D", "warnings", env={"PYO3_PYTHON": sys.executable})
