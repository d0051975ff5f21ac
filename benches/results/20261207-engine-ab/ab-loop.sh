#!/usr/bin/env bash
# A/B of node-bench: main (997621c) vs the engine refactor (8650bdd), alternating in one loop.
cd /work/main
for round in 1 2 3 4 5 6 7 8; do
  for v in main engine; do
    BIN=/tmp/eng-ab/node-bench-$v REPS=1 DUR=5 WARMUP=1 SIZES="64 1024" LAT_SIZES="" CRYPTOS=on \
      PERF=0 UDPLIM=0 CORO=0 RINGFLOOR=0 PREFIX=eng-nb WORK=/tmp/eng-nb-work \
      RES=/tmp/eng-ab/res/$v-$round bash benches/run_node_bench.sh > /tmp/eng-ab/log-$v-$round.txt 2>&1
    echo "$v $round rc=$? $(date +%T)"
  done
done
