//! wireguard-go's netlink listeners, quieted.
//!
//! Every wireguard-go watches the namespace it runs in through two NETLINK_ROUTE sockets:
//!
//! - the **link listener** (tun_linux.go), subscribed to every link and address event
//!   (RTMGRP_LINK | RTMGRP_IPV4_IFADDR | RTMGRP_IPV6_IFADDR), of which it acts on one kind only:
//!   RTM_NEWLINK of its own interface (running state and MTU). The rest it reads and skips.
//! - the **route listener** (sticky_linux.go, opened each time the device comes up or its listen
//!   port changes), subscribed to every IPv4 route event, on which it asks the kernel again for
//!   the route to each peer's endpoint, so replies leave from the right source address ("sticky
//!   sockets").
//!
//! With many of them in one namespace (a hub's center, where every tunnel is born), each event
//! there wakes every one: measured in a center of 500, a TUN device added and brought up cost
//! each wireguard-go 23 context switches, an address (its local route) 20. So one more peer cost
//! O(N) wake-ups, and a hub's teardown O(N²).
//!
//! wgctl therefore attaches a classic BPF socket filter to each, so the kernel drops, before
//! queueing, what the process would not act on:
//!
//! - link listener: everything but RTM_NEWLINK of its own interface. Its behaviour is unchanged.
//! - route listener: route events of tables other than `main` (the answers to its own queries,
//!   addressed to its port id, pass whatever their table). Routes of other tables (a hub's per-peer tables, the local
//!   routes of addresses) no longer make it re-check its peers' source addresses. What that
//!   re-check is for still holds: a source address that went away fails the next send (EINVAL),
//!   on which wireguard-go drops it and sends again without it; a better source that came up in
//!   another table is used once the peer's endpoint changes. (A machine whose WireGuard traffic
//!   is policy-routed through another table than `main` should use the kernel module anyway.)
//!
//! The sockets are wireguard-go's own; wgctl reaches them with pidfd_getfd(2) (Linux 5.6;
//! ptrace rights over the process, which the root that started it has): a second descriptor of
//! the same socket, on which it attaches the filter (SO_ATTACH_FILTER, as `tcpdump` attaches
//! its own) before closing it. Only for wireguard-go itself (another implementation may listen
//! for more), and best effort: if a step is refused, the process listens to everything, as it
//! would without wgctl (the caller warns). [`filtered`] reads the filters back the same way, so
//! `wgctl show` tells whether a process is quiet now, not whether it was once.

use std::fs;
use std::io;
use std::mem::{size_of, size_of_val};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

// Not in the libc crate for linux-gnu.
const SO_PROTOCOL: libc::c_int = 38;
const SO_DOMAIN: libc::c_int = 39;
const NETLINK_LIST_MEMBERSHIPS: libc::c_int = 9;

/// Offsets in a message: nlmsghdr (len u32, type u16, flags u16, seq u32, pid u32), then
/// ifinfomsg (family u8, pad u8, type u16, index i32, ...) or rtmsg (family, dst_len, src_len,
/// tos, table: u8 each, ...).
const NLMSG_TYPE: u32 = 4;
const NLMSG_PID: u32 = 12;
const IFI_INDEX: u32 = 16 + 4;
const RTM_TABLE: u32 = 16 + 4;

/// One of wireguard-go's listeners.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// The link listener of the process serving the interface of this index (in the
    /// namespace the process runs in).
    Link { ifindex: u32 },
    /// The route listener.
    Route,
}

impl Listener {
    pub fn label(self) -> &'static str {
        match self {
            Listener::Link { .. } => "link listener",
            Listener::Route => "route listener",
        }
    }

    /// The events that wake it unfiltered.
    pub fn hears(self) -> &'static str {
        match self {
            Listener::Link { .. } => "link and address event",
            Listener::Route => "IPv4 route event",
        }
    }

    /// Whether a NETLINK_ROUTE socket subscribed to `groups` (bit g-1 for group g) is this one.
    fn is(self, groups: u32) -> bool {
        let member = |group: libc::c_uint| groups & (1 << (group - 1)) != 0;
        match self {
            Listener::Link { .. } => member(libc::RTNLGRP_LINK),
            Listener::Route => member(libc::RTNLGRP_IPV4_ROUTE) && !member(libc::RTNLGRP_LINK),
        }
    }

    fn program(self, portid: u32) -> Vec<libc::sock_filter> {
        match self {
            Listener::Link { ifindex } => link_program(ifindex),
            Listener::Route => route_program(portid),
        }
    }
}

