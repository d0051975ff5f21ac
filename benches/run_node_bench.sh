#!/usr/bin/env bash
# run_node_bench.sh - the EVS node benchmark over a real (virtual) network, side by side with
# Corosync CPG and the raw UDP multicast ceiling, all measured in this one invocation.
#
#   sudo bash benches/run_node_bench.sh          # everything (~25 min on 2 vCPUs)
#   sudo QUICK=1 bash benches/run_node_bench.sh  # smoke test (~3 min)
#
# What it does (every wait bounded):
#   1. builds node-bench (cargo, release) unless BIN points at a built one, and copies it to
#      $WORK (so the pids it records can be recognised by their command line),
#   2. removes leftovers of an earlier run of THIS script (pids it recorded whose command
#      line mentions $WORK; namespaces named ${PREFIX}-*),
#   3. creates the topology of ../shared/bench/corosync/run.sh: namespace ${PREFIX}-br holding
#      bridge br0 (multicast snooping off, STP off, no IP) and ${PREFIX}-n1..n3, one veth
#      eth0 each (10.213.8.<i>/24, IPv6 off, route 224.0.0.0/4 via eth0); nothing in, or
#      routed to, the root namespace. Only the subnet differs (corosync uses 10.213.7.0/24),
#      so the two never meet,
#   4. writes a throwaway authkey (node-bench --keygen, i.e. evs::crypto::keygen),
#   5. for crypto in CRYPTOS (off = none, on = aes256gcm): latency runs (node 1 sends one
#      message and waits for its own delivery, LAT_COUNT times per size in LAT_SIZES), then
#      REPS rounds of throughput runs (all 3 nodes send, DUR s counted after WARMUP s, one
#      size of SIZES after another). Every run starts 3 fresh node-bench processes, one per
#      namespace (`ip netns exec`), each one node, in a cluster of its own name,
#   6. optionally (PERF=1) one extra 1 KiB throughput run per crypto setting with
#      `perf record -g` on node 1 during the window (not counted in the tables; the flat
#      profile goes to perf-<crypto>.txt, the data to perf-<crypto>.data),
#   7. tears its namespaces down, then runs ../shared/bench/corosync/run.sh (RES=$RES/corosync,
#      QUICK passed on) and ../shared/bench/udp-limit/run.sh,
#   8. writes $RES/summary.md (and prints it): medians of the node runs beside Corosync's
#      figures and the UDP ceiling from this same invocation, with ratios.
#
# Knobs (env): REPS (3) DUR (10) WARMUP (2) SIZES ("64 1024 16384") CRYPTOS ("off on")
#   LAT_COUNT (10000) LAT_SIZES ("64 1024 16384") QUICK (0) CORO (1: run corosync)
#   UDPLIM (1: run udp-limit) RINGFLOOR (1: run benches/ring_floor.sh, the bare-UDP latency
#   floor of the same topology) CORO_ENV (extra VAR=value words for corosync's run.sh)
#   REPS=0 runs no throughput run (a latency-only invocation).
#   PERF (1: profile if perf is installed) PERF_G (-g) SHARED (<repo>/../shared) RES (<repo>/target/node-bench/<UTC stamp>)
#   WORK (/tmp/evsnb-work) PREFIX (evsnb) BIN (build with cargo) NODE_SETS (extra node flags,
#   e.g. "--set totem.window_size=67"; default none: the default configuration)
#   IMPL (rust | py: the Python-level worker benches/py_bench.py instead of node-bench, run by
#   PY (default: <repo>/.venv/bin/python if present, else python3), which must import evs;
#   no cargo build; results in <repo>/target/py-bench/<UTC stamp>; PY_SENDER=thread|inline
#   reaches the worker: its sending structure, see py_bench.py)
set -u -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
ROOT=$(cd "$HERE/.." && pwd)
SHARED=${SHARED:-$ROOT/../shared}
PREFIX=${PREFIX:-evsnb}
WORK=${WORK:-/tmp/evsnb-work}
SUBNET=10.213.8          # /24, exists only inside ${PREFIX}-n* namespaces
MCAST=239.192.213.8      # TTL 1, stays on the private bridge
PORT=5405
NODES=3
QUICK=${QUICK:-0}
if [ "$QUICK" = 1 ]; then
	DUR=${DUR:-3}; WARMUP=${WARMUP:-1}; REPS=${REPS:-1}; SIZES=${SIZES:-"1024"}
	LAT_COUNT=${LAT_COUNT:-1000}; LAT_SIZES=${LAT_SIZES-"64"}
