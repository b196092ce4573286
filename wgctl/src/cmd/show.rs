//! `show [IFACE]`: the WireGuard interfaces living in the current namespace, read back from
//! the kernel (generic netlink) or wireguard-go (UAPI), like `wg show`. Never a private or
//! preshared key: only whether a peer has one.

use std::time::{Duration, UNIX_EPOCH};

use clap::Args;
use common::types::IfName;
use common::{vlog, Ctx, Outcome, Result};
use serde::Serialize;
use wireguard_control::PeerInfo;

use crate::backend::{self, Backend, DeviceInfo, Link};
use crate::cmd::peer::interface_here;
use crate::keys;
use crate::userspace::Userspace;

#[derive(Args, Debug)]
pub struct Show {
    /// Only this interface (default: every WireGuard interface in the namespace)
    #[arg(add = backend::completer())]
    pub iface: Option<IfName>,
}

#[derive(Serialize)]
struct IfaceJson {
    name: String,
    backend: Backend,
    /// The userspace implementation serving it; null for the kernel backend or a process
    /// wgctl does not know.
    userspace: Option<Userspace>,
    public_key: Option<String>,
    listen_port: Option<u16>,
    fwmark: Option<u32>,
    mtu: Option<u32>,
    /// The administrative state, `"up"` or `"down"` (docs/json.md).
    state: &'static str,
    /// Whether wireguard-go's netlink listeners carry wgctl's filters now, so that it wakes
    /// only for its own link's events (docs/wgctl.md); null for the kernel backend, another
    /// userspace implementation, or a process whose sockets cannot be read.
    listener_filtered: Option<bool>,
    peers: Vec<PeerJson>,
}

#[derive(Serialize)]
struct PeerJson {
    public_key: String,
    endpoint: Option<String>,
    allowed_ips: Vec<String>,
    latest_handshake: Option<u64>,
    rx_bytes: u64,
    tx_bytes: u64,
    persistent_keepalive: Option<u16>,
    /// Whether the peer has a preshared key (never the key itself).
    preshared_key: bool,
}

pub fn run(ctx: &Ctx, args: Show) -> Result<Outcome> {
    let links: Vec<(String, Link)> = match &args.iface {
        Some(name) => vec![(name.to_string(), interface_here(ctx, name)?)],
        None => backend::list_here()?,
    };
    let mut interfaces = Vec::new();
    for (name, link) in links {
        let ifname: IfName = name.parse().map_err(common::Error::failed)?;
        // (a userspace interface's process is found once, for its state and its listeners)
        let (dev, userspace, filtered) = match link.backend {
            Backend::Kernel => (backend::read_device(&ifname, link.backend)?, None, None),
            Backend::Userspace => match read_userspace(&ifname)? {
                Some(r) => (r.dev, r.userspace, r.filtered),
                None => continue,
            },
        };
        interfaces.push(iface_json(name, &link, &dev, userspace, filtered));
    }
    Outcome::listing("interfaces", interfaces)
}

/// What `show` reads of a userspace interface.
struct UserspaceRead {
    dev: DeviceInfo,
    userspace: Option<Userspace>,
    filtered: Option<bool>,
}

/// A userspace interface's state, the implementation serving it and whether its listeners are
/// filtered; None when what served it went away while it was read (a process dying: its
/// socket still queued our connection, then reset it). Its link goes with it, and a link
/// without a live UAPI socket is no userspace interface: it is left out, as it would have
/// been a moment later.
fn read_userspace(name: &IfName) -> Result<Option<UserspaceRead>> {
    let read = backend::served(name).and_then(|served| {
        Ok(UserspaceRead {
            dev: served.read(name)?,
            userspace: served.userspace,
            filtered: served.listener_filtered(),
        })
    });
    match read {
        Ok(read) => Ok(Some(read)),
        Err(e) if backend::uapi_gone_within(name, Duration::from_secs(1)) => {
            vlog!(
                1,
                "{name}: its userspace server went away while it was read ({e})"
            );
            Ok(None)
        }
        Err(e) => Err(e),
    }
}

fn iface_json(
    name: String,
    link: &Link,
    dev: &DeviceInfo,
    userspace: Option<Userspace>,
    listener_filtered: Option<bool>,
) -> IfaceJson {
    IfaceJson {
        name,
        backend: link.backend,
        userspace,
        public_key: dev.public_key.as_ref().map(|k| k.to_base64()),
        listen_port: dev.listen_port.filter(|p| *p != 0),
        fwmark: dev.fwmark.filter(|m| *m != 0),
        mtu: link.mtu,
        state: if link.up { "up" } else { "down" },
        listener_filtered,
        peers: dev.peers.iter().map(peer_json).collect(),
    }
}

fn peer_json(p: &PeerInfo) -> PeerJson {
    PeerJson {
        public_key: p.config.public_key.to_base64(),
        endpoint: p.config.endpoint.map(|e| e.to_string()),
        allowed_ips: p
            .config
            .allowed_ips
            .iter()
            .map(|a| format!("{}/{}", a.address, a.cidr))
            .collect(),
        latest_handshake: p
            .stats
            .last_handshake_time
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map(|d| d.as_secs())
            .filter(|s| *s != 0),
        rx_bytes: p.stats.rx_bytes,
        tx_bytes: p.stats.tx_bytes,
        persistent_keepalive: p.config.persistent_keepalive_interval.filter(|k| *k != 0),
        preshared_key: keys::non_zero(p.config.preshared_key.clone()).is_some(),
    }
}
