//! An interface's UDP sockets: one IPv4 and one IPv6 (v6-only) on the same port, bound in the
//! interface's birthplace namespace, and "sticky" like the kernel's and wireguard-go's: each
//! datagram's local address is read (IP_PKTINFO / IPV6_PKTINFO) and replies to that peer leave
//! from it, so a hub answering on a floating address (keepalived's) answers from that address.

use std::cell::Cell;
use std::io::{IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV6};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};

use nix::errno::Errno;
use nix::sched::{setns, CloneFlags};
use nix::sys::socket::{
    bind, getsockname, recvmsg, sendmsg, setsockopt, socket, sockopt, AddressFamily,
    ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn, SockaddrIn6,
    SockaddrStorage,
};

/// Socket buffers asked for (the kernel's defaults, ~200 kB, drop bursts at full speed).
const BUFFER_BYTES: usize = 4 << 20;

/// The local address a peer's datagram arrived at, to answer from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    V4(Ipv4Addr),
    V6(Ipv6Addr, u32),
}

/// What one receive gave: its length, sender and the local address it came to; `segment`
/// when it is several datagrams of that size (the last may be shorter), which the sender sent
/// in one (`UDP_SEGMENT`) and the socket takes whole (`UDP_GRO`).
pub struct Received {
    pub len: usize,
    pub from: SocketAddr,
    pub source: Option<Source>,
    pub segment: Option<usize>,
}

#[derive(Debug)]
pub struct Udp {
    pub port: u16,
    pub v4: OwnedFd,
    /// None where the namespace has no IPv6.
    pub v6: Option<OwnedFd>,
    /// Whether the kernel takes several datagrams in one send (until it refuses).
    gso: Cell<bool>,
}

/// Runs `work` in network namespace `netns` on this thread, then comes back.
fn in_netns<T>(netns: &OwnedFd, work: impl FnOnce() -> nix::Result<T>) -> nix::Result<T> {
    let home = std::fs::File::open("/proc/thread-self/ns/net").map_err(|_| Errno::ENOENT)?;
    setns(netns, CloneFlags::CLONE_NEWNET)?;
    let result = work();
    setns(home.as_fd(), CloneFlags::CLONE_NEWNET)
        .expect("returning to the thread's own network namespace");
    result
}

fn open(family: AddressFamily, fwmark: u32) -> nix::Result<OwnedFd> {
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    // Best effort: an unprivileged run gets the kernel's limit.
    if setsockopt(&fd, sockopt::RcvBufForce, &BUFFER_BYTES).is_err() {
        let _ = setsockopt(&fd, sockopt::RcvBuf, &BUFFER_BYTES);
    }
    if setsockopt(&fd, sockopt::SndBufForce, &BUFFER_BYTES).is_err() {
        let _ = setsockopt(&fd, sockopt::SndBuf, &BUFFER_BYTES);
    }
    if fwmark != 0 {
        setsockopt(&fd, sockopt::Mark, &fwmark)?;
    }
    // Datagrams a sender sent in one (UDP_SEGMENT) come whole (Linux 5.0; best effort).
    let _ = setsockopt(&fd, sockopt::UdpGroSegment, &true);
    match family {
        AddressFamily::Inet => setsockopt(&fd, sockopt::Ipv4PacketInfo, &true)?,
        _ => {
            setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
            setsockopt(&fd, sockopt::Ipv6RecvPacketInfo, &true)?;
        }
    }
    Ok(fd)
}

fn bind_v4(port: u16, fwmark: u32) -> nix::Result<(OwnedFd, u16)> {
    let fd = open(AddressFamily::Inet, fwmark)?;
    bind(fd.as_raw_fd(), &SockaddrIn::new(0, 0, 0, 0, port))?;
    let bound: SockaddrIn = getsockname(fd.as_raw_fd())?;
    Ok((fd, bound.port()))
}

fn bind_v6(port: u16, fwmark: u32) -> nix::Result<Option<OwnedFd>> {
    let fd = match open(AddressFamily::Inet6, fwmark) {
        Ok(fd) => fd,
        Err(Errno::EAFNOSUPPORT) => return Ok(None),
        Err(e) => return Err(e),
    };
    let any = SockaddrIn6::from(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, port, 0, 0));
    match bind(fd.as_raw_fd(), &any) {
        Ok(()) => Ok(Some(fd)),
        // IPv6 disabled in the namespace (net.ipv6.conf.all.disable_ipv6): IPv4 only.
        Err(Errno::EADDRNOTAVAIL) => Ok(None),
        Err(e) => Err(e),
    }
}

impl Udp {
    /// Binds `port` (0: one the kernel picks, free in both families) in `netns`.
    pub fn bind(netns: &OwnedFd, port: u16, fwmark: u32) -> nix::Result<Udp> {
        in_netns(netns, || {
            // A picked IPv4 port may be taken in IPv6: pick again, a few times.
            let tries = if port == 0 { 16 } else { 1 };
            let mut last = Errno::EADDRINUSE;
            for _ in 0..tries {
                let (v4, bound) = bind_v4(port, fwmark)?;
                match bind_v6(bound, fwmark) {
                    Ok(v6) => {
                        return Ok(Udp {
                            port: bound,
                            v4,
                            v6,
                            gso: Cell::new(true),
                        })
                    }
                    Err(e) => last = e,
                }
            }
            Err(last)
        })
    }

    /// Marks both sockets (SO_MARK; 0 removes the mark).
    pub fn set_mark(&self, fwmark: u32) -> nix::Result<()> {
        setsockopt(&self.v4, sockopt::Mark, &fwmark)?;
        if let Some(v6) = &self.v6 {
            setsockopt(v6, sockopt::Mark, &fwmark)?;
        }
        Ok(())
    }

