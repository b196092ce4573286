//! The health of a built hub: every record held against what the tools report. This is the
//! object `hub status` and `hub check` print, a port of niransix-sh/status.jq: the same keys in
//! the same order, the same problems in the same words and order. Every problem names the object
//! and what is wrong with it, in words a person can act on ('hub up' repairs all of them).
//!
//! One addition to status.jq: a WireGuard interface whose wireguard-go listener is unfiltered
//! (`wgctl show` says `"listener_filtered": false`) is a problem of its peer.
//!
//! What the tools printed is read into structs of the parts read here; a key that is absent or
//! null reads as jq's null (`// default`), and an output of another shape reads as absent.

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::de::{DeserializeOwned, Deserializer};
use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conf::{where_ns, Conf, ZONE_RULE_PRIORITY};
use crate::names::{self, Names};
use crate::record::{Center, Peer};

/// What the hub saw of the kernel.
#[derive(Debug, Clone, Default)]
pub struct Observed {
    /// What the tools printed (their one JSON object), by owner: "center:links", "center:fwd",
    /// "center:switch", "center:wg", "center:nat", "center:rules", "center:routes" (zones), and per
    /// peer "NAME:links", "NAME:fwd", "NAME:fwd6", "NAME:wg", "NAME:routes", "NAME:nat" (netns).
    pub shows: HashMap<String, Value>,
    /// The namespaces that exist.
    pub netns: HashSet<String>,
    /// The UDP ports open in the center.
    pub udp_ports: HashSet<u16>,
}

