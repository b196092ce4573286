//! An interface's TUN device, as wgctl hands it over. A wgctl that knows wgd's offloads opens it
//! with a virtio-net header (`IFF_VNET_HDR`, [`crate::vnet`]) before every packet; an older one
//! without, and then wgd reads and writes packets one by one, as before.
//!
//! With the header, wgd turns the device's offloads on (`TUNSETOFFLOAD`), as a NIC's driver
//! does: checksums, TCP segmentation in both families, and UDP segmentation where the kernel
//! has it (Linux 6.2). Reading, the kernel then hands over large packets and unfinished
//! checksums, which [`crate::split`] makes whole. Writing, the kernel takes merged TCP
//! segments on every version and merged UDP datagrams (`GSO_UDP_L4`) since Linux 6.2, which
//! [`crate::gro`] makes.

use std::fs::File;
use std::io::{ErrorKind, Read, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{fcntl, FcntlArg, OFlag};

use crate::gro::{Batch, Offload};
use crate::vnet::{Header, LEN as HEADER};

pub struct Tun {
    file: File,
    /// Whether a virtio-net header comes before every packet.
    vnet: bool,
    offload: Offload,
}

impl Tun {
    /// Takes `fd` over, non-blocking, and learns whether it carries virtio-net headers; if it
    /// does, turns on the offloads its kernel has.
    pub fn new(fd: OwnedFd) -> nix::Result<Tun> {
        let flags = OFlag::from_bits_truncate(fcntl(&fd, FcntlArg::F_GETFL)?);
        fcntl(&fd, FcntlArg::F_SETFL(flags | OFlag::O_NONBLOCK))?;
        let vnet = has_vnet_header(&fd)?;
        let offload = if vnet {
            turn_offloads_on(&fd)?
        } else {
            Offload::default()
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
    /// is gone (its link deleted, or its namespace). With its virtio-net header (an empty one
    /// without): [`crate::split`] makes what it stands for.
    pub fn read<'b>(&self, buf: &'b mut [u8]) -> std::io::Result<Option<(Header, &'b mut [u8])>> {
        let n = match (&self.file).read(buf) {
            Ok(n) => n,
            Err(e) if e.kind() == ErrorKind::WouldBlock || e.kind() == ErrorKind::Interrupted => {
                return Ok(None)
            }
            Err(e) => return Err(e),
        };
        if !self.vnet {
            return Ok(Some((Header::default(), &mut buf[..n])));
        }
        match buf[..n].split_at_mut_checked(HEADER) {
            Some((header, packet)) => {
                let header = Header::read((&*header).try_into().expect("HEADER bytes"));
                Ok(Some((header, packet)))
            }
            None => Ok(Some((Header::default(), &mut []))),
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

/// Turns on the offloads of TUN device `fd` that its kernel has: checksums and TCP
/// segmentation everywhere, UDP segmentation since Linux 6.2 (refused with EINVAL before).
/// The same kernel takes merged UDP datagrams written to the device.
fn turn_offloads_on(fd: &OwnedFd) -> nix::Result<Offload> {
    let tcp = libc::TUN_F_CSUM | libc::TUN_F_TSO4 | libc::TUN_F_TSO6;
    let set = |offloads: libc::c_uint| {
        // SAFETY: TUNSETOFFLOAD takes its argument by value.
        Errno::result(unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETOFFLOAD, offloads) })
    };
    let udp = set(tcp | libc::TUN_F_USO4 | libc::TUN_F_USO6).is_ok();
    if !udp {
        set(tcp)?;
    }
    Ok(Offload { tcp: true, udp })
}

impl AsFd for Tun {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.file.as_fd()
    }
}
