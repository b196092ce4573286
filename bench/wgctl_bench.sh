#!/usr/bin/env bash
# wgctl benchmark: N WireGuard interfaces (userspace, wireguard-go), each born in a center
# namespace, configured with a key, a listen port and one peer, moved into its own namespace
# and brought up there. Three ways, in the same run, on the same topology:
#
#   batch     one `wgctl -b FILE` process for everything (2 lines per interface)
#   each      one `wgctl iface add` + one `wgctl peer add` process per interface
#   baseline  the wireguard-go part of ../shared/bench/baseline_hub.sh, one process per step:
#             `wireguard-go`, `wg set .. listen-port .. private-key ..`, `ip link set .. netns`,
#             `ip -n .. link set .. up` -- with the peer folded into that same `wg set` call, so
#             the baseline pays no extra process for it. (The baseline's `ip route add default
#             dev wg..` is routectl's job and is left out of both sides.)
#
# Reports total time, time per interface, and RSS per interface (sum of the VmRSS of the
# wireguard-go processes / N).
#
#   bench/wgctl_bench.sh [N]     N: interfaces (default 50, at most 250)
# Needs root and a release build (cargo build --release -p wgctl). Creates only namespaces,
# interfaces and sockets named wb-* / wg-wb* / wg-wbl*, and removes them afterwards.
set -euo pipefail
N=${1:-50}
if ! [[ $N =~ ^[0-9]{1,3}$ ]] || ((N < 1 || N > 250)); then
	echo "wgctl_bench: N must be 1..250" >&2
	exit 2
fi
((EUID == 0)) || {
	echo "wgctl_bench: run as root" >&2
	exit 1
}
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
wgctl=${NIRANSIX_BIN_DIR:-$repo/target/release}/wgctl
[[ -x $wgctl ]] || {
	echo "wgctl_bench: build first: cargo build --release -p wgctl" >&2
	exit 1
}
work=
umask 077

now_ms() { echo $(($(date +%s%N) / 1000000)); }
ms() { awk -v t="$1" -v n="$N" 'BEGIN { printf "%6.2f s  (%5.1f ms/interface)", t / 1000, t / n }'; }
per_if() { awk -v kb="$1" -v n="$N" 'BEGIN { printf "%.1f MB total, %.2f MB/interface", kb / 1024, kb / 1024 / n }'; }

# topology NAME: a center namespace and N peer namespaces, all named wb-NAME-*.
topology() {
	local i
	ip netns add "wb-$1-c"
	for i in $(seq 1 "$N"); do ip netns add "wb-$1-$i"; done
}

# teardown [SIDE]: removes one side's namespaces, wireguard-go processes and sockets (all: wb-*).
# Each side is torn down before the next is built: every wireguard-go holds an inotify instance
# and fs.inotify.max_user_instances is 128 by default, so three sides of 50 would not fit.
teardown() {
	local n
	for n in $(ip netns list | awk '{print $1}' | grep "^wb-${1:-}" || true); do ip netns del "$n"; done
	pkill -f "^wireguard-go wg-wb${1:-}" 2>/dev/null || true
	sleep 0.3
	pkill -9 -f "^wireguard-go wg-wb${1:-}" 2>/dev/null || true
	rm -f /var/run/wireguard/wg-wb"${1:-}"*.sock
}
cleanup() {
	teardown
	if [[ -n $work ]]; then rm -rf "$work"; fi
}
trap cleanup EXIT
cleanup
work=$(mktemp -d)

"$wgctl" genkey --out "$work/hub.key" >/dev/null
peer=$("$wgctl" genkey | "$wgctl" pubkey | sed 's/.*"public_key":"\([^"]*\)".*/\1/')

