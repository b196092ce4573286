//! Both directions of a device's traffic: the forwards that let the internal network reach a
//! device's ports at its peer's internal address (`tcp/22`, `tcp/8080=80`), and the allow list
//! of what a device may reach (`CIDR[,PROTO[/PORT[-PORT]]]`). Each is read strictly, written
//! back canonically (that text is what records, `status` and `sync` carry), and a peer's own
//! entries are merged with the hub's here, in one place.

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::conf::Conf;
use crate::error::{invalid, Result};
use crate::names;
use crate::net;
use crate::record::{Peer, Settings};

/// The protocols a forward or an allow entry names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    fn parse(text: &str) -> Option<Proto> {
        match text {
            "tcp" => Some(Proto::Tcp),
            "udp" => Some(Proto::Udp),
            _ => None,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        }
    }
}

/// A port as a forward or an allow entry writes it: 1..65535, canonically.
fn port(text: &str) -> std::result::Result<u16, String> {
    net::port(text).ok_or_else(|| format!("port '{text}' is not 1..65535"))
}

/// `PROTO/PORT[=DEVPORT]`: connections to PORT at the peer's internal address reach DEVPORT
/// (PORT when not given) of its device.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Forward {
    pub proto: Proto,
    pub port: u16,
    pub device_port: u16,
}

impl FromStr for Forward {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Forward, String> {
        let (proto, ports) = text
            .split_once('/')
            .ok_or("not PROTO/PORT[=DEVPORT] (e.g. tcp/22, tcp/8080=80)")?;
        let proto =
            Proto::parse(proto).ok_or_else(|| format!("protocol '{proto}' is not tcp or udp"))?;
        let (port_text, device_text) = ports.split_once('=').unwrap_or((ports, ports));
        Ok(Forward {
            proto,
            port: port(port_text)?,
            device_port: port(device_text)?,
        })
    }
}

impl fmt::Display for Forward {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.proto.as_str(), self.port)?;
        if self.device_port != self.port {
            write!(f, "={}", self.device_port)?;
        }
        Ok(())
    }
}

/// A network of either family, host bits zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Net {
    pub addr: IpAddr,
    pub len: u8,
}

impl Net {
    /// `ADDR/LEN` or a bare address (a host: /32, /128).
    fn parse(text: &str) -> std::result::Result<Net, String> {
        let (addr_text, len_text) = match text.split_once('/') {
            Some((a, l)) => (a, Some(l)),
            None => (text, None),
        };
        let addr = net::ip4(addr_text)
            .map(IpAddr::V4)
            .or_else(|| net::ip6(addr_text).map(IpAddr::V6))
            .ok_or_else(|| format!("'{addr_text}' is not an IPv4 or IPv6 address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let len = match len_text {
            None => max,
            Some(l) => {
                let canonical = !l.is_empty() && l.len() <= 3 && (l == "0" || !l.starts_with('0'));
                canonical
                    .then(|| l.parse::<u8>().ok())
                    .flatten()
                    .filter(|n| *n <= max)
                    .ok_or_else(|| format!("prefix length '{l}' is not 0..{max}"))?
            }
        };
        let net = Net { addr, len };
        if net.masked() != addr {
            return Err(format!(
                "'{text}' has host bits set (the network is {}/{len})",
                net.masked()
            ));
        }
        Ok(net)
    }

    fn masked(&self) -> IpAddr {
        match self.addr {
            IpAddr::V4(a) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.len)).unwrap_or(0);
                IpAddr::V4(Ipv4Addr::from(u32::from(a) & mask))
            }
            IpAddr::V6(a) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.len))
                    .unwrap_or(0);
                IpAddr::V6(Ipv6Addr::from(u128::from(a) & mask))
            }
        }
    }

    /// Whether ADDR is in this network.
    pub fn holds(&self, addr: IpAddr) -> bool {
        Net {
            addr,
            len: self.len,
        }
        .within(self)
    }

    /// Whether every address of this network is in OTHER.
    fn within(&self, other: &Net) -> bool {
        self.addr.is_ipv4() == other.addr.is_ipv4()
            && self.len >= other.len
            && Net {
                addr: self.addr,
                len: other.len,
            }
            .masked()
                == other.addr
    }
}

impl fmt::Display for Net {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.len)
    }
}

/// `CIDR[,PROTO[/PORT[-PORT]]]`: what a device may reach.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Allow {
    pub net: Net,
    pub proto: Option<Proto>,
    pub ports: Option<(u16, u16)>,
}

