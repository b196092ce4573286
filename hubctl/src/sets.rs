//! HUB_MODE=zones: the center's NAT and filters as natctl sets and maps, and a peer as elements
//! of them.
//!
//! The center holds each rule once, over sets (`zone --iif @tunnel_zone --zone @tunnel_zone`);
//! a peer is a few elements (`element add tunnel_zone c07-wg 50007`). nftables checks its whole
//! table at every commit that adds a rule, but not for elements: a peer's add costs the same
//! beside 10 peers as beside 1,000 (bench/natctl_sets.sh). What differs between peers, their
//! allow entries and forwards, is a set per entry, the entry's rule over it made with the first
//! peer that has it; the peer is an element of each of its entries' sets.

use std::fmt;

use crate::access::{self, Dnat};
use crate::conf::Conf;
use crate::listing::NatRule;
use crate::names::{self, Names};
use crate::record::Peer;

/// Each tunnel's conntrack zone.
pub const TUNNEL_ZONE: &str = "tunnel_zone";
/// Each internal address's zone, for the replies that reach it (IPv4, IPv6).
pub const ADDRESS_ZONE: [&str; 2] = ["address_zone", "address_zone6"];
/// Every tunnel: its forged replies dropped, its replies let through.
pub const TUNNELS: &str = "tunnels";
/// Each tunnel's connection mark.
pub const TUNNEL_MARK: &str = "tunnel_mark";
/// Each tunnel's SNAT address (IPv4, IPv6).
pub const TUNNEL_SNAT: [&str; 2] = ["tunnel_snat", "tunnel_snat6"];
/// The tunnels whose remaining traffic is dropped, forwarded and to the center: each element
/// counts what it dropped (`status`'s denied packets).
pub const DENIED: [&str; 2] = ["denied", "denied_local"];
/// Each internal address's mark and connection mark for the forwards' connections to it (IPv4,
/// IPv6).
pub const FORWARD_MARK: [&str; 2] = ["forward_mark", "forward_mark6"];
pub const FORWARD_CTMARK: [&str; 2] = ["forward_ctmark", "forward_ctmark6"];

/// One element of a peer's.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Element {
    pub set: String,
    pub key: String,
    pub value: Option<String>,
}

impl Element {
    fn new(set: &str, key: impl fmt::Display, value: Option<String>) -> Element {
        Element {
            set: set.to_string(),
            key: key.to_string(),
            value,
        }
    }

    /// `element add SET KEY [VALUE --replace]`: a value that drifted is set back.
    pub fn add_line(&self) -> String {
        match &self.value {
            Some(v) => format!("element add {} {} {v} --replace", self.set, self.key),
            None => format!("element add {} {}", self.set, self.key),
        }
    }

    /// `element del SET KEY`.
    pub fn del_line(&self) -> String {
        format!("element del {} {}", self.set, self.key)
    }
}

/// FNV-1a of TEXT, 32 bits as 8 hex digits: a set's name from what it stands for.
fn short_hash(text: &str) -> String {
    let mut h: u32 = 0x811c_9dc5;
    for b in text.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    format!("{h:08x}")
}

/// A set standing for one allow entry or forward of some peers: its name, its `set add` line and
/// the rule over it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntrySet {
    pub name: String,
    pub set_line: String,
    pub rule_line: String,
}

impl EntrySet {
    /// The tunnels that may reach what allow entry A's selectors SEL name (LOCAL: the center's
    /// own address).
    fn allow(sel: &str, local: bool) -> EntrySet {
        let (prefix, local_flag) = if local {
            ("allow_local_", " --local")
        } else {
            ("allow_", "")
        };
        let name = format!("{prefix}{}", short_hash(sel));
        EntrySet {
            set_line: format!("set add {name} --type ifname"),
            rule_line: format!("filter --iif @{name}{local_flag} {sel} --verdict accept"),
            name,
        }
    }

    /// The internal addresses that forward D's port.
    fn forward(d: &Dnat) -> EntrySet {
        let f = d.forward;
        let v6 = d.daddr.contains(':');
        let shape = format!("{} {} {}", f.proto.as_str(), f.port, d.to);
        let name = format!("forward_{}", short_hash(&shape));
        let family = if v6 { "ipv6_addr" } else { "ipv4_addr" };
        EntrySet {
            set_line: format!("set add {name} --type {family}"),
            rule_line: format!(
                "dnat --proto {} --dport {} --daddr @{name} --to {} --local",
                f.proto.as_str(),
                f.port,
                d.to
            ),
            name,
        }
    }
}

