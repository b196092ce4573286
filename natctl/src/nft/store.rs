//! natctl's rule ids kept between processes: the in-process cache (`cache`) on disk.
//!
//! Every natctl command runs in a process of its own, so without this each add dumped the whole
//! table to learn whether its id is there: at a hub center of 1,000 peers (3,000 rules), 25 ms of
//! the kernel's time and ~30 ms of ours, per add. The dump's result is only valid for as long as
//! the ruleset generation does not move, and nf_tables moves it on every commit, by anyone; so a
//! stored id set records the generation it holds for, and is used only while the kernel still
//! reports that generation. Stale files are therefore never trusted, only replaced.
//!
//! A file per namespace, named by the namespace's cookie (SO_NETNS_COOKIE: unique until reboot,
//! where an nsfs inode may be reused by a later namespace), in /run/niransix/natctl (mode 0700;
//! /run is emptied at boot). Only tables of [`MIN_IDS`] rules or more are stored (a small table
//! dumps in well under a millisecond), the directory keeps the [`MAX_FILES`] most recently used,
//! and a namespace whose table shrinks below the threshold loses its file. Reads and writes
//! happen under the namespace's natctl lock (`lock`), so two natctls never race on one file;
//! a write is a new file renamed into place, so a killed natctl leaves the old one or the new.
//! Any failure here only means a dump.

use std::collections::HashSet;
use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

const DIR: &str = "/run/niransix/natctl";
/// Tables with fewer rules than this are not stored.
pub const MIN_IDS: usize = 256;
/// At most this many files are kept (the least recently written go first).
const MAX_FILES: usize = 32;

// Not in the libc crate for linux-gnu (include/uapi/asm-generic/socket.h).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The first word of a file: its format. Files of another format are not read, only replaced:
/// `v1` (natctl before ids were audited stored every id it saw as present) and `v2` (its
/// `complete` meant "the ten base chains exist", from before `zones_out` and `marks_out`: trusted,
/// it would make the next add skip creating them and then fail to add a rule there), and `v3`
/// (its `complete` did not cover the dispatch maps and rules of per-key chains: `dispatch`).
const FORMAT: &str = "v4";

/// What a file holds for the generation asked for: the ids of natctl's table held intact, the
/// ids held otherwise (tampered with or incomplete, each on a line `!ID`), and whether its base
/// chains were known to exist.
pub struct Stored {
    pub complete: bool,
    pub ids: HashSet<String>,
    pub stale: HashSet<String>,
}

/// The cookie of the namespace the calling thread is in (Linux 5.14), if the kernel tells.
pub fn namespace_cookie() -> Option<u64> {
    // A socket belongs to the namespace it was made in; an unbound unix one touches nothing.
    let sock = UnixDatagram::unbound().ok()?;
    let mut cookie: u64 = 0;
    let mut len = std::mem::size_of::<u64>() as libc::socklen_t;
    // SAFETY: the kernel writes at most `len` bytes into `cookie`, which is that long.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            SO_NETNS_COOKIE,
            (&raw mut cookie).cast(),
            &mut len,
        )
    };
    (rc == 0).then_some(cookie)
}

fn path(cookie: u64) -> PathBuf {
    PathBuf::from(DIR).join(format!("{cookie:016x}"))
}

/// The stored ids of namespace `cookie`, if there are some and they hold for `generation`.
pub fn load(cookie: u64, generation: u32) -> Option<Stored> {
    let text = fs::read_to_string(path(cookie)).ok()?;
    let mut lines = text.lines();
    let mut head = lines.next()?.split_whitespace();
    if head.next()? != FORMAT {
        return None;
    }
    let stored_gen: u32 = head.next()?.parse().ok()?;
    let complete = head.next()? == "complete";
    if stored_gen != generation {
        return None;
    }
    let (mut ids, mut stale) = (HashSet::new(), HashSet::new());
    for line in lines {
        match line.strip_prefix('!') {
            Some(id) => stale.insert(id.to_string()),
            None => ids.insert(line.to_string()),
        };
    }
    Some(Stored {
        complete,
        ids,
        stale,
    })
}

/// Stores `ids` (intact) and `stale`, natctl's table at `generation` (`complete`: its base
/// chains exist), for namespace `cookie`, or removes its file when the table is small.
pub fn save(
    cookie: u64,
    generation: u32,
    complete: bool,
    ids: &HashSet<String>,
    stale: &HashSet<String>,
) {
    let file = path(cookie);
    if ids.len() + stale.len() < MIN_IDS {
        return forget(cookie);
    }
    if let Err(e) = write(&file, generation, complete, ids, stale) {
        common::vlog!(
            2,
            "natctl: not keeping the rule ids in {}: {e}",
            file.display()
        );
        let _ = fs::remove_file(&file);
    }
}

/// Drops the file of namespace `cookie` (its table is gone).
pub fn forget(cookie: u64) {
    let _ = fs::remove_file(path(cookie));
}

fn write(
    file: &PathBuf,
    generation: u32,
    complete: bool,
    ids: &HashSet<String>,
    stale: &HashSet<String>,
) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(DIR)?;
    let state = if complete { "complete" } else { "partial" };
    let mut text = format!("{FORMAT} {generation} {state}\n");
    for id in ids {
        text.push_str(id);
        text.push('\n');
    }
    for id in stale {
        text.push('!');
        text.push_str(id);
        text.push('\n');
    }
    let tmp = file.with_extension(format!("tmp{}", std::process::id()));
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)?;
    f.write_all(text.as_bytes())?;
    fs::rename(&tmp, file)?;
    prune();
    Ok(())
}

/// Keeps the [`MAX_FILES`] most recently written files.
fn prune() {
    let Ok(dir) = fs::read_dir(DIR) else { return };
    let mut files: Vec<(std::time::SystemTime, PathBuf)> = dir
        .filter_map(|e| {
            let e = e.ok()?;
            Some((e.metadata().ok()?.modified().ok()?, e.path()))
        })
        .collect();
    if files.len() <= MAX_FILES {
        return;
    }
    files.sort();
    for (_, old) in &files[..files.len() - MAX_FILES] {
        let _ = fs::remove_file(old);
    }
}
