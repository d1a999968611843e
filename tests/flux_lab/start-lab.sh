#!/usr/bin/env bash
# start-lab.sh - a 4-node Flux instance on ONE machine (root), for scr's live Flux tests.
# Idempotent: if the lab is already up and healthy it says so and exits 0; otherwise it
# tears down leftovers and starts from scratch.
#
# The faithful layout measured in /work/shared/flux-lab/README.md ("Brokers with their own
# hostnames"): one flux-broker per "node" n1..n4, each in
#   * its own network namespace ($FLUXLAB_PREFIX-nX, eth0 = $FLUXLAB_SUBNET.1X on a bridge
#     in $FLUXLAB_PREFIX-head), so a node can be cut off the network;
#   * its own UTS namespace (hostname nX: what Flux reports in R and hostlists),
#   * its own mount namespace (/etc/hosts naming n1..n4, a private /dev/shm),
#   * its own PID namespace: killing the namespace's init kills the broker and every job
#     process of that node at once = a node crash (`lab crash n3`).
# The brokers form one system-style instance from a bootstrap config (TOML, curve
# certificate from `flux keygen`), rank = position in the hosts list, n1 = rank 0.
#
# Clients anywhere on the machine reach the instance through rank 0's local socket
# (a path, so it works across network namespaces):
#     FLUX_URI=local://$FLUXLAB_DIR/run/n1/local $FLUX_PREFIX/bin/flux resource list
#
# Usage: start-lab.sh                (env: FLUXLAB_DIR, FLUX_PREFIX, FLUXLAB_NODES, ...)
#        start-lab.sh --respawn NODE (used by `lab restart NODE`)
# Exit codes: 0 up, 1 could not start (logs in $FLUXLAB_DIR/log).
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${FLUXLAB_DIR:=/var/tmp/scr-flux-lab}"      # state, config, logs, pid files, sockets
: "${FLUX_PREFIX:=/var/tmp/flux-lab/install}"  # where build.sh installed flux-core
: "${FLUXLAB_NODES:=4}"
: "${FLUXLAB_PREFIX:=scrflux}"                 # netns names scrflux-head, scrflux-n1, ...
: "${FLUXLAB_SUBNET:=10.215.0}"                # /24; the Slurm lab uses scrlab / 10.214.0
: "${FLUXLAB_PORT:=8050}"
: "${FLUXLAB_SHM_SIZE:=256m}"
: "${FLUXLAB_READY_TIMEOUT:=60}"

