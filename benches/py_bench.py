#!/usr/bin/env python3
"""Benchmark of one EVS node through the Python package: one process is one node.

A drop-in replacement for ``node-bench`` (``benches/node_bench.rs``) as
``benches/run_node_bench.sh`` runs it (``IMPL=py``): the same flags, the same 40-byte message
header, the same protocol and the same JSON fields, so the script's tables read both. What
differs is where a message counts as delivered: here only once it is an ``evs.Message`` object
in Python (taken with ``Handle.recv_many`` in batches) whose ``.data`` and ``.sender`` were
read, its header parsed and checked.

* **throughput** (``--mode throughput``): every node with ``--send 1`` multicasts ``--size``
  byte messages as fast as the node's send budget lets it, ``--warmup`` seconds uncounted,
  then ``--duration`` seconds counted. Each node counts what Python receives inside its
  window (its own messages and the others'), the self-delivery latency of its own messages
  and the one-way latency of all (send time in the payload, ``time.monotonic_ns``: all
  namespaces share ``CLOCK_MONOTONIC``). Then every sender multicasts a FIN with its count;
  each node drains until it has every FIN, checks completeness and per-sender FIFO order, and
  hashes its whole delivery sequence (equal hashes on all nodes: the same total order).
* **latency** (``--mode latency``): the node with ``--send 1`` multicasts one message, waits
  until Python has its own delivery, and repeats ``--count`` times after ``--lat-warmup``
  rounds, on an otherwise idle ring.

Both end with a DONE exchange, so no node leaves the ring while another still drains. The
JSON result goes to ``--out`` (else stdout); exit code 0 only if the run was complete and
ordered (3 if not, 1 on an error, 2 on bad flags).

Sending, ``--sender thread`` (default): a sender thread calls ``mcast_joined(timeout=None)``,
blocking on the send budget with the GIL released, while the main thread receives.
``--sender inline``: one thread alternates non-blocking sends (``timeout=0``, until
``TryAgainError``) with ``recv_many``; no GIL hand-over at all.

``py_bench.py --keygen PATH`` writes a fresh authkey and exits.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import struct
import sys
import threading
import time
from array import array
from hashlib import blake2b
from itertools import compress, repeat
from operator import eq, ne, sub

import evs
from evs import ConfigChange, Message

GROUP = b"bench"
MAGIC = int.from_bytes(b"EVSB", "little")
K_DATA, K_FIN, K_DONE, K_LAT = 1, 2, 3, 4
DATA_HEAD_BYTES = struct.pack("<Q", MAGIC | K_DATA << 32)  # a data header's first u64
# magic u32 | kind u8 | 3 pad | sender u32 | 4 pad | seq u64 | send time (ns) u64 | total u64
HDR = struct.Struct("<IB3xI4xQQQ")
HDR_LEN = HDR.size  # 40
SAMPLE_CAP = 16 << 20
BATCH = 4096
mono_ns = time.monotonic_ns
thread_ns = time.thread_time_ns


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(
        prog="py_bench.py", description="EVS node benchmark through the Python package"
    )
    p.add_argument("--keygen", metavar="PATH", help="write a fresh authkey and exit")
    p.add_argument("--config", help="evs TOML configuration to start from")
    p.add_argument("--bind", help="this node's address")
    p.add_argument("--node-id", type=int)
    p.add_argument("--port", type=int)
    p.add_argument("--cluster", default="evs-bench")
    p.add_argument("--crypto", default="on", help="on|off or a cipher name (default on)")
    p.add_argument("--authkey")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--mode", default="throughput", choices=["throughput", "tput", "latency", "lat"])
    p.add_argument("--size", type=int, default=1024)
    p.add_argument("--nodes", type=int, default=3)
    p.add_argument("--send", type=int, choices=[0, 1])
    p.add_argument("--senders", type=int)
    p.add_argument("--duration", type=float, default=10.0)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--count", type=int, default=10_000)
    p.add_argument("--lat-warmup", type=int, default=200)
    p.add_argument("--queue", type=int, help="handle queue capacity (events)")
    p.add_argument("--join-timeout", type=float, default=60.0)
    p.add_argument("--drain-timeout", type=float, default=60.0)
    p.add_argument("--out")
    p.add_argument(
        "--sender",
        default=os.environ.get("PY_SENDER", "thread"),
        choices=["thread", "inline"],
        help="sending structure (default thread, or $PY_SENDER)",
    )
    p.add_argument("--batch", type=int, default=BATCH, help="recv_many batch (default 4096)")
    a = p.parse_args(argv)
    if a.keygen is None:
        if a.size < HDR_LEN:
            p.error(f"--size must be at least {HDR_LEN} (the benchmark header)")
        if a.nodes <= 0 or a.duration <= 0 or a.warmup < 0:
            p.error("--nodes and --duration must be positive, --warmup not negative")
    a.mode = "latency" if a.mode in ("latency", "lat") else "throughput"
    return a


def setting_value(v: str) -> object:
    """A ``--set`` value typed as the TOML file would have it."""
    if v in ("true", "false"):
        return v == "true"
    for conv in (int, float):
        try:
            return conv(v)
        except ValueError:
            pass
    return v


def node_settings(a: argparse.Namespace) -> dict[str, object]:
    cipher = {"on": "aes256gcm", "off": "none"}.get(a.crypto, a.crypto)
    s: dict[str, object] = {"cluster_name": a.cluster, "crypto": cipher}
    for k, v in (("bind", a.bind), ("node_id", a.node_id), ("port", a.port)):
        if v is not None:
            s[k] = v
    if cipher != "none" and a.authkey:
        s["authkey"] = a.authkey
    for kv in a.set:
        k, sep, v = kv.partition("=")
        if not sep:
            raise SystemExit(f"py_bench.py: --set {kv}: expected KEY=VALUE")
        s[k] = setting_value(v)
    return s


def cpu_s() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def sys_ticks() -> tuple[int, int]:
    try:
        with open("/proc/stat") as f:
            v = [int(x) for x in f.readline().split()[1:9]]
    except OSError:
        return (0, 0)
    total = sum(v)
    return (total - v[3] - v[4], total)


def udp_errors() -> tuple[int, int]:
    try:
        with open("/proc/net/snmp") as f:
            rows = [line.split() for line in f if line.startswith("Udp:")]
        d = dict(zip(rows[0], rows[1]))
        return (int(d.get("RcvbufErrors", 0)), int(d.get("InErrors", 0)))
    except (OSError, IndexError, ValueError):
        return (0, 0)


def pct_us(s: list[int] | array, q: float) -> float:
    """Percentile ``q`` of sorted samples in µs (nearest rank below, as cpgperf.c)."""
    if not s:
        return 0.0
    return s[int((len(s) - 1) * q)] / 1000.0


def payload(size: int) -> bytearray:
    return bytearray(i & 0xFF for i in range(size))


class Rx:
    """Everything the receiving side learns. ``take`` is the hot loop."""

    def __init__(self, me: int, size: int = 0) -> None:
        self.me = me
        # The data messages' size, for take's column fast path (0 or not a multiple of 8:
        # every batch takes the per-message path).
        self.stride = size // 8 if size >= HDR_LEN and size % 8 == 0 else 0
        self.size = size
        self.delivered: dict[int, int] = {}
        self.fin: dict[int, int] = {}
        self.done: set[int] = set()
        self.total_deliv = 0
        self.win_deliv = 0
        self.win_bytes = 0
        self.fifo_errors = 0
        self.bad = 0
        # Two streams (u64 each, per data message): senders and seqs; see order_hash.
        self.hash_senders = blake2b(digest_size=8)
        self.hash_seqs = blake2b(digest_size=8)
        self.owl = array("q")
        self.selfl = array("q")
        self.samples = 0  # latency samples taken (owl, and raw columns for latencies())
        self.raw: list[tuple[int, bytes, bytes]] = []
        self.dropped_samples = 0
        self.config_changes_in_window = 0
        self.lat_seen = -1
        self.batches = 0
        # CPU of the receiving thread (time.thread_time_ns) inside recv_many (turning the
        # runtime's events into Python objects, GIL held) and inside take (the Python side).
        self.cpu_recv_ns = 0
        self.cpu_take_ns = 0

    def take(self, events: list, window: tuple[int, int]) -> None:
        """Takes one batch. All of it reached Python at the same moment, so one clock read
        dates the whole batch (delivery into Python = ``recv_many`` returning it).

        Every message's ``.data`` and ``.sender`` are read either way. A batch of data
        messages of the run's size only (the usual one) is then checked column-wise: the
        headers are read as arrays of u64 words of one joined buffer and every check runs
        over whole columns (builtins looping in C); any other batch, or one whose columns
        do not all check out, takes :meth:`take_each`, the same checks message by message.
        Both give the same counts, samples and order hash."""
        now = mono_ns()
        self.batches += 1
        stride = self.stride
        if stride and events:
            try:
                datas = [ev.data for ev in events]  # AttributeError: not all are messages
                senders = [ev.sender for ev in events]
            except AttributeError:
                datas = []
            if datas and self.take_columns(datas, senders, now, window):
                return
        self.take_each(events, now, window)

    def take_columns(
        self, datas: list[bytes], senders: list[int], now: int, window: tuple[int, int]
    ) -> bool:
        """The column-wise checks of :meth:`take`; False (having changed nothing) if the
        batch is not made only of well-formed data messages of the run's size."""
        n = len(datas)
        blob = b"".join(datas)
        if len(blob) != n * self.size:
            return False
        words = memoryview(blob).cast("Q")
        stride = self.stride
        # word 0: magic | kind << 32 (pad zero); word 1: sender (pad zero); 2: seq; 3: sent at
        if words[0::stride].tobytes() != DATA_HEAD_BYTES * n:
            return False
        sender_col = words[1::stride].tobytes()
        if sender_col != array("Q", senders).tobytes():
            return False
        seq_col = words[2::stride]
        seqs = seq_col.tolist()
        delivered = self.delivered
        # FIFO and complete so far: each sender's seqs in this batch, in delivery order, are
        # the next ones after those delivered from it before.
        fifo = 0
        for s in set(senders):
            mine = list(compress(seqs, map(eq, senders, repeat(s))))
            first = delivered.get(s, 0)
            if mine != list(range(first, first + len(mine))):
                fifo += sum(map(ne, mine, range(first, first + len(mine))))
            delivered[s] = first + len(mine)
        self.fifo_errors += fifo
        self.hash_senders.update(sender_col)
        self.hash_seqs.update(seq_col.tobytes())
        self.total_deliv += n
        if window[0] <= now < window[1]:
            self.win_deliv += n
            if self.samples < SAMPLE_CAP:
                # The latencies are worked out after the run (latencies()), from the raw
                # send-time column and the batch's delivery time.
                self.win_bytes += len(blob)
                self.samples += n
                self.raw.append((now, words[3::stride].tobytes(), sender_col))
            else:
                self.dropped_samples += n
        return True

    def latencies(self) -> tuple[array, array]:
        """All one-way and self-delivery latency samples (ns), unsorted."""
        owl, selfl = array("q", self.owl), array("q", self.selfl)
        for now, sent_col, sender_col in self.raw:
            lat = array("q", map(sub, repeat(now), array("Q", sent_col)))
            owl.extend(lat)
            selfl.extend(compress(lat, map(eq, array("Q", sender_col), repeat(self.me))))
        return owl, selfl

    def order_hash(self) -> str:
        """Digest of the sequence of (sender, seq) of every data message, in delivery
        order: equal on two nodes iff they delivered the same messages in the same order."""
        return self.hash_senders.hexdigest() + self.hash_seqs.hexdigest()

    def take_each(self, events: list, now: int, window: tuple[int, int]) -> None:
        """:meth:`take` one message at a time (any batch)."""
        in_win = window[0] <= now < window[1]
        unpack = HDR.unpack_from
        delivered = self.delivered
        senders_out = array("Q")
        seqs_out = array("Q")
        push_sender = senders_out.append
        push_seq = seqs_out.append
        me = self.me
        owl = self.owl.append if in_win and self.samples < SAMPLE_CAP else None
        selfl = self.selfl.append
        n_data = n_bytes = bad = fifo = 0
        for ev in events:
            if ev.__class__ is not Message:
                if ev.__class__ is ConfigChange and in_win:
                    self.config_changes_in_window += 1
                continue
            d = ev.data
            sender = ev.sender
            try:
                magic, kind, hs, seq, t_send, total = unpack(d)
            except struct.error:
                bad += 1
                continue
            if magic != MAGIC or hs != sender:
                bad += 1
                continue
            if kind == K_DATA:
                # Each sender numbers from 0 without gaps: FIFO and complete so far iff
                # seq equals the count delivered from it.
                n = delivered.get(sender, 0)
                if seq != n:
                    fifo += 1
                delivered[sender] = n + 1
                push_sender(sender)
                push_seq(seq)
                n_data += 1
                if owl is not None:
                    n_bytes += len(d)
                    lat = now - t_send
                    owl(lat)
                    if sender == me:
                        selfl(lat)
            elif kind == K_FIN:
                self.fin.setdefault(sender, total)
            elif kind == K_DONE:
                self.done.add(sender)
            elif kind == K_LAT:
                self.total_deliv += 1
                if sender == me:
                    self.lat_seen = seq
            else:
                bad += 1
        self.total_deliv += n_data
        if in_win:
            self.win_deliv += n_data
            self.win_bytes += n_bytes
            if owl is None:
                self.dropped_samples += n_data
            else:
                self.samples += n_data
        self.bad += bad
        self.fifo_errors += fifo
        if senders_out:
            self.hash_senders.update(senders_out.tobytes())
            self.hash_seqs.update(seqs_out.tobytes())


