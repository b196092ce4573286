//! The man pages: generated from the tools' clap definitions (`cargo run -p xtask -- man DIR`),
//! each page has every command of its tool (as the binary's `--help` lists them) with every
//! flag, and the sections a reader looks for; the hand-written niransix-hub(8) has every
//! command, option and hub.conf key that `niransix-sh/hub --help` names. groff (`-ww`, every
//! warning) and man-db's lexgrog (the NAME line `whatis` reads) accept all five.
//!
//! `cargo build --workspace && cargo test -p niransix-tests --test man`.

use std::path::{Path, PathBuf};

use niransix_tests::*;

/// A fresh directory for the generated pages, removed on drop.
struct OutDir(PathBuf);

impl OutDir {
    fn new(name: &str) -> OutDir {
        let dir = std::env::temp_dir().join(format!("niransix-man-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        OutDir(dir)
    }
}

impl Drop for OutDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `-` as the pages write it (roff's minus sign, so that it can be searched and copied).
fn roff(text: &str) -> String {
    text.replace('-', r"\-")
}

/// groff with every warning, then lexgrog: both must be silent and succeed.
#[track_caller]
fn assert_renders_cleanly(page: &Path) {
    let path = page.to_str().unwrap();
    let groff = run("groff", &["-man", "-ww", "-z", path]);
    assert!(
        groff.code == 0 && groff.stderr.is_empty(),
        "groff -man -ww -z {path}: exit {}: {}",
        groff.code,
        groff.stderr
    );
    run("lexgrog", &[path]).ok();
}

/// The commands `TOOL --help` lists (without `help`), and the same for each of them that has
/// commands of its own: `["netns add", "netns del", ..., "exec", ...]`.
fn commands_of(tool: &str, words: &[&str]) -> Vec<String> {
    let mut args: Vec<&str> = words.to_vec();
    args.push("--help");
    let help = run(tool_path(tool), &args).ok().stdout;
    let Some(list) = help.split("Commands:\n").nth(1) else {
        return vec![words.join(" ")];
    };
    let mut out = Vec::new();
    for name in list
        .lines()
        .take_while(|l| !l.trim().is_empty())
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| *n != "help")
    {
        let mut path = words.to_vec();
        path.push(name);
        out.extend(commands_of(tool, &path));
    }
    out
}

#[test]
fn every_tool_page_has_every_command_and_flag() {
    let dir = OutDir::new("tools");
    let written = xtask::man::write_all(&dir.0).unwrap();
    assert_eq!(written.len(), 4, "{written:?}");
    for tool in xtask::tools() {
        let path = dir.0.join(format!("{}.8", tool.name));
        let page = std::fs::read_to_string(&path).unwrap();
        assert!(page.starts_with(".ie \\n(.g .ds Aq"), "{}", &page[..200]);
        assert!(page.contains(&format!(".TH {} 8 ", tool.name.to_uppercase())));
        // the tool's page in docs/ names the same section as the man page
        let doc =
            std::fs::read_to_string(repo_root().join(format!("docs/{}.md", tool.name))).unwrap();
        assert!(
            doc.starts_with(&format!("# {}(8) ", tool.name)),
            "docs/{}.md: its title names section 8, as its man page: {}",
            tool.name,
            doc.lines().next().unwrap_or("")
        );
        for section in [
            "NAME",
            "SYNOPSIS",
            "DESCRIPTION",
            "OPTIONS",
            "COMMANDS",
            "\"EXIT STATUS\"",
            "\"JSON OUTPUT\"",
            "ENVIRONMENT",
            "EXAMPLES",
            "\"SEE ALSO\"",
        ] {
            assert!(
                page.contains(&format!("\n.SH {section}\n")),
                "{}: no {section} section",
                tool.name
            );
        }

        // Every command the binary knows has its subsection, and every flag of it is there.
        let from_help = commands_of(tool.name, &[]);
        let cmd = tool.command();
        let from_clap: Vec<String> = xtask::commands(&cmd)
            .iter()
            .map(|(path, _)| path.join(" "))
            .collect();
        assert_eq!(
            from_help, from_clap,
            "{}: --help and clap disagree",
            tool.name
        );
        assert!(from_help.len() >= 6, "{from_help:?}");
        for (path, sub) in xtask::commands(&cmd) {
            let heading = format!(".SS \"{} {}\"\n", tool.name, path.join(" "));
            let at = page
                .find(&heading)
                .unwrap_or_else(|| panic!("{}: no subsection {heading:?}", tool.name));
            let rest = &page[at + heading.len()..];
            let end = ["\n.SS ", "\n.SH "]
                .iter()
                .filter_map(|next| rest.find(next))
                .min()
                .unwrap_or(rest.len());
            let subsection = &rest[..end];
            let synopsis = format!("\\fB{}\\fR", roff(&path.join(" ")));
            assert!(
                page.split(".SH DESCRIPTION")
                    .next()
                    .unwrap()
                    .contains(&synopsis),
                "{}: {path:?} is not in the SYNOPSIS",
                tool.name
            );
            for arg in sub.get_arguments() {
                if arg.is_global_set() || arg.is_hide_set() || arg.get_id() == "help" {
                    continue;
                }
                // Its own entry (`.TP`, then the flag or value on the next line).
                let entries = match arg.get_long() {
                    Some(long) => vec![format!(".TP\n\\fB{}\\fR", roff(&format!("--{long}")))],
                    None if arg.is_positional() => {
                        let value = arg
                            .get_value_names()
                            .map(|v| v.join(" "))
                            .unwrap_or_else(|| arg.get_id().to_string().to_uppercase());
                        vec![
                            format!(".TP\n<\\fI{value}\\fR>"),
                            format!(".TP\n[\\fI{value}\\fR]"),
                        ]
                    }
                    None => vec![format!(".TP\n\\fB\\-{}\\fR", arg.get_short().unwrap())],
                };
                assert!(
                    entries.iter().any(|e| subsection.contains(e)),
                    "{} {}: no entry {entries:?}:\n{subsection}",
                    tool.name,
                    path.join(" ")
                );
            }
        }
        // The global flags, once.
        for flag in [
            "--ns",
            "--pretty",
            "--check",
            "--verbose",
            "--batch",
            "--version",
        ] {
            assert!(
                page.contains(&format!("\\fB{}\\fR", roff(flag))),
                "{}: {flag}",
                tool.name
            );
        }
        assert_renders_cleanly(&path);
    }
}

#[test]
fn generator_command_writes_the_pages() {
    // The command the packaging runs, as a binary next to the tools.
    let dir = OutDir::new("cli");
    let xtask = bin_dir().join("xtask");
    assert!(
        xtask.exists(),
        "{} is not built: cargo build --workspace",
        xtask.display()
    );
    let out = run(&xtask, &["man", dir.0.to_str().unwrap()]).ok();
    for tool in ["nsctl", "wgctl", "natctl", "routectl"] {
        let page = dir.0.join(format!("{tool}.8"));
        assert!(
            out.stdout.contains(page.to_str().unwrap()),
            "{}",
            out.stdout
        );
        assert!(page.is_file());
    }
    // SOURCE_DATE_EPOCH makes the date, so two builds of one commit are the same bytes.
    let again = OutDir::new("cli-date");
    let dated = sh(&format!(
        "SOURCE_DATE_EPOCH=1735689600 {} man {}",
        xtask.display(),
        again.0.display()
    ))
    .ok();
    assert!(!dated.stdout.is_empty());
    let page = std::fs::read_to_string(again.0.join("nsctl.8")).unwrap();
    assert!(
        page.contains(".TH NSCTL 8 2025-01-01 \"niransix "),
        "{}",
        &page[..300]
    );
    run(&xtask, &["man"]).fails(2, "usage");

    let completions = OutDir::new("completions");
    run(&xtask, &["completions", completions.0.to_str().unwrap()]).ok();
    for file in ["bash/nsctl", "zsh/_wgctl", "fish/routectl.fish"] {
        let script = std::fs::read_to_string(completions.0.join(file)).unwrap();
        let tool = file
            .rsplit('/')
            .next()
            .unwrap()
            .trim_start_matches('_')
            .trim_end_matches(".fish");
        let shell = file.split('/').next().unwrap();
        let printed = tool_run(tool, &["completions", shell]);
        assert_eq!(
            script, printed,
            "{file} is not what `{tool} completions {shell}` prints"
        );
    }
}

fn tool_run(name: &str, args: &[&str]) -> String {
    tool(name, args).ok().stdout
}

#[test]
fn hub_page_names_every_command_option_and_key() {
    let page_path = repo_root().join("docs/man/niransix-hub.8");
    let page = std::fs::read_to_string(&page_path).unwrap();
    let help = run(repo_root().join("niransix-sh/hub"), &["--help"])
        .ok()
        .stdout;
    for command in [
        "up",
        "down",
        "peer add",
        "peer del",
        "peer rekey",
        "peer conf",
        "sync",
        "status",
        "check",
        "metrics",
        "export",
    ] {
        assert!(help.contains(command), "hub --help has no {command}");
        let word = command.split(' ').next_back().unwrap();
        assert!(
            page.contains(&format!(".B {command}\n"))
                || page.contains(&format!(".BI \"{command} "))
                || page.contains(&format!(".BR {word} ")),
            "niransix-hub(8) does not describe `{command}`"
        );
    }
    // Every option the usage names (not the `-PORT` of a placeholder `PORT[-PORT]`).
    let options: Vec<&str> = help
        .split(|c: char| c.is_whitespace() || "[]|".contains(c))
        .map(|w| w.trim_end_matches([':', ',', '.', ')', '`']))
        .filter(|w| {
            w.starts_with('-')
                && w.len() > 1
                && !w[1..].starts_with(|c: char| c.is_ascii_uppercase())
        })
        .collect();
    assert!(options.contains(&"--private-key-file"), "{options:?}");
    for option in options {
        assert!(
            page.contains(&roff(option)),
            "niransix-hub(8) does not name {option}"
        );
    }
    // Every hub.conf key the script reads.
    let keys: Vec<&str> = help
        .split(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
        .filter(|w| w.starts_with("HUB_"))
        .collect();
    assert!(keys.len() >= 14, "{keys:?}");
    for key in keys {
        assert!(
            page.contains(&format!(".BR {key} ")),
            "niransix-hub(8) does not describe {key}"
        );
    }
    for file in [
        "/etc/niransix/hub.conf",
        "/var/lib/niransix",
        "niransix-hub.service",
        "niransix-hub-repair.timer",
    ] {
        assert!(page.contains(file), "FILES: no {file}");
    }
    assert_renders_cleanly(&page_path);
}
