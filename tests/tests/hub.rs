//! niransix-sh/hub against the real kernel: real WireGuard handshakes through wireguard-go,
//! real pings, conntrack, `wg show`, and nothing left behind.
//!
//! Every hub here is the kit's `HubLab`: it runs with `HUB_NS` and `HUB_PREFIX` taken from the
//! Lab prefix (so it never touches the host's own network and the Lab removes whatever a failure
//! leaves), and with `HUB_STATE_DIR` in a temporary directory.
//!
//! The suite runs in either `HUB_MODE`, chosen by `NIRANSIX_HUB_MODE` (`netns`, the default, or
//! `zones`). What differs between the modes is in the kit's `HubLab` and this suite's
//! `HubSuite` helpers (where a peer's tunnel lives, how its NAT and return route look, how it is
//! broken behind the hub's back), so each test reads the same in both; where a test checks an
//! object only one mode has, it asserts the other mode's equivalent, and says so loudly where
//! there is none.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use niransix_tests::*;
use serde_json::{json, Value};

const SERVER: &str = "100.64.0.10";
const CLIENT_ADDR: &str = "192.168.1.10";

/// HUB_MODE=zones: a peer's connection mark and routing table are this plus its port (its
/// conntrack zone is the port), its fwmark rule has this priority (niransix-sh/hub).
const ZONE_MARK_BASE: u64 = 0x4e58_0000;
/// The priority of the first block of 64 ports' fwmark rules: a peer's is this plus its port / 64
/// (hubctl's `fwmark`).
const ZONE_RULE_PRIORITY: u64 = 1000;

/// Says loudly that part of `test` checks what only HUB_MODE=netns builds, and what the test
/// checks in its place; the rest of the test runs. (Straight to stderr, past libtest's capture of
/// `eprintln!`, so that it shows in a passing run too.)
fn netns_only_part(test: &str, what: &str) {
    mode_only_part(test, "zones", what);
}

/// Says loudly that part of `test` checks what only HUB_MODE=zones builds (the suite runs in
/// both modes: that part runs in the zones lane).
fn zones_only_part(test: &str, what: &str) {
    mode_only_part(test, "netns", what);
}

fn mode_only_part(test: &str, mode: &str, what: &str) {
    use std::io::Write;
    let _ = writeln!(
        std::io::stderr(),
        "\n*** {test}: HUB_MODE={mode}: {what} ***\n"
    );
}

/// What this suite asks of a hub beyond the kit's [`HubLab`]: its snapshots, a kill at a chosen
/// instant, clients through niransix-sh/client, and the objects that differ between the modes
/// (where a peer's NAT and return route live, how they are broken behind the hub's back).
trait HubSuite {
    /// Everything a hub command could change: the state directory's files (with their bytes)
    /// and, in the center, the switch and every namespace carrying the prefix, the kernel state
    /// (see net_state), WireGuard interfaces and peers, and the wireguard-go processes.
    fn everything(&self) -> String;

    /// `everything`, once the kernel's own settling is over: no bridge's operstate is UNKNOWN
    /// any more (linkwatch sets it UP after its ports come up, up to seconds later on a loaded
    /// machine), and two snapshots half a second apart agree.
    fn settled(&self) -> String;

    /// Starts `hub ARGS...` and kill -9s it, with whatever tool it is running at that moment
    /// (its whole process group), after `delay_ms`.
    fn killed(&self, args: &[&str], delay_ms: u64);

    /// The WireGuard interface niransix-sh/client makes for `peer`'s client.
    fn client_wg(&self, peer: &str) -> String;

    /// A simulated remote client for `peer` on the underlay (`HubLab::underlay_client`),
    /// configured from `hub peer conf` through niransix-sh/client, using 192.168.1.10 like every
    /// other client.
    fn client(&mut self, peer: &str);

    /// `client down` of `peer`'s client, then its namespace deleted.
    fn remove_client(&self, peer: &str);

    /// Removes a peer's objects and wireguard-go behind the hub's back (its record stays): its
    /// namespace, or (zones) its NAT rules, fwmark rule and address in the center.
    fn destroy_peer_objects(&self, peer: &str);

    /// The peer's natctl rules (`natctl list` in the namespace its tunnel ends in), without
    /// their counters; zones: its elements of the center's sets (keyed by its tunnel or one of
    /// its addresses), `{"set":..,"key":..,"value":..}`.
    fn nat_rules(&self, peer: &str) -> Vec<Value>;

    /// Deletes the peer's NAT behind the hub's back: flushes its namespace's ruleset, or (zones)
    /// deletes its elements from the center's sets (the other peers' stay).
    fn break_nat(&self, peer: &str);

    /// What `hub check` says of a peer whose NAT `break_nat` deleted, and what `up` runs for it.
    fn nat_problem_and_repair(&self) -> (&'static str, &'static str);

    /// The peer's NAT is there exactly once (a re-run never adds a second): one masquerade rule
    /// in its namespace, or (zones) one zone, connmark and SNAT rule and one fwmark rule in the
    /// center, as `nft` and `ip rule` show them.
    fn assert_nat_once(&self, peer: &str, context: &str);

    /// HUB_MODE=zones: the fwmarks of the center's policy routing rules at the hub's priority,
    /// each looking up the table of its own number (`ip -j rule`).
    fn fwmark_rules(&self) -> Vec<u64>;

    /// HUB_MODE=zones: the /32s on the center's interface hub0 (its own address excluded).
    fn hub0_peer_addresses(&self) -> Vec<String>;

    /// The peer's default route into its tunnel (`ip -j route`): in its namespace's main table,
    /// or (zones) in the center's table numbered by its mark.
    fn default_route(&self, peer: &str) -> Value;

    /// What the peer's traffic to the center depends on besides its tunnel, for a churn of
    /// other peers to leave alone: the MAC its namespace knows the center by (hub0's, never the
    /// bridge's), or (zones) its NAT rules, fwmark rule, routing table and address in the center.
    fn path_to_center(&self, peer: &str) -> String;

    /// Nothing of a removed peer (listening on `port`) is left: no wireguard-go and no namespace
    /// or bridge port, or (zones) no link, NAT rule, fwmark rule or routing table in the center,
    /// whose /32s and fwmark rules are then exactly the remaining peers'.
    fn assert_peer_gone(&self, peer: &str, port: u64);
}

/// HUB_MODE=zones: the peer's elements of the center's sets, keyed by its tunnel or one of its
/// internal addresses, `{"set":..,"key":..,"value":..}`, sorted.
fn peer_elements(hub: &HubLab, peer: &str) -> Vec<Value> {
    let listed = tool("natctl", &["--ns", &hub.ns, "set", "list"])
        .ok()
        .json();
    let p = hub.peer_status(peer);
    let mut keys = vec![
        hub.peer_wg(peer),
        p["address"].as_str().unwrap().to_string(),
    ];
    keys.extend(p["address6"].as_str().map(str::to_string));
    let mut out = Vec::new();
    for set in listed["sets"].as_array().unwrap() {
        for e in set["elements"].as_array().unwrap() {
            let key = match &e["key"] {
                Value::String(k) => k.clone(),
                other => other.to_string(),
            };
            if keys.contains(&key) {
                out.push(serde_json::json!({"set": set["name"], "key": key, "value": e["value"]}));
            }
        }
    }
    out.sort_by_key(Value::to_string);
    out
}

impl HubSuite for HubLab {
    fn everything(&self) -> String {
        let p = &self.lab.prefix;
        let mut out = sh(&format!(
            "cd {} 2>/dev/null && find . -type f -print0 | sort -z | xargs -0r sha256sum",
            self.state.display()
        ))
        .stdout;
        for ns in netns_with_prefix(p) {
            out += &format!("== {ns}\n{}", net_state(&ns, p));
        }
        out + &self.tunnels()
    }

    fn settled(&self) -> String {
        // (a bridge still UNKNOWN after 10 s is left to the comparison of snapshots)
        poll_until(Duration::from_secs(10), || {
            !netns_with_prefix(&self.lab.prefix).iter().any(|ns| {
                sh(&format!("ip -n {ns} -br link show type bridge"))
                    .stdout
                    .contains(" UNKNOWN ")
            })
        });
        wait_stable(
            "the hub's state",
            Duration::from_secs(10),
            Duration::from_millis(500),
            || self.everything(),
        )
    }

    fn killed(&self, args: &[&str], delay_ms: u64) {
        use std::os::unix::process::CommandExt;
        let mut child = self
            .command(args)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .process_group(0)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        // SAFETY: kill(2) on our own child's process group.
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        // The group includes the wireguard-go daemons wgctl started (they do not leave it):
        // let them finish dying before the re-run, as a user re-running it would (for up to
        // 2 s: the re-run must also converge past one still dying).
        poll_until(Duration::from_secs(2), || {
            run("pgrep", &["-g", &child.id().to_string()]).code != 0
        });
    }

    fn client_wg(&self, peer: &str) -> String {
        self.lab.name(&format!("w{peer}"))
    }

