//! Shell completion that knows the names on this machine.
//!
//! The script `TOOL completions SHELL` prints only registers the tool with the shell (clap's
//! `CompleteEnv`): at each <TAB> the shell runs `COMPLETE=SHELL TOOL -- WORDS...`, and the tool
//! answers from its own clap definition, so the subcommands and flags offered are always those
//! of the installed binary. The arguments that name something that exists are given a
//! completer here, next to their clap definition, which lists it live: namespace names from
//! /run/netns, the links of the namespace the command line acts in, routing tables.
//!
//! A completer never prints, never fails and never changes anything: whatever it cannot read
//! (another namespace, without the privilege to enter it) simply offers nothing.

use std::ffi::{OsStr, OsString};

use clap_complete::engine::{CompletionCandidate, PathCompleter, ValueCompleter};
use netlink_packet_route::link::LinkMessage;

use crate::link::LinkExt;
use crate::netns::{self, NetnsFd, NETNS_RUN_DIR};
use crate::types::{NsName, NsTarget};
use crate::Result;

/// What every completer here is: clap's extension of an argument.
pub use clap_complete::engine::ArgValueCompleter;

/// The environment variable that asks a tool for completions (clap_complete's own).
pub const ENV_VAR: &str = "COMPLETE";

/// Answers a completion request and exits, if this run is one (`COMPLETE=SHELL TOOL -- ...`);
/// returns at once otherwise. Call it first thing in `main`, before stdout is touched.
pub fn answer_if_asked(command: impl Fn() -> clap::Command) {
    let Some(shell) = std::env::var_os(ENV_VAR) else {
        return;
    };
    const INDEX: &str = "_CLAP_COMPLETE_INDEX";
    let mut args: Vec<OsString> = std::env::args_os().collect();
    let index = std::env::var(INDEX).ok().and_then(|i| i.parse().ok());
    if let (true, Some(index)) = (shell == "bash", index) {
        let index = rejoin_bash_words(&mut args, index);
        std::env::set_var(INDEX, index.to_string());
    }
    let current_dir = std::env::current_dir().ok();
    let answered = clap_complete::CompleteEnv::with_factory(command)
        .var(ENV_VAR)
        .try_complete(args, current_dir.as_deref())
        .unwrap_or_else(|e| e.exit());
    if answered {
        std::process::exit(0);
    }
}

/// bash splits `--ns=c00` into three words, `--ns`, `=`, `c00` (`=` is in COMP_WORDBREAKS),
/// and clap's script hands them over as they are, which clap would read as `--ns` with the
/// value `=`. Drop such an `=`, so clap reads `--ns c00`; returns where the word under the
/// cursor (`index`, counted from the tool's name) is then. (At `--ns=<TAB>` the script has
/// already put the empty word under the cursor in place of the `=`.)
fn rejoin_bash_words(args: &mut Vec<OsString>, mut index: usize) -> usize {
    let Some(start) = args.iter().position(|a| a == "--").map(|p| p + 1) else {
        return index;
    };
    let mut i = start + 1;
    while i < args.len() {
        let after_flag = args[i - 1].to_string_lossy().starts_with("--");
        if args[i] == "=" && after_flag && i - start != index {
            args.remove(i);
            if index > i - start {
                index -= 1;
            }
        } else {
            i += 1;
        }
    }
    index
}

/// The script that registers `tool` with `shell` (what `TOOL completions SHELL` prints): it
/// calls `tool`, found on PATH, at each <TAB>.
pub fn registration(tool: &str, shell: clap_complete::Shell) -> String {
    let name = shell.to_string();
    let mut buf = Vec::new();
    if let Some(shell) = clap_complete::env::Shells::builtins().completer(&name) {
        // Writing to a Vec cannot fail.
        let _ = shell.write_registration(ENV_VAR, tool, tool, tool, &mut buf);
    }
    String::from_utf8_lossy(&buf).into_owned()
}

/// Named network namespaces (/run/netns/NAME); a word starting with `/` completes as a path
/// (`/proc/PID/ns/net`).
pub fn namespaces() -> ArgValueCompleter {
    ArgValueCompleter::new(|current: &OsStr| {
        if current.to_string_lossy().starts_with('/') {
            return PathCompleter::any().complete(current);
        }
        matching(current, namespace_names())
    })
}

/// The links in the namespace the command line acts in: the value of the first of `ns_flags`
/// given on it (`--peer-ns` for the peer's master, say), else of `--ns`, else the caller's own
/// namespace.
pub fn links(ns_flags: &'static [&'static str]) -> ArgValueCompleter {
    links_where(ns_flags, |_| true)
}

/// [`links`], only those `keep` accepts (WireGuard interfaces, VRF devices).
pub fn links_where(
    ns_flags: &'static [&'static str],
    keep: fn(&LinkMessage) -> bool,
) -> ArgValueCompleter {
    ArgValueCompleter::new(move |current: &OsStr| {
        let words = command_line();
        let target = ns_flags
            .iter()
            .chain(&["--ns"])
            .find_map(|flag| flag_value(&words, flag));
        let list = || link_names(keep);
        let names = match target {
            None => list(),
            Some(ns) => ns
                .parse::<NsTarget>()
                .map_err(crate::Error::invalid)
                .and_then(|t| NetnsFd::open(&t))
                .and_then(|fd| netns::run_in(&fd, list)),
        };
        matching(current, names.unwrap_or_default())
    })
}

