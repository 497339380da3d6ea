//! PyO3 bindings: `Router`, `normalize_path` and the outcome codes, added to the extension
//! module by [`register`]. The per-request path of the gateway uses the Rust API directly;
//! these bindings serve Python code, tests and tools.
use std::cell::RefCell;

use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyModule};

use crate::{Outcome, Params, RouteSpec};

/// `Router.match` code: no route matches path and host.
pub const NOT_FOUND: i64 = -1;
/// `Router.match` code: a route matches path and host but not the method.
pub const METHOD_NOT_ALLOWED: i64 = -2;
/// `Router.match` code: the path cannot be normalised (answer 400).
pub const BAD_PATH: i64 = -3;

thread_local! {
    static PARAMS: RefCell<Params> = RefCell::new(Params::new());
}

/// The compiled router. `Router(routes)` where each route is
/// `(paths: list[str], hosts: list[str], methods: list[str], priority: int)`.
#[pyclass(name = "Router", module = "gateway._native", frozen)]
pub struct PyRouter {
    inner: crate::Router,
}

/// `(paths, hosts, methods, priority)` as given by Python.
type RouteTuple = (Vec<String>, Vec<String>, Vec<String>, i32);

type MatchResult<'py> = (i64, Vec<(String, String)>, Option<Bound<'py, PyBytes>>);

#[pymethods]
impl PyRouter {
    #[new]
    fn new(routes: Vec<RouteTuple>) -> PyResult<Self> {
        let specs: Vec<RouteSpec> = routes
            .into_iter()
            .map(|(paths, hosts, methods, priority)| RouteSpec { paths, hosts, methods, priority })
            .collect();
        crate::Router::new(&specs)
            .map(|inner| PyRouter { inner })
            .map_err(|e| PyValueError::new_err(e.to_string()))
    }

    /// `match(method, host, path) -> (code_or_index, params, normalized)`: `code_or_index` is
    /// the route index (>= 0) or NOT_FOUND / METHOD_NOT_ALLOWED / BAD_PATH; `params` is a list of
    /// `(name, value)` (values decoded as UTF-8, invalid bytes replaced); `normalized` is the
    /// normalised path when it differs from `path`, else None (always None for BAD_PATH).
    #[pyo3(name = "match")]
    fn match_<'py>(
        &self,
        py: Python<'py>,
        method: &[u8],
        host: &[u8],
        path: &[u8],
    ) -> MatchResult<'py> {
        PARAMS.with(|cell| {
            let mut params = cell.borrow_mut();
            let code = match self.inner.find(method, host, path, &mut params) {
                Outcome::Found(i) => i as i64,
                Outcome::NotFound => NOT_FOUND,
                Outcome::MethodNotAllowed => METHOD_NOT_ALLOWED,
                Outcome::BadPath => return (BAD_PATH, Vec::new(), None),
            };
            let list = params
                .iter()
                .map(|(n, v)| (n.to_string(), String::from_utf8_lossy(v).into_owned()))
                .collect();
            let normalized = if params.normalized_changed() {
                Some(PyBytes::new(py, params.path()))
            } else {
                None
            };
            (code, list, normalized)
        })
    }

    /// `edited(changes) -> Router`: a new router with each `(index, route or None)` of
    /// `changes` set in turn (see `Router::set_route`: `index == len` adds a route, None removes
    /// one, its index staying taken); this one is unchanged and keeps serving meanwhile.
    fn edited(&self, changes: Vec<(usize, Option<RouteTuple>)>) -> PyResult<Self> {
        let mut inner = self.inner.clone();
        for (index, route) in changes {
            let spec = route.map(|(paths, hosts, methods, priority)| RouteSpec {
                paths,
                hosts,
                methods,
                priority,
            });
            inner
                .set_route(index, spec.as_ref())
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
        }
        Ok(PyRouter { inner })
    }

    fn __len__(&self) -> usize {
        self.inner.len()
    }

    /// Address of the compiled router for the C ABI (`gw_router_find`), valid while this
    /// object lives: the Cython protocol keeps the object beside the address.
    #[getter]
    fn _handle(&self) -> usize {
        &self.inner as *const crate::Router as usize
    }
}

/// `normalize_path(path: bytes) -> bytes`; raises ValueError for a path the gateway must reject.
#[pyfunction]
fn normalize_path<'py>(py: Python<'py>, path: &[u8]) -> PyResult<Bound<'py, PyBytes>> {
    match crate::normalize_path(path) {
        Ok(p) => Ok(PyBytes::new(py, &p)),
        Err(e) => Err(PyValueError::new_err(e.to_string())),
    }
}

/// Adds the router's classes, functions and constants to `m`.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRouter>()?;
    m.add_function(wrap_pyfunction!(normalize_path, m)?)?;
    m.add("NOT_FOUND", NOT_FOUND)?;
    m.add("METHOD_NOT_ALLOWED", METHOD_NOT_ALLOWED)?;
    m.add("BAD_PATH", BAD_PATH)?;
    Ok(())
}
