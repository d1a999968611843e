#!/usr/bin/env bash
# Adapted for scr's test suite from the tested recipe in /work/shared/slurm-lab
# (see README.md here): own defaults (LAB_DIR, LAB_PREFIX, LAB_SUBNET) so it never
# collides with a lab started from the shared copy, the packages the later MPI /
# pdsh / ClusterShell tests need installed by default, an --install-only mode,
# and client wrappers in $LAB_DIR/clientbin (see write_client_wrappers).
#
# start-cluster.sh - bring up a multi-node Slurm 22.05 cluster on ONE Debian 12
# machine (root required), for integration tests of job-launch / node-failure
# logic.  Idempotent: if the lab cluster is already up and healthy it says so
# and exits 0; otherwise it tears down leftovers and starts from scratch.
#
# Every node is a slurmd (Debian's slurmd is built with --enable-multiple-slurmd,
# so `slurmd -N <name>` works) running in its own UTS + mount + PID namespace:
#   * `hostname` inside a job step prints the node name (n1, n2, ...);
#   * /dev/shm is a private tmpfs per node (node-local storage, gone when the
#     node "crashes");
#   * killing the namespace's init (one pid) kills slurmd, slurmstepd and all
#     tasks of that node at once = a realistic node crash (`lab crash n3`);
#   * /sys/fs/cgroup is replaced by a tmpfs holding one private, controller-less
#     cgroup-v1 hierarchy, so slurmd 22.05 (which always initialises its cgroup
#     plugin) starts without ever touching the host's cgroups.
#
# LAB_NET=netns (default): every node also gets its own network namespace,
#   addresses LAB_SUBNET.11, .12, ... on a bridge that lives in the
#   namespace "<prefix>-head", where slurmctld runs (LAB_SUBNET.1).  These
#   addresses exist only inside the lab namespaces; the root namespace only
#   gets an "unreachable" route for LAB_SUBNET.0/24 so a stray client in the
#   root namespace fails at once instead of sending anything out.
#   Run Slurm client commands in the head namespace:
#       ip netns exec scrlab-head sinfo       (or: $LAB_DIR/bin/lab exec sinfo)
#   A node can be cut off the network (`lab netdown n3`), so ping fails too.
# LAB_NET=loopback: slurmctld in the root namespace on 127.0.0.1, every slurmd on
#   127.0.0.1 with its own port.  Client commands work from any root shell
#   (/etc/slurm/slurm.conf is symlinked to the lab config when free).  Nodes
#   can crash but always answer ping.
#
# Usage: start-cluster.sh            (environment variables below tune it)
#        start-cluster.sh --install-only   (apt-get install what is missing, then exit;
#                                           exit code 3 if installing failed)
#        start-cluster.sh --respawn NODE   (used by `lab restart NODE`)
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
: "${LAB_DIR:=/var/tmp/scr-slurm-lab}"      # all state, logs, configs, pids
: "${LAB_NODES:=4}"                     # number of compute nodes
: "${LAB_NET:=netns}"                   # netns | loopback
: "${LAB_PREFIX:=scrlab}"               # netns names: scrlab-head, scrlab-n1, ...
: "${LAB_NODE_PREFIX:=n}"               # node names: n1, n2, ...
: "${LAB_SUBNET:=10.214.0}"             # netns mode only (/24, first 3 octets)
: "${LAB_CPUS:=2}"                      # CPUs= per node (may exceed real cores)
: "${LAB_MEM:=1000}"                    # RealMemory= per node (MB)
: "${LAB_CTLD_PORT:=6817}"
: "${LAB_SLURMD_PORT:=6818}"            # loopback mode: node i uses port+i-1
: "${LAB_SLURMD_TIMEOUT:=5}"            # seconds; 5 -> node DOWN ~17 s after a crash
: "${LAB_SHM:=tmpfs}"                   # tmpfs | bind (LAB_DIR/nodes/<n>/shm) | none
: "${LAB_SHM_SIZE:=256m}"
: "${LAB_AUTH:=munge}"                  # munge | none (auth/none + cred/none: no munged
                                        # needed; insecure, single-user test machines only)
: "${LAB_INSTALL:=auto}"                # auto: apt-get install what is missing; 0: never
: "${LAB_EXTRA_PKGS=openmpi-bin libopenmpi-dev mpich libmpich-dev pdsh clustershell}"
                                        # what scr's MPI / remote-exec tests need; set it
                                        # empty to install only Slurm
