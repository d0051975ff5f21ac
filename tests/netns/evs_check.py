"""EVS checker over the traces of real node processes (``tests/netns/worker.py``).

The same checklist as the simulator's oracle (``rust/totem-sim/src/oracle.rs``, from
``shared/docs/totem-reference.md`` §4.6), decided after the run over whole traces instead of
online. A *process* is one incarnation of a node (``(node, inc)``); membership lists name node
ids. A trace without an ``end`` line is a crashed process: it failed at its last line. A
process that ended cleanly (``end``) failed there too, but only after the harness let every
live process deliver everything (see ``Cluster.stop``), so it still owes what EVS promises
before that point.

Configurations: a regular one is keyed by its ring id ``(rep, seq)``; a transitional one by
``(previous regular ring, next ring)`` (the event carries only the next ring id, and the two
sides of a merge install different transitional configurations with the same one).

Messages: ``[node, inc, k]`` (the worker's payload). Agreed order: by ring (the ring's seq, then
rep), then the ``seq`` of the multicast that completed the message, then the position within
that multicast (several messages packed into one multicast share a seq; their order is the
order every process delivered them in).

Handle filtering: a handle receives the messages of its group only from the point where its own
join is delivered. A worker joins once, at start, so each process has one "join point" in its
first ring with others; messages of that ring ordered before the join are not owed to it. The
checker cannot see the join's seq, so it owes a process, on the ring where it joined, only the
messages from the first one it delivered after its join (``cutoff``); everywhere else, all.

Properties (``Property``): C1-C6, D1-D9 as in §4.6, checked in these forms:

* C1 self inclusion; C2 one member set per regular ring id, its representative a member;
  C3 regular ring seqs increase per process and above earlier incarnations of the node, and a
  transitional configuration announces a higher ring; C4 R, T, R alternation from a regular
  first configuration, T ⊆ both regulars, ``left``/``joined`` consistent; C5 a member kept in a
  transitional configuration installed the ring before it, and (strict) every member of every
  regular ring installed before the run's stop installs it, unless it crashed or every installer
  that did not crash went on to a transitional configuration without it; C6 one member set per
  transitional key.
* D1 each message delivered at most once per process, only sent messages, payload intact,
  with the guarantee it was sent with; D2 delivered in the regular configuration of the ring it
  was ordered on or the transitional one right after, one ring per message, by members of that
  ring, sent by a member; D3 a process delivers its own messages in the order it sent them and,
  unless it crashed, all of them; D4 processes that went through the same transitional
  configuration delivered the same messages in the regular one before it and (if both reached
  the next regular) in the transitional one; D5 one agreed order (one seq per message, packed
  messages in one order, every process's deliveries increase in it), no skip in a regular
  configuration, in a transitional one only of senders outside it; D6 per sender incarnation,
  increasing numbers and no skip of a message ordered on the same ring as a later one;
  D7 nothing delivered before a transitional configuration at one process and after it at
  another; D8 a safe message delivered in regular r is delivered by every member of the
  deliverer's next transitional configuration that went on from it (or, without one, by every
  member of r still there at the end, unless it crashed), and one delivered in a transitional
  configuration by every process that went through it to the next regular; D9 at the end every
  live process is in one regular configuration whose members are exactly the live nodes, and
  each delivered every message ordered in it.

Figures (``Report.stats``): messages sent, deliveries, messages delivered by someone, and
*lost*: for a message sent by a staying process s (one that did not crash and is not an
outsider) and ordered on ring r, every other staying process q that installed r and "stayed
with s" (q's next transitional configuration after r keeps s, or r was q's last ring) must
deliver it (from q's cutoff on); each message some such q misses counts once, and a message s
sent that nobody delivered counts once too.
"""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

INF = float("inf")

PROPERTIES = [
    "C1", "C2", "C3", "C4", "C5", "C6", "D1", "D2", "D3", "D4", "D5", "D6", "D7", "D8", "D9",
]  # fmt: skip

Ring = tuple[int, int]
MsgId = tuple[int, int, int]
ProcId = tuple[int, int]


def ring_order(r: Ring) -> tuple[int, int]:
    """Rings order by seq, then representative."""
    return (r[1], r[0])


@dataclass
class Violation:
    prop: str
    detail: str

    def __str__(self) -> str:
        return f"{self.prop}: {self.detail}"


@dataclass
class Config:
    kind: str  # "regular" | "transitional"
    ring: Ring  # regular: its ring; transitional: the next ring
    members: list[int]
    left: list[int]
    joined: list[int]
    t: float
    idx: int  # index in the process's event list
    prev: Ring | None = None  # transitional: the regular ring before it

    @property
    def key(self) -> tuple[Any, ...]:
        if self.kind == "regular":
            return ("R", self.ring)
        return ("T", self.prev, self.ring)


