//! Saying plainly that a command needs root, instead of a bare EPERM.
//!
//! When the kernel refuses an operation with EPERM or EACCES and the process lacks the
//! capability that operation needs, the error gains "permission denied: this needs root (CAP)".
//! With the capability present the kernel's refusal has another reason and is left as it is.

use crate::error::Error;

/// Configuring links, addresses, routes, nftables and WireGuard.
pub const CAP_NET_ADMIN: Capability = Capability {
    bit: 12,
    name: "CAP_NET_ADMIN",
};
/// Entering a namespace (`setns(2)`), mounting.
pub const CAP_SYS_ADMIN: Capability = Capability {
    bit: 21,
    name: "CAP_SYS_ADMIN",
};

/// A Linux capability: its bit in the capability sets and its name.
#[derive(Debug, Clone, Copy)]
pub struct Capability {
    bit: u32,
    name: &'static str,
}

/// Whether the calling thread has `cap` in its effective set (`CapEff` in
/// /proc/thread-self/status); if that cannot be read, whether it runs as root.
pub fn has(cap: Capability) -> bool {
    let effective = std::fs::read_to_string("/proc/thread-self/status")
        .ok()
        .and_then(|status| {
            status.lines().find_map(|l| {
                let hex = l.strip_prefix("CapEff:")?.trim();
                u64::from_str_radix(hex, 16).ok()
            })
        });
    match effective {
        Some(set) => set & (1 << cap.bit) != 0,
        None => nix::unistd::geteuid().is_root(),
    }
}

/// True if some cause of `e` is the kernel saying EPERM or EACCES.
pub fn is_denied(e: &Error) -> bool {
    e.kind() == crate::error::Kind::Denied
}

/// Adds "permission denied: this needs root (CAP)" to a failure the kernel refused for lack of
/// `cap`; any other error is returned as it was.
pub fn explain(e: Error, cap: Capability) -> Error {
    if !is_denied(&e) || has(cap) {
        return e;
    }
    match e {
        Error::Failed { what, source } if !what.contains("this needs root") => Error::Failed {
            what: format!("{what}: permission denied: this needs root ({})", cap.name),
            source,
        },
        other => other,
    }
}
