//! nsctl: network namespaces, veths, bridges, dummy and VLAN devices, links, addresses,
//! sysctls, and the namespace's UDP sockets.
//!
//! `nsctl [--ns NS] OBJECT VERB [ARGS]`, like `ip [-n NS] OBJECT VERB`. Every command talks to
//! the kernel through rtnetlink (links, addresses), nix (namespaces, mounts) or /proc/sys
//! (sysctls) or sock_diag (sockets); nothing runs `ip` or `ss`.

#![forbid(unsafe_code)]

use clap::Subcommand;
use common::{Ctx, Outcome, Result};

pub mod cmd;

pub const ABOUT: &str =
    "Network namespaces, veths, bridges, dummy and VLAN devices, links, addresses and sysctls";

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Named network namespaces under /run/netns (like `ip netns`)
    #[command(subcommand)]
    Netns(cmd::netns::Netns),
    /// Run a command inside a named namespace (like `ip netns exec`); exit status is the command's
    Exec(cmd::exec::Exec),
    /// Veth pairs, the peer optionally in another namespace (like `ip link add type veth`)
    #[command(subcommand)]
    Veth(cmd::veth::Veth),
    /// Linux bridges (like `ip link add type bridge`)
    #[command(subcommand)]
    Bridge(cmd::bridge::Bridge),
    /// Dummy devices (like `ip link add type dummy`)
    #[command(subcommand)]
    Dummy(cmd::dummy::Dummy),
    /// 802.1Q VLAN devices on a lower device (like `ip link add link DEV type vlan id N`)
    #[command(subcommand)]
    Vlan(cmd::vlan::Vlan),
    /// Any link: state, master, MTU, namespace; delete; list (like `ip link`)
    #[command(subcommand)]
    Link(cmd::link::Link),
    /// IPv4 and IPv6 addresses (like `ip addr`)
    #[command(subcommand)]
    Addr(cmd::addr::Addr),
    /// Read or set a sysctl in the namespace (like `ip netns exec NS sysctl KEY[=VALUE]`)
    Sysctl(cmd::sysctl::Sysctl),
    /// The namespace's UDP sockets, by port (like `ss -uan 'sport = :P'`)
    #[command(subcommand)]
    Sock(cmd::sock::Sock),
}

impl common::Command for Command {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Command::Netns(c) => c.run(ctx),
            Command::Exec(c) => c.run(ctx),
            Command::Veth(c) => c.run(ctx),
            Command::Bridge(c) => c.run(ctx),
            Command::Dummy(c) => c.run(ctx),
            Command::Vlan(c) => c.run(ctx),
            Command::Link(c) => c.run(ctx),
            Command::Addr(c) => c.run(ctx),
            Command::Sysctl(c) => c.run(ctx),
            Command::Sock(c) => c.run(ctx),
        }
    }

    fn batch_refusal(&self) -> Option<&'static str> {
        match self {
            Command::Exec(_) => Some(
                "exec replaces the nsctl process, so the lines after it would never run; \
                 run it on its own",
            ),
            _ => None,
        }
    }
}
