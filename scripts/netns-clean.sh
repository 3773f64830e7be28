#!/usr/bin/env bash
# Removes what testbed runs in netns mode (testbed/netns) left behind: every
# network namespace whose name starts with PREFIX, after killing the
# processes inside it, and any root-namespace link with that prefix. A run
# removes its own namespaces when it ends, on errors too; this is for a
# testbed process that was itself killed. Deleting a namespace deletes its
# veth ends, and with a run's hub namespace its bridge.
#
#   scripts/netns-clean.sh            every run's leftovers (prefix p2t)
#   scripts/netns-clean.sh p2t1a2b3c  one run's (its prefix is logged as
#                                     "netns network" prefix=...)
#
# Do not run it without a prefix while a netns run is going on: it would
# tear that run down. Needs root. Same as netns.Cleanup in Go.
set -euo pipefail

PREFIX=${1:-p2t}
if ! [[ $PREFIX =~ ^p2t[0-9a-f]{0,6}$ ]]; then
	echo "netns-clean: prefix '$PREFIX': want p2t followed by up to 6 hex digits" >&2
	exit 2
fi
if [[ $(id -u) -ne 0 ]]; then
	echo "netns-clean: needs root" >&2
	exit 1
fi

status=0
mapfile -t names < <(ip netns list | awk -v p="$PREFIX" 'index($1, p) == 1 { print $1 }')
for ns in "${names[@]}"; do
	for pid in $(ip netns pids "$ns" 2>/dev/null); do
		kill -KILL "$pid" 2>/dev/null || true
	done
done
for ns in "${names[@]}"; do
	if ip netns del "$ns"; then
		echo "deleted namespace $ns"
	else
		status=1
	fi
done
mapfile -t links < <(ip -o link show | awk -F': ' -v p="$PREFIX" '{ split($2, n, "@") } index(n[1], p) == 1 { print n[1] }')
for l in "${links[@]}"; do
	if ip link del "$l"; then
		echo "deleted link $l"
	else
		status=1
	fi
done
[[ ${#names[@]} -eq 0 && ${#links[@]} -eq 0 ]] && echo "nothing to clean under prefix $PREFIX"
exit $status
