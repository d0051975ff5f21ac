//! Turning the runtime's errors into the Python exceptions of `evs.errors`.
//!
//! The exception classes are written in Python (`python/evs/errors.py`) because several of
//! them must also subclass a builtin (`TimeoutError`, `ValueError`, `OSError`), which is plain
//! in Python and awkward from an extension. This module imports that module once per
//! interpreter and instantiates its classes.

use evs::config::ConfigError;
use evs::{EvsError, NodeError};
use pyo3::exceptions::PyRuntimeError;
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::PyModule;

static ERRORS: PyOnceLock<Py<PyModule>> = PyOnceLock::new();

fn errors_module(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    ERRORS
        .get_or_try_init(py, || py.import("evs.errors").map(Bound::unbind))
        .map(|m| m.bind(py))
}

/// An instance of `evs.errors.<class>` with `message`, as a `PyErr`; if the module cannot be
/// imported (a broken installation), a `RuntimeError` naming the class.
pub fn new_error(py: Python<'_>, class: &str, message: String) -> PyErr {
    let made = errors_module(py).and_then(|m| m.getattr(class)?.call1((message.clone(),)));
    match made {
        Ok(value) => PyErr::from_value(value),
        Err(_) => PyRuntimeError::new_err(format!("evs.errors.{class}: {message}")),
    }
}

/// An `evs.errors.EvsOSError` whose `errno` is set when it is known, with `strerror` then set
/// to `message`: `str(e)` reads `[Errno N] message` like a builtin `OSError`'s, and callers
/// can test `e.errno == errno.EEXIST` as with any `OSError`.
pub fn os_error(py: Python<'_>, message: String, errno: Option<i32>) -> PyErr {
    let err = new_error(py, "EvsOSError", message.clone());
    if let Some(n) = errno {
        let v = err.value(py);
        let _ = v.setattr("errno", n);
        let _ = v.setattr("strerror", message);
    }
    err
}

/// The Python exception for an API error.
pub fn evs_error(py: Python<'_>, e: EvsError) -> PyErr {
    let (class, msg) = match &e {
        EvsError::Closed => ("HandleClosedError", e.to_string()),
        EvsError::Overflowed(why) => {
            let err = new_error(py, "OverflowedError", e.to_string());
            let own = *why == evs::Overflow::OwnMessages;
            let _ = err.value(py).setattr("own_messages", own);
            return err;
        }
        EvsError::NotJoined => ("NotJoinedError", e.to_string()),
        EvsError::TryAgain => ("TryAgainError", e.to_string()),
        EvsError::Timeout => ("TimeoutError", e.to_string()),
        EvsError::TooLarge { .. } => ("MessageTooLargeError", e.to_string()),
        EvsError::InvalidGroup(why) => ("InvalidGroupError", why.clone()),
        EvsError::Config(why) => ("ConfigError", why.clone()),
        EvsError::Io(io) => return os_error(py, io.to_string(), evs::os_errno(io)),
    };
    new_error(py, class, msg)
}

/// The Python exception for a configuration that did not build; `key` is set on it.
pub fn config_error(py: Python<'_>, e: &ConfigError) -> PyErr {
    let err = new_error(py, "ConfigError", e.to_string());
    let _ = err.value(py).setattr("key", e.key.clone());
    err
}

/// The Python exception for a node that could not start.
pub fn node_error(py: Python<'_>, e: NodeError) -> PyErr {
    match e {
        NodeError::Io(io) => os_error(py, format!("cannot start node: {io}"), evs::os_errno(&io)),
        other => {
            let key = match &other {
                NodeError::Key(_) => "authkey",
                NodeError::Seal(_) => "crypto",
                _ => "",
            };
            let err = new_error(py, "ConfigError", other.to_string());
            let _ = err.value(py).setattr("key", key);
            err
        }
    }
}
