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
//! /run is emptied at boot). Only tables of [`MIN_IDS`] rules or more are stored (a table of a
//! few rules dumps and is checked in well under a millisecond), the directory keeps the
//! [`MAX_FILES`] most recently used, and a namespace whose table shrinks below the threshold
//! loses its file. Reads and writes
//! happen under the namespace's natctl lock (`lock`), so two natctls never race on one file.
//! Each id is stored with the chains that hold its nftables rules: a `del` then dumps only
//! those chains instead of the whole table.
//!
//! A file is a snapshot (written to a new file renamed into place), then a journal: one line
//! appended for each commit of ours since, each naming the generation that commit made. So one
//! rule added or deleted costs an append, not a rewrite of every id (at 1,000 tunnels, 12,000
//! ids: 12 rewrites of 0.5 MB for one tunnel's rules); the snapshot is written anew once the
//! journal is a quarter as long as it. An entry is trusted only when its generation follows the
//! one before it, and the file only when the last says the generation asked for, so a natctl
//! killed while appending leaves a file that is merely not trusted. The snapshot's first line
//! gives its length and a digest of its lines: a load checks it without
//! reading its 12,000 lines one by one (2 ms of a natctl beside 1,000 peers), and does not trust
//! a snapshot that is not byte for byte what natctl wrote.
//! Any failure here only means a dump.

use std::fs;
use std::io::{self, Write};
use std::os::fd::AsRawFd;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::PathBuf;

use super::held::HeldIds;

const DIR: &str = "/run/niransix/natctl";
/// Tables with fewer rules than this are not stored. (256 before: such a table dumps in well
/// under a millisecond, but checking each rule against its id costs more: a zones center of 10
/// peers, 130 ids, made every add batch of 12 rules dump and check them, 7–9 ms of CPU where the
/// stored ids take 3.)
pub const MIN_IDS: usize = 32;
/// At most this many files are kept (the least recently written go first).
const MAX_FILES: usize = 32;

// Not in the libc crate for linux-gnu (include/uapi/asm-generic/socket.h).
const SO_NETNS_COOKIE: libc::c_int = 71;

/// The first word of a file: its format. Files of another format are not read, only replaced:
/// `v1` (natctl before ids were audited stored every id it saw as present) and `v2` (its
/// `complete` meant "the ten base chains exist", from before `zones_out` and `marks_out`: trusted,
/// it would make the next add skip creating them and then fail to add a rule there), `v3`
/// (its `complete` did not cover the dispatch maps and rules of per-key chains: `dispatch`),
/// `v4` (no chains per id, no journal), `v5` (its snapshot's lines in no order), and `v6` (no
/// length or digest of its snapshot: each load checked every line).
const FORMAT: &str = "v7";

/// What a file holds for the generation asked for: the ids of natctl's table, each with how and
/// where it is held, whether its base chains were known to exist, and how many changes the
/// journal after its snapshot holds.
#[derive(Debug, Default, PartialEq)]
pub struct Stored {
    pub complete: bool,
    pub ids: HeldIds,
    pub journal: usize,
}

/// One change of a commit of ours, as the journal records it.
pub enum Entry<'a> {
    /// The rule of this id was added, in these chains (and the table is complete).
    Added(&'a str, &'a [String]),
    /// The rules of this id were deleted.
    Deleted(&'a str),
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
    parse(text, generation)
}

