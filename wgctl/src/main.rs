use std::process::ExitCode;

fn main() -> ExitCode {
    common::cli::main::<wgctl::Command>("wgctl", wgctl::ABOUT)
}
