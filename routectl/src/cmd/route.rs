//! `routectl route`: routes in the main or any other table (`ip route`).
//!
//! A route is identified like the kernel does: family, table, destination and metric. The same
//! key with the same next hop(s) and settings is "already there"; with different ones it needs
//! --replace.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::Subcommand;
use common::link::LinkExt;
use common::types::{parse_addr, IfName};
use common::{Context, Ctx, Error, Outcome, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteNextHop,
    RouteNextHopFlags, RoutePreference, RouteProtocol, RouteScope, RouteType, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};
use serde::Serialize;

use super::{link_names, Dest, Family, FamilyArgs};
use crate::iproute2::{self, Named};
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

/// `--type`: the route types routectl adds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Kind {
    Unicast,
    Blackhole,
    Unreachable,
    Prohibit,
    Local,
}

impl Kind {
    fn netlink(self) -> RouteType {
        match self {
            Kind::Unicast => RouteType::Unicast,
            Kind::Blackhole => RouteType::BlackHole,
            Kind::Unreachable => RouteType::Unreachable,
            Kind::Prohibit => RouteType::Prohibit,
            Kind::Local => RouteType::Local,
        }
    }

    /// Types that drop or refuse: no gateway, device or next hops.
    fn rejects(self) -> bool {
        matches!(self, Kind::Blackhole | Kind::Unreachable | Kind::Prohibit)
    }
}

/// `--proto P`: a routing protocol by its rt_protos name or number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Proto(u8);

/// `RTPROT_STATIC`, what routectl adds routes as.
const STATIC: u8 = 4;

impl FromStr for Proto {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let id = match s.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => iproute2::protocols().id(s),
        };
        id.and_then(|n| u8::try_from(n).ok())
            .map(Proto)
            .ok_or_else(|| {
                format!(
                    "proto '{s}' is invalid: use a number from 0 to 255 or a name from \
                 /etc/iproute2/rt_protos"
                )
            })
    }
}

/// `--nexthop via=ADDR,dev=IFACE,weight=N` (at least via or dev).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Nexthop {
    via: Option<IpAddr>,
    dev: Option<IfName>,
    weight: u16,
}

impl FromStr for Nexthop {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut hop = Nexthop {
            via: None,
            dev: None,
            weight: 1,
        };
        for part in s.split(',') {
            let bad = |e: String| format!("--nexthop '{s}': {e}");
            match part.split_once('=') {
                Some(("via", v)) => hop.via = Some(parse_addr(v).map_err(bad)?),
                Some(("dev", d)) => hop.dev = Some(d.parse().map_err(bad)?),
                Some(("weight", w)) => {
                    hop.weight = w
                        .parse()
                        .ok()
                        .filter(|w| (1..=256).contains(w))
                        .ok_or_else(|| {
                            bad(format!("weight '{w}' is not a number from 1 to 256"))
                        })?;
                }
                _ => {
                    return Err(bad(format!(
                        "'{part}' is not via=ADDR, dev=IFACE or weight=N"
                    )))
                }
            }
        }
        if hop.via.is_none() && hop.dev.is_none() {
            return Err(format!("--nexthop '{s}' needs via=ADDR or dev=IFACE"));
        }
        Ok(hop)
    }
}

/// A route as the user asked for it.
#[derive(Debug, Clone)]
struct Want {
    family: Family,
    dst: IpNet,
    kind: Option<Kind>,
    via: Option<IpAddr>,
    dev: Option<IfName>,
    nexthops: Vec<Nexthop>,
    src: Option<IpAddr>,
    table: u32,
    metric: Option<u32>,
    proto: Option<Proto>,
    onlink: bool,
    mtu: Option<u32>,
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
        for hop in &a.nexthop {
            if let Some(v) = hop.via {
                addrs.push((format!("--nexthop via={v}"), v));
            }
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
        if let Some(k) = a.kind.filter(|k| k.rejects()) {
            if a.via.is_some() || a.dev.is_some() || !a.nexthop.is_empty() {
                return Err(Error::invalid(format!(
                    "route {dst} --type {}: a route of this type has no --via, --dev or --nexthop",
                    kind_label(k)
                )));
            }
        }
        let default_table = if a.kind == Some(Kind::Local) {
            table::LOCAL
        } else {
            table::MAIN
        };
        Ok(Want {
            family,
            dst,
            kind: a.kind,
            via: a.via,
            dev: a.dev.clone(),
            nexthops: a.nexthop.clone(),
            src,
            table: a.table.map_or(default_table, |t| t.0),
            metric: a.metric,
            proto: a.proto,
            onlink: false,
            mtu: None,
        })
    }

