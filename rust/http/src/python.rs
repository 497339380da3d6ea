//! PyO3 bindings (feature `python`), for Python code, tests and plugins.
//! The per-request hot path uses the C ABI wrapper instead.
//!
//! `register(m)` adds: `HttpParseError` (ValueError subclass with `status`
//! and `reason`), `parse_request`, `parse_response`, and the classes
//! `RequestHead`, `ResponseHead`, `ChunkedScanner`.

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyBytes;

use crate::{HttpError, Limits, Parsed, Span};

pyo3::create_exception!(
    gateway_http,
    HttpParseError,
    PyValueError,
    "HTTP parse failure; `status` is the HTTP status to answer with, `reason` says why."
);

fn to_pyerr(py: Python<'_>, e: HttpError) -> PyErr {
    let err = HttpParseError::new_err(format!("{} {}", e.status, e.reason));
    let v = err.value(py);
    // Setting attributes on a fresh exception instance cannot fail in practice.
    let _ = v.setattr("status", e.status);
    let _ = v.setattr("reason", e.reason);
    err
}

fn body_kind_name(k: u8) -> &'static str {
    match k {
        crate::BODY_LENGTH => "length",
        crate::BODY_CHUNKED => "chunked",
        crate::BODY_UNTIL_CLOSE => "until_close",
        _ => "none",
    }
}

fn version_name(minor: u8) -> &'static str {
    if minor == 0 {
        "1.0"
    } else {
        "1.1"
    }
}

fn span<'py>(py: Python<'py>, buf: &[u8], s: Span) -> Bound<'py, PyBytes> {
    PyBytes::new(py, s.get(buf))
}

fn header_list<'py>(
    py: Python<'py>,
    buf: &[u8],
    hs: &[crate::HeaderEntry],
) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
    hs.iter().map(|h| (span(py, buf, h.name), span(py, buf, h.value))).collect()
}

/// A parsed request head (holds a copy of the head bytes).
#[pyclass(frozen, name = "RequestHead", module = "gateway._native")]
pub struct PyRequestHead {
    buf: Vec<u8>,
    head: Box<crate::RequestHead>,
}

#[pymethods]
impl PyRequestHead {
    #[getter]
    fn head_len(&self) -> u32 {
        self.head.head_len
    }
    #[getter]
    fn method(&self) -> &str {
        // the method is a token, hence ASCII
        std::str::from_utf8(self.head.method.get(&self.buf)).unwrap_or("")
    }
    #[getter]
    fn target<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        span(py, &self.buf, self.head.target)
    }
    #[getter]
    fn path<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        span(py, &self.buf, self.head.path)
    }
    #[getter]
    fn query<'py>(&self, py: Python<'py>) -> Bound<'py, PyBytes> {
        span(py, &self.buf, self.head.query)
    }
    #[getter]
    fn version(&self) -> &'static str {
        version_name(self.head.version_minor)
    }
    #[getter]
    fn body_kind(&self) -> &'static str {
        body_kind_name(self.head.body_kind)
    }
    #[getter]
    fn content_length(&self) -> u64 {
        self.head.content_length
    }
    #[getter]
    fn keep_alive(&self) -> bool {
        self.head.keep_alive != 0
    }
    #[getter]
    fn expect_continue(&self) -> bool {
        self.head.expect_continue != 0
    }
    #[getter]
    fn upgrade(&self) -> bool {
        self.head.upgrade != 0
    }
    /// Authority from an absolute/authority-form target, else the Host value;
    /// None when there is neither.
    #[getter]
    fn host<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        if self.head.host.len == 0 && self.head.has_host == 0 {
            None
        } else {
            Some(span(py, &self.buf, self.head.host))
        }
    }
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        header_list(py, &self.buf, self.head.headers())
    }
    /// Lower-cased names of the headers a proxy must drop.
    #[getter]
    fn hop_by_hop<'py>(&self, py: Python<'py>) -> Vec<Bound<'py, PyBytes>> {
        self.head
            .headers()
            .iter()
            .filter(|h| h.flags & crate::HF_HOP_BY_HOP != 0)
            .map(|h| PyBytes::new(py, &h.name.get(&self.buf).to_ascii_lowercase()))
            .collect()
    }
    fn __repr__(&self) -> String {
        format!(
            "RequestHead({} {} HTTP/{}, {} headers, body={})",
            self.method(),
            String::from_utf8_lossy(self.head.target.get(&self.buf)),
            self.version(),
            self.head.n_headers,
            self.body_kind()
        )
    }
}