    fn client(&mut self, peer: &str) {
        let cns = self.underlay_client(peer);
        let conf = self.hub(&["-q", "peer", "conf", peer]).ok().stdout;
        assert!(
            conf.contains("PrivateKey = "),
            "generated key in conf: no PrivateKey line"
        );
        assert!(
            conf.contains("Endpoint = [2001:db8::10]:"),
            "endpoint: {conf}"
        );
        let mut args = vec![format!("NIRANSIX_BIN_DIR={}", bin_dir().display())];
        args.extend([
            script("client"),
            "up".into(),
            cns.clone(),
            self.client_wg(peer),
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        let r = run_stdin("env", &refs, Some(&conf)).ok();
        assert!(r.changed(), "client up: {}", r.stdout);
    }

    fn remove_client(&self, peer: &str) {
        let (cns, wg) = (self.client_ns(peer), self.client_wg(peer));
        let mut args = vec![format!("NIRANSIX_BIN_DIR={}", bin_dir().display())];
        args.extend([
            script("client"),
            "-q".into(),
            "down".into(),
            cns.clone(),
            wg,
        ]);
        let refs: Vec<&str> = args.iter().map(String::as_str).collect();
        run("env", &refs).ok();
        run("ip", &["netns", "del", &cns]).ok();
    }

    fn destroy_peer_objects(&self, peer: &str) {
        let wg = self.peer_wg(peer);
        if !self.zones {
            crash_userspace(&wg, "TERM");
            sh(&format!("ip netns del {}", self.peer_ns(peer)));
            return;
        }
        let p = self.peer_status(peer);
        let (mark, prio) = (zone_mark(&p), zone_priority(&p));
        crash_userspace(&wg, "TERM");
        self.break_nat(peer);
        sh(&format!(
            "ip -n {ns} rule del fwmark {mark} table {mark} priority {prio}; \
             ip -n {ns} addr del {}/32 dev {}hub0",
            p["address"].as_str().unwrap(),
            self.lab.prefix,
            ns = self.ns,
        ))
        .ok();
    }

    fn nat_rules(&self, peer: &str) -> Vec<Value> {
        if self.zones {
            return peer_elements(self, peer);
        }
        let listed = tool("natctl", &["--ns", &self.peer_ns(peer), "list"])
            .ok()
            .json();
        listed["rules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| {
                let mut r = r.clone();
                let m = r.as_object_mut().unwrap();
                m.remove("bytes");
                m.remove("packets");
                r
            })
            .collect()
    }

    fn break_nat(&self, peer: &str) {
        let ns = self.peer_ns(peer);
        if !self.zones {
            sh(&format!("ip netns exec {ns} nft flush ruleset")).ok();
            return;
        }
        let elements = peer_elements(self, peer);
        assert!(!elements.is_empty(), "{peer} has elements to delete");
        for e in elements {
            let (set, key) = (e["set"].as_str().unwrap(), e["key"].as_str().unwrap());
            tool("natctl", &["--ns", &ns, "element", "del", set, key]).ok();
        }
    }

    fn nat_problem_and_repair(&self) -> (&'static str, &'static str) {
        if self.zones {
            ("no SNAT of", "element add tunnel_snat")
        } else {
            ("no NAPT rule", "masquerade")
        }
    }

    #[track_caller]
    fn assert_nat_once(&self, peer: &str, context: &str) {
        let ns = self.peer_ns(peer);
        let nft = sh(&format!("ip netns exec {ns} nft list ruleset")).stdout;
        if !self.zones {
            assert_eq!(
                nft.lines().filter(|l| l.contains("masquerade")).count(),
                1,
                "{context}: one NAPT rule in {ns}: {nft}"
            );
            return;
        }
        // (one element of each of the center's sets the peer needs, its allow entries' two:
        // forwarded, and to the center itself; no rule names it: the rules are the center's,
        // once each)
        let mut sets: Vec<String> = peer_elements(self, peer)
            .iter()
            .map(|e| {
                let set = e["set"].as_str().unwrap();
                match set.rfind('_') {
                    Some(at) if set.starts_with("allow") => set[..at].to_string(),
                    _ => set.to_string(),
                }
            })
            .collect();
        sets.sort();
        sets.dedup();
        for want in [
            "address_zone",
            "allow",
            "allow_local",
            "denied",
            "denied_local",
            "tunnel_mark",
            "tunnel_snat",
            "tunnel_zone",
            "tunnels",
        ] {
            assert!(
                sets.iter().any(|s| s == want),
                "{context}: {peer}'s element of {want} in {ns}: {sets:?}"
            );
        }
        let wg = format!("\"{}\"", self.peer_wg(peer));
        assert!(
            !nft.lines()
                .any(|l| l.contains("natctl:") && l.contains(&wg)),
            "{context}: no rule names {wg}: {nft}"
        );
        let mark = zone_mark(&self.peer_status(peer));
        assert_eq!(
            self.fwmark_rules().iter().filter(|&&m| m == mark).count(),
            1,
            "{context}: one fwmark rule for {peer}'s mark {mark:#x} in {ns}"
        );
    }

    fn fwmark_rules(&self) -> Vec<u64> {
        ip_json(Some(&self.ns), &["rule", "show"])
            .as_array()
            .unwrap()
            .iter()
            .filter(|r| {
                r["table"]
                    .as_str()
                    .is_some_and(|t| t.parse::<u64>().is_ok())
                    && r["fwmark"].is_string()
                    && r["priority"].as_u64().is_some_and(|p| {
                        (ZONE_RULE_PRIORITY..ZONE_RULE_PRIORITY + 1024).contains(&p)
                    })
            })
            .map(|r| {
                let mark = r["fwmark"].as_str().expect("a fwmark rule");
                let mark = u64::from_str_radix(mark.trim_start_matches("0x"), 16).unwrap();
                assert_eq!(r["table"], mark.to_string(), "lookup its own table: {r}");
                mark
            })
            .collect()
    }

    fn hub0_peer_addresses(&self) -> Vec<String> {
        let hub0 = format!("{}hub0", self.lab.prefix);
        let a = ip_json(Some(&self.ns), &["-4", "addr", "show", "dev", &hub0]);
        let mut v: Vec<String> = a[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["prefixlen"] == 32)
            .map(|i| i["local"].as_str().unwrap().to_string())
            .collect();
        v.sort();
        v
    }

    fn default_route(&self, peer: &str) -> Value {
        let mut args = vec!["route", "show", "default"];
        let table;
        if self.zones {
            table = zone_mark(&self.peer_status(peer)).to_string();
            args.extend(["table", &table]);
        }
        let r = ip_json(Some(&self.peer_ns(peer)), &args);
        assert_eq!(
            r.as_array().unwrap().len(),
            1,
            "{peer}: one default route: {r}"
        );
        r[0].clone()
    }

    fn path_to_center(&self, peer: &str) -> String {
        if !self.zones {
            return neighbour_mac(&self.peer_ns(peer), SERVER);
        }
        let p = self.peer_status(peer);
        let mark = zone_mark(&p);
        let addr = p["address"].as_str().unwrap().to_string();
        assert!(
            self.hub0_peer_addresses().contains(&addr),
            "{peer}: {addr} on hub0"
        );
        format!(
            "{:?}\n{}\n{}",
            self.nat_rules(peer),
            self.fwmark_rules().iter().filter(|&&m| m == mark).count(),
            sh(&format!("ip -n {} route show table {mark}", self.ns))
                .ok()
                .stdout
        )
    }

    #[track_caller]
    fn assert_peer_gone(&self, peer: &str, port: u64) {
        let wg = self.peer_wg(peer);
        assert_eq!(userspace_identity(&wg), "", "{peer}'s tunnel is gone");
        assert!(
            !Path::new(&format!("/run/netns/{}", self.lab.name(peer))).exists(),
            "{peer} has no namespace"
        );
        let switch = format!("{}hub.switch", self.lab.prefix);
        let port_link = format!("{}{peer}-br", self.lab.prefix);
        assert!(
            !sh(&format!("ip -n {switch} -o link"))
                .stdout
                .contains(&format!(" {port_link}@")),
            "{peer}'s bridge port is gone"
        );
        if !self.zones {
            return;
        }
        let links = sh(&format!("ip -n {} -o link", self.ns)).ok().stdout;
        assert!(!links.contains(&format!(" {wg}:")), "{wg} gone: {links}");
        let nat = tool("natctl", &["--ns", &self.ns, "list"]).ok().stdout;
        assert!(
            !nat.contains(&format!("\"{wg}\"")),
            "{peer}'s NAT rules gone: {nat}"
        );
        let sets = tool("natctl", &["--ns", &self.ns, "set", "list"])
            .ok()
            .stdout;
        assert!(
            !sets.contains(&format!("\"{wg}\"")),
            "{peer}'s elements gone: {sets}"
        );
        let status = self.status();
        let peers = status["peers"].as_array().unwrap();
        // (unless a peer added since took its port, and so its mark and table)
        if !peers.iter().any(|p| p["listen_port"] == port) {
            let mark = ZONE_MARK_BASE + port;
            assert!(
                !self.fwmark_rules().contains(&mark),
                "{peer}'s fwmark rule gone"
            );
            let table = sh(&format!("ip -n {} route show table {mark}", self.ns)).stdout;
            assert_eq!(table, "", "{peer}'s routing table is empty");
        }
        let mut want: Vec<String> = peers
            .iter()
            .map(|p| p["address"].as_str().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(
            self.hub0_peer_addresses(),
            want,
            "hub0: the remaining peers' /32s"
        );
        let mut marks = self.fwmark_rules();
        marks.sort();
        let mut want: Vec<u64> = peers.iter().map(zone_mark).collect();
        want.sort();
        assert_eq!(marks, want, "fwmark rules: the remaining peers'");
    }
}

/// What a hub command could change in namespace `ns`, without the kernel's moving parts (bridge
/// timers, IPv6 link-local addresses appearing after DAD): links, IPv4 addresses, routes and
/// policy routing rules, nftables; plus the namespaces carrying `prefix`.
fn net_state(ns: &str, prefix: &str) -> String {
    sh(&format!(
        "ip -n {ns} -br link; ip -n {ns} -4 -br addr; ip -n {ns} -4 route show table all; \
         ip -n {ns} rule show; ip -n {ns} -6 rule show; \
         ip netns exec {ns} nft list ruleset; ip netns list | grep '^{prefix}' | sort"
    ))
    .stdout
}

/// A peer's (zones) connection mark and routing table, from its status entry.
fn zone_mark(peer: &Value) -> u64 {
    ZONE_MARK_BASE + peer["listen_port"].as_u64().unwrap()
}

/// HUB_MODE=zones: the priority of the peer's fwmark rule (of its block of 64 ports).
fn zone_priority(peer: &Value) -> u64 {
    ZONE_RULE_PRIORITY + peer["listen_port"].as_u64().unwrap() / 64
}

/// Pings the server from every client namespace at the same time, from 192.168.1.10.
fn ping_all(namespaces: &[String]) -> Vec<bool> {
    ping_all_within(namespaces, 15)
}

/// ping_all, waiting up to `secs` for 3 replies each.
fn ping_all_within(namespaces: &[String], secs: u32) -> Vec<bool> {
    std::thread::scope(|s| {
        let handles: Vec<_> = namespaces
            .iter()
            .map(|ns| s.spawn(move || pings_from(ns, CLIENT_ADDR, SERVER, secs)))
            .collect();
        handles.into_iter().map(|h| h.join().unwrap()).collect()
    })
}

#[test]
fn three_clients_with_one_address_reach_the_server_through_napt() {
    let mut hub = HubLab::new();
    let up = hub.hub(&["up"]).ok();
    assert!(up.changed());
    assert_eq!(up.json()["center"]["address"], SERVER);
    assert_eq!(up.json()["center"]["cidr"], "100.64.0.0/24");
    assert!(
        up.stderr.contains("[#] nsctl"),
        "commands echoed: {}",
        up.stderr
    );

    let add = hub
        .hub(&["-q", "peer", "add", "c1", "c2", "c3"])
        .ok()
        .json();
    assert_eq!(add["changed"], true);
    assert_eq!(peer_names(&add), ["c1", "c2", "c3"]);
    let mut ports: Vec<u64> = add["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["listen_port"].as_u64().unwrap())
        .collect();
    ports.sort();
    assert_eq!(ports, [50000, 50001, 50002]);

    // Kernel state of one peer, read back with iproute2 and nft.
    let c1 = hub.peer_ns("c1");
    let route = hub.default_route("c1");
    assert_eq!(
        route["dev"],
        hub.peer_wg("c1"),
        "default route into the tunnel: {route}"
    );
    hub.assert_nat_once("c1", "after peer add");
    let c1_addr = add["peers"][0]["address"].as_str().unwrap().to_string();
    if hub.zones {
        // Every peer's tunnel in the center: its address a /32 on hub0, its NAT rules on its
        // interface (zone = its port, mark = the base + its port, SNAT to its address), a
        // routing table per mark; no namespace of its own.
        assert_eq!(add["peers"][0]["ns"], hub.ns.as_str(), "{add}");
        let mut want: Vec<String> = add["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| p["address"].as_str().unwrap().to_string())
            .collect();
        want.sort();
        assert_eq!(hub.hub0_peer_addresses(), want, "every peer's /32 on hub0");
        let mark = ZONE_MARK_BASE + 50000;
        // (c1's zone, mark and SNAT address: its elements of the center's maps)
        let elements = hub.nat_rules("c1");
        let value = |set: &str| -> Value {
            elements
                .iter()
                .find(|e| e["set"] == set)
                .unwrap_or_else(|| panic!("c1 in {set}: {elements:?}"))["value"]
                .clone()
        };
        assert_eq!(value("tunnel_zone"), 50000, "{elements:?}");
        assert_eq!(value("tunnel_mark"), mark, "{elements:?}");
        assert_eq!(value("tunnel_snat"), c1_addr.as_str(), "{elements:?}");
        let mut marks = hub.fwmark_rules();
        marks.sort();
        assert_eq!(marks, [mark, mark + 1, mark + 2], "a fwmark rule per peer");
        // (behind the gate of their block of 64 ports, 50000 / 64 = 781, and the skip of what
        // is not the hub's: a packet tests a bounded number of rules, whatever the fleet)
        let rules = sh(&format!("ip -n {} rule show", hub.ns)).ok().stdout;
        for (prio, rule) in [
            (998, "not from all fwmark 0x4e580000/0xffff0000 goto 2024"),
            (999, "from all fwmark 0x4e58c340/0xffffffc0 goto 1781"),
            (2024, "from all lookup 1314390015"),
        ] {
            let line = format!("{prio}:\t{rule}");
            assert_eq!(
                rules.lines().filter(|l| l.trim_end() == line).count(),
                1,
                "{line:?} once in: {rules}"
            );
        }
        assert!(
            !rules.contains("unresolved"),
            "every goto finds its target: {rules}"
        );
        // (a gate left by a `peer del` killed before it: `up` removes it, and only it)
        sh(&format!(
            "ip -n {} rule add fwmark 0x4e58c380/0xffffffc0 goto 1782 priority 999",
            hub.ns
        ))
        .ok();
        hub.hub(&["-q", "up"]).ok();
        let after = sh(&format!("ip -n {} rule show", hub.ns)).ok().stdout;
        assert_eq!(after, rules, "up removed the stray gate and nothing else");
        assert!(
            !Path::new(&format!("/run/netns/{}", hub.lab.name("c1"))).exists(),
            "no peer namespace"
        );
    } else {
        let addrs = ip_json(
            Some(&c1),
            &["-4", "addr", "show", &format!("{}c1-in", hub.lab.prefix)],
        );
        assert_eq!(addrs[0]["addr_info"][0]["local"], c1_addr);
    }
    let fwd = sh(&format!(
        "ip netns exec {c1} cat /proc/sys/net/ipv4/ip_forward"
    ))
    .ok();
    assert_eq!(fwd.stdout.trim(), "1");

    for p in ["c1", "c2", "c3"] {
        hub.client(p);
    }
    let clients: Vec<String> = ["c1", "c2", "c3"]
        .iter()
        .map(|p| hub.client_ns(p))
        .collect();
    assert_eq!(
        ping_all(&clients),
        [true, true, true],
        "every client reaches the server"
    );

    // conntrack where each peer's tunnel ends: 192.168.1.10 -> the server, translated to that
    // peer's address. Zones: all three in the center, each in its peer's zone with its mark.
    let status = hub.status();
    assert_eq!(status["mode"], hub_mode());
    let want = format!("src={CLIENT_ADDR} dst={SERVER} ");
    if hub.zones {
        let ct = sh(&format!(
            "ip netns exec {} conntrack -L -n -p icmp 2>/dev/null",
            hub.ns
        ))
        .stdout;
        let lines: Vec<&str> = ct.lines().filter(|l| l.contains(&want)).collect();
        assert_eq!(lines.len(), 3, "one entry per client in the center: {ct}");
    }
    for p in status["peers"].as_array().unwrap() {
        let (name, addr) = (p["name"].as_str().unwrap(), p["address"].as_str().unwrap());
        assert_eq!(p["ns"], hub.peer_ns(name).as_str(), "{p}");
        let ct = sh(&format!(
            "ip netns exec {} conntrack -L -n -p icmp 2>/dev/null",
            hub.peer_ns(name)
        ))
        .stdout;
        let reply = format!("src={SERVER} dst={addr} ");
        let line = ct
            .lines()
            .find(|l| l.contains(&want) && l.contains(&reply))
            .unwrap_or_else(|| {
                panic!("{name}: no entry {want}translated to its internal address {addr}: {ct}")
            });
        if hub.zones {
            let port = p["listen_port"].as_u64().unwrap();
            // (both directions: conntrack prints one `zone=`)
            assert!(
                line.contains(&format!("zone={port} ")) || line.ends_with(&format!("zone={port}")),
                "{name}: in conntrack zone {port}, both directions: {line}"
            );
            assert!(
                line.contains(&format!("mark={} ", zone_mark(p))),
                "{name}: connection mark {:#x}: {line}",
                zone_mark(p)
            );
        }
    }

    // status matches `wg show` in each peer namespace.
    for p in status["peers"].as_array().unwrap() {
        let name = p["name"].as_str().unwrap();
        let (ns, wg) = (hub.peer_ns(name), hub.peer_wg(name));
        assert_eq!(p["public_key"], wg_show(&ns, &wg, "public-key"));
        assert_eq!(
            p["listen_port"].to_string(),
            wg_show(&ns, &wg, "listen-port")
        );
        let hs = wg_show(&ns, &wg, "latest-handshakes");
        let (key, when) = hs.split_once('\t').expect("one peer");
        assert_eq!(p["client_public_key"], key);
        assert_eq!(p["latest_handshake"].as_u64().unwrap().to_string(), when);
        let tr = wg_show(&ns, &wg, "transfer");
        let rx: u64 = tr.split('\t').nth(1).unwrap().parse().unwrap();
        let status_rx = p["rx_bytes"].as_u64().unwrap();
        assert!(
            status_rx > 0 && status_rx <= rx,
            "{name}: rx {status_rx} vs wg {rx}"
        );
        assert_eq!(p["up"], true);
    }

    // Idempotent: everything again changes nothing.
    assert!(!hub.hub(&["-q", "up"]).ok().changed(), "second up");
    assert!(
        !hub.hub(&["-q", "peer", "add", "c1", "c2", "c3"])
            .ok()
            .changed(),
        "second add"
    );

    // peer del of one leaves the other two working.
    let c2_port = hub.peer_status("c2")["listen_port"].as_u64().unwrap();
    let (c1_path, c3_path) = (hub.path_to_center("c1"), hub.path_to_center("c3"));
    let del = hub.hub(&["-q", "peer", "del", "c2"]).ok();
    assert!(del.changed());
    assert_eq!(peer_names(&hub.status()), ["c1", "c3"]);
    hub.assert_peer_gone("c2", c2_port);
    assert_eq!(hub.path_to_center("c1"), c1_path, "c1 untouched");
    assert_eq!(hub.path_to_center("c3"), c3_path, "c3 untouched");
    let others = vec![hub.client_ns("c1"), hub.client_ns("c3")];
    assert_eq!(ping_all(&others), [true, true], "c1 and c3 still work");
    assert!(
        !hub.hub(&["-q", "peer", "del", "c2"]).ok().changed(),
        "del twice"
    );

    // down leaves nothing: no namespace, link, wireguard-go or socket with the prefix once the
    // simulated clients (the test's, not the hub's) are gone, and no state directory.
    let down = hub.hub(&["-q", "down"]).ok();
    assert!(down.changed());
    assert!(!hub.state.exists(), "state dir removed by down");
    assert!(!hub.hub(&["-q", "down"]).ok().changed(), "down twice");
    for p in ["c1", "c2", "c3"] {
        hub.remove_client(p);
    }
    hub.leaks().ok();
    assert!(!hub.state.exists(), "state dir removed by down");
}

#[test]
fn down_removes_only_what_the_hub_created() {
    let hub = HubLab::new();
    // The center namespace exists before the hub, with something of its own in it: even the
    // bridge, which the hub then uses where it is (no switch namespace) and leaves there.
    let ns = hub.lab.netns("hub");
    sh(&format!(
        "set -e; ip -n {ns} link add br-internal address 02:00:5e:00:00:99 type bridge; \
         ip -n {ns} link set br-internal up; ip -n {ns} addr add 10.9.9.9/32 dev br-internal"
    ))
    .ok();
    let before = net_state(&ns, &hub.lab.prefix);
    let fwd = || {
        sh(&format!(
            "ip netns exec {ns} cat /proc/sys/net/ipv4/ip_forward"
        ))
        .ok()
        .stdout
    };
    assert_eq!(fwd().trim(), "0");
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "a1"]).ok();
    assert_eq!(fwd().trim(), "1");
    let ports = sh(&format!("ip -n {ns} -o link show master br-internal")).stdout;
    assert!(
        ports.contains(&format!("{}hub0-br", hub.lab.prefix)),
        "the center's port on its own bridge: {ports}"
    );
    if hub.zones {
        // No port of the peer's own: its tunnel, address and rules are in the center.
        assert!(
            !ports.contains(&format!("{}a1-br", hub.lab.prefix)),
            "{ports}"
        );
        assert_eq!(
            hub.hub0_peer_addresses(),
            [hub.peer_status("a1")["address"].as_str().unwrap()]
        );
        hub.assert_nat_once("a1", "a1 in the center");
    } else {
        assert!(
            ports.contains(&format!("{}a1-br", hub.lab.prefix)),
            "the peer's port on the center's own bridge: {ports}"
        );
    }
    assert_eq!(hub.status()["center"]["switch"], Value::Null);
    hub.hub(&["-q", "down"]).ok();
    // (The bridge's carrier follows its last port's removal within a second: linkwatch.)
    poll_until(Duration::from_secs(3), || {
        net_state(&ns, &hub.lab.prefix) == before
    });
    assert_eq!(
        net_state(&ns, &hub.lab.prefix),
        before,
        "center namespace back as it was"
    );
    assert_eq!(fwd().trim(), "0", "forwarding restored");
    assert!(
        sh("ip netns list").stdout.contains(&ns),
        "HUB_NS was not ours to delete"
    );
    assert!(!sh("ip netns list").stdout.contains(&hub.lab.name("a1")));
}

/// `HUB_NS` empty puts the center in the caller's namespace ("the host"); here the caller runs
/// inside a Lab namespace (`nsenter --net`), so the real host is never touched.
#[test]
fn center_on_the_host_and_down_restores_it() {
    let hub = HubLab::new();
    let host = hub.lab.netns("host");
    sh(&format!("ip -n {host} link add mine type bridge")).ok();
    let before = net_state(&host, &hub.lab.prefix);
    let in_host = |args: &[&str]| {
        // nsenter --net, not `ip netns exec`: the latter also enters a mount namespace of its
        // own, where the hub's `netns add` mounts would not reach the rest of the machine.
        let mut all: Vec<String> = vec![format!("--net=/run/netns/{host}"), "env".into()];
        all.extend(
            hub.environment()
                .into_iter()
                .filter(|kv| !kv.starts_with("HUB_NS=")),
        );
        all.extend(["HUB_NS=".to_string(), script("hub")]);
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run("nsenter", &refs)
    };
    let up = in_host(&["-q", "up"]).ok().json();
    assert_eq!(up["center"]["ns"], Value::Null);
    // The center's address in the caller's namespace; the bridge and its ports in the hub's
    // switch namespace, off the host.
    let switch = format!("{}hub.switch", hub.lab.prefix);
    assert_eq!(up["center"]["switch"], switch.as_str());
    let hub0 = ip_json(
        Some(&host),
        &["-4", "addr", "show", &format!("{}hub0", hub.lab.prefix)],
    );
    assert_eq!(hub0[0]["addr_info"][0]["local"], SERVER);
    let links = ip_json(Some(&switch), &["link", "show", "br-internal"]);
    assert_eq!(links[0]["ifname"], "br-internal", "bridge in the switch");
    assert!(
        !sh(&format!("ip -n {host} -o link"))
            .stdout
            .contains("br-internal"),
        "no bridge in the caller's namespace"
    );
    in_host(&["-q", "peer", "add", "h1"]).ok();
    // (zones: the tunnel lives where it was born, in the caller's namespace)
    let pns = if hub.zones {
        host.clone()
    } else {
        hub.peer_ns("h1")
    };
    assert_eq!(
        wg_show(&pns, &hub.peer_wg("h1"), "listen-port"),
        "50000",
        "tunnel born in the caller's namespace, living in {pns}"
    );
    if hub.zones {
        let st = in_host(&["-q", "status"]).ok().json();
        assert_eq!(st["peers"][0]["ns"], Value::Null, "the host's: {st}");
        assert_eq!(st["peers"][0]["healthy"], true, "{st}");
        let rules = sh(&format!("ip -n {host} rule show")).ok().stdout;
        assert!(
            rules.contains(&format!("fwmark {:#x}", ZONE_MARK_BASE + 50000)),
            "{rules}"
        );
        assert!(!Path::new(&format!("/run/netns/{}", hub.lab.name("h1"))).exists());
    }
    let fwd = sh(&format!(
        "ip netns exec {host} cat /proc/sys/net/ipv4/ip_forward"
    ))
    .ok();
    assert_eq!(fwd.stdout.trim(), "1");
    assert!(in_host(&["-q", "down"]).ok().changed());
    assert_eq!(
        net_state(&host, &hub.lab.prefix),
        before,
        "the 'host' as it was"
    );
    let fwd = sh(&format!(
        "ip netns exec {host} cat /proc/sys/net/ipv4/ip_forward"
    ))
    .ok();
    assert_eq!(fwd.stdout.trim(), "0", "forwarding restored");
}

#[test]
fn allocation_is_stable_and_survives_a_reboot() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "a", "b", "c"]).ok();
    let b = hub.peer_status("b");
    let c = hub.peer_status("c");
    hub.hub(&["-q", "peer", "del", "a"]).ok();
    // A new peer takes the lowest free port and address (a's); b and c keep theirs.
    let d = hub.hub(&["-q", "peer", "add", "d"]).ok().json()["peers"][0].clone();
    assert_eq!(d["listen_port"], 50000);
    assert_eq!(hub.peer_status("b")["listen_port"], b["listen_port"]);
    assert_eq!(hub.peer_status("c")["address"], c["address"]);

    // "Reboot": every kernel object and process is gone, the state directory stays.
    hub.lab.cleanup();
    assert_eq!(hub.peer_status("b")["up"], false);
    let up = hub.hub(&["-q", "up"]).ok().json();
    assert_eq!(up["changed"], true);
    assert_eq!(up["peers"].as_array().unwrap().len(), 3, "{up}");
    for (name, before) in [("b", &b), ("c", &c)] {
        let now = hub.peer_status(name);
        assert_eq!(now["up"], true, "{name} rebuilt");
        for k in ["listen_port", "address", "public_key", "client_public_key"] {
            assert_eq!(now[k], before[k], "{name}: {k} kept across the reboot");
        }
        let ns = hub.peer_ns(name);
        assert_eq!(
            wg_show(&ns, &hub.peer_wg(name), "listen-port"),
            before["listen_port"].to_string()
        );
    }
}

#[test]
fn client_key_given_or_generated() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "g"]).ok();
    let key = hub.state.join("peers/g.client.key");
    let mode = std::fs::metadata(&key)
        .expect("client key file")
        .permissions();
    use std::os::unix::fs::PermissionsExt;
    assert_eq!(mode.mode() & 0o777, 0o600);

    let pubkey = tool("wgctl", &["genkey"]).ok().stdout;
    let pubkey = run_stdin(tool_path("wgctl"), &["pubkey"], Some(&pubkey))
        .ok()
        .json()["public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let add = hub
        .hub(&["-q", "peer", "add", "o", "--public-key", &pubkey])
        .ok()
        .json();
    assert_eq!(add["peers"][0]["client_public_key"], pubkey.as_str());
    let printed = hub
        .hub_env(
            &["HUB_ENDPOINT=hub.example.org"],
            &["-q", "peer", "conf", "o"],
        )
        .ok();
    let conf = printed.stdout;
    assert!(conf.contains("Endpoint = hub.example.org:50001"), "{conf}");
    // The hub has no private key to print: a placeholder (that wg-quick refuses), and a warning.
    assert!(
        conf.contains(&format!(
            "PrivateKey = (fill in the private key of {pubkey})"
        )),
        "placeholder when the client brought its own key: {conf}"
    );
    assert!(
        printed.stderr.contains("brought its own key"),
        "{}",
        printed.stderr
    );
    assert!(conf.contains("AllowedIPs = 100.64.0.0/24"));
    assert!(!hub.state.join("peers/o.client.key").exists());
    // The hub side's key file is 0600 too, and no key appears in the output.
    let hub_key = std::fs::read_to_string(hub.state.join("peers/o.key")).unwrap();
    let status = hub.hub(&["-q", "status"]).ok();
    assert!(!status.stdout.contains(hub_key.trim()));
}

/// Every command line and environment seen while a hub and a client are built (polled from
/// /proc), and everything the hub prints but `peer conf`: no private key, ever.
#[test]
fn private_keys_never_reach_argv_environment_or_output() {
    use std::sync::atomic::{AtomicBool, Ordering};
    let mut hub = HubLab::new();
    let stop = AtomicBool::new(false);
    let (seen, outputs) = std::thread::scope(|s| {
        let poller = s.spawn(|| {
            let mut seen = std::collections::HashSet::new();
            while !stop.load(Ordering::Relaxed) {
                for e in std::fs::read_dir("/proc").unwrap().flatten() {
                    for f in ["cmdline", "environ"] {
                        if let Ok(b) = std::fs::read(e.path().join(f)) {
                            seen.insert(String::from_utf8_lossy(&b).into_owned());
                        }
                    }
                }
            }
            seen
        });
        let mut outputs = Vec::new();
        for args in [&["up"][..], &["peer", "add", "s1", "s2"], &["status"]] {
            let r = hub.hub(args).ok();
            outputs.push(r.stdout + &r.stderr);
        }
        hub.client("s1");
        outputs.push(hub.hub(&["peer", "del", "s2"]).ok().stderr);
        stop.store(true, Ordering::Relaxed);
        (poller.join().unwrap(), outputs)
    });
    let mut keys = Vec::new();
    for f in ["s1.key", "s1.client.key"] {
        let k = std::fs::read_to_string(hub.state.join("peers").join(f)).unwrap();
        keys.push(k.trim().to_string());
    }
    assert!(seen.len() > 10, "the poller saw processes");
    for k in &keys {
        assert_eq!(k.len(), 44, "a base64 key");
        assert!(
            !seen.iter().any(|c| c.contains(k.as_str())),
            "a private key on a command line or in an environment"
        );
        assert!(
            !outputs.iter().any(|o| o.contains(k.as_str())),
            "a private key in the hub's output"
        );
    }
}

/// A step that fails (the port given is taken by someone else in the center) undoes the new
/// peer: no namespace, process, record or key of it remains, and the peers before it still
/// work. (A port the hub picks itself skips such a socket, also when more are held than the
/// hub asks the center about at once.)
#[test]
fn failed_peer_add_is_undone() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "f1"]).ok();
    let squatter = PortsHeld::in_ns(&hub.ns, 50001..=50001);
    let skipped = hub.hub(&["-q", "peer", "add", "f0"]).ok().json();
    assert_eq!(skipped["peers"][0]["listen_port"], 50002, "{skipped}");
    hub.hub(&["-q", "peer", "del", "f0"]).ok();
    // Ten more held (the hub asks about nine ports for one new peer, then the next eight).
    let squatters = PortsHeld::in_ns(&hub.ns, 50002..=50011);
    let far = hub.hub(&["-q", "peer", "add", "f0"]).ok().json();
    drop(squatters);
    assert_eq!(far["peers"][0]["listen_port"], 50012, "{far}");
    hub.hub(&["-q", "peer", "del", "f0"]).ok();
    let r = hub.hub(&["-q", "peer", "add", "f2", "--port", "50001"]);
    drop(squatter);
    r.fails(1, "50001");
    assert_eq!(peer_names(&hub.status()), ["f1"]);
    hub.assert_peer_gone("f2", 50001);
    assert!(!hub.state.join("peers/f2.key").exists());
    assert_eq!(hub.peer_status("f1")["up"], true);
    let down = hub.hub(&["-q", "down"]).ok().json();
    assert_eq!(down["removed"]["peers"], serde_json::json!(["f1"]));
    hub.leaks().ok();
}

