#!/usr/bin/env bash
# The latency floor of a token ring here: a bare UDP datagram passed round N processes, one per
# network namespace on a bridge (the topology of run_node_bench.sh and Corosync's run.sh), with
# blocking sockets and no protocol or crypto. As root:  bash benches/ring_floor.sh
# Knobs: NODES (default "2 3"), SIZES (default "64 1024 16384"), COUNT (10000), RING_FLOOR_SPIN=1
# (busy-poll instead of blocking: what is left without wake-ups). Cleans up after itself.
set -u
P=evsrf; SUB=10.213.13; PORT=5999
NODES=${NODES:-2 3}; SIZES=${SIZES:-64 1024 16384}; COUNT=${COUNT:-10000}
BIN=${BIN:-/tmp/evs-ring-floor}
gcc -O2 -Wall -o "$BIN" "$(dirname "$0")/ring_floor.c" || exit 1
MAXN=0; for n in $NODES; do [ "$n" -gt $MAXN ] && MAXN=$n; done
pids=""
cleanup() {
  for p in $pids; do kill "$p" 2>/dev/null; done
  for i in $(seq 1 "$MAXN"); do ip netns del $P-n$i 2>/dev/null; done
  ip netns del $P-br 2>/dev/null
}
trap cleanup EXIT
cleanup
ip netns add $P-br; ip -n $P-br link add br0 type bridge; ip -n $P-br link set br0 up
for i in $(seq 1 "$MAXN"); do
  ip netns add $P-n$i; ip link add $P-v$i type veth peer name eth0 netns $P-n$i
  ip link set $P-v$i netns $P-br; ip -n $P-br link set $P-v$i master br0; ip -n $P-br link set $P-v$i up
  ip -n $P-n$i addr add $SUB.$i/24 dev eth0; ip -n $P-n$i link set eth0 up; ip -n $P-n$i link set lo up
done
rc=0
for n in $NODES; do
  for size in $SIZES; do
    pids=""
    for i in $(seq 2 "$n"); do
      nxt=$(( i % n + 1 ))
      ip netns exec $P-n$i "$BIN" relay $SUB.$i $SUB.$nxt $PORT "$size" & pids="$pids $!"
    done
    sleep 0.3
    printf 'nodes %s ' "$n"
    ip netns exec $P-n1 "$BIN" origin $SUB.1 $SUB.2 $PORT "$size" "$COUNT" 200 || rc=1
    for p in $pids; do kill "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    pids=""
  done
done
exit $rc