def pump(h: evs.Handle, rx: Rx, window: tuple[int, int], deadline: int, until, batch: int) -> bool:
    """Receives until ``until(rx)`` or ``deadline``; False on timeout."""
    recv_many = h.recv_many
    while not until(rx):
        if mono_ns() >= deadline:
            return False
        c0 = thread_ns()
        try:
            evts = recv_many(batch, 0.05)
        except evs.TimeoutError:
            continue
        c1 = thread_ns()
        rx.take(evts, window)
        rx.cpu_recv_ns += c1 - c0
        rx.cpu_take_ns += thread_ns() - c1
    return True


def send_until(h: evs.Handle, buf: bytes | bytearray, deadline: int) -> int:
    """Multicasts until accepted or ``deadline``; returns the timed-out waits."""
    waits = 0
    while True:
        try:
            h.mcast_joined(buf, timeout=0.1)
            return waits
        except evs.TimeoutError:
            if mono_ns() >= deadline:
                raise
            waits += 1


class Snapshot:
    def __init__(self, node: evs.Node) -> None:
        self.cpu = cpu_s()
        self.sys = sys_ticks()
        self.udp = udp_errors()
        try:
            self.stats: dict | None = node.stats()
        except evs.EvsError:
            self.stats = None


def sampler(node: evs.Node, edges: tuple[int, int], stop: threading.Event, out: list) -> None:
    """Counters at the window's edges, read by a thread that only sleeps in between."""
    for edge in edges:
        while True:
            now = mono_ns()
            if now >= edge or stop.is_set():
                break
            stop.wait(min(edge - now, 50_000_000) / 1e9)
        if stop.is_set():
            return
        out.append(Snapshot(node))


