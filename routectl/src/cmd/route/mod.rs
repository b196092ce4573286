//! `routectl route`: routes in the main or any other table (`ip route`).
//!
//! A route is identified like the kernel does: family, table, destination and metric. The same
//! key with the same next hop(s) and settings is "already there"; with different ones it needs
//! --replace.
//!
//! Here are the command line and the verbs; `want` is the route asked for and its netlink
//! message, `kernel` reads routes back, `view` prints them as `ip` does.

use std::net::IpAddr;

use clap::Subcommand;
use common::types::{parse_addr, IfName};
use common::{Context, Ctx, Error, Outcome, Result};
use netlink_packet_route::route::RouteMessage;

use super::{Dest, Family, FamilyArgs};
use crate::table::{self, Table, TableSel};

mod kernel;
mod view;
mod want;

use kernel::{dump, gateway_dev, Route};
use view::{dest_label, RouteView};
use want::{kind_label, Kind, Nexthop, Proto, Want};

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// Add a route (like `ip route add`); the same route already present: changed: false
    Add {
        #[command(flatten)]
        route: RouteArgs,
        /// Preferred source address for traffic using the route (`ip route ... src ADDR`)
        #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
        src: Option<IpAddr>,
        /// Use the gateway even if no prefix of the device covers it (`ip route ... onlink`)
        #[arg(long)]
        onlink: bool,
        /// Path MTU of the route, 68-65535 (`ip route ... mtu N`)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
        mtu: Option<u32>,
        /// Change a route with the same destination, table and metric but another next hop
        /// (`ip route replace`)
        #[arg(long)]
        replace: bool,
    },
    /// Delete the matching routes (like `ip route del`); none present: changed: false
    Del {
        #[command(flatten)]
        route: RouteArgs,
    },
    /// List routes read back from the kernel (like `ip -j -d route show table T`)
    List {
        /// Table to list: a number, main, local, default, a name from rt_tables, or all
        /// (`ip route show table T`); default main
        #[arg(long, value_name = "T|all", add = common::complete::names(table::selections))]
        table: Option<TableSel>,
        #[command(flatten)]
        family: FamilyArgs,
    },
}

/// Destination, next hop, table, metric, type and protocol: what add and del share.
#[derive(clap::Args, Debug, Clone)]
pub struct RouteArgs {
    /// Destination prefix, one address, or `default` (`ip route add DEST`)
    #[arg(value_name = "DEST|default")]
    dest: Dest,
    /// Gateway address (`ip route ... via ADDR`)
    #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
    via: Option<IpAddr>,
    /// Outgoing interface (`ip route ... dev IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    dev: Option<IfName>,
    /// One next hop of a multipath route, repeated (`ip route ... nexthop via ADDR dev IFACE
    /// weight N`); weight 1-256, default 1
    #[arg(long, value_name = "via=ADDR,dev=IFACE,weight=N", conflicts_with_all = ["via", "dev"])]
    nexthop: Vec<Nexthop>,
    /// Table: 1-4294967294, main, local, default or a name from rt_tables
    /// (`ip route ... table T`); default main (local for --type local)
    #[arg(long, value_name = "T", add = common::complete::names(table::names))]
    table: Option<Table>,
    /// Metric, also called preference (`ip route ... metric N`); default 0 for IPv4, 1024 for
    /// IPv6, as the kernel does
    #[arg(long, value_name = "N")]
    metric: Option<u32>,
    /// Route type (`ip route add TYPE ...`); default unicast
    #[arg(long = "type", value_name = "TYPE")]
    kind: Option<Kind>,
    /// Routing protocol, a name from rt_protos or a number 0-255 (`ip route ... proto P`);
    /// routes are added as `static` without it
    #[arg(long, value_name = "P")]
    proto: Option<Proto>,
    #[command(flatten)]
    family: FamilyArgs,
}

impl RouteArgs {
    /// The route these arguments ask for (`src` is add's `--src`).
    fn want(&self, src: Option<IpAddr>) -> Result<Want> {
        let mut addrs = Vec::new();
        if let Dest::Prefix(p) = self.dest {
            addrs.push((format!("destination {p}"), p.addr()));
        }
        if let Some(v) = self.via {
            addrs.push((format!("--via {v}"), v));
        }
        for hop in &self.nexthop {
            if let Some(v) = hop.via {
                addrs.push((format!("--nexthop via={v}"), v));
            }
        }
        if let Some(s) = src {
            addrs.push((format!("--src {s}"), s));
        }
        let family = self.family.resolve(&addrs)?;
        let dst = match (self.dest, family) {
            (Dest::Prefix(p), _) => p,
            (Dest::Default, Family::V4) => "0.0.0.0/0".parse().expect("literal"),
            (Dest::Default, Family::V6) => "::/0".parse().expect("literal"),
        };
        if let Some(k) = self.kind.filter(|k| k.rejects()) {
            if self.via.is_some() || self.dev.is_some() || !self.nexthop.is_empty() {
                return Err(Error::invalid(format!(
                    "route {dst} --type {}: a route of this type has no --via, --dev or --nexthop",
                    kind_label(k)
                )));
            }
        }
        let default_table = if self.kind == Some(Kind::Local) {
            table::LOCAL
        } else {
            table::MAIN
        };
        Ok(Want {
            family,
            dst,
            kind: self.kind,
            via: self.via,
            dev: self.dev.clone(),
            nexthops: self.nexthop.clone(),
            src,
            table: self.table.map_or(default_table, |t| t.0),
            metric: self.metric,
            proto: self.proto,
            onlink: false,
            mtu: None,
        })
    }
}

