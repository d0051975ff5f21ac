#!/usr/bin/env python3
"""Ring formation and crash handling of real node processes, against the ring's size.

For each N: N node processes (tests/netns/harness.py: one per network namespace on one bridge,
every node sending 20 messages/s, aes256gcm, the harness's timers: token 1000 ms,
token_coefficient 0, consensus 1200 ms). From the traces:

* simultaneous start: every process is launched first and told to create its node at the
  same wall-clock moment (``--start-at``); the time from that moment to the last node
  installing the ring of all N;
* crash to new ring: node N is killed with SIGKILL; the time from the kill to the moment the
  last survivor installed the ring of the N - 1 others (the token and consensus timeouts are
  2.2 s together);
* newcomer: node N is started again; the time from its ``start`` line (its node is up) to the
  moment the last node installed the ring of all N again.

Every run's traces must also pass the EVS checklist (``totem-sim check-trace``, run by
tests/netns/checker.py) with no lost message. Needs root, ``ip`` and ``nft``.

    sudo .venv/bin/python benches/netns_scale.py 3 8 16
"""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.netns import checker
from tests.netns.harness import Cluster, missing_requirements


def first_regular(events: list[dict[str, Any]], members: list[int], after: float) -> float | None:
    for ev in events:
        if (
            ev["ev"] == "config"
            and ev["kind"] == "regular"
            and ev["t"] >= after
            and sorted(ev["members"]) == members
        ):
            return float(ev["t"])
    return None


def run(n: int) -> dict[str, Any]:
    with Cluster(
        n, prefix="evssc", subnet="10.213.11", mcast="239.192.213.11", workdir=f"/tmp/evssc-{n}"
    ) as c:
        hosts = list(range(1, n + 1))
        # Time enough for every Python process to start and import evs before the moment.
        start_at = time.time() + 2.0 + 0.25 * n
        c.start_all(hosts, start_at=start_at)
        c.wait_ring(hosts, timeout=120)
        time.sleep(3)
        c.crash(n)
        crash_t = c.faults[-1]["t"]
        c.wait_ring(hosts[:-1], timeout=120)
        time.sleep(3)
        newcomer = c.restart(n)
        c.wait_ring(hosts, timeout=120)
        time.sleep(3)
        c.stop()
        events = {w: w.events() for w in c.workers}
        first = {w.host: events[w] for w in c.workers if w.inc == 1}
        current = {w.host: events[w] for w in c.workers if w is c.current(w.host)}
        came = next(ev["t"] for ev in events[newcomer] if ev["ev"] == "start")
        formed = [first_regular(first[h], hosts, 0.0) for h in hosts]
        recovered = [first_regular(first[h], hosts[:-1], crash_t) for h in hosts[:-1]]
        rejoined = [first_regular(current[h], hosts, came) for h in hosts]
        if None in formed or None in recovered or None in rejoined:
            raise RuntimeError(f"n={n}: a node never installed the expected ring")
        report = checker.check_files(
            c.traces(),
            faults=c.faults,
            token_ms=c.settings["token"],
            consensus_ms=c.settings["consensus"],
        )
        if report.violations or report.stats["lost"]:
            raise RuntimeError(f"n={n}: {report.summary()}")
        return {
            "n": n,
            "simultaneous_s": max(f for f in formed if f is not None) - start_at,
            "failure_s": max(r for r in recovered if r is not None) - crash_t,
            "newcomer_s": max(r for r in rejoined if r is not None) - came,
            "summary": report.summary(),
        }


def main(argv: list[str]) -> int:
    why = missing_requirements()
    if why:
        print(f"netns_scale.py: {why}", file=sys.stderr)
        return 2
    sizes = [int(a) for a in argv] or [3, 8, 16]
    rows = [run(n) for n in sizes]
    print("| nodes | simultaneous start to one ring (s) | crash to new ring (s) | newcomer (s) |")
    print("|---:|---:|---:|---:|")
    for r in rows:
        cells = [f"{r[k]:.3f}" for k in ("simultaneous_s", "failure_s", "newcomer_s")]
        print(f"| {r['n']} | {' | '.join(cells)} |")
    for r in rows:
        print(f"n={r['n']}: {r['summary']}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
