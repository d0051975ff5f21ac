//! The group checker: properties G1-G4 of the service layer, over the outputs of every node's
//! [`evs_engine::Engine`] (`--groups`).
//!
//! The simulator feeds it, per process and in order, every output of the engine's `poll_event`
//! (the engine is asked for the processor's own events too, [`Output::Core`], so the checker
//! knows where in the agreed stream each output falls), and tells it which handles it opened
//! and closed. From that alone the checker keeps, per process:
//!
//! * a copy of the engine's view, built only from its [`Output::Group`] changes (the engine
//!   documents that this copy equals its view whenever `poll_event` has returned `None`);
//! * the last regular configuration, and whether the barrier after a merge is open: from a
//!   regular configuration with members from elsewhere (or while an earlier barrier is open)
//!   until the last part of every member's membership sync is delivered, decoded from the
//!   processor's deliveries (see `docs/groups.md`);
//! * the point of the agreed stream it is at: the last message or configuration delivered.
//!
//! And checks:
//!
//! * **G1** Each process's view is, before every message it delivers, the one its delivered
//!   stream defines (kept here independently: joins add, leaves remove, a node's membership
//!   sync replaces its entries, a regular configuration drops the departed nodes'); and
//!   processes that deliver the same message in the same configuration, neither of them in
//!   a barrier, hold identical views just before it.
//! * **G2** A message sent to groups reaches exactly the open handles of the delivering node
//!   that are in one of the groups in the view at that point, once each, and a handle
//!   receives no message that was not routed to it there.
//! * **G3** Every group change reported to a handle at one point of the stream names the same
//!   members wherever that group's change is reported at that point, names the handle among
//!   its members or leavers, and its joined and left lists are consistent with its members.
//! * **G4** No view holds a handle of a node outside the last regular configuration.
//!
//! Like the EVS oracle, it stops at the first violation.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use bytes::Bytes;
use evs_engine::groups::{self, RingMsg};
use evs_engine::{Event, HandleId, Output};
use totem::{ConfigKind, Instant, NodeId, RingId};

use crate::oracle::{ProcId, Property, Violation};

/// The configuration a message is delivered in: the regular configuration of the ring that
/// ordered it (`None`), or a transitional configuration (the ring that follows, and the
/// members). Processes that deliver a message in the same configuration have delivered the
/// same messages before it; in different transitional configurations they may not have
/// (extended virtual synchrony lets each skip, after a gap, the messages of senders outside
/// its own).
type Delivering = Option<(RingId, Vec<NodeId>)>;

/// A point of the agreed stream: a message (and the configuration it was delivered in) or a
/// configuration change.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
enum Point {
    Message(RingId, u64, u32, Delivering),
    Config(ConfigKind, RingId, Vec<NodeId>),
}

/// A message delivered by the processor, and the handles it must reach (G2).
#[derive(Debug)]
struct Routing {
    ring_id: RingId,
    seq: u64,
    index: u32,
    /// What every handle must be given: the sender, its handle, the groups, the data and the
    /// guarantee, as delivered by the processor.
    message: (NodeId, HandleId, Vec<Bytes>, Bytes, totem::Guarantee),
    expected: BTreeSet<HandleId>,
    got: BTreeSet<HandleId>,
}

type View = BTreeMap<Bytes, BTreeSet<(NodeId, HandleId)>>;
/// A group's members as one report gave them, and the process that gave it.
type Report = (Vec<(NodeId, HandleId)>, ProcId);

#[derive(Debug, Default)]
struct Proc {
    /// The engine's view, from its `Output::Group` changes.
    view: View,
    /// The view the delivered stream defines, kept here from the decoded joins, leaves, syncs
    /// and regular configurations (the rules of `docs/groups.md`).
    model: View,
    members: Vec<NodeId>,
    /// Members whose last sync part is still to come, while a barrier is open.
    barrier: Option<BTreeSet<NodeId>>,
    point: Option<Point>,
    /// The transitional configuration delivered since the last regular one, if any.
    transitional: Delivering,
    open: BTreeSet<HandleId>,
    routing: Option<Routing>,
}

/// See the module docs.
#[derive(Debug, Default)]
pub struct GroupChecker {
    procs: HashMap<ProcId, Proc>,
    /// G1: a digest of the view of the first process seen delivering each message outside a
    /// barrier.
    views: HashMap<Point, (u64, ProcId)>,
    /// G3: the members of the first report of each group's change at each point.
    reports: HashMap<(Point, Bytes), Report>,
    /// Messages and group changes checked, for the run's summary.
    pub routed: u64,
    pub reported: u64,
}