@dataclass
class Delivery:
    proc: ProcId
    id: MsgId | None
    sender: int
    ring: Ring
    seq: int
    g: str
    ok: bool
    t: float
    idx: int
    place: str = "?"  # "R": in the regular configuration of its ring; "T": transitional after
    trans_key: tuple[Any, ...] | None = None


@dataclass
class Proc:
    node: int
    inc: int
    events: list[dict[str, Any]]
    crashed: bool
    outsider: bool = False
    handle: int = 0
    start_t: float = 0.0
    last_t: float = 0.0
    end_t: float | None = None
    configs: list[Config] = field(default_factory=list)
    deliveries: list[Delivery] = field(default_factory=list)
    sent: dict[int, dict[str, Any]] = field(default_factory=dict)  # k -> send event
    join_idx: int | None = None
    # per regular ring: messages delivered in it, and in the transitional configuration after
    in_regular: dict[Ring, list[MsgId]] = field(default_factory=dict)
    in_trans: dict[Ring, list[MsgId]] = field(default_factory=dict)
    trans_after: dict[Ring, Config] = field(default_factory=dict)
    regular_after: dict[Ring, Ring] = field(default_factory=dict)  # r -> next regular ring
    cutoff: dict[Ring, float] = field(default_factory=dict)

    @property
    def pid(self) -> ProcId:
        return (self.node, self.inc)

    @property
    def name(self) -> str:
        return f"n{self.node}#{self.inc}"

    def regular_rings(self) -> list[Ring]:
        return [c.ring for c in self.configs if c.kind == "regular"]

    def cut(self, r: Ring) -> float:
        return self.cutoff.get(r, INF)


@dataclass
class Report:
    violations: list[Violation]
    stats: dict[str, Any]
    fault_times: list[dict[str, Any]]

    @property
    def ok(self) -> bool:
        return not self.violations and self.stats.get("lost", 0) == 0

    def by_property(self) -> dict[str, int]:
        out: dict[str, int] = defaultdict(int)
        for v in self.violations:
            out[v.prop] += 1
        return dict(out)

    def summary(self) -> str:
        s = self.stats
        lines = [
            f"processes {s['processes']} (crashed {s['crashed']}, outsiders {s['outsiders']}); "
            f"messages sent {s['sent']}, deliveries {s['deliveries']}, "
            f"messages delivered {s['delivered_messages']}, lost {s['lost']}; "
            f"latency p50/p99/max {s['latency_p50_s']}/{s['latency_p99_s']}/"
            f"{s['latency_max_s']} s; "
            f"violations {len(self.violations)} {self.by_property()}",
        ]
        for f in self.fault_times:
            lines.append(
                f"  fault {f['kind']} at +{f['at']:.1f} s -> first new regular "
                f"{_fmt(f['first_regular_s'])}, all {_fmt(f['all_regular_s'])} "
                f"(token+consensus {f['bound_s']:.1f} s)"
            )
        for v in self.violations[:20]:
            lines.append(f"  {v}")
        if len(self.violations) > 20:
            lines.append(f"  ... {len(self.violations) - 20} more")
        for d in s.get("lost_examples", [])[:10]:
            lines.append(f"  lost: {d}")
        return "\n".join(lines)

    def to_json(self) -> dict[str, Any]:
        return {
            "violations": [str(v) for v in self.violations],
            "by_property": self.by_property(),
            "stats": self.stats,
            "fault_times": self.fault_times,
        }


def _fmt(x: float | None) -> str:
    return "none" if x is None else f"{x:.3f} s"


def load(path: str | Path) -> list[dict[str, Any]]:
    """A trace file's complete lines (a crash may cut the last one)."""
    out = []
    for line in Path(path).read_text().splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out


def check_files(
    paths: Iterable[str | Path],
    *,
    outsiders: Iterable[int] = (),
    faults: Sequence[dict[str, Any]] = (),
    token_ms: int = 1000,
    consensus_ms: int = 1200,
) -> Report:
    return check(
        [load(p) for p in paths],
        outsiders=outsiders,
        faults=faults,
        token_ms=token_ms,
        consensus_ms=consensus_ms,
    )


