#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    common::cli::main::<nsctl::Command>("nsctl", nsctl::ABOUT)
}
