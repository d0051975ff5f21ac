//! Log records from the runtime to Python's `logging`, without the runtime touching Python.
//!
//! A `tracing` layer installed as the process's global subscriber (when no other is) formats
//! each enabled event into a record and appends it to a bounded in-memory queue; that is all
//! the runtime thread does. A Python thread (`evs._logging`) takes records with
//! [`take_logs`], which waits with the GIL released, and emits them on
//! `logging.getLogger("evs.<module>")`. When the queue is full, new records are counted and
//! dropped, and the next batch starts with a warning saying how many were lost: a stalled
//! consumer never blocks the protocol.
//!
//! The level threshold is set from Python (`set_log_level`, a `logging` level number); events
//! below it cost one atomic load.

use std::collections::VecDeque;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU64, AtomicU8, Ordering};
use std::sync::{Condvar, Mutex, OnceLock};
use std::time::Duration;

use pyo3::prelude::*;
use tracing::field::{Field, Visit};
use tracing::subscriber::Interest;
use tracing::{Event, Level, Metadata, Subscriber};
use tracing_subscriber::layer::{Context, Layer};
use tracing_subscriber::prelude::*;

/// Records held before new ones are dropped.
const QUEUE_CAP: usize = 10_000;

/// Python's level numbers.
const TRACE: u8 = 5;
const DEBUG: u8 = 10;
const INFO: u8 = 20;
const WARNING: u8 = 30;
const ERROR: u8 = 40;

/// Events at or above this Python level are recorded (default: INFO).
static THRESHOLD: AtomicU8 = AtomicU8::new(INFO);
static DROPPED: AtomicU64 = AtomicU64::new(0);

struct Queue {
    records: Mutex<VecDeque<(u8, String, String)>>,
    ready: Condvar,
}

fn queue() -> &'static Queue {
    static Q: OnceLock<Queue> = OnceLock::new();
    Q.get_or_init(|| Queue {
        records: Mutex::new(VecDeque::new()),
        ready: Condvar::new(),
    })
}

fn py_level(level: &Level) -> u8 {
    match *level {
        Level::TRACE => TRACE,
        Level::DEBUG => DEBUG,
        Level::INFO => INFO,
        Level::WARN => WARNING,
        Level::ERROR => ERROR,
    }
}

/// The logger name for a `tracing` target: `evs::driver` -> `evs.driver`,
/// `totem::processor` -> `evs.totem.processor`.
pub fn logger_name(target: &str) -> String {
    let dotted = target.replace("::", ".");
    if dotted == "evs" || dotted.starts_with("evs.") {
        dotted
    } else {
        format!("evs.{dotted}")
    }
}

/// Collects an event's fields as `message key=value ...`.
#[derive(Default)]
struct Text {
    message: String,
    fields: String,
}

impl Visit for Text {
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.fields, " {}={}", field.name(), value);
        }
    }

    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.fields, " {}={:?}", field.name(), value);
        }
    }
}

struct PythonLogLayer;

impl<S: Subscriber> Layer<S> for PythonLogLayer {
    fn register_callsite(&self, _meta: &'static Metadata<'static>) -> Interest {
        // The threshold changes at run time: never let the callsite cache a decision.
        Interest::sometimes()
    }

    fn enabled(&self, meta: &Metadata<'_>, _ctx: Context<'_, S>) -> bool {
        py_level(meta.level()) >= THRESHOLD.load(Ordering::Relaxed)
    }

    fn on_event(&self, event: &Event<'_>, _ctx: Context<'_, S>) {
        let meta = event.metadata();
        let mut text = Text::default();
        event.record(&mut text);
        text.message.push_str(&text.fields);
        let q = queue();
        let mut records = q.records.lock().unwrap_or_else(|p| p.into_inner());
        if records.len() >= QUEUE_CAP {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        records.push_back((
            py_level(meta.level()),
            logger_name(meta.target()),
            text.message,
        ));
        drop(records);
        q.ready.notify_one();
    }
}

/// Installs the layer as the global `tracing` subscriber, unless the process has one.
pub fn install() {
    let _ = tracing::subscriber::set_global_default(
        tracing_subscriber::registry().with(PythonLogLayer),
    );
}

/// Sets the lowest `logging` level recorded (e.g. `logging.DEBUG`).
#[pyfunction]
pub fn set_log_level(level: i64) {
    let level = level.clamp(0, i64::from(u8::MAX)) as u8;
    THRESHOLD.store(level, Ordering::Relaxed);
}

/// Waits up to `timeout` seconds (GIL released) for log records and returns all that are
/// queued, as `(level, logger_name, message)`.
#[pyfunction]
pub fn take_logs(py: Python<'_>, timeout: f64) -> Vec<(u8, String, String)> {
    let wait = Duration::from_secs_f64(timeout.clamp(0.0, 60.0));
    let mut out: Vec<(u8, String, String)> = py.detach(|| {
        let q = queue();
        let records = q.records.lock().unwrap_or_else(|p| p.into_inner());
        let (mut records, _) = q
            .ready
            .wait_timeout_while(records, wait, |r| r.is_empty())
            .unwrap_or_else(|p| p.into_inner());
        records.drain(..).collect()
    });
    let dropped = DROPPED.swap(0, Ordering::Relaxed);
    if dropped > 0 {
        out.insert(
            0,
            (
                WARNING,
                "evs".to_owned(),
                format!("{dropped} log records were dropped (log queue full)"),
            ),
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::logger_name;

    #[test]
    fn logger_names_hang_under_evs() {
        assert_eq!(logger_name("evs::driver"), "evs.driver");
        assert_eq!(logger_name("evs"), "evs");
        assert_eq!(logger_name("totem::processor"), "evs.totem.processor");
        assert_eq!(logger_name("evs_py"), "evs.evs_py");
    }
}