fi
REPS=${REPS:-3}
DUR=${DUR:-10}
WARMUP=${WARMUP:-2}
SIZES=${SIZES:-"64 1024 16384"}
CRYPTOS=${CRYPTOS:-"off on"}
LAT_COUNT=${LAT_COUNT:-10000}
LAT_SIZES=${LAT_SIZES-"64 1024 16384"}
CORO=${CORO:-1}
UDPLIM=${UDPLIM:-1}
RINGFLOOR=${RINGFLOOR:-1}
CORO_ENV=${CORO_ENV:-}
PERF=${PERF:-1}
PERF_G=${PERF_G:-"-g"}   # e.g. "--call-graph dwarf" for user-space callers (larger data)
STAMP=$(date -u +%Y%m%dT%H%M%SZ)
IMPL=${IMPL:-rust}
if [ "$IMPL" = py ]; then
	[ -x "$ROOT/.venv/bin/python" ] && PY=${PY:-$ROOT/.venv/bin/python}
	PY=${PY:-python3}
	NODE_CMD=("$PY" "$WORK/py_bench.py")   # the worker is copied there (see main)
	RES=${RES:-$ROOT/target/py-bench/$STAMP}
	TITLE="EVS node benchmark, Python level (py_bench.py: every message received as an evs.Message in Python)"
else
	[ "$IMPL" = rust ] || { echo "IMPL must be rust or py, not $IMPL" >&2; exit 1; }
	NODE_CMD=("$WORK/node-bench")
	RES=${RES:-$ROOT/target/node-bench/$STAMP}
	TITLE="EVS node benchmark"
fi
TPUT_TIMEOUT=$((WARMUP + DUR + 180))      # hard cap per node process (s)
LAT_TIMEOUT=$((LAT_COUNT / 50 + 180))

log() { printf '[%s] %s\n' "$(date -u +%H:%M:%S)" "$*" | tee -a "$RES/run.log" >&2; }
die() { log "FATAL: $*"; exit 1; }

[ "$(id -u)" = 0 ] || { echo "run_node_bench.sh must run as root (network namespaces)" >&2; exit 1; }
mkdir -p "$RES/raw" "$WORK" || exit 1
: >"$RES/run.log"

# ---------------------------------------------------------------- cleanup
# Only pids this script recorded in $WORK/pids, and only while their command line still
# mentions $WORK (guards against pid reuse).
pid_ours() { [ -r "/proc/$1/cmdline" ] && tr '\0' ' ' <"/proc/$1/cmdline" 2>/dev/null | grep -qF "$WORK"; }
kill_recorded() {
	[ -f "$WORK/pids" ] || return 0
	local pid alive
	while read -r pid; do
		[ -n "$pid" ] && pid_ours "$pid" && kill -TERM "$pid" 2>/dev/null
	done <"$WORK/pids"
	for _ in $(seq 1 100); do   # up to 10 s
		alive=0
		while read -r pid; do
			[ -n "$pid" ] && pid_ours "$pid" && alive=1
		done <"$WORK/pids"
		[ $alive = 0 ] && break
		sleep 0.1
	done
	while read -r pid; do
		[ -n "$pid" ] && pid_ours "$pid" || continue
		log "pid $pid did not stop on TERM, sending KILL"
		kill -KILL "$pid" 2>/dev/null
	done <"$WORK/pids"
	: >"$WORK/pids"
}

net_down() {
	local ns
	for ns in "$PREFIX-br" $(seq -f "$PREFIX-n%g" 1 $NODES); do
		if ip netns list | awk '{print $1}' | grep -qx "$ns"; then
			ip netns del "$ns" 2>/dev/null || log "could not delete netns $ns"
		fi
	done
}

CLEANED=0
cleanup() {
	[ $CLEANED = 1 ] && return
	CLEANED=1
	kill_recorded
	net_down
	rm -f "$WORK/authkey"
}
trap 'cleanup' EXIT
trap 'log "interrupted"; exit 130' INT TERM

