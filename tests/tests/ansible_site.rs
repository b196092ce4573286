//! Issue 26: many hubs from one inventory. examples/ansible/site.yml (the niransix_hub role) runs
//! against four hubs on this machine: two regions, each a pair (a primary and the standby that
//! names it in `hub_primary`), every hub an inventory host with `ansible_connection=local` and its
//! own HUB_NS, HUB_PREFIX, HUB_STATE_DIR and hub.conf. Each region has an underlay (a bridge in a
//! namespace of its own) where its floating address lives, and devices on it running the real
//! `wg-quick` with the config the role delivered to the controller.
//!
//! Checked against the kernel, the hubs' records and real traffic:
//! - runs: check mode on a fresh machine (nothing changes; it counts, host by host, what the real
//!   run then changes), the real run, a second run (changed=0), check mode again (changed=0,
//!   nothing touched);
//! - pairs: each standby's `export --secrets` equals its primary's, after every run;
//! - client configs: exactly each hub's peers, 0600, each what the hub's `peer conf` prints, the
//!   standby's the same as its primary's; written only when they change;
//! - real clients: a device per region comes up with its config from the controller and reaches
//!   its hub; after a takeover (the floating address moved, `hub reseed` on the standby) it
//!   reaches the standby;
//! - changes: a peer dropped from one region goes from that pair only (the other region's tunnels
//!   untouched); a peer moved from one region to the other keeps its client key, and its new
//!   config lands on the controller and carries real traffic.

use std::collections::BTreeMap;
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::Duration;

use niransix_tests::*;
use serde_json::{json, Value};

/// The hosts of the inventory: region, host name, the primary it is the standby of.
const HOSTS: [(&str, &str, Option<&str>); 4] = [
    ("eu", "eu1", None),
    ("eu", "eu2", Some("eu1")),
    ("us", "us1", None),
    ("us", "us2", Some("us1")),
];

/// The center's address on the internal network (HUB_ADDRESS's default): what a device pings.
const CENTER: &str = "100.64.0.10";

/// A region's underlay network, /24: eu 10.97.0.0, us 10.98.0.0; the floating address is .100.
fn net(region: &str) -> &'static str {
    if region == "eu" {
        "10.97.0"
    } else {
        "10.98.0"
    }
}

fn vip(region: &str) -> String {
    format!("{}.100", net(region))
}

/// The four hubs, the regions' underlays and devices, Ansible, and the inventory's peer lists.
struct Site {
    hubs: BTreeMap<&'static str, HubLab>,
    lab: Lab,
    ansible: Ansible,
    /// The test's directory: the inventory, the controller's client configs, the devices' copies.
    dir: PathBuf,
    peers: BTreeMap<&'static str, Vec<Value>>,
}

impl Site {
    fn new(test: &str) -> Option<Site> {
        let lab = Lab::new();
        let dir = std::env::temp_dir().join(format!("{}-site", lab.prefix));
        let ansible = Ansible::new(dir.join("ansible"), test)?;
        let hubs = HOSTS
            .iter()
            .map(|(_, host, _)| (*host, HubLab::new().without_mode()))
            .collect();
        for region in ["eu", "us"] {
            let ul = lab.netns(&format!("ul{region}"));
            sh(&format!(
                "set -e; ip -n {ul} link add br0 type bridge; ip -n {ul} link set br0 up"
            ))
            .ok();
        }
        Some(Site {
            hubs,
            lab,
            ansible,
            dir,
            peers: BTreeMap::new(),
        })
    }

    fn hub(&self, host: &str) -> &HubLab {
        &self.hubs[host]
    }

