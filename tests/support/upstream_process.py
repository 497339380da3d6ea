"""An upstream (tests.support.upstream's h11 server) in a process of its own, for tests that kill
a node while load runs: SIGKILL gives it no goodbye, the kernel resets or closes its connections
as it would for a crashed backend.

    with UpstreamProcess("a") as a:
        ...a.port...
        a.kill()
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]


class UpstreamProcess:
    def __init__(self, name: str) -> None:
        self.name = name
        self.port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    def __enter__(self) -> UpstreamProcess:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.support.upstream_process", self.name], cwd=ROOT,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"upstream process {self.name} did not start")
        self.port = int(line)
        return self

    def kill(self) -> None:
        """SIGKILL, and wait until the process is gone."""
        assert self.proc is not None
        self.proc.kill()
        self.proc.wait(10)

    def __exit__(self, *exc: Any) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)
        if self.proc is not None and self.proc.stdin is not None:
            self.proc.stdin.close()
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def main() -> None:
    from tests.support.upstream import Upstream

    with Upstream(sys.argv[1]) as upstream:
        print(upstream.port, flush=True)
        sys.stdin.read()  # serves until the test closes our stdin (or kills us)


if __name__ == "__main__":
    main()
