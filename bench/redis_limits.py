"""The overshoot of a Redis-shared limit-count: N gateway nodes (separate ``gateway run``
processes) share one Redis count of ``--count`` per hour; keep-alive clients hammer every node
for ``--seconds``; admitted - count is the overshoot, printed next to the README's estimate
(nodes x rate per node x sync_interval) and next to strict mode (one Redis call per request,
expected 0).

    python bench/redis_limits.py --nodes 2 --count 2000 --seconds 5 --interval 0.1
"""
from __future__ import annotations

import argparse
import http.client
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from tests.support.gateway import GatewayProcess, base_config  # noqa: E402
from tests.support.redis_server import RedisServer  # noqa: E402
from tests.support.upstream import Upstream, free_port  # noqa: E402


def node_config(upstream: Upstream, limit: dict[str, Any]) -> dict[str, Any]:
    config = base_config(free_port())
    config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
    config["routes"] = [{"id": "limited", "uri": "/*", "upstream_id": "up",
                         "plugins": {"limit-count": limit}}]
    return config


def hammer(port: int, until: float, out: Counter[int], lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen: Counter[int] = Counter()
    while time.monotonic() < until:
        conn.request("GET", "/echo")
        response = conn.getresponse()
        response.read()
        seen[response.status] += 1
    conn.close()
    with lock:
        out.update(seen)


def run(tmp: Path, mode: str, args: argparse.Namespace, redis: RedisServer,
        upstream: Upstream) -> None:
    limit: dict[str, Any] = {
        "count": args.count, "time_window": 3600, "key_type": "constant",
        "key": f"bench-{mode}-{time.time()}", "rejected_code": 429, "policy": "redis",
        "redis_host": "127.0.0.1", "redis_port": redis.port, "sync_interval": args.interval}
    if mode == "strict":
        limit["redis_strict"] = True
    nodes = []
    for i in range(args.nodes):
        (tmp / f"{mode}-{i}").mkdir()
        nodes.append(GatewayProcess(tmp / f"{mode}-{i}", node_config(upstream, limit),
                                    workers=args.workers).start())
    try:
        results: Counter[int] = Counter()
        lock = threading.Lock()
        until = time.monotonic() + args.seconds
        threads = [threading.Thread(target=hammer, args=(node.port, until, results, lock))
                   for node in nodes for _ in range(args.clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(results.values())
        rate_per_node = total / args.seconds / args.nodes
        admitted = results[200]
        estimate = args.nodes * rate_per_node * args.interval if mode == "synced" else 0
        print(f"{mode:7s} nodes={args.nodes} requests={total} ({rate_per_node:.0f} r/s per node) "
              f"admitted={admitted} of count={args.count}: overshoot {admitted - args.count} "
              f"(estimate ~{estimate:.0f}); other statuses: "
              f"{ {k: v for k, v in results.items() if k not in (200, 429)} }")
    finally:
        for node in nodes:
            node.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=2)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--clients", type=int, default=4, help="connections per node")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.1, help="sync_interval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir, Upstream("up") as upstream:
        tmp = Path(tmp_dir)
        (tmp / "redis").mkdir()
        with RedisServer(tmp / "redis") as redis:
            for mode in ("synced", "strict"):
                run(tmp, mode, args, redis, upstream)


if __name__ == "__main__":
    main()
