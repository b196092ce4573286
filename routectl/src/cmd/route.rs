//! `routectl route`: routes in the main or any other table (`ip route`).
//!
//! A route is identified like the kernel does: family, table, destination and metric. The same
//! key with the same next hop is "already there"; with a different next hop it needs --replace.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;

use clap::Subcommand;
use common::types::{parse_addr, IfName};
use common::{Context, Ctx, Error, Outcome, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteScope, RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use serde_json::{json, Value};

use super::{link_names, Dest, Family, FamilyArgs};
use crate::table::{self, Table, TableSel};

#[derive(Subcommand, Debug)]
pub enum RouteCmd {
    /// Add a route (like `ip route add`); the same route already present: changed: false
    Add {
        #[command(flatten)]
        route: RouteArgs,
        /// Preferred source address for traffic using the route (`ip route ... src ADDR`)
        #[arg(long, value_name = "ADDR", value_parser = parse_addr)]
        src: Option<IpAddr>,
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
    /// List routes read back from the kernel (like `ip -j route show table T`)
    List {
        /// Table to list: a number, main, local, default, or all (`ip route show table T`);
        /// default main
        #[arg(long, value_name = "T|all", add = common::complete::names(table::selections))]
        table: Option<TableSel>,
        #[command(flatten)]
        family: FamilyArgs,
    },
}

/// Destination, next hop, table and metric: what add and del share.
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
    /// Table: 1-4294967294, main, local or default (`ip route ... table T`); default main
    #[arg(long, value_name = "T", add = common::complete::names(table::names))]
    table: Option<Table>,
    /// Metric, also called preference (`ip route ... metric N`); default 0 for IPv4, 1024 for
    /// IPv6, as the kernel does
    #[arg(long, value_name = "N")]
    metric: Option<u32>,
    #[command(flatten)]
    family: FamilyArgs,
}

/// A route as the user asked for it.
#[derive(Debug, Clone)]
struct Want {
    family: Family,
    dst: IpNet,
    via: Option<IpAddr>,
    dev: Option<IfName>,
    src: Option<IpAddr>,
    table: u32,
    metric: Option<u32>,
}

impl Want {
    fn new(a: &RouteArgs, src: Option<IpAddr>) -> Result<Want> {
        let mut addrs = Vec::new();
        if let Dest::Prefix(p) = a.dest {
            addrs.push((format!("destination {p}"), p.addr()));
        }
        if let Some(v) = a.via {
            addrs.push((format!("--via {v}"), v));
        }
        if let Some(s) = src {
            addrs.push((format!("--src {s}"), s));
        }
        let family = a.family.resolve(&addrs)?;
        let dst = match (a.dest, family) {
            (Dest::Prefix(p), _) => p,
            (Dest::Default, Family::V4) => "0.0.0.0/0".parse().expect("literal"),
            (Dest::Default, Family::V6) => "::/0".parse().expect("literal"),
        };
        Ok(Want {
            family,
            dst,
            via: a.via,
            dev: a.dev.clone(),
            src,
            table: a.table.map_or(table::MAIN, |t| t.0),
            metric: a.metric,
        })
    }

    /// The metric the kernel will store when none is given.
    fn effective_metric(&self) -> u32 {
        self.metric.unwrap_or(match self.family {
            Family::V4 => 0,
            Family::V6 => 1024,
        })
    }

    /// Same key (family, table, destination, metric): the kernel holds one such route.
    fn same_key(&self, r: &Route) -> bool {
        r.family == self.family
            && r.table == self.table
            && r.dst == self.dst
            && r.metric == self.effective_metric()
            && r.tos == 0
    }

    /// Same key and the same next hop: nothing to do.
    fn same_route(&self, r: &Route) -> bool {
        self.same_key(r)
            && r.kind == u8::from(RouteType::Unicast)
            && r.gateway == self.via
            && self
                .dev
                .as_ref()
                .is_none_or(|d| r.dev.as_deref() == Some(d.as_str()))
            && r.prefsrc == self.src
    }

    /// For del: destination and table, and whatever else was given.
    fn selects(&self, r: &Route) -> bool {
        r.family == self.family
            && r.table == self.table
            && r.dst == self.dst
            && self.metric.is_none_or(|m| r.metric == m)
            && self.via.is_none_or(|v| r.gateway == Some(v))
            && self
                .dev
                .as_ref()
                .is_none_or(|d| r.dev.as_deref() == Some(d.as_str()))
    }

    fn message(&self, oif: Option<u32>) -> Result<RouteMessage> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.dst.addr(), self.dst.prefix_len())
            .map_err(|e| self.invalid(e))?
            .table_id(self.table);
        if let Some(v) = self.via {
            b = b.gateway(v).map_err(|e| self.invalid(e))?;
        } else if self.family == Family::V4 {
            // A route straight out of a device, like `ip route add X dev D`.
            b = b.scope(RouteScope::Link);
        }
        if let Some(s) = self.src {
            b = b.pref_source(s).map_err(|e| self.invalid(e))?;
        }
        if let Some(i) = oif {
            b = b.output_interface(i);
        }
        if let Some(m) = self.metric {
            b = b.priority(m);
        }
        Ok(b.build())
    }

    fn invalid(&self, e: impl fmt::Display) -> Error {
        Error::invalid(format!("route {self}: {e}"))
    }

    /// How the route reads back before it exists (for --check).
    fn predicted(&self) -> Value {
        Route {
            family: self.family,
            kind: u8::from(RouteType::Unicast),
            dst: self.dst,
            gateway: self.via,
            dev: self.dev.as_ref().map(|d| d.to_string()),
            prefsrc: self.src,
            table: self.table,
            metric: self.effective_metric(),
            protocol: 4,
            scope: if self.via.is_none() && self.family == Family::V4 {
                253
            } else {
                0
            },
            tos: 0,
        }
        .json()
    }
}

