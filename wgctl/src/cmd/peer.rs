//! `peer add` / `peer del` on an interface living in the current (`--ns`) namespace.
//!
//! `peer add` is declarative: the peer ends up with exactly the given allowed IPs; endpoint,
//! keepalive and preshared key are set when given and left as they are when not. Same settings
//! print `changed:false`. A peer that exists with other allowed IPs, keepalive or preshared key
//! is refused (exit 1) unless `--replace`, which updates it in place (`changed:true`). The
//! endpoint is not such a setting: WireGuard itself rewrites it whenever the peer roams, so a
//! given one is simply set again (`changed:true`), as `wg set` would.

use std::collections::BTreeSet;
use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::path::PathBuf;
use std::str::FromStr;

use clap::{Args, Subcommand, ValueHint};
use common::types::{IfName, Port};
use common::{vlog, Ctx, Error, Outcome, Result};
use ipnet::IpNet;
use serde::Serialize;
use wireguard_control::{AllowedIp, DeviceUpdate, PeerConfigBuilder, PeerInfo};

use crate::backend::{self, Backend, Found, Link};
use crate::keys::{self, PublicKey};
use crate::userspace::Userspace;

#[derive(Subcommand, Debug)]
pub enum PeerCmd {
    /// Add or update a peer (like `wg set IFACE peer KEY allowed-ips .. endpoint .. ..`)
    Add(AddArgs),
    /// Remove a peer (like `wg set IFACE peer KEY remove`)
    Del(DelArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// The WireGuard interface (in the current namespace)
    #[arg(add = backend::completer())]
    pub iface: IfName,
    /// The peer's public key, base64 (like `wg set IFACE peer KEY`)
    #[arg(long, value_name = "KEY")]
    pub public_key: PublicKey,
    /// Comma-separated CIDRs routed to this peer; replaces the peer's list
    /// (like `wg set IFACE peer KEY allowed-ips CIDR,..`)
    #[arg(long, value_name = "CIDR[,CIDR..]")]
    pub allowed_ips: AllowedIps,
    /// Where to send packets: ADDR:PORT, [V6ADDR]:PORT or HOSTNAME:PORT
    /// (like `wg set IFACE peer KEY endpoint HOST:PORT`)
    #[arg(long, value_name = "HOST:PORT")]
    pub endpoint: Option<Endpoint>,
    /// Persistent keepalive interval in seconds, 0 = off
    /// (like `wg set IFACE peer KEY persistent-keepalive SECS`)
    #[arg(long, value_name = "SECS")]
    pub keepalive: Option<u16>,
    /// File holding a preshared key, base64, mode 0600
    /// (like `wg set IFACE peer KEY preshared-key FILE`); `none`: the peer has no preshared key
    /// (like `wg set IFACE peer KEY preshared-key /dev/null`)
    #[arg(long, value_name = "FILE|none", value_parser = psk_arg, value_hint = ValueHint::FilePath)]
    pub preshared_key: Option<PskArg>,
    /// If the peer exists with other allowed IPs, keepalive or preshared key, update it in
    /// place (without this: exit 1)
    #[arg(long)]
    pub replace: bool,
    /// This is the interface's only peer: any other peer is removed (in the same update; the
    /// peer itself keeps its session and endpoint, unlike `wg setconf`)
    #[arg(long)]
    pub exclusive: bool,
}

/// `--preshared-key FILE|none`.
#[derive(Debug, Clone)]
pub enum PskArg {
    File(PathBuf),
    /// No preshared key (WireGuard's all-zero key).
    None,
}

fn psk_arg(s: &str) -> std::result::Result<PskArg, String> {
    if s == "none" {
        return Ok(PskArg::None);
    }
    keys::key_file_path(s).map(PskArg::File)
}

#[derive(Args, Debug)]
pub struct DelArgs {
    /// The WireGuard interface (in the current namespace)
    #[arg(add = backend::completer())]
    pub iface: IfName,
    /// The peer's public key, base64
    #[arg(long, value_name = "KEY")]
    pub public_key: PublicKey,
}

/// A non-empty list of allowed IPs, stored as networks (host bits cleared, as WireGuard does).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AllowedIps(pub BTreeSet<IpNet>);

impl FromStr for AllowedIps {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut set = BTreeSet::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            set.insert(common::types::parse_prefix_or_host(part)?.trunc());
        }
        if set.is_empty() {
            return Err("allowed-ips is empty: give at least one CIDR (e.g. 10.0.0.2/32)".into());
        }
        Ok(AllowedIps(set))
    }
}