# ---------------------------------------------------------------- network
# Same commands as net_up in ../shared/bench/corosync/run.sh, for 3 nodes.
net_up() {
	ip netns add "$PREFIX-br" || die "netns add $PREFIX-br"
	ip -n "$PREFIX-br" link add br0 type bridge mcast_snooping 0 stp_state 0 forward_delay 0 || die "bridge"
	ip netns exec "$PREFIX-br" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null
	ip -n "$PREFIX-br" link set lo up
	ip -n "$PREFIX-br" link set br0 up
	local i ns
	for i in $(seq 1 $NODES); do
		ns="$PREFIX-n$i"
		ip netns add "$ns" || die "netns add $ns"
		ip link add eth0 netns "$ns" type veth peer name "p$i" netns "$PREFIX-br" || die "veth $i"
		ip -n "$PREFIX-br" link set "p$i" master br0 multicast on up || die "port p$i"
		ip netns exec "$ns" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null
		ip -n "$ns" link set lo up
		ip -n "$ns" link set eth0 multicast on up
		ip -n "$ns" addr add "$SUBNET.$i/24" dev eth0 || die "addr $i"
		ip -n "$ns" route add 224.0.0.0/4 dev eth0 || die "mcast route $i"
	done
	for _ in $(seq 1 50); do
		ip -n "$PREFIX-n$NODES" link show eth0 | grep -q 'state UP' && break
		sleep 0.1
	done
	{
		echo "## bridge namespace $PREFIX-br"
		ip -n "$PREFIX-br" -d link show br0
		echo "multicast_snooping=$(ip netns exec "$PREFIX-br" cat /sys/class/net/br0/bridge/multicast_snooping)"
		for i in $(seq 1 $NODES); do
			echo "## node namespace $PREFIX-n$i"
			ip -n "$PREFIX-n$i" addr show
			ip -n "$PREFIX-n$i" route show
		done
	} >"$RES/network.txt" 2>&1
	grep -q 'multicast_snooping=0' "$RES/network.txt" || die "bridge multicast snooping is not off"
}

# ---------------------------------------------------------------- node runs
jget() { sed -n "s/.*\"$2\":\"\{0,1\}\([^,\"}]*\).*/\1/p" "$1"; }

FAILS=0
declare -a NPID
# start_nodes mode crypto size tag -> NPID[1..3]
start_nodes() {
	local mode=$1 c=$2 size=$3 tag=$4 i send tmo
	if [ "$mode" = throughput ]; then tmo=$TPUT_TIMEOUT; else tmo=$LAT_TIMEOUT; fi
	NPID=()
	for i in $(seq 1 $NODES); do
		if [ "$mode" = throughput ] || [ "$i" = 1 ]; then send=1; else send=0; fi
		# A cluster name per run: a straggler of an earlier run can not join this ring.
		timeout -k 5 "$tmo" ip netns exec "$PREFIX-n$i" "${NODE_CMD[@]}" \
			--bind "$SUBNET.$i" --node-id "$i" --port $PORT --cluster "evsnb-$tag" \
			--set multicast_address=$MCAST ${NODE_SETS:-} --crypto "$c" --authkey "$WORK/authkey" \
			--mode "$mode" --size "$size" --nodes $NODES --send $send \
			--duration "$DUR" --warmup "$WARMUP" --count "$LAT_COUNT" \
			--out "$RES/raw/$tag-node$i.json" 2>"$RES/raw/$tag-node$i.err" &
		NPID[$i]=$!
		echo "${NPID[$i]}" >>"$WORK/pids"
	done
}

# wait_nodes tag -> 0 if every node exited 0
wait_nodes() {
	local tag=$1 i rc all=0
	for i in $(seq 1 $NODES); do
		wait "${NPID[$i]}"; rc=$?
		[ $rc = 0 ] || { all=1; log "$tag node$i rc=$rc: $(head -c 300 "$RES/raw/$tag-node$i.err")"; }
		[ -s "$RES/raw/$tag-node$i.err" ] || rm -f "$RES/raw/$tag-node$i.err"
	done
	[ $all = 0 ] || FAILS=$((FAILS + 1))
	return $all
}

# sum of a numeric field over the nodes' JSON files
jsum() { local tag=$1 k=$2 i s=0; for i in $(seq 1 $NODES); do
	s=$(awk -v a="$s" -v b="$(jget "$RES/raw/$tag-node$i.json" "$k" 2>/dev/null)" 'BEGIN{printf "%.1f", a+b}'); done; echo "$s"; }

