#!/usr/bin/env bash
# nsctl batch mode vs the batched-`ip` floor (../shared/bench/floor_hub.sh), same run, same N.
#
# Builds floor_hub.sh's topology without WireGuard: a center namespace with bridge br-internal,
# and per client a namespace, a veth into the bridge (peer in the client, up) and an address —
# all from ONE `nsctl -b FILE`. The floor's per-client `nft -f` masquerade is natctl's job; when
# a working natctl is built next to nsctl, its rules are added with one `natctl -b FILE` per run
# and the comparison is like for like; otherwise the floor is also timed without its nft step.
#
# Usage: bench/nsctl_floor.sh [N]      (default 200; needs root; uses target/release binaries)
set -euo pipefail
N=${1:-200}
here=$(cd "$(dirname "$0")" && pwd)
root=$(dirname "$here")
floor=${FLOOR:-$root/../shared/bench/floor_hub.sh}
[[ -f $floor ]] || floor=/work/shared/bench/floor_hub.sh
bin=${NIRANSIX_BIN_DIR:-$root/target/release}
nsctl=$bin/nsctl
natctl=$bin/natctl
[[ -x $nsctl ]] || { echo "build first: cargo build --release -p nsctl" >&2; exit 1; }
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

now() { date +%s.%N; }
declare -A best
keep_best() {
  if [[ -z ${best[$1]:-} ]] || awk -v a="$2" -v b="${best[$1]}" 'BEGIN { exit !(a < b) }'; then
    best[$1]=$2
  fi
}
secs() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.3f", b - a }'; }

# natctl is used only if it builds and works here (it is developed alongside).
use_nat=0
if [[ -x $natctl ]] && "$natctl" --version >/dev/null 2>&1; then use_nat=1; fi

nsctl_up() {
  local f=$work/up i a c
  {
    echo "netns add nb-center"
    echo "--ns nb-center link set lo --up"
    echo "--ns nb-center bridge add br-internal --up"
    for ((i = 1; i <= N; i++)); do
      a=$((i / 250)) c=$((i % 250 + 2))
      echo "netns add nb-c$i"
      echo "--ns nb-center veth add eth-nb-$i-A --peer eth-nb-$i-B --peer-ns nb-c$i --master br-internal --up"
      echo "--ns nb-c$i link set lo --up"
      echo "--ns nb-c$i addr add 100.64.$a.$c/16 --dev eth-nb-$i-B"
    done
  } >"$f"
  local t0 t1
  t0=$(now)
  "$nsctl" -b "$f" >/dev/null
  t1=$(now)
  keep_best nsonly "$(secs "$t0" "$t1")"
  if ((use_nat)); then
    for ((i = 1; i <= N; i++)); do echo "--ns nb-c$i masquerade --oif eth-nb-$i-B"; done >"$work/nat"
    "$natctl" -b "$work/nat" >/dev/null
  fi
}

nsctl_down() {
  local i
  { for ((i = 1; i <= N; i++)); do echo "netns del nb-c$i"; done; echo "netns del nb-center"; } >"$work/down"
  "$nsctl" -b "$work/down" >/dev/null
}

# Sanity: what nsctl built is what the floor builds.
verify() {
  local ports addr
  ports=$(ip -n nb-center -o link show master br-internal | grep -c 'state UP' || true)
  addr=$(ip -n "nb-c$N" -o -4 addr show dev "eth-nb-$N-B" | awk '{print $4}')
  [[ $ports == "$N" ]] || { echo "verify: $ports of $N bridge ports up" >&2; exit 1; }
  [[ $addr == "100.64.$((N / 250)).$((N % 250 + 2))/16" ]] || { echo "verify: c$N has '$addr'" >&2; exit 1; }
  ip netns exec "nb-c$N" ping -c1 -W2 100.64.0.3 >/dev/null || { echo "verify: c$N cannot reach c1" >&2; exit 1; }
  if ((use_nat)); then
    ip netns exec "nb-c$N" nft list ruleset | grep -q "oifname \"eth-nb-$N-B\" .*masquerade" ||
      { echo "verify: no masquerade rule in c$N" >&2; exit 1; }
  fi
}

# Deleted namespaces are freed by a kernel worker after `netns del` returns; let that finish so
# it does not slow down whichever phase runs next.
settle() {
  local prev=-1 cur tries=0
  while ((tries++ < 60)); do
    cur=$(awk '$1 == "net_namespace" { print $2 }' /proc/slabinfo 2>/dev/null || echo 0)
    [[ $cur == "$prev" ]] && break
    prev=$cur
    sleep 0.5
  done
}

# time_phase NAME CMD...: runs CMD, keeps the best wall-clock seconds of the rounds in best[NAME].
time_phase() {
  local name=$1 t0 t1
  shift
  settle
  t0=$(now)
  "$@"
  t1=$(now)
  keep_best "$name" "$(secs "$t0" "$t1")"
}

sed '/nft -f/d' "$floor" >"$work/floor_nonat.sh"
floor_up() { bash "$floor" up "$N"; }
nonat_up() { bash "$work/floor_nonat.sh" up "$N"; }
clean() { bash "$floor" down "$N"; nsctl_down; }
trap 'clean >/dev/null 2>&1 || true; rm -rf "$work"' EXIT

clean
rounds=${ROUNDS:-3}
for ((r = 1; r <= rounds; r++)); do
  # Alternate the order so neither side always runs on a machine warmed (or loaded) by the other.
  if ((r % 2)); then
    time_phase nsctl nsctl_up; verify; clean
    time_phase floor floor_up; clean
    time_phase nonat nonat_up; clean
  else
    time_phase nonat nonat_up; clean
    time_phase floor floor_up; clean
    time_phase nsctl nsctl_up; verify; clean
  fi
done

floor_s=${best[floor]} nonat_s=${best[nonat]} ns_s=${best[nsctl]}
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.2f", a / b }'; }
echo "N=$N clients, best of $rounds rounds (wall clock)"
echo "floor_hub.sh (ip -batch + nft -f per client):   ${floor_s} s"
echo "floor_hub.sh without its nft step:               ${nonat_s} s"
if ((use_nat)); then
  echo "nsctl -b + natctl -b (one batch each):           ${ns_s} s"
  echo "  of which nsctl -b:                             ${best[nsonly]} s"
  echo "ratio nsctl+natctl / floor:                      $(ratio "$ns_s" "$floor_s")x"
  echo "ratio nsctl alone / floor without nft:           $(ratio "${best[nsonly]}" "$nonat_s")x"
else
  echo "nsctl -b (one batch, no NAT: natctl not usable): ${ns_s} s"
  echo "ratio nsctl / floor:                             $(ratio "$ns_s" "$floor_s")x"
  echo "ratio nsctl / floor without nft (like for like): $(ratio "$ns_s" "$nonat_s")x"
fi