/// The center's sets and the rules over them (without a namespace prefix), in the order they
/// are made: what every peer shares.
pub fn center_lines(conf: &Conf) -> Vec<String> {
    let v6 = conf.v6.is_some();
    let families: &[usize] = if v6 { &[0, 1] } else { &[0] };
    let addr_type = ["ipv4_addr", "ipv6_addr"];
    let mut sets = vec![format!("set add {TUNNEL_ZONE} --type ifname --value zone")];
    for &f in families {
        sets.push(format!(
            "set add {} --type {} --value zone",
            ADDRESS_ZONE[f], addr_type[f]
        ));
    }
    sets.push(format!("set add {TUNNELS} --type ifname"));
    sets.push(format!(
        "set add {TUNNEL_MARK} --type ifname --value ctmark"
    ));
    for &f in families {
        sets.push(format!(
            "set add {} --type ifname --value {}",
            TUNNEL_SNAT[f], addr_type[f]
        ));
    }
    for set in DENIED {
        sets.push(format!("set add {set} --type ifname --counter"));
    }
    for &f in families {
        sets.push(format!(
            "set add {} --type {} --value mark",
            FORWARD_MARK[f], addr_type[f]
        ));
        sets.push(format!(
            "set add {} --type {} --value ctmark",
            FORWARD_CTMARK[f], addr_type[f]
        ));
    }
    let cif = conf.center_if();
    let mut rules = vec![format!(
        "zone --iif @{TUNNEL_ZONE} --zone @{TUNNEL_ZONE} --dir both"
    )];
    for &f in families {
        let m = ADDRESS_ZONE[f];
        rules.push(format!(
            "zone --iif {cif} --dst @{m} --zone @{m} --dir reply"
        ));
        rules.push(format!("zone --local --dst @{m} --zone @{m} --dir reply"));
    }
    rules.push(format!(
        "filter --iif @{TUNNELS} --src {} --verdict drop --early",
        conf.cidr_text
    ));
    if let Some(v6) = &conf.v6 {
        rules.push(format!(
            "filter --iif @{TUNNELS} --src {} --verdict drop --early",
            v6.cidr_text
        ));
    }
    rules.push(format!(
        "connmark --iif @{TUNNEL_MARK} --set @{TUNNEL_MARK}"
    ));
    for &f in families {
        let m = TUNNEL_SNAT[f];
        rules.push(format!("snat --to @{m} --iif @{m} --local"));
    }
    for &f in families {
        for (kind, m) in [("mark", FORWARD_MARK[f]), ("connmark", FORWARD_CTMARK[f])] {
            rules.push(format!("{kind} --iif {cif} --dst @{m} --set @{m}"));
            rules.push(format!("{kind} --local --dst @{m} --set @{m}"));
        }
    }
    rules.push(format!("filter --iif @{TUNNELS} --reply --verdict accept"));
    rules.push(format!("filter --iif @{} --default drop", DENIED[0]));
    rules.push(format!(
        "filter --iif @{TUNNELS} --local --reply --verdict accept"
    ));
    rules.push(format!(
        "filter --iif @{} --local --default drop",
        DENIED[1]
    ));
    sets.extend(rules);
    sets
}

/// PEER's elements: its zones, tunnel, mark, SNAT, forwards' marks, entries and denials.
pub fn elements(conf: &Conf, peer: &Peer) -> Vec<Element> {
    let wg = Names::of(conf, &peer.name).wg;
    let (zone, mark) = names::zone(peer);
    let a6 = conf
        .v6
        .as_ref()
        .and(names::address6(conf, peer))
        .map(|a| a.to_string());
    let addrs: Vec<(usize, String)> = std::iter::once((0, peer.address.to_string()))
        .chain(a6.map(|a| (1, a)))
        .collect();
    let mut e = vec![Element::new(TUNNEL_ZONE, &wg, Some(zone.to_string()))];
    for (f, a) in &addrs {
        e.push(Element::new(ADDRESS_ZONE[*f], a, Some(zone.to_string())));
    }
    e.push(Element::new(TUNNELS, &wg, None));
    e.push(Element::new(TUNNEL_MARK, &wg, Some(mark.to_string())));
    for (f, a) in &addrs {
        e.push(Element::new(TUNNEL_SNAT[*f], &wg, Some(a.clone())));
    }
    if !access::dnats(conf, peer).is_empty() {
        for (f, a) in &addrs {
            e.push(Element::new(FORWARD_MARK[*f], a, Some(mark.to_string())));
            e.push(Element::new(FORWARD_CTMARK[*f], a, Some(mark.to_string())));
        }
    }
    e.extend(
        peer_entries(conf, peer)
            .into_iter()
            .map(|(_, element, _)| element),
    );
    for set in DENIED {
        e.push(Element::new(set, &wg, None));
    }
    e
}

