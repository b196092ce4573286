//! Links, the same way in every tool: what a link message says about its link
//! (`link.kind()`, `link.master()`, `link.mtu()`, `link.is_up()`, `link.name()`,
//! `link.operstate()`, `link.carrier()`, `link.mac()`, `link.link_index()`,
//! `link.link_netnsid()`, `link.ipv6()`), and the two
//! changes every tool makes to a link ([`delete_link_if_exists`], [`set_up`]).

use netlink_packet_route::link::{
    AfSpecInet6, AfSpecUnspec, InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage, State,
};
use rtnetlink::{Handle, LinkUnspec};

use crate::error::{Context, Error, Result};

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
    /// The operational state (IFLA_OPERSTATE, RFC 2863) in lower case: `up`, `down`,
    /// `lowerlayerdown`, `dormant`, `notpresent`, `testing`, `unknown` (`ip` prints them in
    /// upper case), or the number for a state this crate does not know.
    fn operstate(&self) -> Option<String>;
    /// Whether the link has carrier (IFLA_CARRIER); a veth has it only while both ends are up.
    fn carrier(&self) -> Option<bool>;
    /// The hardware address (IFLA_ADDRESS) as `ip link` prints it: lowercase hex pairs joined
    /// by `:`; None for a device without one (a tun, a wireguard interface).
    fn mac(&self) -> Option<String>;
    /// The ifindex of the link this one is tied to (IFLA_LINK, `ip`'s `link_index`): a veth's
    /// peer, a vlan's or macvlan's lower device. It counts in the namespace
    /// [`LinkExt::link_netnsid`] names, if there is one.
    fn link_index(&self) -> Option<u32>;
    /// The id, as seen from the link's own namespace, of the namespace holding the link of
    /// [`LinkExt::link_index`] when that is another one (IFLA_LINK_NETNSID, `ip`'s
    /// `link_netnsid`).
    fn link_netnsid(&self) -> Option<i32>;
    /// Whether the link takes IPv6: its `net.ipv6.conf.NAME.disable_ipv6` is 0, as the IPv6
    /// settings the kernel reports with every link say (IFLA_AF_SPEC, AF_INET6,
    /// IFLA_INET6_CONF). None when it reports none: a kernel without IPv6, or a link without
    /// (an MTU below IPv6's 1,280).
    fn ipv6(&self) -> Option<bool>;
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

    fn operstate(&self) -> Option<String> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::OperState(s) => Some(match s {
                State::Unknown => "unknown".to_string(),
                State::NotPresent => "notpresent".into(),
                State::Down => "down".into(),
                State::LowerLayerDown => "lowerlayerdown".into(),
                State::Testing => "testing".into(),
                State::Dormant => "dormant".into(),
                State::Up => "up".into(),
                State::Other(n) => n.to_string(),
                other => format!("{other:?}").to_lowercase(),
            }),
            _ => None,
        })
    }

    fn carrier(&self) -> Option<bool> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::Carrier(c) => Some(*c != 0),
            _ => None,
        })
    }

    fn mac(&self) -> Option<String> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::Address(bytes) if !bytes.is_empty() => Some(
                bytes
                    .iter()
                    .map(|b| format!("{b:02x}"))
                    .collect::<Vec<_>>()
                    .join(":"),
            ),
            _ => None,
        })
    }

    fn link_index(&self) -> Option<u32> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::Link(i) => Some(*i),
            _ => None,
        })
    }

    fn link_netnsid(&self) -> Option<i32> {
        self.attributes.iter().find_map(|a| match a {
            LinkAttribute::LinkNetNsId(n) => Some(*n),
            _ => None,
        })
    }

    fn ipv6(&self) -> Option<bool> {
        let inet6 = self.attributes.iter().find_map(|a| match a {
            LinkAttribute::AfSpecUnspec(families) => families.iter().find_map(|f| match f {
                AfSpecUnspec::Inet6(settings) => Some(settings),
                _ => None,
            }),
            _ => None,
        })?;
        inet6.iter().find_map(|s| match s {
            AfSpecInet6::DevConf(conf) => Some(conf.disable_ipv6 == 0),
            _ => None,
        })
    }
}

/// Deletes link `index` (`ip link del`): `Ok(true)` if it went, `Ok(false)` if it was gone
/// already (ENOENT, ENODEV, ESRCH: another process was quicker). `what` names the attempt and
/// the object for the error, e.g. "deleting link v0 in namespace c1".
pub async fn delete_link_if_exists(
    handle: &Handle,
    index: u32,
    what: impl FnOnce() -> String,
) -> Result<bool> {
    match handle.link().del(index).execute().await {
        Ok(()) => Ok(true),
        Err(e) if crate::nl::is_absent(&e) => Ok(false),
        Err(e) => Err(Error::caused(what(), e)),
    }
}

/// Brings link `index` up or down (`ip link set up|down`); `what` names the attempt and the
/// object for the error, e.g. "bringing up veth peer p0 in namespace c1".
pub async fn set_up(
    handle: &Handle,
    index: u32,
    up: bool,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let b = LinkUnspec::new_with_index(index);
    let msg = if up { b.up() } else { b.down() }.build();
    handle.link().set(msg).execute().await.with_context(what)
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
        assert_eq!(msg.operstate(), None);
        assert_eq!(msg.carrier(), None);
        assert_eq!(msg.mac(), None);
        assert_eq!(msg.link_index(), None);
        assert_eq!(msg.link_netnsid(), None);
        assert_eq!(msg.ipv6(), None);
    }

    #[test]
    fn reads_whether_ipv6_is_on() {
        use netlink_packet_route::link::Inet6DevConf;
        let with = |disable_ipv6| {
            let mut conf = Inet6DevConf::default();
            conf.disable_ipv6 = disable_ipv6;
            link(vec![LinkAttribute::AfSpecUnspec(vec![
                AfSpecUnspec::Inet6(vec![AfSpecInet6::DevConf(conf)]),
            ])])
        };
        assert_eq!(with(0).ipv6(), Some(true));
        assert_eq!(with(1).ipv6(), Some(false));
        // (IPv4's settings only: the kernel has no IPv6 for the link)
        let v4 = link(vec![LinkAttribute::AfSpecUnspec(vec![AfSpecUnspec::Inet(
            vec![],
        )])]);
        assert_eq!(v4.ipv6(), None);
    }

    #[test]
    fn reads_state_carrier_mac_and_peer() {
        let msg = link(vec![
            LinkAttribute::OperState(State::LowerLayerDown),
            LinkAttribute::Carrier(0),
            LinkAttribute::Address(vec![0x02, 0xab, 0, 0, 0x0f, 0xff]),
            LinkAttribute::Link(9),
            LinkAttribute::LinkNetNsId(3),
        ]);
        assert_eq!(msg.operstate().as_deref(), Some("lowerlayerdown"));
        assert_eq!(msg.carrier(), Some(false));
        assert_eq!(msg.mac().as_deref(), Some("02:ab:00:00:0f:ff"));
        assert_eq!(msg.link_index(), Some(9));
        assert_eq!(msg.link_netnsid(), Some(3));
        let tun = link(vec![
            LinkAttribute::OperState(State::Other(42)),
            LinkAttribute::Address(vec![]),
        ]);
        assert_eq!(tun.operstate().as_deref(), Some("42"));
        assert_eq!(tun.mac(), None, "an empty IFLA_ADDRESS is no MAC");
    }
}
