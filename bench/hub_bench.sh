#!/usr/bin/env bash
# Hub benchmark: a hub of N peers (userspace WireGuard here) built by niransix-sh/hub, against the
# step-by-step baseline (baseline_hub.sh: one ip/nft/wg process per step) in the same run.
# Reports, as medians over ROUNDS rounds that alternate baseline and hub: wall time, time per peer,
# CPU time (user+sys of the command and the tools it waited for) and memory (RSS of the
# wireguard-go processes); and the time of `hub down`.
#
#   bench/hub_bench.sh [N] [MODE]      N: peers (default 50); ROUNDS=3, HUB_JOBS=4 from the env
#     MODE: batch (default: `hub peer add p1 ... pN`, one command), each (`hub peer add pI` N
#           times), both
# Needs root; builds only namespaces carrying its own prefix (hb..., bl-...), removes them after.
# On a shared machine wall times are noisy: compare the ratio within one run, and the CPU column.
set -euo pipefail
N=${1:-50}
MODE=${2:-batch}
ROUNDS=${ROUNDS:-3}
if ! [[ $N =~ ^[0-9]{1,3}$ ]] || ((N < 1 || N > 250)); then echo "hub_bench: N must be 1..250" >&2; exit 2; fi
case $MODE in batch | each | both) ;; *) echo "hub_bench: MODE is batch, each or both" >&2; exit 2 ;; esac
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "hub_bench: ROUNDS must be 1..9" >&2; exit 2; }
((EUID == 0)) || { echo "hub_bench: run as root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
baseline=$here/baseline_hub.sh
[[ -e $baseline ]] || baseline=$repo/../shared/bench/baseline_hub.sh
[[ -e $baseline ]] || { echo "hub_bench: baseline_hub.sh not found" >&2; exit 1; }
hub=$repo/niransix-sh/hub
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_tools "$repo"

# timed VAR COMMAND...: run; VAR_wall and VAR_cpu (ms) get its wall and CPU time.
timed() {
	local var=$1 out
	shift
	out=$({ TIMEFORMAT='%R %U %S'; time "$@" >/dev/null 2>&1; } 2>&1)
	read -r w u s <<<"$out"
	printf -v "${var}_wall" '%s' "$(awk -v x="$w" 'BEGIN {printf "%d", x * 1000}')"
	printf -v "${var}_cpu" '%s' "$(awk -v u="$u" -v s="$s" 'BEGIN {printf "%d", (u + s) * 1000}')"
}

bench_hub hb
cleanup() {
	"$hub" -q down >/dev/null 2>&1 || true
	bash "$baseline" down "$N" >/dev/null 2>&1 || true
	rm -rf "$HUB_STATE_DIR"
}
trap cleanup EXIT

names=()
for ((i = 1; i <= N; i++)); do names+=("p$i"); done
hub_up() { # hub_up batch|each
	"$hub" -q up
	if [[ $1 == batch ]]; then
		"$hub" -q peer add "${names[@]}"
	else
		for n in "${names[@]}"; do "$hub" -q peer add "$n"; done
	fi
}

echo "hub_bench: N=$N peers, userspace WireGuard (wireguard-go), $ROUNDS rounds, HUB_JOBS=${HUB_JOBS:-4}, tools from ${NIRANSIX_BIN_DIR:-PATH}"
modes=()
[[ $MODE == each ]] || modes+=(batch)
[[ $MODE == batch ]] || modes+=(each)
declare -A wall=() cpu=() mem=() down=()
b_wall=0 b_cpu=0 h_wall=0 h_cpu=0 d_wall=0 # set by timed
bash "$baseline" down "$N" >/dev/null 2>&1 || true
for ((r = 1; r <= ROUNDS; r++)); do
	timed b bash "$baseline" up "$N" userspace
	wall[base]+=" $b_wall" cpu[base]+=" $b_cpu" mem[base]+=" $(($(rss_kb '^wireguard-go wg-bl-') / 1024))"
	bash "$baseline" down "$N" >/dev/null 2>&1
	for m in "${modes[@]}"; do
		timed h hub_up "$m"
		wall[$m]+=" $h_wall" cpu[$m]+=" $h_cpu" mem[$m]+=" $(($(rss_kb "^wireguard-go $P") / 1024))"
		up=$("$hub" -q status | jq '[.peers[] | select(.up)] | length')
		((up == N)) || echo "hub_bench: round $r ($m): only $up of $N peers are up" >&2
		timed d "$hub" -q down
		down[$m]+=" $d_wall"
	done
done

row() { # row LABEL KEY
	local w c m
	# shellcheck disable=SC2086 # the lists are space-separated numbers
	{ w=$(median ${wall[$2]}); c=$(median ${cpu[$2]}); m=$(median ${mem[$2]}); }
	printf '%-32s %7s ms %5s ms/peer  cpu %6s ms  %4s MB wireguard-go RSS  (wall:%s)\n' \
		"$1" "$w" "$((w / N))" "$c" "$m" "${wall[$2]}"
}
row "baseline_hub.sh (step by step)" base
for m in "${modes[@]}"; do
	row "hub up + peer add ($m)" "$m"
	# shellcheck disable=SC2086
	printf '%-32s %7s ms\n' "hub down ($m)" "$(median ${down[$m]})"
	# shellcheck disable=SC2086
	awk -v b="$(median ${wall[base]})" -v h="$(median ${wall[$m]})" \
		'BEGIN {printf "speedup vs baseline (%s, median wall): %.2fx\n", "'"$m"'", b / h}'
done