impl FromStr for Allow {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Allow, String> {
        let (net_text, rest) = match text.split_once(',') {
            Some((n, r)) => (n, Some(r)),
            None => (text, None),
        };
        let net = Net::parse(net_text)?;
        let Some(rest) = rest else {
            return Ok(Allow {
                net,
                proto: None,
                ports: None,
            });
        };
        let (proto_text, ports_text) = match rest.split_once('/') {
            Some((p, r)) => (p, Some(r)),
            None => (rest, None),
        };
        let proto = Proto::parse(proto_text)
            .ok_or_else(|| format!("protocol '{proto_text}' is not tcp or udp"))?;
        let ports = match ports_text {
            None => None,
            Some(r) => {
                let (a, b) = r.split_once('-').unwrap_or((r, r));
                let (first, last) = (port(a)?, port(b)?);
                if first > last {
                    return Err(format!("port range '{r}' runs backwards"));
                }
                Some((first, last))
            }
        };
        Ok(Allow {
            net,
            proto: Some(proto),
            ports,
        })
    }
}

impl fmt::Display for Allow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.net)?;
        if let Some(p) = self.proto {
            write!(f, ",{}", p.as_str())?;
        }
        match self.ports {
            Some((a, b)) if a == b => write!(f, "/{a}"),
            Some((a, b)) => write!(f, "/{a}-{b}"),
            None => Ok(()),
        }
    }
}

impl Allow {
    /// The `natctl filter` selectors of this entry.
    pub fn selectors(&self) -> String {
        self.selectors_to(&self.net.to_string())
    }

    /// The selectors of this entry toward DST alone (one of its addresses).
    pub fn selectors_to(&self, dst: &str) -> String {
        let mut s = format!("--dst {dst}");
        if let Some(p) = self.proto {
            s.push_str(&format!(" --proto {}", p.as_str()));
        }
        match self.ports {
            Some((a, b)) if a == b => s.push_str(&format!(" --dport {a}")),
            Some((a, b)) => s.push_str(&format!(" --dport {a}-{b}")),
            None => {}
        }
        s
    }
}

/// Records and `sync` carry both as their canonical text.
macro_rules! as_text {
    ($t:ty) => {
        impl Serialize for $t {
            fn serialize<S: serde::Serializer>(
                &self,
                s: S,
            ) -> std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> Deserialize<'de> for $t {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> std::result::Result<$t, D::Error> {
                let text = String::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}
as_text!(Forward);
as_text!(Allow);

/// The forwards of LABEL (a setting, an option or a sync key), checked: each readable, no port
/// taken twice, no device port reached twice.
pub fn forwards<'a>(label: &str, items: impl IntoIterator<Item = &'a str>) -> Result<Vec<Forward>> {
    let mut out: Vec<Forward> = Vec::new();
    for text in items {
        let f: Forward = text
            .parse()
            .map_err(|why| invalid(format!("{label} '{text}': {why}")))?;
        if let Some(o) = out.iter().find(|o| o.proto == f.proto && o.port == f.port) {
            return Err(invalid(format!(
                "{label} '{text}': {} port {} is forwarded twice (also by '{o}')",
                f.proto.as_str(),
                f.port
            )));
        }
        if let Some(o) = out
            .iter()
            .find(|o| o.proto == f.proto && o.device_port == f.device_port)
        {
            return Err(invalid(format!(
                "{label} '{text}': the device's {} port {} is reached twice (also by '{o}')",
                f.proto.as_str(),
                f.device_port
            )));
        }
        out.push(f);
    }
    Ok(out)
}

/// The allow entries of LABEL, checked: each readable and inside HUB_CIDR or HUB_CIDR6 (what a
/// device reaches at all); an entry given twice is refused.
pub fn allow<'a>(
    conf: &Conf,
    label: &str,
    items: impl IntoIterator<Item = &'a str>,
) -> Result<Vec<Allow>> {
    let mut out: Vec<Allow> = Vec::new();
    for text in items {
        let a: Allow = text
            .parse()
            .map_err(|why| invalid(format!("{label} '{text}': {why}")))?;
        if !internal(conf).iter().any(|n| a.net.within(n)) {
            let nets: Vec<String> = internal(conf).iter().map(Net::to_string).collect();
            return Err(invalid(format!(
                "{label} '{text}': {} is outside the internal network ({}): a device reaches nothing else",
                a.net,
                nets.join(", ")
            )));
        }
        if out.contains(&a) {
            return Err(invalid(format!("{label} '{text}' is given twice")));
        }
        out.push(a);
    }
    Ok(out)
}

