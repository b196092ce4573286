//! Keeps stdout pure JSON.
//!
//! At start the real stdout is duplicated for the JSON writer and fd 1 is pointed at stderr, so
//! a library that `println!`s (wireguard-control does) can only ever reach stderr.

use std::fs::File;
use std::io::Write;
use std::os::fd::{AsFd, FromRawFd, OwnedFd};
use std::sync::{Mutex, OnceLock};

use serde::Serialize;

static JSON_OUT: OnceLock<Mutex<File>> = OnceLock::new();

/// Moves stdout aside for our own output. Call once, first thing in `main`.
pub fn init() {
    JSON_OUT.get_or_init(|| {
        // SAFETY: fd 1 and 2 are open for the life of the process; dup/dup2 on them are sound.
        // CLOEXEC: a child we spawn or exec (wireguard-go, `nsctl exec`) must not inherit it.
        let real = unsafe { libc::fcntl(1, libc::F_DUPFD_CLOEXEC, 3) };
        if real < 0 {
            // No stdout at all: write JSON to stderr rather than nowhere.
            return Mutex::new(File::from(
                std::io::stderr()
                    .as_fd()
                    .try_clone_to_owned()
                    .expect("stderr"),
            ));
        }
        unsafe { libc::dup2(2, 1) };
        // SAFETY: `real` is a fresh descriptor we own.
        Mutex::new(File::from(unsafe { OwnedFd::from_raw_fd(real) }))
    });
}

/// Gives fd 1 back to the real stdout, for `exec`-style commands whose own output belongs there.
pub fn restore_stdout() {
    if let Some(out) = JSON_OUT.get() {
        let f = out.lock().unwrap_or_else(|e| e.into_inner());
        use std::os::fd::AsRawFd;
        // SAFETY: both descriptors are open.
        unsafe { libc::dup2(f.as_raw_fd(), 1) };
    }
}

fn write_raw(bytes: &[u8]) -> std::io::Result<()> {
    init();
    let mut f = JSON_OUT
        .get()
        .expect("initialised above")
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    f.write_all(bytes)?;
    f.flush()
}

/// Prints one JSON value on its own line (compact, or indented with `pretty`).
pub fn emit_json<T: Serialize>(value: &T, pretty: bool) -> std::io::Result<()> {
    let mut text = if pretty {
        serde_json::to_string_pretty(value)
    } else {
        serde_json::to_string(value)
    }
    .map_err(std::io::Error::other)?;
    text.push('\n');
    write_raw(text.as_bytes())
}

/// Prints text verbatim (bare keys, completion scripts).
pub fn emit_text(text: &str) -> std::io::Result<()> {
    write_raw(text.as_bytes())
}
