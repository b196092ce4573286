//! Shell completion as a user gets it: `TOOL completions bash` sourced in bash with the
//! bash-completion framework loaded, the shell's completion function called as <TAB> calls it
//! (COMP_WORDS, COMP_CWORD, COMP_LINE, COMP_POINT), and COMPREPLY read back. Namespace names,
//! the links of the namespace named on the line (`--ns`, `--peer-ns`, `--netns`), WireGuard
//! interfaces only where a WireGuard interface is wanted, and routing table names from
//! rt_tables.d are offered live; zsh and fish get the same candidates.
//!
//! Build the tools first: `cargo build --workspace && cargo test -p niransix-tests --test
//! completions`.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use niransix_tests::*;

const BASH_COMPLETION: &str = "/usr/share/bash-completion/bash_completion";

/// The candidates bash offers for each command line (the word under the cursor is the last
/// word; `''` for an empty one), one Vec per line, as one bash process computes them.
fn bash_candidates(lines: &[&str]) -> Vec<Vec<String>> {
    let mut script = format!(
        r#"set -u
source {BASH_COMPLETION}
export PATH={bin}:$PATH
for tool in nsctl wgctl natctl routectl; do source <("$tool" completions bash); done
# complete LINE: what <TAB> at the end of LINE offers, one candidate a line, then `--end--`.
# The words are split as bash splits them: `--ns=c00` is `--ns` `=` `c00`, and at `--ns=<TAB>`
# the word being completed is empty.
complete_line() {{
    local -a typed
    local w cur
    eval "typed=($1)"
    COMP_WORDS=()
    for w in "${{typed[@]}}"; do
        if [[ $w == --*=* ]]; then
            COMP_WORDS+=("${{w%%=*}}" =)
            [[ -z ${{w#*=}} ]] || COMP_WORDS+=("${{w#*=}}")
        else
            COMP_WORDS+=("$w")
        fi
    done
    COMP_CWORD=$((${{#COMP_WORDS[@]}} - 1))
    cur=${{COMP_WORDS[COMP_CWORD]}}
    [[ $cur != = ]] || cur=
    COMP_LINE=$1
    COMP_POINT=${{#COMP_LINE}}
    COMP_TYPE=9
    COMPREPLY=()
    local spec fn
    spec=$(complete -p "${{COMP_WORDS[0]}}")
    fn=${{spec##* -F }}
    fn=${{fn%% *}}
    "$fn" "${{COMP_WORDS[0]}}" "$cur" "${{COMP_WORDS[COMP_CWORD - 1]}}"
    printf '%s\n' "${{COMPREPLY[@]}}" --end--
}}
"#,
        bin = bin_dir().display()
    );
    for line in lines {
        script.push_str(&format!("complete_line {}\n", shell_quote(line)));
    }
    let out = run("bash", &["-c", &script]).ok();
    let mut answers: Vec<Vec<String>> = vec![Vec::new()];
    for l in out.stdout.lines() {
        if l == "--end--" {
            answers.push(Vec::new());
        } else if !l.is_empty() {
            answers.last_mut().unwrap().push(l.to_owned());
        }
    }
    answers.pop();
    assert_eq!(answers.len(), lines.len(), "{out:?}");
    answers
}

fn shell_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// The candidates `COMPLETE=SHELL TOOL -- WORDS...` prints, as zsh and fish ask for them.
fn engine_candidates(shell: &str, words: &[&str]) -> Vec<String> {
    let index = (words.len() - 1).to_string();
    let mut script = format!(
        "COMPLETE={shell} _CLAP_COMPLETE_INDEX={index} {}/{} --",
        bin_dir().display(),
        words[0]
    );
    for w in words {
        script.push(' ');
        script.push_str(&shell_quote(w));
    }
    let out = sh(&script).ok();
    out.stdout
        .lines()
        .map(|l| l.split(['\t', ':']).next().unwrap_or("").to_owned())
        .filter(|l| !l.is_empty())
        .collect()
}

#[track_caller]
fn assert_offers(candidates: &[String], want: &str, line: &str) {
    assert!(
        candidates.iter().any(|c| c == want),
        "`{line}<TAB>` does not offer {want:?}: {candidates:?}"
    );
}

#[track_caller]
fn assert_not_offered(candidates: &[String], unwanted: &str, line: &str) {
    assert!(
        !candidates.iter().any(|c| c == unwanted),
        "`{line}<TAB>` offers {unwanted:?}: {candidates:?}"
    );
}

/// A routing table name in /etc/iproute2/rt_tables.d (where `ip` reads them), removed on drop.
struct TableName {
    file: PathBuf,
    name: String,
}

impl TableName {
    fn new(lab: &Lab) -> TableName {
        let name = lab.name("tbl");
        let file = PathBuf::from(format!("/etc/iproute2/rt_tables.d/{}.conf", lab.prefix));
        // A table id no other test uses, so no `ip route` listing elsewhere changes.
        let id = 2_000_000_000 + (std::process::id() & 0xffff);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(&file, format!("# niransix completion test\n{id}\t{name}\n")).unwrap();
        TableName { file, name }
    }
}

impl Drop for TableName {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Namespaces after --ns, --peer-ns, --into-ns, --netns, `exec` and `netns del`; the links of
/// the namespace named on the line after `link set|del`, --dev, --master, --iif, --oif and
/// --peer-master (the peer's namespace), and nothing of another namespace.
#[test]
fn bash_completes_namespaces_and_their_links() {
    let lab = Lab::new();
    let ns = lab.netns("c");
    let other = lab.netns("o");
    let link = lab.name("a");
    let peer = lab.name("b");
    let elsewhere = lab.name("x");
    ip_in(&ns, &format!("link add {link} type veth peer name {peer}"));
    ip_in(
        &other,
        &format!("link add {elsewhere} type veth peer name {}", lab.name("y")),
    );

    let p = &lab.prefix;
    let lines = [
        format!("nsctl --ns {p}"),
        format!("nsctl exec {p}"),
        format!("nsctl netns del {p}"),
        format!("wgctl --ns {other} iface add w --into-ns {p}"),
        format!("nsctl veth add v --peer w --peer-ns {p}"),
        format!("nsctl --ns {ns} link set ''"),
        format!("nsctl --ns {ns} link del {p}"),
        format!("nsctl --ns {ns} addr add 10.9.8.7/24 --dev ''"),
        format!("nsctl addr list --ns {ns} --dev ''"),
        format!("nsctl --ns {other} veth add v --peer w --peer-ns {ns} --peer-master ''"),
        format!("nsctl --ns {other} link set {elsewhere} --netns {ns} --master ''"),
        format!("natctl --ns {ns} masquerade --oif ''"),
        format!("natctl dnat --to 192.0.2.1 --ns {ns} --iif ''"),
        format!("routectl --ns {ns} route add default --dev ''"),
        format!("routectl --ns {ns} rule add --table main --iif ''"),
        format!("nsctl link set lo --netns {p}"),
        // bash splits `--flag=VALUE` at the `=`.
        format!("nsctl --ns={p}"),
        "nsctl --ns=".to_owned(),
        format!("nsctl --ns={ns} link set ''"),
        format!("natctl dnat --to=192.0.2.1 --ns={ns} --iif ''"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    let answers = bash_candidates(&lines);

    let asked: Vec<(&str, &Vec<String>)> = lines.iter().copied().zip(&answers).collect();
    let (namespaces, rest) = asked.split_at(5);
    let (links, rest) = rest.split_at(10);
    let (netns, split) = rest.split_at(1);
    let (split_namespaces, split_links) = split.split_at(2);
    for (line, candidates) in namespaces.iter().chain(netns).chain(split_namespaces) {
        assert_offers(candidates, &ns, line);
    }
    for (line, candidates) in namespaces.iter().chain(split_namespaces) {
        assert_offers(candidates, &other, line);
    }
    for (line, candidates) in links.iter().chain(split_links) {
        assert_offers(candidates, &link, line);
        assert_offers(candidates, &peer, line);
        assert_not_offered(candidates, &elsewhere, line);
    }
    // Only what starts with the typed word: `link del nx..` offers no `lo`.
    assert_offers(&answers[5], "lo", lines[5]);
    assert_not_offered(&answers[6], "lo", lines[6]);
}

/// `show`, `peer add|del` and `iface del` offer the WireGuard interfaces of the namespace, not
/// its other links.
#[test]
fn bash_completes_wireguard_interfaces() {
    let lab = Lab::new();
    let ns = lab.netns("c");
    let veth = lab.name("a");
    ip_in(
        &ns,
        &format!("link add {veth} type veth peer name {}", lab.name("b")),
    );
    let dir = std::env::temp_dir().join(format!("{}-completions", lab.prefix));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir(&dir).unwrap();
    let key = dir.join("key");
    let key = key.to_str().unwrap();
    tool("wgctl", &["genkey", "--out", key]).ok();
    let wg = lab.name("wg");
    tool(
        "wgctl",
        &["--ns", &ns, "iface", "add", &wg, "--private-key", key],
    )
    .ok();

    let lines = [
        format!("wgctl --ns {ns} show ''"),
        format!("wgctl --ns {ns} peer add ''"),
        format!("wgctl --ns {ns} peer del ''"),
        format!("wgctl --ns {ns} iface del ''"),
    ];
    let lines: Vec<&str> = lines.iter().map(String::as_str).collect();
    for (line, candidates) in lines.iter().zip(bash_candidates(&lines)) {
        assert_offers(&candidates, &wg, line);
        assert_not_offered(&candidates, &veth, line);
        assert_not_offered(&candidates, "lo", line);
    }
    let _ = std::fs::remove_dir_all(&dir);
}

/// `--table` offers main, local, default and the names in rt_tables.d; `route list --table`
/// also `all`.
#[test]
fn bash_completes_routing_tables() {
    let lab = Lab::new();
    let table = TableName::new(&lab);
    let lines = [
        "routectl route add default --dev lo --table ''",
        "routectl rule add --fwmark 1 --table ''",
        "routectl vrf add blue --table ''",
        "routectl route list --table ''",
        "routectl route del default --table m",
    ];
    let answers = bash_candidates(&lines);
    for (line, candidates) in lines.iter().zip(&answers).take(4) {
        for want in ["main", "local", "default", table.name.as_str()] {
            assert_offers(candidates, want, line);
        }
        assert_not_offered(candidates, "unspec", line);
    }
    assert_offers(&answers[3], "all", lines[3]);
    assert_not_offered(&answers[0], "all", lines[0]);
    assert_eq!(answers[4], ["main"], "{}", lines[4]);
}

/// The script registers one completion function per tool and knows the commands of the binary
/// it calls: subcommands and flags come from the tool itself.
#[test]
fn bash_completes_commands_and_flags() {
    let lines = [
        "nsctl ''",
        "nsctl link ''",
        "wgctl gen",
        "natctl ''",
        "routectl route add default --t",
        "nsctl --ns lo link set lo --m",
    ];
    let answers = bash_candidates(&lines);
    for want in [
        "netns", "exec", "veth", "bridge", "link", "addr", "sysctl", "--ns",
    ] {
        assert_offers(&answers[0], want, lines[0]);
    }
    for want in ["set", "del", "list"] {
        assert_offers(&answers[1], want, lines[1]);
    }
    assert_eq!(answers[2], ["genkey", "genpsk"], "{}", lines[2]);
    for want in [
        "masquerade",
        "snat",
        "dnat",
        "netmap",
        "list",
        "del",
        "flush",
    ] {
        assert_offers(&answers[3], want, lines[3]);
    }
    assert_eq!(answers[4], ["--table", "--type"], "{}", lines[4]);
    assert_eq!(answers[5], ["--master", "--mtu"], "{}", lines[5]);
}

/// zsh and fish ask the same tool the same way and get the same names; their scripts call the
/// tool on PATH with their shell's name.
#[test]
fn zsh_and_fish_get_the_same_names() {
    let lab = Lab::new();
    let ns = lab.netns("c");
    for shell in ["zsh", "fish"] {
        let script = tool("nsctl", &["completions", shell]).ok().stdout;
        assert!(
            script.contains(&format!("COMPLETE={shell}"))
                || script.contains(&format!("COMPLETE=\"{shell}\"")),
            "{shell} script does not call the tool: {script}"
        );
        let candidates = engine_candidates(shell, &["nsctl", "--ns", &lab.prefix]);
        assert_offers(
            &candidates,
            &ns,
            &format!("{shell}: nsctl --ns {}", lab.prefix),
        );
        let candidates = engine_candidates(shell, &["nsctl", "--ns", &ns, "link", "set", ""]);
        assert_offers(
            &candidates,
            "lo",
            &format!("{shell}: nsctl --ns {ns} link set "),
        );
    }
}

/// Completion costs the shell nothing until <TAB>: the script is a few lines that define one
/// function, and a <TAB> that lists the links of another namespace answers at once.
#[test]
fn completion_is_cheap() {
    let lab = Lab::new();
    let ns = lab.netns("c");
    let script = tool("nsctl", &["completions", "bash"]).ok().stdout;
    assert!(script.len() < 4096, "{} bytes: {script}", script.len());
    assert_eq!(script.matches("() {").count(), 1, "{script}");
    let start = Instant::now();
    for _ in 0..10 {
        engine_candidates("bash", &["nsctl", "--ns", &ns, "link", "set", ""]);
    }
    let each = start.elapsed() / 10;
    assert!(each < Duration::from_millis(200), "a <TAB> took {each:?}");
}
