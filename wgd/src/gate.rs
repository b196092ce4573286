//! The handshake gate of one interface: every handshake message's MAC is checked against the
//! interface's public key, and the messages are counted against a rate limit per second, above
//! which the sender must prove its address with a cookie (WireGuard's DoS defence).

use std::sync::Arc;

use boringtun::noise::rate_limiter::RateLimiter;
use boringtun::x25519::PublicKey;

/// Handshake messages an interface takes per second before it asks for cookies (boringtun's
/// own device uses the same).
pub const HANDSHAKE_RATE_LIMIT: u64 = 100;

/// Two limiters with the interface's key. `limiter` sees each datagram first and counts it;
/// `verifier`, without a limit, is the one the peers' tunnels get: boringtun's `decapsulate`
/// checks every datagram again with the limiter its tunnel holds, and with the same limiter a
/// handshake counted twice, so that cookies were asked for at half the rate.
pub struct Gate {
    pub limiter: Arc<RateLimiter>,
    pub verifier: Arc<RateLimiter>,
}

impl Gate {
    pub fn new(public: &PublicKey) -> Gate {
        Gate {
            limiter: Arc::new(RateLimiter::new(public, HANDSHAKE_RATE_LIMIT)),
            verifier: Arc::new(RateLimiter::new(public, u64::MAX)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use boringtun::noise::{Packet, Tunn, TunnResult};
    use boringtun::x25519::StaticSecret;
    use std::net::{IpAddr, Ipv4Addr};

    /// A handshake initiation to PUBLIC, as a peer sends it.
    fn initiation(public: PublicKey) -> Vec<u8> {
        let mut tunn = Tunn::new(StaticSecret::from([7; 32]), public, None, None, 1, None);
        let mut out = vec![0; 256];
        match tunn.format_handshake_initiation(&mut out, false) {
            TunnResult::WriteToNetwork(d) => d.to_vec(),
            _ => panic!("no handshake initiation"),
        }
    }

    #[test]
    fn a_handshake_counts_once_against_the_limit() {
        let public = PublicKey::from(&StaticSecret::from([3; 32]));
        let gate = Gate::new(&public);
        let datagram = initiation(public);
        let from = Some(IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)));
        let mut out = vec![0; 256];
        // as Iface::inbound and then the tunnel's decapsulate see each one
        for i in 0..HANDSHAKE_RATE_LIMIT {
            for limiter in [&gate.limiter, &gate.verifier] {
                assert!(
                    matches!(
                        limiter.verify_packet(from, &datagram, &mut out),
                        Ok(Packet::HandshakeInit(_))
                    ),
                    "handshake {i} of the second was refused"
                );
            }
        }
        // above the limit: a cookie reply (the datagram carries no valid mac2)
        assert!(matches!(
            gate.limiter.verify_packet(from, &datagram, &mut out),
            Err(TunnResult::WriteToNetwork(_))
        ));
    }

    #[test]
    fn a_message_with_a_wrong_mac_is_refused_by_both() {
        let public = PublicKey::from(&StaticSecret::from([3; 32]));
        let other = PublicKey::from(&StaticSecret::from([4; 32]));
        let gate = Gate::new(&public);
        let datagram = initiation(other);
        let mut out = vec![0; 256];
        for limiter in [&gate.limiter, &gate.verifier] {
            assert!(limiter.verify_packet(None, &datagram, &mut out).is_err());
        }
    }
}
