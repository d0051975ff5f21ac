#!/usr/bin/env bash
# A/B of node-bench: main vs no-cliff, alternating in one invocation.
cd /work/wt-no-cliff
for round in 1 2 3; do
  for v in main branch; do
    BIN=/tmp/nc-ab/node-bench-$v REPS=1 DUR=5 WARMUP=1 SIZES="64 1024" LAT_SIZES="" CRYPTOS=on \
      PERF=0 UDPLIM=0 CORO=0 RINGFLOOR=0 PREFIX=nc-nb WORK=/tmp/nc-nb-work \
      RES=/tmp/nc-ab/res-$v-$round bash benches/run_node_bench.sh > /tmp/nc-ab/log-$v-$round.txt 2>&1
    echo "$v $round rc=$?"
  done
done
