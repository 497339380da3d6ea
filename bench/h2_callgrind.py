"""Instructions per proxied HTTP/2 (h2c) request, counted by `valgrind --tool=callgrind`.

    python bench/h2_callgrind.py [--requests 1000]

One worker's code (``plugin_cost.py serve``: the same `Server` and compiled runtime a worker
runs, no plugins) proxies to an nginx upstream, under callgrind; h2load sends N requests on one
connection with 10 streams in flight (``-c1 -m10``), then 2N in a second run. (Ir(2N) - Ir(N))
/ N is the figure: start-up and compile cancel out. Counted: the transports' ``data_received``
callbacks and the connection's end-of-turn ``run_flush`` (where responses are framed and sent);
the event loop's own polling is left out, as in ``plugin_cost.py``, so the counts repeat.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))

from bench.common import BenchError, find_nginx, free_port  # noqa: E402
from bench.peers import start_upstream  # noqa: E402
from bench.plugin_cost import config_for, wait_port  # noqa: E402


def count(tmp: str, upstream_port: int, requests: int) -> float:
    """Instructions the serving process executed in the counted callbacks for `requests`."""
    port = free_port()
    path = os.path.join(tmp, f"gateway-{port}.json")
    with open(path, "w") as fh:
        json.dump(config_for({}, upstream_port, port), fh)
    out = os.path.join(tmp, f"callgrind.{port}")
    cmd = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}",
           "--toggle-collect=*data_received*", "--toggle-collect=*run_flush*",
           sys.executable, os.path.join(HERE, "plugin_cost.py"), "serve", path, str(port),
           str(requests - 1)]  # serve counts the responses after the first
    env = dict(os.environ, PYTHONPATH=os.path.dirname(HERE))
    server = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                              env=env)
    try:
        wait_port(port, server)
        subprocess.run(["h2load", "-n", str(requests), "-c1", "-m10",
                        f"http://127.0.0.1:{port}/bench"], check=True, capture_output=True)
        _, err = server.communicate(timeout=600)
    finally:
        if server.poll() is None:
            server.kill()
    match = re.search(r"Collected : (\d+)", err)
    if server.returncode != 0 or match is None:
        raise BenchError(f"server failed: {err[-2000:]}")
    return float(match.group(1))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=1000)
    args = parser.parse_args(argv)
    for tool in ("valgrind", "h2load"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} is needed")
    nginx = find_nginx()
    if nginx is None:
        raise BenchError("nginx is needed for the upstream (apt-get install nginx-light)")
    with tempfile.TemporaryDirectory(prefix="h2-callgrind-") as tmp:
        upstream = start_upstream(nginx, tmp)
        try:
            one = count(tmp, upstream.port, args.requests)
            two = count(tmp, upstream.port, 2 * args.requests)
        finally:
            upstream.stop()
    print(f"h2c instructions/request: {(two - one) / args.requests:,.0f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
