//! Paths given as input (key files, namespace files) that must be a particular kind of file.
//!
//! Opening a FIFO blocks until a writer appears, and opening some devices has side effects, so
//! such a path is checked with `stat(2)` first and refused (exit 2) before it is ever opened.

use std::fs::FileType;
use std::os::unix::fs::FileTypeExt;

/// "a FIFO", "a directory", ... for a message about a path that is not the kind of file wanted.
pub fn describe(kind: &FileType) -> &'static str {
    if kind.is_fifo() {
        "a FIFO"
    } else if kind.is_dir() {
        "a directory"
    } else if kind.is_char_device() {
        "a character device"
    } else if kind.is_block_device() {
        "a block device"
    } else if kind.is_socket() {
        "a socket"
    } else if kind.is_symlink() {
        "a symbolic link"
    } else if kind.is_file() {
        "a regular file"
    } else {
        "not a regular file"
    }
}
