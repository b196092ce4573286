//! `natctl del ID`: removes the rule with that id; an id that is not there is `changed:false`.

use clap::Args;
use common::{Context, Ctx, Outcome, Result};
use serde::Serialize;

use super::{reading, stored_rule};
use crate::nft::dispatch::{self, Key};
use crate::nft::list::KernelRule;
use crate::nft::{self, lock, pending, Deletion, Stage, TABLE_LABEL};
use crate::rule::{parse_id, Rule, RuleView};

#[derive(Args, Debug)]
pub struct Del {
    /// The rule's id, as printed by `add` and `list`
    #[arg(value_name = "ID", value_parser = parse_id)]
    pub id: String,
}

impl Del {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let lock = lock::namespace(&ctx.ns_label())?;
        // (the rules the batch's deletions before this one, pending, take away)
        let (deleting, pending) = pending::deleting(&lock, &self.id);
        // (only the chains that hold the id's rules, where the store knows them; else the
        // whole table, once for a batch deleting many ids: see `cache`)
        let seen = nft::cache::with_rules_of(&lock, super::classify, &self.id, |kernel| {
            let found: Vec<_> = kernel
                .iter()
                .filter(|k| k.id() == Some(self.id.as_str()) && !pending)
                .collect();
            let rule = found
                .first()
                .and_then(|k| k.comment.as_deref().and_then(stored_rule));
            let rules: Vec<(String, u64)> =
                found.iter().map(|k| (k.chain.clone(), k.handle)).collect();
            let emptied = rule
                .as_ref()
                .map_or_else(Vec::new, |r| emptied(r, kernel, &rules, &deleting));
            (Deletion { rules, emptied }, rule)
        })
        .with_context(|| reading(ctx))?;
        let (deletion, rule) = seen.answer;
        // Deleting what is absent succeeds with changed:false (the contract's idempotency).
        if deletion.rules.is_empty() {
            common::vlog!(
                1,
                "no natctl rule with id {} in {}",
                self.id,
                ctx.ns_label()
            );
            return Outcome::object(false, "rule", self.unknown(ctx));
        }
        if !ctx.check {
            let del = pending::Del {
                id: self.id.clone(),
                deletion,
                what: format!(
                    "deleting rule {} from {TABLE_LABEL} in {}",
                    self.id,
                    ctx.ns_label()
                ),
            };
            if ctx.defer && pending::may_defer(&lock) {
                pending::defer(&lock, seen.generation, del);
            } else {
                nft::delete_rules(&del.deletion).with_context(|| del.what.clone())?;
                let change = nft::cache::Change::Deleted(&self.id);
                nft::cache::committed(&lock, seen.generation, &[change]);
            }
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

/// The key chains (stage, key) of RULE's parts that hold no rule but TARGETS (chain, handle)
/// in KERNEL, the table's dump, once the rules DELETING (of the deletions before, pending) are
/// gone: deleting TARGETS empties them, so they go too.
fn emptied(
    rule: &Rule,
    kernel: &[KernelRule],
    targets: &[(String, u64)],
    deleting: &[(String, u64)],
) -> Vec<(Stage, Key)> {
    let mut out: Vec<(Stage, Key)> = Vec::new();
    for part in &rule.parts {
        let Some(key) = dispatch::key_of(part) else {
            continue;
        };
        let name = key.chain_name(part.stage);
        let others = kernel.iter().filter(|k| k.chain == name).any(|k| {
            let at = (k.chain.clone(), k.handle);
            !targets.contains(&at) && !deleting.contains(&at)
        });
        let present = kernel.iter().any(|k| k.chain == name);
        if present && !others && !out.contains(&(part.stage, key.clone())) {
            out.push((part.stage, key));
        }
    }
    out
}

/// What `del` prints as its `rule`: the whole rule when its comment says what it was, else
/// only the id (an id that is not there, or a rule whose comment no longer parses).
#[derive(Debug, Serialize)]
#[serde(untagged)]
enum Removed {
    Rule(RuleView),
    Id { id: String, netns: Option<String> },
}
