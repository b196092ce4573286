#!/usr/bin/env bash
# Many hubs from one inventory, timed: examples/ansible/site.yml (the niransix_hub role) against
# four hubs on this machine, two regions each a pair (primary and standby, as
# tests/tests/ansible_site.rs builds them), every hub an inventory host with
# ansible_connection=local. For each size S (peers per hub; default 10 and 250, so 250 makes
# 1,000 peers over the 4 hubs) the script prints:
#   first      the first run: hub.conf, every peer of every hub, every client config
#   no-op      a run that changes nothing (the goal: at most 60 s at 1,000 peers)
#   check      the same in check mode
#   +1 peer    one peer added to one region (its pair) and its config delivered, end to end
#              (the goal: at most 30 s)
# and where the time of the first and of the no-op run goes: each task's time summed over the
# hosts (Ansible's junit callback: the task on the host, module start and transfer included; the
# sync task of the first run is the hub building its peers), against what the no-op run's hub
# commands cost run directly (the hub's own share; the rest is Ansible's).
#
#   bench/ansible_fleet.sh [S...]       REPEAT=3 (no-op runs, median)
#
# Needs root, ansible-core. Raises fs.inotify.max_user_instances for the run (a wireguard-go per
# peer holds an instance) and restores it on exit. Builds only objects carrying its prefix (af...)
# and removes them after; uses target/release when all the tools are built there.
set -euo pipefail
sizes=("$@")
((${#sizes[@]})) || sizes=(10 250)
REPEAT=${REPEAT:-3}
here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
repo=${here%/bench}
# shellcheck source-path=SCRIPTDIR source=lib.sh
. "$here/lib.sh"
bench_tools "$repo"
: "${NIRANSIX_BIN_DIR:?build the tools first (cargo build --release --workspace)}"
command -v ansible-playbook >/dev/null || {
	echo "$BENCH: needs ansible-playbook (apt-get install ansible-core)" >&2
	exit 1
}
((EUID == 0)) || {
	echo "$BENCH: needs root" >&2
	exit 1
}

work=$(mktemp -d /tmp/ansible-fleet.XXXXXX)
hub=$repo/niransix-sh/hub
hosts=(eu1 eu2 us1 us2)
args=()

# host_env HOST: the hub's settings of inventory host HOST, as KEY=VALUE words.
host_env() {
	local i
	case $1 in eu1) i=1 ;; eu2) i=2 ;; us1) i=3 ;; us2) i=4 ;; esac
	echo "HUB_NS=af${i}hub HUB_PREFIX=af$i HUB_STATE_DIR=$work/state$i HUB_MODE=netns HUB_ENDPOINT=10.9$((i > 2 ? 8 : 7)).0.100"
}

cleanup() {
	local h
	for h in "${hosts[@]}"; do
		# shellcheck disable=SC2046 # the settings are words
		env $(host_env "$h") "$hub" -q down >/dev/null 2>&1 || true
	done
	rm -rf "$work"
	inotify_restore
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# inventory S EXTRA: the inventory of four hubs, S peers a region (rNNNN), EXTRA more in eu.
inventory() {
	python3 - "$1" "$2" "$work" "$NIRANSIX_BIN_DIR" >"$work/inventory.yml" <<'EOF'
import json, sys
size, extra, work, bins = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4]
regions = {}
for r, (region, net) in enumerate([("eu", "10.97.0"), ("us", "10.98.0")]):
    hosts = {}
    for k in (1, 2):
        i = 2 * r + k
        v = {"hub_ns": f"af{i}hub", "hub_prefix": f"af{i}", "hub_state_dir": f"{work}/state{i}",
             "hub_conf_path": f"{work}/hub{i}.conf"}
        if k == 2:
            v["hub_primary"] = f"{region}1"
        hosts[f"{region}{k}"] = v
    n = size + (extra if region == "eu" else 0)
    regions[region] = {"hosts": hosts, "vars": {"hub_conf": {"HUB_ENDPOINT": f"{net}.100"},
                                               "hub_peers": [f"{region}{j:04d}" for j in range(n)]}}
print(json.dumps({"all": {"vars": {"ansible_connection": "local",
                                   "ansible_python_interpreter": "/usr/bin/python3",
                                   "niransix_bin_dir": bins, "hub_conf_dir": f"{work}/configs"},
                          "children": {"hubs": {"children": regions}}}}))
EOF
}

