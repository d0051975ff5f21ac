"""Real hosts under faults: N EVS nodes, one per network namespace, on one bridge.

The topology is the one of ``benches/run_node_bench.sh`` with its own names so the two never
meet: namespace ``<prefix>-br`` holds bridge ``br0`` (multicast snooping and STP off) and one
port ``p<i>`` per host; host ``i`` is namespace ``<prefix>-h<i>`` with veth ``eth0`` at
``<subnet>.<i>/24`` and a ``224.0.0.0/4`` route. Nothing is added to, or routed to, the root
namespace. Every host runs ``tests/netns/worker.py`` (one ``evs.Node``, multicast, crypto on
with a shared key unless asked otherwise), which sends throughout and writes a JSON-lines trace.

Faults, each logged with its wall-clock time in :attr:`Cluster.faults` (the traces use the same
clock):

* ``set_loss(i, pct)``: an nftables input rule in host ``i`` drops ``pct`` % of UDP at random
  (``numgen random``), its own address exempt (its multicasts loop back through the input hook);
* ``partition(a, b, one_way=False)``: host sets ``a`` and ``b`` drop each other's packets by
  source address (one way: only ``a`` drops what comes from ``b``); ``heal()`` ends it;
* ``cut(links)``: directed links ``(a, b)``, each ``a -> b``: host ``b`` drops everything from
  ``a`` (one-way and non-transitive connectivity); ``heal()`` ends it too;
* ``black_hole(i, max_len)``: host ``i`` drops the UDP datagrams to the node port from the others
  whose IP length exceeds ``max_len`` (an MTU black hole: small packets pass, big ones vanish);
  ``black_hole(i, None)`` ends it;
* ``link_down(i)`` / ``link_up(i)``: the bridge port of host ``i`` (a pulled cable);
* ``crash(i)``: ``kill -9`` of the worker; ``restart(i)``: the same node id, a new incarnation;
* ``start(i, wrong_key=True)``: a host whose key differs from everyone else's.

Cleanup (processes by pid, nft tables, namespaces) runs on leaving the ``with`` block, at exit,
and on SIGINT/SIGTERM, and is idempotent; a new :class:`Cluster` first removes leftovers of an
earlier run with the same prefix (namespaces named ``<prefix>-*``; worker pids it recorded in
its work directory, only while their command line still names that directory).

By hand (root)::

    sudo .venv/bin/python -m tests.netns.harness --hosts 5 --loss 10 --seconds 30
"""

from __future__ import annotations

import argparse
import atexit
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]
WORKER = REPO / "tests" / "netns" / "worker.py"
DEFAULT_PREFIX = "evsft"
DEFAULT_SUBNET = "10.213.10"
DEFAULT_MCAST = "239.192.213.10"
PORT = 5405


def missing_requirements() -> str | None:
    """Why the harness cannot run here, or None."""
    if os.geteuid() != 0:
        return "needs root (network namespaces, nftables)"
    for tool in ("ip", "nft"):
        if shutil.which(tool) is None:
            return f"needs `{tool}` ({'iproute2' if tool == 'ip' else 'nftables'})"
    return None


def run(
    *cmd: str, check: bool = True, input: str | None = None
) -> subprocess.CompletedProcess[str]:
    p = subprocess.run(cmd, capture_output=True, text=True, input=input, timeout=60)
    if check and p.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {p.stderr.strip()}")
    return p


def netns_list() -> list[str]:
    out = run("ip", "netns", "list", check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.strip()]


def read_trace(path: Path) -> list[dict[str, Any]]:
    """The complete lines of a trace (a crash may leave a partial last line: it is ignored)."""
    events = []
    try:
        text = path.read_text()
    except FileNotFoundError:
        return []
    for line in text.splitlines():
        try:
            events.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return events


class Worker:
    """One incarnation of a node on a host."""

    def __init__(
        self, host: int, inc: int, proc: subprocess.Popen[bytes], trace: Path, wrong_key: bool
    ) -> None:
        self.host = host
        self.inc = inc
        self.proc = proc
        self.trace = trace
        self.wrong_key = wrong_key
        self.crashed = False

    @property
    def alive(self) -> bool:
        return self.proc.poll() is None

    def events(self) -> list[dict[str, Any]]:
        return read_trace(self.trace)


