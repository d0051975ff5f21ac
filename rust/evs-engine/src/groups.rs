//! Groups on top of the ring: the payload format of every message the node multicasts, and
//! the replicated per-group membership view.
//!
//! This module owns two pure pieces, with no I/O and no locking of their own:
//!
//! * the **ring payload codec** ([`RingMsg`]): what a node puts inside a Totem message. Handles
//!   encode on their own thread (so the node's protocol task only moves bytes); the
//!   [`Engine`](crate::Engine) decodes each delivered payload once. Decoding checks every length and caps every count; a malformed
//!   payload is an error value, never a panic (the engine drops and counts it).
//! * the **group view** ([`GroupView`]): group → set of `(node, handle)`. It changes only when
//!   the engine applies something delivered in agreed order (a join, a leave, a membership
//!   sync, a regular configuration change), so every node that delivers the same stream
//!   holds the same view at the same point of it, as Corosync's CPG does. Local filtering uses
//!   it too: a local handle is "in" a group exactly when the view lists `(this node, handle)`.
//!
//! # Payload format (all integers little-endian)
//!
//! ```text
//! 0   u8   version (= 1)
//! 1   u8   kind: 1 App, 2 GroupJoin, 3 GroupLeave, 4 GroupSync
//! App:        handle u32, group list, then the application data to the end
//! GroupJoin:  handle u32, group list                    (nothing may follow)
//! GroupLeave: handle u32, group list                    (nothing may follow)
//! GroupSync:  flags u8 (bit 0: first part, bit 1: last part), entries u16, then per entry
//!             handle u32, group list                    (nothing may follow)
//! group list: count u8 (1..=255), then per group len u8 (1..=32) and the name bytes
//! ```
//!
//! A `GroupSync` with the first-part flag replaces every entry of its sender; further parts
//! (a sync too large for one message is split) add to it, the last one flagged as such (a sync
//! of one part carries both flags). Parts are consecutive in the sender's FIFO order, so no
//! other message of the sender falls between them. Unknown flag bits are ignored.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;

use bytes::{BufMut, Bytes, BytesMut};

use crate::event::{HandleId, NodeId, MAX_GROUPS, MAX_GROUP_LEN};

/// Version byte of the payload format.
pub const PAYLOAD_VERSION: u8 = 1;

const KIND_APP: u8 = 1;
const KIND_JOIN: u8 = 2;
const KIND_LEAVE: u8 = 3;
const KIND_SYNC: u8 = 4;
const SYNC_FIRST: u8 = 1;
const SYNC_LAST: u8 = 2;

/// Bytes an App message adds to the application data: version, kind, handle, group count.
pub const APP_FIXED_OVERHEAD: usize = 2 + 4 + 1;

/// The largest header an App message adds to the application data (every one of
/// [`MAX_GROUPS`] names at [`MAX_GROUP_LEN`] bytes). `max_message_size` bounds the data alone;
/// the ring carries messages up to that much more (see [`ring_message_size`]).
pub const MAX_APP_HEADER: usize = APP_FIXED_OVERHEAD + MAX_GROUPS * (1 + MAX_GROUP_LEN);

/// The largest ring message of a node whose applications send at most `max_payload` bytes:
/// what its processor must accept and reassemble. Joins, leaves and syncs fit it too (a join
/// of every group is smaller than the largest App header).
pub fn ring_message_size(max_payload: usize) -> usize {
    max_payload + MAX_APP_HEADER
}

/// One decoded ring payload. Names and data are slices of the delivered buffer (no copy).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RingMsg {
    App {
        handle: HandleId,
        groups: Vec<Bytes>,
        data: Bytes,
    },
    GroupJoin {
        handle: HandleId,
        groups: Vec<Bytes>,
    },
    GroupLeave {
        handle: HandleId,
        groups: Vec<Bytes>,
    },
    GroupSync {
        first: bool,
        last: bool,
        entries: Vec<(HandleId, Vec<Bytes>)>,
    },
}

/// Why a payload was refused.
#[derive(Copy, Clone, Debug, PartialEq, Eq)]
pub enum PayloadError {
    Truncated,
    BadVersion,
    BadKind,
    BadGroup,
    TrailingBytes,
}

impl fmt::Display for PayloadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PayloadError::Truncated => "truncated",
            PayloadError::BadVersion => "unknown version",
            PayloadError::BadKind => "unknown kind",
            PayloadError::BadGroup => "bad group list",
            PayloadError::TrailingBytes => "trailing bytes",
        })
    }
}

