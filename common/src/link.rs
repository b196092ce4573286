//! Links, the same way in every tool: what a link message says about its link
//! (`link.kind()`, `link.master()`, `link.mtu()`, `link.is_up()`, `link.name()`), and the two
//! changes every tool makes to a link ([`delete_link_if_exists`], [`set_up`]).

use netlink_packet_route::link::{InfoKind, LinkAttribute, LinkFlags, LinkInfo, LinkMessage};
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
    }
}