fn violation(property: Property, at: Instant, detail: String) -> Violation {
    Violation {
        property,
        at,
        detail,
    }
}

/// FNV-1a over the view's entries, in order.
fn digest(view: &View) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    let mut eat = |bytes: &[u8]| {
        for b in bytes {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    };
    for (group, members) in view {
        eat(&(group.len() as u64).to_le_bytes());
        eat(group);
        eat(&(members.len() as u64).to_le_bytes());
        for (n, id) in members {
            eat(&n.to_le_bytes());
            eat(&id.to_le_bytes());
        }
    }
    h
}

/// A delivered join, leave or membership sync of `sender`, applied to `view`: a join adds its
/// handle to each group, a leave removes it, the first part of a sync replaces every entry of
/// the sender's by its own, a later part adds to them.
fn model_apply(view: &mut View, sender: NodeId, m: &RingMsg) {
    match m {
        RingMsg::App { .. } => {}
        RingMsg::GroupJoin { handle, groups } => {
            for g in groups {
                view.entry(g.clone()).or_default().insert((sender, *handle));
            }
        }
        RingMsg::GroupLeave { handle, groups } => {
            for g in groups {
                if let Some(set) = view.get_mut(g) {
                    set.remove(&(sender, *handle));
                }
            }
        }
        RingMsg::GroupSync { first, entries, .. } => {
            if *first {
                for set in view.values_mut() {
                    set.retain(|(n, _)| *n != sender);
                }
            }
            for (handle, groups) in entries {
                for g in groups {
                    view.entry(g.clone()).or_default().insert((sender, *handle));
                }
            }
        }
    }
    view.retain(|_, set| !set.is_empty());
}

impl GroupChecker {
    /// Process `p`'s copy of its engine's view (from its `Output::Group` changes), as
    /// [`evs_engine::GroupView::snapshot`] gives one.
    pub fn view_of(&self, p: ProcId) -> Option<BTreeMap<Bytes, Vec<(NodeId, HandleId)>>> {
        self.procs.get(&p).map(|s| {
            s.view
                .iter()
                .map(|(g, set)| (g.clone(), set.iter().copied().collect()))
                .collect()
        })
    }

    /// Whether process `p` is between a merge and the end of its membership syncs.
    pub fn in_barrier(&self, p: ProcId) -> bool {
        self.procs.get(&p).is_some_and(|s| s.barrier.is_some())
    }

    /// A process started: it holds no view and no handle.
    pub fn started(&mut self, p: ProcId) {
        self.procs.insert(p, Proc::default());
    }

    /// A process is gone (crashed or left).
    pub fn crashed(&mut self, p: ProcId) {
        self.procs.remove(&p);
    }

    pub fn opened(&mut self, p: ProcId, id: HandleId) {
        if let Some(s) = self.procs.get_mut(&p) {
            s.open.insert(id);
        }
    }

    pub fn closed(&mut self, p: ProcId, id: HandleId) {
        if let Some(s) = self.procs.get_mut(&p) {
            s.open.remove(&id);
        }
    }

    /// The engine's `poll_event` returned `None`: the message being routed has reached every
    /// handle it will.
    pub fn drained(&mut self, p: ProcId, now: Instant) -> Result<(), Violation> {
        let Some(s) = self.procs.get_mut(&p) else {
            return Ok(());
        };
        Self::close_routing(p, now, s)
    }

    fn close_routing(p: ProcId, now: Instant, s: &mut Proc) -> Result<(), Violation> {
        let Some(r) = s.routing.take() else {
            return Ok(());
        };
        // A handle closed meanwhile loses what it had not been given.
        let missing: Vec<HandleId> = r
            .expected
            .iter()
            .filter(|h| !r.got.contains(h) && s.open.contains(h))
            .copied()
            .collect();
        if missing.is_empty() {
            return Ok(());
        }
        Err(violation(
            Property::G2Routing,
            now,
            format!(
                "{p} delivered the message at {} seq {} index {} to handles {:?} but not to {missing:?}, which are in one of its groups",
                r.ring_id, r.seq, r.index, r.got
            ),
        ))
    }

