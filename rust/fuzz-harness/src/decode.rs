//! Target `wire_decode`: every decoder that sees bytes from the network, on the same input.
//!
//! The input is read three ways, so one corpus serves all decoders:
//!
//! 1. as one Totem datagram: `totem::wire::decode`. An accepted packet must be canonical
//!    (re-encoding reproduces the input, as `decode` documents). The payload of an `Mcast` is
//!    unpacked by a `Reassembler` (an encapsulated one is decoded again first, as the processor
//!    does in recovery) and every message it yields goes through (2);
//! 2. as one ring payload of the `evs` node: `evs::groups::decode`. Accepted `App`, `GroupJoin`
//!    and `GroupLeave` payloads must be canonical too, and every accepted message is applied to a
//!    `GroupView`, as the driver does with what the ring delivers;
//! 3. as a sequence of packed payloads from a few senders (`[sender u8][len u16 LE][payload]`
//!    repeated) fed to one `Reassembler`, which keeps partial messages between payloads; every
//!    message it yields goes through (2).

use bytes::Bytes;
use evs::groups::{self, GroupView, RingMsg};
use totem::pack::{Reassembler, Unpacked};
use totem::wire::{self, Packet};

/// Largest reassembled message: small, so the fuzzer reaches the size limit.
const MAX_MESSAGE: usize = 4096;

pub fn run(data: &[u8]) {
    let bytes = Bytes::copy_from_slice(data);
    let mut view = GroupView::default();
    let mut reasm = Reassembler::new(MAX_MESSAGE);

    datagram(&bytes, &mut reasm, &mut view, 0);
    ring_payload(7, &bytes, &mut view);
    payload_sequence(data, &mut reasm, &mut view);
}

fn datagram(bytes: &Bytes, reasm: &mut Reassembler, view: &mut GroupView, depth: u32) {
    let Ok(decoded) = wire::decode(bytes) else {
        return;
    };
    let again = wire::encode(decoded.sender, &decoded.packet);
    assert_eq!(
        &again[..],
        &bytes[..],
        "an accepted packet is not canonical: {decoded:?}"
    );
    if let Packet::Mcast(m) = decoded.packet {
        if m.encapsulated {
            // The processor unwraps one level; deeper nesting is just more of the same.
            if depth < 2 {
                datagram(&m.payload, reasm, view, depth + 1);
            }
        } else {
            unpack(reasm, decoded.sender, &m.payload, view);
        }
    }
}

fn unpack(reasm: &mut Reassembler, sender: u32, payload: &Bytes, view: &mut GroupView) {
    let mut out: Vec<Unpacked> = Vec::new();
    // Errors are the documented outcome of a bad payload; only the output is checked.
    let _ = reasm.unpack(sender, payload, &mut out);
    for (i, u) in out.iter().enumerate() {
        assert!(
            u.data.len() <= MAX_MESSAGE,
            "reassembled a message of {} bytes over the maximum {MAX_MESSAGE}",
            u.data.len()
        );
        if let Some(prev) = i.checked_sub(1).map(|j| out[j].msg_no) {
            assert_eq!(
                u.msg_no,
                prev.wrapping_add(1),
                "messages of one payload are not numbered consecutively"
            );
        }
        ring_payload(sender, &u.data, view);
    }
}

fn ring_payload(node: u32, bytes: &Bytes, view: &mut GroupView) {
    let Ok(msg) = groups::decode(bytes) else {
        return;
    };
    let canonical = match &msg {
        RingMsg::App {
            handle,
            groups,
            data,
        } => Some(groups::encode_app(*handle, groups, data)),
        RingMsg::GroupJoin { handle, groups } => {
            Some(groups::encode_membership(true, *handle, groups))
        }
        RingMsg::GroupLeave { handle, groups } => {
            Some(groups::encode_membership(false, *handle, groups))
        }
        // The flags byte of a sync ignores its unknown bits, so a sync is not canonical.
        RingMsg::GroupSync { .. } => None,
    };
    if let Some(c) = canonical {
        assert_eq!(
            &c, bytes,
            "an accepted ring payload is not canonical: {msg:?}"
        );
    }
    let deltas = match &msg {
        RingMsg::App { .. } => Vec::new(),
        RingMsg::GroupJoin { handle, groups } => view.join(node, *handle, groups),
        RingMsg::GroupLeave { handle, groups } => view.leave(node, *handle, groups),
        RingMsg::GroupSync { first, entries, .. } => view.sync(node, *first, entries),
    };
    for d in deltas {
        assert!(
            d.members.windows(2).all(|w| w[0] < w[1]),
            "group members not sorted and unique: {d:?}"
        );
        assert!(
            d.joined.iter().all(|m| d.members.contains(m)),
            "a joined member is not in the group: {d:?}"
        );
        assert!(
            d.left.iter().all(|m| !d.members.contains(m)),
            "a member that left is still in the group: {d:?}"
        );
    }
}

fn payload_sequence(data: &[u8], reasm: &mut Reassembler, view: &mut GroupView) {
    let mut rest = data;
    while let [sender, lo, hi, tail @ ..] = rest {
        let len = usize::from(u16::from_le_bytes([*lo, *hi])).min(tail.len());
        let (payload, next) = tail.split_at(len);
        // Four senders, so partial messages of several senders interleave.
        unpack(
            reasm,
            u32::from(sender % 4) + 1,
            &Bytes::copy_from_slice(payload),
            view,
        );
        rest = next;
    }
    assert!(reasm.pending() <= 4, "more partial messages than senders");
}
