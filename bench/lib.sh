# shellcheck shell=bash
# bench/lib.sh — shared by the benchmark scripts: which tools to time, and memory of processes.

# bench_tools REPO: exports NIRANSIX_BIN_DIR (unless set) as the first complete build of the four
# tools, release before debug.
bench_tools() {
	[[ -z ${NIRANSIX_BIN_DIR:-} ]] || return 0
	local d
	for d in "$1/target/release" "$1/target/debug"; do
		if [[ -x $d/nsctl && -x $d/wgctl && -x $d/natctl && -x $d/routectl ]]; then
			export NIRANSIX_BIN_DIR=$d
			return 0
		fi
	done
}

# rss_kb PATTERN: total RSS (kB) of the processes whose command line matches.
rss_kb() {
	local kb=0 pid r
	for pid in $(pgrep -f "$1" || true); do
		r=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
		kb=$((kb + ${r:-0}))
	done
	echo "$kb"
}
