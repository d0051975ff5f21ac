"""A replicated key-value store over one EVS group, with state transfer to joining replicas.

Every replica is an :class:`evs.Handle` joined to the same group. Writes are multicast and
applied by every replica where they are delivered, in the one agreed order, so replicas that
saw the same stream hold the same state; reads are local. Run ``python examples/kvstore.py``.

    store = KVStore(evs.Handle(node), "inventory")
    store.wait_synced(timeout=30)
    store.set("apples", 3)            # returns once this replica applied it
    store.get("apples")               # -> 3, from local memory
    store.delete("apples")

**State transfer.** A replica that joins a group that already has members must get the state
those members hold. The point where it starts is what makes this exact: the joiner multicasts
a *request*; every member delivers it at the same point of the agreed stream. The lowest
``(node, handle)`` among the replicas that hold the state (the *synced* set, which every synced
replica tracks alike) answers with a *snapshot* of its state at that point. Meanwhile the
joiner buffers everything delivered after its own request; when the snapshot arrives it
installs it and replays the buffer, so each update is applied exactly once, in order. The
replicated state is therefore the data *and* the protocol's own bookkeeping (synced set,
pending requests), all changed only by delivered events:

* a request from a replica not yet synced records it as pending (a newer request replaces
  an older one);
* a snapshot makes its target synced if it answers the target's latest request;
* a replica leaving the group leaves the synced set and the pending requests.

Concurrent joiners each get their own snapshot, each cut at their own request. If members
leave while a joiner waits (the one answering may be among them) the joiner asks again: the
new request is answered by whoever is lowest then, and a snapshot to the old request is
ignored by everyone alike. A replica whose join shows no earlier member starts the group
empty.

Limits, kept out to stay short: the state lives in memory and is gone once every synced
replica has left; a snapshot must fit one message (``max_message_size``, 1 MiB by default);
and partitions are not reconciled -- each side of a split keeps serving writes, and when the
sides merge both keep their own state (a real store would let only a primary component, e.g.
a majority, write). Start a replica once its node has joined the ring, or it may find the
group empty and start it afresh. The group is the store's own: any handle joined to it counts
as a member (a non-replica there first would keep the first replica from starting the store).
"""

from __future__ import annotations

import json
import sys
import threading
import uuid
from dataclasses import dataclass, field
from typing import Any

import evs

Member = tuple[int, int]
"""A replica: ``(node_id, handle_id)``, as in :attr:`evs.GroupChange.members`."""


@dataclass
class _Replicated:
    """Everything that changes only where an event is delivered, identical at every synced
    replica at the same point of the stream; a snapshot is a copy of it."""

    data: dict[str, Any] = field(default_factory=dict)
    version: int = 0  # updates applied since the group started
    synced: set[Member] = field(default_factory=set)
    pending: dict[Member, str] = field(default_factory=dict)  # requester -> request nonce

    def to_json(self) -> dict[str, Any]:
        return {
            "data": self.data,
            "version": self.version,
            "synced": sorted(self.synced),
            "pending": [[n, h, nonce] for (n, h), nonce in sorted(self.pending.items())],
        }

    @classmethod
    def from_json(cls, j: dict[str, Any]) -> _Replicated:
        return cls(
            data=dict(j["data"]),
            version=j["version"],
            synced={(n, h) for n, h in j["synced"]},
            pending={(n, h): nonce for n, h, nonce in j["pending"]},
        )


