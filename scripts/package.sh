#!/usr/bin/env bash
# Build the Debian package `niransix` (cargo-deb; metadata in packaging/Cargo.toml).
#
# Usage: scripts/package.sh [--build-only]
#
#   1. scripts/bootstrap.sh --no-build (Debian packages, cargo); cargo-deb if missing
#      (`cargo install cargo-deb --locked`, into ~/.cargo/bin, kept for the next run)
#   2. cargo build --release of the four tools, hubctl and wgd
#   3. into target/package/: the man pages (`cargo run -p xtask -- man DIR`, and
#      docs/man/niransix-hub.8), the completions (each built tool's `completions bash|zsh|fish`),
#      the Debian changelog, and the licenses of the Rust crates linked into the tools
#   4. cargo deb --no-build (nothing is built twice), then DEBIAN/md5sums added (dpkg-deb)
# --build-only stops after 2 and prints nothing on stdout (tests/run.sh builds ahead).
#
# Progress goes to stderr; the LAST (and only) line on stdout is the .deb's absolute path:
#     deb=$(scripts/package.sh) && dpkg -i "$deb"
# Then: niransix-demo, man niransix-hub. Needs root only when something has to be installed.
set -euo pipefail

TOOLS=(nsctl wgctl natctl routectl)
SHELLS=(bash zsh fish)
CARGO_DEB_VERSION=3.8.0 # installed when cargo-deb is missing; any 3.x builds this package

log() { printf 'package: %s\n' "$*" >&2; }
die() { printf 'package: error: %s\n' "$*" >&2; exit 1; }

build_only=0
case ${1:-} in
  '') ;;
  --build-only) build_only=1 ;;
  -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 0 ;;
  *) printf "package: error: unknown argument '%s' (usage: scripts/package.sh [--build-only])\n" "$1" >&2; exit 2 ;;
esac

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"

cargo=$(scripts/bootstrap.sh --no-build --print-cargo) || die "scripts/bootstrap.sh failed"
PATH="$(dirname "$cargo"):$PATH"
export PATH

if ! cargo deb --version >/dev/null 2>&1; then
  # The standard way to make a .deb from a Cargo workspace; not packaged in Debian 12.
  log "cargo-deb missing: cargo install cargo-deb --locked --version $CARGO_DEB_VERSION (~2 min, once)"
  cargo install -q cargo-deb --locked --version "$CARGO_DEB_VERSION" >&2 || die "cargo install cargo-deb failed"
fi
log "$(cargo deb --version 2>&1)"

# Reproducible: every timestamp (changelog, archive members) is the last commit's.
if [[ -z ${SOURCE_DATE_EPOCH:-} ]] && git -C "$repo" rev-parse --verify -q HEAD >/dev/null 2>&1; then
  SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct)
  export SOURCE_DATE_EPOCH
fi

build=(build --release --locked)
# (hubctl: the hub's model, /usr/lib/niransix; wgd: the userspace WireGuard wgctl starts)
for t in "${TOOLS[@]}" hubctl wgd; do build+=(-p "$t"); done
log "cargo ${build[*]}"
cargo "${build[@]}" >&2 || die "cargo ${build[*]} failed"
((!build_only)) || exit 0
target_dir=$(cargo metadata --format-version 1 --no-deps | jq -r .target_directory)
bin=$target_dir/release
[[ $target_dir == "$repo/target" ]] ||
  die "packaging/Cargo.toml takes the generated files from $repo/target/package, but CARGO_TARGET_DIR is $target_dir"

out=$repo/target/package
rm -rf "$out"
mkdir -p "$out/man" "${SHELLS[@]/#/$out/completions/}"

# Man pages: the tools' from their clap definitions, the hub's written by hand.
log "man pages: cargo run -p xtask -- man $out/man"
cargo run -q --locked -p xtask -- man "$out/man" >&2 || die "cargo run -p xtask -- man failed"
cp docs/man/niransix-hub.8 "$out/man/"
for page in "${TOOLS[@]}" niransix-hub; do
  [[ -s $out/man/$page.8 ]] || die "no man page $page.8 in $out/man"
done

# Completions: the tools as found on PATH, so that no script names this build's directory.
for t in "${TOOLS[@]}"; do
  for sh in "${SHELLS[@]}"; do
    case $sh in
      bash) f=$out/completions/bash/$t ;;
      zsh) f=$out/completions/zsh/_$t ;;
      fish) f=$out/completions/fish/$t.fish ;;
    esac
    PATH="$bin:$PATH" "$t" completions "$sh" >"$f" || die "$t completions $sh failed"
    [[ -s $f ]] || die "$t completions $sh printed nothing"
    ! grep -qF "$repo" "$f" || die "$t completions $sh names the build directory $repo"
  done
