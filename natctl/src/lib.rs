//! natctl: NAT, port forwards, 1:1 prefix mapping, conntrack zones, fwmarks and connection marks
//! on nftables.
//!
//! `natctl [--ns NS] VERB [ARGS]`. natctl keeps everything it makes in its own table,
//! `table inet natctl`, in the namespace it acts on, and never touches any other table. Every
//! command is one atomic nftables transaction (built with nftnl, sent over mnl); every rule
//! carries its canonical arguments in its comment, so `list` reads rules back from the kernel
//! exactly and the same arguments always give the same rule id.

use clap::Subcommand;
use common::{Ctx, Outcome, Result};

pub mod cmd;
pub mod nft;
pub mod rule;

pub const ABOUT: &str =
    "NAT, port forwards, 1:1 prefix mapping, conntrack zones and fwmarks on nftables";

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Add(cmd::RuleCmd),
    /// List natctl's rules, read back from the kernel, with packet/byte counters
    /// (like `nft list table inet natctl`)
    List(cmd::list::List),
    /// Delete the rule with this id (like `nft delete rule inet natctl CHAIN handle H`)
    Del(cmd::del::Del),
    /// Remove every natctl rule and natctl's table; other tables are untouched
    /// (like `nft delete table inet natctl`)
    Flush(cmd::flush::Flush),
}

impl common::Command for Command {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Command::Add(c) => c.run(ctx),
            Command::List(c) => c.run(ctx),
            Command::Del(c) => c.run(ctx),
            Command::Flush(c) => c.run(ctx),
        }
    }
}
