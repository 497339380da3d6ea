"""The ``prometheus`` plugin and the admin listener's ``/metrics``: real gateways (a master and two
workers) proxying to a real upstream, scraped over HTTP and parsed with prometheus_client's
parser."""
from __future__ import annotations

import http.client
import os
import signal
import socket
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from gateway._native import SharedMetrics
from gateway.config.schema import AdminSettings
from gateway.observability.metrics import MetricsExporter, series_label, status_label
from gateway.plugins.base import Plugin, PluginConfig
from tests.support.gateway import GatewayProcess, base_config
from tests.support.upstream import Upstream, free_port

THIS = "tests.plugins.test_prometheus:"
ADMIN_KEY = "test-admin-key-0123456789abcdef"


class WorkerPid(Plugin):
    """Tells the client which worker served it (to check that counts add up across workers)."""
    name = "worker-pid"
    Config = PluginConfig

    def header_filter(self, ctx: Any) -> None:
        ctx.set_response_header("X-Worker-Pid", str(os.getpid()))


Sample = tuple[str, dict[str, str], float]


def request(port: int, path: str, headers: dict[str, str] | None = None,
            method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        conn.request(method, path, headers=headers or {})
        response = conn.getresponse()
        body = response.read()
        return response.status, {k.lower(): v for k, v in response.getheaders()}, body
    finally:
        conn.close()


def scrape(admin_port: int, key: str = ADMIN_KEY) -> list[Sample]:
    status, headers, body = request(admin_port, "/metrics", {"X-API-KEY": key})
    assert status == 200, body
    assert headers["content-type"].startswith("text/plain")
    return [(s.name, s.labels, s.value)
            for family in text_string_to_metric_families(body.decode())
            for s in family.samples]


def value(samples: list[Sample], name: str, **labels: str) -> float:
    """The one sample called ``name`` whose labels include ``labels``; 0 if there is none."""
    found = [v for n, ls, v in samples if n == name and all(ls.get(k) == w for k, w in labels.items())]
    assert len(found) <= 1, (name, labels, found)
    return found[0] if found else 0.0


def config_for(port: int, admin_port: int, upstream: Upstream, **admin: Any) -> dict[str, Any]:
    config = base_config(port)
    config["gateway"]["admin"] = {"listen": f"127.0.0.1:{admin_port}", "key": ADMIN_KEY, **admin}
    config["upstreams"] = [{"id": "up", "nodes": [{"host": "127.0.0.1", "port": upstream.port}]}]
    config["routes"] = [
        # prometheus on the route itself ...
        {"id": "echo", "uri": "/echo/*", "upstream_id": "up", "plugins": {"prometheus": {}}},
        # ... and through the global rule only
        {"id": "status", "uri": "/status/*", "upstream_id": "up"},
        {"id": "mock", "uri": "/mock", "plugins": {"mocking": {"response_example": "hi"}}},
    ]
    config["global_rules"] = {"plugins": {"prometheus": {}, THIS + "WorkerPid": {}}}
    return config


@pytest.fixture
def upstream() -> Iterator[Upstream]:
    with Upstream("up") as up:
        yield up


@pytest.fixture
def gateway(tmp_path: Path, upstream: Upstream) -> Iterator[tuple[GatewayProcess, int]]:
    port, admin_port = free_port(), free_port()
    with GatewayProcess(tmp_path, config_for(port, admin_port, upstream)) as gw:
        yield gw, admin_port


def send(port: int, plan: dict[str, tuple[int, int]]) -> set[str]:
    """Sends ``count`` requests to each path (one connection each, so the kernel spreads them over
    the workers), checks each status, and returns the worker pids that answered."""
    pids: set[str] = set()
    for path, (count, expected) in plan.items():
        for _ in range(count):
            status, headers, _ = request(port, path)
            assert status == expected, path
            pids.add(headers["x-worker-pid"])
    return pids


def send_until_both_workers(gw: GatewayProcess, path: str, expected: int, limit: int = 400) -> int:
    """Requests ``path`` until both workers have answered; returns how many were sent."""
    pids: set[str] = set()
    sent = 0
    while len(pids) < 2:
        assert sent < limit, "one worker never answered"
        pids |= send(gw.port, {path: (1, expected)})
        sent += 1
    return sent


# ------------------------------------------------------------------------------ end to end


def test_counts_latencies_and_bandwidth_summed_over_workers(
        gateway: tuple[GatewayProcess, int], upstream: Upstream) -> None:
    gw, admin_port = gateway
    echo = send_until_both_workers(gw, "/echo/a", 200) + 20
    send(gw.port, {"/echo/b": (20, 200), "/status/404": (7, 404), "/status/503": (5, 503),
                   "/mock": (4, 200)})
    samples = scrape(admin_port)
    node = f"127.0.0.1:{upstream.port}"

    assert value(samples, "gateway_http_status_total", route="echo", code="200", node=node) == echo
    assert value(samples, "gateway_http_status_total", route="status", code="404", node=node) == 7
    assert value(samples, "gateway_http_status_total", route="status", code="503", node=node) == 5
    assert value(samples, "gateway_http_status_total", route="mock", code="200") == 4
    # no upstream node for a mocked answer: the label is left out
    assert [ls for n, ls, _ in samples if ls.get("route") == "mock" and "node" in ls] == []
    assert value(samples, "gateway_http_requests_total") == echo + 7 + 5 + 4

    for route, count in (("echo", echo), ("status", 12), ("mock", 4)):
        assert value(samples, "gateway_http_latency_count", route=route, type="request") == count
        assert value(samples, "gateway_http_latency_bucket", route=route, type="request",
                     le="+Inf") == count
        assert value(samples, "gateway_http_latency_sum", route=route, type="request") > 0
        assert value(samples, "gateway_bandwidth_total", route=route, type="ingress") > 0
        assert value(samples, "gateway_bandwidth_total", route=route, type="egress") > 0
    # buckets are cumulative and end at the count
    buckets = [v for n, ls, v in samples
               if n == "gateway_http_latency_bucket" and ls["route"] == "echo" and ls["type"] == "request"]
    assert len(buckets) == 16 and buckets == sorted(buckets) and buckets[-1] == echo
    # upstream latency for proxied routes only
    assert value(samples, "gateway_http_latency_count", route="echo", type="upstream") == echo
    assert value(samples, "gateway_http_latency_sum", route="echo", type="upstream") > 0
    assert value(samples, "gateway_http_latency_count", route="status", type="upstream") == 12
    assert value(samples, "gateway_http_latency_count", route="mock", type="upstream") == 0
    assert value(samples, "gateway_metrics_dropped_total") == 0
    # the request latency includes the upstream's
    assert (value(samples, "gateway_http_latency_sum", route="echo", type="request")
            >= value(samples, "gateway_http_latency_sum", route="echo", type="upstream"))


def test_consumer_label(tmp_path: Path, upstream: Upstream) -> None:
    port, admin_port = free_port(), free_port()
    config = config_for(port, admin_port, upstream)
    config["routes"][0]["plugins"]["key-auth"] = {}
    config["consumers"] = [{"username": "alice", "plugins": {"key-auth": {"key": "alice-key"}}}]
    with GatewayProcess(tmp_path, config) as gw:
        for _ in range(3):
            assert request(gw.port, "/echo/x", {"apikey": "alice-key"})[0] == 200
        assert request(gw.port, "/echo/x")[0] == 401
        samples = scrape(admin_port)
    assert value(samples, "gateway_http_status_total", route="echo", code="200",
                 consumer="alice") == 3
    assert value(samples, "gateway_http_latency_count", route="echo", type="request",
                 consumer="alice") == 3
    assert value(samples, "gateway_http_status_total", route="echo", code="401") == 1


def test_metrics_survive_reload_and_killed_worker(
        gateway: tuple[GatewayProcess, int], upstream: Upstream) -> None:
    gw, admin_port = gateway
    sent = send_until_both_workers(gw, "/echo/a", 200)
    send(gw.port, {"/status/404": (3, 404)})

    # a reload compiles new plugin instances in every worker; the store is the master's
    config = config_for(gw.port, admin_port, upstream)
    config["routes"].append({"id": "extra", "uri": "/extra/*", "upstream_id": "up"})
    gw.write_config(config)
    gw.wait_version(2)
    samples = scrape(admin_port)
    assert value(samples, "gateway_http_status_total", route="echo", code="200") == sent
    assert value(samples, "gateway_http_status_total", route="status", code="404") == 3

    victim = gw.worker_pids()[0]
    os.kill(victim, signal.SIGKILL)
    gw.wait_replaced(victim, 20)
    gw.wait_version(2)
    samples = scrape(admin_port)
    assert value(samples, "gateway_http_status_total", route="echo", code="200") == sent
    assert value(samples, "gateway_http_latency_count", route="echo", type="request") == sent

    # the replacement worker adds to the same series
    more = send_until_both_workers(gw, "/echo/b", 200)
    send(gw.port, {"/extra/c": (2, 200)})
    samples = scrape(admin_port)
    assert value(samples, "gateway_http_status_total", route="echo", code="200") == sent + more
    assert value(samples, "gateway_http_status_total", route="extra", code="200") == 2


# ------------------------------------------------------------------------------ admin listener


def test_metrics_need_the_admin_key(gateway: tuple[GatewayProcess, int]) -> None:
    gw, admin_port = gateway
    status, headers, body = request(admin_port, "/metrics")
    assert status == 401 and b"gateway_" not in body
    assert headers["www-authenticate"].startswith("Bearer")
    assert request(admin_port, "/metrics", {"X-API-KEY": "wrong"})[0] == 401
    assert request(admin_port, "/metrics", {"Authorization": "Bearer wrong"})[0] == 401
    assert request(admin_port, "/metrics", {"Authorization": f"Basic {ADMIN_KEY}"})[0] == 401
    assert request(admin_port, "/metrics", {"X-API-KEY": ADMIN_KEY})[0] == 200
    assert request(admin_port, "/metrics", {"Authorization": f"Bearer {ADMIN_KEY}"})[0] == 200
    # HEAD answers like GET without a body; other methods and paths are refused after the key
    status, headers, body = request(admin_port, "/metrics", {"X-API-KEY": ADMIN_KEY}, "HEAD")
    assert status == 200 and body == b"" and int(headers["content-length"]) > 0
    assert request(admin_port, "/metrics", {"X-API-KEY": ADMIN_KEY}, "POST")[0] == 405
    assert request(admin_port, "/nothing", {"X-API-KEY": ADMIN_KEY})[0] == 404
    assert request(admin_port, "/nothing")[0] == 401


def test_metrics_are_not_served_on_the_public_listener(gateway: tuple[GatewayProcess, int]) -> None:
    gw, _ = gateway
    for path in ("/metrics", "/apisix/prometheus/metrics"):
        status, _, body = request(gw.port, path, {"X-API-KEY": ADMIN_KEY})
        assert status == 404 and b"gateway_http" not in body


def test_admin_keeps_a_connection_alive_and_rejects_bad_requests(
        gateway: tuple[GatewayProcess, int]) -> None:
    _, admin_port = gateway
    conn = http.client.HTTPConnection("127.0.0.1", admin_port, timeout=30)
    for _ in range(3):
        conn.request("GET", "/metrics", headers={"X-API-KEY": ADMIN_KEY})
        response = conn.getresponse()
        assert response.status == 200 and response.read()
    conn.close()
    # scrapes that arrive together share one render; each still gets the whole exposition
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: scrape(admin_port), range(4)))
    assert all(value(r, "gateway_metrics_slots", state="capacity") == 65536 for r in results)
    with socket.create_connection(("127.0.0.1", admin_port), timeout=30) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\nHost: a\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n")
        assert sock.recv(100).startswith(b"HTTP/1.1 400 ")


