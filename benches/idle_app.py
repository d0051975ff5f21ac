#!/usr/bin/env python3
"""The smallest real application, for ``benches/idle_cpu.py``: one node, one handle joined
to one group, and the main thread blocked in ``Handle.events()``. Prints every configuration
change as a JSON line (the same form as ``evs node --json``); SIGTERM ends it.

    python benches/idle_app.py --set node_id=1 --set bind=10.0.0.1 ...
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
from types import FrameType

import evs
from evs import _control


def main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE")
    a = ap.parse_args(argv)
    settings: dict[str, object] = {}
    for kv in a.set:
        key, _, value = kv.partition("=")
        settings[key] = int(value) if value.isdigit() else value

    def on_term(signum: int, frame: FrameType | None) -> None:
        raise SystemExit(0)

    signal.signal(signal.SIGTERM, on_term)
    node = evs.Node(**settings)
    try:
        h = evs.Handle(node)
        h.join("idle")
        for ev in h.events():
            if isinstance(ev, evs.ConfigChange):
                print(json.dumps(_control.event_to_json(ev)), flush=True)
    finally:
        node.shutdown()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