/// One forward of a peer as one DNAT: connections to DADDR (the peer's internal address, v4
/// or v6) at the forward's port lead to TO (the device's address and port).
pub struct Dnat {
    pub forward: Forward,
    pub daddr: String,
    pub to: String,
}

impl Dnat {
    /// Its natctl selectors and target: `--proto P --dport N --daddr A --to T`.
    pub fn args(&self) -> String {
        let f = self.forward;
        format!(
            "--proto {} --dport {} --daddr {} --to {}",
            f.proto.as_str(),
            f.port,
            self.daddr,
            self.to
        )
    }
}

/// PEER's forwards (the hub's and its own), each for IPv4 and, with HUB_CIDR6, IPv6.
pub fn dnats(conf: &Conf, peer: &Peer) -> Vec<Dnat> {
    let host = conf.client_host("a forward").ok();
    let v6 = conf.v6.as_ref().zip(names::address6(conf, peer));
    let mut out = Vec::new();
    for forward in merged_forwards(&conf.forwards, &peer.settings.forwards) {
        let dev = forward.device_port;
        if let Some(host) = host {
            out.push(Dnat {
                forward,
                daddr: peer.address.to_string(),
                to: format!("{host}:{dev}"),
            });
        }
        if let Some((v6, a6)) = v6 {
            let host6 = v6.client_address.split('/').next().unwrap_or_default();
            out.push(Dnat {
                forward,
                daddr: a6.to_string(),
                to: format!("[{host6}]:{dev}"),
            });
        }
    }
    out
}

/// Whether a peer whose own settings go from OLD to NEW loses a forward or something it may
/// reach (its rules for them then have to go: adding needs no more than the plan).
pub fn takes_away(conf: &Conf, old: &Settings, new: &Settings) -> bool {
    let forwards = merged_forwards(&conf.forwards, &new.forwards);
    let allow = merged_allow(conf, &conf.allow, &new.allow);
    merged_forwards(&conf.forwards, &old.forwards)
        .iter()
        .any(|f| !forwards.contains(f))
        || merged_allow(conf, &conf.allow, &old.allow)
            .iter()
            .any(|a| !allow.contains(a))
}

/// The center's own addresses (HUB_ADDRESS, HUB_ADDRESS6) that ALLOW lets a device reach,
/// with the entry that does: in HUB_MODE=zones what a device sends to them is the center's
/// (local) traffic, filtered apart from what it forwards.
pub fn center_allowed(conf: &Conf, allow: &[Allow]) -> Vec<(IpAddr, Allow)> {
    let mut own = vec![IpAddr::V4(conf.address)];
    own.extend(conf.v6.as_ref().map(|v6| IpAddr::V6(v6.address)));
    allow
        .iter()
        .flat_map(|a| {
            own.iter()
                .filter(|addr| a.net.holds(**addr))
                .map(|addr| (*addr, *a))
        })
        .collect()
}

/// HUB_CIDR, and HUB_CIDR6 when set.
pub fn internal(conf: &Conf) -> Vec<Net> {
    let mut nets = vec![Net {
        addr: IpAddr::V4(Ipv4Addr::from(conf.cidr.net)),
        len: conf.cidr.len,
    }];
    if let Some(v6) = &conf.v6 {
        nets.push(Net {
            addr: IpAddr::V6(v6.cidr.net),
            len: v6.cidr.len,
        });
    }
    nets
}

/// The words of a list setting (whitespace or commas between forwards; whitespace between allow
/// entries, whose own text holds a comma).
pub fn words(text: &str) -> impl Iterator<Item = &str> {
    text.split_whitespace()
}

/// A peer's forwards: the hub's, each replaced by the peer's of the same protocol and port, then
/// the peer's others; in the order protocol, port.
pub fn merged_forwards(hub: &[Forward], own: &[Forward]) -> Vec<Forward> {
    let mut all: Vec<Forward> = hub
        .iter()
        .filter(|h| !own.iter().any(|o| o.proto == h.proto && o.port == h.port))
        .chain(own)
        .copied()
        .collect();
    all.sort();
    all
}

