//! `nsctl netns add|del|list`: named namespaces with `ip netns` semantics, so `ip netns`
//! sees ours and we see its: a bind mount of the namespace on /run/netns/NAME, with /run/netns
//! itself a shared mount so the name is visible in every mount namespace.

use std::fs::OpenOptions;
use std::io::ErrorKind;
use std::os::unix::fs::OpenOptionsExt;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};

use clap::Subcommand;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
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

#[derive(Serialize)]
struct Changed {
    changed: bool,
    netns: Entry,
}

#[derive(Serialize)]
struct Listing {
    changed: bool,
    netns: Vec<Entry>,
}

impl Netns {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Netns::Add { name } => {
                let changed = add(&name, ctx.check)?;
                Outcome::json(Changed {
                    changed,
                    netns: Entry::of(&name),
                })
            }
            Netns::Del { name } => {
                let changed = del(&name, ctx.check)?;
                Outcome::json(Changed {
                    changed,
                    netns: Entry::of(&name),
                })
            }
            Netns::List => Outcome::json(Listing {
                changed: false,
                netns: list()?,
            }),
        }
    }
}

/// True if `path` is a namespace bind mount (nsfs), false for a leftover plain file.
fn is_nsfs(path: &Path) -> Result<bool> {
    let st =
        nix::sys::statfs::statfs(path).with_context(|| format!("inspecting {}", path.display()))?;
    Ok(st.filesystem_type() == nix::sys::statfs::FsType(libc::NSFS_MAGIC))
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
    if let Err(nix::errno::Errno::EINVAL) = shared() {
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

/// Creates the namespace; `Ok(false)` if it already exists.
pub fn add(name: &NsName, check: bool) -> Result<bool> {
    let path = name.path();
    match std::fs::symlink_metadata(&path) {
        Ok(_) if is_nsfs(&path)? => return Ok(false),
        Ok(_) => {
            return Err(Error::failed(format!(
                "adding namespace {name}: {} exists but is not a namespace mount \
                 (a leftover? remove it with `nsctl netns del {name}`)",
                path.display()
            )))
        }
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => return Err(Error::caused(format!("inspecting {}", path.display()), e)),
    }
    if check {
        return Ok(true);
    }
    share_run_dir()?;
    match OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o000)
        .open(&path)
    {
        Ok(_) => {}
        // Someone else created it between our look and now: theirs is as good as ours.
        Err(e) if e.kind() == ErrorKind::AlreadyExists => return Ok(false),
        Err(e) => {
            return Err(Error::caused(
                format!("adding namespace {name}: creating {}", path.display()),
                e,
            ))
        }
    }
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

/// Deletes the namespace's name; the kernel frees it once no process or mount holds it.
/// `Ok(false)` if there was none.
pub fn del(name: &NsName, check: bool) -> Result<bool> {
    let path = name.path();
    match std::fs::symlink_metadata(&path) {
        Ok(_) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(Error::caused(format!("inspecting {}", path.display()), e)),
    }
    if check {
        return Ok(true);
    }
    match umount2(&path, MntFlags::MNT_DETACH) {
        // EINVAL: not a mount point (a leftover file); removing it is all there is to do.
        Ok(()) | Err(nix::errno::Errno::EINVAL) => {}
        Err(e) => {
            return Err(Error::caused(
                format!("deleting namespace {name}: unmounting {}", path.display()),
                e,
            ))
        }
    }
    match std::fs::remove_file(&path) {
        Ok(()) => {}
        Err(e) if e.kind() == ErrorKind::NotFound => {}
        Err(e) => {
            return Err(Error::caused(
                format!("deleting namespace {name}: removing {}", path.display()),
                e,
            ))
        }
    }
    common::vlog!(1, "deleted namespace {name}");
    Ok(true)
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
        out.push(Entry {
            name: ent.file_name().to_string_lossy().into_owned(),
            path: ent.path().display().to_string(),
        });
    }
    out.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(out)
}
