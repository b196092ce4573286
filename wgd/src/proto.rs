//! The control protocol between wgctl and wgd, on the Unix socket [`socket_path`]: one request
//! per connection, one line each way.
//!
//! - `add NAME PORT [vnet] [in HOME]` with two descriptors (SCM_RIGHTS): the interface's TUN
//!   device and the network namespace its UDP sockets belong in (its birthplace). PORT is the
//!   listen port to bind at once (`0`: one the kernel picks). `vnet` says the TUN device was
//!   opened with a virtio-net header (`IFF_VNET_HDR`), so that wgd may merge what it writes.
//!   `in HOME` says the TUN device was opened in the namespace `/run/netns/HOME` (not in the
//!   birthplace), which then comes as a third descriptor: the device's descriptor holds that
//!   namespace alive, so wgd closes the interface when HOME no longer names it (`ip netns
//!   del`), as the kernel deletes a link with its namespace. A wgd older than a word refuses
//!   the request, and wgctl asks again without it. wgd makes `/var/run/wireguard/NAME.sock`,
//!   the interface's UAPI socket, and answers `ok PORT` with the port it bound.
//! - `del NAME`: wgd closes the interface (its TUN device, so the link, goes with it), its
//!   sockets and its UAPI socket, and answers `ok 1`, or `ok 0` if it served no such interface.
//!
//! Any failure answers `error MESSAGE`. Everything else (keys, peers, statistics) goes over the
//! interface's UAPI socket, as with every other userspace implementation.

use std::io::{IoSlice, IoSliceMut, Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};

/// Where wgd keeps its control socket and lock.
pub const RUN_DIR: &str = "/run/niransix";

/// The control socket.
pub fn socket_path() -> PathBuf {
    PathBuf::from(RUN_DIR).join("wgd.sock")
}

/// Held by whoever starts wgd or sends it an `add`, and by wgd when it leaves for want of
/// interfaces: an `add` never reaches a wgd that is on its way out.
pub fn lock_path() -> PathBuf {
    PathBuf::from(RUN_DIR).join("wgd.lock")
}

/// Requests and replies are one line, at most this long.
pub const MAX_LINE: usize = 4096;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Request {
    Add {
        name: String,
        port: u16,
        vnet: bool,
        /// The name (`/run/netns/HOME`) of the namespace the TUN device was opened in, if not
        /// the birthplace.
        home: Option<String>,
    },
    Del {
        name: String,
    },
}

impl Request {
    pub fn encode(&self) -> String {
        match self {
            Request::Add {
                name,
                port,
                vnet,
                home,
            } => {
                let vnet = if *vnet { " vnet" } else { "" };
                let home = home.as_ref().map_or(String::new(), |h| format!(" in {h}"));
                format!("add {name} {port}{vnet}{home}\n")
            }
            Request::Del { name } => format!("del {name}\n"),
        }
    }

    pub fn decode(line: &str) -> Result<Request, String> {
        let words: Vec<&str> = line.split_whitespace().collect();
        let name = |w: &str| -> Result<String, String> {
            if w.is_empty() || w.len() > 15 || w.contains(['/', '\0']) || w == "." || w == ".." {
                return Err(format!("'{w}' is not an interface name"));
            }
            Ok(w.to_string())
        };
        match words.as_slice() {
            ["add", n, port, rest @ ..] => {
                let (vnet, home) = match rest {
                    [] => (false, None),
                    ["vnet"] => (true, None),
                    ["in", h] => (false, Some(netns_name(h)?)),
                    ["vnet", "in", h] => (true, Some(netns_name(h)?)),
                    _ => return Err(format!("'{}' is not a request", line.trim_end())),
                };
                Ok(Request::Add {
                    name: name(n)?,
                    port: port
                        .parse()
                        .map_err(|_| format!("'{port}' is not a port (0-65535)"))?,
                    vnet,
                    home,
                })
            }
            ["del", n] => Ok(Request::Del { name: name(n)? }),
            _ => Err(format!("'{}' is not a request", line.trim_end())),
        }
    }
}

/// A name under /run/netns, as `ip netns` takes one.
fn netns_name(w: &str) -> Result<String, String> {
    if w.is_empty() || w.len() > 255 || w.contains(['/', '\0']) || w == "." || w == ".." {
        return Err(format!("'{w}' is not a network namespace name"));
    }
    Ok(w.to_string())
}

/// What wgd answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `ok N`: the port bound (add), or 1/0 for whether the interface was there (del).
    Ok(u32),
    Error(String),
}

impl Reply {
    pub fn encode(&self) -> String {
        match self {
            Reply::Ok(n) => format!("ok {n}\n"),
            Reply::Error(msg) => format!("error {}\n", msg.replace('\n', " ")),
        }
    }

