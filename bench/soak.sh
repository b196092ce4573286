#!/usr/bin/env bash
# bench/soak.sh — the hub left running as a fleet runs it, with churn and breakage, then held to
# account: nothing lost, leaked or accumulated.
#
#   bench/soak.sh [--minutes M] [--peers N] [--mode netns|zones]
#                 defaults: 10 minutes, 300 peers, HUB_MODE (else netns); --minutes 60 for the
#                 long run; CI runs `--minutes 2 --peers 50`
#
# During the run, each in a loop of its own:
#   repair    `hub up` every 10 s (the repair timer)
#   scrape    `hub metrics` and `hub status` every 5 s
#   churn     `hub sync` every 30 s, from a set file rewritten in place each time: 10 peers
#             (z1..z10) in, then out again
#   break     every minute one breakage, in turn, of a peer that nobody watches (v*): its
#             tunnel killed (its wireguard-go; under wgd, its UAPI socket removed, which closes
#             that interface alone); a stray WireGuard peer added with `wg`; its NAT deleted
#             behind the hub's back; its client's allowed-ips narrowed; (netns) its namespace
#             deleted, (zones) its fwmark rule deleted
#   ping      10 untouched peers (k1..k10), each with a real client configured from `hub peer
#             conf` at the start, ping the center every 0.2 s
# At the end it asserts (and prints the figures):
#   - no ping of the untouched peers lost;
#   - no command failed: every metrics, status and sync exited 0, and so did every up but one
#     that a breakage raced (it names only broken peers: the others were repaired, and the next
#     run repairs those);
#   - no more files under TMPDIR and HUB_STATE_DIR than at the start (the set is back to its
#     start);
#   - no growth of the watched processes' open fds (the pinging peers' wireguard-go, or the one
#     wgd serving every tunnel; no more at the end than at the start) and memory (their RSS, sampled every 10 s: the highest of the last third of the
#     run at most 5 % + 1 MiB above the highest of the middle third: a leak grows steadily, a
#     Go heap that settles does not; it takes wireguard-go ~5 min of `status` polls to settle,
#     so a run shorter than 6 min prints the figures and says it cannot judge them), nor of the
#     tools' peak RSS (the largest process of one `hub status`, the same bound against its
#     reading after the first minute);
#   - `hub check` exits 0, and every client configured at the start still reaches the center.
# The last line is `N passed, N failed`; exit 0 only if every assertion held.
#
# Needs root. Builds only objects carrying its own prefix (sk...) and removes them, and restores
# fs.inotify.max_user_instances, on exit (also on failure or Ctrl-C). A run killed outright
# (SIGKILL, a lost session) cannot: the next run, when no other runs, removes what it left and
# restores the limit it saved. Uses target/release when
# all four tools are built there, else target/debug.
set -euo pipefail
minutes=${SOAK_MINUTES:-10} peers=${SOAK_PEERS:-300} mode=${HUB_MODE:-netns}
while (($#)); do
	case $1 in
	--minutes) minutes=${2:-}; shift 2 ;;
	--peers) peers=${2:-}; shift 2 ;;
	--mode) mode=${2:-}; shift 2 ;;
	-h | --help) sed -n '2,36p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
	*) echo "soak: unknown argument '$1' (see --help)" >&2; exit 2 ;;
	esac
done
[[ $minutes =~ ^[1-9][0-9]{0,2}$ ]] || { echo "soak: --minutes '$minutes' must be 1..999" >&2; exit 2; }
if ! [[ $peers =~ ^[1-9][0-9]{1,3}$ ]] || ((peers < 20 || peers > 2000)); then
	echo "soak: --peers '$peers' must be 20..2000 (10 pinging, the rest broken in turn)" >&2
	exit 2
fi
[[ $mode == netns || $mode == zones ]] || { echo "soak: --mode '$mode' must be netns or zones" >&2; exit 2; }
((EUID == 0)) || { echo "soak: run as root" >&2; exit 1; }
for t in jq wg ping python3; do
	command -v "$t" >/dev/null || { echo "soak: needs $t" >&2; exit 1; }