/// A file's TEXT, if it is whole, of this format, and holds for GENERATION. Its first line is
/// `FORMAT GENERATION complete|partial BYTES DIGEST`.
fn parse(mut text: String, generation: u32) -> Option<Stored> {
    // (a line cut short by a natctl killed while appending has no newline)
    if !text.ends_with('\n') {
        return None;
    }
    let mut body = text.split_off(text.find('\n')? + 1);
    let mut head = text.split_whitespace();
    if head.next()? != FORMAT {
        return None;
    }
    let mut at: u32 = head.next()?.parse().ok()?;
    let mut complete = head.next()? == "complete";
    let bytes: usize = head.next()?.parse().ok()?;
    let sum = u64::from_str_radix(head.next()?, 16).ok()?;
    // The snapshot's lines (BYTES of them, as natctl wrote them if their digest is DIGEST): ID
    // CHAINS (intact) or !ID CHAINS (held otherwise), sorted by id; then the journal's: a
    // commit's line, @GENERATION, then +ID CHAINS for each rule it added and -ID for each it
    // deleted.
    if bytes > body.len()
        || !body.is_char_boundary(bytes)
        || digest(&body.as_bytes()[..bytes]) != sum
    {
        return None;
    }
    let journal_lines = body.split_off(bytes);
    let count = body.bytes().filter(|b| *b == b'\n').count();
    let mut ids = HeldIds::from_snapshot(body, count);
    let mut journal = 0;
    for line in journal_lines.lines() {
        let mut words = line.split(' ');
        let made: u32 = words.next()?.strip_prefix('@')?.parse().ok()?;
        if made != at.wrapping_add(1) {
            return None;
        }
        at = made;
        while let Some(change) = words.next() {
            journal += 1;
            if let Some(id) = change.strip_prefix('+') {
                if !ids.hold(id, true, words.next()?.split(',')) {
                    return None;
                }
                complete = true;
            } else {
                ids.release(change.strip_prefix('-')?);
            }
        }
    }
    (at == generation).then_some(Stored {
        complete,
        ids,
        journal,
    })
}

/// Stores TABLE, natctl's table at `generation`, for namespace `cookie` as a snapshot, or
/// removes its file when the table is small. True if the file now holds it.
pub fn save(cookie: u64, generation: u32, table: &Stored) -> bool {
    let file = path(cookie);
    if table.ids.len() < MIN_IDS {
        forget(cookie);
        return false;
    }
    match write(&file, generation, table) {
        Ok(()) => true,
        Err(e) => {
            common::vlog!(
                2,
                "natctl: not keeping the rule ids in {}: {e}",
                file.display()
            );
            let _ = fs::remove_file(&file);
            false
        }
    }
}

/// Appends the line of a commit of ours that made generation `made` with ENTRIES to the file of
/// namespace `cookie`, which must hold the generation before it (the caller knows: it wrote or
/// read it so).
pub fn append(cookie: u64, made: u32, entries: &[Entry]) -> io::Result<()> {
    let mut line = format!("@{made}");
    for entry in entries {
        match entry {
            Entry::Added(id, chains) => line.push_str(&format!(" +{id} {}", chains.join(","))),
            Entry::Deleted(id) => line.push_str(&format!(" -{id}")),
        }
    }
    line.push('\n');
    // (one write(2) of a line to a file opened for appending: whole, or cut short by a kill,
    // which leaves no newline and so an untrusted file)
    fs::OpenOptions::new()
        .append(true)
        .open(path(cookie))?
        .write_all(line.as_bytes())
}

/// Whether a file whose snapshot holds TABLE should be written anew rather than appended to:
/// its journal holds a quarter as many changes as the table has ids (loading it costs a
/// quarter more). Changes, not lines: a line of a batch's commit holds up to 32 rules' ids, and
/// a hub of 1,000 tunnels built by a bulk add once left a snapshot of 257 ids followed by
/// 12,000 in the journal.
pub fn journal_full(table: &Stored) -> bool {
    table.journal >= MIN_IDS.max(table.ids.at_most() / 4)
}

/// Drops the file of namespace `cookie` (its table is gone).
pub fn forget(cookie: u64) {
    let _ = fs::remove_file(path(cookie));
}

