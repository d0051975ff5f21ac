//! The state a node shares between its application threads (the node and its handles) and its
//! driver: [`Shared`].

use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;

use crate::budget::SendBudget;
use crate::config::DeliveryBuffer;
use crate::event::{NodeId, RingId};
use crate::groups::GroupView;

/// State shared by the node, its handles and its driver.
pub(crate) struct Shared {
    pub(crate) node_id: NodeId,
    /// The largest application payload (the `max_message_size` setting).
    pub(crate) max_payload: usize,
    /// The largest ring message: `max_payload` plus the largest group header
    /// ([`groups::ring_message_size`]); bounds joins, leaves and sync parts.
    pub(crate) max_message_size: usize,
    pub(crate) budget: SendBudget,
    /// Ring id and members of the last regular configuration.
    pub(crate) membership: Mutex<(RingId, Vec<NodeId>)>,
    pub(crate) view: Mutex<GroupView>,
    pub(crate) running: AtomicBool,
    /// Woken by a consumer that made room in a queue the driver has buffered events for.
    pub(crate) refill: Arc<Notify>,
    /// What bounds each handle's delivery buffer: the configured key, and the sizes its
    /// "auto" value is computed from.
    pub(crate) delivery_buffer: DeliveryBuffer,
    pub(crate) window_size: u32,
    pub(crate) max_packet_size: usize,
}

impl Shared {
    pub(crate) fn members(&self) -> (RingId, Vec<NodeId>) {
        self.membership
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}
