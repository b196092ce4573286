//! `nsctl [--ns NS] sock list --udp [--port P]...`: the namespace's UDP sockets, as the kernel's
//! socket diagnostics report them (`ss -uan 'sport = :P'`).
//!
//! The question is put to the kernel with its filter: a hub's center holds a socket for every
//! peer, and the hub asks whether one port of a thousand is held. /proc/net/udp would format
//! them all (4 ms at 2,000 sockets); the filtered dump returns only the sockets on the ports
//! asked for. rtnetlink has no sock_diag, so the messages are built and read here, on a
//! NETLINK_SOCK_DIAG socket of netlink-sys. A kernel without UDP socket diagnostics
//! (CONFIG_INET_UDP_DIAG, a module in most distributions' kernels) is read from /proc/net/udp
//! and udp6 instead, as `ss` does.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use clap::{Args, Subcommand};
use rtnetlink::sys::{protocols::NETLINK_SOCK_DIAG, Socket};
use serde::Serialize;

use common::{Context, Ctx, Error, Outcome, Result};

#[derive(Subcommand, Debug)]
pub enum Sock {
    /// List the namespace's sockets (like `ss -uan`): UDP only, optionally those bound to
    /// these ports (like `ss -uan 'sport = :P or sport = :Q'`)
    List(ListArgs),
}

#[derive(Args, Debug)]
pub struct ListArgs {
    /// UDP sockets (the only kind listed, for now; like `ss -u`)
    #[arg(long, required = true)]
    pub udp: bool,
    /// Only sockets whose local port is PORT (repeat for several)
    #[arg(long = "port", value_name = "PORT", value_parser = clap::value_parser!(u16).range(1..))]
    pub ports: Vec<u16>,
}

/// A socket as `sock list` prints it.
#[derive(Debug, Serialize, PartialEq, Eq)]
pub struct SockView {
    pub proto: &'static str,
    pub family: &'static str,
    /// The local address (the unspecified one for a wildcard bind) and port.
    pub local: IpAddr,
    pub port: u16,
    /// The remote end of a connected socket; null when unconnected.
    pub remote: Option<String>,
    pub uid: u32,
    pub inode: u32,
    pub netns: Option<String>,
}

/// At most this many ports in one question (the kernel's filter grows 12 bytes a port).
const MAX_PORTS: usize = 1024;

impl Sock {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let Sock::List(args) = self;
        if args.ports.len() > MAX_PORTS {
            return Err(Error::invalid(format!(
                "{} --port given; at most {MAX_PORTS} in one list",
                args.ports.len()
            )));
        }
        let what = || format!("listing the UDP sockets of {}", ctx.ns_label());
        let mut socks = Vec::new();
        for family in [libc::AF_INET, libc::AF_INET6] {
            let found = match udp_sockets(family, &args.ports) {
                // (no sock_diag for UDP in this kernel)
                Err(e)
                    if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::EPROTONOSUPPORT)) =>
                {
                    common::vlog!(1, "no UDP socket diagnostics ({e}): reading /proc/net");
                    proc_udp(family, &args.ports)
                }
                found => found,
            };
            socks.extend(found.with_context(what)?);
        }
        for s in &mut socks {
            s.netns = ctx.netns_name();
        }
        socks.sort_by_key(|s| (s.port, s.family, s.local));
        Outcome::listing("sockets", socks)
    }
}

const SOCK_DIAG_BY_FAMILY: u16 = 20;
const INET_DIAG_REQ_BYTECODE: u16 = 1;
const NLM_F_REQUEST: u16 = 1;
const NLM_F_DUMP: u16 = 0x300;
// The filter's operations (linux/inet_diag.h).
const BC_JMP: u8 = 1;
const BC_S_EQ: u8 = 11;

/// The UDP sockets of `family` in the calling thread's namespace, on `ports` (all: empty), as
/// sock_diag reports them.
fn udp_sockets(family: i32, ports: &[u16]) -> std::io::Result<Vec<SockView>> {
    let mut sock = Socket::new(NETLINK_SOCK_DIAG)?;
    sock.bind_auto()?;
    sock.send(&request(family, ports), 0)?;
    let mut found = Vec::new();
    common::nl::read_dump(&sock, |kind, payload| {
        if kind == SOCK_DIAG_BY_FAMILY {
            found.extend(parse(payload));
        }
        Ok(())
    })?;
    Ok(found)
}

