"""``python -m tests.chaos.upstream_process PORT NAME``: the test upstream in a process of its
own, so a chaos test can SIGKILL it (the kernel then resets its connections) or SIGSTOP it (it
still completes handshakes, and answers nothing)."""
from __future__ import annotations

import sys
import threading

from tests.support.upstream import Upstream


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    with Upstream(name, port=port):
        print("ready", flush=True)
        threading.Event().wait()


if __name__ == "__main__":
    main()