/// `HOST:PORT` as given; resolved when the command runs (in its namespace).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    host: String,
    port: u16,
    literal: Option<SocketAddr>,
}

impl FromStr for Endpoint {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if let Ok(addr) = s.parse::<SocketAddr>() {
            return Ok(Endpoint {
                host: addr.ip().to_string(),
                port: addr.port(),
                literal: Some(addr),
            });
        }
        let bad = |why: &str| format!("endpoint '{s}' is not HOST:PORT ({why})");
        let (host, port) = s.rsplit_once(':').ok_or_else(|| bad("no port"))?;
        let port: Port = port.parse().map_err(|e: String| bad(&e))?;
        if host.contains(':') || host.starts_with('[') {
            return Err(bad("write IPv6 addresses in brackets: [2001:db8::1]:51820"));
        }
        let hostname_ok = !host.is_empty()
            && host.len() <= 253
            && host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-');
        if !hostname_ok {
            return Err(bad(&format!("'{host}' is not an address or host name")));
        }
        Ok(Endpoint {
            host: host.to_owned(),
            port: port.0,
            literal: None,
        })
    }
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}:{}", self.host, self.port)
    }
}

impl Endpoint {
    /// The socket address (resolving a host name; failure is invalid input, exit 2).
    pub fn resolve(&self) -> Result<SocketAddr> {
        if let Some(a) = self.literal {
            return Ok(a);
        }
        (self.host.as_str(), self.port)
            .to_socket_addrs()
            .ok()
            .and_then(|mut it| it.next())
            .ok_or_else(|| Error::invalid(format!("cannot resolve endpoint host '{}'", self.host)))
    }
}

pub fn run(ctx: &Ctx, cmd: PeerCmd) -> Result<Outcome> {
    match cmd {
        PeerCmd::Add(a) => add(ctx, a),
        PeerCmd::Del(a) => del(ctx, a),
    }
}

#[derive(Serialize)]
struct PeerJson {
    interface: IfName,
    public_key: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    endpoint: Option<Option<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_ips: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    persistent_keepalive: Option<Option<u16>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    preshared_key: Option<bool>,
}

/// The WireGuard interface `name` in the current namespace, or a failure naming it.
pub fn interface_here(ctx: &Ctx, name: &IfName) -> Result<Link> {
    match backend::lookup_here(name)? {
        Found::WireGuard(l) => Ok(l),
        Found::Other(kind) => Err(Error::failed(format!(
            "{name} in {} is a {kind} link, not a WireGuard interface",
            ctx.ns_label()
        ))),
        Found::Absent => Err(Error::failed(format!(
            "WireGuard interface {name} not found in {}",
            ctx.ns_label()
        ))),
    }
}

fn networks(peer: &PeerInfo) -> BTreeSet<IpNet> {
    peer.config
        .allowed_ips
        .iter()
        .filter_map(|a| IpNet::new(a.address, a.cidr).ok().map(|n| n.trunc()))
        .collect()
}

