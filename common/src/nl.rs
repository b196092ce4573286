//! rtnetlink plumbing shared by the tools: a connection in the current namespace, link lookup,
//! and the errno checks that make add/delete idempotent.

use futures::TryStreamExt;
use netlink_packet_route::link::{LinkAttribute, LinkMessage};
use rtnetlink::Handle;

use crate::error::{Context, Error, Result};

/// Opens a netlink connection in the calling thread's namespace; its driver runs on the
/// current runtime until the handle is dropped. Call it inside a runtime (`Ctx::netlink` does).
pub fn connect() -> Result<Handle> {
    let (conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
    tokio::spawn(conn);
    Ok(handle)
}

/// The errno of a netlink error reply (positive, e.g. `libc::EEXIST`).
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(msg) => msg.code.map(|c| -c.get()),
        _ => None,
    }
}

/// True for the "it is not there" family of errors (ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL).
pub fn is_absent(e: &rtnetlink::Error) -> bool {
    matches!(
        errno(e),
        Some(libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL)
    )
}

/// Looks a link up by name; `Ok(None)` when there is none.
pub async fn find_link(handle: &Handle, name: &str) -> Result<Option<LinkMessage>> {
    let mut stream = handle.link().get().match_name(name.to_string()).execute();
    match stream.try_next().await {
        Ok(msg) => Ok(msg),
        Err(e) if is_absent(&e) => Ok(None),
        Err(e) => Err(Error::caused(format!("looking up link {name}"), e)),
    }
}

/// Looks a link up by name; a missing link is an error naming it and the namespace.
pub async fn link(handle: &Handle, name: &str, ns_label: &str) -> Result<LinkMessage> {
    find_link(handle, name)
        .await?
        .ok_or_else(|| Error::failed(format!("device '{name}' not found in {ns_label}")))
}

/// The index of the named link, or an error naming it.
pub async fn link_index(handle: &Handle, name: &str, ns_label: &str) -> Result<u32> {
    Ok(link(handle, name, ns_label).await?.header.index)
}

/// All links in the namespace.
pub async fn links(handle: &Handle) -> Result<Vec<LinkMessage>> {
    handle
        .link()
        .get()
        .execute()
        .try_collect()
        .await
        .context("listing links")
}

/// The name attribute of a link message.
pub fn link_name(msg: &LinkMessage) -> Option<&str> {
    msg.attributes.iter().find_map(|a| match a {
        LinkAttribute::IfName(n) => Some(n.as_str()),
        _ => None,
    })
}
