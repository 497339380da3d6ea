"""The overshoot of Redis-shared limits: N gateway nodes (separate ``gateway run`` processes on
their own ports) share one redis-server; keep-alive clients hammer every node for
``--seconds``. Printed per mode, next to the README's estimate (nodes x rate per node x
sync_interval for the synced modes, 0 for strict mode: one Redis call per request):

* ``count-*``: limit-count of ``--count`` per hour, one constant key; admitted - count;
* ``count-per-client``: the same per client (``key: http_x_client``, ``--keys`` clients spread
  over the connections, ``--count / --keys`` each): the sum over the clients of admitted -
  count;
* ``req-*``: limit-req of ``--rate`` r/s (burst 0, nodelay), one key; admitted - (1 + rate x
  seconds). ``req-local`` is the baseline: ``policy: local`` on one node taking all the
  connections, so what a bucket without burst loses to the spacing of arrivals (a request
  admitted after its slot came moves the next slot on) shows apart from what syncing costs.

    python bench/redis_limits.py --nodes 2 --count 2000 --rate 200 --seconds 5 --interval 0.1
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

MODES = ("count-synced", "count-strict", "count-per-client", "req-local", "req-synced",
         "req-strict")


def node_config(upstream: Upstream, plugin: str, limit: dict[str, Any]) -> dict[str, Any]:
    config = base_config(free_port())
    config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
    config["routes"] = [{"id": "limited", "uri": "/*", "upstream_id": "up",
                         "plugins": {plugin: limit}}]
    return config


def hammer(port: int, client: str, until: float, out: Counter[int],
           lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    seen: Counter[int] = Counter()
    while time.monotonic() < until:
        conn.request("GET", "/echo", headers={"X-Client": client})
        response = conn.getresponse()
        response.read()
        seen[response.status] += 1
    conn.close()
    with lock:
        out.update(seen)


def run(tmp: Path, mode: str, args: argparse.Namespace, redis: RedisServer,
        upstream: Upstream) -> None:
    plugin = "limit-count" if mode.startswith("count") else "limit-req"
    local = mode.endswith("local")
    limit: dict[str, Any] = {"rejected_code": 429} if local else {
        "rejected_code": 429, "policy": "redis", "redis_host": "127.0.0.1",
        "redis_port": redis.port, "sync_interval": args.interval,
        "redis_strict": mode.endswith("strict")}
    node_count = 1 if local else args.nodes
    clients = args.clients * args.nodes // node_count  # the same connections in all
    keys = args.keys if mode == "count-per-client" else 1
    if plugin == "limit-count":
        per_key = max(1, args.count // keys)  # the same total whatever the keys
        limit.update(count=per_key, time_window=3600)
        allowed = per_key * keys
    else:
        limit.update(rate=args.rate, burst=0, nodelay=True)
        allowed = round(1 + args.rate * args.seconds)
    # a key of its own per run: no count left over from an earlier mode or run
    if mode == "count-per-client":
        limit.update(key="http_x_client")
    else:
        limit.update(key_type="constant" if plugin == "limit-count" else "var",
                     key=f"bench-{time.time()}" if plugin == "limit-count" else "http_x_client")
    tag = f"{mode}-{time.time()}"
    nodes = []
    for i in range(node_count):
        (tmp / f"{mode}-{i}").mkdir()
        nodes.append(GatewayProcess(tmp / f"{mode}-{i}", node_config(upstream, plugin, limit),
                                    workers=args.workers).start())
    try:
        results: Counter[int] = Counter()
        lock = threading.Lock()
        until = time.monotonic() + args.seconds
        threads = [threading.Thread(target=hammer, args=(node.port, f"{tag}-{c % keys}", until,
                                                         results, lock))
                   for node in nodes for c in range(clients)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        total = sum(results.values())
        rate_per_node = total / args.seconds / node_count
        admitted = results[200]
        if mode.endswith("strict") or local:
            estimate = 0.0
        elif plugin == "limit-count":
            # per key: the requests the other nodes admit in one interval, before the sync
            estimate = args.nodes * rate_per_node * args.interval
        else:
            # admitted at most at the rate per node between two syncs
            estimate = args.nodes * args.rate * args.interval
        print(f"{mode:16s} nodes={node_count} requests={total} ({rate_per_node:.0f} r/s per "
              f"node) admitted={admitted} of {allowed}: overshoot {admitted - allowed} "
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
    parser.add_argument("--keys", type=int, default=4, help="clients of count-per-client")
    parser.add_argument("--rate", type=float, default=200.0, help="limit-req's rate")
    parser.add_argument("--modes", default=",".join(MODES))
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--interval", type=float, default=0.1, help="sync_interval")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp_dir, Upstream("up") as upstream:
        tmp = Path(tmp_dir)
        (tmp / "redis").mkdir()
        with RedisServer(tmp / "redis") as redis:
            for mode in args.modes.split(","):
                run(tmp, mode, args, redis, upstream)


if __name__ == "__main__":
    main()
