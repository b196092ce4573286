//! hub.conf: the hub's settings (HUB_* in the environment: the script sources hub.conf as shell
//! and exports what it set, the environment overriding it), checked in one place, and the
//! names and numbers derived from them.

use std::collections::HashMap;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::PathBuf;

use crate::access::{self, Allow, Forward};
use crate::error::{invalid, Result};
use crate::net::{self, Cidr4, Cidr6};

/// Every setting of the hub, as hub.conf names it.
pub const KEYS: [&str; 19] = [
    "HUB_NS",
    "HUB_BRIDGE",
    "HUB_CIDR",
    "HUB_ADDRESS",
    "HUB_PORT_BASE",
    "HUB_STATE_DIR",
    "HUB_PREFIX",
    "HUB_ENDPOINT",
    "HUB_PUBLIC_PORT_BASE",
    "HUB_CLIENT_ADDRESS",
    "HUB_JOBS",
    "HUB_BRIDGE_PORTS",
    "HUB_CIDR6",
    "HUB_ADDRESS6",
    "HUB_CLIENT_ADDRESS6",
    "HUB_MODE",
    "HUB_FORWARDS",
    "HUB_ALLOW",
    "HUB_ISOLATE",
];

/// HUB_MODE=zones: every peer's connection mark and routing table is `MARK_BASE` + its port (its
/// conntrack zone is the port itself): "NX" in the high half, clear of wg-quick's 51820.
pub const ZONE_MARK_BASE: u32 = 0x4e58_0000;
/// (The priorities of the zones' fwmark rules: `fwmark`.)

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// A namespace per peer (the reference recipe).
    Netns,
    /// Every tunnel in the center, kept apart by conntrack zone, connection mark and table.
    Zones,
}

impl Mode {
    pub fn as_str(self) -> &'static str {
        match self {
            Mode::Netns => "netns",
            Mode::Zones => "zones",
        }
    }
}

/// IPv6 inside the tunnels (HUB_CIDR6 set).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct V6 {
    pub cidr: Cidr6,
    /// HUB_CIDR6 as given.
    pub cidr_text: String,
    /// The center's address (canonical text).
    pub address: Ipv6Addr,
    /// The client's address in its config, ADDR/LEN.
    pub client_address: String,
}

/// The checked settings.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Conf {
    pub ns: String,
    pub bridge: String,
    pub cidr: Cidr4,
    pub cidr_text: String,
    pub address: Ipv4Addr,
    pub address_text: String,
    pub port_base: u16,
    pub state_dir: PathBuf,
    pub prefix: String,
    pub endpoint: String,
    pub public_port_base: Option<u16>,
    pub client_address: String,
    pub jobs: usize,
    pub bridge_ports: u32,
    pub v6: Option<V6>,
    pub mode: Mode,
    /// HUB_FORWARDS: every device's ports the internal network reaches.
    pub forwards: Vec<Forward>,
    /// HUB_ALLOW: what every device may reach (empty: the whole internal network).
    pub allow: Vec<Allow>,
    /// HUB_ISOLATE: no device reaches another.
    pub isolate: bool,
}

impl Conf {
    /// The settings from the environment (unset: the default that builds the reference hub).
    pub fn from_env() -> Result<Conf> {
        let vars: HashMap<String, String> = KEYS
            .iter()
            .filter_map(|k| std::env::var(k).ok().map(|v| (k.to_string(), v)))
            .collect();
        Conf::from_map(&vars)
    }