impl RouteCmd {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            RouteCmd::Add {
                route,
                src,
                onlink,
                mtu,
                replace,
            } => add(ctx, &route.want(src)?.adding(onlink, mtu)?, replace),
            RouteCmd::Del { route } => del(ctx, &route.want(None)?),
            RouteCmd::List { table, family } => list(ctx, table, family),
        }
    }
}

fn list(ctx: &Ctx, table: Option<TableSel>, family: FamilyArgs) -> Result<Outcome> {
    let sel = table.unwrap_or(TableSel::One(Table(table::MAIN)));
    let handle = ctx.netlink()?;
    let routes = ctx
        .block_on(dump(&handle, &family.families(), &sel))
        .with_context(|| format!("listing routes in {}", ctx.ns_label()))?;
    let views: Vec<RouteView> = routes
        .iter()
        .map(|(_, r)| r.view(ctx.netns_name()))
        .collect();
    Outcome::listing("routes", views)
}

fn add(ctx: &Ctx, want: &Want, replace: bool) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let what = || format!("adding route {want} in {}", ctx.ns_label());
    let index = |dev: Option<&IfName>| -> Result<Option<u32>> {
        dev.map(|d| {
            ctx.block_on(common::nl::link_index(&handle, d.as_str(), &ctx.ns_label()))
                .with_context(what)
        })
        .transpose()
    };
    let oif = index(want.dev.as_ref())?;
    let hop_oifs = want
        .nexthops
        .iter()
        .map(|h| index(h.dev.as_ref()))
        .collect::<Result<Vec<_>>>()?;
    let routes = ctx
        .block_on(dump(&handle, &[want.family], &want.tables()))
        .with_context(what)?;
    if let Some((_, r)) = routes.iter().find(|(_, r)| want.same_route(r)) {
        return Outcome::object(false, "route", r.view(ctx.netns_name()));
    }
    if let Some((_, r)) = routes.iter().find(|(_, r)| want.same_key(r)) {
        if !replace {
            return Err(Error::failed(format!(
                "{}: a route to {} in table {} with metric {} already exists ({}); use --replace to change it",
                what(),
                dest_label(r.dst),
                table::name(want.table),
                r.metric,
                r.describe()
            )));
        }
    }
    let msg = want.message(oif, &hop_oifs)?;
    if ctx.check {
        let dev_of = |dev: Option<&IfName>, via: Option<IpAddr>| match (dev, via) {
            (Some(d), _) => Some(d.to_string()),
            (None, Some(gw)) => ctx.block_on(gateway_dev(&handle, gw)),
            (None, None) => None,
        };
        let dev = dev_of(want.dev.as_ref(), want.via);
        let hop_devs = want
            .nexthops
            .iter()
            .map(|h| dev_of(h.dev.as_ref(), h.via))
            .collect();
        let predicted = want.predicted(dev, hop_devs);
        return Outcome::object(true, "route", predicted.view(ctx.netns_name()));
    }
    let verb = if replace { "replace" } else { "add" };
    common::vlog!(1, "ip route {verb} {want} (in {})", ctx.ns_label());
    let mut req = handle.route().add(msg);
    if replace {
        req = req.replace();
    }
    ctx.block_on(req.execute()).with_context(what)?;
    let after = ctx
        .block_on(dump(&handle, &[want.family], &want.tables()))
        .with_context(what)?;
    let added = after
        .iter()
        .map(|(_, r)| r)
        .find(|r| want.same_route(r))
        .or_else(|| after.iter().map(|(_, r)| r).find(|r| want.same_key(r)))
        .ok_or_else(|| Error::failed(format!("{}: the route is not there afterwards", what())))?;
    Outcome::object(true, "route", added.view(ctx.netns_name()))
}

fn del(ctx: &Ctx, want: &Want) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let what = || format!("deleting route {want} in {}", ctx.ns_label());
    let routes = ctx
        .block_on(dump(&handle, &[want.family], &want.tables()))
        .with_context(what)?;
    let found: Vec<&(RouteMessage, Route)> =
        routes.iter().filter(|(_, r)| want.selects(r)).collect();
    for (_, r) in found.iter().filter(|_| !ctx.check) {
        let (dest, ns) = (dest_label(r.dst), ctx.ns_label());
        common::vlog!(1, "ip route del {dest} {} (in {ns})", r.describe());
    }
    let delete = |msg| handle.route().del(msg).execute();
    let view = |r: &Route| r.view(ctx.netns_name());
    super::delete_found(ctx, "routes", &found, delete, view, what)
}
