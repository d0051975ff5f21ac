//! EVS node runtime around the sans-IO service engine ([`evs_engine`]) and `totem` core.
//!
//! A [`Node`] runs one Totem processor on a [`Runtime`] (a background thread with a tokio
//! runtime; several nodes may share one). Applications use [`Handle`]s, the EVS API: join and
//! leave groups, multicast to joined or named groups, and receive [`Event`]s — messages,
//! configuration changes and group membership changes — in agreed order.
//!
//! Modules, each depending only on modules listed before it, on its line or an earlier one (no
//! import circles; checked by `tests/python/test_layering.py`):
//!
//! 1. [`event`] (API value types and errors) and [`groups`] (payload format and the
//!    replicated group view), both from [`evs_engine`]; [`crypto`] (packet security),
//!    `reject_log` (rate-limited warnings about refused frames), [`config`] (TOML and
//!    builder), [`transport`] (UDP), [`runtime`];
//! 2. `queue` (a handle's bounded event queue and eventfd), `backlog` (the delivery buffer
//!    behind a full queue), `budget` (the node-wide send budget), [`stats`];
//! 3. `command` (the queue from handles to the driver), `shared` (what a node shares with its
//!    handles and driver);
//! 4. [`handle`] (the application's handle), `driver` (sockets, crypto and queues around the
//!    [`Engine`](evs_engine::Engine));
//! 5. [`node`] (start-up, shutdown, statistics).

mod backlog;
mod budget;
mod command;
pub mod config;
pub mod crypto;
mod driver;
pub mod handle;
pub mod node;
mod queue;
mod reject_log;
pub mod runtime;
mod shared;
pub mod stats;
pub mod transport;

pub use evs_engine::{event, groups};

pub use event::{ConfigKind, Event, EvsError, Guarantee, HandleId, NodeId, Overflow, RingId};
pub use handle::Handle;
pub use node::{Node, NodeError};
pub use runtime::Runtime;
pub use stats::NodeStats;

/// The OS error number behind `e`: its own, or that of the first I/O error in its chain of
/// sources (errors this crate wraps with context keep the original as their source).
pub fn os_errno(e: &std::io::Error) -> Option<i32> {
    if let Some(n) = e.raw_os_error() {
        return Some(n);
    }
    let mut cur: Option<&(dyn std::error::Error + 'static)> =
        e.get_ref().map(|r| r as &(dyn std::error::Error + 'static));
    while let Some(err) = cur {
        if let Some(n) = err
            .downcast_ref::<std::io::Error>()
            .and_then(|io| io.raw_os_error())
        {
            return Some(n);
        }
        cur = err.source();
    }
    None
}