done
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/.." && pwd)
hub=$repo/niransix-sh/hub
client=$repo/niransix-sh/client
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_tools "$repo"
[[ -n ${NIRANSIX_BIN_DIR:-} ]] || { echo "soak: build the tools first (cargo build)" >&2; exit 1; }

# remove_prefix P: everything a run with prefix P made (its hub's objects are in its namespaces).
remove_prefix() {
	local p=$1 ns
	for ns in $(ip netns list | awk -v p="$p" 'index($1, p) == 1 {print $1}'); do
		ip netns pids "$ns" 2>/dev/null | xargs -r kill 2>/dev/null || true
		ip netns del "$ns" 2>/dev/null || true
	done
	pkill -f "^wireguard-go $p" 2>/dev/null || true
	rm -f /var/run/wireguard/"$p"*.sock # (wgd closes what it still serves)
	rm -rf /tmp/"$p".??????
}

# Every run holds a shared lock for as long as it runs; one that gets it exclusively runs alone,
# so a soak's work directory (/tmp/PREFIX.XXXXXX, removed on exit) is a killed run's, and that
# run's objects go (only prefixes found so: a namespace of someone else's never goes).
limit_file=/proc/sys/fs/inotify/max_user_instances
limit_saved=/run/lock/niransix-soak.inotify # (the limit before a run raised it, while it runs)
exec {run_lock}>/run/lock/niransix-soak.lock
if flock -n "$run_lock"; then
	for p in $(find /tmp -maxdepth 1 -name 'sk[0-9a-f][0-9a-f][0-9a-f].??????' -printf '%f\n' | cut -c1-5 | sort -u); do
		echo "soak: removing what a killed run left (prefix $p)" >&2
		remove_prefix "$p"
	done
	if [[ -s $limit_saved ]]; then
		cat "$limit_saved" >"$limit_file" && rm -f "$limit_saved"
	fi
fi
flock -s "$run_lock"