fn write(file: &PathBuf, generation: u32, table: &Stored) -> io::Result<()> {
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(DIR)?;
    let text = snapshot(generation, table);
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

/// The snapshot of TABLE at GENERATION, as a file holds it.
fn snapshot(generation: u32, table: &Stored) -> String {
    let state = if table.complete {
        "complete"
    } else {
        "partial"
    };
    let mut lines = String::new();
    for (id, intact, chains) in table.ids.iter() {
        let mark = if intact { "" } else { "!" };
        lines.push_str(&format!("{mark}{id} {chains}\n"));
    }
    let sum = digest(lines.as_bytes());
    format!(
        "{FORMAT} {generation} {state} {} {sum:016x}\n{lines}",
        lines.len()
    )
}

/// A 64-bit digest of BYTES, eight at a time: enough to tell a snapshot natctl wrote from one
/// changed or cut since (not a defence against someone who can write /run as root).
fn digest(bytes: &[u8]) -> u64 {
    const K: u64 = 0x9e37_79b9_7f4a_7c15;
    let mix = |h: u64, w: u64| (h ^ w).wrapping_mul(K).rotate_left(31);
    let mut words = bytes.chunks_exact(8);
    let mut h = (bytes.len() as u64).wrapping_mul(K);
    for w in &mut words {
        h = mix(h, u64::from_le_bytes(w.try_into().expect("eight bytes")));
    }
    let mut tail = [0u8; 8];
    tail[..words.remainder().len()].copy_from_slice(words.remainder());
    h = mix(h, u64::from_le_bytes(tail));
    h ^ (h >> 29)
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

#[cfg(test)]
mod tests {
    use super::*;

    fn table(ids: &[(&str, &str)], stale: &[(&str, &str)]) -> Stored {
        let mut t = Stored {
            complete: true,
            ..Stored::default()
        };
        for (intact, list) in [(true, ids), (false, stale)] {
            for (id, chains) in list {
                t.ids.hold(id, intact, chains.split(','));
            }
        }
        t
    }

    #[test]
    fn a_snapshot_reads_back_for_its_generation_only() {
        let t = table(
            &[("aaaaaaaaaaaa", "forward.iif.w1,srcnat")],
            &[("bbbbbbbbbbbb", "zones")],
        );
        let text = snapshot(41, &t);
        assert_eq!(parse(text.clone(), 41), Some(t));
        assert_eq!(parse(text.clone(), 42), None);
        assert_eq!(parse(text.clone().replace("v7", "v6"), 41), None);
    }

    #[test]
    fn a_snapshot_not_as_written_is_not_trusted() {
        let t = table(
            &[
                ("aaaaaaaaaaaa", "forward.iif.w1,srcnat"),
                ("cccccccccccc", "zones"),
            ],
            &[("bbbbbbbbbbbb", "zones")],
        );
        let text = snapshot(7, &t);
        assert_eq!(parse(text.clone(), 7), Some(t));
        let (head, lines) = text.split_once('\n').unwrap();
        let swapped: Vec<&str> = lines.lines().rev().collect();
        let len = lines.len();
        for bad in [
            // a byte changed, the lines out of order, one cut, one added to the snapshot
            text.replace("srcnat", "srcnaT"),
            format!("{head}\n{}\n", swapped.join("\n")),
            text.replace("!bbbbbbbbbbbb zones\n", ""),
            format!("{text}dddddddddddd zones\n"),
            // the header's length off either way, or no length
            text.replacen(&format!(" {len} "), &format!(" {} ", len + 1), 1),
            text.replacen(&format!(" {len} "), &format!(" {} ", len - 1), 1),
            text.replacen(&format!(" {len} "), " ", 1),
        ] {
            assert_eq!(parse(bad.clone(), 7), None, "{bad:?}");
        }
    }

    #[test]
    fn the_journal_carries_the_snapshot_forward_entry_by_entry() {
        let t = table(
            &[("aaaaaaaaaaaa", "forward.iif.w1")],
            &[("bbbbbbbbbbbb", "zones")],
        );
        let mut text = snapshot(u32::MAX, &t);
        // (the generation wraps)
        text.push_str(
            "@0 +bbbbbbbbbbbb zones.iif.w2,srcnat\n@1 -aaaaaaaaaaaa +cccccccccccc zones\n",
        );
        let read = parse(text.clone(), 1).expect("the journal holds for generation 1");
        let mut ids: Vec<(String, bool, &str)> = read.ids.iter().collect();
        ids.sort_unstable();
        assert_eq!(
            ids,
            [
                ("bbbbbbbbbbbb".to_string(), true, "zones.iif.w2,srcnat"),
                ("cccccccccccc".to_string(), true, "zones")
            ]
        );
        // (three changes in two lines)
        assert_eq!(read.journal, 3);
        // Not for the generation before the last entry, nor with a gap, nor cut short.
        assert_eq!(parse(text.clone(), 0), None);
        assert_eq!(parse(text.clone().replace("@1 ", "@2 "), 2), None);
        assert_eq!(parse(text[..text.len() - 3].to_string(), 1), None);
        assert_eq!(
            parse(
                text.clone()
                    .replace(" +cccccccccccc zones", " +cccccccccccc"),
                1
            ),
            None
        );
    }
}
