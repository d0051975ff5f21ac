//! What a handle receives and the errors its methods return.
//!
//! This module owns the public value types of the EVS API: [`Event`] (messages, configuration
//! changes and group membership changes, each with the ordering guarantee it carries),
//! [`EvsError`], and the group-name rules ([`validate_group`]). It holds no state.

use std::fmt;
use std::io;

use bytes::Bytes;

pub use totem::{ConfigKind, Guarantee, NodeId, RingId};

/// Identifies a handle within its node. Handle ids start at 1 and are never reused while the
/// node runs; `(NodeId, HandleId)` names a group member cluster-wide.
pub type HandleId = u32;

/// Longest group name in bytes (Corosync EVS's fixed `char key[32]`).
pub const MAX_GROUP_LEN: usize = 32;

/// Most groups one handle may have joined at once, and most groups one message may name.
pub const MAX_GROUPS: usize = 255;

/// One event of a handle's stream. Every handle of every node sees the events it is given in
/// the same relative order: the Totem agreed order, with configuration changes at the point
/// where extended virtual synchrony places them.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Event {
    /// An application message addressed to a group this handle had joined at the point of
    /// delivery (joins and leaves take effect when *they* are delivered, in the same stream, so
    /// this is decided identically at every node). Delivered once per handle even when several
    /// of the message's groups match. Self delivery: the sender's handles receive their own
    /// messages like everyone else.
    Message {
        /// Node that multicast it.
        sender: NodeId,
        /// Handle (on `sender`) that multicast it.
        sender_handle: HandleId,
        /// The groups the message was addressed to, as the sender named them.
        groups: Vec<Bytes>,
        data: Bytes,
        /// Ring on which the message was ordered.
        ring_id: RingId,
        /// Sequence number, on `ring_id`, of the packet that completed it.
        seq: u64,
        /// Its position among the messages that packet completed (small messages share
        /// packets): `(ring_id, seq, index)` is unique and ordered like the agreed order.
        index: u32,
        /// Agreed or safe, as requested by the sender.
        guarantee: Guarantee,
    },
    /// A configuration change of the Totem ring, delivered to every handle whatever groups it
    /// joined. A transitional configuration (`left` filled, `joined` empty) closes the old
    /// ring: messages delivered after it and before the next regular configuration were held
    /// by every member listed. A regular configuration (`joined` filled, `left` empty) opens
    /// the new ring. A new handle receives the current regular configuration as its first
    /// event (as Corosync's EVS service does), when the node has installed one.
    ConfigChange {
        kind: ConfigKind,
        /// The ring being installed (for a transitional configuration: the ring that follows).
        ring_id: RingId,
        /// Members, ascending.
        members: Vec<NodeId>,
        left: Vec<NodeId>,
        joined: Vec<NodeId>,
    },
    /// The membership of a group this handle belongs to (or just left) changed. Delivered in
    /// agreed order, at the point where the join, leave or node departure that caused it was
    /// delivered; after a configuration that brought nodes from elsewhere (a merge, a start),
    /// the changes until every member's membership sync is delivered come together at that
    /// point, one per group. Every member reports the same `members` (the view after the
    /// change, sorted) at the same point; `joined` and `left` are relative to what this node
    /// held before, so after a merge they differ by side.
    GroupChange {
        group: Bytes,
        members: Vec<(NodeId, HandleId)>,
        joined: Vec<(NodeId, HandleId)>,
        left: Vec<(NodeId, HandleId)>,
    },
}

/// What filled a handle's queue when the node closed it ([`EvsError::Overflowed`]).
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum Overflow {
    /// Mostly other senders' events: the consumer did not keep up with the cluster.
    Consumer,
    /// Mostly this handle's own messages, delivered back to it (self delivery) and never
    /// read: a joined handle multicast more than its queue and delivery buffer hold without
    /// receiving. Read the handle's events while multicasting to it, or leave the group.
    OwnMessages,
}