P=sk$(printf '%03x' $((RANDOM % 4096)))
# The userspace implementation the hub and the clients get (wgctl's default: wgd), and the
# processes watched for leaks: the pinging peers' wireguard-go, or the wgd serving every tunnel.
userspace=${NIRANSIX_WG_USERSPACE:-wgd}
if [[ $userspace == wgd ]]; then watched='^(/[^ ]*/)?wgd$'; else watched="^wireguard-go ${P}k[0-9]+-wg\$"; fi
# kill_tunnel WG: what serves tunnel WG fails for it alone.
kill_tunnel() {
	if [[ $userspace == wgd ]]; then rm "/var/run/wireguard/$1.sock"; else pkill -f "^wireguard-go $1\$"; fi
}
work=$(mktemp -d "/tmp/$P.XXXXXX")
export HUB_NS=${P}hub HUB_PREFIX=$P HUB_MODE=$mode HUB_CIDR=100.64.0.0/20 HUB_STATE_DIR=$work/state
export TMPDIR=$work/tmp
mkdir -p "$TMPDIR" "$work/log"
limit_old=$(<"$limit_file")
[[ -s $limit_saved ]] || echo "$limit_old" >"$limit_saved"
declare -a loops=() pingers=()
cleanup() {
	local pid
	for pid in "${loops[@]}" "${pingers[@]}"; do kill "$pid" 2>/dev/null || true; done
	wait 2>/dev/null || true
	"$hub" -q down >/dev/null 2>&1 || true
	remove_prefix "$P"
	# (the last run out puts the limit back as the first found it)
	if flock -n "$run_lock" && [[ -s $limit_saved ]]; then
		cat "$limit_saved" >"$limit_file" && rm -f "$limit_saved"
	fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM
echo $((limit_old > 8192 ? limit_old : 8192)) >"$limit_file"

passed=0 failed=0
# verdict OK WHAT: one assertion's result.
verdict() {
	if (($1)); then
		passed=$((passed + 1))
		printf '  ok    %s\n' "$2"
	else
		failed=$((failed + 1))
		printf '  FAIL  %s\n' "$2"
	fi
}

# --- the hub and its peers: k1..k10 (pinging), v1..v(N-10) (broken in turn); z1..z10 churn ---
echo "soak: $mode, $peers peers, $minutes min, prefix $P, tools from $NIRANSIX_BIN_DIR"
base=()
for ((i = 1; i <= 10; i++)); do base+=("k$i"); done
for ((i = 1; i <= peers - 10; i++)); do base+=("v$i"); done
set_file=$work/set.jsonl
# write_set [EXTRA...]: the set file, rewritten.
write_set() { printf '{"name":"%s"}\n' "${base[@]}" "$@" >"$set_file"; }
write_set
"$hub" -q up >/dev/null
t0=$SECONDS
"$hub" -q sync "$set_file" >/dev/null
echo "soak: $peers peers built in $((SECONDS - t0)) s"

# The clients of k1..k10: each in a namespace of its own on an underlay bridge in the center
# (2001:db8::10, the endpoint `peer conf` finds), configured from `hub peer conf`.
ip -n "$HUB_NS" link add ul address 02:00:5e:10:00:10 type bridge
ip -n "$HUB_NS" link set ul up
ip -n "$HUB_NS" addr add 2001:db8::10/64 dev ul nodad
for ((i = 1; i <= 10; i++)); do
	c=${P}c$i
	ip netns add "$c"
	ip link add "${P}u$i" netns "$HUB_NS" type veth peer name "${P}e$i" netns "$c"
	ip -n "$HUB_NS" link set "${P}u$i" master ul up
	ip -n "$c" addr add "2001:db8::$((0x20 + i))/64" dev "${P}e$i" nodad
	ip -n "$c" link set "${P}e$i" up
	ip -n "$c" link set lo up
	"$hub" peer conf "k$i" >"$work/k$i.conf"
	"$client" -q up "$c" "${P}w$i" <"$work/k$i.conf" >/dev/null
done
for ((i = 1; i <= 10; i++)); do
	ip netns exec "${P}c$i" ping -q -c 1 -w 20 -I 192.168.1.10 100.64.0.10 >/dev/null ||
		{ echo "soak: client k$i never reached the center" >&2; exit 1; }
done

# --- the loops ---
# every SECS NAME CMD...: CMD every SECS seconds until the end; each failure is logged.
end=$((SECONDS + minutes * 60))
every() {
	local secs=$1 name=$2 next
	shift 2
	while ((SECONDS < end)); do
		next=$((SECONDS + secs))
		"$@" >/dev/null 2>>"$work/log/$name.err" || echo "$(date +%T) exit $?" >>"$work/log/$name.fail"
		echo x >>"$work/log/$name.runs"
		while ((SECONDS < next && SECONDS < end)); do sleep 0.5; done
	done
}
churn_state=0
churn() {
	if ((churn_state)); then write_set; else write_set z{1..10}; fi
	churn_state=$((1 - churn_state))
	"$hub" -q sync "$set_file"
}
# breakage K: the K-th kind of breakage, of peer v(K+1).
breakage() {
	local k=$1 v=v$(($1 + 1)) ns wg
	wg=${P}$v-wg
	if [[ $mode == netns ]]; then ns=$P$v; else ns=$HUB_NS; fi
	case $((k % 5)) in
	0) kill_tunnel "$wg" ;;
	1) ip netns exec "$ns" wg set "$wg" peer "$(wg genkey | wg pubkey)" allowed-ips 10.99.0.0/16 ;;
	2)
		if [[ $mode == netns ]]; then
			ip netns exec "$ns" nft flush ruleset
		else
			local id
			id=$("$NIRANSIX_BIN_DIR/natctl" --ns "$ns" list |
				jq -r --arg wg "$wg" 'first(.rules[] | select(.iif == $wg and .kind == "snat") | .id)')
			"$NIRANSIX_BIN_DIR/natctl" --ns "$ns" del "$id" >/dev/null
		fi
		;;
	3)
		local key
		key=$("$hub" -q status | jq -r --arg n "$v" '.peers[] | select(.name == $n) | .client_public_key')
		ip netns exec "$ns" wg set "$wg" peer "$key" allowed-ips 10.1.0.0/16
		;;
	4)
		if [[ $mode == netns ]]; then
			kill_tunnel "$wg" || true
			ip netns del "$ns"
		else
			local mark
			mark=$("$hub" -q status | jq -r --arg n "$v" '.peers[] | select(.name == $n) | .listen_port + 1314390016')
			ip -n "$ns" rule del fwmark "$mark" table "$mark" priority 1000
		fi
		;;
	esac
	echo "$(date +%T) breakage $((k % 5)) of $v" >>"$work/log/breakage.log"
}
breaker() {
	local k=0
	while ((SECONDS + 60 < end)); do
		sleep 60
		breakage "$k" || echo "$(date +%T) breakage $k could not be made" >>"$work/log/breakage.fail"
		k=$((k + 1))
	done
}
# resources: open fds and RSS (kB) of the watched processes, the files under TMPDIR and
# HUB_STATE_DIR, and the peak RSS (kB) of the largest process of one `hub status`.
resources() {
	local fds=0 pid
	for pid in $(pgrep -f "$watched"); do
		fds=$((fds + $(find "/proc/$pid/fd" -mindepth 1 -maxdepth 1 2>/dev/null | wc -l)))
	done
	local rss
	rss=$(rss_kb "$watched")
	local tmp_files state_files tool_rss
	tmp_files=$(find "$TMPDIR" -mindepth 1 | wc -l)
	state_files=$(find "$HUB_STATE_DIR" -mindepth 1 ! -name lock | wc -l)
	tool_rss=$(python3 -c 'import resource, subprocess, sys
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, check=True)
print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)' "$hub" -q status)
	echo "$fds $rss $tmp_files $state_files $tool_rss"
}

