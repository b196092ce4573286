//! One rule each: an object missing, down, or not as recorded, said in words a person can act on.

use super::seen::*;
use crate::listing::*;
use crate::plan::on_off;
use crate::record::Peer;

/// NAME missing or down.
pub(super) fn link_problems(
    out: &mut Vec<String>,
    links: &Links,
    name: &str,
    what: &str,
    place: &str,
) {
    match links.get(name) {
        None => out.push(format!("{what} {name} is missing in {place}")),
        Some(l) if l.state.as_deref() != Some("up") => {
            out.push(format!("{what} {name} is down in {place}"))
        }
        Some(_) => {}
    }
}

/// NAME missing, down, or not a port of BRIDGE.
pub(super) fn port_problems(
    out: &mut Vec<String>,
    links: &Links,
    name: &str,
    bridge: &str,
    place: &str,
) {
    link_problems(out, links, name, "bridge port", place);
    if let Some(l) = links.get(name) {
        if l.master.as_deref() != Some(bridge) {
            let master = l.master.as_deref().unwrap_or("none");
            out.push(format!(
                "{name} is not a port of bridge {bridge} in {place} (its master: {master})"
            ));
        }
    }
}

/// NAME, a bridge port, not isolated as HUB_ISOLATE says (isolated ports exchange nothing with
/// each other: no device reaches another).
pub(super) fn isolation_problem(
    out: &mut Vec<String>,
    links: &Links,
    name: &str,
    isolate: bool,
    place: &str,
) {
    if let Some(l) = links.get(name) {
        if l.master.is_some() && l.isolated.unwrap_or(false) != isolate {
            let (is, says) = if isolate {
                ("not isolated", "yes")
            } else {
                ("isolated", "no")
            };
            out.push(format!(
                "bridge port {name} in {place} is {is} (HUB_ISOLATE={says})"
            ));
        }
    }
}

pub(super) fn address_problem(out: &mut Vec<String>, links: &Links, name: &str, cidr: &str) {
    if let Some(l) = links.get(name) {
        if !l.addresses.iter().any(|a| a == cidr) {
            out.push(format!("{name} lacks its address {cidr}"));
        }
    }
}

pub(super) fn forwarding_problem(out: &mut Vec<String>, fwd: &SysctlShow, place: &str) {
    if !fwd.is_on() {
        out.push(format!("IPv4 forwarding is off in {place}"));
    }
}

/// The peer's WireGuard interface I (None: none) and P, its client as a peer of it (None: none),
/// held against the record R; PL: the links of I's namespace.
pub(super) fn tunnel_problems(
    out: &mut Vec<String>,
    i: Option<&WgInterface>,
    p: Option<&WgPeer>,
    r: &Peer,
    pwg: &str,
    pl: &Links,
    place: &str,
) {
    let Some(i) = i else {
        out.push(format!(
            "WireGuard interface {pwg} is missing in {place} (its wireguard-go process or the interface is gone)"
        ));
        return;
    };
    link_problems(out, pl, pwg, "WireGuard interface", place);
    if i.public_key != r.public_key {
        out.push(format!(
            "{pwg} has the public key {}, not the recorded {}",
            or_null(i.public_key.as_deref()),
            or_null(r.public_key.as_deref())
        ));
    }
    if i.listen_port != Some(u64::from(r.listen_port)) {
        out.push(format!(
            "{pwg} listens on port {}, not the recorded {}",
            or_null(i.listen_port),
            r.listen_port
        ));
    }
    let s = &r.settings;
    match p {
        None => out.push(format!(
            "the client's key {} is not a peer of {pwg}",
            or_null(r.client_public_key.as_deref())
        )),
        Some(p) => {
            if p.persistent_keepalive.unwrap_or(0) != s.keepalive.map_or(0, u64::from) {
                let never =
                    |k: Option<u64>| k.map_or_else(|| "never".to_string(), |k| k.to_string());
                out.push(format!(
                    "{pwg} keeps the client alive every {} s, not the recorded {}",
                    never(p.persistent_keepalive),
                    never(s.keepalive.map(u64::from))
                ));
            }
            let psk = p.preshared_key == Some(true);
            if s.preshared_key && !psk {
                out.push(format!(
                    "the client's peer on {pwg} has no preshared key (the record has one)"
                ));
            } else if !s.preshared_key && psk {
                out.push(format!(
                    "the client's peer on {pwg} has a preshared key (the record has none)"
                ));
            }
            let mut ips = p.allowed_ips.clone();
            ips.sort();
            if ips != ["0.0.0.0/0", "::/0"] {
                let routes = if ips.is_empty() {
                    "nothing".to_string()
                } else {
                    ips.join(",")
                };
                out.push(format!(
                    "the client's peer on {pwg} routes {routes}, not 0.0.0.0/0,::/0"
                ));
            }
        }
    }
    for other in i
        .peers
        .iter()
        .filter(|q| q.public_key != r.client_public_key)
    {
        out.push(format!(
            "{pwg} has a peer the hub did not add: {}",
            or_null(other.public_key.as_deref())
        ));
    }
    if let (Some(mtu), Some(have)) = (s.mtu, pl.get(pwg).and_then(|l| l.mtu)) {
        if have != u64::from(mtu) {
            out.push(format!("{pwg} has MTU {have}, not the recorded {mtu}"));
        }
    }
}