fn add(ctx: &Ctx, a: AddArgs) -> Result<Outcome> {
    // Input first, so bad input changes nothing.
    // Some(None): `--preshared-key none`.
    let psk = match &a.preshared_key {
        None => None,
        Some(PskArg::None) => Some(None),
        Some(PskArg::File(p)) => Some(Some(keys::read_key_file(p, "preshared key")?)),
    };
    let endpoint = a.endpoint.as_ref().map(Endpoint::resolve).transpose()?;
    let name = &a.iface;
    let used = interface_here(ctx, name)?.backend;
    let dev = backend::read_device(name, used)?;
    let existing = dev
        .peers
        .iter()
        .find(|p| p.config.public_key == a.public_key.0);

    let (cur_endpoint, cur_keepalive, cur_psk) = match existing {
        Some(p) => (
            p.config.endpoint,
            p.config.persistent_keepalive_interval.unwrap_or(0),
            keys::non_zero(p.config.preshared_key.clone()),
        ),
        None => (None, 0, None),
    };
    // The peer's preshared key after this (an all-zero key is none, as WireGuard has it).
    let new_psk = match &psk {
        Some(k) => keys::non_zero(k.clone()),
        None => cur_psk.clone(),
    };
    // How an existing peer differs (that takes --replace); never shows a key.
    let mut diffs = Vec::new();
    if let Some(p) = existing {
        let cur_ips = networks(p);
        if cur_ips != a.allowed_ips.0 {
            let shown = |ips: &BTreeSet<IpNet>| {
                ips.iter()
                    .map(ToString::to_string)
                    .collect::<Vec<_>>()
                    .join(",")
            };
            diffs.push(format!(
                "allowed-ips {} (wanted {})",
                shown(&cur_ips),
                shown(&a.allowed_ips.0)
            ));
        }
        if let Some(k) = a.keepalive.filter(|k| *k != cur_keepalive) {
            diffs.push(format!("keepalive {cur_keepalive} (wanted {k})"));
        }
        if new_psk != cur_psk {
            diffs.push(match cur_psk {
                Some(_) => "a different preshared key".into(),
                None => "no preshared key (wanted one)".into(),
            });
        }
    }
    if !diffs.is_empty() && !a.replace {
        return Err(Error::failed(format!(
            "peer {} already exists on {name} in {} with different settings: {}; \
             use --replace to update it",
            a.public_key,
            ctx.ns_label(),
            diffs.join(", ")
        )));
    }
    // --exclusive: every other peer of the interface goes (a stray one added behind our back).
    let strays: Vec<_> = if a.exclusive {
        dev.peers
            .iter()
            .map(|p| &p.config.public_key)
            .filter(|k| **k != a.public_key.0)
            .collect()
    } else {
        Vec::new()
    };
    if endpoint.is_some_and(|e| Some(e) != cur_endpoint) {
        diffs.push("endpoint".into());
    }
    // Whether the peer itself is new or changes (not only the others around it).
    let own_change = existing.is_none() || !diffs.is_empty();
    if !strays.is_empty() {
        diffs.push(format!("{} other peer(s) removed", strays.len()));
    }
    let changed = existing.is_none() || !diffs.is_empty();

    if changed && !ctx.check {
        match existing {
            Some(_) => vlog!(
                1,
                "updating peer {} on {name}: {}",
                a.public_key,
                diffs.join(", ")
            ),
            None => vlog!(1, "adding peer {} to {name}", a.public_key),
        }
        let ips: Vec<AllowedIp> = a
            .allowed_ips
            .0
            .iter()
            .map(|n| AllowedIp {
                address: n.addr(),
                cidr: n.prefix_len(),
            })
            .collect();
        // boringtun (0.7) cannot change a peer it has (its worker panics and the process
        // hangs): the peer is removed, then added anew with what it keeps (endpoint,
        // keepalive, preshared key); its session starts over with a handshake. (Two requests:
        // boringtun carries a peer's `remove` over to the peers after it in one request, so
        // the peer to add also comes before the strays to remove.)
        let boringtun = used == Backend::Userspace
            && backend::running_userspace(name.as_str()) == Some(Userspace::Boringtun);
        let anew = boringtun && existing.is_some() && own_change;
        let mut peer = PeerConfigBuilder::new(&a.public_key.0)
            .replace_allowed_ips()
            .add_allowed_ips(&ips);
        if let Some(e) = endpoint.or(cur_endpoint.filter(|_| anew)) {
            peer = peer.set_endpoint(e);
        }
        let kept_keepalive = (anew && cur_keepalive != 0).then_some(cur_keepalive);
        if let Some(k) = a.keepalive.or(kept_keepalive) {
            peer = peer.set_persistent_keepalive_interval(k);
        }
        match &psk {
            Some(Some(k)) => peer = peer.set_preshared_key(k.clone()),
            Some(None) => peer = peer.unset_preshared_key(),
            None if anew => {
                if let Some(k) = &cur_psk {
                    peer = peer.set_preshared_key(k.clone());
                }
            }
            None => {}
        }
        let what = format!(
            "setting peer {} on {name} in {}",
            a.public_key,
            ctx.ns_label()
        );
        if anew {
            let removal = DeviceUpdate::new().remove_peer_by_key(&a.public_key.0);
            backend::apply(name, used, removal, &what)?;
        }
        // (boringtun: a peer that stays as it is is left alone, keeping its session)
        let mut update = DeviceUpdate::new();
        if own_change || !boringtun {
            update = update.add_peer(peer);
        }
        for k in strays {
            update = update.remove_peer_by_key(k);
        }
        backend::apply(name, used, update, &what)?;
    }
    let keepalive = a.keepalive.unwrap_or(cur_keepalive);
    Outcome::object(
        changed,
        "peer",
        PeerJson {
            interface: name.clone(),
            public_key: a.public_key.to_string(),
            endpoint: Some(endpoint.or(cur_endpoint).map(|e| e.to_string())),
            allowed_ips: Some(a.allowed_ips.0.iter().map(ToString::to_string).collect()),
            persistent_keepalive: Some((keepalive != 0).then_some(keepalive)),
            preshared_key: Some(new_psk.is_some()),
        },
    )
}

