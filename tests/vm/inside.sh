#!/usr/bin/env bash
# Runs INSIDE the kernel VM (started by tests/vm/run.sh; do not run it on the host).
# Loads wireguard and vrf, then runs every item of $NIRANSIX_VM_OUT/plan.txt
# (ITEM|test or script|PATH|ENV|TEST-FILTERS), recording one line per test in
# $NIRANSIX_VM_OUT/results.tsv: PASS|FAIL<TAB>ITEM::test<TAB>reason. After every item, everything
# with the test prefix must be gone (ITEM::leakcheck).
set -uo pipefail

out=${NIRANSIX_VM_OUT:?set by tests/vm/run.sh}
prefix=${NIRANSIX_TEST_PREFIX:-nx}
item_timeout=${NIRANSIX_VM_ITEM_TIMEOUT:-420}
[[ ${NIRANSIX_VM:-} == 1 ]] || { echo "inside.sh: only inside the VM lane (NIRANSIX_VM=1)" >&2; exit 2; }
# run.sh starts a copy in /run (bash reads scripts as it goes; the host's file may change)
repo=$(dirname "$(dirname "$out")")
cd "$repo" || exit 2

uname -r >"$out/booted"
echo "inside the VM: kernel $(uname -r), $(nproc) CPUs, $(awk '/MemTotal/ {print $2 " kB"}' /proc/meminfo)"

# The binaries, from the host's snapshot into RAM (see run.sh); the tests find the tools there.
ram_bin=/run/nx-vm-bin
cp -a "$out/bin" "$ram_bin" || { echo "inside.sh: cannot copy $out/bin to $ram_bin" >&2; exit 2; }
export NIRANSIX_BIN_DIR=$ram_bin

result() { printf '%s\t%s\t%s\n' "$1" "$2" "${3:-}" >>"$out/results.tsv"; }

for m in wireguard vrf tun; do
  if modprobe "$m"; then result PASS "kernel::$m"; else result FAIL "kernel::$m" "modprobe $m failed"; fi
done

while IFS='|' read -r item kind path env args; do
  echo
  echo "==== $item: $path${env:+ ($env)}${args:+ $args}"
  t0=$SECONDS
  log=$out/$(tr -c 'A-Za-z0-9_.\n-' _ <<<"$item").log
  read -r -a envs <<<"$env"
  read -r -a filters <<<"$args"
  [[ $path == "$out/bin/"* ]] && path=$ram_bin/${path#"$out/bin/"}
  if [[ $kind == test ]]; then
    # libtest's JSON events (unstable, hence RUSTC_BOOTSTRAP): each test's result, duration and,
    # for a failure, its output as soon as it finishes (a timeout cannot swallow it).
    env "${envs[@]}" RUSTC_BOOTSTRAP=1 timeout --kill-after=5 "$item_timeout" \
      "$path" "${filters[@]}" -Z unstable-options --format json --report-time 2>&1 |
      tee "$log.json" | jq -R -r --unbuffered -f /run/libtest.jq | tee "$log"
    rc=${PIPESTATUS[0]}
    jq -R -r 'fromjson? | select(.type == "test" and (.event | IN("ok", "failed", "ignored")))
              | [.event, .name] | @tsv' "$log.json" |
      while IFS=$'\t' read -r st name; do
        case $st in
          ok) result PASS "$item::$name" ;;
          failed) result FAIL "$item::$name" "see target/vm-lane/$(basename "$log")" ;;
          ignored) result FAIL "$item::$name" "#[ignore] is not allowed" ;;
        esac
      done
    if ((rc != 0)) && ! grep -q '"type": *"suite", *"event": *"\(ok\|failed\)"' "$log.json"; then
      why="exit $rc"; ((rc == 124)) && why="timeout after ${item_timeout}s"
      result FAIL "$item" "test binary did not finish ($why)"
    fi
  else
    # With kernel WireGuard wanted, no userspace implementation may run meanwhile.
    : >"$log.wggo"
    (while :; do pgrep -a -x 'wireguard-go|wgd|boringtun-cli' >>"$log.wggo"; sleep 0.5; done) &
    watcher=$!
    env "${envs[@]}" timeout --kill-after=5 "$item_timeout" "$path" 2>&1 | tee "$log"
    rc=${PIPESTATUS[0]}
    kill "$watcher" 2>/dev/null; wait "$watcher" 2>/dev/null
    if ((rc == 0)); then result PASS "$item"; else result FAIL "$item" "exit $rc"; fi
    if [[ $env == *NIRANSIX_WG_BACKEND=kernel* ]]; then
      if [[ -s $log.wggo ]]; then
        result FAIL "$item::kernel-wireguard" "userspace WireGuard ran: $(sort -u "$log.wggo" | head -3 | tr '\n' ' ')"
      else
        result PASS "$item::kernel-wireguard"
      fi
    fi
  fi
  if leak=$(bash tests/leakcheck.sh "$prefix" 2>&1); then
    result PASS "$item::leakcheck"
  else
    result FAIL "$item::leakcheck" "$(tr '\n' ' ' <<<"$leak")"
    bash tests/leakcheck.sh --clean "$prefix" >/dev/null 2>&1
  fi
  echo "==== $item: exit $rc in $((SECONDS - t0))s"
done <"$out/plan.txt"

touch "$out/done"
