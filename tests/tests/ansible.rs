//! examples/ansible/hub.yml (the niransix_hub role and a port forward) against the real kernel:
//! check mode on a fresh machine (nothing changes, and it counts what the real run then
//! changes), the real run, a second run (nothing to do), check mode on the built hub (state
//! directory byte-identical, kernel unchanged), a peer dropped from `hub_peers` (removed, its
//! client config too; the others untouched), and `hub down` (nothing left). The client configs
//! on the controller are checked after each change: exactly the peers', 0600, each what `hub peer
//! conf` prints. tests/ansible_site.rs runs many hubs (examples/ansible/site.yml).
//!
//! The hub runs with `HUB_NS` and `HUB_PREFIX` from the Lab prefix, so it never touches the host's
//! own network, and with `HUB_STATE_DIR`, hub.conf and the client configs in temporary
//! directories; Ansible runs with its configuration, home and temporary directories in another.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};

use niransix_tests::*;
use serde_json::{json, Value};

/// The port forward the playbook adds (its defaults).
const FORWARD_DADDR: &str = "203.0.113.254";
const FORWARD_DPORT: &str = "54321";
const FORWARD_TO: &str = "100.64.0.10";

/// What the playbook gives the hub as HUB_ENDPOINT (the configs it delivers name it).
const ENDPOINT: &str = "198.51.100.7";

/// One hub built by the playbook: the kit's [`HubLab`] (which it derefs to) with the environment
/// the playbook gives the hub (no HUB_MODE), its hub.conf and the controller's directory of
/// client configs beside its state directory (so that the HubLab's drop removes them too), and
/// Ansible's own directory.
struct Play {
    hub: HubLab,
    ansible: Ansible,
    configs: PathBuf,
}

impl std::ops::Deref for Play {
    type Target = HubLab;
    fn deref(&self) -> &HubLab {
        &self.hub
    }
}

impl Play {
    fn new(test: &str) -> Option<Play> {
        let hub = HubLab::new().without_mode();
        let ansible = Ansible::new(hub.state.with_extension("ansible"), test)?;
        let configs = hub.state.with_extension("configs");
        Some(Play {
            hub,
            ansible,
            configs,
        })
    }

    /// Runs the playbook (with `--check` if `check`) for `peers` (the `hub_peers` list); asserts
    /// it succeeded and returns the `changed=` count of its PLAY RECAP.
    #[track_caller]
    fn playbook(&self, check: bool, peers: &Value) -> u32 {
        self.playbook_with(check, peers, &json!({}))
    }

    /// The same with more hub.conf keys (`hub_conf`) than HUB_ENDPOINT.
    #[track_caller]
    fn playbook_with(&self, check: bool, peers: &Value, conf: &Value) -> u32 {
        let inventory = repo_root().join("examples/ansible/inventory.ini");
        let mut hub_conf = json!({"HUB_ENDPOINT": ENDPOINT});
        for (k, v) in conf.as_object().into_iter().flatten() {
            hub_conf[k] = v.clone();
        }
        let vars = json!({
            "hub_ns": self.ns,
            "hub_prefix": self.lab.prefix,
            "hub_state_dir": self.state,
            "hub_conf_path": self.state.with_extension("conf"),
            "hub_conf_dir": self.configs,
            "hub_conf": hub_conf,
            "niransix_bin_dir": bin_dir(),
            "hub_peers": peers,
        });
        let args: &[&str] = if check { &["--check"] } else { &[] };
        let (_, recap) = self.ansible.playbook(&inventory, "hub.yml", &vars, args);
        recap["localhost"].changed
    }