/// What a peer's device may reach: the hub's entries and its own; none at all means all of the
/// internal network (HUB_CIDR, HUB_CIDR6).
pub fn merged_allow(conf: &Conf, hub: &[Allow], own: &[Allow]) -> Vec<Allow> {
    let mut all: Vec<Allow> = hub.iter().chain(own).copied().collect();
    all.sort();
    all.dedup();
    if all.is_empty() {
        all = internal(conf)
            .into_iter()
            .map(|net| Allow {
                net,
                proto: None,
                ports: None,
            })
            .collect();
    }
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn forwards_read_strictly_and_print_canonically() {
        for (text, shown) in [
            ("tcp/22", "tcp/22"),
            ("tcp/8080=80", "tcp/8080=80"),
            ("udp/161=161", "udp/161"),
        ] {
            assert_eq!(text.parse::<Forward>().unwrap().to_string(), shown);
        }
        for bad in [
            "tcp/0",
            "tcp/70000",
            "sctp/22",
            "tcp",
            "tcp/22=",
            "tcp/022",
            "tcp/22=0",
            "/22",
        ] {
            assert!(bad.parse::<Forward>().is_err(), "{bad} accepted");
        }
        let dup = forwards("HUB_FORWARDS", ["tcp/22", "tcp/22=2222"]).unwrap_err();
        assert!(
            dup.msg.contains("'tcp/22=2222'") && dup.msg.contains("twice"),
            "{}",
            dup.msg
        );
        let dev = forwards("--forward", ["tcp/22", "tcp/2222=22"]).unwrap_err();
        assert!(dev.msg.contains("device's tcp port 22"), "{}", dev.msg);
        assert!(forwards("x", ["tcp/22", "udp/22"]).is_ok());
    }

    #[test]
    fn allow_entries_read_strictly_and_print_canonically() {
        for (text, shown) in [
            ("100.64.0.0/24", "100.64.0.0/24"),
            ("100.64.0.1", "100.64.0.1/32"),
            ("100.64.0.0/24,tcp/443", "100.64.0.0/24,tcp/443"),
            ("100.64.0.0/24,udp/1000-2000", "100.64.0.0/24,udp/1000-2000"),
            ("100.64.0.0/24,tcp", "100.64.0.0/24,tcp"),
            ("fd00::/64,tcp/22-22", "fd00::/64,tcp/22"),
        ] {
            assert_eq!(text.parse::<Allow>().unwrap().to_string(), shown);
        }
        for bad in [
            "100.64.0.1/24",
            "100.64.0.0/33",
            "300.0.0.0/8",
            "100.64.0.0/24,icmp",
            "100.64.0.0/24,tcp/0",
            "100.64.0.0/24,tcp/2-1",
            "100.64.0.0/24,tcp/70000",
            "",
        ] {
            assert!(bad.parse::<Allow>().is_err(), "{bad} accepted");
        }
    }

    #[test]
    fn only_what_is_lost_needs_its_rules_removed() {
        let conf = Conf::from_map(&std::collections::HashMap::new()).unwrap();
        let with = |forwards: &[&str], allow: &[&str]| Settings {
            forwards: forwards.iter().map(|f| f.parse().unwrap()).collect(),
            allow: allow.iter().map(|a| a.parse().unwrap()).collect(),
            ..Settings::default()
        };
        let none = with(&[], &[]);
        let host = with(&[], &["100.64.0.10/32"]);
        assert!(
            !takes_away(&conf, &none, &with(&["tcp/22"], &[])),
            "a forward added"
        );
        assert!(
            takes_away(&conf, &with(&["tcp/22"], &[]), &none),
            "a forward taken"
        );
        assert!(takes_away(
            &conf,
            &with(&["tcp/22"], &[]),
            &with(&["tcp/22=2222"], &[])
        ));
        // (no entry: the whole network; an entry narrows it, and its absence widens it again)
        assert!(
            takes_away(&conf, &none, &host),
            "the whole network narrowed"
        );
        assert!(takes_away(&conf, &host, &none), "the host's own rule goes");
        assert!(!takes_away(&conf, &host, &host), "nothing changed");
    }

    #[test]
    fn a_peers_forwards_replace_the_hubs_of_the_same_port() {
        let f = |t: &str| t.parse::<Forward>().unwrap();
        let merged = merged_forwards(
            &[f("tcp/22"), f("udp/161")],
            &[f("tcp/22=2222"), f("tcp/80")],
        );
        let shown: Vec<String> = merged.iter().map(Forward::to_string).collect();
        assert_eq!(shown, ["tcp/22=2222", "tcp/80", "udp/161"]);
    }
}
