#!/usr/bin/env bash
# The Debian package, installed for real (tests/run.sh's `package` step; as root):
#   scripts/package.sh, then `dpkg -i`; the installed niransix-demo passes, run with the system's
#   PATH only (the tools in /usr/bin, the hub's files in /usr/share/niransix); `man -w` finds
#   every page; the completions are installed and the bash one completes through the installed
#   tool; the units are installed and not enabled. Then `dpkg -r` and `dpkg --purge` leave none
#   of the package's files, directories or unit links behind.
# A trap removes the package however the run ends. Refuses to run where a niransix package is
# already installed (it would remove it). Prints `N passed, N failed` last.
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

((EUID == 0)) || { echo "tests/package.sh: must run as root (dpkg -i)" >&2; exit 1; }
if dpkg-query -W -f='${Status}' niransix 2>/dev/null | grep -q 'installed'; then
  echo "tests/package.sh: a niransix package is installed on this machine, and this test" \
    "removes it when done; remove it first (dpkg -r niransix)" >&2
  exit 1
fi

passed=0 failed=0
check() { # check WHAT COMMAND...
  local what=$1
  shift
  if "$@"; then
    echo "PASS  $what"
    passed=$((passed + 1))
  else
    echo "FAIL  $what"
    failed=$((failed + 1))
  fi
}

installed=0
remove() {
  if ((installed)); then
    dpkg --purge niransix >/dev/null 2>&1 || echo "tests/package.sh: dpkg --purge niransix failed" >&2
    installed=0
  fi
}
trap remove EXIT
trap 'exit 130' INT TERM HUP

start=$SECONDS
deb=$(scripts/package.sh) || { echo "tests/package.sh: scripts/package.sh failed" >&2; exit 1; }
echo "== built $deb in $((SECONDS - start))s"
dpkg-deb -c "$deb" | awk '{print "   " $1, $6, $7, $8}'

# As a user installs it; with --path-include so that a machine whose dpkg config leaves out man
# pages (minimal images do) still installs ours, which the checks below need.
installed=1
dpkg --path-include='/usr/share/man/*' --path-include='/usr/share/doc/niransix/*' -i "$deb"
mapfile -t files < <(dpkg -L niransix)

owns() { printf '%s\n' "${files[@]}" | grep -qxF "$1"; }
for f in /usr/bin/nsctl /usr/bin/wgctl /usr/bin/wgd /usr/bin/natctl /usr/bin/routectl \
  /usr/bin/niransix-hub /usr/bin/niransix-demo /usr/share/niransix/hub /usr/share/niransix/lib.sh \
  /usr/lib/niransix/hubctl /usr/share/niransix/client /usr/share/niransix/demo \
  /usr/share/doc/niransix/copyright; do
  check "the package holds $f" owns "$f"
done
verified() { [[ -s /var/lib/dpkg/info/niransix.md5sums && -z $(dpkg --verify niransix) ]]; }
check "dpkg --verify: every installed file matches the package's md5sums" verified

# The system's PATH only, from /: nothing of the checkout can be found.
sys_env=(env -i PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin HOME=/root LANG=C.UTF-8)
echo "== niransix-demo (installed)"
check "the installed niransix-demo passes" bash -c 'cd / && "$@"' _ "${sys_env[@]}" niransix-demo -q

for page in nsctl wgctl wgd natctl routectl niransix-hub niransix-demo; do
  check "man -w $page: $(man -w "$page" 2>&1)" bash -c "man -w '$page' | grep -q '^/usr/share/man/man8/$page\.8\.gz$'"
done

completes() { # completes TOOL WORD EXPECTED: the installed bash completion, through the tool
  # shellcheck disable=SC2016 # expanded by the inner bash
  "${sys_env[@]}" bash -c '
    . /usr/share/bash-completion/completions/$1
    COMP_WORDS=("$1" "$2") COMP_CWORD=1 COMP_TYPE=9
    _clap_complete_$1 "$1" "$2" "$1"
    printf "%s\n" "${COMPREPLY[@]}"' _ "$1" "$2" | grep -qx "$3"
}
check "bash: nsctl net<TAB> completes netns" completes nsctl net netns
for t in nsctl wgctl natctl routectl; do
  check "completions for $t: bash, zsh, fish" test -s "/usr/share/bash-completion/completions/$t" \
    -a -s "/usr/share/zsh/vendor-completions/_$t" -a -s "/usr/share/fish/vendor_completions.d/$t.fish"
