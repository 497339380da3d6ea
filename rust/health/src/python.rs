//! PyO3 binding: class `SharedHealth`.
//!
//! ```python
//! h = SharedHealth.create(slots=4096)       # master, before the workers start
//! h = SharedHealth.attach(fd)               # worker (fd passed with pass_fds)
//! i = h.slot("shop\x1f127.0.0.1:9001")      # a node's slot (cache it)
//! h.report(i, "active", "timeout", 0, (2, 5, 2, 3))   # -> "down" | "up" | None
//! h.node(i)                                 # what /status shows
//! ```
//!
//! Workers read and report through the C ABI (`gw_health_report`, the state word's address);
//! these methods are for the master, tests and tools.

use gateway_shm::python::{label_bytes, os_error};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyDict;

use crate::{HealthTable, Outcome, Source, Thresholds, Transition, LABEL_MAX};

fn outcome(name: &str) -> PyResult<Outcome> {
    match name {
        "success" => Ok(Outcome::Success),
        "http_status" => Ok(Outcome::HttpFailure),
        "tcp_failure" => Ok(Outcome::TcpFailure),
        "timeout" => Ok(Outcome::Timeout),
        _ => Err(PyValueError::new_err(format!(
            "unknown outcome {name:?} (success, http_status, tcp_failure, timeout)"
        ))),
    }
}

fn source(name: &str) -> PyResult<Source> {
    match name {
        "active" => Ok(Source::Active),
        "passive" => Ok(Source::Passive),
        _ => Err(PyValueError::new_err(format!("unknown source {name:?} (active, passive)"))),
    }
}

fn source_name(s: Source) -> &'static str {
    match s {
        Source::Active => "active",
        Source::Passive => "passive",
    }
}

/// Upstream node health in shared memory (memfd + atomics).
#[pyclass(frozen, module = "gateway._native", name = "SharedHealth")]
pub struct SharedHealth {
    inner: HealthTable,
}

#[pymethods]
impl SharedHealth {
    /// Creates a new region (call in the master, before starting workers).
    #[staticmethod]
    #[pyo3(signature = (slots = 4096))]
    fn create(slots: usize) -> PyResult<SharedHealth> {
        let inner = HealthTable::create(slots).map_err(os_error)?;
        Ok(SharedHealth { inner })
    }

    /// Maps the region behind an inherited fd (the fd is not closed by this object).
    #[staticmethod]
    fn attach(fd: i32) -> PyResult<SharedHealth> {
        let inner = HealthTable::attach(fd).map_err(os_error)?;
        Ok(SharedHealth { inner })
    }

    /// The memfd number.
    #[getter]
    fn fd(&self) -> i32 {
        self.inner.fd()
    }

    /// Number of nodes the table holds.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// Slots claimed so far.
    #[getter]
    fn used(&self) -> u64 {
        self.inner.used()
    }

    /// Longest label accepted, in bytes.
    #[classattr]
    fn label_max() -> usize {
        LABEL_MAX
    }

    /// Address of the table for the C ABI (`gw_health_report`), valid while this object lives.
    #[getter]
    fn _handle(&self) -> usize {
        &self.inner as *const HealthTable as usize
    }

    /// Address of slot ``i``'s state word (the balancer's one atomic load); 0 if out of range.
    fn state_address(&self, i: i64) -> usize {
        usize::try_from(i)
            .ok()
            .and_then(|i| self.inner.get(i))
            .map_or(0, |s| &s.state as *const _ as usize)
    }

    /// The slot of ``label``, claimed if new; -1 when the table is full or the label too long.
    fn slot(&self, label: &Bound<'_, PyAny>) -> PyResult<i64> {
        Ok(self.inner.slot(label_bytes(label)?).map_or(-1, |i| i as i64))
    }

    /// Records one outcome (``source``: active | passive; ``outcome``: success | http_status |
    /// tcp_failure | timeout) against ``thresholds`` (successes, http_failures, tcp_failures,
    /// timeouts); returns "down", "up" or None.
    fn report(
        &self,
        i: i64,
        source_name: &str,
        outcome_name: &str,
        status: u16,
        thresholds: (u8, u8, u8, u8),
    ) -> PyResult<Option<&'static str>> {
        let Ok(i) = usize::try_from(i) else { return Ok(None) };
        let (successes, http_failures, tcp_failures, timeouts) = thresholds;
        let th = Thresholds { successes, http_failures, tcp_failures, timeouts };
        let t = self.inner.report(i, source(source_name)?, outcome(outcome_name)?, status, th);
        Ok(t.map(|t| match t {
            Transition::Down => "down",
            Transition::Up => "up",
        }))
    }

    /// Makes slot ``i`` a healthy node with no history.
    fn reset(&self, i: i64) {
        if let Ok(i) = usize::try_from(i) {
            self.inner.reset(i);
        }
    }

    /// Whether the node of slot ``i`` is down.
    fn is_down(&self, i: i64) -> bool {
        usize::try_from(i).is_ok_and(|i| self.inner.is_down(i))
    }

    /// What ``/status`` shows of slot ``i`` (None if out of range): ``healthy``, the consecutive
    /// ``counters``, ``unhealthy_reason`` (None while healthy), times in Unix seconds (None:
    /// never), the last active check and the failure totals.
    fn node<'py>(&self, py: Python<'py>, i: i64) -> PyResult<Option<Bound<'py, PyDict>>> {
        let Some(h) = usize::try_from(i).ok().and_then(|i| self.inner.read(i)) else {
            return Ok(None);
        };
        let seconds = |ms: u64| (ms != 0).then(|| ms as f64 / 1000.0);
        let out = PyDict::new(py);
        out.set_item("healthy", !h.down)?;
        let counters = PyDict::new(py);
        counters.set_item("successes", h.successes)?;
        counters.set_item("http_failures", h.http_failures)?;
        counters.set_item("tcp_failures", h.tcp_failures)?;
        counters.set_item("timeouts", h.timeouts)?;
        out.set_item("counters", counters)?;
        let reason = match h.reason {
            Some(r) => {
                let d = PyDict::new(py);
                d.set_item("source", source_name(r.source))?;
                d.set_item("failure", r.outcome.name())?;
                d.set_item("status", (r.status != 0).then_some(r.status))?;
                Some(d)
            }
            None => None,
        };
        out.set_item("unhealthy_reason", reason)?;
        out.set_item("changed_at", seconds(h.changed_ms))?;
        let active = PyDict::new(py);
        active.set_item("last_check_at", seconds(h.checked_ms))?;
        active.set_item("last_result", h.last_check.map(|(o, _)| o.name()))?;
        active.set_item("last_status", h.last_check.and_then(|(_, s)| (s != 0).then_some(s)))?;
        active.set_item("successes", h.active_ok)?;
        active.set_item("failures", h.active_failed)?;
        out.set_item("active", active)?;
        let passive = PyDict::new(py);
        passive.set_item("failures", h.passive_failed)?;
        out.set_item("passive", passive)?;
        Ok(Some(out))
    }

    fn __repr__(&self) -> String {
        format!(
            "SharedHealth(fd={}, capacity={}, used={})",
            self.inner.fd(),
            self.inner.capacity(),
            self.inner.used()
        )
    }
}

/// Adds `SharedHealth` to `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SharedHealth>()?;
    Ok(())
}
