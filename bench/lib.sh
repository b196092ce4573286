# shellcheck shell=bash
# bench/lib.sh — shared by the benchmark scripts: which tools to time, memory of processes, a bare
# WireGuard tunnel between two namespaces, and iperf3/ping through it. Messages name $BENCH (the
# sourcing script's name); DURATION (s per iperf3 test) and PINGS are the sourcing script's.
BENCH=${BENCH:-$(basename "$0" .sh)}

# bench_sizes N...: the sizes asked for (default 10 200 1000) into the array `sizes`, each a
# number of 1 to 9999 (exit 2 naming one that is not).
bench_sizes() {
	sizes=("$@")
	((${#sizes[@]})) || sizes=(10 200 1000)
	local n
	for n in "${sizes[@]}"; do
		[[ $n =~ ^[1-9][0-9]{0,3}$ ]] || { echo "$BENCH: N must be 1..9999, not '$n'" >&2 && exit 2; }
	done
}

# bench_need TOOL...: exit 2 naming the first TOOL that is not on PATH.
bench_need() {
	local t
	for t in "$@"; do
		command -v "$t" >/dev/null || { echo "$BENCH: needs $t" >&2 && exit 2; }
	done
}

# bench_tools REPO: exports NIRANSIX_BIN_DIR (unless set) as the first complete build of the four
# tools and hubctl, release before debug.
bench_tools() {
	[[ -z ${NIRANSIX_BIN_DIR:-} ]] || return 0
	local d
	for d in "$1/target/release" "$1/target/debug"; do
		if [[ -x $d/nsctl && -x $d/wgctl && -x $d/natctl && -x $d/routectl && -x $d/hubctl ]]; then
			export NIRANSIX_BIN_DIR=$d
			return 0
		fi
	done
}

# bench_scratch PREFIX: a scratch directory ($scratch), removed on exit with every namespace
# named PREFIX* (after bench_cleanup_first, if the script defines it).
bench_scratch() {
	scratch=$(mktemp -d)
	bench_netns_prefix=$1
	trap bench_cleanup EXIT
	trap 'exit 130' INT TERM
}
bench_cleanup() {
	local ns
	! declare -F bench_cleanup_first >/dev/null || bench_cleanup_first
	for ns in $(ip netns list | awk -v p="$bench_netns_prefix" 'index($1, p) == 1 {print $1}'); do
		ip netns del "$ns"
	done
	rm -rf "$scratch"
}

# bench_peer TAG I: a zones peer I's names: its tunnel (TAG<I>-wg), address, zone and mark.
# shellcheck disable=SC2034 # (the caller's)
bench_peer() {
	tun=$1$2-wg addr=100.64.$(($2 / 250)).$(($2 % 250 + 1)) zone=$((1000 + $2))
	printf -v mark '%#x' $((0x4e580000 + $2))
}


# proc_kb FILE FIELD PATTERN: the sum of FIELD (kB) in /proc/PID/FILE over the processes whose
# command line matches PATTERN.
proc_kb() {
	local kb=0 pid v
	for pid in $(pgrep -f "$3" || true); do
		v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$pid/$1" 2>/dev/null || echo 0)
		kb=$((kb + ${v:-0}))
	done
	echo "$kb"
}

# rss_kb PATTERN: total RSS (kB) of the processes whose command line matches.
rss_kb() { proc_kb status VmRSS "$1"; }

# pss_kb PATTERN: total PSS (kB) of those processes: shared pages divided among their users, so
# that a thousand wireguard-go count their one binary once.
pss_kb() { proc_kb smaps_rollup Pss "$1"; }

# ---------------------------------------------------------------- inotify instances

# inotify_need N...: fs.inotify.max_user_instances at least the largest N + 64 (each wireguard-go
# holds an instance: N of them, and a few more of the bench's own; raised to 8192, or more), the
# old value kept for inotify_restore. Called again, it puts the value back up if someone else's
# test or benchmark restored theirs meanwhile.
BENCH_INOTIFY=/proc/sys/fs/inotify/max_user_instances
bench_inotify_old=$(<"$BENCH_INOTIFY") bench_inotify_set=
inotify_need() {
	local need=0 n
	for n in "$@"; do ((n + 64 <= need)) || need=$((n + 64)); done
	((need > $(<"$BENCH_INOTIFY"))) || return 0
	bench_inotify_set=$((need > 8192 ? need : 8192))
	echo "$bench_inotify_set" >"$BENCH_INOTIFY"
}
# inotify_restore: the old value back, unless someone changed it since (for an exit trap).
inotify_restore() {
	[[ -z $bench_inotify_set || $(<"$BENCH_INOTIFY") != "$bench_inotify_set" ]] ||
		echo "$bench_inotify_old" >"$BENCH_INOTIFY"
}

# ---------------------------------------------------------------- a bare tunnel

# pair_up A B WORK: namespaces A and B joined by a veth (2001:db8:f::1 and ::2), a WireGuard tunnel
# A-wg / B-wg between them (10.201.0.1 and .2, port 51820), made with wgctl (the userspace
# implementation it picks, or $NIRANSIX_WG_USERSPACE); keys in WORK.
pair_up() {
	local a=$1 b=$2 work=$3 ns wgctl=$NIRANSIX_BIN_DIR/wgctl
	for ns in "$a" "$b"; do
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		(umask 077 && wg genkey >"$work/$ns.key")
		wg pubkey <"$work/$ns.key" >"$work/$ns.pub"
	done
	ip link add "$a-u" netns "$a" type veth peer name "$b-u" netns "$b"
	ip -n "$a" addr add 2001:db8:f::1/64 dev "$a-u" nodad
	ip -n "$b" addr add 2001:db8:f::2/64 dev "$b-u" nodad
	ip -n "$a" link set "$a-u" up
	ip -n "$b" link set "$b-u" up
	"$wgctl" --ns "$a" iface add "$a-wg" --private-key "$work/$a.key" --listen-port 51820 --into-ns "$a" >/dev/null
	"$wgctl" --ns "$b" iface add "$b-wg" --private-key "$work/$b.key" --listen-port 51820 --into-ns "$b" >/dev/null
	"$wgctl" --ns "$a" peer add "$a-wg" --public-key "$(<"$work/$b.pub")" --allowed-ips 10.201.0.2/32 \
		--endpoint '[2001:db8:f::2]:51820' >/dev/null
	"$wgctl" --ns "$b" peer add "$b-wg" --public-key "$(<"$work/$a.pub")" --allowed-ips 10.201.0.1/32 \
		--endpoint '[2001:db8:f::1]:51820' >/dev/null
	ip -n "$a" addr add 10.201.0.1/24 dev "$a-wg"
	ip -n "$b" addr add 10.201.0.2/24 dev "$b-wg"
}

# pair_down A B: removes what pair_up made (the interfaces, then the namespaces).
pair_down() {
	local ns
	for ns in "$@"; do
		"$NIRANSIX_BIN_DIR/wgctl" --ns "$ns" iface del "$ns-wg" >/dev/null 2>&1 || true
		ip netns del "$ns" 2>/dev/null || true
	done
}

# reach NS ADDR: waits (up to 20 s) until ADDR answers a ping from NS: the handshake is done.
reach() {
	local i
	for ((i = 0; i < 20; i++)); do
		! ip netns exec "$1" ping -n -c 1 -W 1 "$2" >/dev/null 2>&1 || return 0
	done
	echo "$BENCH: $2 does not answer from $1" >&2
	return 1
}

# ---------------------------------------------------------------- measuring

# Every iperf3 runs in a session of its own (setsid), as it would run on a machine of its own.
# The kernel schedules each session as one group (sched_autogroup, on by default): a sender and
# its receiver in one session share one group's CPU, so work the kernel does in the sender's
# system calls (the hub's NAT, for a sender in the hub's namespace) starved the receiver.
# Measured 2026-12-06, zones, center -> device, 64-byte UDP: 0.70-0.93x of the floor with the
# servers in the script's session, 1.0-1.15x with each in its own; the floor itself unchanged.

# start_server NS [BIND]: iperf3 -s on port 5201 in NS (start_servers).
start_server() { start_servers "$1:${2:-}:5201"; }

# start_servers NS:BIND:PORT...: an iperf3 -s for each (BIND may be empty), all in one session
# (one scheduling group, as one machine's servers: 8 servers in 8 sessions took 8 shares of the
# CPU from wgd's one). The session's pid in SERVER_PID, for stop_server. Returns once all
# listen.
# shellcheck disable=SC2034 # SERVER_PID is for the caller
start_servers() {
	local t ns port i
	# shellcheck disable=SC2016 # (the inner script's own variables)
	setsid bash -c '
		for t in "$@"; do
			IFS=: read -r ns bind port <<<"$t"
			ip netns exec "$ns" iperf3 -s -p "$port" ${bind:+-B "$bind"} >/dev/null 2>&1 &
		done
		wait' start_servers "$@" &
	SERVER_PID=$!
	for t in "$@"; do
		IFS=: read -r ns _ port <<<"$t"
		for ((i = 0; i < 100; i++)); do
			[[ -z $(ip netns exec "$ns" ss -Hltn "sport = :$port") ]] || break
			sleep 0.05
		done
		((i < 100)) || { echo "$BENCH: iperf3 -s in $ns on $port does not listen" >&2; return 1; }
	done
}
# stop_server PID: ends what start_servers started as PID (its whole session's process group).
stop_server() {
	kill -- "-$1" 2>/dev/null || true
	wait "$1" 2>/dev/null || true
}

# iperf NS ADDR ARGS...: iperf3's JSON of a test from NS to ADDR:5201 (tried 3 times: a server
# still finishing the previous test answers "busy").
iperf() {
	local ns=$1 addr=$2 out
	shift 2
	for _ in 1 2 3; do
		if out=$(ip netns exec "$ns" setsid -w iperf3 -c "$addr" -p 5201 -t "$DURATION" -J "$@" 2>&1) &&
			jq -e '.end.sum_received' <<<"$out" >/dev/null 2>&1; then
			printf '%s\n' "$out"
			return 0
		fi
		sleep 1
	done
	echo "$BENCH: iperf3 -c $addr $* from $ns failed: $(jq -r '.error // empty' <<<"$out" 2>/dev/null || echo "$out")" >&2
	return 1
}
# tcp NS ADDR STREAMS: received Mbit/s.
tcp() {
	iperf "$1" "$2" -P "$3" | jq -r '.end.sum_received.bits_per_second / 1e6'
}
# udp NS ADDR: received packets per second, 64-byte payloads sent as fast as iperf3 can.
udp() {
	# (the receiver's count, which iperf3 reports as the packets sent less those lost)
	iperf "$1" "$2" -u -l 64 -b 0 | jq -r '.end.sum_received | (.packets - .lost_packets) / .seconds'
}
# rtt NS ADDR: "p50 p99" in ms of PINGS pings, 10 ms apart.
rtt() {
	local out
	out=$(ip netns exec "$1" ping -n -c "$PINGS" -i 0.01 -W 1 "$2" 2>&1 || true)
	grep -oE 'time=[0-9.]+' <<<"$out" | cut -d= -f2 | sort -g | awk -v n="$PINGS" '
		{ t[NR] = $1 }
		END {
			if (NR < n * 0.9) exit 1
			i50 = int(NR * 0.50 + 0.999); i99 = int(NR * 0.99 + 0.999)
			printf "%.3f %.3f\n", t[i50], t[i99]
		}' || { echo "$BENCH: ping $2 from $1 lost more than 10 %: $(tail -2 <<<"$out" | awk 'NR == 1')" >&2; return 1; }
}
median() { printf '%s\n' "$@" | sort -g | awk '{ a[NR] = $1 } END { print a[int((NR + 1) / 2)] }'; }

# ---------------------------------------------------------------- a hub of the bench's own

# bench_modes: the HUB_MODEs in MODES (default "netns zones") into the array `modes`; exit 2
# naming the value when it is empty or names another.
bench_modes() {
	read -r -a modes <<<"${MODES:-netns zones}"
	((${#modes[@]})) || { echo "$BENCH: MODES is empty" >&2 && exit 2; }
	local m
	for m in "${modes[@]}"; do
		[[ $m == netns || $m == zones ]] || { echo "$BENCH: MODES must be netns and/or zones, got '$m'" >&2 && exit 2; }
	done
}

# bench_hub TAG: a hub of this run's own, named TAG and three random hex digits (P): exports
# HUB_NS, HUB_PREFIX and HUB_STATE_DIR (a new directory, for the caller's cleanup to remove).
bench_hub() {
	P=$1$(printf '%03x' $((RANDOM % 4096)))
	export HUB_NS=${P}hub HUB_PREFIX=$P
	HUB_STATE_DIR=$(mktemp -d)
	export HUB_STATE_DIR
}

# ---------------------------------------------------------------- the hub's commands, timed

# ms COMMAND...: run it (output discarded); MS = its wall time, CPU = the CPU time (user+sys of
# it and every process it waited for) in milliseconds.
# shellcheck disable=SC2034 # (MS and CPU are the caller's to read)
ms() {
	local out w u s
	out=$({ TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>&1; } 2>&1)
	read -r w u s <<<"$out"
	read -r MS CPU < <(awk -v w="$w" -v u="$u" -v s="$s" 'BEGIN {printf "%d %d\n", w * 1000, (u + s) * 1000}')
}
# own_ms FILE: the CPU the hub itself used (ms, one decimal), from what NX_OWN_CPU=FILE collected:
# the script's `times` (after a line "bash") and hubctl's "hubctl USER_US SYS_US".
own_ms() {
	awk '
		function sec(t) { split(t, p, "m"); return p[1] * 60 + substr(p[2], 1, length(p[2]) - 1) }
		shell { total += sec($1) + sec($2); shell = 0; next }
		$1 == "bash" { shell = 1; next }
		$1 == "hubctl" { total += ($2 + $3) / 1e6 }
		END { printf "%.1f\n", total * 1000 }' "$1"
}
