//! The state directory, one file per object so that work on one peer reads and writes only that
//! peer's files, whatever the hub's size:
//!   center.json              what `up` found and made (so `down` removes only that)
//!   peers/NAME.json          one peer's record (one line of JSON, replaced by rename)
//!   peers/NAME.key, NAME.client.key, NAME.psk   its keys (0600)
//!   index/port/N, index/address/A   who holds port N / address A: the owner's name (index.rs)
//!   pending/NAME             a peer whose objects a command is building
//!   stopped                  `down --keep-state` ran: nothing of the hub is built
//!   standby                  `standby` ran: the standby of a pair, which starts no handshake
//! With --check nothing is written (`check` is set): every write is a no-op.

use std::collections::BTreeMap;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use crate::error::{failed, Result};
use crate::record::{Center, Peer};

pub struct State {
    pub dir: PathBuf,
    /// --check: read, never write.
    pub check: bool,
}

/// Write PATH as a copy, then rename: a kill -9 leaves the old or the new file, never half.
pub fn write_atomic(path: &Path, text: &str) -> Result<()> {
    let tmp = path.with_extension(format!(
        "{}.tmp",
        path.extension().and_then(|e| e.to_str()).unwrap_or("")
    ));
    let written = fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(text.as_bytes()));
    written
        .and_then(|()| fs::rename(&tmp, path))
        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
}

/// Whether a scratch name's tail `PID.ANYTHING` names a process that is gone (or no process):
/// what it left is anybody's to remove.
pub fn left_by_the_dead(tail: &str) -> bool {
    let pid = tail.split('.').next().unwrap_or("");
    !pid.parse::<u32>()
        .is_ok_and(|p| Path::new(&format!("/proc/{p}")).exists())
}

/// Remove PATH if it is there.
pub fn remove(path: &Path) -> Result<()> {
    match fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            Err(failed(format!("cannot remove {}: {e}", path.display())))
        }
        _ => Ok(()),
    }
}

/// Whether PATH is a file with something in it (a key file written to the end).
pub fn has_content(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|m| m.len() > 0)
}

/// The first line of PATH, if it has a non-empty one.
pub fn first_line(path: &Path) -> Option<String> {
    let text = fs::read_to_string(path).ok()?;
    let line = text.lines().next()?.to_string();
    (!line.is_empty()).then_some(line)
}

/// A record of a later version than this hubctl writes is refused: rewriting it would drop what
/// this version does not know.
fn known_version(path: &Path, version: u32) -> Result<()> {
    if version > crate::record::VERSION {
        return Err(failed(format!(
            "{} is a record of version {version}, written by a later niransix (this one writes version {}): upgrade niransix to use this hub",
            path.display(),
            crate::record::VERSION
        )));
    }
    Ok(())
}

impl State {
    pub fn new(dir: &Path, check: bool) -> State {
        State {
            dir: dir.to_path_buf(),
            check,
        }
    }

    pub fn peers_dir(&self) -> PathBuf {
        self.dir.join("peers")
    }

    pub fn index_dir(&self) -> PathBuf {
        self.dir.join("index")
    }

    pub fn pending_dir(&self) -> PathBuf {
        self.dir.join("pending")
    }

    pub fn center_path(&self) -> PathBuf {
        self.dir.join("center.json")
    }

    pub fn record_path(&self, name: &str) -> PathBuf {
        self.peers_dir().join(format!("{name}.json"))
    }

    pub fn key_path(&self, name: &str) -> PathBuf {
        self.peers_dir().join(format!("{name}.key"))
    }

    pub fn client_key_path(&self, name: &str) -> PathBuf {
        self.peers_dir().join(format!("{name}.client.key"))
    }

    pub fn psk_path(&self, name: &str) -> PathBuf {
        self.peers_dir().join(format!("{name}.psk"))
    }

    pub fn stopped_path(&self) -> PathBuf {
        self.dir.join("stopped")
    }

    pub fn exists(&self) -> bool {
        self.dir.is_dir()
    }

    /// The directories a change writes into (before it takes the lock, whose file is there).
    pub fn prepare(&self) -> Result<()> {
        for d in [
            self.peers_dir(),
            self.pending_dir(),
            self.index_dir().join("port"),
            self.index_dir().join("address"),
        ] {
            fs::create_dir_all(&d)
                .map_err(|e| failed(format!("cannot create {}: {e}", d.display())))?;
        }
        Ok(())
    }

