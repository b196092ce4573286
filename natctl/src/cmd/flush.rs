//! `natctl flush`: removes natctl's table and nothing else.

use clap::Args;
use common::{Context, Ctx, Outcome, Result};
use serde_json::json;

use super::reading;
use crate::nft::{self, lock, TABLE_LABEL};

#[derive(Args, Debug)]
pub struct Flush {}

impl Flush {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let _lock = lock::namespace(&ctx.ns_label())?;
        let exists = nft::list::table_exists().with_context(|| reading(ctx))?;
        let removed = if exists {
            nft::list::rules().with_context(|| reading(ctx))?.len()
        } else {
            0
        };
        if exists && !ctx.check {
            nft::delete_table()
                .with_context(|| format!("deleting {TABLE_LABEL} in {}", ctx.ns_label()))?;
        }
        Outcome::json(json!({"changed": exists, "table": "inet natctl", "removed_rules": removed}))
    }
}
