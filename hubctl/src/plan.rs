//! The plan: the tool lines that build, repair and remove the hub's objects. These are exactly
//! the README's step-by-step commands, in both modes (the golden tests hold them against it).
//! Pure: given the settings, the records and what was found, the lines; nothing runs here.

use std::collections::HashSet;
use std::path::Path;

use crate::access;
use crate::conf::Conf;
use crate::exec::Tool::{self, Natctl, Nsctl, Routectl, Wgctl};
use crate::fwmark;
use crate::names::{self, Names};
use crate::record::Peer;
use crate::sets;
use crate::state::State;
use crate::steps::Step;

/// A path as one word of a batch line (shell-quoted when it needs to be).
pub fn quote(path: &Path) -> String {
    let text = path.to_string_lossy();
    shlex::try_quote(&text)
        .map(|q| q.into_owned())
        .unwrap_or_else(|_| text.into_owned())
}

/// Where the hub's objects are.
pub struct Layout<'a> {
    pub conf: &'a Conf,
    pub state: &'a State,
    /// The switch namespace (the bridge and the peers' ports), if the hub has one.
    pub switch: Option<&'a str>,
}

impl Layout<'_> {
    /// A batch line's prefix that acts in the center.
    pub fn center(&self) -> String {
        ns_opt(&self.conf.ns)
    }

    /// The namespace of the bridge and the peers' ports: the switch, or the center.
    pub fn bridge_ns(&self) -> &str {
        self.switch.unwrap_or(&self.conf.ns)
    }

    pub fn bridge(&self) -> String {
        ns_opt(self.bridge_ns())
    }

    /// The center's steps: its namespace, the switch with the bridge, the center's veth into it
    /// with HUB_ADDRESS, forwarding. BRIDGE_OURS: the hub made the bridge (a bridge made by an
    /// earlier version, in the center, gets a fixed MAC); SELF_NS: this process's namespace, for
    /// a center on the host.
    pub fn center_steps(&self, bridge_ours: bool, self_ns: &str) -> Vec<Step> {
        let c = self.conf;
        let (co, bo) = (self.center(), self.bridge());
        let mut s = Vec::new();
        let mut step = |line: String| s.push(Step::new(Nsctl, "center", line));
        if !c.ns.is_empty() {
            step(format!("netns add {}", c.ns));
            step(format!("{co}link set lo --up"));
        }
        if let Some(sw) = self.switch {
            step(format!("netns add {sw}"));
            step(format!("{bo}link set lo --up"));
        }
        step(format!("{bo}bridge add {} --up", c.bridge));
        if self.switch.is_none() && bridge_ours {
            step(format!(
                "{co}link set {} --address {}",
                c.bridge,
                bridge_mac(c)
            ));
        }
        let (cif, cbr) = (c.center_if(), c.center_br());
        if self.switch.is_some() {
            // (--replace: after the center's namespace was deleted, the old end of this veth is
            // in the old one, which lives on, unnamed, while the tunnels' sockets hold it)
            let peer_ns = if c.ns.is_empty() { self_ns } else { &c.ns };
            step(format!(
                "{bo}veth add {cbr} --peer {cif} --peer-ns {peer_ns} --master {} --up --replace",
                c.bridge
            ));
        } else {
            step(format!(
                "{co}veth add {cbr} --peer {cif} --master {} --up",
                c.bridge
            ));
        }
        step(format!(
            "{co}addr add {}/{} --dev {cif}",
            c.address, c.cidr.len
        ));
        if let Some(v6) = &c.v6 {
            step(format!("{co}sysctl net.ipv6.conf.{cif}.accept_dad=0"));
            step(format!(
                "{co}addr add {}/{} --dev {cif}",
                v6.address, v6.cidr.len
            ));
        }
        step(format!("{co}link set {cif} --up"));
        step(format!("{co}sysctl net.ipv4.ip_forward=1"));
        if c.zones() {
            // (after the center's namespace is there: in the center's own group)
            s.extend(
                sets::center_lines(c)
                    .into_iter()
                    .map(|l| Step::new(Natctl, "center", format!("{co}{l}"))),
            );
            for v6 in std::iter::once(false).chain(c.v6.is_some().then_some(true)) {
                for rule in fwmark::center_rules(v6) {
                    s.push(Step::new(
                        Routectl,
                        "center",
                        format!("{co}rule add {rule}"),
                    ));
                }
            }
        }
        s
    }

    /// The key steps of PEER: the hub side of its tunnel, the client's pair unless it brought
    /// its own, and a preshared key to generate (GEN_PSK).
    pub fn key_steps(&self, peer: &Peer, gen_psk: bool) -> Vec<Step> {
        let n = &peer.name;
        let mut s = Vec::new();
        let key = self.state.key_path(n);
        if !crate::state::has_content(&key) {
            s.push(Step::new(
                Wgctl,
                &format!("{n}:hub"),
                format!("genkey --out {}", quote(&key)),
            ));
        }
        let ckey = self.state.client_key_path(n);
        if peer.client_key == crate::record::ClientKey::Generated
            && !crate::state::has_content(&ckey)
        {
            s.push(Step::new(
                Wgctl,
                &format!("{n}:client"),
                format!("genkey --out {}", quote(&ckey)),
            ));
        }
        if gen_psk {
            s.push(Step::new(
                Wgctl,
                &format!("{n}:psk"),
                format!("genpsk --out {}", quote(&self.state.psk_path(n))),
            ));
        }
        s
    }

    /// HUB_MODE=netns: the extra bridge PEER's port goes on and the veth that joins it to
    /// HUB_BRIDGE, unless already planned (JOINED).
    pub fn trunk_steps(&self, peer: &Peer, joined: &mut HashSet<u32>) -> Vec<Step> {
        let mut s = Vec::new();
        let place = names::placement(self.conf, peer, self.switch.is_some());
        if let Some(trunk) = place.trunk.filter(|_| joined.insert(place.k)) {
            let bo = self.bridge();
            s.push(Step::new(
                Nsctl,
                "center",
                format!("{bo}bridge add {} --up", place.bridge),
            ));
            s.push(Step::new(
                Nsctl,
                "center",
                format!(
                    "{bo}veth add {} --peer {} --master {} --peer-master {} --up",
                    trunk.down, trunk.up, self.conf.bridge, place.bridge
                ),
            ));
            // (isolated on HUB_BRIDGE: a device behind one extra bridge reaches no device
            // behind another, nor on HUB_BRIDGE; the center and the rest of HUB_BRIDGE it does)
            s.push(Step::new(
                Nsctl,
                "center",
                format!(
                    "{bo}link set {} --isolated {}",
                    trunk.down,
                    on_off(self.conf.isolate)
                ),
            ));
        }
        s
    }

    /// HUB_MODE=netns: the peer's namespace and its insides, its tunnel, its routes and its
    /// NAPT.
    /// REMAKE: its tunnel was born in a center since deleted and goes first.
    pub fn peer_steps(&self, peer: &Peer, remake: bool) -> Vec<Step> {
        let c = self.conf;
        let n = peer.name.as_str();
        let nm = Names::of(c, n);
        let inner = ns_opt(&nm.ns);
        let mut s = Vec::new();
        let mut ns = |line: String| s.push(Step::new(Nsctl, n, line));
        ns(format!("netns add {}", nm.ns));
        ns(format!("{inner}link set lo --up"));
        ns(format!("{inner}sysctl net.ipv4.ip_forward=1"));
        if c.v6.is_some() {
            ns(format!("{inner}sysctl net.ipv6.conf.all.forwarding=1"));
        }
        let place = names::placement(c, peer, self.switch.is_some());
        ns(format!(
            "{}veth add {} --peer {} --peer-ns {} --master {} --up",
            self.bridge(),
            nm.br,
            nm.inside,
            nm.ns,
            place.bridge
        ));
        ns(format!(
            "{inner}addr add {}/{} --dev {}",
            peer.address, c.cidr.len, nm.inside
        ));
        if let (Some(v6), Some(a6)) = (&c.v6, names::address6(c, peer)) {
            // (no DAD: the hub hands out every address on this network)
            ns(format!(
                "{inner}sysctl net.ipv6.conf.{}.accept_dad=0",
                nm.inside
            ));
            ns(format!(
                "{inner}addr add {a6}/{} --dev {}",
                v6.cidr.len, nm.inside
            ));
        }
        ns(format!("{inner}link set {} --up", nm.inside));
        s.extend(self.tunnel_steps(peer, &format!(" --into-ns {}", nm.ns), &inner, remake));
        s.push(Step::new(
            Routectl,
            n,
            format!("{inner}route add default --dev {}", nm.wg),
        ));
        if c.v6.is_some() {
            s.push(Step::new(
                Routectl,
                n,
                format!("{inner}route add ::/0 --dev {}", nm.wg),
            ));
        }
        s.push(Step::new(
            Natctl,
            n,
            format!("{inner}masquerade --oif {}", nm.inside),
        ));
        s.extend(
            self.access_lines(peer)
                .into_iter()
                .map(|l| Step::new(Natctl, n, l)),
        );
        s.push(Step::new(
            Nsctl,
            n,
            format!(
                "{}link set {} --isolated {}",
                self.bridge(),
                nm.br,
                on_off(c.isolate)
            ),
        ));
        s
    }

    /// HUB_MODE=netns: both directions of the peer's traffic, in its namespace. Each forward: a
    /// connection from the internal network to the peer's address and PORT reaches the device
    /// at DEVPORT, its source kept (no SNAT: the client's AllowedIPs covers the internal
    /// network). What the device sends: a reply of such a connection passes; otherwise what
    /// the allow list names; everything else is dropped and counted. (That no device reaches
    /// another is the bridge's part: the peers' ports are isolated ports.)
    pub fn access_lines(&self, peer: &Peer) -> Vec<String> {
        let c = self.conf;
        let nm = Names::of(c, &peer.name);
        let inner = ns_opt(&nm.ns);
        let mut l = Vec::new();
        for d in access::dnats(c, peer) {
            l.push(format!("{inner}dnat --iif {} {}", nm.inside, d.args()));
        }
        l.push(format!(
            "{inner}filter --iif {} --reply --verdict accept",
            nm.wg
        ));
        l.extend(self.allow_lines(peer, &inner, &nm.wg));
        l.push(format!("{inner}filter --iif {} --default drop", nm.wg));
        l
    }

    /// The accepts of what the peer's device may reach (forwarded, from WG; P: the line's
    /// prefix).
    fn allow_lines(&self, peer: &Peer, p: &str, wg: &str) -> Vec<String> {
        access::merged_allow(self.conf, &self.conf.allow, &peer.settings.allow)
            .iter()
            .map(|a| format!("{p}filter --iif {wg} {} --verdict accept", a.selectors()))
            .collect()
    }

    /// The peer's WireGuard interface, born in the center, moved by MOVE (` --into-ns NS`, or
    /// nothing), then (its last step) its one peer, the client, set in WHERE (a line prefix); --replace: a key,
    /// MTU, keepalive, PSK or allowed-ips that drifted from the record is set back in place (no
    /// new interface: the client's session survives a settings change); --exclusive: a peer
    /// someone added with `wg set` goes; its IPv6 is on or off as [`Conf::tunnel_ipv6`] says.
    pub fn tunnel_steps(&self, peer: &Peer, moved: &str, place: &str, remake: bool) -> Vec<Step> {
        let n = peer.name.as_str();
        let wg = Names::of(self.conf, n).wg;
        let ipv6 = self
            .conf
            .tunnel_ipv6()
            .map(|on| format!(" --ipv6 {}", on_off(on)))
            .unwrap_or_default();
        let mut s = Vec::new();
        if remake {
            s.push(Step::new(Wgctl, n, format!("{place}iface del {wg}")));
        }
        let mtu = peer
            .settings
            .mtu
            .map(|m| format!(" --mtu {m}"))
            .unwrap_or_default();
        s.push(Step::new(
            Wgctl,
            n,
            format!(
                "{}iface add {wg} --private-key {} --listen-port {}{mtu}{ipv6}{moved} --replace",
                self.center(),
                quote(&self.state.key_path(n)),
                peer.listen_port
            ),
        ));
        let psk = if peer.settings.preshared_key {
            quote(&self.state.psk_path(n))
        } else {
            "none".to_string()
        };
        s.push(Step::new(
            Wgctl,
            n,
            format!(
                "{place}peer add {wg} --public-key {} --allowed-ips 0.0.0.0/0,::/0 --preshared-key {psk} --keepalive {} --replace --exclusive",
                peer.client_public_key.as_deref().unwrap_or(""),
                peer.settings.keepalive.unwrap_or(0)
            ),
        ));
        s
    }

    /// HUB_MODE=zones, the kernel selftest's recipe for identical clients (nft_nat_zones.sh) in
    /// the center: the peer's tunnel lives there; what arrives on it gets its conntrack zone and
    /// connection mark and is SNATed to its internal address, which the center answers for on
    /// the bridge; replies, the mark restored, find their way back through the peer's table.
    pub fn zone_steps(&self, peer: &Peer, remake: bool) -> Vec<Step> {
        let c = self.conf;
        let n = peer.name.as_str();
        let co = self.center();
        let wg = Names::of(c, n).wg;
        let (_, mark) = names::zone(peer);
        let a6 = names::address6(c, peer);
        // (its tunnel, once its key exists, in its lane: made beside its addresses and rules,
        // which need no key; it has no peer, so takes no packet, until the client is set)
        let mut tunnel = self.tunnel_steps(peer, "", &co, remake);
        let client = tunnel
            .pop()
            .expect("the tunnel's last step sets its client");
        let mut s: Vec<Step> = tunnel.into_iter().map(|s| s.in_lane(lane(n))).collect();
        s.push(client);
        s.push(Step::new(
            Nsctl,
            n,
            format!("{co}addr add {}/32 --dev {}", peer.address, c.center_if()),
        ));
        if let Some(a6) = a6 {
            s.push(Step::new(
                Nsctl,
                n,
                format!("{co}addr add {a6}/128 --dev {}", c.center_if()),
            ));
        }
        s.extend(
            self.zone_nat_lines(peer, "")
                .into_iter()
                .map(|l| Step::new(Natctl, n, l).in_lane(CENTER_NAT_LANE.to_string())),
        );
        // (its table and rules, in its lane after its tunnel, which they name: they steer only
        // its own connections' replies, so they need no client, and are made beside its NAT)
        let mut routes = vec![
            Step::new(
                Routectl,
                n,
                format!("{co}route add default --dev {wg} --table {mark}"),
            ),
            Step::new(
                Routectl,
                n,
                format!(
                    "{co}route add {} --dev {} --table {mark}",
                    c.cidr_text,
                    c.center_if()
                ),
            ),
        ];
        routes.extend(self.zone_rule_steps(peer, false));
        if let (Some(_), Some(v6)) = (a6, &c.v6) {
            routes.push(Step::new(
                Routectl,
                n,
                format!("{co}route add ::/0 --dev {wg} --table {mark}"),
            ));
            routes.push(Step::new(
                Routectl,
                n,
                format!(
                    "{co}route add {} --dev {} --table {mark}",
                    v6.cidr_text,
                    c.center_if()
                ),
            ));
            routes.extend(self.zone_rule_steps(peer, true));
        }
        s.extend(routes.into_iter().map(|r| r.in_lane(lane(n))));
        s
    }

    /// HUB_MODE=zones: the peer's fwmark rule of one family (V6), and the gate of its block.
    fn zone_rule_steps(&self, peer: &Peer, v6: bool) -> Vec<Step> {
        let (n, co) = (peer.name.as_str(), self.center());
        let (_, mark) = names::zone(peer);
        [
            fwmark::peer_rule(v6, peer.listen_port, mark),
            fwmark::gate(v6, peer.listen_port),
        ]
        .into_iter()
        .map(|rule| Step::new(Routectl, n, format!("{co}rule add {rule}")))
        .collect()
    }

    /// HUB_MODE=zones: the peer's natctl lines in the center, each prefixed by CHECK: the sets of
    /// its allow entries and forwards with the rules over them (made with the first peer that
    /// has them), then its elements (`sets`): its conntrack zone, for both directions of what its
    /// tunnel opens and for the replies that reach its internal address(es) from the bridge or
    /// from the center itself (so its connections' reply tuples, identical to other devices' but
    /// for the address, are looked up in its zone); its tunnel, whose packets from inside the
    /// internal network are dropped before conntrack sees them (a forged reply) and whose replies
    /// pass; its connection mark (set only by a connection's first packet, in the original
    /// direction; a reply-direction packet from the tunnel that is not of its own connections is
    /// dropped); its SNAT address, for forwarded traffic and traffic to the center; its forwards'
    /// marks and addresses; its allow entries; and the default drops, which count what it was
    /// refused. The center's rules over these sets are made once (`center_steps`), so a packet's
    /// cost and an add's do not grow with the fleet.
    pub fn zone_nat_lines(&self, peer: &Peer, check: &str) -> Vec<String> {
        let p = format!("{check}{}", self.center());
        sets::peer_lines(self.conf, peer)
            .into_iter()
            .map(|l| format!("{p}{l}"))
            .collect()
    }

    /// HUB_MODE=netns: a peer's objects go. Its tunnel, where it was born (a killed add) or where
    /// it lives; its namespace takes its veth end, route and NAT rules with it. CENTER_OK /
    /// BRIDGE_OK: those namespaces exist; PEER_NS: the peer's does.
    pub fn removal_steps(
        &self,
        peer: &Peer,
        center_ok: bool,
        bridge_ok: bool,
        peer_ns: bool,
    ) -> Vec<Step> {
        let n = peer.name.as_str();
        let nm = Names::of(self.conf, n);
        let mut s = Vec::new();
        if center_ok {
            let into = if peer_ns {
                format!(" --into-ns {}", nm.ns)
            } else {
                String::new()
            };
            s.push(Step::new(
                Wgctl,
                n,
                format!("{}iface del {}{into}", self.center(), nm.wg),
            ));
        } else {
            let at = if peer_ns {
                ns_opt(&nm.ns)
            } else {
                String::new()
            };
            s.push(Step::new(Wgctl, n, format!("{at}iface del {}", nm.wg)));
        }
        s.push(Step::new(Nsctl, n, format!("netns del {}", nm.ns)));
        if bridge_ok {
            s.push(Step::new(
                Nsctl,
                n,
                format!("{}link del {}", self.bridge(), nm.br),
            ));
        }
        s
    }

    /// HUB_MODE=zones: a peer's objects in the center: its natctl elements, its fwmark
    /// rules (and the gate of its block, when it is the LAST_OF_BLOCK to go), its tunnel (its table's default route goes with it), its table's routes to the
    /// internal network and its addresses (CIF: the center's interface that holds them is
    /// there).
    pub fn zone_removal_steps(&self, peer: &Peer, cif: bool, last_of_block: bool) -> Vec<Step> {
        let c = self.conf;
        let n = peer.name.as_str();
        let co = self.center();
        let (_, mark) = names::zone(peer);
        let a6 = names::address6(c, peer);
        let mut s: Vec<Step> = sets::elements(c, peer)
            .iter()
            .map(|e| {
                Step::new(Natctl, n, format!("{co}{}", e.del_line()))
                    .in_lane(CENTER_NAT_LANE.to_string())
            })
            .collect();
        for v6 in [false, true] {
            if v6 && a6.is_none() {
                continue;
            }
            let port = peer.listen_port;
            let mut rules = vec![fwmark::peer_rule(v6, port, mark)];
            rules.extend(last_of_block.then(|| fwmark::gate(v6, port)));
            s.extend(
                rules
                    .into_iter()
                    .map(|rule| Step::new(Routectl, n, format!("{co}rule del {rule}"))),
            );
        }
        s.push(Step::new(
            Wgctl,
            n,
            format!("{co}iface del {}", Names::of(c, n).wg),
        ));
        if cif {
            // (the routes of its table through the center's interface stay with that)
            s.push(Step::new(
                Routectl,
                n,
                format!(
                    "{co}route del {} --dev {} --table {mark}",
                    c.cidr_text,
                    c.center_if()
                ),
            ));
            if let (Some(_), Some(v6)) = (a6, &c.v6) {
                s.push(Step::new(
                    Routectl,
                    n,
                    format!(
                        "{co}route del {} --dev {} --table {mark}",
                        v6.cidr_text,
                        c.center_if()
                    ),
                ));
            }
            s.push(Step::new(
                Nsctl,
                n,
                format!("{co}addr del {}/32 --dev {}", peer.address, c.center_if()),
            ));
            if let Some(a6) = a6 {
                s.push(Step::new(
                    Nsctl,
                    n,
                    format!("{co}addr del {a6}/128 --dev {}", c.center_if()),
                ));
            }
        }
        s
    }

    /// What a status reads of the kernel: the center's links and forwarding, the switch's links;
    /// per peer (netns) its links, forwarding, tunnel, routes and NAT, or (zones) every peer's
    /// at once in the center, the center's NAT in a lane of its own. NETNS: the namespaces that
    /// exist.
    pub fn reads(&self, peers: &[&Peer], center_ok: bool, netns: &HashSet<String>) -> Vec<Step> {
        let c = self.conf;
        let (co, bo) = (self.center(), self.bridge());
        let mut s = Vec::new();
        let mut read = |tool: Tool, owner: &str, line: String| s.push(Step::new(tool, owner, line));
        if center_ok {
            read(Nsctl, "center:links", format!("{co}link list --no-peers"));
            read(
                Nsctl,
                "center:fwd",
                format!("{co}sysctl net.ipv4.ip_forward"),
            );
            if self.switch.is_some_and(|sw| netns.contains(sw)) {
                read(Nsctl, "center:switch", format!("{bo}link list --no-peers"));
            }
            if c.zones() {
                read(Wgctl, "center:wg", format!("{co}show"));
                read(Routectl, "center:rules", format!("{co}rule list"));
                read(
                    Routectl,
                    "center:routes",
                    format!("{co}route list --table all"),
                );
            }
        }
        if !c.zones() {
            for p in peers {
                let ns = Names::of(c, &p.name).ns;
                if !netns.contains(&ns) {
                    continue;
                }
                let (n, o) = (&p.name, ns_opt(&ns));
                read(
                    Nsctl,
                    &format!("{n}:links"),
                    format!("{o}link list --no-peers"),
                );
                read(
                    Nsctl,
                    &format!("{n}:fwd"),
                    format!("{o}sysctl net.ipv4.ip_forward"),
                );
                if c.v6.is_some() {
                    read(
                        Nsctl,
                        &format!("{n}:fwd6"),
                        format!("{o}sysctl net.ipv6.conf.all.forwarding"),
                    );
                }
                read(Wgctl, &format!("{n}:wg"), format!("{o}show"));
                read(Routectl, &format!("{n}:routes"), format!("{o}route list"));
                read(Natctl, &format!("{n}:nat"), format!("{o}list"));
            }
        }
        if center_ok && c.zones() {
            // (the longest reads at 1,000 peers: in a group of their own, beside the others)
            for (owner, line) in [("center:nat", "list"), ("center:sets", "set list")] {
                s.push(
                    Step::new(Natctl, owner, format!("{co}{line}"))
                        .in_lane(CENTER_NAT_LANE.to_string()),
                );
            }
        }
        s
    }
}

