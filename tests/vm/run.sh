#!/usr/bin/env bash
# Kernel VM lane:   sudo tests/vm/run.sh [--no-build] [--only ITEM]...
#   --no-build   use the tools and test binaries already in target/debug (no cargo); quick iteration
#   --only ITEM  run only this plan item (repeatable), e.g. --only vrf_scenario
#
# What this machine's kernel lacks (WireGuard, VRF) is tested on a stock Debian kernel booted ONCE
# with virtme-ng under QEMU. The guest shares the host's root filesystem read-only; the repository
# is a copy-on-write overlay inside (writes vanish) and target/vm-lane/ is shared read-write for
# the results. Inside, tests/vm/inside.sh runs the plan below with NIRANSIX_VM=1, so the tests
# REQUIRE kernel WireGuard/VRF there instead of skipping.
#
# Plan (see PLAN below):
#   vrf_scenario   tests/tests/vrf_scenario.rs: the overlapping-networks scenario with real VRFs
#   routectl       routectl's real-VRF test (vrf_add_enslave_list_del)
#   wgctl[kernel]  the wgctl integration suite, NIRANSIX_WG_BACKEND=kernel (not the tests of
#                  wireguard-go's listeners and of both userspace implementations: timing under
#                  emulation, and the host lane runs them)
#   demo[kernel]   niransix-sh/demo with kernel WireGuard
#   wgctl[auto]    the wgctl tests that matter for backend choice, NIRANSIX_WG_BACKEND=auto
#   nsctl          dummy and vlan links, which the host's kernel lacks
#   wgd[6.1]       wgd's merged writes and large reads on a kernel older than 6.2 (TCP merged
#                  both ways, UDP not), which the host's kernel is not
#   natctl[6.1]    natctl's sets and maps, the rules over them, and a map of an older natctl completed, on a kernel older than 6.4
#                  (it refuses a map looked up for its keys alone), which the host's kernel is not
# and, only when named (--only hub_scale[kernel]), bench/hub_scale.sh with kernel WireGuard.
# plus kernel::wireguard / kernel::vrf / kernel::tun (the modules load) and a leak check after
# every item.
#
# If the packages, the kernel image or the boot fail, the lane says why and reports every planned
# test as SKIPPED by name (exit 0); NIRANSIX_VM_REQUIRED=1 turns that into a failure.
# Output: target/vm-lane/{console.log (kernel console), inside.log (test output), results.tsv,
# summary}; the last line is `VM lane: N passed, N failed, N skipped`.
#
# Environment: NIRANSIX_VM_KERNEL=/boot/vmlinuz-X (default: newest /boot/vmlinuz-* whose modules
# include wireguard and vrf), NIRANSIX_VM_TIMEOUT (seconds for the whole VM, default 900),
# NIRANSIX_VM_ITEM_TIMEOUT (seconds per plan item, default 420),
# NIRANSIX_VM_KVM=1 (use KVM; default is --disable-kvm, which this machine needs).
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
cd "$repo" || exit 1
out=$repo/target/vm-lane
vng_venv=/opt/virtme-ng
timeout_s=${NIRANSIX_VM_TIMEOUT:-900}

# item | test (a tests/tests/<target>.rs) or script | target or path | environment | test filters
# (libtest arguments: names to run, --skip NAME). Most important first: a timeout hits the last.
PLAN=(
  "vrf_scenario|test|vrf_scenario||"
  "routectl|test|routectl||vrf_add_enslave_list_del"
  "wgctl[kernel]|test|wgctl|NIRANSIX_WG_BACKEND=kernel|--skip keys_like_wg --skip userspace_listener_hears_only_its_own_link --skip both_userspace_implementations_in_one_tunnel"
  "demo[kernel]|script|niransix-sh/demo|NIRANSIX_WG_BACKEND=kernel|"
  "demo[kernel,zones]|script|niransix-sh/demo|NIRANSIX_WG_BACKEND=kernel HUB_MODE=zones|"
  "wgctl[auto]|test|wgctl|NIRANSIX_WG_BACKEND=auto|settings_listing"
  "nsctl|test|nsctl||dummy_and_vlan_add_like_ip_link_add link_list_shows_operstate_carrier_mac_and_veth_peers_like_ip"
  "wgd[6.1]|test|wgd||a_bulk_transfer_arrives_whole_and_merged_into_fewer_writes what_leaves_whole_is_read_whole_and_split_by_wgd"
  "natctl[6.1]|test|natctl||sets_and_maps filter_by_a_set maps_give rules_over_sets connmark_over_maps a_batchs_elements a_map_an_older_natctl_made a_saved_ruleset"
)
# Items run only when named with --only (not part of CI): the hub benchmark with kernel
# WireGuard, whose figures under emulation are ratios only.
ON_REQUEST=(
  "hub_scale[kernel]|script|bench/hub_scale.sh|HUB_SCALE_SIZES=10,50 REPEAT=3 BASELINE_N=10 BASELINE_AT=3|"
)

log() { printf 'vm-lane: %s\n' "$*"; }