/// `hub up` while PEER's port is held in the center (its tunnel gone before): exit 1 naming PEER
/// alone, whose entry in the report says it failed.
fn up_with_port_held(hub: &HubLab, peer: &str) {
    let port = hub.peer_status(peer)["listen_port"].as_u64().unwrap() as u16;
    let squatter = PortsHeld::in_ns(&hub.ns, port..=port);
    let r = hub.hub(&["-q", "up"]);
    drop(squatter);
    assert_eq!(r.code, 1, "{peer}'s repair fails: {}", r.stderr);
    assert!(
        r.stderr.contains(&format!("peer(s) {peer} failed")),
        "{}",
        r.stderr
    );
    let report: Value = serde_json::from_str(r.stdout.trim()).unwrap();
    let failed: Vec<&Value> = report["peers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["failed"] == true)
        .map(|p| &p["name"])
        .collect();
    assert_eq!(failed, [peer], "{report}");
}

/// A step that fails in a stage's later group, which runs as one tool's process beside the
/// first, fails the command as one in the first does. `up`, whose repair runs each tool for
/// every peer at once (a group per peer), names the second peer whose tunnel it cannot make
/// again (its port held in the center) and repairs it once the port is free; in zones mode a
/// `peer add` whose connection mark another key holds (the center's natctl lines are a group of
/// their own) fails and is undone.
#[test]
fn a_step_failing_in_a_later_group_fails_the_command() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "g1", "g3"]).ok();
    let p = &hub.lab.prefix;
    crash_userspace(&format!("{p}g3-wg"), "9");
    up_with_port_held(&hub, "g3");
    let (check, _) = hub.check();
    assert_eq!(problems_of(&check, "g1"), Vec::<String>::new(), "g1");
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("g3 repaired once its port is free");

    if !hub.zones {
        zones_only_part(
            "a_step_failing_in_a_later_group_fails_the_command",
            "a peer add failing in the center's group of natctl lines runs in the zones lane",
        );
        return;
    }
    let mark = (ZONE_MARK_BASE + 50009).to_string();
    let squat = [
        "--ns",
        &hub.ns,
        "element",
        "add",
        "tunnel_mark",
        "squat-wg",
        &mark,
    ];
    tool("natctl", &squat).ok();
    hub.hub(&["-q", "peer", "add", "g2", "--port", "50009"])
        .fails(1, &format!("mark {mark} is squat-wg's in tunnel_mark"));
    assert_eq!(peer_names(&hub.status()), ["g1", "g3"]);
    hub.assert_peer_gone("g2", 50009);
    assert!(!hub.state.join("peers/g2.key").exists());
    tool(
        "natctl",
        &["--ns", &hub.ns, "element", "del", "tunnel_mark", "squat-wg"],
    )
    .ok();
    hub.assert_healthy("the others untouched");
    hub.hub(&["-q", "down"]).ok();
    hub.leaks().ok();
}

#[test]
fn bad_input_fails_before_anything_changes() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "p1", "--port", "50010"])
        .ok();
    let state_before = sh(&format!(
        "cd {} && ls -la peers index/* && cat peers/*.json index/*.next",
        hub.state.display()
    ))
    .stdout;
    let before = net_state(&hub.ns, &hub.lab.prefix);

    hub.hub(&["-q", "peer", "add", "waytoolong"])
        .fails(2, "too long");
    hub.hub(&["-q", "peer", "add", "p2", "--port", "50010"])
        .fails(2, "already used by peer 'p1'");
    hub.hub(&["-q", "peer", "add", "p2", "--port", "222222"])
        .fails(2, "222222");
    hub.hub(&["-q", "peer", "add", "p2", "--address", "100.64.1.5"])
        .fails(2, "100.64.1.5");
    hub.hub(&["-q", "peer", "add", "p2", "--address", "10.292.0.1"])
        .fails(2, "10.292.0.1");
    // Another spelling of an address (leading zeros) is refused, not taken for a new one.
    hub.hub(&["-q", "peer", "add", "p2", "--address", "100.64.0.010"])
        .fails(2, "100.64.0.010");
    hub.hub(&["-q", "peer", "add", "p2", "--address", "100.64.0.01"])
        .fails(2, "100.64.0.01");
    hub.hub(&["-q", "peer", "add", "p2", "--port", "050010"])
        .fails(2, "050010");
    hub.hub_env(&["HUB_ADDRESS=100.64.0.010"], &["-q", "peer", "add", "p2"])
        .fails(2, "100.64.0.010");
    hub.hub(&["-q", "peer", "add", "p2", "--public-key", "notakey"])
        .fails(2, "notakey");
    hub.hub(&["-q", "peer", "add", "../x"]).fails(2, "../x");
    hub.hub(&["-q", "peer", "add", "p1", "--port", "50011"])
        .fails(1, "exists with port 50010");
    hub.hub_env(&["HUB_CIDR=100.64.0.0/33"], &["-q", "peer", "add", "p2"])
        .fails(2, "HUB_CIDR");
    hub.hub_env(
        &["NIRANSIX_BIN_DIR=/nonexistent"],
        &["-q", "peer", "add", "p2"],
    )
    .fails(2, "missing tool");
    hub.hub(&["-q", "frobnicate"]).fails(2, "frobnicate");
    // Forwards and allow entries: each refused naming the value.
    for (option, value) in [
        ("--forward", "tcp/0"),
        ("--forward", "tcp/70000"),
        ("--forward", "sctp/22"),
        ("--forward", "tcp/22=0"),
        ("--allow", "10.0.0.0/8"),
        ("--allow", "fd00::/64"),
        ("--allow", "100.64.0.0/24,icmp"),
        ("--allow", "100.64.0.0/24,tcp/0"),
        ("--allow", "100.64.0.1/24"),
        ("--allow", "300.64.0.0/24"),
    ] {
        hub.hub(&["-q", "peer", "add", "p2", option, value])
            .fails(2, value);
    }
    // (a port forwarded twice, a device port reached twice)
    for (first, second) in [("tcp/22", "tcp/2222=22"), ("udp/161", "udp/161=162")] {
        hub.hub(&[
            "-q",
            "peer",
            "add",
            "p2",
            "--forward",
            first,
            "--forward",
            second,
        ])
        .fails(2, second);
    }
    hub.hub_env(&["HUB_FORWARDS=tcp/22 tcp/0"], &["-q", "up"])
        .fails(2, "HUB_FORWARDS 'tcp/0'");
    hub.hub_env(&["HUB_ALLOW=192.0.2.0/24"], &["-q", "up"])
        .fails(2, "HUB_ALLOW '192.0.2.0/24'");
    hub.hub_env(&["HUB_ISOLATE=maybe"], &["-q", "up"])
        .fails(2, "HUB_ISOLATE 'maybe'");
    hub.hub_stdin(
        &["-q", "sync", "-"],
        "{\"name\":\"p1\",\"forwards\":[\"tcp/99999\"]}\n",
    )
    .fails(2, "tcp/99999");
    hub.hub_stdin(
        &["-q", "sync", "-"],
        "{\"name\":\"p1\",\"allow\":\"100.64.0.0/24\"}\n",
    )
    .fails(2, "\"allow\" must be an array");

    assert_eq!(net_state(&hub.ns, &hub.lab.prefix), before);
    let state_after = sh(&format!(
        "cd {} && ls -la peers index/* && cat peers/*.json index/*.next",
        hub.state.display()
    ))
    .stdout;
    assert_eq!(state_after, state_before, "state directory untouched");
}

/// kill -9 of the whole `up` or `peer add` (script and the tool it is running) at several
/// points, then a re-run converges: everything complete, once, and `down` leaves nothing.
#[test]
fn killed_up_and_peer_add_converge_on_rerun() {
    let hub = HubLab::new();
    for delay_ms in [20u64, 60, 150] {
        hub.killed(&["-q", "up"], delay_ms);
        hub.hub(&["-q", "up"]).ok();
        let st = hub.status();
        assert_eq!(
            st["center"]["up"], true,
            "after kill at {delay_ms} ms: {st}"
        );
        let addrs = ip_json(Some(&hub.ns), &["-4", "addr", "show"]);
        let n = addrs
            .as_array()
            .unwrap()
            .iter()
            .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
            .filter(|a| a["local"] == SERVER)
            .count();
        assert_eq!(n, 1, "HUB_ADDRESS exactly once: {addrs}");
        assert!(!hub.hub(&["-q", "up"]).ok().changed());
    }
    for delay_ms in [40u64, 150, 400, 900] {
        hub.killed(&["-q", "peer", "add", "k1", "k2", "k3"], delay_ms);
        let again = hub
            .hub(&["-q", "peer", "add", "k1", "k2", "k3"])
            .ok()
            .json();
        assert_eq!(peer_names(&again), ["k1", "k2", "k3"]);
        for k in ["k1", "k2", "k3"] {
            let p = hub.peer_status(k);
            assert_eq!(p["up"], true, "after kill at {delay_ms} ms: {p}");
            let ns = hub.peer_ns(k);
            assert_eq!(
                wg_show(&ns, &hub.peer_wg(k), "listen-port"),
                p["listen_port"].to_string()
            );
            hub.assert_nat_once(k, &format!("after kill at {delay_ms} ms"));
        }
        assert!(!hub
            .hub(&["-q", "peer", "add", "k1", "k2", "k3"])
            .ok()
            .changed());
        hub.hub(&["-q", "peer", "del", "k1", "k2", "k3"]).ok();
    }
    hub.hub(&["-q", "down"]).ok();
    hub.leaks().ok();
}

#[test]
fn concurrent_peer_adds_do_not_collide() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| hub.hub(&["-q", "peer", "add", "x1"]));
        let b = s.spawn(|| hub.hub(&["-q", "peer", "add", "x2"]));
        (a.join().unwrap().ok().json(), b.join().unwrap().ok().json())
    });
    let (pa, pb) = (&a["peers"][0], &b["peers"][0]);
    assert_ne!(pa["listen_port"], pb["listen_port"]);
    assert_ne!(pa["address"], pb["address"]);
    assert_eq!(hub.peer_status("x1")["up"], true);
    assert_eq!(hub.peer_status("x2")["up"], true);
}

#[test]
fn scripts_are_shellcheck_clean() {
    let root = repo_root();
    let files = [
        "niransix-sh/lib.sh",
        "niransix-sh/hub",
        "niransix-sh/client",
        "niransix-sh/demo",
        "bench/hub_bench.sh",
        "bench/hub_scale.sh",
        "bench/lib.sh",
        "bench/wgctl_bench.sh",
    ];
    let paths: Vec<String> = files
        .iter()
        .map(|f| root.join(f).to_string_lossy().into_owned())
        .collect();
    // From another directory, so `source` directives must resolve relative to the scripts.
    let r = sh(&format!("cd / && shellcheck -x {}", paths.join(" ")));
    assert_eq!(r.code, 0, "shellcheck:\n{}{}", r.stdout, r.stderr);
}

/// The MAC address of `link` in namespace `ns`, from `ip -j link show`.
fn mac_of(ns: &str, link: &str) -> String {
    ip_json(Some(ns), &["link", "show", link])[0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// The MAC address namespace `ns` has learnt for `addr` (`ip -j neigh show`).
fn neighbour_mac(ns: &str, addr: &str) -> String {
    let n = ip_json(Some(ns), &["neigh", "show", addr]);
    n[0]["lladdr"].as_str().unwrap_or_default().to_string()
}

/// The icmp_seq numbers answered in `ping` output, and the `N packets transmitted` count.
fn ping_replies(out: &str) -> (Vec<u64>, u64) {
    let seqs = out
        .lines()
        .filter(|l| l.contains("bytes from"))
        .filter_map(|l| l.split("icmp_seq=").nth(1)?.split(' ').next()?.parse().ok())
        .collect();
    let sent = out
        .lines()
        .find_map(|l| l.split(" packets transmitted").next()?.trim().parse().ok())
        .unwrap_or(0);
    (seqs, sent)
}

/// A client pinging the center every 100 ms, until `stop_without_loss`.
struct Pinger(std::process::Child, std::time::Instant);

impl Pinger {
    fn start(client_ns: &str) -> Pinger {
        let child = Command::new("ip")
            .args([
                "netns", "exec", client_ns, "ping", "-n", "-i", "0.1", "-W", "1",
            ])
            .args(["-I", CLIENT_ADDR, SERVER])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        Pinger(child, std::time::Instant::now())
    }

    /// Stops the pings (2 s from now) and asserts that they kept going all along (at least half
    /// of one every 100 ms: ping is slowed on a loaded machine) and that every one was answered,
    /// in order (only the one in flight at the interrupt may lack its reply).
    #[track_caller]
    fn stop_without_loss(self, during: &str) {
        std::thread::sleep(Duration::from_secs(2));
        let min_sent = self.1.elapsed().as_millis() as u64 / 200;
        // SAFETY: kill(2) on our own child: SIGINT makes ping print its summary and exit.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGINT) };
        let out = self.0.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let (seqs, sent) = ping_replies(&text);
        assert!(
            sent >= min_sent,
            "pings stopped during {during}: {sent} sent, at least {min_sent} expected: {text}"
        );
        let want: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, want, "lost replies during {during}:\n{text}");
        assert!(
            seqs.len() as u64 + 1 >= sent,
            "{} of {sent} echoes answered during {during}:\n{text}",
            seqs.len()
        );
    }
}

/// Peers coming and going must not cut the others off: while a client pings the center every
/// 100 ms, 6 peers are added and 6 others deleted one at a time (among them peers created before
/// the pinging one, whose bridge ports may hold the lowest MACs): not one reply is lost, and the
/// pinging peer's namespace knows the center by one MAC throughout, the center's own (hub0's),
/// never the bridge's (which lives in the switch namespace and answers for no address); zones:
/// its NAT rules, fwmark rule and routing table in the center stay as they were throughout.
#[test]
fn churn_of_other_peers_loses_no_reply() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "o1", "o2", "o3"]).ok();
    hub.hub(&["-q", "peer", "add", "m"]).ok();
    hub.client("m");
    let cns = hub.client_ns("m");
    assert_eq!(
        ping_all(std::slice::from_ref(&cns)),
        [true],
        "m reaches the center"
    );
    let path = hub.path_to_center("m");
    if !hub.zones {
        let hub0 = format!("{}hub0", hub.lab.prefix);
        assert_eq!(path, mac_of(&hub.ns, &hub0), "the center's own MAC");
    }

    let pinger = Pinger::start(&cns);
    for i in 1..=6 {
        hub.hub(&["-q", "peer", "add", &format!("n{i}")]).ok();
        assert_eq!(hub.path_to_center("m"), path, "after adding n{i}");
    }
    for p in ["o1", "n1", "o2", "n3", "o3", "n5"] {
        hub.hub(&["-q", "peer", "del", p]).ok();
        assert_eq!(hub.path_to_center("m"), path, "after deleting {p}");
    }
    pinger.stop_without_loss("the churn");
    hub.assert_healthy("after the churn");
    hub.hub(&["-q", "down"]).ok();
    hub.remove_client("m");
    hub.leaks().ok();
}

/// A `netns add` killed between creating /run/netns/NAME and mounting the namespace on it leaves
/// a plain file: the hub goes on as if it were not there (add, status, up, del, down). Zones: no
/// peer has a namespace, so no leftover file; the rest runs (a peer whose objects went behind
/// the hub's back is down, rebuilt by `up`, removed by `peer del` and `down`).
#[test]
fn leftover_namespace_file_never_wedges_the_hub() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    if hub.zones {
        netns_only_part(
            "leftover_namespace_file_never_wedges_the_hub",
            "no peer namespace, so no leftover /run/netns file is planted; destroyed peers only",
        );
    }
    let leftover = |peer: &str| {
        if !hub.zones {
            std::fs::write(format!("/run/netns/{}", hub.peer_ns(peer)), b"").unwrap();
        }
    };
    // Before a peer is added.
    leftover("w1");
    hub.hub(&["-q", "peer", "add", "w1"]).ok();
    assert_eq!(hub.peer_status("w1")["up"], true);
    // A recorded peer whose namespace is gone, a plain file in its place.
    hub.hub(&["-q", "peer", "add", "w2"]).ok();
    let ns = hub.peer_ns("w2");
    hub.destroy_peer_objects("w2");
    leftover("w2");
    assert_eq!(hub.peer_status("w2")["up"], false);
    assert_eq!(hub.peer_status("w2")["healthy"], false);
    assert_eq!(hub.peer_status("w1")["healthy"], true);
    hub.hub(&["-q", "up"]).ok();
    assert_eq!(hub.peer_status("w2")["up"], true, "up rebuilt w2");
    hub.assert_healthy("w2 rebuilt whole");
    assert_eq!(
        wg_show(&ns, &hub.peer_wg("w2"), "listen-port"),
        hub.peer_status("w2")["listen_port"].to_string()
    );
    // A recorded peer's leftover where `peer del` and `down` look: both reclaim it.
    for (peer, verb) in [("w3", "peer del"), ("w4", "down")] {
        hub.hub(&["-q", "peer", "add", peer]).ok();
        hub.destroy_peer_objects(peer);
        leftover(peer);
        if verb == "peer del" {
            let port = hub.peer_status(peer)["listen_port"].as_u64().unwrap();
            hub.hub(&["-q", "peer", "del", peer]).ok();
            hub.assert_peer_gone(peer, port);
        }
    }
    hub.hub(&["-q", "down"]).ok();
    hub.leaks().ok();
}

/// kill -9 of `peer add` and `peer del` (the script and whichever tool it runs) at random
/// instants; every re-run converges and `down` leaves nothing.
#[test]
fn killed_at_random_instants_converges() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    let mut seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos() as u64
        | 1;
    let mut random = |below: u64| {
        // xorshift64: enough to scatter the kill instants; the seed is in every message.
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        seed % below
    };
    for round in 0..5 {
        let (add_ms, del_ms) = (random(800), random(400));
        let when = format!("round {round}: kill after {add_ms} ms (add), {del_ms} ms (del)");
        hub.killed(&["-q", "peer", "add", "r1", "r2"], add_ms);
        hub.killed(&["-q", "peer", "del", "r1"], del_ms);
        let again = hub.hub(&["-q", "peer", "add", "r1", "r2"]).ok().json();
        assert_eq!(peer_names(&again), ["r1", "r2"], "{when}");
        for r in ["r1", "r2"] {
            let p = hub.peer_status(r);
            assert_eq!(p["up"], true, "{when}: {p}");
            hub.assert_nat_once(r, &when);
        }
        let ports: Vec<_> = ["r1", "r2"]
            .iter()
            .map(|r| hub.peer_status(r)["listen_port"].clone())
            .collect();
        assert_ne!(ports[0], ports[1], "{when}");
    }
    hub.hub(&["-q", "down"]).ok();
    hub.leaks().ok();
}

/// `fs.inotify.max_user_instances` raised to at least `n` while the guard lives (every
/// wireguard-go holds an inotify instance; the default 128 caps a hub at ~128 peers), and
/// restored when it drops, also when the test fails.
struct InotifyLimit {
    old: String,
}

const INOTIFY_LIMIT: &str = "/proc/sys/fs/inotify/max_user_instances";

impl InotifyLimit {
    fn at_least(n: u64) -> InotifyLimit {
        let old = std::fs::read_to_string(INOTIFY_LIMIT)
            .unwrap()
            .trim()
            .to_string();
        if old.parse::<u64>().unwrap() < n {
            std::fs::write(INOTIFY_LIMIT, n.to_string()).unwrap();
        }
        InotifyLimit { old }
    }
}

impl Drop for InotifyLimit {
    fn drop(&mut self) {
        let _ = std::fs::write(INOTIFY_LIMIT, &self.old);
    }
}

/// No limit below the kernel's: `status` and `down` of a 500-peer hub (all of wgctl's output
/// once went to jq as one argument, which broke above ~300 peers).
#[test]
fn status_and_down_at_500_peers() {
    const N: usize = 500;
    let _limit = InotifyLimit::at_least(4096);
    let hub = HubLab::new();
    let wide = ["HUB_CIDR=100.64.0.0/22", "HUB_JOBS=2"];
    hub.hub_env(&wide, &["-q", "up"]).ok();
    let names: Vec<String> = (0..N).map(|i| format!("p{i}")).collect();
    let mut args = vec!["-q", "peer", "add"];
    args.extend(names.iter().map(String::as_str));
    hub.hub_env(&wide, &args).ok();

    let st = hub.hub_env(&wide, &["-q", "status"]).ok().json();
    let peers = st["peers"].as_array().unwrap();
    assert_eq!(peers.len(), N);
    assert!(peers.iter().all(|p| p["up"] == true), "every peer up");
    let mut addrs: Vec<&str> = peers
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), N, "distinct addresses");
    assert_eq!(
        userspace_served(&hub.lab.prefix),
        N,
        "every peer's tunnel served"
    );

    let down = hub.hub_env(&wide, &["-q", "down"]).ok().json();
    assert_eq!(down["removed"]["peers"].as_array().unwrap().len(), N);
    hub.leaks().ok();
    assert!(!hub.state.exists());
}

/// `bash -x niransix-sh/client up` (how one debugs a script) traces every command, but never
/// the client's private key.
#[test]
fn client_under_bash_x_keeps_the_key_out_of_the_trace() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "t1"]).ok();
    let conf = hub
        .hub_env(&["HUB_ENDPOINT=192.0.2.1"], &["-q", "peer", "conf", "t1"])
        .ok()
        .stdout;
    let key = std::fs::read_to_string(hub.state.join("peers/t1.client.key")).unwrap();
    let key = key.trim();
    assert!(conf.contains(key), "the config carries the client's key");
    let cns = hub.lab.netns("kt1");
    let wg = hub.client_wg("t1");
    let args = [
        format!("NIRANSIX_BIN_DIR={}", bin_dir().display()),
        "bash".into(),
        "-x".into(),
        script("client"),
        "up".into(),
        cns.clone(),
        wg.clone(),
    ];
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = run_stdin("env", &refs, Some(&conf)).ok();
    assert!(r.stderr.contains("+ "), "traced: {}", r.stderr);
    assert!(!r.stderr.contains(key), "the private key in the trace");
    assert!(!r.stdout.contains(key), "the private key on stdout");
    // The key did reach the interface.
    let public = wg_show(&cns, &wg, "public-key");
    assert_eq!(hub.peer_status("t1")["client_public_key"], public.as_str());
}