    /// The inventory, written for the peer lists of now: every host local, with its own hub.
    fn inventory(&self) -> PathBuf {
        let mut regions = serde_json::Map::new();
        for region in ["eu", "us"] {
            let hosts: serde_json::Map<String, Value> = HOSTS
                .iter()
                .filter(|(r, _, _)| *r == region)
                .map(|(_, host, primary)| {
                    let hub = self.hub(host);
                    let mut vars = json!({
                        "hub_ns": hub.ns,
                        "hub_prefix": hub.lab.prefix,
                        "hub_state_dir": hub.state,
                        "hub_conf_path": hub.state.with_extension("conf"),
                    });
                    if let Some(p) = primary {
                        vars["hub_primary"] = json!(p);
                    }
                    (host.to_string(), vars)
                })
                .collect();
            regions.insert(
                region.into(),
                json!({
                    "hosts": hosts,
                    "vars": {
                        "hub_conf": {"HUB_ENDPOINT": vip(region)},
                        "hub_peers": self.peers[region],
                    },
                }),
            );
        }
        let inventory = json!({"all": {
            "vars": {
                "ansible_connection": "local",
                "ansible_python_interpreter": "/usr/bin/python3",
                "niransix_bin_dir": bin_dir(),
                "hub_conf_dir": self.configs_dir(),
            },
            "children": {"hubs": {"children": regions}},
        }});
        let path = self.dir.join("inventory.yml");
        std::fs::write(&path, inventory.to_string()).expect("the inventory");
        path
    }

    fn configs_dir(&self) -> PathBuf {
        self.dir.join("client-configs")
    }

    /// site.yml (`--check` if CHECK), which must succeed: each host's changed count.
    #[track_caller]
    fn run(&self, check: bool) -> BTreeMap<String, u32> {
        let args: &[&str] = if check { &["--check", "--diff"] } else { &[] };
        let (r, recap) = self
            .ansible
            .playbook(&self.inventory(), "site.yml", &json!({}), args);
        assert_no_keys_shown(&self.hubs, &r.stdout);
        recap
            .into_iter()
            .map(|(host, counts)| (host, counts.changed))
            .collect()
    }

    /// site.yml with extra VARS, which must fail: its output.
    #[track_caller]
    fn run_failing(&self, vars: &Value) -> String {
        let r = self
            .ansible
            .playbook_may_fail(&self.inventory(), "site.yml", vars, &[]);
        let recap = Ansible::recap(&r);
        assert!(
            r.code != 0 && recap.values().any(|h| h.failed > 0),
            "the run did not fail: {recap:?}\n{}",
            r.stdout
        );
        r.stdout
    }

    /// A check run that must change nothing (kernel tunnels, records, configs), then the real
    /// run, whose changed count per host the check run predicted: that count.
    #[track_caller]
    fn check_then_run(&self) -> BTreeMap<String, u32> {
        let before = self.everything();
        let predicted = self.run(true);
        assert_eq!(self.everything(), before, "the check run changed something");
        let changed = self.run(false);
        assert_eq!(
            changed, predicted,
            "check mode predicted the real run, host by host"
        );
        self.assert_pairs_equal();
        changed
    }

    /// What a run may change, read back: every hub's tunnels and processes, its records and keys
    /// (`export --secrets`), and the controller's configs.
    fn everything(&self) -> String {
        let mut out = String::new();
        for (host, hub) in &self.hubs {
            out.push_str(&format!("== {host}\n{}{}", hub.tunnels(), hub.export(true)));
        }
        out + &format!("{:?}", self.configs())
    }

    /// Every standby's `export --secrets` equals its primary's: the same peers, ports,
    /// addresses, keys and endpoints.
    #[track_caller]
    fn assert_pairs_equal(&self) {
        for (_, host, primary) in HOSTS {
            if let Some(p) = primary {
                assert_eq!(
                    self.hub(host).export(true),
                    self.hub(p).export(true),
                    "standby {host} is not a copy of its primary {p}"
                );
            }
        }
    }

    /// The controller's client configs: host -> file -> (mode, text).
    fn configs(&self) -> BTreeMap<String, BTreeMap<String, (u32, String)>> {
        let mut all = BTreeMap::new();
        for (_, host, _) in HOSTS {
            let dir = self.configs_dir().join(host);
            let files = std::fs::read_dir(&dir)
                .map(|entries| {
                    entries
                        .map(|e| {
                            let path = e.unwrap().path();
                            let mode =
                                std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
                            let name = path.file_name().unwrap().to_string_lossy().to_string();
                            (name, (mode, std::fs::read_to_string(&path).unwrap()))
                        })
                        .collect()
                })
                .unwrap_or_default();
            all.insert(host.to_string(), files);
        }
        all
    }

