//! The cross-platform configuration protocol (wireguard.com/xplatform) that `wg`, wgctl and
//! wireguard-control speak on `/var/run/wireguard/NAME.sock`: reading a `get=1` or `set=1`
//! request, and writing the answer in wireguard-go's dialect (`private_key`, handshake times as
//! UNIX time), so a wgd interface reads exactly like a wireguard-go one.
//!
//! A `set` is parsed whole before any of it is applied: a bad line changes nothing (wireguard-go
//! applies the lines before it).

use std::fmt::Write as _;
use std::net::SocketAddr;
use std::time::{SystemTime, UNIX_EPOCH};

use ipnet::IpNet;

pub type Key = [u8; 32];

/// errno values the answer carries (`errno=N`), as wireguard-go's.
pub const EINVAL: i32 = libc::EINVAL;

#[derive(Debug, PartialEq)]
pub enum Request {
    Get,
    Set(Set),
}

/// A `set=1` request: None leaves a setting as it is.
#[derive(Debug, Default, PartialEq)]
pub struct Set {
    /// Some(None): the key is removed (all zeroes).
    pub private_key: Option<Option<Key>>,
    pub listen_port: Option<u16>,
    /// 0 removes the mark.
    pub fwmark: Option<u32>,
    pub replace_peers: bool,
    pub peers: Vec<PeerSet>,
}

#[derive(Debug, PartialEq)]
pub struct PeerSet {
    pub public_key: Key,
    pub remove: bool,
    pub update_only: bool,
    /// Some(None): the preshared key is removed (all zeroes).
    pub preshared_key: Option<Option<Key>>,
    pub endpoint: Option<SocketAddr>,
    pub persistent_keepalive: Option<u16>,
    pub replace_allowed_ips: bool,
    pub allowed_ips: Vec<IpNet>,
}

impl PeerSet {
    fn new(public_key: Key) -> PeerSet {
        PeerSet {
            public_key,
            remove: false,
            update_only: false,
            preshared_key: None,
            endpoint: None,
            persistent_keepalive: None,
            replace_allowed_ips: false,
            allowed_ips: Vec::new(),
        }
    }
}

/// A request that cannot be read: the line, for the log.
#[derive(Debug, PartialEq)]
pub struct Invalid(pub String);

fn hex_key(value: &str) -> Option<Key> {
    if value.len() != 64 {
        return None;
    }
    let mut key = [0u8; 32];
    for (i, byte) in key.iter_mut().enumerate() {
        *byte = u8::from_str_radix(value.get(2 * i..2 * i + 2)?, 16).ok()?;
    }
    Some(key)
}

/// A key, or None for all zeroes (which removes one).
fn key_or_none(value: &str) -> Option<Option<Key>> {
    hex_key(value).map(|k| (k != [0; 32]).then_some(k))
}

fn boolean(value: &str) -> Option<bool> {
    match value {
        "true" => Some(true),
        "false" => Some(false),
        _ => None,
    }
}

/// Reads the request's lines (without the blank line that ends it).
pub fn parse(text: &str) -> Result<Request, Invalid> {
    let mut lines = text.lines();
    match lines.next() {
        Some("get=1") => return Ok(Request::Get),
        Some("set=1") => {}
        other => return Err(Invalid(format!("'{}'", other.unwrap_or_default()))),
    }
    let mut set = Set::default();
    for line in lines.filter(|l| !l.is_empty()) {
        let bad = || Invalid(format!("'{line}'"));
        let (key, value) = line.split_once('=').ok_or_else(bad)?;
        match (key, set.peers.last_mut()) {
            ("public_key", _) => set
                .peers
                .push(PeerSet::new(hex_key(value).ok_or_else(bad)?)),
            ("private_key", None) => set.private_key = Some(key_or_none(value).ok_or_else(bad)?),
            ("listen_port", None) => set.listen_port = Some(value.parse().map_err(|_| bad())?),
            ("fwmark", None) => set.fwmark = Some(value.parse().map_err(|_| bad())?),
            ("replace_peers", None) => set.replace_peers = boolean(value).ok_or_else(bad)?,
            ("remove", Some(p)) => p.remove = boolean(value).ok_or_else(bad)?,
            ("update_only", Some(p)) => p.update_only = boolean(value).ok_or_else(bad)?,
            ("preshared_key", Some(p)) => {
                p.preshared_key = Some(key_or_none(value).ok_or_else(bad)?)
            }
            ("endpoint", Some(p)) => p.endpoint = Some(value.parse().map_err(|_| bad())?),
            ("persistent_keepalive_interval", Some(p)) => {
                p.persistent_keepalive = Some(value.parse().map_err(|_| bad())?)
            }
            ("replace_allowed_ips", Some(p)) => {
                p.replace_allowed_ips = boolean(value).ok_or_else(bad)?
            }
            ("allowed_ip", Some(p)) => p.allowed_ips.push(value.parse().map_err(|_| bad())?),
            ("protocol_version", Some(_)) if value == "1" => {}
            _ => return Err(bad()),
        }
    }
    Ok(Request::Set(set))
}

/// What a `get=1` answers.
#[derive(Debug, Default)]
pub struct DeviceView {
    pub private_key: Option<Key>,
    pub listen_port: u16,
    pub fwmark: u32,
    pub peers: Vec<PeerView>,
}

#[derive(Debug)]
pub struct PeerView {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub endpoint: Option<SocketAddr>,
    pub last_handshake: Option<SystemTime>,
    pub tx_bytes: u64,
    pub rx_bytes: u64,
    pub persistent_keepalive: u16,
    pub allowed_ips: Vec<IpNet>,
}