    pub fn from_map(vars: &HashMap<String, String>) -> Result<Conf> {
        let get =
            |k: &str, default: &str| vars.get(k).cloned().unwrap_or_else(|| default.to_string());
        let ns = get("HUB_NS", "");
        let prefix = get("HUB_PREFIX", "");
        let bridge = get("HUB_BRIDGE", "br-internal");
        let name_chars = |s: &str, extra: &[u8]| {
            s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-' || extra.contains(&b))
        };
        if !(ns.is_empty() || (ns.len() <= 64 && name_chars(&ns, b".") && ns != "." && ns != ".."))
        {
            return Err(invalid(format!(
                "HUB_NS '{ns}' is not a namespace name ([A-Za-z0-9_.-]{{1,64}})"
            )));
        }
        if prefix.len() > 8 || !name_chars(&prefix, b"") {
            return Err(invalid(format!(
                "HUB_PREFIX '{prefix}' must be at most 8 of [A-Za-z0-9_-]"
            )));
        }
        if bridge.is_empty() || bridge.len() > 15 || !name_chars(&bridge, b".") {
            return Err(invalid(format!(
                "HUB_BRIDGE '{bridge}' is not an interface name (1-15 bytes)"
            )));
        }
        let cidr_text = get("HUB_CIDR", "100.64.0.0/24");
        let cidr = Cidr4::parse(&cidr_text).ok_or_else(|| {
            invalid(format!(
                "HUB_CIDR '{cidr_text}' is not an IPv4 network (A.B.C.D/1..30)"
            ))
        })?;
        let address_text = get("HUB_ADDRESS", "100.64.0.10");
        let address = net::ip4(&address_text).filter(|a| cidr.holds(*a)).ok_or_else(|| {
            invalid(format!("HUB_ADDRESS '{address_text}' is not a host address inside HUB_CIDR {cidr_text}"))
        })?;
        let port_text = get("HUB_PORT_BASE", "50000");
        let port_base = net::port(&port_text).ok_or_else(|| {
            invalid(format!(
                "HUB_PORT_BASE '{port_text}' is not a port (1-65535)"
            ))
        })?;
        let public_text = get("HUB_PUBLIC_PORT_BASE", "");
        let public_port_base = match public_text.as_str() {
            "" => None,
            t => Some(net::port(t).ok_or_else(|| {
                invalid(format!(
                    "HUB_PUBLIC_PORT_BASE '{t}' is not a port (1-65535)"
                ))
            })?),
        };
        let endpoint = get("HUB_ENDPOINT", "");
        if !endpoint.is_empty() && !endpoint_valid(&endpoint) {
            return Err(invalid(format!(
                "HUB_ENDPOINT '{endpoint}' is not a DNS name, an IPv4 address or an IPv6 address (no port: each peer's port is added to it)"
            )));
        }
        let jobs_text = get("HUB_JOBS", "4");
        let jobs = small_number(&jobs_text, 2)
            .filter(|j| *j >= 1)
            .ok_or_else(|| invalid(format!("HUB_JOBS '{jobs_text}' must be 1..99")))?;
        let ports_text = get("HUB_BRIDGE_PORTS", "1000");
        let bridge_ports = small_number(&ports_text, 4).filter(|p| (1..=1000).contains(p)).ok_or_else(|| {
            invalid(format!(
                "HUB_BRIDGE_PORTS '{ports_text}' must be 1..1000 (a Linux bridge takes at most 1023 ports)"
            ))
        })?;
        if ns == format!("{prefix}hub.switch") {
            return Err(invalid(format!(
                "HUB_NS '{ns}' is the name of the hub's switch namespace; choose another"
            )));
        }
        let state_dir = get("HUB_STATE_DIR", "/var/lib/niransix");
        if !state_dir.starts_with('/') || state_dir.contains(|c: char| c.is_control()) {
            return Err(invalid(format!(
                "HUB_STATE_DIR '{state_dir}' must be an absolute path (without tabs, newlines or other control characters)"
            )));
        }
        let mode = match get("HUB_MODE", "netns").as_str() {
            "netns" => Mode::Netns,
            "zones" => Mode::Zones,
            other => {
                return Err(invalid(format!(
                    "HUB_MODE '{other}' must be netns (a namespace per peer) or zones (conntrack zones and marks in the center)"
                )))
            }
        };
        let v6 = v6_settings(
            &get("HUB_CIDR6", ""),
            &get("HUB_ADDRESS6", ""),
            &get("HUB_CLIENT_ADDRESS6", ""),
            &cidr,
            address,
            &cidr_text,
        )?;
        let isolate = match get("HUB_ISOLATE", "yes").as_str() {
            "yes" => true,
            "no" => false,
            other => {
                return Err(invalid(format!(
                    "HUB_ISOLATE '{other}' must be yes (no device reaches another) or no"
                )))
            }
        };
        // (in zones mode the devices' addresses are the center's own, and a connection from one
        // device to another would need a connection mark for each direction: it cannot be
        // routed, so the mode isolates its devices, and says so rather than ignore the key)
        if !isolate && mode == Mode::Zones {
            return Err(invalid(
                "HUB_ISOLATE 'no' needs HUB_MODE=netns: in zones mode devices never reach each other",
            ));
        }
        let mut conf = Conf {
            ns,
            bridge,
            cidr,
            cidr_text,
            address,
            address_text,
            port_base,
            state_dir: PathBuf::from(state_dir),
            prefix,
            endpoint,
            public_port_base,
            client_address: get("HUB_CLIENT_ADDRESS", "192.168.1.10/32"),
            jobs: jobs as usize,
            bridge_ports,
            v6,
            mode,
            forwards: access::forwards("HUB_FORWARDS", access::words(&get("HUB_FORWARDS", "")))?,
            allow: Vec::new(),
            isolate,
        };
        conf.allow = access::allow(&conf, "HUB_ALLOW", access::words(&get("HUB_ALLOW", "")))?;
        if !conf.forwards.is_empty() {
            conf.forwards_possible("HUB_FORWARDS")?;
        }
        Ok(conf)
    }

