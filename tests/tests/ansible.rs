//! examples/ansible/hub.yml against the real kernel: check mode on a fresh machine (nothing
//! changes, and it counts what the real run then changes), the real run, a second run (nothing to
//! do), check mode on the built hub (state directory byte-identical, kernel unchanged), a peer
//! dropped from `hub_peers` (removed; the others untouched), and `hub down` (nothing left).
//!
//! The hub runs with `HUB_NS` and `HUB_PREFIX` from the Lab prefix, so it never touches the host's
//! own network, and with `HUB_STATE_DIR` in a temporary directory; Ansible runs with its
//! configuration, home and temporary directories in another one.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use niransix_tests::*;
use serde_json::{json, Value};

/// The port forward the playbook adds (its defaults).
const FORWARD_DADDR: &str = "203.0.113.254";
const FORWARD_DPORT: &str = "54321";
const FORWARD_TO: &str = "100.64.0.10";

/// One hub built by the playbook: the kit's [`HubLab`] (which it derefs to) with the environment
/// the playbook gives the hub (no HUB_MODE), and Ansible's own directory beside its state
/// directory, so that the HubLab's drop removes it too.
struct Play {
    hub: HubLab,
    ansible_dir: PathBuf,
}

impl std::ops::Deref for Play {
    type Target = HubLab;
    fn deref(&self) -> &HubLab {
        &self.hub
    }
}

impl Play {
    fn new() -> Play {
        let hub = HubLab::new().without_mode();
        let ansible_dir = hub.state.with_extension("ansible");
        let _ = std::fs::remove_dir_all(&ansible_dir);
        std::fs::create_dir_all(&ansible_dir).unwrap();
        // An empty configuration: no ansible.cfg of the machine or the working directory applies.
        std::fs::write(ansible_dir.join("ansible.cfg"), "").unwrap();
        Play { hub, ansible_dir }
    }

    /// Runs the playbook (with `--check` if `check`) for `peers` (the `hub_peers` list); asserts
    /// it succeeded and returns the `changed=` count of its PLAY RECAP.
    #[track_caller]
    fn playbook(&self, check: bool, peers: &Value) -> u32 {
        let examples = repo_root().join("examples/ansible");
        let dir = |sub: &str| self.ansible_dir.join(sub).display().to_string();
        let vars = json!({
            "hub_ns": self.ns,
            "hub_prefix": self.lab.prefix,
            "hub_state_dir": self.state,
            "niransix_bin_dir": bin_dir(),
            "hub_peers": peers,
        });
        let mut args = vec![
            format!("ANSIBLE_CONFIG={}", dir("ansible.cfg")),
            format!("ANSIBLE_HOME={}", dir("home")),
            format!("ANSIBLE_LOCAL_TEMP={}", dir("local-tmp")),
            format!("ANSIBLE_REMOTE_TEMP={}", dir("remote-tmp")),
            "ANSIBLE_NOCOLOR=1".into(),
            "ANSIBLE_STDOUT_CALLBACK=default".into(),
            "ANSIBLE_RETRY_FILES_ENABLED=False".into(),
            "ANSIBLE_LOCALHOST_WARNING=False".into(),
            "ANSIBLE_INVENTORY_UNPARSED_WARNING=False".into(),
            "ansible-playbook".into(),
            "-i".into(),
            examples.join("inventory.ini").display().to_string(),
            examples.join("hub.yml").display().to_string(),
            "-e".into(),
            vars.to_string(),
        ];
        if check {
            args.push("--check".into());
        }
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let started = std::time::Instant::now();
        let r = run("env", &refs).ok();
        let recap = r
            .stdout
            .lines()
            .find(|l| l.starts_with("localhost") && l.contains("changed="))
            .unwrap_or_else(|| panic!("no PLAY RECAP: {}", r.stdout));
        assert!(recap.contains("failed=0"), "{recap}\n{}", r.stdout);
        let changed = recap
            .split("changed=")
            .nth(1)
            .and_then(|s| s.split_whitespace().next())
            .and_then(|n| n.parse().ok())
            .unwrap_or_else(|| panic!("no changed= count in {recap:?}"));
        eprintln!(
            "playbook{} with {} peers: changed={changed} ({:.1} s)",
            if check { " --check" } else { "" },
            peers.as_array().map_or(0, Vec::len),
            started.elapsed().as_secs_f64()
        );
        changed
    }

    /// The peer names `hub status` lists, sorted.
    fn peer_names(&self) -> Vec<String> {
        let mut names = peer_names(&self.status());
        names.sort();
        names
    }

