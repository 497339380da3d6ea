"""Type stubs for gateway._native: PyO3 bindings of the rust/ crates (the Cython module
gateway._proto lives in the same shared object; see _proto.pyi)."""
from collections.abc import Callable
from typing import Any, Literal, Self, final

from gateway import _proto as _proto

# The classes below are `#[pyclass]`es without `subclass`, so Python cannot subclass them: @final
# (not HttpParseError: an exception class, which can be subclassed).
# `python -m mypy.stubtest gateway._native gateway._proto` (tests/test_sourcecode.py) checks this
# file against the built module.

__all__ = [
    "HttpParseError", "parse_request", "parse_response", "RequestHead", "ResponseHead",
    "ChunkedScanner", "Router", "normalize_path", "NOT_FOUND", "METHOD_NOT_ALLOWED", "BAD_PATH",
    "SharedLimiter", "BREAKER_HEALTHY", "BREAKER_UNHEALTHY", "BREAKER_TRIP", "hash_key",
    "synced_key", "synced_tag",
    "SharedMetrics", "SharedHealth", "TlsEngine", "TlsConnection", "ABI_REQUEST_HEAD_SIZE",
    "_proto",
]

ABI_REQUEST_HEAD_SIZE: int
NOT_FOUND: int
METHOD_NOT_ALLOWED: int
BAD_PATH: int

# ---- rust/http ----------------------------------------------------------------------------

class HttpParseError(ValueError):
    status: int
    reason: str

@final
class RequestHead:
    @property
    def head_len(self) -> int: ...
    @property
    def method(self) -> str: ...
    @property
    def target(self) -> bytes: ...
    @property
    def path(self) -> bytes: ...
    @property
    def query(self) -> bytes: ...
    @property
    def version(self) -> Literal["1.0", "1.1"]: ...
    @property
    def body_kind(self) -> Literal["none", "length", "chunked"]: ...
    @property
    def content_length(self) -> int: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def expect_continue(self) -> bool: ...
    @property
    def upgrade(self) -> bool: ...
    @property
    def host(self) -> bytes | None: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...
    @property
    def hop_by_hop(self) -> list[bytes]: ...

@final
class ResponseHead:
    @property
    def head_len(self) -> int: ...
    @property
    def status(self) -> int: ...
    @property
    def reason(self) -> str: ...
    @property
    def version(self) -> Literal["1.0", "1.1"]: ...
    @property
    def body_kind(self) -> Literal["none", "length", "chunked", "until_close"]: ...
    @property
    def content_length(self) -> int: ...
    @property
    def keep_alive(self) -> bool: ...
    @property
    def headers(self) -> list[tuple[bytes, bytes]]: ...

@final
class ChunkedScanner:
    def __new__(cls) -> Self: ...
    def feed(self, data: bytes) -> tuple[int, bool]:
        """Bytes of this message in ``data`` and whether the message ended; raises
        HttpParseError on invalid framing."""
    def reset(self) -> None: ...
    @property
    def body_bytes(self) -> int: ...

def parse_request(data: bytes, max_request_line: int = 8192, max_head_size: int = 32768,
                  max_headers: int = 100) -> RequestHead | None:
    """The parsed head, None when more bytes are needed; raises HttpParseError (with the HTTP
    status to answer) when the request must be refused."""

def parse_response(data: bytes, request_was_head: bool = False) -> ResponseHead | None: ...

# ---- rust/router --------------------------------------------------------------------------

@final
class Router:
    """Routes as (paths, hosts, methods, priority); the route index is the list position."""
    def __new__(cls, routes: list[tuple[list[str], list[str], list[str], int]]) -> Self: ...
    def match(self, method: bytes, host: bytes, path: bytes
              ) -> tuple[int, list[tuple[str, str]], bytes | None]:
        """(route index or NOT_FOUND / METHOD_NOT_ALLOWED / BAD_PATH, params, the normalised
        path when it differs from ``path``)."""
    def edited(self, changes: list[tuple[int, tuple[list[str], list[str], list[str], int] | None]]
               ) -> Router:
        """A new router with each (index, route or None) set in turn: index == len adds a
        route, None removes one (its index stays taken, matching nothing)."""
    def __len__(self) -> int: ...

def normalize_path(path: bytes) -> bytes: ...

