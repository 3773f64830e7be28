#!/usr/bin/env bash
# Measures the resident memory of a `p2pd peer` while it pulls a large blob
# and while it serves it to another peer (target: under 200 MiB at 4 GiB).
#
# It builds bin/p2pd and bin/p2pctl, starts a tracker, an origin and two
# peers (A and B) on loopback, each on free ports (read back from their
# logs) with its data dir under one temp dir; streams a generated blob
# (scripts/genblob) into the origin; then
#   phase "pull":  peer A pulls the blob (from the origin),
#   phase "serve": peer B pulls it while A serves it,
# sampling peer A's VmRSS and VmHWM from /proc/PID/status. A's peak is reset
# (clear_refs) at the start of each phase, so each phase has its own.
#
# Prints one JSON line on stdout; exits 1 if a phase's peak exceeds the limit.
#
#   scripts/peer-rss.sh [SIZE]            SIZE default 4GiB (or $PEER_RSS_SIZE)
#   PEER_RSS_LIMIT_MIB=200                the limit checked
#   PEER_RSS_KEEP=1                       keep the temp dir (logs, stores)
#   TMPDIR=/path                          where the temp dir goes: needs 3x SIZE
set -euo pipefail
cd "$(dirname "$0")/.."

SIZE=${1:-${PEER_RSS_SIZE:-4GiB}}
LIMIT_MIB=${PEER_RSS_LIMIT_MIB:-200}
KEEP=${PEER_RSS_KEEP:-0}
GO=${GO:-go}
INTERVAL=0.1 # seconds between /proc samples

pids=()    # the daemons
sampler=   # the /proc sampling loop
child=     # the p2pctl command (or push pipeline) being waited for
work=$(mktemp -d "${TMPDIR:-/tmp}/peer-rss.XXXXXX")

cleanup() {
	local status=$?
	for pid in $sampler $child; do
		pkill -P "$pid" 2>/dev/null || true # the push pipeline's processes
		kill "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		kill -TERM "$pid" 2>/dev/null || true
	done
	for pid in "${pids[@]}"; do
		for _ in $(seq 100); do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null || true
		wait "$pid" 2>/dev/null || true
	done
	if [[ $status -ne 0 ]]; then
		for log in "$work"/*.log; do
			[[ -f $log ]] || continue
			echo "== $(basename "$log") (last lines)" >&2
			tail -n 15 "$log" >&2
		done
	fi
	if [[ $KEEP == 1 ]]; then
		echo "kept $work" >&2
	else
		rm -rf "$work"
	fi
	exit "$status"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

die() {
	echo "peer-rss: $*" >&2
	exit 1
}

# start NAME ARGS...: runs bin/p2pd ARGS in the background, logging to NAME.log.
start() {
	local name=$1
	shift
	bin/p2pd "$@" 2>"$work/$name.log" &
	pids+=($!)
	eval "pid_$name=$!"
}

# run CMD...: runs CMD in the background and waits for it, so that a signal
# to this script is acted on at once rather than after CMD (cleanup stops
# CMD and the daemons).
run() {
	local rc=0
	"$@" &
	child=$!
	wait "$child" || rc=$?
	child=
	return "$rc"
}

# push: streams the generated blob to the origin.
push() {
	"$work/genblob" "$SIZE" | bin/p2pctl --origin "$origin" push --json - >"$work/push.json"
}

# listening NAME WHAT: waits for NAME's "WHAT listening" log line and prints the address.
listening() {
	local log=$work/$1.log addr
	for _ in $(seq 300); do
		addr=$(sed -n "s/.*msg=\"$2 listening\".* addr=\([0-9.]*:[0-9]*\).*/\1/p" "$log" | head -n 1)
		if [[ -n $addr ]]; then
			echo "$addr"
			return
		fi
		sleep 0.1
	done
	die "$1 did not log \"$2 listening\" within 30s"
}

# field NAME < JSON: prints the first value of "NAME" (number or string).
field() {
	sed -n "s/.*\"$1\": *\"\{0,1\}\([^\",}]*\).*/\1/p" | head -n 1
}

# status_kib PID FIELD: VmRSS or VmHWM of PID in KiB.
status_kib() {
	awk -v f="$2:" '$1 == f { print $2 }' "/proc/$1/status"
}