read -r fds0 _ tmp0 state0 _ < <(resources)
for ((i = 1; i <= 10; i++)); do
	ip netns exec "${P}c$i" ping -n -i 0.2 -W 1 -I 192.168.1.10 100.64.0.10 >"$work/ping$i.log" 2>&1 &
	pingers+=($!)
done
every 10 repair "$hub" -q up &
loops+=($!)
every 5 metrics "$hub" -q metrics &
loops+=($!)
every 5 status "$hub" -q status &
loops+=($!)
every 30 churn churn &
loops+=($!)
breaker &
loops+=($!)
sampler() {
	while ((SECONDS < end)); do
		rss_kb "$watched" >>"$work/log/rss"
		sleep 10
	done
}
sampler &
loops+=($!)
sleep 60
read -r _ _ _ _ tool1 < <(resources)
echo "soak: after 1 min: hub status peak RSS ${tool1} kB"
wait "${loops[@]}"
loops=()
for pid in "${pingers[@]}"; do kill -INT "$pid" 2>/dev/null || true; done
wait "${pingers[@]}" 2>/dev/null || true
pingers=()

# --- the account ---
write_set
"$hub" -q sync "$set_file" >/dev/null
"$hub" -q up >/dev/null || true
sleep 2
read -r fds2 _ tmp2 state2 tool2 < <(resources)
runs() { [[ -e $work/log/$1.runs ]] && wc -l <"$work/log/$1.runs" || echo 0; }
fails() { [[ -e $work/log/$1.fail ]] && wc -l <"$work/log/$1.fail" || echo 0; }
echo "soak: ran up $(runs repair)x, metrics $(runs metrics)x, status $(runs status)x, sync $(runs churn)x," \
	"$(grep -c breakage "$work/log/breakage.log" 2>/dev/null || echo 0) breakages"
