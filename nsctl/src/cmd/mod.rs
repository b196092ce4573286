//! One module per object; the link and address plumbing they share lives here.

use std::net::{IpAddr, Ipv6Addr};

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{
    InfoBridgePort, InfoKind, InfoPortData, InfoPortKind, LinkAttribute, LinkInfo, LinkMessage,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, LinkBridgePort, LinkMessageBuilder};

use common::family::Family;
use common::link::{delete_link_if_exists, set_up, LinkExt};
use common::types::IfName;
use common::{Context, Error, Result};

pub mod addr;
pub mod bridge;
pub mod dummy;
pub mod exec;
pub mod link;
pub mod netns;
pub mod sock;
pub mod sysctl;
pub mod veth;
pub mod vlan;

/// A link's kind as the messages print it: "veth", "bridge", or "device" for a link without a
/// kind (such as `lo`).
pub fn kind_label(msg: &LinkMessage) -> String {
    msg.kind()
        .map_or_else(|| "device".into(), ToString::to_string)
}

/// Link `index` in the handle's namespace, if there is one (a failed lookup reads as none).
pub async fn link_at(handle: &Handle, index: u32) -> Option<LinkMessage> {
    let mut found = handle.link().get().match_index(index).execute();
    found.try_next().await.ok().flatten()
}

/// The administrative state as the JSON prints it (`state`): "up" or "down".
pub fn state(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
}

/// What an `add` of a `kind` link finds under `name`: the link when it is of that kind; None
/// when there is none, or when there was one of another kind and `replace` deleted it (a dry
/// run only says so). Another kind without `replace` is refused: "bridge br0 already exists in
/// namespace c1 but is a veth".
pub async fn existing(
    handle: &Handle,
    name: &IfName,
    kind: InfoKind,
    here: &str,
    replace: bool,
    check: bool,
) -> Result<Option<LinkMessage>> {
    match common::nl::find_link(handle, name.as_str()).await? {
        Some(l) if l.kind() == Some(&kind) => Ok(Some(l)),
        Some(l) if !replace => Err(Error::failed(format!(
            "{kind} {name} already exists in {here} but is a {} (--replace deletes it)",
            kind_label(&l)
        ))),
        Some(_) => {
            if !check {
                link::del(handle, name, here, false).await?;
            }
            Ok(None)
        }
        None => Ok(None),
    }
}

/// Brings existing link `l` up when `up` asks for it and it is down (`ip link set NAME up`):
/// true if that is a change (made unless `check`).
pub async fn up_if_asked(
    handle: &Handle,
    l: &LinkMessage,
    up: bool,
    check: bool,
    what: impl FnOnce() -> String,
) -> Result<bool> {
    if !up || l.is_up() {
        return Ok(false);
    }
    if !check {
        set_up(handle, l.header.index, true, what).await?;
    }
    Ok(true)
}

/// Creates a link in one RTM_NEWLINK from builder `b`, up if `up` (else down, like `ip link
/// add`). `what` names the attempt for the error and the `-v` log: "creating dummy d0 in
/// namespace c1".
pub async fn create_link<T>(
    handle: &Handle,
    b: LinkMessageBuilder<T>,
    up: bool,
    what: impl Fn() -> String,
) -> Result<()> {
    let b = if up { b.up() } else { b };
    handle
        .link()
        .add(b.build())
        .execute()
        .await
        .with_context(&what)?;
    common::vlog!(1, "done: {}", what());
    Ok(())
}

/// The CIDR of an address message (IFA_LOCAL, else IFA_ADDRESS, with the prefix length).
pub fn addr_cidr(msg: &AddressMessage) -> Option<IpNet> {
    let pick = |local: bool| {
        msg.attributes.iter().find_map(|a| match a {
            AddressAttribute::Local(ip) if local => Some(*ip),
            AddressAttribute::Address(ip) if !local => Some(*ip),
            _ => None,
        })
    };
    let ip = pick(true).or_else(|| pick(false))?;
    IpNet::new(ip, msg.header.prefix_len).ok()
}

/// Every address in the namespace, in kernel order; or, given a link (INDEX), its addresses of
/// FAMILY (of both, when None), which the kernel picks out (a strict dump,
/// NETLINK_GET_STRICT_CHK): a hub's center holds an address for every peer on one link and a
/// link-local one on each of a thousand tunnels, and reading them all to add one made the add
/// grow with the fleet.
pub async fn addresses(
    handle: &Handle,
    index: Option<u32>,
    family: Option<Family>,
) -> Result<Vec<AddressMessage>> {
    let req = match index {
        None => handle.address().get(),
        Some(i) => {
            let mut req = common::nl::connect_filtered()
                .context("listing addresses")?
                .address()
                .get()
                .set_link_index_filter(i);
            let header = &mut req.message_mut().header;
            header.index = i;
            if let Some(f) = family {
                header.family = f.netlink();
            }
            req
        }
    };
    req.execute()
        .try_collect()
        .await
        .context("listing addresses")
}

/// The IPv6 address IP on link INDEX as the kernel holds it, asked for alone (RTM_GETADDR
/// without a dump; a link holds an IPv6 address once, whatever its prefix length). None: it
/// has not. (IPv4 has no such request: [`addresses`].)
pub async fn address6(handle: &Handle, index: u32, ip: Ipv6Addr) -> Result<Option<AddressMessage>> {
    let mut msg = AddressMessage::default();
    msg.header.family = Family::V6.netlink();
    msg.header.index = index;
    msg.attributes
        .push(AddressAttribute::Address(IpAddr::V6(ip)));
    match common::nl::ask(handle, RouteNetlinkMessage::GetAddress(msg), 0).await {
        Ok(answers) => Ok(answers.into_iter().find_map(|a| match a {
            RouteNetlinkMessage::NewAddress(a) => Some(a),
            _ => None,
        })),
        Err(e) if common::nl::is_absent(&e) => Ok(None),
        Err(e) => Err(Error::caused(format!("looking up address {ip}"), e)),
    }
}

