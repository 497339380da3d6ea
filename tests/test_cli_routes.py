"""``gateway routes`` asks a real running gateway (through its admin listener, with the key it
generated in its state dir) what it serves, and which config version each worker runs."""
from __future__ import annotations

import json
from pathlib import Path

from gateway.server.live_routes import format_table
from tests.support.gateway import GatewayProcess, base_config, wait_until
from tests.support.upstream import Upstream, free_port


def test_routes_shows_the_live_routes_and_each_workers_version(tmp_path: Path) -> None:
    with Upstream("up") as upstream:
        config = base_config(free_port(), upstream.port)
        config["routes"].append({"id": "orders", "uris": ["/orders", "/orders/*"],
                                 "methods": ["GET", "POST"], "hosts": ["shop.example.com"],
                                 "upstream": {"nodes": [{"host": "127.0.0.1",
                                                         "port": upstream.port}]},
                                 "plugins": {"request-id": {}, "cors": {}}})
        with GatewayProcess(tmp_path, config, workers=2) as gw:
            done = gw.cli("routes")
            assert done.returncode == 0, done.stderr
            lines = done.stdout.splitlines()
            pids = gw.worker_pids()
            assert f"master {gw.proc.pid}: config version 1" in lines[0]  # type: ignore[union-attr]
            for index, pid in enumerate(pids):
                assert f"worker {index} pid {pid}: version 1" in lines
            table = {line.split()[0]: line.split() for line in lines if line.startswith(("all ", "orders "))}
            assert table["all"][1:5] == ["/*", "*", "*", "up"]
            assert table["orders"][1:6] == ["/orders,/orders/*", "GET,POST", "shop.example.com",
                                            "inline:", f"127.0.0.1:{upstream.port}"]
            assert table["orders"][6] == "request-id,cors"

            config["routes"].append({"id": "late", "uri": "/late", "upstream_id": "up"})
            gw.write_config(config)
            assert gw.cli("reload").returncode == 0
            gw.wait_version(2)
            live = json.loads(gw.cli("routes", "--json").stdout)
            assert live["master"]["version"] == 2
            assert [w["version"] for w in live["workers"]] == [2, 2]
            assert [w["pid"] for w in live["workers"]] == gw.worker_pids()
            assert [r["id"] for r in live["routes"]] == ["all", "orders", "late"]

            # a rejected edit is not live: the routes shown stay those the workers serve (and
            # the admin key is found although the file no longer loads)
            config["routes"].append({"id": "broken", "uri": "/b", "upstream_id": "nowhere"})
            gw.write_config(config)
            assert gw.cli("reload").returncode == 0
            wait_until(lambda: gw.status().get("reloads", {}).get("rejected", 0) >= 1, 20,
                       "the broken edit rejected")
            live = json.loads(gw.cli("routes", "--json").stdout)
            assert live["master"]["version"] == 2
            assert [r["id"] for r in live["routes"]] == ["all", "orders", "late"]


def test_routes_without_a_running_gateway_says_so(tmp_path: Path) -> None:
    gw = GatewayProcess(tmp_path, base_config(free_port()))
    done = gw.cli("routes")
    assert done.returncode == 1
    assert "no gateway is running" in done.stderr


def test_a_worker_still_on_an_older_version_is_marked() -> None:
    # a rolling reload's middle, which a test cannot hold still on a real gateway
    live = {"master": {"pid": 10, "version": 3},
            "workers": [{"index": 0, "pid": 11, "version": 3, "responding": True},
                        {"index": 1, "pid": 12, "version": 2, "responding": True}],
            "routes": [{"id": "r", "uri": "/r", "upstream_id": "up"}]}
    lines = format_table(live).splitlines()
    assert lines[1] == "worker 0 pid 11: version 3"
    assert lines[2].startswith("worker 1 pid 12: version 2 (still on version 2")
