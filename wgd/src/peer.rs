//! One peer of an interface: its configuration, where it was last heard from, and its tunnel
//! (boringtun's `noise::Tunn`: handshakes, sessions, timers; no I/O).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::SystemTime;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::noise::Tunn;
use boringtun::x25519::{PublicKey, StaticSecret};
use ipnet::IpNet;

use crate::uapi::{Key, PeerView};
use crate::udp::Source;

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
            carried_tx: 0,
            carried_rx: 0,
        }
    }

    /// Makes its tunnel anew with the interface's key `own` (none: no tunnel), keeping the
    /// transfer counted so far. Sessions are lost: the next packet starts a handshake.
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
                (self.persistent_keepalive != 0).then_some(self.persistent_keepalive),
                self.index,
                Some(Arc::clone(limiter)),
            )
        });
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