# ---- rust/limiter -------------------------------------------------------------------------

# A key's text, or a slot key (int) from synced_key / synced_counter_keys.
_Key = str | bytes | int

@final
class SharedLimiter:
    """Token buckets (GCRA) and window counters in shared memory, exact across processes."""
    @staticmethod
    def create(bucket_slots: int = 65536, counter_slots: int = 65536,
               cell_slots: int = 16384) -> SharedLimiter: ...
    @staticmethod
    def attach(fd: int) -> SharedLimiter: ...
    @property
    def fd(self) -> int: ...
    @property
    def overflow(self) -> int: ...
    def acquire(self, key: _Key, rate: float, burst: float = 0.0,
                cost: float = 1.0) -> tuple[bool, float]:
        """(admitted, delay in seconds); nginx limit_req semantics."""
    def count(self, key: _Key, limit: int, window_seconds: float, cost: int = 1,
              sliding: bool = False) -> tuple[bool, int, float]:
        """(admitted, remaining, seconds until the window resets)."""
    def count_used(self, key: _Key, window_seconds: float) -> int:
        """Requests counted in the current fixed window of ``key`` (read-only)."""
    def count_add(self, key: _Key, window_seconds: float, delta: int) -> int:
        """Adds ``delta`` to the current fixed window of ``key`` whatever the limit (capped at
        2^32 - 1): the other nodes' counts for a per-node syncer. The count after it."""
    def synced_counter_keys(self) -> list[int]:
        """The synced keys (see synced_key) that hold a counter slot: the live keys of the limits
        that the master's Redis syncer shares between nodes."""
    def bucket_raise(self, key: _Key, backlog_seconds: float) -> float:
        """Raises the token bucket of ``key`` to at least ``backlog_seconds`` of waiting
        requests (the other nodes' requests); the backlog after it."""
    def bucket_backlog(self, key: _Key) -> float:
        """Seconds of requests waiting in the token bucket of ``key`` (read-only)."""
    def gauge_acquire(self, key: _Key, max: int) -> tuple[bool, int, int]:
        """In-flight gauge (limit-conn): adds one if below ``max``. (admitted, count, slot);
        pass ``slot`` to gauge_release when the request ends (-1: nothing was counted)."""
    def gauge_release(self, key: str | bytes, slot: int) -> bool: ...
    def gauge(self, key: str | bytes) -> int: ...
    def breaker_check(self, key: str | bytes, failures: int, max_open_seconds: float
                      ) -> tuple[bool, float, int, int, int]:
        """Circuit breaker (api-breaker), read-only: (open, retry_after_seconds, generation,
        unhealthy, healthy)."""
    def breaker_report(self, key: str | bytes, outcome: int, failures: int, successes: int,
                       max_open_seconds: float, expected_generation: int = ...
                       ) -> tuple[bool, float, int, int, int]:
        """Records BREAKER_HEALTHY / BREAKER_UNHEALTHY / BREAKER_TRIP; the state after it.
        A TRIP with ``expected_generation`` >= 0 applies only to that generation (default -1:
        any; PyO3 cannot show a negative default in the runtime signature, so it is not
        written here either)."""

BREAKER_HEALTHY: int
BREAKER_UNHEALTHY: int
BREAKER_TRIP: int

def hash_key(key: _Key) -> int: ...
def synced_key(key: str | bytes, tag: int) -> int:
    """The slot key of ``key`` for a limit synced between nodes under ``tag`` (20 bits)."""
def synced_tag(slot_key: int) -> int | None: ...

# ---- rust/metrics -------------------------------------------------------------------------

# (cumulative bucket counts, +Inf last; sum in milliseconds). A stub-only alias: private, so
# stubtest does not look for it in the module.
_HistogramSnapshot = tuple[tuple[int, ...], float]