RUN=$FLUXLAB_DIR/run
HEAD_NS=$FLUXLAB_PREFIX-head
FLUX=$FLUX_PREFIX/bin/flux
T0=$(date +%s.%N)
say() { echo "[flux-lab $(awk -v a="$T0" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}')s] $*"; }
die() { echo "start-lab.sh: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root (namespaces)"
[ -x "$FLUX" ] || die "no flux at $FLUX (run build.sh first)"
command -v unshare >/dev/null && command -v nsenter >/dev/null && command -v ip >/dev/null ||
	die "needs unshare, nsenter (util-linux) and ip (iproute2)"

node_name() { echo "n$1"; }
node_ns() { echo "$FLUXLAB_PREFIX-n$1"; }
node_addr() { echo "$FLUXLAB_SUBNET.$((10 + $1))"; }
node_index() { local n=${1#n}; [[ "$n" =~ ^[0-9]+$ ]] && [ "$n" -ge 1 ] && [ "$n" -le "$FLUXLAB_NODES" ] || die "unknown node '$1'"; echo "$n"; }
ALL=$(for i in $(seq "$FLUXLAB_NODES"); do printf 'n%s ' "$i"; done)
URI=local://$RUN/n1/local

write_config() {
	mkdir -p "$FLUXLAB_DIR"/{etc/flux,log,bin,nodes} "$RUN"
	local conf=$FLUXLAB_DIR/etc/flux i
	[ -s "$FLUXLAB_DIR/etc/curve.cert" ] || "$FLUX" keygen "$FLUXLAB_DIR/etc/curve.cert" >/dev/null
	cat > "$conf/bootstrap.toml" <<-EOF
	[bootstrap]
	curve_cert = "$FLUXLAB_DIR/etc/curve.cert"
	default_port = $FLUXLAB_PORT
	default_bind = "tcp://eth0:%p"
	default_connect = "tcp://%h:%p"
	hosts = [ { host = "n[1-$FLUXLAB_NODES]" } ]
	EOF
	cat > "$conf/resource.toml" <<-EOF
	[[resource.config]]
	hosts = "n[1-$FLUXLAB_NODES]"
	cores = "0"
	EOF
	{
		echo "127.0.0.1 localhost"
		echo "$FLUXLAB_SUBNET.1 head"
		for i in $(seq "$FLUXLAB_NODES"); do echo "$(node_addr "$i") $(node_name "$i")"; done
		echo "::1 localhost ip6-localhost ip6-loopback"
	} > "$FLUXLAB_DIR/etc/hosts"
	# PID 1 of a node's namespaces: hosts file, private /dev/shm, hostname, then the broker;
	# it forwards SIGTERM and reaps orphans until the broker exits.
	cat > "$FLUXLAB_DIR/bin/node-init.sh" <<-'EOF'
	#!/bin/sh
	# usage: node-init.sh NAME LAB_DIR SHMSIZE CMD...
	name=$1 lab=$2 shmsize=$3; shift 3
	set -e
	mount --bind "$lab/etc/hosts" /etc/hosts
	mount -t tmpfs -o "size=$shmsize,mode=1777" "fluxlab-shm-$name" /dev/shm
	hostname "$name"
	set +e
	"$@" &
	child=$!
	trap 'kill -TERM $child 2>/dev/null' TERM INT
	while kill -0 "$child" 2>/dev/null; do wait "$child"; done
	EOF
	chmod +x "$FLUXLAB_DIR/bin/node-init.sh"
	cp "$HERE/lab" "$HERE/stop-lab.sh" "$FLUXLAB_DIR/bin/"
	cat > "$RUN/lab.env" <<-EOF
	FLUXLAB_DIR=$FLUXLAB_DIR
	FLUX_PREFIX=$FLUX_PREFIX
	FLUXLAB_NODES=$FLUXLAB_NODES
	FLUXLAB_PREFIX=$FLUXLAB_PREFIX
	FLUXLAB_SUBNET=$FLUXLAB_SUBNET
	FLUXLAB_SRC=$HERE
	HEAD_NS=$HEAD_NS
	NODES="$ALL"
	FLUX_URI=$URI
	FINGERPRINT="$FINGERPRINT"
	EOF
}

setup_netns() {
	local i ns
	ip netns add "$HEAD_NS"
	ip -n "$HEAD_NS" link set lo up
	ip -n "$HEAD_NS" link add br0 type bridge
	ip -n "$HEAD_NS" addr add "$FLUXLAB_SUBNET.1/24" dev br0
	ip -n "$HEAD_NS" link set br0 up
	for i in $(seq "$FLUXLAB_NODES"); do
		ns=$(node_ns "$i")
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip link add "fv$i" netns "$ns" type veth peer name "fh$i" netns "$HEAD_NS"
		ip -n "$ns" link set "fv$i" name eth0
		ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
		ip -n "$ns" link set eth0 up
		# a default route: nested instances (flux alloc/batch) pick their TBON interface
		# from it (tbon.interface-hint=default-route)
		ip -n "$ns" route add default via "$FLUXLAB_SUBNET.1"
		ip -n "$HEAD_NS" link set "fh$i" master br0
		ip -n "$HEAD_NS" link set "fh$i" up
	done
}

# start_node I: unshare a node's UTS/IPC/mount/PID namespaces inside its netns, broker in it
start_node() {
	local i=$1 name ns upid init="" k
	name=$(node_name "$i"); ns=$(node_ns "$i")
	mkdir -p "$RUN/$name"
	rm -f "$RUN/$name/local"
	setsid nsenter "--net=/run/netns/$ns" unshare --uts --ipc --pid --mount --kill-child \
		--mount-proc --propagation private \
		"$FLUXLAB_DIR/bin/node-init.sh" "$name" "$FLUXLAB_DIR" "$FLUXLAB_SHM_SIZE" \
		"$FLUX" broker --config-path="$FLUXLAB_DIR/etc/flux" \
		-Srundir="$RUN/$name" -Slocal-uri="local://$RUN/$name/local" \
		-Sbroker.rc2_none=1 -Sbroker.quorum=1 -Slog-filename="$FLUXLAB_DIR/log/$name.log" \
		>> "$FLUXLAB_DIR/log/$name.console" 2>&1 < /dev/null &
	upid=$!
	for k in $(seq 100); do
		init=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}')
		[ -n "$init" ] && break
		sleep 0.05
	done
	[ -n "$init" ] || die "could not start $name (see $FLUXLAB_DIR/log/$name.console)"
	echo "$upid" > "$RUN/$name.unshare.pid"
	echo "$init" > "$RUN/$name.init.pid"
}

alive() { [ -s "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

healthy() {
	[ -s "$RUN/lab.env" ] || return 1
	local i
	for i in $(seq "$FLUXLAB_NODES"); do alive "$RUN/n$i.init.pid" || return 1; done
	[ "$(FLUX_URI=$URI timeout 10 "$FLUX" resource status -s online -no '{nnodes}' 2>/dev/null)" = "$FLUXLAB_NODES" ]
}

wait_ready() {
	local deadline=$(( $(date +%s) + FLUXLAB_READY_TIMEOUT )) n=""
	while :; do
		if [ -S "$RUN/n1/local" ]; then
			n=$(FLUX_URI=$URI timeout 10 "$FLUX" resource status -s online -no '{nnodes}' 2>/dev/null || true)
			[ "$n" = "$FLUXLAB_NODES" ] && break
		fi
		[ "$(date +%s)" -ge "$deadline" ] && die "only '${n}' of $FLUXLAB_NODES brokers online after ${FLUXLAB_READY_TIMEOUT}s (logs: $FLUXLAB_DIR/log)"
		sleep 0.1
	done
	say "all $FLUXLAB_NODES brokers online"
	local out
	out=$(FLUX_URI=$URI timeout 30 "$FLUX" run -N"$FLUXLAB_NODES" hostname | sort | paste -sd' ') ||
		die "smoke test flux run -N$FLUXLAB_NODES hostname failed"
	[ "$out" = "${ALL% }" ] || die "smoke test: hostnames '$out', expected '${ALL% }'"
	say "smoke test: flux run -N$FLUXLAB_NODES hostname -> $out"
}

FINGERPRINT="$FLUX_PREFIX $FLUXLAB_NODES $FLUXLAB_PREFIX $FLUXLAB_SUBNET $FLUXLAB_PORT $FLUXLAB_SHM_SIZE"

if [ "${1:-}" = --respawn ]; then      # used by `lab restart NODE`
	[ -s "$RUN/lab.env" ] || die "lab not running"
	start_node "$(node_index "${2:?usage: start-lab.sh --respawn NODE}")"
	say "respawned $2 (init pid $(cat "$RUN/$2.init.pid"))"
	exit 0
fi

if grep -qxF "FINGERPRINT=\"$FINGERPRINT\"" "$RUN/lab.env" 2>/dev/null && healthy; then
	say "Flux lab already running and healthy"
	exit 0
fi
if [ -n "$(ls -A "$RUN" 2>/dev/null)" ] || ip netns list 2>/dev/null | grep -q "^$FLUXLAB_PREFIX-"; then
	say "cleaning up a stale, partial or differently configured lab"
	FLUXLAB_DIR=$FLUXLAB_DIR FLUXLAB_PREFIX=$FLUXLAB_PREFIX "$HERE/stop-lab.sh" >/dev/null || true
fi
rm -rf "${FLUXLAB_DIR:?}"/{run,log,nodes,bin}
write_config
setup_netns
# nothing in the root namespace may route lab addresses out of eth0
ip route replace unreachable "$FLUXLAB_SUBNET.0/24"
echo "$FLUXLAB_SUBNET.0/24" > "$RUN/unreachable-route"
say "network namespaces up: $HEAD_NS ($FLUXLAB_SUBNET.1) + $FLUXLAB_NODES nodes"
for i in $(seq "$FLUXLAB_NODES"); do start_node "$i"; done
wait_ready
echo "FLUX_URI=$URI $FLUX ..."
