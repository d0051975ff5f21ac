"""The measuring scripts of benches/ that need network namespaces still run on a clean
checkout: each is run briefly and its output checked for the figures BENCHMARKS.md quotes.

    sudo .venv/bin/python -m pytest tests/python/test_bench_scripts.py
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from tests.netns.harness import missing_requirements

ROOT = Path(__file__).resolve().parents[2]
_why = missing_requirements()
pytestmark = [
    pytest.mark.netns,
    pytest.mark.slow,
    pytest.mark.skipif(_why is not None, reason=f"bench scripts: {_why}"),
    pytest.mark.timeout(300),
]


@pytest.mark.skipif(shutil.which("gcc") is None, reason="ring_floor.c needs gcc")
def test_ring_floor_prints_a_rotation_time_per_ring_and_size(tmp_path: Path) -> None:
    p = subprocess.run(
        ["bash", str(ROOT / "benches" / "ring_floor.sh")],
        env={"PATH": "/usr/sbin:/usr/bin:/sbin:/bin", "NODES": "2 3", "SIZES": "64 1400",
             "COUNT": "300", "BIN": str(tmp_path / "ring-floor")},
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    rows = re.findall(
        r"^nodes (\d+) size (\d+) rotations 300 "
        r"p50 ([\d.]+) p90 ([\d.]+) p99 ([\d.]+) max ([\d.]+) us$",
        p.stdout,
        re.M,
    )
    assert [(n, s) for n, s, *_ in rows] == [("2", "64"), ("2", "1400"), ("3", "64"), ("3", "1400")]
    for _, _, p50, p90, p99, mx in rows:
        assert 0 < float(p50) <= float(p90) <= float(p99) <= float(mx)
    # Its namespaces are gone again.
    left = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert "evsrf-" not in left


def test_idle_cpu_measures_every_node_of_a_formed_ring() -> None:
    p = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "idle_cpu.py"), "--nodes", "3",
         "--seconds", "2", "--settle", "1", "--app", "lib"],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    assert "app lib, timers default, 3 nodes" in p.stdout
    rows = re.findall(r"^\| (\d) \| ([\d.]+) \|$", p.stdout, re.M)
    assert [n for n, _ in rows] == ["1", "2", "3"]
    # Idle: every node well under one CPU, and each did some work (the token goes round).
    assert all(0 < float(pct) < 50 for _, pct in rows), p.stdout


def test_netns_scale_reports_formation_crash_and_newcomer_times() -> None:
    p = subprocess.run(
        [sys.executable, str(ROOT / "benches" / "netns_scale.py"), "3"],
        capture_output=True, text=True, timeout=240,
    )  # fmt: skip
    assert p.returncode == 0, p.stdout + p.stderr
    rows = re.findall(r"^\| 3 \| ([\d.]+) \| ([\d.]+) \| ([\d.]+) \|$", p.stdout, re.M)
    assert len(rows) == 1, p.stdout
    simultaneous, crash, newcomer = (float(x) for x in rows[0])
    # A ring forms in well under the token timeout; a crash costs token + consensus (2.2 s, counted
    # from the last token seen, which may be a little before the kill).
    assert 0 < simultaneous < 1.0 and 0 < newcomer < 1.0, p.stdout
    assert 2.0 <= crash < 3.5, p.stdout
    assert "lost 0" in p.stdout and "violations 0" in p.stdout
