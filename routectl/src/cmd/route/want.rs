//! The route the user asked for: the values of its flags, how it compares with the routes the
//! kernel holds, the RTM_NEWROUTE message that adds it, and how it would read back (--check).

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use common::types::{parse_addr, IfName};
use common::{Error, Result};
use ipnet::IpNet;
use netlink_packet_route::route::{
    RouteAttribute, RouteFlags, RouteMessage, RouteMetric, RouteNextHop, RouteNextHopFlags,
    RoutePreference, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::RouteMessageBuilder;

use super::kernel::{Hop, Metrics, Route};
use super::view::{dest_label, type_name};
use crate::cmd::Family;
use crate::iproute2;
use crate::table::{self, Table, TableSel};

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
    pub(super) fn rejects(self) -> bool {
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
    pub(super) via: Option<IpAddr>,
    pub(super) dev: Option<IfName>,
    pub(super) weight: u16,
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
pub(super) struct Want {
    pub(super) family: Family,
    pub(super) dst: IpNet,
    pub(super) kind: Option<Kind>,
    pub(super) via: Option<IpAddr>,
    pub(super) dev: Option<IfName>,
    pub(super) nexthops: Vec<Nexthop>,
    pub(super) src: Option<IpAddr>,
    pub(super) table: u32,
    pub(super) metric: Option<u32>,
    pub(super) proto: Option<Proto>,
    pub(super) onlink: bool,
    pub(super) mtu: Option<u32>,
}

impl Want {
    /// With `add`'s own flags.
    pub(super) fn adding(mut self, onlink: bool, mtu: Option<u32>) -> Result<Want> {
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
    pub(super) fn tables(&self) -> TableSel {
        TableSel::One(Table(self.table))
    }

    /// Same key (family, table, destination, metric): the kernel holds one such route.
    pub(super) fn same_key(&self, r: &Route) -> bool {
        r.family == self.family
            && r.table == self.table
            && r.dst == self.dst
            && r.metric == self.effective_metric()
            && r.tos == 0
    }

    /// Same key and the same next hop(s) and settings: nothing to do.
    pub(super) fn same_route(&self, r: &Route) -> bool {
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
    pub(super) fn selects(&self, r: &Route) -> bool {
        r.family == self.family
            && r.table == self.table
            && r.dst == self.dst
            && self.metric.is_none_or(|m| r.metric == m)
            && self.via.is_none_or(|v| r.gateway == Some(v))
            && same_dev(self.dev.as_ref(), r.dev.as_deref())
            && (self.nexthops.is_empty() || self.same_nexthops(&r.nexthops))
            && self.kind.is_none_or(|k| r.kind == u8::from(k.netlink()))
            && self.proto.is_none_or(|p| r.protocol == p.0)
            // a route through a nexthop object is not "via G dev D", though it lists them (as
            // the kernel's own delete: only the destination selects it)
            && (r.nhid.is_none() || (self.via.is_none() && self.dev.is_none() && self.nexthops.is_empty()))
    }

    /// The route message; `oif` and `hop_oifs` are the interface indexes of `dev` and of
    /// each next hop's dev.
    pub(super) fn message(
        &self,
        oif: Option<u32>,
        hop_oifs: &[Option<u32>],
    ) -> Result<RouteMessage> {
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
    pub(super) fn predicted(&self, dev: Option<String>, hop_devs: Vec<Option<String>>) -> Route {
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

pub(super) fn kind_label(k: Kind) -> String {
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
    }
}
