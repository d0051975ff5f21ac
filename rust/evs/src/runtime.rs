//! The background thread that runs node drivers.
//!
//! A [`Runtime`] is one OS thread running a single-threaded tokio runtime (I/O and timers
//! enabled). Any number of nodes may share it: each node is one task. The thread exists as long
//! as a clone of the `Runtime` does (every [`Node`](crate::Node) started on it holds one), and
//! stopping it never hangs the caller: the join waits a bounded time, then leaves the thread
//! detached.
//!
//! The runtime thread is spawned by the thread that calls [`Runtime::new`] and inherits its
//! network namespace, and nodes create their sockets on the runtime thread: a runtime created
//! from a thread that entered a namespace (`setns`) runs nodes inside that namespace.

use std::io;
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{JoinHandle, ThreadId};
use std::time::Duration;

use tokio::sync::oneshot;

/// How long dropping the last clone of a runtime waits for its thread to finish.
const STOP_TIMEOUT: Duration = Duration::from_secs(5);

struct Inner {
    handle: tokio::runtime::Handle,
    thread_id: ThreadId,
    stop: Mutex<Option<oneshot::Sender<()>>>,
    done: Mutex<mpsc::Receiver<()>>,
    thread: Mutex<Option<JoinHandle<()>>>,
}

impl Drop for Inner {
    fn drop(&mut self) {
        if let Some(stop) = self.stop.lock().unwrap_or_else(|p| p.into_inner()).take() {
            let _ = stop.send(());
        }
        if std::thread::current().id() == self.thread_id {
            // Dropped from inside the runtime (by a task): the thread ends once we return.
            return;
        }
        let finished = self
            .done
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .recv_timeout(STOP_TIMEOUT)
            .is_ok();
        if let Some(t) = self.thread.lock().unwrap_or_else(|p| p.into_inner()).take() {
            if finished {
                let _ = t.join();
            } else {
                tracing::warn!("evs runtime thread did not stop in time; leaving it detached");
            }
        }
    }
}

/// A background thread hosting node drivers. Cheap to clone; the thread stops when the last
/// clone (including those held by nodes) is dropped.
#[derive(Clone)]
pub struct Runtime {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Runtime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Runtime")
            .field("thread", &self.inner.thread_id)
            .finish()
    }
}

impl Runtime {
    /// Starts the runtime thread.
    pub fn new() -> io::Result<Runtime> {
        let (ready_tx, ready_rx) = mpsc::sync_channel(1);
        let (done_tx, done_rx) = mpsc::sync_channel(1);
        let (stop_tx, stop_rx) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("evs-runtime".into())
            .spawn(move || {
                let rt = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(rt) => rt,
                    Err(e) => {
                        let _ = ready_tx.send(Err(e));
                        return;
                    }
                };
                let _ = ready_tx.send(Ok(rt.handle().clone()));
                rt.block_on(async {
                    let _ = stop_rx.await;
                });
                // Dropping the runtime drops every remaining task; node drivers close their
                // handles' queues from their destructors, so no consumer waits forever.
                drop(rt);
                let _ = done_tx.send(());
            })?;
        let thread_id = thread.thread().id();
        let handle = ready_rx
            .recv()
            .map_err(|_| io::Error::other("evs runtime thread died at start"))??;
        Ok(Runtime {
            inner: Arc::new(Inner {
                handle,
                thread_id,
                stop: Mutex::new(Some(stop_tx)),
                done: Mutex::new(done_rx),
                thread: Mutex::new(Some(thread)),
            }),
        })
    }

    /// The tokio handle of the runtime (to spawn tasks or bind sockets on it).
    pub fn tokio_handle(&self) -> &tokio::runtime::Handle {
        &self.inner.handle
    }

    /// Whether the calling thread is this runtime's thread (blocking there would deadlock).
    pub fn is_current_thread(&self) -> bool {
        std::thread::current().id() == self.inner.thread_id
    }
}
