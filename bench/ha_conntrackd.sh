#!/usr/bin/env bash
# Does a TCP connection survive a hub-pair takeover in HUB_MODE=zones, without and with
# conntrackd (issue 25, docs/ha.md "What a takeover loses")? Two zones-mode hubs A and B built from
# one `export --secrets | sync -`, a device (wg-quick, wireguard-go) dialling the floating address,
# a server on the central network, and two long-lived TCP connections, each sending a counter every
# 100 ms that the other end echoes:
#   dev->srv  the device to the server (masqueraded to the peer's internal address)
#   srv->dev  the server to the device through the forward tcp/22 (DNAT in the center)
# Then the takeover, driven step by step as examples/keepalived/niransix-notify does on MASTER
# (no keepalived: its detection time is measured by tests/tests/hub_pair.rs, not here): A's
# uplink and internal side cut; on B [conntrackd: commit the external cache into the kernel, as
# conntrackd's primary-backup.sh], the internal side up, the floating address on B (gratuitous
# ARP), gratuitous ARP for the peer's address, `hub reseed`. Reports per connection whether it
# survived (no reset, the counter flows again) and the longest gap between echoes.
#
#   bench/ha_conntrackd.sh [without|with|both]     (default both)
#     LOOSE=0 in the environment sets net.netfilter.nf_conntrack_tcp_loose=0 in both centers (the
#     default, 1, lets Linux pick up a mid-stream TCP packet as a new entry): what then survives
#     is only what conntrackd carried.
# Needs root, conntrackd (Debian's package), conntrack, wg-quick, wireguard-go, arping, python3.
# Builds only objects named ct... (namespaces cta*, ctb*, ctul, ctcn, ctd1), removes them after,
# also on failure or Ctrl-C. The conntrackd config used is examples/keepalived/conntrackd.conf with
# the addresses filled in.
set -euo pipefail
MODE=${1:-both}
case $MODE in without | with | both) ;; *) echo "ha_conntrackd: MODE is without, with or both" >&2; exit 2 ;; esac
((EUID == 0)) || { echo "ha_conntrackd: run as root" >&2; exit 1; }
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
hub_sh=$repo/niransix-sh/hub
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_tools "$repo"
[[ -n ${NIRANSIX_BIN_DIR:-} ]] || { echo "ha_conntrackd: build the workspace first" >&2; exit 1; }
for c in conntrackd conntrack wg-quick wireguard-go arping python3; do
	command -v "$c" >/dev/null || { echo "ha_conntrackd: $c is needed" >&2; exit 1; }
done

VIP=10.99.0.100 SERVER=100.64.0.200 DEVICE=192.168.1.10
UL=ctul CN=ctcn DEV=ctd1
work=$(mktemp -d /tmp/ha_conntrackd.XXXXXX)
pids=()

# hub X ARGS...: the hub script as hub X (a or b): its center ctXhub, prefix ctX.
hub() {
	local x=$1
	shift
	HUB_MODE=zones HUB_NS=ct${x}hub HUB_PREFIX=ct$x HUB_STATE_DIR=$work/state-$x \
		HUB_ENDPOINT=$VIP HUB_FORWARDS=tcp/22 "$hub_sh" -q "$@"
}

cleanup() {
	local p x
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	pids=()
	[[ ! -e $work/d1.conf ]] || ip netns exec "$DEV" wg-quick down "$work/d1.conf" >/dev/null 2>&1 || true
	for x in a b; do hub "$x" down >/dev/null 2>&1 || true; done
	for p in "$DEV" "$UL" "$CN" ctahub ctbhub ctahub.switch ctbhub.switch; do
		ip netns del "$p" 2>/dev/null || true
	done
}
trap 'cleanup; rm -rf "$work"' EXIT
trap 'exit 130' INT TERM

# The streams: `echo ADDR PORT` echoes every line of every connection; `send ADDR PORT LOG`
# connects, sends a counter every 100 ms and writes "EPOCH N" to LOG per echo, and a last line
# "end REASON" if the connection ends.
cat >"$work/stream.py" <<'EOF'
import socket, sys, threading, time
def echo(c):
    f = c.makefile("rb")
    try:
        for line in f:
            c.sendall(line)
    except OSError:
        pass
if sys.argv[1] == "echo":
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((sys.argv[2], int(sys.argv[3])))
    s.listen()
    while True:
        threading.Thread(target=echo, args=(s.accept()[0],), daemon=True).start()