/// The lane of peer NAME's keys (and, HUB_MODE=zones, its tunnel): a group of its own beside the
/// peer's other steps.
pub fn lane(name: &str) -> String {
    format!("tunnel:{name}")
}

/// HUB_MODE=zones: the one lane of every peer's natctl rules, which are all the center's. One
/// natctl process adds them one after the other, each knowing the table from the commit before
/// (natctl's cache); natctls in parallel on one table would each see the others' commits and
/// read the whole table again for every rule (a cost that grew with the square of the fleet:
/// 642 s to switch 1,000 peers to new allow lists).
pub const CENTER_NAT_LANE: &str = "center:natctl";

/// `--ns NS ` (a batch line's prefix), or nothing for "".
pub fn ns_opt(ns: &str) -> String {
    if ns.is_empty() {
        String::new()
    } else {
        format!("--ns {ns} ")
    }
}

/// `on` or `off`, as the tools' flags take a switch (`--isolated on`, `--ipv6 off`).
pub fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// A locally administered unicast MAC for the hub's bridge, the same on every run of the same
/// hub (FNV-1a of its namespace, prefix and bridge name): a bridge takes the lowest MAC of its
/// ports unless given one, and the peers that learnt it would lose the center.
pub fn bridge_mac(c: &Conf) -> String {
    let s = format!("niransix/{}/{}/{}", c.ns, c.prefix, c.bridge);
    let h = s.bytes().fold(2_166_136_261u32, |h, b| {
        (h ^ u32::from(b)).wrapping_mul(16_777_619)
    });
    let b = h.to_be_bytes();
    format!("02:6e:{:02x}:{:02x}:{:02x}:{:02x}", b[0], b[1], b[2], b[3])
}
