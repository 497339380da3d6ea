"""Retries (issue 10, section 3): a failed try goes to another node while nothing reached the
client and sending the request again is safe; every try shows in the log. Real gateway processes
(2 workers), real upstreams on loopback (some in processes of their own, killed under load), a
real load generator (wrk)."""
from __future__ import annotations

import http.client
import re
import shutil
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from gateway._proto import Exchange
from gateway.config import Node, Timeout
from gateway.config import Upstream as UpstreamConfig
from gateway.upstream.compile import compile_upstream, with_timeout
from tests.support.gateway import GatewayProcess, base_config, raw_exchange
from tests.support.raw_upstream import RawUpstream
from tests.support.upstream import Upstream, free_port
from tests.support.upstream_process import UpstreamProcess

P = "tests.support.plugins:"
TRIES = re.compile(r'"(\w+) (\S+) HTTP/1\.\d" (\d+) .* upstream_addr="([^"]*)" '
                   r'upstream_status="([^"]*)" upstream_response_time="([^"]*)"')


def node(port: int) -> dict[str, Any]:
    return {"host": "127.0.0.1", "port": port}


def gateway_config(tmp_path: Path, port: int, upstreams: list[dict[str, Any]],
                   routes: list[dict[str, Any]]) -> dict[str, Any]:
    config = base_config(port, access_log=str(tmp_path / "access.log"))
    config["upstreams"] = upstreams
    config["routes"] = routes
    return config


def logged_tries(tmp_path: Path) -> list[tuple[str, str, int, list[str], list[str], list[str]]]:
    """The access log (complete once the gateway stopped): method, path, status, and the
    per-try lists upstream_addr, upstream_status, upstream_response_time of each request."""
    out = []
    for line in (tmp_path / "access.log").read_text().splitlines():
        m = TRIES.search(line)
        assert m, line
        out.append((m[1], m[2], int(m[3]), m[4].split(", "), m[5].split(", "), m[6].split(", ")))
    return out


def get(port: int, path: str) -> tuple[http.client.HTTPResponse, bytes]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response, response.read()
    finally:
        conn.close()