: "${LAB_ETC_LINK:=1}"                  # loopback: symlink /etc/slurm/slurm.conf
: "${LAB_BIND_LOOPBACK:=auto}"          # loopback: bind daemons+srun to 127.0.0.1 (auto: if
                                        # `hostname` resolves to 127.x; else they bind 0.0.0.0)
: "${LAB_SSHD:=0}"                       # 1: an sshd per node (key auth, lab-only keys)
: "${LAB_SSH_PORT:=2200}"               # loopback mode: node i's sshd on 127.0.0.1:port+i
: "${LAB_READY_TIMEOUT:=60}"
: "${LAB_CLUSTER:=lab}"

T0=$(date +%s.%N)
elapsed() { awk -v a="$1" -v b="$(date +%s.%N)" 'BEGIN{printf "%.2f", b-a}'; }
say() { echo "[slurm-lab $(elapsed "$T0")s] $*" 2>/dev/null || true; }
msg() { printf '%s\n' "$@" 2>/dev/null || true; }
trap '' PIPE     # `start-cluster.sh | head` must not kill us half-way
die() { echo "start-cluster.sh: ERROR: $*" >&2; exit 1; }

[ "$(id -u)" = 0 ] || die "must run as root"
case "$LAB_NET" in netns|loopback) ;; *) die "LAB_NET must be netns or loopback";; esac
case "$LAB_AUTH" in munge|none) ;; *) die "LAB_AUTH must be munge or none";; esac
[[ "$LAB_NODES" =~ ^[0-9]+$ ]] && [ "$LAB_NODES" -ge 1 ] && [ "$LAB_NODES" -le 200 ] || die "bad LAB_NODES"