    pub fn decode(line: &str) -> Reply {
        let line = line.trim_end();
        if let Some(n) = line.strip_prefix("ok ").and_then(|n| n.parse().ok()) {
            return Reply::Ok(n);
        }
        Reply::Error(
            line.strip_prefix("error ")
                .unwrap_or(&format!("unreadable reply '{line}'"))
                .to_string(),
        )
    }
}

/// Sends `line` with descriptors `fds` in one message.
pub fn send(stream: &UnixStream, line: &str, fds: &[BorrowedFd<'_>]) -> std::io::Result<()> {
    let raw: Vec<RawFd> = fds.iter().map(|f| f.as_raw_fd()).collect();
    let cmsgs = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage] = if raw.is_empty() { &[] } else { &cmsgs };
    let iov = [IoSlice::new(line.as_bytes())];
    let sent = sendmsg::<()>(stream.as_raw_fd(), &iov, cmsgs, MsgFlags::empty(), None)?;
    if sent < line.len() {
        (&*stream).write_all(&line.as_bytes()[sent..])?;
    }
    Ok(())
}

/// Receives one line and the descriptors that came with it (close-on-exec).
pub fn receive(stream: &UnixStream) -> std::io::Result<(String, Vec<OwnedFd>)> {
    let mut buf = vec![0u8; MAX_LINE];
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (mut len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            stream.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )?;
        let mut fds = Vec::new();
        for c in msg.cmsgs()? {
            if let ControlMessageOwned::ScmRights(raw) = c {
                // SAFETY: the kernel just installed these descriptors in this process for us;
                // nothing else owns them.
                fds.extend(
                    raw.into_iter()
                        .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
                );
            }
        }
        (msg.bytes, fds)
    };
    // The rest of a line split over several reads.
    while len < buf.len() && !buf[..len].contains(&b'\n') {
        let n = (&*stream).read(&mut buf[len..])?;
        if n == 0 {
            break;
        }
        len += n;
    }
    if len == 0 {
        return Err(std::io::ErrorKind::UnexpectedEof.into());
    }
    let text = String::from_utf8_lossy(&buf[..len]);
    let line = text.split('\n').next().unwrap_or_default().to_string();
    Ok((line, fds))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_round_trip_and_bad_ones_are_named() {
        for r in [
            Request::Add {
                name: "wg-c00".into(),
                port: 51820,
                vnet: false,
                home: None,
            },
            Request::Add {
                name: "wg-c00".into(),
                port: 0,
                vnet: true,
                home: None,
            },
            Request::Add {
                name: "wg-c00".into(),
                port: 51820,
                vnet: true,
                home: Some("hub-c00".into()),
            },
            Request::Add {
                name: "wg-c00".into(),
                port: 51820,
                vnet: false,
                home: Some("hub-c00".into()),
            },
            Request::Del {
                name: "wg-c00".into(),
            },
        ] {
            assert_eq!(Request::decode(&r.encode()), Ok(r));
        }
        assert_eq!(
            Request::decode("add ../x 1"),
            Err("'../x' is not an interface name".into())
        );
        assert_eq!(
            Request::decode("add wg0 70000"),
            Err("'70000' is not a port (0-65535)".into())
        );
        assert_eq!(
            Request::decode("add wg0 1 vnet").map(|r| r.encode()),
            Ok("add wg0 1 vnet\n".into())
        );
        assert_eq!(
            Request::decode("add wg0 1 gso"),
            Err("'add wg0 1 gso' is not a request".into())
        );
        assert_eq!(
            Request::decode("add wg0 1 vnet in ../x"),
            Err("'../x' is not a network namespace name".into())
        );
        assert_eq!(
            Request::decode("add wg0 1 in c1 vnet"),
            Err("'add wg0 1 in c1 vnet' is not a request".into())
        );
        assert_eq!(
            Request::decode("frob wg0"),
            Err("'frob wg0' is not a request".into())
        );
    }

    #[test]
    fn replies_round_trip() {
        assert_eq!(Reply::decode(&Reply::Ok(51820).encode()), Reply::Ok(51820));
        assert_eq!(
            Reply::decode(&Reply::Error("binding port 1: in use\nx".into()).encode()),
            Reply::Error("binding port 1: in use x".into())
        );
        assert_eq!(
            Reply::decode("garbage"),
            Reply::Error("unreadable reply 'garbage'".into())
        );
    }

    #[test]
    fn descriptors_travel_with_the_line() {
        let (a, b) = UnixStream::pair().unwrap();
        let file = std::fs::File::open("/dev/null").unwrap();
        use std::os::fd::AsFd;
        send(&a, "add wg0 0\n", &[file.as_fd()]).unwrap();
        let (line, fds) = receive(&b).unwrap();
        assert_eq!(line, "add wg0 0");
        assert_eq!(fds.len(), 1);
        let target = std::fs::read_link(format!("/proc/self/fd/{}", fds[0].as_raw_fd())).unwrap();
        assert_eq!(target, PathBuf::from("/dev/null"));
    }
}