nobuild=0
declare -A only=()
while (($#)); do
  case $1 in
    --no-build) nobuild=1 ;;
    --only) [[ -n ${2:-} ]] || { echo "tests/vm/run.sh: --only needs an item" >&2; exit 2; }
      only[$2]=1; shift ;;
    -h|--help) sed -n '2,30p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tests/vm/run.sh: unknown argument '$1' (usage: tests/vm/run.sh [--no-build] [--only ITEM]...)" >&2
      exit 2 ;;
  esac
  shift
done

if ((EUID != 0)); then
  echo "tests/vm/run.sh: must run as root (sudo tests/vm/run.sh)" >&2
  exit 1
fi

rm -rf "$out"
mkdir -p "$out"
: >"$out/expected.txt"
: >"$out/results.tsv"
: >"$out/plan.txt"
start=$SECONDS

# finish: prints every result and the totals, writes target/vm-lane/summary, exits.
# Expected tests without a result are SKIPPED with $1 as the reason when the VM never ran them
# (no boot), FAILED otherwise (the VM died or timed out part-way).
finish() {
  local missing_as=$1 reason=$2 status name
  while read -r name; do
    cut -f2 "$out/results.tsv" | grep -qxF -- "$name" && continue
    printf '%s\t%s\t%s\n' "$missing_as" "$name" "$reason" >>"$out/results.tsv"
  done <"$out/expected.txt"
  local p f s
  p=$(grep -c '^PASS' "$out/results.tsv")
  f=$(grep -c '^FAIL' "$out/results.tsv")
  s=$(grep -c '^SKIP' "$out/results.tsv")
  echo
  echo "==== VM lane results ($((SECONDS - start))s)"
  while IFS=$'\t' read -r status name reason; do
    printf '  %-4s %s%s\n' "$status" "$name" "${reason:+  ($reason)}"
  done <"$out/results.tsv"
  printf 'vm_passed=%d\nvm_failed=%d\nvm_skipped=%d\n' "$p" "$f" "$s" >"$out/summary"
  if ((f)) || { ((s)) && [[ ${NIRANSIX_VM_REQUIRED:-0} == 1 ]]; }; then
    if [[ -s $out/console.log ]]; then
      echo "---- last 40 lines of the kernel console (target/vm-lane/console.log)"
      tail -n 40 "$out/console.log"
    fi
    echo "VM lane: $p passed, $f failed, $s skipped"
    exit 1
  fi
  echo "VM lane: $p passed, $f failed, $s skipped"
  exit 0
}
# skip_all REASON: nothing could run; every planned test is SKIPPED by name.
skip_all() {
  log "SKIPPING the kernel VM lane: $1"
  finish SKIP "$1"
}

# 1. packages, virtme-ng, the tools and the test binaries
declare -A exe=()
if ((nobuild)); then
  log "bootstrap (VM packages, virtme-ng; no build)"
  bin=$(scripts/bootstrap.sh --vm --no-build) || { bin=; bootstrap_failed=1; }
  # The newest build of each integration test target.
  while read -r _ f; do
    [[ $f =~ ^([a-z_]+)-[0-9a-f]{16}$ && -x $repo/target/debug/deps/$f ]] || continue
    name=${BASH_REMATCH[1]}
    # an integration test target, not a crate's unit tests of the same name: its dep-info says so
    grep -qs "tests/tests/$name.rs" "$repo/target/debug/deps/$f.d" || continue
    [[ -n ${exe[$name]:-} ]] || exe[$name]=$repo/target/debug/deps/$f
  done < <(find "$repo/target/debug/deps" -maxdepth 1 -type f -printf '%T@ %f\n' 2>/dev/null | sort -rn)
