//! PyO3 binding: classes `TlsEngine` (one per worker) and `TlsConnection` (one per client).
//!
//! ```python
//! engine = TlsEngine([b"http/1.1"])
//! engine.update([("shop", ["api.example.com"], cert_pem, key_pem, None)], "api.example.com")
//! conn = engine.connection(raw_transport.write)   # records to send go to this callable
//! plain = conn.receive(data)       # per socket read: plaintext (bytes) or None
//! conn.send(response)              # encrypted and written
//! ```
//! A failed handshake or a bad record raises ConnectionError after the alert was written.
use std::sync::Arc;

use pyo3::exceptions::{PyConnectionError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::PyBytes;
use pyo3::{PyTraverseError, PyVisit};

use crate::{Connection, Engine, SiteSpec, TlsFailure};

type SiteTuple = (String, Vec<String>, String, String, Option<String>);

fn spec((id, snis, cert_pem, key_pem, client_ca_pem): SiteTuple) -> SiteSpec {
    SiteSpec { id, snis, cert_pem, key_pem, client_ca_pem }
}

#[pyclass(frozen, module = "gateway._native", name = "TlsEngine")]
pub struct PyTlsEngine {
    engine: Arc<Engine>,
}

#[pymethods]
impl PyTlsEngine {
    #[new]
    fn new(alpn: Vec<Vec<u8>>) -> PyResult<Self> {
        Ok(PyTlsEngine { engine: Arc::new(Engine::new(alpn).map_err(PyValueError::new_err)?) })
    }

    /// Installs the sites (id, snis, cert PEM, key PEM, client CA PEM or None) for handshakes
    /// from now on; ValueError "ssls[i]: reason" leaves the running ones.
    #[pyo3(signature = (sites, fallback_sni=None))]
    fn update(&self, sites: Vec<SiteTuple>, fallback_sni: Option<String>) -> PyResult<()> {
        let specs: Vec<SiteSpec> = sites.into_iter().map(spec).collect();
        self.engine
            .update(&specs, fallback_sni.as_deref())
            .map_err(|(i, reason)| PyValueError::new_err(format!("ssls[{i}]: {reason}")))
    }

    /// Why rustls refuses this site, or None.
    #[staticmethod]
    #[pyo3(signature = (cert_pem, key_pem, client_ca_pem=None))]
    fn refusal(
        cert_pem: String,
        key_pem: String,
        client_ca_pem: Option<String>,
    ) -> PyResult<Option<String>> {
        let engine = Engine::new(Vec::new()).map_err(PyValueError::new_err)?;
        let site =
            SiteSpec { id: String::new(), snis: Vec::new(), cert_pem, key_pem, client_ca_pem };
        Ok(engine.check(&site).err())
    }

    /// (ssl id, client certificates required) of the site serving `server_name`, or None.
    fn serving(&self, server_name: &str) -> Option<(String, bool)> {
        let table = self.engine.table();
        table.find(Some(server_name)).map(|site| (site.id.clone(), site.client_cert_required))
    }

    /// A connection for a new client; `write` takes the records to send (bytes).
    fn connection(&self, write: Py<PyAny>) -> PyTlsConnection {
        PyTlsConnection {
            conn: Connection::new(self.engine.clone()),
            write: Some(write),
            plain: Vec::new(),
            out: Vec::new(),
        }
    }
}

#[pyclass(module = "gateway._native", name = "TlsConnection")]
pub struct PyTlsConnection {
    conn: Connection,
    write: Option<Py<PyAny>>,
    plain: Vec<u8>,
    out: Vec<u8>,
}

impl PyTlsConnection {
    /// Hands the pending records to `write`, then reports the failure, if any.
    fn flush(&mut self, py: Python<'_>, result: Result<(), TlsFailure>) -> PyResult<()> {
        if !self.out.is_empty() {
            if let Some(write) = &self.write {
                write.call1(py, (PyBytes::new(py, &self.out),))?;
            }
            self.out.clear();
        }
        result.map_err(|failure| PyConnectionError::new_err(failure.0))
    }
}

#[pymethods]
impl PyTlsConnection {
    /// The bytes of one socket read -> their plaintext, or None when they carried none.
    fn receive<'py>(
        &mut self,
        py: Python<'py>,
        data: &[u8],
    ) -> PyResult<Option<Bound<'py, PyBytes>>> {
        self.plain.clear();
        let result = self.conn.receive(data, &mut self.plain, &mut self.out);
        self.flush(py, result)?;
        Ok((!self.plain.is_empty()).then(|| PyBytes::new(py, &self.plain)))
    }

    /// Encrypts `data` and writes the records.
    fn send(&mut self, py: Python<'_>, data: &[u8]) -> PyResult<()> {
        let result = self.conn.send(data, &mut self.out);
        self.flush(py, result)
    }

    /// Writes a close_notify alert.
    fn close_notify(&mut self, py: Python<'_>) -> PyResult<()> {
        self.conn.close_notify(&mut self.out);
        self.flush(py, Ok(()))
    }

    /// Forgets the write callable (the connection is over; breaks the reference cycle).
    fn detach(&mut self) {
        self.write = None;
    }

    #[getter]
    fn handshaking(&self) -> bool {
        self.conn.is_handshaking()
    }

    #[getter]
    fn peer_closed(&self) -> bool {
        self.conn.peer_closed()
    }

    #[getter]
    fn alpn_protocol(&self) -> Option<String> {
        self.conn.alpn_protocol().map(|p| String::from_utf8_lossy(p).into_owned())
    }

    #[getter]
    fn protocol(&self) -> Option<&'static str> {
        self.conn.protocol()
    }

    #[getter]
    fn cipher(&self) -> Option<&'static str> {
        self.conn.cipher()
    }

    #[getter]
    fn server_name(&self) -> Option<String> {
        self.conn.server_name().map(str::to_owned)
    }

    #[getter]
    fn ssl_id(&self) -> Option<String> {
        self.conn.site().map(|site| site.id.clone())
    }

    #[getter]
    fn client_cert_required(&self) -> bool {
        self.conn.site().is_some_and(|site| site.client_cert_required)
    }

    #[getter]
    fn client_cert<'py>(&self, py: Python<'py>) -> Option<Bound<'py, PyBytes>> {
        self.conn.client_cert().map(|der| PyBytes::new(py, der))
    }

    fn __traverse__(&self, visit: PyVisit<'_>) -> Result<(), PyTraverseError> {
        if let Some(write) = &self.write {
            visit.call(write)?;
        }
        Ok(())
    }

    fn __clear__(&mut self) {
        self.write = None;
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyTlsEngine>()?;
    m.add_class::<PyTlsConnection>()?;
    Ok(())
}