/// Names that do not depend on a namespace (routing tables, say).
pub fn names(list: fn() -> Vec<String>) -> ArgValueCompleter {
    ArgValueCompleter::new(move |current: &OsStr| matching(current, list()))
}

/// The names under /run/netns that are valid namespace names, sorted.
fn namespace_names() -> Vec<String> {
    let Ok(dir) = std::fs::read_dir(NETNS_RUN_DIR) else {
        return Vec::new();
    };
    let mut names: Vec<String> = dir
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.parse::<NsName>().is_ok())
        .collect();
    names.sort();
    names
}

/// The links `keep` accepts in the calling thread's namespace, sorted.
fn link_names(keep: fn(&LinkMessage) -> bool) -> Result<Vec<String>> {
    let rt = netns::runtime()?;
    let links = rt.block_on(async {
        let handle = crate::nl::connect()?;
        crate::nl::links(&handle).await
    })?;
    let mut names: Vec<String> = links
        .iter()
        .filter(|l| keep(l))
        .filter_map(|l| l.name().map(str::to_owned))
        .collect();
    names.sort();
    Ok(names)
}

/// The candidates among `names` that start with what is typed so far.
fn matching(current: &OsStr, names: Vec<String>) -> Vec<CompletionCandidate> {
    let current = current.to_string_lossy();
    names
        .into_iter()
        .filter(|n| n.starts_with(current.as_ref()))
        .map(CompletionCandidate::new)
        .collect()
}

/// The words of the command line being completed: a completion run is `TOOL -- WORDS...`.
fn command_line() -> Vec<String> {
    std::env::args().skip_while(|a| a != "--").skip(1).collect()
}

/// The value given to `flag` on the command line (the last one), as `--flag VALUE` or
/// `--flag=VALUE`; bash hands `--flag=VALUE` over as three words, `--flag`, `=`, `VALUE`.
/// Words after a bare `--` (the command of `nsctl exec NS -- CMD`) are not ours.
fn flag_value(words: &[String], flag: &str) -> Option<String> {
    let mut value = None;
    let mut rest = words.iter().skip(1).take_while(|w| *w != "--").peekable();
    while let Some(word) = rest.next() {
        if word == flag {
            value = rest.next_if(|w| *w != "=").cloned();
            if value.is_none() && rest.next_if(|w| *w == "=").is_some() {
                value = rest.next().cloned();
            }
        } else if let Some(v) = word.strip_prefix(flag).and_then(|r| r.strip_prefix('=')) {
            value = Some(v.to_owned());
        }
    }
    value.filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn words(line: &str) -> Vec<String> {
        line.split_whitespace().map(str::to_owned).collect()
    }

    #[test]
    fn flag_values_in_every_spelling() {
        let line = words("nsctl --ns a link set x --netns = b");
        assert_eq!(flag_value(&line, "--ns").as_deref(), Some("a"));
        assert_eq!(flag_value(&line, "--netns").as_deref(), Some("b"));
        assert_eq!(flag_value(&line, "--peer-ns"), None);
        let line = words("nsctl link set x --ns=c");
        assert_eq!(flag_value(&line, "--ns").as_deref(), Some("c"));
        // `--ns-something` is another flag; the command after `exec NS --` is not ours.
        let line = words("nsctl --ns-x a exec b -- ip --ns d");
        assert_eq!(flag_value(&line, "--ns"), None);
        // The word being completed may be the flag's own, still empty, value.
        assert_eq!(flag_value(&words("nsctl --ns"), "--ns"), None);
    }

    #[test]
    fn bash_words_split_at_equals_are_joined_again() {
        let args = |line: &str| -> Vec<OsString> { line.split(' ').map(OsString::from).collect() };
        // `nsctl --ns=c00 link set l<TAB>`: the cursor's word moves from 6 to 5.
        let mut words = args("nsctl -- nsctl --ns = c00 link set l");
        assert_eq!(rejoin_bash_words(&mut words, 6), 5);
        assert_eq!(words, args("nsctl -- nsctl --ns c00 link set l"));
        // `nsctl --ns=c0<TAB>`: the value under the cursor stays where it is, as `--ns c0`.
        let mut words = args("nsctl -- nsctl --ns = c0");
        assert_eq!(rejoin_bash_words(&mut words, 3), 2);
        assert_eq!(words, args("nsctl -- nsctl --ns c0"));
        // An `=` that is a value of its own, not after a flag, stays.
        let mut words = args("nsctl -- nsctl sysctl = x");
        assert_eq!(rejoin_bash_words(&mut words, 3), 3);
        assert_eq!(words.len(), 6);
    }

    #[test]
    fn candidates_start_with_the_typed_word() {
        let names = vec!["c00".to_owned(), "c01".to_owned(), "hub".to_owned()];
        let got: Vec<_> = matching(OsStr::new("c0"), names)
            .iter()
            .map(|c| c.get_value().to_string_lossy().into_owned())
            .collect();
        assert_eq!(got, ["c00", "c01"]);
    }
}
