//! Serialises natctl processes acting on the same namespace.
//!
//! nftables has no "add this rule unless an equal one exists", so adding is read, compare, then
//! write. Two processes doing that at once could both see "absent" and both append. natctl
//! therefore takes an exclusive `flock` on the namespace itself (its nsfs inode, opened through
//! `/proc/thread-self/ns/net`): every opener of one namespace gets the same inode, so the lock is
//! per namespace, needs no lock files, and goes away with the process (a killed natctl never
//! leaves it held) or with the namespace.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::os::unix::fs::MetadataExt;

use common::{Context, Error, Result};

/// Held until dropped.
pub struct NsLock {
    _file: File,
    /// The namespace's inode: its identity for as long as it exists.
    pub ns: u64,
}

/// Takes the lock of the namespace the calling thread is in (waits for other natctls).
pub fn namespace(label: &str) -> Result<NsLock> {
    let file =
        File::open("/proc/thread-self/ns/net").with_context(|| format!("opening {label}"))?;
    let ns = file
        .metadata()
        .with_context(|| format!("identifying {label}"))?
        .ino();
    loop {
        // SAFETY: flock on a descriptor we own.
        if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) } == 0 {
            return Ok(NsLock { _file: file, ns });
        }
        let err = std::io::Error::last_os_error();
        if err.kind() != std::io::ErrorKind::Interrupted {
            return Err(Error::caused(format!("locking {label}"), err));
        }
    }
}