    /// One output of process `p`'s engine, in the order `poll_event` returned them.
    pub fn output(&mut self, p: ProcId, now: Instant, o: &Output) -> Result<(), Violation> {
        let Some(s) = self.procs.get_mut(&p) else {
            return Ok(());
        };
        match o {
            Output::Core(totem::Event::Deliver(d)) => {
                Self::close_routing(p, now, s)?;
                let point = Point::Message(d.ring_id, d.seq, d.index, s.transitional.clone());
                s.point = Some(point.clone());
                if let Some(stray) = s
                    .view
                    .values()
                    .flatten()
                    .find(|(n, _)| !s.members.is_empty() && !s.members.contains(n))
                {
                    return Err(violation(
                        Property::G4DepartedHandles,
                        now,
                        format!(
                            "{p}'s view holds handle {} of n{}, outside its configuration {:?}",
                            stray.1, stray.0, s.members
                        ),
                    ));
                }
                if s.view != s.model {
                    return Err(violation(
                        Property::G1ViewAgreement,
                        now,
                        format!(
                            "{p}'s view is not the one its delivered stream defines: {:?}, against {:?}",
                            s.view, s.model
                        ),
                    ));
                }
                if s.barrier.is_none() {
                    let mine = digest(&s.view);
                    match self.views.get(&point) {
                        Some(&(theirs, q)) if theirs != mine && q != p => {
                            return Err(violation(
                                Property::G1ViewAgreement,
                                now,
                                format!(
                                    "{p} and {q} hold different views when they deliver the message at {} seq {} index {}; {p}'s: {:?}",
                                    d.ring_id, d.seq, d.index, s.view
                                ),
                            ));
                        }
                        Some(_) => {}
                        None => {
                            self.views.insert(point, (mine, p));
                        }
                    }
                }
                let decoded = groups::decode(&d.data);
                if let Ok(m) = &decoded {
                    model_apply(&mut s.model, d.sender, m);
                }
                match decoded {
                    Ok(RingMsg::App {
                        handle,
                        groups,
                        data,
                    }) => {
                        let me = p.node;
                        let expected: BTreeSet<HandleId> = groups
                            .iter()
                            .filter_map(|g| s.view.get(g))
                            .flatten()
                            .filter(|(n, id)| *n == me && s.open.contains(id))
                            .map(|&(_, id)| id)
                            .collect();
                        s.routing = Some(Routing {
                            ring_id: d.ring_id,
                            seq: d.seq,
                            index: d.index,
                            message: (d.sender, handle, groups, data, d.guarantee),
                            expected,
                            got: BTreeSet::new(),
                        });
                    }
                    Ok(RingMsg::GroupSync { last: true, .. }) => {
                        if let Some(waiting) = &mut s.barrier {
                            waiting.remove(&d.sender);
                            if waiting.is_empty() {
                                s.barrier = None;
                            }
                        }
                    }
                    _ => {}
                }
            }
            Output::Core(totem::Event::ConfigChange(c)) => {
                Self::close_routing(p, now, s)?;
                s.point = Some(Point::Config(c.kind, c.ring_id, c.members.clone()));
                s.transitional =
                    (c.kind == ConfigKind::Transitional).then(|| (c.ring_id, c.members.clone()));
                if c.kind == ConfigKind::Regular {
                    for set in s.model.values_mut() {
                        set.retain(|(n, _)| c.members.contains(n));
                    }
                    s.model.retain(|_, set| !set.is_empty());
                    s.members = c.members.clone();
                    if !c.joined.is_empty() || s.barrier.is_some() {
                        s.barrier = Some(c.members.iter().copied().collect());
                    }
                }
            }
            Output::Group(d) => {
                if d.members.is_empty() {
                    s.view.remove(&d.group);
                } else {
                    s.view
                        .insert(d.group.clone(), d.members.iter().copied().collect());
                }
            }
            Output::Handle(id, ev) => {
                if !s.open.contains(id) {
                    return Err(violation(
                        Property::G2Routing,
                        now,
                        format!("{p}'s closed handle {id} was given {ev:?}"),
                    ));
                }
                match ev {
                    Event::Message {
                        sender,
                        sender_handle,
                        groups,
                        data,
                        ring_id,
                        seq,
                        index,
                        guarantee,
                    } => {
                        let routed = s.routing.as_mut().filter(|r| {
                            (r.ring_id, r.seq, r.index) == (*ring_id, *seq, *index)
                                && r.expected.contains(id)
                        });
                        let Some(r) = routed else {
                            return Err(violation(
                                Property::G2Routing,
                                now,
                                format!(
                                    "{p} gave handle {id} the message at {ring_id} seq {seq} index {index}, which was not routed to it"
                                ),
                            ));
                        };
                        let given = (*sender, *sender_handle, groups, data, *guarantee);
                        let (s0, h0, g0, d0, q0) = &r.message;
                        if given != (*s0, *h0, g0, d0, *q0) {
                            return Err(violation(
                                Property::G2Routing,
                                now,
                                format!(
                                    "{p} gave handle {id} the message at {ring_id} seq {seq} index {index} as from n{sender} h{sender_handle} to {groups:?} ({} bytes, {guarantee:?}), but n{s0} h{h0} sent it to {g0:?} ({} bytes, {q0:?})",
                                    data.len(),
                                    d0.len()
                                ),
                            ));
                        }
                        if !r.got.insert(*id) {
                            return Err(violation(
                                Property::G2Routing,
                                now,
                                format!(
                                    "{p} gave handle {id} the message at {ring_id} seq {seq} index {index} twice"
                                ),
                            ));
                        }
                        self.routed += 1;
                    }
                    Event::GroupChange {
                        group,
                        members,
                        joined,
                        left,
                    } => {
                        self.reported += 1;
                        let me = (p.node, *id);
                        let consistent = (members.contains(&me) || left.contains(&me))
                            && joined.iter().all(|e| members.contains(e))
                            && left.iter().all(|e| !members.contains(e));
                        if !consistent {
                            return Err(violation(
                                Property::G3GroupChanges,
                                now,
                                format!(
                                    "{p} reported to handle {id} a change of {group:?} that does not concern it or contradicts itself: members {members:?}, joined {joined:?}, left {left:?}"
                                ),
                            ));
                        }
                        let now_members: Vec<(NodeId, HandleId)> = s
                            .model
                            .get(group)
                            .map(|set| set.iter().copied().collect())
                            .unwrap_or_default();
                        if *members != now_members {
                            return Err(violation(
                                Property::G3GroupChanges,
                                now,
                                format!(
                                    "{p} reported to handle {id} {group:?} with members {members:?}, but the delivered stream puts {now_members:?} in it"
                                ),
                            ));
                        }
                        let Some(point) = s.point.clone() else {
                            return Err(violation(
                                Property::G3GroupChanges,
                                now,
                                format!(
                                    "{p} reported a change of {group:?} before delivering anything"
                                ),
                            ));
                        };
                        match self.reports.get(&(point.clone(), group.clone())) {
                            Some((theirs, q)) if theirs != members => {
                                return Err(violation(
                                    Property::G3GroupChanges,
                                    now,
                                    format!(
                                        "at {point:?} {p} reported {group:?} with members {members:?}, {q} with {theirs:?}"
                                    ),
                                ));
                            }
                            Some(_) => {}
                            None => {
                                self.reports
                                    .insert((point, group.clone()), (members.clone(), p));
                            }
                        }
                    }
                    Event::ConfigChange { .. } => {}
                }
            }
            Output::Config(_) | Output::Submitted { .. } => {}
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    //! The clauses that compare processes, on crafted outputs (the injected engine bugs of
    //! `tests/group_checker.rs` break each property in a real run).
    use super::*;
    use totem::{ConfigChange, Delivery, Guarantee};

    const RING: RingId = RingId::new(1, 8);

    fn pid(node: NodeId) -> ProcId {
        ProcId {
            node,
            incarnation: 0,
        }
    }

    fn regular(members: &[NodeId]) -> Output {
        Output::Core(totem::Event::ConfigChange(ConfigChange {
            kind: ConfigKind::Regular,
            ring_id: RING,
            members: members.to_vec(),
            left: Vec::new(),
            joined: Vec::new(),
        }))
    }

    fn deliver(sender: NodeId, seq: u64, data: Bytes) -> Output {
        Output::Core(totem::Event::Deliver(Delivery {
            sender,
            msg_no: seq,
            ring_id: RING,
            seq,
            index: 0,
            guarantee: Guarantee::Agreed,
            data,
        }))
    }

    fn join(node: NodeId, handle: HandleId, group: &'static [u8]) -> Vec<Output> {
        let g = Bytes::from_static(group);
        vec![
            deliver(
                node,
                1,
                groups::encode_membership(true, handle, std::slice::from_ref(&g)),
            ),
            Output::Group(groups::GroupDelta {
                group: g,
                members: vec![(node, handle)],
                joined: vec![(node, handle)],
                left: Vec::new(),
            }),
        ]
    }

    /// Two processes of one ring (no merge, so no barrier), both of which have seen `outs`.
    fn two(outs: &[Output]) -> GroupChecker {
        let mut c = GroupChecker::default();
        for n in [1, 2] {
            c.started(pid(n));
            c.output(pid(n), Instant::ZERO, &regular(&[1, 2])).unwrap();
            for o in outs {
                c.output(pid(n), Instant::ZERO, o).unwrap();
            }
        }
        c
    }

    #[test]
    fn views_that_differ_at_the_same_message_are_reported() {
        let mut c = two(&[]);
        // Process 1 delivers a join of node 1's handle 7; process 2 delivers, in the same
        // position, a join of handle 8: each view is the one its own stream defines.
        for o in join(1, 7, b"g") {
            c.output(pid(1), Instant::ZERO, &o).unwrap();
        }
        for o in join(1, 8, b"g") {
            c.output(pid(2), Instant::ZERO, &o).unwrap();
        }
        let next = deliver(
            1,
            2,
            groups::encode_app(7, &[Bytes::from_static(b"h")], b"x"),
        );
        c.output(pid(1), Instant::ZERO, &next).unwrap();
        let v = c.output(pid(2), Instant::ZERO, &next).unwrap_err();
        assert_eq!(v.property, Property::G1ViewAgreement, "{v}");
    }

    #[test]
    fn a_change_reported_with_other_members_elsewhere_is_reported() {
        // At the same point, process 1 delivers a join of its handle 7 and process 2 (a
        // crafted divergence) one of its handle 5; each reports what its own stream says.
        let mut c = two(&[]);
        c.opened(pid(1), 7);
        c.opened(pid(2), 5);
        let report = |n: NodeId, h: HandleId| {
            Output::Handle(
                h,
                Event::GroupChange {
                    group: Bytes::from_static(b"g"),
                    members: vec![(n, h)],
                    joined: vec![(n, h)],
                    left: Vec::new(),
                },
            )
        };
        for o in join(1, 7, b"g") {
            c.output(pid(1), Instant::ZERO, &o).unwrap();
        }
        c.output(pid(1), Instant::ZERO, &report(1, 7)).unwrap();
        for o in join(2, 5, b"g") {
            c.output(pid(2), Instant::ZERO, &o).unwrap();
        }
        let v = c.output(pid(2), Instant::ZERO, &report(2, 5)).unwrap_err();
        assert_eq!(v.property, Property::G3GroupChanges, "{v}");
        assert!(v.detail.contains("n1#0"), "{v}");
    }

    #[test]
    fn a_change_reported_with_members_the_stream_does_not_give_is_reported() {
        let mut c = two(&join(1, 7, b"g"));
        c.opened(pid(1), 3);
        let v = c
            .output(
                pid(1),
                Instant::ZERO,
                &Output::Handle(
                    3,
                    Event::GroupChange {
                        group: Bytes::from_static(b"g"),
                        members: vec![(1, 3), (1, 7)],
                        joined: vec![(1, 3)],
                        left: Vec::new(),
                    },
                ),
            )
            .unwrap_err();
        assert_eq!(v.property, Property::G3GroupChanges, "{v}");
    }

    #[test]
    fn a_message_routed_to_a_handle_outside_its_groups_is_reported() {
        let mut c = two(&join(1, 7, b"g"));
        c.opened(pid(1), 7);
        c.opened(pid(1), 9);
        let data = groups::encode_app(7, &[Bytes::from_static(b"g")], b"x");
        c.output(pid(1), Instant::ZERO, &deliver(1, 2, data.clone()))
            .unwrap();
        let message = |h| {
            Output::Handle(
                h,
                Event::Message {
                    sender: 1,
                    sender_handle: 7,
                    groups: vec![Bytes::from_static(b"g")],
                    data: Bytes::from_static(b"x"),
                    ring_id: RING,
                    seq: 2,
                    index: 0,
                    guarantee: Guarantee::Agreed,
                },
            )
        };
        c.output(pid(1), Instant::ZERO, &message(7)).unwrap();
        let v = c.output(pid(1), Instant::ZERO, &message(9)).unwrap_err();
        assert_eq!(v.property, Property::G2Routing, "{v}");
        // And one that misses a handle in its group is reported when the routing closes.
        let mut c = two(&join(1, 7, b"g"));
        c.opened(pid(1), 7);
        c.output(pid(1), Instant::ZERO, &deliver(1, 2, data))
            .unwrap();
        let v = c.drained(pid(1), Instant::ZERO).unwrap_err();
        assert_eq!(v.property, Property::G2Routing, "{v}");
    }
}
