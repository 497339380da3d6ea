//! Compiles the Cython modules in `pyext/` into the same shared object as the PyO3 extension.
//!
//! Each `.pyx` is translated with the interpreter maturin targets (`PYO3_PYTHON`), compiled with
//! single-phase init so `PyInit_<name>()` returns a ready module object, and linked statically;
//! `src/lib.rs` calls the init functions and registers the modules under `gateway.<name>`.
//! nghttp2 (the HTTP/2 engine) comes from the `libnghttp2-sys` crate, built from its vendored C
//! sources; the Cython modules compile against its headers and call it directly.
use std::env;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Cython modules compiled into the extension, as (file stem, dotted module name).
const CYTHON_MODULES: &[(&str, &str)] = &[("_proto", "gateway._proto")];

fn python() -> String {
    env::var("PYO3_PYTHON")
        .or_else(|_| env::var("PYTHON_SYS_EXECUTABLE"))
        .unwrap_or_else(|_| "python3".to_string())
}

fn python_include_dir(python: &str) -> PathBuf {
    let out = Command::new(python)
        .args(["-c", "import sysconfig; print(sysconfig.get_paths()['include'])"])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python} to find the Python headers: {e}"));
    assert!(out.status.success(), "{python} failed to report its include dir");
    PathBuf::from(String::from_utf8(out.stdout).expect("utf-8 path").trim())
}

fn main() {
    let python = python();
    let root = PathBuf::from(env::var("CARGO_MANIFEST_DIR").unwrap());
    let out_dir = PathBuf::from(env::var("OUT_DIR").unwrap());
    let pyext = root.join("pyext");

    println!("cargo:rerun-if-env-changed=PYO3_PYTHON");
    for path in protocol_sources(&pyext) {
        println!("cargo:rerun-if-changed={}", path.display());
    }

    // libnghttp2-sys (`links = "nghttp2"`) installs its headers under DEP_NGHTTP2_ROOT/include.
    let nghttp2_root = env::var("DEP_NGHTTP2_ROOT").expect("libnghttp2-sys exports its root");
    println!("cargo:rerun-if-env-changed=DEP_NGHTTP2_ROOT");

    let mut build = cc::Build::new();
    build
        .include(python_include_dir(&python))
        .include(&pyext)
        .include(Path::new(&nghttp2_root).join("include"))
        // nghttp2 is linked statically: no dllimport decoration on Windows.
        .define("NGHTTP2_STATICLIB", None)
        .define("CYTHON_PEP489_MULTI_PHASE_INIT", "0")
        .define("CYTHON_NO_PYINIT_EXPORT", "1")
        .flag_if_supported("-Wno-unused-function")
        .flag_if_supported("-Wno-unused-variable")
        .flag_if_supported("-Wno-unreachable-code")
        .opt_level(2);

    for (stem, dotted) in CYTHON_MODULES {
        let pyx = pyext.join(format!("{stem}.pyx"));
        let c_file = out_dir.join(format!("{stem}.c"));
        cythonize(&python, &pyx, &c_file, dotted, &pyext);
        build.file(&c_file);
    }
    build.compile("gateway_cython");
}

/// Every file under `pyext/` the Cython build reads (the module is many included files).
fn protocol_sources(dir: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(dir).expect("pyext/ exists") {
        let path = entry.unwrap().path();
        if path.is_dir() {
            found.extend(protocol_sources(&path));
        } else if matches!(
            path.extension().and_then(|e| e.to_str()),
            Some("pyx" | "pxd" | "pxi" | "h")
        ) {
            found.push(path);
        }
    }
    found
}

fn cythonize(python: &str, pyx: &Path, c_file: &Path, dotted: &str, include: &Path) {
    let status = Command::new(python)
        .args(["-m", "cython", "-3", "--fast-fail", "--module-name", dotted, "-I"])
        .arg(include)
        .arg("-o")
        .arg(c_file)
        .arg(pyx)
        .status()
        .unwrap_or_else(|e| panic!("cannot run Cython with {python} (is cython installed?): {e}"));
    assert!(status.success(), "Cython failed on {}", pyx.display());
}