done

unit_links() { find /etc/systemd/system -lname '*/niransix-hub*' 2>/dev/null; }
for u in niransix-hub.service niransix-hub-repair.service niransix-hub-repair.timer; do
  check "unit $u installed" test -f "/lib/systemd/system/$u"
done
check "no unit enabled by the installation" test -z "$(unit_links)"

# The Ansible role against the installed package: given the .deb (niransix_package: installed
# already, so apt changes nothing), it finds /usr/bin/niransix-hub and builds a hub of two peers
# with the installed tools; a second run changes nothing; the hub goes down again.
if command -v ansible-playbook >/dev/null; then
  echo "== the niransix_hub role with the installed package"
  role_dir=$(mktemp -d /tmp/niransix-role.XXXXXX)
  cache_kept=0 # the role copies the .deb to /var/cache/niransix on the host: removed after, if new
  [[ ! -e /var/cache/niransix ]] || cache_kept=1
  role_env=(ANSIBLE_CONFIG="$repo/examples/ansible/ansible.cfg" ANSIBLE_HOME="$role_dir/ansible"
    ANSIBLE_LOCAL_TEMP="$role_dir/ansible/tmp" ANSIBLE_NOCOLOR=1)
  role_vars=$(printf '{"hub_ns":"pkhub","hub_prefix":"pk","hub_state_dir":"%s/state","hub_conf_path":"%s/hub.conf","hub_conf_dir":"%s/configs","hub_conf":{"HUB_ENDPOINT":"192.0.2.1"},"hub_peers":["k1","k2"],"niransix_package":"%s"}' \
    "$role_dir" "$role_dir" "$role_dir" "$deb")
  play_role() { # play_role: hub.yml with the role's variables; its PLAY RECAP line
    (cd / && "${sys_env[@]}" "${role_env[@]}" ansible-playbook -i "$repo/examples/ansible/inventory.ini" \
      "$repo/examples/ansible/hub.yml" -e "$role_vars") | grep '^localhost .*failed=0' || true
  }
  first=$(play_role)
  check "the role, with the package: the hub built (${first:-failed})" test -n "$first"
  check "... by the installed niransix-hub, with both peers" bash -c \
    "niransix-hub -q -c '$role_dir/hub.conf' status | jq -e '[.peers[].name] == [\"k1\",\"k2\"] and .healthy' >/dev/null"
  check "... and both client configs on the controller" test -s "$role_dir/configs/localhost/k1.conf" -a -s "$role_dir/configs/localhost/k2.conf"
  second=$(play_role)
  check "the role's second run changes nothing (${second:-failed})" grep -q 'changed=0' <<<"$second"
  niransix-hub -q -c "$role_dir/hub.conf" down >/dev/null || echo "tests/package.sh: hub down failed" >&2
  rm -rf "$role_dir"
  ((cache_kept)) || rm -rf /var/cache/niransix
else
  check "ansible-playbook is installed (for the role's test)" false
fi

echo "== dpkg -r niransix, dpkg --purge niransix"
dpkg -r niransix
left=()
for f in "${files[@]}"; do
  [[ -d $f ]] && continue # directories shared with other packages (/usr/bin, /lib ...)
  [[ -e $f || -L $f ]] && left+=("$f")
done
for d in /usr/share/niransix /usr/share/doc/niransix; do
  [[ -e $d ]] && left+=("$d")
done
check "dpkg -r leaves none of the package's files (${left[*]:-none left})" test "${#left[@]}" -eq 0
check "dpkg -r leaves no unit link" test -z "$(unit_links)"
dpkg --purge niransix
installed=0
check "dpkg --purge forgets the package" bash -c '! dpkg-query -W niransix >/dev/null 2>&1'

echo "package step: $((SECONDS - start))s"
echo "$passed passed, $failed failed"
((failed == 0))
