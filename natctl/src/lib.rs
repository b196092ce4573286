//! natctl: NAT, port forwards, 1:1 prefix mapping, conntrack zones, fwmarks, connection marks
//! and access control (filter) on nftables.
//!
//! `natctl [--ns NS] VERB [ARGS]`. natctl keeps everything it makes in its own table,
//! `table inet natctl`, in the namespace it acts on, and never touches any other table. Every
//! command is one atomic nftables transaction (built with nftnl, sent over mnl; a batch's
//! consecutive adds share one, `nft::pending`); every rule
//! carries its canonical arguments in its comment, so the same arguments always give the same
//! rule id; the comment is trusted only as far as the rule's expressions match what natctl
//! encodes for those arguments (`audit`): `list` shows a rule changed behind natctl's back as
//! tampered, or one missing a part as incomplete, and `add` repairs it.

use clap::Subcommand;
use common::{Ctx, Outcome, Result};

pub mod audit;
pub mod cmd;
pub mod nft;
pub mod rule;
pub mod set;

pub const ABOUT: &str =
    "NAT, port forwards, 1:1 prefix mapping, conntrack zones, fwmarks and filters on nftables";

#[derive(Subcommand, Debug)]
pub enum Command {
    #[command(flatten)]
    Add(cmd::RuleCmd),
    /// List natctl's rules, read back from the kernel, with packet/byte counters, each checked
    /// against what its id stands for (tampered, complete, missing), and the namespace's other
    /// tables (like `nft list table inet natctl`, `nft list tables`)
    List(cmd::list::List),
    /// Delete the rule with this id (like `nft delete rule inet natctl CHAIN handle H`)
    Del(cmd::del::Del),
    /// Remove every natctl rule and natctl's table; other tables are untouched
    /// (like `nft delete table inet natctl`)
    Flush(cmd::flush::Flush),
    /// Named sets and maps that rules look packets up in (`--iif @SET`), so that one element,
    /// not one rule, stands for each interface or address
    #[command(subcommand)]
    Set(cmd::set::Set),
    /// Elements of a set or map
    #[command(subcommand)]
    Element(cmd::element::Element),
}

impl common::Command for Command {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Command::Add(c) => c.run(ctx),
            Command::List(c) => c.run(ctx),
            Command::Del(c) => c.run(ctx),
            Command::Flush(c) => c.run(ctx),
            Command::Set(c) => c.run(ctx),
            Command::Element(c) => c.run(ctx),
        }
    }

    /// A batch's rule adds in one namespace are committed together, and so are its rule
    /// deletions (`nft::pending`).
    fn deferrable(&self) -> Option<&'static str> {
        match self {
            Command::Add(_) => Some("add"),
            Command::Del(_) => Some("del"),
            Command::Element(_) => Some("element"),
            Command::List(_) | Command::Flush(_) | Command::Set(_) => None,
        }
    }

    fn settle(_ctx: &Ctx) -> std::result::Result<(), (usize, common::Error)> {
        nft::pending::settle()
    }
}