# phase NAME CMD...: runs CMD while sampling peer A; sets phase_secs and
# phase_peak_kib (the largest of the samples and of VmHWM at the end).
phase() {
	local name=$1 samples=$work/$1.rss start end hwm
	shift
	# Reset A's peak RSS to its current RSS, so that VmHWM is this phase's.
	echo 5 >"/proc/$pid_a/clear_refs" 2>/dev/null || echo "peer-rss: cannot reset VmHWM; it includes earlier phases" >&2
	(
		while kill -0 "$pid_a" 2>/dev/null; do
			status_kib "$pid_a" VmRSS >>"$samples" || true
			sleep "$INTERVAL"
		done
	) &
	sampler=$!
	start=$(date +%s.%N)
	run "$@" >"$work/$name.json" || die "phase $name: $* failed"
	end=$(date +%s.%N)
	kill "$sampler" 2>/dev/null || true
	wait "$sampler" 2>/dev/null || true
	sampler=
	hwm=$(status_kib "$pid_a" VmHWM)
	phase_secs=$(echo "$end - $start" | bc)
	phase_peak_kib=$(sort -n "$samples" | tail -n 1)
	((hwm > phase_peak_kib)) && phase_peak_kib=$hwm
	phase_hwm_kib=$hwm
	phase_samples=$(wc -l <"$samples")
}

make -s build >&2
"$GO" build -o "$work/genblob" ./scripts/genblob

start tracker tracker --listen 127.0.0.1:0
tracker=http://$(listening tracker tracker)
start origin origin --listen 127.0.0.1:0 --data-dir "$work/origin" --tracker "$tracker"
origin=http://$(listening origin origin)
start a peer --control 127.0.0.1:0 --data-dir "$work/a" --tracker "$tracker"
start b peer --control 127.0.0.1:0 --data-dir "$work/b" --tracker "$tracker"
ctl_a=$(listening a control)
ctl_b=$(listening b control)

echo "peer-rss: pushing $SIZE to the origin" >&2
push_start=$(date +%s.%N)
run push || die "push failed"
push_secs=$(echo "$(date +%s.%N) - $push_start" | bc)
blob=$(field digest <"$work/push.json")
size=$(field size <"$work/push.json")
[[ $blob == sha256:* ]] || die "push printed no digest: $(cat "$work/push.json")"
rss_idle_kib=$(status_kib "$pid_a" VmRSS)

echo "peer-rss: peer A pulls $blob" >&2
phase pull bin/p2pctl --peer "$ctl_a" pull --json "$blob"
pull_secs=$phase_secs pull_peak_kib=$phase_peak_kib pull_hwm_kib=$phase_hwm_kib pull_samples=$phase_samples

echo "peer-rss: peer B pulls it while A serves" >&2
phase serve bin/p2pctl --peer "$ctl_b" pull --json "$blob"
serve_secs=$phase_secs serve_peak_kib=$phase_peak_kib serve_hwm_kib=$phase_hwm_kib serve_samples=$phase_samples
b_from_peers=$(field bytes_from_peers <"$work/serve.json")
b_from_origins=$(field bytes_from_origins <"$work/serve.json")

limit_kib=$((LIMIT_MIB * 1024))
ok=true
((pull_peak_kib <= limit_kib && serve_peak_kib <= limit_kib)) || ok=false
printf '{"size_bytes":%s,"blob":"%s","push_s":%.2f,"pull_s":%.2f,"serve_s":%.2f,"peer_a_idle_rss_bytes":%d,"peer_a_pull_peak_rss_bytes":%d,"peer_a_pull_hwm_bytes":%d,"peer_a_serve_peak_rss_bytes":%d,"peer_a_serve_hwm_bytes":%d,"samples":%d,"peer_b_bytes_from_peers":%s,"peer_b_bytes_from_origins":%s,"limit_bytes":%d,"ok":%s}\n' \
	"$size" "$blob" "$push_secs" "$pull_secs" "$serve_secs" \
	$((rss_idle_kib * 1024)) $((pull_peak_kib * 1024)) $((pull_hwm_kib * 1024)) \
	$((serve_peak_kib * 1024)) $((serve_hwm_kib * 1024)) $((pull_samples + serve_samples)) \
	"${b_from_peers:-0}" "${b_from_origins:-0}" $((limit_kib * 1024)) "$ok"
$ok || die "peer A's RSS exceeded ${LIMIT_MIB} MiB"
