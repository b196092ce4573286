# shellcheck shell=bash disable=SC2034
# niransix-sh/lib.sh — shared by `hub`, `client` and `demo`: finding the tools, running them
# (echoing `[#] cmd` to stderr, wg-quick style), batches, errors, and IPv4 arithmetic.
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

# nx_find_tools: sets NX_NSCTL, NX_WGCTL, NX_NATCTL, NX_ROUTECTL. Looks in $NIRANSIX_BIN_DIR,
# else (run from a checkout) <repo>/target/release, then <repo>/target/debug, else on PATH (the
# installed package). Returns 1 (and names what is missing in NX_MISSING) when a tool cannot be
# found; changes nothing.
nx_find_tools() {
	local t p var
	NX_MISSING=()
	for t in nsctl wgctl natctl routectl; do
		p=
		if [[ -n ${NIRANSIX_BIN_DIR:-} ]]; then
			[[ -x $NIRANSIX_BIN_DIR/$t ]] && p=$NIRANSIX_BIN_DIR/$t
		elif [[ -e $NX_REPO/Cargo.toml && -x $NX_REPO/target/release/$t ]]; then
			p=$NX_REPO/target/release/$t # a checkout runs its own build, not an installed one
		elif [[ -e $NX_REPO/Cargo.toml && -x $NX_REPO/target/debug/$t ]]; then
			p=$NX_REPO/target/debug/$t
		elif p=$(command -v "$t" 2>/dev/null); then
			:
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
	command -v jq >/dev/null || invalid "missing tool: jq (apt-get install jq)"
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


# --- IPv4 arithmetic (HUB_CIDR is IPv4) ---

# ip4_valid ADDR: a canonical dotted quad: every octet 0..255 without leading zeros, so that
# two spellings of one address cannot pass a duplicate check (100.64.0.010 is refused, as
# inet_pton refuses it).
ip4_valid() {
	local IFS=. o
	local -a p
	[[ $1 =~ ^(0|[1-9][0-9]{0,2})(\.(0|[1-9][0-9]{0,2})){3}$ ]] || return 1
	read -r -a p <<<"$1"
	for o in "${p[@]}"; do ((o <= 255)) || return 1; done
}

# ip4_int VAR ADDR: VAR = the integer of a valid dotted quad (no subshell).
ip4_int() {
	local IFS=.
	local -a p
	read -r -a p <<<"$2"
	printf -v "$1" '%d' $(((p[0] << 24) | (p[1] << 16) | (p[2] << 8) | p[3]))
}

# ip4_of VAR N: VAR = the dotted quad of integer N (no subshell).
ip4_of() {
	local n=$2
	printf -v "$1" '%d.%d.%d.%d' $(((n >> 24) & 255)) $(((n >> 16) & 255)) $(((n >> 8) & 255)) $((n & 255))
}

# cidr4_parse CIDR: sets CIDR_NET (int), CIDR_LEN, CIDR_FIRST/CIDR_LAST (usable hosts, ints).
cidr4_parse() {
	local addr=${1%/*} len=${1#*/}
	[[ $1 == */* ]] && ip4_valid "$addr" && [[ $len =~ ^[1-9][0-9]?$ ]] && ((len <= 30)) || return 1
	local mask=$(((0xffffffff << (32 - len)) & 0xffffffff))
	CIDR_LEN=$len
	ip4_int CIDR_NET "$addr"
	CIDR_NET=$((CIDR_NET & mask))
	CIDR_FIRST=$((CIDR_NET + 1))
	CIDR_LAST=$((CIDR_NET + (0xffffffff & ~mask) - 1))
}

# cidr4_host ADDR: true if ADDR is a usable host address of the parsed CIDR.
cidr4_host() {
	ip4_valid "$1" || return 1
	local n
	ip4_int n "$1"
	((n >= CIDR_FIRST && n <= CIDR_LAST))
}

# --- IPv6 arithmetic (HUB_CIDR6) ---

# ip6_expand VAR ADDR: VAR = ADDR as 8 hextets of 4 hex digits, colon-separated; false if ADDR
# is not an IPv6 address (no zone, no embedded IPv4).
ip6_expand() {
	local a=$2 i n
	local -a hx=() t=() out=()
	[[ $a =~ ^[0-9A-Fa-f:]{2,39}$ && $a != *:::* ]] || return 1
	[[ ($a != :* || $a == ::*) && ($a != *: || $a == *::) ]] || return 1
	if [[ $a == *::* ]]; then
		[[ ${a#*::} != *::* ]] || return 1
		IFS=: read -r -a hx <<<"${a%%::*}"
		IFS=: read -r -a t <<<"${a#*::}"
		n=$((8 - ${#hx[@]} - ${#t[@]}))
		((n >= 1)) || return 1
		out=("${hx[@]}")
		for ((i = 0; i < n; i++)); do out+=(0); done
		out+=("${t[@]}")
	else
		IFS=: read -r -a out <<<"$a"
	fi
	((${#out[@]} == 8)) || return 1
	for i in "${!out[@]}"; do
		[[ ${out[i]} =~ ^[0-9A-Fa-f]{1,4}$ ]] || return 1
		printf -v "out[i]" '%04x' $((16#${out[i]}))
	done
	local IFS=:
	printf -v "$1" '%s' "${out[*]}"
}

# ip6_compress VAR EXPANDED: VAR = the address in its canonical text (RFC 5952: lower case, no
# leading zeros, the longest run of two or more zero hextets as ::), as the kernel lists it.
ip6_compress() {
	local IFS=: i run=-1 best=-1 bestlen=0
	local -a hx
	read -r -a hx <<<"$2"
	for i in "${!hx[@]}"; do printf -v "hx[i]" '%x' $((16#${hx[i]})); done
	for ((i = 0; i <= 8; i++)); do
		if ((i < 8)) && [[ ${hx[i]} == 0 ]]; then
			((run >= 0)) || run=$i
		elif ((run >= 0)); then
			if ((i - run >= 2 && i - run > bestlen)); then best=$run bestlen=$((i - run)); fi
			run=-1
		fi
	done
	if ((best < 0)); then
		printf -v "$1" '%s' "${hx[*]}"
	else
		printf -v "$1" '%s::%s' "${hx[*]:0:best}" "${hx[*]:best+bestlen}"
	fi
}

# cidr6_parse CIDR: an IPv6 network with room for a 32-bit host part (ADDR/1..96, its host
# bits zero); sets CIDR6_NET (expanded) and CIDR6_LEN.
cidr6_parse() {
	local len=${1#*/} i bits v
	local -a hx
	[[ $1 == */* && $len =~ ^[1-9][0-9]?$ ]] && ((len <= 96)) || return 1
	ip6_expand CIDR6_NET "${1%/*}" || return 1
	# shellcheck disable=SC2153 # set just above, by ip6_expand's printf -v
	IFS=: read -r -a hx <<<"$CIDR6_NET"
	for i in "${!hx[@]}"; do
		bits=$((len - 16 * i)) v=$((16#${hx[i]}))
		((bits >= 16)) && continue
		((bits <= 0)) && bits=0
		((v & ((1 << (16 - bits)) - 1))) && return 1
	done
	CIDR6_LEN=$len
}

# cidr6_usable: false for a parsed CIDR6 that no internal network can be: link-local (fe80::/10),
# multicast (ff00::/8) or the unspecified address (::).
cidr6_usable() {
	local first=$((16#${CIDR6_NET:0:4}))
	(((first & 0xffc0) != 0xfe80 && (first & 0xff00) != 0xff00)) || return 1
	[[ $CIDR6_NET != 0000:0000:0000:0000:0000:0000:0000:0000 ]]
}

# ip6_in_cidr6 EXPANDED: true if the address is inside the parsed CIDR6.
ip6_in_cidr6() {
	local i bits a n
	local -a x y
	IFS=: read -r -a x <<<"$1"
	IFS=: read -r -a y <<<"$CIDR6_NET"
	for i in 0 1 2 3 4 5 6 7; do
		bits=$((CIDR6_LEN - 16 * i))
		((bits > 0)) || return 0
		((bits < 16)) || bits=16
		a=$((16#${x[i]} >> (16 - bits))) n=$((16#${y[i]} >> (16 - bits)))
		((a == n)) || return 1
	done
}

# ip6_host VAR N: VAR = the canonical text of host N (< 2^32) of the parsed CIDR6.
ip6_host() {
	local e
	printf -v e '%s%04x:%04x' "${CIDR6_NET:0:30}" $((($2 >> 16) & 0xffff)) $(($2 & 0xffff))
	ip6_compress "$1" "$e"
}

# port_valid N: a UDP port 1..65535, written canonically (no leading zeros).
port_valid() { [[ $1 =~ ^[1-9][0-9]{0,4}$ ]] && (($1 <= 65535)); }

# wg_key_valid KEY: base64 of exactly 32 bytes (a WireGuard public key).
wg_key_valid() {
	[[ $1 =~ ^[A-Za-z0-9+/]{42}[AEIMQUYcgkosw048]=$ ]]
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