    /// With `add`'s own flags.
    fn adding(mut self, onlink: bool, mtu: Option<u32>) -> Result<Want> {
        if onlink && self.via.is_none() && self.nexthops.iter().all(|h| h.via.is_none()) {
            return Err(Error::invalid(format!(
                "route {self} --onlink: onlink needs a gateway (--via or --nexthop via=)"
            )));
        }
        self.onlink = onlink;
        self.mtu = mtu;
        Ok(self)
    }

    fn kind(&self) -> Kind {
        self.kind.unwrap_or(Kind::Unicast)
    }

    /// The metric the kernel will store when none is given.
    fn effective_metric(&self) -> u32 {
        self.metric.unwrap_or(match self.family {
            Family::V4 => 0,
            Family::V6 => 1024,
        })
    }

    /// The scope `ip route add` picks: host for local routes, link for an IPv4 route straight
    /// out of a device, else global (IPv6 routes are always global).
    fn scope(&self) -> RouteScope {
        match (self.family, self.kind()) {
            (Family::V6, _) => RouteScope::Universe,
            (_, Kind::Local) => RouteScope::Host,
            (_, Kind::Unicast) if self.via.is_none() && self.nexthops.is_empty() => {
                RouteScope::Link
            }
            _ => RouteScope::Universe,
        }
    }

    /// The table it is in, as a selection of the routes to read.
    fn tables(&self) -> TableSel {
        TableSel::One(Table(self.table))
    }

    /// Same key (family, table, destination, metric): the kernel holds one such route.
    fn same_key(&self, r: &Route) -> bool {
        r.family == self.family
            && r.table == self.table
            && r.dst == self.dst
            && r.metric == self.effective_metric()
            && r.tos == 0
    }

    /// Same key and the same next hop(s) and settings: nothing to do.
    fn same_route(&self, r: &Route) -> bool {
        self.same_key(r)
            && r.kind == u8::from(self.kind().netlink())
            && r.gateway == self.via
            && same_dev(self.dev.as_ref(), r.dev.as_deref())
            && self.same_nexthops(&r.nexthops)
            && r.prefsrc == self.src
            && self.proto.is_none_or(|p| r.protocol == p.0)
            && r.flags.contains(RouteFlags::Onlink) == self.onlink
            && r.mtu == self.mtu
            && r.metrics.is_empty()
            && r.locked == 0
            && r.expires.is_none()
            && r.nhid.is_none()
    }

    /// The given next hops are the route's (in any order).
    fn same_nexthops(&self, hops: &[Hop]) -> bool {
        hops.len() == self.nexthops.len()
            && self.nexthops.iter().all(|w| {
                hops.iter().any(|h| {
                    h.gateway == w.via
                        && h.weight == w.weight
                        && same_dev(w.dev.as_ref(), h.dev.as_deref())
                })
            })
    }

    /// For del: destination and table, and whatever else was given.
    fn selects(&self, r: &Route) -> bool {
        r.family == self.family
            && r.table == self.table
            && r.dst == self.dst
            && self.metric.is_none_or(|m| r.metric == m)
            && self.via.is_none_or(|v| r.gateway == Some(v))
            && same_dev(self.dev.as_ref(), r.dev.as_deref())
            && (self.nexthops.is_empty() || self.same_nexthops(&r.nexthops))
            && self.kind.is_none_or(|k| r.kind == u8::from(k.netlink()))
            && self.proto.is_none_or(|p| r.protocol == p.0)
    }

