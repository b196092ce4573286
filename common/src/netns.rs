//! Entering network namespaces.
//!
//! `setns(2)` moves only the calling thread, and a socket stays in the namespace it was opened
//! in. So: the main thread enters the `--ns` target before any netlink, nftables or WireGuard
//! socket exists, and work that belongs to a *second* namespace runs on a short-lived thread
//! that enters it first ([`run_in`]), or passes the namespace's fd to the kernel (`setns_by_fd`).

use std::fs::File;
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};

use nix::sched::{setns, CloneFlags};

use crate::error::{Context, Error, Result};
use crate::types::NsTarget;

/// Where `ip netns` bind-mounts named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// An open network namespace.
#[derive(Debug)]
pub struct NetnsFd {
    fd: OwnedFd,
    label: String,
}

impl NetnsFd {
    /// Opens a namespace by name or path. A missing namespace is a failed operation (exit 1).
    pub fn open(target: &NsTarget) -> Result<Self> {
        let path = target.path();
        let file = File::open(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Error::failed(format!(
                    "network namespace '{target}' not found ({})",
                    path.display()
                ))
            } else {
                Error::caused(format!("opening network namespace '{target}'"), e)
            }
        })?;
        Ok(NetnsFd {
            fd: file.into(),
            label: target.to_string(),
        })
    }

    /// The calling thread's current namespace.
    pub fn current() -> Result<Self> {
        let file = File::open("/proc/thread-self/ns/net")
            .context("opening the current network namespace")?;
        Ok(NetnsFd {
            fd: file.into(),
            label: "(current)".into(),
        })
    }

    /// Moves the calling thread into this namespace.
    pub fn enter(&self) -> Result<()> {
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace '{}'", self.label))
    }

    pub fn raw(&self) -> RawFd {
        self.fd.as_raw_fd()
    }

    pub fn label(&self) -> &str {
        &self.label
    }

    /// The kernel's identity of the namespace (device, inode), to compare two namespaces.
    pub fn id(&self) -> Result<(u64, u64)> {
        let st = nix::sys::stat::fstat(self.fd.as_fd())
            .with_context(|| format!("inspecting network namespace '{}'", self.label))?;
        Ok((st.st_dev, st.st_ino))
    }
}

/// Runs `f` on a fresh thread that first enters `ns`; the caller's thread is untouched.
/// `f` may build its own current-thread runtime and open sockets: they live in `ns`.
pub fn run_in<T: Send>(ns: &NetnsFd, f: impl FnOnce() -> Result<T> + Send) -> Result<T> {
    std::thread::scope(|s| {
        s.spawn(|| {
            ns.enter()?;
            f()
        })
        .join()
        .unwrap_or_else(|_| {
            Err(Error::failed(format!(
                "worker in namespace '{}' panicked",
                ns.label
            )))
        })
    })
}

/// A current-thread tokio runtime: everything stays on the thread that entered the namespace.
pub fn runtime() -> Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")
}
