//! `evs._evs.Handle`: the EVS API of one handle, with every wait done GIL-free.
//!
//! `evs.Handle` (python/evs/_node.py) subclasses this class, so the calls of the hot path
//! (`mcast_*`, `recv*`, `try_recv`, `queue_len`, `fileno`) go straight to native code; they
//! validate their arguments here and raise the precise Python exception themselves.
//!
//! On the main thread, waits are cut into slices of at most [`SLICE`]; between slices the
//! thread takes the GIL back for a moment to run Python's signal handlers, so Ctrl-C interrupts
//! any blocking call within about that long. Python runs signal handlers on the main thread
//! only, so other threads wait in one piece: an idle receiver thread costs no wake-ups.
//! Timeouts are seconds as floats; `None` waits without limit.

use std::cell::Cell;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evs::{EvsError, Guarantee, Handle};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyFloat, PyInt, PyList, PyMemoryView, PyString, PyTuple,
};

use crate::errors::evs_error;
use crate::events::{to_py, PyGuarantee};
use crate::fork::Owned;
use crate::node::PyNode;

/// `recv_many`'s default `max_events`.
const DEFAULT_BATCH: usize = 1024;

/// Longest stretch a blocking call on the main thread waits without checking for signals.
const SLICE: Duration = Duration::from_millis(50);

/// Longest single wait off the main thread (a wait without deadline repeats it).
const LONG_SLICE: Duration = Duration::from_secs(3600);

thread_local! {
    /// Whether this OS thread is Python's main thread, found out on its first blocking wait.
    static ON_MAIN: Cell<Option<bool>> = const { Cell::new(None) };
}

/// The slice for this thread: [`SLICE`] on Python's main thread (where signal handlers run),
/// [`LONG_SLICE`] elsewhere.
fn slice_for_thread(py: Python<'_>) -> PyResult<Duration> {
    let main = match ON_MAIN.get() {
        Some(m) => m,
        None => {
            let threading = py.import("threading")?;
            let main = threading
                .call_method0("main_thread")?
                .is(&threading.call_method0("current_thread")?);
            ON_MAIN.set(Some(main));
            main
        }
    };
    Ok(if main { SLICE } else { LONG_SLICE })
}

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
    let longest = slice_for_thread(py)?;
    loop {
        let slice = match until {
            None => longest,
            Some(d) => d.saturating_duration_since(Instant::now()).min(longest),
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

/// `type(obj).__name__`, for error messages.
fn type_name(obj: &Bound<'_, PyAny>) -> String {
    obj.get_type()
        .name()
        .map(|n| n.to_string())
        .unwrap_or_else(|_| "?".into())
}

/// A `timeout` argument: None, or a number of seconds (not a bool).
fn timeout_arg(timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Option<f64>> {
    let Some(t) = timeout else { return Ok(None) };
    if t.is_none() {
        return Ok(None);
    }
    if let Ok(f) = t.cast::<PyFloat>() {
        return Ok(Some(f.value()));
    }
    if t.is_instance_of::<PyInt>() && !t.is_instance_of::<PyBool>() {
        return t.extract::<f64>().map(Some);
    }
    Err(PyTypeError::new_err(format!(
        "timeout must be a number of seconds or None, not {}",
        type_name(t)
    )))
}

/// A payload: `bytes` as is (no copy until the message is encoded), `bytearray` and
/// `memoryview` copied; anything else is a TypeError.
enum Payload<'a, 'py> {
    Borrowed(&'a Bound<'py, PyBytes>),
    Owned(Vec<u8>),
}

impl Payload<'_, '_> {
    fn as_slice(&self) -> &[u8] {
        match self {
            Payload::Borrowed(b) => b.as_bytes(),
            Payload::Owned(v) => v,
        }
    }
}

/// The bytes of a `bytes` (borrowed), `bytearray` or `memoryview` (copied); None for any
/// other type.
fn bytes_like<'a, 'py>(obj: &'a Bound<'py, PyAny>) -> PyResult<Option<Payload<'a, 'py>>> {
    if let Ok(b) = obj.cast::<PyBytes>() {
        return Ok(Some(Payload::Borrowed(b)));
    }
    if let Ok(b) = obj.cast::<PyByteArray>() {
        return Ok(Some(Payload::Owned(b.to_vec())));
    }
    if obj.is_instance_of::<PyMemoryView>() {
        // bytes(view): any format and layout, as Python itself flattens it.
        let b = obj.py().get_type::<PyBytes>().call1((obj,))?;
        return Ok(Some(Payload::Owned(
            b.cast_into::<PyBytes>()?.as_bytes().to_vec(),
        )));
    }
    Ok(None)
}

fn payload_arg<'a, 'py>(data: &'a Bound<'py, PyAny>) -> PyResult<Payload<'a, 'py>> {
    bytes_like(data)?.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "data must be bytes-like (bytes, bytearray, memoryview), not {}",
            type_name(data)
        ))
    })
}

