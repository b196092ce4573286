//! One error type for every tool, with the exit-code split the contract asks for:
//! 2 for invalid input (detected before anything changes), 1 for a failed operation.

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
