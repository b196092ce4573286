use std::process::ExitCode;

fn main() -> ExitCode {
    common::cli::main::<natctl::Command>("natctl", natctl::ABOUT)
}
