//! PyO3 binding: class `SharedLimiter` and function `hash_key`.
//!
//! ```python
//! lim = SharedLimiter.create(bucket_slots=65536, counter_slots=65536)   # master
//! fd = lim.fd                      # inherit it (fork) or pass it (pass_fds=[fd])
//! lim = SharedLimiter.attach(fd)   # worker
//! allowed, delay = lim.acquire(b"route1:10.0.0.1", rate=100.0, burst=20.0)
//! allowed, remaining, reset = lim.count("route1:10.0.0.1", 1000, 60.0)
//! allowed, in_flight, slot = lim.gauge_acquire("conn:route1:10.0.0.1", 10)   # limit-conn
//! lim.gauge_release("conn:route1:10.0.0.1", slot)
//! is_open, retry_after, generation = lim.breaker_check("brk:route1", 3, 300.0)  # api-breaker
//! lim.breaker_report("brk:route1", BREAKER_UNHEALTHY, 3, 3, 300.0)
//! ```
//!
//! The object is immutable (frozen) and `Sync`, so several Python threads may share it; each
//! call takes the clock itself (`CLOCK_MONOTONIC`) and is a few atomics, so the GIL is kept.

use gateway_shm::python::os_error;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyInt, PyString};

use crate::{
    hash_key as rust_hash_key, monotonic_ns, synced_key as rust_synced_key, BreakerOutcome,
    BreakerState, Limiter,
};

const BREAKER_HEALTHY: u8 = 0;
const BREAKER_UNHEALTHY: u8 = 1;
const BREAKER_TRIP: u8 = 2;

fn breaker_tuple(state: BreakerState) -> (bool, f64, u32, u32, u32) {
    (
        state.open,
        ns_to_seconds(state.retry_after_ns),
        state.generation,
        state.unhealthy,
        state.healthy,
    )
}

/// The bytes of a `str` (UTF-8) or `bytes` key, without copying, to `f`.
fn with_key_bytes<R>(key: &Bound<'_, PyAny>, f: impl FnOnce(&[u8]) -> R) -> PyResult<R> {
    if let Ok(s) = key.cast::<PyString>() {
        return Ok(f(s.to_str()?.as_bytes()));
    }
    if let Ok(b) = key.cast::<PyBytes>() {
        return Ok(f(b.as_bytes()));
    }
    Err(PyTypeError::new_err("key must be str, bytes or an int from synced_key"))
}

/// Hashes a `str` or `bytes` key; an `int` is a slot key already (from `synced_key` or
/// `synced_counter_keys`).
fn key_hash(key: &Bound<'_, PyAny>) -> PyResult<u64> {
    if key.is_instance_of::<PyInt>() {
        return key.extract::<u64>();
    }
    with_key_bytes(key, rust_hash_key)
}

fn seconds_to_ns(seconds: f64) -> PyResult<u64> {
    if !(seconds > 0.0 && seconds.is_finite()) {
        return Err(PyValueError::new_err("window_seconds must be a positive finite number"));
    }
    Ok((seconds * 1e9).round().clamp(1.0, u64::MAX as f64) as u64)
}

fn ns_to_seconds(ns: u64) -> f64 {
    if ns == u64::MAX {
        f64::INFINITY
    } else {
        ns as f64 / 1e9
    }
}

/// Rate-limiting state shared by the gateway's processes (memfd + atomics).
#[pyclass(frozen, module = "gateway._native", name = "SharedLimiter")]
pub struct SharedLimiter {
    inner: Limiter,
}

#[pymethods]
impl SharedLimiter {
    /// Creates a new shared region (call in the master, before starting workers).
    #[staticmethod]
    #[pyo3(signature = (bucket_slots = 65536, counter_slots = 65536, cell_slots = 16384))]
    fn create(
        bucket_slots: usize,
        counter_slots: usize,
        cell_slots: usize,
    ) -> PyResult<SharedLimiter> {
        let inner = Limiter::create_with_cells(bucket_slots, counter_slots, cell_slots)
            .map_err(os_error)?;
        Ok(SharedLimiter { inner })
    }

    /// Maps the region behind an inherited fd (the fd is not closed by this object).
    #[staticmethod]
    fn attach(fd: i32) -> PyResult<SharedLimiter> {
        let inner = Limiter::attach(fd).map_err(os_error)?;
        Ok(SharedLimiter { inner })
    }