class _Checker:
    def __init__(self, traces: Sequence[list[dict[str, Any]]], outsiders: Iterable[int]) -> None:
        self.v: list[Violation] = []
        self.outsiders = set(outsiders)
        self.procs: list[Proc] = []
        for events in traces:
            start = next((e for e in events if e.get("ev") == "start"), None)
            if start is None:
                continue
            p = Proc(
                node=start["node"],
                inc=start["inc"],
                events=events,
                crashed=not any(e.get("ev") == "end" for e in events),
                outsider=start["node"] in self.outsiders,
                handle=start.get("handle", 0),
                start_t=start["t"],
                last_t=events[-1]["t"],
            )
            p.end_t = next((e["t"] for e in events if e.get("ev") == "end"), None)
            self.procs.append(p)
        self.by_pid = {p.pid: p for p in self.procs}
        self.node_procs: dict[int, list[Proc]] = defaultdict(list)
        for p in sorted(self.procs, key=lambda p: p.inc):
            self.node_procs[p.node].append(p)
        ends = [p.end_t for p in self.procs if p.end_t is not None]
        self.stop_t = min(ends) if ends else INF
        # rings, transitional configurations, messages
        self.ring_members: dict[Ring, tuple[list[int], Proc]] = {}
        self.ring_installers: dict[Ring, list[Proc]] = defaultdict(list)
        self.ring_first_t: dict[Ring, float] = {}
        self.trans: dict[tuple[Any, ...], tuple[list[int], Proc]] = {}
        self.trans_installers: dict[tuple[Any, ...], list[Proc]] = defaultdict(list)
        self.sent: dict[MsgId, tuple[Proc, dict[str, Any]]] = {}
        self.deliveries: dict[MsgId, list[Delivery]] = defaultdict(list)
        self.ordered: dict[MsgId, tuple[Ring, int]] = {}
        # ring -> seq -> packet order (ids)
        self.packets: dict[Ring, dict[int, list[MsgId]]] = defaultdict(dict)

    def bad(self, prop: str, detail: str) -> None:
        self.v.append(Violation(prop, detail))

    # ------------------------------------------------------------ per process
    def walk(self, p: Proc) -> None:
        cur: Config | None = None
        last_regular: Config | None = None
        max_seq_floor = max(
            (
                c.ring[1]
                for q in self.node_procs[p.node]
                if q.inc < p.inc
                for c in q.configs
                if c.kind == "regular"
            ),
            default=None,
        )
        for i, e in enumerate(p.events):
            ev = e.get("ev")
            if ev == "group" and p.join_idx is None:
                if [p.node, p.handle] in e.get("joined", []):
                    p.join_idx = i
            elif ev == "send":
                p.sent[e["id"][2]] = e
            elif ev == "config":
                c = Config(
                    e["kind"],
                    tuple(e["ring"]),
                    list(e["members"]),
                    list(e["left"]),
                    list(e["joined"]),
                    e["t"],
                    i,
                )  # type: ignore[arg-type]
                self.on_config(p, c, cur, last_regular, max_seq_floor)
                if c.kind == "transitional":
                    c.prev = last_regular.ring if last_regular else None
                    if last_regular is not None:
                        p.trans_after[last_regular.ring] = c
                else:
                    if last_regular is not None:
                        p.regular_after[last_regular.ring] = c.ring
                    last_regular = c
                    p.in_regular.setdefault(c.ring, [])
                    max_seq_floor = c.ring[1]
                p.configs.append(c)
                cur = c
            elif ev == "deliver":
                mid = tuple(e["id"]) if e.get("id") else None
                d = Delivery(
                    p.pid,
                    mid,
                    e["sender"],
                    tuple(e["ring"]),
                    e["seq"],  # type: ignore[arg-type]
                    e.get("g", "agreed"),
                    bool(e.get("ok")),
                    e["t"],
                    i,
                )
                self.on_deliver(p, d, cur, last_regular)
                p.deliveries.append(d)
        # cutoffs: complete on rings installed after the join; on the join's ring, from the
        # first message delivered after the join
        for c in p.configs:
            if c.kind != "regular":
                continue
            if p.join_idx is not None and p.join_idx < c.idx:
                p.cutoff[c.ring] = -INF
            else:
                seqs = [
                    d.seq
                    for d in p.deliveries
                    if d.ring == c.ring and p.join_idx is not None and d.idx > p.join_idx
                ]
                p.cutoff[c.ring] = min(seqs) if seqs else INF

    def on_config(
        self, p: Proc, c: Config, cur: Config | None, last_reg: Config | None, floor: int | None
    ) -> None:
        kind = c.kind
        if c.members != sorted(set(c.members)):
            self.bad(
                "C2",
                f"{p.name} installed {kind} {c.ring} with members {c.members}, "
                "not a strictly ascending set",
            )
        if p.node not in c.members:
            self.bad(
                "C1",
                f"{p.name} installed {kind} {c.ring} with members {c.members}, which lack itself",
            )
        if kind == "transitional":
            if cur is None or cur.kind != "regular" or last_reg is None:
                what = "as its first configuration" if cur is None else "after a transitional"
                self.bad("C4", f"{p.name} installed transitional ->{c.ring} {what}")
                return
            frm = last_reg
            if ring_order(c.ring) <= ring_order(frm.ring):
                self.bad(
                    "C3",
                    f"{p.name} installed transitional {frm.ring}->{c.ring}: the "
                    "next ring does not exceed the previous one",
                )
            extra = [q for q in c.members if q not in frm.members]
            if extra:
                self.bad(
                    "C4",
                    f"{p.name} installed transitional {frm.ring}->{c.ring} "
                    f"{c.members} with {extra}, not members of {frm.members}",
                )
            left = [q for q in frm.members if q not in c.members]
            if sorted(c.left) != left or c.joined:
                self.bad(
                    "C4",
                    f"{p.name} installed transitional {frm.ring}->{c.ring} "
                    f"{c.members} with left {c.left} joined {c.joined}; expected left "
                    f"{left} joined []",
                )
            key = ("T", frm.ring, c.ring)
            if key in self.trans and self.trans[key][0] != c.members:
                other = self.trans[key][1]
                self.bad(
                    "C6",
                    f"{p.name} and {other.name} both went from {frm.ring} to "
                    f"{c.ring} through different transitional configurations: "
                    f"{c.members} and {self.trans[key][0]}",
                )
            self.trans.setdefault(key, (c.members, p))
            self.trans_installers[key].append(p)
        else:
            if cur is not None and cur.kind == "regular":
                self.bad(
                    "C4",
                    f"{p.name} installed regular {c.ring} right after regular "
                    f"{cur.ring}, without a transitional configuration",
                )
            elif cur is not None:
                if c.ring != cur.ring:
                    self.bad(
                        "C4",
                        f"{p.name} installed regular {c.ring} after transitional "
                        f"->{cur.ring}, which announced ring {cur.ring}",
                    )
                missing = [q for q in cur.members if q not in c.members]
                if missing:
                    self.bad(
                        "C4",
                        f"{p.name} installed regular {c.ring} {c.members} without "
                        f"{missing}, members of the transitional configuration before it",
                    )
                joined = [q for q in c.members if q not in cur.members]
                if sorted(c.joined) != joined:
                    self.bad(
                        "C4",
                        f"{p.name} installed regular {c.ring} {c.members} with "
                        f"joined {c.joined}; after transitional {cur.members} expected "
                        f"{joined}",
                    )
            if c.left:
                self.bad(
                    "C4",
                    f"{p.name} installed regular {c.ring} with left {c.left}: only "
                    "transitional configurations report departures",
                )
            if floor is not None and c.ring[1] <= floor:
                self.bad(
                    "C3",
                    f"{p.name} installed regular {c.ring}, whose seq does not "
                    f"exceed {floor} (its previous regular ring or an earlier incarnation's)",
                )
            if c.ring[0] not in c.members:
                self.bad(
                    "C2",
                    f"{p.name} installed regular {c.ring} {c.members}: its "
                    "representative is not a member",
                )
            if c.ring in self.ring_members and self.ring_members[c.ring][0] != c.members:
                first = self.ring_members[c.ring][1]
                self.bad(
                    "C2",
                    f"{p.name} installed regular {c.ring} with members {c.members} "
                    f"but {first.name} installed it with {self.ring_members[c.ring][0]}",
                )
            self.ring_members.setdefault(c.ring, (c.members, p))
            self.ring_installers[c.ring].append(p)
            self.ring_first_t[c.ring] = min(self.ring_first_t.get(c.ring, INF), c.t)

    def on_deliver(self, p: Proc, d: Delivery, cur: Config | None, last_reg: Config | None) -> None:
        if d.id is None or not d.ok:
            self.bad(
                "D1",
                f"{p.name} delivered a payload that is not an intact message of the "
                f"run (id {d.id}, sender n{d.sender}, ring {d.ring} seq {d.seq})",
            )
        if cur is None or last_reg is None:
            self.bad("D2", f"{p.name} delivered {d.id} before any configuration")
            return
        if cur.kind == "regular" and d.ring == cur.ring:
            d.place = "R"
        elif cur.kind == "transitional" and d.ring == last_reg.ring:
            d.place = "T"
            d.trans_key = ("T", last_reg.ring, cur.ring)
        else:
            where = f"{cur.kind} {cur.ring}"
            self.bad(
                "D2",
                f"{p.name} delivered {d.id} (ordered on {d.ring}) in {where}: not the "
                "regular configuration of its ring nor the transitional one after it",
            )
            return
        if d.id is None:
            return
        (p.in_regular if d.place == "R" else p.in_trans).setdefault(d.ring, []).append(d.id)
        self.deliveries[d.id].append(d)

    # ------------------------------------------------------------ global
    def run(self) -> None:
        for p in sorted(self.procs, key=lambda p: p.inc):
            self.walk(p)
        for p in self.procs:
            for k, e in p.sent.items():
                self.sent[(p.node, p.inc, k)] = (p, e)
        self.d1_d2_d5_order()
        self.c5()
        self.d3()
        self.d4()
        self.d5_gaps()
        self.d6()
        self.d7()
        self.d8()

    def d1_d2_d5_order(self) -> None:
        for p in self.procs:
            seen: set[MsgId] = set()
            last: tuple[Any, ...] | None = None
            for d in p.deliveries:
                if d.id is None or d.place == "?":
                    continue
                if d.id in seen:
                    self.bad("D1", f"{p.name} delivered {d.id} twice")
                    continue
                seen.add(d.id)
                key = (ring_order(d.ring), d.seq)
                if last is not None and key < last:
                    self.bad(
                        "D5",
                        f"{p.name} delivered {d.id} (ring {d.ring} seq {d.seq}) after "
                        f"a message at ring/seq {last}",
                    )
                last = key
        for mid, ds in self.deliveries.items():
            snd = self.sent.get(mid)
            sender_proc = self.by_pid.get((mid[0], mid[1]))
            if snd is None:
                # a crashed sender may die between mcast returning and the "send" line
                unrecorded_ok = (
                    sender_proc is not None
                    and sender_proc.crashed
                    and mid[2] == max(sender_proc.sent, default=0) + 1
                )
                if not unrecorded_ok:
                    self.bad(
                        "D1", f"{mid} was delivered by {self._pname(ds[0].proc)} but never sent"
                    )
            else:
                g = snd[1].get("g", "agreed")
                for d in ds:
                    if d.g != g:
                        self.bad(
                            "D1", f"{mid} was sent {g} but {self._pname(d.proc)} delivered it {d.g}"
                        )
            rings = {d.ring for d in ds}
            if len(rings) > 1:
                self.bad("D2", f"{mid} was delivered on several rings: {sorted(rings)}")
                continue
            r = ds[0].ring
            seqs = {d.seq for d in ds}
            if len(seqs) > 1:
                self.bad("D5", f"{mid} was delivered at several seqs of ring {r}: {sorted(seqs)}")
            self.ordered[mid] = (r, ds[0].seq)
            members = self.ring_members.get(r, ([], None))[0]
            if mid[0] not in members:
                self.bad(
                    "D2", f"{mid} was ordered on ring {r} {members}, whose members lack its sender"
                )
        # packets: every process's list for one (ring, seq) is a subsequence of the longest
        lists: dict[tuple[Ring, int], list[tuple[Proc, list[MsgId]]]] = defaultdict(list)
        for p in self.procs:
            per: dict[tuple[Ring, int], list[MsgId]] = defaultdict(list)
            for d in p.deliveries:
                if d.id is not None and d.place != "?":
                    per[(d.ring, d.seq)].append(d.id)
            for k, ids in per.items():
                lists[k].append((p, ids))
        for (r, s), entries in lists.items():
            canon_p, canon = max(entries, key=lambda x: len(x[1]))
            pos = {m: i for i, m in enumerate(canon)}
            for p, ids in entries:
                idx = [pos.get(m, -1) for m in ids]
                if -1 in idx or idx != sorted(idx):
                    self.bad(
                        "D5",
                        f"{p.name} delivered the messages of ring {r} seq {s} as {ids}"
                        f" but {canon_p.name} as {canon}",
                    )
            self.packets[r][s] = canon

    def _seq(self, m: MsgId) -> float:
        """The seq m was ordered at (inf when it has no single one: reported already)."""
        o = self.ordered.get(m)
        return INF if o is None else o[1]

    def _pname(self, pid: ProcId) -> str:
        return f"n{pid[0]}#{pid[1]}"

    def incarnation_at(self, node: int, t: float) -> Proc | None:
        cands = [q for q in self.node_procs.get(node, []) if q.start_t <= t]
        return cands[-1] if cands else None

    def c5(self) -> None:
        # kept in a transitional configuration -> installed the ring before it
        for (_, frm, to), installers in self.trans_installers.items():
            members = self.trans[("T", frm, to)][0]
            for q in members:
                if not any(i.node == q for i in self.ring_installers.get(frm, [])):
                    self.bad(
                        "C5",
                        f"{installers[0].name} installed transitional {frm}->{to} "
                        f"{members} keeping n{q}, which never installed {frm}",
                    )
        # strict: rings formed before the stop began
        for r, (members, _first) in self.ring_members.items():
            if self.ring_first_t[r] >= self.stop_t:
                continue
            installers = self.ring_installers[r]
            for q in members:
                if any(i.node == q for i in installers):
                    continue
                qi = self.incarnation_at(q, self.ring_first_t[r])
                if qi is None or qi.crashed:
                    continue
                keepers = []
                for p in installers:
                    if p.crashed:
                        continue
                    t = p.trans_after.get(r)
                    if t is None or q in t.members:
                        keepers.append(p.name)
                if keepers:
                    self.bad(
                        "C5",
                        f"n{q} is a member of regular {r} {members} and never "
                        f"installed it, yet {keepers} did not exclude it afterwards",
                    )

    def d3(self) -> None:
        for p in self.procs:
            own = [
                d.id[2]
                for d in p.deliveries
                if d.id is not None and d.id[0] == p.node and d.id[1] == p.inc
            ]
            sent = sorted(p.sent)
            # delivered in send order, with no own message skipped
            pos = {k: i for i, k in enumerate(sent)}
            done: set[int] = set()
            need = 0  # index in `sent` of the first own message not delivered yet
            for k in own:
                i = pos.get(k)
                if i is None:
                    continue
                if i > need:
                    skipped = [x for x in sent[need:i] if x not in done]
                    self.bad(
                        "D3",
                        f"{p.name} delivered its own message {k} before its "
                        f"earlier ones {skipped[:5]}",
                    )
                    break
                done.add(k)
                while need < len(sent) and sent[need] in done:
                    need += 1
            if not p.crashed:
                missing = sorted(set(sent) - set(own))
                if missing:
                    self.bad(
                        "D3",
                        f"{p.name} sent {len(missing)} messages it never delivered "
                        f"(first {missing[:5]}) and did not crash",
                    )

    def d4(self) -> None:
        for key, procs in self.trans_installers.items():
            _, frm, to = key
            if len(procs) < 2:
                continue
            base = procs[0]
            for p in procs[1:]:
                cut = max(base.cut(frm), p.cut(frm))
                if cut == INF:
                    continue
                a = {m for m in base.in_regular.get(frm, []) if self._seq(m) >= cut}
                b = {m for m in p.in_regular.get(frm, []) if self._seq(m) >= cut}
                if a != b:
                    diff = sorted(a ^ b)[:3]
                    self.bad(
                        "D4",
                        f"{base.name} and {p.name} both went from regular {frm} to "
                        f"transitional ->{to} but delivered different messages in {frm}: "
                        f"{diff} in one only",
                    )
                if base.regular_after.get(frm) == to and p.regular_after.get(frm) == to:
                    a = {m for m in base.in_trans.get(frm, []) if self._seq(m) >= cut}
                    b = {m for m in p.in_trans.get(frm, []) if self._seq(m) >= cut}
                    if a != b:
                        diff = sorted(a ^ b)[:3]
                        self.bad(
                            "D4",
                            f"{base.name} and {p.name} both went through transitional"
                            f" {frm}->{to} to regular {to} but delivered different messages"
                            f" in it: {diff} in one only",
                        )

    def _agreed(self, r: Ring) -> list[tuple[int, int, MsgId]]:
        """(seq, position, id) of every message ordered on r, in agreed order."""
        out = []
        for s in sorted(self.packets.get(r, {})):
            for i, m in enumerate(self.packets[r][s]):
                out.append((s, i, m))
        return out

    def d5_gaps(self) -> None:
        for p in self.procs:
            for r in p.regular_rings():
                order = self._agreed(r)
                if not order:
                    continue
                rank = {m: n for n, (_, _, m) in enumerate(order)}
                got = set(p.in_regular.get(r, [])) | set(p.in_trans.get(r, []))
                cut = p.cut(r)
                reg = p.in_regular.get(r, [])
                if reg:
                    hi = max(rank.get(m, -1) for m in reg)
                    for s, _, m in order[:hi]:
                        if s >= cut and m not in got:
                            self.bad(
                                "D5",
                                f"{p.name} skipped {m} (ring {r} seq {s}) but "
                                f"delivered later messages of {r} in its regular "
                                "configuration",
                            )
                            break
                tr = p.in_trans.get(r, [])
                t = p.trans_after.get(r)
                if tr and t is not None:
                    hi = max(rank.get(m, -1) for m in tr)
                    for s, _, m in order[:hi]:
                        if s >= cut and m not in got and m[0] in t.members:
                            self.bad(
                                "D5",
                                f"{p.name} skipped {m} (ring {r} seq {s}) from n{m[0]}"
                                f", a member of its transitional configuration {t.members}"
                                f", and delivered later messages of {r} in it",
                            )
                            break

    def d6(self) -> None:
        by_sender_ring: dict[tuple[int, int, Ring], list[tuple[int, int]]] = defaultdict(list)
        for m, (r, s) in self.ordered.items():
            by_sender_ring[(m[0], m[1], r)].append((m[2], s))
        for p in self.procs:
            last: dict[tuple[int, int], int] = {}
            per: dict[tuple[int, int, Ring], set[int]] = defaultdict(set)
            for d in p.deliveries:
                if d.id is None or d.place == "?":
                    continue
                src = (d.id[0], d.id[1])
                if src in last and d.id[2] <= last[src]:
                    self.bad(
                        "D6",
                        f"{p.name} delivered {d.id} after message {last[src]} of the same sender",
                    )
                last[src] = max(last.get(src, 0), d.id[2])
                per[(d.id[0], d.id[1], d.ring)].add(d.id[2])
            for (n, inc, r), ks in per.items():
                hi = max(ks)
                cut = p.cut(r)
                for k, s in by_sender_ring[(n, inc, r)]:
                    if k < hi and k not in ks and s >= cut:
                        self.bad(
                            "D6",
                            f"{p.name} delivered ({n}, {inc}, {hi}) but not the "
                            f"earlier ({n}, {inc}, {k}) ordered on the same ring {r}",
                        )
                        break

    def d7(self) -> None:
        for m, ds in self.deliveries.items():
            before = {}  # transitional key -> a process that delivered m in R before it
            after = {}
            for d in ds:
                p = self.by_pid[d.proc]
                if d.place == "R":
                    t = p.trans_after.get(d.ring)
                    if t is not None:
                        before[("T", d.ring, t.ring)] = p.name
                elif d.place == "T" and d.trans_key is not None:
                    after[d.trans_key] = p.name
            for k in before.keys() & after.keys():
                self.bad(
                    "D7",
                    f"{m} was delivered by {before[k]} before transitional "
                    f"{k[1]}->{k[2]} and by {after[k]} after it",
                )

    def d8(self) -> None:
        for m, ds in self.deliveries.items():
            if ds[0].g != "safe":
                continue
            r = ds[0].ring
            got = {d.proc for d in ds}
            got_nodes = {d.proc[0] for d in ds}
            for d in ds:
                p = self.by_pid[d.proc]
                if d.place == "R":
                    t = p.trans_after.get(r)
                    owed = t.members if t is not None else self.ring_members[r][0]
                    for q in owed:
                        if q in got_nodes:
                            continue
                        for qp in self.ring_installers.get(r, []):
                            if qp.node != q or qp.pid in got:
                                continue
                            if qp.crashed and qp.regular_after.get(r) is None:
                                continue  # failed while still in r
                            if qp.cut(r) > self._seq(m):
                                continue
                            self.bad(
                                "D8",
                                f"{m} was delivered safe by {p.name} in regular {r} "
                                f"and never by {qp.name}, which "
                                + (
                                    "stayed with it" if t is not None else "was a member to the end"
                                ),
                            )
                elif d.place == "T" and d.trans_key is not None:
                    for qp in self.trans_installers.get(d.trans_key, []):
                        if qp.pid in got or qp.regular_after.get(r) != d.trans_key[2]:
                            continue
                        if qp.cut(r) > self._seq(m):
                            continue
                        self.bad(
                            "D8",
                            f"{m} was delivered safe by {p.name} in transitional "
                            f"{r}->{d.trans_key[2]} and never by {qp.name}, which went "
                            "through it",
                        )

    # ------------------------------------------------------------ end of run
    def d9_and_lost(self) -> dict[str, Any]:
        staying = [p for p in self.procs if not p.crashed and not p.outsider]
        live_nodes = sorted({p.node for p in staying})
        final = {}
        for p in staying:
            regs = [c for c in p.configs if c.kind == "regular" and c.t <= (p.end_t or INF)]
            final[p.name] = (regs[-1].ring, tuple(regs[-1].members)) if regs else None
            last_cfg = p.configs[-1] if p.configs else None
            if last_cfg is not None and last_cfg.kind != "regular":
                self.bad("D9", f"{p.name} ended in transitional ->{last_cfg.ring}, not settled")
        rings = {v for v in final.values()}
        if staying:
            if None in rings or len(rings) != 1:
                self.bad("D9", f"live processes ended on different regular configurations: {final}")
            else:
                ((r, members),) = rings
                if list(members) != live_nodes:
                    self.bad(
                        "D9",
                        f"final ring {r} has members {members} but the live nodes are {live_nodes}",
                    )
                # One set per process, not one per message: with 16 processes and thousands of
                # messages, rebuilding it in the loop took minutes on a busy machine.
                delivered = {p.name: set(p.in_regular.get(r, [])) for p in staying}
                cuts = {p.name: p.cut(r) for p in staying}
                for s, _, m in self._agreed(r):
                    for p in staying:
                        if m not in delivered[p.name] and s >= cuts[p.name]:
                            self.bad(
                                "D9",
                                f"{m} (final ring {r} seq {s}) was never delivered by {p.name}",
                            )
                            break
        # lost messages of staying senders
        lost: set[MsgId] = set()
        examples = []
        staying_pids = {p.pid for p in staying}
        for mid, (sp, _) in self.sent.items():
            if sp.pid not in staying_pids:
                continue
            if mid not in self.ordered:
                lost.add(mid)
                examples.append(f"{mid} sent by {sp.name} was never delivered by anyone")
                continue
            r, s = self.ordered[mid]
            got = {d.proc for d in self.deliveries[mid]}
            for q in staying:
                if q.pid == sp.pid or r not in q.in_regular or q.pid in got:
                    continue
                t = q.trans_after.get(r)
                if t is not None and sp.node not in t.members:
                    continue
                if s < q.cut(r):
                    continue
                lost.add(mid)
                examples.append(
                    f"{mid} (ring {r} seq {s}) sent by {sp.name} never delivered by "
                    f"{q.name}, which stayed with it"
                )
                break
        # send -> delivery latency (same host clock): a stalled ring shows here even when
        # no property breaks
        lat = []
        for mid, (_sp, e) in self.sent.items():
            for d in self.deliveries.get(mid, []):
                lat.append(d.t - e["t"])
        lat.sort()

        def pct(q: float) -> float | None:
            return round(lat[min(len(lat) - 1, int(q * len(lat)))], 3) if lat else None

        return {
            "latency_p50_s": pct(0.5),
            "latency_p99_s": pct(0.99),
            "latency_max_s": round(lat[-1], 3) if lat else None,
            "processes": len(self.procs),
            "crashed": sum(p.crashed for p in self.procs),
            "outsiders": sum(p.outsider for p in self.procs),
            "sent": len(self.sent),
            "sent_by_staying": sum(1 for (sp, _) in self.sent.values() if sp.pid in staying_pids),
            "deliveries": sum(len(ds) for ds in self.deliveries.values()),
            "delivered_messages": len(self.deliveries),
            "lost": len(lost),
            "lost_examples": examples[:20],
            "regular_configurations": len(self.ring_members),
            "final": {k: (list(v[0]), v[1]) if v else None for k, v in final.items()},
        }

    def fault_times(
        self, faults: Sequence[dict[str, Any]], token_ms: int, consensus_ms: int
    ) -> list[dict[str, Any]]:
        t0 = min((p.start_t for p in self.procs), default=0.0)
        out = []
        times = [f["t"] for f in faults]
        insiders = [p for p in self.procs if not p.outsider]
        for n, f in enumerate(faults):
            tf = f["t"]
            nxt = times[n + 1] if n + 1 < len(times) else INF
            firsts = []
            for p in insiders:
                ts = [
                    c.t
                    for c in p.configs
                    if c.kind == "regular" and tf < c.t < nxt and c.t < (p.end_t or INF)
                ]
                if ts:
                    firsts.append(min(ts))
            out.append(
                {
                    **{k: v for k, v in f.items() if k != "t"},
                    "at": tf - t0,
                    "first_regular_s": (min(firsts) - tf) if firsts else None,
                    "all_regular_s": (max(firsts) - tf) if firsts else None,
                    "nodes_reconfigured": len(firsts),
                    "bound_s": (token_ms + consensus_ms) / 1000,
                }
            )
        return out


def check(
    traces: Sequence[list[dict[str, Any]]],
    *,
    outsiders: Iterable[int] = (),
    faults: Sequence[dict[str, Any]] = (),
    token_ms: int = 1000,
    consensus_ms: int = 1200,
) -> Report:
    """Checks the traces (each a list of event dicts, one per process) and returns a report."""
    c = _Checker(traces, outsiders)
    c.run()
    stats = c.d9_and_lost()
    return Report(c.v, stats, c.fault_times(faults, token_ms, consensus_ms))


def main(argv: Sequence[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="Check EVS traces (JSON lines of worker.py).")
    ap.add_argument("traces", nargs="+")
    ap.add_argument("--outsider", type=int, action="append", default=[])
    args = ap.parse_args(argv)
    report = check_files(args.traces, outsiders=args.outsider)
    print(report.summary())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
