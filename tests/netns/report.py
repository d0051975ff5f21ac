"""Prints the RELIABILITY.md tables from the scenarios' figures (target/netns/reliability.json):
the fault scenarios (tests/python/test_netns_scenarios.py), then the partial-connectivity ones
(tests/python/test_netns_partial.py, entries with ``"kind": "partial"``).

python -m tests.netns.report [path/to/reliability.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.netns.harness import REPO

RESULTS = Path(REPO) / "target" / "netns" / "reliability.json"

ORDER = ["loss10", "crash", "partition_3_2", "one_way", "restart", "link_down", "wrong_key"]


def record(name: str, entry: dict[str, Any]) -> None:
    """Merges one scenario's figures into ``target/netns/reliability.json`` under ``name``."""
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    data: dict[str, Any] = {}
    if RESULTS.exists():
        try:
            data = json.loads(RESULTS.read_text())
        except json.JSONDecodeError:
            data = {}
    data[name] = entry
    RESULTS.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


def fault_cell(e: dict[str, Any]) -> str:
    parts = []
    for f in e["fault_times"]:
        if f["kind"] in ("loss",) and f.get("pct") == 0:
            label = "loss off"
        elif f["kind"] == "loss":
            label = f"loss {f.get('pct')}% on"
        else:
            label = f["kind"].replace("_", " ")
        if f["first_regular_s"] is None:
            parts.append(f"{label}: none")
        else:
            parts.append(f"{label}: {f['first_regular_s']:.2f} / {f['all_regular_s']:.2f} s")
    bound = (e["token_ms"] + e["consensus_ms"]) / 1000
    return "; ".join(parts) + f" (bound {bound:.1f} s)"


def table(data: dict[str, Any]) -> str:
    rows = [
        "| scenario | nodes | faults | messages sent | delivered (deliveries) | lost | "
        "violations | fault -> new regular configuration, first / all nodes "
        "(vs token + consensus) | latency p50 / max (s) | retransmits dropped as "
        "sender mismatch | run (s) |",
        "|---|---:|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    data = {n: e for n, e in data.items() if e.get("kind") != "partial"}
    names = [n for n in ORDER if n in data] + sorted(n for n in data if n not in ORDER)
    for n in names:
        e = data[n]
        rows.append(
            f"| {n} | {e['nodes']} | {e['faults'].replace('|', chr(92) + '|')} | "
            f"{e['messages_sent']:,} | "
            f"{e['messages_delivered']:,} ({e['deliveries']:,}) | {e['lost']} | "
            f"{e['violations']} | {fault_cell(e)} | {e.get('latency_p50_s')} / "
            f"{e.get('latency_max_s')} | {e.get('sender_mismatch_rejected', '-')} | "
            f"{e['duration_s']} |"
        )
    return "\n".join(rows)


PARTIAL_ORDER = ["cut_1_to_2", "cut_all_to_1", "cut_1_to_all", "cut_1_2_both", "cut_2_to_1",
                 "mtu_black_hole"]  # fmt: skip


def _per_host(values: dict[str, Any], fmt: Any) -> str:
    return ", ".join(fmt(values[h]) for h in sorted(values, key=int))


def _ms(x: float | None) -> str:
    return "-" if x is None else f"{x * 1000:.0f}"


def partial_table(data: dict[str, Any]) -> str:
    """One row per partial-connectivity scenario: what the observation window showed."""
    rows = [
        "| scenario | cut (held) | regular configurations in the window, hosts 1-5 | "
        "own delivery p50 / p99 / max (ms), hosts 1-5 | own messages sent in the window / "
        "not delivered | last configuration after the cut (s) | heal -> one ring (s) | "
        "lost | violations | run (s) |",
        "|---|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    parts = {n: e for n, e in data.items() if e.get("kind") == "partial"}
    names = [n for n in PARTIAL_ORDER if n in parts] + sorted(
        n for n in parts if n not in PARTIAL_ORDER
    )
    for n in names:
        e = parts[n]
        own = e["own_delivery"]
        lat = "; ".join(
            f"{_ms(own[h]['p50_s'])} / {_ms(own[h]['p99_s'])} / {_ms(own[h]['max_s'])}"
            for h in sorted(own, key=int)
        )
        sent = sum(own[h]["sent"] for h in own)
        missing = sum(own[h]["undelivered"] for h in own)
        settled = e["last_config_after_cut_s"]
        rows.append(
            f"| {n} | {e['cut']} ({e['held_s']:.0f} s; window {e['window_s']:.0f} s from "
            f"+{e['settle_s']:.0f} s) | {_per_host(e['configs_in_window'], str)} | {lat} | "
            f"{sent:,} / {missing} | {'-' if settled is None else f'{settled:.1f}'} | "
            f"{e['heal_to_one_ring_s']:.2f} | {e['lost']} | {e['violations']} | "
            f"{e['duration_s']} |"
        )
    return "\n".join(rows)


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0]) if args else Path(REPO) / "target" / "netns" / "reliability.json"
    data = json.loads(path.read_text())
    print(table(data))
    if any(e.get("kind") == "partial" for e in data.values()):
        print()
        print(partial_table(data))
    return 0


if __name__ == "__main__":
    sys.exit(main())
