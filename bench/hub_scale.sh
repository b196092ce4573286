#!/usr/bin/env bash
# Hub scale benchmark: what one peer costs as the hub grows. For each size N (default 10 50 200
# 1000) and each HUB_MODE in MODES (default "netns zones") a hub is built by niransix-sh/hub
# (wgctl's default: wgd, or NIRANSIX_WG_USERSPACE; kernel WireGuard where the kernel has it, as in
# the VM lane's `hub_scale[kernel]`),
# and the script prints a row per mode:
#   bulk add   `hub peer add p1 ... pN` (one command), per peer
#   one add    one `hub peer add` into the hub of N peers (median of REPEAT, each deleted again):
#              wall time, CPU time (user+sys of the hub and every process it waited for), and
#              the hub's own CPU: the script's and hubctl's, not the four tools' or wgd's
#              (NX_OWN_CPU: each reports its own; the goal: at most 5 ms)
#   one del    one `hub peer del` from it (median of REPEAT), wall and CPU
#   base/peer  ../shared/bench/baseline_hub.sh building BASELINE_AT (5) more peers step by step
#              beside the hub of N peers: what one peer costs the manual recipe at that size
#   status     `hub status` of the N peers, which reads back every object of every peer to
#              report its health (and that it lists them all, up and healthy)
#   sync +1/-1 `hub sync` of the N peers plus one more (from a file), then of the N again, then
#              the same N once more (no-op): what the declarative path costs for one change, and
#              for none (the goal at 1,000 peers: a no-op in at most 0.3 s)
#   down       `hub down` of the N peers
#   RSS        the userspace WireGuard's RSS per peer (wgd's, or the wireguard-go processes')
#   mem/peer   the machine's memory in use (MemTotal - MemAvailable) after the bulk add, less before
#              it and less what the userspace WireGuard processes hold (their PSS: shared pages
#              counted once), per peer: the kernel objects and state the mode costs (namespaces, veths,
#              routes, rules, nftables rules)
# then, per N, the zones mode's one add against the netns mode's (the goal: at most 0.3x).
# and, in the same run, ../shared/bench/baseline_hub.sh (one ip/nft/wg process per step) per-peer
# cost at BASELINE_N peers (default 50): the yardstick for adding devices one at a time.
#
#   bench/hub_scale.sh [N...]        REPEAT=5 BASELINE_N=50 HUB_JOBS=4 MODES="netns zones"
#                                    HUB_SCALE_SIZES=10,200 (the sizes, when none are given)
#
# Needs root. Raises fs.inotify.max_user_instances for the run (each wireguard-go holds an inotify
# instance; the default 128 caps a machine at ~128) and restores it on exit, also on failure or
# Ctrl-C. Builds only objects carrying its own prefix (hs..., bl-...) and removes them after.
# Uses target/release when all four tools are built there. Wall times on a shared machine are
# noisy: compare ratios within one run.
set -euo pipefail
sizes=("$@")
listed=${HUB_SCALE_SIZES:-}
((${#sizes[@]})) || read -r -a sizes <<<"${listed//,/ }"
((${#sizes[@]})) || sizes=(10 50 200 1000)
REPEAT=${REPEAT:-5}
BASELINE_N=${BASELINE_N:-50}
for n in "${sizes[@]}" "$BASELINE_N"; do
	if ! [[ $n =~ ^[1-9][0-9]{0,3}$ ]] || ((n > 4000)); then
		echo "hub_scale: sizes must be 1..4000, got '$n'" >&2
		exit 2
	fi
done
[[ $REPEAT =~ ^[1-9]$ ]] || { echo "hub_scale: REPEAT must be 1..9" >&2; exit 2; }
((EUID == 0)) || { echo "hub_scale: run as root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
baseline=$repo/../shared/bench/baseline_hub.sh
[[ -e $baseline ]] || { echo "hub_scale: $baseline not found" >&2; exit 1; }
hub=$repo/niransix-sh/hub
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_modes
bench_tools "$repo"

bench_hub hs
export HUB_CIDR=100.64.0.0/16
limit_file=/proc/sys/fs/inotify/max_user_instances
limit_old=$(<"$limit_file")
cleanup() {
	[[ -z ${HUB_MODE:-} ]] || "$hub" -q down >/dev/null 2>&1 || true
	bash "$baseline" down "$BASELINE_N" >/dev/null 2>&1 || true
	rm -rf "$HUB_STATE_DIR" "$HUB_STATE_DIR.set"
	echo "$limit_old" >"$limit_file"
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo $((limit_old > 8192 ? limit_old : 8192)) >"$limit_file"

# busy_pct: how busy the CPUs are over 3 s, in percent (the fleet of wireguard-go at rest).
busy_pct() {
	local -a a b
	local i total=0 idle
	read -r -a a </proc/stat
	sleep 3
	read -r -a b </proc/stat
	for i in 1 2 3 4 5 6 7 8; do total=$((total + b[i] - a[i])); done
	idle=$((b[4] + b[5] - a[4] - a[5]))
	echo $((100 * (total - idle) / (total ? total : 1)))
}
# used_kb: the machine's memory in use (MemTotal - MemAvailable), in kB.
used_kb() { awk '/^MemTotal:/ {t = $2} /^MemAvailable:/ {a = $2} END {print t - a}' /proc/meminfo; }

# WireGuard as wgctl's default (auto) picks it: the kernel module where there is one (the VM
# lane), else wireguard-go; the baseline uses the same.
wg_kind=userspace
if unshare -n ip link add hsprobe type wireguard 2>/dev/null; then wg_kind=kernel; fi
# The processes serving the hub's tunnels: the one wgd (wgctl's default), or a wireguard-go each.
if [[ ${NIRANSIX_WG_USERSPACE:-wgd} == wgd ]]; then
	userspace_pattern='^(/[^ ]*/)?wgd$'
else
	userspace_pattern="^wireguard-go $P"
fi
echo "hub_scale: sizes ${sizes[*]}, $wg_kind WireGuard, REPEAT=$REPEAT, HUB_JOBS=${HUB_JOBS:-4}, tools from ${NIRANSIX_BIN_DIR:-PATH}"
bash "$baseline" down "$BASELINE_N" >/dev/null 2>&1 || true
ms bash "$baseline" up "$BASELINE_N" "$wg_kind"
base_per=$((MS / BASELINE_N))
bash "$baseline" down "$BASELINE_N" >/dev/null 2>&1
printf 'baseline_hub.sh, %d peers step by step: %d ms (%d ms/peer)\n\n' "$BASELINE_N" "$MS" "$base_per"

BASELINE_AT=${BASELINE_AT:-5}
# measure N MODE: one row of the table, for a hub of N peers built in HUB_MODE=MODE.
measure() {
	local n=$1 mode=$2 i r bulk busy one_add one_del base_here t0 up status_ms sync_add sync_del rss mem0 mem
	local -a names=() adds=() dels=() addcpu=() delcpu=() owns=()
	local own_file=$HUB_STATE_DIR.own sync_noop
	export HUB_MODE=$mode
	"$hub" -q up >/dev/null
	for ((i = 1; i <= n; i++)); do names+=("p$i"); done
	mem0=$(used_kb)
	ms "$hub" -q peer add "${names[@]}"
	bulk=$((MS / n))
	busy=$(busy_pct)
	mem=$((($(used_kb) - mem0 - $(pss_kb "$userspace_pattern")) / n))
	rss=$(($(rss_kb "$userspace_pattern") / n))
	for ((r = 1; r <= REPEAT; r++)); do
		: >"$own_file"
		NX_OWN_CPU=$own_file ms "$hub" -q peer add "x$r"
		adds+=("$MS") addcpu+=("$CPU") owns+=("$(own_ms "$own_file")")
		ms "$hub" -q peer del "x$r"
		dels+=("$MS") delcpu+=("$CPU")
	done
	one_add=$(median "${adds[@]}") one_del=$(median "${dels[@]}")
	add_at[$n.$mode]=$one_add del_at[$n.$mode]=$one_del
	addcpu_at[$n.$mode]=$(median "${addcpu[@]}") delcpu_at[$n.$mode]=$(median "${delcpu[@]}")
	# (the mean: the kernel counts CPU time in ticks of 4 ms, so one run's figure is 0 or 4 or 8)
	own_at[$n.$mode]=$(printf '%s\n' "${owns[@]}" | awk '{ t += $1 } END { printf "%.1f\n", t / NR }')
	rm -f "$own_file"
	ms bash "$baseline" up "$BASELINE_AT" "$wg_kind"
	base_here=$((MS / BASELINE_AT))
	bash "$baseline" down "$BASELINE_AT" >/dev/null 2>&1
	t0=${EPOCHREALTIME/./}
	up=$("$hub" -q status | jq '[.peers[] | select(.up and .healthy)] | length')
	status_ms=$(((${EPOCHREALTIME/./} - t0) / 1000))
	((up == n)) || echo "hub_scale: N=$n $mode: status shows $up of $n peers up and healthy" >&2
	local set_file=$HUB_STATE_DIR.set
	printf '{"name":"%s"}\n' "${names[@]}" y1 >"$set_file"
	ms "$hub" -q sync "$set_file"
	sync_add=$MS
	printf '{"name":"%s"}\n' "${names[@]}" >"$set_file"
	ms "$hub" -q sync "$set_file"
	sync_del=$MS
	ms "$hub" -q sync "$set_file"
	sync_noop=$MS
	rm -f "$set_file"
	ms "$hub" -q down
	unset HUB_MODE
	printf '%6d | %5s | %6d ms | %6d %% | %6d / %4d / %5s ms | %6d / %4d ms | %6d ms | %5d ms | %5d / %5d / %5d ms | %5d ms | %5d kB | %5d kB | %.2fx\n' \
		"$n" "$mode" "$bulk" "$busy" "$one_add" "${addcpu_at[$n.$mode]}" "${own_at[$n.$mode]}" "$one_del" "${delcpu_at[$n.$mode]}" "$base_here" \
		"$status_ms" "$sync_add" "$sync_del" "$sync_noop" "$MS" "$rss" "$mem" "$(awk -v a="$one_add" -v b="$base_here" 'BEGIN {print a / b}')"
}

# summary: per mode, how one add and one del grew from the first size to the last; per size, the
# zones mode against the netns mode.
summary() {
	local first=${sizes[0]} last=${sizes[-1]} mode n
	echo
	for mode in "${modes[@]}"; do
		awk -v a0="${add_at[$first.$mode]}" -v a1="${add_at[$last.$mode]}" -v d0="${del_at[$first.$mode]}" \
			-v d1="${del_at[$last.$mode]}" -v ac0="${addcpu_at[$first.$mode]}" -v ac1="${addcpu_at[$last.$mode]}" \
			-v dc0="${delcpu_at[$first.$mode]}" -v dc1="${delcpu_at[$last.$mode]}" -v f="$first" -v l="$last" -v m="$mode" 'BEGIN {
			printf "%s: N=%d vs N=%d: one add %.2fx wall, %.2fx CPU; one del %.2fx wall, %.2fx CPU\n",
				m, l, f, a1 / a0, ac1 / (ac0 ? ac0 : 1), d1 / d0, dc1 / (dc0 ? dc0 : 1) }'
	done
	[[ " ${modes[*]} " == *" netns "* && " ${modes[*]} " == *" zones "* ]] || return 0
	for n in "${sizes[@]}"; do
		awk -v z="${add_at[$n.zones]}" -v s="${add_at[$n.netns]}" -v zc="${addcpu_at[$n.zones]}" \
			-v sc="${addcpu_at[$n.netns]}" -v zd="${del_at[$n.zones]}" -v sd="${del_at[$n.netns]}" -v n="$n" 'BEGIN {
			printf "N=%d: zones/netns one add %.2fx wall, %.2fx CPU; one del %.2fx wall\n", n, z / s, zc / (sc ? sc : 1), zd / sd }'
	done
}

printf '%6s | %5s | %9s | %8s | %25s | %17s | %9s | %8s | %23s | %8s | %8s | %8s | %s\n' N mode 'bulk/peer' 'CPU busy' \
	'one add wall/cpu/own' 'one del wall/cpu' 'base/peer' status 'sync +1 / -1 / no-op' down RSS/peer mem/peer 'one add vs base/peer'
declare -A add_at=() del_at=() addcpu_at=() delcpu_at=() own_at=()
for n in "${sizes[@]}"; do
	for mode in "${modes[@]}"; do
		measure "$n" "$mode"
	done
done
summary
