#!/usr/bin/env bash
# After the suite: nothing carrying the test prefix may remain on the machine.
# Exit 1 (and say what) if anything does.
#   tests/leakcheck.sh [PREFIX]           check only (default prefix: nx)
#   tests/leakcheck.sh --clean [PREFIX]   first remove everything with the prefix (processes in
#                                         its namespaces, namespaces, root links, wireguard-go/boringtun,
#                                         UAPI sockets, which wgd's interfaces go with), then check;
#                                         used by tests/run.sh's trap
#   tests/leakcheck.sh --idle [PREFIX]    also: no wgd may run while no userspace interface is
#                                         left at all (it leaves with its last); only where nothing
#                                         else runs (tests/run.sh's leakcheck step), since a wgd
#                                         another test just started waits for its first interface
set -euo pipefail
clean=0 idle=0
if [[ ${1:-} == --clean ]]; then clean=1; shift; fi
if [[ ${1:-} == --idle ]]; then idle=1; shift; fi
prefix=${1:-nx}
[[ -n $prefix ]] || { echo "leakcheck: empty prefix" >&2; exit 2; }

netns_list() { ip netns list | awk '{print $1}' | { grep "^$prefix" || true; }; }
link_list() { ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | { grep "^$prefix" || true; }; }

if ((clean)); then
  while read -r n; do
    [[ -n $n ]] || continue
    ip netns pids "$n" 2>/dev/null | xargs -r kill -9 2>/dev/null || true
    ip netns del "$n" 2>/dev/null || true
  done < <(netns_list)
  while read -r l; do [[ -n $l ]] && { ip link del "$l" 2>/dev/null || true; }; done < <(link_list)
  for pid in $(pgrep -f "^boringtun-cli .* $prefix" || true); do
    n=$(tr '\0' ' ' <"/proc/$pid/cmdline" | sed -n 's/.*--tun-fd \([0-9]*\) .*/\1/p')
    [[ -n $n ]] && rm -f "/var/run/wireguard/$n.sock"
  done
  pkill -9 -f "^(wireguard-go|boringtun-cli .*) $prefix" 2>/dev/null || true
  sleep 0.1
  rm -f /var/run/wireguard/"$prefix"*.sock
fi

left=()
while read -r n; do [[ -n $n ]] && left+=("netns $n"); done < <(netns_list)
while read -r l; do [[ -n $l ]] && left+=("link $l"); done < <(link_list)
while read -r p; do left+=("userspace WireGuard process $p"); done < <(pgrep -af "^(wireguard-go|boringtun-cli .*) $prefix" || true)
for s in /var/run/wireguard/"$prefix"*.sock; do [[ -e $s ]] && left+=("socket $s"); done
# wgd serves every userspace interface and leaves after its last one (a wgd that never got one,
# 10 s after its start): one still running with no UAPI socket left at all is a leak.
if ((idle)) && pgrep -x wgd >/dev/null && ! compgen -G '/var/run/wireguard/*.sock' >/dev/null; then
  for _ in $(seq 1 24); do pgrep -x wgd >/dev/null || break; sleep 0.5; done
  while read -r p; do
    [[ $(awk '{sub(/^.*\) /, ""); print $1}' "/proc/${p%% *}/stat" 2>/dev/null) == Z ]] ||
      left+=("wgd serving nothing: $p")
  done < <(pgrep -ax wgd || true)
fi
if ((${#left[@]})); then
  printf 'leakcheck: left behind: %s\n' "${left[@]}" >&2
  exit 1
fi
echo "leakcheck: nothing with prefix '$prefix' left behind"
