#!/usr/bin/env bash
# stop-cluster.sh - tear down the lab cluster started by start-cluster.sh.
# Idempotent.  Kills only processes it can attribute to the lab by pid:
#   * the recorded namespace inits / unshare processes / slurmctld (pid files in
#     $LAB_DIR/run, checked against their command name before signalling);
#     killing a node's PID-namespace init takes slurmd, slurmstepd and every
#     task of that node with it;
#   * netns mode: whatever process is still inside one of the lab's network
#     namespaces (`ip netns pids`, e.g. an srun started with `ip netns exec`);
#   * munged only if start-cluster.sh started it.
# Then deletes the lab namespaces, /etc/netns/<lab ns>, the "unreachable" route
# and the /etc/slurm/slurm.conf symlink if the lab made them.  Logs are kept in
# $LAB_DIR/log; everything else under $LAB_DIR/run is removed.
set -uo pipefail
# the copy in $LAB_DIR/bin finds its lab by its own location
if [ -z "${LAB_DIR:-}" ]; then
	_here=$(cd "$(dirname "$0")" && pwd)
	if [ -s "$_here/../run/cluster.env" ]; then LAB_DIR=$(cd "$_here/.." && pwd)
	else LAB_DIR=/var/tmp/scr-slurm-lab; fi
fi
RUN=$LAB_DIR/run
[ "$(id -u)" = 0 ] || { echo "stop-cluster.sh: must run as root" >&2; exit 1; }

LAB_PREFIX=${LAB_PREFIX:-scrlab} NODES=""
# shellcheck disable=SC1091
[ -s "$RUN/cluster.env" ] && . "$RUN/cluster.env"

state() { sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null; }
running() { local s; s=$(state "$1"); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }

# pids from pid files whose process still runs and has an expected name
lab_pids() {
	local f p comm
	for f in "$RUN"/*.init.pid "$RUN"/*.unshare.pid; do
		[ -s "$f" ] || continue
		p=$(cat "$f"); [[ "$p" =~ ^[0-9]+$ ]] || continue
		running "$p" || continue
		comm=$(cat "/proc/$p/comm" 2>/dev/null)
		case "$comm" in unshare|host-init.sh|sh|slurmctld) echo "$p" ;; esac
	done
}

wait_gone() {   # wait_gone SECONDS PID...
	local t=$(( $1 * 10 )) p alive; shift
	while [ "$t" -gt 0 ]; do
		alive=0
		for p in "$@"; do running "$p" && alive=1; done
		[ "$alive" = 0 ] && return 0
		sleep 0.1; t=$((t - 1))
	done
	return 1
}

pids=$(lab_pids | sort -u)
if [ -n "$pids" ]; then
	# graceful first: each init forwards SIGTERM to its slurmd/slurmctld
	# shellcheck disable=SC2086
	kill -TERM $pids 2>/dev/null
	# shellcheck disable=SC2086
	if ! wait_gone 8 $pids; then
		# shellcheck disable=SC2086
		kill -KILL $pids 2>/dev/null
		# shellcheck disable=SC2086
		wait_gone 5 $pids
	fi
fi

# every network namespace we created (recorded names; prefix scan as fallback)
lab_ns=""
if [ -n "${HEAD_NS:-}" ]; then
	lab_ns="$HEAD_NS"
	for n in $NODES; do lab_ns="$lab_ns $LAB_PREFIX-$n"; done
fi
for ns in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$LAB_PREFIX-" || true); do
	case " $lab_ns " in *" $ns "*) ;; *) lab_ns="$lab_ns $ns" ;; esac
done
for ns in $lab_ns; do
	[ -e "/run/netns/$ns" ] || continue
	left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
	if [ -n "${left// /}" ]; then
		# shellcheck disable=SC2086
		kill -TERM $left 2>/dev/null; sleep 1
		left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
		# shellcheck disable=SC2086
		[ -n "${left// /}" ] && kill -KILL $left 2>/dev/null
	fi
done
for ns in $lab_ns; do
	ip netns del "$ns" 2>/dev/null
	rm -rf "/etc/netns/$ns"
done
rmdir /etc/netns 2>/dev/null   # only if empty
if [ -s "$RUN/unreachable-route" ]; then
	ip route del unreachable "$(cat "$RUN/unreachable-route")" 2>/dev/null
fi

if [ -s "$RUN/etc-link" ] && [ -L /etc/slurm/slurm.conf ] &&
   [ "$(readlink /etc/slurm/slurm.conf)" = "$LAB_DIR/etc/slurm/slurm.conf" ]; then
	rm -f /etc/slurm/slurm.conf
fi

if [ -s "$RUN/munged.pid" ]; then
	mp=$(cat "$RUN/munged.pid")
	if running "$mp" && [ "$(cat "/proc/$mp/comm" 2>/dev/null)" = munged ]; then
		kill -TERM "$mp"; wait_gone 5 "$mp" || kill -KILL "$mp" 2>/dev/null
	fi
fi

rm -rf "${RUN:?}"/* 2>/dev/null
rmdir "$RUN" 2>/dev/null
echo "[slurm-lab] stopped (logs kept in $LAB_DIR/log)"
exit 0
