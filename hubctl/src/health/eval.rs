//! The health rules applied: the center's problems, then each peer's, in status.jq's order.

use std::collections::{BTreeMap, HashMap, HashSet};

use crate::conf::{where_ns, Conf};
use crate::fwmark;
use crate::names::{self, Names};
use crate::record::{Center, Peer};
use crate::sets;

use super::access::{self, access_problems, denied};
use super::rules::*;
use super::seen::*;
use super::{CenterStatus, Observed, PeerStatus, Status};
use crate::listing::*;

/// What the center holds for every peer (HUB_MODE=zones), by the peer's objects.
#[derive(Default)]
pub(super) struct CenterSeen<'a> {
    /// natctl's rules as it lists them.
    nat_json: &'a [serde_json::Value],
    /// The elements of natctl's sets, by (set, key): their value as text, and their counter.
    elements: HashMap<(&'a str, String), (String, Option<u64>)>,
    /// Routing rules by fwmark.
    rules: HashMap<u64, Vec<&'a Rule>>,
    /// Routes by device.
    routes: HashMap<&'a str, Vec<&'a Route>>,
    /// WireGuard interfaces by name (the first of a name).
    wg: HashMap<&'a str, &'a WgInterface>,
    /// The addresses of the center's interface (ADDR/LEN).
    addresses: HashSet<&'a str>,
    /// Every address in the center (without its length) and the links that hold it.
    holders: HashMap<&'a str, Vec<&'a str>>,
}

/// The center's tool outputs, read once.
pub(super) struct CenterShows {
    links: Links,
    switch: Option<Links>,
    fwd: SysctlShow,
    wg: WgShow,
    nat: NatList,
    /// The same, as natctl printed it (what a planned rule line is compared with).
    nat_json: serde_json::Value,
    sets: SetList,
    rules: RuleList,
    routes: RouteList,
}

/// One peer's tool outputs (HUB_MODE=netns).
pub(super) struct PeerShows {
    links: Links,
    fwd: SysctlShow,
    fwd6: SysctlShow,
    routes: RouteList,
    nat: NatList,
}

/// status.jq's inputs, checked and read.
pub(super) struct Health<'a> {
    conf: &'a Conf,
    peers: &'a BTreeMap<String, Peer>,
    seen: &'a Observed,
    recorded: bool,
    /// The switch namespace ("": none).
    switch: String,
    center_where: String,
    switch_where: String,
    center_if: String,
    cidr6: String,
    address6: String,
    shows: CenterShows,
}

