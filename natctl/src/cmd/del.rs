//! `natctl del ID`: removes the rule with that id; an id that is not there is `changed:false`.

use clap::Args;
use common::{Context, Ctx, Outcome, Result};
use serde::Serialize;

use super::{reading, stored_rule};
use crate::nft::{self, lock, TABLE_LABEL};
use crate::rule::{parse_id, RuleView};

#[derive(Args, Debug)]
pub struct Del {
    /// The rule's id, as printed by `add` and `list`
    #[arg(value_name = "ID", value_parser = parse_id)]
    pub id: String,
}

impl Del {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let lock = lock::namespace(&ctx.ns_label())?;
        // (a batch deleting many ids dumps the table once: see `cache`)
        let seen = nft::cache::with_rules(&lock, super::classify, |kernel| {
            let found: Vec<_> = kernel
                .iter()
                .filter(|k| k.id() == Some(self.id.as_str()))
                .collect();
            let rule = found
                .first()
                .and_then(|k| k.comment.as_deref().and_then(stored_rule));
            let targets: Vec<(String, u64)> =
                found.iter().map(|k| (k.chain.clone(), k.handle)).collect();
            (targets, rule)
        })
        .with_context(|| reading(ctx))?;
        let (targets, rule) = seen.answer;
        // Deleting what is absent succeeds with changed:false (the contract's idempotency).
        if targets.is_empty() {
            common::vlog!(
                1,
                "no natctl rule with id {} in {}",
                self.id,
                ctx.ns_label()
            );
            return Outcome::object(false, "rule", self.unknown(ctx));
        }
        if !ctx.check {
            nft::delete_rules(&targets).with_context(|| {
                format!(
                    "deleting rule {} from {TABLE_LABEL} in {}",
                    self.id,
                    ctx.ns_label()
                )
            })?;
            let change = nft::cache::Change::Deleted(&self.id);
            nft::cache::committed(&lock, seen.generation, change);
        }
        let removed = match rule {
            Some(r) => Removed::Rule(r.view(ctx.netns_name())),
            None => self.unknown(ctx),
        };
        Outcome::object(true, "rule", removed)
    }

    fn unknown(&self, ctx: &Ctx) -> Removed {
        Removed::Id {
            id: self.id.clone(),
            netns: ctx.netns_name(),
        }
    }
}

/// What `del` prints as its `rule`: the whole rule when its comment says what it was, else
/// only the id (an id that is not there, or a rule whose comment no longer parses).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Removed {
    Rule(RuleView),
    Id { id: String, netns: Option<String> },
}