/// Sends one RTM_SETLINK built from `msg`, naming the attempt in the error.
pub async fn set_link(
    handle: &Handle,
    msg: LinkMessage,
    what: impl FnOnce() -> String,
) -> Result<()> {
    handle.link().set(msg).execute().await.with_context(what)
}

/// For a bridge port: whether it is isolated (IFLA_BRPORT_ISOLATED in the port data of its
/// IFLA_LINKINFO, `isolated on` in `ip -d link`); None for a link that is not a bridge port (no
/// master, or a master of another kind).
pub fn bridge_port_isolated(msg: &LinkMessage) -> Option<bool> {
    let infos = msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => Some(infos),
        _ => None,
    })?;
    if !infos
        .iter()
        .any(|i| matches!(i, LinkInfo::PortKind(InfoPortKind::Bridge)))
    {
        return None;
    }
    let isolated = infos.iter().find_map(|i| match i {
        LinkInfo::PortData(InfoPortData::BridgePort(port)) => port.iter().find_map(|p| match p {
            InfoBridgePort::Isolated(on) => Some(*on),
            _ => None,
        }),
        _ => None,
    });
    // A kernel that does not report the flag has no port isolation: no port is isolated.
    Some(isolated.unwrap_or(false))
}

/// Makes bridge port `index` isolated or not (`ip link set NAME type bridge_slave isolated
/// on|off`): IFLA_LINKINFO { IFLA_INFO_PORT_KIND "bridge", IFLA_INFO_PORT_DATA
/// { IFLA_BRPORT_ISOLATED } } in an RTM_NEWLINK for the index. The kernel reads port data only
/// in RTM_NEWLINK (not RTM_SETLINK), and hands it to the master the port has when the message
/// arrives, before any IFLA_MASTER in the same message: a new master needs a message of its own
/// first.
pub async fn set_isolated(
    handle: &Handle,
    index: u32,
    on: bool,
    what: impl FnOnce() -> String,
) -> Result<()> {
    let msg = LinkBridgePort::new(index).isolated(on).build();
    handle.link().change(msg).execute().await.with_context(what)
}

/// Sends `undo`, the RTM_SETLINK that puts back what an earlier step of a command changed on a
/// link, after a later step failed; its own failure is only logged (the later one is reported).
pub async fn undo_set(handle: &Handle, undo: LinkMessage, what: &str) {
    common::vlog!(1, "undoing: {what}");
    if let Err(e) = set_link(handle, undo, || format!("undoing: {what}")).await {
        let cause = std::error::Error::source(&e).map(ToString::to_string);
        eprintln!("nsctl: warning: {e}: {}", cause.unwrap_or_default());
    }
}

/// Deletes link `index_or_name`; used to undo a creation, so its own failure is only logged.
pub async fn undo_create(handle: &Handle, index_or_name: &str) {
    common::vlog!(1, "undoing: deleting link {index_or_name}");
    if let Ok(Some(l)) = common::nl::find_link(handle, index_or_name).await {
        let what = || format!("undoing: deleting link {index_or_name}");
        if let Err(e) = delete_link_if_exists(handle, l.header.index, what).await {
            let cause = std::error::Error::source(&e).map(ToString::to_string);
            eprintln!("nsctl: warning: {e}: {}", cause.unwrap_or_default());
        }
    }
}

/// Gives the calling thread a mount namespace of its own whose mounts do not propagate back
/// (`/` made a slave), so it can mount a /sys for its network namespace that nobody else sees.
pub fn private_mounts() -> Result<()> {
    use nix::mount::{mount, MsFlags};
    use nix::sched::{unshare, CloneFlags};
    unshare(CloneFlags::CLONE_NEWNS).context("creating a private mount namespace")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_SLAVE | MsFlags::MS_REC,
        None::<&str>,
    )
    .context("making / a slave mount")
}

#[cfg(test)]
mod tests {
    use netlink_packet_route::link::{
        InfoBridgePort, InfoPortData, InfoPortKind, InfoVrfPort, LinkAttribute, LinkInfo,
        LinkMessage,
    };

    use super::bridge_port_isolated;

    fn link(infos: Vec<LinkInfo>) -> LinkMessage {
        let mut msg = LinkMessage::default();
        msg.attributes = vec![LinkAttribute::LinkInfo(infos)];
        msg
    }

    #[test]
    fn isolation_is_read_from_a_bridge_ports_linkinfo_only() {
        let port = |data: Vec<InfoBridgePort>| {
            link(vec![
                LinkInfo::PortKind(InfoPortKind::Bridge),
                LinkInfo::PortData(InfoPortData::BridgePort(data)),
            ])
        };
        let on = port(vec![
            InfoBridgePort::Learning(true),
            InfoBridgePort::Isolated(true),
        ]);
        assert_eq!(bridge_port_isolated(&on), Some(true));
        let off = port(vec![InfoBridgePort::Isolated(false)]);
        assert_eq!(bridge_port_isolated(&off), Some(false));
        // A kernel without port isolation does not report it: not isolated.
        assert_eq!(bridge_port_isolated(&port(vec![])), Some(false));
        let vrf_port = link(vec![
            LinkInfo::PortKind(InfoPortKind::Vrf),
            LinkInfo::PortData(InfoPortData::VrfPort(vec![InfoVrfPort::TableId(10)])),
        ]);
        assert_eq!(bridge_port_isolated(&vrf_port), None);
        assert_eq!(bridge_port_isolated(&LinkMessage::default()), None);
    }
}
