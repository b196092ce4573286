//! How hubctl has the tools run: it asks its composer, `niransix-sh/hub`, which runs each batch
//! through the tool (`TOOL -b -`), echoing every line as `[#] TOOL ARGS`. hubctl never touches
//! the kernel itself.
//!
//! The protocol (requests on fd 3, one line each, its words separated by tabs: a path may hold
//! spaces; the answer one line on fd 4; the bulk in files
//! of a scratch directory, so that neither side reads thousands of lines a byte at a time).
//! stdin and stdout stay the user's (`sync -` reads the set there):
//!   run FLAGS DIR GROUPS TOOL...   DIR/G.S holds group G's lines for TOOL number S (empty: none); the groups
//!                                  run at the same time, each its tools in order, stopping at
//!                                  the first failure; their JSON Lines go to DIR/G.out and a
//!                                  failure's exit code to DIR/G.rc. FLAGS: `c` every line with
//!                                  the tool's --check, `q` quiet (a probe: no echo, no error
//!                                  message), `-` neither. Answer: `done`.
//!   lock ex|sh STATE_DIR           flock the state directory's lock file (`sh`: only if there is
//!                                  one). Answer: `ok`.

use std::fs;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use crate::error::{failed, Result};

/// The four tools.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Tool {
    Nsctl,
    Wgctl,
    Natctl,
    Routectl,
}

impl Tool {
    pub fn as_str(self) -> &'static str {
        match self {
            Tool::Nsctl => "nsctl",
            Tool::Wgctl => "wgctl",
            Tool::Natctl => "natctl",
            Tool::Routectl => "routectl",
        }
    }
}

/// How a batch runs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct How {
    /// Every line with the tool's --check.
    pub check: bool,
    /// A probe: not echoed, its errors not shown (its exit code is the answer).
    pub quiet: bool,
}

impl How {
    fn flags(self) -> String {
        let f = format!(
            "{}{}",
            if self.check { "c" } else { "" },
            if self.quiet { "q" } else { "" }
        );
        if f.is_empty() {
            "-".to_string()
        } else {
            f
        }
    }
}

/// What one group of a batch did: its exit code (0: every line ran) and one JSON line per line
/// that ran (a failed line may have printed none).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Ran {
    pub rc: i32,
    pub out: Vec<String>,
}

/// Whoever runs the tools: the composer (`Composer`), or a test's stand-in.
pub trait Executor {
    /// GROUPS run at the same time; each is its (tool, lines) segments, run in order, stopping
    /// at the first failure.
    fn run(&mut self, how: How, groups: &[Vec<(Tool, Vec<String>)>]) -> Result<Vec<Ran>>;
    /// Waits for the state directory's lock: exclusive, or shared (if there is a lock file).
    fn lock(&mut self, state_dir: &Path, exclusive: bool) -> Result<()>;
    /// Whether the namespace NAME exists.
    fn netns_exists(&self, name: &str) -> bool {
        netns_exists(name)
    }
}

/// Whether /run/netns/NAME is a namespace (a leftover file that is no namespace mount does not
/// count).
pub fn netns_exists(name: &str) -> bool {
    const NSFS_MAGIC: i64 = 0x6e73_6673;
    nix::sys::statfs::statfs(Path::new("/run/netns").join(name).as_path())
        .is_ok_and(|s| s.filesystem_type().0 == NSFS_MAGIC)
}

/// A scratch directory in TMPDIR (never the state directory, which may be full while a repair
/// that writes no state must still run), removed when dropped; those of a run killed before it
/// could clean up go when the next one starts (their process is gone).
pub struct Scratch {
    pub dir: PathBuf,
}

impl Scratch {
    pub fn new() -> Result<Scratch> {
        let parent = Scratch::parent();
        if let Ok(entries) = fs::read_dir(&parent) {
            for e in entries.flatten() {
                let name = e.file_name().to_string_lossy().to_string();
                if !name
                    .strip_prefix("niransix-hub.")
                    .is_some_and(crate::state::left_by_the_dead)
                {
                    continue;
                }
                let mine = e.metadata().is_ok_and(|m| {
                    m.is_dir()
                        && std::os::unix::fs::MetadataExt::uid(&m)
                            == nix::unistd::geteuid().as_raw()
                });
                if mine && !e.file_type().is_ok_and(|t| t.is_symlink()) {
                    let _ = fs::remove_dir_all(e.path());
                }
            }
        }
        let pid = std::process::id();
        for n in 0..1000u32 {
            let dir = parent.join(format!("niransix-hub.{pid}.{n}"));
            match fs::DirBuilder::new().mode_0700().create(&dir) {
                Ok(()) => return Ok(Scratch { dir }),
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(e) => {
                    return Err(failed(format!(
                        "cannot create a scratch directory in {}: {e}",
                        parent.display()
                    )))
                }
            }
        }
        Err(failed(format!(
            "cannot create a scratch directory in {}",
            parent.display()
        )))
    }

