//! What the PyO3 bindings of the region owners share: a label taken as `str` or `bytes`, and
//! an error of creating or attaching a region raised as `OSError`.

use std::io;

use pyo3::exceptions::{PyOSError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyString};

/// The bytes of a label given as `str` (UTF-8) or `bytes`.
pub fn label_bytes<'a>(label: &'a Bound<'_, PyAny>) -> PyResult<&'a [u8]> {
    if let Ok(s) = label.cast::<PyString>() {
        return Ok(s.to_str()?.as_bytes());
    }
    if let Ok(b) = label.cast::<PyBytes>() {
        return Ok(b.as_bytes());
    }
    Err(PyTypeError::new_err("label must be str or bytes"))
}

/// A region's create or attach error as Python's `OSError`.
pub fn os_error(e: io::Error) -> PyErr {
    PyOSError::new_err(e.to_string())
}