    /// The route message; `oif` and `hop_oifs` are the interface indexes of `dev` and of
    /// each next hop's dev.
    fn message(&self, oif: Option<u32>, hop_oifs: &[Option<u32>]) -> Result<RouteMessage> {
        let mut b = RouteMessageBuilder::<IpAddr>::new()
            .destination_prefix(self.dst.addr(), self.dst.prefix_len())
            .map_err(|e| self.invalid(e))?
            .table_id(self.table)
            .kind(self.kind().netlink())
            .scope(self.scope())
            .protocol(RouteProtocol::from(self.proto.map_or(STATIC, |p| p.0)));
        if let Some(v) = self.via {
            b = b.gateway(v).map_err(|e| self.invalid(e))?;
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
        if !self.nexthops.is_empty() {
            let hops = self
                .nexthops
                .iter()
                .zip(hop_oifs)
                .map(|(h, oif)| {
                    let mut hop = RouteNextHop::default();
                    if self.onlink {
                        hop.flags = RouteNextHopFlags::Onlink;
                    }
                    hop.hops = u8::try_from(h.weight - 1).expect("weight 1-256");
                    hop.interface_index = oif.unwrap_or(0);
                    hop.attributes = h
                        .via
                        .map(|v| RouteAttribute::Gateway(v.into()))
                        .into_iter()
                        .collect();
                    hop
                })
                .collect();
            b = b.multipath(hops);
        } else if self.onlink {
            b = b.onlink();
        }
        let mut msg = b.build();
        if let Some(mtu) = self.mtu {
            msg.attributes
                .push(RouteAttribute::Metrics(vec![RouteMetric::Mtu(mtu)]));
        }
        Ok(msg)
    }

    fn invalid(&self, e: impl fmt::Display) -> Error {
        Error::invalid(format!("route {self}: {e}"))
    }

    /// How the route reads back before it exists (for --check); `devs` are the devices the
    /// kernel would pick for the gateway and each next hop.
    fn predicted(&self, dev: Option<String>, hop_devs: Vec<Option<String>>) -> Route {
        let rejects = self.kind().rejects();
        Route {
            family: self.family,
            kind: u8::from(self.kind().netlink()),
            dst: self.dst,
            gateway: self.via,
            // IPv6 puts a route that drops on the loopback device.
            dev: dev.or_else(|| (rejects && self.family == Family::V6).then(|| "lo".into())),
            prefsrc: self.src,
            table: self.table,
            metric: self.effective_metric(),
            protocol: self.proto.map_or(STATIC, |p| p.0),
            scope: u8::from(self.scope()),
            tos: 0,
            flags: if self.onlink && self.nexthops.is_empty() {
                RouteFlags::Onlink
            } else {
                RouteFlags::empty()
            },
            mtu: self.mtu,
            metrics: Metrics::new(),
            locked: 0,
            expires: None,
            pref: (self.family == Family::V6).then_some(u8::from(RoutePreference::Medium)),
            nhid: None,
            nexthops: self
                .nexthops
                .iter()
                .zip(hop_devs)
                .map(|(h, dev)| Hop {
                    gateway: h.via,
                    dev,
                    weight: h.weight,
                    flags: if self.onlink {
                        u32::from(RouteNextHopFlags::Onlink.bits())
                    } else {
                        0
                    },
                })
                .collect(),
        }
    }
}

fn same_dev(want: Option<&IfName>, have: Option<&str>) -> bool {
    want.is_none_or(|d| have == Some(d.as_str()))
}

fn kind_label(k: Kind) -> String {
    type_name(u8::from(k.netlink()))
}

/// `blackhole 10.0.0.0/8 table 100`, `default via 10.0.0.1 dev eth0 metric 5`, as `ip route`
/// writes it.
impl fmt::Display for Want {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some(k) = self.kind.filter(|k| *k != Kind::Unicast) {
            write!(f, "{} ", kind_label(k))?;
        }
        f.write_str(&dest_label(self.dst))?;
        if let Some(v) = self.via {
            write!(f, " via {v}")?;
        }
        if let Some(d) = &self.dev {
            write!(f, " dev {d}")?;
        }
        for h in &self.nexthops {
            write!(f, " nexthop")?;
            if let Some(v) = h.via {
                write!(f, " via {v}")?;
            }
            if let Some(d) = &h.dev {
                write!(f, " dev {d}")?;
            }
            write!(f, " weight {}", h.weight)?;
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
        if let Some(p) = self.proto {
            write!(f, " proto {}", iproute2::protocols().label(u32::from(p.0)))?;
        }
        if self.onlink {
            write!(f, " onlink")?;
        }
        if let Some(m) = self.mtu {
            write!(f, " mtu {m}")?;
        }
        Ok(())
    }
}

/// A route read back from the kernel (or predicted for --check).
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
    flags: RouteFlags,
    mtu: Option<u32>,
    /// The metrics besides mtu, as `ip -j -d route` prints them under `metrics`.
    metrics: Metrics,
    /// `RTAX_LOCK`: the metrics locked (`ip route ... mtu lock N`); `ip -j` does not print it.
    locked: u32,
    /// Seconds until the route expires (IPv6, `RTA_CACHEINFO`), as `ip` prints them.
    expires: Option<i32>,
    pref: Option<u8>,
    nexthops: Vec<Hop>,
    /// The nexthop object the route uses (`ip route ... nhid N`).
    nhid: Option<u32>,
}