RUN=$LAB_DIR/run
HEAD_NS=$LAB_PREFIX-head
node_name() { echo "$LAB_NODE_PREFIX$1"; }
node_ns()   { echo "$LAB_PREFIX-$(node_name "$1")"; }
node_addr() { if [ "$LAB_NET" = netns ]; then echo "$LAB_SUBNET.$((10 + $1))"; else echo 127.0.0.1; fi; }
node_index() { local n=$1; n=${n#"$LAB_NODE_PREFIX"}; [[ "$n" =~ ^[0-9]+$ ]] || die "unknown node $1"; echo "$n"; }

# ---------------------------------------------------------------- packages
install_packages() {
	local pkgs=(slurmctld slurmd slurm-client iproute2 util-linux procps iputils-ping)
	[ "$LAB_AUTH" = munge ] && pkgs+=(munge)
	[ "$LAB_SSHD" = 1 ] && pkgs+=(openssh-server openssh-client)
	# shellcheck disable=SC2206
	pkgs+=($LAB_EXTRA_PKGS)
	local missing=() p
	for p in "${pkgs[@]}"; do
		dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
	done
	[ ${#missing[@]} -eq 0 ] && return 0
	# exit code 3 = "could not install": the test suite skips (or, under CI, fails) on it
	[ "$LAB_INSTALL" = 0 ] && { echo "start-cluster.sh: missing packages: ${missing[*]} (LAB_INSTALL=0)" >&2; exit 3; }
	say "apt-get install ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -qq || { echo "start-cluster.sh: apt-get update failed" >&2; exit 3; }
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		{ echo "start-cluster.sh: apt-get install ${missing[*]} failed" >&2; exit 3; }
	# On a machine with systemd the packages start their own services; ours replace them.
	if [ -d /run/systemd/system ]; then
		systemctl disable --now slurmctld slurmd >/dev/null 2>&1 || true
	fi
}

# ---------------------------------------------------------------- munge
ensure_munge() {
	if [ ! -s /etc/munge/munge.key ]; then
		mungekey --create --keyfile=/etc/munge/munge.key 2>/dev/null ||
			dd if=/dev/urandom bs=1 count=1024 of=/etc/munge/munge.key 2>/dev/null
		chown munge:munge /etc/munge/munge.key; chmod 0400 /etc/munge/munge.key
	fi
	if munge -n 2>/dev/null | unmunge >/dev/null 2>&1; then
		say "munged already running (not ours, left alone)"
		return 0
	fi
	mkdir -p /run/munge /var/lib/munge /var/log/munge
	chown munge:munge /run/munge /var/lib/munge /var/log/munge
	chmod 0755 /run/munge
	runuser -u munge -- /usr/sbin/munged --pid-file=/run/munge/munged.pid
	local i
	for i in $(seq 50); do
		munge -n 2>/dev/null | unmunge >/dev/null 2>&1 && break
		sleep 0.1
	done
	munge -n | unmunge >/dev/null || die "munged did not come up"
	cp /run/munge/munged.pid "$RUN/munged.pid"   # we started it -> stop-cluster.sh stops it
	say "munged started (pid $(cat "$RUN/munged.pid"))"
}

# ---------------------------------------------------------------- config files
write_config() {
	mkdir -p "$LAB_DIR"/{etc/slurm,state,log,run,bin,nodes}
	local ctld_host ctld_addr conf=$LAB_DIR/etc/slurm/slurm.conf i
	if [ "$LAB_NET" = netns ]; then ctld_host="head"; ctld_addr="$LAB_SUBNET.1"
	else ctld_host=localhost; ctld_addr=127.0.0.1; fi
	[ -f "$HERE/slurm.conf.template" ] || die "slurm.conf.template not found beside $0"
	sed -e "s|@@CLUSTER@@|$LAB_CLUSTER|g" -e "s|@@CTLD_HOST@@|$ctld_host|g" \
	    -e "s|@@CTLD_ADDR@@|$ctld_addr|g" -e "s|@@CTLD_PORT@@|$LAB_CTLD_PORT|g" \
	    -e "s|@@SLURMD_PORT@@|$LAB_SLURMD_PORT|g" -e "s|@@LAB_DIR@@|$LAB_DIR|g" \
	    -e "s|@@SLURMD_TIMEOUT@@|$LAB_SLURMD_TIMEOUT|g" -e "s|@@AUTH@@|$LAB_AUTH|g" \
	    "$HERE/slurm.conf.template" > "$conf.tmp"
	{
		echo "# ---- generated by start-cluster.sh (LAB_NET=$LAB_NET, $LAB_NODES nodes)"
		for i in $(seq "$LAB_NODES"); do
			if [ "$LAB_NET" = netns ]; then
				echo "NodeName=$(node_name "$i") NodeAddr=$(node_addr "$i") CPUs=$LAB_CPUS RealMemory=$LAB_MEM State=UNKNOWN"
			else
				echo "NodeName=$(node_name "$i") NodeHostname=localhost NodeAddr=127.0.0.1 Port=$((LAB_SLURMD_PORT + i - 1)) CPUs=$LAB_CPUS RealMemory=$LAB_MEM State=UNKNOWN"
			fi
		done
		echo "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP OverSubscribe=NO"
		if [ "$LAB_NET" = loopback ]; then
			# NoInAddrAny: slurmd binds NodeAddr, srun binds the address of
			# `hostname` (must then be 127.x, or steps hang: slurmstepd calls
			# srun back on the peer address 127.0.0.1).
			local b=$LAB_BIND_LOOPBACK
			if [ "$b" = auto ]; then
				case "$(getent ahostsv4 "$(hostname)" | awk 'NR==1{print $1}')" in 127.*) b=1 ;; *) b=0 ;; esac
			fi
			[ "$b" = 1 ] && echo "CommunicationParameters=NoInAddrAny,NoCtldInAddrAny"
		fi
	} >> "$conf.tmp"
	mv "$conf.tmp" "$conf"
	# hosts file seen inside every lab namespace (and via `ip netns exec`)
	{
		if [ "$LAB_NET" = netns ]; then
			echo "127.0.0.1 localhost"
			echo "$LAB_SUBNET.1 head"
			for i in $(seq "$LAB_NODES"); do echo "$(node_addr "$i") $(node_name "$i")"; done
		else
			echo "127.0.0.1 localhost head $(hostname) $(for i in $(seq "$LAB_NODES"); do printf '%s ' "$(node_name "$i")"; done)"
		fi
		echo "::1 localhost ip6-localhost ip6-loopback"
	} > "$LAB_DIR/etc/hosts"
	# node init: PID 1 of each node's PID namespace
	cat > "$LAB_DIR/bin/host-init.sh" <<-'EOF'
	#!/bin/sh
	# PID 1 of a lab host's namespaces.  usage: host-init.sh NAME LAB_DIR SHM SHMSIZE CMD...
	name=$1 lab=$2 shm=$3 shmsize=$4; shift 4
	set -e
	mount --bind "$lab/etc/hosts" /etc/hosts
	mount --bind "$lab/etc/slurm" /etc/slurm
	# slurmd 22.05 always initialises its cgroup plugin; give it a private,
	# controller-less v1 hierarchy instead of the host's cgroups.
	mount -t tmpfs -o size=1m,mode=755 slab-nocgroup /sys/fs/cgroup
	mkdir -p /sys/fs/cgroup/systemd
	mount -t cgroup -o none,name=slurmlab slurmlab /sys/fs/cgroup/systemd
	case "$shm" in
	tmpfs) mount -t tmpfs -o "size=$shmsize,mode=1777" "slab-shm-$name" /dev/shm ;;
	bind)  mkdir -p "$lab/nodes/$name/shm"; chmod 1777 "$lab/nodes/$name/shm"
	       mount --bind "$lab/nodes/$name/shm" /dev/shm ;;
	esac
	# netns mode: per-node boot_id, since UCX (MPICH) uses it to decide "same
	# host" and would otherwise try shared memory between lab nodes.  Not in
	# loopback mode, where UCX then refuses tcp over lo between "hosts".
	if [ -f "$lab/etc/per-node-boot-id" ]; then
		cat /proc/sys/kernel/random/uuid > "$lab/nodes/$name/boot_id"
		mount --bind "$lab/nodes/$name/boot_id" /proc/sys/kernel/random/boot_id
	fi
	hostname "$name"
	set +e
	# optional per-node sshd (daemonises; dies with the namespace)
	[ -f "$lab/ssh/sshd_config.$name" ] && /usr/sbin/sshd -f "$lab/ssh/sshd_config.$name" -E "$lab/log/sshd-$name.log"
	"$@" &
	child=$!
	trap 'kill -TERM $child 2>/dev/null' TERM INT
	# wait also reaps re-parented orphans (slurmstepd double-forks)
	while kill -0 "$child" 2>/dev/null; do wait "$child"; done
	EOF
	chmod +x "$LAB_DIR/bin/host-init.sh"
	if [ "$LAB_NET" = netns ]; then touch "$LAB_DIR/etc/per-node-boot-id"; fi
	cp "$HERE/lab" "$LAB_DIR/bin/lab" 2>/dev/null || true
	cp "$HERE/stop-cluster.sh" "$LAB_DIR/bin/stop-cluster.sh" 2>/dev/null || true
	write_client_wrappers
	cat > "$RUN/cluster.env" <<-EOF
	LAB_DIR=$LAB_DIR
	LAB_NET=$LAB_NET
	LAB_NODES=$LAB_NODES
	LAB_PREFIX=$LAB_PREFIX
	LAB_NODE_PREFIX=$LAB_NODE_PREFIX
	LAB_SUBNET=$LAB_SUBNET
	LAB_SHM=$LAB_SHM
	LAB_SHM_SIZE=$LAB_SHM_SIZE
	LAB_SSHD=$LAB_SSHD
	LAB_SRC=$HERE
	HEAD_NS=$HEAD_NS
	NODES="$(for i in $(seq "$LAB_NODES"); do printf '%s ' "$(node_name "$i")"; done)"
	SLURM_CONF=$LAB_DIR/etc/slurm/slurm.conf
	LAB_FINGERPRINT="$FINGERPRINT"
	EOF
}