    /// After the lock: scratch directories an earlier version left in the state directory when
    /// killed go, and the one-file record of hubs made before per-peer records is read: its
    /// peers, to be claimed and saved (then `drop_jsonl`).
    pub fn tidy(&self) -> Result<Vec<Peer>> {
        if let Ok(entries) = fs::read_dir(&self.dir) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if name.strip_prefix("run.").is_some_and(left_by_the_dead) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let jsonl = self.dir.join("peers.jsonl");
        let mut old = Vec::new();
        if let Ok(text) = fs::read_to_string(&jsonl) {
            for line in text.lines().filter(|l| !l.is_empty()) {
                let peer: Peer = serde_json::from_str(line).map_err(|_| {
                    failed(format!("{}: not a peer record: {line}", jsonl.display()))
                })?;
                old.push(peer);
            }
        }
        Ok(old)
    }

    /// The one-file record of old, once its peers are saved.
    pub fn drop_jsonl(&self) -> Result<()> {
        remove(&self.dir.join("peers.jsonl"))
    }

    pub fn load_center(&self) -> Result<Option<Center>> {
        let path = self.center_path();
        let Some(line) = first_line(&path) else {
            return Ok(None);
        };
        let center: Center = serde_json::from_str(&line).map_err(|_| {
            failed(format!(
                "{} is not a hub record; remove it (after checking what the hub created) to start over",
                path.display()
            ))
        })?;
        known_version(&path, center.version)?;
        Ok(Some(center))
    }

    pub fn save_center(&self, center: &Center) -> Result<()> {
        if self.check {
            return Ok(());
        }
        write_atomic(&self.center_path(), &format!("{}\n", center.line()))
    }

    pub fn standby_path(&self) -> PathBuf {
        self.dir.join("standby")
    }

    /// Whether this hub is the standby of a pair (`hub standby`, until `hub reseed`).
    pub fn standby(&self) -> bool {
        self.standby_path().exists()
    }

    pub fn set_standby(&self, standby: bool) -> Result<()> {
        if self.check {
            return Ok(());
        }
        if standby {
            write_atomic(&self.standby_path(), "")
        } else {
            remove(&self.standby_path())
        }
    }

    pub fn stopped(&self) -> bool {
        self.stopped_path().exists()
    }

    pub fn set_stopped(&self, stopped: bool) -> Result<()> {
        if self.check {
            return Ok(());
        }
        if stopped {
            fs::write(self.stopped_path(), "").map_err(|e| {
                failed(format!(
                    "cannot write {}: {e}",
                    self.stopped_path().display()
                ))
            })
        } else {
            remove(&self.stopped_path())
        }
    }

    /// The peer NAME's record, if it has one.
    pub fn load_peer(&self, name: &str) -> Result<Option<Peer>> {
        let path = self.record_path(name);
        let Some(line) = first_line(&path) else {
            return Ok(None);
        };
        let peer: Peer = serde_json::from_str(&line)
            .map_err(|_| failed(format!("{}: not a peer record: {line}", path.display())))?;
        if peer.name != name {
            return Err(failed(format!(
                "{}: the record names peer '{}', not '{name}'",
                path.display(),
                peer.name
            )));
        }
        known_version(&path, peer.version)?;
        Ok(Some(peer))
    }

    /// Every record, by name.
    pub fn load_peers(&self) -> Result<BTreeMap<String, Peer>> {
        let mut peers = BTreeMap::new();
        let Ok(entries) = fs::read_dir(self.peers_dir()) else {
            return Ok(peers);
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().to_string();
            let Some(name) = file.strip_suffix(".json") else {
                continue;
            };
            let Some(line) = first_line(&e.path()) else {
                continue;
            };
            let peer = serde_json::from_str::<Peer>(&line).ok().filter(|p| p.name == name).ok_or_else(|| {
                failed(format!(
                    "{}: not a peer record of its own name; remove it (after checking what it describes)",
                    e.path().display()
                ))
            })?;
            known_version(&e.path(), peer.version)?;
            peers.insert(name.to_string(), peer);
        }
        Ok(peers)
    }

