#!/usr/bin/env bash
# Runs every test of evs-rs: formatting and lints, the Rust unit, property and scenario tests,
# and a batch of random deterministic-simulation seeds checked by the EVS oracle.
# Exits non-zero at the first failing step. SIM_SEEDS overrides the seed range (default 0..500).
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy (all targets, warnings are errors)"
cargo clippy --workspace --all-targets --release -- -D warnings

step "cargo test (unit, property and scenario tests)"
cargo test --workspace --release 2>&1 | tee /tmp/evs-cargo-test.log
grep -E '^test result:' /tmp/evs-cargo-test.log | awk '{p+=$4; f+=$6} END {printf "cargo test summary: %d passed, %d failed\n", p, f}'

step "deterministic simulation: seeds ${SIM_SEEDS:-0..500}, 2-9 processors, every fault kind"
cargo run --release -q -p totem-sim -- --seeds "${SIM_SEEDS:-0..500}"
step "deterministic simulation, Accelerated Ring: the same seeds with accelerated_window 1..=max_messages"
cargo run --release -q -p totem-sim -- --seeds "${SIM_SEEDS:-0..500}" --accelerated
step "deterministic simulation, long runs: connectivity faults held for tens of seconds, S1-S3 checked while each lasts (seeds ${SIM_LONG_SEEDS:-0..40})"
cargo run --release -q -p totem-sim -- --seeds "${SIM_LONG_SEEDS:-0..40}" --long
cargo run --release -q -p totem-sim -- --seeds "${SIM_LONG_SEEDS:-0..40}" --long --accelerated
step "deterministic simulation with the service engine: handles open, close, join, leave and send to groups; G1-G4 checked besides the EVS properties (seeds ${SIM_SEEDS:-0..500}, both modes)"
cargo run --release -q -p totem-sim -- --seeds "${SIM_SEEDS:-0..500}" --groups
cargo run --release -q -p totem-sim -- --seeds "${SIM_SEEDS:-0..500}" --groups --accelerated

# ---- Python package -------------------------------------------------------------------------
# A virtualenv of its own (.venv, reused between runs) with the package installed editable by
# maturin (release build of rust/evs-py) and the test tools; PYTHON picks the interpreter.
step "python: build and install the package (maturin, release) into .venv"
PY="${PYTHON:-python3}"
[ -x .venv/bin/python ] || "$PY" -m venv .venv
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q -e ".[test]"

step "python: ruff, mypy --strict, stubtest of the native module"
.venv/bin/ruff check python tests/python tests/netns examples benches
.venv/bin/ruff format --check python tests/python tests/netns examples benches
.venv/bin/mypy --strict python/evs
.venv/bin/python -m mypy.stubtest evs._evs

step "python: pytest"
.venv/bin/python -m pytest -q tests/python

# ---- the abi3 wheel on the oldest and newest interpreters we support -----------------------
# The package is one abi3 wheel for CPython >= 3.9. The tests above run on .venv's interpreter;
# here the built wheel is installed into a venv of Python 3.9 and of 3.13 (when the machine has
# them, under pyenv or in /usr) and the tests not marked netns run again there.
step "python: the abi3 wheel on Python 3.9 and 3.13"
.venv/bin/python -m pip install -q maturin
rm -rf target/wheels
.venv/bin/maturin build --release -q -o target/wheels
for v in 3.9 3.13; do
  py=""
  for cand in "$HOME"/.pyenv/versions/"$v".*/bin/python"$v" /usr/bin/python"$v" /usr/local/bin/python"$v"; do
    if [ -x "$cand" ]; then py=$cand; break; fi
  done
  if [ -z "$py" ]; then
    echo "no python$v on this machine: skipped"
    continue
  fi
  venv=target/venv-py$v
  rm -rf "$venv"
  "$py" -m venv "$venv"
  "$venv/bin/python" -m pip install -q --upgrade pip
  "$venv/bin/python" -m pip install -q target/wheels/*.whl "pytest>=8" "pytest-timeout>=2" "hypothesis>=6.100"
  # From outside the checkout, so that the installed wheel is what `import evs` finds.
  (cd target && "../$venv/bin/python" -c 'import evs, sys; print("evs", evs.__version__, "from", evs.__file__, "on", sys.version.split()[0])')
  "$venv/bin/python" -m pytest -q -p no:cacheprovider -m "not netns" tests/python
done