/// Route metrics by `ip -j`'s name: a number, a string (`congctl`, `features`) or null
/// (`ecn`).
type Metrics = serde_json::Map<String, serde_json::Value>;

/// `USER_HZ`, the unit of `RTA_CACHEINFO`'s `rta_expires` (clock ticks): 100 in the kernel's
/// ABI on every architecture but alpha (ip reads it with `sysconf(_SC_CLK_TCK)`).
const USER_HZ: i32 = 100;

/// The metrics other than mtu and lock, as `ip -j -d route` prints them (`print_rta_metrics`).
fn metrics_of(ms: &[RouteMetric]) -> Metrics {
    use serde_json::Value;
    let mut out = Metrics::new();
    for m in ms {
        let (name, value) = match m {
            RouteMetric::Lock(_) | RouteMetric::Mtu(_) => continue,
            RouteMetric::Window(n) => ("window", Value::from(*n)),
            RouteMetric::Rtt(n) => ("rtt", Value::from(*n / 8)),
            RouteMetric::RttVar(n) => ("rttvar", Value::from(*n / 4)),
            RouteMetric::SsThresh(n) => ("ssthresh", Value::from(*n)),
            RouteMetric::Cwnd(n) => ("cwnd", Value::from(*n)),
            RouteMetric::Advmss(n) => ("advmss", Value::from(*n)),
            RouteMetric::Reordering(n) => ("reordering", Value::from(*n)),
            RouteMetric::Hoplimit(n) if *n == u32::MAX => continue,
            RouteMetric::Hoplimit(n) => ("hoplimit", Value::from(*n)),
            RouteMetric::InitCwnd(n) => ("initcwnd", Value::from(*n)),
            RouteMetric::Features(bits) => {
                if bits & 1 != 0 {
                    out.insert("ecn".into(), Value::Null);
                }
                if bits & !1 != 0 {
                    out.insert("features".into(), format!("{:#x}", bits & !1).into());
                }
                continue;
            }
            RouteMetric::RtoMin(n) => ("rto_min", Value::from(*n)),
            RouteMetric::InitRwnd(n) => ("initrwnd", Value::from(*n)),
            RouteMetric::QuickAck(n) => ("quickack", Value::from(*n)),
            RouteMetric::CcAlgo(name) => ("congestion", Value::from(name.clone())),
            RouteMetric::FastopenNoCookie(n) => ("fastopen_no_cookie", Value::from(*n)),
            _ => continue,
        };
        out.insert(name.into(), value);
    }
    out
}

