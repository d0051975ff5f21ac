//! The EVS service layer as a sans-IO engine: groups, handles and the routing of deliveries,
//! above the [`totem`] core.
//!
//! [`Engine`] owns a node's [`totem::Processor`], its replicated [`GroupView`] and every piece
//! of service logic: which handles are open, which groups each intends to be in (what the node
//! multicasts in its membership syncs), which handles a delivered message or group change goes
//! to, the submissions the processor had no room for yet, and the send budget those represent.
//! It has no sockets, clock, threads, locks or crypto: inputs are method calls with the time
//! (`handle_packet`, `handle_timeout`, `submit`, `open_handle`, `close_handle`, ...), outputs
//! are polled (`poll_transmit`, `poll_event`, `poll_timeout`), as in `totem` itself and in
//! quinn-proto. The runtime crate (`evs`) drives it with sockets, crypto and queues; the
//! simulator (`totem-sim --groups`) drives it over its network model and checks the group
//! properties of its outputs.
//!
//! Dependencies run one way: [`event`] (the public value types), [`groups`] (the ring payload
//! codec and the view), then [`engine`].

pub mod engine;
pub mod event;
pub mod groups;

#[cfg(feature = "fault-injection")]
pub use engine::EngineFaults;
pub use engine::{Engine, EngineStats, Intent, Output, Submission};
pub use event::{ConfigKind, Event, EvsError, Guarantee, HandleId, NodeId, Overflow, RingId};
pub use groups::{GroupDelta, GroupView};
