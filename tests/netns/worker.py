"""One EVS node process on one "host" (a network namespace), for the fault-injection harness.

Run by :mod:`tests.netns.harness` as ``ip netns exec <ns> <venv python> tests/netns/worker.py``.
It starts an ``evs.Node`` (multicast transport, crypto as asked), opens one handle joined to
the load group, multicasts at a fixed rate from a sender thread, and writes a trace of what the
handle sees as JSON lines. Every line is one ``os.write`` on an ``O_APPEND`` descriptor: nothing
is buffered in the process, so a ``kill -9`` loses only the events it had not received yet.

Trace lines (``t`` is ``time.time()``; namespaces share the host clock, so traces compare):

* ``{"ev": "start", "node", "inc", "pid", "handle"}`` - first line of an incarnation.
* ``{"ev": "send", "id": [node, inc, k], "g": "agreed"|"safe", "len", "t0"}`` -
  ``mcast_joined`` returned, so the message is the node's to deliver; ``t0`` is when the call
  began (it blocks under backpressure), the start of the message's own-delivery latency.
* ``{"ev": "deliver", "id", "sender", "ring": [rep, seq], "seq", "g", "ok"}`` - ``ok`` is
  false when the payload is not the bytes the id stands for (or not ours at all: ``id`` null).
* ``{"ev": "config", "kind": "regular"|"transitional", "ring", "members", "left", "joined"}``.
* ``{"ev": "group", "group", "members", "joined", "left"}`` - pairs ``[node, handle]``.
* ``{"ev": "stats", ...}`` every 2 s: counters of ``Node.stats()`` (token losses, consensus
  timeouts, retransmissions, rejected packets) to explain a reconfiguration afterwards.
* ``{"ev": "quiesce", "last": k}`` (SIGUSR1: sending stopped; ``k`` the last number sent),
  ``{"ev": "drained", "pending": n}`` (every own message delivered, or ``drain_timeout``),
  ``{"ev": "end"}`` (SIGTERM: the node is about to leave; nothing follows), ``{"ev": "error"}``.

A trace without ``end`` is a crashed process: it failed at its last line.

Payload: ``EVSFT|node|inc|k|marker|`` then filler derived from that header, up to ``--size``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import random
import signal
import sys
import threading
import time
from typing import Any

PAYLOAD_TAG = b"EVSFT"


def payload(node: int, inc: int, k: int, marker: str, size: int) -> bytes:
    """The bytes of message ``k`` of ``node`` incarnation ``inc`` (the checker recomputes them)."""
    head = b"|".join([PAYLOAD_TAG, b"%d" % node, b"%d" % inc, b"%d" % k, marker.encode(), b""])
    filler = hashlib.sha256(head).digest()
    need = max(0, size - len(head))
    return head + (filler * (need // len(filler) + 1))[:need]


def parse_payload(data: bytes) -> tuple[list[int] | None, bool]:
    """``([node, inc, k], intact)`` of a payload, or ``(None, False)`` if it is not ours."""
    parts = data.split(b"|", 5)
    if len(parts) < 6 or parts[0] != PAYLOAD_TAG:
        return None, False
    try:
        node, inc, k = int(parts[1]), int(parts[2]), int(parts[3])
    except ValueError:
        return None, False
    marker = parts[4].decode(errors="replace")
    return [node, inc, k], payload(node, inc, k, marker, len(data)) == data


class Trace:
    """Append-only JSON lines, one unbuffered write each."""

    def __init__(self, path: str) -> None:
        self.fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
        self.lock = threading.Lock()

    def write(self, ev: str, **fields: Any) -> None:
        rec = {"t": round(time.time(), 6), "ev": ev, **fields}
        line = (json.dumps(rec, separators=(",", ":")) + "\n").encode()
        with self.lock:
            os.write(self.fd, line)


STATS_PERIOD = 2.0
STATS_KEYS = (
    "state", "token_lost", "consensus_timeouts", "token_retransmits", "retransmits_requested",
    "retransmits_sent", "rings_formed", "token_rotation_s", "sort_queue_len",
    "send_queue_messages", "messages_submitted", "messages_delivered", "datagrams_in",
)  # fmt: skip


def write_stats(trace: Trace, node: Any) -> None:
    """A ``stats`` line: the node's counters that explain a reconfiguration afterwards."""
    try:
        st = node.stats()
    except Exception as e:  # the node may be stopping
        trace.write("stats", error=str(e))
        return
    out = {k: st.get(k) for k in STATS_KEYS}
    out["rejected"] = {k: v for k, v in dict(st.get("rejected", {})).items() if v}
    trace.write("stats", **out)


