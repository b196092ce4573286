//! Shared core of the niransix tools (`nsctl`, `wgctl`, `natctl`, `routectl`).
//!
//! A tool defines a clap `Subcommand` enum, implements [`cli::Command`] for it, and calls
//! [`cli::main`] from a three-line `main.rs`; everything else the contract asks of every tool
//! (global flags, `--ns`, JSON output, errors and exit codes, batch mode) lives here.

pub mod cli;
pub mod complete;
pub mod error;
pub mod family;
pub mod files;
pub mod link;
pub mod log;
pub mod netns;
pub mod nl;
pub mod num;
pub mod output;
pub mod privilege;
pub mod types;

pub use cli::{Changed, Command, Ctx, GlobalArgs, Outcome};
pub use error::{Context, Error, Kind, Result};
