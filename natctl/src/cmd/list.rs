//! `natctl list`: natctl's rules as the kernel holds them, with their counters.

use clap::Args;
use common::{Context, Ctx, Outcome, Result};
use serde_json::{json, Value};

use super::{reading, stored_rule};
use crate::nft;

#[derive(Args, Debug)]
pub struct List {}

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
            let mut obj = rule.json();
            obj.insert("chain".into(), json!(k.chain));
            obj.insert("handle".into(), json!(k.handle));
            obj.insert("packets".into(), json!(k.packets));
            obj.insert("bytes".into(), json!(k.bytes));
            rules.push(Value::Object(obj));
        }
        Outcome::json(json!({"changed": false, "rules": rules}))
    }
}
