# shellcheck shell=bash disable=SC2034
# niransix-sh/lib.sh — shared by `hub`, `client` and `demo`: finding the tools, running them
# (echoing `[#] cmd` to stderr, wg-quick style), batches and errors.
# Source it; it defines functions only (plus NX_* tool paths after nx_find_tools).

# (No subshells here: every hub command starts by sourcing this.)
NX_SH_DIR=${BASH_SOURCE[0]%/*}
[[ ${BASH_SOURCE[0]} == */* ]] || NX_SH_DIR=.
[[ $NX_SH_DIR == /* ]] || NX_SH_DIR=$PWD/$NX_SH_DIR
NX_REPO=${NX_SH_DIR%/*}
NX_PROG=${NX_PROG:-${0##*/}}
NX_QUIET=${NX_QUIET:-0}
NX_CHECK=${NX_CHECK:-0} # 1: batches run with --check (predict, change nothing)
NX_INPUT_AT=            # where invalid input was read (e.g. "line 3: "), for error messages

# die MESSAGE [CODE]: `PROG: error: MESSAGE` on stderr, exit CODE (1 = failed, 2 = invalid input).
# A value quoted in MESSAGE ('...') is cut to its first 80 bytes: an error names the value, it
# does not echo a whole input line (which may be a key file given by mistake).
die() {
	local msg=$1 out='' rest
	while [[ $msg =~ ^([^\']*)\'([^\']*)\'(.*)$ ]]; do
		rest=${BASH_REMATCH[3]}
		out+="${BASH_REMATCH[1]}'"
		if ((${#BASH_REMATCH[2]} > 80)); then
			out+="${BASH_REMATCH[2]:0:80}...'"
		else
			out+="${BASH_REMATCH[2]}'"
		fi
		msg=$rest
	done
	printf '%s: error: %s\n' "$NX_PROG" "$out$msg" >&2
	exit "${2:-1}"
}

# invalid MESSAGE: bad input, detected before anything changed (exit 2); NX_INPUT_AT says where
# it was read.
invalid() { die "$NX_INPUT_AT$1" 2; }

warn() { printf '%s: warning: %s\n' "$NX_PROG" "$1" >&2; }

# say WORDS...: echo a command as `[#] WORDS` on stderr (unless -q).
say() { ((NX_QUIET)) || printf '[#] %s\n' "$*" >&2; }

# nx_find_tools: sets NX_NSCTL, NX_WGCTL, NX_NATCTL, NX_ROUTECTL and NX_HUBCTL (the hub's model). Looks in $NIRANSIX_BIN_DIR,
# else (run from a checkout) <repo>/target/release, then <repo>/target/debug, else on PATH (the
# installed package; hubctl in /usr/lib/niransix). Returns 1 (and names what is missing in NX_MISSING) when a tool cannot be
# found; changes nothing.
nx_find_tools() {
	local t p var
	NX_MISSING=()
	for t in nsctl wgctl natctl routectl hubctl; do
		p=
		if [[ -n ${NIRANSIX_BIN_DIR:-} ]]; then
			[[ -x $NIRANSIX_BIN_DIR/$t ]] && p=$NIRANSIX_BIN_DIR/$t
		elif [[ -e $NX_REPO/Cargo.toml && -x $NX_REPO/target/release/$t ]]; then
			p=$NX_REPO/target/release/$t # a checkout runs its own build, not an installed one
		elif [[ -e $NX_REPO/Cargo.toml && -x $NX_REPO/target/debug/$t ]]; then
			p=$NX_REPO/target/debug/$t
		elif p=$(command -v "$t" 2>/dev/null); then
			:
		elif [[ -x /usr/lib/niransix/$t ]]; then # (hubctl, installed: not a command of its own)
			p=/usr/lib/niransix/$t
		fi
		if [[ -z $p ]]; then
			NX_MISSING+=("$t")
			continue
		fi
		var=NX_${t^^}
		printf -v "$var" '%s' "$p"
	done
	((${#NX_MISSING[@]} == 0))
}

# nx_require_tools: nx_find_tools, or exit 2 naming the missing tools and where we looked.
nx_require_tools() {
	nx_find_tools && return 0
	local where="$NX_REPO/target/release, $NX_REPO/target/debug and PATH"
	[[ -z ${NIRANSIX_BIN_DIR:-} ]] || where="\$NIRANSIX_BIN_DIR ($NIRANSIX_BIN_DIR)"
	invalid "missing tool(s): ${NX_MISSING[*]} (looked in $where; build them with 'cargo build --release' or scripts/bootstrap.sh)"
}

# nx TOOL ARGS...: run one tool, echoing it; its JSON goes to stdout. On failure, the tool's own
# error is already on stderr: exit with its code.
nx() {
	local t=$1 var=NX_${1^^}
	shift
	say "$t $*"
	local rc=0
	"${!var}" "$@" || rc=$?
	((rc == 0)) || exit "$rc"
}

# nx_try TOOL ARGS...: like nx but returns the exit code instead of exiting.
nx_try() {
	local t=$1 var=NX_${1^^}
	shift
	say "$t $*"
	"${!var}" "$@"
}

# nx_batch TOOL < LINES: one process for many commands (`TOOL -b -`, with NX_CHECK=1 `TOOL
# --check -b -`), each line echoed as the command it stands for. JSON Lines on stdout. Empty input
# runs nothing. Exits on failure.
# (No `cat` or subshell of its own: the hub's cost per peer is mostly process starts.)
nx_batch() {
	local t=$1 lines line rc=0 var=NX_${1^^} check=
	((!NX_CHECK)) || check=--check
	IFS= read -r -d '' lines || true
	[[ -n ${lines//$'\n'/} ]] || return 0
	if ! ((NX_QUIET)); then
		while IFS= read -r line; do printf '[#] %s %s\n' "$t${check:+ $check}" "$line" >&2; done <<<"${lines%$'\n'}"
	fi
	local t0=${EPOCHREALTIME/./}
	"${!var}" ${check:+"$check"} -b - <<<"${lines%$'\n'}" || rc=$?
	((rc == 0)) || die "$t batch failed (exit $rc); the line above names the step" "$rc"
	# NX_TIMING=1: how long each batch took (where the time goes), on stderr.
	[[ -z ${NX_TIMING:-} ]] || printf '[t] %s -b: %d ms\n' "$t" $(((${EPOCHREALTIME/./} - t0) / 1000)) >&2
}


# secret_begin / secret_end: around code that holds a private key in a variable, so that a
# caller's `bash -x` trace shows neither the key nor the lines that carry it.
secret_begin() {
	{
		NX_XTRACE=0
		[[ $- != *x* ]] || NX_XTRACE=1
		set +x
	} 2>/dev/null
}
secret_end() {
	# shellcheck disable=SC2015
	{ ((NX_XTRACE)) && set -x || true; } 2>/dev/null
}