    /// The record (claims first: index.rs).
    pub fn save_peer(&self, peer: &Peer) -> Result<()> {
        if self.check {
            return Ok(());
        }
        write_atomic(&self.record_path(&peer.name), &format!("{}\n", peer.line()))
    }

    /// The peer's record and keys go (its claims: index.rs).
    pub fn forget_files(&self, name: &str) -> Result<()> {
        if self.check {
            return Ok(());
        }
        for p in [
            self.record_path(name),
            self.key_path(name),
            self.client_key_path(name),
            self.psk_path(name),
        ] {
            remove(&p)?;
        }
        remove(&self.pending_dir().join(name))
    }

    /// Key files of a `peer add` killed before its record was written.
    pub fn orphan_keys(&self, peers: &BTreeMap<String, Peer>) -> Result<()> {
        if self.check {
            return Ok(());
        }
        let Ok(entries) = fs::read_dir(self.peers_dir()) else {
            return Ok(());
        };
        for e in entries.flatten() {
            let file = e.file_name().to_string_lossy().to_string();
            let Some(stem) = file.strip_suffix(".key") else {
                continue;
            };
            let name = stem.strip_suffix(".client").unwrap_or(stem);
            if !peers.contains_key(name) {
                remove(&e.path())?;
            }
        }
        Ok(())
    }

    // --- pending: peers whose objects a command is building (written before the first step,
    // removed once every step ran). A re-run of any command that builds peers finishes those a
    // killed one left, even if their records look done.

    pub fn mark_pending<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        if self.check {
            return Ok(());
        }
        // (made by `prepare`, but a `down` this command waited for removed it)
        let dir = self.pending_dir();
        let cannot = |n: &str, e: std::io::Error| {
            failed(format!(
                "cannot mark peer {n} pending in {}: {e}",
                dir.display()
            ))
        };
        let mut names = names.into_iter().peekable();
        if let Some(first) = names.peek() {
            fs::create_dir_all(&dir).map_err(|e| cannot(first, e))?;
        }
        for n in names {
            fs::write(dir.join(n), "").map_err(|e| cannot(n, e))?;
        }
        Ok(())
    }

    pub fn clear_pending<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> Result<()> {
        if self.check {
            return Ok(());
        }
        let dir = self.pending_dir();
        if !dir.is_dir() {
            return Ok(());
        }
        // (the directory stays, made by `prepare`: made and removed at every change, it cost
        // ext4 a new inode each time)
        for n in names {
            remove(&dir.join(n))?;
        }
        Ok(())
    }

    /// The recorded peers a killed command left half built (a marker without a record goes).
    pub fn pending(&self) -> Vec<String> {
        let mut names = Vec::new();
        let Ok(entries) = fs::read_dir(self.pending_dir()) else {
            return names;
        };
        for e in entries.flatten() {
            let n = e.file_name().to_string_lossy().to_string();
            if first_line(&self.record_path(&n)).is_some() {
                names.push(n);
            } else if !self.check {
                let _ = fs::remove_file(e.path());
            }
        }
        names.sort();
        names
    }

    /// Every peer's pending mark goes (the directory stays).
    pub fn clear_all_pending(&self) -> Result<()> {
        if self.check {
            return Ok(());
        }
        let Ok(entries) = fs::read_dir(self.pending_dir()) else {
            return Ok(());
        };
        for e in entries.flatten() {
            remove(&e.path())?;
        }
        Ok(())
    }

    /// `down`: everything of the state directory goes (the lock file last).
    pub fn remove_all(&self) -> Result<()> {
        if self.check {
            return Ok(());
        }
        remove(&self.center_path())?;
        remove(&self.stopped_path())?;
        remove(&self.standby_path())?;
        for d in [self.index_dir(), self.pending_dir()] {
            if d.exists() {
                fs::remove_dir_all(&d)
                    .map_err(|e| failed(format!("cannot remove {}: {e}", d.display())))?;
            }
        }
        let _ = fs::remove_dir(self.peers_dir());
        remove(&self.dir.join("lock"))?;
        let _ = fs::remove_dir(&self.dir);
        Ok(())
    }
}
