#!/usr/bin/env bash
# Userspace WireGuard benchmark: wireguard-go, boringtun and wgd (one process for every interface),
# as wgctl runs them (the birthplace pattern: born in one namespace, moved into another). For each
# implementation in IMPLS:
#   TCP x1, TCP x8, UDP 64 B   through one bare tunnel between two namespaces (bench/lib.sh's
#                              pair_up), the median of ROUNDS runs of DURATION s each
#   at each N (arguments, default 10 200 1000): N interfaces born in ubc and moved into ubp, each
#   with a key, a listen port and one peer, as a hub's; then, read once by `wgctl show` (as the
#   hub's status does) and left idle:
#     add, del ms              wall time of the N `wgctl iface add` + `peer add` (`iface del`),
#                              JOBS at a time, divided by N
#     show ms                  one `wgctl --ns ubp show` of all N
#     PSS, RSS kB              of the N processes (wgd: the one), divided by N (PSS counts a
#                              shared page once)
#     kernel kB                the growth of the kernel's own memory (unreclaimable slab, thread
#                              stacks, page tables: the TUN devices, sockets, threads), divided
#                              by N; PSS + kernel is what a peer costs the machine
#     threads                  of the N processes (wgd: the one), divided by N
#     idle CPU %               their CPU time over IDLE s, in % of the whole machine (all CPUs)
#
#   bench/userspace.sh [N...]     DURATION=5 ROUNDS=3 IDLE=20 JOBS=4 IMPLS="wireguard-go boringtun wgd"
#
# Needs root, iperf3, jq and wg (scripts/bootstrap.sh installs them and boringtun-cli). Every object
# carries the prefix ub (namespaces ubc, ubp, ubfa, ubfb; interfaces ubg0001.. for wireguard-go,
# ubb0001.. for boringtun, ubw0001.. for wgd); an exit trap removes them all, also on failure or Ctrl-C, and restores
# fs.inotify.max_user_instances (each wireguard-go holds an instance) if it raised it. Check with
# `tests/leakcheck.sh ub`. Uses target/release when the tools are built there.
set -euo pipefail
sizes=("$@")
((${#sizes[@]})) || sizes=(10 200 1000)
DURATION=${DURATION:-5}
ROUNDS=${ROUNDS:-3}
IDLE=${IDLE:-20}
JOBS=${JOBS:-4}
read -r -a impls <<<"${IMPLS:-wireguard-go boringtun wgd}"
for n in "${sizes[@]}"; do
	if ! [[ $n =~ ^[1-9][0-9]{0,3}$ ]] || ((n > 2000)); then
		echo "userspace: sizes must be 1..2000, got '$n'" >&2
		exit 2
	fi
done
[[ $DURATION =~ ^[1-9][0-9]?$ ]] || { echo "userspace: DURATION must be 1..99 (seconds)" >&2; exit 2; }
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "userspace: ROUNDS must be 1..9" >&2; exit 2; }
[[ $IDLE =~ ^[1-9][0-9]{0,2}$ ]] || { echo "userspace: IDLE must be 1..999 (seconds)" >&2; exit 2; }
[[ $JOBS =~ ^[1-9][0-9]?$ ]] || { echo "userspace: JOBS must be 1..99" >&2; exit 2; }
for i in "${impls[@]}"; do
	[[ $i =~ ^(wireguard-go|boringtun|wgd)$ ]] || { echo "userspace: IMPLS are among wireguard-go, boringtun and wgd, got '$i'" >&2; exit 2; }
done
((EUID == 0)) || { echo "userspace: run as root" >&2; exit 1; }
for t in iperf3 jq wg; do
	command -v "$t" >/dev/null || { echo "userspace: $t is missing (scripts/bootstrap.sh installs it)" >&2; exit 1; }
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_tools "$repo"
[[ -n ${NIRANSIX_BIN_DIR:-} ]] || { echo "userspace: build the tools first (cargo build --release --workspace)" >&2; exit 1; }
wgctl=$NIRANSIX_BIN_DIR/wgctl

P=ub
center=${P}c peerns=${P}p fa=${P}fa fb=${P}fb
if ip netns list | grep -q "^$P"; then
	echo "userspace: namespaces with the prefix $P exist already: another run, or a leak" \
		"(tests/leakcheck.sh --clean $P removes them)" >&2
	exit 1
fi
work=$(mktemp -d /tmp/ub-work.XXXXXX)
floor_pid=
names=() # the interfaces of the fleet that is up

# fleet_down: every interface of the fleet (JOBS at a time), then its two namespaces.
fleet_down() {
	((${#names[@]} == 0)) || printf '%s\n' "${names[@]}" |
		xargs -P "$JOBS" -I{} "$wgctl" --ns "$center" iface del {} --into-ns "$peerns" >/dev/null 2>&1 || true
	names=()
	ip netns del "$center" 2>/dev/null || true
	ip netns del "$peerns" 2>/dev/null || true
}
cleanup() {
	local rc=$?
	trap - EXIT INT TERM
	[[ -z $floor_pid ]] || stop_server "$floor_pid"
	pair_down "$fa" "$fb"
	fleet_down
	rm -rf "$work"
	inotify_restore
	exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

inotify_need "${sizes[@]}"
(umask 077 && wg genkey >"$work/key" && wg genkey >"$work/peer.key")
peer_pub=$(wg pubkey <"$work/peer.key")

# ---------------------------------------------------------------- through one tunnel

# tunnel IMPL: ROW="tcp1 tcp8 kpps" through a bare tunnel served by IMPL on both ends.
tunnel() {
	local r
	local -a t1=() t8=() pps=()
	NIRANSIX_WG_USERSPACE=$1 pair_up "$fa" "$fb" "$work"
	start_server "$fb"
	floor_pid=$SERVER_PID
	reach "$fa" 10.201.0.2
	for ((r = 1; r <= ROUNDS; r++)); do
		t1+=("$(tcp "$fa" 10.201.0.2 1)")
		t8+=("$(tcp "$fa" 10.201.0.2 8)")
		pps+=("$(udp "$fa" 10.201.0.2)")
	done
	stop_server "$floor_pid"
	floor_pid=
	pair_down "$fa" "$fb"
	ROW=$(printf '%.0f %.0f %.1f' "$(median "${t1[@]}")" "$(median "${t8[@]}")" "$(median "${pps[@]}")e-3")
}

# ---------------------------------------------------------------- a fleet of idle peers

# add_one IMPL NAME INDEX: one interface born in the center, moved into the peer namespace, with
# a listen port and one peer (run by xargs, JOBS at a time).
add_one() {
	NIRANSIX_WG_USERSPACE=$1 "$wgctl" --ns "$center" iface add "$2" --private-key "$work/key" \
		--listen-port $((20000 + $3)) --into-ns "$peerns" --backend userspace >/dev/null &&
		"$wgctl" --ns "$peerns" peer add "$2" --public-key "$peer_pub" \
			--allowed-ips "10.$(($3 / 250)).$(($3 % 250)).2/32" >/dev/null
}
export -f add_one
export wgctl center peerns work peer_pub

kernel_kb() { awk '$1 ~ /^(SUnreclaim|KernelStack|PageTables):$/ {kb += $2} END {print kb}' /proc/meminfo; }
now_ms() { echo $(($(date +%s%N) / 1000000)); }

# cpu_ticks PATTERN: user + system clock ticks of the processes whose command line matches.
cpu_ticks() {
	local t=0 pid v
	for pid in $(live_pids "$1"); do
		v=$(awk '{sub(/^.*\) /, ""); print $12 + $13}' "/proc/$pid/stat" 2>/dev/null || echo 0)
		t=$((t + ${v:-0}))
	done
	echo "$t"
}

# live_pids PATTERN: the processes whose command line matches, but for those that exited and are not
# reaped yet (wgd leaves by itself once it serves nothing; its parent, a wgctl, is long gone).
live_pids() {
	local pid
	for pid in $(pgrep -f "$1" || true); do
		[[ $(awk '{sub(/^.*\) /, ""); print $1}' "/proc/$pid/stat" 2>/dev/null) =~ ^[RSD]$ ]] && echo "$pid"
	done
	true
}

# fleet IMPL N: ROW="add_ms del_ms show_ms pss rss machine threads cpu%" of a fleet of N.
fleet() {
	local impl=$1 n=$2 tag i t0 t1 mem0 mem1 c0 c1 add_ms show_ms pss rss threads cpu del_ms pattern
	tag=${impl:0:1}
	[[ $impl == wireguard-go ]] && tag=g
	pattern="^(wireguard-go|boringtun-cli .*) ${P}${tag}[0-9]{4}\$"
	# wgd names no interface: the process itself (it serves nothing else during the run).
	[[ $impl == wgd ]] && pattern='^(/[^ ]*/)?wgd$'
	inotify_need "${sizes[@]}" # (again: someone else may have restored theirs meanwhile)
	ip netns add "$center"
	ip netns add "$peerns"
	names=()
	for ((i = 1; i <= n; i++)); do names+=("$(printf '%s%s%04d' "$P" "$tag" "$i")"); done
	mem0=$(kernel_kb)
	t0=$(now_ms)
	# shellcheck disable=SC2016 # bash -c's own arguments
	for ((i = 1; i <= n; i++)); do printf '%s %s\n' "${names[i - 1]}" "$i"; done |
		xargs -P "$JOBS" -L 1 bash -c 'add_one "$0" "$1" "$2"' "$impl"
	t1=$(now_ms)
	add_ms=$(((t1 - t0) * 1000 / n))
	sleep 3
	t0=$(now_ms)
	"$wgctl" --ns "$peerns" show | jq -e ".interfaces | length == $n" >/dev/null ||
		{ echo "userspace: $impl: show does not list $n interfaces" >&2; return 1; }
	show_ms=$(($(now_ms) - t0))
	sleep 2
	mem1=$(kernel_kb)
	pss=$(pss_kb "$pattern") rss=$(rss_kb "$pattern") threads=$(proc_kb status Threads "$pattern")
	c0=$(cpu_ticks "$pattern")
	sleep "$IDLE"
	c1=$(cpu_ticks "$pattern")
	cpu=$(awk -v d=$((c1 - c0)) -v hz="$(getconf CLK_TCK)" -v s="$IDLE" -v cpus="$(nproc)" \
		'BEGIN { printf "%.2f", 100 * d / hz / s / cpus }')
	t0=$(now_ms)
	fleet_down
	del_ms=$((($(now_ms) - t0) * 1000 / n))
	[[ -z $(live_pids "$pattern") ]] || { echo "userspace: $impl processes left after the deletes" >&2; return 1; }
	ROW=$(awk -v a="$add_ms" -v d="$del_ms" -v s="$show_ms" -v p="$pss" -v r="$rss" -v m=$((mem1 - mem0)) \
		-v t="$threads" -v c="$cpu" -v n="$n" \
		'BEGIN { printf "%.1f %.1f %d %d %d %d %.1f %s", a / 1000, d / 1000, s, p / n, r / n, m / n, t / n, c }')
}

# ---------------------------------------------------------------- the run

echo "userspace: $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -n), $(nproc) CPUs, Linux $(uname -r);" \
	"wireguard-go $(dpkg-query -W -f='${Version}' wireguard-go 2>/dev/null || echo '?')," \
	"$(boringtun-cli --version 2>/dev/null || echo 'boringtun ?'), wgd (boringtun $(awk '$3 == "\"boringtun\"" {getline; gsub(/"/, "", $3); print $3}' "$repo/Cargo.lock"));" \
	"DURATION=$DURATION s, ROUNDS=$ROUNDS," \
	"IDLE=$IDLE s, JOBS=$JOBS, tools in $NIRANSIX_BIN_DIR" >&2
printf '%-13s | %14s | %14s | %13s\n' implementation 'TCP x1 Mbit/s' 'TCP x8 Mbit/s' 'UDP 64 B kpps'
for impl in "${impls[@]}"; do
	tunnel "$impl"
	read -r t1 t8 pps <<<"$ROW"
	printf '%-13s | %14s | %14s | %13s\n' "$impl" "$t1" "$t8" "$pps"
done
printf '\n%-13s | %5s | %6s | %6s | %7s | %7s | %7s | %10s | %7s | %10s\n' implementation N 'add ms' 'del ms' \
	'show ms' 'PSS kB' 'RSS kB' 'kernel kB' threads 'idle CPU %'
for n in "${sizes[@]}"; do
	for impl in "${impls[@]}"; do
		fleet "$impl" "$n"
		read -r add del show pss rss machine threads cpu <<<"$ROW"
		printf '%-13s | %5s | %6s | %6s | %7s | %7s | %7s | %10s | %7s | %10s\n' "$impl" "$n" "$add" "$del" \
			"$show" "$pss" "$rss" "$machine" "$threads" "$cpu"
	done
done
echo "userspace: load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (others' jobs make every figure noisier)" >&2
