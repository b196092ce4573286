//! Keys: parsing public keys from the command line, reading private and preshared keys from
//! files (never argv or environment), and writing new key files mode 0600.
//!
//! Key *contents* never appear in a message: errors name the file, not what is in it.

use std::fmt;
use std::fs::OpenOptions;
use std::io::{Read, Write};
use std::os::unix::fs::{MetadataExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::str::FromStr;

use common::{Context, Error, Result};
use wireguard_control::Key;

/// The longest key file we read (a key is 44 characters of base64; allow comments-free slack).
const MAX_KEY_FILE: u64 = 256;

/// A public key given on the command line: 32 bytes of base64.
#[derive(Clone, PartialEq, Eq)]
pub struct PublicKey(pub Key);

impl FromStr for PublicKey {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        Key::from_base64(s.trim())
            .map(PublicKey)
            .map_err(|_| format!("public key '{s}' is not 32 bytes of base64"))
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({})", self.0.to_base64())
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0.to_base64())
    }
}

/// Parses the text of a key (surrounding whitespace ignored). `what` names the source for the
/// error message, which never repeats the text itself.
pub fn parse_secret(text: &str, what: &str) -> Result<Key> {
    Key::from_base64(text.trim()).map_err(|_| {
        Error::invalid(format!(
            "{what} does not hold a WireGuard key (32 bytes of base64)"
        ))
    })
}

/// A key file path from the command line. One that exists but is not a regular file (a FIFO, a
/// directory, a device) is refused as it is parsed, so a batch reports it before its first line
/// runs; [`read_key_file`] checks again when it reads.
pub fn key_file_path(s: &str) -> std::result::Result<PathBuf, String> {
    match std::fs::metadata(s) {
        Ok(meta) if !meta.is_file() => Err(format!(
            "key file '{s}' is {}, not a regular file",
            common::files::describe(&meta.file_type())
        )),
        _ => Ok(PathBuf::from(s)),
    }
}

/// Reads a private or preshared key file. `kind` is "private key" or "preshared key".
///
/// Refused (exit 2, before anything changes): a missing or unreadable file, something that is
/// not a regular file (checked before opening it, so a FIFO or a device never blocks or is
/// touched; the open is non-blocking in case the path is swapped meanwhile), a file any "other"
/// permission bit is set on (like `chmod o+r`; the contract wants key files 0600, and `wg` warns
/// about exactly this), and contents that are not 32 bytes of base64.
pub fn read_key_file(path: &Path, kind: &str) -> Result<Key> {
    let shown = path.display();
    let unreadable = |e: std::io::Error| {
        Error::invalid(format!(
            "cannot read {kind} file {shown}: {}",
            io_reason(&e)
        ))
    };
    let not_regular = |t: &std::fs::FileType| {
        Error::invalid(format!(
            "{kind} file {shown} is {}, not a regular file",
            common::files::describe(t)
        ))
    };
    let meta = std::fs::metadata(path).map_err(unreadable)?;
    if !meta.is_file() {
        return Err(not_regular(&meta.file_type()));
    }
    let mut file = OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .map_err(unreadable)?;
    let meta = file
        .metadata()
        .with_context(|| format!("inspecting {kind} file {shown}"))?;
    if !meta.is_file() {
        return Err(not_regular(&meta.file_type()));
    }
    let mode = meta.mode() & 0o7777;
    if mode & 0o007 != 0 {
        return Err(Error::invalid(format!(
            "{kind} file {shown} is accessible by others (mode {mode:04o}); run `chmod 600 {shown}`"
        )));
    }
    if meta.len() > MAX_KEY_FILE {
        return Err(Error::invalid(format!(
            "{kind} file {shown} is too large to hold a WireGuard key"
        )));
    }
    let mut text = String::new();
    file.read_to_string(&mut text).map_err(|e| {
        Error::invalid(format!(
            "cannot read {kind} file {shown}: {}",
            io_reason(&e)
        ))
    })?;
    parse_secret(&text, &format!("{kind} file {shown}"))
}

fn io_reason(e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::NotFound => "no such file".into(),
        std::io::ErrorKind::PermissionDenied => "permission denied".into(),
        _ => e.to_string(),
    }
}

/// Writes a new key (private or preshared) to `path`, mode 0600, without ever replacing an
/// existing file: the key goes to a fresh temporary file (O_EXCL) in the same directory, which
/// is then hard-linked to `path` (fails if `path` appeared meanwhile) and unlinked. Returns
/// false if `path` already existed (nothing written).
pub fn write_new_key_file(path: &Path, key: &Key) -> Result<bool> {
    let shown = path.display();
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
        _ => std::path::PathBuf::from("."),
    };
    let file_name = path
        .file_name()
        .ok_or_else(|| Error::invalid(format!("key file path '{shown}' names no file")))?;
    let tmp = dir.join(format!(
        ".{}.{}.tmp",
        file_name.to_string_lossy(),
        std::process::id()
    ));
    let mut f = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("creating a temporary key file in {}", dir.display()))?;
    let written = f
        .write_all(format!("{}\n", key.to_base64()).as_bytes())
        .and_then(|()| f.sync_all());
    let linked = written.and_then(|()| std::fs::hard_link(&tmp, path));
    let _ = std::fs::remove_file(&tmp);
    match linked {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(Error::caused(format!("writing key file {shown}"), e)),
    }
}

/// Reads a key from stdin (for `pubkey`).
pub fn read_stdin_key() -> Result<Key> {
    let mut text = String::new();
    std::io::stdin()
        .take(MAX_KEY_FILE)
        .read_to_string(&mut text)
        .map_err(|e| Error::invalid(format!("cannot read a key from stdin: {e}")))?;
    parse_secret(&text, "stdin")
}

/// An all-zero key means "none" (how both backends report an unset preshared key).
pub fn non_zero(key: Option<Key>) -> Option<Key> {
    key.filter(|k| k.as_bytes().iter().any(|b| *b != 0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn public_key_parsing() {
        let k = Key::generate_private().get_public().to_base64();
        assert!(k.parse::<PublicKey>().is_ok());
        assert!("abc".parse::<PublicKey>().is_err());
        // 31 bytes of base64
        assert!("AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=="
            .parse::<PublicKey>()
            .is_err());
    }

    /// The check at read time (behind the one at parse time): a FIFO is refused, never opened
    /// for a blocking read; a directory and a device too.
    #[test]
    fn key_files_that_are_not_regular_files_are_refused_without_blocking() {
        let dir = std::env::temp_dir().join(format!("wgctl-keys-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let fifo = dir.join("fifo");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        for (path, what) in [
            (fifo.as_path(), "a FIFO"),
            (dir.as_path(), "a directory"),
            (Path::new("/dev/null"), "a character device"),
        ] {
            let e = read_key_file(path, "private key").unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            assert!(
                msg.contains(&path.display().to_string()) && msg.contains(what),
                "{msg}"
            );
            assert!(key_file_path(path.to_str().unwrap()).is_err());
        }
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn secret_errors_never_echo_the_text() {
        let e = parse_secret("c2VjcmV0LXRleHQ=", "private key file /x").unwrap_err();
        assert_eq!(e.exit_code(), 2);
        assert!(!e.to_string().contains("c2VjcmV0"));
    }
}