def test_allow_admin_refuses_other_networks(tmp_path: Path, upstream: Upstream) -> None:
    port, admin_port = free_port(), free_port()
    config = config_for(port, admin_port, upstream, allow_admin=["10.0.0.0/8"])
    with GatewayProcess(tmp_path, config):
        status, _, body = request(admin_port, "/metrics", {"X-API-KEY": ADMIN_KEY})
    assert status == 403 and b"gateway_" not in body


def test_generated_key_is_kept_in_an_owner_only_file_and_never_logged(
        tmp_path: Path, upstream: Upstream) -> None:
    port, admin_port = free_port(), free_port()
    config = config_for(port, admin_port, upstream)
    del config["gateway"]["admin"]["key"]
    gw = GatewayProcess(tmp_path, config)
    with gw:
        key_file = gw.state_dir / "gateway" / "admin.key"
        key = key_file.read_text().strip()
        assert len(key) >= 32
        assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
        assert request(admin_port, "/metrics")[0] == 401
        assert request(admin_port, "/metrics", {"Authorization": f"Bearer {key}"})[0] == 200
        assert request(gw.port, "/echo/x")[0] == 200
    assert str(key_file) in gw.logs()
    assert key not in gw.logs()
    # the next start reuses it, so scrape configs keep working
    with GatewayProcess(tmp_path, config):
        assert key_file.read_text().strip() == key
        assert request(admin_port, "/metrics", {"X-API-KEY": key})[0] == 200
    assert key not in gw.logs()


