//! hubctl: the niransix hub's model (see lib.rs). `hubctl run ARGS...` runs one hub command, as
//! niransix-sh/hub composes it: requests on fd 3, answers on stdin, the command's output on
//! stdout.

use std::process::ExitCode;

fn main() -> ExitCode {
    let argv: Vec<String> = std::env::args().skip(1).collect();
    match argv.first().map(String::as_str) {
        Some("run") => ExitCode::from(hubctl::run(&argv[1..])),
        Some("-h" | "--help") => {
            println!("usage: hubctl run HUB-ARGS...   (as niransix-sh/hub runs it: see 'man niransix-hub')");
            ExitCode::SUCCESS
        }
        Some("-V" | "--version") => {
            println!("hubctl {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!("hubctl: error: usage: hubctl run HUB-ARGS... (niransix-sh/hub runs it)");
            ExitCode::from(2)
        }
    }
}