fn del(ctx: &Ctx, a: DelArgs) -> Result<Outcome> {
    let name = &a.iface;
    let used = interface_here(ctx, name)?.backend;
    let dev = backend::read_device(name, used)?;
    let present = dev
        .peers
        .iter()
        .any(|p| p.config.public_key == a.public_key.0);
    if present && !ctx.check {
        vlog!(1, "removing peer {} from {name}", a.public_key);
        backend::apply(
            name,
            used,
            DeviceUpdate::new().remove_peer_by_key(&a.public_key.0),
            &format!(
                "removing peer {} from {name} in {}",
                a.public_key,
                ctx.ns_label()
            ),
        )?;
    }
    Outcome::object(
        present,
        "peer",
        PeerJson {
            interface: name.clone(),
            public_key: a.public_key.to_string(),
            endpoint: None,
            allowed_ips: None,
            persistent_keepalive: None,
            preshared_key: None,
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints() {
        let e: Endpoint = "[2001:db8::1]:51820".parse().unwrap();
        assert_eq!(e.resolve().unwrap(), "[2001:db8::1]:51820".parse().unwrap());
        assert!("192.0.2.1:51820".parse::<Endpoint>().is_ok());
        assert!("vpn.example.org:51820".parse::<Endpoint>().is_ok());
        assert!("2001:db8::1:51820".parse::<Endpoint>().is_err());
        assert!("192.0.2.1".parse::<Endpoint>().is_err());
        assert!("192.0.2.1:70000".parse::<Endpoint>().is_err());
        assert!("bad host:1".parse::<Endpoint>().is_err());
    }

    #[test]
    fn allowed_ips() {
        let a: AllowedIps = "10.0.0.1/24, 2001:db8::/64,10.0.0.0/24".parse().unwrap();
        assert_eq!(a.0.len(), 2);
        assert!("".parse::<AllowedIps>().is_err());
        assert!(",".parse::<AllowedIps>().is_err());
        assert!("10.0.0.0/33".parse::<AllowedIps>().is_err());
    }
}
