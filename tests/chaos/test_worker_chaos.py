"""A worker SIGKILLed under load: the clients it held see their connection drop (once), every
other request is served, the master starts a new worker, and the new one serves."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

from tests.chaos.conftest import chaos_config
from tests.chaos.load import LoadPool, summary
from tests.chaos.owners import owner
from tests.support.gateway import GatewayProcess
from tests.support.upstream import Upstream, free_port

HOST = "steady.test"


def test_worker_sigkilled_under_load_is_replaced_and_the_other_keeps_serving(
        tmp_path: Path, steady: Upstream) -> None:
    with GatewayProcess(tmp_path, chaos_config(free_port(), steady.port, steady.port),
                        workers=2) as gw, \
            LoadPool(gw.port, {HOST: ("GET", "/", None, 8)}) as load:
        load.wait_for(HOST, 50)
        before = gw.worker_pids()
        victim, survivor = before
        killed = time.monotonic()
        os.kill(victim, signal.SIGKILL)

        pids = gw.wait_replaced(victim, 5)
        assert survivor in pids, "the other worker was restarted too"
        replaced = time.monotonic()

        # each client lost at most the connection it had on the dead worker (and one that was
        # queued to its socket when it closed), then was served again
        load.wait_for(HOST, 100, after=replaced)
        seen = load.seen(HOST, killed)
        failed = [o for o in seen if o.status != 200 or o.error]
        per_client: dict[int, int] = {}
        for o in failed:
            per_client[o.client] = per_client.get(o.client, 0) + 1
        assert all(n <= 2 for n in per_client.values()), summary(failed)
        assert all(o.started < replaced + 0.5 for o in failed), summary(failed)
        # a connection queued to the dead worker's slot waits for its successor (the master
        # keeps the slot's socket): no longer than the replacement took, on a loaded machine too
        assert max(o.took for o in seen) < max(2.0, replaced - killed + 1.0), summary(seen)
        ok_meanwhile = [o for o in seen if o.status == 200 and o.ended < replaced]
        assert ok_meanwhile or replaced - killed < 0.2, "nothing was served while replacing"
        assert "exited with" in gw.logs()

        # the new worker serves: of fresh connections, some are accepted and answered by it
        load.stop()
        new = next(pid for pid in gw.worker_pids() if pid != survivor)
        owners = set()
        for _ in range(40):
            with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as client:
                client.sendall(b"GET / HTTP/1.1\r\nHost: steady.test\r\n\r\n")
                assert client.recv(65536).startswith(b"HTTP/1.1 200 ")
                owners.add(owner(client, [survivor, new]))
            if new in owners:
                break
        assert new in owners, f"the new worker {new} accepted none of 40 connections: {owners}"
