//! An interface's allowed IPs: which peer a prefix belongs to (each prefix to one peer, as
//! WireGuard's cryptokey routing has it), and the longest match for an address. A lookup costs
//! one hash probe per prefix length in use, so it does not grow with the number of peers or
//! prefixes (a hub interface has one peer and one or two lengths).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnet::IpNet;

/// Prefixes of one family, by length (longest first when walked in reverse), then by network.
#[derive(Debug)]
struct Family<T> {
    by_len: BTreeMap<u8, HashMap<u128, T>>,
}

impl<T> Default for Family<T> {
    fn default() -> Self {
        Family {
            by_len: BTreeMap::new(),
        }
    }
}

fn bits(addr: IpAddr) -> (u128, u8) {
    match addr {
        IpAddr::V4(a) => (u128::from(u32::from(a)), 32),
        IpAddr::V6(a) => (u128::from(a), 128),
    }
}

fn masked(value: u128, len: u8, width: u8) -> u128 {
    if len == 0 {
        0
    } else {
        value & (u128::MAX << (width - len))
    }
}

impl<T: Copy + PartialEq> Family<T> {
    fn insert(&mut self, key: u128, len: u8, value: T) -> Option<T> {
        self.by_len.entry(len).or_default().insert(key, value)
    }

    fn remove(&mut self, key: u128, len: u8) -> Option<T> {
        let table = self.by_len.get_mut(&len)?;
        let old = table.remove(&key);
        if table.is_empty() {
            self.by_len.remove(&len);
        }
        old
    }

    fn lookup(&self, value: u128, width: u8) -> Option<T> {
        self.by_len
            .iter()
            .rev()
            .find_map(|(len, table)| table.get(&masked(value, *len, width)).copied())
    }
}

/// Allowed IPs of one interface: prefix → peer `T`.
#[derive(Debug)]
pub struct AllowedIps<T> {
    v4: Family<T>,
    v6: Family<T>,
}

impl<T> Default for AllowedIps<T> {
    fn default() -> Self {
        AllowedIps {
            v4: Family::default(),
            v6: Family::default(),
        }
    }
}

impl<T: Copy + PartialEq> AllowedIps<T> {
    fn family(&mut self, net: &IpNet) -> (&mut Family<T>, u128, u8) {
        let (value, width) = bits(net.network());
        let len = net.prefix_len();
        let key = masked(value, len, width);
        match net {
            IpNet::V4(_) => (&mut self.v4, key, len),
            IpNet::V6(_) => (&mut self.v6, key, len),
        }
    }

    /// Gives `net` to `peer`; returns the peer that had it.
    pub fn insert(&mut self, net: &IpNet, peer: T) -> Option<T> {
        let (family, key, len) = self.family(net);
        family.insert(key, len, peer)
    }

    /// Takes `net` away from whoever had it.
    pub fn remove(&mut self, net: &IpNet) -> Option<T> {
        let (family, key, len) = self.family(net);
        family.remove(key, len)
    }

    /// The peer whose longest prefix holds `addr`.
    pub fn lookup(&self, addr: IpAddr) -> Option<T> {
        let (value, width) = bits(addr);
        match addr {
            IpAddr::V4(_) => self.v4.lookup(value, width),
            IpAddr::V6(_) => self.v6.lookup(value, width),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn the_longest_prefix_wins_in_both_families() {
        let mut t = AllowedIps::default();
        t.insert(&net("0.0.0.0/0"), 1);
        t.insert(&net("10.0.0.0/8"), 2);
        t.insert(&net("10.1.2.3/32"), 3);
        t.insert(&net("fd00::/8"), 4);
        t.insert(&net("fd00::1/128"), 5);
        assert_eq!(t.lookup(ip("192.0.2.1")), Some(1));
        assert_eq!(t.lookup(ip("10.200.0.1")), Some(2));
        assert_eq!(t.lookup(ip("10.1.2.3")), Some(3));
        assert_eq!(t.lookup(ip("fd00::2")), Some(4));
        assert_eq!(t.lookup(ip("fd00::1")), Some(5));
        assert_eq!(t.lookup(ip("2001:db8::1")), None);
    }

    #[test]
    fn host_bits_are_ignored_and_a_prefix_has_one_owner() {
        let mut t = AllowedIps::default();
        assert_eq!(t.insert(&net("192.168.1.77/24"), 1), None);
        assert_eq!(t.lookup(ip("192.168.1.10")), Some(1));
        assert_eq!(t.insert(&net("192.168.1.0/24"), 2), Some(1));
        assert_eq!(t.lookup(ip("192.168.1.10")), Some(2));
        assert_eq!(t.remove(&net("192.168.1.0/24")), Some(2));
        assert_eq!(t.lookup(ip("192.168.1.10")), None);
        assert_eq!(t.remove(&net("192.168.1.0/24")), None);
    }
}
