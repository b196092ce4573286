#!/usr/bin/env bash
# THE test command (CI runs it through .ci/run):   sudo tests/run.sh [--no-vm]
#
# Steps, in order; every step runs even if an earlier one failed, and the run exits non-zero if any
# step failed:
#   build      scripts/bootstrap.sh (installs missing Debian packages, cargo build --workspace)
#   fmt        cargo fmt --all --check
#   clippy     cargo clippy --workspace --all-targets -- -D warnings
#   lint-sh    shellcheck on every shell script in the repository
#   lint-ansible  ansible-playbook --syntax-check of examples/ansible's playbooks and ansible-lint
#              (Debian's, the production profile) of them and the niransix_hub role
#   test       cargo test --workspace --no-fail-fast (unit + integration, host kernel)
#   test-zones the hub suites (tests/tests/hub.rs, hub_clients.rs) again with NIRANSIX_HUB_MODE=zones: the same
#              tests against a hub whose peers are conntrack zones in the center (docs/hub.md)
#   test-wggo  wgctl's suite and the hub suites (hub.rs, hub_clients.rs: devices through their
#              peers, real traffic) again with NIRANSIX_WG_USERSPACE=wireguard-go, the userspace
#              implementation that is not the default (wgd, docs/wgctl.md) and that wgctl still
#              starts for whoever asks, one process per interface
#   test-bt    wgctl's suite and the hub's client suite again with NIRANSIX_WG_USERSPACE=boringtun,
#              the third implementation. Not the whole hub suite: its 500-peer test meets the
#              random port each boringtun-cli 0.7 keeps (docs/wgctl.md), and the run stays near
#              20 minutes
#   soak       bench/soak.sh --minutes 2 --peers 50: the hub under its repair timer, scrapes, churn
#              and breakage; nothing lost, leaked or accumulated (its assertions count as tests)
#   leakcheck  tests/leakcheck.sh --idle: nothing with the test prefix may be left behind, and no
#              wgd serving nothing
#   vm         tests/vm/run.sh: kernel WireGuard and VRF in a QEMU VM (skipped with --no-vm or
#              NIRANSIX_NO_VM=1; reported as skipped, never as passed). It starts before `test`
#              and runs beside the host steps, niced (its own kernel, nothing shared with them but
#              the CPUs, which the host suites leave two thirds idle); its log is shown, and its
#              result counted, after `leakcheck`
#   package-build  scripts/package.sh --build-only: the package's release build, in the
#              background beside `soak` (joined before `package`)
#   package    tests/package.sh: builds the Debian package, installs it, runs the installed demo
#              and `man -w`, removes it; nothing may be left (skipped, loudly, without dpkg)
# The last line is `N passed, N failed, N skipped` (tests, host and VM lanes together).
# Logs: target/test-logs/<step>.log; the VM lane's in target/vm-lane/.
#
# Environment: NIRANSIX_TEST_PREFIX=ny runs the suite with its own object prefix (default nx) so
# it does not touch another run's objects on a shared machine. An interrupted run (Ctrl-C, TERM)
# still kills its children and removes everything with the prefix.
set -uo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo" || exit 1

if ((EUID != 0)); then
  echo "tests/run.sh: must run as root (the tests build network namespaces, links and nftables" \
    "rules): sudo tests/run.sh" >&2
  exit 1
fi

vm=1
for arg in "$@"; do
  case $arg in
    --no-vm) vm=0 ;;
    -h|--help) sed -n '2,35p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "tests/run.sh: unknown argument '$arg' (usage: tests/run.sh [--no-vm])" >&2; exit 2 ;;
  esac
done
[[ ${NIRANSIX_NO_VM:-0} == 1 ]] && vm=0

# The hub's settings and the script's knobs (HUB_*, NX_*) left exported in the caller's shell
# would reach every hub the suites build and override theirs: the suites set what they need.
for v in $(compgen -v HUB_) $(compgen -v NX_); do
  echo "tests/run.sh: ignoring $v from the environment (the suites set the hub's settings)" >&2
  unset "$v"
done

prefix=${NIRANSIX_TEST_PREFIX:-nx}
logs=$repo/target/test-logs
mkdir -p "$logs"
skip_log=$logs/skipped.txt
: >"$skip_log"
export NIRANSIX_SKIP_LOG=$skip_log
export CARGO_TERM_COLOR=${CARGO_TERM_COLOR:-never}

