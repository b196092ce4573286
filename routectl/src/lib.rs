//! routectl: policy routing rules, routes in any table, and VRF devices.

#![forbid(unsafe_code)]

use clap::Subcommand;
use common::{Ctx, Outcome, Result};

pub mod cmd;
pub mod iproute2;
pub mod table;

pub const ABOUT: &str = "Policy routing rules, routes in any table, and VRF devices";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Policy routing rules (like `ip rule`)
    #[command(subcommand)]
    Rule(cmd::rule::RuleCmd),
    /// Routes in the main or any other table (like `ip route`)
    #[command(subcommand)]
    Route(cmd::route::RouteCmd),
    /// VRF devices and their members (like `ip link add type vrf` / `ip link set master`)
    #[command(subcommand)]
    Vrf(cmd::vrf::VrfCmd),
}

impl common::Command for Command {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Command::Rule(c) => c.run(ctx),
            Command::Route(c) => c.run(ctx),
            Command::Vrf(c) => c.run(ctx),
        }
    }
}