/// Encoded size of a group list.
pub fn group_list_len(groups: &[Bytes]) -> usize {
    1 + groups.iter().map(|g| 1 + g.len()).sum::<usize>()
}

fn put_groups(out: &mut BytesMut, groups: &[Bytes]) {
    debug_assert!(!groups.is_empty() && groups.len() <= MAX_GROUPS);
    out.put_u8(groups.len() as u8);
    for g in groups {
        debug_assert!(!g.is_empty() && g.len() <= MAX_GROUP_LEN);
        out.put_u8(g.len() as u8);
        out.put_slice(g);
    }
}

/// Encodes an application message. `groups` must be a validated list
/// ([`crate::event::group_list`]).
pub fn encode_app(handle: HandleId, groups: &[Bytes], data: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + 4 + group_list_len(groups) + data.len());
    out.put_u8(PAYLOAD_VERSION);
    out.put_u8(KIND_APP);
    out.put_u32_le(handle);
    put_groups(&mut out, groups);
    out.put_slice(data);
    out.freeze()
}

/// Encodes a join (`join = true`) or leave of `groups` by `handle`.
pub fn encode_membership(join: bool, handle: HandleId, groups: &[Bytes]) -> Bytes {
    let mut out = BytesMut::with_capacity(2 + 4 + group_list_len(groups));
    out.put_u8(PAYLOAD_VERSION);
    out.put_u8(if join { KIND_JOIN } else { KIND_LEAVE });
    out.put_u32_le(handle);
    put_groups(&mut out, groups);
    out.freeze()
}

/// Encodes a node's membership sync as one or more parts of at most `max` bytes each (at least
/// one part, the first and the last flagged as such, even when `entries` is empty). A handle whose groups
/// do not fit one part is split over several entries; entries add up on the receiving side.
pub fn encode_sync(entries: &[(HandleId, Vec<Bytes>)], max: usize) -> Vec<Bytes> {
    const HEAD: usize = 2 + 1 + 2;
    let mut parts = Vec::new();
    let mut count: u16 = 0;
    let start = |first: bool| {
        let mut b = BytesMut::with_capacity(max.min(64 * 1024));
        b.put_u8(PAYLOAD_VERSION);
        b.put_u8(KIND_SYNC);
        b.put_u8(if first { SYNC_FIRST } else { 0 });
        b.put_u16_le(0);
        b
    };
    let finish = |mut b: BytesMut, count: u16, last: bool| {
        b[3..5].copy_from_slice(&count.to_le_bytes());
        if last {
            b[2] |= SYNC_LAST;
        }
        b.freeze()
    };
    let mut cur = start(true);
    for (handle, groups) in entries {
        let mut rest: &[Bytes] = groups;
        while !rest.is_empty() {
            // As many of this handle's groups as fit what is left of the part.
            let room = max.saturating_sub(cur.len());
            let mut take = 0;
            let mut size = 4 + 1;
            while take < rest.len() && size + 1 + rest[take].len() <= room {
                size += 1 + rest[take].len();
                take += 1;
            }
            if take == 0 || count == u16::MAX {
                if cur.len() == HEAD {
                    // Not even one group fits an empty part: `max` is absurdly small. Send it
                    // anyway; the submit is refused as too large and counted.
                    take = 1;
                } else {
                    parts.push(finish(
                        std::mem::replace(&mut cur, start(false)),
                        count,
                        false,
                    ));
                    count = 0;
                    continue;
                }
            }
            cur.put_u32_le(*handle);
            put_groups(&mut cur, &rest[..take]);
            count += 1;
            rest = &rest[take..];
        }
    }
    parts.push(finish(cur, count, true));
    parts
}

struct Reader<'a> {
    buf: &'a Bytes,
    pos: usize,
}