kill_tree() {
  local c
  for c in $(pgrep -P "$1" 2>/dev/null); do kill_tree "$c"; done
  kill -TERM "$1" 2>/dev/null || true
}
cleanup() { tests/leakcheck.sh --clean "$prefix" >/dev/null 2>&1 || true; }
on_signal() {
  trap - INT TERM
  echo "tests/run.sh: interrupted; stopping children and removing everything with prefix '$prefix'" >&2
  for c in $(pgrep -P $$ 2>/dev/null); do kill_tree "$c"; done
  cleanup
  exit 130
}
trap on_signal INT TERM
trap cleanup EXIT

declare -a step_names=() step_status=() step_secs=()
failed_steps=0

# step NAME CMD...: runs CMD with output to the terminal and to target/test-logs/NAME.log.
step() {
  local name=$1 start rc
  shift
  printf '\n==== %s: %s\n' "$name" "$*"
  start=$SECONDS
  "$@" 2>&1 | tee "$logs/$name.log"
  rc=${PIPESTATUS[0]}
  step_done "$name" "$rc" $((SECONDS - start))
}

# step_done NAME RC SECS: the step's result, counted and printed.
step_done() {
  step_names+=("$1")
  step_secs+=("$3")
  if (($2 == 0)); then
    step_status+=(PASS)
  else
    step_status+=("FAIL (exit $2)")
    failed_steps=$((failed_steps + 1))
  fi
  printf '==== %s: %s in %ss\n' "$1" "${step_status[-1]}" "${step_secs[-1]}"
  return "$2"
}

# background_step NAME CMD...: CMD starts in the background at nice 10, its output to
# target/test-logs/NAME.log only; background_join NAME waits for it, then shows the log and its
# result as `step` would.
declare -A bg_pid=() bg_start=()
background_step() {
  local name=$1
  shift
  printf '\n==== %s (in the background, beside the steps below): %s\n' "$name" "$*"
  bg_start[$name]=$SECONDS
  nice -n 10 "$@" >"$logs/$name.log" 2>&1 &
  bg_pid[$name]=$!
}
background_join() {
  local name=$1 rc=0
  [[ -n ${bg_pid[$name]:-} ]] || return 0
  printf '\n==== %s: waiting for it (started %ss ago)\n' "$name" $((SECONDS - bg_start[$name]))
  wait "${bg_pid[$name]}" || rc=$?
  unset "bg_pid[$name]"
  cat "$logs/$name.log"
  step_done "$name" "$rc" $((SECONDS - bg_start[$name]))
}

skip_step() {
  step_names+=("$1"); step_status+=("SKIPPED ($2)"); step_secs+=(0)
  printf '\n==== %s: SKIPPED (%s)\n' "$1" "$2"
}

# The Ansible examples: syntax of each playbook with its inventory, then ansible-lint (its
# configuration, examples/ansible/.ansible-lint, sets the profile), run where ansible.cfg is.
lint_ansible() {
  (
    cd examples/ansible &&
      ANSIBLE_HOME=$repo/target/ansible-lint ansible-playbook --syntax-check -i inventory site.yml &&
      ANSIBLE_HOME=$repo/target/ansible-lint ansible-playbook --syntax-check -i inventory.ini hub.yml &&
      ANSIBLE_HOME=$repo/target/ansible-lint ansible-lint --offline hub.yml site.yml roles/niransix_hub
  )
}

build() { local bin; bin=$(scripts/bootstrap.sh) && echo "tools in $bin"; }

# Every shell script in the repository: *.sh, and files whose first line is a sh/bash shebang.
shell_scripts() {
  find . \( -path ./target -o -path ./.git \) -prune -o -type f -print | sort | while read -r f; do
    case $f in
      *.sh) echo "$f" ;;
      *) head -n1 "$f" 2>/dev/null | grep -qE '^#!.*[/ ](ba|da)?sh([[:space:]]|$)' && echo "$f" ;;
    esac
  done
}
run_shellcheck() {
  local files
  mapfile -t files < <(shell_scripts)
  echo "shellcheck on ${#files[@]} scripts: ${files[*]}"
  shellcheck "${files[@]}"
}

