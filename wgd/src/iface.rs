//! One userspace WireGuard interface: its TUN device, its UDP sockets, its UAPI socket, its key
//! and its peers, and what it does with a packet from either side and on each timer tick.

use std::collections::HashMap;
use std::io::ErrorKind;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::OwnedFd;
use std::os::unix::fs::MetadataExt;
use std::os::unix::net::UnixListener;
use std::path::PathBuf;
use std::time::SystemTime;

use boringtun::noise::handshake::parse_handshake_anon;
use boringtun::noise::{Packet, Tunn, TunnResult};
use boringtun::x25519::{PublicKey, StaticSecret};

use crate::allowed::AllowedIps;
use crate::gate::Gate;
use crate::gro::Batch;
use crate::gso::Sends;
use crate::peer::{Endpoint, Peer};
use crate::tun::Tun;
use crate::uapi::{DeviceView, Key, PeerSet, Set};
use crate::udp::{Source, Udp};

/// Where userspace WireGuard implementations keep their UAPI sockets (`wg` looks there).
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// A cookie reply's message type: the one answer to a datagram that proves nothing of its
/// sender, so it never moves a peer's endpoint.
const COOKIE_REPLY: u8 = 3;

/// The interface's own key pair.
struct Keys {
    secret: StaticSecret,
    public: PublicKey,
}

pub struct Iface {
    pub name: String,
    pub tun: Tun,
    /// The birthplace: where its UDP sockets are bound.
    netns: OwnedFd,
    pub uapi: UnixListener,
    /// The UAPI socket file this interface made (device, inode): removed on close only if it
    /// is still that one.
    pub uapi_file: (u64, u64),
    pub udp: Udp,
    fwmark: u32,
    keys: Option<Keys>,
    gate: Gate,
    peers: HashMap<u32, Peer>,
    by_key: HashMap<Key, u32>,
    allowed: AllowedIps<u32>,
    /// Peers get increasing indices from here: `get=1` lists them in the order they came.
    first_index: u32,
    next_index: u32,
}

pub fn uapi_path(name: &str) -> PathBuf {
    PathBuf::from(UAPI_DIR).join(format!("{name}.sock"))
}

/// Whether interface `name`'s UAPI socket file is still `file` (device, inode).
pub fn uapi_file_is(name: &str, file: (u64, u64)) -> bool {
    path_is(&uapi_path(name), file)
}

/// Whether `path` is still the file `id` (device, inode): not removed, nor replaced.
pub fn path_is(path: &std::path::Path, id: (u64, u64)) -> bool {
    std::fs::metadata(path).is_ok_and(|m| (m.dev(), m.ino()) == id)
}

impl Iface {
    /// Interface `name` on TUN device `tun`, its sockets bound to `port` in `netns`, its UAPI
    /// socket made (a stale one replaced; a live one is another program's: refused).
    pub fn open(name: &str, tun: OwnedFd, netns: OwnedFd, port: u16) -> Result<Iface, String> {
        let udp = Udp::bind(&netns, port, 0)
            .map_err(|e| format!("binding UDP port {port} for {name}: {}", e.desc()))?;
        std::fs::create_dir_all(UAPI_DIR).map_err(|e| format!("creating {UAPI_DIR}: {e}"))?;
        let path = uapi_path(name);
        if std::os::unix::net::UnixStream::connect(&path).is_ok() {
            return Err(format!(
                "{} is live: another process serves {name}",
                path.display()
            ));
        }
        match std::fs::remove_file(&path) {
            Err(e) if e.kind() != ErrorKind::NotFound => {
                return Err(format!("removing the stale {}: {e}", path.display()))
            }
            _ => {}
        }
        let uapi = UnixListener::bind(&path)
            .map_err(|e| format!("listening on {}: {e}", path.display()))?;
        uapi.set_nonblocking(true)
            .map_err(|e| format!("listening on {}: {e}", path.display()))?;
        let meta = std::fs::metadata(&path).map_err(|e| format!("{}: {e}", path.display()))?;
        let tun = Tun::new(tun).map_err(|e| format!("TUN device of {name}: {}", e.desc()))?;
        let first_index = std::process::id() & 0xff_ffff;
        Ok(Iface {
            name: name.to_string(),
            tun,
            netns,
            uapi,
            uapi_file: (meta.dev(), meta.ino()),
            udp,
            fwmark: 0,
            keys: None,
            gate: Gate::new(&PublicKey::from([0; 32])),
            peers: HashMap::new(),
            by_key: HashMap::new(),
            allowed: AllowedIps::default(),
            first_index,
            next_index: first_index,
        })
    }

    /// Closes the TUN device (so its link goes), the sockets and the namespaces, then removes
    /// its UAPI socket if the file is still the one it made: once the file is gone, all of it
    /// is.
    pub fn close(self) {
        let (name, uapi_file) = (self.name.clone(), self.uapi_file);
        drop(self);
        if uapi_file_is(&name, uapi_file) {
            let _ = std::fs::remove_file(uapi_path(&name));
        }
    }

