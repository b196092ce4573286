//! An interface's TUN device, as wgctl hands it over. A wgctl that knows wgd merges packets
//! ([`crate::gro`]) opens it with a virtio-net header (`IFF_VNET_HDR`) before every packet;
//! an older one without, and then wgd writes packets one by one, as before.
//!
//! Reading, the header is always empty: wgd never turns on the device's offloads (TUNSETOFFLOAD),
//! so the kernel hands over whole packets with their checksums. Writing, the kernel takes
//! merged TCP segments on every version; merged UDP datagrams (`GSO_UDP_L4`) since Linux 6.2,
//! which [`Tun::new`] asks the device.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::gro::{Batch, Offload, HEADER};

pub struct Tun {
    file: File,
    /// Whether a virtio-net header comes before every packet.
    vnet: bool,
    offload: Offload,
}

impl Tun {
    /// Takes `fd` over, non-blocking, and learns whether it carries virtio-net headers and
    /// which merged packets its kernel takes.
    pub fn new(fd: OwnedFd) -> nix::Result<Tun> {
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let vnet = has_vnet_header(&fd)?;
        let offload = Offload {
            tcp: vnet,
            udp: vnet && takes_merged_udp(&fd),
        };
        Ok(Tun {
            file: File::from(fd),
            vnet,
            offload,
        })
    }

    /// Whether packets carry a virtio-net header (and so may be merged).
    pub fn offload(&self) -> Offload {
        self.offload
    }

    /// Reads one packet into `buf`: Ok(None) when there is none now, an error when the device
    /// is gone (its link deleted, or its namespace). A packet the kernel would have us finish
    /// (a non-empty header: it never has one, its offloads being off) reads as empty.
    pub fn read<'b>(&self, buf: &'b mut [u8]) -> std::io::Result<Option<&'b [u8]>> {
        let n = match (&self.file).read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        if !self.vnet {
            return Ok(Some(&buf[..n]));
        }
        match buf[..n].split_at_checked(HEADER) {
            Some((header, packet)) if header == [0; HEADER] => Ok(Some(packet)),
            _ => Ok(Some(&[])),
        }
    }

    /// Writes the packets of `batch`. A merged packet the kernel refuses (EINVAL) is lost, and
    /// packets like it are no longer merged on this device (the system log says so).
    pub fn write(&mut self, batch: &mut Batch) {
        let (file, vnet, offload) = (&self.file, self.vnet, &mut self.offload);
        batch.drain(|written| {
            let bytes = if vnet { written } else { &written[HEADER..] };
            let refused =
                matches!((&*file).write(bytes), Err(e) if e.raw_os_error() == Some(libc::EINVAL));
            if vnet && refused && offload.refuse(written) {
                crate::daemon::warn(&format!(
                    "a TUN device refused a merged packet (GSO type {}): no longer merging \
                     such packets on it",
                    written[1]
                ));
            }
        });
    }
}

/// Whether TUN device `fd` was opened with a virtio-net header before every packet.
pub fn has_vnet_header(fd: &OwnedFd) -> nix::Result<bool> {
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    // SAFETY: TUNGETIFF writes one ifreq, which lives across the call.
    Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNGETIFF, &mut req) })?;
    // SAFETY: TUNGETIFF filled in the flags.
    Ok(i32::from(unsafe { req.ifr_ifru.ifru_flags }) & libc::IFF_VNET_HDR != 0)
}

/// Whether the kernel of TUN device `fd` takes merged UDP datagrams: it lets the device
/// offer them (`TUN_F_USO4 | TUN_F_USO6`, refused with EINVAL before Linux 6.2), which is
/// then turned off again.
fn takes_merged_udp(fd: &OwnedFd) -> bool {
    let uso = libc::TUN_F_CSUM | libc::TUN_F_USO4 | libc::TUN_F_USO6;
    // SAFETY: TUNSETOFFLOAD takes its argument by value.
    let taken = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, uso) } == 0;
    // SAFETY: as above; 0 turns every offload off, as the device was made.
    unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, 0) };
    taken
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
