//! nsctl: network namespaces, veths, bridges, links, addresses and sysctls.

use clap::Subcommand;
use common::{Ctx, Outcome, Result};

pub const ABOUT: &str = "Network namespaces, veths, bridges, links, addresses and sysctls";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Probe
    Probe {
        #[arg(long)]
        dev: common::types::IfName,
    },
}

impl common::Command for Command {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Command::Probe { dev } => {
                let h = ctx.netlink()?;
                let idx =
                    ctx.block_on(common::nl::link_index(&h, dev.as_str(), &ctx.ns_label()))?;
                Outcome::json(
                    serde_json::json!({"changed": false, "index": idx, "ns": ctx.ns_json()}),
                )
            }
        }
    }
}