/// A parsed response head (holds a copy of the head bytes).
#[pyclass(frozen, name = "ResponseHead", module = "gateway._native")]
pub struct PyResponseHead {
    buf: Vec<u8>,
    head: Box<crate::ResponseHead>,
}

#[pymethods]
impl PyResponseHead {
    #[getter]
    fn head_len(&self) -> u32 {
        self.head.head_len
    }
    #[getter]
    fn status(&self) -> u16 {
        self.head.status
    }
    /// The reason phrase, decoded as Latin-1 (it may carry obs-text).
    #[getter]
    fn reason(&self) -> String {
        self.head.reason.get(&self.buf).iter().map(|&b| b as char).collect()
    }
    #[getter]
    fn version(&self) -> &'static str {
        version_name(self.head.version_minor)
    }
    #[getter]
    fn body_kind(&self) -> &'static str {
        body_kind_name(self.head.body_kind)
    }
    #[getter]
    fn content_length(&self) -> u64 {
        self.head.content_length
    }
    #[getter]
    fn keep_alive(&self) -> bool {
        self.head.keep_alive != 0
    }
    #[getter]
    fn headers<'py>(&self, py: Python<'py>) -> Vec<(Bound<'py, PyBytes>, Bound<'py, PyBytes>)> {
        header_list(py, &self.buf, self.head.headers())
    }
    fn __repr__(&self) -> String {
        format!(
            "ResponseHead(HTTP/{} {}, {} headers, body={})",
            self.version(),
            self.head.status,
            self.head.n_headers,
            self.body_kind()
        )
    }
}

/// Validates a chunked body fed in pieces; see the Rust `ChunkedScanner`.
#[pyclass(name = "ChunkedScanner", module = "gateway._native")]
#[derive(Default)]
pub struct PyChunkedScanner {
    inner: crate::ChunkedScanner,
}

#[pymethods]
impl PyChunkedScanner {
    #[new]
    fn new() -> Self {
        Self::default()
    }
    /// Returns (bytes of `data` that belong to this message, message complete).
    fn feed(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<(usize, bool)> {
        self.inner.feed(data).map_err(|e| to_pyerr(py, e))
    }
    fn reset(&mut self) {
        self.inner.reset();
    }
    #[getter]
    fn body_bytes(&self) -> u64 {
        self.inner.body_bytes()
    }
}

/// Parses a request head; returns None while the head is incomplete.
#[pyfunction(name = "parse_request")]
#[pyo3(signature = (data, max_request_line=8192, max_head_size=32768, max_headers=100))]
fn py_parse_request(
    py: Python<'_>,
    data: &[u8],
    max_request_line: u32,
    max_head_size: u32,
    max_headers: u32,
) -> PyResult<Option<PyRequestHead>> {
    let limits = Limits { max_request_line, max_head_size, max_headers };
    let mut head = Box::new(crate::RequestHead::new());
    match crate::parse_request(data, &limits, &mut head) {
        Ok(Parsed::Complete(n)) => {
            Ok(Some(PyRequestHead { buf: data[..n as usize].to_vec(), head }))
        }
        Ok(Parsed::Partial) => Ok(None),
        Err(e) => Err(to_pyerr(py, e)),
    }
}

/// Parses a response head; returns None while the head is incomplete.
#[pyfunction(name = "parse_response")]
#[pyo3(signature = (data, request_was_head=false))]
fn py_parse_response(
    py: Python<'_>,
    data: &[u8],
    request_was_head: bool,
) -> PyResult<Option<PyResponseHead>> {
    let mut head = Box::new(crate::ResponseHead::new());
    match crate::parse_response(data, request_was_head, &Limits::default(), &mut head) {
        Ok(Parsed::Complete(n)) => {
            Ok(Some(PyResponseHead { buf: data[..n as usize].to_vec(), head }))
        }
        Ok(Parsed::Partial) => Ok(None),
        Err(e) => Err(to_pyerr(py, e)),
    }
}

/// Adds this crate's Python API to `m` (called from the extension module).
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    let py = m.py();
    m.add("HttpParseError", py.get_type::<HttpParseError>())?;
    m.add_function(wrap_pyfunction!(py_parse_request, m)?)?;
    m.add_function(wrap_pyfunction!(py_parse_response, m)?)?;
    m.add_class::<PyRequestHead>()?;
    m.add_class::<PyResponseHead>()?;
    m.add_class::<PyChunkedScanner>()?;
    Ok(())
}
