use clap::Parser;

/// One process serving every userspace WireGuard interface (started by wgctl --userspace wgd)
#[derive(Parser)]
#[command(name = "wgd", version)]
struct Args {
    /// Worker threads (each serves its share of the interfaces); default: one per CPU, up to 4
    #[arg(long, value_parser = clap::value_parser!(u16).range(1..=64))]
    workers: Option<u16>,
}

fn main() -> std::process::ExitCode {
    let args = Args::parse();
    let workers = args.workers.map_or_else(
        || std::thread::available_parallelism().map_or(1, |n| n.get().min(4)),
        usize::from,
    );
    match wgd::daemon::run(wgd::daemon::Options { workers }) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("wgd: error: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}