log = open(sys.argv[4], "w", buffering=1)
c = socket.create_connection((sys.argv[2], int(sys.argv[3])), timeout=5)
c.settimeout(None)
def send():
    n = 0
    try:
        while True:
            n += 1
            c.sendall(b"%d\n" % n)
            time.sleep(0.1)
    except OSError as e:
        log.write("end send %s\n" % e)
threading.Thread(target=send, daemon=True).start()
try:
    for line in c.makefile("rb"):
        log.write("%.3f %s\n" % (time.time(), line.decode().strip()))
    log.write("end eof\n")
except OSError as e:
    log.write("end %s\n" % e)
EOF

# bg NS CMD...: CMD in NS in the background, its pid kept for the cleanup.
bg() {
	local ns=$1
	shift
	ip netns exec "$ns" "$@" >>"$work/bg.log" 2>&1 &
	pids+=("$!")
}

# listening NS ADDR PORT: waits until something listens there.
listening() {
	local i
	for ((i = 0; i < 50; i++)); do
		[[ -z $(ip netns exec "$1" ss -Hltn "src $2 and sport = :$3") ]] || return 0
		sleep 0.1
	done
	echo "ha_conntrackd: nothing listens on $2:$3 in $1" >&2
	return 1
}

# conntrackd_conf X LOCAL PEER LINK: examples/keepalived/conntrackd.conf for hub X.
conntrackd_conf() {
	sed -e "s|@LOCAL@|$2|g; s|@PEER@|$3|g; s|@LINK@|$4|g; s|/run/conntrackd|$work/ctd-$1|g" \
		"$repo/examples/keepalived/conntrackd.conf" >"$work/ctd-$1.conf"
}
ctd() { local x=$1; shift; ip netns exec "ct${x}hub" conntrackd -C "$work/ctd-$x.conf" "$@"; }

# ms_since T0: milliseconds since epoch T0 (EPOCHREALTIME).
ms_since() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%d", (b - a) * 1000 }'; }

# verdict LOG T0: "survived|RESET|STALLED, longest gap N ms, echoes after: M" for the stream
# logged in LOG around a cut at T0.
verdict() {
	awk -v t0="$2" '
		/^end/ { sub(/^end /, ""); ended = $0; next }
		{ if (last && $1 >= t0 - 1 && $1 - last > gap) gap = $1 - last
		  if ($1 > t0) after++
		  last = $1 }
		END {
			state = ended != "" ? "RESET (" ended ")" : (after > 0 ? "survived" : "STALLED")
			printf "%s, longest gap %d ms, echoes after the cut: %d", state, gap * 1000, after
		}' "$1"
}