impl Reader<'_> {
    fn u8(&mut self) -> Result<u8, PayloadError> {
        let b = *self.buf.get(self.pos).ok_or(PayloadError::Truncated)?;
        self.pos += 1;
        Ok(b)
    }
    fn u16(&mut self) -> Result<u16, PayloadError> {
        let s = self
            .buf
            .get(self.pos..self.pos + 2)
            .ok_or(PayloadError::Truncated)?;
        self.pos += 2;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, PayloadError> {
        let s = self
            .buf
            .get(self.pos..self.pos + 4)
            .ok_or(PayloadError::Truncated)?;
        self.pos += 4;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn groups(&mut self) -> Result<Vec<Bytes>, PayloadError> {
        let n = self.u8()? as usize;
        if n == 0 {
            return Err(PayloadError::BadGroup);
        }
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            let len = self.u8()? as usize;
            if len == 0 || len > MAX_GROUP_LEN {
                return Err(PayloadError::BadGroup);
            }
            if self.pos + len > self.buf.len() {
                return Err(PayloadError::Truncated);
            }
            out.push(self.buf.slice(self.pos..self.pos + len));
            self.pos += len;
        }
        Ok(out)
    }
    fn end(&self) -> Result<(), PayloadError> {
        if self.pos == self.buf.len() {
            Ok(())
        } else {
            Err(PayloadError::TrailingBytes)
        }
    }
}

/// Decodes one delivered payload.
pub fn decode(buf: &Bytes) -> Result<RingMsg, PayloadError> {
    let mut r = Reader { buf, pos: 0 };
    if r.u8()? != PAYLOAD_VERSION {
        return Err(PayloadError::BadVersion);
    }
    let kind = r.u8()?;
    match kind {
        KIND_APP => {
            let handle = r.u32()?;
            let groups = r.groups()?;
            let data = buf.slice(r.pos..);
            Ok(RingMsg::App {
                handle,
                groups,
                data,
            })
        }
        KIND_JOIN | KIND_LEAVE => {
            let handle = r.u32()?;
            let groups = r.groups()?;
            r.end()?;
            Ok(if kind == KIND_JOIN {
                RingMsg::GroupJoin { handle, groups }
            } else {
                RingMsg::GroupLeave { handle, groups }
            })
        }
        KIND_SYNC => {
            let flags = r.u8()?;
            let (first, last) = (flags & SYNC_FIRST != 0, flags & SYNC_LAST != 0);
            let n = r.u16()? as usize;
            // Each entry takes at least 7 bytes: cap the allocation by what the buffer can hold.
            let mut entries = Vec::with_capacity(n.min(buf.len() / 7));
            for _ in 0..n {
                let handle = r.u32()?;
                entries.push((handle, r.groups()?));
            }
            r.end()?;
            Ok(RingMsg::GroupSync {
                first,
                last,
                entries,
            })
        }
        _ => Err(PayloadError::BadKind),
    }
}

/// A change of one group's membership, produced by [`GroupView`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct GroupDelta {
    pub group: Bytes,
    /// Members after the change, sorted.
    pub members: Vec<(NodeId, HandleId)>,
    pub joined: Vec<(NodeId, HandleId)>,
    pub left: Vec<(NodeId, HandleId)>,
}

/// The replicated membership of every group: which handle of which node is in it.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GroupView {
    groups: BTreeMap<Bytes, BTreeSet<(NodeId, HandleId)>>,
}

impl GroupView {
    /// Members of `group`, sorted.
    pub fn members(&self, group: &[u8]) -> Vec<(NodeId, HandleId)> {
        self.groups
            .get(group)
            .map(|s| s.iter().copied().collect())
            .unwrap_or_default()
    }