    /// Forwards (LABEL gave some) need a device address to lead to.
    pub fn forwards_possible(&self, label: &str) -> Result<()> {
        self.client_host(label).map(|_| ())
    }

    /// The device's own IPv4 address (HUB_CLIENT_ADDRESS without its length), where forwards
    /// lead; WHY: what needs it.
    pub fn client_host(&self, why: &str) -> Result<Ipv4Addr> {
        let text = self.client_address.split('/').next().unwrap_or_default();
        net::ip4(text).ok_or_else(|| {
            invalid(format!(
                "HUB_CLIENT_ADDRESS '{}' is not an IPv4 address ADDR[/LEN], which {why} needs",
                self.client_address
            ))
        })
    }

    pub fn zones(&self) -> bool {
        self.mode == Mode::Zones
    }

    /// Whether a tunnel takes IPv6 (`wgctl iface add --ipv6 on|off`): on with HUB_CIDR6, which
    /// it carries; off in a zones hub without it (every tunnel is in the center there, and the
    /// kernel walks every IPv6 route of a namespace at each link change in it: the three of
    /// each tunnel, its link-local address, fe80::/64 and ff00::/8, made adding one beside
    /// 1,000 others cost the kernel ~2 ms more than beside 10). None: as the namespace's
    /// default (a netns hub without HUB_CIDR6, each tunnel alone in its namespace).
    pub fn tunnel_ipv6(&self) -> Option<bool> {
        match (&self.v6, self.zones()) {
            (Some(_), _) => Some(true),
            (None, true) => Some(false),
            (None, false) => None,
        }
    }

    /// The smallest MTU a tunnel may have (IPv6 inside it needs 1280).
    pub fn mtu_min(&self) -> u32 {
        if self.v6.is_some() {
            1280
        } else {
            576
        }
    }

    /// The longest peer name: its links are PREFIX+NAME+"-wg" (15 bytes at most).
    pub fn name_max(&self) -> usize {
        15 - 3 - self.prefix.len()
    }

    /// The center's interface (holds HUB_ADDRESS) and its veth peer on the bridge.
    pub fn center_if(&self) -> String {
        format!("{}hub0", self.prefix)
    }

    pub fn center_br(&self) -> String {
        format!("{}hub0-br", self.prefix)
    }

    /// The namespace that holds the bridge and the peers' ports (a '.' no peer name can have).
    pub fn switch_name(&self) -> String {
        format!("{}hub.switch", self.prefix)
    }

    /// The center, in words.
    pub fn where_center(&self) -> String {
        where_ns(&self.ns)
    }

    /// The settings recorded with a built hub, by their key in center.json, with their name.
    pub fn recorded_settings(&self) -> [(&'static str, &'static str, String); 8] {
        let v6 = self.v6.as_ref();
        [
            ("bridge", "HUB_BRIDGE", self.bridge.clone()),
            ("cidr", "HUB_CIDR", self.cidr_text.clone()),
            ("address", "HUB_ADDRESS", self.address_text.clone()),
            ("port_base", "HUB_PORT_BASE", self.port_base.to_string()),
            (
                "client_address",
                "HUB_CLIENT_ADDRESS",
                self.client_address.clone(),
            ),
            (
                "cidr6",
                "HUB_CIDR6",
                v6.map(|v| v.cidr_text.clone()).unwrap_or_default(),
            ),
            (
                "address6",
                "HUB_ADDRESS6",
                v6.map(|v| v.address.to_string()).unwrap_or_default(),
            ),
            (
                "client_address6",
                "HUB_CLIENT_ADDRESS6",
                v6.map(|v| v.client_address.clone()).unwrap_or_default(),
            ),
        ]
    }
}

/// A namespace in words ("" is the host).
pub fn where_ns(ns: &str) -> String {
    if ns.is_empty() {
        "the host".to_string()
    } else {
        format!("namespace {ns}")
    }
}

/// A decimal of at most DIGITS digits without a leading zero.
fn small_number(text: &str, digits: usize) -> Option<u32> {
    let ok = !text.is_empty()
        && text.len() <= digits
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if ok {
        text.parse().ok()
    } else {
        None
    }
}