class KVStore:
    """One replica of the key-value store of ``group``, over ``handle`` (which it joins and,
    on :meth:`close`, closes). Keys are strings, values anything JSON can carry. A thread of
    its own reads the handle's events."""

    def __init__(self, handle: evs.Handle, group: str) -> None:
        self.handle = handle
        self.group = group
        self.me: Member = (handle.node_id, handle.id)
        self._state = _Replicated()
        self._synced = False
        self._lock = threading.Condition()
        self._send_lock = threading.Lock()
        self._next_op = 0  # ids of this replica's own writes, in sending order
        self._own_applied = 0  # highest own write id applied here
        self._own_seen = 0  # highest own write id delivered (applied or inside a snapshot)
        self._joined = False  # our own join was delivered
        self._request: str | None = None  # nonce of our latest delivered request
        self._buffer: list[evs.Event] = []  # delivered after that request, not yet applied
        self._error: BaseException | None = None
        handle.join(group)
        self._reader = threading.Thread(target=self._run, name=f"kvstore-{self.me}", daemon=True)
        self._reader.start()

    # -- the API -----------------------------------------------------------------------------

    def get(self, key: str, default: Any = None) -> Any:
        """The value of ``key`` at this replica (local read)."""
        with self._lock:
            return self._state.data.get(key, default)

    def items(self) -> dict[str, Any]:
        """A copy of the whole store at this replica."""
        with self._lock:
            return dict(self._state.data)

    @property
    def version(self) -> int:
        """How many updates the state holds (equal at replicas holding equal state)."""
        with self._lock:
            return self._state.version

    @property
    def synced(self) -> bool:
        with self._lock:
            return self._synced

    def set(self, key: str, value: Any, timeout: float = 30.0) -> None:
        """Sets ``key`` everywhere; returns once this replica applied it (so a following
        :meth:`get` here sees it). Raises TimeoutError after ``timeout`` seconds."""
        self._write({"op": "set", "k": key, "v": value}, timeout)

    def delete(self, key: str, timeout: float = 30.0) -> None:
        """Deletes ``key`` everywhere (a missing key is no error); waits like :meth:`set`."""
        self._write({"op": "del", "k": key}, timeout)

    def barrier(self, timeout: float = 30.0) -> None:
        """Returns once every update delivered anywhere before this call is applied here: a
        marker is multicast, and the stream orders it after all of them."""
        self._write({"op": "nop"}, timeout)

    def wait_synced(self, timeout: float | None = None) -> bool:
        """Waits until this replica holds the group's state; False on timeout."""
        with self._lock:
            self._lock.wait_for(lambda: self._synced or self._error is not None, timeout)
            if not self._synced:
                self._raise_error()
            return self._synced

    def close(self) -> None:
        """Leaves the group (closing the handle) and stops the reader thread."""
        self.handle.close()
        self._reader.join(10)

    def __enter__(self) -> KVStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- sending -----------------------------------------------------------------------------

    def _send(self, msg: dict[str, Any]) -> None:
        self.handle.mcast_joined(json.dumps(msg).encode())

    def _write(self, msg: dict[str, Any], timeout: float) -> None:
        # Under a lock, so that own writes are multicast (hence delivered) in id order.
        with self._send_lock:
            self._next_op += 1
            op = msg["id"] = self._next_op
            self._send(msg)
        with self._lock:
            self._lock.wait_for(lambda: self._own_applied >= op or self._error is not None, timeout)
            if self._own_applied >= op:
                return
            self._raise_error()
            raise TimeoutError(f"update {op} not applied within {timeout} s")

    def _send_request(self) -> None:
        self._send({"op": "req", "nonce": uuid.uuid4().hex})

    def _send_snapshot(self, to: Member, nonce: str) -> None:
        self._send({"op": "snap", "to": list(to), "nonce": nonce, "state": self._state.to_json()})

    # -- receiving: one thread applies events in delivery order ------------------------------

    def _run(self) -> None:
        try:
            for ev in self.handle.events():  # ends when the handle is closed
                with self._lock:
                    self._on_event(ev)
                    self._lock.notify_all()
        except BaseException as e:  # e.g. OverflowedError: tell the waiting callers
            with self._lock:
                self._error = e
                self._lock.notify_all()
        else:
            with self._lock:
                if self._error is None:
                    self._error = evs.HandleClosedError("the store was closed")
                self._lock.notify_all()

    def _raise_error(self) -> None:
        if self._error is not None:
            raise self._error

    def _on_event(self, ev: evs.Event) -> None:
        if self._synced:
            self._apply(ev, live=True)
            return
        if isinstance(ev, evs.GroupChange) and not self._joined:
            if self.me not in ev.joined:
                return
            self._joined = True
            if set(ev.members) <= set(ev.joined):
                # Nobody was in the group before this change: the group starts here, empty,
                # with everyone who joined in this very change holding its state.
                self._state.synced = set(ev.members)
                self._synced = True
            else:
                self._send_request()
            return
        if not self._joined:
            return
        sender, msg = _decode(ev) or (None, None)
        if msg is not None and sender == self.me:
            if msg["op"] == "req":
                # Our request's place in the stream: the snapshot answering it will be cut
                # exactly here, so what we hold from before is in it and what follows is not.
                self._request = msg["nonce"]
                self._buffer = []
                return
            if "id" in msg:
                self._own_seen = msg["id"]
        if (
            msg is not None
            and msg["op"] == "snap"
            and tuple(msg["to"]) == self.me
            and msg["nonce"] == self._request
        ):
            self._install(_Replicated.from_json(msg["state"]))
            self._apply(ev, live=False)  # the snapshot itself: we are synced from here on
            return
        if self._request is not None:
            self._buffer.append(ev)
        if isinstance(ev, evs.GroupChange) and ev.left:
            if set(ev.members) == {self.me}:
                # Everyone else left before answering: the state is gone; start afresh.
                self._state = _Replicated(synced={self.me})
                self._synced = True
                self._buffer = []
            else:
                # The member answering us may be among those gone: ask again.
                self._send_request()

    def _install(self, snapshot: _Replicated) -> None:
        self._state = snapshot
        self._own_applied = max(self._own_applied, self._own_seen)
        for ev in self._buffer:
            self._apply(ev, live=False)
        self._buffer = []
        self._synced = True

    def _apply(self, ev: evs.Event, *, live: bool) -> None:
        """The replicated state machine: every synced replica runs this on the same events in
        the same order. ``live`` is False while replaying a joiner's buffer: a replay only
        catches up, it never sends."""
        s = self._state
        if isinstance(ev, evs.GroupChange):
            for m in ev.left:
                s.synced.discard(m)
                s.pending.pop(m, None)
            return
        decoded = _decode(ev)
        if decoded is None:
            return
        sender, msg = decoded
        op = msg["op"]
        if op == "set":
            s.data[msg["k"]] = msg["v"]
            s.version += 1
        elif op == "del":
            s.data.pop(msg["k"], None)
            s.version += 1
        elif op == "req":
            if sender in s.synced:
                return  # an older request was answered in the meantime
            s.pending[sender] = msg["nonce"]
            if live and s.synced and min(s.synced) == self.me:
                self._send_snapshot(sender, msg["nonce"])
        elif op == "snap":
            to = (msg["to"][0], msg["to"][1])
            if s.pending.get(to) == msg["nonce"]:
                del s.pending[to]
                s.synced.add(to)
        if sender == self.me and "id" in msg:
            self._own_applied = max(
                self._own_applied, msg["id"]
            )  # a write (or barrier) of ours: wake its caller


