//! Nodes and handles inherited by the child of a `fork()`.
//!
//! A child process gets a copy of the parent's memory but none of its threads: the runtime
//! thread that serves a node stays in the parent. A call on an inherited node or handle would
//! otherwise wait for an answer that never comes (or queue work nobody sends). The Python
//! package registers [`after_fork_in_child`] with `os.register_at_fork`; it bumps a process-wide
//! generation, and every node and handle made before it refuses calls from then on with
//! `NodeStoppedError`, at the cost of one relaxed atomic load per call.
//!
//! An inherited object is also never dropped in the child (it is leaked instead): dropping a
//! node waits for its (absent) driver to acknowledge the shutdown, and the locks inside may
//! have been held by a parent thread at the moment of the fork.

use std::sync::atomic::{AtomicU64, Ordering};

use pyo3::prelude::*;

use crate::errors::new_error;

/// How many forks this process descends from (as seen by `os.register_at_fork`).
static GENERATION: AtomicU64 = AtomicU64::new(0);

/// Called in the child after `os.fork()`: everything made before it belongs to the parent.
#[pyfunction]
pub fn after_fork_in_child() {
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// A value that belongs to the process that made it.
pub struct Owned<T> {
    /// Always `Some` until drop.
    value: Option<T>,
    generation: u64,
    /// The process that made it, for the error message.
    pid: u32,
}

impl<T> Owned<T> {
    pub fn new(value: T) -> Owned<T> {
        Owned {
            value: Some(value),
            generation: GENERATION.load(Ordering::Relaxed),
            pid: std::process::id(),
        }
    }

    /// Whether this process is a fork child of the one that made the value.
    pub fn inherited(&self) -> bool {
        GENERATION.load(Ordering::Relaxed) != self.generation
    }

    /// The value, or `NodeStoppedError` in a fork child. `what` is "node" or "handle".
    pub fn get(&self, py: Python<'_>, what: &str) -> PyResult<&T> {
        match &self.value {
            Some(v) if !self.inherited() => Ok(v),
            _ => Err(new_error(
                py,
                "NodeStoppedError",
                format!(
                    "this {what} was inherited across fork() from process {}, whose runtime \
                     thread serves it; create a new evs.Node (and handles) in the child",
                    self.pid
                ),
            )),
        }
    }

    /// The value in the process that made it, `None` in a fork child.
    pub fn get_here(&self) -> Option<&T> {
        if self.inherited() {
            None
        } else {
            self.value.as_ref()
        }
    }
}

impl<T> Drop for Owned<T> {
    fn drop(&mut self) {
        if self.inherited() {
            std::mem::forget(self.value.take());
        }
    }
}