/// PEER's natctl lines (without a namespace prefix): the sets of its entries and the rules over
/// them, which are there already unless it is the first peer with the entry, then its elements.
pub fn peer_lines(conf: &Conf, peer: &Peer) -> Vec<String> {
    let entries = peer_entries(conf, peer);
    let mut lines: Vec<String> = entries.iter().map(|(s, _, _)| s.set_line.clone()).collect();
    lines.extend(entries.iter().map(|(s, _, _)| s.rule_line.clone()));
    lines.extend(elements(conf, peer).iter().map(Element::add_line));
    lines
}

/// What PEER's allow entries and forwards each need, for `status`: the set's rule, the peer's
/// element of it, and the entry in words ("filter letting c07-wg's traffic reach 100.64.0.0/24").
pub fn peer_entries(conf: &Conf, peer: &Peer) -> Vec<(EntrySet, Element, String)> {
    let wg = Names::of(conf, &peer.name).wg;
    let allow = access::merged_allow(conf, &conf.allow, &peer.settings.allow);
    let mut out: Vec<(EntrySet, Element, String)> = Vec::new();
    for a in &allow {
        let set = EntrySet::allow(&a.selectors(), false);
        let element = Element::new(&set.name, &wg, None);
        out.push((
            set,
            element,
            format!("filter letting {wg}'s traffic reach {a}"),
        ));
    }
    for (addr, a) in access::center_allowed(conf, &allow) {
        let set = EntrySet::allow(&a.selectors_to(&addr.to_string()), true);
        let element = Element::new(&set.name, &wg, None);
        // (the center's address, and the entry's protocol and ports)
        let rest = &a.to_string()[a.net.to_string().len()..];
        let what = format!("filter letting {wg}'s traffic reach {addr}{rest} (the center itself)");
        out.push((set, element, what));
    }
    for d in access::dnats(conf, peer) {
        let set = EntrySet::forward(&d);
        let element = Element::new(&set.name, &d.daddr, None);
        let what = format!("forward {} (dnat of {} to {})", d.forward, d.daddr, d.to);
        out.push((set, element, what));
    }
    out
}

/// Whether SET is one of the sets of allow entries or forwards.
pub fn is_entry_set(set: &str) -> bool {
    let forward = set.starts_with("forward_")
        && !FORWARD_MARK.contains(&set)
        && !FORWARD_CTMARK.contains(&set);
    set.starts_with("allow_") || forward
}

/// Whether SET is one of the hub's: the center's, or one of an allow entry or forward.
pub fn is_hubs(set: &str) -> bool {
    let center = [TUNNEL_ZONE, TUNNELS, TUNNEL_MARK]
        .into_iter()
        .chain(ADDRESS_ZONE)
        .chain(TUNNEL_SNAT)
        .chain(DENIED)
        .chain(FORWARD_MARK)
        .chain(FORWARD_CTMARK)
        .any(|s| s == set);
    center || set.starts_with("allow_") || set.starts_with("forward_")
}