def _decode(ev: evs.Event) -> tuple[Member, dict[str, Any]] | None:
    """A message of the store as (sender, body); None for membership events."""
    if not isinstance(ev, evs.Message):
        return None
    return (ev.sender, ev.sender_handle), json.loads(ev.data)


# -- the demonstration --------------------------------------------------------------------------


def _show(stores: list[KVStore]) -> None:
    for s in stores:
        d = s.items()
        print(
            f"  replica {s.me}: version {s.version}, {len(d)} keys, "
            f"apples={d.get('apples')}, pears={d.get('pears')}, crate-19={d.get('crate-19')}"
        )


def main() -> int:
    from evs.testing import LocalCluster

    with LocalCluster(3) as cluster:
        print(f"ring {cluster[0].ring_id()} with members {cluster[0].membership()[1]}")
        first = KVStore(cluster.handle(0), "inventory")
        first.wait_synced(30)
        first.set("apples", 3)
        first.set("pears", 5)
        print("node 1 started the store:", first.items())

        # Two replicas join while node 1 keeps writing: each gets the state at its own request
        # and every write after it, none twice.
        def keep_writing() -> None:
            for i in range(20):
                first.set(f"crate-{i}", i)

        writer = threading.Thread(target=keep_writing)
        writer.start()
        stores = [first] + [KVStore(cluster.handle(i), "inventory") for i in (1, 2)]
        if not all(s.wait_synced(30) for s in stores):
            print("a replica did not receive the state", file=sys.stderr)
            return 1
        writer.join()
        stores[1].delete("pears")
        stores[2].set("apples", 4)
        for s in stores:
            s.barrier()
        print("after joins during writes, and writes from every node:")
        _show(stores)

        # The replica on node 1 leaves; a replica on node 3 joins: node 2 now answers.
        first.close()
        late = KVStore(cluster.handle(2), "inventory")
        late.wait_synced(30)
        stores = [*stores[1:], late]
        for s in stores:
            s.barrier()
        print("after node 1's replica left and a new one joined on node 3:")
        _show(stores)
        same = all(s.items() == late.items() and s.version == late.version for s in stores)
        print("all replicas identical:", same)
        for s in stores:
            s.close()
        return 0 if same and late.get("apples") == 4 else 1


if __name__ == "__main__":
    sys.exit(main())
