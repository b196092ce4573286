#!/usr/bin/env bash
# Data-plane benchmark: what a packet costs through the hub, and whether that cost grows with the
# fleet or with forwards and filters. In one run, with iperf3 and ping:
#   TCP x1, TCP x8   iperf3 TCP throughput, 1 stream and 8 streams (DURATION s each)
#   UDP 64 B         iperf3 -u -l 64 -b 0: packets per second the receiver got
#   RTT              PINGS pings at -i 0.01: p50 and p99 of the per-packet times
# over these paths:
#   floor            a bare WireGuard tunnel of the same implementation (wgctl's: wgd where the
#                    kernel has no WireGuard, or NIRANSIX_WG_USERSPACE) between two namespaces
#                    joined by a veth;
#                    measured first, then again beside every hub (the fleet idling on the same
#                    CPUs), and again at the end
#   device->center   a device (client namespace, 192.168.1.10, brought up by niransix-sh/client
#                    from `hub peer conf`) through its peer to iperf3 -s / ping in the center
#                    (HUB_ADDRESS 100.64.0.10 in HUB_NS), over an IPv6 underlay veth
#   forward          (access, netns mode) the other way: iperf3 -s on the device (192.168.1.10:5201),
#                    its client in the center connecting to the peer's internal address:5201
#   8 devices        (plain, N >= 8) the last 8 peers added, each a device of its own (dpcK, its own
#                    underlay veth into the center) sending at once, one TCP stream or UDP 64 B
#                    each, to iperf3 servers in the center (ports 5201-5208): the sum of what the
#                    receivers got, against 8 bare tunnels side by side measured the same way
#                    (floor x8: at the start and at the end). The 8 clients share one session,
#                    and the 8 servers another, as the one client and the one server do: the
#                    scheduler's groups (sched_autogroup) are the same three with wgd's.
# for each size N (arguments, default 10 1000: N peers present, the measured device the last one
# added), each HUB_MODE in MODES (default "netns zones") and two variants of the same hub:
#   plain            no HUB_FORWARDS, no HUB_ALLOW
#   access           HUB_FORWARDS="tcp/5201 udp/5201 tcp/22" and HUB_ALLOW with 8 entries, the
#                    ones that let the measured traffic through last (`hub up` switches to it)
# It prints absolute numbers, each path through a hub against the floor measured beside that hub
# just before it (x floor; RTT: the milliseconds added), each floor against the run's first (the
# machine's drift), then N=last / N=first per row (flat is ~1.0).
#
#   bench/dataplane.sh [N...]     DURATION=5 PINGS=300 ROUNDS=3 MODES="netns zones" HUB_JOBS=4
#                                 (every figure the median of ROUNDS runs)
#
# Needs root, iperf3 (apt-get install iperf3), jq and wg. Every object carries the prefix dp (hub
# HUB_PREFIX=dp, center dphub, client namespace dpcl, floor namespaces dpfa/dpfb), and an exit
# trap removes them all (iperf3 processes, client, hub, floor), also on failure or Ctrl-C; it
# raises fs.inotify.max_user_instances when the sizes need it and restores it on exit. Check with
# `tests/leakcheck.sh dp` after a run. Uses target/release when the tools are built there (else
# builds them: cargo build --release --workspace). Throughput on a shared machine is noisy:
# compare ratios within one run.
set -euo pipefail
sizes=("$@")
((${#sizes[@]})) || sizes=(10 1000)
DURATION=${DURATION:-5}
PINGS=${PINGS:-300}
ROUNDS=${ROUNDS:-3}
for n in "${sizes[@]}"; do
	if ! [[ $n =~ ^[1-9][0-9]{0,3}$ ]] || ((n > 4000)); then
		echo "dataplane: sizes must be 1..4000, got '$n'" >&2
		exit 2
	fi
done
[[ $DURATION =~ ^[1-9][0-9]?$ ]] || { echo "dataplane: DURATION must be 1..99 (seconds)" >&2; exit 2; }
[[ $PINGS =~ ^[1-9][0-9]{1,4}$ ]] || { echo "dataplane: PINGS must be 10..99999" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "dataplane: ROUNDS must be 1..9" >&2; exit 2; }
((EUID == 0)) || { echo "dataplane: run as root" >&2; exit 1; }
command -v iperf3 >/dev/null || { echo "dataplane: iperf3 is missing: apt-get install iperf3 (or scripts/bootstrap.sh)" >&2; exit 1; }
for t in jq wg ping ss; do
	command -v "$t" >/dev/null || { echo "dataplane: $t is missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
hub=$repo/niransix-sh/hub
client=$repo/niransix-sh/client

# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_modes
bench_tools "$repo"
[[ -n ${NIRANSIX_BIN_DIR:-} ]] || { echo "dataplane: build the tools first (cargo build --release --workspace)" >&2; exit 1; }

P=dp
export HUB_PREFIX=$P HUB_NS=${P}hub HUB_CIDR=100.64.0.0/20 HUB_ADDRESS=100.64.0.10
export HUB_ENDPOINT=2001:db8::10
unset HUB_FORWARDS HUB_ALLOW HUB_MODE HUB_CONF
server=$HUB_ADDRESS
cns=${P}cl          # the measured device's namespace, its tunnel ${cns}-wg
devices=8           # devices at once (their namespaces ${P}c2...; floor: ${P}fa1/${P}fb1...)
fa=${P}fa fb=${P}fb # the floor's two namespaces
access_forwards="tcp/5201 udp/5201 tcp/22"
# 8 entries inside HUB_CIDR; what the measured traffic needs (TCP and UDP 5201, ICMP to the
# server) comes last, after entries that do not match it.
access_allow="100.64.0.0/26,udp/161 100.64.1.0/24,tcp/443 100.64.2.0/24,tcp/8000-8100 100.64.3.0/28,udp/53"
access_allow+=" 100.64.4.0/22,tcp 100.64.0.10/32,tcp/5201 100.64.0.10/32,udp/5201 100.64.0.10/32"

leftovers=$(ip netns list | awk -v p="^$P" '$1 ~ p {print $1}')
if [[ -n $leftovers ]]; then
	echo "dataplane: namespaces with the prefix $P exist already (${leftovers//$'\n'/ }): another run," \
		"or a leak (tests/leakcheck.sh --clean $P removes them)" >&2
	exit 1
fi

work=$(mktemp -d /tmp/dp-work.XXXXXX)
HUB_STATE_DIR=$(mktemp -d /tmp/dp-state.XXXXXX)
export HUB_STATE_DIR
pids=()    # the iperf3 servers we started for a hub
floor_pid= # and the floor's
floor8_pid= # and that of the 8 bare tunnels' servers
mode_up=   # the HUB_MODE of the hub that is up, if one is

# stop_servers: every iperf3 server we started, by its pid.
stop_servers() {
	local pid
	for pid in "${pids[@]}"; do stop_server "$pid"; done
	pids=()
}
# hub_down: the measured device, then the hub (its center namespace with the underlay in it).
hub_down() {
	if [[ -e /run/netns/$cns ]]; then
		"$client" -q down "$cns" "$cns-wg" >/dev/null 2>&1 || true
		ip netns del "$cns" 2>/dev/null || true
	fi
	local k
	for ((k = 2; k <= devices; k++)); do
		[[ -e /run/netns/${P}c$k ]] || continue
		"$client" -q down "${P}c$k" "${P}c$k-wg" >/dev/null 2>&1 || true
		ip netns del "${P}c$k" 2>/dev/null || true
	done
	[[ -z $mode_up ]] || HUB_MODE=$mode_up "$hub" -q down >/dev/null 2>&1 || true
	mode_up=
	ip netns del "$HUB_NS" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	stop_servers
	[[ -z $floor_pid ]] || stop_server "$floor_pid"
	hub_down
	floor8_down
	pair_down "$fa" "$fb"
	rm -rf "$work" "$HUB_STATE_DIR"
	inotify_restore
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Each wireguard-go (NIRANSIX_WG_USERSPACE=wireguard-go) holds an inotify instance: the largest
# hub, its client and the floor's two.
inotify_need "${sizes[@]}"

# ---------------------------------------------------------------- measuring

# bundle KEY NS ADDR [noping]: every figure of one path (the median of ROUNDS), into R[KEY] as
# "tcp1 tcp8 pps p50 p99" (- for what is not measured). With floor_ns/floor_addr set (a path
# through a hub), the floor is measured just before each figure, and Q[KEY] holds the medians
# of the paired ratios (RTT: of the milliseconds added): the machine's drift cancels.
declare -A R=() Q=()
floor_ns='' floor_addr=''
bundle() {
	local key=$1 ns=$2 addr=$3 noping=${4:-} r k p f=
	local -A got=() q=()
	for ((r = 1; r <= ROUNDS; r++)); do
		for k in tcp1 tcp8 udp; do
			[[ -z $floor_ns ]] || f=$(figure "$k" "$floor_ns" "$floor_addr")
			p=$(figure "$k" "$ns" "$addr")
			got[$k]+=" $p"
			[[ -z $floor_ns ]] || q[$k]+=" $(ratio "$p" "$f")"
		done
		[[ -z $noping ]] || continue
		[[ -z $floor_ns ]] || f=$(rtt "$floor_ns" "$floor_addr")
		p=$(rtt "$ns" "$addr")
		got[p50]+=" ${p% *}" got[p99]+=" ${p#* }"
		[[ -z $floor_ns ]] || q[p50]+=" $(minus "${p% *}" "${f% *}")" q[p99]+=" $(minus "${p#* }" "${f#* }")"
	done
	R[$key]=$(medians got tcp1 tcp8 udp p50 p99)
	[[ -z $floor_ns ]] || Q[$key]=$(medians q tcp1 tcp8 udp p50 p99)
	row "$key"
}
# figure tcp1|tcp8|udp NS ADDR: one figure of one client.
figure() {
	case $1 in
	tcp1) tcp "$2" "$3" 1 ;;
	tcp8) tcp "$2" "$3" 8 ;;
	udp) udp "$2" "$3" ;;
	esac
}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f\n", (b > 0 ? a / b : 0) }'; }
minus() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.4f\n", a - b }'; }
# medians ARRAY KEY...: the median of each KEY's values in associative ARRAY ("-" for none).
medians() {
	local -n of=$1
	local k
	local -a out=()
	shift
	for k in "$@"; do
		# shellcheck disable=SC2086 # (the values, one word each)
		if [[ -n ${of[$k]:-} ]]; then out+=("$(median ${of[$k]})"); else out+=(-); fi
	done
	echo "${out[*]}"
}

# at_once tcp|udp NS:ADDR:PORT...: one iperf3 client per target, all at the same time (TCP one
# stream each, or UDP 64 B as fast as each can); prints the sum of what the receivers got, in
# Mbit/s or packets a second (tried 3 times: a server still finishing answers "busy"). The
# clients share one session, as one load generator's (start_servers says why).
at_once() {
	local kind=$1
	shift
	for _ in 1 2 3; do
		rm -f "$work"/once.*
		# shellcheck disable=SC2016 # (the inner script's own variables)
		if setsid -w bash -c '
			work=$1 duration=$2 kind=$3 i=0 rc=0
			shift 3
			args=()
			[[ $kind == tcp ]] || args=(-u -l 64 -b 0)
			for t in "$@"; do
				IFS=: read -r ns addr port <<<"$t"
				ip netns exec "$ns" iperf3 -c "$addr" -p "$port" -t "$duration" -J "${args[@]}" >"$work/once.$i" 2>&1 &
				i=$((i + 1))
			done
			for pid in $(jobs -p); do wait "$pid" || rc=1; done
			exit "$rc"' at_once "$work" "$DURATION" "$kind" "$@" &&
			jq -se 'all(.end.sum_received)' "$work"/once.* >/dev/null 2>&1; then
			jq -s --arg kind "$kind" 'map(.end.sum_received | if $kind == "tcp" then .bits_per_second / 1e6
				else (.packets - .lost_packets) / .seconds end) | add' "$work"/once.*
			return 0
		fi
		sleep 1
	done
	echo "dataplane: $# iperf3 clients at once ($kind) failed: $(cat "$work"/once.* | jq -r '.error // empty' 2>/dev/null | sort -u | head -3)" >&2
	return 1
}

# bundle8 KEY TARGET...: the median of ROUNDS sums (at_once) into R[KEY] as "tcp - pps - -".
# With floor8_targets set (a hub's devices), the 8 bare tunnels are measured just before each
# sum: Q[KEY] holds the medians of the paired ratios, R[FLOOR8_KEY] the floors' medians.
floor8_targets=()
bundle8() {
	local key=$1 r k p f=
	shift
	local -A got=() q=() fl=()
	for ((r = 1; r <= ROUNDS; r++)); do
		for k in tcp udp; do
			((${#floor8_targets[@]} == 0)) || {
				f=$(at_once "$k" "${floor8_targets[@]}")
				fl[$k]+=" $f"
			}
			p=$(at_once "$k" "$@")
			got[$k]+=" $p"
			((${#floor8_targets[@]} == 0)) || q[$k]+=" $(ratio "$p" "$f")"
		done
	done
	if ((${#floor8_targets[@]})); then
		R[$FLOOR8_KEY]="$(medians fl tcp) - $(medians fl udp) - -"
		row "$FLOOR8_KEY"
		Q[$key]="$(medians q tcp) - $(medians q udp) - -"
	fi
	R[$key]="$(medians got tcp) - $(medians got udp) - -"
	row "$key"
}

# ---------------------------------------------------------------- printing

# row KEY: one line of the table: a path through a hub against the floor measured just before
# each of its figures (Q), a floor against the run's first.
row() {
	local key=$1 n mode variant path
	IFS=. read -r n mode variant path <<<"$key"
	awk -v n="$n" -v m="$mode" -v v="$variant" -v l="$(label "$path")" -v f="${R[$(reference "$key")]:-}" \
		-v x="${R[$key]}" -v q="${Q[$key]:-}" '
		# (paired: the medians of the ratios to the floor measured just before each figure)
		function ratio(a, b, i) {
			if (q != "") return Q[i] == "-" ? "   -  " : sprintf("%5.2fx", Q[i])
			return (a == "-" || b == "-" || b == 0) ? "   -  " : sprintf("%5.2fx", a / b)
		}
		function num(a, fmt) { return a == "-" ? "-" : sprintf(fmt, a) }
		function add(a, b, i) {
			if (q != "") return Q[i] == "-" ? "-" : sprintf("%+.3f", Q[i])
			return (a == "-" || b == "-") ? "-" : sprintf("%+.3f", a - b)
		}
		BEGIN {
			split(f, F, " "); split(x, X, " "); split(q, Q, " ")
			printf "%5s | %5s | %6s | %-27s | %7s %s | %7s %s | %7s %s | %7s / %7s | %7s / %7s\n",
				n, m, v, l, num(X[1], "%.0f"), ratio(X[1], F[1], 1), num(X[2], "%.0f"), ratio(X[2], F[2], 2),
				num(X[3] / 1000, "%.1f"), ratio(X[3], F[3], 3), num(X[4], "%.3f"), num(X[5], "%.3f"),
				add(X[4], F[4], 4), add(X[5], F[5], 5)
		}'
}
# reference KEY: the key of the floor that floor KEY is held against: the run's first (the
# machine's drift).
reference() {
	local path
	IFS=. read -r _ _ _ path <<<"$1"
	case $path in
	*8*) echo "-.-.-.floor8" ;;
	*) echo "-.-.-.floor" ;;
	esac
}
# label PATH: how a path of a key reads in the tables.
label() {
	case $1 in
	floor) echo "floor (bare tunnel)" ;;
	beside) echo "floor beside the hub" ;;
	again) echo "floor, again at the end" ;;
	up) echo "device -> center" ;;
	fwd) echo "center -> device (forward)" ;;
	floor8) echo "floor x8: 8 tunnels, summed" ;;
	beside8) echo "floor x8 beside the hub" ;;
	floor8again) echo "floor x8, again at the end" ;;
	up8) echo "8 devices -> center, summed" ;;
	*) echo "$1" ;;
	esac
}
header() {
	printf '%5s | %5s | %6s | %-27s | %15s | %15s | %15s | %17s | %17s\n' N mode vari. path \
		'TCP x1 Mbit/s' 'TCP x8 Mbit/s' 'UDP 64 B kpps' 'RTT p50 / p99 ms' 'RTT added, ms'
}
# growth: per mode, variant and path, the last size against the first (flat is ~1.0).
growth() {
	local first=${sizes[0]} last=${sizes[-1]} mode vp variant path a b qa qb
	((${#sizes[@]} > 1)) || return 0
	printf '\nN=%d / N=%d (flat is ~1.00; a path through the hub: its ratio to the floor measured\n' "$last" "$first"
	printf 'beside it, so the drift between the sizes cancels; RTT: the ratio of the times)\n'
	printf '%5s | %6s | %-27s | %6s | %6s | %6s | %6s | %6s\n' mode vari. path 'TCP x1' 'TCP x8' 'UDP' 'p50' 'p99'
	for mode in "${modes[@]}"; do
		for vp in -.beside -.beside8 plain.up plain.up8 access.up access.fwd; do
			variant=${vp%.*} path=${vp#*.}
			a=${R[$first.$mode.$vp]:-} b=${R[$last.$mode.$vp]:-}
			[[ -n $a && -n $b ]] || continue
			qa=${Q[$first.$mode.$vp]:-1 1 1 1 1} qb=${Q[$last.$mode.$vp]:-1 1 1 1 1}
			awk -v m="$mode" -v v="$variant" -v l="$(label "$path")" -v a="$a" -v b="$b" -v qa="$qa" -v qb="$qb" '
				function ratio(x, y) { return (x == "-" || y == "-" || x == 0) ? "    -" : sprintf("%5.2fx", y / x) }
				BEGIN {
					split(a, A, " "); split(b, B, " "); split(qa, QA, " "); split(qb, QB, " ")
					if (v != "-") for (i = 1; i <= 3; i++) { A[i] = QA[i]; B[i] = QB[i] }
					printf "%5s | %6s | %-27s | %6s | %6s | %6s | %6s | %6s\n", m, v, l,
						ratio(A[1], B[1]), ratio(A[2], B[2]), ratio(A[3], B[3]), ratio(A[4], B[4]), ratio(A[5], B[5])
				}'
		done
	done
}

# ---------------------------------------------------------------- the floor

# floor_up: the bare tunnel between dpfa (10.201.0.1) and dpfb (10.201.0.2), iperf3 -s in dpfb.
floor_up() {
	pair_up "$fa" "$fb" "$work"
	start_server "$fb"
	floor_pid=$SERVER_PID
	reach "$fa" 10.201.0.2
}

# floor8_up: DEVICES bare tunnels side by side (dpfa1/dpfb1 ...), an iperf3 server behind each;
# sets floor8_targets. floor8 KEY: measured at once (bundle8), then removed (floor8_down).
floor8_up() {
	local k
	floor8_targets=()
	local -a servers=()
	for ((k = 1; k <= devices; k++)); do
		pair_up "$fa$k" "$fb$k" "$work"
		servers+=("$fb$k:10.201.0.2:5201")
		floor8_targets+=("$fa$k:10.201.0.2:5201")
	done
	start_servers "${servers[@]}"
	floor8_pid=$SERVER_PID
	for ((k = 1; k <= devices; k++)); do reach "$fa$k" 10.201.0.2; done
}
floor8() {
	local -a targets
	floor8_up
	targets=("${floor8_targets[@]}")
	floor8_targets=()
	bundle8 "$1" "${targets[@]}"
	floor8_down
}
floor8_down() {
	local k
	[[ -z $floor8_pid ]] || stop_server "$floor8_pid"
	floor8_pid='' floor8_targets=()
	for ((k = 1; k <= devices; k++)); do pair_down "$fa$k" "$fb$k"; done
}

# ---------------------------------------------------------------- the hub

# devices_up N: the measured device and the DEVICES-1 peers added just before it as devices at
# once, each in its namespace dpcK with an underlay veth of its own into the center
# (2001:db8:K::/64, a route to HUB_ENDPOINT over it), and an iperf3 server in the center for
# each (port 5200+K). Sets TARGETS (NS:ADDR:PORT, for at_once).
devices_up() {
	local n=$1 k name ns
	local -a servers=()
	TARGETS=("$cns:$server:5201")
	for ((k = 2; k <= devices; k++)); do
		name=p$((n - k + 1)) ns=${P}c$k
		ip netns add "$ns"
		ip -n "$ns" link set lo up
		ip link add "${P}u$k" netns "$HUB_NS" type veth peer name "${P}v$k" netns "$ns"
		ip -n "$HUB_NS" addr add "2001:db8:$k::1/64" dev "${P}u$k" nodad
		ip -n "$ns" addr add "2001:db8:$k::2/64" dev "${P}v$k" nodad
		ip -n "$HUB_NS" link set "${P}u$k" up
		ip -n "$ns" link set "${P}v$k" up
		ip -n "$ns" route add "$HUB_ENDPOINT/128" via "2001:db8:$k::1"
		"$hub" -q peer conf "$name" | "$client" -q up "$ns" "$ns-wg" >/dev/null
		servers+=("$HUB_NS:$server:$((5200 + k))")
		TARGETS+=("$ns:$server:$((5200 + k))")
	done
	start_servers "${servers[@]}"
	pids+=("$SERVER_PID")
	for ((k = 2; k <= devices; k++)); do reach "${P}c$k" "$server"; done
}


# hub_measure N MODE: a hub of N peers in HUB_MODE=MODE, the device the last of them; the floor
# beside it, then the plain and access variants.
hub_measure() {
	local n=$1 mode=$2 i addr out rc
	local -a names=()
	export HUB_MODE=$mode
	"$hub" -q up >/dev/null
	mode_up=$mode
	# the underlay: a veth from the center (2001:db8::10, HUB_ENDPOINT) to the device
	ip netns add "$cns"
	ip -n "$cns" link set lo up
	ip link add "${P}ul" netns "$HUB_NS" type veth peer name "${P}ue" netns "$cns"
	ip -n "$HUB_NS" addr add 2001:db8::10/64 dev "${P}ul" nodad
	ip -n "$cns" addr add 2001:db8::21/64 dev "${P}ue" nodad
	ip -n "$HUB_NS" link set "${P}ul" up
	ip -n "$cns" link set "${P}ue" up
	for ((i = 1; i < n; i++)); do names+=("p$i"); done
	local t0=$SECONDS
	((n == 1)) || "$hub" -q peer add "${names[@]}" >/dev/null
	addr=$("$hub" -q peer add m | jq -r '.peers[0].address')
	echo "dataplane: N=$n $mode: $n peers built in $((SECONDS - t0)) s; the device is peer m ($addr)" >&2
	"$hub" -q peer conf m | "$client" -q up "$cns" "$cns-wg" >/dev/null
	# (bound to HUB_ADDRESS: in zones mode the peers' addresses are the center's own, and a UDP
	# server on the wildcard address answers a device from the device's internal address, which
	# no connection knows: its replies never reach the tunnel)
	start_server "$HUB_NS" "$server"
	pids+=("$SERVER_PID")
	start_server "$cns" 192.168.1.10
	pids+=("$SERVER_PID")
	reach "$cns" "$server"

	bundle "$n.$mode.-.beside" "$fa" 10.201.0.2
	floor_ns=$fa floor_addr=10.201.0.2
	bundle "$n.$mode.plain.up" "$cns" "$server"
	if ((n >= devices)); then
		floor8_up
		devices_up "$n"
		FLOOR8_KEY=$n.$mode.-.beside8 bundle8 "$n.$mode.plain.up8" "${TARGETS[@]}"
		floor8_down
	else
		echo "dataplane: N=$n $mode: fewer than $devices peers, no $devices devices at once" >&2
	fi

	t0=$SECONDS
	HUB_FORWARDS=$access_forwards HUB_ALLOW=$access_allow "$hub" -q up >/dev/null
	# (the measured peer has them, and the hub is healthy with them)
	out=$(HUB_ALLOW=$access_allow HUB_FORWARDS=$access_forwards "$hub" -q check |
		jq -r '[.healthy, (.peers[] | select(.name == "m") | (.allow | length), (.forwards | length))] | @tsv') || {
		echo "dataplane: N=$n $mode: hub check with the access variant is not healthy" >&2
		return 1
	}
	local want=$'true\t8\t3'
	if [[ $out != "$want" ]]; then
		echo "dataplane: N=$n $mode: after up with HUB_ALLOW and HUB_FORWARDS, hub check says healthy," \
			"allow entries, forwards of peer m: ${out//$'\t'/ } (wanted ${want//$'\t'/ }): tools in" \
			"$NIRANSIX_BIN_DIR older than the hub script? (cargo build --release --workspace)" >&2
		return 1
	fi
	echo "dataplane: N=$n $mode: access variant up in $((SECONDS - t0)) s (hub check healthy)" >&2
	reach "$cns" "$server"
	bundle "$n.$mode.access.up" "$cns" "$server"
	bundle "$n.$mode.access.fwd" "$HUB_NS" "$addr" noping
	floor_ns='' floor_addr=''
	stop_servers
	hub_down
	unset HUB_MODE
}

kind=userspace
if unshare -n ip link add "${P}probe" type wireguard 2>/dev/null; then kind=kernel; fi
echo "dataplane: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), $(nproc) CPUs, Linux $(uname -r), $kind WireGuard" \
	"($(iperf3 --version | awk 'NR == 1'))"
echo "dataplane: sizes ${sizes[*]}, modes ${modes[*]}, DURATION=$DURATION s, PINGS=$PINGS, ROUNDS=$ROUNDS," \
	"HUB_CIDR=$HUB_CIDR, HUB_JOBS=${HUB_JOBS:-4}, tools from $NIRANSIX_BIN_DIR"
floor_up
header
bundle "-.-.-.floor" "$fa" 10.201.0.2
floor8 "-.-.-.floor8"
for n in "${sizes[@]}"; do
	for mode in "${modes[@]}"; do
		hub_measure "$n" "$mode"
	done
done
bundle "-.-.-.again" "$fa" 10.201.0.2
floor8 "-.-.-.floor8again"
growth
echo "dataplane: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (others' jobs make every figure noisier)" >&2