done
log "completions: ${SHELLS[*]} for ${TOOLS[*]}"

# The Debian changelog (required in every package): this version, built from this commit.
version=$(cargo metadata --format-version 1 --no-deps |
  jq -r '.packages[] | select(.name == "niransix-packaging") | .version')
rev=$(git -C "$repo" rev-parse --short HEAD 2>/dev/null || echo unknown)
date=$(date -R -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}")
cat >"$out/changelog" <<EOF
niransix ($version-1) unstable; urgency=medium

  * niransix $version, built from commit $rev.
    Its history is the project's git log.

 -- niransix maintainers <niransix@example.invalid>  $date
EOF

# The licenses and copyright notices of every crate linked into the tools (not build scripts'
# or proc macros' dependencies, which are not), from the crates' own sources.
host=$(rustc -vV | sed -n 's/^host: //p')
cargo metadata --format-version 1 --locked --filter-platform "$host" >"$out/metadata.json" ||
  die "cargo metadata failed"
jq -r --arg tools "${TOOLS[*]} hubctl wgd" '
  (.packages | map({key: .id, value: .}) | from_entries) as $pkg
  | (.resolve.nodes | map({key: .id, value: [.deps[] | select(any(.dep_kinds[]; .kind == null)) | .pkg]})
     | from_entries) as $deps
  | ($tools | split(" ")) as $names
  | [.workspace_members[] | select($pkg[.].name as $n | $names | index($n))] as $roots
  | [$roots | recurse(map($deps[.][]) | unique; length > 0)] | add | unique
  | map($pkg[.]) | map(select(.source != null and all(.targets[]; .kind != ["proc-macro"])))
  | sort_by(.name, .version)[]
  | [.name, .version, (.license // "(none declared)"), (.manifest_path | sub("/Cargo.toml$"; ""))]
  | @tsv' "$out/metadata.json" >"$out/crates.tsv" || die "listing the linked crates failed"
{
  echo "The Rust crates linked into nsctl, wgctl, natctl, routectl, hubctl and wgd, with their licenses and"
  echo "copyright notices as each crate ships them (niransix's own: /usr/share/doc/niransix/copyright)."
  while IFS=$'\t' read -r name ver lic dir; do
    printf '\n%s\n%s %s — %s\n%s\n' "$(printf '=%.0s' {1..78})" "$name" "$ver" "$lic" "$(printf '=%.0s' {1..78})"
    found=0
    while IFS= read -r -d '' f; do
      printf '\n--- %s\n\n' "${f##*/}"
      cat "$f"
      found=1
    done < <(find "$dir" -maxdepth 1 -type f -regextype posix-extended \
      -iregex '.*/(licen[cs]e|copying|copyright|notice|unlicense)([-_.][^/]*)?' -print0 | sort -z)
    ((found)) || printf '\n(the crate ships no license file; its manifest declares: %s)\n' "$lic"
  done <"$out/crates.tsv"
} | gzip -9n >"$out/third-party-licenses.gz"
log "licenses of $(wc -l <"$out/crates.tsv") linked crates: $out/third-party-licenses.gz"

# cargo-deb warns about every asset under ../target/ that it is not one of its own build
# products; they are ours (generated above), so that warning alone is dropped.
log "cargo deb -p niransix-packaging --no-build"
deb=$(cargo deb -p niransix-packaging --no-build --locked --fast \
  2> >(grep -v "^warning: Only source paths starting with exactly 'target/release/' .*'\.\./target/package/" >&2) |
  tail -n 1) || die "cargo deb failed"
[[ -f $deb ]] || die "cargo deb did not report a .deb ($deb)"

# cargo-deb writes no DEBIAN/md5sums, which `dpkg --verify niransix` and debsums check the
# installed files against: add it and pack the same tree again with dpkg-deb (so cargo-deb only
# compresses --fast above).
tree=$out/deb-tree
rm -rf "$tree"
dpkg-deb -R "$deb" "$tree" || die "dpkg-deb -R $deb failed"
(cd "$tree" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | sort -z |
  xargs -0 -r md5sum >DEBIAN/md5sums) || die "md5sums failed"
chmod 644 "$tree/DEBIAN/md5sums"
dpkg-deb --root-owner-group -Zxz -b "$tree" "$deb" >/dev/null || die "dpkg-deb -b $deb failed"
rm -rf "$tree"
printf '%s\n' "$deb"
