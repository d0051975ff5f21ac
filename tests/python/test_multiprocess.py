"""Three processes, each with its own evs.Node on 127.0.0.1/2/3, all sending at once: every
process delivers the same 10,002 messages in the same order."""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from pathlib import Path

import pytest

import evs
from support import PYTHON, child_env, free_port

PER_SENDER = 3334  # 10,002 messages in all
TIMEOUT = 150.0

pytestmark = [
    pytest.mark.filterwarnings("error"),
    pytest.mark.timeout(TIMEOUT + 60),
    pytest.mark.slow,
]


def read_line(p: subprocess.Popen[str], want: str, deadline: float) -> None:
    assert p.stdout is not None
    line = p.stdout.readline().strip()  # the child exits with an error past its deadline
    assert line == want, f"expected {want!r}, got {line!r} (exit code {p.poll()})"
    assert time.monotonic() < deadline


def test_three_processes_deliver_identical_complete_sequences(tmp_path: Path) -> None:
    key = tmp_path / "authkey"
    evs.keygen(str(key))
    conf = tmp_path / "cluster.json"
    conf.write_text(
        json.dumps(
            {
                "cluster_name": f"mp-{uuid.uuid4().hex[:8]}",
                "ports": {i: free_port(f"127.0.0.{i}") for i in (1, 2, 3)},
                "authkey": str(key),
                "per_sender": PER_SENDER,
                "timeout": TIMEOUT,
            }
        )
    )
    worker = str(Path(__file__).with_name("mp_worker.py"))
    outs = [tmp_path / f"delivered-{i}.txt" for i in (1, 2, 3)]
    procs: list[subprocess.Popen[str]] = []
    deadline = time.monotonic() + TIMEOUT + 30
    try:
        for i, out in zip((1, 2, 3), outs):
            procs.append(
                subprocess.Popen(
                    [PYTHON, worker, str(conf), str(i), str(out)],
                    stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE,
                    text=True,
                    env=child_env(),
                )
            )
        for p in procs:
            read_line(p, "joined", deadline)
        for p in procs:
            read_line(p, "done", deadline)
        for p in procs:
            assert p.stdin is not None
            p.stdin.close()
        for p in procs:
            assert p.wait(timeout=30) == 0
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
            for pipe in (p.stdin, p.stdout):
                if pipe is not None:
                    pipe.close()
    sequences = [out.read_text().splitlines() for out in outs]
    assert len(sequences[0]) == 3 * PER_SENDER
    assert sequences[0] == sequences[1] == sequences[2]
    for i in (1, 2, 3):  # complete, and each sender's messages in the order it sent them
        mine = [line for line in sequences[0] if line.startswith(f"{i} ")]
        assert mine == [f"{i} {i}:{k}" for k in range(PER_SENDER)]