def sender_thread(
    h: evs.Handle, a, me: int, win: tuple[int, int], hard: int, res: dict, errs: list
) -> None:
    """Blocking sends: ``mcast_joined(timeout=None)`` waits for budget with the GIL released."""
    try:
        buf = payload(a.size)
        pack = HDR.pack_into
        mcast = h.mcast_joined
        seq = in_win = 0
        w0, w1 = win
        while True:
            now = mono_ns()
            if now >= w1:
                break
            pack(buf, 0, MAGIC, K_DATA, me, seq, now, 0)
            mcast(bytes(buf), timeout=None)
            seq += 1
            if now >= w0:
                in_win += 1
        t_stop = mono_ns()
        send_until(h, HDR.pack(MAGIC, K_FIN, me, 0, t_stop, seq), hard)
        res.update(sent=seq, in_win=in_win, waits=0, t_stop=t_stop, cpu_ns=thread_ns())
    except BaseException as e:  # reported by the main thread
        errs.append(e)


def run_inline(h: evs.Handle, a, rx: Rx, me: int, win: tuple[int, int], hard: int, senders):
    """One thread: non-blocking sends until the budget is used up, then one batch received.
    Returns ``(sent, in_window, waits, t_stop, complete)``."""
    buf = payload(a.size)
    pack = HDR.pack_into
    mcast = h.mcast_joined
    recv_many = h.recv_many
    take = rx.take
    try_again = evs.TryAgainError
    seq = in_win = waits = 0
    w0, w1 = win
    sending = bool(a.send if a.send is not None else 1)
    t_stop = w1
    batch = a.batch
    burst = 256
    while sending:
        now = mono_ns()
        if now >= w1:
            break
        full = False
        for _ in range(burst):
            pack(buf, 0, MAGIC, K_DATA, me, seq, now, 0)
            try:
                mcast(bytes(buf), timeout=0)
            except try_again:
                full = True
                waits += 1
                break
            seq += 1
            if now >= w0:
                in_win += 1
            now = mono_ns()
        c0 = thread_ns()
        try:
            # Block for a moment only when nothing could be sent: deliveries refund budget.
            evts = recv_many(batch, 0.001 if full else 0.0)
        except evs.TimeoutError:
            continue
        c1 = thread_ns()
        take(evts, win)
        rx.cpu_recv_ns += c1 - c0
        rx.cpu_take_ns += thread_ns() - c1
    if sending:
        t_stop = mono_ns()
        fin = HDR.pack(MAGIC, K_FIN, me, 0, t_stop, seq)
        while True:
            try:
                mcast(fin, timeout=0)
                break
            except try_again:
                with contextlib.suppress(evs.TimeoutError):
                    take(recv_many(batch, 0.001), win)
    complete = pump(h, rx, win, hard, lambda r: len(r.fin) >= senders, batch)
    return seq, in_win, waits, t_stop, complete


