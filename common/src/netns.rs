//! Entering network namespaces.
//!
//! `setns(2)` moves only the calling thread, and a socket stays in the namespace it was opened
//! in. So: the main thread enters the `--ns` target before any netlink, nftables or WireGuard
//! socket exists, and work that belongs to a *second* namespace runs on a short-lived thread
//! that enters it first ([`run_in`]), or passes the namespace's fd to the kernel (`setns_by_fd`).

use std::fs::{File, FileType, OpenOptions};
use std::os::fd::{AsFd, AsRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;

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
    /// Opens a namespace by name or path, without ever blocking.
    ///
    /// The path is checked before it is opened, so a FIFO, a directory or a device given as a
    /// namespace is refused at once (exit 2) instead of hanging in `open(2)` or reaching
    /// `setns(2)`; the open itself is non-blocking, in case the path is swapped meanwhile. What is
    /// opened must be an nsfs file of a *network* namespace. A missing namespace is a failed
    /// operation (exit 1), and so is a leftover `/run/netns/NAME` that is no longer a namespace
    /// mount (an interrupted `netns add`): for a name, that is a namespace that is not there.
    pub fn open(target: &NsTarget) -> Result<Self> {
        let path = target.path();
        let shown = path.display();
        let opening = || format!("opening network namespace '{target}'");
        match std::fs::metadata(&path) {
            Ok(meta) => check_regular(target, &meta.file_type())?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                return Err(not_found(target));
            }
            Err(e) => return Err(Error::caused(opening(), e)),
        }
        let file = OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NONBLOCK | libc::O_CLOEXEC)
            .open(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => not_found(target),
                _ => Error::caused(opening(), e),
            })?;
        let meta = file.metadata().with_context(opening)?;
        check_regular(target, &meta.file_type())?;
        let fs = nix::sys::statfs::fstatfs(&file).with_context(opening)?;
        if fs.filesystem_type() != nix::sys::statfs::NSFS_MAGIC {
            return Err(match target {
                NsTarget::Name(_) => Error::failed(format!(
                    "network namespace '{target}' not found ({shown} is a leftover file, not a \
                     namespace mount)"
                )),
                NsTarget::Path(_) => Error::invalid(format!(
                    "namespace path '{shown}' is a plain file, not a namespace"
                )),
            });
        }
        // SAFETY: `file` stays open across the call, and NS_GET_NSTYPE takes no argument: the
        // kernel reads nothing from and writes nothing to our memory, it only returns a number.
        let kind = unsafe { libc::ioctl(file.as_raw_fd(), NS_GET_NSTYPE) };
        // An old kernel without the ioctl (< 4.11) answers an error: setns checks the type then.
        if kind >= 0 && kind != libc::CLONE_NEWNET {
            return Err(Error::invalid(format!(
                "namespace path '{shown}' is not a network namespace"
            )));
        }
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

    /// Moves the calling thread into this namespace; nothing to do when it is already there.
    ///
    /// `setns(2)` needs CAP_SYS_ADMIN even into the thread's own namespace, so skipping that
    /// case is what lets an unprivileged caller run the commands that need no privilege.
    pub fn enter(&self) -> Result<()> {
        if self.is_current() {
            return Ok(());
        }
        setns(self.fd.as_fd(), CloneFlags::CLONE_NEWNET)
            .with_context(|| format!("entering network namespace '{}'", self.label))
    }

    /// True if the calling thread is in this namespace (false when that cannot be told).
    fn is_current(&self) -> bool {
        let here = nix::sys::stat::stat("/proc/thread-self/ns/net");
        let this = nix::sys::stat::fstat(self.fd.as_fd());
        matches!((here, this), (Ok(a), Ok(b)) if (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino))
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

/// `ioctl(NS_GET_NSTYPE)` from <linux/nsfs.h> (`_IO(0xb7, 0x3)`): the `CLONE_NEW*` type of a
/// namespace fd.
const NS_GET_NSTYPE: libc::Ioctl = 0xb703;

fn not_found(target: &NsTarget) -> Error {
    Error::failed(format!(
        "network namespace '{target}' not found ({})",
        target.path().display()
    ))
}

/// A namespace file is a regular file (nsfs); anything else is refused before it is opened.
fn check_regular(target: &NsTarget, kind: &FileType) -> Result<()> {
    if kind.is_file() {
        return Ok(());
    }
    let what = crate::files::describe(kind);
    Err(Error::invalid(match target {
        NsTarget::Name(_) => format!(
            "namespace '{target}' ({}) is {what}, not a network namespace",
            target.path().display()
        ),
        NsTarget::Path(_) => {
            format!("namespace path '{target}' is {what}, not a network namespace")
        }
    }))
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

#[cfg(test)]
mod tests {
    use super::*;

    /// The check at open time (behind the one in `NsTarget`'s parser, which a name or a path
    /// appearing later gets past): a FIFO is refused, never opened for a blocking read.
    #[test]
    fn namespace_paths_that_are_not_namespaces_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("netns-open-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        let plain = dir.join("plain");
        std::fs::write(&plain, "").unwrap();
        for (path, what) in [
            (fifo.clone(), "a FIFO"),
            (dir.clone(), "a directory"),
            ("/dev/null".into(), "a character device"),
            (plain, "a plain file"),
        ] {
            let e = NetnsFd::open(&NsTarget::Path(path.clone())).unwrap_err();
            let msg = e.to_string();
            assert_eq!(e.exit_code(), 2, "{msg}");
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(what),
                "{msg}"
            );
        }
        let missing = NetnsFd::open(&NsTarget::Path(dir.join("missing"))).unwrap_err();
        assert_eq!(missing.exit_code(), 1);
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
