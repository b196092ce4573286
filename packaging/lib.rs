//! Nothing to compile: this crate exists for its `[package.metadata.deb]` (the Debian package
//! `niransix`, built by `scripts/package.sh` with cargo-deb).
