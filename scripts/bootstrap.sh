#!/usr/bin/env bash
# Bootstrap a Debian 12 machine for niransix and build the workspace.
#
# Usage: scripts/bootstrap.sh [--release] [--no-build] [--vm] [--print-cargo]
#
#   (no flag)   install missing Debian packages, check cargo, install boringtun-cli (crates.io),
#               `cargo build --workspace`
#   --release   build with `--release` (target/release instead of target/debug)
#   --no-build  only install packages and check the toolchain
#   --vm        also install what the kernel VM lane needs (qemu-system-x86, busybox-static,
#               linux-image-amd64, python3-venv) and virtme-ng in a venv at /opt/virtme-ng
#   --print-cargo  print the path of cargo instead of the bin dir (for tests/run.sh)
#
# Interface for other scripts: every progress message goes to stderr; the LAST (and only) line on
# stdout is the absolute directory holding the built tools (nsctl, wgctl, natctl, routectl), e.g.
#     bin=$(scripts/bootstrap.sh) || exit 1
#     "$bin/nsctl" netns list
# If NIRANSIX_BIN_DIR is set and already holds all four tools (as inside the kernel VM lane, where
# the source tree is read-only and there is no cargo), nothing is installed or built and that
# directory is printed.
#
# Idempotent and quick on re-runs: apt-get runs only when a package is missing, and cargo only
# rebuilds what changed. Needs root only when something has to be installed.
set -euo pipefail

TOOLS=(nsctl wgctl natctl routectl)
# What the tools, the tests and the hub scripts need on a fresh Debian 12 machine.
PACKAGES=(
  gcc libc6-dev pkg-config libnftnl-dev libmnl-dev
  iproute2 nftables conntrack wireguard-go wireguard-tools kmod procps util-linux systemd
  iputils-ping netcat-openbsd tcpdump jq shellcheck ansible-core ansible-lint python3-apt python3-prometheus-client
  qrencode zbar-tools bash-completion groff-base man-db dpkg-dev
  prometheus-node-exporter prometheus iperf3 keepalived iputils-arping strace
)
VM_PACKAGES=(qemu-system-x86 busybox-static linux-image-amd64 python3-venv binutils)
VNG_VENV=/opt/virtme-ng

log() { printf 'bootstrap: %s\n' "$*" >&2; }
die() { printf 'bootstrap: error: %s\n' "$*" >&2; exit 1; }

profile=debug
build=1
vm=0
print_cargo=0
for arg in "$@"; do
  case $arg in
    --release) profile=release ;;
    --no-build) build=0 ;;
    --vm) vm=1 ;;
    --print-cargo) print_cargo=1 ;;
    -h|--help) sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
    *) die "unknown argument '$arg' (usage: scripts/bootstrap.sh [--release] [--no-build] [--vm] [--print-cargo])" ;;
  esac
done

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)

has_tools() {
  local d=$1 t
  for t in "${TOOLS[@]}"; do [[ -x $d/$t ]] || return 1; done
}

if ((!print_cargo)) && [[ -n ${NIRANSIX_BIN_DIR:-} ]] && has_tools "$NIRANSIX_BIN_DIR"; then
  log "NIRANSIX_BIN_DIR=$NIRANSIX_BIN_DIR holds the tools; nothing to do"
  printf '%s\n' "$NIRANSIX_BIN_DIR"
  exit 0
fi

# install_missing PKG...: apt-get install only the packages dpkg does not know as installed.
install_missing() {
  local missing=() p
  for p in "$@"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  ((${#missing[@]})) || return 0
  ((EUID == 0)) || die "missing packages ${missing[*]}; re-run as root (sudo $0) to install them"
  log "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # (waits for another apt or dpkg to finish, e.g. tests/run.sh's VM lane installing its own
  # packages in the background, instead of failing on the lock)
  local wait=(-o DPkg::Lock::Timeout=600)
  apt-get "${wait[@]}" update -q >&2 || die "apt-get update failed"
  apt-get "${wait[@]}" install -y -q --no-install-recommends "${missing[@]}" >&2 \
    || die "apt-get install ${missing[*]} failed"
}

install_missing "${PACKAGES[@]}"

if ((vm)); then
  install_missing "${VM_PACKAGES[@]}"
  if [[ ! -x $VNG_VENV/bin/vng ]]; then
    ((EUID == 0)) || die "virtme-ng is missing; re-run as root to install it into $VNG_VENV"
    log "installing virtme-ng into $VNG_VENV (Debian's python3, not pyenv's)"
    /usr/bin/python3 -m venv "$VNG_VENV" >&2 || die "cannot create a venv at $VNG_VENV"
    "$VNG_VENV/bin/pip" install -q virtme-ng >&2 || die "pip install virtme-ng failed"
  fi
  log "virtme-ng: $("$VNG_VENV/bin/vng" --version 2>&1)"
fi

# cargo: the machine's rustup toolchain. sudo usually drops ~/.cargo/bin from PATH, so look there.
find_cargo() {
  local c home
  if c=$(command -v cargo 2>/dev/null); then printf '%s\n' "$c"; return 0; fi
  for home in "${CARGO_HOME:-}" "$HOME/.cargo" \
      ${SUDO_USER:+"$(getent passwd "$SUDO_USER" | cut -d: -f6)/.cargo"} /root/.cargo; do
    [[ -n $home && -x $home/bin/cargo ]] && { printf '%s\n' "$home/bin/cargo"; return 0; }
  done
  return 1
}
cargo=$(find_cargo) || die "cargo not found (not in PATH, ~/.cargo/bin or /root/.cargo/bin).
This project builds with the machine's Rust toolchain (rustup, Rust >= 1.85); install it first:
https://rustup.rs — then re-run $0"
log "cargo: $cargo ($("$cargo" --version 2>&1))"
PATH="$(dirname "$cargo"):$PATH"; export PATH

# boringtun-cli, wgctl's other userspace WireGuard (`--userspace boringtun`; Cloudflare's, in Rust;
# docs/wgctl.md compares it with wireguard-go): Debian does not package it, crates.io is where its
# authors publish it.
# Pinned and --locked, into /usr/local/bin (on every PATH, systemd's included); skipped when that
# version is there already.
BORINGTUN_VERSION=0.7.1
if [[ $(boringtun-cli --version 2>/dev/null) != "boringtun $BORINGTUN_VERSION" ]]; then
  ((EUID == 0)) || die "boringtun-cli $BORINGTUN_VERSION is missing; re-run as root to install it"
  log "cargo install boringtun-cli $BORINGTUN_VERSION into /usr/local"
  "$cargo" install --locked --quiet boringtun-cli --version "$BORINGTUN_VERSION" --root /usr/local >&2 \
    || die "cargo install boringtun-cli $BORINGTUN_VERSION failed"
fi

bin=$repo/target/$profile
if ((build)); then
  args=(build --workspace)
  [[ $profile == release ]] && args+=(--release)
  log "cargo ${args[*]}"
  (cd "$repo" && "$cargo" "${args[@]}" >&2) || die "cargo ${args[*]} failed"
  has_tools "$bin" || die "build finished but $bin lacks one of: ${TOOLS[*]}"
fi
if ((print_cargo)); then printf '%s\n' "$cargo"; else printf '%s\n' "$bin"; fi
