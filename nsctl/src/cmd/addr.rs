//! `nsctl addr add|del|list`: IPv4 and IPv6 addresses (like `ip addr`).

use clap::Subcommand;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::Handle;
use serde::Serialize;
use serde_json::{json, Value};

use common::link::LinkExt;
use common::types::{parse_cidr, IfName};
use common::{Context, Ctx, Error, Outcome, Result};

use super::addr_cidr;

#[derive(Subcommand, Debug)]
pub enum Addr {
    /// Add an address, or make sure it is there (like `ip addr add CIDR dev IFACE`)
    Add {
        /// Address with prefix length, e.g. 10.0.0.1/24 or 2001:db8::1/64
        #[arg(value_parser = parse_cidr)]
        cidr: IpNet,
        /// The interface
        #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
        dev: IfName,
        /// IPv6: skip duplicate address detection, usable at once (`ip addr add ... nodad`)
        #[arg(long)]
        nodad: bool,
        /// If the address is on IFACE with another prefix length, replace it
        #[arg(long)]
        replace: bool,
    },
    /// Remove an address (like `ip addr del CIDR dev IFACE`)
    Del {
        /// Address with prefix length, as added
        #[arg(value_parser = parse_cidr)]
        cidr: IpNet,
        /// The interface
        #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
        dev: IfName,
    },
    /// List addresses, of one interface with --dev (like `ip addr show [dev IFACE]`)
    List {
        /// Only this interface
        #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
        dev: Option<IfName>,
    },
}

#[derive(Serialize)]
struct Entry {
    cidr: String,
    dev: String,
    family: &'static str,
}

fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "inet",
        IpNet::V6(_) => "inet6",
    }
}

impl Addr {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let handle = ctx.netlink()?;
        let here = ctx.ns_label();
        match self {
            Addr::Add {
                cidr,
                dev,
                nodad,
                replace,
            } => {
                let changed =
                    ctx.block_on(add(&handle, cidr, &dev, nodad, replace, &here, ctx.check))?;
                one(changed, cidr, &dev, ctx.ns_json())
            }
            Addr::Del { cidr, dev } => {
                let changed = ctx.block_on(del(&handle, cidr, &dev, &here, ctx.check))?;
                one(changed, cidr, &dev, ctx.ns_json())
            }
            Addr::List { dev } => {
                let list = ctx.block_on(list(&handle, dev.as_ref(), &here))?;
                Outcome::json(json!({"changed": false, "addresses": list}))
            }
        }
    }
}

fn one(changed: bool, cidr: IpNet, dev: &IfName, netns: Value) -> Result<Outcome> {
    Outcome::json(json!({
        "changed": changed,
        "address": {"cidr": cidr.to_string(), "dev": dev, "family": family(&cidr), "netns": netns},
    }))
}

/// The addresses on `dev` and its index.
async fn on_dev(handle: &Handle, dev: &IfName, here: &str) -> Result<(u32, Vec<AddressMessage>)> {
    let index = common::nl::link_index(handle, dev.as_str(), here).await?;
    Ok((index, super::addresses(handle, Some(index)).await?))
}

async fn add(
    handle: &Handle,
    cidr: IpNet,
    dev: &IfName,
    nodad: bool,
    replace: bool,
    here: &str,
    check: bool,
) -> Result<bool> {
    let (index, present) = on_dev(handle, dev, here).await?;
    let mut stale = None;
    for a in present {
        match addr_cidr(&a) {
            Some(c) if c == cidr => return Ok(false),
            Some(c) if c.addr() == cidr.addr() && !replace => {
                return Err(Error::failed(format!(
                    "adding address {cidr} to {dev} in {here}: {dev} already has {c} \
                     (--replace swaps it)"
                )))
            }
            Some(c) if c.addr() == cidr.addr() => stale = Some(a),
            _ => {}
        }
    }
    if check {
        return Ok(true);
    }
    if let Some(old) = stale {
        handle
            .address()
            .del(old)
            .execute()
            .await
            .with_context(|| format!("replacing the address {} on {dev} in {here}", cidr.addr()))?;
    }
    let mut req = handle.address().add(index, cidr.addr(), cidr.prefix_len());
    if nodad && cidr.addr().is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute()
        .await
        .with_context(|| format!("adding address {cidr} to {dev} in {here}"))?;
    common::vlog!(1, "added {cidr} to {dev} in {here}");
    Ok(true)
}

async fn del(handle: &Handle, cidr: IpNet, dev: &IfName, here: &str, check: bool) -> Result<bool> {
    let (_, present) = on_dev(handle, dev, here).await?;
    let Some(a) = present.into_iter().find(|a| addr_cidr(a) == Some(cidr)) else {
        return Ok(false);
    };
    if check {
        return Ok(true);
    }
    match handle.address().del(a).execute().await {
        Ok(()) => Ok(true),
        Err(e) if common::nl::is_absent(&e) => Ok(false),
        Err(e) => Err(Error::caused(
            format!("deleting address {cidr} from {dev} in {here}"),
            e,
        )),
    }
}

async fn list(handle: &Handle, dev: Option<&IfName>, here: &str) -> Result<Vec<Entry>> {
    let links = common::nl::links(handle).await?;
    let name_of = |i: u32| {
        links
            .iter()
            .find(|l| l.header.index == i)
            .map(|l| l.name().unwrap_or_default().to_string())
            .unwrap_or_else(|| i.to_string())
    };
    let index = match dev {
        Some(d) => Some(common::nl::link_index(handle, d.as_str(), here).await?),
        None => None,
    };
    Ok(super::addresses(handle, index)
        .await?
        .iter()
        .filter_map(|a| {
            addr_cidr(a).map(|c| Entry {
                cidr: c.to_string(),
                dev: name_of(a.header.index),
                family: family(&c),
            })
        })
        .collect())
}
