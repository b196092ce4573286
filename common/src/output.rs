//! Keeps stdout pure JSON.
//!
//! At start the real stdout is duplicated for the JSON writer and fd 1 is pointed at stderr, so
//! a library that `println!`s (wireguard-control does) can only ever reach stderr.

use std::fs::File;
use std::io::Write;
use std::os::fd::AsFd;
use std::sync::{Mutex, OnceLock};

use nix::errno::Errno;
use serde::Serialize;

static JSON_OUT: OnceLock<Mutex<File>> = OnceLock::new();

/// Moves stdout aside for our own output. Call once, first thing in `main`.
pub fn init() {
    JSON_OUT.get_or_init(|| {
        // A close-on-exec copy (std uses F_DUPFD_CLOEXEC, from fd 3 up): a child we spawn or
        // exec (wireguard-go, `nsctl exec`) must not inherit it.
        let real = match std::io::stdout().as_fd().try_clone_to_owned() {
            Ok(fd) => fd,
            // No stdout at all: write JSON to stderr rather than nowhere.
            Err(_) => {
                return Mutex::new(File::from(
                    std::io::stderr()
                        .as_fd()
                        .try_clone_to_owned()
                        .expect("stderr"),
                ))
            }
        };
        point_stdout_away();
        Mutex::new(File::from(real))
    });
}

/// Points fd 1 at stderr, or at /dev/null when there is no stderr either, so that nothing but
/// our JSON writer can reach the real stdout.
fn point_stdout_away() {
    if retrying(|| nix::unistd::dup2_stdout(std::io::stderr())).is_ok() {
        return;
    }
    // fd 2 is closed (the only way dup2 onto fd 1 fails here): stray output goes to /dev/null
    // instead. Without /dev/null either there is nowhere to report to, and fd 1 stays as it is.
    if let Ok(devnull) = File::options().write(true).open("/dev/null") {
        let _ = retrying(|| nix::unistd::dup2_stdout(&devnull));
    }
}

/// dup2 can fail with EINTR, and on Linux with EBUSY while another thread opens a descriptor.
fn retrying(mut f: impl FnMut() -> nix::Result<()>) -> nix::Result<()> {
    loop {
        match f() {
            Err(Errno::EINTR | Errno::EBUSY) => continue,
            other => return other,
        }
    }
}

/// Gives fd 1 back to the real stdout, for `exec`-style commands whose own output belongs there.
pub fn restore_stdout() {
    if let Some(out) = JSON_OUT.get() {
        let f = out.lock().unwrap_or_else(|e| e.into_inner());
        if let Err(e) = retrying(|| nix::unistd::dup2_stdout(&*f)) {
            // Both descriptors are open, so this cannot happen; if it does, the command's
            // output goes to stderr, and the user should know why.
            eprintln!("warning: could not give stdout back ({e}); output goes to stderr");
        }
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