/// One next hop of a multipath route.
#[derive(Debug, Clone)]
struct Hop {
    gateway: Option<IpAddr>,
    dev: Option<String>,
    weight: u16,
    flags: u32,
}

fn ip_of(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

/// The gateway of a route or next hop: `RTA_GATEWAY`, or `RTA_VIA` (another family's).
fn gateway_of(a: &RouteAttribute) -> Option<IpAddr> {
    match a {
        RouteAttribute::Gateway(g) => ip_of(g),
        RouteAttribute::Via(RouteVia::Inet6(v6)) => Some((*v6).into()),
        RouteAttribute::Via(RouteVia::Inet(v4)) => Some((*v4).into()),
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
        let dev_name = |i: &u32| names.get(i).cloned().unwrap_or_else(|| i.to_string());
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
            flags: h.flags,
            mtu: None,
            metrics: Metrics::new(),
            locked: 0,
            expires: None,
            pref: None,
            nexthops: Vec::new(),
            nhid: None,
        };
        for a in &msg.attributes {
            match a {
                RouteAttribute::Destination(d) => {
                    r.dst = IpNet::new(ip_of(d)?, h.destination_prefix_length).ok()?;
                }
                RouteAttribute::Gateway(_) | RouteAttribute::Via(_) => r.gateway = gateway_of(a),
                RouteAttribute::Oif(i) => r.dev = Some(dev_name(i)),
                RouteAttribute::PrefSource(s) => r.prefsrc = ip_of(s),
                RouteAttribute::Table(t) => r.table = *t,
                RouteAttribute::Priority(m) => r.metric = *m,
                RouteAttribute::Preference(p) => r.pref = Some(u8::from(*p)),
                RouteAttribute::Metrics(ms) => {
                    r.mtu = ms.iter().find_map(|m| match m {
                        RouteMetric::Mtu(n) => Some(*n),
                        _ => None,
                    });
                    r.locked = ms.iter().fold(0, |bits, m| match m {
                        RouteMetric::Lock(l) => bits | l,
                        _ => bits,
                    });
                    r.metrics = metrics_of(ms);
                }
                RouteAttribute::CacheInfo(ci) if ci.expires != 0 => {
                    // (rta_expires is signed in the kernel's struct; ip divides it so)
                    r.expires = Some(ci.expires as i32 / USER_HZ);
                }
                RouteAttribute::NhId(id) => r.nhid = Some(*id),
                RouteAttribute::MultiPath(hops) => {
                    r.nexthops = hops
                        .iter()
                        .map(|n| Hop {
                            gateway: n.attributes.iter().find_map(gateway_of),
                            dev: (n.interface_index != 0).then(|| dev_name(&n.interface_index)),
                            weight: u16::from(n.hops) + 1,
                            flags: u32::from(n.flags.bits()),
                        })
                        .collect();
                }
                _ => {}
            }
        }
        Some(r)
    }

    /// The route as the listings print it, in namespace `netns`.
    fn view(&self, netns: Option<String>) -> RouteView {
        let ip = |a: Option<IpAddr>| a.map(|a| a.to_string());
        RouteView {
            family: self.family.inet_name(),
            netns,
            kind: type_name(self.kind),
            dst: dest_label(self.dst),
            gateway: ip(self.gateway),
            dev: self.dev.clone(),
            prefsrc: ip(self.prefsrc),
            table: table::named(self.table),
            table_id: self.table,
            metric: self.metric,
            proto: iproute2::protocols().named(u32::from(self.protocol)),
            scope: scope_name(self.scope),
            flags: flag_names(self.flags.bits()),
            mtu: self.mtu,
            metrics: self.metrics.clone(),
            expires: self.expires,
            pref: self.pref.map(pref_name),
            nhid: self.nhid,
            nexthops: self
                .nexthops
                .iter()
                .map(|h| NexthopView {
                    gateway: ip(h.gateway),
                    dev: h.dev.clone(),
                    weight: h.weight,
                    flags: flag_names(h.flags),
                })
                .collect(),
        }
    }

    fn describe(&self) -> String {
        let mut s = String::new();
        if let Some(id) = self.nhid {
            s.push_str(&format!(" nhid {id}"));
        }
        if let Some(g) = self.gateway {
            s.push_str(&format!(" via {g}"));
        }
        if let Some(d) = &self.dev {
            s.push_str(&format!(" dev {d}"));
        }
        for h in &self.nexthops {
            s.push_str(" nexthop");
            if let Some(g) = h.gateway {
                s.push_str(&format!(" via {g}"));
            }
            if let Some(d) = &h.dev {
                s.push_str(&format!(" dev {d}"));
            }
        }
        if let Some(p) = self.prefsrc {
            s.push_str(&format!(" src {p}"));
        }
        if self.kind != u8::from(RouteType::Unicast) {
            s.push_str(&format!(" type {}", type_name(self.kind)));
        }
        if let Some(m) = self.mtu {
            // (RTAX_MTU is bit 2 of RTAX_LOCK)
            let lock = if self.locked & (1 << 2) != 0 {
                "lock "
            } else {
                ""
            };
            s.push_str(&format!(" mtu {lock}{m}"));
        }
        for (name, value) in &self.metrics {
            match value {
                serde_json::Value::Null => s.push_str(&format!(" {name}")),
                serde_json::Value::String(v) => s.push_str(&format!(" {name} {v}")),
                v => s.push_str(&format!(" {name} {v}")),
            }
        }
        if let Some(e) = self.expires {
            s.push_str(&format!(" expires {e}sec"));
        }
        s.trim_start().to_string()
    }
}

