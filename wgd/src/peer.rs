//! One peer of an interface: its configuration, where it was last heard from, its tunnel
//! (boringtun's `noise::Tunn`: handshakes, sessions, timers; no I/O), and sending to it.
//!
//! The persistent keepalive is kept here, not in the tunnel: boringtun fixes a tunnel's
//! keepalive when it makes it, and a tunnel made anew loses its sessions and any handshake in
//! flight (the hub's `reseed` switches a keepalive on and off again right after a handshake
//! starts). So the tunnel has none, and [`Peer::keepalive_due`] sends one when nothing went to
//! the peer for its interval, as WireGuard's persistent keepalive does.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::{Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;

use crate::uapi::{Key, PeerView};
use crate::udp::{Source, Udp};

/// Where a peer is reached, and from which local address (see [`crate::udp`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Endpoint {
    pub addr: SocketAddr,
    pub source: Option<Source>,
}

pub struct Peer {
    pub public_key: Key,
    pub preshared_key: Option<Key>,
    pub persistent_keepalive: u16,
    pub endpoint: Option<Endpoint>,
    pub allowed_ips: Vec<IpNet>,
    /// Its index among the interface's peers (24 bits): the high bits of every session index
    /// its tunnel hands out, so a datagram's receiver index names the peer.
    pub index: u32,
    /// None while the interface has no private key.
    pub tunn: Option<Tunn>,
    /// When a datagram last went to it.
    last_sent: Option<Instant>,
    /// Transfer counted by tunnels this peer had before its current one (a new preshared key
    /// or keepalive makes a new tunnel), so the counters only grow.
    carried_tx: u64,
    carried_rx: u64,
}

impl Peer {
    pub fn new(public_key: Key, index: u32) -> Peer {
        Peer {
            public_key,
            preshared_key: None,
            persistent_keepalive: 0,
            endpoint: None,
            allowed_ips: Vec::new(),
            index,
            tunn: None,
            last_sent: None,
            carried_tx: 0,
            carried_rx: 0,
        }
    }

    /// Makes its tunnel anew with the interface's key `own` (none: no tunnel), keeping the
    /// transfer counted so far. Sessions are lost: the next packet starts a handshake. (Only a
    /// new key or preshared key needs it.)
    pub fn rebuild(&mut self, own: Option<&StaticSecret>, limiter: &Arc<RateLimiter>) {
        if let Some(old) = self.tunn.take() {
            let (_, tx, rx, _, _) = old.stats();
            self.carried_tx += tx as u64;
            self.carried_rx += rx as u64;
        }
        self.tunn = own.map(|secret| {
            Tunn::new(
                secret.clone(),
                PublicKey::from(self.public_key),
                self.preshared_key,
                None,
                self.index,
                Some(Arc::clone(limiter)),
            )
        });
    }

    /// Sends `datagram` to its endpoint (if it has one).
    pub fn send(&mut self, udp: &Udp, datagram: &[u8]) {
        self.send_segments(udp, datagram, None);
    }

    /// Sends `bytes` to its endpoint (if it has one): one datagram, or with `segment` several
    /// of that size in one system call.
    pub fn send_segments(&mut self, udp: &Udp, bytes: &[u8], segment: Option<u16>) {
        if let Some(endpoint) = self.endpoint.as_mut() {
            send(udp, endpoint, bytes, segment);
            self.last_sent = Some(Instant::now());
        }
    }

    /// The packets its tunnel queued behind a handshake that just completed.
    pub fn send_queued(&mut self, udp: &Udp, out: &mut [u8]) {
        while let Some(tunn) = self.tunn.as_mut() {
            let TunnResult::WriteToNetwork(queued) = tunn.decapsulate(None, &[], out) else {
                break;
            };
            self.send(udp, queued);
        }
    }

    /// Its persistent keepalive, when nothing went to it for the interval (or `now` asks for it
    /// whatever the interval: a keepalive just switched on goes out at once, as wireguard-go
    /// and the kernel send it). Without a session, the keepalive is a handshake initiation.
    pub fn keepalive_due(&mut self, udp: &Udp, out: &mut [u8], now: bool) {
        let interval = Duration::from_secs(u64::from(self.persistent_keepalive));
        let due = self.persistent_keepalive != 0
            && self.endpoint.is_some()
            && (now || self.last_sent.is_none_or(|t| t.elapsed() >= interval));
        let Some(tunn) = self.tunn.as_mut().filter(|_| due) else {
            return;
        };
        if let TunnResult::WriteToNetwork(datagram) = tunn.encapsulate(&[], out) {
            self.send(udp, datagram);
        }
    }

    /// What `get=1` tells of it.
    pub fn view(&self, now: SystemTime) -> PeerView {
        let (since, tx, rx) = match &self.tunn {
            Some(t) => {
                let (since, tx, rx, _, _) = t.stats();
                (since, tx as u64, rx as u64)
            }
            None => (None, 0, 0),
        };
        PeerView {
            public_key: self.public_key,
            preshared_key: self.preshared_key,
            endpoint: self.endpoint.map(|e| e.addr),
            last_handshake: since.and_then(|d| now.checked_sub(d)),
            tx_bytes: self.carried_tx + tx,
            rx_bytes: self.carried_rx + rx,
            persistent_keepalive: self.persistent_keepalive,
            allowed_ips: self.allowed_ips.clone(),
        }
    }
}

/// Sends `bytes` (one datagram, or several of size `segment`) to `endpoint`, from the local
/// address the peer last wrote to. When that address or its link is gone (EINVAL,
/// EADDRNOTAVAIL, ENODEV: an address moved to the other box of a pair, a link made anew), it is
/// forgotten and the kernel picks the source; a full socket buffer only drops these datagrams,
/// as any UDP sender would.
pub fn send(udp: &Udp, endpoint: &mut Endpoint, bytes: &[u8], segment: Option<u16>) {
    use nix::errno::Errno;
    match udp.send(bytes, segment, endpoint.addr, endpoint.source) {
        Ok(()) | Err(Errno::EAGAIN | Errno::ENOBUFS | Errno::EINTR) => {}
        Err(_) if endpoint.source.is_some() => {
            endpoint.source = None;
            let _ = udp.send(bytes, segment, endpoint.addr, None);
        }
        Err(_) => {}
    }
}