/// `hub status`: the center and every peer, with their health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub changed: bool,
    pub healthy: bool,
    pub mode: String,
    pub center: CenterStatus,
    pub peers: Vec<PeerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CenterStatus {
    pub ns: Option<String>,
    pub switch: Option<String>,
    pub bridge: String,
    pub interface: String,
    pub address: String,
    pub cidr: String,
    pub address6: Option<String>,
    pub cidr6: Option<String>,
    pub up: bool,
    pub healthy: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStatus {
    pub name: String,
    /// Its namespace (HUB_MODE=zones: the center's; null for the host).
    pub ns: Option<String>,
    pub address: String,
    pub address6: Option<String>,
    pub listen_port: u16,
    pub public_key: Option<String>,
    pub client_public_key: Option<String>,
    pub preshared_key: bool,
    pub keepalive: Option<u16>,
    pub mtu: Option<u32>,
    pub dns: Vec<String>,
    pub interface: String,
    /// Its WireGuard interface exists.
    pub up: bool,
    pub endpoint: Option<String>,
    /// What its tunnel routes to the client, as WireGuard has it.
    pub allowed_ips: Vec<String>,
    pub latest_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    pub healthy: bool,
    pub problems: Vec<String>,
}

/// The status object of the hub CONF (CENTER: its record, None when it is not up; PEERS: the
/// peer records by name) as SEEN.
pub fn status(
    conf: &Conf,
    center: Option<&Center>,
    peers: &BTreeMap<String, Peer>,
    seen: &Observed,
) -> Value {
    serde_json::to_value(Health::new(conf, center, peers, seen).status())
        .expect("a status serializes")
}

// --- what the tools print: the parts read here ---

/// A `Vec` field that may be null (jq's `.list[]?` and `.list // []`).
fn null_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(d: D) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `nsctl link list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct LinkList {
    #[serde(deserialize_with = "null_empty")]
    links: Vec<Link>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Link {
    name: String,
    state: Option<String>,
    master: Option<String>,
    mtu: Option<u64>,
    #[serde(deserialize_with = "null_empty")]
    addresses: Vec<String>,
}

/// `nsctl sysctl KEY`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct SysctlShow {
    sysctl: Option<Sysctl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Sysctl {
    value: Option<String>,
}

impl SysctlShow {
    fn is_on(&self) -> bool {
        self.sysctl.as_ref().and_then(|s| s.value.as_deref()) == Some("1")
    }
}

/// `wgctl show`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WgShow {
    #[serde(deserialize_with = "null_empty")]
    interfaces: Vec<WgInterface>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WgInterface {
    name: Option<String>,
    public_key: Option<String>,
    listen_port: Option<u64>,
    #[serde(deserialize_with = "null_empty")]
    peers: Vec<WgPeer>,
    /// wireguard-go's listener filters the center's link events (null: unknown).
    listener_filtered: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WgPeer {
    public_key: Option<String>,
    endpoint: Option<String>,
    #[serde(deserialize_with = "null_empty")]
    allowed_ips: Vec<String>,
    latest_handshake: Option<u64>,
    rx_bytes: Option<u64>,
    tx_bytes: Option<u64>,
    persistent_keepalive: Option<u64>,
    preshared_key: Option<bool>,
}

/// `routectl route list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RouteList {
    #[serde(deserialize_with = "null_empty")]
    routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Route {
    family: Option<String>,
    dst: Option<String>,
    dev: Option<String>,
    /// Its name ("main") or its number.
    table: Value,
    table_id: Option<u64>,
}

/// `routectl rule list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct RuleList {
    #[serde(deserialize_with = "null_empty")]
    rules: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Rule {
    family: Option<String>,
    fwmark: Option<u64>,
    table_id: Option<u64>,
    priority: Option<u64>,
}

/// `natctl list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NatList {
    #[serde(deserialize_with = "null_empty")]
    rules: Vec<NatRule>,
    #[serde(deserialize_with = "null_empty")]
    foreign_tables: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct NatRule {
    id: Value,
    kind: Option<String>,
    iif: Option<String>,
    oif: Option<String>,
    zone: Option<u64>,
    set: Option<u64>,
    to: Option<String>,
    src: Option<String>,
    dst: Option<String>,
    local: Option<bool>,
    early: Option<bool>,
    verdict: Option<String>,
    default: Option<String>,
    tampered: Option<bool>,
    complete: Option<bool>,
}

impl NatRule {
    fn is(&self, kind: &str, iif: &str) -> bool {
        self.kind.as_deref() == Some(kind) && self.iif.as_deref() == Some(iif)
    }
}

/// A value as jq's string interpolation writes it: a string as itself, anything else as JSON.
pub(crate) fn jq_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An optional value as jq writes it (`null` when absent).
fn or_null<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// The links of one namespace by name, in the order the tool listed them (jq's `from_entries`: a
/// repeated name keeps its first place and its last value).
struct Links {
    links: Vec<Link>,
    by_name: HashMap<String, usize>,
}

impl Links {
    fn new(list: LinkList) -> Links {
        let mut links: Vec<Link> = Vec::new();
        let mut by_name = HashMap::new();
        for link in list.links {
            match by_name.get(&link.name) {
                Some(&at) => links[at] = link,
                None => {
                    by_name.insert(link.name.clone(), links.len());
                    links.push(link);
                }
            }
        }
        Links { links, by_name }
    }

    fn get(&self, name: &str) -> Option<&Link> {
        self.by_name.get(name).map(|&at| &self.links[at])
    }
}

/// A routing table a default route must be in.
#[derive(Clone, Copy)]
enum Table {
    Main,
    Id(u32),
}

impl Table {
    fn holds(self, route: &Route) -> bool {
        match self {
            Table::Main => route.table.as_str() == Some("main"),
            Table::Id(id) => {
                route.table.as_f64() == Some(f64::from(id)) || route.table_id == Some(u64::from(id))
            }
        }
    }
}

/// What the center holds for every peer (HUB_MODE=zones), by the peer's objects.
#[derive(Default)]
struct CenterSeen<'a> {
    /// natctl's rules by incoming interface.
    nat: HashMap<&'a str, Vec<&'a NatRule>>,
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
struct CenterShows {
    links: Links,
    switch: Option<Links>,
    fwd: SysctlShow,
    wg: WgShow,
    nat: NatList,
    rules: RuleList,
    routes: RouteList,
}

/// One peer's tool outputs (HUB_MODE=netns).
struct PeerShows {
    links: Links,
    fwd: SysctlShow,
    fwd6: SysctlShow,
    routes: RouteList,
    nat: NatList,
}

/// status.jq's inputs, checked and read.
struct Health<'a> {
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
    fn new(
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

    fn present(&self, ns: &str) -> bool {
        self.seen.netns.contains(ns)
    }

    /// The links of the bridge's namespace.
    fn switch_links(&self) -> &Links {
        self.shows.switch.as_ref().unwrap_or(&self.shows.links)
    }

    fn center_seen(&self) -> CenterSeen<'_> {
        let shows = &self.shows;
        let mut center = CenterSeen::default();
        for rule in &shows.nat.rules {
            if let Some(iif) = rule.iif.as_deref() {
                center.nat.entry(iif).or_default().push(rule);
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
    fn trunks(&self) -> Vec<(String, String, String)> {
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

    fn center_problems(&self) -> Vec<String> {
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
        out
    }

    fn status(&self) -> Status {
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

    fn peer(&self, r: &Peer, center: &CenterSeen) -> PeerStatus {
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
            healthy: out.is_empty(),
            problems: out,
        }
    }

    /// HUB_MODE=zones: the peer's conntrack zone, connection mark, SNAT, filters and return
    /// route, all in the center.
    fn zone_problems(
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
        let nat: &[&NatRule] = center.nat.get(pwg).map_or(&[], Vec::as_slice);
        let rules: &[&Rule] = center
            .rules
            .get(&u64::from(mark))
            .map_or(&[], Vec::as_slice);
        let has = |f: &dyn Fn(&NatRule) -> bool| nat.iter().any(|n| f(n));
        if !has(&|n| n.is("zone", pwg) && n.zone == Some(u64::from(zone))) {
            out.push(format!(
                "no conntrack zone {zone} for traffic from {pwg} in {place}"
            ));
        }
        if !has(&|n| n.is("connmark", pwg) && n.set == Some(u64::from(mark))) {
            out.push(format!(
                "no connection mark {mark} for traffic from {pwg} in {place}"
            ));
        }
        let address = r.address.to_string();
        if !has(&|n| n.is("snat", pwg) && n.to.as_deref() == Some(&address)) {
            out.push(format!(
                "no SNAT of {pwg}'s traffic to {address} in {place}"
            ));
        }
        if !a6.is_empty() && !has(&|n| n.is("snat", pwg) && n.to.as_deref() == Some(a6)) {
            out.push(format!("no SNAT of {pwg}'s traffic to {a6} in {place}"));
        }
        let v6_too = |dst: &str| !dst.is_empty() && (!a6.is_empty() || !dst.contains(':'));
        let (cidr, addr) = (&conf.cidr_text, &conf.address_text);
        for (local, dst) in [
            (false, cidr),
            (false, &self.cidr6),
            (true, addr),
            (true, &self.address6),
        ] {
            if !v6_too(dst) {
                continue;
            }
            let filter = |n: &NatRule| {
                n.kind.as_deref() == Some("filter")
                    && n.verdict.as_deref() == Some("accept")
                    && n.local == Some(local)
                    && n.dst.as_deref() == Some(dst)
            };
            if !has(&filter) {
                let itself = if local { " (the center itself)" } else { "" };
                out.push(format!(
                    "no filter letting {pwg}'s traffic reach {dst}{itself} in {place}"
                ));
            }
        }
        for src in [cidr, &self.cidr6] {
            if !v6_too(src) {
                continue;
            }
            let filter = |n: &NatRule| {
                n.kind.as_deref() == Some("filter")
                    && n.early == Some(true)
                    && n.verdict.as_deref() == Some("drop")
                    && n.src.as_deref() == Some(src)
            };
            if !has(&filter) {
                out.push(format!(
                    "no filter dropping {pwg}'s packets from {src} (forged replies) in {place}"
                ));
            }
        }
        for local in [false, true] {
            let filter = |n: &NatRule| {
                n.kind.as_deref() == Some("filter")
                    && n.default.as_deref() == Some("drop")
                    && n.local == Some(local)
            };
            if !has(&filter) {
                let itself = if local { " to the center itself" } else { "" };
                out.push(format!(
                    "no filter dropping the rest of {pwg}'s traffic{itself} in {place}"
                ));
            }
        }
        nat_integrity(out, nat.iter().copied(), place);
        let routes: &[&Route] = center.routes.get(pwg).map_or(&[], Vec::as_slice);
        for (family, wanted) in [("inet", true), ("inet6", !a6.is_empty())] {
            if !wanted {
                continue;
            }
            let rule = rules.iter().any(|rule| {
                rule.family.as_deref() == Some(family)
                    && rule.fwmark == Some(u64::from(mark))
                    && rule.table_id == Some(u64::from(mark))
                    && rule.priority == Some(u64::from(ZONE_RULE_PRIORITY))
            });
            if !rule {
                out.push(format!(
                    "no {}rule 'fwmark {mark} lookup {mark}' (priority {ZONE_RULE_PRIORITY}) in {place}",
                    ip_version(family)
                ));
            }
            default_route_problem(out, routes, pwg, Table::Id(mark), family, place);
        }
    }
}

/// The tool output of OWNER (absent, or of another shape: the default, jq's null).
fn read<T: DeserializeOwned + Default>(seen: &Observed, owner: &str) -> T {
    seen.shows
        .get(owner)
        .and_then(|v| T::deserialize(v).ok())
        .unwrap_or_default()
}

fn ip_version(family: &str) -> &'static str {
    if family == "inet6" {
        "IPv6 "
    } else {
        ""
    }
}

/// NAME missing or down.
fn link_problems(out: &mut Vec<String>, links: &Links, name: &str, what: &str, place: &str) {
    match links.get(name) {
        None => out.push(format!("{what} {name} is missing in {place}")),
        Some(l) if l.state.as_deref() != Some("up") => {
            out.push(format!("{what} {name} is down in {place}"))
        }
        Some(_) => {}
    }
}

/// NAME missing, down, or not a port of BRIDGE.
fn port_problems(out: &mut Vec<String>, links: &Links, name: &str, bridge: &str, place: &str) {
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

fn address_problem(out: &mut Vec<String>, links: &Links, name: &str, cidr: &str) {
    if let Some(l) = links.get(name) {
        if !l.addresses.iter().any(|a| a == cidr) {
            out.push(format!("{name} lacks its address {cidr}"));
        }
    }
}

fn forwarding_problem(out: &mut Vec<String>, fwd: &SysctlShow, place: &str) {
    if !fwd.is_on() {
        out.push(format!("IPv4 forwarding is off in {place}"));
    }
}

/// The peer's WireGuard interface I (None: none) and P, its client as a peer of it (None: none),
/// held against the record R; PL: the links of I's namespace.
fn tunnel_problems(
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

/// wgctl found wireguard-go's listener unfiltered when it made I (not in status.jq).
fn listener_problem(out: &mut Vec<String>, i: Option<&WgInterface>, pwg: &str) {
    if i.is_some_and(|i| i.listener_filtered == Some(false)) {
        out.push(format!(
            "wireguard-go's listener of {pwg} is unfiltered: every link event in the center wakes it (wgctl warned when it made it)"
        ));
    }
}

/// No default route into PWG in TABLE.
fn default_route_problem(
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
fn nat_integrity<'r>(out: &mut Vec<String>, rules: impl Iterator<Item = &'r NatRule>, place: &str) {
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

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A fixture of tests/fixtures/health (capture.sh there made them).
    pub(crate) fn fixture(file: &str) -> String {
        let path = format!(
            "{}/tests/fixtures/health/{file}",
            env!("CARGO_MANIFEST_DIR")
        );
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{path}: {e}"))
    }

    /// What the hub of a fixture saw: its settings, records and tool outputs.
    pub(crate) struct Case {
        conf: Conf,
        center: Option<Center>,
        peers: BTreeMap<String, Peer>,
        pub(crate) seen: Observed,
    }

    impl Case {
        pub(crate) fn load(name: &str) -> Case {
            let input: Value = serde_json::from_str(&fixture(&format!("{name}.json"))).unwrap();
            let env: HashMap<String, String> =
                serde_json::from_value(input["env"].clone()).unwrap();
            let records: Vec<Peer> = serde_json::from_value(input["records"].clone()).unwrap();
            Case {
                conf: Conf::from_map(&env).unwrap(),
                center: serde_json::from_value(input["center"].clone()).unwrap(),
                peers: records.into_iter().map(|p| (p.name.clone(), p)).collect(),
                seen: Observed {
                    shows: serde_json::from_value(input["shows"].clone()).unwrap(),
                    netns: serde_json::from_value(input["netns"].clone()).unwrap(),
                    udp_ports: serde_json::from_value(input["udp_ports"].clone()).unwrap(),
                },
            }
        }

        pub(crate) fn status(&self) -> Value {
            status(&self.conf, self.center.as_ref(), &self.peers, &self.seen)
        }
    }

    /// Every captured hub (and netns-synthetic, a captured one edited where the kernel cannot be
    /// made to say it) against status.jq's output for the same inputs, byte for byte.
    pub(crate) const CASES: [&str; 14] = [
        "netns-healthy",
        "netns-broken",
        "netns-broken-center",
        "netns-no-switch",
        "netns-not-recorded",
        "netns-no-center",
        "netns-v6-trunks",
        "netns-v6-trunks-broken",
        "netns-synthetic",
        "zones-healthy",
        "zones-broken",
        "zones-v6-healthy",
        "zones-v6-broken",
        "zones-no-center",
    ];

    #[test]
    fn status_is_status_jq() {
        for name in CASES {
            let got = serde_json::to_string(&Case::load(name).status()).unwrap();
            let want = fixture(&format!("{name}.status.json"));
            assert_eq!(got, want.trim_end(), "{name}");
        }
    }

    #[test]
    fn the_view_structs_read_back_what_they_print() {
        for name in CASES {
            let got = Case::load(name).status();
            let back: Status = serde_json::from_value(got.clone()).unwrap();
            assert_eq!(serde_json::to_value(back).unwrap(), got, "{name}");
        }
    }

    /// Sets `listener_filtered` on the interface WG in the show OWNER.
    fn set_listener(case: &mut Case, owner: &str, wg: &str, filtered: Value) {
        let interfaces = case.seen.shows.get_mut(owner).unwrap()["interfaces"]
            .as_array_mut()
            .unwrap();
        let i = interfaces.iter_mut().find(|i| i["name"] == wg).unwrap();
        i["listener_filtered"] = filtered;
    }

    fn problems(status: &Value, peer: usize) -> Vec<String> {
        serde_json::from_value(status["peers"][peer]["problems"].clone()).unwrap()
    }

    #[test]
    fn an_unfiltered_listener_is_a_problem_right_after_the_tunnels() {
        let unfiltered =
            "wireguard-go's listener of hxa-wg is unfiltered: every link event in the center wakes it (wgctl warned when it made it)";
        // a healthy hub: its only problem, in both modes
        for (name, owner) in [("netns-healthy", "a:wg"), ("zones-healthy", "center:wg")] {
            let mut case = Case::load(name);
            let healthy = case.status();
            for unknown in [Value::Null, Value::Bool(true)] {
                set_listener(&mut case, owner, "hxa-wg", unknown);
                assert_eq!(
                    case.status(),
                    healthy,
                    "{name}: null and true are no problem"
                );
            }
            set_listener(&mut case, owner, "hxa-wg", Value::Bool(false));
            let got = case.status();
            assert_eq!(problems(&got, 0), [unfiltered], "{name}");
            assert_eq!(
                (got["healthy"].clone(), got["peers"][0]["healthy"].clone()),
                (false.into(), false.into())
            );
            assert_eq!(
                got["peers"][1], healthy["peers"][1],
                "{name}: only its peer"
            );
        }
        // a peer with tunnel problems and others after them
        let mut case = Case::load("netns-broken");
        let mut want = problems(&case.status(), 0);
        let last_tunnel = want
            .iter()
            .position(|p| p.starts_with("the client's peer on hxa-wg routes"))
            .unwrap();
        assert_eq!(
            want[last_tunnel + 1],
            "bridge port hxa-br is missing in namespace hxhub.switch"
        );
        want.insert(last_tunnel + 1, unfiltered.to_string());
        set_listener(&mut case, "a:wg", "hxa-wg", Value::Bool(false));
        assert_eq!(problems(&case.status(), 0), want);
    }

    #[test]
    fn tool_outputs_of_another_shape_read_as_absent() {
        let mut case = Case::load("netns-healthy");
        case.seen
            .shows
            .insert("a:routes".into(), serde_json::json!({"routes": null}));
        case.seen
            .shows
            .insert("a:nat".into(), serde_json::json!("not an object"));
        case.seen.shows.insert(
            "a:links".into(),
            serde_json::json!({"links": [{"name": "hxa-in", "addresses": null}]}),
        );
        let got = problems(&case.status(), 0);
        assert_eq!(
            got,
            [
                "veth hxa-in is down in namespace hxa",
                "hxa-in lacks its address 100.64.0.1/24",
                "WireGuard interface hxa-wg is missing in namespace hxa",
                "no default route into hxa-wg in namespace hxa",
                "no NAPT rule (masquerade out of hxa-in) in namespace hxa",
            ]
        );
    }
}
