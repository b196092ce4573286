#!/usr/bin/env bash
# After the suite: nothing carrying the test prefix may remain on the machine.
# Exit 1 (and say what) if anything does.
set -euo pipefail
prefix=${1:-nx}
left=()
while read -r n _; do [[ $n == "$prefix"* ]] && left+=("netns $n"); done < <(ip netns list)
while read -r l; do [[ $l == "$prefix"* ]] && left+=("link $l"); done < <(ip -o link show | awk -F': ' '{print $2}' | cut -d@ -f1)
while read -r p; do left+=("wireguard-go process $p"); done < <(pgrep -af "^wireguard-go $prefix" || true)
for s in /var/run/wireguard/"$prefix"*.sock; do [[ -e $s ]] && left+=("socket $s"); done
if ((${#left[@]})); then
  printf 'leakcheck: left behind: %s\n' "${left[@]}" >&2
  exit 1
fi
echo "leakcheck: nothing with prefix '$prefix' left behind"