    /// Every host's configs on the controller are exactly its region's peers', 0600, each what
    /// its hub's `peer conf` prints (so the standby's equal the primary's).
    #[track_caller]
    fn assert_configs(&self) {
        let configs = self.configs();
        for (region, host, _) in HOSTS {
            let hub = self.hub(host);
            let names = names(&self.peers[region]);
            let files: Vec<String> = configs[host].keys().cloned().collect();
            let want: Vec<String> = names.iter().map(|n| format!("{n}.conf")).collect();
            assert_eq!(files, want, "{host}'s client configs on the controller");
            for n in &names {
                let (mode, text) = &configs[host][&format!("{n}.conf")];
                assert_eq!(*mode, 0o600, "{host}/{n}.conf's mode");
                let conf = hub
                    .hub_env(
                        &[&format!("HUB_ENDPOINT={}", vip(region))],
                        &["peer", "conf", n],
                    )
                    .ok()
                    .stdout;
                assert_eq!(text, &conf, "{host}/{n}.conf is its hub's `peer conf {n}`");
            }
        }
    }

    /// Joins each hub's center to its region's underlay (`ul0`, .1 the primary, .2 the
    /// standby) and gives the floating address to the primary.
    fn attach(&self) {
        for (region, host, primary) in HOSTS {
            let hub = self.hub(host);
            let (p, ns, n) = (&hub.lab.prefix, &hub.ns, net(region));
            let ul = self.lab.name(&format!("ul{region}"));
            let last = if primary.is_some() { 2 } else { 1 };
            sh(&format!(
                "set -e; ip link add {p}u netns {ul} type veth peer name ul0 netns {ns}; \
                 ip -n {ul} link set {p}u master br0 up; \
                 ip -n {ns} addr add {n}.{last}/24 dev ul0; ip -n {ns} link set ul0 up"
            ))
            .ok();
            if primary.is_none() {
                sh(&format!("ip -n {ns} addr add {}/24 dev ul0", vip(region))).ok();
            }
        }
    }

    /// A device namespace on REGION's underlay at .(10+TAG).
    fn device(&self, region: &str, tag: u8) -> String {
        let ul = self.lab.name(&format!("ul{region}"));
        underlay_device(&self.lab, &ul, net(region), tag)
    }

    /// The real client in device namespace D with CONF.
    fn wg_quick_up(&self, d: &str, tag: u8, conf: &str) {
        wg_quick_up(&self.lab, &self.dir, d, tag, conf);
    }

    /// The config the controller holds for PEER of HOST.
    fn config(&self, host: &str, peer: &str) -> String {
        std::fs::read_to_string(self.configs_dir().join(host).join(format!("{peer}.conf")))
            .unwrap_or_else(|e| panic!("{host}/{peer}.conf on the controller: {e}"))
    }
}