/// With HUB_CIDR6, every peer's v6 address is host N of it where its v4 address is host N of
/// HUB_CIDR; HUB_ADDRESS6 defaults to the center's likewise and must not be a peer's.
fn v6_settings(
    cidr6: &str,
    address6: &str,
    client6: &str,
    cidr: &Cidr4,
    address: Ipv4Addr,
    cidr_text: &str,
) -> Result<Option<V6>> {
    if cidr6.is_empty() {
        if !address6.is_empty() || !client6.is_empty() {
            return Err(invalid(
                "HUB_ADDRESS6 and HUB_CLIENT_ADDRESS6 need HUB_CIDR6 (the internal IPv6 network)",
            ));
        }
        return Ok(None);
    }
    let c = Cidr6::parse(cidr6).ok_or_else(|| {
        invalid(format!("HUB_CIDR6 '{cidr6}' is not an IPv6 network with room for the peers (ADDR/1..96, host bits zero)"))
    })?;
    if !c.usable() {
        return Err(invalid(format!(
            "HUB_CIDR6 '{cidr6}' is a link-local, multicast or unspecified prefix; give a routable one (e.g. fd00:64::/64)"
        )));
    }
    let hub_host = cidr.host_of(address);
    let address = if address6.is_empty() {
        c.host(hub_host)
    } else {
        let a = net::ip6(address6).filter(|a| c.holds(*a)).ok_or_else(|| {
            invalid(format!(
                "HUB_ADDRESS6 '{address6}' is not an address inside HUB_CIDR6 {cidr6}"
            ))
        })?;
        if let Some(h) = c.host_of(a) {
            let peer_slot =
                h != hub_host && h >= cidr.first - cidr.net && h <= cidr.last - cidr.net;
            if peer_slot {
                return Err(invalid(format!(
                    "HUB_ADDRESS6 '{address6}' is the v6 address of a peer slot (host {h} of HUB_CIDR {cidr_text} maps onto host {h} of HUB_CIDR6); leave it empty for host {hub_host}"
                )));
            }
        }
        a
    };
    let client = if client6.is_empty() {
        "fd00::10/128"
    } else {
        client6
    };
    let parsed = client.split_once('/').and_then(|(a, len)| {
        let len_ok = !len.is_empty()
            && len.len() <= 3
            && !len.starts_with('0')
            && len.parse::<u8>().is_ok_and(|l| l <= 128);
        len_ok.then(|| net::ip6(a)).flatten()
    });
    let Some(client_addr) = parsed else {
        return Err(invalid(format!(
            "HUB_CLIENT_ADDRESS6 '{client}' is not an IPv6 address with a prefix length (e.g. fd00::10/128)"
        )));
    };
    if c.holds(client_addr) {
        return Err(invalid(format!(
            "HUB_CLIENT_ADDRESS6 '{client}' is inside HUB_CIDR6 {cidr6} (the internal network the client reaches through its tunnel); give one outside it"
        )));
    }
    Ok(Some(V6 {
        cidr: c,
        cidr_text: cidr6.to_string(),
        address,
        client_address: client.to_string(),
    }))
}

