//! Routes as the kernel holds them: the dump of a table, each RTM_NEWROUTE message parsed into a
//! [`Route`] (next hops, metrics, device names), and the device `ip route get` would pick.

use std::collections::{BTreeSet, HashMap};
use std::net::IpAddr;

use common::link::LinkExt;
use common::{Context, Kind, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteVia,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use crate::cmd::{link_names, Family};
use crate::table::TableSel;

/// A route read back from the kernel (or predicted for --check).
#[derive(Debug, Clone)]
pub(super) struct Route {
    pub(super) family: Family,
    pub(super) kind: u8,
    pub(super) dst: IpNet,
    pub(super) gateway: Option<IpAddr>,
    pub(super) dev: Option<String>,
    pub(super) prefsrc: Option<IpAddr>,
    pub(super) table: u32,
    pub(super) metric: u32,
    pub(super) protocol: u8,
    pub(super) scope: u8,
    pub(super) tos: u8,
    pub(super) flags: RouteFlags,
    pub(super) mtu: Option<u32>,
    /// The metrics besides mtu, as `ip -j -d route` prints them under `metrics`.
    pub(super) metrics: Metrics,
    /// `RTAX_LOCK`: the metrics locked (`ip route ... mtu lock N`); `ip -j` does not print it.
    pub(super) locked: u32,
    /// Seconds until the route expires (IPv6, `RTA_CACHEINFO`), as `ip` prints them.
    pub(super) expires: Option<i32>,
    pub(super) pref: Option<u8>,
    pub(super) nexthops: Vec<Hop>,
    /// The nexthop object the route uses (`ip route ... nhid N`).
    pub(super) nhid: Option<u32>,
}

/// Route metrics by `ip -j`'s name: a number, a string (`congctl`, `features`) or null
/// (`ecn`).
pub(super) type Metrics = serde_json::Map<String, serde_json::Value>;

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
pub(super) struct Hop {
    pub(super) gateway: Option<IpAddr>,
    pub(super) dev: Option<String>,
    pub(super) weight: u16,
    pub(super) flags: u32,
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
}

/// Every route of the given families in the selected tables. One table is read alone: the
/// kernel filters the dump (a hub's center holds two routes in each of a thousand tables, and
/// an add compares the routes of one). Only the devices those routes name are looked up (one
/// request each), unless they are many: reading a thousand links for the one route an add
/// compares costs more than the add itself.
pub(super) async fn dump(
    handle: &Handle,
    families: &[Family],
    tables: &TableSel,
) -> Result<Vec<(RouteMessage, Route)>> {
    let mut msgs = Vec::new();
    for fam in families {
        let listing = || format!("listing {} routes", fam.inet_name());
        let all: Vec<RouteMessage> = match tables {
            TableSel::One(table) => {
                let filtered = common::nl::connect_filtered().with_context(listing)?;
                match filtered
                    .route()
                    .get(table_query(*fam, table.0))
                    .execute()
                    .try_collect()
                    .await
                {
                    // (a table that holds nothing does not exist: ENOENT)
                    Err(e) if Kind::of(&e) == Kind::NotFound => Vec::new(),
                    found => found.with_context(listing)?,
                }
            }
            TableSel::All => {
                let query = match fam {
                    Family::V4 => RouteMessageBuilder::<std::net::Ipv4Addr>::new().build(),
                    Family::V6 => RouteMessageBuilder::<std::net::Ipv6Addr>::new().build(),
                };
                handle
                    .route()
                    .get(query)
                    .execute()
                    .try_collect()
                    .await
                    .with_context(listing)?
            }
        };
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

/// A strict dump request for one table of one family: the table in RTA_TABLE (ids above 255),
/// every other field of the header zero, so that nothing else filters.
fn table_query(family: Family, table: u32) -> RouteMessage {
    let mut msg = RouteMessage::default();
    msg.header.address_family = family.netlink();
    msg.attributes.push(RouteAttribute::Table(table));
    msg
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

/// The device the kernel would pick to reach `gw` (`ip route get GW`), to predict `dev`.
pub(super) async fn gateway_dev(handle: &Handle, gw: IpAddr) -> Option<String> {
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