/// The tunnel PWG (in PL) takes IPv6 where the hub keeps it off, or not where it carries it
/// (WANT: [`crate::conf::Conf::tunnel_ipv6`]; None: no opinion).
pub(super) fn ipv6_problem(out: &mut Vec<String>, pl: &Links, pwg: &str, want: Option<bool>) {
    let (Some(want), Some(have)) = (want, pl.get(pwg).and_then(|l| l.ipv6)) else {
        return;
    };
    if have != want {
        let why = if want {
            "HUB_CIDR6 needs it on"
        } else {
            "a zones hub without HUB_CIDR6 keeps it off"
        };
        let (have, want) = (on_off(have), on_off(want));
        out.push(format!(
            "{pwg} has IPv6 {have}, not {want}: {why} ('hub up' sets it)"
        ));
    }
}

/// wgctl found wireguard-go's listener unfiltered when it made I (not in status.jq).
pub(super) fn listener_problem(out: &mut Vec<String>, i: Option<&WgInterface>, pwg: &str) {
    if i.is_some_and(|i| i.listener_filtered == Some(false)) {
        out.push(format!(
            "wireguard-go's listener of {pwg} is unfiltered: every link event in the center wakes it (wgctl warned when it made it)"
        ));
    }
}

/// No default route into PWG in TABLE.
pub(super) fn default_route_problem(
    out: &mut Vec<String>,
    routes: &[&Route],
    pwg: &str,
    table: Table,
    family: &str,
    place: &str,
) {
    let found = routes.iter().any(|route| {
        route.dst.as_deref() == Some("default")
            && route.dev.as_deref() == Some(pwg)
            && route.family.as_deref() == Some(family)
            && table.holds(route)
    });
    if !found {
        let in_table = match table {
            Table::Main => String::new(),
            Table::Id(id) => format!(" in table {id}"),
        };
        out.push(format!(
            "no {}default route into {pwg}{in_table} in {place}",
            ip_version(family)
        ));
    }
}

/// natctl rules whose kernel rules are not what their id stands for (changed behind natctl's
/// back, the comment kept) or lack a part.
pub(super) fn nat_integrity<'r>(
    out: &mut Vec<String>,
    rules: impl Iterator<Item = &'r NatRule>,
    place: &str,
) {
    for rule in rules {
        let tampered = rule.tampered == Some(true);
        if !tampered && rule.complete != Some(false) {
            continue;
        }
        let selector = match (&rule.iif, &rule.oif) {
            (Some(iif), _) => format!(" --iif {iif}"),
            (None, Some(oif)) => format!(" --oif {oif}"),
            (None, None) => String::new(),
        };
        let what = if tampered {
            "was changed behind natctl's back"
        } else {
            "lacks a part"
        };
        out.push(format!(
            "natctl rule {} ({}{selector}) in {place} {what}",
            jq_text(&rule.id),
            or_null(rule.kind.as_deref())
        ));
    }
}
