"""Prints the RELIABILITY.md table from the scenarios' figures (target/netns/reliability.json).

python -m tests.netns.report [path/to/reliability.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from tests.netns.harness import REPO

ORDER = ["loss10", "crash", "partition_3_2", "one_way", "restart", "link_down", "wrong_key"]


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


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    path = Path(args[0]) if args else Path(REPO) / "target" / "netns" / "reliability.json"
    print(table(json.loads(path.read_text())))
    return 0


if __name__ == "__main__":
    sys.exit(main())
