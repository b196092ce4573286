//! wgctl: WireGuard keys, interfaces (kernel or wireguard-go) and peers, including the
//! "birthplace namespace" pattern: an interface created in one namespace (where its UDP socket
//! stays) and moved into another.

use clap::Subcommand;
use common::{Ctx, Outcome, Result};

pub mod backend;
pub mod cmd;
pub mod keys;
mod listener;
mod uapi;
pub mod userspace;
pub mod wgd;

pub const ABOUT: &str = "WireGuard keys, interfaces and peers (kernel, boringtun or wireguard-go)";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Generate a private key (like `wg genkey`)
    Genkey(cmd::key::Genkey),
    /// Generate a preshared key: 32 random bytes, base64 (like `wg genpsk`)
    Genpsk(cmd::key::Genpsk),
    /// Derive the public key of the private key on stdin (like `wg pubkey`)
    Pubkey,
    /// WireGuard interfaces (like `ip link add type wireguard` + `wg set`)
    #[command(subcommand)]
    Iface(cmd::iface::IfaceCmd),
    /// Peers of a WireGuard interface (like `wg set IFACE peer ...`)
    #[command(subcommand)]
    Peer(cmd::peer::PeerCmd),
    /// Show WireGuard interfaces in the namespace (like `wg show`)
    Show(cmd::show::Show),
}

impl common::Command for Command {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Command::Genkey(args) => cmd::key::genkey(ctx, args),
            Command::Genpsk(args) => cmd::key::genpsk(ctx, args),
            Command::Pubkey => cmd::key::pubkey(),
            Command::Iface(c) => cmd::iface::run(ctx, c),
            Command::Peer(c) => cmd::peer::run(ctx, c),
            Command::Show(args) => cmd::show::run(ctx, args),
        }
    }

    /// Keys are plain computation and a file of the caller's, like `wg genkey` / `wg genpsk` /
    /// `wg pubkey`.
    fn needs_privilege(&self) -> bool {
        !matches!(
            self,
            Command::Genkey(_) | Command::Genpsk(_) | Command::Pubkey
        )
    }
}