/// One group name: `str` (UTF-8) or bytes-like; None if `g` is none of those.
fn group_name(g: &Bound<'_, PyAny>) -> PyResult<Option<Vec<u8>>> {
    if let Ok(s) = g.cast::<PyString>() {
        return Ok(Some(s.to_cow()?.as_bytes().to_vec()));
    }
    Ok(bytes_like(g)?.map(|p| p.as_slice().to_vec()))
}

/// One group name, or a TypeError.
fn one_group(g: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    group_name(g)?.ok_or_else(|| {
        PyTypeError::new_err(format!(
            "a group name must be str or bytes, not {}",
            type_name(g)
        ))
    })
}

/// A `groups` argument: one group name, or an iterable of names.
fn groups_arg(groups: &Bound<'_, PyAny>) -> PyResult<Vec<Vec<u8>>> {
    if let Some(one) = group_name(groups)? {
        return Ok(vec![one]);
    }
    let Ok(iter) = groups.try_iter() else {
        return Err(PyTypeError::new_err(format!(
            "groups must be a group name or an iterable of names, not {}",
            type_name(groups)
        )));
    };
    iter.map(|g| one_group(&g?)).collect()
}

/// One EVS handle of a node. Subclassed by `evs.Handle`, whose constructor calls
/// `__new__(cls, node, queue_capacity)` with the native node.
#[pyclass(frozen, subclass, name = "Handle", module = "evs._evs")]
pub struct PyHandle {
    /// The handle until `_close` (which drops it, so that its eventfd is released as a
    /// socket's descriptor is by `close()`); calls in flight hold their own reference.
    h: Owned<Mutex<Option<Arc<Handle>>>>,
    /// Copies of the handle's fixed identity, readable in a fork child and after close.
    id: u32,
    node_id: u32,
}

impl PyHandle {
    /// The handle: `NodeStoppedError` in the child of a fork, `HandleClosedError` after
    /// `_close`.
    fn h(&self, py: Python<'_>) -> PyResult<Arc<Handle>> {
        self.open(py)?
            .ok_or_else(|| evs_error(py, EvsError::Closed))
    }

    /// The handle, `None` after `_close`; `NodeStoppedError` in the child of a fork.
    fn open(&self, py: Python<'_>) -> PyResult<Option<Arc<Handle>>> {
        let slot = self.h.get(py, "handle")?;
        Ok(slot.lock().unwrap_or_else(|p| p.into_inner()).clone())
    }
}

#[pymethods]
impl PyHandle {
    #[new]
    #[pyo3(signature = (node, queue_capacity = None))]
    fn py_new(
        py: Python<'_>,
        node: PyRef<'_, PyNode>,
        queue_capacity: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let capacity = match queue_capacity {
            None => None,
            Some(c) if c.is_none() => None,
            Some(c) => {
                let ok = c.is_instance_of::<PyInt>() && !c.is_instance_of::<PyBool>();
                match c.extract::<usize>() {
                    Ok(n) if ok && n >= 1 => Some(n),
                    _ => {
                        return Err(PyValueError::new_err(format!(
                            "queue_capacity must be a positive int, got {}",
                            c.repr()?
                        )))
                    }
                }
            }
        };
        let h = node.new_handle(py, capacity)?;
        Ok(PyHandle {
            id: h.id(),
            node_id: h.node_id(),
            h: Owned::new(Mutex::new(Some(Arc::new(h)))),
        })
    }