/// A Linux bridge takes at most 1023 ports, so the switch namespace holds one bridge per
/// HUB_BRIDGE_PORTS peers, joined to HUB_BRIDGE: here 2 per bridge, so 5 peers sit on 3
/// bridges, and clients on the outer ones reach the center (on the first) at once. Zones: no
/// peer has a bridge port, so the 5 peers need no further bridge: none is made, and `check`
/// expects none.
#[test]
fn peers_beyond_one_bridge_share_one_network() {
    let mut hub = HubLab::new();
    let small = ["HUB_BRIDGE_PORTS=2"];
    hub.hub_env(&small, &["-q", "up"]).ok();
    hub.hub_env(&small, &["-q", "peer", "add", "b1", "b2", "b3", "b4", "b5"])
        .ok();
    let switch = format!("{}hub.switch", hub.lab.prefix);
    let on = |bridge: &str| sh(&format!("ip -n {switch} -o link show master {bridge}")).stdout;
    let prefix = hub.lab.prefix.clone();
    let port = |peer: &str| format!("{prefix}{peer}-br");
    if hub.zones {
        netns_only_part(
            "peers_beyond_one_bridge_share_one_network",
            "no peer ports, so no bridge split; checking that none is made or expected",
        );
        let links = sh(&format!("ip -n {switch} -br link")).ok().stdout;
        assert!(
            !links.contains("br-internal."),
            "no further bridge: {links}"
        );
        assert!(!links.contains(&format!("{prefix}dn")), "no trunk: {links}");
        assert!(!on("br-internal").contains(&port("b1")), "no peer port");
        let st = hub.hub_env(&small, &["-q", "check"]).ok().json();
        assert_eq!(st["healthy"], true, "{st}");
    } else {
        assert!(on("br-internal").contains(&port("b1")));
        assert!(on("br-internal.1").contains(&port("b3")));
        assert!(on("br-internal.2").contains(&port("b5")));
    }
    hub.client("b3");
    hub.client("b5");
    let clients = vec![hub.client_ns("b3"), hub.client_ns("b5")];
    assert_eq!(
        ping_all(&clients),
        [true, true],
        "through the joined bridges"
    );
    hub.hub_env(&small, &["-q", "peer", "del", "b5"]).ok();
    hub.assert_peer_gone("b5", 50004);
    hub.hub_env(&small, &["-q", "down"]).ok();
    for p in ["b3", "b5"] {
        hub.remove_client(p);
    }
    hub.leaks().ok();
}

/// `hub metrics` is Prometheus text that a real parser reads (Debian's python3-prometheus-client),
/// with prometheus_wireguard_exporter's names and labels, and the values `wg show dump` has.
#[test]
fn metrics_parse_and_match_wg_show() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "q1", "q2"]).ok();
    hub.client("q1");
    assert_eq!(ping_all(&[hub.client_ns("q1")]), [true]);
    // The peer line of `wg show dump`: key, psk, endpoint, allowed ips, handshake, rx, tx, keepalive.
    let dump = |peer: &str| -> Vec<String> {
        let d = wg_show(&hub.peer_ns(peer), &hub.peer_wg(peer), "dump");
        let line = d.lines().nth(1).expect("one peer").to_string();
        line.split('\t').map(str::to_string).collect()
    };
    let before = dump("q1");
    let text = hub.hub(&["-q", "metrics"]).ok().stdout;
    let after = dump("q1");
    let parser = r#"
import json, sys
from prometheus_client.parser import text_string_to_metric_families
print(json.dumps({"samples": [
    {"family": f.name, "type": f.type, "name": s.name, "labels": s.labels, "value": s.value}
    for f in text_string_to_metric_families(sys.stdin.read()) for s in f.samples]}))
"#;
    let parsed = run_stdin("/usr/bin/python3", &["-c", parser], Some(&text))
        .ok()
        .json();
    let samples = parsed["samples"].as_array().unwrap().clone();
    let value = |name: &str, peer: &str| -> f64 {
        samples
            .iter()
            .find(|s| s["name"] == name && s["labels"]["peer"] == peer)
            .unwrap_or_else(|| panic!("no {name} for {peer}: {text}"))["value"]
            .as_f64()
            .unwrap()
    };
    let field = |line: &[String], i: usize| -> f64 { line[i].parse().unwrap() };
    for (name, i) in [
        ("wireguard_latest_handshake_seconds", 4),
        ("wireguard_received_bytes_total", 5),
        ("wireguard_sent_bytes_total", 6),
    ] {
        let v = value(name, "q1");
        assert!(
            field(&before, i) <= v && v <= field(&after, i) && v > 0.0,
            "{name} {v} between wg show's {} and {}",
            before[i],
            after[i]
        );
    }
    let q1 = samples
        .iter()
        .find(|s| s["name"] == "wireguard_sent_bytes_total" && s["labels"]["peer"] == "q1")
        .unwrap();
    assert_eq!(q1["labels"]["public_key"], before[0].as_str());
    assert_eq!(q1["labels"]["interface"], hub.peer_wg("q1").as_str());
    assert_eq!(q1["type"], "counter");
    assert_eq!(value("wireguard_sent_bytes_total", "q2"), 0.0);
    assert_eq!(value("niransix_hub_peer_up", "q2"), 1.0);
    assert_eq!(value("niransix_hub_peer_healthy", "q2"), 1.0);
    let healthy = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("niransix_hub_healthy "))
            .map(str::to_string)
    };
    assert_eq!(healthy(&text).as_deref(), Some("1"), "{text}");
    // A broken peer shows as unhealthy, and so does the hub.
    hub.break_nat("q2");
    let text = hub.hub(&["-q", "metrics"]).ok().stdout;
    let peer_healthy = |peer: &str, value: &str| {
        let name = format!(
            "niransix_hub_peer_healthy{{interface=\"{}\"",
            hub.peer_wg(peer)
        );
        text.lines()
            .any(|l| l.starts_with(&name) && l.ends_with(&format!(" {value}")))
    };
    assert!(peer_healthy("q2", "0"), "q2 unhealthy: {text}");
    assert!(peer_healthy("q1", "1"), "q1 still healthy: {text}");
    assert_eq!(healthy(&text).as_deref(), Some("0"), "{text}");
    let peers = samples
        .iter()
        .find(|s| s["name"] == "niransix_hub_peers")
        .unwrap();
    assert_eq!(peers["value"], 2.0);
    hub.hub(&["-q", "down"]).ok();
    hub.remove_client("q1");
    hub.leaks().ok();
}

/// The problems `hub check` reports for peer `name` (and that the peer is unhealthy).
#[track_caller]
fn problems_of(check: &Value, name: &str) -> Vec<String> {
    let p = check["peers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["name"] == name)
        .unwrap_or_else(|| panic!("{name} not in {check}"));
    p["problems"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s.as_str().unwrap().to_string())
        .collect()
}

/// Two `HubSuite::everything` snapshots are equal; else the lines that differ.
#[track_caller]
fn assert_same(now: &str, before: &str, what: &str) {
    let gone: Vec<&str> = before.lines().filter(|l| !now.contains(l)).collect();
    let new: Vec<&str> = now.lines().filter(|l| !before.contains(l)).collect();
    assert!(now == before, "{what}: gone {gone:#?}\nnew {new:#?}");
}

#[track_caller]
fn assert_mentions(list: &[String], needle: &str, what: &str) {
    assert!(
        list.iter().any(|s| s.contains(needle)),
        "{what}: nothing mentions {needle:?} in {list:?}"
    );
}

/// What the unattended hub meets: a killed wireguard-go, a flushed NAT table, a deleted peer
/// namespace, a deleted bridge (zones: a killed wireguard-go, the center's whole ruleset
/// flushed, a peer's fwmark rule and another's address deleted, the bridge deleted). `hub check`
/// (and `status`) name each, `hub up` (what the repair timer runs) repairs each and says so, and
/// the clients, configured before, work unedited.
#[test]
fn check_names_each_breakage_and_up_repairs_it() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    let peers = ["r1", "r2", "r3", "r4"];
    hub.hub(&["-q", "peer", "add", "r1", "r2", "r3", "r4"]).ok();
    for p in peers {
        hub.client(p);
    }
    let clients: Vec<String> = peers.iter().map(|p| hub.client_ns(p)).collect();
    assert_eq!(ping_all(&clients), [true; 4]);
    let (check, healthy) = hub.check();
    assert!(healthy, "a fresh hub is healthy: {check}");
    for p in peers {
        assert_eq!(problems_of(&check, p), Vec::<String>::new());
    }
    let st: Vec<Value> = peers.iter().map(|p| hub.peer_status(p)).collect();

    let (p, ns) = (&hub.lab.prefix, &hub.ns);
    crash_userspace(&format!("{p}r1-wg"), "9");
    if hub.zones {
        sh(&format!("ip netns exec {ns} nft flush ruleset")).ok();
        let (mark, prio) = (zone_mark(&st[2]), zone_priority(&st[2]));
        sh(&format!(
            "ip -n {ns} rule del fwmark {mark} table {mark} priority {prio}"
        ))
        .ok();
        sh(&format!(
            "ip -n {ns} addr del {}/32 dev {p}hub0",
            st[3]["address"].as_str().unwrap()
        ))
        .ok();
    } else {
        hub.break_nat("r2");
        sh(&format!("ip netns del {}", hub.peer_ns("r3"))).ok();
        // (the kernel tears a deleted namespace down later: its veth's other end, on the
        // bridge, goes then; `check` and `status` below must see the same)
        let port = format!("{p}r3-br");
        wait_until(
            &format!("{port} gone with r3's namespace"),
            Duration::from_secs(10),
            || {
                run(
                    "ip",
                    &["-n", &format!("{p}hub.switch"), "link", "show", &port],
                )
                .code
                    != 0
            },
        );
    }
    sh(&format!("ip -n {p}hub.switch link del br-internal")).ok();

    let (check, healthy) = hub.check();
    assert!(!healthy, "{check}");
    let center: Vec<String> = serde_json::from_value(check["center"]["problems"].clone()).unwrap();
    assert_mentions(&center, "bridge br-internal is missing", "center");
    let r1 = problems_of(&check, "r1");
    assert_mentions(
        &r1,
        &format!("WireGuard interface {p}r1-wg is missing"),
        "r1",
    );
    assert_mentions(&r1, "nothing listens on UDP port", "r1");
    if hub.zones {
        // The flush took every peer's zone, mark and SNAT; r3 also lost its rule, r4 its /32.
        for (name, s) in peers.iter().zip(&st) {
            let problems = problems_of(&check, name);
            let (zone, mark) = (s["listen_port"].as_u64().unwrap(), zone_mark(s));
            for needle in [
                format!("no conntrack zone {zone} for traffic from {p}{name}-wg"),
                format!("no connection mark {mark} for traffic from {p}{name}-wg"),
                format!(
                    "no SNAT of {p}{name}-wg's traffic to {}",
                    s["address"].as_str().unwrap()
                ),
            ] {
                assert_mentions(&problems, &needle, name);
            }
        }
        let mark = zone_mark(&st[2]);
        assert_mentions(
            &problems_of(&check, "r3"),
            &format!("no rule 'fwmark {mark} lookup {mark}'"),
            "r3",
        );
        let r4 = problems_of(&check, "r4");
        assert_mentions(
            &r4,
            &format!(
                "{p}hub0 lacks its address {}/32",
                st[3]["address"].as_str().unwrap()
            ),
            "r4",
        );
        // (its NAT: its zone, the zone of the replies to it, mark, SNAT, its tunnel (forged
        // replies dropped early, its replies let through), what it may reach (2: forwarded and
        // to the center), the rest dropped (2))
        assert_eq!(r4.len(), 10, "r4: its NAT (9) and its address: {r4:?}");
        assert_eq!(problems_of(&check, "r2").len(), 9, "r2: its NAT only");
    } else {
        assert_mentions(&problems_of(&check, "r2"), "no NAPT rule", "r2");
        assert_eq!(
            problems_of(&check, "r3")[0],
            format!("namespace {} is missing", hub.peer_ns("r3"))
        );
        let r4 = problems_of(&check, "r4");
        assert_eq!(r4.len(), 1, "r4 only lost its bridge: {r4:?}");
        assert_mentions(&r4, "is not a port of bridge br-internal", "r4");
    }
    // `status` carries the same verdicts.
    let status = hub.status();
    for p in peers {
        assert_eq!(problems_of(&status, p), problems_of(&check, p));
    }

    let up = hub.hub(&["-q", "up"]).ok().json();
    let repaired = |name: &str| -> Vec<String> {
        let v = if name == "center" {
            &up["center"]
        } else {
            up["peers"]
                .as_array()
                .unwrap()
                .iter()
                .find(|x| x["name"] == name)
                .unwrap()
        };
        serde_json::from_value(v["repaired"].clone()).unwrap()
    };
    assert_mentions(
        &repaired("center"),
        "bridge add br-internal",
        "center repaired",
    );
    assert_mentions(
        &repaired("r1"),
        &format!("iface add {p}r1-wg"),
        "r1 repaired",
    );
    if hub.zones {
        for name in peers {
            for needle in [
                "element add tunnel_zone",
                "element add tunnel_mark",
                "element add tunnel_snat",
            ] {
                assert_mentions(&repaired(name), needle, &format!("{name} repaired"));
            }
        }
        assert_mentions(&repaired("r1"), "route add default", "r1's table");
        assert_mentions(&repaired("r3"), "rule add --fwmark", "r3 repaired");
        assert_mentions(
            &repaired("r4"),
            &format!("addr add {}/32", st[3]["address"].as_str().unwrap()),
            "r4 repaired",
        );
        for name in peers {
            hub.assert_nat_once(name, "repaired");
        }
    } else {
        assert_mentions(&repaired("r2"), "masquerade", "r2 repaired");
        assert_mentions(
            &repaired("r3"),
            &format!("netns add {}", hub.peer_ns("r3")),
            "r3 repaired",
        );
        assert_mentions(
            &repaired("r4"),
            &format!("veth add {p}r4-br"),
            "r4 repaired",
        );
    }
    hub.assert_healthy("repaired");
    // A client whose hub side was restarted (r1, r3) handshakes again once its old session
    // goes unanswered: WireGuard's keepalive + rekey timeouts, 15 s.
    assert_eq!(
        ping_all_within(&clients, 45),
        [true; 4],
        "clients configured before, unedited"
    );
    let again = hub.hub(&["-q", "up"]).ok().json();
    assert_eq!(again["changed"], false, "nothing left to repair: {again}");
    hub.hub(&["-q", "down"]).ok();
    for p in peers {
        hub.remove_client(p);
    }
    hub.leaks().ok();
}

/// `--check` on every command that changes something prints the plan and changes nothing: not
/// the kernel, not one byte of the state directory; and the plan says what the real run does.
#[test]
fn check_mode_plans_and_changes_nothing() {
    let hub = HubLab::new();
    let set = "{\"name\":\"c1\"}\n{\"name\":\"c3\",\"port\":50030}\n";
    // A fresh machine: nothing exists yet.
    let plan = hub.hub(&["-q", "--check", "up"]).ok().json();
    assert_eq!(plan["changed"], true, "{plan}");
    assert_mentions(
        &serde_json::from_value::<Vec<String>>(plan["center"]["created"].clone()).unwrap(),
        &format!("netns add {}", hub.ns),
        "center plan",
    );
    let plan = hub
        .hub_stdin(&["-q", "--check", "sync", "-"], set)
        .ok()
        .json();
    assert_eq!(plan["added"], serde_json::json!(["c1", "c3"]), "{plan}");
    assert!(!hub.state.exists(), "no state directory after --check");
    assert_eq!(netns_with_prefix(&hub.lab.prefix), Vec::<String>::new());

    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "c1", "c2"]).ok();
    let before = hub.settled();
    let changed = |args: &[&str], stdin: Option<&str>| -> Value {
        let mut all = vec!["-q", "--check"];
        all.extend(args);
        let v = hub.hub_full(&[], &all, stdin).ok().json();
        assert_same(
            &hub.everything(),
            &before,
            &format!("after --check {args:?}"),
        );
        v
    };
    assert_eq!(changed(&["up"], None)["changed"], false);
    assert_eq!(changed(&["peer", "add", "c1"], None)["changed"], false);
    assert_eq!(changed(&["peer", "add", "c3"], None)["changed"], true);
    assert_eq!(changed(&["peer", "del", "nope"], None)["changed"], false);
    assert_eq!(changed(&["peer", "del", "c2"], None)["changed"], true);
    let plan = changed(&["sync", "-"], Some(set));
    assert_eq!(plan["added"], serde_json::json!(["c3"]), "{plan}");
    assert_eq!(plan["removed"], serde_json::json!(["c2"]), "{plan}");
    assert_eq!(plan["changed"], true);
    assert_eq!(changed(&["down"], None)["changed"], true);

    // A broken peer: the plan names its repair, and the real run does what the plan said.
    hub.break_nat("c1");
    let plan = hub.hub(&["-q", "--check", "up"]).ok().json();
    let real = hub.hub(&["-q", "up"]).ok().json();
    assert_eq!(plan, real, "--check up predicted the repair");
    let c1 = &real["peers"][0];
    assert_eq!(c1["name"], "c1");
    assert_eq!(c1["changed"], true);
    assert_mentions(
        &serde_json::from_value::<Vec<String>>(c1["repaired"].clone()).unwrap(),
        hub.nat_problem_and_repair().1,
        "c1's NAT repaired",
    );
    assert_eq!(real["peers"][1]["changed"], false, "c2 was healthy");
    hub.assert_nat_once("c1", "repaired");
    // The plan of a sync is the sync.
    let plan = hub
        .hub_stdin(&["-q", "--check", "sync", "-"], set)
        .ok()
        .json();
    let real = hub.hub_stdin(&["-q", "sync", "-"], set).ok().json();
    assert_eq!(plan, real);
    hub.hub(&["-q", "down"]).ok();
    hub.leaks().ok();
}

/// `hub sync` makes the peers equal to the set: adds, removes, rebuilds what changed (keeping the
/// hub's key), and leaves the others alone: a client of an untouched peer loses no reply.
/// A bad set is refused whole, naming its line, before anything changes.
#[test]
fn sync_changes_only_what_differs() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    let set1 = "{\"name\":\"s1\"}\n{\"name\":\"s2\"}\n\n{\"name\":\"s3\",\"port\":50020}\n";
    let r = hub.hub_stdin(&["-q", "sync", "-"], set1).ok().json();
    assert_eq!(r["added"], serde_json::json!(["s1", "s2", "s3"]), "{r}");
    let again = hub.hub_stdin(&["-q", "sync", "-"], set1).ok().json();
    assert_eq!(again["changed"], false, "{again}");
    hub.client("s1");
    assert_eq!(ping_all(&[hub.client_ns("s1")]), [true]);
    let (s1ns, s3ns) = (hub.peer_ns("s1"), hub.peer_ns("s3"));
    let identity = |ns: &str, wg: &str| {
        (
            sh(&format!("stat -L -c %i /run/netns/{ns}")).ok().stdout,
            userspace_identity(wg),
            wg_show(ns, wg, "public-key"),
        )
    };
    let s1_before = identity(&s1ns, &hub.peer_wg("s1"));
    let s3_key = wg_show(&s3ns, &hub.peer_wg("s3"), "public-key");

    let given = sh("wg genkey | wg pubkey").ok().stdout.trim().to_string();
    let set2 = format!(
        "{{\"name\":\"s1\"}}\n{{\"name\":\"s3\",\"port\":50021}}\n{{\"name\":\"s4\",\"public_key\":\"{given}\"}}\n"
    );
    let file = hub.state.with_extension("set2.jsonl");
    std::fs::write(&file, &set2).unwrap();
    let s2_port = hub.peer_status("s2")["listen_port"].as_u64().unwrap();
    let pinger = Pinger::start(&hub.client_ns("s1"));
    let r = hub.hub(&["-q", "sync", file.to_str().unwrap()]).ok().json();
    pinger.stop_without_loss("a sync of other peers");
    std::fs::remove_file(&file).unwrap();
    assert_eq!(r["added"], serde_json::json!(["s4"]), "{r}");
    assert_eq!(r["removed"], serde_json::json!(["s2"]), "{r}");
    assert_eq!(r["updated"], serde_json::json!(["s3"]), "{r}");
    assert_eq!(
        r["peers"][0],
        serde_json::json!({"name": "s1", "changed": false})
    );
    assert_eq!(
        identity(&s1ns, &hub.peer_wg("s1")),
        s1_before,
        "s1 untouched"
    );
    hub.assert_peer_gone("s2", s2_port);
    assert_eq!(wg_show(&s3ns, &hub.peer_wg("s3"), "listen-port"), "50021");
    assert_eq!(
        wg_show(&s3ns, &hub.peer_wg("s3"), "public-key"),
        s3_key,
        "s3 keeps the hub key"
    );
    assert_eq!(
        wg_show(&hub.peer_ns("s4"), &hub.peer_wg("s4"), "peers"),
        given
    );
    let (check, healthy) = hub.check();
    assert!(healthy, "{check}");
    assert_eq!(peer_names(&check), ["s1", "s3", "s4"]);

    let before = hub.everything();
    for (set, code, needle) in [
        (
            "{\"name\":\"s1\"}\nnot json\n",
            2,
            "line 2: not a JSON object",
        ),
        (
            "{\"name\":\"s1\"}\n{\"name\":\"s1\"}\n",
            2,
            "line 2: peer 's1' is already on line 1",
        ),
        (
            "{\"name\":\"s1\",\"public_key\":\"abc\"}\n",
            2,
            "line 1: public_key 'abc'",
        ),
        (
            "{\"name\":\"s1\",\"port\":70000}\n",
            2,
            "line 1: port '70000'",
        ),
        (
            "{\"name\":\"s1\",\"port\":\"50000\"}\n",
            2,
            "line 1: \"port\" must be a number",
        ),
        (
            "{\"name\":\"s1\",\"address\":\"10.1.1.1\"}\n",
            2,
            "line 1: address '10.1.1.1'",
        ),
        ("{\"name\":\"s 1\"}\n", 2, "line 1: peer name 's 1'"),
        (
            "{\"name\":\"s1\",\"color\":1}\n",
            2,
            "line 1: unknown key \"color\"",
        ),
        ("{\"name\":\"s1\",\"mtu\":100}\n", 2, "line 1: mtu '100'"),
        (
            "{\"name\":\"s1\",\"keepalive\":70000}\n",
            2,
            "line 1: keepalive '70000'",
        ),
        (
            "{\"name\":\"s1\",\"dns\":[\"10.0.0.53\",\"x\"]}\n",
            2,
            "line 1: dns 'x'",
        ),
        (
            "{\"name\":\"s1\",\"preshared_key\":\"/etc/hostname\"}\n",
            2,
            "line 1: preshared_key '/etc/hostname'",
        ),
        (
            "{\"name\":\"s3\"}\n{\"name\":\"s5\",\"port\":50021}\n",
            2,
            "line 2: port 50021 is held by peer 's3' (line 1)",
        ),
    ] {
        hub.hub_stdin(&["-q", "sync", "-"], set).fails(code, needle);
    }
    hub.hub(&["-q", "sync", "/nonexistent.jsonl"])
        .fails(2, "/nonexistent.jsonl");
    assert_same(&hub.everything(), &before, "refused sets change nothing");
    // An empty set removes every peer.
    let r = hub
        .hub_stdin(&["-q", "sync", "--allow-empty", "-"], "")
        .ok()
        .json();
    assert_eq!(r["removed"], serde_json::json!(["s1", "s3", "s4"]), "{r}");
    hub.hub(&["-q", "down"]).ok();
    hub.remove_client("s1");
    hub.leaks().ok();
}