def stats_delta(j: dict, s0: dict | None, s1: dict | None, end: dict) -> None:
    if s0 is not None and s1 is not None:
        for k in (
            "retransmits_requested",
            "retransmits_sent",
            "token_retransmits",
            "token_rotations",
            "datagrams_out",
            "datagrams_in",
            "bytes_out",
            "send_syscalls",
            "recv_syscalls",
            "rings_formed",
        ):
            j[f"win_{k}"] = max(0, int(s1.get(k, 0)) - int(s0.get(k, 0)))
    rejected = end.get("rejected", {}) or {}
    j["members"] = len(end.get("members", []))
    for k in (
        "retransmits_requested",
        "retransmits_sent",
        "token_retransmits",
        "token_lost",
        "rings_formed",
    ):
        j[k] = end.get(k)
    j["mean_rotation_us"] = float(end.get("token_rotation_s", 0.0)) * 1e6
    j["rejected_total"] = sum(int(v) for v in rejected.values())
    j["rejected_nonzero"] = " ".join(f"{k}={v}" for k, v in rejected.items() if v)
    j["own_frames_dropped"] = end.get("own_frames_dropped")
    j["handles_overflowed"] = end.get("handles_overflowed")


def finish(a, node: evs.Node, h: evs.Handle, rx: Rx, me: int, j: dict, s0, s1) -> bool:
    """The DONE barrier, then the node's counters, then shutdown. False if a handle
    overflowed."""
    deadline = mono_ns() + int(a.drain_timeout * 1e9)
    send_until(h, HDR.pack(MAGIC, K_DONE, me, 0, mono_ns(), 0), deadline)
    far = (1 << 64, 1 << 64)
    all_done = pump(h, rx, far, deadline, lambda r: len(r.done) >= a.nodes, a.batch)
    j["all_done"] = int(all_done)
    ok = True
    try:
        end = node.stats()
        stats_delta(j, s0, s1, end)
        ok = not end.get("handles_overflowed")
    except evs.EvsError as e:
        print(f"py_bench.py: node {me}: stats: {e}", file=sys.stderr)
    h.close()
    node.shutdown()
    return ok


