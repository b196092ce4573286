//! `nsctl netns add|del|list`: named namespaces with `ip netns` semantics, so `ip netns`
//! sees ours and we see its: a bind mount of the namespace on /run/netns/NAME, with /run/netns
//! itself a shared mount so the name is visible in every mount namespace.
//!
//! Crash and concurrency safety: `add` and `del` take one flock ([`LOCK_PATH`]) around their
//! look-then-change, so two `add`s of one name never both create it, and reclaim a leftover
//! plain file at /run/netns/NAME (a run killed between creating the file and mounting on it).
//! `list` shows only real namespace mounts (nsfs).

use std::fs::{File, OpenOptions};
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Subcommand;
use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::statfs::FsType;
use serde::Serialize;

use common::netns::NETNS_RUN_DIR;
use common::types::NsName;
use common::{Context, Ctx, Error, Outcome, Result};

#[derive(Subcommand, Debug)]
pub enum Netns {
    /// Create namespace NAME, bind-mounted on /run/netns/NAME (like `ip netns add NAME`)
    Add {
        /// Namespace name: [A-Za-z0-9_.-]{1,64}
        name: NsName,
    },
    /// Delete namespace NAME, even with links or processes still inside (like `ip netns del`)
    Del {
        /// Namespace name
        #[arg(add = common::complete::namespaces())]
        name: NsName,
    },
    /// List the named namespaces (like `ip netns list`)
    List,
}

#[derive(Serialize)]
struct Entry {
    name: String,
    path: String,
}

impl Entry {
    fn of(name: &NsName) -> Entry {
        Entry {
            name: name.to_string(),
            path: name.path().display().to_string(),
        }
    }
}

impl Netns {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Netns::Add { name } => {
                let changed = add(&name, ctx.check)?;
                Outcome::object(changed, "netns", Entry::of(&name))
            }
            Netns::Del { name } => {
                let changed = del(&name, ctx.check)?;
                Outcome::object(changed, "netns", Entry::of(&name))
            }
            Netns::List => Outcome::listing("netns", list()?),
        }
    }
}

/// Where add and del of every name take turns (an flock, which the kernel drops when the holder
/// dies, even by SIGKILL). Outside /run/netns: `ip netns list` shows every file in there.
const LOCK_PATH: &str = "/run/niransix/netns.lock";

/// Holds the namespace lock until dropped.
struct NetnsLock {
    _flock: Flock<File>,
}

/// Waits for the lock that serialises `netns add`/`del` across processes.
fn lock(name: &NsName) -> Result<NetnsLock> {
    let what = || format!("locking {LOCK_PATH} to change namespace {name}");
    if let Some(dir) = Path::new(LOCK_PATH).parent() {
        std::fs::create_dir_all(dir).with_context(what)?;
    }
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .mode(0o600)
        .open(LOCK_PATH)
        .with_context(what)?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map(|flock| NetnsLock { _flock: flock })
        .map_err(|(_, errno)| Error::caused(what(), errno))
}

/// What is at /run/netns/NAME.
#[derive(Debug, PartialEq, Eq)]
enum Found {
    /// A namespace is mounted there.
    Mounted,
    /// A file that is not a namespace mount: what a killed `add` (ours or `ip netns add`) or
    /// `del` leaves between creating the file and mounting on it, or unmounting and unlinking.
    Leftover,
    Absent,
}

fn inspect(path: &Path) -> Result<Found> {
    match nix::sys::statfs::statfs(path) {
        Ok(st) if st.filesystem_type() == FsType(libc::NSFS_MAGIC) => Ok(Found::Mounted),
        Ok(_) => Ok(Found::Leftover),
        Err(Errno::ENOENT) => Ok(Found::Absent),
        Err(e) => Err(Error::caused(format!("inspecting {}", path.display()), e)),
    }
}