# ---------------------------------------------------------------- client wrappers
# $LAB_DIR/clientbin/<cmd>: the Slurm client <cmd> run where the controller is reachable
# (head namespace in netns mode, SLURM_CONF in loopback mode).  For processes OUTSIDE the
# lab (the test session); never put this directory on a PATH that a job inherits: inside
# a lab node the plain commands already work.  `exec` all the way down, so the pid a
# caller starts is the client's own pid (signals to "srun" reach srun).
write_client_wrappers() {
	local d=$LAB_DIR/clientbin c real ipcmd
	rm -rf "$d"; mkdir -p "$d"
	ipcmd=$(command -v ip)
	for c in sinfo squeue scontrol sbatch scancel srun salloc sacct sattach sstat sprio; do
		real=$(command -v "$c") || continue
		if [ "$LAB_NET" = netns ]; then
			printf '#!/bin/sh\n# %s in the lab head namespace (generated by start-cluster.sh)\nexec %s netns exec %s %s "$@"\n' \
				"$c" "$ipcmd" "$HEAD_NS" "$real" > "$d/$c"
		else
			printf '#!/bin/sh\n# %s against the lab controller (generated by start-cluster.sh)\nSLURM_CONF=%s\nexport SLURM_CONF\nexec %s "$@"\n' \
				"$c" "$LAB_DIR/etc/slurm/slurm.conf" "$real" > "$d/$c"
		fi
		chmod 755 "$d/$c"
	done
}