@final
class SharedMetrics:
    """Request metrics in shared memory (memfd + atomics): workers record, the master scrapes
    without talking to them."""
    latency_buckets_ms: list[int]
    label_max: int
    @staticmethod
    def create(slots: int = 65536) -> SharedMetrics: ...
    @staticmethod
    def attach(fd: int) -> SharedMetrics: ...
    @property
    def fd(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def dropped(self) -> int: ...
    @property
    def requests(self) -> int: ...
    def slot(self, label: str | bytes, series: bool = False) -> int:
        """The stable index of the label's slot (a counter, or latency histograms + bandwidth
        with ``series=True``), claimed if new; -1 when the table is full. Cache it."""
    def record(self, series: int, status: int, request_latency: float,
               upstream_latency: float = 0.0, bytes_in: int = 0, bytes_out: int = 0) -> None:
        """One request: +1 on the ``status`` counter slot; latencies (seconds; upstream <= 0 is
        not observed) and bytes into the ``series`` slot. -1 slots count as dropped."""
    def add(self, slot: int, n: int = 1) -> None: ...
    def snapshot(self) -> tuple[int, int, int, list[tuple[str, int]],
                                list[tuple[str, _HistogramSnapshot, _HistogramSnapshot, int, int]]]:
        """(requests, dropped, used, counters as (label, value), series as (label, request,
        upstream, bytes_in, bytes_out))."""
    def render_exposition(self, prefix: str, hostname: str) -> bytes:
        """The Prometheus text exposition of a snapshot (rendered without the GIL)."""

# ---- rust/health ---------------------------------------------------------------------------

@final
class SharedHealth:
    """Upstream node health in shared memory (memfd + atomics): the master's active checks and
    every worker's passive checks write it, the balancers read it."""
    label_max: int
    @staticmethod
    def create(slots: int = 4096) -> SharedHealth: ...
    @staticmethod
    def attach(fd: int) -> SharedHealth: ...
    @property
    def fd(self) -> int: ...
    @property
    def capacity(self) -> int: ...
    @property
    def used(self) -> int: ...
    @property
    def _handle(self) -> int: ...
    def state_address(self, i: int) -> int:
        """Address of slot ``i``'s state word; 0 if out of range."""
    def slot(self, label: str | bytes) -> int:
        """The node's slot, claimed if new; -1 when the table is full or the label too long."""
    def report(self, i: int, source_name: str, outcome_name: str, status: int,
               thresholds: tuple[int, int, int, int]) -> Literal["down", "up"] | None:
        """One outcome (source: active | passive; outcome: success | http_status | tcp_failure
        | timeout) against (successes, http_failures, tcp_failures, timeouts)."""
    def reset(self, i: int) -> None: ...
    def is_down(self, i: int) -> bool: ...
    def node(self, i: int) -> dict[str, Any] | None:
        """What /status shows of slot ``i``."""

# ---- rust/tls ------------------------------------------------------------------------------

@final
class TlsEngine:
    """A worker's TLS sites (rustls): chosen per handshake by SNI from a table that `update`
    swaps whole."""
    def __new__(cls, alpn: list[bytes]) -> TlsEngine: ...
    def update(self, sites: list[tuple[str, list[str], str, str, str | None]],
               fallback_sni: str | None = None) -> None:
        """Sites (id, snis, cert PEM, key PEM, client CA PEM) for handshakes from now on;
        ValueError "ssls[i]: reason" leaves the running ones."""
    @staticmethod
    def refusal(cert_pem: str, key_pem: str, client_ca_pem: str | None = None) -> str | None:
        """Why rustls refuses this certificate, key and CA, or None."""
    def serving(self, server_name: str) -> tuple[str, bool] | None:
        """(ssl id, client certificates required) of the site serving the name, or None."""
    def connection(self, write: Callable[[bytes], object]) -> TlsConnection:
        """A connection for a new client; `write` takes the records to send."""

@final
class TlsConnection:
    """One client's TLS connection, sans-IO: records in, plaintext out, and back."""
    def receive(self, data: bytes) -> bytes | None:
        """One socket read -> its plaintext (None: none); ConnectionError when it fails (the
        alert was written)."""
    def send(self, data: bytes) -> None: ...
    def close_notify(self) -> None: ...
    def detach(self) -> None:
        """Forgets the write callable."""
    @property
    def handshaking(self) -> bool: ...
    @property
    def peer_closed(self) -> bool: ...
    @property
    def alpn_protocol(self) -> str | None: ...
    @property
    def protocol(self) -> str | None: ...
    @property
    def cipher(self) -> str | None: ...
    @property
    def server_name(self) -> str | None: ...
    @property
    def ssl_id(self) -> str | None: ...
    @property
    def client_cert_required(self) -> bool: ...
    @property
    def client_cert(self) -> bytes | None: ...
