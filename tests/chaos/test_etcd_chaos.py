"""etcd killed and restarted, twice, while clients run through an etcd-mode gateway: every
request is served by the last good config, and a change made while etcd is back arrives."""
from __future__ import annotations

import time
from pathlib import Path

from tests.chaos.load import LoadPool, summary
from tests.etcd.support import EtcdNode, mock_route, requires_etcd
from tests.support.etcd_server import EtcdServer
from tests.support.upstream import Upstream

pytestmark = requires_etcd


def test_etcd_killed_and_restarted_under_load(tmp_path: Path, steady: Upstream) -> None:
    with EtcdServer(tmp_path) as etcd:
        etcd.put("/chaos/upstreams/steady", {"nodes": [{"host": "127.0.0.1", "port": steady.port}]})
        etcd.put("/chaos/routes/steady", {"uri": "/*", "upstream_id": "steady"})
        node = EtcdNode(tmp_path / "node", etcd, "/chaos", workers=2).start()
        try:
            with LoadPool(node.port, {"steady.test": ("GET", "/", None, 4)}) as load:
                for round_ in range(2):
                    etcd.kill()
                    time.sleep(1.0)  # the watch fails and is tried again, with back-off
                    etcd.start()
                    revision = etcd.put(f"/chaos/routes/r{round_}", mock_route(f"r{round_}", f"R{round_}"))
                    node.wait_revision(revision)
                    assert node.body(f"/r{round_}") == f"200 R{round_}"
                seen = load.stop()
            bad = [o for o in seen if o.status != 200 or o.error or not o.body_ok]
            assert len(seen) > 20 and not bad, summary(bad or seen)
            assert max(o.took for o in seen) < 2.0, summary(seen)
            assert node.process.logs().count("etcd is back") == 2
        finally:
            node.close()