/// A route as `route list`, `add` and `del` print it: what `ip -j -d route` shows, in the
/// terms of docs/json.md, every key always present.
#[derive(Debug, Serialize)]
pub struct RouteView {
    family: &'static str,
    netns: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    /// A CIDR, or `default`.
    dst: String,
    gateway: Option<String>,
    dev: Option<String>,
    prefsrc: Option<String>,
    table: Named,
    table_id: u32,
    metric: u32,
    proto: Named,
    scope: String,
    flags: Vec<&'static str>,
    mtu: Option<u32>,
    /// The route's other metrics as `ip -j -d route` prints them (`advmss`, `initcwnd`,
    /// `rtt`, `congestion`, `ecn`: null, ...); empty when none.
    metrics: Metrics,
    /// Seconds until an IPv6 route expires (`ip route ... expires N`); null when it does not.
    expires: Option<i32>,
    /// IPv6 router preference: `low`, `medium`, `high`; null for IPv4.
    pref: Option<String>,
    /// The nexthop object the route uses (`ip route ... nhid N`); then `gateway` and `dev`
    /// are the object's. Null for a route with its own next hop(s).
    nhid: Option<u32>,
    /// The next hops of a multipath route (then `gateway` and `dev` are null); else empty.
    nexthops: Vec<NexthopView>,
}

/// One next hop of a multipath route.
#[derive(Debug, Serialize)]
pub struct NexthopView {
    gateway: Option<String>,
    dev: Option<String>,
    weight: u16,
    flags: Vec<&'static str>,
}

/// A destination as the listings print it: the CIDR, or `default`.
fn dest_label(dst: IpNet) -> String {
    if dst.prefix_len() == 0 {
        "default".to_string()
    } else {
        dst.to_string()
    }
}

/// Route and next-hop flags as `ip` names them (`print_rt_flags`).
fn flag_names(bits: u32) -> Vec<&'static str> {
    const NAMES: [(u32, &str); 10] = [
        (0x1, "dead"),
        (0x4, "onlink"),
        (0x2, "pervasive"),
        (0x8, "offload"),
        (0x100, "notify"),
        (0x10, "linkdown"),
        (0x20, "unresolved"),
        (0x4000, "rt_offload"),
        (0x8000, "rt_trap"),
        (0x2000_0000, "rt_offload_failed"),
    ];
    NAMES
        .iter()
        .filter(|(bit, _)| bits & bit != 0)
        .map(|(_, name)| *name)
        .collect()
}

