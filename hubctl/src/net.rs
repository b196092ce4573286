//! The address arithmetic of the hub: its IPv4 network (HUB_CIDR), whose hosts the peers get,
//! and its IPv6 network (HUB_CIDR6), where a peer's address is host N when its IPv4 address is
//! host N of HUB_CIDR (one allocator for both). Every text is read strictly: one spelling per
//! address, so that no duplicate check can be passed by writing an address another way.

use std::net::{Ipv4Addr, Ipv6Addr};

/// A canonical dotted quad: every octet 0..255 without leading zeros (100.64.0.010 is refused,
/// as inet_pton refuses it).
pub fn ip4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for o in &mut octets {
        let p = parts.next()?;
        let canonical = !p.is_empty()
            && p.len() <= 3
            && p.bytes().all(|b| b.is_ascii_digit())
            && (p == "0" || !p.starts_with('0'));
        if !canonical {
            return None;
        }
        *o = p.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// An IPv6 address in hex and colons only (no zone, no embedded IPv4).
pub fn ip6(text: &str) -> Option<Ipv6Addr> {
    let plain =
        (2..=39).contains(&text.len()) && text.bytes().all(|b| b.is_ascii_hexdigit() || b == b':');
    if !plain {
        return None;
    }
    text.parse().ok()
}

/// A UDP port 1..65535, written canonically (no leading zeros, no sign).
pub fn port(text: &str) -> Option<u16> {
    let canonical = !text.is_empty()
        && text.len() <= 5
        && text.bytes().all(|b| b.is_ascii_digit())
        && !text.starts_with('0');
    if canonical {
        text.parse().ok()
    } else {
        None
    }
}

/// A prefix length 1..=MAX, written canonically (no leading zero).
fn prefix_len(text: &str, max: u8) -> Option<u8> {
    let canonical = !text.is_empty() && text.len() <= 2 && !text.starts_with('0');
    let len: u8 = if canonical {
        text.parse().ok()?
    } else {
        return None;
    };
    (1..=max).contains(&len).then_some(len)
}

/// The hub's IPv4 network: its usable hosts are `first..=last`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr4 {
    pub net: u32,
    pub len: u8,
    pub first: u32,
    pub last: u32,
}

impl Cidr4 {
    /// `A.B.C.D/1..30` (host bits are ignored: the network is the address masked).
    pub fn parse(text: &str) -> Option<Cidr4> {
        let (addr, len) = text.split_once('/')?;
        let addr = u32::from(ip4(addr)?);
        let len = prefix_len(len, 30)?;
        let mask = u32::MAX << (32 - len);
        let net = addr & mask;
        Some(Cidr4 {
            net,
            len,
            first: net + 1,
            last: net + !mask - 1,
        })
    }

    /// Whether ADDR is a usable host of the network.
    pub fn holds(&self, addr: Ipv4Addr) -> bool {
        (self.first..=self.last).contains(&u32::from(addr))
    }

    /// The host number of ADDR in the network (its offset from the network address).
    pub fn host_of(&self, addr: Ipv4Addr) -> u32 {
        u32::from(addr).wrapping_sub(self.net)
    }
}

/// The hub's IPv6 network: room for a 32-bit host part (`ADDR/1..96`, host bits zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr6 {
    pub net: Ipv6Addr,
    pub len: u8,
}

impl Cidr6 {
    pub fn parse(text: &str) -> Option<Cidr6> {
        let (addr, len) = text.split_once('/')?;
        let net = ip6(addr)?;
        let len = prefix_len(len, 96)?;
        let host_bits = u128::MAX >> len;
        (u128::from(net) & host_bits == 0).then_some(Cidr6 { net, len })
    }

    /// False for what no internal network can be: link-local (fe80::/10), multicast (ff00::/8)
    /// or the unspecified address.
    pub fn usable(&self) -> bool {
        let first = self.net.segments()[0];
        first & 0xffc0 != 0xfe80 && first & 0xff00 != 0xff00 && !self.net.is_unspecified()
    }

    pub fn holds(&self, addr: Ipv6Addr) -> bool {
        let mask = u128::MAX << (128 - u32::from(self.len));
        u128::from(addr) & mask == u128::from(self.net)
    }

    /// Host N of the network.
    pub fn host(&self, n: u32) -> Ipv6Addr {
        Ipv6Addr::from(u128::from(self.net) | u128::from(n))
    }

    /// The host number of ADDR when it is one of the low 2^32 hosts of the network.
    pub fn host_of(&self, addr: Ipv6Addr) -> Option<u32> {
        let offset = u128::from(addr).checked_sub(u128::from(self.net))?;
        u32::try_from(offset).ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_have_one_spelling() {
        assert_eq!(ip4("100.64.0.7"), Some(Ipv4Addr::new(100, 64, 0, 7)));
        for bad in [
            "100.64.0.010",
            "100.64.0.01",
            "10.292.0.1",
            "1.2.3",
            "1.2.3.4.5",
            "",
            "a.b.c.d",
            "1..2.3",
        ] {
            assert_eq!(ip4(bad), None, "{bad}");
        }
        assert_eq!(port("50010"), Some(50010));
        for bad in ["050010", "0", "65536", "222222", "+5", ""] {
            assert_eq!(port(bad), None, "{bad}");
        }
        assert!(ip6("fd00::1").is_some());
        for bad in ["::ffff:1.2.3.4", "fe80::1%eth0", "1", "g::1", ":::"] {
            assert_eq!(ip6(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidr4_hosts() {
        let c = Cidr4::parse("100.64.0.0/24").unwrap();
        assert_eq!(
            (c.first, c.last, c.len),
            (
                u32::from(Ipv4Addr::new(100, 64, 0, 1)),
                u32::from(Ipv4Addr::new(100, 64, 0, 254)),
                24
            )
        );
        assert!(c.holds(Ipv4Addr::new(100, 64, 0, 254)));
        assert!(!c.holds(Ipv4Addr::new(100, 64, 0, 255)));
        assert!(!c.holds(Ipv4Addr::new(100, 64, 1, 5)));
        assert_eq!(Cidr4::parse("100.64.0.9/24").unwrap().net, c.net);
        for bad in [
            "100.64.0.0/33",
            "100.64.0.0/31",
            "100.64.0.0/0",
            "100.64.0.0/024",
            "100.64.0.0",
            "100.64.0.0/",
        ] {
            assert_eq!(Cidr4::parse(bad), None, "{bad}");
        }
    }

    #[test]
    fn cidr6_arithmetic() {
        let c = Cidr6::parse("fd00:64::/64").unwrap();
        assert_eq!(c.host(10).to_string(), "fd00:64::a");
        assert_eq!(c.host(0x1_0001).to_string(), "fd00:64::1:1");
        assert_eq!(c.host_of("fd00:64::a".parse().unwrap()), Some(10));
        assert_eq!(c.host_of("fd00:64::1:0:0".parse().unwrap()), None);
        assert!(c.holds("fd00:64::ffff:1".parse().unwrap()));
        assert!(!c.holds("fd00:65::1".parse().unwrap()));
        assert!(c.usable());
        assert_eq!(Cidr6::parse("fd00:64::1/64"), None, "host bits set");
        assert_eq!(Cidr6::parse("fd00::/97"), None, "no room for 32 host bits");
        assert!(!Cidr6::parse("fe80::/64").unwrap().usable());
        assert!(!Cidr6::parse("ff02::/64").unwrap().usable());
        assert!(!Cidr6::parse("::/64").unwrap().usable());
        let wide = Cidr6::parse("fd00::/8").unwrap();
        assert!(wide.holds("fdff::1".parse().unwrap()));
    }
}
