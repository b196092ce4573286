#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    common::cli::main::<routectl::Command>("routectl", routectl::ABOUT)
}