run_tput() { # crypto size rep
	local c=$1 size=$2 rep=$3 tag="tput-$1-$2-r$3" i
	start_nodes throughput "$c" "$size" "$tag"
	wait_nodes "$tag"
	local f1="$RES/raw/$tag-node1.json" ok=yes minr="" hashes=""
	[ -s "$f1" ] || { log "$tag: no result"; return; }
	for i in $(seq 1 $NODES); do
		local f="$RES/raw/$tag-node$i.json" r
		[ -s "$f" ] || { ok=no; continue; }
		[ "$(jget "$f" ok)" = 1 ] || ok=no
		hashes="$hashes $(jget "$f" order_hash)"
		r=$(jget "$f" deliv_rate_msgs)
		minr=$(awk -v a="$minr" -v b="$r" 'BEGIN{ if (a == "" || b + 0 < a + 0) print b; else print a }')
	done
	[ "$(echo $hashes | tr ' ' '\n' | sort -u | wc -l)" = 1 ] || ok="no(order)"
	# crypto size rep node1_msgs node1_MBps min_node_msgs self50 self99 owl50 owl99 cpu_sum busy retrans rejected ok
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$size" "$rep" \
		"$(jget "$f1" deliv_rate_msgs)" "$(jget "$f1" deliv_MBps)" "$minr" \
		"$(jget "$f1" self_p50_us)" "$(jget "$f1" self_p99_us)" \
		"$(jget "$f1" owl_p50_us)" "$(jget "$f1" owl_p99_us)" \
		"$(jsum "$tag" process_cpu_pct)" "$(jget "$f1" sys_busy_pct)" \
		"$(jsum "$tag" win_retransmits_requested)" "$(jsum "$tag" rejected_total)" "$ok" >>"$RES/node-tput.tsv"
	log "$tag: node1 delivered $(jget "$f1" deliv_rate_msgs) msg/s ($(jget "$f1" deliv_MBps) MB/s), slowest node $minr msg/s, self-delivery p50/p99 $(jget "$f1" self_p50_us)/$(jget "$f1" self_p99_us) us, nodes' CPU $(jsum "$tag" process_cpu_pct)%, ok=$ok"
}

run_lat() { # crypto size
	local c=$1 size=$2 tag="lat-$1-$2"
	start_nodes latency "$c" "$size" "$tag"
	wait_nodes "$tag"
	local f1="$RES/raw/$tag-node1.json"
	[ -s "$f1" ] || { log "$tag: no result"; return; }
	printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$c" "$size" "$(jget "$f1" count)" \
		"$(jget "$f1" rtt_p50_us)" "$(jget "$f1" rtt_p90_us)" "$(jget "$f1" rtt_p99_us)" \
		"$(jget "$f1" rtt_p999_us)" "$(jget "$f1" rtt_mean_us)" "$(jget "$f1" rtt_max_us)" \
		"$(jget "$f1" ok)" >>"$RES/node-lat.tsv"
	log "$tag: round trip p50 $(jget "$f1" rtt_p50_us) us, p99 $(jget "$f1" rtt_p99_us) us (n=$(jget "$f1" count))"
}

perf_run() { # crypto: one 1 KiB throughput run with perf on node 1's process during the window
	local c=$1 tag="perf-$1-1024"
	command -v perf >/dev/null || { log "perf not installed: no profile"; return; }
	start_nodes throughput "$c" 1024 "$tag"
	sleep $((WARMUP + 3))   # ring formation (about 1-2 s) and the warm-up
	# NPID is the `timeout` process; its child is node-bench (ip netns exec execs it)
	local pid
	pid=$(pgrep -P "${NPID[1]}" 2>/dev/null | head -1)
	case "$(cat "/proc/$pid/comm" 2>/dev/null)" in node-bench | python*) ;; *) pid="" ;; esac
	if [ -n "$pid" ]; then
		# shellcheck disable=SC2086 # PERF_G is a list of perf options
		timeout 120 perf record -q $PERF_G -o "$RES/perf-$c.data" -p "$pid" -- sleep $((DUR / 2 > 2 ? DUR / 2 : 2)) >>"$RES/run.log" 2>&1
		# flat: where the CPU of node 1's process goes, by thread, object and symbol
		perf report -q -i "$RES/perf-$c.data" --no-children --percent-limit 0.7 --stdio -g none \
			--sort comm,dso,symbol 2>/dev/null | sed 's/ *- *- *$//' | head -60 >"$RES/perf-$c.txt"
		perf report -q -i "$RES/perf-$c.data" --no-children --stdio -g none --sort comm,dso \
			2>/dev/null | sed 's/ *- *- *$//' | head -20 >"$RES/perf-$c-dso.txt"
		log "$tag: profile in perf-$c.txt"
	fi
	wait_nodes "$tag" || true
}