fn hex(key: &Key) -> String {
    key.iter().fold(String::with_capacity(64), |mut s, b| {
        let _ = write!(s, "{b:02x}");
        s
    })
}

/// The answer to `get=1`, `errno=0` and the blank line included.
pub fn format_get(dev: &DeviceView) -> String {
    let mut out = String::new();
    if let Some(k) = &dev.private_key {
        let _ = writeln!(out, "private_key={}", hex(k));
    }
    if dev.listen_port != 0 {
        let _ = writeln!(out, "listen_port={}", dev.listen_port);
    }
    if dev.fwmark != 0 {
        let _ = writeln!(out, "fwmark={}", dev.fwmark);
    }
    for p in &dev.peers {
        let _ = writeln!(out, "public_key={}", hex(&p.public_key));
        if let Some(k) = &p.preshared_key {
            let _ = writeln!(out, "preshared_key={}", hex(k));
        }
        let _ = writeln!(out, "protocol_version=1");
        if let Some(e) = p.endpoint {
            let _ = writeln!(out, "endpoint={e}");
        }
        let since = p
            .last_handshake
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .unwrap_or_default();
        let _ = writeln!(out, "last_handshake_time_sec={}", since.as_secs());
        let _ = writeln!(out, "last_handshake_time_nsec={}", since.subsec_nanos());
        let _ = writeln!(out, "tx_bytes={}", p.tx_bytes);
        let _ = writeln!(out, "rx_bytes={}", p.rx_bytes);
        let _ = writeln!(
            out,
            "persistent_keepalive_interval={}",
            p.persistent_keepalive
        );
        for net in &p.allowed_ips {
            let _ = writeln!(out, "allowed_ip={net}");
        }
    }
    out.push_str("errno=0\n\n");
    out
}

/// The answer to a `set=1`, or to a request that failed.
pub fn format_errno(errno: i32) -> String {
    format!("errno={errno}\n\n")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    const K1: &str = "0101010101010101010101010101010101010101010101010101010101010101";
    const K2: &str = "0202020202020202020202020202020202020202020202020202020202020202";
    const ZERO: &str = "0000000000000000000000000000000000000000000000000000000000000000";

    #[test]
    fn a_set_as_wg_sends_it() {
        let text = format!(
            "set=1\nprivate_key={K1}\nlisten_port=51820\nfwmark=0\nreplace_peers=true\n\
             public_key={K2}\npreshared_key={ZERO}\nendpoint=[fd00::1]:51821\n\
             persistent_keepalive_interval=25\nreplace_allowed_ips=true\n\
             allowed_ip=192.168.1.0/24\nallowed_ip=fd01::/64\nprotocol_version=1\n"
        );
        let Ok(Request::Set(set)) = parse(&text) else {
            panic!("not read")
        };
        assert_eq!(set.private_key, Some(Some([1; 32])));
        assert_eq!(set.listen_port, Some(51820));
        assert_eq!(set.fwmark, Some(0));
        assert!(set.replace_peers);
        let p = &set.peers[0];
        assert_eq!(p.public_key, [2; 32]);
        assert_eq!(p.preshared_key, Some(None));
        assert_eq!(p.endpoint, Some("[fd00::1]:51821".parse().unwrap()));
        assert_eq!(p.persistent_keepalive, Some(25));
        assert!(p.replace_allowed_ips);
        assert_eq!(p.allowed_ips.len(), 2);
    }

    #[test]
    fn a_bad_line_is_named_and_nothing_is_read() {
        for (text, line) in [
            ("set=1\nlisten_port=70000\n", "'listen_port=70000'"),
            ("set=1\nprivate_key=abc\n", "'private_key=abc'"),
            ("set=1\nremove=true\n", "'remove=true'"),
            (
                &format!("set=1\npublic_key={K1}\nlisten_port=1\n") as &str,
                "'listen_port=1'",
            ),
            (
                &format!("set=1\npublic_key={K1}\nallowed_ip=10.0.0.0/33\n"),
                "'allowed_ip=10.0.0.0/33'",
            ),
            ("set=1\nfrobnicate=1\n", "'frobnicate=1'"),
            ("put=1\n", "'put=1'"),
        ] {
            assert_eq!(parse(text), Err(Invalid(line.into())), "{text}");
        }
    }

    #[test]
    fn get_answers_in_wireguard_gos_dialect() {
        let dev = DeviceView {
            private_key: Some([1; 32]),
            listen_port: 51820,
            fwmark: 0,
            peers: vec![PeerView {
                public_key: [2; 32],
                preshared_key: None,
                endpoint: Some("192.0.2.1:51821".parse().unwrap()),
                last_handshake: Some(UNIX_EPOCH + Duration::new(1_700_000_000, 5)),
                tx_bytes: 10,
                rx_bytes: 20,
                persistent_keepalive: 25,
                allowed_ips: vec!["192.168.1.0/24".parse().unwrap()],
            }],
        };
        assert_eq!(
            format_get(&dev),
            format!(
                "private_key={K1}\nlisten_port=51820\npublic_key={K2}\nprotocol_version=1\n\
                 endpoint=192.0.2.1:51821\nlast_handshake_time_sec=1700000000\n\
                 last_handshake_time_nsec=5\ntx_bytes=10\nrx_bytes=20\n\
                 persistent_keepalive_interval=25\nallowed_ip=192.168.1.0/24\nerrno=0\n\n"
            )
        );
    }
}