def test_configured_key_never_reaches_the_log(gateway: tuple[GatewayProcess, int]) -> None:
    gw, admin_port = gateway
    request(admin_port, "/metrics", {"X-API-KEY": "wrong"})
    request(admin_port, "/metrics", {"X-API-KEY": ADMIN_KEY})
    assert "admin API on http://127.0.0.1:" in gw.logs()
    assert ADMIN_KEY not in gw.logs()


def test_admin_listens_on_loopback_by_default(tmp_path: Path, upstream: Upstream) -> None:
    defaults = AdminSettings()
    assert defaults.listen == "127.0.0.1:9180"
    assert defaults.allow_admin == ["127.0.0.0/8", "::1/128"]
    probe = socket.socket()
    try:
        probe.bind(("127.0.0.1", 9180))
    except OSError:
        pytest.skip("port 9180 is taken by another process on this machine")
    finally:
        probe.close()
    port = free_port()
    config = config_for(port, 0, upstream)
    config["gateway"]["admin"] = {"key": ADMIN_KEY}
    with GatewayProcess(tmp_path, config) as gw:
        master = gw.status()["pid"]
        listening = listening_sockets(master)
        assert ("127.0.0.1", 9180) in listening, listening
        assert request(9180, "/metrics", {"X-API-KEY": ADMIN_KEY})[0] == 200


