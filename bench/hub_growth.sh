#!/bin/bash
# bench/hub_growth.sh [SMALL LARGE] — what one `hub peer add` and one `hub peer del` cost beside
# LARGE peers (default 1000) against beside SMALL (default 10), measured so that the machine's
# drift falls on both sizes alike: per mode, one hub alternates between the two sizes (a bulk
# `peer add` of the difference, then a bulk `peer del` of it), ROUNDS times (default 4), and at
# each size of each round REPEAT peers (default 5) are added and deleted again, one command each.
# bench/hub_scale.sh builds each size once, one after the other: on a machine whose speed drifts
# by a quarter within minutes, its ratio of the two sizes moved from 1.00x to 1.48x between two
# runs of the same code.
#
# Prints, per mode and size, the medians over every round: one add's wall time, CPU time
# (user+sys of the hub and of every process it waited for) and the hub's own CPU (the script's
# and hubctl's, NX_OWN_CPU), one del's wall and CPU time; then LARGE against SMALL: the ratio of
# the medians, and the lowest and highest of the rounds' own ratios (of their medians). The goal
# for one add: at most 1.2x.
#
# MODES (default "netns zones"). Needs root; uses target/release when all the tools are built
# there. Builds only objects carrying its own prefix (hg...), and removes them after, also on
# Ctrl-C.
set -euo pipefail
small=${1:-10} large=${2:-1000}
for n in "$small" "$large"; do
	if ! [[ $n =~ ^[1-9][0-9]{0,3}$ ]] || ((n > 4000)); then
		echo "hub_growth: sizes must be 1..4000, got '$n'" >&2
		exit 2
	fi
done
((small < large)) || { echo "hub_growth: SMALL ($small) must be below LARGE ($large)" >&2 && exit 2; }
ROUNDS=${ROUNDS:-4} REPEAT=${REPEAT:-5}
[[ $ROUNDS =~ ^[1-9]$ ]] || { echo "hub_growth: ROUNDS must be 1..9, got '$ROUNDS'" >&2 && exit 2; }
[[ $REPEAT =~ ^([1-9]|1[0-9]|20)$ ]] || { echo "hub_growth: REPEAT must be 1..20, got '$REPEAT'" >&2 && exit 2; }
((EUID == 0)) || { echo "hub_growth: run as root" >&2 && exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
hub=$repo/niransix-sh/hub
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_modes
bench_tools "$repo"

bench_hub hg
export HUB_CIDR=100.64.0.0/16
own_file=$HUB_STATE_DIR.own
cleanup() {
	[[ -z ${HUB_MODE:-} ]] || "$hub" -q down >/dev/null 2>&1 || true
	rm -rf "$HUB_STATE_DIR" "$own_file"
	inotify_restore
}
trap cleanup EXIT
trap 'exit 130' INT TERM
inotify_need "$large"

# The peers always there, those added and removed in each round, and those timed.
mapfile -t base < <(seq -f 'p%g' 1 "$small")
mapfile -t extra < <(seq -f 'p%g' $((small + 1)) "$large")
echo "hub_growth: $small against $large peers, $ROUNDS rounds of $REPEAT adds and dels at each, HUB_JOBS=${HUB_JOBS:-4}, tools from ${NIRANSIX_BIN_DIR:-PATH}"
printf '\n%6s | %5s | %24s | %17s\n' mode N "one add wall/cpu/own" "one del wall/cpu"

# ratios A B: "LOWEST HIGHEST" of the ratios of the space-separated figures A against B, taken
# pair by pair (the medians of one round at each size).
ratios() {
	awk -v a="$1" -v b="$2" 'BEGIN {
		n = split(a, x, " "); split(b, y, " ")
		lo = 1e9; hi = 0
		for (i = 1; i <= n; i++) { r = x[i] / (y[i] ? y[i] : 1); if (r < lo) lo = r; if (r > hi) hi = r }
		printf "%.2f %.2f\n", lo, hi }'
}

for mode in "${modes[@]}"; do
	export HUB_MODE=$mode
	"$hub" -q up >/dev/null
	"$hub" -q peer add "${base[@]}" >/dev/null
	declare -A add_w=() add_c=() own=() del_w=() del_c=() round_add=() round_cpu=()
	for ((r = 1; r <= ROUNDS; r++)); do
		for n in "$large" "$small"; do
			if ((n == large)); then
				"$hub" -q peer add "${extra[@]}" >/dev/null
			else
				"$hub" -q peer del "${extra[@]}" >/dev/null
			fi
			this_w=() this_c=()
			for ((i = 1; i <= REPEAT; i++)); do
				: >"$own_file"
				NX_OWN_CPU=$own_file ms "$hub" -q peer add "x$i"
				add_w[$n]+="$MS " add_c[$n]+="$CPU " own[$n]+="$(own_ms "$own_file") "
				this_w+=("$MS") this_c+=("$CPU")
				ms "$hub" -q peer del "x$i"
				del_w[$n]+="$MS " del_c[$n]+="$CPU "
			done
			round_add[$n]+="$(median "${this_w[@]}") " round_cpu[$n]+="$(median "${this_c[@]}") "
		done
	done
	declare -A m_aw=() m_ac=() m_dw=() m_dc=()
	for n in "$small" "$large"; do
		# (word splitting of the lists is meant: one figure a word)
		# shellcheck disable=SC2086
		{
			m_aw[$n]=$(median ${add_w[$n]}) m_ac[$n]=$(median ${add_c[$n]})
			m_dw[$n]=$(median ${del_w[$n]}) m_dc[$n]=$(median ${del_c[$n]})
			printf '%6s | %5d | %5d / %5d / %5.1f ms | %5d / %5d ms\n' "$mode" "$n" \
				"${m_aw[$n]}" "${m_ac[$n]}" "$(median ${own[$n]})" "${m_dw[$n]}" "${m_dc[$n]}"
		}
	done
	read -r wlo whi < <(ratios "${round_add[$large]}" "${round_add[$small]}")
	read -r clo chi < <(ratios "${round_cpu[$large]}" "${round_cpu[$small]}")
	awk -v m="$mode" -v s="$small" -v l="$large" -v aw="${m_aw[$large]}/${m_aw[$small]}" \
		-v ac="${m_ac[$large]}/${m_ac[$small]}" -v dw="${m_dw[$large]}/${m_dw[$small]}" \
		-v dc="${m_dc[$large]}/${m_dc[$small]}" -v wlo="$wlo" -v whi="$whi" -v clo="$clo" -v chi="$chi" '
		function r(f) { split(f, p, "/"); return p[1] / (p[2] ? p[2] : 1) }
		BEGIN { printf "%s: N=%d vs N=%d: one add %.2fx wall (rounds %.2f-%.2fx), %.2fx CPU (rounds %.2f-%.2fx); one del %.2fx wall, %.2fx CPU\n",
			m, l, s, r(aw), wlo, whi, r(ac), clo, chi, r(dw), r(dc) }'
	"$hub" -q down >/dev/null
	unset HUB_MODE
done