/// IPv6 router preferences as `ip` names them.
fn pref_name(p: u8) -> String {
    match RoutePreference::from(p) {
        RoutePreference::Low => "low".into(),
        RoutePreference::Medium => "medium".into(),
        RoutePreference::High => "high".into(),
        _ => p.to_string(),
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

/// Every route of the given families in the selected tables. Only the devices those routes
/// name are looked up (one request each), unless they are many: a hub's center holds a
/// thousand links, and reading them all for the one route an add compares costs more than the
/// add itself.
async fn dump(
    handle: &Handle,
    families: &[Family],
    tables: &TableSel,
) -> Result<Vec<(RouteMessage, Route)>> {
    let mut msgs = Vec::new();
    for fam in families {
        let query = match fam {
            Family::V4 => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
            Family::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
        };
        let all: Vec<RouteMessage> = handle
            .route()
            .get(query)
            .execute()
            .try_collect()
            .await
            .with_context(|| format!("listing {} routes", fam.inet_name()))?;
        msgs.extend(all.into_iter().filter(|m| tables.contains(table_of(m))));
    }
    let names = names_of(handle, &msgs).await?;
    Ok(msgs
        .into_iter()
        .filter_map(|m| {
            let r = Route::parse(&m, &names)?;
            Some((m, r))
        })
        .collect())
}

/// The table a route message belongs to (RTA_TABLE, which holds ids above 255).
fn table_of(msg: &RouteMessage) -> u32 {
    msg.attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(msg.header.table))
}

/// The names of the devices `msgs` refer to, by index.
async fn names_of(handle: &Handle, msgs: &[RouteMessage]) -> Result<HashMap<u32, String>> {
    let mut wanted = BTreeSet::new();
    for a in msgs.iter().flat_map(|m| &m.attributes) {
        match a {
            RouteAttribute::Oif(i) => {
                wanted.insert(*i);
            }
            RouteAttribute::MultiPath(hops) => {
                wanted.extend(hops.iter().map(|h| h.interface_index).filter(|i| *i != 0));
            }
            _ => {}
        }
    }
    // One dump is cheaper than many single requests past a few dozen.
    if wanted.len() > 32 {
        return link_names(handle).await;
    }
    let mut names = HashMap::new();
    for index in wanted {
        let found = handle
            .link()
            .get()
            .match_index(index)
            .execute()
            .try_next()
            .await;
        // (a link gone since the dump: the route is printed with its index, as ip does)
        if let Ok(Some(link)) = found {
            if let Some(name) = link.name() {
                names.insert(index, name.to_string());
            }
        }
    }
    Ok(names)
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
            } => add(ctx, &Want::new(&route, src)?.adding(onlink, mtu)?, replace),
            RouteCmd::Del { route } => del(ctx, &Want::new(&route, None)?),
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values() {
        let h: Nexthop = "via=10.0.0.1,dev=eth0,weight=3".parse().unwrap();
        assert_eq!(h.weight, 3);
        assert_eq!(h.dev.unwrap().as_str(), "eth0");
        assert!("dev=eth0,weight=0"
            .parse::<Nexthop>()
            .unwrap_err()
            .contains("'0'"));
        assert!("via=10.0.0.300"
            .parse::<Nexthop>()
            .unwrap_err()
            .contains("10.0.0.300"));
        assert!("weight=2".parse::<Nexthop>().unwrap_err().contains("needs"));
        assert!("gw=1".parse::<Nexthop>().unwrap_err().contains("'gw=1'"));
        assert_eq!("static".parse::<Proto>().unwrap(), Proto(4));
        assert_eq!("77".parse::<Proto>().unwrap(), Proto(77));
        assert!("256".parse::<Proto>().unwrap_err().contains("'256'"));
        assert!("nosuch".parse::<Proto>().unwrap_err().contains("'nosuch'"));
        assert_eq!(flag_names(0x4 | 0x10), ["onlink", "linkdown"]);
    }
}