    /// Everything of the hub the kernel holds: every namespace with the prefix (its inode, so a
    /// re-created one differs, and its links, addresses, routes, rules and nftables ruleset),
    /// the root namespace's links with the prefix, the host's nftables tables, the wireguard-go
    /// processes (with their pids) and UAPI sockets with the prefix.
    fn kernel(&self) -> String {
        let p = &self.lab.prefix;
        let mut out = String::new();
        for ns in netns_with_prefix(p) {
            let inode = run("stat", &["-L", "-c", "%i", &format!("/run/netns/{ns}")]).stdout;
            out.push_str(&format!("== netns {ns} inode {inode}"));
            out.push_str(&settled(&snapshot(Some(&ns))));
        }
        out.push_str(
            &sh(&format!(
                "echo '== root links'; ip -o link show | awk -F': ' '{{print $2}}' | cut -d@ -f1 \
                 | grep '^{p}'; echo '== host nft tables'; nft list tables; \
                 echo '== wireguard-go'; pgrep -af '^wireguard-go {p}' | sort; \
                 echo '== UAPI sockets'; ls /var/run/wireguard/ 2>/dev/null | grep '^{p}'; true"
            ))
            .stdout,
        );
        out
    }

    /// Every file and directory under the state directory with its mode and contents (None: the
    /// directory does not exist).
    fn state_files(&self) -> Option<BTreeMap<PathBuf, (u32, Vec<u8>)>> {
        fn walk(dir: &Path, root: &Path, out: &mut BTreeMap<PathBuf, (u32, Vec<u8>)>) {
            for entry in std::fs::read_dir(dir).unwrap() {
                let path = entry.unwrap().path();
                let meta = std::fs::symlink_metadata(&path).unwrap();
                let rel = path.strip_prefix(root).unwrap().to_path_buf();
                let mode = meta.permissions().mode();
                if meta.is_dir() {
                    out.insert(rel, (mode, Vec::new()));
                    walk(&path, root, out);
                } else {
                    out.insert(rel, (mode, std::fs::read(&path).unwrap()));
                }
            }
        }
        if !self.state.exists() {
            return None;
        }
        let mut out = BTreeMap::new();
        walk(&self.state, &self.state, &mut out);
        Some(out)
    }

    /// A peer as its own kernel sees it: namespace inode, WireGuard public key and listen port,
    /// and the namespace's snapshot.
    fn peer_kernel(&self, peer: &str) -> String {
        let ns = self.peer_ns(peer);
        let wg = self.peer_wg(peer);
        let inode = run("stat", &["-L", "-c", "%i", &format!("/run/netns/{ns}")])
            .ok()
            .stdout;
        let key = run(
            "ip",
            &["netns", "exec", &ns, "wg", "show", &wg, "public-key"],
        )
        .ok()
        .stdout;
        let port = run(
            "ip",
            &["netns", "exec", &ns, "wg", "show", &wg, "listen-port"],
        )
        .ok()
        .stdout;
        format!(
            "inode {inode}key {key}port {port}{}",
            settled(&snapshot(Some(&ns)))
        )
    }
}

/// A [`snapshot`] without the `tentative` flag of IPv6 addresses: the kernel clears it by itself
/// when duplicate address detection ends, a second or two after a link comes up.
fn settled(snapshot: &str) -> String {
    snapshot.replace("\"tentative\":true,", "")
}

/// Asserts two readings of the same thing are equal; on failure shows the parts that differ
/// (lines, and the objects of `ip -j`'s one-line arrays).
#[track_caller]
fn assert_same(before: &str, after: &str, what: &str) {
    if before == after {
        return;
    }
    let parts = |s: &str| -> Vec<String> {
        s.lines()
            .flat_map(|l| l.split("},{"))
            .map(str::to_string)
            .collect()
    };
    let (b, a) = (parts(before), parts(after));
    let gone: Vec<&String> = b.iter().filter(|p| !a.contains(p)).collect();
    let new: Vec<&String> = a.iter().filter(|p| !b.contains(p)).collect();
    panic!("{what}:\nbefore only: {gone:#?}\nafter only: {new:#?}");
}