    /// Where scratch directories go: TMPDIR; else /dev/shm when it is a tmpfs, else /tmp. A
    /// command writes a dozen small files there, and creating a file on a disk is no small
    /// thing: 0.3 ms each on /tmp's ext4 here, where inodes are freed and taken all day,
    /// against 7 us on a tmpfs (a `peer add`: 4 ms of its own time).
    fn parent() -> PathBuf {
        const TMPFS_MAGIC: i64 = 0x0102_1994;
        if let Some(dir) = std::env::var_os("TMPDIR") {
            return PathBuf::from(dir);
        }
        let shm = Path::new("/dev/shm");
        let tmpfs =
            nix::sys::statfs::statfs(shm).is_ok_and(|s| s.filesystem_type().0 == TMPFS_MAGIC);
        if tmpfs && nix::unistd::access(shm, nix::unistd::AccessFlags::W_OK).is_ok() {
            shm.to_path_buf()
        } else {
            PathBuf::from("/tmp")
        }
    }
}

trait Mode0700 {
    fn mode_0700(&mut self) -> &mut Self;
}

impl Mode0700 for fs::DirBuilder {
    fn mode_0700(&mut self) -> &mut Self {
        std::os::unix::fs::DirBuilderExt::mode(self, 0o700)
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.dir);
    }
}

/// The composer at the other end of the pipes: requests to fd 3, answers on fd 4.
pub struct Composer {
    requests: fs::File,
    answers: BufReader<fs::File>,
    scratch: Scratch,
}

impl Composer {
    /// The composer on fds 3 and 4 (as niransix-sh/hub runs hubctl).
    pub fn on_fds() -> Result<Composer> {
        let open = |fd: u8, write: bool| {
            fs::OpenOptions::new()
                .read(!write)
                .write(write)
                .open(format!("/dev/fd/{fd}"))
                .map_err(|e| {
                    failed(format!(
                        "no composer on fd {fd} ({e}): hubctl runs under niransix-sh/hub"
                    ))
                })
        };
        Ok(Composer {
            requests: open(3, true)?,
            answers: BufReader::new(open(4, false)?),
            scratch: Scratch::new()?,
        })
    }

    /// Sends one request (its WORDS), and reads the answer.
    fn ask(&mut self, words: &[&str]) -> Result<String> {
        writeln!(self.requests, "{}", words.join("\t"))
            .and_then(|()| self.requests.flush())
            .map_err(|e| failed(format!("the hub script is gone ({e})")))?;
        let mut answer = String::new();
        match self.answers.read_line(&mut answer) {
            Ok(n) if n > 0 => Ok(answer.trim_end().to_string()),
            _ => Err(failed("the hub script is gone (no answer)")),
        }
    }
}

impl Executor for Composer {
    fn run(&mut self, how: How, groups: &[Vec<(Tool, Vec<String>)>]) -> Result<Vec<Ran>> {
        // The same files for every batch, truncated, not made anew: creating inodes is most of
        // what a small command costs the kernel here.
        let dir = self.scratch.dir.clone();
        let io =
            |e: std::io::Error| failed(format!("cannot write the batch in {}: {e}", dir.display()));
        // One tool order for all groups: each group's segments are in the same order.
        let mut tools: Vec<Tool> = Vec::new();
        for g in groups {
            for (t, _) in g {
                if !tools.contains(t) {
                    tools.push(*t);
                }
            }
        }
        for (gi, g) in groups.iter().enumerate() {
            for (s, tool) in tools.iter().enumerate() {
                // (an empty file: the group has no line for that tool)
                let mut text = String::new();
                for line in g
                    .iter()
                    .filter(|(t, _)| t == tool)
                    .flat_map(|(_, lines)| lines)
                {
                    text.push_str(line);
                    text.push('\n');
                }
                fs::write(dir.join(format!("{gi}.{s}")), text).map_err(io)?;
            }
            fs::write(dir.join(format!("{gi}.out")), "").map_err(io)?;
            fs::write(dir.join(format!("{gi}.rc")), "").map_err(io)?;
        }
        let names: Vec<&str> = tools.iter().map(|t| t.as_str()).collect();
        let (flags, count) = (how.flags(), groups.len().to_string());
        let mut words = vec!["run", &flags, path_word(&dir)?, &count];
        words.extend(names);
        let answer = self.ask(&words)?;
        if answer != "done" {
            return Err(failed(format!(
                "the hub script answered '{answer}' to a batch"
            )));
        }
        let mut ran = Vec::with_capacity(groups.len());
        for gi in 0..groups.len() {
            let out = fs::read_to_string(dir.join(format!("{gi}.out"))).unwrap_or_default();
            let rc = fs::read_to_string(dir.join(format!("{gi}.rc")))
                .ok()
                .and_then(|t| t.trim().parse().ok())
                .unwrap_or(0);
            ran.push(Ran {
                rc,
                out: out.lines().map(str::to_string).collect(),
            });
        }
        Ok(ran)
    }

    fn lock(&mut self, state_dir: &Path, exclusive: bool) -> Result<()> {
        let answer = self.ask(&[
            "lock",
            if exclusive { "ex" } else { "sh" },
            path_word(state_dir)?,
        ])?;
        if answer == "ok" {
            Ok(())
        } else {
            Err(failed(format!(
                "cannot lock {}/lock: {answer}",
                state_dir.display()
            )))
        }
    }
}

/// PATH as one word of a request: any bytes but a tab or a newline (the request's separators).
fn path_word(path: &Path) -> Result<&str> {
    path.to_str()
        .filter(|p| !p.contains(['\t', '\n']))
        .ok_or_else(|| failed(format!("the path {} has a tab, a newline or bytes that are no text: the hub cannot pass it to its script", path.display())))
}
