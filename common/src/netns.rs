//! Entering network namespaces: one way, on the calling thread, with a guard.
//!
//! `setns(2)` moves only the calling thread, and a socket stays in the namespace it was opened
//! in. So everything that must happen *in* a namespace (opening a netlink or generic-netlink
//! socket, binding a UDP probe, starting wireguard-go) runs inside [`NetnsFd::enter`]'s
//! [`Entered`] guard, or [`run_in`] which wraps it; what a socket then does can run anywhere.
//!
//! The guard takes the thread back when it is dropped (also when the work panics). If going
//! back fails, the process aborts: a thread left in the wrong namespace would run the next
//! batch line, or print a report, against the wrong kernel objects, and nothing can be trusted
//! after that. (netavark's `exec_netns!` does the same round trip but returns the error and
//! leaves the thread where it is.) The guard is not `Send`, so it cannot be moved to, or held
//! across an `.await` on, another thread.
//!
//! Why not a thread per namespace (what this module did before): a short-lived thread cannot
//! drive the process's one current-thread runtime while the caller is inside `block_on`, so it
//! needed a runtime of its own each time; and every piece of work done in a namespace here is
//! short and synchronous, so a scoped setns on the calling thread is the cheaper correct shape.
//!
//! The one tokio runtime of the process is [`runtime`]: current-thread, built on first use.

use std::fs::{File, FileType, OpenOptions};
use std::future::Future;
use std::marker::PhantomData;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::OnceLock;

use nix::sched::{setns, CloneFlags};

use crate::error::{Context, Error, Result};
use crate::types::NsTarget;