# play [ARGS...]: site.yml over the inventory; prints its wall time (s); the recap in
# $work/recap, the junit report in $work/junit/.
play() {
	local t0 t1
	rm -rf "$work/junit"
	t0=$(date +%s.%N)
	env ANSIBLE_CONFIG="$repo/examples/ansible/ansible.cfg" ANSIBLE_HOME="$work/ansible" \
		ANSIBLE_LOCAL_TEMP="$work/ansible/tmp" ANSIBLE_NOCOLOR=1 ANSIBLE_CALLBACKS_ENABLED=junit \
		JUNIT_OUTPUT_DIR="$work/junit" JUNIT_HIDE_TASK_ARGUMENTS=True \
		ansible-playbook -i "$work/inventory.yml" "$repo/examples/ansible/site.yml" "$@" \
		>"$work/out" 2>&1 || {
		tail -40 "$work/out" >&2
		echo "$BENCH: ansible-playbook $* failed" >&2
		exit 1
	}
	t1=$(date +%s.%N)
	sed -n '/PLAY RECAP/,$p' "$work/out" >"$work/recap"
	since "$t0" "$t1"
}

# since T0 T1: T1 - T0 (seconds).
since() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f\n", b - a}'; }

# changed: the changed counts of the last run's recap, host=N each.
changed() { awk '/ : ok=/ {split($0, a, "changed="); split(a[2], b, " "); printf "%s=%s ", $1, b[1]}' "$work/recap"; }

# tasks: the last run's time per task name, summed over the hosts, the largest first (s).
tasks() {
	python3 - "$work/junit" <<'EOF'
import glob, re, sys, collections
import xml.etree.ElementTree as ET
total = collections.Counter()
for f in glob.glob(sys.argv[1] + "/*.xml"):
    for case in ET.parse(f).getroot().iter("testcase"):
        name = re.sub(r"^\[[^]]*\] ", "", case.get("name", ""))
        name = re.sub(r"^[^:]*: ", "", name, count=1) if ": " in name else name
        total[name] += float(case.get("time", 0))
for name, t in total.most_common(8):
    print(f"    {t:6.2f} s  {name}")
print(f"    {sum(total.values()):6.2f} s  all tasks, summed over the hosts")
EOF
}

# direct: the hub commands of the no-op run, run directly on each host, one after another (s):
# the hub's own share. A primary syncs its set (its export is that set), a standby its primary's
# export --secrets; each reads its peers' configs.
direct() {
	local h src t0
	t0=$(date +%s.%N)
	for h in "${hosts[@]}"; do
		src=$h args=(export)
		[[ $h != *2 ]] || src=${h%2}1 args=(export --secrets)
		# shellcheck disable=SC2046 # the settings are words
		env $(host_env "$src") "$hub" -q "${args[@]}" |
			env $(host_env "$h") "$hub" -q sync - >/dev/null
		# shellcheck disable=SC2046
		env $(host_env "$h") "$hub" -q peer conf --all >/dev/null
	done
	since "$t0" "$(date +%s.%N)"
}

echo "$BENCH: examples/ansible/site.yml, 4 hubs (2 regions x a pair), tools in $NIRANSIX_BIN_DIR, $(nproc) cores"
printf '%-7s %-7s %-9s %-9s %-9s %-9s %-12s\n' peers/hub total first no-op check "+1 peer" "hub's share"
for s in "${sizes[@]}"; do
	inotify_need $((4 * s + 8))
	inventory "$s" 0
	first=$(play)
	[[ $(changed) == "eu1=3 eu2=3 us1=3 us2=3 " ]] || echo "$BENCH: first run changed: $(changed)" >&2
	first_breakdown=$(tasks)
	runs=()
	for _ in $(seq "$REPEAT"); do runs+=("$(play)"); done
	noop=$(median "${runs[@]}")
	[[ $(changed) == "eu1=0 eu2=0 us1=0 us2=0 " ]] || echo "$BENCH: no-op run changed: $(changed)" >&2
	breakdown=$(tasks)
	check=$(play --check)
	inventory "$s" 1
	add=$(play)
	[[ $(changed) == "eu1=2 eu2=2 us1=0 us2=0 " ]] || echo "$BENCH: +1 run changed: $(changed)" >&2
	[[ -f $work/configs/eu2/eu$(printf %04d "$s").conf ]] || echo "$BENCH: +1 run delivered no config" >&2
	share=$(direct)
	printf '%-7s %-7s %-9.1f %-9.1f %-9.1f %-9.1f %-12.1f\n' "$s" $((4 * s)) "$first" "$noop" "$check" "$add" "$share"
	echo "  the first run's tasks (s, summed over the 4 hosts):"
	echo "$first_breakdown"
	echo "  the no-op run's tasks (s, summed over the 4 hosts; the hub's own commands, run directly: $share s):"
	echo "$breakdown"
	for h in "${hosts[@]}"; do
		# shellcheck disable=SC2046 # the settings are words
		env $(host_env "$h") "$hub" -q down >/dev/null
	done
	rm -rf "$work/configs" "$work"/hub?.conf
done