else
  log "bootstrap (VM packages, virtme-ng, build)"
  bin=$(scripts/bootstrap.sh --vm) || { bin=; bootstrap_failed=1; }
  cargo=$(scripts/bootstrap.sh --no-build --print-cargo 2>/dev/null) || cargo=
  # The expected test names come from the host build (`--list`), so they can be reported as
  # skipped by name even when the VM never boots.
  if [[ -n $cargo ]]; then
    log "building the test binaries (cargo test --workspace --no-run)"
    while IFS=$'\t' read -r name path; do exe[$name]=$path; done < <(
      "$cargo" test --workspace --no-run --message-format=json 2>"$out/build.log" |
        jq -r 'select(.reason == "compiler-artifact" and .profile.test and .target.kind == ["test"])
               | "\(.target.name)\t\(.executable)"')
  fi
fi
# Snapshot the binaries the VM runs, without debug info: a cargo build on the host replacing one
# while the VM reads it over 9p makes the guest's loader crash on the half-old file, and inside.sh
# copies them into the guest's RAM, since faulting in a 60 MB debug binary page by page over 9p
# under emulation takes seconds per command.
mkdir -p "$out/bin/tests"
snapshot() { strip --strip-debug -o "$2" "$1" 2>/dev/null || cp "$1" "$2"; }
if [[ -n $bin ]]; then
  for t in nsctl wgctl wgd natctl routectl hubctl; do snapshot "$bin/$t" "$out/bin/$t" || bootstrap_failed=1; done
  bin=$out/bin
fi
printf 'kernel::%s\n' wireguard vrf tun >>"$out/expected.txt"
entries=("${PLAN[@]}")
for entry in "${ON_REQUEST[@]}"; do
  [[ -z ${only[${entry%%|*}]:-} ]] || entries+=("$entry")
done
for entry in "${entries[@]}"; do
  IFS='|' read -r item kind what env args <<<"$entry"
  read -r -a filters <<<"$args"
  ((${#only[@]} == 0)) || [[ -n ${only[$item]:-} ]] || continue
  if [[ $kind == test ]]; then
    path=${exe[$what]:-}
    if [[ -z $path || ! -x $path ]]; then
      printf 'SKIP\t%s\t%s\n' "$item" "no test target '$what' (tests/tests/$what.rs) in this build" \
        >>"$out/results.tsv"
      continue
    fi
    if [[ ! -x $out/bin/tests/$what ]]; then
      snapshot "$path" "$out/bin/tests/$what" || { echo "cannot copy $path" >&2; exit 1; }
    fi
    path=$out/bin/tests/$what
    "$path" --list --format terse "${filters[@]}" 2>/dev/null | sed -n 's/: test$//p' |
      sed "s/^/$item::/" >>"$out/expected.txt"
  else
    path=$repo/$what
    if [[ ! -x $path ]]; then
      printf 'SKIP\t%s\t%s\n' "$item" "$what does not exist yet" >>"$out/results.tsv"
      continue
    fi
    echo "$item" >>"$out/expected.txt"
    [[ $env == *NIRANSIX_WG_BACKEND=kernel* ]] && echo "$item::kernel-wireguard" >>"$out/expected.txt"
  fi
  echo "$item::leakcheck" >>"$out/expected.txt"
  printf '%s|%s|%s|%s|%s\n' "$item" "$kind" "$path" "$env" "$args" >>"$out/plan.txt"
done

[[ -z ${bootstrap_failed:-} && -n $bin ]] || skip_all "scripts/bootstrap.sh --vm failed (see above)"

# 2. the kernel: one with wireguard and vrf modules
has_modules() {
  local ver=$1
  [[ -n $(find "/lib/modules/$ver" -name 'wireguard.ko*' -print -quit 2>/dev/null) &&
     -n $(find "/lib/modules/$ver" -name 'vrf.ko*' -print -quit 2>/dev/null) ]]
}
kernel=${NIRANSIX_VM_KERNEL:-}
if [[ -z $kernel ]]; then
  for k in $(printf '%s\n' /boot/vmlinuz-* | sort -rV); do
    has_modules "${k#/boot/vmlinuz-}" && { kernel=$k; break; }
  done
fi
[[ -n $kernel && -r $kernel ]] ||
  skip_all "no kernel image with wireguard and vrf modules in /boot (apt-get install linux-image-amd64)"
ver=${kernel#/boot/vmlinuz-}
has_modules "$ver" || skip_all "$kernel: /lib/modules/$ver lacks wireguard.ko or vrf.ko"
log "kernel $kernel"

# 3. boot once and run tests/vm/inside.sh
kvm=(--disable-kvm)
[[ ${NIRANSIX_VM_KVM:-0} == 1 ]] && kvm=()
guest_env="NIRANSIX_VM=1 NIRANSIX_VM_OUT=$out RUST_BACKTRACE=1"
guest_env+=" NIRANSIX_VM_ITEM_TIMEOUT=${NIRANSIX_VM_ITEM_TIMEOUT:-420}"
guest_env+=" NIRANSIX_TEST_PREFIX=${NIRANSIX_TEST_PREFIX:-nx}"
log "booting (software emulation, ~30 s) with timeout ${timeout_s}s; console: target/vm-lane/console.log"
PATH=$vng_venv/bin:$PATH timeout --kill-after=10 "$timeout_s" \
  vng --run "$kernel" --user root "${kvm[@]}" --memory 2G --cpus 2 --verbose \
  --overlay-rwdir "$repo" --rwdir "$out" --cwd "$repo" \
  -- "cp tests/vm/inside.sh tests/vm/libtest.jq /run/ && env $guest_env bash /run/inside.sh" \
  </dev/null 2>"$out/console.log" | tee "$out/inside.log"
rc=${PIPESTATUS[0]}
log "VM exited with status $rc after $((SECONDS - start))s"

if [[ ! -f $out/booted ]]; then
  tail -n 20 "$out/console.log"
  skip_all "the VM did not boot or did not start tests/vm/inside.sh (vng exit $rc; console in target/vm-lane/console.log)"
fi
if [[ ! -f $out/done ]]; then
  why="the VM stopped before the plan finished (exit $rc"
  ((rc == 124)) && why+=", timeout after ${timeout_s}s"
  finish FAIL "$why)"
fi
finish FAIL "not reported by the VM"