/// SOCK_DIAG_BY_FAMILY, a dump of `family`'s UDP sockets in every state, with a filter that
/// passes a socket whose local port is one of `ports` (none: no filter).
fn request(family: i32, ports: &[u16]) -> Vec<u8> {
    let filter = port_filter(ports);
    let attr_len = if filter.is_empty() {
        0
    } else {
        4 + filter.len()
    };
    let len = 16 + 56 + attr_len;
    let mut msg = Vec::with_capacity(len);
    msg.extend_from_slice(&(len as u32).to_ne_bytes());
    msg.extend_from_slice(&SOCK_DIAG_BY_FAMILY.to_ne_bytes());
    msg.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
    msg.extend_from_slice(&1u32.to_ne_bytes()); // sequence
    msg.extend_from_slice(&0u32.to_ne_bytes()); // port id: the kernel's
                                                // inet_diag_req_v2: family, protocol, extensions, pad, states, then a zero socket id
    msg.extend_from_slice(&[family as u8, libc::IPPROTO_UDP as u8, 0, 0]);
    msg.extend_from_slice(&u32::MAX.to_ne_bytes());
    msg.extend_from_slice(&[0; 48]);
    if !filter.is_empty() {
        msg.extend_from_slice(&(attr_len as u16).to_ne_bytes());
        msg.extend_from_slice(&INET_DIAG_REQ_BYTECODE.to_ne_bytes());
        msg.extend_from_slice(&filter);
    }
    msg
}

/// The kernel's socket filter for "the local port is one of PORTS". An operation is
/// `{code, yes, no}`: the filter moves on by `yes` bytes when it holds and by `no` when not, and
/// passes a socket that lands exactly on its end. The kernel also checks that every `no`
/// lands on an operation that the chain of `yes` jumps reaches, so an "or" is written, per
/// port, as: the port compared (yes: to the jump after it; no: to the next port), then a jump
/// (which always takes `no`) to the end. After the last port a jump past the end refuses.
fn port_filter(ports: &[u16]) -> Vec<u8> {
    if ports.is_empty() {
        return Vec::new();
    }
    let len = ports.len() * 12 + 4;
    let mut bc = Vec::with_capacity(len);
    let op = |bc: &mut Vec<u8>, code: u8, yes: u8, no: u16| {
        bc.push(code);
        bc.push(yes);
        bc.extend_from_slice(&no.to_ne_bytes());
    };
    for port in ports {
        let at = bc.len();
        op(&mut bc, BC_S_EQ, 8, 12);
        op(&mut bc, 0, 0, *port);
        op(&mut bc, BC_JMP, 4, (len - (at + 8)) as u16);
    }
    op(&mut bc, BC_JMP, 4, 8);
    bc
}

/// One inet_diag_msg: family, state, timer, retransmits, then the socket id (ports in network
/// order, addresses, interface, cookie), expiry, queues, uid and inode.
fn parse(m: &[u8]) -> Option<SockView> {
    if m.len() < 72 {
        return None;
    }
    let port = |at: usize| u16::from_be_bytes([m[at], m[at + 1]]);
    let addr = |at: usize| -> IpAddr {
        if i32::from(m[0]) == libc::AF_INET {
            IpAddr::V4(Ipv4Addr::new(m[at], m[at + 1], m[at + 2], m[at + 3]))
        } else {
            let mut b = [0u8; 16];
            b.copy_from_slice(&m[at..at + 16]);
            IpAddr::V6(Ipv6Addr::from(b))
        }
    };
    let family = match i32::from(m[0]) {
        libc::AF_INET => "inet",
        libc::AF_INET6 => "inet6",
        _ => return None,
    };
    let (remote, remote_port) = (addr(24), port(6));
    Some(SockView {
        proto: "udp",
        family,
        local: addr(8),
        port: port(4),
        remote: (remote_port != 0)
            .then(|| std::net::SocketAddr::new(remote, remote_port).to_string()),
        uid: u32_at(m, 64),
        inode: u32_at(m, 68),
        netns: None,
    })
}

/// The UDP sockets of `family` on `ports` (all: empty) from /proc/net/udp or udp6 of the
/// calling thread's namespace: `sl local rem st tx:rx tr:when retrnsmt uid timeout inode`, the
/// addresses in hex as the kernel holds them (each 32-bit word in host order).
fn proc_udp(family: i32, ports: &[u16]) -> std::io::Result<Vec<SockView>> {
    let file = if family == libc::AF_INET {
        "udp"
    } else {
        "udp6"
    };
    let text = std::fs::read_to_string(format!("/proc/thread-self/net/{file}"))?;
    Ok(text
        .lines()
        .skip(1)
        .filter_map(|line| proc_line(family, line))
        .filter(|s| ports.is_empty() || ports.contains(&s.port))
        .collect())
}

/// One line of /proc/net/udp or udp6.
fn proc_line(family: i32, line: &str) -> Option<SockView> {
    let words: Vec<&str> = line.split_whitespace().collect();
    let (local, port) = proc_endpoint(words.get(1)?)?;
    let (remote, remote_port) = proc_endpoint(words.get(2)?)?;
    Some(SockView {
        proto: "udp",
        family: if family == libc::AF_INET {
            "inet"
        } else {
            "inet6"
        },
        local,
        port,
        remote: (remote_port != 0)
            .then(|| std::net::SocketAddr::new(remote, remote_port).to_string()),
        uid: words.get(7)?.parse().ok()?,
        inode: words.get(9)?.parse().ok()?,
        netns: None,
    })
}

