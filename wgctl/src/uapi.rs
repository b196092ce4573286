//! Reading a userspace interface over its UAPI socket (`get=1`, the cross-platform
//! configuration protocol of wireguard.com/xplatform), in the dialects of both
//! implementations wgctl starts:
//!
//! - wireguard-go answers `private_key` and gives `last_handshake_time_sec` as UNIX time;
//!   wgd answers in the same dialect;
//! - boringtun answers `own_public_key` (never the private key) and gives
//!   `last_handshake_time_sec` as the time *since* the handshake.
//!
//! (wireguard-control's reader knows only the first, and prints what it does not know on our
//! stdout.) Writing (`set=1`) is the same for both and stays with wireguard-control.

use std::io::{BufRead, BufReader, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, SystemTime};

use common::types::IfName;
use common::{Context, Error, Result};
use wireguard_control::{AllowedIp, Key, PeerInfo};

use crate::backend::{uapi_path, DeviceInfo};
use crate::userspace::Userspace;

/// The configuration and peer statistics of userspace interface `name`, served by `dialect`.
pub fn get(name: &IfName, dialect: Userspace) -> Result<DeviceInfo> {
    let path = uapi_path(name.as_str());
    let what = || {
        format!(
            "reading the configuration of {name} over {}",
            path.display()
        )
    };
    let mut sock = UnixStream::connect(&path).with_context(what)?;
    sock.set_read_timeout(Some(Duration::from_secs(10)))
        .with_context(what)?;
    sock.write_all(b"get=1\n\n").with_context(what)?;
    let mut dev = DeviceInfo {
        public_key: None,
        private_key: None,
        fwmark: None,
        listen_port: None,
        peers: Vec::new(),
    };
    let now = SystemTime::now();
    let mut handshake_secs = None;
    for line in BufReader::new(sock).lines() {
        let line = line.with_context(what)?;
        if line.is_empty() {
            break;
        }
        let (key, value) = line
            .split_once('=')
            .ok_or_else(|| Error::failed(format!("{}: line '{line}'", what())))?;
        let bad = || Error::failed(format!("{}: bad value in '{key}=…'", what()));
        let peer = dev.peers.last_mut();
        match (key, peer) {
            ("errno", _) if value == "0" => break,
            ("errno", _) => {
                return Err(Error::failed(format!("{}: errno={value}", what())));
            }
            ("private_key", None) => {
                let k = Key::from_hex(value).map_err(|_| bad())?;
                dev.public_key = Some(k.get_public());
                dev.private_key = Some(k);
            }
            ("own_public_key", None) => {
                dev.public_key = Some(Key::from_hex(value).map_err(|_| bad())?)
            }
            ("listen_port", None) => dev.listen_port = Some(value.parse().map_err(|_| bad())?),
            ("fwmark", None) => dev.fwmark = Some(value.parse().map_err(|_| bad())?),
            ("public_key", _) => {
                let k = Key::from_hex(value).map_err(|_| bad())?;
                dev.peers.push(PeerInfo::from_public_key(k));
            }
            ("preshared_key", Some(p)) => {
                p.config.preshared_key = Some(Key::from_hex(value).map_err(|_| bad())?);
            }
            ("endpoint", Some(p)) => p.config.endpoint = Some(value.parse().map_err(|_| bad())?),
            ("persistent_keepalive_interval", Some(p)) => {
                p.config.persistent_keepalive_interval = Some(value.parse().map_err(|_| bad())?);
            }
            ("allowed_ip", Some(p)) => {
                let ip: AllowedIp = value.parse().map_err(|_| bad())?;
                p.config.allowed_ips.push(ip);
            }
            ("rx_bytes", Some(p)) => p.stats.rx_bytes = value.parse().map_err(|_| bad())?,
            ("tx_bytes", Some(p)) => p.stats.tx_bytes = value.parse().map_err(|_| bad())?,
            ("last_handshake_time_sec", Some(p)) => {
                let secs: u64 = value.parse().map_err(|_| bad())?;
                handshake_secs = Some(secs);
                p.stats.last_handshake_time = handshake(dialect, secs, 0, now);
            }
            ("last_handshake_time_nsec", Some(p)) => {
                let nanos: u32 = value.parse().map_err(|_| bad())?;
                let secs = handshake_secs.take().unwrap_or(0);
                p.stats.last_handshake_time = handshake(dialect, secs, nanos, now);
            }
            // protocol_version, and whatever a newer implementation adds.
            _ => {}
        }
    }
    Ok(dev)
}

/// The time of a peer's last handshake from the UAPI's seconds and nanoseconds (None: never).
fn handshake(dialect: Userspace, secs: u64, nanos: u32, now: SystemTime) -> Option<SystemTime> {
    let d = Duration::new(secs, nanos);
    match dialect {
        Userspace::WireguardGo | Userspace::Wgd => {
            (!d.is_zero()).then(|| SystemTime::UNIX_EPOCH + d)
        }
        Userspace::Boringtun => now.checked_sub(d),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn handshake_time_in_both_dialects() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000_000);
        assert_eq!(handshake(Userspace::WireguardGo, 0, 0, now), None);
        assert_eq!(
            handshake(Userspace::WireguardGo, 999_990, 0, now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(999_990))
        );
        assert_eq!(
            handshake(Userspace::Boringtun, 10, 0, now),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(999_990))
        );
    }
}