    /// Handles of node `node` in `group`, ascending.
    pub fn node_handles<'a>(
        &'a self,
        group: &[u8],
        node: NodeId,
    ) -> impl Iterator<Item = HandleId> + 'a {
        self.groups
            .get(group)
            .into_iter()
            .flat_map(move |s| s.range((node, 0)..=(node, HandleId::MAX)).map(|e| e.1))
    }

    /// Every group with its members.
    pub fn snapshot(&self) -> BTreeMap<Bytes, Vec<(NodeId, HandleId)>> {
        self.groups
            .iter()
            .map(|(g, s)| (g.clone(), s.iter().copied().collect()))
            .collect()
    }

    /// Number of groups with at least one member.
    pub fn len(&self) -> usize {
        self.groups.len()
    }

    /// True when no group has members.
    pub fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    fn delta(
        &self,
        group: &Bytes,
        joined: Vec<(NodeId, HandleId)>,
        left: Vec<(NodeId, HandleId)>,
    ) -> GroupDelta {
        GroupDelta {
            group: group.clone(),
            members: self.members(group),
            joined,
            left,
        }
    }

    /// Applies a change another view produced (its `members` replace the group's): how a
    /// copy of an engine's view, read by application threads, follows it.
    pub fn apply(&mut self, delta: &GroupDelta) {
        if delta.members.is_empty() {
            self.groups.remove(&delta.group);
        } else {
            self.groups
                .insert(delta.group.clone(), delta.members.iter().copied().collect());
        }
    }

    /// A delivered join.
    pub fn join(&mut self, node: NodeId, handle: HandleId, groups: &[Bytes]) -> Vec<GroupDelta> {
        let mut out = Vec::new();
        for g in groups {
            if self
                .groups
                .entry(g.clone())
                .or_default()
                .insert((node, handle))
            {
                out.push(self.delta(g, vec![(node, handle)], Vec::new()));
            }
        }
        out
    }

    /// A delivered leave.
    pub fn leave(&mut self, node: NodeId, handle: HandleId, groups: &[Bytes]) -> Vec<GroupDelta> {
        let mut out = Vec::new();
        for g in groups {
            if self.remove(g, &[(node, handle)]) {
                out.push(self.delta(g, Vec::new(), vec![(node, handle)]));
            }
        }
        out
    }

    fn remove(&mut self, group: &Bytes, entries: &[(NodeId, HandleId)]) -> bool {
        let Some(set) = self.groups.get_mut(group) else {
            return false;
        };
        let mut changed = false;
        for e in entries {
            changed |= set.remove(e);
        }
        if set.is_empty() {
            self.groups.remove(group);
        }
        changed
    }

    /// A regular configuration: entries of nodes that are not members are removed.
    pub fn retain_nodes(&mut self, members: &[NodeId]) -> Vec<GroupDelta> {
        let gone: Vec<(Bytes, Vec<(NodeId, HandleId)>)> = self
            .groups
            .iter()
            .filter_map(|(g, s)| {
                let left: Vec<_> = s
                    .iter()
                    .copied()
                    .filter(|(n, _)| members.binary_search(n).is_err())
                    .collect();
                (!left.is_empty()).then(|| (g.clone(), left))
            })
            .collect();
        gone.into_iter()
            .map(|(g, left)| {
                self.remove(&g, &left);
                self.delta(&g, Vec::new(), left)
            })
            .collect()
    }

    /// A delivered membership sync of `node`: with `first`, its entries become exactly
    /// `entries`; otherwise `entries` are added.
    pub fn sync(
        &mut self,
        node: NodeId,
        first: bool,
        entries: &[(HandleId, Vec<Bytes>)],
    ) -> Vec<GroupDelta> {
        let mut want: BTreeMap<Bytes, BTreeSet<HandleId>> = BTreeMap::new();
        for (h, groups) in entries {
            for g in groups {
                want.entry(g.clone()).or_default().insert(*h);
            }
        }
        let mut touched: BTreeSet<Bytes> = want.keys().cloned().collect();
        if first {
            touched.extend(
                self.groups
                    .iter()
                    .filter(|(_, s)| s.range((node, 0)..=(node, HandleId::MAX)).next().is_some())
                    .map(|(g, _)| g.clone()),
            );
        }
        let mut out = Vec::new();
        for g in touched {
            let empty = BTreeSet::new();
            let w = want.get(&g).unwrap_or(&empty);
            let have: BTreeSet<HandleId> = self.node_handles(&g, node).collect();
            let joined: Vec<_> = w.difference(&have).map(|&h| (node, h)).collect();
            let left: Vec<_> = if first {
                have.difference(w).map(|&h| (node, h)).collect()
            } else {
                Vec::new()
            };
            if joined.is_empty() && left.is_empty() {
                continue;
            }
            self.remove(&g, &left);
            if !joined.is_empty() {
                self.groups
                    .entry(g.clone())
                    .or_default()
                    .extend(joined.iter().copied());
            }
            out.push(self.delta(&g, joined, left));
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b(s: &str) -> Bytes {
        Bytes::copy_from_slice(s.as_bytes())
    }

    #[test]
    fn payloads_round_trip() {
        let groups = vec![b("a"), b("bb")];
        let app = encode_app(7, &groups, b"hello");
        assert_eq!(
            decode(&app).unwrap(),
            RingMsg::App {
                handle: 7,
                groups: groups.clone(),
                data: b("hello")
            }
        );
        let j = encode_membership(true, 3, &groups);
        assert_eq!(
            decode(&j).unwrap(),
            RingMsg::GroupJoin {
                handle: 3,
                groups: groups.clone()
            }
        );
        let l = encode_membership(false, 3, &groups[..1]);
        assert_eq!(
            decode(&l).unwrap(),
            RingMsg::GroupLeave {
                handle: 3,
                groups: vec![b("a")]
            }
        );
        let entries = vec![(1, groups.clone()), (2, vec![b("c")])];
        let parts = encode_sync(&entries, 1 << 20);
        assert_eq!(parts.len(), 1);
        assert_eq!(
            decode(&parts[0]).unwrap(),
            RingMsg::GroupSync {
                first: true,
                last: true,
                entries: entries.clone()
            }
        );
        let empty = encode_sync(&[], 100);
        assert_eq!(
            decode(&empty[0]).unwrap(),
            RingMsg::GroupSync {
                first: true,
                last: true,
                entries: vec![]
            }
        );
    }

    #[test]
    fn large_syncs_are_split_and_add_up() {
        let groups: Vec<Bytes> = (0..200).map(|i| b(&format!("group-{i:04}"))).collect();
        let entries = vec![(1, groups.clone()), (2, groups[..10].to_vec())];
        let parts = encode_sync(&entries, 300);
        assert!(parts.len() > 5);
        let mut v = GroupView::default();
        v.join(9, 9, &[b("other")]);
        v.join(5, 1, &[b("stale")]);
        for (i, p) in parts.iter().enumerate() {
            assert!(p.len() <= 300);
            let RingMsg::GroupSync {
                first,
                last,
                entries,
            } = decode(p).unwrap()
            else {
                panic!()
            };
            assert_eq!(first, i == 0);
            assert_eq!(last, i == parts.len() - 1);
            v.sync(5, first, &entries);
        }
        assert_eq!(v.members(b"stale"), vec![]);
        assert_eq!(v.members(b"other"), vec![(9, 9)]);
        assert_eq!(v.members(b"group-0003"), vec![(5, 1), (5, 2)]);
        assert_eq!(v.members(b"group-0150"), vec![(5, 1)]);
    }

    #[test]
    fn malformed_payloads_are_errors() {
        let good = encode_app(1, &[b("g")], b"x");
        for cut in 0..good.len() - 1 {
            assert!(decode(&good.slice(..cut)).is_err(), "cut at {cut}");
        }
        let mut bad = good.to_vec();
        bad[0] = 9;
        assert_eq!(decode(&Bytes::from(bad)), Err(PayloadError::BadVersion));
        let mut bad = good.to_vec();
        bad[1] = 9;
        assert_eq!(decode(&Bytes::from(bad)), Err(PayloadError::BadKind));
        let mut bad = good.to_vec();
        bad[6] = 0; // no groups
        assert_eq!(decode(&Bytes::from(bad)), Err(PayloadError::BadGroup));
        let mut j = encode_membership(true, 1, &[b("g")]).to_vec();
        j.push(0);
        assert_eq!(decode(&Bytes::from(j)), Err(PayloadError::TrailingBytes));
        let sync = Bytes::from_static(&[1, 4, 1, 0xff, 0xff]);
        assert_eq!(decode(&sync), Err(PayloadError::Truncated));
    }

    #[test]
    fn view_follows_joins_leaves_configurations_and_syncs() {
        let mut v = GroupView::default();
        let d = v.join(1, 1, &[b("a"), b("b")]);
        assert_eq!(d.len(), 2);
        assert_eq!(d[0].joined, vec![(1, 1)]);
        assert!(
            v.join(1, 1, &[b("a")]).is_empty(),
            "a repeated join is no change"
        );
        v.join(2, 5, &[b("a")]);
        assert_eq!(v.members(b"a"), vec![(1, 1), (2, 5)]);
        assert_eq!(v.node_handles(b"a", 2).collect::<Vec<_>>(), vec![5]);
        let d = v.leave(1, 1, &[b("a"), b("zzz")]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].left, vec![(1, 1)]);
        assert_eq!(d[0].members, vec![(2, 5)]);
        let d = v.retain_nodes(&[1]);
        assert_eq!(d.len(), 1);
        assert_eq!(d[0].left, vec![(2, 5)]);
        assert_eq!(v.members(b"a"), vec![]);
        assert_eq!(v.len(), 1);
        let d = v.sync(1, true, &[(2, vec![b("c")])]);
        // b: (1,1) left; c: (1,2) joined.
        assert_eq!(d.len(), 2);
        assert_eq!(
            v.snapshot(),
            [(b("c"), vec![(1, 2)])]
                .into_iter()
                .collect::<BTreeMap<_, _>>()
        );
    }
}