#[test]
fn ansible_check_predicts_then_converges_removes_and_tears_down() {
    if run("ansible-playbook", &["--version"]).code != 0 {
        skip(
            "ansible_check_predicts_then_converges_removes_and_tears_down",
            "ansible-playbook is not installed (apt-get install ansible-core)",
        );
        return;
    }
    let play = Play::new();
    // c00 and c02 by name (the hub picks port and address, and makes the client's keys),
    // c01 with the client's public key, a port and an address of its own.
    let client_key = sh("wg genkey | wg pubkey").ok().stdout.trim().to_string();
    let c01 =
        json!({"name": "c01", "public_key": client_key, "port": 50007, "address": "100.64.0.7"});
    let peers = json!(["c00", c01.clone(), "c02"]);

    // 1. Check mode on a fresh machine: changes nothing, counts what the real run will change.
    let kernel_fresh = play.kernel();
    assert!(netns_with_prefix(&play.lab.prefix).is_empty());
    let check_count = play.playbook(true, &peers);
    assert!(
        check_count > 0,
        "check run on a fresh machine reports changes"
    );
    assert_same(
        &kernel_fresh,
        &play.kernel(),
        "check run changed the kernel",
    );
    assert!(
        netns_with_prefix(&play.lab.prefix).is_empty(),
        "check run made namespaces"
    );
    assert!(
        !play.state.exists(),
        "check run made the state directory {}",
        play.state.display()
    );

    // 2. The real run changes what check mode said: the center, the peers, the port forward.
    let real_count = play.playbook(false, &peers);
    assert_eq!(real_count, check_count, "check mode predicted the real run");
    assert_eq!(real_count, 3, "hub up, hub sync and the DNAT change");
    assert_eq!(play.peer_names(), ["c00", "c01", "c02"]);
    for peer in ["c00", "c01", "c02"] {
        assert!(
            netns_with_prefix(&play.lab.prefix).contains(&play.peer_ns(peer)),
            "namespace of {peer}"
        );
    }
    let c01_status = play.peer_status("c01");
    assert_eq!(c01_status["listen_port"], 50007, "{c01_status}");
    assert_eq!(c01_status["address"], "100.64.0.7", "{c01_status}");
    assert_eq!(c01_status["client_public_key"], client_key, "{c01_status}");
    let rules = tool("natctl", &["--ns", &play.ns, "list"]).ok().json();
    let dnat = rules["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| {
            r["kind"] == "dnat"
                && r["daddr"] == FORWARD_DADDR
                && r["dport"] == FORWARD_DPORT
                && r["to"] == FORWARD_TO
        })
        .count();
    assert_eq!(dnat, 1, "the port forward in the center: {rules}");

    // 3. A second run has nothing to do.
    let kernel_built = play.kernel();
    assert_eq!(
        play.playbook(false, &peers),
        0,
        "second run changes nothing"
    );
    assert_same(
        &kernel_built,
        &play.kernel(),
        "second run changed the kernel",
    );

    // 4. Check mode on the built hub: nothing to do, nothing touched.
    let files_before = play.state_files();
    assert!(
        files_before.is_some(),
        "the state directory of the built hub"
    );
    assert_eq!(play.playbook(true, &peers), 0, "check run on the built hub");
    assert_same(
        &kernel_built,
        &play.kernel(),
        "check run changed the kernel",
    );
    assert_eq!(
        play.state_files(),
        files_before,
        "check run changed the state directory"
    );

    // 5. c00 dropped from the list: check mode predicts its removal, the run removes it alone.
    let fewer = json!([c01, "c02"]);
    let kept_before: Vec<String> = ["c01", "c02"].iter().map(|p| play.peer_kernel(p)).collect();
    let files_before = play.state_files();
    assert_eq!(play.playbook(true, &fewer), 1, "check run: hub sync");
    assert_same(
        &kernel_built,
        &play.kernel(),
        "check run changed the kernel",
    );
    assert_eq!(play.state_files(), files_before);
    assert_eq!(play.playbook(false, &fewer), 1, "hub sync removes c00");
    assert!(
        !netns_with_prefix(&play.lab.prefix).contains(&play.peer_ns("c00")),
        "c00's namespace is gone"
    );
    assert!(
        sh(&format!(
            "pgrep -f '^wireguard-go {}c00-wg'",
            play.lab.prefix
        ))
        .code
            != 0,
        "c00's wireguard-go is gone"
    );
    assert_eq!(play.peer_names(), ["c01", "c02"]);
    let kept_after: Vec<String> = ["c01", "c02"].iter().map(|p| play.peer_kernel(p)).collect();
    assert_same(
        &kept_before.join("\n"),
        &kept_after.join("\n"),
        "the peers still listed are untouched",
    );
    assert_eq!(play.playbook(false, &fewer), 0, "and then nothing to do");

    // 6. `hub down` with the playbook's settings leaves nothing.
    play.hub(&["-q", "down"]).ok();
    assert_eq!(netns_with_prefix(&play.lab.prefix), Vec::<String>::new());
    assert_same(&kernel_fresh, &play.kernel(), "after hub down");
    assert!(!play.state.exists(), "hub down removes the state directory");
    play.leaks().ok();
}
