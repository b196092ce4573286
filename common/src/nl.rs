//! rtnetlink plumbing shared by the tools: one connection per namespace per command, link
//! lookup, the "it is not there" check that makes a lookup or delete idempotent, and the dump
//! read for one object ([`dump_sifted`]), where rtnetlink would parse every object of its kind.

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

/// The messages of the dump REQUEST (in the calling thread's namespace) that WANTED keeps,
/// parsed; the others are looked at as bytes only. WANTED gets a message's payload: its fixed
/// header (an `ifaddrmsg`, a `fib_rule_hdr`, ...) and its attributes (see [`attributes`]).
/// STRICT: on a socket with NETLINK_GET_STRICT_CHK, as for [`connect_filtered`].
///
/// For a question about one object that the kernel answers only with a dump of every object of
/// its kind: an IPv4 address (a hub's center holds one for each peer on one link), or a routing
/// rule (two for each peer). Parsed whole, each message of a thousand costs allocations for
/// every attribute, more than the kernel spends writing it; sifted, one is parsed.
pub fn dump_sifted(
    request: RouteNetlinkMessage,
    strict: bool,
    wanted: impl Fn(&[u8]) -> bool,
) -> std::io::Result<Vec<RouteNetlinkMessage>> {
    use netlink_packet_core::{NetlinkDeserializable, NetlinkHeader, NLM_F_DUMP};
    use rtnetlink::sys::{protocols::NETLINK_ROUTE, Socket};
    let mut sock = Socket::new(NETLINK_ROUTE)?;
    sock.bind_auto()?;
    if strict {
        sock.set_netlink_get_strict_chk(true)?;
    }
    let mut msg = NetlinkMessage::from(request);
    msg.header.flags = NLM_F_REQUEST | NLM_F_DUMP;
    msg.finalize();
    let mut buf = vec![0; msg.buffer_len()];
    msg.serialize(&mut buf);
    sock.send(&buf, 0)?;
    let mut found = Vec::new();
    read_dump(&sock, |kind, payload| {
        if wanted(payload) {
            let mut header = NetlinkHeader::default();
            header.message_type = kind;
            let parsed = RouteNetlinkMessage::deserialize(&header, payload)
                .map_err(std::io::Error::other)?;
            found.push(parsed);
        }
        Ok(())
    })?;
    Ok(found)
}

/// Reads the answer to a dump sent on SOCK (any netlink protocol) to its end (NLMSG_DONE),
/// handing each message's type and payload to EACH; an error message is the error it carries.
pub fn read_dump(
    sock: &rtnetlink::sys::Socket,
    mut each: impl FnMut(u16, &[u8]) -> std::io::Result<()>,
) -> std::io::Result<()> {
    const NLMSG_ERROR: u16 = 2;
    const NLMSG_DONE: u16 = 3;
    loop {
        let (datagram, _) = sock.recv_from_full()?;
        let mut rest = datagram.as_slice();
        while rest.len() >= 16 {
            let len = u32::from_ne_bytes(rest[..4].try_into().expect("four bytes")) as usize;
            let kind = u16::from_ne_bytes([rest[4], rest[5]]);
            if len < 16 || len > rest.len() {
                return Err(std::io::Error::other("the kernel's dump is cut short"));
            }
            let payload = &rest[16..len];
            match kind {
                NLMSG_DONE => return Ok(()),
                NLMSG_ERROR => {
                    let errno = payload
                        .get(..4)
                        .map_or(0, |b| i32::from_ne_bytes(b.try_into().expect("four bytes")));
                    return Err(std::io::Error::from_raw_os_error(-errno));
                }
                _ => each(kind, payload)?,
            }
            rest = &rest[len.next_multiple_of(4).min(rest.len())..];
        }
    }
}

/// The attributes of a message PAYLOAD after its fixed header of FIXED bytes, as (type,
/// value) pairs: the type without its NLA_F_NESTED and NLA_F_NET_BYTEORDER bits. A truncated
/// attribute ends them.
pub fn attributes(payload: &[u8], fixed: usize) -> impl Iterator<Item = (u16, &[u8])> {
    let mut rest = payload.get(fixed..).unwrap_or_default();
    std::iter::from_fn(move || {
        let head = rest.get(..4)?;
        let len = u16::from_ne_bytes([head[0], head[1]]) as usize;
        let kind = u16::from_ne_bytes([head[2], head[3]]) & 0x3fff;
        let value = rest.get(4..len)?;
        rest = rest.get(len.next_multiple_of(4)..).unwrap_or_default();
        Some((kind, value))
    })
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An attribute as the kernel writes it: length, type, value, padded to four bytes.
    fn attribute(kind: u16, value: &[u8]) -> Vec<u8> {
        let len = 4 + value.len() as u16;
        let mut a = [len.to_ne_bytes(), kind.to_ne_bytes()].concat();
        a.extend_from_slice(value);
        a.resize(a.len().next_multiple_of(4), 0);
        a
    }

    #[test]
    fn attributes_are_read_after_the_fixed_header_each_padded() {
        let mut payload = vec![9; 8];
        payload.extend(attribute(2, &[100, 64, 0, 7]));
        payload.extend(attribute(3, b"hub0\0"));
        // (a nested attribute's flag bit is not part of its type)
        payload.extend(attribute(0x8000 | 6, &[1, 2]));
        let got: Vec<(u16, &[u8])> = attributes(&payload, 8).collect();
        assert_eq!(
            got,
            [
                (2, &[100, 64, 0, 7][..]),
                (3, &b"hub0\0"[..]),
                (6, &[1, 2][..])
            ]
        );
        // A last attribute cut short ends them; so does a length below the attribute's header.
        let cut = &payload[..payload.len() - 4];
        assert_eq!(attributes(cut, 8).count(), 2);
        let mut bad = vec![0; 8];
        bad.extend([2, 0, 1, 0]);
        assert_eq!(attributes(&bad, 8).count(), 0);
        assert_eq!(attributes(&payload[..4], 8).count(), 0, "no fixed header");
    }
}