def run(a: argparse.Namespace) -> bool:
    is_lat = a.mode == "latency"
    sending = bool(a.send) if a.send is not None else not is_lat
    senders = a.senders if a.senders is not None else (1 if is_lat else a.nodes)
    queue = a.queue if a.queue is not None else max((64 << 20) // a.size, 16 * 1024)

    t_init = mono_ns()
    node = evs.Node(a.config, **node_settings(a))
    me = node.node_id
    h = node.handle(queue_capacity=queue)
    h.join(GROUP)

    # Start once the group has a handle on every expected node (as cpgperf.c).
    join_deadline = t_init + int(a.join_timeout * 1e9)
    rx = Rx(me, a.size)
    far = (1 << 64, 1 << 64)
    while True:
        nodes = {n for n, _ in h.group_membership(GROUP)}
        if len(nodes) >= a.nodes:
            break
        if mono_ns() > join_deadline:
            raise RuntimeError(
                f"node {me}: group did not reach {a.nodes} nodes in {a.join_timeout} s "
                f"(have {sorted(nodes)}, ring {node.membership()[1]})"
            )
        # Early senders' messages are not counted but must be taken (FIFO, completeness).
        with contextlib.suppress(evs.TimeoutError):
            rx.take(h.recv_many(a.batch, 0.01), far)
    t0 = mono_ns()
    j: dict[str, object] = {
        "impl": "python",
        "python": sys.version.split()[0],
        "mode": a.mode,
        "node": me,
        "nodes": a.nodes,
        "crypto": node_settings(a)["crypto"],
        "size": a.size,
        "sender": int(sending),
        "senders": senders,
        "sender_mode": a.sender,
        "wait_join_s": (t0 - t_init) / 1e9,
    }

    if not is_lat:
        win = (t0 + int(a.warmup * 1e9), t0 + int((a.warmup + a.duration) * 1e9))
        hard = win[1] + int(a.drain_timeout * 1e9)
        stop = threading.Event()
        snaps: list[Snapshot] = []
        samp = threading.Thread(target=sampler, args=(node, win, stop, snaps), daemon=True)
        samp.start()
        sent = None
        if a.sender == "inline" and sending:
            s_n, s_win, waits, t_stop, complete = run_inline(h, a, rx, me, win, hard, senders)
            sent = (s_n, s_win, waits, t_stop)
        else:
            res: dict = {}
            errs: list = []
            th = None
            if sending:
                th = threading.Thread(
                    target=sender_thread, args=(h, a, me, win, hard, res, errs), daemon=True
                )
                th.start()
            complete = pump(
                h, rx, win, hard, lambda r: len(r.fin) >= senders and mono_ns() >= win[1], a.batch
            )
            if th is not None:
                th.join(max(0.0, (hard - mono_ns()) / 1e9))
                if errs:
                    raise RuntimeError(f"node {me}: send failed: {errs[0]!r}")
                if res:
                    sent = (res["sent"], res["in_win"], res["waits"], res["t_stop"])
                    j["py_send_thread_cpu_s"] = res["cpu_ns"] / 1e9
        stop.set()
        samp.join(5)
        missing = expected = 0
        for s, f in rx.fin.items():
            expected += f
            missing += abs(f - rx.delivered.get(s, 0))
        dur = (win[1] - win[0]) / 1e9
        owl_raw, selfl_raw = rx.latencies()
        owl = sorted(owl_raw)
        selfl = sorted(selfl_raw)
        s0 = snaps[0] if snaps else None
        s1 = snaps[1] if len(snaps) > 1 else None
        sent_n, sent_win, waits, t_stop = sent or (0, 0, 0, win[1])
        j.update(
            warmup_s=a.warmup,
            duration_s=dur,
            send_window_s=(max(t_stop, win[1]) - t0) / 1e9,
            sent=sent_n,
            sent_in_window=sent_win,
            send_rate_msgs=sent_win / dur,
            send_waits=waits,
            win_deliv=rx.win_deliv,
            deliv_rate_msgs=rx.win_deliv / dur,
            deliv_MBps=rx.win_bytes / dur / 1e6,
            self_p50_us=pct_us(selfl, 0.50),
            self_p99_us=pct_us(selfl, 0.99),
            self_n=len(selfl),
            owl_p50_us=pct_us(owl, 0.50),
            owl_p99_us=pct_us(owl, 0.99),
            owl_n=len(owl),
            samples_dropped=rx.dropped_samples,
            total_deliv=rx.total_deliv,
            expected_total=expected,
            fins=len(rx.fin),
            complete=int(complete),
            missing=missing,
            fifo_errors=rx.fifo_errors,
            bad=rx.bad,
            order_hash=rx.order_hash(),
            config_changes_in_window=rx.config_changes_in_window,
            recv_batches=rx.batches,
            mean_batch=rx.total_deliv / rx.batches if rx.batches else 0.0,
            py_main_thread_cpu_s=thread_ns() / 1e9,
            py_recv_many_cpu_s=rx.cpu_recv_ns / 1e9,
            py_take_cpu_s=rx.cpu_take_ns / 1e9,
            py_recv_many_ns_per_msg=rx.cpu_recv_ns / rx.total_deliv if rx.total_deliv else 0.0,
            py_take_ns_per_msg=rx.cpu_take_ns / rx.total_deliv if rx.total_deliv else 0.0,
        )
        if s0 is not None and s1 is not None:
            cpu = s1.cpu - s0.cpu
            b, t = s1.sys[0] - s0.sys[0], s1.sys[1] - s0.sys[1]
            j.update(
                process_cpu_s=cpu,
                process_cpu_pct=100.0 * cpu / dur,
                sys_busy_pct=100.0 * b / t if t > 0 else None,
                win_udp_rcvbuf_errors=s1.udp[0] - s0.udp[0],
                win_udp_in_errors=s1.udp[1] - s0.udp[1],
            )
        ok = (
            complete
            and missing == 0
            and rx.fifo_errors == 0
            and rx.bad == 0
            and rx.config_changes_in_window == 0
        )
        ok = finish(a, node, h, rx, me, j, s0 and s0.stats, s1 and s1.stats) and ok
    else:
        rtt: list[int] = []
        c0 = cpu_s()
        tl0 = mono_ns()
        deadline = tl0 + int(a.drain_timeout * 1e9) + a.count * 10_000_000
        complete = True
        if sending:
            buf = payload(a.size)
            for i in range(a.lat_warmup + a.count):
                ts = mono_ns()
                HDR.pack_into(buf, 0, MAGIC, K_LAT, me, i, ts, 0)
                send_until(h, bytes(buf), deadline)
                if not pump(h, rx, far, deadline, lambda r, i=i: r.lat_seen == i, a.batch):
                    complete = False
                    break
                if i >= a.lat_warmup:
                    rtt.append(mono_ns() - ts)
            send_until(h, HDR.pack(MAGIC, K_FIN, me, 0, mono_ns(), len(rtt)), deadline)
        complete = pump(h, rx, far, deadline, lambda r: len(r.fin) >= senders, a.batch) and (
            complete
        )
        elapsed = (mono_ns() - tl0) / 1e9
        cpu = cpu_s() - c0
        mean = sum(rtt) / len(rtt) / 1000.0 if rtt else 0.0
        rtt.sort()
        j.update(
            count=len(rtt),
            warmup=a.lat_warmup,
            rtt_mean_us=mean,
            rtt_min_us=pct_us(rtt, 0.0),
            rtt_p50_us=pct_us(rtt, 0.50),
            rtt_p90_us=pct_us(rtt, 0.90),
            rtt_p99_us=pct_us(rtt, 0.99),
            rtt_p999_us=pct_us(rtt, 0.999),
            rtt_max_us=pct_us(rtt, 1.0),
            lat_deliv=rx.total_deliv,
            fins=len(rx.fin),
            complete=int(complete),
            bad=rx.bad,
            elapsed_s=elapsed,
            process_cpu_s=cpu,
        )
        ok = complete and rx.bad == 0
        ok = finish(a, node, h, rx, me, j, None, None) and ok
    j["ok"] = int(ok)
    text = to_json(j)
    if a.out:
        with open(a.out, "w") as f:
            f.write(text)
    else:
        sys.stdout.write(text)
    return ok


def to_json(j: dict) -> str:
    """One line, no spaces (the script reads it with sed), floats to 3 decimals."""

    def val(v: object) -> object:
        if isinstance(v, float):
            return round(v, 3) if v == v and abs(v) != float("inf") else None
        return v

    return json.dumps({k: val(v) for k, v in j.items()}, separators=(",", ":")) + "\n"


def main() -> int:
    a = parse_args(sys.argv[1:])
    if a.keygen is not None:
        evs.keygen(a.keygen)
        return 0
    try:
        return 0 if run(a) else 3
    except (evs.EvsError, RuntimeError, OSError) as e:
        print(f"py_bench.py: {e}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
