//! One module per object; the link and address plumbing they share lives here.

use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressMessage};
use netlink_packet_route::link::{InfoKind, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder};

use common::link::{delete_link_if_exists, set_up, LinkExt};
use common::types::IfName;
use common::{Context, Error, Result};

pub mod addr;
pub mod bridge;
pub mod dummy;
pub mod exec;
pub mod link;
pub mod netns;
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
