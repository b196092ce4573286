//! `natctl list`: natctl's rules as the kernel holds them, with their counters.

use clap::Args;
use common::{Context, Ctx, Outcome, Result};
use serde::Serialize;

use super::{reading, stored_rule};
use crate::nft;
use crate::rule::RuleView;

#[derive(Args, Debug)]
pub struct List {}

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
}

impl List {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let kernel = nft::list::rules().with_context(|| reading(ctx))?;
        let mut rules = Vec::with_capacity(kernel.len());
        for k in kernel {
            let Some(rule) = k.comment.as_deref().and_then(stored_rule) else {
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
            });
        }
        Outcome::listing("rules", rules)
    }
}
