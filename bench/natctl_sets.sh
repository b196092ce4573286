#!/bin/bash
# bench/natctl_sets.sh [N...] — what one zones peer's NAT and filters cost through natctl beside
# N others, kept two ways:
#
#   rules   as the hub keeps them today: each peer's twelve rules (its zones, early drop,
#           connection mark, SNAT and filters), which natctl puts in chains of their own
#   sets    as elements: the same rules once, over sets and maps (`zone --iif @zone_of --zone
#           @zone_of`, `filter --iif @tunnels ...`), and each peer seven elements of them
#
# For each N (default 10 200 1000) and form, in a scratch namespace holding N peers: one peer's
# add, as one `natctl -b -` of its lines (what the hub runs), then its deletion likewise, REPEAT
# times (default 9). Prints medians, ms: the add's and the deletion's wall time and CPU (user +
# system of natctl and the kernel's work in its calls), and each form's growth from the smallest
# N to the largest. Uses target/release's natctl (or NIRANSIX_BIN_DIR's), perf and jq. Creates only
# namespaces named ncs-*, and removes them, also on Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
REPEAT=${REPEAT:-9}
bench_sizes "$@"
bench_need jq perf
((EUID == 0)) || { echo "natctl_sets: run as root (it creates network namespaces)" >&2 && exit 2; }
bench_tools "$here/.."
natctl=$NIRANSIX_BIN_DIR/natctl
bench_scratch ncs-

# rules_center, sets_center: what the center holds before any peer.
rules_center() { :; }
sets_center() {
	cat <<-'EOF'
		set add zone_of --type ifname --value zone
		set add zone_dst --type ipv4_addr --value zone
		set add tunnels --type ifname
		set add denied --type ifname --counter
		set add denied_local --type ifname --counter
		set add cm --type ifname --value ctmark
		set add snat_of --type ifname --value ipv4_addr
		zone --iif @zone_of --zone @zone_of --dir both
		zone --iif ncs0 --dst @zone_dst --zone @zone_dst --dir reply
		zone --local --dst @zone_dst --zone @zone_dst --dir reply
		filter --iif @tunnels --src 100.64.0.0/16 --verdict drop --early
		connmark --iif @cm --set @cm
		snat --to @snat_of --iif @snat_of --local
		filter --iif @tunnels --reply --verdict accept
		filter --iif @tunnels --dst 100.64.0.0/16 --verdict accept
		filter --iif @denied --default drop
		filter --iif @tunnels --local --reply --verdict accept
		filter --iif @tunnels --local --dst 100.64.0.10 --verdict accept
		filter --iif @denied_local --local --default drop
	EOF
}

# rules_peer I, sets_peer I: peer I's lines.
rules_peer() {
	bench_peer ncp "$1"
	cat <<-EOF
		zone --iif $tun --zone $zone --dir both
		zone --iif ncs0 --dst $addr --zone $zone --dir reply
		zone --local --dst $addr --zone $zone --dir reply
		filter --iif $tun --src 100.64.0.0/16 --verdict drop --early
		connmark --iif $tun --set $mark
		snat --to $addr --iif $tun --local
		filter --iif $tun --reply --verdict accept
		filter --iif $tun --dst 100.64.0.0/16 --verdict accept
		filter --iif $tun --default drop
		filter --iif $tun --local --reply --verdict accept
		filter --iif $tun --local --dst 100.64.0.10 --verdict accept
		filter --iif $tun --local --default drop
	EOF
}
sets_peer() {
	bench_peer ncp "$1"
	local set
	printf 'element add %s\n' "zone_of $tun $zone" "zone_dst $addr $zone" "cm $tun $mark" \
		"snat_of $tun $addr"
	for set in tunnels denied denied_local; do echo "element add $set $tun"; done
}

# rules_undo FILE, sets_undo FILE: the lines that delete what the add lines' output FILE added.
rules_undo() { jq -r '"del " + .rule.id' "$1"; }
sets_undo() { jq -r '"element del " + .element.set + " " + (.element.key | tostring)' "$1"; }

# timed NS FILE OUT: `natctl --ns NS -b FILE`, its output in OUT; sets WALL (perf's
# duration_time: from its start to its exit) and CPU (perf's task-clock: its user and system
# time), ms.
timed() {
	perf stat -x, -e task-clock,duration_time -o "$scratch/perf" "$natctl" --ns "$1" -b "$2" >"$3"
	CPU=$(awk -F, '$3 == "task-clock" {printf "%.1f", $1}' "$scratch/perf")
	WALL=$(awk -F, '$3 == "duration_time" {printf "%.1f", $1 / 1e6}' "$scratch/perf")
}

declare -A result
for n in "${sizes[@]}"; do
	for form in rules sets; do
		ns=ncs-$form
		ip netns add "$ns"
		{
			"${form}_center"
			for ((i = 0; i < n; i++)); do "${form}_peer" "$i"; done
		} >"$scratch/build"
		"$natctl" --ns "$ns" -b "$scratch/build" >/dev/null
		"${form}_peer" "$n" >"$scratch/add"
		: >"$scratch/times"
		for ((r = 0; r < REPEAT; r++)); do
			timed "$ns" "$scratch/add" "$scratch/added"
			add="$WALL $CPU"
			"${form}_undo" "$scratch/added" >"$scratch/del"
			timed "$ns" "$scratch/del" /dev/null
			echo "$add $WALL $CPU" >>"$scratch/times"
		done
		line=""
		for col in 1 2 3 4; do
			mapfile -t values < <(awk -v c="$col" '{print $c}' "$scratch/times")
			line+=" $(median "${values[@]}")"
		done
		result[$n.$form]=$line
		ip netns del "$ns"
	done
done

echo "one zones peer's NAT and filters through natctl, beside N others (medians of $REPEAT, ms)"
printf '%6s %6s %10s %10s %10s %10s\n' N form "add wall" "add CPU" "del wall" "del CPU"
for n in "${sizes[@]}"; do
	for form in rules sets; do
		read -r aw ac dw dc <<<"${result[$n.$form]}"
		printf '%6s %6s %10s %10s %10s %10s\n' "$n" "$form" "$aw" "$ac" "$dw" "$dc"
	done
done
if ((${#sizes[@]} > 1)); then
	small=${sizes[0]} large=${sizes[-1]}
	for form in rules sets; do
		read -r aw0 ac0 _ _ <<<"${result[$small.$form]}"
		read -r aw1 ac1 _ _ <<<"${result[$large.$form]}"
		awk -v f="$form" -v s="$small" -v l="$large" -v a="$aw0" -v b="$aw1" -v c="$ac0" -v d="$ac1" \
			'BEGIN {printf "%s: one add beside %s is %.2fx wall, %.2fx CPU the same beside %s\n", f, l, b / a, d / c, s}'
	done
fi