/// `default via 10.0.0.1 dev eth0 table 100 metric 5`, as `ip route` writes it.
impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.dst.prefix_len() == 0 {
            write!(f, "default")?;
        } else {
            write!(f, "{}", self.dst)?;
        }
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        if let Some(s) = self.src {
            write!(f, " src {s}")?;
        }
        if self.table != table::MAIN {
            write!(f, " table {}", table::name(self.table))?;
        }
        if let Some(m) = self.metric {
            write!(f, " metric {m}")?;
        }
        Ok(())
    }
}

/// A route read back from the kernel.
#[derive(Debug, Clone)]
struct Route {
    family: Family,
    kind: u8,
    dst: IpNet,
    gateway: Option<IpAddr>,
    dev: Option<String>,
    prefsrc: Option<IpAddr>,
    table: u32,
    metric: u32,
    protocol: u8,
    scope: u8,
    tos: u8,
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

impl Route {
    fn parse(msg: &RouteMessage, names: &HashMap<u32, String>) -> Option<Route> {
        let h = &msg.header;
        let family = Family::from_netlink(h.address_family)?;
        let unspecified: IpAddr = match family {
            Family::V4 => std::net::Ipv4Addr::UNSPECIFIED.into(),
            Family::V6 => std::net::Ipv6Addr::UNSPECIFIED.into(),
        };
        let mut r = Route {
            family,
            kind: u8::from(h.kind),
            dst: IpNet::new(unspecified, 0).ok()?,
            gateway: None,
            dev: None,
            prefsrc: None,
            table: u32::from(h.table),
            metric: 0,
            protocol: u8::from(h.protocol),
            scope: u8::from(h.scope),
            tos: h.tos,
        };
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(d) => {
                    r.dst = IpNet::new(ip_of(d)?, h.destination_prefix_length).ok()?;
                }
                RouteAttribute::Gateway(g) => r.gateway = ip_of(g),
                RouteAttribute::Via(RouteVia::Inet6(v6)) => r.gateway = Some((*v6).into()),
                RouteAttribute::Via(RouteVia::Inet(v4)) => r.gateway = Some((*v4).into()),
                RouteAttribute::Oif(i) => {
                    r.dev = Some(names.get(i).cloned().unwrap_or_else(|| i.to_string()));
                }
                RouteAttribute::PrefSource(s) => r.prefsrc = ip_of(s),
                RouteAttribute::Table(t) => r.table = *t,
                RouteAttribute::Priority(m) => r.metric = *m,
                _ => {}
            }
        }
        Some(r)
    }

    /// Like one entry of `ip -j route show`, with every key always present.
    fn json(&self) -> Value {
        let dst = if self.dst.prefix_len() == 0 {
            "default".to_string()
        } else {
            self.dst.to_string()
        };
        json!({
            "family": self.family.inet_name(),
            "type": type_name(self.kind),
            "dst": dst,
            "gateway": self.gateway.map(|g| g.to_string()),
            "dev": self.dev,
            "prefsrc": self.prefsrc.map(|s| s.to_string()),
            "table": table::name(self.table),
            "metric": self.metric,
            "protocol": super::protocol_name(self.protocol),
            "scope": scope_name(self.scope),
        })
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(g) = self.gateway {
            s.push_str(&format!(" via {g}"));
        }
        if let Some(d) = &self.dev {
            s.push_str(&format!(" dev {d}"));
        }
        if let Some(p) = self.prefsrc {
            s.push_str(&format!(" src {p}"));
        }
        if self.kind != u8::from(RouteType::Unicast) {
            s.push_str(&format!(" type {}", type_name(self.kind)));
        }
        s.trim_start().to_string()
    }
}

/// Route types as `ip` names them (`rtnl_rtntype_n2a`).
fn type_name(t: u8) -> String {
    match t {
        0 => "none",
        1 => "unicast",
        2 => "local",
        3 => "broadcast",
        4 => "anycast",
        5 => "multicast",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        9 => "throw",
        10 => "nat",
        11 => "xresolve",
        n => return n.to_string(),
    }
    .to_string()
}

/// Scopes as `ip` names them (`rtnl_rtscope_n2a`).
fn scope_name(s: u8) -> String {
    match s {
        0 => "global",
        200 => "site",
        253 => "link",
        254 => "host",
        255 => "nowhere",
        n => return n.to_string(),
    }
    .to_string()
}

