//! rtnetlink plumbing shared by the tools: one connection per namespace per command, link
//! lookup, and the "it is not there" check that makes a lookup or delete idempotent.

use std::cell::RefCell;

use futures::{StreamExt, TryStreamExt};
use netlink_packet_core::{NetlinkMessage, NetlinkPayload, NLM_F_REQUEST};
use netlink_packet_route::link::LinkMessage;
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;

use crate::error::{Context, Error, Kind, Result};
use crate::netns::NetnsFd;

/// Which connection of a namespace: the plain one, or the one whose dumps the kernel filters.
type Key = ((u64, u64), bool);

thread_local! {
    /// The connections this thread opened for the command running now, one per namespace
    /// (keyed by the namespace's device and inode) and kind, until [`close_all`].
    static OPEN: RefCell<Vec<(Key, Handle)>> = const { RefCell::new(Vec::new()) };
}

/// A netlink connection in the calling thread's namespace: opened on first use, then the same
/// one for the rest of the command (until [`close_all`]). Its driver runs on the process's
/// runtime ([`crate::netns::runtime`]).
pub fn connect() -> Result<Handle> {
    open(false)
}

/// Like [`connect`], but on a socket with NETLINK_GET_STRICT_CHK set: the kernel then checks a
/// dump request's header strictly and filters the dump by it (a route dump by table, device,
/// protocol and type), so a question about one table of many reads that table only. Every
/// header field a strict kernel reads as a filter must be meant: requests built for the plain
/// socket (the crate's defaults) are not valid here.
pub fn connect_filtered() -> Result<Handle> {
    open(true)
}

fn open(filtered: bool) -> Result<Handle> {
    use rtnetlink::sys::AsyncSocket;
    let key = (crate::netns::current_id()?, filtered);
    if let Some(h) = OPEN.with_borrow(|open| open.iter().find(|(k, _)| *k == key).cloned()) {
        return Ok(h.1);
    }
    let rt = crate::netns::runtime()?;
    let _context = rt.enter();
    let (mut conn, handle, _) = rtnetlink::new_connection().context("opening a netlink socket")?;
    if filtered {
        conn.socket_mut()
            .socket_mut()
            .set_netlink_get_strict_chk(true)
            .context("asking for strict netlink dumps (NETLINK_GET_STRICT_CHK)")?;
    }
    rt.spawn(conn);
    OPEN.with_borrow_mut(|open| open.push((key, handle.clone())));
    Ok(handle)
}

/// A netlink connection in namespace `ns` (the thread enters it just long enough to open the
/// socket), shared like [`connect`]'s.
pub fn connect_in(ns: &NetnsFd) -> Result<Handle> {
    crate::netns::run_in(ns, connect)
}

/// Ends the command's connections: called when a command is done, so a batch of many lines
/// in many namespaces holds one socket at a time, not one per namespace it has seen.
pub fn close_all() {
    let open = OPEN.with_borrow_mut(std::mem::take);
    if open.is_empty() {
        return;
    }
    drop(open);
    // Each driver ends once its last handle is gone and it is polled again: let it, unless a
    // runtime is running already (then it will).
    if tokio::runtime::Handle::try_current().is_err() {
        if let Ok(rt) = crate::netns::runtime() {
            rt.block_on(async {
                for _ in 0..2 {
                    tokio::task::yield_now().await;
                }
            });
        }
    }
}

/// Sends MSG as one request that is not a dump (NLM_F_REQUEST and FLAGS, e.g. NLM_F_EXCL or
/// NLM_F_ECHO) and returns what the kernel answers with; an error answer is the error. For the
/// requests rtnetlink's builders do not make: a single address, a namespace id, an echoed add.
pub async fn ask(
    handle: &Handle,
    msg: RouteNetlinkMessage,
    flags: u16,
) -> std::result::Result<Vec<RouteNetlinkMessage>, rtnetlink::Error> {
    let mut req = NetlinkMessage::from(msg);
    req.header.flags = NLM_F_REQUEST | flags;
    let mut answers = handle.clone().request(req)?;
    let mut got = Vec::new();
    while let Some(answer) = answers.next().await {
        match answer.payload {
            NetlinkPayload::InnerMessage(m) => got.push(m),
            // (an acknowledgement is an error message without a code)
            NetlinkPayload::Error(e) if e.code.is_some() => {
                return Err(rtnetlink::Error::NetlinkError(e))
            }
            _ => {}
        }
    }
    Ok(got)
}

/// True for the "it is not there" family of errors ([`Kind::NotFound`]).
pub fn is_absent(e: &rtnetlink::Error) -> bool {
    Kind::of(e) == Kind::NotFound
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