    /// The client configs on the controller: file name -> (mode, text).
    fn configs(&self) -> BTreeMap<String, (u32, String)> {
        let dir = self.configs.join("localhost");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return BTreeMap::new();
        };
        entries
            .map(|e| {
                let path = e.unwrap().path();
                let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                let name = path.file_name().unwrap().to_string_lossy().to_string();
                (name, (mode, std::fs::read_to_string(&path).unwrap()))
            })
            .collect()
    }

    /// Asserts the controller holds exactly PEERS' configs, 0600, each what `hub peer conf`
    /// prints.
    #[track_caller]
    fn assert_configs(&self, peers: &[&str]) {
        let configs = self.configs();
        let names: Vec<&str> = configs.keys().map(String::as_str).collect();
        let want: Vec<String> = peers.iter().map(|p| format!("{p}.conf")).collect();
        assert_eq!(names, want, "the client configs on the controller");
        for p in peers {
            let (mode, text) = &configs[&format!("{p}.conf")];
            assert_eq!(*mode, 0o600, "{p}.conf's mode");
            let conf = self
                .hub_env(&[&format!("HUB_ENDPOINT={ENDPOINT}")], &["peer", "conf", p])
                .stdout;
            assert_eq!(text, &conf, "{p}.conf is what `hub peer conf {p}` prints");
        }
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
    let Some(play) = Play::new("ansible_check_predicts_then_converges_removes_and_tears_down")
    else {
        return;
    };
    // c00 and c02 by name (the hub picks port and address, and makes the client's keys),
    // c01 with the client's public key, a port and an address of its own.
    let client_key = sh("wg genkey | wg pubkey").ok().stdout.trim().to_string();
    let c01 =
        json!({"name": "c01", "public_key": client_key, "port": 50007, "address": "100.64.0.7"});
    let peers = json!(["c00", c01.clone(), "c02"]);

    // The directory hub.conf goes into exists already (the machine's temporary directory):
    // the role makes it when missing and never changes its mode.
    let conf_dir = play.state.with_extension("conf");
    let conf_dir = conf_dir.parent().expect("hub.conf's directory");
    let dir_mode = || std::fs::metadata(conf_dir).unwrap().permissions().mode();
    let conf_dir_mode = dir_mode();

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
    assert!(
        !play.state.with_extension("conf").exists() && !play.configs.exists(),
        "check run wrote hub.conf or the controller's configs"
    );

    // 2. The real run changes what check mode said: hub.conf, the center and the peers, the
    // client configs and the port forward.
    let real_count = play.playbook(false, &peers);
    assert_eq!(real_count, check_count, "check mode predicted the real run");
    assert_eq!(
        real_count, 4,
        "hub.conf, hub sync, the client configs and the DNAT change"
    );
    assert_eq!(play.peer_names(), ["c00", "c01", "c02"]);
    play.assert_configs(&["c00", "c01", "c02"]);
    assert_eq!(
        dir_mode(),
        conf_dir_mode,
        "the mode of {} changed",
        conf_dir.display()
    );
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

    // 4b. A config on the controller changed by hand (its mode, another's text) and a stray
    // config: the next run puts them right (one task), the hub untouched.
    let dir = play.configs.join("localhost");
    std::fs::set_permissions(dir.join("c00.conf"), std::fs::Permissions::from_mode(0o644)).unwrap();
    std::fs::write(dir.join("c02.conf"), "edited\n").unwrap();
    std::fs::write(dir.join("zz.conf"), "stray\n").unwrap();
    assert_eq!(play.playbook(true, &peers), 1, "check run: the configs");
    assert_eq!(play.playbook(false, &peers), 1, "the configs put right");
    play.assert_configs(&["c00", "c01", "c02"]);
    assert_same(&kernel_built, &play.kernel(), "the hub is untouched");

    // 5. c00 dropped from the list: check mode predicts its removal, the run removes it alone.
    let fewer = json!([c01, "c02"]);
    let kept_before: Vec<String> = ["c01", "c02"].iter().map(|p| play.peer_kernel(p)).collect();
    let files_before = play.state_files();
    let configs_before = play.configs();
    assert_eq!(
        play.playbook(true, &fewer),
        2,
        "check run: hub sync, c00's config"
    );
    assert_eq!(
        play.configs(),
        configs_before,
        "check run changed the configs"
    );
    assert_same(
        &kernel_built,
        &play.kernel(),
        "check run changed the kernel",
    );
    assert_eq!(play.state_files(), files_before);
    assert_eq!(
        play.playbook(false, &fewer),
        2,
        "hub sync removes c00, and its config goes from the controller"
    );
    play.assert_configs(&["c01", "c02"]);
    assert!(
        !netns_with_prefix(&play.lab.prefix).contains(&play.peer_ns("c00")),
        "c00's namespace is gone"
    );
    assert_eq!(
        userspace_identity(&format!("{}c00-wg", play.lab.prefix)),
        "",
        "c00's tunnel is gone"
    );
    assert_eq!(play.peer_names(), ["c01", "c02"]);
    let kept_after: Vec<String> = ["c01", "c02"].iter().map(|p| play.peer_kernel(p)).collect();
    assert_same(
        &kept_before.join("\n"),
        &kept_after.join("\n"),
        "the peers still listed are untouched",
    );
    assert_eq!(play.playbook(false, &fewer), 0, "and then nothing to do");

    // 5b. A changed hub_conf (a forward for every device) reaches the peers the hub had: hub.conf
    // and the handler's `hub up`, predicted by check mode; then nothing to do.
    let forwards = json!({"HUB_FORWARDS": "tcp/22"});
    let files_before = play.state_files();
    assert_eq!(
        play.playbook_with(true, &fewer, &forwards),
        2,
        "check run: hub.conf and hub up"
    );
    assert_eq!(
        play.state_files(),
        files_before,
        "check run changed the records"
    );
    assert_eq!(
        play.playbook_with(false, &fewer, &forwards),
        2,
        "hub.conf and hub up"
    );
    let conf = std::fs::read_to_string(play.state.with_extension("conf")).unwrap();
    assert!(conf.contains("HUB_FORWARDS=tcp/22"), "{conf}");
    // (read with the new settings, as the hub's commands now read hub.conf)
    let r = play.hub_env(&["HUB_FORWARDS=tcp/22"], &["-q", "check"]);
    let status = r.json();
    assert_eq!(r.code, 0, "healthy with its new settings: {status}");
    for p in status["peers"].as_array().unwrap() {
        assert_eq!(p["forwards"], json!(["tcp/22"]), "{p}");
    }
    assert_eq!(
        play.playbook_with(false, &fewer, &forwards),
        0,
        "nothing to do"
    );

    // 6. `hub down` with the playbook's settings leaves nothing.
    play.hub(&["-q", "down"]).ok();
    assert_eq!(netns_with_prefix(&play.lab.prefix), Vec::<String>::new());
    assert_same(&kernel_fresh, &play.kernel(), "after hub down");
    assert!(!play.state.exists(), "hub down removes the state directory");
    play.leaks().ok();
}
