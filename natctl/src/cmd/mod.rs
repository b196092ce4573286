//! One module per verb. The seven rule verbs each turn their arguments into a [`Rule`] and share
//! one add path ([`add`]); `list`, `del` and `flush` work on what the kernel holds.

pub mod connmark;
pub mod del;
pub mod dnat;
pub mod filter;
pub mod flush;
pub mod list;
pub mod mark;
pub mod masquerade;
pub mod netmap;
pub mod snat;
pub mod zone;

use std::cell::RefCell;
use std::collections::HashSet;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use common::{Context, Ctx, Error, Outcome, Result};

use crate::nft::cache::Presence;
use crate::nft::list::KernelRule;
use crate::nft::{self, encode::COMMENT_MAX, lock, TABLE_LABEL};
use crate::rule::{parse_comment, Rule};

/// The verbs that add a rule.
#[derive(Subcommand, Debug, Clone)]
pub enum RuleCmd {
    /// Source NAT to the outgoing interface's address
    /// (like `nft add rule inet natctl srcnat oifname IFACE ip saddr CIDR masquerade`)
    Masquerade(masquerade::Masquerade),
    /// Source NAT to an address or address range (like `... srcnat ip saddr CIDR snat ip to ADDR`)
    Snat(snat::Snat),
    /// Destination NAT, e.g. a port forward
    /// (like `... dstnat ip daddr ADDR tcp dport PORT dnat ip to ADDR:PORT`)
    Dnat(dnat::Dnat),
    /// 1:1 mapping of a whole prefix onto another of the same length, like iptables NETMAP
    /// (`... dstnat ip daddr FROM dnat ip prefix to TO` or `... srcnat ip saddr FROM snat ip prefix to TO`)
    Netmap(netmap::Netmap),
    /// Conntrack zone for traffic arriving on an interface, like iptables `CT --zone[-orig|-reply]`
    /// (`... zones iifname IFACE ct original zone set N`)
    Zone(zone::Zone),
    /// Packet mark (fwmark) for traffic arriving on an interface, for policy routing
    /// (`... marks iifname IFACE ip daddr CIDR meta mark set N`)
    Mark(mark::Mark),
    /// Connection mark by incoming interface, restored onto the replies as their fwmark
    /// (`... connmarks iifname IFACE ct mark set N` and `... ct direction reply ct mark N meta
    /// mark set ct mark`), so policy routing sends replies back the way they came
    Connmark(connmark::Connmark),
    /// Access control by incoming interface: accept or drop forwarded traffic (or, with
    /// --local, traffic to this namespace) by source, destination, protocol, port and
    /// connection direction, with a default per interface (`... forward iifname IFACE ip daddr
    /// CIDR accept`, inserted before `... forward iifname IFACE drop`)
    Filter(filter::Filter),
}

impl RuleCmd {
    /// Validates the arguments into a rule (exit 2 on bad input).
    pub fn rule(&self) -> Result<Rule> {
        let rule = match self {
            RuleCmd::Masquerade(c) => c.rule(),
            RuleCmd::Snat(c) => c.rule(),
            RuleCmd::Dnat(c) => c.rule(),
            RuleCmd::Netmap(c) => c.rule(),
            RuleCmd::Zone(c) => c.rule(),
            RuleCmd::Mark(c) => c.rule(),
            RuleCmd::Connmark(c) => c.rule(),
            RuleCmd::Filter(c) => c.rule(),
        }?;
        if rule.comment().len() > COMMENT_MAX {
            return Err(Error::invalid(format!(
                "the arguments '{}' are too long to store in the rule ({COMMENT_MAX} bytes at most)",
                rule.canonical()
            )));
        }
        Ok(rule)
    }

    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        add(ctx, &self.rule()?)
    }
}

/// The stored form: canonical arguments parsed with the command line's own parser.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct Stored {
    #[command(subcommand)]
    rule: RuleCmd,
}

thread_local! {
    /// Built once: constructing the clap command costs more than parsing one rule with it.
    static STORED: RefCell<clap::Command> = RefCell::new(Stored::command());
}

/// The ids of a dump of natctl's table that are intact, and the others (the audit, with this
/// parser to rebuild each rule from its comment).
fn classify(kernel: &[KernelRule]) -> (HashSet<String>, HashSet<String>) {
    crate::audit::classify(kernel, stored_rule)
}

/// Rebuilds a rule from a comment natctl wrote; None for anything else.
pub fn stored_rule(comment: &str) -> Option<Rule> {
    let (_, canonical) = parse_comment(comment)?;
    let matches = STORED
        .with(|cmd| {
            cmd.borrow_mut()
                .try_get_matches_from_mut(canonical.split_whitespace())
        })
        .ok()?;
    Stored::from_arg_matches(&matches).ok()?.rule.rule().ok()
}

/// What a failed read of natctl's table was doing, for error messages.
pub fn reading(ctx: &Ctx) -> String {
    format!("reading {TABLE_LABEL} in {}", ctx.ns_label())
}

/// Adds `rule` unless its id is already there, intact; one transaction, under the namespace
/// lock so concurrent natctls neither duplicate nor lose rules. (Every command takes the lock,
/// `--check` too, so its answer is what the real run would report at that moment.)
///
/// An id whose nftables rules are not exactly what it stands for (one was changed behind
/// natctl's back, a part was deleted, or a natctl before this one made the rule differently:
/// see `audit`) is replaced: the same transaction deletes every nftables rule carrying the id
/// and adds the rule anew (its counters restart).
fn add(ctx: &Ctx, rule: &Rule) -> Result<Outcome> {
    let id = rule.id();
    let what = || {
        format!(
            "adding rule {id} ({}) to {TABLE_LABEL} in {}",
            rule.canonical(),
            ctx.ns_label()
        )
    };
    let lock = lock::namespace(&ctx.ns_label())?;
    let mut seen = nft::cache::with_ids(&lock, classify, |ids| ids.presence(&id))
        .with_context(|| reading(ctx))?;
    let presence = seen.answer;
    if presence == Presence::Intact {
        return Outcome::object(false, "rule", rule.view(ctx.netns_name()));
    }
    let mut replacing = Vec::new();
    if presence == Presence::Stale {
        // (the handles need a dump, unless this process has one of this generation)
        let found = nft::cache::with_rules(&lock, classify, |kernel| {
            kernel
                .iter()
                .filter(|k| k.id() == Some(id.as_str()))
                .map(|k| (k.chain.clone(), k.handle))
                .collect::<Vec<_>>()
        })
        .with_context(|| reading(ctx))?;
        (seen.generation, seen.complete) = (found.generation, found.complete);
        replacing = found.answer;
    }
    if !ctx.check {
        for (chain, handle) in &replacing {
            common::vlog!(
                1,
                "nft delete rule inet natctl {chain} handle {handle} (carries id {id}, but is not what it stands for)"
            );
        }
        for part in &rule.parts {
            common::vlog!(
                1,
                "nft {} rule inet natctl {} ... comment \"{}\"",
                if part.at_head() { "insert" } else { "add" },
                part.stage.name().to_string_lossy(),
                rule.comment()
            );
        }
        nft::add_rule(rule, seen.complete, &replacing).with_context(what)?;
        nft::cache::committed(&lock, seen.generation, nft::cache::Change::Added(&id));
    }
    Outcome::object(true, "rule", rule.view(ctx.netns_name()))
}