def listening_sockets(pid: int) -> set[tuple[str, int]]:
    """(address, port) of the TCP sockets process ``pid`` listens on (from /proc)."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = os.readlink(fd)
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    out = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and fields[9] in inodes:
            address, port = fields[1].split(":")
            ip = socket.inet_ntoa(bytes.fromhex(address)[::-1])
            out.add((ip, int(port, 16)))
    return out


# ------------------------------------------------------------------------------ the store


def test_full_table_counts_dropped_observations() -> None:
    store = SharedMetrics.create(4)
    exporter = MetricsExporter(store)
    slots = [store.slot(status_label(200, f"r{i}", None, None)) for i in range(4)]
    assert -1 not in slots and store.slot(series_label("r9", None, None), series=True) == -1
    store.record(-1, slots[0], 0.001)
    store.record(-1, -1, 0.001)
    samples = [(s.name, s.labels, s.value)
               for f in text_string_to_metric_families(exporter.render().decode()) for s in f.samples]
    assert value(samples, "gateway_metrics_dropped_total") == 2
    assert value(samples, "gateway_http_status_total", route="r0", code="200") == 1
    assert value(samples, "gateway_metrics_slots", state="capacity") == 4
    assert value(samples, "gateway_metrics_slots", state="used") == 4


def test_long_and_odd_label_values_stay_distinct_and_fit() -> None:
    store = SharedMetrics.create(64)
    long_a, long_b = "a" * 300 + "1", "a" * 300 + "2"
    labels = [status_label(200, long_a, "c" * 500, "h" * 250 + ":80"),
              status_label(200, long_b, "c" * 500, "h" * 250 + ":80"),
              status_label(200, 'quote"and\\back\nslash', None, None)]
    assert all(len(label.encode()) <= SharedMetrics.label_max for label in labels)
    for label in labels:
        store.add(store.slot(label))
    samples = [(s.name, s.labels, s.value)
               for f in text_string_to_metric_families(MetricsExporter(store).render().decode())
               for s in f.samples if s.name == "gateway_http_status_total"]
    routes = {ls["route"] for _, ls, _ in samples}
    assert len(routes) == 3 and 'quote"and\\back\nslash' in routes
    assert all(r.startswith("a" * 40) for r in routes - {'quote"and\\back\nslash'})


def test_slow_renders_make_scrapes_answer_from_the_last_render(tmp_path: Path) -> None:
    """Thousands of busy routes make a render take a while; scrapes then get the last render
    at once (with its age) while the next is made in the background, and new observations show
    up in a later scrape."""
    import asyncio

    from gateway.admin.server import AdminServer
    from gateway.config.schema import AdminSettings
    from gateway.observability.metrics import series_label, status_label

    store = SharedMetrics.create(16384)
    for r in range(4000):
        series = store.slot(series_label(f"route-{r}", None, "127.0.0.1:1"), series=True)
        status = store.slot(status_label(200, f"route-{r}", None, "127.0.0.1:1"))
        store.record(series, status, 0.001, 0.0005, 100, 200)
    port = free_port()
    settings = AdminSettings(listen=f"127.0.0.1:{port}", key="k" * 20)

    async def scrape() -> tuple[dict[str, str], bytes]:
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"GET /metrics HTTP/1.1\r\nHost: a\r\nX-API-KEY: " + b"k" * 20 +
                     b"\r\nConnection: close\r\n\r\n")
        raw = await reader.read()
        writer.close()
        head, _, body = raw.partition(b"\r\n\r\n")
        lines = head.decode().split("\r\n")
        assert lines[0].startswith("HTTP/1.1 200"), lines[0]
        return {k.lower(): v.strip() for k, _, v in (x.partition(":") for x in lines[1:])}, body

    async def scenario() -> None:
        # Every render counts as slow (the bar at 0 s), as renders of far more routes would
        # with the default: what is tested is the behaviour, not how long a render takes
        # (bench/metrics_scrape.py measures that).
        admin = AdminServer(lambda: settings, tmp_path, store, slow_render_seconds=0.0)
        await admin.start()
        try:
            _, first = await scrape()  # no render yet: this one waits for it
            assert b'route="route-3999"' in first
            series = store.slot(series_label("late-route", None, "127.0.0.1:1"), series=True)
            status = store.slot(status_label(200, "late-route", None, "127.0.0.1:1"))
            store.record(series, status, 0.001, 0.0005, 100, 200)
            headers, cached = await scrape()
            assert b"late-route" not in cached and float(headers["x-metrics-age"]) >= 0
            for _ in range(600):
                await asyncio.sleep(0.1)
                headers, body = await scrape()
                if b"late-route" in body:
                    break
            assert b"late-route" in body
        finally:
            admin.close()

    asyncio.run(scenario())


def test_rust_exposition_matches_the_prometheus_client_collector() -> None:
    """The scrape is rendered in Rust; prometheus_client's rendering of the same store through
    the reference collector must parse to the same families, samples and values."""
    from prometheus_client import CollectorRegistry, generate_latest

    from gateway.observability.metrics import SharedMetricsCollector

    store = SharedMetrics.create(256)
    for i in range(40):
        route = f"route-{i}" if i % 7 else 'odd "route"\\n'
        consumer = "alice" if i % 3 == 0 else None
        node = f"10.0.0.{i % 4}:80" if i % 5 else None
        series = store.slot(series_label(route, consumer, node), series=True)
        for code in (200, 404, 503)[: 1 + i % 3]:
            status = store.slot(status_label(code, route, consumer, node))
            for n in range(i % 4 + 1):
                # upstream latency 0 on some: those series have no upstream histogram
                store.record(series, status, 0.0004 * (n + 1) * i, 0.0003 * n * (i % 2),
                             100 + n, 2000 * n)
    store.slot(series_label("never-used", None, None), series=True)  # no traffic at all

    def parsed(text: bytes) -> dict[str, tuple[str, str, list[tuple[str, tuple, float]]]]:
        return {f.name: (f.type, f.documentation,
                         sorted((s.name, tuple(sorted(s.labels.items())), s.value)
                                for s in f.samples))
                for f in text_string_to_metric_families(text.decode())}

    registry = CollectorRegistry(auto_describe=False)
    registry.register(SharedMetricsCollector(store))
    reference = parsed(generate_latest(registry))
    ours = parsed(MetricsExporter(store).render())
    assert ours == reference
    assert len(reference["gateway_http_latency"][2]) > 100