pub use crate::types::NETNS_RUN_DIR;

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

    /// Moves the calling thread into this namespace until the returned guard is dropped;
    /// nothing to do (and nothing to undo) when it is already there.
    ///
    /// `setns(2)` needs CAP_SYS_ADMIN even into the thread's own namespace, so skipping that
    /// case is what lets an unprivileged caller run the commands that need no privilege.
    pub fn enter(&self) -> Result<Entered> {
        if self.is_current() {
            return Ok(Entered::stayed());
        }
        let home = NetnsFd::current()?;
        self.setns()?;
        Ok(Entered {
            home: Some(home),
            visited: self.label.clone(),
            _thread: PhantomData,
        })
    }

    /// Moves the calling thread into this namespace for good: only for a thread that is about
    /// to be replaced (`nsctl exec` before `execvp`).
    pub fn enter_for_good(&self) -> Result<()> {
        if self.is_current() {
            return Ok(());
        }
        self.setns()
    }

    fn setns(&self) -> Result<()> {
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

    pub fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
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

/// The identity (device, inode) of the calling thread's network namespace, as [`NetnsFd::id`]
/// gives it, without opening the namespace: one stat(2).
pub fn current_id() -> Result<(u64, u64)> {
    let st = nix::sys::stat::stat("/proc/thread-self/ns/net")
        .context("inspecting the current network namespace")?;
    Ok((st.st_dev, st.st_ino))
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

/// The calling thread is inside another namespace while this lives ([`NetnsFd::enter`]).
#[must_use = "the thread goes back as soon as the guard is dropped"]
#[derive(Debug)]
pub struct Entered {
    /// Where to go back to; None when the thread was already in the namespace.
    home: Option<NetnsFd>,
    visited: String,
    /// Not `Send` or `Sync`: the guard is dropped on the thread it moved.
    _thread: PhantomData<*const ()>,
}

impl Entered {
    fn stayed() -> Self {
        Entered {
            home: None,
            visited: String::new(),
            _thread: PhantomData,
        }
    }
}

impl Drop for Entered {
    fn drop(&mut self) {
        let Some(home) = &self.home else {
            return;
        };
        if let Err(e) = setns(home.fd.as_fd(), CloneFlags::CLONE_NEWNET) {
            eprintln!(
                "fatal: could not return from network namespace '{}' to the caller's: {e}; \
                 aborting so that nothing more runs in the wrong namespace",
                self.visited
            );
            std::process::abort();
        }
    }
}

/// Runs `f` on the calling thread inside `ns`, then takes the thread back (see [`Entered`]).
/// Sockets `f` opens stay in `ns`.
pub fn run_in<T>(ns: &NetnsFd, f: impl FnOnce() -> Result<T>) -> Result<T> {
    let _entered = ns.enter()?;
    f()
}

/// The process's tokio runtime: current-thread (everything stays on the thread that entered
/// the namespace), built on first use and reused by every command of a batch.
pub fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    if let Some(rt) = RUNTIME.get() {
        return Ok(rt);
    }
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the async runtime")?;
    Ok(RUNTIME.get_or_init(|| rt))
}

/// Runs a future to completion on [`runtime`], on the calling thread. Not from inside a
/// future (tokio refuses to nest `block_on`).
pub fn block_on<F: Future>(fut: F) -> Result<F::Output> {
    Ok(runtime()?.block_on(fut))
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

    /// The kernel's identity of the calling thread's namespace.
    fn here() -> (u64, u64) {
        let st = nix::sys::stat::stat("/proc/thread-self/ns/net").unwrap();
        (st.st_dev, st.st_ino)
    }

    /// A fresh namespace that nothing but the returned fd keeps alive (the thread that made it
    /// has exited). None (the test is skipped) without root.
    fn scratch() -> Option<NetnsFd> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root (setns, unshare)");
            return None;
        }
        let made = std::thread::spawn(|| {
            nix::sched::unshare(CloneFlags::CLONE_NEWNET).unwrap();
            NetnsFd::current().unwrap()
        });
        let mut ns = made.join().unwrap();
        ns.label = "scratch".into();
        Some(ns)
    }

    #[test]
    fn the_guard_takes_the_thread_back_on_success_error_and_panic() {
        let Some(ns) = scratch() else { return };
        let home = here();
        let inside = run_in(&ns, || Ok(here())).unwrap();
        assert_eq!(inside, ns.id().unwrap());
        assert_ne!(inside, home);
        assert_eq!(here(), home, "back after success");

        let failed = run_in(&ns, || -> Result<()> { Err(Error::failed("on purpose")) });
        assert!(failed.is_err());
        assert_eq!(here(), home, "back after an error");

        let panicked = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            run_in(&ns, || -> Result<()> { panic!("on purpose") })
        }));
        assert!(panicked.is_err());
        assert_eq!(here(), home, "back after a panic");

        // Entering where the thread already is changes nothing and undoes nothing.
        let current = NetnsFd::current().unwrap();
        drop(current.enter().unwrap());
        assert_eq!(here(), home);
    }

    /// A namespace whose name is deleted while we hold it: the fd keeps it alive, the work
    /// runs there, and the thread still comes back; once the name is gone, opening it fails
    /// without moving the thread.
    #[test]
    fn a_namespace_deleted_meanwhile_never_keeps_the_thread() {
        let Some(ns) = scratch() else { return };
        let home = here();
        let dir = std::env::temp_dir().join(format!("netns-del-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("ns");
        std::fs::write(&file, "").unwrap();
        let source = format!("/proc/self/fd/{}", ns.raw());
        nix::mount::mount(
            Some(source.as_str()),
            &file,
            None::<&str>,
            nix::mount::MsFlags::MS_BIND,
            None::<&str>,
        )
        .unwrap();
        let target = NsTarget::Path(file.clone());
        let opened = NetnsFd::open(&target).unwrap();
        drop(ns);
        let entered = opened.enter().unwrap();
        // Deleted meanwhile, the way `nsctl netns del` does it.
        nix::mount::umount2(&file, nix::mount::MntFlags::MNT_DETACH).unwrap();
        std::fs::remove_file(&file).unwrap();
        assert_eq!(here(), opened.id().unwrap());
        drop(entered);
        assert_eq!(here(), home);
        assert_eq!(NetnsFd::open(&target).unwrap_err().exit_code(), 1);
        assert_eq!(here(), home);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    /// If the way back fails, the process aborts before anything else runs: the caller never
    /// gets its thread back in the wrong namespace. Run in a child copy of this test binary.
    #[test]
    fn a_failed_return_aborts_before_anything_else_runs() {
        const CHILD: &str = "NETNS_GUARD_ABORT_CHILD";
        if std::env::var_os(CHILD).is_some() {
            let Some(ns) = scratch() else { return };
            let mut entered = ns.enter().unwrap();
            // A home that setns(CLONE_NEWNET) refuses: a UTS namespace.
            entered.home = Some(NetnsFd {
                fd: File::open("/proc/thread-self/ns/uts").unwrap().into(),
                label: "not a network namespace".into(),
            });
            println!("inside");
            drop(entered);
            println!("after the guard");
            return;
        }
        let Some(out) = in_child("a_failed_return_aborts_before_anything_else_runs", CHILD) else {
            return;
        };
        let stdout = String::from_utf8_lossy(&out.stdout);
        let stderr = String::from_utf8_lossy(&out.stderr);
        use std::os::unix::process::ExitStatusExt;
        assert_eq!(
            out.status.signal(),
            Some(libc::SIGABRT),
            "{stdout}\n{stderr}"
        );
        assert!(stdout.contains("inside"), "{stdout}");
        assert!(!stdout.contains("after the guard"), "{stdout}");
        assert!(
            stderr.contains("could not return from network namespace 'scratch'"),
            "{stderr}"
        );
    }

    /// Runs test `name` alone in a child copy of this test binary with `env` set (so counts
    /// of threads and descriptors see no other test, and an abort kills only the child).
    fn in_child(name: &str, env: &str) -> Option<std::process::Output> {
        if !nix::unistd::geteuid().is_root() {
            eprintln!("skipped: needs root");
            return None;
        }
        let out = std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                &format!("netns::tests::{name}"),
                "--nocapture",
                "--test-threads=1",
            ])
            .env(env, "1")
            .output()
            .unwrap();
        Some(out)
    }

    fn count(dir: &str) -> usize {
        std::fs::read_dir(dir).unwrap().count()
    }

    /// What a batch does per line, 200 times in 200 namespaces: enter, talk netlink over the
    /// command's connection, end the command, come back. Threads and descriptors stay level.
    #[test]
    fn many_namespaces_in_one_process_leak_no_threads_or_fds() {
        const CHILD: &str = "NETNS_MANY_CHILD";
        if std::env::var_os(CHILD).is_none() {
            let name = "many_namespaces_in_one_process_leak_no_threads_or_fds";
            if let Some(out) = in_child(name, CHILD) {
                let stdout = String::from_utf8_lossy(&out.stdout);
                let stderr = String::from_utf8_lossy(&out.stderr);
                assert!(out.status.success(), "{stdout}\n{stderr}");
                assert!(stdout.contains("1 passed"), "{stdout}");
            }
            return;
        }
        let Some(first) = scratch() else { return };
        let spaces: Vec<NetnsFd> = std::iter::once(first)
            .chain((1..200).map(|_| scratch().unwrap()))
            .collect();
        let home = here();
        let line = |ns: &NetnsFd| {
            let res = run_in(ns, || {
                let handle = crate::nl::connect()?;
                // A second request in the same namespace reuses the connection.
                let again = crate::nl::connect()?;
                let links = block_on(crate::nl::links(&handle))??;
                let lo = block_on(crate::nl::find_link(&again, "lo"))??;
                Ok((links.len(), lo.is_some()))
            });
            // As the batch runner does when a line is done.
            crate::nl::close_all();
            res
        };
        // Warm up: the runtime and its threadless driver exist from here on.
        line(&spaces[0]).unwrap();
        let (tasks, fds) = (count("/proc/self/task"), count("/proc/self/fd"));
        for ns in &spaces {
            assert_eq!(line(ns).unwrap(), (1, true));
            assert_eq!(here(), home);
        }
        assert_eq!(count("/proc/self/task"), tasks, "threads");
        assert_eq!(count("/proc/self/fd"), fds, "descriptors");
    }
}