# trial without|with: builds everything, runs the takeover, reports, removes everything.
trial() {
	local with=$1 x n t0 step
	echo "== takeover $with conntrackd (nf_conntrack_tcp_loose=${LOOSE:-1})"
	ip netns add "$UL"
	ip netns add "$CN"
	for n in "$UL" "$CN"; do
		ip -n "$n" link add br0 type bridge
		ip -n "$n" link set br0 up
	done
	ip -n "$CN" addr add "$SERVER/24" dev br0
	for x in a b; do
		hub "$x" up >/dev/null
		ip netns exec "ct${x}hub" sysctl -qw "net.netfilter.nf_conntrack_tcp_loose=${LOOSE:-1}"
	done
	# Each center: the underlay at 10.99.0.N (link ul0), its internal side ctXint (in its switch
	# namespace, to the central network through ctXx), down for now.
	n=1
	for x in a b; do
		ip link add "ct${x}u" netns "$UL" type veth peer name ul0 netns "ct${x}hub"
		ip -n "$UL" link set "ct${x}u" master br0 up
		ip -n "ct${x}hub" addr add "10.99.0.$n/24" dev ul0
		ip -n "ct${x}hub" link set ul0 up
		ip link add "ct${x}x" netns "$CN" type veth peer name "ct${x}int" netns "ct${x}hub.switch"
		ip -n "$CN" link set "ct${x}x" master br0 up
		ip -n "ct${x}hub.switch" link set "ct${x}int" master br-internal down
		n=$((n + 1))
	done
	# The sync link between the two centers (conntrackd's dedicated link).
	ip link add ctsa netns ctahub type veth peer name ctsb netns ctbhub
	ip -n ctahub addr add 10.98.0.1/30 dev ctsa
	ip -n ctbhub addr add 10.98.0.2/30 dev ctsb
	ip -n ctahub link set ctsa up
	ip -n ctbhub link set ctsb up
	# A serves: the floating address, its internal side up. B: A's set, standby.
	hub a peer add d1 >/dev/null
	ip -n ctahub addr add "$VIP/24" dev ul0
	ip -n ctahub.switch link set ctaint up
	hub a export --secrets | hub b sync - >/dev/null
	hub b standby >/dev/null
	# The device: wg-quick with A's config, unedited; an echo service on the forwarded port.
	ip netns add "$DEV"
	ip link add ctv1 netns "$UL" type veth peer name eth0 netns "$DEV"
	ip -n "$UL" link set ctv1 master br0 up
	ip -n "$DEV" addr add 10.99.0.11/24 dev eth0
	ip -n "$DEV" link set eth0 up
	ip -n "$DEV" link set lo up
	(umask 077 && hub a peer conf d1 >"$work/d1.conf")
	ip netns exec "$DEV" env WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go wg-quick up "$work/d1.conf" >/dev/null 2>&1
	BENCH=ha_conntrackd reach "$DEV" "$SERVER"
	hub a up >/dev/null # (the repair timer: A records the endpoint)
	hub a export --secrets | hub b sync - >/dev/null
	bg "$DEV" python3 "$work/stream.py" echo "$DEVICE" 22
	bg "$CN" python3 "$work/stream.py" echo "$SERVER" 7000
	listening "$DEV" "$DEVICE" 22
	listening "$CN" "$SERVER" 7000
	local peer
	peer=$(hub a export | jq -r 'select(.name == "d1") | .address')
	if [[ $with == with ]]; then
		conntrackd_conf a 10.98.0.1 10.98.0.2 ctsa
		conntrackd_conf b 10.98.0.2 10.98.0.1 ctsb
		for x in a b; do bg "ct${x}hub" conntrackd -C "$work/ctd-$x.conf"; done
		sleep 1
	fi
	bg "$DEV" python3 "$work/stream.py" send "$SERVER" 7000 "$work/dev-srv.log"
	bg "$CN" python3 "$work/stream.py" send "$peer" 22 "$work/srv-dev.log"
	sleep 3
	echo "-- A's conntrack table (TCP), before the cut:"
	ip netns exec ctahub conntrack -L -p tcp 2>/dev/null | sed 's/^/   /'
	if [[ $with == with ]]; then
		echo "-- B's conntrackd external cache (what A sent it):"
		ctd b -e 2>/dev/null | grep tcp | sed 's/^/   /' || true
	fi

	# The takeover.
	t0=$EPOCHREALTIME
	ip -n "$UL" link set ctau down
	ip -n "$CN" link set ctax down
	if [[ $with == with ]]; then
		ctd b -c || echo "   conntrackd -c failed"
		step=$(ms_since "$t0")
		ctd b -f
		ctd b -R
		ctd b -B
		echo "-- B: external cache committed at +$step ms"
	fi
	ip -n ctahub addr del "$VIP/24" dev ul0 2>/dev/null || true
	ip -n ctbhub addr add "$VIP/24" dev ul0
	ip netns exec ctbhub arping -q -U -c 1 -I ul0 "$VIP" || true
	ip -n ctbhub.switch link set ctbint up
	ip netns exec ctbhub arping -q -U -c 1 -I ctbhub0 "$peer" || true
	hub b reseed >/dev/null
	echo "-- B serves (reseed done) at +$(ms_since "$t0") ms"
	sleep 1
	echo "-- B's conntrack table (TCP) after the takeover:"
	ip netns exec ctbhub conntrack -L -p tcp 2>/dev/null | sed 's/^/   /'
	sleep 14
	echo "-- B's conntrack table (TCP) 15 s after the cut:"
	ip netns exec ctbhub conntrack -L -p tcp 2>/dev/null | sed 's/^/   /'
	echo "RESULT $with conntrackd: dev->srv: $(verdict "$work/dev-srv.log" "$t0")"
	echo "RESULT $with conntrackd: srv->dev: $(verdict "$work/srv-dev.log" "$t0")"
	cleanup
}

case $MODE in
without | with) trial "$MODE" ;;
both) trial without && trial with ;;
esac