    /// The memfd number.
    #[getter]
    fn fd(&self) -> i32 {
        self.inner.fd()
    }

    /// Address of the limiter for the C ABI (`gw_limiter_count`, `gw_limiter_acquire`), valid
    /// while this object lives: the Cython hooks keep the object beside the address.
    #[getter]
    fn _handle(&self) -> usize {
        &self.inner as *const Limiter as usize
    }

    /// Number of decisions that failed open because a table window was full.
    #[getter]
    fn overflow(&self) -> u64 {
        self.inner.overflow()
    }

    /// Token bucket (nginx limit_req): returns (allowed, delay_seconds). When allowed, delay is
    /// how long to hold the request (0 within the rate; ignore for nodelay); when rejected, the
    /// time until a request would be admitted (inf if never).
    #[pyo3(signature = (key, rate, burst = 0.0, cost = 1.0))]
    fn acquire(
        &self,
        key: &Bound<'_, PyAny>,
        rate: f64,
        burst: f64,
        cost: f64,
    ) -> PyResult<(bool, f64)> {
        let h = key_hash(key)?;
        let d = self.inner.acquire(h, rate, burst, cost, monotonic_ns());
        Ok((d.allowed, ns_to_seconds(d.delay_ns)))
    }

    /// Window counter (APISIX limit-count): returns (allowed, remaining, reset_seconds).
    #[pyo3(signature = (key, limit, window_seconds, cost = 1, sliding = false))]
    fn count(
        &self,
        key: &Bound<'_, PyAny>,
        limit: u64,
        window_seconds: f64,
        cost: u64,
        sliding: bool,
    ) -> PyResult<(bool, u64, f64)> {
        let h = key_hash(key)?;
        let window = seconds_to_ns(window_seconds)?;
        let d = self.inner.count(h, limit, window, cost, monotonic_ns(), sliding);
        Ok((d.allowed, d.remaining, ns_to_seconds(d.reset_ns)))
    }

    /// Requests counted in the current fixed window of `key` (read-only).
    fn count_used(&self, key: &Bound<'_, PyAny>, window_seconds: f64) -> PyResult<u64> {
        let h = key_hash(key)?;
        Ok(self.inner.count_used(h, seconds_to_ns(window_seconds)?, monotonic_ns()))
    }

    /// Adds `delta` to the current fixed window of `key` whatever the limit; the count after.
    fn count_add(&self, key: &Bound<'_, PyAny>, window_seconds: f64, delta: u64) -> PyResult<u64> {
        let h = key_hash(key)?;
        Ok(self.inner.count_add(h, seconds_to_ns(window_seconds)?, delta, monotonic_ns()))
    }

    /// The synced keys that hold a counter slot (ints; see synced_key), for the master's
    /// Redis syncer.
    fn synced_counter_keys(&self) -> Vec<u64> {
        self.inner.synced_counter_keys()
    }

    /// Raises the token bucket of `key` to at least `backlog_seconds` of waiting requests;
    /// returns the backlog after it.
    fn bucket_raise(&self, key: &Bound<'_, PyAny>, backlog_seconds: f64) -> PyResult<f64> {
        let h = key_hash(key)?;
        let backlog = if backlog_seconds > 0.0 { seconds_to_ns(backlog_seconds)? } else { 0 };
        Ok(ns_to_seconds(self.inner.bucket_raise(h, backlog, monotonic_ns())))
    }

    /// Seconds of requests waiting in the token bucket of `key` (read-only).
    fn bucket_backlog(&self, key: &Bound<'_, PyAny>) -> PyResult<f64> {
        Ok(ns_to_seconds(self.inner.bucket_backlog(key_hash(key)?, monotonic_ns())))
    }

    /// In-flight gauge (limit-conn): adds one if below `max`. Returns (allowed, count, slot):
    /// pass `slot` to gauge_release when the request ends; slot is -1 when nothing was counted
    /// (rejected, or admitted uncounted because the table was full).
    fn gauge_acquire(&self, key: &Bound<'_, PyAny>, max: u64) -> PyResult<(bool, u64, i64)> {
        let d = self.inner.gauge_acquire(key_hash(key)?, max);
        Ok((d.allowed, d.count, d.slot.map_or(-1, |s| s as i64)))
    }