/// Makes /run/netns exist and be a shared mount (once per process), as `ip netns add` does, so
/// a namespace mounted there later shows up in every mount namespace.
fn share_run_dir() -> Result<()> {
    static DONE: AtomicBool = AtomicBool::new(false);
    if DONE.load(Ordering::Relaxed) {
        return Ok(());
    }
    let dir = Path::new(NETNS_RUN_DIR);
    std::fs::create_dir_all(dir).with_context(|| format!("creating {NETNS_RUN_DIR}"))?;
    let shared = || {
        mount(
            Some(""),
            dir,
            Some("none"),
            MsFlags::MS_SHARED | MsFlags::MS_REC,
            None::<&str>,
        )
    };
    if let Err(Errno::EINVAL) = shared() {
        // Not a mount point yet: bind it onto itself first.
        mount(
            Some(dir),
            dir,
            Some("none"),
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .with_context(|| format!("bind-mounting {NETNS_RUN_DIR} onto itself"))?;
    }
    shared().with_context(|| format!("making {NETNS_RUN_DIR} a shared mount"))?;
    DONE.store(true, Ordering::Relaxed);
    Ok(())
}

/// Creates the namespace; `Ok(false)` if it already exists. Crash-safe: under the lock, a
/// leftover file at /run/netns/NAME (from an `add` killed before it mounted, or a `del` killed
/// after it unmounted) is reclaimed, so a kill at any instant never blocks the next run.
pub fn add(name: &NsName, check: bool) -> Result<bool> {
    let path = name.path();
    // A mounted namespace is final: no need to wait for the lock to say so.
    if inspect(&path)? == Found::Mounted {
        return Ok(false);
    }
    if check {
        return Ok(true);
    }
    let _lock = lock(name)?;
    match inspect(&path)? {
        // Another `add` of the same name got the lock first.
        Found::Mounted => return Ok(false),
        Found::Leftover => reclaim(name, &path)?,
        Found::Absent => {}
    }
    share_run_dir()?;
    OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
        .with_context(|| format!("adding namespace {name}: creating {}", path.display()))?;
    let made = std::thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            unshare(CloneFlags::CLONE_NEWNET).context("creating a network namespace (unshare)")?;
            // /proc/thread-self: /proc/self would be the main thread's namespace.
            mount(
                Some("/proc/thread-self/ns/net"),
                &path,
                Some("none"),
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .with_context(|| format!("bind-mounting the namespace on {}", path.display()))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::failed("namespace creation thread panicked")))
    });
    if let Err(e) = made {
        let _ = std::fs::remove_file(&path);
        return Err(Error::caused(format!("adding namespace {name}"), e));
    }
    common::vlog!(1, "added namespace {name}");
    Ok(true)
}

/// Removes a leftover /run/netns/NAME that is not a namespace mount (whatever is mounted on it,
/// then the file), so `add` can create it afresh. The caller holds the lock.
fn reclaim(name: &NsName, path: &Path) -> Result<()> {
    common::vlog!(1, "reclaiming leftover {}", path.display());
    unmount_and_remove(path).with_context(|| {
        format!(
            "adding namespace {name}: reclaiming the leftover {}",
            path.display()
        )
    })
}

/// Detaches whatever is mounted on `path` and removes the file; a plain file (EINVAL: not a
/// mount point) or a file already gone are fine.
fn unmount_and_remove(path: &Path) -> std::io::Result<()> {
    match umount2(path, MntFlags::MNT_DETACH) {
        Ok(()) | Err(Errno::EINVAL) | Err(Errno::ENOENT) => {}
        Err(e) => return Err(e.into()),
    }
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// Deletes the namespace's name; the kernel frees it once no process or mount holds it.
/// `Ok(false)` if there was none. A leftover file (see [`add`]) is removed too.
pub fn del(name: &NsName, check: bool) -> Result<bool> {
    let path = name.path();
    if inspect(&path)? == Found::Absent {
        return Ok(false);
    }
    if check {
        return Ok(true);
    }
    let _lock = lock(name)?;
    // Another `del` of the same name got the lock first.
    if inspect(&path)? == Found::Absent {
        return Ok(false);
    }
    unmount_and_remove(&path)
        .with_context(|| format!("deleting namespace {name} ({})", path.display()))?;
    common::vlog!(1, "deleted namespace {name}");
    Ok(true)
}

/// The mounted namespaces under /run/netns, sorted; leftover files that are not namespace
/// mounts are skipped (one statfs per entry).
/// The names under /run/netns, unchecked (a leftover file that is no namespace among them;
/// none if /run/netns cannot be read): for a caller that asks the kernel about each anyway.
pub fn names() -> Vec<NsName> {
    let Ok(dir) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return vec![];
    };
    dir.flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect()
}

fn list() -> Result<Vec<Entry>> {
    let dir = match std::fs::read_dir(NETNS_RUN_DIR) {
        Ok(d) => d,
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => return Err(Error::caused(format!("reading {NETNS_RUN_DIR}"), e)),
    };
    let mut out = Vec::new();
    for ent in dir {
        let ent = ent.with_context(|| format!("reading {NETNS_RUN_DIR}"))?;
        let path = ent.path();
        match inspect(&path) {
            Ok(Found::Mounted) => out.push(Entry {
                name: ent.file_name().to_string_lossy().into_owned(),
                path: path.display().to_string(),
            }),
            Ok(_) => common::vlog!(1, "skipping {}: not a namespace mount", path.display()),
            Err(e) => common::vlog!(1, "skipping {}: {e}", path.display()),
        }
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
