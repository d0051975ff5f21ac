//! EVS node runtime around the sans-IO `totem` core.
//!
//! A [`Node`] runs one Totem processor on a [`Runtime`] (a background thread with a tokio
//! runtime; several nodes may share one). Applications use [`Handle`]s, the EVS API: join and
//! leave groups, multicast to joined or named groups, and receive [`Event`]s — messages,
//! configuration changes and group membership changes — in agreed order.
//!
//! Modules: [`config`] (TOML and builder), [`crypto`] (packet security), [`transport`] (UDP),
//! [`groups`] (payload format and the replicated group view), [`event`] (API value types and
//! errors), [`handle`] (handles, their queues and the send budget), [`node`] (start-up,
//! shutdown, statistics), `command` (the queue from handles to the driver), `driver` (the
//! protocol loop) and [`runtime`].

mod command;
pub mod config;
pub mod crypto;
mod driver;
pub mod event;
pub mod groups;
pub mod handle;
pub mod node;
pub mod runtime;
pub mod transport;

pub use event::{ConfigKind, Event, EvsError, Guarantee, HandleId, NodeId, RingId};
pub use handle::Handle;
pub use node::{Node, NodeError, NodeStats};
pub use runtime::Runtime;