    /// Takes back one admission of gauge_acquire (by the slot it returned); False if that slot
    /// held no admission of `key`.
    fn gauge_release(&self, key: &Bound<'_, PyAny>, slot: i64) -> PyResult<bool> {
        let h = key_hash(key)?;
        Ok(slot >= 0 && self.inner.gauge_release(h, slot as usize))
    }

    /// Current count of a gauge.
    fn gauge(&self, key: &Bound<'_, PyAny>) -> PyResult<u64> {
        Ok(self.inner.gauge(key_hash(key)?))
    }

    /// Circuit breaker state (api-breaker): (open, retry_after_seconds, generation,
    /// unhealthy, healthy). Read-only.
    fn breaker_check(
        &self,
        key: &Bound<'_, PyAny>,
        failures: u64,
        max_open_seconds: f64,
    ) -> PyResult<(bool, f64, u32, u32, u32)> {
        let h = key_hash(key)?;
        let max = seconds_to_ns(max_open_seconds)?;
        Ok(breaker_tuple(self.inner.breaker_check(h, failures, max, monotonic_ns())))
    }

    /// Records an outcome (BREAKER_HEALTHY / BREAKER_UNHEALTHY / BREAKER_TRIP) and returns the
    /// state after it, like breaker_check. `expected_generation` (>= 0) makes a TRIP apply only
    /// to that generation of the breaker.
    #[pyo3(signature = (key, outcome, failures, successes, max_open_seconds, expected_generation = -1))]
    fn breaker_report(
        &self,
        key: &Bound<'_, PyAny>,
        outcome: u8,
        failures: u64,
        successes: u64,
        max_open_seconds: f64,
        expected_generation: i64,
    ) -> PyResult<(bool, f64, u32, u32, u32)> {
        let h = key_hash(key)?;
        let outcome = match outcome {
            BREAKER_HEALTHY => BreakerOutcome::Healthy,
            BREAKER_UNHEALTHY => BreakerOutcome::Unhealthy,
            BREAKER_TRIP => BreakerOutcome::Trip,
            _ => return Err(PyValueError::new_err("outcome must be 0, 1 or 2")),
        };
        let max = seconds_to_ns(max_open_seconds)?;
        let expected = u32::try_from(expected_generation).ok();
        let state = self.inner.breaker_report(
            h,
            outcome,
            failures,
            successes,
            max,
            expected,
            monotonic_ns(),
        );
        Ok(breaker_tuple(state))
    }

    fn __repr__(&self) -> String {
        format!(
            "SharedLimiter(fd={}, bucket_slots={}, counter_slots={})",
            self.inner.fd(),
            self.inner.bucket_slots(),
            self.inner.counter_slots()
        )
    }
}

/// The 64-bit key hash used by SharedLimiter (FNV-1a 64 + fmix64, never 0).
#[pyfunction]
#[pyo3(name = "hash_key")]
fn py_hash_key(key: &Bound<'_, PyAny>) -> PyResult<u64> {
    key_hash(key)
}

/// The slot key (an int) of `key` for a limit synced between nodes under `tag` (the tag names
/// the limit's parameters; its low 20 bits are kept).
#[pyfunction]
#[pyo3(name = "synced_key")]
fn py_synced_key(key: &Bound<'_, PyAny>, tag: u32) -> PyResult<u64> {
    with_key_bytes(key, |bytes| rust_synced_key(bytes, tag))
}

/// The tag of a synced slot key, None for a local one.
#[pyfunction]
#[pyo3(name = "synced_tag")]
fn py_synced_tag(slot_key: u64) -> Option<u32> {
    crate::synced_tag(slot_key)
}

/// Adds `SharedLimiter` and `hash_key` to `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SharedLimiter>()?;
    m.add("BREAKER_HEALTHY", BREAKER_HEALTHY)?;
    m.add("BREAKER_UNHEALTHY", BREAKER_UNHEALTHY)?;
    m.add("BREAKER_TRIP", BREAKER_TRIP)?;
    m.add_function(wrap_pyfunction!(py_hash_key, m)?)?;
    m.add_function(wrap_pyfunction!(py_synced_key, m)?)?;
    m.add_function(wrap_pyfunction!(py_synced_tag, m)?)?;
    Ok(())
}