impl Drop for Site {
    fn drop(&mut self) {
        self.lab.cleanup();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn names(peers: &[Value]) -> Vec<String> {
    let mut names: Vec<String> = peers
        .iter()
        .map(|p| {
            p.as_str()
                .unwrap_or_else(|| p["name"].as_str().unwrap())
                .to_string()
        })
        .collect();
    names.sort();
    names
}

/// No private or preshared key of any hub appears in Ansible's output.
#[track_caller]
fn assert_no_keys_shown(hubs: &BTreeMap<&'static str, HubLab>, output: &str) {
    for (host, hub) in hubs {
        for key in secrets_of(&hub.export(true)) {
            assert!(
                !output.contains(&key),
                "Ansible's output shows a key of {host}"
            );
        }
    }
}

/// Whether D reaches the center through its tunnel within SECS.
fn reaches(d: &str, secs: u64) -> bool {
    poll_until(Duration::from_secs(secs), || {
        nsh(d, &format!("ping -n -q -c 1 -W 1 {CENTER}")).code == 0
    })
}

/// The latest handshake (epoch seconds) of PEER's tunnel on HUB, 0 before the first.
fn handshake(hub: &HubLab, peer: &str) -> u64 {
    hub.hub_wg(peer, "latest-handshakes")
        .split_whitespace()
        .nth(1)
        .and_then(|t| t.parse().ok())
        .unwrap_or(0)
}

/// The counts every host changed in a run, for the assertions (hosts absent: 0).
fn counts(pairs: &[(&str, u32)]) -> BTreeMap<String, u32> {
    HOSTS
        .iter()
        .map(|(_, h, _)| {
            let n = pairs.iter().find(|(p, _)| p == h).map_or(0, |(_, n)| *n);
            (h.to_string(), n)
        })
        .collect()
}

#[test]
fn four_hubs_from_one_inventory_converge_deliver_configs_and_move_peers() {
    let Some(mut site) =
        Site::new("four_hubs_from_one_inventory_converge_deliver_configs_and_move_peers")
    else {
        return;
    };
    // m1 brings its own key (the device keeps it when it moves to the other region).
    let m1_private = sh("wg genkey").ok().stdout.trim().to_string();
    let m1_public = run_stdin("wg", &["pubkey"], Some(&m1_private))
        .ok()
        .stdout
        .trim()
        .to_string();
    site.peers.insert(
        "eu",
        vec![
            json!("e1"),
            json!("e2"),
            json!({"name": "e3", "keepalive": 10}),
        ],
    );
    site.peers.insert(
        "us",
        vec![json!("u1"), json!({"name": "m1", "public_key": m1_public})],
    );

    // 1-2. Check mode on a fresh machine predicts, host by host, what the real run changes:
    // hub.conf, the sync and the client configs on every host.
    let first = site.check_then_run();
    assert_eq!(
        first,
        counts(&[("eu1", 3), ("eu2", 3), ("us1", 3), ("us2", 3)])
    );
    for (region, host, _) in HOSTS {
        let mut listed = peer_names(&site.hub(host).status());
        listed.sort();
        assert_eq!(listed, names(&site.peers[region]), "{host}'s peers");
    }
    site.assert_configs();
    assert_eq!(
        site.configs()["eu1"],
        site.configs()["eu2"],
        "a standby's configs are its primary's"
    );

    // 3-4. A second run and a check run change nothing (check_then_run: nothing touched).
    let written = std::fs::metadata(site.configs_dir().join("eu1/e1.conf"))
        .unwrap()
        .modified()
        .unwrap();
    assert_eq!(site.check_then_run(), counts(&[]), "nothing to do");
    assert_eq!(
        std::fs::metadata(site.configs_dir().join("eu1/e1.conf"))
            .unwrap()
            .modified()
            .unwrap(),
        written,
        "an unchanged config is not written again"
    );

    // Errors fail the host with a message naming the value, and change nothing: a variable the
    // role checks before anything runs, a value the hub refuses (its own message, not Ansible's
    // "Expecting value" from a reply that is not JSON).
    let before = site.everything();
    let good = site.peers["us"].clone();
    site.peers.insert(
        "us",
        vec![json!("u1"), json!({"name": "u9", "port": 99999})],
    );
    let r = site.run_failing(&json!({}));
    assert!(
        r.contains("hub: error: line 2: port '99999' is not a port"),
        "the hub's own error: {r}"
    );
    assert!(!r.contains("Expecting value"), "{r}");
    site.peers.insert("us", good);
    let r = site.run_failing(&json!({"hub_conf": {"HUB_ENDPONT": "x"}}));
    assert!(
        r.contains("hub_conf: HUB_ENDPONT is not a hub.conf key"),
        "{r}"
    );
    let r = site.run_failing(&json!({"hub_mode": "zone"}));
    assert!(
        r.contains("value of hub_mode must be one of: netns, zones, got: zone"),
        "{r}"
    );
    assert_eq!(site.everything(), before, "a failed run changed something");

    // Real clients with the controller's configs, unedited: e1 in eu, u1 in us.
    site.attach();
    let d1 = site.device("eu", 1);
    site.wg_quick_up(&d1, 1, &site.config("eu1", "e1"));
    assert!(reaches(&d1, 15), "e1's device reaches its hub");
    let d2 = site.device("us", 2);
    site.wg_quick_up(&d2, 2, &site.config("us1", "u1"));
    assert!(reaches(&d2, 15), "u1's device reaches its hub");
    assert!(handshake(site.hub("eu1"), "e1") > 0 && handshake(site.hub("us1"), "u1") > 0);

    // 5. e2 dropped from eu: gone from eu1 and eu2 and from their configs; us untouched.
    let us_before: String = ["us1", "us2"]
        .iter()
        .map(|h| site.hub(h).tunnels() + &site.hub(h).export(true))
        .collect();
    site.peers
        .get_mut("eu")
        .unwrap()
        .retain(|p| p.as_str() != Some("e2"));
    assert_eq!(
        site.check_then_run(),
        counts(&[("eu1", 2), ("eu2", 2)]),
        "the sync and e2's config, on eu's pair only"
    );
    site.assert_configs();
    let us_after: String = ["us1", "us2"]
        .iter()
        .map(|h| site.hub(h).tunnels() + &site.hub(h).export(true))
        .collect();
    assert_eq!(us_before, us_after, "the other region is untouched");
    assert!(reaches(&d1, 5), "e1 carries on");

    // 6. m1 moves from us to eu with its own key: us removes it, eu adds it with that key, and
    // its new config (the eu hub's key and floating address) lands on the controller.
    let m1 = site.peers.get_mut("us").unwrap().pop().unwrap();
    site.peers.get_mut("eu").unwrap().push(m1);
    assert_eq!(
        site.check_then_run(),
        counts(&[("eu1", 2), ("eu2", 2), ("us1", 2), ("us2", 2)]),
        "the sync and m1's config, on every hub"
    );
    site.assert_configs();
    assert_eq!(
        site.hub("eu1").peer_status("m1")["client_public_key"],
        json!(m1_public),
        "m1 keeps its client key"
    );
    let conf = site.config("eu1", "m1");
    assert!(
        conf.contains(&format!("Endpoint = {}:", vip("eu"))),
        "{conf}"
    );
    let filled: String = conf
        .lines()
        .map(|l| {
            if l.starts_with("PrivateKey = ") {
                format!("PrivateKey = {m1_private}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect();
    let d3 = site.device("eu", 3);
    site.wg_quick_up(&d3, 3, &filled);
    assert!(reaches(&d3, 15), "m1's device reaches its new hub");

    // 7. Takeover in eu. eu2 is the standby (keepalived's BACKUP: `hub standby`); eu1's repair
    // (`hub up`) records each device's endpoint, and the next run brings it to eu2 (its only
    // change). Then eu1 steps down, the floating address moves, eu2 reseeds: e1 and m1 reach
    // eu2 with the configs they have.
    site.hub("eu2").hub(&["-q", "standby"]).ok();
    site.hub("eu1").hub(&["-q", "up"]).ok();
    assert_eq!(
        site.check_then_run(),
        counts(&[("eu2", 1)]),
        "the endpoints reach the standby"
    );
    let (eu1, eu2) = (site.hub("eu1"), site.hub("eu2"));
    eu1.hub(&["-q", "standby"]).ok();
    sh(&format!(
        "ip -n {} addr del {v}/24 dev ul0; ip -n {} addr add {v}/24 dev ul0",
        eu1.ns,
        eu2.ns,
        v = vip("eu")
    ))
    .ok();
    eu2.hub(&["-q", "reseed"]).ok();
    for (d, peer) in [(&d1, "e1"), (&d3, "m1")] {
        assert!(
            poll_until(Duration::from_secs(20), || handshake(eu2, peer) > 0),
            "{peer}'s device handshakes with the standby"
        );
        assert!(reaches(d, 10), "{peer}'s device reaches the standby");
    }
    assert!(reaches(&d2, 5), "us carries on");

    // After the takeover the inventory still converges: nothing to do.
    assert_eq!(
        site.check_then_run(),
        counts(&[]),
        "nothing to do after the takeover"
    );
    for hub in site.hubs.values() {
        hub.hub(&["-q", "down"]).ok();
        hub.leaks().ok();
    }
}
