//! How a route reads: as JSON (`ip -j -d route`) and in a message (`ip route`), with the names
//! `ip` gives types, scopes, flags and preferences.

use std::net::IpAddr;

use ipnet::IpNet;
use netlink_packet_route::route::{RoutePreference, RouteType};
use serde::Serialize;

use super::kernel::{Metrics, Route};
use crate::iproute2::{self, Named};
use crate::table;

impl Route {
    /// The route as the listings print it, in namespace `netns`.
    pub(super) fn view(&self, netns: Option<String>) -> RouteView {
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

    pub(super) fn describe(&self) -> String {
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
pub(super) fn dest_label(dst: IpNet) -> String {
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
pub(super) fn type_name(t: u8) -> String {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_as_ip_names_them() {
        assert_eq!(flag_names(0x4 | 0x10), ["onlink", "linkdown"]);
    }
}
