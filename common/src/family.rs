//! IPv4 or IPv6, for objects whose family cannot always be told from their addresses.

use std::net::IpAddr;

use netlink_packet_route::AddressFamily;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Family {
    V4,
    V6,
}

impl Family {
    pub fn of(addr: IpAddr) -> Family {
        match addr {
            IpAddr::V4(_) => Family::V4,
            IpAddr::V6(_) => Family::V6,
        }
    }

    /// For messages: `IPv4` or `IPv6`.
    pub fn label(self) -> &'static str {
        match self {
            Family::V4 => "IPv4",
            Family::V6 => "IPv6",
        }
    }

    /// iproute2's name (`ip -j` prints it): `inet` or `inet6`.
    pub fn inet_name(self) -> &'static str {
        match self {
            Family::V4 => "inet",
            Family::V6 => "inet6",
        }
    }

    /// nftables' name for a table family: `ip` or `ip6`.
    pub fn nft_name(self) -> &'static str {
        match self {
            Family::V4 => "ip",
            Family::V6 => "ip6",
        }
    }

    pub fn netlink(self) -> AddressFamily {
        match self {
            Family::V4 => AddressFamily::Inet,
            Family::V6 => AddressFamily::Inet6,
        }
    }

    pub fn from_netlink(af: AddressFamily) -> Option<Family> {
        match af {
            AddressFamily::Inet => Some(Family::V4),
            AddressFamily::Inet6 => Some(Family::V6),
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Family;
    use netlink_packet_route::AddressFamily;

    #[test]
    fn of_and_names() {
        let v4 = Family::of("192.0.2.1".parse().unwrap());
        let v6 = Family::of("2001:db8::1".parse().unwrap());
        assert_eq!((v4, v6), (Family::V4, Family::V6));
        assert_eq!([v4.label(), v6.label()], ["IPv4", "IPv6"]);
        assert_eq!([v4.inet_name(), v6.inet_name()], ["inet", "inet6"]);
        assert_eq!([v4.nft_name(), v6.nft_name()], ["ip", "ip6"]);
    }

    #[test]
    fn netlink_round_trip() {
        for f in [Family::V4, Family::V6] {
            assert_eq!(Family::from_netlink(f.netlink()), Some(f));
        }
        assert_eq!(Family::from_netlink(AddressFamily::Bridge), None);
    }
}