# check_up SIDE: every side must have built the same thing: N links up in their namespaces,
# each with its peer, and N UDP ports (v4 + v6 sockets) listening in the center. wireguard-go
# binds within a second of the "up" in the other namespace, so this waits up to 5 s.
check_up() {
	local i up=0 peers=0 socks tries=0
	for i in $(seq 1 "$N"); do
		if ip -n "wb-$1-$i" -o link show up | awk '{print $2}' | grep -qx "wg-wb$1$i:"; then up=$((up + 1)); fi
		peers=$((peers + $(ip netns exec "wb-$1-$i" wg show "wg-wb$1$i" peers | wc -l)))
	done
	while :; do
		socks=$(ip netns exec "wb-$1-c" ss -Hnuln | awk '{print $4}' | grep -c ':5[234][0-9][0-9][0-9]$' || true)
		[[ $socks == $((2 * N)) ]] || ((tries++ > 50)) || { sleep 0.1; continue; }
		break
	done
	if [[ $up != "$N" || $peers != "$N" || $socks != $((2 * N)) ]]; then
		echo "wgctl_bench: side $1: $up of $N up, $peers peers, $socks UDP sockets (v4+v6)" >&2
		exit 1
	fi
}

# --- wgctl, batch mode -------------------------------------------------------------------------
topology b
for i in $(seq 1 "$N"); do
	echo "iface add wg-wbb$i --private-key $work/hub.key --listen-port $((52000 + i)) --into-ns wb-b-$i --backend userspace"
	echo "--ns wb-b-$i peer add wg-wbb$i --public-key $peer --allowed-ips 0.0.0.0/0,::/0"
done >"$work/batch"
t0=$(now_ms)
"$wgctl" --ns wb-b-c -b "$work/batch" >"$work/batch.out"
t_batch=$(($(now_ms) - t0))
[[ $(grep -c '"changed":true' "$work/batch.out") == $((2 * N)) ]] || {
	echo "wgctl_bench: batch run did not change everything" >&2
	exit 1
}
rss_batch=$(rss_kb '^wireguard-go wg-wbb')
check_up b
teardown b

# --- wgctl, one process per command ------------------------------------------------------------
topology e
t0=$(now_ms)
for i in $(seq 1 "$N"); do
	"$wgctl" --ns wb-e-c iface add "wg-wbe$i" --private-key "$work/hub.key" \
		--listen-port $((53000 + i)) --into-ns "wb-e-$i" --backend userspace >/dev/null
	"$wgctl" --ns "wb-e-$i" peer add "wg-wbe$i" --public-key "$peer" --allowed-ips 0.0.0.0/0,::/0 >/dev/null
done
t_each=$(($(now_ms) - t0))
check_up e
teardown e

# --- baseline: the wireguard-go steps of baseline_hub.sh --------------------------------------
topology l
t0=$(now_ms)
for i in $(seq 1 "$N"); do
	ip netns exec wb-l-c wireguard-go "wg-wbl$i" >/dev/null 2>&1
	ip netns exec wb-l-c wg set "wg-wbl$i" listen-port $((54000 + i)) private-key "$work/hub.key" \
		peer "$peer" allowed-ips 0.0.0.0/0,::/0
	ip -n wb-l-c link set "wg-wbl$i" netns "wb-l-$i"
	ip -n "wb-l-$i" link set "wg-wbl$i" up
done
t_base=$(($(now_ms) - t0))
rss_base=$(rss_kb '^wireguard-go wg-wbl')
check_up l
teardown l

printf 'wgctl_bench: N=%s userspace WireGuard interfaces with one peer each, born in a center namespace and moved\n' "$N"
printf '  wgctl batch (1 process)       %s\n' "$(ms "$t_batch")"
printf '  wgctl one process per command %s\n' "$(ms "$t_each")"
printf '  baseline ip/wg/wireguard-go   %s\n' "$(ms "$t_base")"
awk -v b="$t_batch" -v l="$t_base" 'BEGIN { printf "  batch / baseline              %.2f\n", b / l }'
printf '  RSS wireguard-go (wgctl)      %s\n' "$(per_if "$rss_batch")"
printf '  RSS wireguard-go (baseline)   %s\n' "$(per_if "$rss_base")"