echo "soak: the account"
lost_total=0 sent_total=0
for ((i = 1; i <= 10; i++)); do
	read -r sent got < <(awk '/packets transmitted/ {print $1, $4}' "$work/ping$i.log")
	sent_total=$((sent_total + ${sent:-0}))
	# (the echo in flight when ping was stopped may lack its reply)
	((${sent:-0} - ${got:-0} <= 1)) || lost_total=$((lost_total + sent - got))
done
verdict $((lost_total == 0 && sent_total > minutes * 60 * 10 * 2)) \
	"pings of the 10 untouched peers: $sent_total sent, $lost_total lost"
for l in metrics status churn; do
	n=$(fails "$l")
	verdict $((n == 0)) "$l: $(runs "$l") runs, $n failed$( ((n == 0)) || printf ': %s' "$(tail -n 3 "$work/log/$l.err" | tr '\n' ' ')")"
done
# A repair may fail for a peer broken while it ran (its namespace deleted between two of its
# steps): it names that peer, repairs every other, and the next run repairs it.
n=$(fails repair)
broken_only='the repair of peer\(s\) (v[0-9]+ )*v[0-9]+ failed'
raced=$(grep -Ec "$broken_only" "$work/log/repair.err" 2>/dev/null || true)
other=$(grep 'the repair of peer(s)' "$work/log/repair.err" 2>/dev/null | grep -Evc "$broken_only" || true)
verdict $((n == ${raced:-0} && ${other:-0} == 0)) \
	"repair: $(runs repair) runs, $n failed ($raced on a peer a breakage raced)$( ((n == ${raced:-0})) || printf ': %s' "$(tail -n 3 "$work/log/repair.err" | tr '\n' ' ')")"
[[ ! -e $work/log/breakage.fail ]] || verdict 0 "breakages made: $(cat "$work/log/breakage.fail")"
verdict $((tmp2 <= tmp0)) "files under TMPDIR: $tmp0 at the start, $tmp2 at the end"
verdict $((state2 <= state0)) "files under HUB_STATE_DIR: $state0 at the start, $state2 at the end"
verdict $((fds2 <= fds0)) "open fds of the watched $userspace: $fds0 at the start, $fds2 at the end"
mapfile -t rss <"$work/log/rss"
third=$((${#rss[@]} / 3))
read -r rss_mid rss_last < <(printf '%s\n' "${rss[@]}" | awk -v t="$third" '
	NR > t && NR <= 2 * t && $1 > m {m = $1} NR > 2 * t && $1 > l {l = $1} END {print m + 0, l + 0}')
rss_what="$userspace RSS of the watched process(es) (kB, every 10 s): ${rss[*]}; highest of the middle third $rss_mid, of the last $rss_last"
if ((minutes >= 6)); then
	verdict $((third > 0 && rss_last <= rss_mid * 105 / 100 + 1024)) "$rss_what"
else
	printf '  SKIP  %s (not judged: a run of %d min ends before the heap has settled, ~5 min for wireguard-go; 6 min or more judges it)\n' \
		"$rss_what" "$minutes"
fi
verdict $((tool2 <= tool1 * 110 / 100 + 1024)) "peak RSS of one hub status: $tool1 kB after 1 min, $tool2 kB at the end"
check_ok=0
"$hub" -q check >"$work/check.json" && check_ok=1
verdict "$check_ok" "hub check at the end$( ((check_ok)) || jq -c '[.center.problems[], (.peers[] | select(.healthy | not) | {(.name): .problems})]' "$work/check.json")"
reach=0
for ((i = 1; i <= 10; i++)); do
	ip netns exec "${P}c$i" ping -q -c 2 -w 30 -I 192.168.1.10 100.64.0.10 >/dev/null && reach=$((reach + 1))
done
verdict $((reach == 10)) "clients configured at the start that still reach the center: $reach of 10"
echo "$passed passed, $failed failed"
((failed == 0))
