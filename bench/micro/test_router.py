"""Routing 1,000 routes (params, prefixes and exact paths mixed, like bench/router_scale.py):
gateway._native.Router (radix trie in Rust) vs a regex router (one compiled pattern per
route, tried in order: what most Python frameworks do) vs a dict (exact paths only: the
floor, it cannot match params or prefixes). Each looks up the last-added route, the worst
case of the regex list."""
import re

import pytest

from bench.peers import route_pattern
from gateway._native import Router

N = 1000
ROUTES = [route_pattern(i) for i in range(N)]
LAST_PATTERN, LAST_PATH = ROUTES[-1]
PARAM_PATTERN, PARAM_PATH = ROUTES[N - 4]  # a ":param" route near the end


def to_regex(pattern: str) -> re.Pattern:
    if pattern.endswith("/*"):
        return re.compile(re.escape(pattern[:-1]) + ".*")
    parts = [f"(?P<{p[1:]}>[^/]+)" if p.startswith(":") else re.escape(p)
             for p in pattern.split("/")]
    return re.compile("/".join(parts) + "$")


@pytest.fixture(scope="module")
def rust_router():
    return Router([([p], [], [], 0) for p, _ in ROUTES])


@pytest.fixture(scope="module")
def regex_router():
    compiled = [(to_regex(p), i) for i, (p, _) in enumerate(ROUTES)]

    def match(path: str):
        for rx, i in compiled:
            m = rx.match(path)
            if m:
                return i, m.groupdict()
        return None

    return match


def test_router_rust_last(benchmark, rust_router):
    index, params, _ = benchmark(rust_router.match, b"GET", b"api.example.com",
                                 LAST_PATH.encode())
    assert index == N - 1


def test_router_rust_param(benchmark, rust_router):
    index, params, _ = benchmark(rust_router.match, b"GET", b"api.example.com",
                                 PARAM_PATH.encode())
    assert index == N - 4 and params == [("id", "42")]


def test_router_regex_last(benchmark, regex_router):
    assert benchmark(regex_router, LAST_PATH)[0] == N - 1


def test_router_regex_param(benchmark, regex_router):
    index, params = benchmark(regex_router, PARAM_PATH)
    assert index == N - 4 and params == {"id": "42"}


def test_router_dict_exact(benchmark):
    table = {path: i for i, (pattern, path) in enumerate(ROUTES) if pattern == path}
    assert benchmark(table.get, LAST_PATH) == N - 1
