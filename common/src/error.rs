//! One error type for every tool, with the exit-code split the contract asks for:
//! 2 for invalid input (detected before anything changes), 1 for a failed operation.
//!
//! A failure keeps its cause chain, and [`Error::kind`] reads the kernel's answer out of it, so
//! code can wrap an error with what it was doing first and still branch on "it was not there" or
//! "it exists already" afterwards.

use std::fmt;

type Source = Box<dyn std::error::Error + Send + Sync + 'static>;

/// What went wrong, and whether it was the caller's input or the operation.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The arguments or input are invalid; nothing was changed. Exit code 2.
    #[error("{0}")]
    Invalid(String),
    /// An operation failed. `what` says what was attempted on which object. Exit code 1.
    #[error("{what}")]
    Failed {
        what: String,
        #[source]
        source: Option<Source>,
    },
}

pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What kind of failure an error is, for the code that must decide what to do about it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub enum Kind {
    /// The caller's input (exit 2).
    Invalid,
    /// The object is not there (ENOENT, ENODEV, ESRCH, EADDRNOTAVAIL).
    NotFound,
    /// The object exists already (EEXIST).
    Exists,
    /// Not allowed (EPERM, EACCES): usually "needs root".
    Denied,
    /// This kernel or device cannot do it (EOPNOTSUPP, EAFNOSUPPORT, EPROTONOSUPPORT).
    Unsupported,
    /// The object is in use (EBUSY).
    Busy,
    /// Anything else.
    Other,
}

impl Kind {
    /// The kind an errno (positive, e.g. `libc::EEXIST`) stands for.
    pub fn of_errno(errno: i32) -> Kind {
        match errno {
            libc::ENOENT | libc::ENODEV | libc::ESRCH | libc::EADDRNOTAVAIL => Kind::NotFound,
            libc::EEXIST => Kind::Exists,
            libc::EPERM | libc::EACCES => Kind::Denied,
            libc::EOPNOTSUPP | libc::EAFNOSUPPORT | libc::EPROTONOSUPPORT => Kind::Unsupported,
            libc::EBUSY => Kind::Busy,
            _ => Kind::Other,
        }
    }

    /// The kind of the error a kernel call returned (`io::Error`, `nix::Errno`, an rtnetlink
    /// error reply), by the first errno in it or its causes, before it is wrapped with context.
    pub fn of(e: &(dyn std::error::Error + 'static)) -> Kind {
        first_errno(Some(e)).map_or(Kind::Other, Kind::of_errno)
    }
}

impl Error {
    /// Invalid input: the message names the offending value.
    pub fn invalid(msg: impl fmt::Display) -> Self {
        Error::Invalid(msg.to_string())
    }

    /// A failed operation without a lower-level cause.
    pub fn failed(what: impl fmt::Display) -> Self {
        Error::Failed {
            what: what.to_string(),
            source: None,
        }
    }

    /// A failed operation caused by `source`.
    pub fn caused(what: impl fmt::Display, source: impl Into<Source>) -> Self {
        Error::Failed {
            what: what.to_string(),
            source: Some(source.into()),
        }
    }

    /// The first errno in the cause chain, from the error types our kernel calls return
    /// (`io::Error`, `nix::Errno`, an rtnetlink error reply).
    pub fn errno(&self) -> Option<i32> {
        first_errno(std::error::Error::source(self))
    }

    /// What kind of failure this is: invalid input, or what the kernel's errno says.
    pub fn kind(&self) -> Kind {
        match self {
            Error::Invalid(_) => Kind::Invalid,
            Error::Failed { .. } => self.errno().map_or(Kind::Other, Kind::of_errno),
        }
    }

    /// The process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            Error::Invalid(_) => 2,
            Error::Failed { .. } => 1,
        }
    }

    /// Writes `TOOL: error: msg` and one `caused by:` line per cause to stderr.
    pub fn report(&self, tool: &str) {
        let mut text = format!("{tool}: error: {self}\n");
        let mut cur = std::error::Error::source(self);
        while let Some(e) = cur {
            text.push_str(&format!("caused by: {e}\n"));
            cur = e.source();
        }
        eprint!("{text}");
    }
}

/// The first errno of `error` and the causes below it.
fn first_errno(error: Option<&(dyn std::error::Error + 'static)>) -> Option<i32> {
    let mut cur = error;
    while let Some(e) = cur {
        if let Some(n) = errno_of(e) {
            return Some(n);
        }
        cur = e.source();
    }
    None
}

/// The errno one error carries, for the types our kernel calls report.
fn errno_of(e: &(dyn std::error::Error + 'static)) -> Option<i32> {
    if let Some(io) = e.downcast_ref::<std::io::Error>() {
        return io.raw_os_error();
    }
    if let Some(n) = e.downcast_ref::<nix::errno::Errno>() {
        return Some(*n as i32);
    }
    if let Some(rtnetlink::Error::NetlinkError(msg)) = e.downcast_ref::<rtnetlink::Error>() {
        // (the reply's code is the negative errno)
        return msg.code.map(|c| -c.get());
    }
    None
}

/// Adds "what was attempted on which object" to any error.
pub trait Context<T> {
    fn context(self, what: impl fmt::Display) -> Result<T>;
    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T>;
}

impl<T, E: Into<Source>> Context<T> for std::result::Result<T, E> {
    fn context(self, what: impl fmt::Display) -> Result<T> {
        self.map_err(|e| Error::caused(what, e))
    }

    fn with_context<D: fmt::Display>(self, what: impl FnOnce() -> D) -> Result<T> {
        self.map_err(|e| Error::caused(what(), e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kind_survives_wrapping() {
        let io = std::io::Error::from_raw_os_error(libc::EEXIST);
        let e: Result<()> = Err(io).context("adding link veth0 in namespace c00");
        let e = e.unwrap_err();
        assert_eq!(e.errno(), Some(libc::EEXIST));
        assert_eq!(e.kind(), Kind::Exists);
        assert_eq!(e.exit_code(), 1);
        assert_eq!(e.to_string(), "adding link veth0 in namespace c00");

        let nested = Error::caused("outer step", e);
        assert_eq!(
            nested.kind(),
            Kind::Exists,
            "the kind is found below a second context"
        );

        let denied = Error::caused("x", nix::errno::Errno::EPERM);
        assert_eq!(denied.kind(), Kind::Denied);
        assert_eq!(Error::failed("no cause").kind(), Kind::Other);
        assert_eq!(Error::invalid("port '0'").kind(), Kind::Invalid);
        assert_eq!(Kind::of_errno(libc::ENODEV), Kind::NotFound);
        assert_eq!(
            Kind::of(&std::io::Error::from_raw_os_error(libc::ENOENT)),
            Kind::NotFound
        );
        assert_eq!(Kind::of(&nix::errno::Errno::EOPNOTSUPP), Kind::Unsupported);
        assert_eq!(Kind::of(&std::io::Error::other("no errno")), Kind::Other);
    }
}
