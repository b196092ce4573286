//! `cargo run -p xtask -- man DIR`: DIR/nsctl.8, wgctl.8, natctl.8, routectl.8.
//! `cargo run -p xtask -- completions DIR`: DIR/bash/TOOL, DIR/zsh/_TOOL, DIR/fish/TOOL.fish.

use std::path::PathBuf;
use std::process::ExitCode;

const USAGE: &str = "usage: cargo run -p xtask -- man DIR | completions DIR";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let written = match args.as_slice() {
        [what, dir] if what == "man" => xtask::man::write_all(&PathBuf::from(dir)),
        [what, dir] if what == "completions" => xtask::write_completions(&PathBuf::from(dir)),
        [flag] if flag == "-h" || flag == "--help" => {
            println!("{USAGE}");
            return ExitCode::SUCCESS;
        }
        _ => {
            eprintln!("xtask: {USAGE}");
            return ExitCode::from(2);
        }
    };
    match written {
        Ok(paths) => {
            for path in paths {
                println!("{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("xtask: error: {e}");
            ExitCode::FAILURE
        }
    }
}
