//! `natctl flush`: removes natctl's table and nothing else.

use clap::Args;
use common::{Context, Ctx, Outcome, Result};
use serde::Serialize;

use super::reading;
use crate::nft::{self, lock, TABLE_LABEL};

#[derive(Args, Debug)]
pub struct Flush {}

/// `{"changed":..,"table":"inet natctl","netns":..,"removed_rules":N}`.
#[derive(Debug, Serialize)]
pub struct Flushed {
    /// Always `inet natctl` (nft's family and name of the table).
    pub table: &'static str,
    pub netns: Option<String>,
    /// How many rules the table held (natctl's and any others put into it).
    pub removed_rules: usize,
}

impl Flush {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let lock = lock::namespace(&ctx.ns_label())?;
        let exists = nft::list::table_exists().with_context(|| reading(ctx))?;
        let removed = if exists {
            nft::list::rules().with_context(|| reading(ctx))?.len()
        } else {
            0
        };
        if exists && !ctx.check {
            nft::delete_table()
                .with_context(|| format!("deleting {TABLE_LABEL} in {}", ctx.ns_label()))?;
            if let Some(cookie) = lock.cookie {
                nft::store::forget(cookie);
            }
        }
        Outcome::report(
            exists,
            Flushed {
                table: "inet natctl",
                netns: ctx.netns_name(),
                removed_rules: removed,
            },
        )
    }
}