/// `down --keep-state` (what the systemd unit runs at stop) removes every object and process
/// of the hub but keeps its records and keys, and the center's namespace; `up` (at the next
/// start) builds the same hub, and a client configured before gets through again, unedited.
#[test]
fn down_keep_state_then_up_is_the_same_hub() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "d1", "d2"]).ok();
    hub.client("d1");
    assert_eq!(ping_all(&[hub.client_ns("d1")]), [true]);
    let peers = |v: &Value| -> Vec<(Value, Value, Value)> {
        v["peers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|p| {
                (
                    p["listen_port"].clone(),
                    p["address"].clone(),
                    p["public_key"].clone(),
                )
            })
            .collect()
    };
    let before = peers(&hub.status());
    let records = sh(&format!(
        "cd {} && cat center.json peers/*",
        hub.state.display()
    ))
    .ok()
    .stdout;

    let down = hub.hub(&["-q", "down", "--keep-state"]).ok().json();
    assert_eq!(down["changed"], true);
    assert_eq!(down["state_kept"], true);
    let p = &hub.lab.prefix;
    // The center's namespace stays (with what the user put there: here the clients' uplink).
    let mut left = netns_with_prefix(p);
    left.sort();
    let mut want = vec![hub.ns.clone(), hub.client_ns("d1")];
    want.sort();
    assert_eq!(left, want, "every hub namespace but the center's gone");
    let center = sh(&format!("ip -n {} -br link", hub.ns)).ok().stdout;
    assert!(!center.contains(&format!("{p}hub0")), "hub0 gone: {center}");
    assert_eq!(userspace_served(&format!("{p}d")), 0, "no tunnel left");
    let kept = sh(&format!(
        "cd {} && cat center.json peers/*",
        hub.state.display()
    ))
    .ok()
    .stdout;
    assert_eq!(kept, records, "records and keys kept, byte for byte");
    let again = hub.hub(&["-q", "down", "--keep-state"]).ok().json();
    assert_eq!(
        again["changed"], false,
        "a second stop changes nothing: {again}"
    );

    hub.hub(&["-q", "up"]).ok();
    assert_eq!(
        peers(&hub.status()),
        before,
        "the same ports, addresses and keys"
    );
    hub.assert_healthy("healthy");
    assert_eq!(ping_all_within(&[hub.client_ns("d1")], 45), [true]);
    hub.hub(&["-q", "down"]).ok();
    hub.remove_client("d1");
    hub.leaks().ok();
}

/// A peer's settings changed behind the hub's back (keepalive, PSK, MTU): `check` names each,
/// `up` sets them back from the record.
#[test]
fn drifted_settings_are_reported_and_set_back() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&[
        "-q",
        "peer",
        "add",
        "t1",
        "--keepalive",
        "7",
        "--mtu",
        "1380",
        "--preshared-key",
        "generate",
    ])
    .ok();
    let (ns, wg) = (hub.peer_ns("t1"), hub.peer_wg("t1"));
    let psk = wg_show(&ns, &wg, "preshared-keys");
    assert!(!psk.ends_with("(none)"), "a preshared key: {psk}");
    let peer = wg_show(&ns, &wg, "peers");
    sh(&format!(
        "ip netns exec {ns} wg set {wg} peer {peer} persistent-keepalive 30 preshared-key /dev/null; \
         ip -n {ns} link set {wg} mtu 1420"
    ))
    .ok();
    let (check, healthy) = hub.check();
    assert!(!healthy);
    let problems = problems_of(&check, "t1");
    assert_mentions(&problems, "not the recorded 7", "keepalive");
    assert_mentions(&problems, "has no preshared key", "psk");
    assert_mentions(&problems, "has MTU 1420, not the recorded 1380", "mtu");
    let up = hub.hub(&["-q", "up"]).ok().json();
    assert_eq!(up["peers"][0]["changed"], true, "{up}");
    hub.assert_healthy("healthy");
    assert_eq!(
        wg_show(&ns, &wg, "persistent-keepalive"),
        format!("{peer}\t7")
    );
    assert_eq!(
        wg_show(&ns, &wg, "preshared-keys"),
        psk,
        "the recorded PSK again"
    );
    let mtu = ip_json(Some(&ns), &["link", "show", &wg])[0]["mtu"].clone();
    assert_eq!(mtu, 1380);
    hub.hub(&["-q", "down"]).ok();
    hub.leaks().ok();
}

/// A hub keeps the mode it was built with: the same hub run with the other HUB_MODE is refused
/// (exit 2) naming both, by every command, and nothing changes.
#[test]
fn a_hub_refuses_the_other_mode() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "m1"]).ok();
    let (mine, other) = if hub.zones {
        ("zones", "netns")
    } else {
        ("netns", "zones")
    };
    let before = hub.settled();
    let env = format!("HUB_MODE={other}");
    for args in [
        &["-q", "up"][..],
        &["-q", "peer", "add", "m2"],
        &["-q", "peer", "del", "m1"],
        &["-q", "status"],
        &["-q", "down"],
    ] {
        let r = hub
            .hub_env(&[&env], args)
            .fails(2, &format!("built with HUB_MODE={mine}, not {other}"));
        assert!(r.stdout.is_empty(), "{args:?}: no output: {}", r.stdout);
    }
    assert_same(&hub.everything(), &before, "the other mode changed nothing");
    assert_eq!(hub.status()["mode"], mine);
    // The way to switch: down (keeping the records and keys), then up with the other mode.
    hub.hub(&["-q", "down", "--keep-state"]).ok();
    let up = hub.hub_env(&[&env], &["-q", "up"]).ok().json();
    assert_eq!(up["peers"][0]["name"], "m1", "{up}");
    let st = hub.hub_env(&[&env], &["-q", "check"]).ok().json();
    assert_eq!(st["mode"], other, "{st}");
    assert_eq!(st["healthy"], true, "rebuilt in the other mode: {st}");
    hub.hub_env(&[&env], &["-q", "down"]).ok();
    hub.leaks().ok();
}

// --- Safe under attack, mistakes and months: each test reproduces what an attacker or a
// careless operator did to a built hub, and failed before the fix. ---

/// The state directory's files with their bytes (keys included, as hashes).
fn state_files(hub: &HubLab) -> String {
    sh(&format!(
        "cd {} && find . -type f ! -name lock -print0 | sort -z | xargs -0r sha256sum",
        hub.state.display()
    ))
    .stdout
}

/// A peer added to a tunnel behind the hub's back (`wg set`), and the client's allowed-ips
/// narrowed: `check` names both, `up` removes the stray peer and sets the allowed-ips back, and
/// the client keeps its session.
#[test]
fn stray_wireguard_peer_is_named_and_removed() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "w1"]).ok();
    hub.client("w1");
    assert_eq!(ping_all(&[hub.client_ns("w1")]), [true]);
    let (ns, wg) = (hub.peer_ns("w1"), hub.peer_wg("w1"));
    let client = hub.peer_status("w1")["client_public_key"]
        .as_str()
        .unwrap()
        .to_string();
    let stray = sh("wg genkey | wg pubkey").ok().stdout.trim().to_string();
    sh(&format!(
        "set -e; ip netns exec {ns} wg set {wg} peer {stray} allowed-ips 10.99.0.0/16; \
         ip netns exec {ns} wg set {wg} peer {client} allowed-ips 0.0.0.0/0"
    ))
    .ok();
    let (check, healthy) = hub.check();
    assert!(!healthy, "a stray peer is a problem: {check}");
    let problems = problems_of(&check, "w1");
    assert_mentions(&problems, &stray, "the stray peer");
    assert_mentions(
        &problems,
        "routes 0.0.0.0/0, not",
        "the narrowed allowed-ips",
    );
    let metrics = hub.hub(&["-q", "metrics"]).ok().stdout;
    assert!(
        metrics.contains("niransix_hub_healthy 0"),
        "metrics say unhealthy: {metrics}"
    );

    let r = hub.hub(&["-q", "up"]).ok().json();
    assert_eq!(r["peers"][0]["changed"], true, "{r}");
    let peers = wg_show(&ns, &wg, "allowed-ips");
    assert_eq!(
        peers.trim(),
        format!("{client}\t0.0.0.0/0 ::/0"),
        "only the client, routing everything"
    );
    hub.assert_healthy("repaired");
    assert_eq!(ping_all(&[hub.client_ns("w1")]), [true]);
}

/// What `check` missed: a peer's address on another link of the center, and (netns, with
/// HUB_CIDR6) IPv6 forwarding off in a peer's namespace.
#[test]
fn check_sees_a_duplicated_address_and_ipv6_forwarding_off() {
    let hub = HubLab::new().with_env(&["HUB_CIDR6=fd00:64::/64"]);
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "d1", "d2"]).ok();
    let addr = hub.peer_status("d2")["address"]
        .as_str()
        .unwrap()
        .to_string();
    sh(&format!("ip -n {} addr add {addr}/32 dev lo", hub.ns)).ok();
    let (check, healthy) = hub.check();
    assert!(!healthy, "{check}");
    assert_mentions(
        &problems_of(&check, "d2"),
        &format!("lo in namespace {} also holds d2's address {addr}", hub.ns),
        "the duplicated address",
    );
    sh(&format!("ip -n {} addr del {addr}/32 dev lo", hub.ns)).ok();
    if hub.zones {
        netns_only_part(
            "check_sees_a_duplicated_address_and_ipv6_forwarding_off",
            "no peer namespace whose IPv6 forwarding could be off",
        );
    } else {
        sysctl_in(&hub.peer_ns("d1"), "net.ipv6.conf.all.forwarding=0");
        let (check, healthy) = hub.check();
        assert!(!healthy, "{check}");
        assert_mentions(
            &problems_of(&check, "d1"),
            "IPv6 forwarding is off",
            "forwarding",
        );
        hub.hub(&["-q", "up"]).ok();
    }
    hub.assert_healthy("healthy");
}

/// No input is echoed in an error: a key file given as the peer set or as hub.conf, a long
/// name. The rest of the input hygiene: NUL in a name, a key given twice, an empty option
/// value, IPv6 prefixes no internal network can be, a client key file gone.
#[test]
fn errors_never_echo_the_input() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "e1"]).ok();
    let before = (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix));
    let keyfile = hub.state.join("peers/e1.client.key");
    let key = std::fs::read_to_string(&keyfile).unwrap();
    let key = key.trim();
    let path = keyfile.to_str().unwrap();
    for r in [
        hub.hub(&["-q", "sync", path]),
        hub.hub(&["-q", "-c", path, "up"]),
        hub.hub_stdin(&["-q", "sync", "-"], &format!("{key}\n")),
    ] {
        assert_eq!(r.code, 2, "{}: {}", r.cmdline, r.stderr);
        assert!(
            !r.stderr.contains(key) && !r.stdout.contains(key),
            "{}: the key is echoed: {}",
            r.cmdline,
            r.stderr
        );
        assert!(r.stderr.contains("line 1"), "names the line: {}", r.stderr);
    }
    let long = "x".repeat(300);
    let r = hub.hub(&["-q", "peer", "add", &long]).fails(2, "peer name");
    assert!(
        r.stderr.len() < 300,
        "at most ~80 bytes of it: {}",
        r.stderr
    );

    hub.hub_stdin(&["-q", "sync", "-"], "{\"name\":\"e1\\u0000x\"}\n")
        .fails(2, "line 1: peer name");
    hub.hub_stdin(
        &["-q", "sync", "-"],
        "{\"name\":\"e1\",\"port\":50000,\"name\":\"e9\"}\n",
    )
    .fails(2, "key \"name\" is given twice");
    hub.hub(&["-q", "peer", "add", "e2", "--preshared-key", ""])
        .fails(2, "--preshared-key needs a value");
    for cidr6 in ["fe80::/64", "ff02::/64", "::/64"] {
        hub.hub_env(&[&format!("HUB_CIDR6={cidr6}")], &["-q", "status"])
            .fails(2, cidr6);
    }
    hub.hub_env(
        &[
            "HUB_CIDR6=fd00:64::/64",
            "HUB_CLIENT_ADDRESS6=fd00:64::99/128",
        ],
        &["-q", "status"],
    )
    .fails(2, "is inside HUB_CIDR6");
    assert_eq!(
        (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix)),
        before,
        "nothing changed"
    );

    std::fs::write(&keyfile, "").unwrap();
    hub.hub(&["peer", "conf", "e1"])
        .fails(1, "missing or empty");
    std::fs::remove_file(&keyfile).unwrap();
    hub.hub(&["peer", "conf", "e1"])
        .fails(1, "missing or empty");
}

/// A namespace (netns) or link (the tunnel's name in the center) that the hub did not create
/// is never adopted, and so never deleted by `peer del`, `sync` or `down`.
#[test]
fn a_namespace_or_link_the_hub_did_not_create_is_never_adopted() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "keep"]).ok();
    let victim_ns = hub.lab.name("victim");
    let victim_wg = hub.peer_wg("victim");
    // netns: someone's namespace with the name a peer 'victim' would get, holding a link
    sh(&format!(
        "set -e; ip netns add {victim_ns}; ip -n {victim_ns} link add {p}vx type veth peer name {p}vy",
        p = hub.lab.prefix
    ))
    .ok();
    // both modes: someone's (non-WireGuard) link with the name of victim's tunnel, in the center
    sh(&format!(
        "ip -n {} link add {victim_wg} type veth peer name {}vz",
        hub.ns, hub.lab.prefix
    ))
    .ok();
    let theirs = || {
        (
            sh(&format!("ip -n {victim_ns} -br link")).ok().stdout,
            sh(&format!("ip -n {} -br link show {victim_wg}", hub.ns))
                .ok()
                .stdout,
        )
    };
    let before = theirs();
    if hub.zones {
        hub.hub(&["-q", "peer", "add", "victim"])
            .fails(2, &format!("a link named {victim_wg} exists"));
    } else {
        hub.hub(&["-q", "peer", "add", "victim"])
            .fails(1, &format!("namespace {victim_ns} exists"));
    }
    hub.hub_stdin(
        &["-q", "sync", "-"],
        "{\"name\":\"keep\"}\n{\"name\":\"victim\"}\n",
    )
    .fails(if hub.zones { 2 } else { 1 }, "did not create it");
    assert!(
        !hub.hub(&["-q", "peer", "del", "victim"]).ok().changed(),
        "nothing of victim's to delete"
    );
    assert!(!hub.state.join("peers/victim.json").exists());
    assert_eq!(theirs(), before, "their namespace and link are untouched");
    // (`down` deletes the center's namespace, which the hub created, with what is in it)
    let their_ns = sh(&format!("ip -n {victim_ns} -br link")).ok().stdout;
    hub.hub(&["-q", "down"]).ok();
    assert_eq!(
        sh(&format!("ip -n {victim_ns} -br link")).ok().stdout,
        their_ns,
        "their namespace is untouched by down"
    );
    sh(&format!("ip netns del {victim_ns}")).ok();
}

/// An empty set, or one whose last line has no newline (a file read while it was written),
/// changes nothing; `--allow-empty` is how every peer goes.
#[test]
fn an_empty_or_cut_input_never_wipes_the_hub() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "c1", "c2"]).ok();
    let before = (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix));
    hub.hub_stdin(&["-q", "sync", "-"], "")
        .fails(2, "--allow-empty");
    hub.hub_stdin(&["-q", "sync", "-"], "\n  \n")
        .fails(2, "--allow-empty");
    hub.hub_stdin(&["-q", "sync", "-"], "{\"name\":\"c1\"}\n{\"name\":\"c2\"")
        .fails(2, "line 2: no newline at the end");
    hub.hub_stdin(&["-q", "sync", "-"], "{\"name\":\"c1\"}")
        .fails(2, "line 1: no newline");
    assert_eq!(
        (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix)),
        before,
        "nothing changed"
    );
    let r = hub
        .hub_stdin(&["-q", "sync", "--allow-empty", "-"], "")
        .ok()
        .json();
    assert_eq!(r["removed"], serde_json::json!(["c1", "c2"]), "{r}");
}

/// A set that does not fit changes nothing (before: two peers and their keys deleted, then
/// "no free address"); a sync that fails part-way never frees the claims of a peer whose
/// record lives, so no address is handed out twice.
#[test]
fn sync_checks_capacity_first_and_never_frees_a_live_claim() {
    // 100.64.0.1-.6, .6 the center's: five peer slots
    let hub = HubLab::new().with_env(&["HUB_CIDR=100.64.0.0/29", "HUB_ADDRESS=100.64.0.6"]);
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "p1", "p2", "p3"]).ok();
    let before = (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix));
    let seven: String = (1..=7)
        .map(|i| format!("{{\"name\":\"p{i}\"}}\n"))
        .collect();
    hub.hub_stdin(&["-q", "sync", "-"], &seven)
        .fails(2, "HUB_CIDR 100.64.0.0/29 holds 5");
    assert_eq!(
        (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix)),
        before,
        "nothing changed"
    );

    // p1 moves to a port a foreign socket holds: the sync fails while building p1
    let p1_addr = hub.peer_status("p1")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let blocker = PortsHeld::in_ns(&hub.ns, 50040..=50040);
    let set = "{\"name\":\"p1\",\"port\":50040}\n{\"name\":\"p2\"}\n{\"name\":\"p3\"}\n";
    let r = hub.hub_stdin(&["-q", "sync", "-"], set);
    assert_eq!(r.code, 1, "the build of p1 fails: {}", r.stderr);
    let p4 = hub.hub(&["-q", "peer", "add", "p4"]).ok().json();
    assert_ne!(p4["peers"][0]["address"], p1_addr.as_str(), "{p4}");
    drop(blocker);
    hub.hub(&["-q", "up"]).ok();
    let st = hub.status();
    let mut addrs: Vec<&str> = st["peers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["address"].as_str().unwrap())
        .collect();
    addrs.sort();
    addrs.dedup();
    assert_eq!(addrs.len(), 4, "four peers, four addresses: {st}");
    hub.assert_healthy("healthy");
}

/// A `sync` killed at any instant and run again leaves every peer of the set built (before,
/// the re-run said `changed:false` over half-built peers).
#[test]
fn a_killed_sync_is_finished_by_the_next_one() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    let file = hub.state.with_extension("killed.jsonl");
    for (round, delay_ms) in [150u64, 400, 800, 1300].into_iter().enumerate() {
        let set: String = (0..4)
            .map(|i| format!("{{\"name\":\"k{round}{i}\"}}\n"))
            .collect();
        std::fs::write(&file, &set).unwrap();
        hub.killed(&["-q", "sync", file.to_str().unwrap()], delay_ms);
        hub.hub(&["-q", "sync", file.to_str().unwrap()]).ok();
        let (check, healthy) = hub.check();
        assert!(
            healthy,
            "round {round} (killed after {delay_ms} ms): {check}"
        );
        assert_eq!(check["peers"].as_array().unwrap().len(), 4, "{check}");
    }
    std::fs::remove_file(&file).unwrap();
}

/// A set with `"preshared_key":"generate"` is stable (before: a rebuild on every sync), and a
/// settings change is made in place: the same wireguard-go and interface, the client's pings
/// all answered.
#[test]
fn settings_change_in_place_and_generate_is_stable() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    let set = |extra: &str| format!("{{\"name\":\"g1\",\"preshared_key\":\"generate\"{extra}}}\n");
    hub.hub_stdin(&["-q", "sync", "-"], &set("")).ok();
    hub.client("g1");
    let again = hub.hub_stdin(&["-q", "sync", "-"], &set("")).ok().json();
    assert_eq!(again["changed"], false, "{again}");
    let (ns, wg) = (hub.peer_ns("g1"), hub.peer_wg("g1"));
    let tunnel = || {
        (
            userspace_identity(&wg),
            sh(&format!("ip -n {ns} -o link show {wg} | cut -d: -f1"))
                .ok()
                .stdout,
        )
    };
    let before = tunnel();
    let pinger = Pinger::start(&hub.client_ns("g1"));
    let r = hub
        .hub_stdin(&["-q", "sync", "-"], &set(",\"dns\":\"192.0.2.53\""))
        .ok()
        .json();
    assert_eq!(r["updated"], serde_json::json!(["g1"]), "{r}");
    let r = hub
        .hub_stdin(
            &["-q", "sync", "-"],
            &set(",\"dns\":\"192.0.2.53\",\"keepalive\":15"),
        )
        .ok()
        .json();
    assert_eq!(r["updated"], serde_json::json!(["g1"]), "{r}");
    pinger.stop_without_loss("a DNS and a keepalive change");
    assert_eq!(tunnel(), before, "the same tunnel");
    assert_eq!(
        wg_show(&ns, &wg, "persistent-keepalive").split('\t').nth(1),
        Some("15")
    );
    let conf = hub.hub(&["-q", "peer", "conf", "g1"]).ok().stdout;
    assert!(conf.contains("DNS = 192.0.2.53"), "{conf}");
    hub.assert_healthy("healthy");
}