def ring(r: Any) -> list[int]:
    return [r.rep, r.seq]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--node-id", type=int, required=True)
    ap.add_argument("--incarnation", type=int, default=1)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--port", type=int, default=5405)
    ap.add_argument("--cluster", default="evsft")
    ap.add_argument("--mcast", default="239.192.213.10")
    ap.add_argument("--crypto", default="aes256gcm")
    ap.add_argument("--authkey")
    ap.add_argument("--trace", required=True)
    ap.add_argument("--rate", type=float, default=20.0, help="messages per second")
    ap.add_argument(
        "--poisson",
        action="store_true",
        help="exponential gaps between messages (mean 1/rate) instead of a fixed period: the "
        "ring goes idle now and then, as a real application's does",
    )
    ap.add_argument("--size", type=int, default=200)
    ap.add_argument("--safe-every", type=int, default=0, help="every n-th message SAFE (0: none)")
    ap.add_argument(
        "--big-every", type=int, default=0, help="every n-th message --big-size bytes (0: none)"
    )
    ap.add_argument("--big-size", type=int, default=1200)
    ap.add_argument("--marker", default="EVSFT-MARKER")
    ap.add_argument("--group", default="load")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=INT",
        help="extra integer node setting (token=1000, consensus=1200, ...)",
    )
    ap.add_argument(
        "--start-at",
        type=float,
        metavar="EPOCH",
        help="create the node at this wall-clock time (time.time()), for simultaneous starts",
    )
    args = ap.parse_args(argv)

    import evs  # imported here so that --help works without the native module

    if args.start_at is not None:
        time.sleep(max(0.0, args.start_at - time.time()))

    trace = Trace(args.trace)
    settings: dict[str, Any] = {
        "cluster_name": args.cluster,
        "node_id": args.node_id,
        "bind": args.bind,
        "port": args.port,
        "transport": "multicast",
        "multicast_address": args.mcast,
        "crypto": args.crypto,
    }
    if args.crypto != "none":
        settings["authkey"] = args.authkey
    for kv in args.set:
        key, _, value = kv.partition("=")
        settings[key] = int(value)

    quiesce = threading.Event()
    stop = threading.Event()
    signal.signal(signal.SIGUSR1, lambda *_: quiesce.set())
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())

    node = evs.Node(**settings)
    h = evs.Handle(node)
    trace.write(
        "start",
        node=args.node_id,
        inc=args.incarnation,
        pid=os.getpid(),
        handle=h.id,
        settings={k: v for k, v in settings.items() if k != "authkey"},
    )
    h.join(args.group)

    me = args.node_id
    own_sent: set[int] = set()
    own_delivered: set[int] = set()
    state_lock = threading.Lock()
    last_sent = [0]

    rng = random.Random(f"{me}-{args.incarnation}-{os.getpid()}")

    def sender() -> None:
        k = 0
        next_at = time.monotonic()
        while not quiesce.is_set() and not stop.is_set():
            k += 1
            safe = args.safe_every > 0 and k % args.safe_every == 0
            big = args.big_every > 0 and k % args.big_every == 0
            size = args.big_size if big else args.size
            data = payload(me, args.incarnation, k, args.marker, size)
            g = evs.SAFE if safe else evs.AGREED
            t0 = round(time.time(), 6)
            try:
                h.mcast_joined(data, g, timeout=2.0)
            except (evs.TimeoutError, evs.TryAgainError) as e:
                trace.write("send_fail", id=[me, args.incarnation, k], why=type(e).__name__)
            except evs.HandleClosedError:
                return
            else:
                with state_lock:
                    own_sent.add(k)
                    last_sent[0] = k
                trace.write(
                    "send",
                    id=[me, args.incarnation, k],
                    g="safe" if safe else "agreed",
                    len=len(data),
                    t0=t0,
                )
            next_at += rng.expovariate(args.rate) if args.poisson else 1.0 / args.rate
            delay = next_at - time.monotonic()
            if delay > 0:
                quiesce.wait(delay)
            else:
                next_at = time.monotonic()  # behind (blocked by backpressure): no burst

    def receiver() -> None:
        while not stop.is_set():
            try:
                evs_batch = h.recv_many(256, timeout=0.2)
            except evs.TimeoutError:
                continue
            except evs.HandleClosedError as e:
                if not stop.is_set():
                    trace.write("error", what=f"handle closed: {type(e).__name__}: {e}")
                return
            for ev in evs_batch:
                if stop.is_set():
                    return  # after "end" nothing more is recorded
                if isinstance(ev, evs.Message):
                    mid, ok = parse_payload(ev.data)
                    trace.write(
                        "deliver",
                        id=mid,
                        sender=ev.sender,
                        ring=ring(ev.ring_id),
                        seq=ev.seq,
                        g="safe" if ev.guarantee == evs.SAFE else "agreed",
                        ok=ok and mid is not None and mid[0] == ev.sender,
                    )
                    if mid is not None and mid[0] == me and mid[1] == args.incarnation:
                        with state_lock:
                            own_delivered.add(mid[2])
                elif isinstance(ev, evs.ConfigChange):
                    kind = "regular" if ev.kind == evs.REGULAR else "transitional"
                    trace.write(
                        "config",
                        kind=kind,
                        ring=ring(ev.ring_id),
                        members=list(ev.members),
                        left=list(ev.left),
                        joined=list(ev.joined),
                    )
                elif isinstance(ev, evs.GroupChange):
                    trace.write(
                        "group",
                        group=ev.group.decode(errors="replace"),
                        members=[list(x) for x in ev.members],
                        joined=[list(x) for x in ev.joined],
                        left=[list(x) for x in ev.left],
                    )

    rx = threading.Thread(target=receiver, name="rx", daemon=True)
    tx = threading.Thread(target=sender, name="tx", daemon=True)
    rx.start()
    tx.start()
    next_stats = 0.0
    while not quiesce.is_set() and not stop.is_set():
        if time.monotonic() >= next_stats:
            next_stats = time.monotonic() + STATS_PERIOD
            write_stats(trace, node)
        quiesce.wait(0.2)
    write_stats(trace, node)
    if quiesce.is_set() and not stop.is_set():
        tx.join(10)
        trace.write("quiesce", last=last_sent[0])
        deadline = time.monotonic() + 60
        while not stop.is_set():
            with state_lock:
                pending = len(own_sent - own_delivered)
            if pending == 0:
                trace.write("drained", pending=0)
                break
            if time.monotonic() > deadline:
                trace.write("drain_timeout", pending=pending)
                break
            stop.wait(0.1)
        stop.wait()
    stop.set()
    rx.join(5)
    trace.write("end")
    h.close()
    node.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main())
