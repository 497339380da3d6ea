"""The access log (README: `gateway.access_log`): one line per request with the client,
method, path, status, bytes and route, written within a second; never a credential."""
from __future__ import annotations

import time
from pathlib import Path

from tests.support.gateway import GatewayProcess, base_config, http_get
from tests.support.upstream import Upstream, free_port


def test_access_log_has_a_line_per_request_and_no_secrets(tmp_path: Path, upstream: Upstream) -> None:
    log = tmp_path / "access.log"
    config = base_config(free_port(), upstream.port, access_log=str(log))
    with GatewayProcess(tmp_path, config, workers=1) as gw:
        http_get(gw.port, "/echo/one?apikey=s3cret-query", {"Authorization": "Bearer s3cret-h"})
        http_get(gw.port, "/status/404")
        deadline = time.monotonic() + 5  # flushed each second, not only when the buffer fills
        while len(log.read_text().splitlines() if log.exists() else []) < 2:
            assert time.monotonic() < deadline, "the access log lines were not written"
            time.sleep(0.05)
        lines = log.read_text().splitlines()
    assert len(lines) == 2, lines
    assert lines[0].startswith("127.0.0.1 - [")
    assert '"GET /echo/one HTTP/1.1" 200 ' in lines[0] and "route=all" in lines[0]
    assert '"GET /status/404 HTTP/1.1" 404 ' in lines[1]
    assert "s3cret" not in log.read_text()