/// A command waiting for the lock while `down` removes the state directory, lock file
/// included (before: the waiting `sync` woke on the removed lock file and failed on
/// center.json.tmp, the directory gone). The holder here does what `down` does under the lock
/// (the state directory goes) at a moment the test chooses; the waiting sync then runs on a
/// state directory and lock of its own.
#[test]
fn down_racing_a_queued_command() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "q1"]).ok();
    let (state, lock) = (hub.state.display().to_string(), hub.state.join("lock"));
    let aside = format!("{state}.aside");
    let mut holder = Command::new("flock")
        .args([lock.to_str().unwrap(), "sh", "-c"])
        .arg(format!("sleep 1; mv {state} {aside}"))
        .spawn()
        .unwrap();
    wait_until("the holder has the lock", Duration::from_secs(10), || {
        run("flock", &["-n", lock.to_str().unwrap(), "true"]).code != 0
    });
    let sync = hub.hub_stdin(&["-q", "sync", "-"], "{\"name\":\"q2\"}\n");
    assert!(holder.wait().unwrap().success());
    let sync = sync.ok().json();
    assert_eq!(sync["added"], serde_json::json!(["q2"]), "{sync}");
    assert!(lock.exists(), "a lock file of its own");
    hub.assert_healthy("healthy");
    hub.hub(&["-q", "down"]).ok();
    // the state the holder set aside, as `down` would have left nothing of it
    sh(&format!("rm -rf {state}; mv {aside} {state}")).ok();
    hub.hub(&["-q", "down"]).ok();
}

/// The settings that define a built hub are recorded: another HUB_CIDR, HUB_ADDRESS,
/// HUB_CIDR6 or client address is exit 2 naming both values; a stopped hub comes back with
/// new ones if its peers fit them.
#[test]
fn a_built_hub_keeps_its_settings() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "s1"]).ok();
    let before = (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix));
    hub.hub_env(
        &["HUB_CIDR=100.64.1.0/24", "HUB_ADDRESS=100.64.1.10"],
        &["-q", "up"],
    )
    .fails(2, "HUB_CIDR='100.64.0.0/24'");
    hub.hub_env(&["HUB_CIDR6=fd00:64::/64"], &["-q", "peer", "add", "s2"])
        .fails(2, "HUB_CIDR6");
    hub.hub_env(
        &["HUB_CLIENT_ADDRESS=192.168.1.20/32"],
        &["peer", "conf", "s1"],
    )
    .fails(2, "HUB_CLIENT_ADDRESS='192.168.1.10/32'");
    hub.hub_env(&["HUB_ADDRESS=100.64.0.20"], &["-q", "status"])
        .fails(2, "HUB_ADDRESS");
    assert_eq!(
        (state_files(&hub), net_state(&hub.ns, &hub.lab.prefix)),
        before,
        "nothing changed"
    );
    // the documented way: stop, then up with the new settings
    hub.hub(&["-q", "down", "--keep-state"]).ok();
    hub.hub_env(
        &["HUB_CIDR=100.64.1.0/24", "HUB_ADDRESS=100.64.1.10"],
        &["-q", "up"],
    )
    .fails(2, "peer 's1' has the address 100.64.0.1");
    let new = ["HUB_CLIENT_ADDRESS=192.168.1.20/32"];
    hub.hub_env(&new, &["-q", "up"]).ok();
    let conf = hub
        .hub_env(
            &[
                "HUB_CLIENT_ADDRESS=192.168.1.20/32",
                "HUB_ENDPOINT=192.0.2.1",
            ],
            &["peer", "conf", "s1"],
        )
        .ok()
        .stdout;
    assert!(conf.contains("Address = 192.168.1.20/32"), "{conf}");
    hub.hub(&["-q", "status"]).fails(2, "HUB_CLIENT_ADDRESS");
    hub.hub_env(&new, &["-q", "down"]).ok();
}

/// `check`, `metrics`, `status` and the changing commands leave nothing in TMPDIR or the state
/// directory (before: two scratch directories per `check`, one per `metrics`).
#[test]
fn repeated_reads_accumulate_nothing() {
    let hub = HubLab::new();
    let tmp = hub.state.with_extension("tmpdir");
    let _ = std::fs::remove_dir_all(&tmp);
    std::fs::create_dir(&tmp).unwrap();
    let hub = hub.with_env(&[&format!("TMPDIR={}", tmp.display())]);
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "t1", "t2"]).ok();
    let files = || {
        sh(&format!(
            "find {} {} -mindepth 1 ! -name lock | sort",
            tmp.display(),
            hub.state.display()
        ))
        .ok()
        .stdout
    };
    let before = files();
    for _ in 0..3 {
        hub.check();
        hub.hub(&["-q", "metrics"]).ok();
        hub.hub(&["-q", "status"]).ok();
        hub.hub(&["-q", "up"]).ok();
        hub.hub_stdin(
            &["-q", "sync", "-"],
            "{\"name\":\"t1\"}\n{\"name\":\"t2\"}\n",
        )
        .ok();
    }
    assert_eq!(files(), before, "nothing accumulates");
    assert_eq!(
        sh(&format!("ls -A {}", tmp.display())).ok().stdout,
        "",
        "TMPDIR is empty"
    );
    hub.hub(&["-q", "down"]).ok();
    std::fs::remove_dir_all(&tmp).unwrap();
}

/// What wedged the repair timer for good, each followed by `up`: the center's namespace
/// deleted, a tunnel moved into another namespace, a peer whose repair fails (its port taken
/// by someone else) among others to repair with HUB_JOBS=1. `up` repairs what it can, names what
/// it cannot (exit 1), and the next `up` finishes.
#[test]
fn up_repairs_past_what_wedged_it() {
    let mut hub = HubLab::new().with_env(&["HUB_JOBS=1"]);
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "u1", "u2", "u3"]).ok();
    hub.client("u1");
    let client = [hub.client_ns("u1")];
    assert_eq!(ping_all(&client), [true]);

    // 1. the center's namespace deleted (its tunnels' sockets keep the old one alive, unnamed)
    sh(&format!("ip netns del {}", hub.ns)).ok();
    hub.underlay_again();
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("after the center was deleted");
    let p = &hub.lab.prefix;
    assert_eq!(
        userspace_served(&format!("{p}u")),
        3,
        "every peer's tunnel served"
    );
    assert_eq!(
        sh(&format!(
            "pgrep -c -f '^(wireguard-go|boringtun-cli .*) {p}u'"
        ))
        .stdout
        .trim(),
        if userspace_pids(&hub.peer_wg("u1")).iter().any(|p| {
            std::fs::read_to_string(format!("/proc/{p}/comm")).is_ok_and(|c| c.trim() == "wgd")
        }) {
            "0"
        } else {
            "3"
        },
        "one process per peer (none under wgd), the old ones gone"
    );

    // 2. a tunnel moved into another namespace
    let elsewhere = hub.lab.netns("elsewhere");
    sh(&format!(
        "ip -n {} link set {} netns {elsewhere}",
        hub.peer_ns("u2"),
        hub.peer_wg("u2")
    ))
    .ok();
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("after u2's tunnel moved away");

    // 3. u2's port taken while it is down, u1 and u3 broken too: HUB_JOBS=1 puts all three in
    // one batch, and u2's failure does not stop the others' repair
    for u in ["u1", "u2", "u3"] {
        crash_userspace(&format!("{p}{u}-wg"), "TERM");
    }
    up_with_port_held(&hub, "u2");
    let (check, _) = hub.check();
    assert_eq!(
        problems_of(&check, "u1"),
        Vec::<String>::new(),
        "u1 repaired"
    );
    assert_eq!(
        problems_of(&check, "u3"),
        Vec::<String>::new(),
        "u3 repaired"
    );
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("healthy");
    // (the hub side of u1 is a new wireguard-go: the client starts a new handshake once its
    // old session gets no answer, WireGuard's own timers, 15-20 s; a loaded machine takes longer)
    let reached = ping_all_within(&client, 90);
    assert_eq!(
        reached,
        [true],
        "the client configured first still works: hub side {}; client side {}",
        sh(&format!(
            "ip netns exec {} wg show {}",
            hub.peer_ns("u1"),
            hub.peer_wg("u1")
        ))
        .stdout,
        sh(&format!(
            "ip netns exec {} wg show {}",
            client[0],
            hub.client_wg("u1")
        ))
        .stdout
    );
}

/// A repair that needs no new state runs on a full state filesystem (scratch files go to
/// TMPDIR, claims are written only where missing).
#[test]
fn up_repairs_on_a_full_state_filesystem() {
    let hub = HubLab::new();
    std::fs::create_dir_all(&hub.state).unwrap();
    let state = hub.state.display().to_string();
    sh(&format!("mount -t tmpfs -o size=512k tmpfs {state}")).ok();
    struct Unmount(String);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = sh(&format!("umount -l {}", self.0));
        }
    }
    let _unmount = Unmount(state.clone());
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "f1", "f2"]).ok();
    sh(&format!(
        "dd if=/dev/zero of={state}/filler bs=4k 2>/dev/null; df {state} | tail -1"
    ))
    .ok();
    let p = &hub.lab.prefix;
    crash_userspace(&format!("{p}f1-wg"), "TERM");
    let r = hub.hub(&["-q", "up"]).ok().json();
    assert_eq!(r["peers"][0]["changed"], true, "f1 repaired: {r}");
    hub.assert_healthy("healthy");
    std::fs::remove_file(format!("{state}/filler")).unwrap();
    hub.hub(&["-q", "down", "--keep-state"]).ok();
}

/// Settings a stopped hub comes back with must fit its peers: a peer with an MTU below 1280 and
/// HUB_CIDR6 is exit 2 naming it, not a hub that fails at every `up`.
#[test]
fn a_stopped_hub_takes_only_settings_its_peers_fit() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "m1", "--mtu", "600"]).ok();
    hub.hub(&["-q", "down", "--keep-state"]).ok();
    hub.hub_env(&["HUB_CIDR6=fd00:64::/64"], &["-q", "up"])
        .fails(2, "peer 'm1' has MTU 600");
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("healthy");
}

/// Python for the spoofing test: the center's UDP server (the first datagram it gets is reported
/// on stdout, then answered by 300 datagrams over 3 s), a device's receiver (counts what arrives on a port for 5 s), and
/// the attacker (raw IPv4/UDP datagrams with a forged source, sent into its own tunnel).
const UDP_FLOOD_SERVER: &str = "
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], int(sys.argv[2])))
s.settimeout(10)
_, peer = s.recvfrom(100)
print('hello from %s:%d' % peer, flush=True)
for i in range(300):
    s.sendto(b'data %d' % i, peer)
    time.sleep(0.01)
";
const UDP_COUNTER: &str = "
import socket, sys, time
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(('0.0.0.0', int(sys.argv[1])))
if len(sys.argv) > 2:
    s.sendto(b'hello', (sys.argv[2], int(sys.argv[3])))
s.settimeout(0.5)
n, end = 0, time.time() + 5
while time.time() < end:
    try:
        s.recvfrom(100)
        n += 1
    except socket.timeout:
        pass
print(n)
";
const UDP_SPOOFER: &str = "
import socket, struct, sys, time
src, sport, dst, dport = sys.argv[1], int(sys.argv[2]), sys.argv[3], int(sys.argv[4])
def csum(b):
    if len(b) % 2: b += b'\\0'
    s = sum(struct.unpack('!%dH' % (len(b) // 2), b))
    while s >> 16: s = (s & 0xffff) + (s >> 16)
    return ~s & 0xffff
payload = b'spoofed'
udp = struct.pack('!HHHH', sport, dport, 8 + len(payload), 0) + payload
ip = struct.pack('!BBHHHBBH4s4s', 0x45, 0, 20 + len(udp), 1, 0, 64, 17, 0,
                 socket.inet_aton(src), socket.inet_aton(dst))
ip = ip[:10] + struct.pack('!H', csum(ip)) + ip[12:]
s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
for i in range(100):
    s.sendto(ip + udp, (dst, 0))
    time.sleep(0.02)
";

/// Device A sends, through its own tunnel, UDP forged as the reply side of device B's
/// connection to the center (src = the center's address and port, dst = B's internal address
/// and port). Before: in zones mode conntrack took it for a reply of B's connection and the
/// connection mark rule for A's interface re-marked B's connection, so the center's packets for
/// B went into A's tunnel (A got ~250 of B's 300). Now: A gets none, B gets them all, and B's
/// connection keeps its mark.
#[test]
fn a_device_cannot_take_another_devices_traffic() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "va", "vb"]).ok();
    hub.client("va");
    hub.client("vb");
    let clients = [hub.client_ns("va"), hub.client_ns("vb")];
    assert_eq!(ping_all(&clients), [true, true]);
    let b_addr = hub.peer_status("vb")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let py = |ns: &str, code: &str, args: &[&str]| {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", ns, "python3", "-c", code])
            .args(args)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        c.spawn().unwrap()
    };
    let mut server = py(&hub.ns, UDP_FLOOD_SERVER, &[SERVER, "9000"]);
    wait_until(
        "the center's server holds UDP port 9000",
        Duration::from_secs(10),
        || udp_bound(&hub.ns, 9000),
    );
    let a = py(&clients[0], UDP_COUNTER, &["4000"]);
    let b = py(&clients[1], UDP_COUNTER, &["4000", SERVER, "9000"]);
    wait_until(
        "A's receiver holds UDP port 4000",
        Duration::from_secs(10),
        || udp_bound(&clients[0], 4000),
    );
    // B's connection exists before the forged packets: the server got B's datagram (it gives
    // up, closing its stdout, after 10 s without one).
    let mut hello = String::new();
    std::io::BufRead::read_line(
        &mut std::io::BufReader::new(server.stdout.take().unwrap()),
        &mut hello,
    )
    .unwrap();
    assert!(
        hello.starts_with("hello from"),
        "the server never got B's datagram"
    );
    let spoofer = py(&clients[0], UDP_SPOOFER, &[SERVER, "9000", &b_addr, "4000"])
        .wait_with_output()
        .unwrap();
    assert!(spoofer.status.success(), "{spoofer:?}");
    let count = |c: std::process::Child| -> u64 {
        let out = c.wait_with_output().unwrap();
        String::from_utf8_lossy(&out.stdout)
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("{out:?}"))
    };
    let (got_a, got_b) = (count(a), count(b));
    let _ = server.wait_with_output();
    assert_eq!(got_a, 0, "A received B's traffic (B got {got_b})");
    assert!(got_b >= 290, "B received {got_b} of its 300");
    if hub.zones {
        // (dropped before conntrack saw them, by the one early drop of every tunnel: they
        // changed nothing of B's connection)
        let nat = tool("natctl", &["--ns", &hub.ns, "list"]).ok().json();
        let early = nat["rules"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["kind"] == "filter" && r["iif"] == "@tunnels" && r["early"] == true)
            .unwrap_or_else(|| panic!("A's early drop in {nat}"))
            .clone();
        assert!(
            early["packets"].as_u64().unwrap() >= 100,
            "the forged packets died before conntrack: {early}"
        );
    }
    hub.assert_healthy("healthy");
}

/// A device reaches only the internal network: not a service on the center's own uplink
/// address, not a host on a LAN behind the center, not another peer's internal address, even
/// with its own tunnel's allowed-ips and routes opened to them. The center's server stays
/// reachable.
#[test]
fn a_device_reaches_only_the_internal_network() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "ia", "ib"]).ok();
    hub.client("ia");
    let client = hub.client_ns("ia");
    assert_eq!(ping_all(std::slice::from_ref(&client)), [true]);
    let b_addr = hub.peer_status("ib")["address"]
        .as_str()
        .unwrap()
        .to_string();
    // a LAN behind the center: the center 198.51.100.1, a host 198.51.100.2
    let lan = hub.lab.netns("lan");
    let (ns, p) = (&hub.ns, &hub.lab.prefix);
    sh(&format!(
        "set -e; ip link add {p}lan0 netns {ns} type veth peer name {p}lan1 netns {lan}; \
         ip -n {ns} addr add 198.51.100.1/24 dev {p}lan0; ip -n {ns} link set {p}lan0 up; \
         ip -n {lan} addr add 198.51.100.2/24 dev {p}lan1; ip -n {lan} link set {p}lan1 up; \
         ip -n {lan} link set lo up; ip -n {lan} route add default via 198.51.100.1"
    ))
    .ok();
    // the attacker opens its own tunnel to everything
    let (cwg, peer_key) = (
        hub.client_wg("ia"),
        hub.peer_status("ia")["public_key"]
            .as_str()
            .unwrap()
            .to_string(),
    );
    sh(&format!(
        "set -e; ip netns exec {client} wg set {cwg} peer {peer_key} allowed-ips 0.0.0.0/0; \
         ip -n {client} route add 198.51.100.0/24 dev {cwg}"
    ))
    .ok();
    let listen = |where_: &str, addr: &str| {
        Command::new("ip")
            .args([
                "netns", "exec", where_, "timeout", "20", "nc", "-l", "-k", addr, "8080",
            ])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap()
    };
    // (a service of the center on all its addresses: the uplink's, the server's, and in zones
    // mode the peers' internal addresses, which the center holds)
    let listeners = vec![listen(ns, "0.0.0.0"), listen(&lan, "198.51.100.2")];
    wait_until(
        "nc listens on TCP port 8080 in the center and on the LAN",
        Duration::from_secs(10),
        || tcp_listening(ns, 8080) && tcp_listening(&lan, 8080),
    );
    let connects = |dest: &str| {
        sh(&format!(
            "ip netns exec {client} nc -z -w 2 -s {CLIENT_ADDR} {dest} 8080"
        ))
        .code
            == 0
    };
    assert!(connects(SERVER), "the center's server is reachable");
    for dest in ["198.51.100.1", "198.51.100.2", &b_addr] {
        assert!(!connects(dest), "the device reached {dest}");
    }
    assert!(
        !ping(&client, "198.51.100.2", 2),
        "the device pinged the LAN host"
    );
    for mut l in listeners {
        let _ = l.kill();
        let _ = l.wait();
    }
    hub.assert_healthy("healthy");
}

/// natctl's rules are held against what their ids stand for: a NAT rule replaced behind the
/// hub's back by an SNAT to another peer's address (its comment kept), and (zones) one nft rule
/// of a multi-rule object deleted (the connmark's restore, the `snat --local` input part), are
/// named by `check` and repaired by `up`; (netns) a foreign table in a peer's namespace is named.
#[test]
fn tampered_or_partial_nat_is_seen_and_repaired() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "n1", "n2"]).ok();
    let ns = hub.peer_ns("n1");
    let other = hub.peer_status("n2")["address"]
        .as_str()
        .unwrap()
        .to_string();
    // the rule to tamper with: n1's masquerade (netns) or (zones) the center's SNAT of every
    // tunnel, over its map; the problem is then n1's or the center's
    let (chain, kind) = if hub.zones {
        ("srcnat".to_string(), "@tunnel_snat")
    } else {
        ("srcnat".to_string(), "masquerade")
    };
    let whose = if hub.zones { "center" } else { "n1" };
    let problems = |check: &Value| -> Vec<String> {
        if hub.zones {
            serde_json::from_value(check["center"]["problems"].clone()).unwrap()
        } else {
            problems_of(check, "n1")
        }
    };
    let rules = sh(&format!(
        "ip netns exec {ns} nft -a list chain inet natctl {chain}"
    ))
    .ok()
    .stdout;
    let line = rules
        .lines()
        .find(|l| l.contains("natctl:") && l.contains(kind))
        .unwrap_or_else(|| panic!("the {kind} rule in {rules}"));
    let handle = line.rsplit("handle ").next().unwrap().trim();
    let comment = line
        .split("comment ")
        .nth(1)
        .unwrap()
        .split(" #")
        .next()
        .unwrap();
    let matcher = if hub.zones {
        "meta nfproto ipv4".to_string()
    } else {
        format!("oifname \"{}n1-in\"", hub.lab.prefix)
    };
    sh(&format!(
        "ip netns exec {ns} nft 'replace rule inet natctl {chain} handle {handle} \
         {matcher} snat ip to {other} comment {comment}'"
    ))
    .ok();
    let (check, healthy) = hub.check();
    assert!(!healthy, "{check}");
    assert_mentions(
        &problems(&check),
        "was changed behind natctl's back",
        &format!("the tampered rule, {whose}'s"),
    );
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("repaired");
    hub.assert_nat_once("n1", "after the repair");

    if hub.zones {
        // one part of a multi-rule object: the connmark's restore, the snat --local input part
        // (the center's, over the maps)
        for (chain, needle) in [
            // (the restore: nft shows its lookup of the marks' map no more than a register it
            // does not read, so it is found by its statement and its comment)
            ("connmarks", "meta mark set ct mark comment \"natctl:"),
            ("input", "@tunnel_snat"),
        ] {
            let rules = sh(&format!(
                "ip netns exec {ns} nft -a list chain inet natctl {chain}"
            ))
            .ok()
            .stdout;
            let line = rules
                .lines()
                .find(|l| {
                    l.contains(needle)
                        && l.contains("natctl:")
                        && (chain != "connmarks" || l.contains("connmark --iif @tunnel_mark"))
                })
                .unwrap_or_else(|| panic!("{needle} in {chain}: {rules}"));
            let handle = line.rsplit("handle ").next().unwrap().trim();
            sh(&format!(
                "ip netns exec {ns} nft delete rule inet natctl {chain} handle {handle}"
            ))
            .ok();
            let (check, healthy) = hub.check();
            assert!(!healthy, "{chain}: {check}");
            assert_mentions(&problems(&check), "lacks a part", chain);
            hub.hub(&["-q", "up"]).ok();
            let (check, healthy) = hub.check();
            assert!(healthy, "{chain} repaired: {check}");
            hub.assert_nat_once("n1", &format!("after {chain}'s repair"));
        }
    } else {
        sh(&format!("ip netns exec {ns} nft add table ip intruder")).ok();
        let (check, healthy) = hub.check();
        assert!(!healthy, "{check}");
        assert_mentions(
            &problems_of(&check, "n1"),
            "is not the hub's",
            "a foreign table",
        );
        sh(&format!("ip netns exec {ns} nft delete table ip intruder")).ok();
    }
    hub.assert_healthy("healthy");
}