# ---------------------------------------------------------------- tables
med_table() { # tsv -> median rows per (crypto,size), in first-seen order
	awk -F'\t' '
	function med(key, col,   n, i, j, t, v) {
		n = cnt[key]
		for (i = 1; i <= n; i++) v[i] = val[key, i, col]
		for (i = 2; i <= n; i++) { t = v[i]; for (j = i - 1; j >= 1 && v[j] + 0 > t + 0; j--) v[j + 1] = v[j]; v[j + 1] = t }
		return (n % 2) ? v[(n + 1) / 2] : (v[n / 2] + v[n / 2 + 1]) / 2
	}
	function mn(key, col,   i, m) { m = val[key, 1, col]; for (i = 2; i <= cnt[key]; i++) if (val[key, i, col] + 0 < m + 0) m = val[key, i, col]; return m }
	function mx(key, col,   i, m) { m = val[key, 1, col]; for (i = 2; i <= cnt[key]; i++) if (val[key, i, col] + 0 > m + 0) m = val[key, i, col]; return m }
	{
		key = $1 SUBSEP $2
		if (!(key in cnt)) { order[++nk] = key; ok[key] = "yes" }
		c = ++cnt[key]
		for (k = 4; k <= 14; k++) val[key, c, k] = $k
		if ($15 != "yes") ok[key] = "no"
	}
	END {
		for (q = 1; q <= nk; q++) {
			key = order[q]; split(key, f, SUBSEP)
			m = med(key, 4)
			best = 1; for (i = 1; i <= cnt[key]; i++) if (val[key, i, 4] == m) best = i
			# crypto size runs med min max MBps minnode self50 self99 owl50 owl99 cpu busy retrans rejected ok
			printf "%s\t%s\t%d\t%.0f\t%.0f\t%.0f\t%.2f\t%.0f\t%s\t%s\t%s\t%s\t%.0f\t%.0f\t%.0f\t%.0f\t%s\n", f[1], f[2], cnt[key], m, mn(key, 4), mx(key, 4), med(key, 5), med(key, 6), val[key, best, 7], val[key, best, 8], val[key, best, 9], val[key, best, 10], med(key, 11), med(key, 12), med(key, 13), med(key, 14), ok[key]
		}
	}' "$1"
}

# corosync medians of 3-node throughput: sched variant size -> "msgs MBps owl50 owl99"
coro_tput() {
	local f="$RES/corosync/tput-runs.tsv"
	[ -s "$f" ] || { echo "- - - -"; return; }
	awk -F'\t' -v s="$1" -v v="$2" -v z="$3" '
	$1 == s && $2 == v && $3 == 3 && $4 == z { n++; r[n] = $6; m[n] = $7; a[n] = $10; b[n] = $11 }
	END {
		if (!n) { print "- - - -"; exit }
		for (i = 1; i <= n; i++) idx[i] = i
		for (i = 2; i <= n; i++) { t = idx[i]; for (j = i - 1; j >= 1 && r[idx[j]] + 0 > r[t] + 0; j--) idx[j + 1] = idx[j]; idx[j + 1] = t }
		k = idx[int((n + 1) / 2)]
		printf "%.0f %.2f %s %s\n", r[k], m[k], a[k], b[k]
	}' "$f"
}

# corosync latency: sched variant size -> "p50 p99"
coro_lat() {
	local f="$RES/corosync/lat.md"
	[ -s "$f" ] || { echo "- -"; return; }
	awk -F'|' -v s="$1" -v v="$2" -v z="$3" '
	{ for (i = 2; i <= NF; i++) gsub(/ /, "", $i) }
	$2 == s && $3 == v && $4 == 3 && $5 == z { print $7, $9; found = 1; exit }
	END { if (!found) print "- -" }' "$f"
}

