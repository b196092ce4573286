//! One module per object; the link and address plumbing they share lives here.

use std::collections::BTreeMap;

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::Handle;
use serde::Serialize;

use common::link::{delete_link_if_exists, LinkExt};
use common::{Context, Result};

pub mod addr;
pub mod bridge;
pub mod exec;
pub mod link;
pub mod netns;
pub mod sysctl;
pub mod veth;

/// A link's kind as the JSON and messages print it: "veth", "bridge", or "device" for a link
/// without a kind (such as `lo`).
pub fn kind_label(msg: &LinkMessage) -> String {
    msg.kind()
        .map_or_else(|| "device".into(), ToString::to_string)
}

/// For a veth: the peer's ifindex (in the peer's namespace).
pub fn peer_index(msg: &LinkMessage) -> Option<u32> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::Link(i) => Some(*i),
        _ => None,
    })
}

/// The namespace id (as seen from here) of the namespace holding the link's peer, if elsewhere.
pub fn peer_nsid(msg: &LinkMessage) -> Option<i32> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkNetNsId(n) => Some(*n),
        _ => None,
    })
}

/// True when the link's peer lives in another namespace (the kernel reports its nsid).
pub fn peer_elsewhere(msg: &LinkMessage) -> bool {
    peer_nsid(msg).is_some()
}

/// Link `index` in the handle's namespace, if there is one (a failed lookup reads as none).
pub async fn link_at(handle: &Handle, index: u32) -> Option<LinkMessage> {
    let mut found = handle.link().get().match_index(index).execute();
    found.try_next().await.ok().flatten()
}

/// One link as `link list` prints it.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub name: String,
    pub index: u32,
    pub kind: Option<String>,
    pub state: &'static str,
    pub master: Option<String>,
    pub mtu: u32,
    /// The MAC (lowercase, like `ip link`), null for a device without one.
    pub address: Option<String>,
    pub addresses: Vec<String>,
}

pub fn state(up: bool) -> &'static str {
    if up {
        "up"
    } else {
        "down"
    }
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

/// Every address in the namespace (optionally of one link), in kernel order.
pub async fn addresses(handle: &Handle, index: Option<u32>) -> Result<Vec<AddressMessage>> {
    let mut req = handle.address().get();
    if let Some(i) = index {
        req = req.set_link_index_filter(i);
    }
    req.execute()
        .try_collect()
        .await
        .context("listing addresses")
}

/// All links with their addresses, as `link list` prints them.
pub async fn link_views(handle: &Handle) -> Result<Vec<LinkView>> {
    let links = common::nl::links(handle).await?;
    let mut by_index: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    for a in addresses(handle, None).await? {
        if let Some(c) = addr_cidr(&a) {
            by_index
                .entry(a.header.index)
                .or_default()
                .push(c.to_string());
        }
    }
    let name = |l: &LinkMessage| l.name().unwrap_or_default().to_string();
    let names: BTreeMap<u32, String> = links.iter().map(|l| (l.header.index, name(l))).collect();
    Ok(links
        .iter()
        .map(|l| LinkView {
            name: name(l),
            index: l.header.index,
            kind: l.kind().map(ToString::to_string),
            state: state(l.is_up()),
            master: l
                .master()
                .map(|m| names.get(&m).cloned().unwrap_or_else(|| m.to_string())),
            mtu: l.mtu().unwrap_or(0),
            address: link::hw_address(l),
            addresses: by_index.remove(&l.header.index).unwrap_or_default(),
        })
        .collect())
}

/// Sends one RTM_SETLINK built from `msg`, naming the attempt in the error.
pub async fn set_link(
    handle: &Handle,
    msg: LinkMessage,
    what: impl FnOnce() -> String,
) -> Result<()> {
    handle.link().set(msg).execute().await.with_context(what)
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
