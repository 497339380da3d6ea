"""The native core through its Python API: parser, router and the shared-memory limiter
(across real processes)."""
from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from gateway import _native

#: The counter window HAMMER uses (a day: fixed windows start at multiples of the window on the
#: monotonic clock, and a 60 s one is crossed by a short run about once in 100).
DAY = 86400.0

HAMMER = textwrap.dedent("""
    import sys, time
    from gateway._native import SharedLimiter
    lim = SharedLimiter.attach(int(sys.argv[1]))
    mode, seconds = sys.argv[2], float(sys.argv[3])
    start_at = float(sys.argv[4])
    while time.time() < start_at:
        pass
    admitted = 0
    end = start_at + seconds  # the same window in every process, however late it started
    while time.time() < end:
        if mode == "bucket":
            ok, _ = lim.acquire("shared-key", 100.0, 10.0)
        else:
            # a day-long window: a 60 s one is crossed by a 0.5 s run about once in 100 runs
            ok, _, _ = lim.count("shared-counter", 150, 86400.0)
        admitted += ok
    print(admitted)
""")


def hammer(limiter: _native.SharedLimiter, mode: str, processes: int, seconds: float) -> list[int]:
    import time
    start_at = time.time() + 1.5
    procs = [subprocess.Popen([sys.executable, "-c", HAMMER, str(limiter.fd), mode, str(seconds),
                               str(start_at)], stdout=subprocess.PIPE, pass_fds=(limiter.fd,))
             for _ in range(processes)]
    return [int(p.communicate(timeout=30)[0]) for p in procs]


def test_token_bucket_is_exact_across_processes() -> None:
    limiter = _native.SharedLimiter.create(1024, 1024)
    counts = hammer(limiter, "bucket", 2, 2.0)
    # 100 r/s for 2 s across both processes: 200 + the burst of 10 in total (not 400), each got a
    # share. The burst absorbs refill time lost while both processes are descheduled.
    assert 200 <= sum(counts) <= 212, counts
    assert all(c > 0 for c in counts)


def test_counter_is_exact_across_processes() -> None:
    limiter = _native.SharedLimiter.create(1024, 1024)
    counts = hammer(limiter, "count", 2, 0.5)
    assert sum(counts) == 150, counts


def test_counter_read_and_adjusted_from_another_process() -> None:
    """What a per-node syncer needs: the master reads the workers' counts and adds the other
    nodes' counts, and the workers' next decisions see them."""
    limiter = _native.SharedLimiter.create(1024, 1024)
    counts = hammer(limiter, "count", 2, 0.3)
    assert sum(counts) == 150, counts
    assert limiter.count_used("shared-counter", DAY) == 150
    limiter.count_add("shared-counter", DAY, 5)  # over the limit: still recorded
    assert limiter.count_used("shared-counter", DAY) == 155
    fresh = _native.SharedLimiter.create(1024, 1024)
    assert fresh.count_add("shared-counter", DAY, 149) == 149
    assert sum(hammer(fresh, "count", 2, 0.3)) == 1


def test_parser_binding_reports_status_and_reason() -> None:
    head = _native.parse_request(b"GET /a?b=1 HTTP/1.1\r\nHost: x\r\nConnection: close, X-A\r\nX-A: 1\r\n\r\n")
    assert head is not None
    assert (head.method, head.path, head.query, head.keep_alive) == ("GET", b"/a", b"b=1", False)
    assert b"x-a" in head.hop_by_hop
    assert _native.parse_request(b"GET / HTTP/1.1\r\nHost: x\r\n") is None
    with pytest.raises(_native.HttpParseError) as err:
        _native.parse_request(b"GET / HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\n")
    assert err.value.status == 400


def test_router_binding() -> None:
    router = _native.Router([(["/users/:id"], [], ["GET"], 0), (["/static/*"], ["*.example.com"], [], 0)])
    code, params, normalized = router.match(b"GET", b"x", b"/users/7")
    assert code == 0 and dict(params) == {"id": "7"} and normalized is None
    assert router.match(b"GET", b"a.example.com", b"/static/x/y")[0] == 1
    assert router.match(b"GET", b"example.com", b"/static/x")[0] < 0
    code, _, normalized = router.match(b"GET", b"x", b"/a/../users/8")
    assert code == 0 and normalized == b"/users/8"
    with pytest.raises(ValueError):
        _native.Router([(["no-slash"], [], [], 0)])
