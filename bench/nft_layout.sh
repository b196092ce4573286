#!/bin/bash
# bench/nft_layout.sh [N...] — what one zones peer's NAT rules cost the kernel to commit beside
# N others, in three layouts of the same rules:
#
#   chains  natctl's layout today: each peer's rules in chains of their own (ten per peer),
#           reached from the base chains through verdict maps (`iifname vmap @forward.iif`)
#   maps    the same per-peer work as elements of data maps and sets that a few fixed rules
#           look up (`ct zone set iifname map @zone_iif`, `snat ip to iifname map @snat_iif`);
#           no chain per peer
#   exact   maps, but the early drop and the forward accept match the hub's prefix in their
#           rule, so that every set has exact keys (no interval set)
#
# For each N (default 10 200 1000) and layout, in a scratch namespace holding N peers' rules:
#   commit  the kernel's time for the one transaction that adds peer N+1 (its sendmsg, as
#           `strace -T` times it: nftables validates the table inside it)
#   link    the kernel's time to create a veth pair there (nftables walks the chains of every
#           inet table at each device event, under the same mutex a commit holds)
#   kpps    with PPS=1: UDP packets of 64 bytes a second (thousands) that iperf3 sends through
#           the namespace as a router, from a device behind the middle peer's tunnel (a veth
#           named like it) to a server on the internal side, so that every rule of that peer
#           applies; "x none": against the same router with no rules, measured just before
#           each run. ROUNDS (default 3) pairs of DURATION (default 4) s; needs iperf3 and jq.
# Medians of REPEAT (default 7). The peer's rules are those of a zones hub peer (docs/hub.md):
# its zone both ways, its reply zones from the bridge and from the host, the early drop of
# spoofed internal sources, its connection mark (set, checked, restored twice), its SNAT for
# forwarded and local traffic, and its forward and local_in filters.
#
# Uses nft, ip and strace, and with PPS=1 iperf3 and jq. The tools' own code is not measured here:
# this is the kernel's share, and what a natctl built on data maps could save. Creates only
# namespaces named nl-*, and removes them, also on Ctrl-C.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
REPEAT=${REPEAT:-7}
bench_sizes "$@"
PPS=${PPS:-0} ROUNDS=${ROUNDS:-3} DURATION=${DURATION:-4}
tools=(nft ip strace)
((!PPS)) || tools+=(iperf3 jq)
bench_need "${tools[@]}"
((EUID == 0)) || { echo "nft_layout: run as root (it creates network namespaces)" >&2 && exit 2; }
# (a server still waiting for its client, when the run is cut short)
bench_cleanup_first() { [[ ! -s $scratch/iperf3.pid ]] || kill "$(<"$scratch/iperf3.pid")" 2>/dev/null || true; }
bench_scratch nl-

# --- chains: natctl's layout -------------------------------------------------------------------
chains_base() {
	local stage hook maps m
	echo 'table inet nl {'
	while read -r stage hook maps; do
		for m in ${maps//,/ }; do
			case $m in
			iif) echo "map $stage.iif { type ifname : verdict; }" ;;
			dst4) echo "map $stage.dst4 { type ipv4_addr : verdict; }" ;;
			ctmark) echo "map $stage.ctmark { type mark : verdict; }" ;;
			esac
		done
		echo "chain $stage { ${hook//_/ }; policy accept;"
		for m in ${maps//,/ }; do
			case $m in
			iif) echo "iifname vmap @$stage.iif" ;;
			dst4) echo "ip daddr vmap @$stage.dst4" ;;
			ctmark) echo "ct mark vmap @$stage.ctmark" ;;
			esac
		done
		echo '}'
	done <<-'EOF'
		zones type_filter_hook_prerouting_priority_raw dst4,iif
		zones_out type_filter_hook_output_priority_raw dst4
		connmarks type_filter_hook_prerouting_priority_-160 dst4,iif,ctmark
		localmarks type_route_hook_output_priority_-160 ctmark,dst4
		srcnat type_nat_hook_postrouting_priority_100 iif
		input type_nat_hook_input_priority_100 iif
		forward type_filter_hook_forward_priority_0 iif
		local_in type_filter_hook_input_priority_0 iif
	EOF
	echo '}'
}

