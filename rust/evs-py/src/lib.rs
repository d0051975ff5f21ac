//! `evs._evs`, the native module under the `evs` Python package.
//!
//! It wraps the Rust runtime ([`evs`]) for Python: nodes, handles and the event types, with
//! every wait done with the GIL released and in short slices that let Python's signal
//! handlers run. The runtime threads never call into Python: events cross into Python only
//! when a Python thread asks for them, and log records go through a queue that a Python
//! thread drains ([`logs`]). The Python facade (`python/evs/`) builds the public API on top.

mod errors;
mod events;
mod fork;
mod handle;
mod logs;
mod node;

use pyo3::prelude::*;

/// The module's Rust allocations (frames, payloads, events) come from mimalloc: buffers are
/// allocated on the runtime thread and freed on the application's, the pattern glibc's
/// allocator handles worst (arena locking and `malloc_consolidate` showed in profiles of the
/// Python-level benchmark). Python's own objects still use Python's allocator.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Writes a new random authkey (mode 0600) to `path`; refuses to overwrite unless `force`.
#[pyfunction]
#[pyo3(signature = (path, force = false, length = 32))]
fn keygen(py: Python<'_>, path: std::path::PathBuf, force: bool, length: usize) -> PyResult<()> {
    use evs::crypto::KeyError;
    py.detach(|| evs::crypto::keygen_with(&path, length, force))
        .map_err(|e| {
            // keygen_with checks the length before any I/O.
            if let KeyError::InvalidLength { .. } = e {
                return pyo3::exceptions::PyValueError::new_err(e.to_string());
            }
            // Linux errno values (the package is Linux-only): what the builtin OSError of the
            // same failure would carry.
            let errno = match &e {
                KeyError::AlreadyExists { .. } => Some(17),    // EEXIST
                KeyError::NotFound { .. } => Some(2),          // ENOENT
                KeyError::PermissionDenied { .. } => Some(13), // EACCES
                KeyError::NotAFile { .. } => Some(21),         // EISDIR
                KeyError::Io { source, .. } => evs::os_errno(source),
                _ => None,
            };
            errors::os_error(py, format!("keygen {}: {e}", path.display()), errno)
        })
}

/// Checks a configuration without starting a node: returns the effective configuration as
/// TOML text, or raises ConfigError naming the key.
#[pyfunction]
#[pyo3(signature = (config_path = None, settings = None))]
fn check_config(
    py: Python<'_>,
    config_path: Option<&str>,
    settings: Option<&Bound<'_, PyAny>>,
) -> PyResult<String> {
    let empty = pyo3::types::PyList::empty(py);
    let cfg = node::build_config(py, config_path, settings.unwrap_or(empty.as_any()))?;
    Ok(cfg.to_toml_string())
}

#[pymodule]
fn _evs(m: &Bound<'_, PyModule>) -> PyResult<()> {
    logs::install();
    m.add_class::<node::PyNode>()?;
    m.add_class::<handle::PyHandle>()?;
    m.add_class::<events::PyMessage>()?;
    m.add_class::<events::PyConfigChange>()?;
    m.add_class::<events::PyGroupChange>()?;
    m.add_class::<events::PyRingId>()?;
    m.add_class::<events::PyGuarantee>()?;
    m.add_class::<events::PyConfigKind>()?;
    m.add_function(wrap_pyfunction!(keygen, m)?)?;
    m.add_function(wrap_pyfunction!(check_config, m)?)?;
    m.add_function(wrap_pyfunction!(fork::after_fork_in_child, m)?)?;
    m.add_function(wrap_pyfunction!(logs::set_log_level, m)?)?;
    m.add_function(wrap_pyfunction!(logs::take_logs, m)?)?;
    m.add("MAX_GROUP_LEN", evs::event::MAX_GROUP_LEN)?;
    m.add("MAX_GROUPS", evs::event::MAX_GROUPS)?;
    m.add(
        "DEFAULT_QUEUE_CAPACITY",
        evs::handle::DEFAULT_QUEUE_CAPACITY,
    )?;
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