# ---------------------------------------------------------------- optional sshd per node
setup_ssh() {
	local d=$LAB_DIR/ssh i name listen
	rm -rf "$d"; mkdir -p "$d" /run/sshd; chmod 700 "$d"
	ssh-keygen -q -t ed25519 -N '' -C slurm-lab-user -f "$d/id_ed25519"
	ssh-keygen -q -t ed25519 -N '' -C slurm-lab-host -f "$d/host_ed25519_key"
	cp "$d/id_ed25519.pub" "$d/authorized_keys"
	{
		echo "Host *"
		echo "  User root"
		echo "  IdentityFile $d/id_ed25519"
		echo "  IdentitiesOnly yes"
		echo "  StrictHostKeyChecking no"
		echo "  UserKnownHostsFile /dev/null"
		echo "  LogLevel ERROR"
		echo "  BatchMode yes"
		if [ "$LAB_NET" = loopback ]; then
			for i in $(seq "$LAB_NODES"); do
				printf 'Host %s\n  HostName 127.0.0.1\n  Port %s\n' "$(node_name "$i")" "$((LAB_SSH_PORT + i))"
			done
		fi
	} > "$d/ssh_config"
	for i in $(seq "$LAB_NODES"); do
		name=$(node_name "$i")
		if [ "$LAB_NET" = netns ]; then listen="$(node_addr "$i"):22"
		else listen="127.0.0.1:$((LAB_SSH_PORT + i))"; fi
		cat > "$d/sshd_config.$name" <<-EOF
		ListenAddress $listen
		HostKey $d/host_ed25519_key
		PidFile none
		PermitRootLogin prohibit-password
		PubkeyAuthentication yes
		PasswordAuthentication no
		KbdInteractiveAuthentication no
		UsePAM no
		StrictModes no
		AuthorizedKeysFile $d/authorized_keys
		AcceptEnv LANG LC_* SLURM_*
		PrintMotd no
		EOF
	done
}

# ---------------------------------------------------------------- network (netns mode)
setup_netns() {
	local i ns
	ip netns add "$HEAD_NS"
	ip -n "$HEAD_NS" link set lo up
	ip -n "$HEAD_NS" link add br0 type bridge
	ip -n "$HEAD_NS" addr add "$LAB_SUBNET.1/24" dev br0
	ip -n "$HEAD_NS" link set br0 up
	for i in $(seq "$LAB_NODES"); do
		ns=$(node_ns "$i")
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip link add "lv$i" netns "$ns" type veth peer name "vh$i" netns "$HEAD_NS"
		ip -n "$ns" link set "lv$i" name eth0
		ip -n "$ns" addr add "$(node_addr "$i")/24" dev eth0
		ip -n "$ns" link set eth0 up
		ip -n "$HEAD_NS" link set "vh$i" master br0
		ip -n "$HEAD_NS" link set "vh$i" up
	done
	# `ip netns exec NS cmd` bind-mounts /etc/netns/NS/* over /etc/*:
	# gives clients there the lab hosts file and /etc/slurm/slurm.conf.
	for ns in "$HEAD_NS" $(for i in $(seq "$LAB_NODES"); do node_ns "$i"; done); do
		mkdir -p "/etc/netns/$ns"
		cp "$LAB_DIR/etc/hosts" "/etc/netns/$ns/hosts"
		rm -rf "/etc/netns/$ns/slurm"; mkdir -p "/etc/netns/$ns/slurm"
		ln -s "$LAB_DIR/etc/slurm/slurm.conf" "/etc/netns/$ns/slurm/slurm.conf"
	done
	# safety net: nothing in the root namespace may route lab addresses out of eth0
	ip route replace unreachable "$LAB_SUBNET.0/24"
	echo "$LAB_SUBNET.0/24" > "$RUN/unreachable-route"
}

