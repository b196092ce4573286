//! What a link message says about its link, read the same way by every tool:
//! `link.kind()`, `link.master()`, `link.mtu()`, `link.is_up()`, `link.name()`.

use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};

/// Readers for the attributes of an RTM_NEWLINK message.
pub trait LinkExt {
    /// The interface name (IFLA_IFNAME).
    fn name(&self) -> Option<&str>;
    /// The kind as `ip -d link` names it (`veth`, `bridge`, `vrf`, ...); None for plain
    /// devices such as `lo`.
    fn kind(&self) -> Option<&InfoKind>;
    /// The master (controller) ifindex, if enslaved (IFLA_MASTER).
    fn master(&self) -> Option<u32>;
    /// The MTU (IFLA_MTU).
    fn mtu(&self) -> Option<u32>;
    /// Administratively up (IFF_UP), what `ip link set up` changes.
    fn is_up(&self) -> bool;
}

impl LinkExt for LinkMessage {
    fn name(&self) -> Option<&str> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::IfName(n) => Some(n.as_str()),
            _ => None,
        })
    }

    fn kind(&self) -> Option<&InfoKind> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
                LinkInfo::Kind(k) => Some(k),
                _ => None,
            }),
            _ => None,
        })
    }

    fn master(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::Controller(i) if *i != 0 => Some(*i),
            _ => None,
        })
    }

    fn mtu(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::Mtu(m) => Some(*m),
            _ => None,
        })
    }

    fn is_up(&self) -> bool {
        self.header.flags.contains(LinkFlags::Up)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn link(attributes: Vec<LinkAttribute>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.attributes = attributes;
        msg
    }

    #[test]
    fn reads_each_attribute() {
        let mut msg = link(vec![
            LinkAttribute::IfName("br0".into()),
            LinkAttribute::Mtu(1400),
            LinkAttribute::Controller(7),
            LinkAttribute::LinkInfo(vec![LinkInfo::Kind(InfoKind::Bridge)]),
        ]);
        assert_eq!(msg.name(), Some("br0"));
        assert_eq!(msg.kind(), Some(&InfoKind::Bridge));
        assert_eq!(
            msg.kind().map(ToString::to_string).as_deref(),
            Some("bridge")
        );
        assert_eq!(msg.master(), Some(7));
        assert_eq!(msg.mtu(), Some(1400));
        assert!(!msg.is_up());
        msg.header.flags = LinkFlags::Up;
        assert!(msg.is_up());
    }

    #[test]
    fn absent_attributes() {
        let msg = link(vec![LinkAttribute::Controller(0)]);
        assert_eq!(msg.name(), None);
        assert_eq!(msg.kind(), None);
        assert_eq!(msg.master(), None, "IFLA_MASTER 0 is no master");
        assert_eq!(msg.mtu(), None);
    }
}
