"""Rate limiting one request: gateway._native.SharedLimiter (GCRA token bucket and window
counters in shared memory, atomics, exact across processes) vs a pure-Python token bucket in
a dict (per process only: what it would take without the shared memory)."""
import time

from gateway._native import SharedLimiter

RATE = 1e9  # never limits: the benchmark measures the admitted path


class PyTokenBucket:
    def __init__(self) -> None:
        self.buckets: dict[str, tuple[float, float]] = {}

    def acquire(self, key: str, rate: float, burst: float) -> bool:
        now = time.monotonic()
        tokens, last = self.buckets.get(key, (burst, now))
        tokens = min(burst, tokens + (now - last) * rate)
        if tokens < 1:
            self.buckets[key] = (tokens, now)
            return False
        self.buckets[key] = (tokens - 1, now)
        return True


class PyWindowCounter:
    def __init__(self) -> None:
        self.windows: dict[str, tuple[int, float]] = {}

    def count(self, key: str, limit: int, window: float) -> bool:
        now = time.monotonic()
        used, start = self.windows.get(key, (0, now))
        if now - start >= window:
            used, start = 0, now
        if used >= limit:
            return False
        self.windows[key] = (used + 1, start)
        return True


def test_limiter_shared_token_bucket(benchmark):
    limiter = SharedLimiter.create(4096, 4096)
    admitted, _ = benchmark(limiter.acquire, "route:127.0.0.1", RATE, RATE)
    assert admitted


def test_limiter_python_token_bucket(benchmark):
    bucket = PyTokenBucket()
    assert benchmark(bucket.acquire, "route:127.0.0.1", RATE, RATE)


def test_limiter_shared_window_counter(benchmark):
    limiter = SharedLimiter.create(4096, 4096)
    admitted, _, _ = benchmark(limiter.count, "route:127.0.0.1", 10 ** 12, 60.0)
    assert admitted


def test_limiter_python_window_counter(benchmark):
    counter = PyWindowCounter()
    assert benchmark(counter.count, "route:127.0.0.1", 10 ** 12, 60.0)
