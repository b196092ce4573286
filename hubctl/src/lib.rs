//! hubctl: the niransix hub's model. Its records (record.rs, state.rs), the claims and
//! allocation of ports and addresses (index.rs), the checks of every input (conf.rs,
//! input.rs), the plan of every command (plan.rs: the tool batch lines per stage, exactly the
//! README's step by step, in both modes), and the health of a built hub (health.rs).
//!
//! `niransix-sh/hub` composes it like the four tools: it runs `hubctl run ARGS...` as a
//! coprocess that asks it, stage by stage, to run batches of tool lines (exec.rs), and does
//! so, echoing each line as `[#] TOOL ARGS`. hubctl never touches the kernel itself.

pub mod access;
pub mod args;
pub mod center;
pub mod cmd;
pub mod conf;
pub mod error;
pub mod exec;
pub mod fwmark;
pub mod health;
pub mod hub;
pub mod index;
pub mod input;
pub mod listing;
pub mod metrics;
pub mod names;
pub mod net;
pub mod plan;
pub mod record;
pub mod sets;
pub mod show;
pub mod stale;
pub mod state;
pub mod steps;

use args::Parsed;
use conf::Conf;
use error::Fail;
use exec::Composer;
use steps::Runner;

/// The name errors go by (the script's: `hub`, or `niransix-hub` installed).
pub fn prog() -> String {
    std::env::var("NX_PROG").unwrap_or_else(|_| "hub".to_string())
}

/// One hub command, driven by its composer; the exit code.
pub fn run(argv: &[String]) -> u8 {
    let code = run_command(argv);
    own_cpu();
    code
}

/// NX_OWN_CPU=FILE (bench/hub_scale.sh): hubctl's own CPU time, appended as `hubctl USER SYS`
/// (microseconds): the hub's work apart from the tools'.
fn own_cpu() {
    let Some(file) = std::env::var_os("NX_OWN_CPU") else {
        return;
    };
    let Ok(u) = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF) else {
        return;
    };
    let us = |t: nix::sys::time::TimeVal| t.tv_sec() * 1_000_000 + t.tv_usec();
    let line = format!("hubctl {} {}\n", us(u.user_time()), us(u.system_time()));
    let _ = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .open(file)
        .and_then(|mut f| std::io::Write::write_all(&mut f, line.as_bytes()));
}

fn run_command(argv: &[String]) -> u8 {
    match try_run(argv) {
        Ok(code) => code,
        Err(e) => {
            if e.msg.is_empty() {
                eprint!("{}", args::USAGE);
            } else {
                e.report(&prog());
            }
            e.code
        }
    }
}

fn try_run(argv: &[String]) -> Result<u8, Fail> {
    let args = match args::parse(argv)? {
        Parsed::Help => {
            cmd::print(args::USAGE)?;
            return Ok(0);
        }
        Parsed::Run(a) => a,
    };
    let conf = Conf::from_env()?;
    let mut composer = Composer::on_fds()?;
    let runner = Runner::new(&mut composer, args.check, conf.jobs);
    let mut hub = hub::Hub::new(conf, runner);
    let outcome = cmd::run(&mut hub, &args)?;
    cmd::print(&outcome.out)?;
    Ok(outcome.code)
}