/// Errors of the EVS API.
#[derive(Debug)]
pub enum EvsError {
    /// The handle was closed, or its node stopped.
    Closed,
    /// `leave` of a group the handle has not joined, or `mcast_joined` with no group joined.
    NotJoined,
    /// The node's send budget is used up; retry after deliveries drain it.
    TryAgain,
    /// A blocking call's timeout passed.
    Timeout,
    /// The application data (`size` bytes) exceeds `max_message_size` (`max`), which bounds
    /// the data alone (the group header is not counted).
    TooLarge { size: usize, max: usize },
    /// A group name (or list of names) that breaks the rules; the text says which.
    InvalidGroup(String),
    /// The node closed this handle because its event queue and delivery buffer were full
    /// (the runtime's delivery buffer); the reason says whose events filled them. Returned once
    /// everything queued before the overflow has been read.
    Overflowed(Overflow),
    /// The node could not start with its configuration.
    Config(String),
    /// An operating-system error (eventfd, sockets).
    Io(io::Error),
}

impl fmt::Display for EvsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            EvsError::Closed => f.write_str("handle closed"),
            EvsError::NotJoined => f.write_str("group not joined"),
            EvsError::TryAgain => f.write_str("send queue full, try again"),
            EvsError::Timeout => f.write_str("timed out"),
            EvsError::TooLarge { size, max } => write!(
                f,
                "message of {size} bytes exceeds max_message_size ({max} bytes)"
            ),
            EvsError::InvalidGroup(why) => write!(f, "invalid group: {why}"),
            EvsError::Overflowed(Overflow::Consumer) => f.write_str(
                "handle closed by the node: its event queue overflowed (consumer too slow)",
            ),
            EvsError::Overflowed(Overflow::OwnMessages) => f.write_str(
                "handle closed by the node: its event queue overflowed with the handle's own \
                 undelivered messages (it multicast to a group it joined without reading its \
                 events)",
            ),
            EvsError::Config(why) => write!(f, "configuration: {why}"),
            EvsError::Io(e) => write!(f, "I/O: {e}"),
        }
    }
}

impl std::error::Error for EvsError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            EvsError::Io(e) => Some(e),
            _ => None,
        }
    }
}

impl From<io::Error> for EvsError {
    fn from(e: io::Error) -> Self {
        EvsError::Io(e)
    }
}

/// Checks one group name: 1 to [`MAX_GROUP_LEN`] bytes, any byte values (names are compared
/// as byte strings, like Corosync's `memcmp` of keys).
pub fn validate_group(name: &[u8]) -> Result<(), EvsError> {
    if name.is_empty() {
        return Err(EvsError::InvalidGroup("empty group name".into()));
    }
    if name.len() > MAX_GROUP_LEN {
        return Err(EvsError::InvalidGroup(format!(
            "group name of {} bytes exceeds {MAX_GROUP_LEN} bytes: {}",
            name.len(),
            String::from_utf8_lossy(name)
        )));
    }
    Ok(())
}

/// Validates and deduplicates a list of names (first occurrence kept): at least one, at most
/// [`MAX_GROUPS`].
pub fn group_list<I, G>(groups: I) -> Result<Vec<Bytes>, EvsError>
where
    I: IntoIterator<Item = G>,
    G: AsRef<[u8]>,
{
    let mut out: Vec<Bytes> = Vec::new();
    for g in groups {
        let g = g.as_ref();
        validate_group(g)?;
        if !out.iter().any(|x| x.as_ref() == g) {
            if out.len() == MAX_GROUPS {
                return Err(EvsError::InvalidGroup(format!(
                    "more than {MAX_GROUPS} groups"
                )));
            }
            out.push(Bytes::copy_from_slice(g));
        }
    }
    if out.is_empty() {
        return Err(EvsError::InvalidGroup("no group given".into()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_names_are_checked() {
        assert!(validate_group(b"a").is_ok());
        assert!(validate_group(&[0xff; 32]).is_ok());
        assert!(matches!(
            validate_group(b""),
            Err(EvsError::InvalidGroup(_))
        ));
        assert!(matches!(
            validate_group(&[b'x'; 33]),
            Err(EvsError::InvalidGroup(_))
        ));
        let l = group_list(["a", "b", "a"]).unwrap();
        assert_eq!(l, vec![Bytes::from_static(b"a"), Bytes::from_static(b"b")]);
        assert!(group_list(Vec::<&[u8]>::new()).is_err());
        let many: Vec<String> = (0..256).map(|i| format!("g{i}")).collect();
        assert!(group_list(&many).is_err());
        assert!(group_list(&many[..255]).is_ok());
    }
}
