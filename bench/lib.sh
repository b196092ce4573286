# shellcheck shell=bash
# bench/lib.sh — shared by the benchmark scripts: which tools to time, and memory of processes.

# bench_tools REPO: exports NIRANSIX_BIN_DIR (unless set) as the first complete build of the four
# tools and hubctl, release before debug.
bench_tools() {
	[[ -z ${NIRANSIX_BIN_DIR:-} ]] || return 0
	local d
	for d in "$1/target/release" "$1/target/debug"; do
		if [[ -x $d/nsctl && -x $d/wgctl && -x $d/natctl && -x $d/routectl && -x $d/hubctl ]]; then
			export NIRANSIX_BIN_DIR=$d
			return 0
		fi
	done
}

# proc_kb FILE FIELD PATTERN: the sum of FIELD (kB) in /proc/PID/FILE over the processes whose
# command line matches PATTERN.
proc_kb() {
	local kb=0 pid v
	for pid in $(pgrep -f "$3" || true); do
		v=$(awk -v f="$2:" '$1 == f {print $2}' "/proc/$pid/$1" 2>/dev/null || echo 0)
		kb=$((kb + ${v:-0}))
	done
	echo "$kb"
}

# rss_kb PATTERN: total RSS (kB) of the processes whose command line matches.
rss_kb() { proc_kb status VmRSS "$1"; }

# pss_kb PATTERN: total PSS (kB) of those processes: shared pages divided among their users, so
# that a thousand wireguard-go count their one binary once.
pss_kb() { proc_kb smaps_rollup Pss "$1"; }