    /// This handle's id on its node (receivers see it as `Message.sender_handle`).
    #[getter]
    fn id(&self) -> u32 {
        self.id
    }

    /// The node's id.
    #[getter]
    fn node_id(&self) -> u32 {
        self.node_id
    }

    /// Joins one group or several (`str` or `bytes` names of 1 to 32 bytes). Takes effect
    /// where the join is delivered in agreed order, at every node alike. Raises
    /// InvalidGroupError for a bad name.
    fn join(&self, py: Python<'_>, groups: &Bound<'_, PyAny>) -> PyResult<()> {
        let groups = groups_arg(groups)?;
        self.h(py)?.join(&groups).map_err(|e| evs_error(py, e))
    }

    /// Leaves groups; every one must be joined (else NotJoinedError, nothing left).
    fn leave(&self, py: Python<'_>, groups: &Bound<'_, PyAny>) -> PyResult<()> {
        let groups = groups_arg(groups)?;
        self.h(py)?.leave(&groups).map_err(|e| evs_error(py, e))
    }

    /// The groups this handle asked to join (joins in flight included), sorted; `()` once the
    /// handle is closed (by `close()`, an overflow or its node stopping).
    #[getter]
    fn joined<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let joined = self.open(py)?.map(|h| h.joined()).unwrap_or_default();
        PyTuple::new(py, joined.iter().map(|g| PyBytes::new(py, g)))
    }

    /// Multicasts `data` to every group this handle joined.
    ///
    /// When the node's send budget is used up: `timeout=0` raises TryAgainError at once, a
    /// number waits that long (then TimeoutError), None (default) waits as long as it takes.
    /// Raises NotJoinedError with no group joined, MessageTooLargeError over
    /// `max_message_size`, HandleClosedError once closed.
    #[pyo3(signature = (data, guarantee = PyGuarantee::Agreed, *, timeout = None))]
    fn mcast_joined(
        &self,
        py: Python<'_>,
        data: &Bound<'_, PyAny>,
        guarantee: PyGuarantee,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let data = payload_arg(data)?;
        let data = data.as_slice();
        let timeout = timeout_arg(timeout)?;
        let g = Guarantee::from(guarantee);
        let h = self.h(py)?;
        if timeout == Some(0.0) {
            return h.mcast_joined(data, g).map_err(|e| evs_error(py, e));
        }
        wait(py, timeout, |slice| h.mcast_joined_blocking(data, g, slice))
    }

    /// Multicasts `data` to `groups` (one name or several), joined or not; `timeout` as for
    /// `mcast_joined`.
    #[pyo3(signature = (groups, data, guarantee = PyGuarantee::Agreed, *, timeout = None))]
    fn mcast_groups(
        &self,
        py: Python<'_>,
        groups: &Bound<'_, PyAny>,
        data: &Bound<'_, PyAny>,
        guarantee: PyGuarantee,
        timeout: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<()> {
        let groups = groups_arg(groups)?;
        let data = payload_arg(data)?;
        let data = data.as_slice();
        let timeout = timeout_arg(timeout)?;
        let g = Guarantee::from(guarantee);
        let h = self.h(py)?;
        if timeout == Some(0.0) {
            return h
                .mcast_groups(&groups, data, g)
                .map_err(|e| evs_error(py, e));
        }
        wait(py, timeout, |slice| {
            h.mcast_groups_blocking(&groups, data, g, slice)
        })
    }

    /// `(node_id, members)` of the node's last regular configuration.
    fn _membership(&self, py: Python<'_>) -> PyResult<(u32, Vec<u32>)> {
        Ok(self.h(py)?.membership())
    }

    /// Members of `group` (one name) in the node's replicated view, as sorted
    /// `(node_id, handle_id)`. InvalidGroupError for a name `join` would refuse.
    fn _group_membership(
        &self,
        py: Python<'_>,
        group: &Bound<'_, PyAny>,
    ) -> PyResult<Vec<(u32, u32)>> {
        let group = one_group(group)?;
        evs::event::validate_group(&group).map_err(|e| evs_error(py, e))?;
        Ok(self.h(py)?.group_membership(group))
    }

    /// The next event, waiting up to `timeout` seconds (None: as long as it takes). Raises
    /// TimeoutError, HandleClosedError once closed (OverflowedError after an overflow, when
    /// everything queued before it was read).
    #[pyo3(signature = (timeout = None))]
    fn recv(&self, py: Python<'_>, timeout: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
        let timeout = timeout_arg(timeout)?;
        let h = self.h(py)?;
        let ev = wait(py, timeout, |slice| h.recv(Some(slice)))?;
        to_py(py, ev)
    }

    /// Waits like `recv` for one event, then returns up to `max_events` of the queued ones:
    /// many events for one crossing into the native module.
    #[pyo3(signature = (max_events = None, timeout = None))]
    fn recv_many<'py>(
        &self,
        py: Python<'py>,
        max_events: Option<&Bound<'py, PyAny>>,
        timeout: Option<&Bound<'py, PyAny>>,
    ) -> PyResult<Bound<'py, PyList>> {
        let max_events = match max_events {
            None => DEFAULT_BATCH,
            Some(m) => {
                let n = if m.is_instance_of::<PyInt>() && !m.is_instance_of::<PyBool>() {
                    m.extract::<usize>().ok().filter(|&n| n >= 1)
                } else {
                    None
                };
                match n {
                    Some(n) => n,
                    None => {
                        return Err(PyValueError::new_err(format!(
                            "max_events must be a positive int, got {}",
                            m.repr()?
                        )))
                    }
                }
            }
        };
        let timeout = timeout_arg(timeout)?;
        let h = self.h(py)?;
        let evs = wait(py, timeout, |slice| h.recv_many(max_events, Some(slice)))?;
        let list = PyList::empty(py);
        for ev in evs {
            list.append(to_py(py, ev)?)?;
        }
        Ok(list)
    }

    /// The next event if one is queued, else None (never waits).
    fn try_recv(&self, py: Python<'_>) -> PyResult<Option<Py<PyAny>>> {
        match self.h(py)?.try_recv() {
            Ok(Some(ev)) => Ok(Some(to_py(py, ev)?)),
            Ok(None) => Ok(None),
            Err(e) => Err(evs_error(py, e)),
        }
    }

    /// Events waiting to be received.
    fn queue_len(&self, py: Python<'_>) -> PyResult<usize> {
        Ok(self.open(py)?.map_or(0, |h| h.queue_len()))
    }

    /// An eventfd readable while an event (or the end of the stream) can be received; for
    /// select/poll/selectors and event loops.
    fn fileno(&self, py: Python<'_>) -> PyResult<i32> {
        Ok(self.h(py)?.fileno())
    }

    /// Whether the stream ended: closed, closed by the node after an overflow, or the node
    /// stopped.
    /// `True` also after `_close` and in the child of a fork (the handle is the parent's).
    fn _ended(&self) -> bool {
        match self.h.get_here() {
            Some(slot) => slot
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .as_ref()
                .is_none_or(|h| h.is_closed()),
            None => true,
        }
    }

    /// Closes the native handle (idempotent): its groups are left, queued events dropped,
    /// and the handle is dropped, which closes its eventfd at once (or when the last call in
    /// flight on another thread returns). Does nothing in the child of a fork (the handle is
    /// the parent's).
    fn _close(&self) {
        if let Some(slot) = self.h.get_here() {
            let h = slot.lock().unwrap_or_else(|p| p.into_inner()).take();
            if let Some(h) = h {
                h.close();
            }
        }
    }
}
