from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

SHARED = Path(__file__).resolve().parent.parent.parent / "shared"
CONFORMANCE = SHARED / "conformance"


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream("up") as up:
        yield up


@pytest.fixture
def gateway_port() -> int:
    return free_port()


@pytest.fixture
def gateway(tmp_path: Path, upstream: Upstream, gateway_port: int) -> Iterator[GatewayProcess]:
    """Two workers proxying everything to the test upstream."""
    with GatewayProcess(tmp_path, base_config(gateway_port, upstream.port)) as gw:
        yield gw