# udp-limit: datagram size -> "pps MBps" (mean of the two receivers)
udp_ceiling() {
	local f="$RES/udp-limit.txt"
	[ -s "$f" ] || { echo "- -"; return; }
	awk -v z="$1" '
	/^recv / { s = ""; p = ""; m = ""
		for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "size") s = kv[2]; if (kv[1] == "pps") p = kv[2]; if (kv[1] == "MBps") m = kv[2] }
		if (s == z) { n++; ps += p; ms += m } }
	END { if (n) printf "%.0f %.1f\n", ps / n, ms / n; else print "- -" }' "$f"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN{ if (a ~ /^[0-9.]+$/ && b ~ /^[0-9.]+$/ && b + 0 > 0) printf "%.2f", a / b; else printf "-" }'; }
f1() { awk -v a="$1" 'BEGIN{ if (a ~ /^[0-9.]+$/) printf "%.1f", a; else printf "%s", a }'; }
fmt() { awk -v a="$1" 'BEGIN{ if (a ~ /^[0-9.]+$/) { s = sprintf("%.0f", a); o = ""; while (length(s) > 3) { o = "," substr(s, length(s) - 2) o; s = substr(s, 1, length(s) - 3) } print s o } else print a }'; }

summary() {
	local med="$RES/node-tput-median.tsv"
	[ -s "$RES/node-tput.tsv" ] && med_table "$RES/node-tput.tsv" >"$med"
	local u1400 u8000 u64
	u64=$(udp_ceiling 64); u1400=$(udp_ceiling 1400); u8000=$(udp_ceiling 8000)
	echo "# $TITLE run $STAMP"
	echo
	echo '```'
	cat "$RES/env.txt"
	echo '```'
	echo
	echo "## Throughput: 3 nodes, all sending, ${DUR} s counted after ${WARMUP} s warm-up, median of $REPS runs"
	echo
	echo "Delivered messages per second at node 1 (all senders' messages, its own included), median [min-max];"
	echo "Corosync figures are its 3-node CPG rows of this same invocation (median of its runs):"
	echo "crypto off vs corosync udp (no crypto), crypto on (aes256gcm) vs corosync knet aes256+sha256."
	echo
	echo "| crypto | size (B) | evs msg/s per node | evs MB/s | slowest node msg/s | self-delivery p50 / p99 under load (µs) | one-way p50 / p99 under load (µs) | nodes' CPU % (sum) | corosync sched_rr no msg/s (MB/s) | evs / corosync (no) | corosync sched_rr yes msg/s (MB/s) | evs / corosync (yes) | UDP ceiling MB/s (1400 B dgrams) | evs MB/s / UDP | ok |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	if [ -s "$med" ]; then
		local c size runs m mn mx mb minn s50 s99 o50 o99 cpu busy rt rj ok v no yes
		while IFS=$'\t' read -r c size runs m mn mx mb minn s50 s99 o50 o99 cpu busy rt rj ok; do
			if [ "$c" = off ]; then v=udp; else v=knet; fi
			read -r -a no <<<"$(coro_tput no $v "$size")"
			read -r -a yes <<<"$(coro_tput yes $v "$size")"
			printf '| %s | %s | **%s** [%s-%s] | %s | %s | %s / %s | %s / %s | %s | %s (%s) | %s | %s (%s) | %s | %s | %s | %s |\n' \
				"$c" "$size" "$(fmt "$m")" "$(fmt "$mn")" "$(fmt "$mx")" "$mb" "$(fmt "$minn")" \
				"$(fmt "$s50")" "$(fmt "$s99")" "$(fmt "$o50")" "$(fmt "$o99")" "$cpu" \
				"$(fmt "${no[0]}")" "${no[1]}" "$(ratio "$m" "${no[0]}")" \
				"$(fmt "${yes[0]}")" "${yes[1]}" "$(ratio "$m" "${yes[0]}")" \
				"${u1400#* }" "$(ratio "$mb" "${u1400#* }")" "$ok"
		done <"$med"
	fi
	echo
	echo "### Cost of crypto (throughput with aes256gcm / without, medians)"
	echo
	echo "| size (B) | evs off msg/s | evs on msg/s | evs on/off | corosync udp → knet+aes/sha (sched_rr no) | corosync (sched_rr yes) |"
	echo "|---:|---:|---:|---:|---:|---:|"
	if [ -s "$med" ]; then
		local size off on cn cy
		for size in $SIZES; do
			off=$(awk -F'\t' -v z="$size" '$1 == "off" && $2 == z { print $4 }' "$med")
			on=$(awk -F'\t' -v z="$size" '$1 == "on" && $2 == z { print $4 }' "$med")
			cn=$(ratio "$(coro_tput no knet "$size" | cut -d' ' -f1)" "$(coro_tput no udp "$size" | cut -d' ' -f1)")
			cy=$(ratio "$(coro_tput yes knet "$size" | cut -d' ' -f1)" "$(coro_tput yes udp "$size" | cut -d' ' -f1)")
			printf '| %s | %s | %s | **%s** | %s | %s |\n' "$size" "$(fmt "$off")" "$(fmt "$on")" "$(ratio "$on" "$off")" "$cn" "$cy"
		done
	fi
	echo
	echo "## Latency: node 1 sends one message and waits for its own agreed delivery, $LAT_COUNT round trips, idle ring"
	echo
	echo "| crypto | size (B) | evs p50 (µs) | evs p90 | evs p99 | evs p99.9 | evs mean | corosync sched_rr no p50 / p99 | corosync sched_rr yes p50 / p99 | ok |"
	echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---|"
	if [ -s "$RES/node-lat.tsv" ]; then
		local c size cnt p50 p90 p99 p999 mean mx ok v no yes
		while IFS=$'\t' read -r c size cnt p50 p90 p99 p999 mean mx ok; do
			if [ "$c" = off ]; then v=udp; else v=knet; fi
			read -r -a no <<<"$(coro_lat no $v "$size")"
			read -r -a yes <<<"$(coro_lat yes $v "$size")"
			printf '| %s | %s | **%s** | %s | **%s** | %s | %s | %s / %s | %s / %s | %s |\n' "$c" "$size" "$(f1 "$p50")" "$(f1 "$p90")" "$(f1 "$p99")" "$(f1 "$p999")" "$(f1 "$mean")" \
				"${no[0]}" "${no[1]}" "${yes[0]}" "${yes[1]}" "$([ "$ok" = 1 ] && echo yes || echo no)"
		done <"$RES/node-lat.tsv"
	fi
	echo
	if [ -s "$RES/udp-limit.txt" ]; then
		echo "## Raw UDP multicast ceiling (../shared/bench/udp-limit/run.sh, one sender, mean of the two receivers)"
		echo
		echo "| datagram | pps | MB/s |"
		echo "|---:|---:|---:|"
		echo "| 64 B | $(fmt "${u64% *}") | ${u64#* } |"
		echo "| 1400 B | $(fmt "${u1400% *}") | ${u1400#* } |"
		echo "| 8000 B | $(fmt "${u8000% *}") | ${u8000#* } |"
		echo
	fi
	if [ -s "$RES/ring-floor.txt" ]; then
		echo "## Latency floor: a bare UDP datagram passed round the ring (benches/ring_floor.sh, blocking sockets, no protocol, no crypto)"
		echo
		echo '```'
		grep '^nodes' "$RES/ring-floor.txt"
		echo '```'
		echo
	fi
	echo "failed node runs: $FAILS; corosync: $CORO_STATUS; udp-limit: $UDP_STATUS; ring floor: $FLOOR_STATUS; wall time: $(( $(date +%s) - T_START )) s"
	echo "raw: node-tput.tsv (one line per run), raw/*.json (every node of every run), corosync/ (its whole result dir), udp-limit.txt"
}

# ---------------------------------------------------------------- main
T_START=$(date +%s)
CORO_STATUS="not run"; UDP_STATUS="not run"; FLOOR_STATUS="not run"
log "results -> $RES"
kill_recorded
net_down
: >"$WORK/pids"
if [ "$IMPL" = py ]; then
	cp "$ROOT/benches/py_bench.py" "$WORK/py_bench.py" || die "cannot copy py_bench.py"
	"$PY" -c 'import evs' 2>>"$RES/run.log" || die "$PY cannot import evs (maturin develop --release in a venv; PY=)"
elif [ -n "${BIN:-}" ]; then
	cp "$BIN" "$WORK/node-bench" || die "cannot copy $BIN"
else
	log "building node-bench (cargo build --release)"
	(cd "$ROOT" && cargo build --release -q -p evs-benches --bin node-bench) >>"$RES/run.log" 2>&1 \
		|| die "cargo build failed (see run.log)"
	cp "$ROOT/target/release/node-bench" "$WORK/node-bench" || die "no binary"
fi
{
	echo "date_utc: $(date -u '+%Y-%m-%d %H:%M:%S')"
	echo "kernel: $(uname -r)"
	echo "cpus: $(nproc) x $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
	echo "git: $(git -C "$ROOT" rev-parse --short HEAD 2>/dev/null)$(git -C "$ROOT" diff --quiet HEAD 2>/dev/null || echo ' (dirty)')"
	echo "rustc: $(rustc --version 2>/dev/null)"
	[ "$IMPL" = py ] && echo "impl: py ($("$PY" -c 'import sys, evs; print(sys.executable, sys.version.split()[0], "evs", evs.__version__)'))"
	echo "params: DUR=$DUR WARMUP=$WARMUP REPS=$REPS SIZES='$SIZES' CRYPTOS='$CRYPTOS' LAT_COUNT=$LAT_COUNT LAT_SIZES='$LAT_SIZES' QUICK=$QUICK"
	echo "loadavg at start: $(cat /proc/loadavg)"
} >"$RES/env.txt"

net_up
log "network up: $PREFIX-br + $PREFIX-n1..n$NODES ($SUBNET.0/24 inside the namespaces only)"
rm -f "$WORK/authkey"
"${NODE_CMD[@]}" --keygen "$WORK/authkey" || die "keygen"
: >"$RES/node-tput.tsv"
: >"$RES/node-lat.tsv"
for c in $CRYPTOS; do
	for s in $LAT_SIZES; do run_lat "$c" "$s"; done
	for r in $(seq 1 "$REPS"); do
		for s in $SIZES; do run_tput "$c" "$s" "$r"; done
	done
done
if [ "$PERF" = 1 ]; then
	for c in $CRYPTOS; do perf_run "$c"; done
fi
cleanup
log "node runs done ($FAILS failed); namespaces removed"

# The anchors run with a clean environment for their own knobs: ours (SIZES, DUR, ...) would
# otherwise leak into theirs when the caller exported them.
ANCHOR_ENV=(env -u DUR -u REPS -u SIZES -u LAT_SIZES -u LAT_COUNT -u WORK -u PREFIX -u RES -u QUICK -u D -u BIN)
if [ "$CORO" = 1 ]; then
	[ -f "$SHARED/bench/corosync/run.sh" ] || die "no $SHARED/bench/corosync/run.sh (set SHARED=)"
	log "corosync anchor: RES=$RES/corosync QUICK=$QUICK $CORO_ENV"
	# shellcheck disable=SC2086 # CORO_ENV is a list of VAR=value words
	if "${ANCHOR_ENV[@]}" RES="$RES/corosync" QUICK="$QUICK" $CORO_ENV bash "$SHARED/bench/corosync/run.sh" >>"$RES/run.log" 2>&1; then
		CORO_STATUS="ok"
	else
		CORO_STATUS="failed (see corosync/run.log)"
	fi
	log "corosync anchor: $CORO_STATUS"
fi
if [ "$UDPLIM" = 1 ]; then
	[ -f "$SHARED/bench/udp-limit/run.sh" ] || die "no $SHARED/bench/udp-limit/run.sh (set SHARED=)"
	log "udp-limit"
	if timeout 300 "${ANCHOR_ENV[@]}" bash "$SHARED/bench/udp-limit/run.sh" >"$RES/udp-limit.txt" 2>&1; then
		UDP_STATUS="ok"
	else
		UDP_STATUS="failed (see udp-limit.txt)"
	fi
	log "udp-limit: $UDP_STATUS"
fi
if [ "$RINGFLOOR" = 1 ]; then
	log "ring floor"
	if timeout 300 "${ANCHOR_ENV[@]}" -u NODES -u COUNT bash "$ROOT/benches/ring_floor.sh" >"$RES/ring-floor.txt" 2>&1; then
		FLOOR_STATUS="ok"
	else
		FLOOR_STATUS="failed (see ring-floor.txt)"
	fi
	log "ring floor: $FLOOR_STATUS"
fi

summary >"$RES/summary.md"
cat "$RES/summary.md"
log "done in $(( $(date +%s) - T_START )) s; summary: $RES/summary.md"
[ $FAILS = 0 ]
