//! `evs._evs.Handle`: the EVS API of one handle, with every wait done GIL-free.
//!
//! Waits are cut into slices of at most [`SLICE`]; between slices the thread takes the GIL
//! back for a moment to run Python's signal handlers, so Ctrl-C interrupts any blocking call
//! within about that long. Timeouts are seconds as floats; `None` waits without limit.

use std::time::{Duration, Instant};

use evs::{EvsError, Guarantee, Handle};
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::{PyBytes, PyList};

use crate::errors::evs_error;
use crate::events::{to_py, PyGuarantee};

/// Longest stretch a blocking call waits without checking for signals.
const SLICE: Duration = Duration::from_millis(50);

/// The deadline of a timeout in seconds (`None`: none).
fn deadline(timeout: Option<f64>) -> PyResult<Option<Instant>> {
    match timeout {
        None => Ok(None),
        Some(t) if t.is_nan() || t < 0.0 => Err(PyValueError::new_err(format!(
            "timeout must be a non-negative number of seconds or None, got {t}"
        ))),
        Some(t) => {
            // Anything beyond a year is as good as forever.
            let d = Duration::from_secs_f64(t.min(3.15e7));
            Ok(Some(Instant::now() + d))
        }
    }
}

/// Runs `step(slice)` with the GIL released until it returns something other than
/// `Timeout`, the deadline passes (then `evs.TimeoutError`) or a signal handler raises.
fn wait<T: Send>(
    py: Python<'_>,
    timeout: Option<f64>,
    step: impl Fn(Duration) -> Result<T, EvsError> + Sync,
) -> PyResult<T> {
    let until = deadline(timeout)?;
    // Fast path: an event (or send budget) is usually there at once; take it without
    // releasing the GIL, which would cost two thread switches under contention.
    match step(Duration::ZERO) {
        Err(EvsError::Timeout) => {}
        Err(e) => return Err(evs_error(py, e)),
        Ok(v) => return Ok(v),
    }
    loop {
        let slice = match until {
            None => SLICE,
            Some(d) => d.saturating_duration_since(Instant::now()).min(SLICE),
        };
        let r = if slice.is_zero() {
            step(slice)
        } else {
            py.detach(|| step(slice))
        };
        match r {
            Err(EvsError::Timeout) => {
                if until.is_some_and(|d| Instant::now() >= d) {
                    return Err(evs_error(py, EvsError::Timeout));
                }
                py.check_signals()?;
            }
            Err(e) => return Err(evs_error(py, e)),
            Ok(v) => return Ok(v),
        }
    }
}

/// One EVS handle of a node.
#[pyclass(frozen, name = "Handle", module = "evs._evs")]
pub struct PyHandle {
    h: Handle,
}

impl PyHandle {
    pub fn new(h: Handle) -> Self {
        PyHandle { h }
    }
}

#[pymethods]
impl PyHandle {
    /// This handle's id on its node.
    #[getter]
    fn id(&self) -> u32 {
        self.h.id()
    }

    /// The node's id.
    #[getter]
    fn node_id(&self) -> u32 {
        self.h.node_id()
    }

    /// Joins `groups` (byte strings of 1 to 32 bytes).
    fn join(&self, py: Python<'_>, groups: Vec<Vec<u8>>) -> PyResult<()> {
        self.h.join(&groups).map_err(|e| evs_error(py, e))
    }

    /// Leaves `groups`; all must be joined, else nothing is left (NotJoinedError).
    fn leave(&self, py: Python<'_>, groups: Vec<Vec<u8>>) -> PyResult<()> {
        self.h.leave(&groups).map_err(|e| evs_error(py, e))
    }

    /// The groups this handle asked to join, sorted.
    fn joined<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyList>> {
        PyList::new(py, self.h.joined().iter().map(|g| PyBytes::new(py, g)))
    }

    /// Multicasts `data` to the joined groups. `timeout`: 0 raises TryAgainError at once
    /// when the send budget is used up; a number waits that long for budget (TimeoutError);
    /// None waits without limit.
    #[pyo3(signature = (data, guarantee = PyGuarantee::Agreed, timeout = None))]
    fn mcast_joined(
        &self,
        py: Python<'_>,
        data: &[u8],
        guarantee: PyGuarantee,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let g = Guarantee::from(guarantee);
        if timeout == Some(0.0) {
            return self.h.mcast_joined(data, g).map_err(|e| evs_error(py, e));
        }
        wait(py, timeout, |slice| {
            self.h.mcast_joined_blocking(data, g, slice)
        })
    }

    /// Multicasts `data` to `groups`, joined or not. `timeout` as for `mcast_joined`.
    #[pyo3(signature = (groups, data, guarantee = PyGuarantee::Agreed, timeout = None))]
    fn mcast_groups(
        &self,
        py: Python<'_>,
        groups: Vec<Vec<u8>>,
        data: &[u8],
        guarantee: PyGuarantee,
        timeout: Option<f64>,
    ) -> PyResult<()> {
        let g = Guarantee::from(guarantee);
        if timeout == Some(0.0) {
            return self
                .h
                .mcast_groups(&groups, data, g)
                .map_err(|e| evs_error(py, e));
        }
        wait(py, timeout, |slice| {
            self.h.mcast_groups_blocking(&groups, data, g, slice)
        })
    }

    /// `(node_id, members)` of the node's last regular configuration.
    fn membership(&self) -> (u32, Vec<u32>) {
        self.h.membership()
    }

    /// Members of `group` in the node's replicated view, as sorted `(node_id, handle_id)`.
    fn group_membership(&self, group: Vec<u8>) -> Vec<(u32, u32)> {
        self.h.group_membership(group)
    }

    /// The next event; waits up to `timeout` seconds (None: without limit).
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<f64>) -> PyResult<Py<PyAny>> {
        let ev = wait(py, timeout, |slice| self.h.recv(Some(slice)))?;
        to_py(py, ev)
    }

    /// Waits like `recv` for one event, then returns up to `max_events` queued events.
    #[pyo3(signature = (max_events, timeout = None))]
    fn recv_many<'py>(
        &self,
        py: Python<'py>,
        max_events: usize,
        timeout: Option<f64>,
    ) -> PyResult<Bound<'py, PyList>> {
        if max_events == 0 {
            return Err(PyValueError::new_err("max_events must be at least 1"));
        }
        let evs = wait(py, timeout, |slice| {
            self.h.recv_many(max_events, Some(slice))
        })?;
        let list = PyList::empty(py);
        for ev in evs {
            list.append(to_py(py, ev)?)?;
        }
        Ok(list)
    }

    /// The next event if one is queued, else None (never waits).
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.h.try_recv() {
            Ok(Some(ev)) => Ok(Some(to_py(py, ev)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(evs_error(py, e)),
        }
    }

    /// Events waiting in the queue.
    fn queue_len(&self) -> usize {
        self.h.queue_len()
    }

    /// An eventfd that is readable while the handle has an event (or its end) to receive.
    fn fileno(&self) -> i32 {
        self.h.fileno()
    }

    /// Closes the handle (idempotent): its groups are left, queued events dropped.
    fn close(&self) {
        self.h.close();
    }
}