/// A DNS name (letters, digits, '-' and '.', labels of 1-63, 253 in all; not all digits and
/// dots: that is a mistyped address), an IPv4 address or an IPv6 address (bare or in
/// brackets); no port.
pub fn endpoint_valid(host: &str) -> bool {
    if let Some(inner) = host.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
        return net::ip6(inner).is_some();
    }
    if net::ip4(host).is_some() || net::ip6(host).is_some() {
        return true;
    }
    if host.len() > 253 || host.bytes().all(|b| b.is_ascii_digit() || b == b'.') {
        return false;
    }
    let name = host.strip_suffix('.').unwrap_or(host);
    !name.is_empty()
        && name.split('.').all(|label| {
            let b = label.as_bytes();
            !b.is_empty()
                && b.len() <= 63
                && b.iter().all(|c| c.is_ascii_alphanumeric() || *c == b'-')
                && b[0] != b'-'
                && b[b.len() - 1] != b'-'
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn conf(pairs: &[(&str, &str)]) -> Result<Conf> {
        Conf::from_map(
            &pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
        )
    }

    fn refused(pairs: &[(&str, &str)], naming: &str) {
        let e = conf(pairs).expect_err(naming);
        assert_eq!(e.code, 2);
        assert!(e.msg.contains(naming), "{} does not name {naming}", e.msg);
    }

    #[test]
    fn defaults_build_the_reference_hub() {
        let c = conf(&[]).unwrap();
        assert_eq!(c.address, Ipv4Addr::new(100, 64, 0, 10));
        assert_eq!(
            (c.port_base, c.jobs, c.bridge_ports, c.mode),
            (50000, 4, 1000, Mode::Netns)
        );
        assert_eq!(c.name_max(), 12);
        assert_eq!(c.v6, None);
    }

    #[test]
    fn every_bad_setting_is_refused_by_name() {
        refused(&[("HUB_NS", "a/b")], "HUB_NS 'a/b'");
        refused(&[("HUB_NS", "..")], "HUB_NS");
        refused(&[("HUB_PREFIX", "waytoolong")], "HUB_PREFIX 'waytoolong'");
        refused(&[("HUB_BRIDGE", "br-much-too-long")], "HUB_BRIDGE");
        refused(&[("HUB_CIDR", "100.64.0.0/33")], "HUB_CIDR '100.64.0.0/33'");
        refused(
            &[("HUB_ADDRESS", "100.64.0.010")],
            "HUB_ADDRESS '100.64.0.010'",
        );
        refused(&[("HUB_ADDRESS", "100.64.1.10")], "inside HUB_CIDR");
        refused(&[("HUB_PORT_BASE", "0")], "HUB_PORT_BASE '0'");
        refused(&[("HUB_PUBLIC_PORT_BASE", "70000")], "HUB_PUBLIC_PORT_BASE");
        refused(&[("HUB_ENDPOINT", "hub.example:51820")], "HUB_ENDPOINT");
        refused(&[("HUB_ENDPOINT", "10.0.0.300")], "HUB_ENDPOINT");
        refused(&[("HUB_JOBS", "0")], "HUB_JOBS");
        refused(&[("HUB_BRIDGE_PORTS", "1001")], "HUB_BRIDGE_PORTS");
        refused(&[("HUB_NS", "hub.switch")], "switch namespace");
        refused(&[("HUB_STATE_DIR", "state")], "HUB_STATE_DIR");
        refused(&[("HUB_STATE_DIR", "/var/lib/a\tb")], "HUB_STATE_DIR");
        refused(&[("HUB_MODE", "vrf")], "HUB_MODE 'vrf'");
        refused(&[("HUB_ADDRESS6", "fd00::1")], "need HUB_CIDR6");
        refused(&[("HUB_CIDR6", "fd00::1/64")], "HUB_CIDR6");
        refused(&[("HUB_CIDR6", "fe80::/64")], "link-local");
        refused(
            &[
                ("HUB_CIDR6", "fd00:64::/64"),
                ("HUB_ADDRESS6", "fd00:65::1"),
            ],
            "HUB_ADDRESS6",
        );
        refused(
            &[
                ("HUB_CIDR6", "fd00:64::/64"),
                ("HUB_ADDRESS6", "fd00:64::7"),
            ],
            "peer slot",
        );
        refused(
            &[
                ("HUB_CIDR6", "fd00:64::/64"),
                ("HUB_CLIENT_ADDRESS6", "fd00::10"),
            ],
            "prefix length",
        );
        refused(
            &[
                ("HUB_CIDR6", "fd00:64::/64"),
                ("HUB_CLIENT_ADDRESS6", "fd00:64::10/128"),
            ],
            "inside HUB_CIDR6",
        );
    }

    #[test]
    fn v6_follows_v4() {
        let c = conf(&[("HUB_CIDR6", "fd00:64::/64")]).unwrap();
        let v6 = c.v6.clone().unwrap();
        assert_eq!(v6.address.to_string(), "fd00:64::a");
        assert_eq!(v6.client_address, "fd00::10/128");
        assert_eq!(c.mtu_min(), 1280);
        let c = conf(&[
            ("HUB_CIDR6", "fd00:64::/64"),
            ("HUB_ADDRESS6", "FD00:64:0::0:1:1"),
        ])
        .unwrap();
        assert_eq!(c.v6.unwrap().address.to_string(), "fd00:64::1:1");
    }

    #[test]
    fn endpoints() {
        for good in [
            "hub.example.com",
            "hub",
            "hub.example.",
            "192.0.2.1",
            "2001:db8::1",
            "[2001:db8::1]",
            "a-b.c",
        ] {
            assert!(endpoint_valid(good), "{good}");
        }
        for bad in [
            "",
            "-hub",
            "hub-.x",
            "a..b",
            "10.0.0",
            "1.2.3.4:5",
            "[1.2.3.4]",
            "h_b",
            &"a".repeat(64),
        ] {
            assert!(!endpoint_valid(bad), "{bad}");
        }
    }
}