class Cluster:
    """``hosts`` namespaces on a bridge, a worker per host, faults and cleanup.

    ``settings`` are integer node settings passed to every worker (``token``, ``consensus``,
    ...). Defaults are small timers so scenarios stay short: token 1000 ms,
    token_coefficient 0 (so the effective token is 1000 ms whatever the ring size),
    consensus 1200 ms (1.2 x token, Corosync's default ratio).
    """

    def __init__(
        self,
        hosts: int = 5,
        *,
        prefix: str = DEFAULT_PREFIX,
        subnet: str = DEFAULT_SUBNET,
        mcast: str = DEFAULT_MCAST,
        workdir: str | os.PathLike[str] | None = None,
        rate: float = 20.0,
        size: int = 200,
        safe_every: int = 5,
        big_every: int = 0,
        big_size: int = 0,
        poisson: bool = False,
        crypto: str = "aes256gcm",
        marker: str = "EVSFT-MARKER",
        python: str = sys.executable,
        cluster_name: str | None = None,
        **settings: int,
    ) -> None:
        if not 1 <= hosts <= 200:
            raise ValueError("hosts must be 1..200")
        self.n = hosts
        self.prefix = prefix
        self.subnet = subnet
        self.mcast = mcast
        self.workdir = Path(workdir or f"/tmp/{prefix}-work").resolve()
        self.rate = rate
        self.size = size
        self.safe_every = safe_every
        self.big_every = big_every
        self.big_size = big_size
        self.poisson = poisson
        self.crypto = crypto
        self.marker = marker
        self.python = python
        self.cluster_name = cluster_name or f"{prefix}-{os.getpid()}-{int(time.time())}"
        self.settings = {"token": 1000, "token_coefficient": 0, "consensus": 1200, **settings}
        self.workers: list[Worker] = []
        self.faults: list[dict[str, Any]] = []
        self.loss: dict[int, int] = {}
        self.blocked: dict[int, set[int]] = {}
        self.max_len: dict[int, int | None] = {}
        self.links_down: set[int] = set()
        self._cleaned = True
        self._old_handlers: dict[int, Any] = {}

    # ---------------------------------------------------------------- names
    @property
    def bridge_ns(self) -> str:
        return f"{self.prefix}-br"

    def ns(self, i: int) -> str:
        return f"{self.prefix}-h{i}"

    def addr(self, i: int) -> str:
        return f"{self.subnet}.{i}"

    @property
    def pidfile(self) -> Path:
        return self.workdir / "pids"

    # ---------------------------------------------------------------- lifecycle
    def __enter__(self) -> Cluster:
        self.setup()
        return self

    def __exit__(self, *exc: object) -> None:
        self.cleanup()

    def setup(self) -> None:
        why = missing_requirements()
        if why:
            raise RuntimeError(why)
        self.cleanup_leftovers()
        self._cleaned = False
        atexit.register(self.cleanup)
        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old_handlers[sig] = signal.getsignal(sig)
            signal.signal(sig, self._on_signal)
        self.workdir.mkdir(parents=True, exist_ok=True)
        (self.workdir / "traces").mkdir(exist_ok=True)
        for f in (self.workdir / "traces").glob("*.jsonl"):
            f.unlink()
        self.pidfile.write_text("")
        self.key = self.workdir / "authkey"
        self.wrong_key_path = self.workdir / "authkey-wrong"
        import evs  # the harness process needs the package only for keygen

        evs.keygen(str(self.key), force=True)
        evs.keygen(str(self.wrong_key_path), force=True)
        self._net_up()

    def _on_signal(self, signum: int, frame: Any) -> None:
        self.cleanup()
        old = self._old_handlers.get(signum)
        if callable(old):
            old(signum, frame)
        raise SystemExit(128 + signum)

    def cleanup_leftovers(self) -> None:
        """Whatever an earlier run with this prefix left: its recorded workers (only while
        their command line names our work directory, against pid reuse) and namespaces."""
        if self.pidfile.exists():
            for line in self.pidfile.read_text().split():
                with contextlib.suppress(ValueError):
                    self._kill_if_ours(int(line))
        for ns in netns_list():
            if ns.startswith(f"{self.prefix}-"):
                run("ip", "netns", "del", ns, check=False)

    def _kill_if_ours(self, pid: int) -> None:
        try:
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            return
        if str(self.workdir).encode() in cmd:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def cleanup(self) -> None:
        """Stops every worker (TERM, then KILL), deletes nft tables and namespaces. Idempotent."""
        if self._cleaned:
            return
        self._cleaned = True
        live = [w for w in self.workers if w.alive]
        for w in live:
            with contextlib.suppress(ProcessLookupError):
                w.proc.terminate()
        deadline = time.monotonic() + 10
        for w in live:
            try:
                w.proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                w.proc.kill()
                with contextlib.suppress(subprocess.TimeoutExpired):
                    w.proc.wait(5)
        for i in range(1, self.n + 1):
            run(
                "ip",
                "netns",
                "exec",
                self.ns(i),
                "nft",
                "delete",
                "table",
                "ip",
                self.prefix,
                check=False,
            )
        for ns in [self.bridge_ns, *(self.ns(i) for i in range(1, self.n + 1))]:
            if ns in netns_list():
                run("ip", "netns", "del", ns, check=False)
        for sig, old in self._old_handlers.items():
            with contextlib.suppress(ValueError, TypeError):  # not the main thread / not ours
                signal.signal(sig, old)
        self._old_handlers.clear()
        with contextlib.suppress(Exception):
            atexit.unregister(self.cleanup)

    # ---------------------------------------------------------------- network
    def _net_up(self) -> None:
        br = self.bridge_ns
        run("ip", "netns", "add", br)
        run(
            "ip",
            "-n",
            br,
            "link",
            "add",
            "br0",
            "type",
            "bridge",
            "mcast_snooping",
            "0",
            "stp_state",
            "0",
            "forward_delay",
            "0",
        )
        run(
            "ip",
            "netns",
            "exec",
            br,
            "sysctl",
            "-q",
            "-w",
            "net.ipv6.conf.all.disable_ipv6=1",
            "net.ipv6.conf.default.disable_ipv6=1",
            check=False,
        )
        run("ip", "-n", br, "link", "set", "lo", "up")
        run("ip", "-n", br, "link", "set", "br0", "up")
        for i in range(1, self.n + 1):
            ns = self.ns(i)
            run("ip", "netns", "add", ns)
            run(
                "ip",
                "link",
                "add",
                "eth0",
                "netns",
                ns,
                "type",
                "veth",
                "peer",
                "name",
                f"p{i}",
                "netns",
                br,
            )
            run("ip", "-n", br, "link", "set", f"p{i}", "master", "br0", "multicast", "on", "up")
            run(
                "ip",
                "netns",
                "exec",
                ns,
                "sysctl",
                "-q",
                "-w",
                "net.ipv6.conf.all.disable_ipv6=1",
                "net.ipv6.conf.default.disable_ipv6=1",
                check=False,
            )
            run("ip", "-n", ns, "link", "set", "lo", "up")
            run("ip", "-n", ns, "link", "set", "eth0", "multicast", "on", "up")
            run("ip", "-n", ns, "addr", "add", f"{self.addr(i)}/24", "dev", "eth0")
            run("ip", "-n", ns, "route", "add", "224.0.0.0/4", "dev", "eth0")
            self.loss[i] = 0
            self.blocked[i] = set()
            self.max_len[i] = None
            self._nft_apply(i)
        deadline = time.monotonic() + 20
        for i in range(1, self.n + 1):
            while "state UP" not in run("ip", "-n", self.ns(i), "link", "show", "eth0").stdout:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"eth0 of {self.ns(i)} never came up")
                time.sleep(0.05)

    def _nft_apply(self, i: int) -> None:
        """Rewrites host i's input filter from its loss and blocked sources."""
        t = self.prefix
        rules = []
        if self.blocked[i]:
            srcs = ", ".join(self.addr(j) for j in sorted(self.blocked[i]))
            rules.append(f"add rule ip {t} input ip saddr {{ {srcs} }} drop")
        if self.max_len[i] is not None:
            rules.append(
                f"add rule ip {t} input ip saddr != {self.addr(i)} udp dport {PORT} "
                f"ip length > {self.max_len[i]} drop"
            )
        if self.loss[i]:
            rules.append(
                f"add rule ip {t} input ip saddr != {self.addr(i)} meta l4proto udp "
                f"numgen random mod 100 < {self.loss[i]} drop"
            )
        script = "\n".join(
            [
                f"add table ip {t}",
                f"add chain ip {t} input {{ type filter hook input priority 0; policy accept; }}",
                f"flush chain ip {t} input",
                *rules,
            ]
        )
        run("ip", "netns", "exec", self.ns(i), "nft", "-f", "-", input=script + "\n")

    def nft_ruleset(self, i: int) -> str:
        return run("ip", "netns", "exec", self.ns(i), "nft", "list", "ruleset").stdout

    def _fault(self, kind: str, t: float | None = None, **detail: Any) -> None:
        """Records a fault; ``t`` is when applying it began (the first rule can take effect,
        and the ring react, before the last host's rules are in place)."""
        self.faults.append({"t": time.time() if t is None else t, "kind": kind, **detail})

    def set_loss(self, hosts: int | Iterable[int], pct: int) -> None:
        """Random loss of ``pct`` % of the UDP each host receives (0 ends it)."""
        t0 = time.time()
        if not 0 <= pct <= 100:
            raise ValueError("pct must be 0..100")
        hs = [hosts] if isinstance(hosts, int) else list(hosts)
        for i in hs:
            self.loss[i] = pct
            self._nft_apply(i)
        self._fault("loss", t=t0, hosts=hs, pct=pct)

    def partition(self, a: Iterable[int], b: Iterable[int], *, one_way: bool = False) -> None:
        """Hosts in ``a`` stop hearing hosts in ``b``; unless ``one_way``, also the reverse."""
        t0 = time.time()
        a, b = sorted(a), sorted(b)
        for i in a:
            self.blocked[i] |= set(b)
            self._nft_apply(i)
        if not one_way:
            for j in b:
                self.blocked[j] |= set(a)
                self._nft_apply(j)
        self._fault("partition_one_way" if one_way else "partition", t=t0, a=a, b=b)

    def cut(self, links: Iterable[tuple[int, int]]) -> None:
        """Cuts directed links: for each ``(a, b)``, host ``b`` stops hearing host ``a``
        (``a -> b`` is cut; ``b -> a`` works unless listed too)."""
        t0 = time.time()
        ls = sorted(set(links))
        for a, b in ls:
            if a == b:
                raise ValueError(f"link {a} -> {b}: a host always hears itself")
            self.blocked[b].add(a)
        for b in sorted({b for _, b in ls}):
            self._nft_apply(b)
        self._fault("cut", t=t0, links=[list(x) for x in ls])

    def black_hole(self, i: int, max_len: int | None) -> None:
        """Host ``i`` drops the node-port UDP datagrams of the others longer than ``max_len``
        bytes (IP length), or, with None, no longer does."""
        t0 = time.time()
        self.max_len[i] = max_len
        self._nft_apply(i)
        self._fault("black_hole", t=t0, host=i, max_len=max_len)

    def heal(self) -> None:
        """Ends every partition (loss rules stay)."""
        t0 = time.time()
        for i in range(1, self.n + 1):
            if self.blocked[i]:
                self.blocked[i] = set()
                self._nft_apply(i)
        self._fault("heal", t=t0)

    def link_down(self, i: int) -> None:
        t0 = time.time()
        run("ip", "-n", self.bridge_ns, "link", "set", f"p{i}", "down")
        self.links_down.add(i)
        self._fault("link_down", t=t0, host=i)

    def link_up(self, i: int) -> None:
        t0 = time.time()
        run("ip", "-n", self.bridge_ns, "link", "set", f"p{i}", "up")
        self.links_down.discard(i)
        self._fault("link_up", t=t0, host=i)

    # ---------------------------------------------------------------- workers
    def start(
        self,
        i: int,
        *,
        wrong_key: bool = False,
        crypto: str | None = None,
        start_at: float | None = None,
    ) -> Worker:
        """Starts a worker on host i: node id i, the next incarnation of that host. With
        ``start_at`` (a ``time.time()`` value), its node is created at that moment."""
        inc = 1 + sum(1 for w in self.workers if w.host == i)
        trace = self.workdir / "traces" / f"h{i}-{inc}.jsonl"
        crypto = crypto or self.crypto
        cmd = [
            "ip", "netns", "exec", self.ns(i), self.python, str(WORKER),
            "--node-id", str(i), "--incarnation", str(inc), "--bind", self.addr(i),
            "--port", str(PORT), "--cluster", self.cluster_name, "--mcast", self.mcast,
            "--crypto", crypto, "--trace", str(trace), "--rate", str(self.rate),
            "--size", str(self.size), "--safe-every", str(self.safe_every),
            "--marker", self.marker,
        ]  # fmt: skip
        if self.big_every:
            cmd += ["--big-every", str(self.big_every), "--big-size", str(self.big_size)]
        if self.poisson:
            cmd.append("--poisson")
        if crypto != "none":
            cmd += ["--authkey", str(self.wrong_key_path if wrong_key else self.key)]
        if start_at is not None:
            cmd += ["--start-at", repr(start_at)]
        for k, v in self.settings.items():
            cmd += ["--set", f"{k}={v}"]
        err = open(self.workdir / f"h{i}-{inc}.err", "wb")  # noqa: SIM115 (kept by Popen)
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=err, start_new_session=True)
        err.close()
        with self.pidfile.open("a") as f:
            f.write(f"{proc.pid}\n")
        w = Worker(i, inc, proc, trace, wrong_key)
        self.workers.append(w)
        if inc > 1:
            self._fault("restart", host=i, inc=inc)
        elif wrong_key:
            self._fault("start_wrong_key", host=i)
        return w

    def start_all(
        self, hosts: Iterable[int] | None = None, *, start_at: float | None = None
    ) -> None:
        for i in hosts or range(1, self.n + 1):
            self.start(i, start_at=start_at)

    def current(self, i: int) -> Worker:
        return [w for w in self.workers if w.host == i][-1]

    def live(self) -> list[Worker]:
        """Workers running, crashed ones excluded."""
        return [w for w in self.workers if w.alive and not w.crashed]

    def crash(self, i: int) -> None:
        """kill -9 of host i's worker, under load."""
        w = self.current(i)
        w.crashed = True
        self._fault("crash", host=i, inc=w.inc)
        os.kill(w.proc.pid, signal.SIGKILL)
        w.proc.wait(10)

    def restart(self, i: int) -> Worker:
        return self.start(i)

    # ---------------------------------------------------------------- observation
    @staticmethod
    def last_regular(w: Worker) -> dict[str, Any] | None:
        last = None
        for ev in w.events():
            if ev["ev"] == "config" and ev["kind"] == "regular":
                last = ev
        return last

    def wait_ring(self, hosts: Iterable[int], timeout: float = 60.0) -> float:
        """Waits until the current workers of ``hosts`` all sit in one regular configuration
        whose members are exactly ``hosts``. Returns the wall time it was reached."""
        want = sorted(hosts)
        deadline = time.monotonic() + timeout
        while True:
            rings = []
            for i in want:
                w = self.current(i)
                if not w.alive:
                    raise RuntimeError(f"worker of host {i} exited: {self.stderr(w)}")
                last = self.last_regular(w)
                rings.append(None if last is None else (tuple(last["ring"]), last["members"]))
            if all(r is not None and r == rings[0] and r[1] == want for r in rings):
                return time.time()
            if time.monotonic() > deadline:
                raise TimeoutError(f"hosts {want} did not form one ring in {timeout} s: {rings}")
            time.sleep(0.2)

    def stderr(self, w: Worker) -> str:
        p = self.workdir / f"h{w.host}-{w.inc}.err"
        return p.read_text(errors="replace")[-2000:] if p.exists() else ""

    def stop(self, drain_timeout: float = 90.0) -> None:
        """Ends a run cleanly: every live worker stops sending (SIGUSR1), delivers all it sent,
        and waits until it has delivered the last message of every other live worker of its
        ring; then SIGTERM ("end" is the last trace line) and wait for exit."""
        live = self.live()
        for w in live:
            with contextlib.suppress(ProcessLookupError):
                os.kill(w.proc.pid, signal.SIGUSR1)
        deadline = time.monotonic() + drain_timeout
        settle_deadline = None
        while time.monotonic() < deadline:
            evs_by = {w: w.events() for w in live}
            if all(
                any(e["ev"] in ("drained", "drain_timeout") for e in evs) for evs in evs_by.values()
            ):
                # A worker that left the ring at the very end is not owed the others' last
                # messages, so settling is waited for, but not forever.
                if settle_deadline is None:
                    settle_deadline = time.monotonic() + 15
                if self._settled(evs_by) or time.monotonic() > settle_deadline:
                    break
            time.sleep(0.3)
        for w in live:
            with contextlib.suppress(ProcessLookupError):
                w.proc.terminate()
        for w in live:
            try:
                w.proc.wait(30)
            except subprocess.TimeoutExpired:
                w.proc.kill()
                w.proc.wait(10)

    @staticmethod
    def _settled(evs_by: dict[Worker, list[dict[str, Any]]]) -> bool:
        """Each live worker delivered the last message of each live worker on its ring."""
        last: dict[tuple[int, int], int] = {}
        ring: dict[Worker, Any] = {}
        for w, evs in evs_by.items():
            for e in evs:
                if e["ev"] == "quiesce":
                    last[(w.host, w.inc)] = e["last"]
                elif e["ev"] == "config" and e["kind"] == "regular":
                    ring[w] = (tuple(e["ring"]), tuple(e["members"]))
        for w, evs in evs_by.items():
            got = {tuple(e["id"]) for e in evs if e["ev"] == "deliver" and e.get("id")}
            for v in evs_by:
                if ring.get(v) != ring.get(w) or (v.host, v.inc) not in last:
                    continue
                k = last[(v.host, v.inc)]
                if k and (v.host, v.inc, k) not in got:
                    return False
        return True

    def capture(self, seconds: float, marker: str) -> dict[str, int]:
        """Counts, in the bridge namespace (every port), frames holding ``marker``."""
        out = subprocess.run(
            ["ip", "netns", "exec", self.bridge_ns, self.python,
             str(REPO / "tests" / "netns" / "capture.py"), "--seconds", str(seconds),
             "--marker", marker, "--port", str(PORT)],
            capture_output=True, text=True, timeout=seconds + 60, check=True,
        )  # fmt: skip
        result: dict[str, int] = json.loads(out.stdout)
        return result

    def traces(self) -> list[Path]:
        return [w.trace for w in self.workers]