/// `ADDR:PORT` of /proc/net/udp: the address's 32-bit words in hex, each in host order.
fn proc_endpoint(word: &str) -> Option<(IpAddr, u16)> {
    let (addr, port) = word.split_once(':')?;
    let words: Vec<u32> = (0..addr.len() / 8)
        .map(|i| u32::from_str_radix(addr.get(i * 8..i * 8 + 8)?, 16).ok())
        .collect::<Option<_>>()?;
    let mut bytes = Vec::with_capacity(16);
    for w in &words {
        bytes.extend_from_slice(&w.to_ne_bytes());
    }
    let ip = match (addr.len(), bytes.len()) {
        (8, 4) => IpAddr::V4(Ipv4Addr::new(bytes[0], bytes[1], bytes[2], bytes[3])),
        (32, 16) => IpAddr::V6(Ipv6Addr::from(<[u8; 16]>::try_from(bytes).ok()?)),
        _ => return None,
    };
    Some((ip, u16::from_str_radix(port, 16).ok()?))
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_ne_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The filter as the kernel runs it (net/ipv4/inet_diag.c, inet_diag_bc_run), for a local
    /// port.
    fn passes(bc: &[u8], port: u16) -> bool {
        let mut at = 0i64;
        let len = bc.len() as i64;
        while at < len {
            let o = at as usize;
            let (code, yes, no) = (bc[o], bc[o + 1], u16::from_ne_bytes([bc[o + 2], bc[o + 3]]));
            let holds = match code {
                BC_S_EQ => port == u16::from_ne_bytes([bc[o + 6], bc[o + 7]]),
                BC_JMP => false,
                _ => panic!("an operation the filter does not use: {code}"),
            };
            at += i64::from(if holds { u16::from(yes) } else { no });
        }
        at == len
    }

    /// The kernel's check of a filter (inet_diag_bc_audit): every `no` lands on the end, just
    /// past it, or an operation the `yes` chain reaches; the `yes` chain ends on the end.
    fn audited(bc: &[u8]) -> bool {
        let len = bc.len();
        let mut chain = Vec::new();
        let mut at = 0;
        while at < len {
            chain.push(at);
            at += usize::from(bc[at + 1]);
        }
        at == len
            && chain.iter().all(|&o| {
                let no = usize::from(u16::from_ne_bytes([bc[o + 2], bc[o + 3]]));
                let to = o + no;
                no % 4 == 0 && (to == len || to == len + 4 || chain.contains(&to))
            })
    }

    #[test]
    fn the_filter_passes_exactly_the_ports_asked() {
        for ports in [vec![51000], vec![51000, 51001, 7], (1..=40).collect()] {
            let bc = port_filter(&ports);
            assert!(audited(&bc), "{ports:?}");
            for p in [1, 7, 8, 39, 40, 41, 51000, 51001, 51002, 65535] {
                assert_eq!(passes(&bc, p), ports.contains(&p), "port {p} of {ports:?}");
            }
        }
        assert!(port_filter(&[]).is_empty());
    }

    #[test]
    fn proc_lines_read_like_the_diagnostics() {
        let v4 = "  123: 0100007F:9C43 0100007F:0009 01 00000000:00000000 00:00000000 00000000  1000        0 4242 2 0000000000000000 0";
        let s = proc_line(libc::AF_INET, v4).unwrap();
        assert_eq!((s.local, s.port), ("127.0.0.1".parse().unwrap(), 40003));
        assert_eq!(s.remote.as_deref(), Some("127.0.0.1:9"));
        assert_eq!((s.uid, s.inode, s.family), (1000, 4242, "inet"));
        let any6 = "  7: 00000000000000000000000000000000:9C42 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 99 2 0000000000000000 0";
        let s = proc_line(libc::AF_INET6, any6).unwrap();
        assert_eq!(
            (s.local, s.port, s.remote),
            ("::".parse().unwrap(), 40002, None)
        );
        let lo6 = "  8: 00000000000000000000000001000000:0035 00000000000000000000000000000000:0000 07 00000000:00000000 00:00000000 00000000     0        0 98 2 0000000000000000 0";
        let s = proc_line(libc::AF_INET6, lo6).unwrap();
        assert_eq!(s.local, "::1".parse::<IpAddr>().unwrap());
        assert!(proc_line(libc::AF_INET, "  sl  local_address rem_address   st").is_none());
    }

    #[test]
    fn a_request_is_one_whole_message() {
        let msg = request(libc::AF_INET6, &[51000]);
        assert_eq!(u32_at(&msg, 0) as usize, msg.len());
        assert_eq!(msg.len(), 16 + 56 + 4 + 16);
        assert_eq!(msg[16], libc::AF_INET6 as u8);
        assert_eq!(msg[17], libc::IPPROTO_UDP as u8);
    }
}