# ---------------------------------------------------------------- processes
# spawn_host NAME NETNS|"" CMD...   -> $RUN/NAME.unshare.pid, $RUN/NAME.init.pid
spawn_host() {
	local name=$1 ns=$2; shift 2
	local pre=()
	[ -n "$ns" ] && pre=(nsenter "--net=/run/netns/$ns")
	# no job control in a script -> setsid execs in place, $! is unshare's pid
	mkdir -p "$LAB_DIR/nodes/$name"
	setsid "${pre[@]}" unshare --uts --ipc --pid --kill-child --mount-proc --propagation private \
		"$LAB_DIR/bin/host-init.sh" "$name" "$LAB_DIR" "$LAB_SHM" "$LAB_SHM_SIZE" "$@" \
		>> "$LAB_DIR/log/$name.console" 2>&1 < /dev/null &
	local upid=$! init="" i
	for i in $(seq 100); do
		init=$(cat "/proc/$upid/task/$upid/children" 2>/dev/null | awk '{print $1}')
		[ -n "$init" ] && break
		sleep 0.05
	done
	[ -n "$init" ] || die "could not start $name (see $LAB_DIR/log/$name.console)"
	echo "$upid" > "$RUN/$name.unshare.pid"
	echo "$init" > "$RUN/$name.init.pid"
}

client() {   # run a Slurm client command where the controller is reachable
	if [ "$LAB_NET" = netns ]; then ip netns exec "$HEAD_NS" "$@"; else SLURM_CONF=$LAB_DIR/etc/slurm/slurm.conf "$@"; fi
}

start_node() {
	local i=$1 name ns=""
	name=$(node_name "$i")
	mkdir -p "$LAB_DIR/nodes/$name/spool" "$LAB_DIR/nodes/$name/tmp"
	chmod 1777 "$LAB_DIR/nodes/$name/tmp"     # TmpFS (PMIx puts per-step dirs there)
	[ "$LAB_NET" = netns ] && ns=$(node_ns "$i")
	spawn_host "$name" "$ns" /usr/sbin/slurmd -D -f /etc/slurm/slurm.conf -N "$name"
}

start_ctld() {
	if [ "$LAB_NET" = netns ]; then
		spawn_host head "$HEAD_NS" /usr/sbin/slurmctld -D -i -f /etc/slurm/slurm.conf
	else
		setsid /usr/sbin/slurmctld -D -i -f "$LAB_DIR/etc/slurm/slurm.conf" \
			>> "$LAB_DIR/log/head.console" 2>&1 < /dev/null &
		echo $! > "$RUN/head.init.pid"
	fi
}

alive() { local f=$1; [ -s "$f" ] && kill -0 "$(cat "$f")" 2>/dev/null; }

cluster_healthy() {
	[ -s "$RUN/cluster.env" ] || return 1
	alive "$RUN/head.init.pid" || return 1
	local i
	for i in $(seq "$LAB_NODES"); do alive "$RUN/$(node_name "$i").init.pid" || return 1; done
	[ "$LAB_NET" = netns ] && { ip netns list | grep -qw "$HEAD_NS" || return 1; }
	client timeout 10 scontrol ping 2>/dev/null | grep -q UP
}

wait_ready() {
	local deadline=$(( $(date +%s) + LAB_READY_TIMEOUT )) idle
	while :; do
		idle=$(client sinfo -h -N -t idle -o '%N' 2>/dev/null | sort -u | wc -l)
		[ "$idle" -ge "$LAB_NODES" ] && break
		[ "$(date +%s)" -ge "$deadline" ] && { client sinfo -N -l || true; die "nodes not idle after ${LAB_READY_TIMEOUT}s (logs: $LAB_DIR/log)"; }
		sleep 0.2
	done
	say "all $LAB_NODES nodes idle"
	local t1 out
	t1=$(date +%s.%N)
	out=$(client timeout 30 srun -N"$LAB_NODES" -n"$LAB_NODES" hostname | sort | paste -sd' ') ||
		die "smoke test srun -N$LAB_NODES hostname failed"
	say "smoke test: srun -N$LAB_NODES hostname -> $out ($(elapsed "$t1")s)"
}

# ---------------------------------------------------------------- main
if [ "${1:-}" = --install-only ]; then
	install_packages
	say "packages present ($(dpkg-query -W -f='${Version}' slurmd))"
	exit 0