@pytest.mark.skipif(shutil.which("wrk") is None, reason="needs wrk")
def test_a_node_killed_under_load_fails_no_request(tmp_path: Path) -> None:
    port = free_port()
    with UpstreamProcess("a", one_write=True) as a, UpstreamProcess("b", one_write=True) as b, \
            UpstreamProcess("c", one_write=True) as c:
        config = gateway_config(tmp_path, port, [
            {"id": "up", "nodes": [node(a.port), node(b.port), node(c.port)]}],  # retries: 2
            [{"id": "all", "uri": "/*", "upstream_id": "up"}])
        with GatewayProcess(tmp_path, config, workers=2):
            wrk = subprocess.Popen(["wrk", "-t2", "-c32", "-d4s", f"http://127.0.0.1:{port}/echo"],
                                   stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
            time.sleep(1.5)
            b.kill()
            killed = f"127.0.0.1:{b.port}"
            out, _ = wrk.communicate(timeout=60)
    assert wrk.returncode == 0, out
    done = int(re.search(r"(\d+) requests in", out)[1])  # type: ignore[index]
    assert done > 200, out
    assert "Non-2xx" not in out and "Socket errors" not in out, out
    tries = logged_tries(tmp_path)
    retried = [t for t in tries if len(t[3]) > 1]
    # the kill hit requests: in flight on the node, or sent to it before every worker noticed
    assert retried, "no request was retried: the kill did not hit any"
    for _method, _path, status, addrs, statuses, _times in retried:
        assert addrs[0] == killed and addrs[-1] != killed, (addrs, statuses)
        assert statuses[-1] == "200" and status == 200, (addrs, statuses)
        assert all(s in ("502", "504") for s in statuses[:-1]), statuses


def test_a_request_whose_body_reached_an_upstream_is_not_sent_again(tmp_path: Path) -> None:
    port = free_port()
    # both nodes read a request's head and close the connection unanswered
    with RawUpstream(b"", drop_after=0) as a, RawUpstream(b"", drop_after=0) as b:
        config = gateway_config(tmp_path, port, [
            {"id": "up", "retries": 1, "nodes": [node(a.port), node(b.port)]}],
            [{"id": "all", "uri": "/*", "upstream_id": "up"}])
        with GatewayProcess(tmp_path, config, workers=2):
            for method in (b"POST", b"PUT"):  # PUT is idempotent, but its body is gone too
                before = len(a.heads) + len(b.heads)
                # head and body in one write: the body goes upstream with the head
                answer = raw_exchange(port, method + b" /orders HTTP/1.1\r\nHost: t\r\n"
                                      b"Connection: close\r\nContent-Length: 7\r\n\r\npayload")
                assert answer.startswith(b"HTTP/1.1 502 "), answer
                time.sleep(0.2)
                got = (a.heads + b.heads)[before:]
                assert len(got) == 1 and got[0].startswith(method + b" /orders"), got
            # the same upstreams retry a bodiless GET: one try on each node
            before = len(a.heads) + len(b.heads)
            response, _ = get(port, "/orders")
            assert response.status == 502
            time.sleep(0.2)
            assert len(a.heads) + len(b.heads) - before == 2


def test_a_request_whose_body_has_not_gone_out_is_retried(tmp_path: Path) -> None:
    port = free_port()
    with RawUpstream(b"", drop_after=0) as a, Upstream("b") as b:
        config = gateway_config(tmp_path, port, [
            {"id": "up", "retries": 1, "nodes": [node(a.port), node(b.port)]}],
            [{"id": "all", "uri": "/*", "upstream_id": "up"}])
        with GatewayProcess(tmp_path, config, workers=1):
            for _ in range(2):  # round robin: one of the two starts on the node that drops it
                with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                    s.sendall(b"POST /orders HTTP/1.1\r\nHost: t\r\nContent-Length: 7\r\n\r\n")
                    time.sleep(0.5)  # the head went upstream; node a dropped it unanswered
                    s.sendall(b"payload")
                    answer = s.recv(65536)
                assert answer.startswith(b"HTTP/1.1 200 "), answer
    assert len(a.heads) == 1
    assert [(r.method, r.body_length) for r in b.received] == [("POST", 7), ("POST", 7)]


def test_a_listed_status_is_retried_and_an_unlisted_one_forwarded(tmp_path: Path) -> None:
    port = free_port()
    busy = b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 12\r\n\r\nfrom node a\n"
    with RawUpstream(busy, close_after=False) as a, Upstream("b") as b:
        shown = {"X-Upstream-Status": "$upstream_status", "X-Upstream-Addr": "$upstream_addr"}
        config = gateway_config(tmp_path, port, [
            {"id": "retrying", "retry_on_statuses": [502, 503, 504],
             "nodes": [node(a.port), node(b.port)]},
            {"id": "plain", "nodes": [node(a.port), node(b.port)]}],
            [{"id": "retrying", "uri": "/retrying/*", "upstream_id": "retrying",
              "plugins": {"response-rewrite": {"headers": {"set": shown}}}},
             {"id": "plain", "uri": "/plain/*", "upstream_id": "plain"}])
        with GatewayProcess(tmp_path, config, workers=2):
            retried = 0
            for _ in range(8):
                response, body = get(port, "/retrying/x")
                assert response.status == 200 and b'"upstream": "b"' in body, body
                if response.getheader("X-Upstream-Status") == "503, 200":
                    retried += 1
                    assert response.getheader("X-Upstream-Addr") == \
                        f"127.0.0.1:{a.port}, 127.0.0.1:{b.port}"
                else:
                    assert response.getheader("X-Upstream-Status") == "200"
            assert retried == len([h for h in a.heads if b"/retrying/" in h]) >= 1
            forwarded = 0
            for _ in range(8):
                response, body = get(port, "/plain/x")
                if response.status == 503:
                    forwarded += 1
                    assert body == b"from node a\n"
                else:
                    assert response.status == 200
            assert forwarded >= 1
    tries = logged_tries(tmp_path)
    a_addr, b_addr = f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"
    twice = [t for t in tries if t[1] == "/retrying/x" and len(t[3]) == 2]
    assert len(twice) == retried
    for _m, _p, status, addrs, statuses, times in twice:
        assert (status, addrs, statuses) == (200, [a_addr, b_addr], ["503", "200"])
        assert all(float(t) >= 0 for t in times) and len(times) == 2
    assert all(len(t[3]) == 1 for t in tries if t[1] == "/plain/x")


def test_retry_timeout_bounds_the_tries(tmp_path: Path) -> None:
    port = free_port()

    def slow_503(_head: bytes) -> bytes:
        time.sleep(0.5)
        return b"HTTP/1.1 503 Service Unavailable\r\nContent-Length: 0\r\n\r\n"

    with RawUpstream(slow_503) as a, RawUpstream(slow_503) as b, RawUpstream(slow_503) as c:
        nodes = [node(a.port), node(b.port), node(c.port)]
        config = gateway_config(tmp_path, port, [
            {"id": "bounded", "retry_on_statuses": [503], "retry_timeout": 0.8, "nodes": nodes},
            {"id": "unbounded", "retry_on_statuses": [503], "nodes": nodes}],
            [{"id": "bounded", "uri": "/bounded", "upstream_id": "bounded"},
             {"id": "unbounded", "uri": "/unbounded", "upstream_id": "unbounded"}])

        def heads() -> int:
            return len(a.heads) + len(b.heads) + len(c.heads)

        with GatewayProcess(tmp_path, config, workers=2):
            before = heads()
            started = time.monotonic()
            response, _ = get(port, "/bounded")
            took = time.monotonic() - started
            # tries start at 0 and ~0.5 s; the one due at ~1.0 s is past the 0.8 s budget
            assert response.status == 503
            assert heads() - before == 2
            assert took < 1.45, took
            before = heads()
            response, _ = get(port, "/unbounded")
            assert response.status == 503 and heads() - before == 3


def test_exhausted_retries_answer_502_promptly(tmp_path: Path) -> None:
    port = free_port()
    dead = [free_port() for _ in range(3)]  # nothing listens: every connect is refused
    config = gateway_config(tmp_path, port, [
        {"id": "default", "nodes": [node(p) for p in dead]},  # retries: nodes - 1
        {"id": "more", "retries": 7, "nodes": [node(p) for p in dead]}],
        [{"id": "default", "uri": "/default", "upstream_id": "default"},
         {"id": "more", "uri": "/more", "upstream_id": "more"}])
    with GatewayProcess(tmp_path, config, workers=2):
        for path in ("/default", "/more"):
            started = time.monotonic()
            response, _ = get(port, path)
            assert response.status == 502
            assert time.monotonic() - started < 2
    tries = {t[1]: t for t in logged_tries(tmp_path)}
    addrs = [f"127.0.0.1:{p}" for p in dead]
    # three tries, one on each node; then eight: every node tried before any is tried again
    assert sorted(tries["/default"][3]) == sorted(addrs)
    assert tries["/default"][4] == ["502"] * 3
    more = tries["/more"][3]
    assert len(more) == 8 and sorted(more[:3]) == sorted(addrs) == sorted(more[3:6])
    assert tries["/more"][4] == ["502"] * 8


def test_before_proxy_runs_once_per_try(tmp_path: Path) -> None:
    port = free_port()
    with RawUpstream(b"", drop_after=0) as a, Upstream("b") as b:
        config = gateway_config(tmp_path, port, [
            {"id": "up", "retries": 1, "nodes": [node(a.port), node(b.port)]}],
            [{"id": "all", "uri": "/*", "upstream_id": "up", "plugins": {P + "CountTries": {}}}])
        with GatewayProcess(tmp_path, config, workers=2):
            for _ in range(6):
                response, _ = get(port, "/echo")
                assert response.status == 200
    assert a.heads, "no request started on the node that drops them"
    for head in a.heads:
        assert b"\r\nX-Try: 1\r\n" in head and f"X-Node: 127.0.0.1:{a.port}".encode() in head
    tries = sorted(r.header("x-try") or "" for r in b.received)
    assert tries == sorted(["2"] * len(a.heads) + ["1"] * (6 - len(a.heads)))
    assert all(r.header("x-node") == f"127.0.0.1:{b.port}" for r in b.received)


def test_a_read_timeout_is_504_with_its_time_in_the_logs(tmp_path: Path) -> None:
    port = free_port()
    with Upstream("up") as up:
        config = gateway_config(tmp_path, port, [
            {"id": "up", "nodes": [node(up.port)], "timeout": {"connect": 1, "send": 1, "read": 0.5}}],
            [{"id": "all", "uri": "/*", "upstream_id": "up"}])
        with GatewayProcess(tmp_path, config, workers=2) as gw:
            response, _ = get(port, "/slow/3")
            assert response.status == 504
    m = re.search(r"upstream timed out after (\d+\.\d+) s while reading response header from "
                  rf"upstream 127\.0\.0\.1:{up.port}", gw.logs())
    assert m and 0.5 <= float(m[1]) < 2, gw.logs()
    (_m, _p, status, addrs, statuses, times), = logged_tries(tmp_path)
    assert (status, addrs, statuses) == (504, [f"127.0.0.1:{up.port}"], ["504"])
    assert 0.5 <= float(times[0]) < 2


def test_a_connect_timeout_is_504_with_its_time_in_the_logs(tmp_path: Path) -> None:
    port = free_port()
    # A listener whose accept queue is full and never drained: the kernel drops further SYNs,
    # so a connect to it hangs until the connect timeout.
    full = socket.socket()
    full.bind(("127.0.0.1", 0))
    full.listen(0)
    fillers = []
    for _ in range(4):
        s = socket.socket()
        s.setblocking(False)
        s.connect_ex(full.getsockname())
        fillers.append(s)
    time.sleep(0.2)
    probe = socket.socket()
    probe.settimeout(0.5)
    try:
        probe.connect(full.getsockname())
        pytest.skip("this kernel accepts connects past a full backlog")
    except (TimeoutError, OSError):
        pass
    finally:
        probe.close()
    try:
        config = gateway_config(tmp_path, port, [
            {"id": "up", "nodes": [{"host": "127.0.0.1", "port": full.getsockname()[1]}],
             "timeout": {"connect": 0.5, "send": 1, "read": 1}}],
            [{"id": "all", "uri": "/*", "upstream_id": "up"}])
        with GatewayProcess(tmp_path, config, workers=2) as gw:
            started = time.monotonic()
            response, _ = get(port, "/x")
            assert response.status == 504
            assert time.monotonic() - started < 2
    finally:
        for s in fillers:
            s.close()
        full.close()
    m = re.search(r"cannot connect to upstream 127\.0\.0\.1:\d+ \(timed out after (\d+\.\d+) s\)",
                  gw.logs())
    assert m and 0.5 <= float(m[1]) < 2, gw.logs()
    (_m, _p, status, _addrs, statuses, times), = logged_tries(tmp_path)
    assert (status, statuses) == (504, ["504"]) and 0.5 <= float(times[0]) < 2


def test_a_route_timeout_keeps_the_upstreams_retry_settings() -> None:
    config = UpstreamConfig(id="u", nodes=[Node(host="a", port=1), Node(host="b", port=2)],
                            retry_timeout=2.5, retry_on_statuses=[503, 502])
    group = compile_upstream(config, "u")
    assert (group.retries, group.retry_timeout, group.retry_statuses) == \
        (1, 2.5, frozenset({502, 503}))
    routed = with_timeout(group, Timeout(connect=1, send=1, read=1))
    assert (routed.retries, routed.retry_timeout, routed.retry_statuses) == \
        (1, 2.5, frozenset({502, 503}))
    assert compile_upstream(UpstreamConfig(id="v", nodes=[Node(host="a", port=1)]),
                            "v").retry_statuses is None


def test_an_exchange_stays_a_small_object() -> None:
    # pymalloc serves objects up to 512 bytes (GC header included) from its pools; a larger
    # Exchange costs each request a system malloc and free (exchange.pxd): retry state lives in
    # a TryLog made at the first retry instead
    assert Exchange.__basicsize__ + 16 <= 512, Exchange.__basicsize__


def test_a_node_that_resets_each_connection_is_retried_elsewhere(tmp_path: Path) -> None:
    # Accepts each connection and resets it at once: the reset may come before the gateway sent
    # anything (the connect "succeeded", then failed) or after it sent the request head; either
    # way no byte of a response came and a GET goes to the other node.
    resetter = socket.socket()
    resetter.bind(("127.0.0.1", 0))
    resetter.listen(64)
    stop = threading.Event()

    def reset_all() -> None:
        while not stop.is_set():  # blocking accept: the reset follows the connect at once
            try:
                conn, _ = resetter.accept()
            except OSError:
                return
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()

    thread = threading.Thread(target=reset_all, daemon=True)
    thread.start()
    port = free_port()
    try:
        with Upstream("b") as b:
            config = gateway_config(tmp_path, port, [
                {"id": "up", "nodes": [node(resetter.getsockname()[1]), node(b.port)]}],
                [{"id": "all", "uri": "/*", "upstream_id": "up"}])
            with GatewayProcess(tmp_path, config, workers=2):
                for _ in range(60):
                    response, body = get(port, "/echo")
                    assert response.status == 200 and b'"upstream": "b"' in body
    finally:
        stop.set()
        resetter.shutdown(socket.SHUT_RDWR)
        resetter.close()
        thread.join(5)
    assert sum(len(t[3]) == 2 for t in logged_tries(tmp_path)) >= 1