    /// A packet the interface's TUN device gave: sealed for the peer whose allowed IPs hold
    /// its destination, and put with the datagrams waiting in `sends` (those sent first if it
    /// may not go with them), or queued behind a handshake. One for nobody is dropped.
    pub fn outbound(&mut self, packet: &[u8], out: &mut [u8], sends: &mut Sends) {
        let Some(index) = Tunn::dst_address(packet).and_then(|dst| self.allowed.lookup(dst)) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&index).filter(|p| p.endpoint.is_some()) else {
            return;
        };
        let Some(tunn) = peer.tunn.as_mut() else {
            return;
        };
        if let TunnResult::WriteToNetwork(datagram) = tunn.encapsulate(packet, out) {
            if !sends.takes(index, datagram.len()) {
                self.send_waiting(sends);
            }
            sends.push(index, datagram);
        }
    }

    /// Sends what waits in `sends`, in one system call.
    pub fn send_waiting(&mut self, sends: &mut Sends) {
        let (udp, peers) = (&self.udp, &mut self.peers);
        sends.flush(|index, bytes, segment| {
            if let Some(peer) = peers.get_mut(&index) {
                peer.send_segments(udp, bytes, segment);
            }
        });
    }

    /// A datagram from the network: handed to the peer it is for (by the receiver index it
    /// carries, or for a handshake initiation by the key it proves), whose tunnel opens it. An
    /// opened packet goes into `batch`, for the TUN device, only if its source is in that peer's
    /// allowed IPs.
    /// An authenticated datagram moves the peer's endpoint to its sender (roaming).
    pub fn inbound(
        &mut self,
        datagram: &[u8],
        from: SocketAddr,
        source: Option<Source>,
        out: &mut [u8],
        batch: &mut Batch,
    ) {
        let index = match self
            .gate
            .limiter
            .verify_packet(Some(from.ip()), datagram, out)
        {
            Ok(Packet::HandshakeInit(init)) => {
                let Some(keys) = &self.keys else { return };
                let Ok(half) = parse_handshake_anon(&keys.secret, &keys.public, &init) else {
                    return;
                };
                match self.by_key.get(&half.peer_static_public) {
                    Some(i) => *i,
                    None => return,
                }
            }
            Ok(Packet::HandshakeResponse(p)) => p.receiver_idx >> 8,
            Ok(Packet::PacketCookieReply(p)) => p.receiver_idx >> 8,
            Ok(Packet::PacketData(p)) => p.receiver_idx >> 8,
            Err(TunnResult::WriteToNetwork(cookie)) => {
                let _ = self.udp.send(cookie, None, from, source);
                return;
            }
            Err(_) => return,
        };
        let is_data = datagram.first() == Some(&4);
        let Some(peer) = self.peers.get_mut(&index) else {
            return;
        };
        let Some(tunn) = peer.tunn.as_mut() else {
            return;
        };
        let heard = Endpoint { addr: from, source };
        match tunn.decapsulate(Some(from.ip()), datagram, out) {
            TunnResult::WriteToNetwork(reply) if reply.first() == Some(&COOKIE_REPLY) => {
                let _ = self.udp.send(reply, None, from, source);
            }
            TunnResult::WriteToNetwork(reply) => {
                peer.endpoint = Some(heard);
                peer.send(&self.udp, reply);
                peer.send_queued(&self.udp, out);
            }
            TunnResult::WriteToTunnelV4(packet, src) => {
                peer.endpoint = Some(heard);
                if self.allowed.lookup(IpAddr::V4(src)) == Some(index) {
                    batch.push(packet);
                }
            }
            TunnResult::WriteToTunnelV6(packet, src) => {
                peer.endpoint = Some(heard);
                if self.allowed.lookup(IpAddr::V6(src)) == Some(index) {
                    batch.push(packet);
                }
            }
            // A keepalive.
            TunnResult::Done if is_data => peer.endpoint = Some(heard),
            TunnResult::Done | TunnResult::Err(_) => {}
        }
    }

    /// The timer tick: each peer's tunnel decides on handshakes, keepalives and expiry.
    /// `second` also resets the handshake rate limit.
    pub fn tick(&mut self, out: &mut [u8], second: bool) {
        if second {
            self.gate.limiter.reset_count();
        }
        for peer in self.peers.values_mut().filter(|p| p.endpoint.is_some()) {
            let Some(tunn) = peer.tunn.as_mut() else {
                continue;
            };
            if let TunnResult::WriteToNetwork(datagram) = tunn.update_timers(out) {
                peer.send(&self.udp, datagram);
            }
            peer.keepalive_due(&self.udp, out, false);
        }
    }

    /// What `get=1` answers.
    pub fn view(&self) -> DeviceView {
        let now = SystemTime::now();
        let mut peers: Vec<&Peer> = self.peers.values().collect();
        peers.sort_by_key(|p| p.index.wrapping_sub(self.first_index) & 0xff_ffff);
        DeviceView {
            private_key: self.keys.as_ref().map(|k| k.secret.to_bytes()),
            listen_port: self.udp.port,
            fwmark: self.fwmark,
            peers: peers.into_iter().map(|p| p.view(now)).collect(),
        }
    }

    /// Applies a `set=1`. Returns the errno to answer and whether the sockets were replaced
    /// (the caller watches the new ones). Nothing of the request is applied when the new
    /// listen port cannot be bound.
    pub fn apply(&mut self, set: Set, out: &mut [u8]) -> Result<bool, i32> {
        let mut rebound = false;
        let fwmark = set.fwmark.unwrap_or(self.fwmark);
        if let Some(port) = set.listen_port.filter(|p| *p != self.udp.port || *p == 0) {
            self.udp = Udp::bind(&self.netns, port, fwmark).map_err(|e| e as i32)?;
            rebound = true;
        } else if fwmark != self.fwmark {
            self.udp.set_mark(fwmark).map_err(|e| e as i32)?;
        }
        self.fwmark = fwmark;
        if let Some(key) = set.private_key {
            self.set_key(key);
        }
        if set.replace_peers {
            for key in self.by_key.keys().copied().collect::<Vec<_>>() {
                self.remove_peer(&key);
            }
        }
        for p in set.peers {
            self.apply_peer(p, out);
        }
        Ok(rebound)
    }

    fn set_key(&mut self, key: Option<Key>) {
        self.keys = key.map(|k| {
            let secret = StaticSecret::from(k);
            let public = PublicKey::from(&secret);
            Keys { secret, public }
        });
        let public = self
            .keys
            .as_ref()
            .map_or(PublicKey::from([0; 32]), |k| k.public);
        self.gate = Gate::new(&public);
        let secret = self.keys.as_ref().map(|k| &k.secret);
        for peer in self.peers.values_mut() {
            peer.rebuild(secret, &self.gate.verifier);
        }
    }

    fn remove_peer(&mut self, key: &Key) {
        let Some(index) = self.by_key.remove(key) else {
            return;
        };
        if let Some(peer) = self.peers.remove(&index) {
            for net in &peer.allowed_ips {
                self.allowed.remove(net);
            }
        }
    }

    /// A 24-bit index no peer of this interface has.
    fn free_index(&mut self) -> u32 {
        loop {
            self.next_index = (self.next_index + 1) & 0xff_ffff;
            if !self.peers.contains_key(&self.next_index) {
                return self.next_index;
            }
        }
    }

    fn apply_peer(&mut self, set: PeerSet, out: &mut [u8]) {
        if set.remove {
            return self.remove_peer(&set.public_key);
        }
        let index = match self.by_key.get(&set.public_key) {
            Some(i) => *i,
            None if set.update_only => return,
            None => {
                let index = self.free_index();
                self.peers.insert(index, Peer::new(set.public_key, index));
                self.by_key.insert(set.public_key, index);
                index
            }
        };
        let peer = self.peers.get_mut(&index).expect("indexed above");
        let mut rebuild = peer.tunn.is_none();
        if let Some(psk) = set.preshared_key.filter(|k| *k != peer.preshared_key) {
            peer.preshared_key = psk;
            rebuild = true;
        }
        let mut keepalive_now = false;
        if let Some(k) = set
            .persistent_keepalive
            .filter(|k| *k != peer.persistent_keepalive)
        {
            keepalive_now = k != 0;
            peer.persistent_keepalive = k;
        }
        if let Some(addr) = set.endpoint {
            peer.endpoint = Some(Endpoint { addr, source: None });
        }
        if set.replace_allowed_ips {
            for net in std::mem::take(&mut peer.allowed_ips) {
                self.allowed.remove(&net);
            }
        }
        for net in set.allowed_ips.iter().map(|n| n.trunc()) {
            let peer = self.peers.get_mut(&index).expect("indexed above");
            if peer.allowed_ips.contains(&net) {
                continue;
            }
            peer.allowed_ips.push(net);
            if let Some(owner) = self.allowed.insert(&net, index).filter(|o| *o != index) {
                if let Some(other) = self.peers.get_mut(&owner) {
                    other.allowed_ips.retain(|n| *n != net);
                }
            }
        }
        let peer = self.peers.get_mut(&index).expect("indexed above");
        if rebuild {
            peer.rebuild(self.keys.as_ref().map(|k| &k.secret), &self.gate.verifier);
        }
        // As wireguard-go and the kernel do: a keepalive set on a peer with an endpoint goes
        // out now (starting a handshake), not one interval later.
        peer.keepalive_due(&self.udp, out, keepalive_now);
    }
}