/// Every route of the given families in every table.
async fn dump(handle: &Handle, families: &[Family]) -> Result<Vec<(RouteMessage, Route)>> {
    let names = link_names(handle).await?;
    let mut out = Vec::new();
    for fam in families {
        let query = match fam {
            Family::V4 => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            Family::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        };
        let msgs: Vec<RouteMessage> = handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .with_context(|| format!("listing {} routes", fam.inet_name()))?;
        out.extend(msgs.into_iter().filter_map(|m| {
            let r = Route::parse(&m, &names)?;
            Some((m, r))
        }));
    }
    Ok(out)
}

impl RouteCmd {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            RouteCmd::Add {
                route,
                src,
                replace,
            } => add(ctx, &Want::new(&route, src)?, replace),
            RouteCmd::Del { route } => del(ctx, &Want::new(&route, None)?),
            RouteCmd::List { table, family } => {
                let families = match (family.ipv4, family.ipv6) {
                    (true, _) => vec![Family::V4],
                    (_, true) => vec![Family::V6],
                    _ => vec![Family::V4, Family::V6],
                };
                let sel = table.unwrap_or(TableSel::One(Table(table::MAIN)));
                let handle = ctx.netlink()?;
                let routes = ctx
                    .block_on(dump(&handle, &families))
                    .with_context(|| format!("listing routes in {}", ctx.ns_label()))?;
                let routes: Vec<Value> = routes
                    .iter()
                    .filter(|(_, r)| sel.contains(r.table))
                    .map(|(_, r)| r.json())
                    .collect();
                Outcome::json(json!({"changed": false, "routes": routes}))
            }
        }
    }
}

fn add(ctx: &Ctx, want: &Want, replace: bool) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let what = || format!("adding route {want} in {}", ctx.ns_label());
    let oif = match &want.dev {
        Some(d) => Some(
            ctx.block_on(common::nl::link_index(&handle, d.as_str(), &ctx.ns_label()))
                .with_context(what)?,
        ),
        None => None,
    };
    let routes = ctx
        .block_on(dump(&handle, &[want.family]))
        .with_context(what)?;
    if let Some((_, r)) = routes.iter().find(|(_, r)| want.same_route(r)) {
        return Outcome::json(json!({"changed": false, "route": r.json()}));
    }
    if let Some((_, r)) = routes.iter().find(|(_, r)| want.same_key(r)) {
        if !replace {
            return Err(Error::failed(format!(
                "{}: a route to {} in table {} with metric {} already exists ({}); use --replace to change it",
                what(),
                r.json()["dst"].as_str().unwrap_or_default(),
                table::name(want.table),
                r.metric,
                r.describe()
            )));
        }
    }
    let msg = want.message(oif)?;
    if ctx.check {
        let mut predicted = want.predicted();
        if let (None, Some(gw)) = (&want.dev, want.via) {
            predicted["dev"] = json!(ctx.block_on(gateway_dev(&handle, gw)));
        }
        return Outcome::json(json!({"changed": true, "route": predicted}));
    }
    let verb = if replace { "replace" } else { "add" };
    common::vlog!(1, "ip route {verb} {want} (in {})", ctx.ns_label());
    let mut req = handle.route().add(msg);
    if replace {
        req = req.replace();
    }
    ctx.block_on(req.execute()).with_context(what)?;
    let after = ctx
        .block_on(dump(&handle, &[want.family]))
        .with_context(what)?;
    let added = after
        .iter()
        .find(|(_, r)| want.same_route(r))
        .map_or_else(|| want.predicted(), |(_, r)| r.json());
    Outcome::json(json!({"changed": true, "route": added}))
}

/// The device the kernel would pick to reach `gw` (`ip route get GW`), to predict `dev`.
async fn gateway_dev(handle: &Handle, gw: IpAddr) -> Option<String> {
    let host = if gw.is_ipv4() { 32 } else { 128 };
    let query = RouteMessageBuilder::<IpAddr>::new()
        .destination_prefix(gw, host)
        .ok()?
        .build();
    let msg = handle
        .route()
        .get(query)
        .execute()
        .try_next()
        .await
        .ok()??;
    let names = link_names(handle).await.ok()?;
    Route::parse(&msg, &names)?.dev
}

fn del(ctx: &Ctx, want: &Want) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let what = || format!("deleting route {want} in {}", ctx.ns_label());
    let routes = ctx
        .block_on(dump(&handle, &[want.family]))
        .with_context(what)?;
    let found: Vec<&(RouteMessage, Route)> =
        routes.iter().filter(|(_, r)| want.selects(r)).collect();
    if !ctx.check {
        for (msg, r) in &found {
            common::vlog!(1, "ip route del {} (in {})", r.json(), ctx.ns_label());
            match ctx.block_on(handle.route().del(msg.clone()).execute()) {
                Ok(()) => {}
                Err(e) if common::nl::is_absent(&e) => {}
                Err(e) => return Err(Error::caused(what(), e)),
            }
        }
    }
    let listed: Vec<Value> = found.iter().map(|(_, r)| r.json()).collect();
    Outcome::json(json!({"changed": !listed.is_empty(), "routes": listed}))
}