/// HUB_ENDPOINT is a DNS name, an IPv4 or an IPv6 address, nothing else (before: `HOST:PORT` and
/// `a b` went into every client config); HUB_PUBLIC_PORT_BASE shifts the port clients dial by
/// the peer's offset from HUB_PORT_BASE. The config is read by the real `wg` (through
/// `wg-quick strip`), which sees the endpoint the client will dial.
#[test]
fn endpoint_is_checked_and_public_ports_follow_their_base() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "e1", "e2"]).ok();
    for bad in [
        "203.0.113.5:51820",
        "a b",
        "1.2.3",
        "-bad.example",
        "[203.0.113.5]",
    ] {
        hub.hub_env(&[&format!("HUB_ENDPOINT={bad}")], &["peer", "conf", "e1"])
            .fails(2, &format!("HUB_ENDPOINT '{bad}'"));
    }
    hub.hub_env(&["HUB_PUBLIC_PORT_BASE=70000"], &["peer", "conf", "e1"])
        .fails(2, "HUB_PUBLIC_PORT_BASE '70000'");
    let conf = |env: &[&str]| hub.hub_env(env, &["peer", "conf", "e2"]).ok().stdout;
    let port = hub.peer_status("e2")["listen_port"].as_u64().unwrap();
    for (env, want) in [
        (
            vec!["HUB_ENDPOINT=hub.example.com"],
            format!("hub.example.com:{port}"),
        ),
        (
            vec!["HUB_ENDPOINT=2001:db8::5"],
            format!("[2001:db8::5]:{port}"),
        ),
        (
            vec!["HUB_ENDPOINT=[2001:db8::5]"],
            format!("[2001:db8::5]:{port}"),
        ),
        (
            vec!["HUB_ENDPOINT=203.0.113.5", "HUB_PUBLIC_PORT_BASE=40000"],
            format!("203.0.113.5:{}", 40000 + port - 50000),
        ),
    ] {
        let c = conf(&env);
        assert!(c.contains(&format!("Endpoint = {want}\n")), "{env:?}: {c}");
    }
    // what `wg` itself makes of it
    let ns = hub.lab.netns("wgq");
    let dir = hub.state.with_extension("wgq");
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("wgq0.conf");
    std::fs::write(
        &file,
        conf(&["HUB_ENDPOINT=203.0.113.5", "HUB_PUBLIC_PORT_BASE=40000"]),
    )
    .unwrap();
    let key = dir.join("k");
    tool("wgctl", &["genkey", "--out", key.to_str().unwrap()]).ok();
    let wgq = format!("{}q0", hub.lab.prefix);
    tool(
        "wgctl",
        &[
            "--ns",
            &ns,
            "iface",
            "add",
            &wgq,
            "--private-key",
            key.to_str().unwrap(),
        ],
    )
    .ok();
    sh(&format!(
        "set -e; umask 077; wg-quick strip {f} > {d}/stripped; ip netns exec {ns} wg setconf {wgq} {d}/stripped",
        f = file.display(),
        d = dir.display()
    ))
    .ok();
    let endpoints = sh(&format!("ip netns exec {ns} wg show {wgq} endpoints"))
        .ok()
        .stdout;
    assert!(
        endpoints.contains(&format!("203.0.113.5:{}", 40000 + port - 50000)),
        "{endpoints}"
    );
    tool("wgctl", &["--ns", &ns, "iface", "del", &wgq]).ok();
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `hub metrics` as existing WireGuard dashboards read it: through the real node_exporter
/// textfile collector (Debian's prometheus-node-exporter), with prometheus_wireguard_exporter's
/// labels (`friendly_name`, `allowed_ips`) and its handshake delay, the client's endpoint as an
/// info series, and no byte series for a peer whose interface is gone (up and healthy 0). A
/// dashboard query grouping by `friendly_name` is evaluated by Prometheus's own PromQL engine
/// (`promtool test rules`) on the series node_exporter served.
#[test]
fn metrics_through_node_exporter_and_a_friendly_name_query() {
    for tool in ["prometheus-node-exporter", "promtool"] {
        assert!(
            sh(&format!("command -v {tool}")).code == 0,
            "{tool} is installed by scripts/bootstrap.sh"
        );
    }
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "m1", "m2"]).ok();
    hub.client("m1");
    assert_eq!(ping_all(&[hub.client_ns("m1")]), [true]);
    let p = &hub.lab.prefix;
    crash_userspace(&format!("{p}m2-wg"), "TERM");

    let dir = hub.state.with_extension("textfile");
    std::fs::create_dir_all(&dir).unwrap();
    let text = hub.hub(&["-q", "metrics"]).ok().stdout;
    std::fs::write(dir.join("niransix.prom"), &text).unwrap();
    // (a port of its own on loopback)
    let port = 20000 + std::process::id() % 20000;
    let mut exporter = Command::new("prometheus-node-exporter")
        .args([
            "--collector.disable-defaults",
            "--collector.textfile",
            &format!("--collector.textfile.directory={}", dir.display()),
            &format!("--web.listen-address=127.0.0.1:{port}"),
        ])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let fetch = format!(
        "import urllib.request; print(urllib.request.urlopen('http://127.0.0.1:{port}/metrics').read().decode())"
    );
    let mut served = String::new();
    poll_until(Duration::from_secs(5), || {
        let r = run("python3", &["-c", &fetch]);
        served = r.stdout;
        r.code == 0
    });
    let _ = exporter.kill();
    let _ = exporter.wait();
    assert!(
        served.contains("node_textfile_scrape_error 0"),
        "node_exporter read the file: {served}"
    );
    let series = |name: &str, peer: &str| -> Vec<&str> {
        served
            .lines()
            .filter(|l| {
                l.starts_with(&format!("{name}{{"))
                    && l.contains(&format!("friendly_name=\"{peer}\""))
            })
            .collect()
    };
    let m1 = series("wireguard_received_bytes_total", "m1");
    assert_eq!(m1.len(), 1, "{served}");
    assert!(
        m1[0].contains("allowed_ips=\"0.0.0.0/0,::/0\""),
        "{}",
        m1[0]
    );
    assert!(m1[0].contains("peer=\"m1\""), "{}", m1[0]);
    assert_eq!(
        series("wireguard_latest_handshake_delay_seconds", "m1").len(),
        1
    );
    let endpoint = series("niransix_hub_peer_endpoint_info", "m1");
    assert!(
        endpoint.len() == 1 && endpoint[0].contains("endpoint=\"[2001:db8::21]:"),
        "{endpoint:?}"
    );
    // m2's interface is gone: no byte, handshake or endpoint series; up and healthy 0
    for name in [
        "wireguard_received_bytes_total",
        "wireguard_sent_bytes_total",
        "wireguard_latest_handshake_seconds",
        "niransix_hub_peer_endpoint_info",
    ] {
        assert!(series(name, "m2").is_empty(), "{name} for m2: {served}");
    }
    for name in ["niransix_hub_peer_up", "niransix_hub_peer_healthy"] {
        let s = series(name, "m2");
        assert!(s.len() == 1 && s[0].ends_with(" 0"), "{name}: {s:?}");
    }

    // a dashboard's query, by friendly_name, on what node_exporter served
    let (labels, value) = m1[0].rsplit_once(' ').unwrap();
    let test = dir.join("dashboard.yml");
    std::fs::write(
        &test,
        format!(
            "rule_files: []\nevaluation_interval: 1m\ntests:\n  - interval: 1m\n    input_series:\n\
             \x20     - series: '{labels}'\n        values: '{value} {value} {value}'\n\
             \x20   promql_expr_test:\n\
             \x20     - expr: sum by (friendly_name) (wireguard_received_bytes_total)\n\
             \x20       eval_time: 2m\n        exp_samples:\n\
             \x20         - labels: '{{friendly_name=\"m1\"}}'\n            value: {value}\n"
        ),
    )
    .unwrap();
    let r = run("promtool", &["test", "rules", test.to_str().unwrap()]);
    assert_eq!(r.code, 0, "promtool: {}{}", r.stdout, r.stderr);
    std::fs::remove_dir_all(&dir).unwrap();
}

/// `hub peer set` changes one peer's settings in place: its tunnel stays (the same wireguard-go,
/// its client's pings all answered), no other peer is touched, `--check` plans without changing,
/// `none` takes a preshared key or DNS away. The advice `peer add` gives for a changed setting is
/// this command, and following it keeps every other peer (before: the advice led to a `sync` of
/// one line, which removed every other peer).
#[test]
fn peer_set_changes_one_peer_in_place() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "s1", "s2"]).ok();
    hub.client("s1");
    let (ns, wg) = (hub.peer_ns("s1"), hub.peer_wg("s1"));
    let pid = |peer: &str| userspace_identity(&hub.peer_wg(peer));
    let (s1_pid, s2_pid) = (pid("s1"), pid("s2"));
    let s2_before = hub.peer_status("s2");

    let advice = hub
        .hub(&["-q", "peer", "add", "s1", "--mtu", "1400"])
        .fails(1, "'hub peer set s1'");
    assert!(!advice.stderr.contains("sync"), "{}", advice.stderr);
    let before = hub.settled();
    let plan = hub
        .hub(&["-q", "--check", "peer", "set", "s1", "--mtu", "1400"])
        .ok()
        .json();
    assert_eq!(plan["changed"], true, "{plan}");
    assert_same(&hub.settled(), &before, "after --check peer set");

    // (the settings that keep the client's config valid, under the client's pings)
    let pinger = Pinger::start(&hub.client_ns("s1"));
    let r = hub
        .hub(&[
            "-q",
            "peer",
            "set",
            "s1",
            "--mtu",
            "1400",
            "--keepalive",
            "15",
            "--dns",
            "192.0.2.53",
        ])
        .ok()
        .json();
    assert_eq!(r["changed"], true, "{r}");
    pinger.stop_without_loss("peer set --mtu --keepalive --dns");
    hub.hub(&["-q", "peer", "set", "s1", "--preshared-key", "generate"])
        .ok();
    assert_eq!(
        ip_json(Some(&ns), &["link", "show", &wg])[0]["mtu"],
        1400,
        "MTU set on the live interface"
    );
    assert_eq!(
        wg_show(&ns, &wg, "persistent-keepalive").split('\t').nth(1),
        Some("15")
    );
    assert_ne!(
        wg_show(&ns, &wg, "preshared-keys").split('\t').nth(1),
        Some("(none)")
    );
    let again = hub
        .hub(&[
            "-q",
            "peer",
            "set",
            "s1",
            "--mtu",
            "1400",
            "--preshared-key",
            "generate",
        ])
        .ok()
        .json();
    assert_eq!(again["changed"], false, "{again}");
    let conf = hub.hub(&["-q", "peer", "conf", "s1"]).ok().stdout;
    assert!(
        conf.contains("DNS = 192.0.2.53") && conf.contains("PresharedKey = "),
        "{conf}"
    );
    hub.hub(&[
        "-q",
        "peer",
        "set",
        "s1",
        "--preshared-key",
        "none",
        "--dns",
        "none",
    ])
    .ok();
    assert_eq!(
        wg_show(&ns, &wg, "preshared-keys").split('\t').nth(1),
        Some("(none)")
    );
    let conf = hub.hub(&["-q", "peer", "conf", "s1"]).ok().stdout;
    assert!(
        !conf.contains("DNS") && !conf.contains("PresharedKey"),
        "{conf}"
    );
    assert_eq!((pid("s1"), pid("s2")), (s1_pid, s2_pid), "the same tunnels");
    assert_eq!(hub.peer_status("s2"), s2_before, "s2 untouched");
    assert_eq!(peer_names(&hub.status()), ["s1", "s2"]);

    hub.hub(&["-q", "peer", "set", "s1"])
        .fails(2, "give at least one");
    hub.hub(&["-q", "peer", "set", "nope", "--mtu", "1400"])
        .fails(1, "no peer 'nope'");
    hub.hub(&["-q", "peer", "set", "s1", "--mtu", "99"])
        .fails(2, "--mtu '99'");
    hub.assert_healthy("healthy");
}

/// `hub show`: the hub for people, like `wg show`. The center, then a line per peer with its
/// address, port, endpoint, handshake and transfer, and its health; a broken peer's problems
/// under it; no colour when stdout is not a terminal; nothing changed.
#[test]
fn show_prints_a_line_per_peer_with_its_problems() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.add("s1", &[]);
    hub.add("s2", &[]);
    let status = hub.status();
    let show = hub.hub(&["-q", "show"]).ok().stdout;
    assert!(show.starts_with("center: "), "{show}");
    assert!(!show.contains('\u{1b}'), "no colour into a pipe: {show:?}");
    for name in ["s1", "s2"] {
        let p = &status["peers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["name"] == name)
            .unwrap();
        let line = show
            .lines()
            .find(|l| l.starts_with(&format!("{name} ")))
            .unwrap_or_else(|| panic!("no line for {name}: {show}"));
        let words: Vec<&str> = line.split_whitespace().collect();
        assert_eq!(words[1], p["address"].as_str().unwrap(), "{line}");
        assert_eq!(words[2], p["listen_port"].to_string(), "{line}");
        assert!(
            line.contains("(none)") && line.contains("never"),
            "no client yet: {line}"
        );
        assert!(
            line.contains("0 B received, 0 B sent") && line.ends_with("healthy"),
            "{line}"
        );
    }
    // s2's tunnel down behind the hub's back: UNHEALTHY, the problem under its line
    sh(&format!(
        "ip -n {} link set {} down",
        hub.peer_ns("s2"),
        hub.peer_wg("s2")
    ))
    .ok();
    let show = hub.hub(&["-q", "show"]).ok().stdout;
    let lines: Vec<&str> = show.lines().collect();
    let at = lines
        .iter()
        .position(|l| l.starts_with("s2 "))
        .expect("s2's line");
    assert!(lines[at].ends_with("UNHEALTHY"), "{show}");
    assert!(
        lines[at + 1].trim_start().starts_with("- ") && lines[at + 1].contains(&hub.peer_wg("s2")),
        "the problem under s2: {show}"
    );
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("s1 ") && l.ends_with("healthy")),
        "{show}"
    );
    hub.hub(&["--check", "show"]).fails(2, "--check goes with");
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("repaired after show");
}

/// A state directory and a TMPDIR with spaces in their names work (the hub hands paths to its
/// script as tab-separated words); a state directory with a tab is refused naming it.
#[test]
fn paths_with_spaces_work_and_a_tab_is_refused() {
    let hub = HubLab::new();
    let state = format!("{}.spaced state", hub.state.display());
    let tmp = format!("{}.scratch dir", hub.state.display());
    std::fs::create_dir_all(&tmp).unwrap();
    let hub = hub.with_env(&[&format!("HUB_STATE_DIR={state}"), &format!("TMPDIR={tmp}")]);
    hub.hub(&["-q", "up"]).ok();
    hub.add("sp1", &[]);
    assert!(std::path::Path::new(&state)
        .join("peers/sp1.json")
        .is_file());
    assert_eq!(hub.peer_status("sp1")["up"], true);
    hub.assert_healthy("with spaces in its paths");
    let left: Vec<_> = std::fs::read_dir(&tmp).unwrap().collect();
    assert!(left.is_empty(), "no scratch left in TMPDIR: {left:?}");
    hub.hub_env(&[&format!("HUB_STATE_DIR={state}\tx")], &["-q", "status"])
        .fails(2, "HUB_STATE_DIR");
    hub.hub(&["-q", "down"]).ok();
    assert!(!std::path::Path::new(&state).exists());
}

/// `down` after the center's namespace was deleted by hand: the tunnels' wireguard-go, whose
/// sockets keep the deleted namespace alive, are stopped too (before, in zones mode, they were
/// left running); nothing of the hub is left.
#[test]
fn down_after_the_center_was_deleted_leaves_nothing() {
    let hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "g1", "g2"]).ok();
    let p = &hub.lab.prefix;
    let running = || userspace_served(&format!("{p}g"));
    assert_eq!(running(), 2);
    sh(&format!("ip netns del {}", hub.ns)).ok();
    let down = hub.hub(&["-q", "down"]).ok().json();
    assert_eq!(
        down["removed"]["peers"],
        serde_json::json!(["g1", "g2"]),
        "{down}"
    );
    assert_eq!(running(), 0, "no tunnel left");
    hub.leaks().ok();
}

/// A device's services: TCP on each port of the first list and UDP on each of the second
/// answer `NAME PORT SOURCE` (SOURCE: the address the connection came from, as the device saw
/// it).
const SERVICES: &str = r#"
import socket, sys, threading
name = sys.argv[1]
def sock(kind):
    s = socket.socket(socket.AF_INET6, kind)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    return s
def source(a):
    return a[0].removeprefix("::ffff:")
def tcp(port):
    s = sock(socket.SOCK_STREAM); s.bind(("::", port)); s.listen(128)
    while True:
        c, a = s.accept(); c.sendall(f"{name} {port} {source(a)}\n".encode()); c.close()
def udp(port):
    s = sock(socket.SOCK_DGRAM); s.bind(("::", port))
    while True:
        d, a = s.recvfrom(100); s.sendto(f"{name} {port} {source(a)}\n".encode(), a)
ts = [threading.Thread(target=tcp, args=(int(p),)) for p in sys.argv[2].split(",") if p]
ts += [threading.Thread(target=udp, args=(int(p),)) for p in sys.argv[3].split(",") if p]
[t.start() for t in ts]
print("ready", flush=True)
[t.join() for t in ts]
"#;

/// Every address at once (IPv4 or IPv6): tcp/22, tcp/8080 (or the port of `ADDR@PORT`) and
/// udp/161 each, what answered (or `ERR`), as JSON `{ADDR: [..3]}`.
const PROBE: &str = r#"
import json, socket, sys, threading
out = {}
def probe(target):
    addr, _, second = target.partition("@")
    r = []
    for port in (22, int(second or 8080)):
        try:
            s = socket.create_connection((addr, port), timeout=4)
            r.append(s.recv(100).decode().strip()); s.close()
        except Exception as e:
            r.append("ERR " + type(e).__name__)
    family = socket.AF_INET6 if ":" in addr else socket.AF_INET
    u = socket.socket(family, socket.SOCK_DGRAM); u.settimeout(1.5)
    got = "ERR timeout"
    for _ in range(3):
        u.sendto(b"x", (addr, 161))
        try:
            got = u.recvfrom(100)[0].decode().strip(); break
        except socket.timeout:
            pass
    r.append(got)
    out[target] = r
ts = [threading.Thread(target=probe, args=(a,)) for a in sys.argv[1:]]
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps(out))
"#;

/// Processes a test started (a device's services), killed when it ends, also on failure.
struct Services(Vec<std::process::Child>);

impl Services {
    /// SERVICES in namespace NS as NAME, once it listens.
    fn start(&mut self, ns: &str, name: &str, tcp: &str, udp: &str) {
        let mut child = Command::new("ip")
            .args([
                "netns", "exec", ns, "python3", "-c", SERVICES, name, tcp, udp,
            ])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3");
        let mut line = String::new();
        let out = child.stdout.take().unwrap();
        std::io::BufRead::read_line(&mut std::io::BufReader::new(out), &mut line).unwrap();
        assert_eq!(line.trim(), "ready", "{name}'s services in {ns}");
        self.0.push(child);
    }
}

impl Drop for Services {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A process of someone else's holding UDP ports in a namespace (the hub's center), until it is
/// dropped (also when the test fails).
struct PortsHeld(std::process::Child);

impl PortsHeld {
    /// UDP PORTS held in NS, once the last is bound (they are bound in order).
    fn in_ns(ns: &str, ports: std::ops::RangeInclusive<u16>) -> PortsHeld {
        let (first, last) = (*ports.start(), *ports.end());
        let code = format!(
            "import socket, time\n\
             held = []\n\
             for port in range({first}, {last} + 1):\n\
             \x20   s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
             \x20   s.bind(('0.0.0.0', port))\n\
             \x20   held.append(s)\n\
             time.sleep(600)\n"
        );
        let child = Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", &code])
            .spawn()
            .expect("python3");
        let held = PortsHeld(child);
        wait_until(
            &format!("a foreign process holds UDP ports {first}..={last} in {ns}"),
            Duration::from_secs(10),
            || udp_bound(ns, last),
        );
        held
    }
}

