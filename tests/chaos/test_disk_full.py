"""The disk fills up under the access log while clients run: every request is still served, the
failure is logged once (not per request, not per flush), and when space comes back the log says
how many lines were lost and writes again."""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.chaos.conftest import chaos_config
from tests.chaos.load import LoadPool, assert_all_served
from tests.support.gateway import GatewayProcess, wait_until
from tests.support.upstream import Upstream, free_port

HOST = "steady.test"
CANNOT = "cannot be written (No space left on device)"


@pytest.fixture
def tiny_disk(tmp_path: Path) -> Iterator[Path]:
    """A 1 MiB tmpfs, filled up: a real file system out of space (until ``filler`` goes)."""
    mount = tmp_path / "disk"
    mount.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tiny tmpfs for a full disk needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(mount)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        filler = mount / "filler"
        with open(filler, "wb") as fh:
            try:
                fh.write(b"\0" * (2 << 20))
            except OSError:
                pass
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_access_log_on_a_full_disk_is_reported_once_and_requests_are_served(
        tmp_path: Path, steady: Upstream, tiny_disk: Path) -> None:
    access_log = tiny_disk / "access.log"
    config = chaos_config(free_port(), steady.port, steady.port, access_log=str(access_log))
    with GatewayProcess(tmp_path, config, workers=1) as gw, \
            LoadPool(gw.port, {HOST: ("GET", "/", None, 4)}) as load:
        wait_until(lambda: CANNOT in gw.logs(), 10,
                   lambda: f"the full disk was never reported:\n{gw.logs()}")
        full = time.monotonic()
        time.sleep(3.0)  # three more periodic flushes, thousands of requests, all failing
        load.wait_for(HOST, 100, after=full)
        assert gw.logs().count("cannot be written") == 1, gw.logs()[-3000:]
        assert "Traceback" not in gw.logs()

        (tiny_disk / "filler").unlink()  # space again
        wait_until(lambda: "is written again" in gw.logs(), 5,
                   lambda: f"recovery never reported:\n{gw.logs()[-3000:]}")
        assert_all_served(load.stop(), 101)
    assert "lines were dropped" in gw.logs()
    lines = access_log.read_text().splitlines()
    assert lines and all('"GET / HTTP/1.1" 200' in line for line in lines[-5:]), lines[-5:]
