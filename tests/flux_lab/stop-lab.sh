#!/usr/bin/env bash
# stop-lab.sh - tear down the Flux lab started by start-lab.sh. Idempotent.
# Kills only processes it can attribute to the lab: the recorded node inits / unshare
# processes (pid files in $FLUXLAB_DIR/run, checked against their command name; killing a
# node's PID-namespace init takes its broker and every job process with it), then whatever
# still runs inside one of the lab's network namespaces (`ip netns pids`). Deletes the lab's
# namespaces and its "unreachable" route. Logs stay in $FLUXLAB_DIR/log.
set -uo pipefail
if [ -z "${FLUXLAB_DIR:-}" ]; then   # the copy in $FLUXLAB_DIR/bin finds its lab
	_here=$(cd "$(dirname "$0")" && pwd)
	if [ -s "$_here/../run/lab.env" ]; then FLUXLAB_DIR=$(cd "$_here/.." && pwd)
	else FLUXLAB_DIR=/var/tmp/scr-flux-lab; fi
fi
RUN=$FLUXLAB_DIR/run
[ "$(id -u)" = 0 ] || { echo "stop-lab.sh: must run as root" >&2; exit 1; }
FLUXLAB_PREFIX=${FLUXLAB_PREFIX:-scrflux} NODES=""
# shellcheck disable=SC1091
[ -s "$RUN/lab.env" ] && . "$RUN/lab.env"

running() { local s; s=$(sed -E 's/.*\) ([A-Za-z]).*/\1/' "/proc/$1/stat" 2>/dev/null); [ -n "$s" ] && [ "$s" != Z ] && [ "$s" != X ]; }
lab_pids() {
	local f p
	for f in "$RUN"/*.init.pid "$RUN"/*.unshare.pid; do
		[ -s "$f" ] || continue
		p=$(cat "$f"); [[ "$p" =~ ^[0-9]+$ ]] && running "$p" || continue
		case "$(cat "/proc/$p/comm" 2>/dev/null)" in unshare|node-init.sh|sh) echo "$p" ;; esac
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
	# shellcheck disable=SC2086
	kill -KILL $pids 2>/dev/null   # a lab has nothing to save: crash every node at once
	# shellcheck disable=SC2086
	wait_gone 5 $pids
fi
lab_ns=$(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$FLUXLAB_PREFIX-" || true)
for ns in $lab_ns; do
	left=$(ip netns pids "$ns" 2>/dev/null | tr '\n' ' ')
	# shellcheck disable=SC2086
	[ -n "${left// /}" ] && kill -KILL $left 2>/dev/null
done
for ns in $lab_ns; do ip netns del "$ns" 2>/dev/null; done
[ -s "$RUN/unreachable-route" ] && ip route del unreachable "$(cat "$RUN/unreachable-route")" 2>/dev/null
rm -rf "${RUN:?}" 2>/dev/null
echo "[flux-lab] stopped (logs kept in $FLUXLAB_DIR/log)"
exit 0