# chains_peer I add|del: peer I's chains, rules and map elements (or their removal).
chains_peer() {
	bench_peer nlp "$1"
	local -a c=("zones.iif.$tun" "zones.dst4.$addr" "zones_out.dst4.$addr" "connmarks.iif.$tun"
		"connmarks.ctmark.$mark" "localmarks.ctmark.$mark" "srcnat.iif.$tun" "input.iif.$tun"
		"forward.iif.$tun" "local_in.iif.$tun")
	local -a keys=("\"$tun\"" "$addr" "$addr" "\"$tun\"" "$mark" "$mark" "\"$tun\"" "\"$tun\"" "\"$tun\"" "\"$tun\"")
	local i rest r=(add rule inet nl) m=()
	for i in "${!c[@]}"; do
		rest=${c[i]#*.}
		m+=("${c[i]%%.*}.${rest%%.*}") # the chain's map: zones.dst4.100.64.0.2 is in zones.dst4
	done
	if [[ $2 == del ]]; then
		for i in "${!c[@]}"; do echo "delete element inet nl ${m[i]} { ${keys[i]} }"; done
		for i in "${!c[@]}"; do echo "delete chain inet nl ${c[i]}"; done
		return
	fi
	for i in "${!c[@]}"; do echo "add chain inet nl ${c[i]}"; done
	echo "${r[*]} ${c[0]} iifname \"$tun\" ip saddr 100.64.0.0/16 counter drop"
	echo "${r[*]} ${c[0]} iifname \"$tun\" counter ct zone set $zone"
	echo "${r[*]} ${c[1]} iifname \"nlhub0\" ip daddr $addr counter ct reply zone set $zone"
	echo "${r[*]} ${c[2]} ip daddr $addr counter ct reply zone set $zone"
	echo "${r[*]} ${c[3]} iifname \"$tun\" ct state new ct direction original counter ct mark set $mark"
	echo "${r[*]} ${c[3]} iifname \"$tun\" ct direction reply ct mark != $mark counter drop"
	echo "${r[*]} ${c[4]} ct direction reply ct mark $mark counter meta mark set ct mark"
	echo "${r[*]} ${c[5]} ct direction reply ct mark $mark counter meta mark set ct mark"
	echo "${r[*]} ${c[6]} meta nfproto ipv4 iifname \"$tun\" counter snat ip to $addr"
	echo "${r[*]} ${c[7]} meta nfproto ipv4 iifname \"$tun\" counter snat ip to $addr"
	echo "${r[*]} ${c[8]} iifname \"$tun\" ip daddr 100.64.0.0/16 counter accept"
	echo "${r[*]} ${c[8]} iifname \"$tun\" ct direction reply counter accept"
	echo "${r[*]} ${c[8]} iifname \"$tun\" counter drop"
	echo "${r[*]} ${c[9]} iifname \"$tun\" ip daddr 100.64.0.10 counter accept"
	echo "${r[*]} ${c[9]} iifname \"$tun\" ct direction reply counter accept"
	echo "${r[*]} ${c[9]} iifname \"$tun\" counter drop"
	for i in "${!c[@]}"; do echo "add element inet nl ${m[i]} { ${keys[i]} : jump ${c[i]} }"; done
}

# --- maps: the same work as elements -----------------------------------------------------------
# maps_base [exact]: with "exact", the early drop and the forward accept match the hub's prefix
# in their rule and look the interface up alone, so that every set has exact keys (no interval
# set, whose lookup table nftables rebuilds at each commit); without, a set holds the prefix
# beside each interface, as natctl's arguments name it for each peer.
maps_base() {
	local prefix_sets='' early='iifname . ip saddr @early_drop drop' fwd='iifname . ip daddr @fwd_accept accept'
	if [[ ${1:-} == exact ]]; then
		early='iifname @tunnels ip saddr 100.64.0.0/16 drop' fwd='iifname @tunnels ip daddr 100.64.0.0/16 accept'
	else
		prefix_sets='set early_drop { typeof iifname . ip saddr; flags interval; counter; }
		set fwd_accept { typeof iifname . ip daddr; flags interval; counter; }'
	fi
	cat <<-EOF
		table inet nl {
		map zone_iif { typeof iifname : ct zone; counter; }
		map zone_dst4 { typeof iifname . ip daddr : ct zone; counter; }
		map zone_out4 { typeof ip daddr : ct zone; counter; }
		map mark_iif { typeof iifname : ct mark; counter; }
		set mark_pair { typeof iifname . ct mark; counter; }
		set mark_own { typeof ct mark; counter; }
		map snat_iif { typeof iifname : ip saddr; counter; }
		$prefix_sets
		set local_accept { typeof iifname . ip daddr; counter; }
		set tunnels { typeof iifname; counter; }
		chain zones { type filter hook prerouting priority raw; policy accept;
		$early
		ct zone set iifname map @zone_iif
		ct reply zone set iifname . ip daddr map @zone_dst4
		}
		chain zones_out { type filter hook output priority raw; policy accept;
		ct reply zone set ip daddr map @zone_out4
		}
		chain connmarks { type filter hook prerouting priority -160; policy accept;
		ct state new ct direction original ct mark set iifname map @mark_iif
		ct direction reply iifname @tunnels iifname . ct mark != @mark_pair drop
		ct direction reply ct mark @mark_own meta mark set ct mark
		}
		chain localmarks { type route hook output priority -160; policy accept;
		ct direction reply ct mark @mark_own meta mark set ct mark
		}
		chain srcnat { type nat hook postrouting priority 100; policy accept;
		meta nfproto ipv4 snat ip to iifname map @snat_iif
		}
		chain input { type nat hook input priority 100; policy accept;
		meta nfproto ipv4 snat ip to iifname map @snat_iif
		}
		chain forward { type filter hook forward priority 0; policy accept;
		$fwd
		ct direction reply iifname @tunnels accept
		iifname @tunnels drop
		}
		chain local_in { type filter hook input priority 0; policy accept;
		iifname . ip daddr @local_accept accept
		ct direction reply iifname @tunnels accept
		iifname @tunnels drop
		}
		}
	EOF
}

# maps_peer I add|del [exact]: peer I's elements (or their removal).
maps_peer() {
	bench_peer nlp "$1"
	local -a e=("zone_iif { \"$tun\" : $zone }" "zone_dst4 { \"nlhub0\" . $addr : $zone }"
		"zone_out4 { $addr : $zone }" "mark_iif { \"$tun\" : $mark }" "mark_pair { \"$tun\" . $mark }"
		"mark_own { $mark }" "snat_iif { \"$tun\" : $addr }" "local_accept { \"$tun\" . 100.64.0.10 }"
		"tunnels { \"$tun\" }")
	[[ ${3:-} == exact ]] ||
		e+=("early_drop { \"$tun\" . 100.64.0.0/16 }" "fwd_accept { \"$tun\" . 100.64.0.0/16 }")
	local x
	for x in "${e[@]}"; do
		if [[ $2 == del ]]; then
			x=${x% : *}
			[[ $x == *' }' ]] || x+=' }'
			echo "delete element inet nl $x"
		else
			echo "add element inet nl $x"
		fi
	done
}

# exact: maps with exact keys only (maps_base).
exact_base() { maps_base exact; }
exact_peer() { maps_peer "$1" "$2" exact; }

# slowest_sendmsg FILE: the longest sendmsg in an `strace -T` log, in ms.
slowest_sendmsg() {
	awk -F'<' '/^sendmsg/ { t = $NF + 0; if (t > m) m = t } END { printf "%.2f\n", m * 1000 }' "$1"
}

# router_up NS K: NS as a router between a device (namespace nl-dev) behind peer K's tunnel (a
# veth named like it) and a server (namespace nl-srv) beside NS's bridge port; the device's
# address is outside the hub's prefix and the server's inside, as a device reaching the center.
# router_down removes the two namespaces, and their links with them.
router_up() {
	local ns=$1 link at dev
	local tun=nlp$2-wg addr=100.64.$(($2 / 250)).$(($2 % 250 + 1))
	ip netns add nl-dev
	ip netns add nl-srv
	ip link add nlde netns nl-dev type veth peer name "$tun" netns "$ns"
	ip link add nlse netns nl-srv type veth peer name nlhub0 netns "$ns"
	ip -n nl-dev addr add 10.9.0.2/24 dev nlde
	ip -n "$ns" addr add 10.9.0.1/24 dev "$tun"
	ip -n "$ns" addr add 100.64.0.10/16 dev nlhub0
	ip -n "$ns" addr add "$addr/32" dev nlhub0 # (the peer's address, as the hub holds it)
	ip -n nl-srv addr add 100.64.0.20/16 dev nlse
	for link in "nl-dev nlde" "nl-dev lo" "$ns $tun" "$ns nlhub0" "$ns lo" "nl-srv nlse" "nl-srv lo"; do
		read -r at dev <<<"$link"
		ip -n "$at" link set "$dev" up
	done
	ip -n nl-dev route add default via 10.9.0.1
	ip -n nl-srv route add default via 100.64.0.10
	ip netns exec "$ns" sysctl -qw net.ipv4.ip_forward=1
}
router_down() {
	ip netns del nl-dev
	ip netns del nl-srv
}

# kpps_through NS K: one iperf3 run (UDP, 64-byte payloads, as fast as it sends) from the device
# to the server through NS (router_up), in thousands of packets a second received.
kpps_through() {
	router_up "$@"
	ip netns exec nl-srv iperf3 -s -1 -D -p 5201 -I "$scratch/iperf3.pid" >/dev/null
	for _ in {1..100}; do
		[[ -z $(ip netns exec nl-srv ss -Hltn 'sport = :5201') ]] || break
		sleep 0.02
	done
	ip netns exec nl-dev iperf3 -c 100.64.0.20 -u -l 64 -b 0 -t "$DURATION" -J |
		jq -r '.end.sum | (.packets - .lost_packets) / .seconds / 1000 | floor'
	router_down
}

# kpps_paired NS K: ROUNDS runs through NS, each just after one through the router without rules
# (nl-none), as bench/dataplane.sh pairs its paths with their floor: this machine's speed drifts
# by more within a run than the layouts differ. Prints the median kpps through NS and the median
# of the paired ratios (x none).
kpps_paired() {
	local r bare got
	local -a runs=() ratios=()
	for ((r = 0; r < ROUNDS; r++)); do
		bare=$(kpps_through nl-none 1)
		got=$(kpps_through "$@")
		[[ $bare =~ ^[0-9]+$ && $got =~ ^[0-9]+$ ]] ||
			{ echo "nft_layout: iperf3 through $1 gave no packet rate ('$bare', '$got')" >&2 && exit 1; }
		runs+=("$got")
		ratios+=("$(awk -v a="$got" -v b="$bare" 'BEGIN { printf "%.2f\n", a / (b ? b : 1) }')")
	done
	printf ' %8s %7s' "$(median "${runs[@]}")" "$(median "${ratios[@]}")"
}

printf '%-6s %-7s %12s %10s' N layout 'commit ms' 'link ms'
((!PPS)) || printf ' %8s %7s' kpps 'x none'
echo
((!PPS)) || ip netns add nl-none
for n in "${sizes[@]}"; do
	for layout in chains maps exact; do
		ns=nl-$layout-$n
		ip netns add "$ns"
		{
			"${layout}_base"
			for ((i = 1; i <= n; i++)); do "${layout}_peer" "$i" add; done
		} >"$scratch/all.nft"
		ip netns exec "$ns" nft -f "$scratch/all.nft"
		"${layout}_peer" $((n + 1)) add >"$scratch/one.nft"
		"${layout}_peer" $((n + 1)) del >"$scratch/undo.nft"
		commits=() links=()
		for ((r = 0; r < REPEAT; r++)); do
			ip netns exec "$ns" strace -T -e trace=sendmsg -o "$scratch/trace" nft -f "$scratch/one.nft"
			commits+=("$(slowest_sendmsg "$scratch/trace")")
			ip netns exec "$ns" nft -f "$scratch/undo.nft"
			strace -T -e trace=sendmsg -o "$scratch/trace" ip -n "$ns" link add nlva type veth peer name nlvb
			links+=("$(slowest_sendmsg "$scratch/trace")")
			ip -n "$ns" link del nlva
		done
		printf '%-6s %-7s %12s %10s' "$n" "$layout" "$(median "${commits[@]}")" "$(median "${links[@]}")"
		((!PPS)) || kpps_paired "$ns" $(((n + 1) / 2))
		echo
		ip netns del "$ns"
	done
done
