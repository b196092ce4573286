//! `natctl list`: natctl's rules as the kernel holds them, with their counters, each checked
//! against what its id stands for (`audit`); and the other tables of the namespace.

use clap::Args;
use common::{Context, Ctx, Outcome, Result};
use serde::Serialize;

use super::reading;
use crate::audit::{self, Missing};
use crate::nft::{self, TABLE_LABEL};
use crate::rule::RuleView;

#[derive(Args, Debug)]
pub struct List {}

/// `{"changed":false,"rules":[..],"foreign_tables":[..]}`.
#[derive(Debug, Serialize)]
pub struct Listing {
    pub rules: Vec<Listed>,
    /// Every other nftables table in the namespace, as `FAMILY NAME` (`"inet filter"`,
    /// `"ip nat"`): something besides natctl filters or translates there.
    pub foreign_tables: Vec<String>,
}

/// One kernel rule: the rule natctl wrote (from its comment) and where and how often it ran.
/// Each member is what `nft -j list table inet natctl` shows of that rule (docs/natctl.md).
#[derive(Debug, Serialize)]
pub struct Listed {
    #[serde(flatten)]
    pub rule: RuleView,
    /// The base chain (nft `chain`).
    pub chain: String,
    /// The rule's handle in its chain (nft `handle`).
    pub handle: u64,
    /// The rule's counter (nft `counter` `packets` and `bytes`).
    pub packets: u64,
    pub bytes: u64,
    /// Its expressions are not those of any part of the rule its comment names (changed with
    /// `nft` keeping the comment), or it repeats a part another nftables rule already is.
    pub tampered: bool,
    /// Every part of the rule its comment names is in the kernel (`missing` is empty).
    pub complete: bool,
    /// The parts of that rule no nftables rule is: their index (docs/natctl.md) and chain.
    pub missing: Vec<Missing>,
}

impl List {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let kernel = nft::list::rules().with_context(|| reading(ctx))?;
        let mut foreign_tables: Vec<String> = nft::list::tables()
            .with_context(|| format!("listing the nftables tables in {}", ctx.ns_label()))?
            .into_iter()
            .map(|(family, name)| format!("{family} {name}"))
            .filter(|t| format!("table {t}") != TABLE_LABEL)
            .collect();
        foreign_tables.sort();
        let audit = audit::audit(&kernel, super::stored_rule);
        let mut rules = Vec::with_capacity(kernel.len());
        for (k, tampered) in kernel.into_iter().zip(audit.tampered) {
            let found = k.id().and_then(|id| audit.ids.get(id));
            let Some((rule, missing)) =
                found.and_then(|a| a.rule.as_ref().map(|r| (r, a.missing.clone())))
            else {
                common::vlog!(
                    1,
                    "skipping rule handle {} in chain {}: not natctl's",
                    k.handle,
                    k.chain
                );
                continue;
            };
            rules.push(Listed {
                rule: rule.view(ctx.netns_name()),
                chain: k.chain,
                handle: k.handle,
                packets: k.packets,
                bytes: k.bytes,
                tampered,
                complete: missing.is_empty(),
                missing,
            });
        }
        Outcome::report(
            false,
            Listing {
                rules,
                foreign_tables,
            },
        )
    }
}
