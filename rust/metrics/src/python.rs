//! PyO3 binding: class `SharedMetrics`.
//!
//! ```python
//! m = SharedMetrics.create(slots=65536)          # master
//! m = SharedMetrics.attach(fd)                    # worker (fd passed with pass_fds)
//! series = m.slot("route\x1fconsumer\x1fnode", series=True)   # cache these indexes
//! status = m.slot("200\x1froute\x1fconsumer\x1fnode")
//! m.record(series, status, 0.012, 0.010, 512, 2048)           # once per request
//! requests, dropped, used, counters, series = m.snapshot()    # the scrape
//! ```
//!
//! Every method is a few atomics on shared pages and keeps the GIL, except `snapshot`, which
//! copies the claimed slots out without holding it and then builds the Python lists.

use gateway_shm::python::{label_bytes, os_error};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList, PyTuple};

use crate::exposition::{self, ExpositionOptions};
use crate::{seconds_to_us, Histogram, Kind, MetricsStore, BUCKETS, LABEL_MAX, LATENCY_BUCKETS_MS};

fn index(i: i64) -> Option<usize> {
    usize::try_from(i).ok()
}

/// Request metrics in shared memory (memfd + atomics), written by workers, read by scrapes.
#[pyclass(frozen, module = "gateway._native", name = "SharedMetrics")]
pub struct SharedMetrics {
    inner: MetricsStore,
}

fn histogram_tuple<'py>(py: Python<'py>, h: &Histogram) -> PyResult<Bound<'py, PyTuple>> {
    let buckets = PyTuple::new(py, h.buckets.iter())?;
    PyTuple::new(py, [buckets.into_any(), (h.sum_us as f64 / 1000.0).into_pyobject(py)?.into_any()])
}

#[pymethods]
impl SharedMetrics {
    /// Creates a new region (call in the master, before starting workers).
    #[staticmethod]
    #[pyo3(signature = (slots = 65536))]
    fn create(slots: usize) -> PyResult<SharedMetrics> {
        let inner = MetricsStore::create(slots).map_err(os_error)?;
        Ok(SharedMetrics { inner })
    }

    /// Maps the region behind an inherited fd (the fd is not closed by this object).
    #[staticmethod]
    fn attach(fd: i32) -> PyResult<SharedMetrics> {
        let inner = MetricsStore::attach(fd).map_err(os_error)?;
        Ok(SharedMetrics { inner })
    }

    /// The memfd number.
    #[getter]
    fn fd(&self) -> i32 {
        self.inner.fd()
    }

    /// Number of label sets the table holds.
    #[getter]
    fn capacity(&self) -> usize {
        self.inner.capacity()
    }

    /// Label sets claimed so far.
    #[getter]
    fn used(&self) -> u64 {
        self.inner.used()
    }

    /// Observations lost because the table was full.
    #[getter]
    fn dropped(&self) -> u64 {
        self.inner.dropped()
    }

    /// Requests recorded.
    #[getter]
    fn requests(&self) -> u64 {
        self.inner.requests()
    }

    /// Upper bounds of the latency buckets in milliseconds (+Inf not included).
    #[classattr]
    fn latency_buckets_ms() -> Vec<u64> {
        LATENCY_BUCKETS_MS.to_vec()
    }

    /// Longest label accepted, in bytes.
    #[classattr]
    fn label_max() -> usize {
        LABEL_MAX
    }

    /// Address of the store for the C ABI (`gw_metrics_record`), valid while this object
    /// lives: the Cython hook keeps the object beside the address.
    #[getter]
    fn _handle(&self) -> usize {
        &self.inner as *const MetricsStore as usize
    }

    /// The index of the slot for ``label`` (a counter, or with ``series=True`` a pair of
    /// latency histograms plus bandwidth), claimed if new; -1 when the table is full. Stable
    /// for the life of the region: cache it.
    #[pyo3(signature = (label, series = false))]
    fn slot(&self, label: &Bound<'_, PyAny>, series: bool) -> PyResult<i64> {
        let bytes = label_bytes(label)?;
        if bytes.len() > LABEL_MAX {
            return Err(PyValueError::new_err(format!("label longer than {LABEL_MAX} bytes")));
        }
        let kind = if series { Kind::Series } else { Kind::Counter };
        Ok(self.inner.slot(kind, bytes).map_or(-1, |i| i as i64))
    }

    /// One request: +1 on the ``status`` counter slot; the latencies (seconds; an upstream
    /// latency <= 0 means nothing was proxied and is not observed) and bytes into the ``series``
    /// slot. A slot of -1 counts a dropped observation.
    #[pyo3(signature = (series, status, request_latency, upstream_latency = 0.0, bytes_in = 0, bytes_out = 0))]
    fn record(
        &self,
        series: i64,
        status: i64,
        request_latency: f64,
        upstream_latency: f64,
        bytes_in: u64,
        bytes_out: u64,
    ) {
        let upstream = (upstream_latency > 0.0).then(|| seconds_to_us(upstream_latency));
        self.inner.record(
            index(series),
            index(status),
            seconds_to_us(request_latency),
            upstream,
            bytes_in,
            bytes_out,
        );
    }

    /// Adds ``n`` to a counter slot.
    #[pyo3(signature = (slot, n = 1))]
    fn add(&self, slot: i64, n: u64) {
        self.inner.add(index(slot), n);
    }

    /// ``(requests, dropped, used, counters, series)``: ``counters`` is a list of
    /// ``(label, value)``; ``series`` a list of ``(label, request, upstream, bytes_in,
    /// bytes_out)`` where each histogram is ``(cumulative bucket counts (+Inf last), sum in
    /// milliseconds)``. Labels are str (UTF-8, invalid bytes replaced).
    fn snapshot<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let snap = py.detach(|| self.inner.snapshot());
        let counters = PyList::empty(py);
        for (label, value) in &snap.counters {
            counters.append((String::from_utf8_lossy(label), *value))?;
        }
        let series = PyList::empty(py);
        for s in &snap.series {
            series.append((
                String::from_utf8_lossy(&s.label),
                histogram_tuple(py, &s.request)?,
                histogram_tuple(py, &s.upstream)?,
                s.bytes_in,
                s.bytes_out,
            ))?;
        }
        (snap.requests, snap.dropped, snap.used, counters, series).into_pyobject(py)
    }

    /// The Prometheus text exposition of a snapshot, rendered in Rust without the GIL.
    #[pyo3(signature = (prefix, hostname))]
    fn render_exposition<'py>(
        &self,
        py: Python<'py>,
        prefix: &str,
        hostname: &str,
    ) -> Bound<'py, PyBytes> {
        let opts = ExpositionOptions { prefix, hostname, capacity: self.inner.capacity() as u64 };
        let text = py.detach(|| exposition::render(&self.inner.snapshot(), &opts));
        PyBytes::new(py, &text)
    }

    fn __repr__(&self) -> String {
        format!(
            "SharedMetrics(fd={}, capacity={}, used={}, buckets={})",
            self.inner.fd(),
            self.inner.capacity(),
            self.inner.used(),
            BUCKETS
        )
    }
}

/// Adds `SharedMetrics` to `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<SharedMetrics>()?;
    Ok(())
}
