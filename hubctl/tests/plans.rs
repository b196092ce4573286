//! Golden plans: what each hub command has the tools do, with a stand-in for the composer that
//! records every line and answers as the tools would. The plans of `up` and `peer add` are the
//! README's step by step, in both modes, line for line; the others are held against the lines
//! they must have. No root needed: nothing runs.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use hubctl::args::{self, Parsed};
use hubctl::conf::Conf;
use hubctl::error::Result;
use hubctl::exec::{Executor, How, Ran, Tool};
use hubctl::hub::Hub;
use hubctl::steps::Runner;

/// Records the lines it is asked to run; answers as the tools would on an empty machine, and
/// keeps what they would have made that the hub looks at itself (namespaces, key files).
#[derive(Default)]
struct Recorder {
    /// The lines of each group that ran, group by group.
    groups: Vec<Vec<String>>,
    keys: u32,
    netns: std::collections::HashSet<String>,
}

const CLIENT_KEY: &str = "CLIENTxPUBLICxKEYxxxxxxxxxxxxxxxxxxxxxxxxxx=";

impl Executor for Recorder {
    fn run(&mut self, how: How, groups: &[Vec<(Tool, Vec<String>)>]) -> Result<Vec<Ran>> {
        let mut ran = Vec::new();
        for g in groups {
            // (a probe of a link: there is none)
            if how.quiet
                && g.iter()
                    .any(|(_, lines)| lines.iter().any(|l| l.contains("addr list --dev")))
            {
                ran.push(Ran {
                    rc: 1,
                    out: Vec::new(),
                });
                continue;
            }
            let mut out = Vec::new();
            if !how.quiet {
                self.groups.push(
                    g.iter()
                        .flat_map(|(tool, lines)| {
                            lines.iter().map(|l| format!("{} {l}", tool.as_str()))
                        })
                        .collect(),
                );
            }
            for (_, lines) in g {
                for line in lines {
                    let words: Vec<&str> = line.split_whitespace().collect();
                    match (how.check, words.as_slice()) {
                        (false, ["netns", "add", ns]) => {
                            self.netns.insert(ns.to_string());
                        }
                        (false, ["netns", "del", ns]) => {
                            self.netns.remove(*ns);
                        }
                        (false, ["genkey" | "genpsk", "--out", file]) => {
                            std::fs::write(file, "KEY\n").unwrap()
                        }
                        _ => {}
                    }
                    out.push(if line.starts_with("genkey") {
                        self.keys += 1;
                        let key = if line.contains(".client.key") {
                            CLIENT_KEY.to_string()
                        } else {
                            format!("HUBKEY{}", self.keys)
                        };
                        format!(r#"{{"changed":true,"public_key":"{key}"}}"#)
                    } else if line.ends_with("link list") {
                        r#"{"changed":false,"links":[]}"#.to_string()
                    } else if line.ends_with("sysctl net.ipv4.ip_forward") {
                        r#"{"changed":false,"sysctl":{"value":"0"}}"#.to_string()
                    } else if how.check {
                        r#"{"changed":false,"rule":{"id":"0123abcd"}}"#.to_string()
                    } else {
                        r#"{"changed":true}"#.to_string()
                    });
                }
            }
            ran.push(Ran { rc: 0, out });
        }
        Ok(ran)
    }

    fn lock(&mut self, _: &Path, _: bool) -> Result<()> {
        Ok(())
    }

    fn netns_exists(&self, name: &str) -> bool {
        self.netns.contains(name)
    }
}

struct Bench {
    state: PathBuf,
    vars: HashMap<String, String>,
    /// The namespaces the plans so far made.
    netns: std::cell::RefCell<std::collections::HashSet<String>>,
}

impl Bench {
    fn new(tag: &str, mode: &str) -> Bench {
        let state = std::env::temp_dir().join(format!("hubctl-plans-{tag}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&state);
        let vars = [
            ("HUB_NS", "hub"),
            ("HUB_MODE", mode),
            ("HUB_STATE_DIR", state.to_str().unwrap()),
            ("HUB_JOBS", "1"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        Bench {
            state,
            vars,
            netns: Default::default(),
        }
    }

    /// The lines a hub command has the tools run, the state directory written as the README's.
    fn plan(&self, words: &str) -> Vec<String> {
        self.try_plan(words)
            .unwrap_or_else(|e| panic!("{words}: {e}"))
    }

    fn try_plan(&self, words: &str) -> std::result::Result<Vec<String>, String> {
        self.try_plan_groups(words)
            .map(|groups| groups.into_iter().flatten().collect())
    }

    /// The lines of each group that ran, in the order they ran.
    fn plan_groups(&self, words: &str) -> Vec<Vec<String>> {
        self.try_plan_groups(words)
            .unwrap_or_else(|e| panic!("{words}: {e}"))
    }

    fn try_plan_groups(&self, words: &str) -> std::result::Result<Vec<Vec<String>>, String> {
        let argv: Vec<String> = words.split_whitespace().map(str::to_string).collect();
        let Ok(Parsed::Run(a)) = args::parse(&argv) else {
            panic!("{words}")
        };
        let conf = Conf::from_map(&self.vars).unwrap();
        let mut rec = Recorder {
            netns: self.netns.borrow().clone(),
            ..Recorder::default()
        };
        let runner = Runner::new(&mut rec, a.check, conf.jobs);
        let mut hub = Hub::new(conf, runner);
        let done = hubctl::cmd::run(&mut hub, &a).map_err(|e| e.msg);
        drop(hub);
        *self.netns.borrow_mut() = rec.netns.clone();
        done?;
        let dir = self.state.display().to_string();
        Ok(rec
            .groups
            .iter()
            .map(|g| {
                g.iter()
                    .map(|l| {
                        l.replace(&dir, "/var/lib/niransix")
                            .replace(CLIENT_KEY, "<client public key>")
                    })
                    .collect()
            })
            .collect())
    }
}

impl Drop for Bench {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.state);
    }
}

/// The commands of the README block under HEADING (comments and blank lines left out).
fn readme_block(heading: &str) -> Vec<String> {
    let readme =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("../README.md"))
            .unwrap();
    let at = readme
        .find(heading)
        .unwrap_or_else(|| panic!("README has no '{heading}'"));
    let rest = &readme[at..];
    let open = rest.find("```\n").expect("a code block") + 4;
    let close = rest[open..].find("```").expect("its end");
    rest[open..open + close]
        .lines()
        .map(|l| l.split(" #").next().unwrap_or("").trim_end().to_string())
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect()
}

#[test]
fn up_and_peer_add_are_the_readme_steps() {
    let b = Bench::new("netns", "netns");
    assert_eq!(b.plan("up"), readme_block("### 1. The center: `hub up`"));
    assert_eq!(
        b.plan("peer add c00"),
        readme_block("### 2. A peer: `hub peer add c00`")
    );
    assert_eq!(b.plan("peer del c00"), readme_block("`hub peer del c00`:"));
}

#[test]
fn zones_peer_add_is_the_readme_steps() {
    let b = Bench::new("zones", "zones");
    let mut up = readme_block("### 1. The center: `hub up`");
    up.extend(readme_block("With `HUB_MODE=zones`, `hub up` also"));
    assert_eq!(b.plan("up"), up);
    assert_eq!(
        b.plan("peer add c00"),
        readme_block("With `HUB_MODE=zones`, `hub peer add c00`")
    );
}

#[test]
fn a_second_run_asks_the_same_and_check_writes_nothing() {
    let b = Bench::new("again", "netns");
    let first = b.plan("up");
    let records: Vec<_> = std::fs::read_dir(&b.state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    let check = b.plan("--check peer add c01");
    assert!(
        check
            .iter()
            .any(|l| l.contains("genkey --out /var/lib/niransix/peers/c01.key")),
        "{check:?}"
    );
    assert!(
        !b.state.join("peers/c01.json").exists(),
        "--check wrote a record"
    );
    let after: Vec<_> = std::fs::read_dir(&b.state)
        .unwrap()
        .flatten()
        .map(|e| e.file_name())
        .collect();
    assert_eq!(records.len(), after.len());
    // (the center recorded: `up` again asks the same of the tools, records nothing anew)
    assert_eq!(b.plan("up"), first);
}

#[test]
fn sync_adds_settles_and_removes() {
    let b = Bench::new("sync", "netns");
    b.plan("up");
    b.plan("peer add a b");
    let set = b.state.with_extension("set");
    std::fs::write(
        &set,
        "{\"name\":\"a\",\"keepalive\":25}\n{\"name\":\"c\"}\n",
    )
    .unwrap();
    let lines = b.plan(&format!("sync {}", set.display()));
    let _ = std::fs::remove_file(&set);
    assert!(
        lines.contains(&"nsctl netns del b".to_string()),
        "b removed: {lines:?}"
    );
    assert!(
        lines.contains(&"nsctl netns add c".to_string()),
        "c added: {lines:?}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("wgctl --ns a peer add a-wg") && l.contains("--keepalive 25")),
        "a settled: {lines:?}"
    );
    assert!(
        !lines.iter().any(|l| l.contains("iface del a-wg")
            || l.contains("genkey --out /var/lib/niransix/peers/a")),
        "a kept its tunnel and keys: {lines:?}"
    );
    assert!(b.state.join("peers/c.json").exists() && !b.state.join("peers/b.json").exists());
}

#[test]
fn zones_removal_deletes_each_element() {
    let b = Bench::new("zdel", "zones");
    b.plan("up");
    b.plan("peer add z1");
    let lines = b.plan("peer del z1");
    // (its elements of the center's sets, named by its tunnel or its address: no rule to find)
    for element in [
        "tunnel_zone z1-wg",
        "address_zone 100.64.0.1",
        "tunnels z1-wg",
        "tunnel_mark z1-wg",
        "tunnel_snat z1-wg",
        "denied z1-wg",
        "denied_local z1-wg",
    ] {
        let del = format!("natctl --ns hub element del {element}");
        assert!(lines.contains(&del), "{del}: {lines:?}");
    }
    assert!(
        !lines.iter().any(|l| l.contains(" del 0123abcd")),
        "no rule deleted by id: {lines:?}"
    );
    // (its rule at the priority of its block of ports, 50000 / 64 = 781; the block's gate with
    // it, z1 being its last peer)
    for rule in [
        format!(
            "--fwmark {m} --table {m} --priority 1781",
            m = 0x4e58_0000u32 + 50000
        ),
        "--fwmark 0x4e58c340/0xffffffc0 --goto 1781 --priority 999".to_string(),
    ] {
        let del = format!("routectl --ns hub rule del {rule}");
        assert!(lines.contains(&del), "{del}: {lines:?}");
    }
    assert!(lines.contains(&"wgctl --ns hub iface del z1-wg".to_string()));
}

/// Every claim in the index is held by a record that says so, and no two records share a port
/// or an address.
fn assert_consistent(state: &Path, after: &str) {
    let mut ports = std::collections::HashSet::new();
    let mut addrs = std::collections::HashSet::new();
    let mut records = HashMap::new();
    for e in std::fs::read_dir(state.join("peers")).unwrap().flatten() {
        let name = e.file_name().to_string_lossy().to_string();
        let Some(n) = name.strip_suffix(".json") else {
            continue;
        };
        let v: serde_json::Value =
            serde_json::from_str(&std::fs::read_to_string(e.path()).unwrap()).unwrap();
        assert!(
            ports.insert(v["listen_port"].to_string()),
            "after {after}: port {} twice",
            v["listen_port"]
        );
        assert!(
            addrs.insert(v["address"].as_str().unwrap().to_string()),
            "after {after}: address {} twice",
            v["address"]
        );
        records.insert(n.to_string(), v);
    }
    for (kind, field) in [("port", "listen_port"), ("address", "address")] {
        for e in std::fs::read_dir(state.join("index").join(kind))
            .unwrap()
            .flatten()
        {
            let owner = std::fs::read_to_string(e.path())
                .unwrap()
                .trim()
                .to_string();
            let value = e.file_name().to_string_lossy().to_string();
            let held = records
                .get(&owner)
                .map(|r| r[field].to_string().trim_matches('"').to_string());
            assert_eq!(
                held.as_deref(),
                Some(value.as_str()),
                "after {after}: {kind} {value} claimed by {owner} without its record"
            );
        }
    }
}

/// Any sequence of add, del, sync and rekey leaves no duplicate port or address, and no claim
/// without a record (a small deterministic generator: the same sequences on every run).
#[test]
fn any_sequence_keeps_claims_and_records_consistent() {
    let mut seed: u64 = 0x5eed_1234;
    let mut next = |n: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % n
    };
    for mode in ["netns", "zones"] {
        let b = Bench::new(&format!("prop-{mode}"), mode);
        b.plan("up");
        let set = b.state.with_extension("set");
        let mut worked: HashMap<String, u32> = HashMap::new();
        for step in 0..120 {
            let peer = format!("p{}", next(8));
            let op = match next(5) {
                0 | 1 => format!("peer add {peer}"),
                2 => format!("peer del {peer} p{}", next(8)),
                3 => {
                    let lines: String = (0..next(6))
                        .map(|i| match next(3) {
                            0 => format!("{{\"name\":\"p{}\",\"port\":{}}}\n", i, 50000 + next(10)),
                            1 => format!(
                                "{{\"name\":\"p{}\",\"address\":\"100.64.0.{}\"}}\n",
                                i,
                                1 + next(12)
                            ),
                            _ => format!("{{\"name\":\"p{i}\"}}\n"),
                        })
                        .collect();
                    std::fs::write(&set, lines).unwrap();
                    format!("sync --allow-empty {}", set.display())
                }
                _ => format!("peer rekey {peer}"),
            };
            // (a refused command, e.g. a sync whose port another peer keeps or a rekey of no
            // peer, changes nothing: the invariant holds either way)
            let verb = op.split_whitespace().take(2).collect::<Vec<_>>().join(" ");
            if b.try_plan(&op).is_ok() {
                *worked.entry(verb).or_insert(0) += 1;
            }
            assert_consistent(&b.state, &format!("step {step} ({mode}): {op}"));
        }
        // (the sequence did things: every kind of command succeeded a few times)
        for verb in ["peer add", "peer del", "sync --allow-empty", "peer rekey"] {
            assert!(
                worked.get(verb).copied().unwrap_or(0) >= 2,
                "{mode}: {worked:?}"
            );
        }
        let _ = std::fs::remove_file(&set);
    }
}

/// Golden plans of every command, in both modes, with and without IPv6: each command's tool
/// lines, in order, held against tests/golden/MODE.txt (`GOLDEN_UPDATE=1` writes them anew; a
/// change to a plan then shows in review as a diff of that file).
#[test]
fn every_command_has_its_golden_plan() {
    for (name, mode, v6) in [
        ("netns", "netns", false),
        ("zones", "zones", false),
        ("netns-v6", "netns", true),
        ("zones-v6", "zones", true),
    ] {
        let mut b = Bench::new(&format!("golden-{name}"), mode);
        if v6 {
            b.vars.insert("HUB_CIDR6".into(), "fd00:64::/64".into());
        }
        b.vars
            .insert("HUB_FORWARDS".into(), "tcp/22 udp/161=1161".into());
        let set = b.state.with_extension("jsonl");
        let psk = b.state.with_extension("psk");
        std::fs::write(&psk, "x3G8l5kzJk4Kcc8hWGZ8JtU4l4jjz1ozPZ/j9fjdvlU=\n").unwrap();
        let mut got = String::new();
        let commands = [
            "up".to_string(),
            "peer add c00".into(),
            "peer add c01 --preshared-key generate --keepalive 25 --mtu 1400 --dns 192.0.2.53"
                .into(),
            format!("peer set c00 --mtu 1380 --preshared-key {}", psk.display()),
            "peer set c01 --preshared-key none --dns none".into(),
            "peer rekey c01 --client".into(),
            "peer add c04 --allow 100.64.0.10/32,tcp/443 --allow 100.64.0.0/24,udp".into(),
            "peer set c04 --allow none".into(),
            "--check peer add c03".into(),
            format!("sync {}", set.display()),
            "peer del c00".into(),
            "down --keep-state".into(),
            "up".into(),
            "down".into(),
        ];
        std::fs::write(
            &set,
            "{\"name\":\"c00\",\"mtu\":1380}\n{\"name\":\"c02\",\"port\":50007,\"keepalive\":10}\n",
        )
        .unwrap();
        for c in &commands {
            let shown = c
                .replace(&set.display().to_string(), "peers.jsonl")
                .replace(&psk.display().to_string(), "c00.psk");
            got.push_str(&format!("$ hub {shown}\n"));
            for l in b.plan(c) {
                got.push_str(
                    &l.replace(&set.display().to_string(), "peers.jsonl")
                        .replace(&psk.display().to_string(), "c00.psk"),
                );
                got.push('\n');
            }
        }
        let _ = std::fs::remove_file(&set);
        let _ = std::fs::remove_file(&psk);
        let file = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("tests/golden/{name}.txt"));
        if std::env::var_os("GOLDEN_UPDATE").is_some() {
            std::fs::create_dir_all(file.parent().unwrap()).unwrap();
            std::fs::write(&file, &got).unwrap();
        }
        let want = std::fs::read_to_string(&file)
            .unwrap_or_else(|_| panic!("{} missing: GOLDEN_UPDATE=1 writes it", file.display()));
        assert!(
            got == want,
            "the plans differ from {} (GOLDEN_UPDATE=1 writes them; review the diff):\n{got}",
            file.display()
        );
    }
}

/// A netns peer whose port goes on an extra bridge (HUB_BRIDGE_PORTS): one peer added alone gets
/// the bridge's steps as the first lines of its own group, not as a batch of their own (a
/// process more per add on a big hub); peers added together, whose groups may all need the
/// bridge, get it in a batch that runs before theirs.
#[test]
fn an_extra_bridge_is_made_in_the_group_of_a_peer_added_alone() {
    let mut b = Bench::new("trunk", "netns");
    b.vars.insert("HUB_BRIDGE_PORTS".into(), "2".into());
    b.vars.insert("HUB_JOBS".into(), "4".into());
    b.plan("up");
    b.plan("peer add c00");
    b.plan("peer add c01");
    // (HUB_CIDR's hosts from .1: c02 is the first on the second bridge)
    let groups = b.plan_groups("peer add c02");
    let at = |g: &[String], what: &str| g.iter().position(|l| l.contains(what));
    let with_bridge: Vec<&Vec<String>> = groups
        .iter()
        .filter(|g| at(g, "bridge add br-internal.1").is_some())
        .collect();
    assert_eq!(with_bridge.len(), 1, "{groups:#?}");
    let g = with_bridge[0];
    let (bridge, netns) = (at(g, "bridge add"), at(g, "netns add c02"));
    assert!(bridge < netns && netns.is_some(), "{g:#?}");
    // two peers at once: the bridge first, alone
    b.plan("peer add c03");
    let groups = b.plan_groups("peer add c04 c05");
    let first_with_peers = groups
        .iter()
        .position(|g| at(g, "netns add").is_some())
        .unwrap();
    let bridge = groups
        .iter()
        .position(|g| at(g, "bridge add br-internal.2").is_some())
        .unwrap();
    assert!(bridge < first_with_peers, "{groups:#?}");
    assert!(
        groups[bridge].iter().all(|l| !l.contains("c0")),
        "{groups:#?}"
    );
}
