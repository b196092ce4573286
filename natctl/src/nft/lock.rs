//! Serialises natctl processes acting on the same namespace.
//!
//! nftables has no "add this rule unless an equal one exists", so adding is read, compare, then
//! write. Two processes doing that at once could both see "absent" and both append. natctl
//! therefore takes an exclusive `flock` on the namespace itself (its nsfs inode, opened through
//! `/proc/thread-self/ns/net`): every opener of one namespace gets the same inode, so the lock is
//! per namespace, needs no lock files, and goes away with the process (a killed natctl never
//! leaves it held) or with the namespace.
//!
//! The lock is re-entrant within a thread: a batch's deferred adds (`pending`) hold it from the
//! first to the commit, and each add in between takes it again (a second `flock` of the same
//! process on another descriptor would wait for the first forever).

use std::cell::RefCell;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::MetadataExt;
use std::rc::{Rc, Weak};

use common::{Context, Error, Result};
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

/// Held until the last clone is dropped.
#[derive(Clone)]
pub struct NsLock {
    _lock: Rc<Flock<File>>,
    /// The namespace's inode: its identity for as long as it exists.
    pub ns: u64,
    /// Its cookie, unique until reboot (`store` names files by it), if the kernel tells.
    pub cookie: Option<u64>,
}

thread_local! {
    /// The locks this thread holds, by namespace inode.
    static HELD: RefCell<HashMap<u64, Weak<Flock<File>>>> = RefCell::new(HashMap::new());
}

/// Takes the lock of the namespace the calling thread is in (waits for other natctls), or
/// shares it if this thread holds it already.
pub fn namespace(label: &str) -> Result<NsLock> {
    let mut file =
        File::open("/proc/thread-self/ns/net").with_context(|| format!("opening {label}"))?;
    let ns = file
        .metadata()
        .with_context(|| format!("identifying {label}"))?
        .ino();
    let held = HELD.with(|h| h.borrow().get(&ns).and_then(Weak::upgrade));
    if let Some(lock) = held {
        return Ok(NsLock {
            _lock: lock,
            ns,
            cookie: super::store::namespace_cookie(),
        });
    }
    loop {
        match Flock::lock(file, FlockArg::LockExclusive) {
            Ok(lock) => {
                let lock = Rc::new(lock);
                HELD.with(|h| h.borrow_mut().insert(ns, Rc::downgrade(&lock)));
                return Ok(NsLock {
                    _lock: lock,
                    ns,
                    cookie: super::store::namespace_cookie(),
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
