//! Build-time generators for the four tools, made from their own clap definitions so that
//! nothing can go stale: the man pages (`cargo run -p xtask -- man DIR`) and the shell
//! completion scripts (`cargo run -p xtask -- completions DIR`).

use std::io;
use std::path::{Path, PathBuf};

use clap_complete::Shell;

pub mod man;
pub mod pages;

/// One of the tools, and what its man page says besides its commands.
pub struct Tool {
    pub name: &'static str,
    command: fn() -> clap::Command,
    pub page: &'static man::Page,
}

impl Tool {
    /// The tool's whole clap command (the one its `main` parses with), built, so that every
    /// subcommand knows its full name (`nsctl netns add`) and carries the global flags.
    pub fn command(&self) -> clap::Command {
        let mut cmd = (self.command)().disable_help_subcommand(true);
        cmd.build();
        cmd
    }
}

/// nsctl, wgctl, natctl and routectl.
pub fn tools() -> [Tool; 4] {
    [
        Tool {
            name: "nsctl",
            command: || common::cli::command::<nsctl::Command>("nsctl", nsctl::ABOUT),
            page: &pages::NSCTL,
        },
        Tool {
            name: "wgctl",
            command: || common::cli::command::<wgctl::Command>("wgctl", wgctl::ABOUT),
            page: &pages::WGCTL,
        },
        Tool {
            name: "natctl",
            command: || common::cli::command::<natctl::Command>("natctl", natctl::ABOUT),
            page: &pages::NATCTL,
        },
        Tool {
            name: "routectl",
            command: || common::cli::command::<routectl::Command>("routectl", routectl::ABOUT),
            page: &pages::ROUTECTL,
        },
    ]
}

/// Every command a user can run: the words after the tool's name (`["netns", "add"]`) and the
/// clap command that parses them, depth first in the order `--help` lists them.
pub fn commands(cmd: &clap::Command) -> Vec<(Vec<String>, &clap::Command)> {
    let mut out = Vec::new();
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        let name = sub.get_name().to_owned();
        if sub.has_subcommands() {
            for (mut path, leaf) in commands(sub) {
                path.insert(0, name.clone());
                out.push((path, leaf));
            }
        } else {
            out.push((vec![name], sub));
        }
    }
    out
}

/// The shells whose completion scripts are written.
pub const SHELLS: [Shell; 3] = [Shell::Bash, Shell::Zsh, Shell::Fish];

/// Where a script goes under the output directory, named as bash-completion, zsh and fish look
/// for it; installed in /usr/share/bash-completion/completions, /usr/share/zsh/vendor-completions
/// and /usr/share/fish/vendor_completions.d.
pub fn completion_path(shell: Shell, tool: &str) -> PathBuf {
    match shell {
        Shell::Bash => format!("bash/{tool}"),
        Shell::Zsh => format!("zsh/_{tool}"),
        Shell::Fish => format!("fish/{tool}.fish"),
        other => format!("{other}/{tool}"),
    }
    .into()
}

/// Writes `DIR/bash/TOOL`, `DIR/zsh/_TOOL` and `DIR/fish/TOOL.fish` for every tool: the scripts
/// `TOOL completions SHELL` prints.
pub fn write_completions(dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut written = Vec::new();
    for shell in SHELLS {
        for tool in tools() {
            let path = dir.join(completion_path(shell, tool.name));
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(&path, common::complete::registration(tool.name, shell))?;
            written.push(path);
        }
    }
    Ok(written)
}
