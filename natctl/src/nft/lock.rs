//! Serialises natctl processes acting on the same namespace.
//!
//! nftables has no "add this rule unless an equal one exists", so adding is read, compare, then
//! write. Two processes doing that at once could both see "absent" and both append. natctl
//! therefore takes an exclusive `flock` on the namespace itself (its nsfs inode, opened through
//! `/proc/thread-self/ns/net`): every opener of one namespace gets the same inode, so the lock is
//! per namespace, needs no lock files, and goes away with the process (a killed natctl never
//! leaves it held) or with the namespace.

use std::fs::File;
use std::os::unix::fs::MetadataExt;

use common::{Context, Error, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held until dropped.
pub struct NsLock {
    _lock: Flock<File>,
    /// The namespace's inode: its identity for as long as it exists.
    pub ns: u64,
    /// Its cookie, unique until reboot (`store` names files by it), if the kernel tells.
    pub cookie: Option<u64>,
}

/// Takes the lock of the namespace the calling thread is in (waits for other natctls).
pub fn namespace(label: &str) -> Result<NsLock> {
    let mut file =
        File::open("/proc/thread-self/ns/net").with_context(|| format!("opening {label}"))?;
    let ns = file
        .metadata()
        .with_context(|| format!("identifying {label}"))?
        .ino();
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => {
                let cookie = super::store::namespace_cookie();
                return Ok(NsLock {
                    _lock: lock,
                    ns,
                    cookie,
                });
            }
            Err((back, Errno::EINTR)) => file = back,
            Err((_, errno)) => {
                return Err(Error::caused(
                    format!("locking {label}"),
                    std::io::Error::from(errno),
                ))
            }
        }
    }
}