/// Filters `listener` of process `pid`, waiting up to `wait` for it to be open (the route
/// listener is opened once the device is up); returns how many sockets were filtered (0: none
/// was open by the deadline). An error is a refusal: the listener stays unfiltered.
pub fn quiet(pid: i32, listener: Listener, wait: Duration) -> io::Result<usize> {
    let deadline = Instant::now() + wait;
    loop {
        match attach(pid, listener)? {
            0 if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(2)),
            found => return Ok(found),
        }
    }
}

/// Whether every listener process `pid` has open carries wgctl's filter for it (the link
/// listener, which wireguard-go holds for its whole life, and the route listener when the
/// device is up). False when one listens unfiltered or through another filter. An error: the
/// sockets could not be read (the same refusal that keeps a filter from being attached).
pub fn filtered(pid: i32) -> io::Result<bool> {
    let mut listeners = 0;
    for sock in sockets(pid)? {
        let Some(groups) = route_memberships(&sock)? else {
            continue;
        };
        let program = get_filter(&sock)?;
        let wanted = if Listener::Route.is(groups) {
            route_program(portid(&sock)?)
        } else if (Listener::Link { ifindex: 0 }).is(groups) {
            // The index it passes is wireguard-go's own link's in the namespace the process
            // runs in, not necessarily the index the link has where it lives now: the one
            // found in the filter is taken as it is.
            link_program(program.get(LINK_INDEX_AT).map_or(0, |i| as_loaded(i.k)))
        } else {
            continue;
        };
        listeners += 1;
        if !same_program(&program, &wanted) {
            return Ok(false);
        }
    }
    Ok(listeners > 0)
}

/// Releases the UDP ports process `pid` holds other than `keep`, on sockets it bound to port 0
/// (a port the kernel picked); returns how many sockets. Through a second descriptor of each
/// (as above), `connect(AF_UNSPEC)` disconnects the socket, and the kernel unhashes a socket
/// whose port it picked: the port is free again, the process keeps a socket that hears
/// nothing. (A port bound by number stays: the kernel keeps it through a disconnect.)
///
/// For boringtun-cli 0.7, which binds a random port at start and keeps that socket (and hears
/// WireGuard on it) after it is given its listen port: in a hub's center such a port, in the
/// kernel's ephemeral range, takes a port the hub plans for another peer.
pub fn release_ports(pid: i32, keep: u16) -> io::Result<usize> {
    let mut released = 0;
    for sock in sockets(pid)? {
        let fd = sock.as_raw_fd();
        let domain = get_int(fd, libc::SOL_SOCKET, SO_DOMAIN)?;
        if (domain != libc::AF_INET && domain != libc::AF_INET6)
            || get_int(fd, libc::SOL_SOCKET, SO_PROTOCOL)? != libc::IPPROTO_UDP
        {
            continue;
        }
        let port = local_port(&sock)?;
        if port == 0 || port == keep {
            continue;
        }
        // SAFETY: sockaddr is plain old data; AF_UNSPEC with the rest zero is a disconnect.
        let mut unspec: libc::sockaddr = unsafe { std::mem::zeroed() };
        unspec.sa_family = libc::AF_UNSPEC as libc::sa_family_t;
        // SAFETY: connect(2) reads one sockaddr of the size given, alive across the call.
        let rc = unsafe { libc::connect(fd, &unspec, size_of_val(&unspec) as libc::socklen_t) };
        if rc != 0 {
            return Err(io::Error::last_os_error());
        }
        if local_port(&sock)? == 0 {
            released += 1;
        }
    }
    Ok(released)
}

