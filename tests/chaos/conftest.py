from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.gateway import base_config
from tests.support.upstream import Upstream

#: Upstream timeouts of the chaos configs: short, so a stalled upstream's 504 comes quickly.
TIMEOUT = {"connect": 1.0, "send": 1.0, "read": 1.0}


@pytest.fixture
def steady() -> Iterator[Upstream]:
    """The upstream nothing happens to: its clients must keep being served."""
    with Upstream("steady") as up:
        yield up


def chaos_config(port: int, steady_port: int, victim_port: int, **gateway: Any) -> dict[str, Any]:
    """Host victim.test goes to the upstream the test breaks; every other host to the steady
    one. Retries are off, so each client sees the failure itself, not a retry's success."""
    config = base_config(port, **gateway)
    config["upstreams"] = [
        {"id": "steady", "nodes": [{"host": "127.0.0.1", "port": steady_port}],
         "timeout": TIMEOUT},
        {"id": "victim", "nodes": [{"host": "127.0.0.1", "port": victim_port}],
         "timeout": TIMEOUT, "retries": 0},
    ]
    config["routes"] = [
        {"id": "victim", "uri": "/*", "hosts": ["victim.test"], "upstream_id": "victim"},
        {"id": "steady", "uri": "/*", "upstream_id": "steady"},
    ]
    return config