@contextlib.contextmanager
def cluster(hosts: int = 5, **kw: Any) -> Iterator[Cluster]:
    c = Cluster(hosts, **kw)
    with c:
        yield c


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description="Run EVS nodes in network namespaces under faults and check the traces."
    )
    ap.add_argument("--hosts", type=int, default=5)
    ap.add_argument("--loss", type=int, default=0, help="random loss %% on every host")
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--rate", type=float, default=20)
    ap.add_argument("--crash", type=int, help="kill -9 this host half way")
    ap.add_argument("--partition", help="e.g. 1,2,3/4,5: partition for the middle third")
    ap.add_argument("--workdir")
    ap.add_argument("--prefix", default=DEFAULT_PREFIX)
    args = ap.parse_args(argv)
    why = missing_requirements()
    if why:
        print(f"harness: {why}", file=sys.stderr)
        return 2
    from tests.netns import checker

    with Cluster(args.hosts, rate=args.rate, workdir=args.workdir, prefix=args.prefix) as c:
        c.start_all()
        c.wait_ring(range(1, args.hosts + 1), timeout=120)
        print(f"ring of {args.hosts} formed; running {args.seconds} s", flush=True)
        if args.loss:
            c.set_loss(range(1, args.hosts + 1), args.loss)
        third = args.seconds / 3
        time.sleep(third)
        if args.crash:
            c.crash(args.crash)
        if args.partition:
            a, b = ([int(x) for x in side.split(",")] for side in args.partition.split("/"))
            c.partition(a, b)
        time.sleep(third)
        if args.partition:
            c.heal()
        time.sleep(third)
        if args.loss:
            c.set_loss(range(1, args.hosts + 1), 0)
        c.stop()
        report = checker.check_files(
            c.traces(),
            faults=c.faults,
            token_ms=c.settings["token"],
            consensus_ms=c.settings["consensus"],
        )
        print(report.summary())
        print(f"traces in {c.workdir / 'traces'}")
        return 0 if report.ok else 1


if __name__ == "__main__":
    sys.exit(main())