/// The local port of an IPv4 or IPv6 socket (getsockname(2)).
fn local_port(sock: &OwnedFd) -> io::Result<u16> {
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut addr: libc::sockaddr_storage = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
    // SAFETY: getsockname(2) writes at most `len` bytes into `addr`, alive across the call.
    let rc = unsafe {
        libc::getsockname(
            sock.as_raw_fd(),
            (&mut addr as *mut libc::sockaddr_storage).cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    // (sin_port and sin6_port sit at the same offset, after the family)
    // SAFETY: the storage holds a sockaddr_in or sockaddr_in6, both starting with family, port.
    let sin: &libc::sockaddr_in = unsafe { &*(&addr as *const libc::sockaddr_storage).cast() };
    Ok(u16::from_be(sin.sin_port))
}

/// Attaches the filter to each socket of `pid` that is `listener`; returns how many.
fn attach(pid: i32, listener: Listener) -> io::Result<usize> {
    let mut found = 0;
    for sock in sockets(pid)? {
        if let Some(groups) = route_memberships(&sock)? {
            if listener.is(groups) {
                set_filter(&sock, &listener.program(portid(&sock)?))?;
                found += 1;
            }
        }
    }
    Ok(found)
}

/// A second descriptor of each socket process `pid` holds (pidfd_getfd(2)), for
/// [`route_memberships`] to pick its NETLINK_ROUTE ones, or [`release_ports`] its UDP ones.
fn sockets(pid: i32) -> io::Result<Vec<OwnedFd>> {
    let pidfd = pidfd_open(pid)?;
    let mut socks = Vec::new();
    for entry in fs::read_dir(format!("/proc/{pid}/fd"))? {
        let entry = entry?;
        // (a descriptor closed since the listing is simply skipped; a refusal is an error)
        let target = match fs::read_link(entry.path()) {
            Ok(target) => target,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(e),
        };
        let fd = entry.file_name().to_str().and_then(|s| s.parse().ok());
        let (true, Some(fd)) = (target.to_string_lossy().starts_with("socket:"), fd) else {
            continue;
        };
        match pidfd_getfd(&pidfd, fd) {
            Ok(sock) => socks.push(sock),
            Err(e) if e.raw_os_error() == Some(libc::EBADF) => continue,
            Err(e) => return Err(e),
        }
    }
    Ok(socks)
}

fn stmt(code: u32, k: u32) -> libc::sock_filter {
    libc::sock_filter {
        code: code as u16,
        jt: 0,
        jf: 0,
        k,
    }
}

/// `if A == k` jump `jt` instructions ahead, else `jf`.
fn jeq(k: u32, jt: u8, jf: u8) -> libc::sock_filter {
    libc::sock_filter {
        code: JEQ as u16,
        jt,
        jf,
        k,
    }
}

const LOAD_U8: u32 = libc::BPF_LD | libc::BPF_B | libc::BPF_ABS;
const LOAD_U16: u32 = libc::BPF_LD | libc::BPF_H | libc::BPF_ABS;
const LOAD_U32: u32 = libc::BPF_LD | libc::BPF_W | libc::BPF_ABS;
const RETURN: u32 = libc::BPF_RET | libc::BPF_K;
const JEQ: u32 = libc::BPF_JMP | libc::BPF_JEQ | libc::BPF_K;

/// Absolute loads read in network byte order: a native u32 field's bytes, read that way.
fn as_loaded(native: u32) -> u32 {
    u32::from_be_bytes(native.to_ne_bytes())
}

/// Where [`link_program`] holds its interface index.
const LINK_INDEX_AT: usize = 3;

/// The link listener's filter: accept RTM_NEWLINK of interface `ifindex`, drop the rest.
fn link_program(ifindex: u32) -> Vec<libc::sock_filter> {
    let newlink = u16::from_be_bytes(libc::RTM_NEWLINK.to_ne_bytes());
    vec![
        stmt(LOAD_U16, NLMSG_TYPE),
        jeq(u32::from(newlink), 0, 3), // not RTM_NEWLINK: drop
        stmt(LOAD_U32, IFI_INDEX),
        jeq(as_loaded(ifindex), 0, 1), // another link: drop
        stmt(RETURN, u32::MAX),
        stmt(RETURN, 0),
    ]
}

/// The route listener's filter: accept answers addressed to port `portid` (its own queries')
/// and route events of table `main`, drop the rest.
fn route_program(portid: u32) -> Vec<libc::sock_filter> {
    vec![
        stmt(LOAD_U32, NLMSG_PID),
        jeq(as_loaded(portid), 3, 0), // an answer to its own query: accept
        stmt(LOAD_U8, RTM_TABLE),
        jeq(u32::from(libc::RT_TABLE_MAIN), 1, 0), // table main: accept
        stmt(RETURN, 0),
        stmt(RETURN, u32::MAX),
    ]
}

/// The multicast groups (bitmap of the first 32) `sock` is subscribed to, if it is a
/// NETLINK_ROUTE socket.
fn route_memberships(sock: &OwnedFd) -> io::Result<Option<u32>> {
    let fd = sock.as_raw_fd();
    if get_int(fd, libc::SOL_SOCKET, SO_DOMAIN)? != libc::AF_NETLINK
        || get_int(fd, libc::SOL_SOCKET, SO_PROTOCOL)? != libc::NETLINK_ROUTE
    {
        return Ok(None);
    }
    let mut groups = [0u32; 4];
    let mut len = size_of_val(&groups) as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `groups`, which is that long.
    let rc = unsafe {
        libc::getsockopt(
            fd,
            libc::SOL_NETLINK,
            NETLINK_LIST_MEMBERSHIPS,
            groups.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Some(groups[0]))
}

/// The port id `sock` is bound to.
fn portid(sock: &OwnedFd) -> io::Result<u32> {
    // SAFETY: all-zero bytes are a valid sockaddr_nl.
    let mut addr: libc::sockaddr_nl = unsafe { std::mem::zeroed() };
    let mut len = size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `addr`, which is that long.
    let rc = unsafe { libc::getsockname(sock.as_raw_fd(), (&raw mut addr).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(addr.nl_pid)
}

fn get_int(fd: RawFd, level: libc::c_int, name: libc::c_int) -> io::Result<libc::c_int> {
    let mut value: libc::c_int = 0;
    let mut len = size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `value`, which is that long.
    let rc = unsafe { libc::getsockopt(fd, level, name, (&raw mut value).cast(), &mut len) };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(value)
}

/// The classic BPF program attached to `sock` (empty: none), as SO_GET_FILTER gives it back:
/// its length in instructions, then the instructions.
fn get_filter(sock: &OwnedFd) -> io::Result<Vec<libc::sock_filter>> {
    let mut len: libc::socklen_t = 0;
    // SAFETY: with a length of 0 the kernel writes nothing to the (null) buffer; it only sets
    // `len` to the number of instructions.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            std::ptr::null_mut(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let empty = libc::sock_filter {
        code: 0,
        jt: 0,
        jf: 0,
        k: 0,
    };
    let mut program = vec![empty; len as usize];
    // SAFETY: the kernel writes at most `len` instructions (SO_GET_FILTER counts in
    // instructions, not bytes) into `program`, which holds that many.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_GET_FILTER,
            program.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    program.truncate(len as usize);
    Ok(program)
}

fn same_program(a: &[libc::sock_filter], b: &[libc::sock_filter]) -> bool {
    let fields = |i: &libc::sock_filter| (i.code, i.jt, i.jf, i.k);
    a.len() == b.len() && a.iter().zip(b).all(|(x, y)| fields(x) == fields(y))
}

fn set_filter(sock: &OwnedFd, program: &[libc::sock_filter]) -> io::Result<()> {
    let fprog = libc::sock_fprog {
        len: program.len() as u16,
        filter: program.as_ptr().cast_mut(),
    };
    // SAFETY: `fprog` points at `program`, alive for the call; the kernel copies it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ATTACH_FILTER,
            (&raw const fprog).cast(),
            size_of::<libc::sock_fprog>() as libc::socklen_t,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

fn pidfd_open(pid: i32) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call; on success it returns a new descriptor that we own.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, pid, 0) };
    owned(fd)
}

fn pidfd_getfd(pidfd: &OwnedFd, target: RawFd) -> io::Result<OwnedFd> {
    // SAFETY: a plain system call; on success it returns a new descriptor (close-on-exec) that
    // we own, a copy of the other process's `target`.
    let fd = unsafe { libc::syscall(libc::SYS_pidfd_getfd, pidfd.as_raw_fd(), target, 0) };
    owned(fd)
}

fn owned(fd: libc::c_long) -> io::Result<OwnedFd> {
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` was just returned by the kernel as a new descriptor of this process, owned
    // by nobody else.
    Ok(unsafe { OwnedFd::from_raw_fd(fd as RawFd) })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Runs the filter over a message the way the kernel does (absolute loads in network byte
    /// order); returns whether it is accepted.
    fn accepts(program: &[libc::sock_filter], msg: &[u8]) -> bool {
        let (mut pc, mut acc) = (0usize, 0u32);
        loop {
            let i = &program[pc];
            let code = u32::from(i.code);
            let k = i.k as usize;
            match code {
                LOAD_U8 => {
                    let Some(b) = msg.get(k) else { return false };
                    acc = u32::from(*b);
                }
                LOAD_U16 => {
                    let Some(b) = msg.get(k..k + 2) else {
                        return false;
                    };
                    acc = u32::from(u16::from_be_bytes([b[0], b[1]]));
                }
                LOAD_U32 => {
                    let Some(b) = msg.get(k..k + 4) else {
                        return false;
                    };
                    acc = u32::from_be_bytes([b[0], b[1], b[2], b[3]]);
                }
                JEQ => {
                    pc += usize::from(if acc == i.k { i.jt } else { i.jf });
                }
                RETURN => return i.k != 0,
                other => panic!("unexpected instruction {other:#x}"),
            }
            pc += 1;
        }
    }

    /// A message as the kernel writes it, native byte order: nlmsghdr from port `pid`, then
    /// `at4` at offset 4 of the payload (ifinfomsg's and ifaddrmsg's interface index; rtmsg's
    /// table, then its protocol, scope and type).
    fn notification(kind: u16, pid: u32, seq: u32, at4: [u8; 4]) -> Vec<u8> {
        let mut m = Vec::new();
        m.extend_from_slice(&32u32.to_ne_bytes());
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&0u16.to_ne_bytes());
        m.extend_from_slice(&seq.to_ne_bytes());
        m.extend_from_slice(&pid.to_ne_bytes());
        m.extend_from_slice(&[0; 4]); // family, pad / prefixlen, type / flags, scope
        m.extend_from_slice(&at4);
        m.extend_from_slice(&[0; 8]);
        m
    }

    #[test]
    fn link_listener_hears_only_its_own_newlink() {
        let p = link_program(7);
        let link = |kind, index: u32| notification(kind, 0, 0, index.to_ne_bytes());
        assert!(accepts(&p, &link(libc::RTM_NEWLINK, 7)));
        assert!(!accepts(&p, &link(libc::RTM_NEWLINK, 8)));
        assert!(!accepts(&p, &link(libc::RTM_NEWLINK, 7 << 8)));
        assert!(!accepts(&p, &link(libc::RTM_DELLINK, 7)));
        assert!(!accepts(&p, &link(libc::RTM_NEWADDR, 7)));
        assert!(!accepts(&p, &link(libc::RTM_NEWLINK, 7)[..8]));
    }

    /// `filtered` recognises the link filter whatever index it passes, by the index found at
    /// [`LINK_INDEX_AT`], and no other program.
    #[test]
    fn link_filter_is_recognised_by_its_index() {
        let ours = link_program(0x0102_0304);
        let found = as_loaded(ours[LINK_INDEX_AT].k);
        assert_eq!(found, 0x0102_0304);
        assert!(same_program(&ours, &link_program(found)));
        assert!(!same_program(&ours, &link_program(7)));
        assert!(!same_program(&ours, &route_program(0x0102_0304)));
        assert!(!same_program(&ours, &ours[..5]));
        assert!(!same_program(&[], &ours));
    }

    #[test]
    fn route_listener_hears_main_and_its_answers() {
        let p = route_program(0xdead_beef);
        let route = |kind, pid, table: u8| notification(kind, pid, 1, [table, 4, 0, 1]);
        assert!(accepts(
            &p,
            &route(libc::RTM_NEWROUTE, 42, libc::RT_TABLE_MAIN)
        ));
        assert!(accepts(
            &p,
            &route(libc::RTM_DELROUTE, 42, libc::RT_TABLE_MAIN)
        ));
        assert!(!accepts(
            &p,
            &route(libc::RTM_NEWROUTE, 42, libc::RT_TABLE_LOCAL)
        ));
        assert!(!accepts(
            &p,
            &route(libc::RTM_NEWROUTE, 42, libc::RT_TABLE_COMPAT)
        ));
        assert!(!accepts(&p, &route(libc::RTM_NEWROUTE, 42, 100)));
        // its own query's answer, whatever the table
        assert!(accepts(&p, &route(libc::RTM_NEWROUTE, 0xdead_beef, 100)));
    }
}