impl<'a> Health<'a> {
    pub(super) fn new(
        conf: &'a Conf,
        center: Option<&Center>,
        peers: &'a BTreeMap<String, Peer>,
        seen: &'a Observed,
    ) -> Health<'a> {
        let switch = center.and_then(|c| c.switch.clone()).unwrap_or_default();
        let switch_where = where_ns(if switch.is_empty() { &conf.ns } else { &switch });
        let shows = CenterShows {
            links: Links::new(read(seen, "center:links")),
            switch: (!switch.is_empty()).then(|| Links::new(read(seen, "center:switch"))),
            fwd: read(seen, "center:fwd"),
            wg: read(seen, "center:wg"),
            nat: read(seen, "center:nat"),
            nat_json: read(seen, "center:nat"),
            sets: read(seen, "center:sets"),
            rules: read(seen, "center:rules"),
            routes: read(seen, "center:routes"),
        };
        Health {
            conf,
            peers,
            seen,
            recorded: center.is_some(),
            switch,
            center_where: conf.where_center(),
            switch_where,
            center_if: conf.center_if(),
            cidr6: conf
                .v6
                .as_ref()
                .map(|v6| v6.cidr_text.clone())
                .unwrap_or_default(),
            address6: conf
                .v6
                .as_ref()
                .map(|v6| v6.address.to_string())
                .unwrap_or_default(),
            shows,
        }
    }

    pub(super) fn present(&self, ns: &str) -> bool {
        self.seen.netns.contains(ns)
    }

    /// The links of the bridge's namespace.
    pub(super) fn switch_links(&self) -> &Links {
        self.shows.switch.as_ref().unwrap_or(&self.shows.links)
    }

    pub(super) fn center_seen(&self) -> CenterSeen<'_> {
        let shows = &self.shows;
        let mut center = CenterSeen {
            nat_json: shows.nat_json["rules"]
                .as_array()
                .map_or(&[][..], Vec::as_slice),
            ..CenterSeen::default()
        };
        for set in &shows.sets.sets {
            for e in &set.elements {
                center.elements.insert(
                    (set.name.as_str(), jq_text(&e.key)),
                    (jq_text(&e.value), e.packets),
                );
            }
        }
        for rule in &shows.rules.rules {
            if let Some(mark) = rule.fwmark {
                center.rules.entry(mark).or_default().push(rule);
            }
        }
        for route in &shows.routes.routes {
            if let Some(dev) = route.dev.as_deref() {
                center.routes.entry(dev).or_default().push(route);
            }
        }
        for i in &shows.wg.interfaces {
            if let Some(name) = i.name.as_deref() {
                center.wg.entry(name).or_insert(i);
            }
        }
        if let Some(cif) = shows.links.get(&self.center_if) {
            center.addresses = cif.addresses.iter().map(String::as_str).collect();
        }
        for link in &shows.links.links {
            for a in &link.addresses {
                let host = a.split('/').next().unwrap_or_default();
                center.holders.entry(host).or_default().push(&link.name);
            }
        }
        center
    }

    /// The extra bridges in use (netns mode): bridge K, the veth end on HUB_BRIDGE, the end on
    /// bridge K; in the order of K.
    pub(super) fn trunks(&self) -> Vec<(String, String, String)> {
        if self.conf.zones() {
            return Vec::new();
        }
        let mut trunks = BTreeMap::new();
        for peer in self.peers.values() {
            let place = names::placement(self.conf, peer, !self.switch.is_empty());
            if let Some(t) = place.trunk {
                trunks.insert(place.k, (place.bridge, t.down, t.up));
            }
        }
        trunks.into_values().collect()
    }

    pub(super) fn center_problems(&self) -> Vec<String> {
        let conf = self.conf;
        let mut out = Vec::new();
        if !self.recorded {
            out.push("the hub is not up (no center record): run 'hub up'".to_string());
            return out;
        }
        if !conf.ns.is_empty() && !self.present(&conf.ns) {
            out.push(format!("center namespace {} is missing", conf.ns));
            return out;
        }
        if !self.switch.is_empty() && !self.present(&self.switch) {
            out.push(format!(
                "switch namespace {} (the bridge and every peer's port) is missing",
                self.switch
            ));
        } else {
            let sl = self.switch_links();
            let place = &self.switch_where;
            link_problems(&mut out, sl, &conf.bridge, "bridge", place);
            port_problems(&mut out, sl, &conf.center_br(), &conf.bridge, place);
            for (bridge, down, up) in self.trunks() {
                link_problems(&mut out, sl, &bridge, "bridge", place);
                port_problems(&mut out, sl, &down, &conf.bridge, place);
                port_problems(&mut out, sl, &up, &bridge, place);
            }
        }
        let cl = &self.shows.links;
        link_problems(
            &mut out,
            cl,
            &self.center_if,
            "the center's interface",
            &self.center_where,
        );
        address_problem(
            &mut out,
            cl,
            &self.center_if,
            &format!("{}/{}", conf.address_text, conf.cidr.len),
        );
        if let Some(v6) = &conf.v6 {
            address_problem(
                &mut out,
                cl,
                &self.center_if,
                &format!("{}/{}", self.address6, v6.cidr.len),
            );
        }
        forwarding_problem(&mut out, &self.shows.fwd, &self.center_where);
        if conf.zones() {
            let families = std::iter::once("inet").chain(conf.v6.as_ref().map(|_| "inet6"));
            for family in families {
                for args in fwmark::center_rules(family == "inet6") {
                    if !self.shows.rules.rules.iter().any(|r| r.is(family, &args)) {
                        out.push(format!(
                            "no {}rule '{}' in {}",
                            ip_version(family),
                            args.trim_start_matches("-6 "),
                            self.center_where
                        ));
                    }
                }
            }
            // (the rules every peer's elements need: each once, over the sets)
            let listed = self.shows.nat_json["rules"]
                .as_array()
                .map_or(&[][..], Vec::as_slice);
            for line in sets::center_lines(conf) {
                if !line.starts_with("set ") && !listed.iter().any(|n| lists_line(n, &line)) {
                    out.push(format!("no natctl rule '{line}' in {}", self.center_where));
                }
            }
            // (once each: every listed part of a rule says the same)
            let mut integrity = Vec::new();
            nat_integrity(
                &mut integrity,
                self.shows.nat.rules.iter(),
                &self.center_where,
            );
            integrity.dedup();
            out.extend(integrity);
        }
        out
    }

    pub(super) fn status(&self) -> Status {
        let conf = self.conf;
        let center_problems = self.center_problems();
        let center = self.center_seen();
        let peers: Vec<PeerStatus> = self.peers.values().map(|r| self.peer(r, &center)).collect();
        let ns = (!conf.ns.is_empty()).then(|| conf.ns.clone());
        Status {
            changed: false,
            healthy: center_problems.is_empty() && peers.iter().all(|p| p.healthy),
            mode: conf.mode.as_str().to_string(),
            center: CenterStatus {
                up: self.recorded && (conf.ns.is_empty() || self.present(&conf.ns)),
                ns,
                switch: (!self.switch.is_empty()).then(|| self.switch.clone()),
                bridge: conf.bridge.clone(),
                interface: self.center_if.clone(),
                address: conf.address_text.clone(),
                cidr: conf.cidr_text.clone(),
                address6: (!self.address6.is_empty()).then(|| self.address6.clone()),
                cidr6: (!self.cidr6.is_empty()).then(|| self.cidr6.clone()),
                healthy: center_problems.is_empty(),
                problems: center_problems,
            },
            peers,
        }
    }

    pub(super) fn peer(&self, r: &Peer, center: &CenterSeen) -> PeerStatus {
        let conf = self.conf;
        let zones = conf.zones();
        let names = Names::of(conf, &r.name);
        let pns = if zones {
            conf.ns.clone()
        } else {
            names.ns.clone()
        };
        let pwhere = if zones {
            self.center_where.clone()
        } else {
            where_ns(&pns)
        };
        let pwg = &names.wg;
        let address = r.address.to_string();
        let a6 = names::address6(conf, r)
            .map(|a| a.to_string())
            .unwrap_or_default();
        let owner = |what: &str| format!("{}:{what}", r.name);
        let mine: Option<PeerShows> = (!zones && self.present(&pns)).then(|| PeerShows {
            links: Links::new(read(self.seen, &owner("links"))),
            fwd: read(self.seen, &owner("fwd")),
            fwd6: read(self.seen, &owner("fwd6")),
            routes: read(self.seen, &owner("routes")),
            nat: read(self.seen, &owner("nat")),
        });
        let own_wg: WgShow = if zones {
            WgShow::default()
        } else {
            read(self.seen, &owner("wg"))
        };
        let i: Option<&WgInterface> = if zones {
            center.wg.get(pwg.as_str()).copied()
        } else {
            own_wg
                .interfaces
                .iter()
                .find(|i| i.name.as_deref() == Some(pwg))
        };
        let p = i.and_then(|i| i.peers.iter().find(|p| p.public_key == r.client_public_key));

        let mut out = Vec::new();
        if zones {
            if !conf.ns.is_empty() && !self.present(&conf.ns) {
                out.push(format!("center namespace {} is missing", conf.ns));
            } else {
                let cl = &self.shows.links;
                tunnel_problems(&mut out, i, p, r, pwg, cl, &pwhere);
                ipv6_problem(&mut out, cl, pwg, conf.tunnel_ipv6());
                listener_problem(&mut out, i, pwg);
                let mut own = vec![format!("{address}/32")];
                if !self.cidr6.is_empty() {
                    own.push(format!("{a6}/128"));
                }
                for a in own {
                    if cl.get(&self.center_if).is_some() && !center.addresses.contains(a.as_str()) {
                        out.push(format!("{} lacks its address {a}", self.center_if));
                    }
                }
                self.zone_problems(&mut out, r, pwg, &a6, center, &pwhere);
            }
        } else if let Some(m) = &mine {
            let pl = &m.links;
            let pin = &names.inside;
            link_problems(&mut out, pl, pin, "veth", &pwhere);
            address_problem(&mut out, pl, pin, &format!("{address}/{}", conf.cidr.len));
            if let Some(v6) = &conf.v6 {
                address_problem(&mut out, pl, pin, &format!("{a6}/{}", v6.cidr.len));
            }
            forwarding_problem(&mut out, &m.fwd, &pwhere);
            tunnel_problems(&mut out, i, p, r, pwg, pl, &pwhere);
            ipv6_problem(&mut out, pl, pwg, conf.tunnel_ipv6());
            listener_problem(&mut out, i, pwg);
            let routes: Vec<&Route> = m.routes.routes.iter().collect();
            default_route_problem(&mut out, &routes, pwg, Table::Main, "inet", &pwhere);
            if conf.v6.is_some() {
                default_route_problem(&mut out, &routes, pwg, Table::Main, "inet6", &pwhere);
            }
            let napt = m.nat.rules.iter().any(|n| {
                n.kind.as_deref() == Some("masquerade")
                    && n.oif.as_deref() == Some(pin)
                    && n.tampered != Some(true)
            });
            if !napt {
                out.push(format!(
                    "no NAPT rule (masquerade out of {pin}) in {pwhere}"
                ));
            }
            nat_integrity(&mut out, m.nat.rules.iter(), &pwhere);
            let rules: Vec<&NatRule> = m.nat.rules.iter().collect();
            access_problems(&mut out, &rules, &access::wants(conf, r), pwg, &pwhere);
            for table in &m.nat.foreign_tables {
                out.push(format!(
                    "nftables {table} in {pwhere} is not the hub's (only natctl's table belongs in a peer's namespace)"
                ));
            }
        } else {
            out.push(format!("namespace {pns} is missing"));
        }
        if !zones {
            let bridge = names::placement(conf, r, !self.switch.is_empty()).bridge;
            port_problems(
                &mut out,
                self.switch_links(),
                &names.br,
                &bridge,
                &self.switch_where,
            );
            isolation_problem(
                &mut out,
                self.switch_links(),
                &names.br,
                conf.isolate,
                &self.switch_where,
            );
        }
        for a in [address.as_str(), a6.as_str()]
            .into_iter()
            .filter(|a| !a.is_empty())
        {
            for l in center.holders.get(a).into_iter().flatten() {
                if *l != self.center_if || !zones {
                    out.push(format!(
                        "{l} in {} also holds {}'s address {a}",
                        self.center_where, r.name
                    ));
                }
            }
        }
        if let Some(m) = &mine {
            for link in m.links.links.iter().filter(|l| l.name != names.inside) {
                for a in &link.addresses {
                    let host = a.split('/').next().unwrap_or_default();
                    if host == address || host == a6 {
                        out.push(format!(
                            "{} in {pwhere} also holds {}'s address {host}",
                            link.name, r.name
                        ));
                    }
                }
            }
            if conf.v6.is_some() && !m.fwd6.is_on() {
                out.push(format!("IPv6 forwarding is off in {pwhere}"));
            }
        }
        if !self.seen.udp_ports.contains(&r.listen_port) {
            out.push(format!(
                "nothing listens on UDP port {} in the center ({})",
                r.listen_port, self.center_where
            ));
        }

        let denied_packets = match &mine {
            _ if zones => crate::sets::DENIED
                .iter()
                .filter_map(|set| center.elements.get(&(*set, pwg.clone())))
                .filter_map(|(_, packets)| *packets)
                .sum(),
            Some(m) => denied(&m.nat.rules.iter().collect::<Vec<_>>(), pwg),
            None => 0,
        };
        let s = &r.settings;
        PeerStatus {
            name: r.name.clone(),
            ns: (!pns.is_empty()).then_some(pns),
            address,
            address6: (!a6.is_empty()).then_some(a6),
            listen_port: r.listen_port,
            public_key: r.public_key.clone(),
            client_public_key: r.client_public_key.clone(),
            preshared_key: s.preshared_key,
            keepalive: s.keepalive,
            mtu: s.mtu,
            dns: s
                .dns
                .as_deref()
                .unwrap_or_default()
                .split(',')
                .filter(|d| !d.is_empty())
                .map(String::from)
                .collect(),
            interface: pwg.clone(),
            up: i.is_some(),
            endpoint: p.and_then(|p| p.endpoint.clone()),
            allowed_ips: p.map(|p| p.allowed_ips.clone()).unwrap_or_default(),
            latest_handshake: p.and_then(|p| p.latest_handshake),
            rx_bytes: p.and_then(|p| p.rx_bytes).unwrap_or(0),
            tx_bytes: p.and_then(|p| p.tx_bytes).unwrap_or(0),
            forwards: crate::access::merged_forwards(&conf.forwards, &s.forwards)
                .iter()
                .map(ToString::to_string)
                .collect(),
            allow: crate::access::merged_allow(conf, &conf.allow, &s.allow)
                .iter()
                .map(ToString::to_string)
                .collect(),
            denied_packets,
            healthy: out.is_empty(),
            problems: out,
        }
    }

    /// HUB_MODE=zones: the peer's conntrack zones, connection marks, SNAT, forwards, filters and
    /// return routes, all in the center: its elements of the center's sets, and the rules of its
    /// allow entries and forwards.
    pub(super) fn zone_problems(
        &self,
        out: &mut Vec<String>,
        r: &Peer,
        pwg: &str,
        a6: &str,
        center: &CenterSeen,
        place: &str,
    ) {
        let conf = self.conf;
        let (zone, mark) = names::zone(r);
        let address = r.address.to_string();
        let addrs: Vec<(usize, &str)> = [(0, address.as_str()), (1, a6)]
            .into_iter()
            .filter(|(_, a)| !a.is_empty())
            .collect();
        let rules: &[&Rule] = center
            .rules
            .get(&u64::from(mark))
            .map_or(&[], Vec::as_slice);
        let has = |set: &str, key: &str, value: Option<&str>| {
            center
                .elements
                .get(&(set, key.to_string()))
                .is_some_and(|(v, _)| value.is_none_or(|want| v == want))
        };
        let (zone_text, mark_text) = (zone.to_string(), mark.to_string());
        if !has(sets::TUNNEL_ZONE, pwg, Some(&zone_text)) {
            out.push(format!(
                "no conntrack zone {zone} for traffic from {pwg} in {place}"
            ));
        }
        for (f, a) in &addrs {
            if !has(sets::ADDRESS_ZONE[*f], a, Some(&zone_text)) {
                out.push(format!(
                    "no conntrack zone {zone} for the replies to {a} in {place}"
                ));
            }
        }
        if !has(sets::TUNNEL_MARK, pwg, Some(&mark_text)) {
            out.push(format!(
                "no connection mark {mark} for traffic from {pwg} in {place}"
            ));
        }
        for (f, a) in &addrs {
            if !has(sets::TUNNEL_SNAT[*f], pwg, Some(a)) {
                out.push(format!("no SNAT of {pwg}'s traffic to {a} in {place}"));
            }
        }
        if !crate::access::dnats(conf, r).is_empty() {
            for (f, a) in &addrs {
                for (kind, set) in [
                    ("mark", sets::FORWARD_MARK[*f]),
                    ("connmark", sets::FORWARD_CTMARK[*f]),
                ] {
                    if !has(set, a, Some(&mark_text)) {
                        out.push(format!(
                            "no {kind} {mark} for the forwards' connections to {a} in {place}"
                        ));
                    }
                }
            }
        }
        if !has(sets::TUNNELS, pwg, None) {
            out.push(format!(
                "no filter dropping {pwg}'s packets from the internal network (forged replies), nor letting its replies pass, in {place}"
            ));
        }
        let entries = sets::peer_entries(conf, r);
        for (set, element, what) in &entries {
            let ruled = center
                .nat_json
                .iter()
                .any(|n| lists_line(n, &set.rule_line));
            if !ruled || !has(&element.set, &element.key, None) {
                out.push(format!("no {what} in {place}"));
            }
        }
        // (an element of a taken-away entry: in force until `hub up`)
        let mine: Vec<&str> = std::iter::once(pwg)
            .chain(addrs.iter().map(|(_, a)| *a))
            .collect();
        let mut stale: Vec<String> = center
            .elements
            .keys()
            .filter(|(set, key)| sets::is_entry_set(set) && mine.contains(&key.as_str()))
            .filter(|(set, key)| !entries.iter().any(|(_, e, _)| e.set == *set && e.key == *key))
            .map(|(set, key)| {
                format!(
                    "natctl element {key} of set {set} in {place} is not in the plan (a forward or allow entry taken away is in force until 'hub up')"
                )
            })
            .collect();
        stale.sort();
        out.extend(stale);
        for (set, itself) in sets::DENIED.iter().zip(["", " to the center itself"]) {
            if !has(set, pwg, None) {
                out.push(format!(
                    "no filter dropping the rest of {pwg}'s traffic{itself} in {place}"
                ));
            }
        }
        let cif = conf.center_if();
        let cidr = &conf.cidr_text;
        let routes: &[&Route] = center.routes.get(pwg).map_or(&[], Vec::as_slice);
        let inside: &[&Route] = center.routes.get(cif.as_str()).map_or(&[], Vec::as_slice);
        for (family, wanted, internal) in [
            ("inet", true, cidr.as_str()),
            ("inet6", !a6.is_empty(), self.cidr6.as_str()),
        ] {
            if !wanted {
                continue;
            }
            let v6 = family == "inet6";
            let port = r.listen_port;
            if !rules
                .iter()
                .any(|rule| rule.is(family, &fwmark::peer_rule(v6, port, mark)))
            {
                out.push(format!(
                    "no {}rule 'fwmark {mark} lookup {mark}' (priority {}) in {place}",
                    ip_version(family),
                    fwmark::priority(port)
                ));
            }
            let gate = fwmark::gate(v6, port);
            let gates = center
                .rules
                .get(&u64::from(fwmark::gate_mark(port)))
                .map_or(&[][..], Vec::as_slice);
            if !gates.iter().any(|rule| rule.is(family, &gate)) {
                out.push(format!(
                    "no {}rule '{}' (the gate of its block of ports) in {place}",
                    ip_version(family),
                    gate.trim_start_matches("-6 ")
                ));
            }
            default_route_problem(out, routes, pwg, Table::Id(mark), family, place);
            let back = inside.iter().any(|route| {
                route.dst.as_deref() == Some(internal) && Table::Id(mark).holds(route)
            });
            if !back {
                out.push(format!(
                    "no route to {internal} through {cif} in table {mark} in {place}"
                ));
            }
        }
    }
}