total_start=$SECONDS
cargo=$(scripts/bootstrap.sh --no-build --print-cargo) || exit 1
PATH="$(dirname "$cargo"):$PATH"
export PATH

step build build
step fmt cargo fmt --all --check
step clippy cargo clippy --workspace --all-targets -- -D warnings
step lint-sh run_shellcheck
step lint-ansible lint_ansible
if ((vm)); then
  # (the VM's own deadlines, 900 s and 420 s per item, are for a VM alone on the machine;
  # beside the host's suites on a machine half as fast, its items took 1,366 s in all, and
  # the wgctl suite alone 600-730 s)
  background_step vm env NIRANSIX_VM_TIMEOUT="${NIRANSIX_VM_TIMEOUT:-2400}" \
    NIRANSIX_VM_ITEM_TIMEOUT="${NIRANSIX_VM_ITEM_TIMEOUT:-1200}" tests/vm/run.sh
else
  skip_step vm "--no-vm / NIRANSIX_NO_VM=1"
fi
step test cargo test --workspace --no-fail-fast
step test-zones env NIRANSIX_HUB_MODE=zones cargo test -p niransix-tests --no-fail-fast --test hub --test hub_clients
step test-wggo env NIRANSIX_WG_USERSPACE=wireguard-go cargo test -p niransix-tests --no-fail-fast --test wgctl --test hub --test hub_clients
step test-bt env NIRANSIX_WG_USERSPACE=boringtun cargo test -p niransix-tests --no-fail-fast --test wgctl --test hub_clients
has_dpkg=0
command -v dpkg >/dev/null && command -v dpkg-deb >/dev/null && has_dpkg=1
# (the package's release build, beside the soak, which leaves the CPUs nine tenths idle)
((!has_dpkg)) || background_step package-build scripts/package.sh --build-only
step soak bench/soak.sh --minutes 2 --peers 50
step leakcheck tests/leakcheck.sh --idle "$prefix"
background_join vm
if ((has_dpkg)); then
  background_join package-build
  step package tests/package.sh
else
  skip_step package "dpkg not found: not a Debian system, the .deb can be neither built nor installed"
fi

# Totals: cargo's `test result:` lines; tests that called niransix_tests::skip are moved from
# passed to skipped; plus the VM lane's own summary.
read -r passed failed < <(grep -h '^test result:' "$logs/test.log" "$logs/test-zones.log" "$logs/test-wggo.log" "$logs/test-bt.log" 2>/dev/null |
  awk '{for (i = 1; i <= NF; i++) { if ($(i) ~ /^passed/) p += $(i-1); if ($(i) ~ /^failed/) f += $(i-1) }}
       END {print p + 0, f + 0}')
read -r soak_passed soak_failed < <(awk '/^[0-9]+ passed, [0-9]+ failed$/ {p = $1; f = $3} END {print p + 0, f + 0}' \
  "$logs/soak.log" 2>/dev/null || echo 0 0)
passed=$((passed + soak_passed)) failed=$((failed + soak_failed))
skipped=$(sort -u "$skip_log" | grep -c . || true)
passed=$((passed - skipped))
vm_summary=$repo/target/vm-lane/summary
if ((vm)) && [[ -f $vm_summary ]]; then
  vm_passed=0 vm_failed=0 vm_skipped=0
  # shellcheck source=/dev/null
  . "$vm_summary"
  passed=$((passed + vm_passed)); failed=$((failed + vm_failed)); skipped=$((skipped + vm_skipped))
fi

printf '\n==== summary (%ss)\n' $((SECONDS - total_start))
for i in "${!step_names[@]}"; do
  printf '  %-11s %-28s %5ss  log: target/test-logs/%s.log\n' "${step_names[$i]}" \
    "${step_status[$i]}" "${step_secs[$i]}" "${step_names[$i]}"
done
if ((skipped)) && [[ -s $skip_log ]]; then
  echo "  skipped on the host kernel:"
  sort -u "$skip_log" | sed 's/	/: /; s/^/    /'
fi
if ((failed_steps)); then
  echo "  FAILED steps: $failed_steps — see the logs above"
fi
echo "$passed passed, $failed failed, $skipped skipped"
((failed_steps == 0))
