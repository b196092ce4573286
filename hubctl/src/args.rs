//! The hub's command line: `hub [-q] [--check] [-c hub.conf] COMMAND ...`, read as the bash hub
//! always read it (its errors are exit 2 naming the word).

use std::collections::BTreeMap;

use crate::error::{invalid, Result};
use crate::input::{joined, Given, OPTION_LABELS};

pub const USAGE: &str = "\
usage: hub [-q] [--check] [-c hub.conf] up|down [--keep-state]
       hub [-q] [--check] [-c hub.conf] peer add NAME... [--public-key KEY] [--port N] [--address ADDR]
                 [--preshared-key generate|FILE] [--keepalive SECS] [--mtu N] [--dns ADDR[,ADDR]]
                 [--forward PROTO/PORT[=DEVPORT]]... [--allow CIDR[,PROTO[/PORT[-PORT]]]]...
       hub [-q] [--check] [-c hub.conf] peer set NAME [--preshared-key generate|FILE|none]
                 [--keepalive SECS] [--mtu N] [--dns ADDR[,ADDR]|none]
                 [--forward ..|none]... [--allow ..|none]...   (in place; no other peer)
       hub [-q] [--check] [-c hub.conf] peer del NAME...
       hub [-q] [--check] [-c hub.conf] peer rekey NAME [--client]
       hub [-q] [--check] [-c hub.conf] sync FILE|- [--allow-empty]   (JSON Lines: {\"name\":..} and any
                 of public_key, port, address, preshared_key, keepalive, mtu, dns, forwards,
                 allow; an empty set
                 needs --allow-empty)
       hub [-q] [-c hub.conf] status|check|metrics|show
       hub [-q] [-c hub.conf] export [--secrets]   (the peer set as sync takes it, JSON Lines, with
                 each peer's last endpoint; --secrets: with the private and preshared keys, inline)
       hub [-q] [--check] [-c hub.conf] reseed [NAME...]   (the hub starts the handshake with each
                 peer's last known endpoint; without NAME: every peer, and a standby serves again)
       hub [-q] [--check] [-c hub.conf] standby   (the standby of a pair: every tunnel forgets its
                 client's session and endpoint; no reseed until 'reseed')
       hub [-c hub.conf] peer conf NAME [--qr] [--private-key-file FILE]
       hub [-c hub.conf] peer conf --all   (every peer's config, as JSON: {\"changed\":false,\"peers\":[{\"name\",\"conf\",\"private_key\"},..]})
hub.conf (sourced as shell: only NAME=VALUE lines of these; the environment overrides it) sets
HUB_NS, HUB_BRIDGE, HUB_CIDR, HUB_ADDRESS, HUB_PORT_BASE, HUB_STATE_DIR, HUB_PREFIX, HUB_ENDPOINT,
HUB_PUBLIC_PORT_BASE, HUB_CLIENT_ADDRESS, HUB_JOBS, HUB_BRIDGE_PORTS, HUB_CIDR6, HUB_ADDRESS6, HUB_CLIENT_ADDRESS6,
HUB_MODE (netns|zones), HUB_FORWARDS, HUB_ALLOW, HUB_ISOLATE (yes|no). A built hub keeps its settings (see man niransix-hub).
--check: print the plan (the same JSON, `changed` telling what would change), change nothing.
`check` exits 1 unless every object the hub built is there as recorded; `show` is `status` for people.
Commands are echoed as `[#] TOOL ARGS` on stderr; -q: quiet. Docs: man niransix-hub; in the sources,
README.md (step by step) and docs/hub.md
";

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verb {
    Up,
    Down,
    Status,
    Check,
    Metrics,
    Show,
    Export,
    Reseed,
    Standby,
    Sync,
    PeerAdd,
    PeerSet,
    PeerDel,
    PeerRekey,
    PeerConf,
}

impl Verb {
    fn parse(words: &[String]) -> Option<(Verb, usize)> {
        let w: Vec<&str> = words.iter().map(String::as_str).collect();
        Some(match w.as_slice() {
            ["up", ..] => (Verb::Up, 1),
            ["down", ..] => (Verb::Down, 1),
            ["status", ..] => (Verb::Status, 1),
            ["check", ..] => (Verb::Check, 1),
            ["metrics", ..] => (Verb::Metrics, 1),
            ["show", ..] => (Verb::Show, 1),
            ["export", ..] => (Verb::Export, 1),
            ["reseed", ..] => (Verb::Reseed, 1),
            ["standby", ..] => (Verb::Standby, 1),
            ["sync", ..] => (Verb::Sync, 1),
            ["peer", "add", ..] => (Verb::PeerAdd, 2),
            ["peer", "set", ..] => (Verb::PeerSet, 2),
            ["peer", "del", ..] => (Verb::PeerDel, 2),
            ["peer", "rekey", ..] => (Verb::PeerRekey, 2),
            ["peer", "conf", ..] => (Verb::PeerConf, 2),
            _ => return None,
        })
    }

    fn name(self) -> &'static str {
        match self {
            Verb::Up => "up",
            Verb::Down => "down",
            Verb::Status => "status",
            Verb::Check => "check",
            Verb::Metrics => "metrics",
            Verb::Show => "show",
            Verb::Export => "export",
            Verb::Reseed => "reseed",
            Verb::Standby => "standby",
            Verb::Sync => "sync",
            Verb::PeerAdd => "peer add",
            Verb::PeerSet => "peer set",
            Verb::PeerDel => "peer del",
            Verb::PeerRekey => "peer rekey",
            Verb::PeerConf => "peer conf",
        }
    }

    /// The options this command takes.
    fn options(self) -> &'static [&'static str] {
        match self {
            Verb::PeerAdd => &PEER_ADD,
            Verb::PeerSet => &OPTION_LABELS,
            Verb::PeerConf => &["--qr", "--private-key-file", "--all"],
            Verb::PeerRekey => &["--client"],
            Verb::Down => &["--keep-state"],
            Verb::Sync => &["--allow-empty"],
            Verb::Export => &["--secrets"],
            _ => &[],
        }
    }

    /// Whether the command changes something (and so takes --check).
    fn changes(self) -> bool {
        !matches!(
            self,
            Verb::Status | Verb::Check | Verb::Metrics | Verb::Show | Verb::Export | Verb::PeerConf
        )
    }
}

/// `peer add`'s options: what makes a peer, then its settings (those `peer set` takes).
const PEER_ADD: [&str; 9] = joined(&["--port", "--address", "--public-key"], &OPTION_LABELS);

/// The options given once per item (`--forward tcp/22 --forward udp/161`).
const LIST_OPTIONS: [&str; 2] = ["--forward", "--allow"];

const VALUE_OPTIONS: [&str; 10] = [
    "--forward",
    "--allow",
    "--port",
    "--address",
    "--public-key",
    "--preshared-key",
    "--keepalive",
    "--mtu",
    "--dns",
    "--private-key-file",
];

/// A parsed command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Args {
    pub verb: Verb,
    pub names: Vec<String>,
    pub check: bool,
    /// The options given, with their values ("" for a flag; a list option's items joined by
    /// spaces).
    pub options: BTreeMap<String, String>,
    /// The items of each list option given, in order.
    pub lists: BTreeMap<String, Vec<String>>,
}

/// What parsing found: a command, or a request for help.
pub enum Parsed {
    Run(Args),
    Help,
}

pub fn parse(argv: &[String]) -> Result<Parsed> {
    let mut pos: Vec<String> = Vec::new();
    let mut options = BTreeMap::new();
    let mut lists: BTreeMap<String, Vec<String>> = BTreeMap::new();
    let mut check = false;
    let all: Vec<&str> = Verb::PeerAdd
        .options()
        .iter()
        .chain(Verb::PeerConf.options())
        .chain(Verb::PeerRekey.options())
        .chain(Verb::Down.options())
        .chain(Verb::Sync.options())
        .chain(Verb::Export.options())
        .copied()
        .collect();
    let mut it = argv.iter();
    while let Some(arg) = it.next() {
        match arg.as_str() {
            "-c" | "--config" => {
                it.next().ok_or_else(|| invalid("-c needs a file"))?;
            }
            "-q" | "--quiet" => {}
            "--check" => check = true,
            "-h" | "--help" => return Ok(Parsed::Help),
            "-" => pos.push(arg.clone()),
            a if a.starts_with("--") => {
                if !all.contains(&a) {
                    return Err(invalid(format!("unknown option '{a}' (see 'hub --help')")));
                }
                if VALUE_OPTIONS.contains(&a) {
                    let v = it
                        .next()
                        .ok_or_else(|| invalid(format!("{a} needs a value")))?;
                    if v.is_empty() {
                        return Err(invalid(format!("{a} needs a value, got ''")));
                    }
                    if LIST_OPTIONS.contains(&a) {
                        let items = lists.entry(a.to_string()).or_default();
                        items.push(v.clone());
                        options.insert(a.to_string(), items.join(" "));
                    } else {
                        options.insert(a.to_string(), v.clone());
                    }
                } else {
                    options.insert(a.to_string(), String::new());
                }
            }
            a if a.starts_with('-') => {
                return Err(invalid(format!("unknown option '{a}' (see 'hub --help')")))
            }
            _ => pos.push(arg.clone()),
        }
    }
    if pos.is_empty() {
        return Err(crate::error::Fail {
            code: 2,
            msg: String::new(),
        });
    }
    let Some((verb, used)) = Verb::parse(&pos) else {
        let shown = if pos[0] == "peer" {
            format!("peer {}", pos.get(1).map_or("", String::as_str))
        } else {
            pos[0].clone()
        };
        return Err(invalid(format!(
            "unknown command '{shown}' (see 'hub --help')"
        )));
    };
    let names = pos[used..].to_vec();
    match verb {
        Verb::Sync if names.len() != 1 => return Err(invalid("sync takes one FILE (- for standard input)")),
        v if !v.changes() && check => {
            return Err(invalid(
                "--check goes with the commands that change something (up, down, sync, peer add/set/del/rekey)",
            ))
        }
        _ => {}
    }
    if used == 1 && !matches!(verb, Verb::Sync | Verb::Reseed) && !names.is_empty() {
        return Err(invalid(format!(
            "{} takes no arguments, got '{}'",
            verb.name(),
            names.join(" ")
        )));
    }
    for o in options.keys() {
        if !verb.options().contains(&o.as_str()) {
            return Err(invalid(format!("{o} does not go with '{}'", verb.name())));
        }
    }
    Ok(Parsed::Run(Args {
        verb,
        names,
        check,
        options,
        lists,
    }))
}

impl Args {
    pub fn value(&self, option: &str) -> Option<String> {
        self.options.get(option).cloned()
    }

    pub fn flag(&self, option: &str) -> bool {
        self.options.contains_key(option)
    }

    /// The settings given as options.
    pub fn settings(&self) -> Given {
        Given {
            psk: self.value("--preshared-key"),
            keepalive: self.value("--keepalive"),
            mtu: self.value("--mtu"),
            dns: self.value("--dns"),
            forwards: self.lists.get("--forward").cloned(),
            allow: self.lists.get("--allow").cloned(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(words: &str) -> Result<Parsed> {
        parse(
            &words
                .split_whitespace()
                .map(str::to_string)
                .collect::<Vec<_>>(),
        )
    }

    fn refused(words: &str, naming: &str) {
        match args(words) {
            Err(e) => assert!(e.code == 2 && e.msg.contains(naming), "{words}: {}", e.msg),
            Ok(_) => panic!("{words} accepted"),
        }
    }

    #[test]
    fn commands_and_their_options() {
        let Ok(Parsed::Run(a)) = args("-q --check peer add a b --mtu 1400 -c x.conf") else {
            panic!()
        };
        assert_eq!(
            (a.verb, a.names.clone(), a.check),
            (Verb::PeerAdd, vec!["a".to_string(), "b".to_string()], true)
        );
        assert_eq!(a.value("--mtu").as_deref(), Some("1400"));
        assert!(matches!(args("peer conf x --help"), Ok(Parsed::Help)));
        refused("frobnicate", "unknown command 'frobnicate'");
        refused("peer frob", "unknown command 'peer frob'");
        refused("up --mtu 3", "--mtu does not go with 'up'");
        refused("up --bogus", "unknown option '--bogus'");
        refused("up -x", "unknown option '-x'");
        refused("peer add a --mtu", "--mtu needs a value");
        refused("status --check", "--check goes with");
        refused("sync a b", "sync takes one FILE");
        refused("up now", "up takes no arguments, got 'now'");
        refused("standby now", "standby takes no arguments, got 'now'");
        refused("up --secrets", "--secrets does not go with 'up'");
        let Ok(Parsed::Run(a)) = args("--check reseed a b") else {
            panic!()
        };
        assert_eq!((a.verb, a.names.len(), a.check), (Verb::Reseed, 2, true));
        let Ok(Parsed::Run(a)) = args("export --secrets") else {
            panic!()
        };
        assert!(a.flag("--secrets"));
        refused("-c", "-c needs a file");
    }
}