impl Drop for PortsHeld {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// What PROBE in NS got from each of ADDRS.
fn probe(ns: &str, addrs: &[String]) -> serde_json::Map<String, Value> {
    let mut args = vec!["netns", "exec", ns, "python3", "-c", PROBE];
    args.extend(addrs.iter().map(String::as_str));
    let out = run("ip", &args).ok().stdout;
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("probe: {e}: {out}"))
}

/// HUB_MODE=zones, after the forwards of NAMES were probed and each device pinged the server:
/// conntrack holds each device's connections in its own zone (its port), in both directions
/// (what the center opened to its forwards: the reply direction; what the device opened: both),
/// and the center's base chains hold only natctl's dispatch rules, however many peers (a
/// packet's cost does not grow with the fleet: every peer's rules are in chains of their own).
fn assert_zones_kept_apart(hub: &HubLab, names: &[&str]) {
    for n in names {
        assert!(ping(&hub.client_ns(n), SERVER, 1), "{n} reaches the server");
    }
    let ct = nsh(&hub.ns, "conntrack -L 2>/dev/null").ok().stdout;
    for n in names {
        let st = hub.peer_status(n);
        let (addr, port) = (st["address"].as_str().unwrap(), &st["listen_port"]);
        let forward = ct.lines().any(|l| {
            l.contains(&format!("dst={addr} "))
                && l.contains("dport=22 ")
                && l.contains(&format!("src={CLIENT_ADDR} "))
                && l.contains(&format!("zone-reply={port} "))
        });
        assert!(forward, "{n}'s forward tcp/22 in zone {port} (reply): {ct}");
        let own = ct.lines().any(|l| {
            l.starts_with("icmp")
                && l.contains(&format!("src={CLIENT_ADDR} dst={SERVER} "))
                && l.contains(&format!("dst={addr} "))
                && l.contains(&format!("zone={port} "))
        });
        assert!(own, "{n}'s ping in zone {port} (both directions): {ct}");
    }
    // (no rule of a peer's own: the center's rules, the dispatch rules and those over the hub's
    // sets, whatever the number of peers; the peers are elements)
    let table = nsh(&hub.ns, "nft -j list table inet natctl").ok().stdout;
    let v: Value = serde_json::from_str(&table).unwrap();
    let rules: Vec<&Value> = v["nftables"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|o| o.get("rule"))
        .collect();
    let ours = |r: &Value| {
        let comment = r["comment"].as_str().unwrap_or("");
        comment.starts_with("natctl dispatch by ") || comment.contains(" @")
    };
    assert!(
        rules.iter().all(|r| ours(r)),
        "only dispatch rules and rules over sets in the center with {} peers: {rules:?}",
        names.len()
    );
    let wgs: Vec<String> = names.iter().map(|n| hub.peer_wg(n)).collect();
    assert!(
        !rules.iter().any(|r| wgs
            .iter()
            .any(|wg| r["comment"].as_str().unwrap_or("").contains(wg.as_str()))),
        "no rule names a peer's tunnel"
    );
}

/// The source address a device sees on a connection the center itself opens to its forward at
/// ADDR, when the center's own address is FROM: in HUB_MODE=zones the peer's internal address
/// ADDR is the center's own (the route to it is local, so the kernel picks it as the source).
fn center_source(hub: &HubLab, addr: &str, from: &str) -> String {
    if hub.zones {
        addr.to_string()
    } else {
        from.to_string()
    }
}

/// Whether PEER's device may reach PORT by a filter of its own (netns), or (zones) by its
/// element of the set of an accept of that port.
fn allows_port(hub: &HubLab, peer: &str, port: &str) -> bool {
    if !hub.zones {
        return hub.nat_rules(peer).iter().any(|r| r["dport"] == port);
    }
    let natctl = bin_dir().join("natctl");
    let list = run(natctl.to_str().unwrap(), &["--ns", &hub.ns, "list"])
        .ok()
        .json();
    let sets: Vec<&str> = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "filter" && r["dport"] == port)
        .filter_map(|r| r["iif"].as_str()?.strip_prefix('@'))
        .collect();
    hub.nat_rules(peer)
        .iter()
        .any(|e| sets.iter().any(|s| e["set"] == *s))
}

/// ADDR's elements of the center's forward sets (HUB_MODE=zones: the peer's forwards, each a
/// DNAT over the set of the addresses that have it), deleted behind the hub's back.
fn delete_center_dnats(hub: &HubLab, addr: &str) {
    let natctl = bin_dir().join("natctl");
    let list = run(natctl.to_str().unwrap(), &["--ns", &hub.ns, "list"])
        .ok()
        .json();
    let sets: std::collections::BTreeSet<&str> = list["rules"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|r| r["kind"] == "dnat" && (r["family"] == "inet6") == addr.contains(':'))
        .filter_map(|r| r["daddr"].as_str()?.strip_prefix('@'))
        .collect();
    assert!(!sets.is_empty(), "no dnat over a set in the center: {list}");
    for set in sets {
        run(
            natctl.to_str().unwrap(),
            &["--ns", &hub.ns, "element", "del", set, addr],
        )
        .ok();
    }
}

/// Each peer of NAMES, probed from the center at its internal address (all at once), answers
/// with its own device's name, the mapped port, and the server's own address as the source.
fn assert_forwards_map(hub: &HubLab, names: &[&str], what: &str) {
    assert_forwards_map_at(hub, names, "address", SERVER, what);
}

/// `assert_forwards_map` at the peers' KEY (`address`, `address6`) from the center's address
/// FROM.
fn assert_forwards_map_at(hub: &HubLab, names: &[&str], key: &str, from: &str, what: &str) {
    let addrs: Vec<String> = names
        .iter()
        .map(|n| hub.peer_status(n)[key].as_str().unwrap().to_string())
        .collect();
    let got = probe(&hub.ns, &addrs);
    for (n, a) in names.iter().zip(&addrs) {
        let from = center_source(hub, a, from);
        let want = [
            format!("{n} 22 {from}"),
            format!("{n} 80 {from}"),
            format!("{n} 161 {from}"),
        ];
        assert_eq!(
            got[a.as_str()],
            serde_json::json!(want),
            "{what}: {n} at {a}"
        );
    }
}

/// Forwards into 20 devices that all sit at 192.168.1.10: the center reaches each through its
/// peer's internal address, exactly that device, with its own source address; again after
/// churn, a repair and a rekey. No device reaches another (bridge port isolation) unless
/// HUB_ISOLATE=no; an allow list holds and what it refuses is counted.
#[test]
fn forwards_reach_each_device_and_devices_reach_only_what_they_may() {
    let mut hub = HubLab::new().with_env(&["HUB_FORWARDS=tcp/22 udp/161"]);
    hub.hub(&["-q", "up"]).ok();
    let names: Vec<String> = (1..=20).map(|i| format!("d{i:02}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let mut add = vec!["-q", "peer", "add"];
    add.extend(&refs);
    hub.hub(&add).ok();
    // (a peer's own forward beside the hub's: 8080 on the internal address, 80 on the device)
    for n in &refs {
        hub.hub(&["-q", "peer", "set", n, "--forward", "tcp/8080=80"])
            .ok();
    }
    let mut services = Services(Vec::new());
    for n in &refs {
        hub.client(n);
        services.start(&hub.client_ns(n), n, "22,80", "161");
    }
    hub.assert_healthy("20 peers with forwards");
    let d01 = hub.peer_status("d01");
    assert_eq!(
        d01["forwards"],
        serde_json::json!(["tcp/22", "tcp/8080=80", "udp/161"])
    );
    assert_eq!(d01["allow"], serde_json::json!(["100.64.0.0/24"]));
    assert_forwards_map(&hub, &refs, "20 devices at once");
    if hub.zones {
        assert_zones_kept_apart(&hub, &refs);
    }

    // Isolation: a device reaches the server, not another device's address nor its forwards.
    let d02 = hub.peer_status("d02")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let from_d01 = probe(&hub.client_ns("d01"), std::slice::from_ref(&d02));
    assert!(
        from_d01[&d02]
            .as_array()
            .unwrap()
            .iter()
            .all(|r| r.as_str().unwrap().starts_with("ERR")),
        "d01 reached d02: {from_d01:?}"
    );
    assert!(!ping(&hub.client_ns("d01"), &d02, 2), "d01 pinged d02");
    assert!(
        ping(&hub.client_ns("d01"), SERVER, 2),
        "d01 reaches the server"
    );
    if !hub.zones {
        let isolated = sh(&format!(
            "ip -n {p}hub.switch -d -j link show {p}d01-br",
            p = hub.lab.prefix
        ))
        .ok()
        .stdout;
        assert!(isolated.contains("\"isolated\":true"), "{isolated}");
    }

    // Churn of other peers, a broken peer repaired by `up`, a rekeyed peer: the map holds.
    hub.hub(&["-q", "peer", "add", "x1", "x2"]).ok();
    hub.hub(&["-q", "peer", "del", "x1", "d20"]).ok();
    hub.remove_client("d20");
    if hub.zones {
        let d05 = hub.peer_status("d05")["address"]
            .as_str()
            .unwrap()
            .to_string();
        delete_center_dnats(&hub, &d05);
    } else {
        nsh(&hub.peer_ns("d05"), "nft flush table inet natctl").ok();
    }
    let (check, healthy) = hub.check();
    assert!(!healthy);
    assert_mentions(
        &problems_of(&check, "d05"),
        "no forward tcp/22",
        "d05 check",
    );
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "rekey", "d06"]).ok();
    // (the device takes its new config: the hub's new public key)
    let conf = hub.hub(&["-q", "peer", "conf", "d06"]).ok().stdout;
    let bin = format!("NIRANSIX_BIN_DIR={}", bin_dir().display());
    let (cns, cwg) = (hub.client_ns("d06"), hub.client_wg("d06"));
    let args = [bin.as_str(), &script("client"), "up", &cns, &cwg];
    run_stdin("env", &args, Some(&conf)).ok();
    hub.assert_healthy("after churn, repair and rekey");
    assert_forwards_map(&hub, &refs[..19], "after churn, repair and rekey");

    // HUB_ISOLATE=no: `up` turns isolation off, and d01 reaches d02's forwards (from its own
    // internal address, the one its traffic is NATed to).
    if hub.zones {
        netns_only_part(
            "forwards_reach_each_device_and_devices_reach_only_what_they_may",
            "devices never reach each other in zones mode (their addresses are the center's own): \
             HUB_ISOLATE=no is refused (exit 2) and changes nothing",
        );
        let before = hub.settled();
        hub.hub_env(&["HUB_ISOLATE=no"], &["-q", "up"])
            .fails(2, "HUB_ISOLATE 'no' needs HUB_MODE=netns");
        assert_eq!(hub.settled(), before, "the refused up changed nothing");
        drop(services);
        for n in &refs[..19] {
            hub.remove_client(n);
        }
        return;
    }
    hub = hub.with_env(&["HUB_ISOLATE=no"]);
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("HUB_ISOLATE=no");
    let d01_addr = hub.peer_status("d01")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let from_d01 = probe(&hub.client_ns("d01"), std::slice::from_ref(&d02));
    assert_eq!(
        from_d01[&d02],
        serde_json::json!([
            format!("d02 22 {d01_addr}"),
            format!("d02 80 {d01_addr}"),
            format!("d02 161 {d01_addr}")
        ]),
        "d01 reaches d02 once not isolated"
    );
    drop(services);
    for n in &refs[..19] {
        hub.remove_client(n);
    }
}

/// IPv6 forwards (HUB_CIDR6): the peer's v6 address leads to the device's HUB_CLIENT_ADDRESS6.
/// Adding a forward to a running peer does not interrupt its traffic; `sync` takes forwards and
/// allow lists, and a second identical `sync` changes nothing.
#[test]
fn forwards_over_ipv6_in_place_and_through_sync() {
    let mut hub = HubLab::new().with_env(&[
        "HUB_FORWARDS=tcp/22 tcp/8080=80 udp/161",
        "HUB_CIDR6=fd64::/64",
    ]);
    hub.hub(&["-q", "up"]).ok();
    let names = ["v1", "v2", "v3"];
    hub.hub(&["-q", "peer", "add", "v1", "v2", "v3"]).ok();
    let mut services = Services(Vec::new());
    for n in names {
        hub.client(n);
        services.start(&hub.client_ns(n), n, "22,80", "161");
    }
    hub.assert_healthy("forwards with IPv6");
    assert_forwards_map_at(&hub, &names, "address6", "fd64::a", "over IPv6");
    assert_forwards_map(&hub, &names, "over IPv4 beside it");

    // A forward added to a running peer: its device's traffic goes on without a loss.
    let pinger = Command::new("ip")
        .args([
            "netns",
            "exec",
            &hub.client_ns("v1"),
            "ping",
            "-c",
            "40",
            "-i",
            "0.05",
            "-W",
            "1",
            SERVER,
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("ping");
    std::thread::sleep(Duration::from_millis(500));
    hub.hub(&["-q", "peer", "set", "v1", "--forward", "tcp/9000=22"])
        .ok();
    let out = pinger.wait_with_output().unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("40 packets transmitted, 40 received"),
        "{text}"
    );
    let v1 = hub.peer_status("v1")["address"]
        .as_str()
        .unwrap()
        .to_string();
    let got = probe(&hub.ns, &[format!("{v1}@9000")]);
    assert_eq!(
        got[&format!("{v1}@9000")][1],
        format!("v1 22 {}", center_source(&hub, &v1, SERVER)),
        "tcp/9000=22"
    );

    // sync: the peers' own forwards and allow lists, then the same set again changes nothing.
    let set = "{\"name\":\"v1\",\"forwards\":[\"tcp/9000=22\"]}\n\
               {\"name\":\"v2\",\"allow\":[\"100.64.0.10/32\",\"fd64::a/128,tcp/22\"]}\n\
               {\"name\":\"v3\"}\n";
    let first = hub.hub_stdin(&["-q", "sync", "-"], set).ok();
    assert!(first.changed(), "{}", first.stdout);
    assert!(
        !hub.hub_stdin(&["-q", "sync", "-"], set).ok().changed(),
        "sync twice"
    );
    assert_eq!(
        hub.peer_status("v2")["allow"],
        serde_json::json!(["100.64.0.10/32", "fd64::a/128,tcp/22"])
    );
    assert!(
        ping(&hub.client_ns("v2"), SERVER, 1),
        "v2 reaches the server"
    );
    assert!(
        !ping(&hub.client_ns("v2"), "fd64::a", 1),
        "v2 must not ping the server over IPv6"
    );
    assert!(hub.peer_status("v2")["denied_packets"].as_u64().unwrap() >= 1);
    hub.assert_healthy("after sync");
    assert_forwards_map(&hub, &names, "after sync");
    // The center's ruleset as `nft list ruleset` saves it loads back (`nft -c`: the kernel
    // checks the whole of it and keeps nothing), the hub's sets and maps included.
    let reload = nsh(&hub.ns, "nft list ruleset | nft -c -f -");
    assert_eq!(reload.code, 0, "{}", reload.stderr);
    drop(services);
    for n in names {
        hub.remove_client(n);
    }
}

/// An allow list holds in both modes: a2 may reach the server's tcp/5555 only (the center itself:
/// in zones mode its local traffic, filtered apart); what it sends otherwise is dropped and
/// counted; a3 is untouched; taken away, its rule goes. And a device never reaches another's
/// address.
#[test]
fn allow_lists_hold_and_refusals_are_counted() {
    let mut hub = HubLab::new();
    hub.hub(&["-q", "up"]).ok();
    hub.hub(&["-q", "peer", "add", "a1", "a2", "a3"]).ok();
    let mut services = Services(Vec::new());
    for n in ["a1", "a2", "a3"] {
        hub.client(n);
    }
    let a2_addr = hub.peer_status("a2")["address"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        !ping(&hub.client_ns("a1"), &a2_addr, 2),
        "a1 pinged a2's address"
    );
    assert!(
        ping(&hub.client_ns("a1"), SERVER, 1),
        "a1 reaches the server"
    );
    // An allow list: a2 may reach the server's tcp/5555 only; what it sends otherwise is
    // dropped and counted; a3 is untouched.
    services.start(&hub.ns, "server", "5555,5556", "");
    hub.hub(&[
        "-q",
        "peer",
        "set",
        "a2",
        "--allow",
        &format!("{SERVER}/32,tcp/5555"),
    ])
    .ok();
    let a2 = hub.client_ns("a2");
    let tcp = |ns: &str, port: u16| {
        nsh(ns, &format!("nc -w 3 -N {SERVER} {port} </dev/null"))
            .stdout
            .trim()
            .to_string()
    };
    assert!(
        tcp(&a2, 5555).starts_with("server 5555"),
        "a2 reaches tcp/5555"
    );
    assert_eq!(tcp(&a2, 5556), "", "a2 must not reach tcp/5556");
    assert!(!ping(&a2, SERVER, 2), "a2 must not ping the server");
    assert!(ping(&hub.client_ns("a3"), SERVER, 1), "a3 untouched");
    let denied = hub.peer_status("a2")["denied_packets"].as_u64().unwrap();
    assert!(denied >= 3, "a2's refused packets counted: {denied}");
    assert_eq!(hub.peer_status("a3")["denied_packets"], 0);
    let metrics = hub.hub(&["metrics"]).ok().stdout;
    assert!(
        metrics
            .lines()
            .any(|l| l.starts_with("niransix_hub_peer_denied_packets_total{")
                && l.contains("peer=\"a2\"")
                && l.ends_with(&format!(" {denied}"))),
        "{metrics}"
    );
    hub.assert_healthy("a2 with an allow list");
    // export: the set as sync takes it; fed back, it changes nothing
    let export = hub.hub(&["export"]).ok();
    let lines = export.json_lines();
    assert_eq!(
        peer_names(&serde_json::json!({"peers": lines})),
        ["a1", "a2", "a3"]
    );
    assert_eq!(
        lines[1]["allow"],
        serde_json::json!([format!("{SERVER}/32,tcp/5555")])
    );
    assert_eq!(lines[1]["address"], a2_addr.as_str());
    assert!(
        !hub.hub_stdin(&["-q", "sync", "-"], &export.stdout)
            .ok()
            .changed(),
        "export | sync - changes nothing: {}",
        export.stdout
    );
    // the list taken away: its rule goes, the device reaches the whole network again
    hub.hub(&["-q", "peer", "set", "a2", "--allow", "none"])
        .ok();
    assert!(ping(&a2, SERVER, 2), "a2 pings the server again");
    assert!(
        !allows_port(&hub, "a2", "5555"),
        "the tcp/5555 accept is gone"
    );
    hub.assert_healthy("a2's allow list taken away");

    // HUB_ALLOW for every device (a port), plus a3's own entry (a whole host, no port): `up`
    // puts it in force.
    hub.hub(&[
        "-q",
        "peer",
        "set",
        "a3",
        "--allow",
        &format!("{SERVER}/32"),
    ])
    .ok();
    hub = hub.with_env(&[&format!("HUB_ALLOW={SERVER}/32,tcp/5556")]);
    hub.hub(&["-q", "up"]).ok();
    hub.assert_healthy("HUB_ALLOW");
    let a1 = hub.client_ns("a1");
    assert!(
        tcp(&a1, 5556).starts_with("server 5556"),
        "a1 reaches tcp/5556"
    );
    assert_eq!(tcp(&a1, 5555), "", "a1 must not reach tcp/5555");
    assert!(!ping(&a1, SERVER, 1), "a1 must not ping the server");
    assert!(
        ping(&hub.client_ns("a3"), SERVER, 1),
        "a3's own entry adds the host"
    );
    assert_eq!(
        hub.peer_status("a3")["allow"],
        serde_json::json!([format!("{SERVER}/32"), format!("{SERVER}/32,tcp/5556")])
    );

    drop(services);
    for n in ["a1", "a2", "a3"] {
        hub.remove_client(n);
    }
}

/// `peer conf --all`: every peer's config in one JSON object, each what `peer conf NAME`
/// prints, `private_key` false for a client that brought its own key; no peer: none, and no
/// endpoint needed; a NAME, --qr or a missing key file is refused and prints no config.
#[test]
fn peer_conf_all_is_every_config_at_once() {
    let hub = HubLab::new().with_env(&["HUB_ENDPOINT=192.0.2.1"]);
    hub.hub(&["-q", "up"]).ok();
    let none = hub.hub(&["-q", "peer", "conf", "--all"]).ok().json();
    assert_eq!(none, json!({"changed": false, "peers": []}));
    let own = sh("wg genkey | wg pubkey").ok().stdout.trim().to_string();
    hub.add("a2", &["--preshared-key", "generate"]);
    hub.add("a1", &[]);
    hub.add("b1", &["--public-key", &own]);
    let all = hub.hub(&["-q", "peer", "conf", "--all"]).ok().json();
    let peers = all["peers"].as_array().expect("peers");
    let names: Vec<&str> = peers.iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["a1", "a2", "b1"], "in name order");
    for p in peers {
        let name = p["name"].as_str().unwrap();
        assert_eq!(
            p["conf"].as_str().unwrap(),
            hub.conf(name),
            "{name}'s config is what `peer conf {name}` prints"
        );
        assert_eq!(p["private_key"], json!(name != "b1"), "{name}");
    }
    assert!(peers[1]["conf"]
        .as_str()
        .unwrap()
        .contains("PresharedKey = "));
    hub.hub(&["peer", "conf", "--all", "a1"])
        .fails(2, "peer conf --all takes no NAME, got 'a1'");
    hub.hub(&["peer", "conf", "--all", "--qr"])
        .fails(2, "--qr does not go with 'peer conf --all'");
    let key = hub.state.join("peers/a2.client.key");
    std::fs::remove_file(&key).unwrap();
    let r = hub
        .hub(&["peer", "conf", "--all"])
        .fails(1, "a2.client.key is missing or empty");
    assert_eq!(r.stdout, "", "no partial output");
}
