"""A pool of real concurrent HTTP/1.1 clients (http.client over keep-alive sockets, one thread
each) that run while a chaos test breaks something, and record every request's outcome and
timing, so a test can say what each client saw and that none hung."""
from __future__ import annotations

import http.client
import threading
import time
from dataclasses import dataclass

from tests.support.gateway import wait_until


@dataclass(frozen=True)
class Outcome:
    client: int
    host: str
    started: float  # time.monotonic()
    ended: float
    status: int | None  # None: the exchange failed (error says how)
    error: str | None
    body_ok: bool  # the whole body its Content-Length announced arrived

    @property
    def took(self) -> float:
        return self.ended - self.started

    @property
    def whole(self) -> bool:
        """A 200 whose whole body arrived."""
        return self.status == 200 and self.error is None and self.body_ok


class LoadPool:
    """``LoadPool(port, {"victim.test": ("GET", "/bytes/100000", None, 4), ...})``: for each
    host, that many clients send the request in a loop (reconnecting after a failure) until
    ``stop()``. ``timeout`` is each socket read's limit: a request that meets it is a hung
    client, recorded with the error ``timed out``."""

    def __init__(self, port: int, plan: dict[str, tuple[str, str, bytes | None, int]],
                 timeout: float = 10.0) -> None:
        self.port = port
        self.timeout = timeout
        self.outcomes: list[Outcome] = []
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.threads: list[threading.Thread] = []
        n = 0
        for host, (method, path, body, clients) in plan.items():
            for _ in range(clients):
                self.threads.append(threading.Thread(
                    target=self._run, args=(n, host, method, path, body), daemon=True))
                n += 1

    def __enter__(self) -> LoadPool:
        for thread in self.threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stop(self) -> list[Outcome]:
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.timeout + 5)
        assert not any(t.is_alive() for t in self.threads), "a load client is stuck"
        return self.outcomes

    def _run(self, client: int, host: str, method: str, path: str, body: bytes | None) -> None:
        conn: http.client.HTTPConnection | None = None
        while not self.stopping.is_set():
            if conn is None:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=self.timeout)
            started = time.monotonic()
            status = None
            error = None
            body_ok = False
            try:
                conn.request(method, path, body=body, headers={"Host": host})
                response = conn.getresponse()
                status = response.status
                data = response.read()
                length = response.getheader("content-length")
                body_ok = length is None or int(length) == len(data)
                if response.will_close:
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as exc:
                error = f"{type(exc).__name__}: {exc}"
                conn.close()
                conn = None
                time.sleep(0.01)  # a client backs off a little before reconnecting
            with self.lock:
                self.outcomes.append(Outcome(client, host, started, time.monotonic(), status,
                                             error, body_ok))
        if conn is not None:
            conn.close()

    def seen(self, host: str, after: float = 0.0, before: float = float("inf")) -> list[Outcome]:
        """What the clients of ``host`` saw for the requests they started in [after, before)."""
        with self.lock:
            return [o for o in self.outcomes if o.host == host and after <= o.started < before]

    def wait_for(self, host: str, count: int, after: float = 0.0, timeout: float = 10.0) -> None:
        """Until ``count`` requests to ``host`` started after ``after`` have ended."""
        wait_until(lambda: len(self.seen(host, after)) >= count, timeout,
                   f"fewer than {count} requests to {host} ended")

    def wait_served(self, host: str, after: float, what: str, timeout: float = 5.0) -> None:
        """Until a request to ``host`` started after ``after`` got a whole 200; ``what`` says
        what failed if none does in time."""
        wait_until(lambda: any(o.whole for o in self.seen(host, after)), timeout, what)


def assert_all_served(outcomes: list[Outcome], minimum: int) -> None:
    """At least ``minimum`` requests, each a whole 200 within 2 s."""
    bad = [o for o in outcomes if not o.whole]
    assert len(outcomes) >= minimum and not bad, summary(bad or outcomes)
    assert max(o.took for o in outcomes) < 2.0, summary(outcomes)


def summary(outcomes: list[Outcome]) -> str:
    """A compact description for assertion messages: each kind of outcome and its count."""
    kinds: dict[str, int] = {}
    for o in outcomes:
        key = str(o.status) if o.error is None else (o.error.split(":")[0])
        if o.error is None and not o.body_ok:
            key += " (body cut short)"
        kinds[key] = kinds.get(key, 0) + 1
    slowest = max((o.took for o in outcomes), default=0.0)
    return f"{kinds}, slowest {slowest:.2f} s"
