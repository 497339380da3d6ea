"""pytest-benchmark micro-benchmarks of the Rust core through its Python API, each next to the
pure-Python (or C-accelerated Python) baseline a Python user would otherwise use.

    pip install -e '.[bench]'
    python -m pytest bench/micro                       # all, with pytest-benchmark's table
    python -m pytest bench/micro -k router --benchmark-sort=mean

Not collected by the default ``python -m pytest`` (testpaths = tests); skipped as a whole when
pytest-benchmark or the built gateway is missing.
"""
import pytest

pytest.importorskip("pytest_benchmark")
pytest.importorskip("gateway._native", reason="the gateway is not built (pip install -e .)")
