//! The `gateway._native` extension module: PyO3 bindings of the `rust/` crates, the C ABI that the
//! Cython protocol calls per request, and the Cython modules linked into this same object.
use pyo3::prelude::*;
use pyo3::types::PyDict;

mod ffi;

// The Cython HTTP/2 session calls nghttp2's C API; naming the crate links its static library.
use libnghttp2_sys as _;

extern "C" {
    // Defined by the Cython-generated C compiled in build.rs (single-phase init).
    fn PyInit__proto() -> *mut pyo3::ffi::PyObject;
}

/// Initialises a Cython module and registers it as `gateway.<name>` and as an attribute of `parent`.
fn add_cython_module(
    parent: &Bound<'_, PyModule>,
    name: &str,
    init: unsafe extern "C" fn() -> *mut pyo3::ffi::PyObject,
) -> PyResult<()> {
    let py = parent.py();
    // SAFETY: the init function returns a new reference or NULL with an exception set.
    let module = unsafe { Bound::from_owned_ptr_or_err(py, init())? };
    parent.add(name, &module)?;
    let modules = py.import("sys")?.getattr("modules")?;
    let modules = modules.cast::<PyDict>()?;
    module.setattr("__name__", format!("gateway.{name}"))?;
    modules.set_item(format!("gateway.{name}"), &module)?;
    Ok(())
}

#[pymodule]
fn _native(m: &Bound<'_, PyModule>) -> PyResult<()> {
    gateway_http::python::register(m)?;
    gateway_router::python::register(m)?;
    gateway_limiter::python::register(m)?;
    gateway_metrics::python::register(m)?;
    gateway_health::python::register(m)?;
    gateway_tls::python::register(m)?;
    m.add("ABI_REQUEST_HEAD_SIZE", std::mem::size_of::<gateway_http::RequestHead>())?;
    // The Cython module imports gateway._native at init time, so this module must be complete first.
    add_cython_module(m, "_proto", PyInit__proto)?;
    Ok(())
}
