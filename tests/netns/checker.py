"""The EVS checker for the traces of real node processes (``tests/netns/worker.py``).

The checking is done in Rust, next to the simulator's oracle: ``totem-sim check-trace``
(``rust/totem-sim/src/trace_check.rs``; its module docs say which properties are checked in
which form). This module only runs that command and hands its JSON report back, so the
network-namespace tests and ``tests.netns.harness`` read one checker's verdict.

The binary is ``target/release/totem-sim`` (``$CARGO_TARGET_DIR`` if set; CI builds it
before pytest). When it is missing, or older than a source file of ``rust/totem`` or
``rust/totem-sim``, it is built with ``cargo build --release -q -p totem-sim`` (a stale binary
is still used when cargo is not there, as under ``sudo``); ``EVS_TOTEM_SIM`` names another
binary.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[2]


class CheckerError(RuntimeError):
    """The checker could not run, or rejected its input (exit status 2)."""


def binary() -> Path:
    """The ``totem-sim`` binary, built first if it is missing."""
    env = os.environ.get("EVS_TOTEM_SIM")
    if env:
        return Path(env)
    target = Path(os.environ.get("CARGO_TARGET_DIR") or REPO / "target")
    path = target / "release" / "totem-sim"
    if path.exists() and not _stale(path):
        return path
    cargo = shutil.which("cargo") or str(Path.home() / ".cargo" / "bin" / "cargo")
    if not Path(cargo).exists():
        if path.exists():
            return path
        raise CheckerError(
            f"{path} is missing and cargo is not on PATH: build the checker with "
            "`cargo build --release -p totem-sim` (or set EVS_TOTEM_SIM)"
        )
    r = subprocess.run(
        [cargo, "build", "--release", "-q", "-p", "totem-sim"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    if r.returncode != 0 or not path.exists():
        raise CheckerError(f"`cargo build --release -p totem-sim` failed:\n{r.stderr}")
    return path


def _stale(path: Path) -> bool:
    """Whether a source the binary is built from changed after it."""
    built = path.stat().st_mtime
    for d in (REPO / "rust" / "totem", REPO / "rust" / "totem-sim"):
        for f in [d / "Cargo.toml", *d.glob("src/**/*.rs")]:
            if f.exists() and f.stat().st_mtime > built:
                return True
    return False


@dataclass
class Violation:
    prop: str
    process: str | None
    detail: str

    def __str__(self) -> str:
        who = f" [{self.process}]" if self.process else ""
        return f"{self.prop}{who}: {self.detail}"


@dataclass
class Report:
    violations: list[Violation]
    stats: dict[str, Any]
    fault_times: list[dict[str, Any]]
    text: str

    @property
    def ok(self) -> bool:
        return not self.violations and self.stats.get("lost", 0) == 0

    def by_property(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for v in self.violations:
            out[v.prop] = out.get(v.prop, 0) + 1
        return out

    def summary(self) -> str:
        return self.text


def check_files(
    paths: Iterable[str | Path],
    *,
    outsiders: Iterable[int] = (),
    faults: Sequence[dict[str, Any]] = (),
    token_ms: int = 1000,
    consensus_ms: int = 1200,
) -> Report:
    """Checks the trace files (or directories of ``*.jsonl``) together."""
    args = [str(binary()), "check-trace", "--json"]
    args += ["--token-ms", str(token_ms), "--consensus-ms", str(consensus_ms)]
    for n in outsiders:
        args += ["--outsider", str(n)]
    with tempfile.TemporaryDirectory(prefix="evs-check-") as tmp:
        if faults:
            f = Path(tmp) / "faults.json"
            f.write_text(json.dumps(list(faults)))
            args += ["--faults", str(f)]
        args += [str(p) for p in paths]
        r = subprocess.run(args, capture_output=True, text=True)
    if r.returncode not in (0, 1):
        raise CheckerError(f"totem-sim check-trace exited {r.returncode}: {r.stderr.strip()}")
    out = json.loads(r.stdout)
    return Report(
        violations=[Violation(v["property"], v["process"], v["detail"]) for v in out["violations"]],
        stats=out["stats"],
        fault_times=out["fault_times"],
        text=out["summary"],
    )