    /// Sends `bytes` to `to`, from `source` if given: one datagram, or with `segment` several
    /// of that size (the last may be shorter) in one system call (`UDP_SEGMENT`). A source no
    /// longer on the host (an address moved away) fails with EINVAL: the caller forgets it and
    /// sends again without. Where the kernel refuses several at once (EIO: a link without
    /// checksum offload), they go one by one, from then on.
    pub fn send(
        &self,
        bytes: &[u8],
        segment: Option<u16>,
        to: SocketAddr,
        source: Option<Source>,
    ) -> nix::Result<()> {
        let Some(size) = segment else {
            return self.send_one(bytes, None, to, source);
        };
        if self.gso.get() {
            match self.send_one(bytes, Some(size), to, source) {
                Err(Errno::EIO) => self.gso.set(false),
                // (EINVAL: a datagram larger than the path's MTU allows in one, or the source
                // gone: one by one says which)
                Err(Errno::EINVAL) => {}
                done => return done,
            }
        }
        for datagram in bytes.chunks(usize::from(size)) {
            self.send_one(datagram, None, to, source)?;
        }
        Ok(())
    }

    fn send_one(
        &self,
        bytes: &[u8],
        segment: Option<u16>,
        to: SocketAddr,
        source: Option<Source>,
    ) -> nix::Result<()> {
        let to = unmapped(to);
        let fd = match to {
            SocketAddr::V4(_) => &self.v4,
            SocketAddr::V6(_) => self.v6.as_ref().ok_or(Errno::EAFNOSUPPORT)?,
        };
        let v4_info = match (to, source) {
            (SocketAddr::V4(_), Some(Source::V4(addr))) => Some(libc::in_pktinfo {
                ipi_ifindex: 0,
                ipi_spec_dst: libc::in_addr {
                    s_addr: u32::from(addr).to_be(),
                },
                ipi_addr: libc::in_addr { s_addr: 0 },
            }),
            _ => None,
        };
        let v6_info = match (to, source) {
            (SocketAddr::V6(_), Some(Source::V6(addr, ifindex))) => Some(libc::in6_pktinfo {
                ipi6_addr: libc::in6_addr {
                    s6_addr: addr.octets(),
                },
                ipi6_ifindex: ifindex,
            }),
            _ => None,
        };
        let size = segment.unwrap_or(0);
        let mut cmsgs = [ControlMessage::UdpGsoSegments(&size); 2];
        let mut n = 0;
        if let Some(info) = &v4_info {
            cmsgs[n] = ControlMessage::Ipv4PacketInfo(info);
            n += 1;
        }
        if let Some(info) = &v6_info {
            cmsgs[n] = ControlMessage::Ipv6PacketInfo(info);
            n += 1;
        }
        if segment.is_some() {
            cmsgs[n] = ControlMessage::UdpGsoSegments(&size);
            n += 1;
        }
        sendmsg(
            fd.as_raw_fd(),
            &[IoSlice::new(bytes)],
            &cmsgs[..n],
            MsgFlags::MSG_DONTWAIT,
            Some(&SockaddrStorage::from(to)),
        )?;
        Ok(())
    }
}

/// `to` with an IPv4-mapped IPv6 address written as the IPv4 address it is.
fn unmapped(to: SocketAddr) -> SocketAddr {
    match to {
        SocketAddr::V6(a) => match a.ip().to_ipv4_mapped() {
            Some(v4) => SocketAddr::new(IpAddr::V4(v4), a.port()),
            None => to,
        },
        v4 => v4,
    }
}

/// Receives one datagram from `fd` into `buf` (EAGAIN when there is none); `cmsg` is the
/// caller's reusable control-message buffer (a Vec: nix's recvmsg takes one).
#[allow(clippy::ptr_arg)]
pub fn receive(fd: &OwnedFd, buf: &mut [u8], cmsg: &mut Vec<u8>) -> nix::Result<Received> {
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<SockaddrStorage>(fd.as_raw_fd(), &mut iov, Some(cmsg), MsgFlags::MSG_DONTWAIT)?;
    let from = msg
        .address
        .and_then(|a| {
            if let Some(v4) = a.as_sockaddr_in() {
                Some(SocketAddr::V4((*v4).into()))
            } else {
                a.as_sockaddr_in6().map(|v6| SocketAddr::V6((*v6).into()))
            }
        })
        .ok_or(Errno::EAFNOSUPPORT)?;
    let (mut source, mut segment) = (None, None);
    if let Ok(cmsgs) = msg.cmsgs() {
        for c in cmsgs {
            if let ControlMessageOwned::UdpGroSegments(size) = c {
                segment = usize::try_from(size).ok().filter(|s| *s > 0);
                continue;
            }
            source = match c {
                ControlMessageOwned::Ipv4PacketInfo(i) => Some(Source::V4(Ipv4Addr::from(
                    u32::from_be(i.ipi_spec_dst.s_addr),
                ))),
                ControlMessageOwned::Ipv6PacketInfo(i) => Some(Source::V6(
                    Ipv6Addr::from(i.ipi6_addr.s6_addr),
                    i.ipi6_ifindex,
                )),
                _ => source,
            };
        }
    }
    Ok(Received {
        len: msg.bytes,
        from: unmapped(from),
        source,
        segment,
    })
}

/// A control-message buffer large enough for either family's packet information and a
/// segment size.
pub fn cmsg_buffer() -> Vec<u8> {
    nix::cmsg_space!(libc::in6_pktinfo, libc::c_int)
}