/// Whether RULE (as `natctl list` prints it) looks a packet up in one of the hub's sets.
pub(crate) fn over_hub_sets(rule: &NatRule) -> bool {
    rule.sets().any(is_hubs)
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    use super::*;

    fn conf(vars: &[(&str, &str)]) -> Conf {
        let vars: HashMap<String, String> = [("HUB_MODE", "zones"), ("HUB_PREFIX", "t")]
            .iter()
            .chain(vars)
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        Conf::from_map(&vars).unwrap()
    }

    fn of<'a>(elements: &'a [Element], set: &str) -> Vec<&'a Element> {
        elements.iter().filter(|e| e.set == set).collect()
    }

    #[test]
    fn a_peer_is_its_zone_mark_snat_tunnel_entries_and_denials() {
        let c = conf(&[]);
        let peer = Peer::new("a", 50007, Ipv4Addr::new(100, 64, 0, 8));
        let e = elements(&c, &peer);
        let value = |set: &str| of(&e, set)[0].value.clone();
        assert_eq!(value(TUNNEL_ZONE).as_deref(), Some("50007"));
        assert_eq!(value(ADDRESS_ZONE[0]).as_deref(), Some("50007"));
        assert_eq!(of(&e, ADDRESS_ZONE[0])[0].key, "100.64.0.8");
        let mark = (0x4e58_0000u32 + 50007).to_string();
        assert_eq!(value(TUNNEL_MARK).as_deref(), Some(mark.as_str()));
        assert_eq!(value(TUNNEL_SNAT[0]).as_deref(), Some("100.64.0.8"));
        for set in [TUNNELS, DENIED[0], DENIED[1]] {
            assert_eq!(of(&e, set).len(), 1, "{set}");
            assert_eq!(of(&e, set)[0].key, "ta-wg");
        }
        // (no IPv6 without HUB_CIDR6, no forwards' marks without forwards)
        for set in [
            ADDRESS_ZONE[1],
            TUNNEL_SNAT[1],
            FORWARD_MARK[0],
            FORWARD_CTMARK[0],
        ] {
            assert!(of(&e, set).is_empty(), "{set}: {e:?}");
        }
        // (the internal network, forwarded, and the center's own address: one set each)
        let entries: Vec<&Element> = e.iter().filter(|x| is_entry_set(&x.set)).collect();
        assert_eq!(entries.len(), 2, "{e:?}");
        // Its lines: the entries' sets and rules, then every element, a map's with --replace.
        let lines = peer_lines(&c, &peer);
        assert!(lines[0].starts_with("set add allow_"), "{lines:?}");
        assert!(lines.contains(&"element add tunnel_zone ta-wg 50007 --replace".to_string()));
        assert!(lines.contains(&"element add tunnels ta-wg".to_string()));
        assert_eq!(
            lines
                .iter()
                .filter(|l| l.starts_with("element add"))
                .count(),
            e.len()
        );
    }

    #[test]
    fn forwards_and_ipv6_add_their_sets() {
        let c = conf(&[("HUB_FORWARDS", "tcp/22"), ("HUB_CIDR6", "fd64::/64")]);
        let peer = Peer::new("a", 50000, Ipv4Addr::new(100, 64, 0, 1));
        let e = elements(&c, &peer);
        for set in [
            ADDRESS_ZONE[1],
            TUNNEL_SNAT[1],
            FORWARD_MARK[1],
            FORWARD_CTMARK[1],
        ] {
            assert_eq!(of(&e, set).len(), 1, "{set}: {e:?}");
        }
        // (one forward, IPv4 and IPv6: two sets of addresses, each with its dnat)
        let forwards: Vec<&Element> = e
            .iter()
            .filter(|x| x.set.starts_with("forward_") && is_entry_set(&x.set))
            .collect();
        assert_eq!(forwards.len(), 2, "{e:?}");
        let lines = peer_lines(&c, &peer);
        let dnats: Vec<&String> = lines.iter().filter(|l| l.starts_with("dnat")).collect();
        assert_eq!(dnats.len(), 2, "{lines:?}");
        assert!(dnats
            .iter()
            .all(|l| l.contains("--daddr @forward_") && l.ends_with("--local")));
        assert!(center_lines(&c)
            .iter()
            .any(|l| l == "zone --local --dst @address_zone6 --zone @address_zone6 --dir reply"));
    }

    #[test]
    fn an_entrys_set_is_named_by_the_entry_alone() {
        let c = conf(&[]);
        let a = Peer::new("a", 50000, Ipv4Addr::new(100, 64, 0, 1));
        let mut b = Peer::new("b", 50001, Ipv4Addr::new(100, 64, 0, 2));
        let names = |p: &Peer| -> Vec<String> {
            peer_entries(&c, p)
                .into_iter()
                .map(|(s, _, _)| s.name)
                .collect()
        };
        assert_eq!(names(&a), names(&b), "the same entries, the same sets");
        b.settings.allow = vec!["100.64.0.10/32,tcp/443".parse().unwrap()];
        let extra: Vec<String> = names(&b)
            .into_iter()
            .filter(|n| !names(&a).contains(n))
            .collect();
        // (forwarded, and to the center's own address, which the entry names)
        assert_eq!(extra.len(), 2, "{extra:?}");
        assert!(extra.iter().all(|n| n.len() <= 32), "{extra:?}");
    }

    #[test]
    fn the_hubs_sets_and_the_rules_over_them_are_told_apart() {
        for (set, hubs, entry) in [
            ("tunnels", true, false),
            ("forward_mark", true, false),
            ("forward_dbd1c719", true, true),
            ("allow_local_5dec57d4", true, true),
            ("mine", false, false),
        ] {
            assert_eq!((is_hubs(set), is_entry_set(set)), (hubs, entry), "{set}");
        }
        let rule = |iif: &str| NatRule {
            iif: Some(iif.to_string()),
            ..NatRule::default()
        };
        assert!(over_hub_sets(&rule("@tunnels")));
        assert!(!over_hub_sets(&rule("@mine")));
        assert!(!over_hub_sets(&rule("tunnels")));
    }
}