fi
if [ "${1:-}" = --respawn ]; then          # used by `lab restart NODE`
	[ -s "$RUN/cluster.env" ] || die "cluster not running"
	# shellcheck disable=SC1091
	. "$RUN/cluster.env"
	idx=$(node_index "$2")
	start_node "$idx"
	say "respawned $2 (init pid $(cat "$RUN/$2.init.pid"))"
	exit 0
fi

FINGERPRINT="$LAB_NET $LAB_AUTH $LAB_NODES $LAB_PREFIX $LAB_NODE_PREFIX $LAB_SUBNET $LAB_CPUS $LAB_MEM $LAB_CTLD_PORT $LAB_SLURMD_PORT $LAB_SLURMD_TIMEOUT $LAB_SHM $LAB_SHM_SIZE $LAB_SSHD $LAB_SSH_PORT $LAB_BIND_LOOPBACK $LAB_EXTRA_PKGS"
if [ -s "$RUN/cluster.env" ] && grep -qxF "LAB_FINGERPRINT=\"$FINGERPRINT\"" "$RUN/cluster.env" && cluster_healthy; then
	say "lab cluster already running and healthy"
	client sinfo
	exit 0
fi
if [ -n "$(ls -A "$RUN" 2>/dev/null)" ] || ip netns list 2>/dev/null | grep -q "^$LAB_PREFIX-"; then
	say "cleaning up a stale, partial or differently configured lab cluster"
	LAB_DIR=$LAB_DIR LAB_PREFIX=$LAB_PREFIX "$HERE/stop-cluster.sh" || true
fi

install_packages
say "packages present ($(dpkg-query -W -f='${Version}' slurmd))"
mkdir -p "$RUN"
rm -rf "${LAB_DIR:?}"/{state,log,run,nodes,etc,ssh}
mkdir -p "$RUN"
[ "$LAB_AUTH" = munge ] && ensure_munge
mkdir -p /etc/slurm        # bind-mount target inside the lab namespaces
write_config
[ "$LAB_SSHD" = 1 ] && setup_ssh
if [ "$LAB_NET" = netns ]; then
	setup_netns
	say "network namespaces up: $HEAD_NS ($LAB_SUBNET.1) + $LAB_NODES nodes"
else
	if [ "$LAB_ETC_LINK" = 1 ]; then
		if [ ! -e /etc/slurm/slurm.conf ] || [ "$(readlink /etc/slurm/slurm.conf)" = "$LAB_DIR/etc/slurm/slurm.conf" ]; then
			mkdir -p /etc/slurm
			ln -sfn "$LAB_DIR/etc/slurm/slurm.conf" /etc/slurm/slurm.conf
			echo /etc/slurm/slurm.conf > "$RUN/etc-link"
		else
			say "WARNING: /etc/slurm/slurm.conf exists; export SLURM_CONF=$LAB_DIR/etc/slurm/slurm.conf"
		fi
	fi
fi
start_ctld
for i in $(seq "$LAB_NODES"); do start_node "$i"; done
say "slurmctld + $LAB_NODES slurmd started"
wait_ready
if [ "$LAB_SSHD" = 1 ]; then
	msg "[slurm-lab] sshd on every node: $LAB_DIR/bin/lab ssh n1 hostname" \
	    "    PDSH_SSH_ARGS_APPEND=\"-F $LAB_DIR/ssh/ssh_config\" pdsh -R ssh -w ... / clush -o \"-F $LAB_DIR/ssh/ssh_config\" -w ..."
fi
if [ "$LAB_NET" = netns ]; then
	cat <<EOF 2>/dev/null || true
[slurm-lab] READY. Slurm commands must run in the head namespace, e.g.
    ip netns exec $HEAD_NS sinfo
    ip netns exec $HEAD_NS sbatch --no-kill -N$LAB_NODES job.sh
    $LAB_DIR/bin/lab exec srun -N$LAB_NODES hostname
  node control: $LAB_DIR/bin/lab {crash|netdown|netup|restart|on|ssh|status} ...
  stop:         $HERE/stop-cluster.sh
EOF
else
	cat <<EOF 2>/dev/null || true
[slurm-lab] READY. export SLURM_CONF=$LAB_DIR/etc/slurm/slurm.conf (or use /etc/slurm/slurm.conf if it was linked)
    sinfo; srun -N$LAB_NODES hostname; sbatch --no-kill -N$LAB_NODES job.sh
  node control: $LAB_DIR/bin/lab {crash|restart|on|ssh|status} ...
  stop:         $HERE/stop-cluster.sh
EOF
fi
