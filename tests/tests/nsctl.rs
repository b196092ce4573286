//! nsctl against the real kernel: namespaces, veths, bridges, links, addresses, sysctls, batch
//! mode. Every claim nsctl makes in JSON is checked with `ip -j`, pings or /proc.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use niransix_tests::*;
use serde::Deserialize;
use serde_json::Value;

fn nsctl(args: &[&str]) -> Run {
    tool("nsctl", args)
}

/// `nsctl` with its arguments written as one line, split on white space.
fn nsctl_line(cmd: &str) -> Run {
    nsctl(&cmd.split_whitespace().collect::<Vec<_>>())
}

// The output schema of the listing commands (CLI.md); unknown fields fail the parse.

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetnsList {
    changed: bool,
    netns: Vec<NetnsEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct NetnsEntry {
    name: String,
    path: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkList {
    changed: bool,
    links: Vec<LinkEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkEntry {
    name: String,
    netns: Option<String>,
    index: u32,
    kind: Option<String>,
    state: String,
    operstate: Option<String>,
    carrier: bool,
    ipv6: Option<bool>,
    master: Option<String>,
    isolated: Option<bool>,
    mtu: u32,
    address: Option<String>,
    peer: Option<String>,
    peer_netns: Option<String>,
    addresses: Vec<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddrList {
    changed: bool,
    addresses: Vec<AddrEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct AddrEntry {
    cidr: String,
    dev: String,
    family: String,
    netns: Option<String>,
    scope: Value,
    flags: Vec<String>,
    valid_life_time: Option<u64>,
    preferred_life_time: Option<u64>,
    peer: Option<String>,
    label: Option<String>,
}

fn netns_list() -> NetnsList {
    let r = nsctl(&["netns", "list"]).ok();
    serde_json::from_str(r.stdout.trim()).expect("netns list matches the schema")
}

fn link_list(ns: &str) -> LinkList {
    let r = nsctl(&["--ns", ns, "link", "list"]).ok();
    let l: LinkList = serde_json::from_str(r.stdout.trim()).expect("link list matches the schema");
    assert!(!l.changed, "listing never changes anything");
    l
}

fn addr_list(ns: &str) -> AddrList {
    let r = nsctl(&["--ns", ns, "addr", "list"]).ok();
    let l: AddrList = serde_json::from_str(r.stdout.trim()).expect("addr list matches the schema");
    assert!(!l.changed, "listing never changes anything");
    l
}

/// The name `ip -n NS netns list-id` gives namespace id `nsid` (as seen from NS), if any.
fn nsid_name(ns: &str, nsid: &Value) -> Option<String> {
    let ids = ip_json(Some(ns), &["netns", "list-id"]);
    ids.as_array()
        .unwrap()
        .iter()
        .find(|i| &i["nsid"] == nsid)
        .and_then(|i| i["name"].as_str().map(str::to_string))
}

/// True if this test runs in PID 1's network namespace (the host's), where nsctl names the
/// peers it finds (`peer_netns` null: that namespace has no /run/netns name).
fn host_is_here() -> bool {
    let ns = |p: &str| std::fs::read_link(p).ok();
    ns("/proc/1/ns/net").is_some() && ns("/proc/1/ns/net") == ns("/proc/self/ns/net")
}

/// The name of the veth at the other end of `ip -j` link `t`, looked up in namespace `there`
/// (None: the test's own) by `link_index`, pointing back at `t`.
fn peer_at(there: Option<&str>, t: &Value) -> Option<String> {
    let links = ip_json(there, &["link", "show"]);
    let p = links
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["ifindex"] == t["link_index"] && p["link_index"] == t["ifindex"]);
    p.map(|p| p["ifname"].as_str().unwrap().to_string())
}

/// `nsctl link list` agrees with `ip -j -d link` and `ip -j addr` on every field, for every link.
fn assert_links_match_ip(ns: &str) {
    let ours = link_list(ns);
    let links = ip_json(Some(ns), &["-d", "link", "show"]);
    let addrs = ip_json(Some(ns), &["addr", "show"]);
    let theirs = links.as_array().unwrap();
    assert_eq!(ours.links.len(), theirs.len(), "{ns}: link count: {ours:?}");
    for l in &ours.links {
        let t = theirs
            .iter()
            .find(|t| t["ifname"] == l.name.as_str())
            .unwrap_or_else(|| panic!("{ns}: ip does not know {}", l.name));
        assert_eq!(t["ifindex"], l.index, "{ns} {}: index", l.name);
        assert_eq!(t["mtu"], l.mtu, "{ns} {}: mtu", l.name);
        assert_eq!(
            t["address"].as_str(),
            l.address.as_deref(),
            "{ns} {}: MAC",
            l.name
        );
        assert_eq!(
            t["linkinfo"]["info_kind"].as_str(),
            l.kind.as_deref(),
            "{ns} {}: kind",
            l.name
        );
        assert_eq!(
            t["master"].as_str(),
            l.master.as_deref(),
            "{ns} {}: master",
            l.name
        );
        // A bridge port's isolation (`ip -d`: info_slave_data.isolated); null for the rest.
        let isolated = match &t["linkinfo"]["info_slave_kind"] {
            k if k == "bridge" => t["linkinfo"]["info_slave_data"]["isolated"].as_bool(),
            _ => None,
        };
        assert_eq!(l.isolated, isolated, "{ns} {}: isolated", l.name);
        let flag = |name: &str| t["flags"].as_array().unwrap().iter().any(|f| f == name);
        assert_eq!(
            l.state,
            if flag("UP") { "up" } else { "down" },
            "{ns} {}: state",
            l.name
        );
        assert_eq!(l.netns.as_deref(), Some(ns), "{} netns", l.name);
        assert_eq!(
            l.operstate.as_deref().map(str::to_uppercase).as_deref(),
            t["operstate"].as_str(),
            "{ns} {}: operstate",
            l.name
        );
        // ip shows carrier as LOWER_UP, which the kernel reports only for a running link.
        if flag("UP") {
            assert_eq!(l.carrier, flag("LOWER_UP"), "{ns} {}: carrier", l.name);
        }
        // IPv6 on or off: the link's disable_ipv6 (no file: the kernel has no IPv6 for it).
        let key = format!("/proc/sys/net/ipv6/conf/{}/disable_ipv6", l.name);
        let disabled = nsh(ns, &format!("cat {key} 2>/dev/null || true"))
            .ok()
            .stdout;
        let ipv6 = match disabled.trim() {
            "" => None,
            v => Some(v == "0"),
        };
        assert_eq!(l.ipv6, ipv6, "{ns} {}: ipv6 ({key})", l.name);
        // The veth peer: `link` (same namespace), or `link_index` in the namespace that
        // `link_netnsid` names (`ip netns list-id`), or nothing for other kinds.
        let (peer, peer_netns) = match (&t["linkinfo"]["info_kind"], &t["link_netnsid"]) {
            (k, Value::Null) if k == "veth" => {
                (t["link"].as_str().map(str::to_string), Some(ns.to_string()))
            }
            (k, nsid) if k == "veth" => match nsid_name(ns, nsid) {
                Some(there) => (peer_at(Some(&there), t), Some(there)),
                // No name: where the test runs is the host's namespace (PID 1's), and a peer
                // there is named, with peer_netns null; anywhere else it is unknowable.
                None if host_is_here() => (peer_at(None, t), None),
                None => (None, None),
            },
            _ => (None, None),
        };
        assert_eq!(l.peer, peer, "{ns} {}: peer", l.name);
        assert_eq!(l.peer_netns, peer_netns, "{ns} {}: peer_netns", l.name);
        let a = addrs
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["ifname"] == l.name.as_str())
            .unwrap();
        let want: BTreeSet<String> = a["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
            .collect();
        let got: BTreeSet<String> = l.addresses.iter().cloned().collect();
        assert_eq!(got, want, "{ns} {}: addresses", l.name);
    }
}

/// `nsctl addr list` agrees with `ip -j addr` on every address: device, family, scope, flags and
/// lifetimes (ip, read second, may be a second further down a finite lifetime).
fn assert_addresses_match_ip(ns: &str) {
    let ours = addr_list(ns);
    let theirs = ip_json(Some(ns), &["addr", "show"]);
    let mut count = 0;
    for link in theirs.as_array().unwrap() {
        for t in link["addr_info"].as_array().unwrap() {
            count += 1;
            let cidr = format!("{}/{}", t["local"].as_str().unwrap(), t["prefixlen"]);
            let dev = link["ifname"].as_str().unwrap();
            let peer = t["address"].as_str();
            let a = ours
                .addresses
                .iter()
                .find(|a| a.cidr == cidr && a.dev == dev && a.peer.as_deref() == peer)
                .unwrap_or_else(|| panic!("{ns}: nsctl does not list {cidr} on {dev}: {ours:?}"));
            assert_eq!(a.label.as_deref(), t["label"].as_str(), "{cidr}: label");
            assert_eq!(a.netns.as_deref(), Some(ns));
            assert_eq!(t["family"], a.family.as_str(), "{cidr}: family");
            // A scope without a name is a number in our JSON, its decimal string in ip's.
            let scope = match &a.scope {
                Value::Number(n) => n.to_string(),
                other => other
                    .as_str()
                    .expect("scope is a name or a number")
                    .to_string(),
            };
            assert_eq!(t["scope"], scope.as_str(), "{cidr}: scope");
            let ip_flags: BTreeSet<&str> = t
                .as_object()
                .unwrap()
                .iter()
                .filter(|(k, v)| **v == Value::Bool(true) && *k != "dynamic")
                .map(|(k, _)| k.as_str())
                .collect();
            let our_flags: BTreeSet<&str> = a
                .flags
                .iter()
                .map(String::as_str)
                .filter(|f| *f != "permanent")
                .collect();
            assert_eq!(our_flags, ip_flags, "{cidr}: flags {:?} vs ip {t}", a.flags);
            assert_eq!(
                a.flags.iter().any(|f| f == "permanent"),
                t["dynamic"] != true,
                "{cidr}: ip says dynamic where permanent is absent: {t}"
            );
            for key in ["valid_life_time", "preferred_life_time"] {
                let mine = if key == "valid_life_time" {
                    a.valid_life_time
                } else {
                    a.preferred_life_time
                }
                .unwrap();
                let ip = t[key].as_u64().unwrap();
                assert!(
                    mine == ip || (mine >= ip && mine - ip <= 2 && mine != u64::from(u32::MAX)),
                    "{cidr}: {key} {mine} vs ip {ip}"
                );
            }
        }
    }
    assert_eq!(ours.addresses.len(), count, "{ns}: address count: {ours:?}");
}

/// Drops the lab (its cleanup runs) and proves nothing with its prefix is left.
fn finish(lab: Lab) {
    let prefix = lab.prefix.clone();
    drop(lab);
    let left = sh(&format!(
        "ip netns list | grep '^{prefix}'; ip -o link | awk -F': ' '{{print $2}}' | grep '^{prefix}'"
    ));
    assert!(
        left.stdout.trim().is_empty(),
        "left behind: {}",
        left.stdout
    );
}

/// assert_eq for two `state` strings, showing only the differing objects.
#[track_caller]
fn assert_same_state(left: &str, right: &str, what: &str) {
    if left == right {
        return;
    }
    let split = |s: &str| -> Vec<String> { s.split("},{").map(str::to_string).collect() };
    let (l, r) = (split(left), split(right));
    let only_l: Vec<&String> = l.iter().filter(|x| !r.contains(x)).collect();
    let only_r: Vec<&String> = r.iter().filter(|x| !l.contains(x)).collect();
    panic!("{what}\n--- before:\n{only_l:#?}\n+++ after:\n{only_r:#?}");
}

/// Everything nsctl could change in these namespaces, as one string: the kit's `snapshot`
/// (which reads a missing namespace as `absent`) and `net.ipv4.ip_forward`.
fn state(nses: &[&str]) -> String {
    let mut out = String::new();
    for ns in nses {
        let fwd = run(
            "ip",
            &["netns", "exec", ns, "cat", "/proc/sys/net/ipv4/ip_forward"],
        )
        .stdout;
        out.push_str(&format!("{ns}: {}ip_forward {fwd}\n", snapshot(Some(ns))));
    }
    out
}

/// `state`, once the kernel's own asynchronous updates (addrconf, bridge ports) have settled.
#[track_caller]
fn settled_state(nses: &[&str]) -> String {
    wait_stable(
        &format!("the state of {nses:?}"),
        Duration::from_secs(20),
        Duration::from_millis(300),
        || state(nses),
    )
}

/// Namespaces whose IPv6 addresses are usable at once (no DAD), with lo up.
fn quiet_ns(lab: &Lab, suffix: &str) -> String {
    let ns = lab.name(suffix);
    nsctl(&["netns", "add", &ns]).ok();
    nsctl(&["--ns", &ns, "link", "set", "lo", "--up"]).ok();
    for key in [
        "net.ipv6.conf.all.accept_dad=0",
        "net.ipv6.conf.default.accept_dad=0",
    ] {
        nsctl(&["--ns", &ns, "sysctl", key]).ok();
    }
    ns
}

#[test]
fn veth_pair_pings_over_ipv4_and_ipv6() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let b = quiet_ns(&lab, "b");
    let r = nsctl_line(&format!(
        "--ns {a} veth add va --peer vb --peer-ns {b} --up"
    ))
    .ok();
    let j = r.json();
    assert_eq!(j["changed"], true);
    assert_eq!(j["veth"]["peer_netns"], b.as_str());
    for (ns, dev, v4, v6) in [
        (&a, "va", "10.71.0.1/24", "fd71::1/64"),
        (&b, "vb", "10.71.0.2/24", "fd71::2/64"),
    ] {
        assert!(nsctl(&["--ns", ns, "addr", "add", v4, "--dev", dev])
            .ok()
            .changed());
        assert!(
            nsctl(&["--ns", ns, "addr", "add", v6, "--dev", dev, "--nodad"])
                .ok()
                .changed()
        );
    }
    assert!(ping(&a, "10.71.0.2", 2), "IPv4 ping a -> b");
    assert!(ping(&b, "10.71.0.1", 2), "IPv4 ping b -> a");
    assert!(ping(&a, "fd71::2", 2), "IPv6 ping a -> b");
    assert!(ping(&b, "fd71::1", 2), "IPv6 ping b -> a");

    // The peer really is in b, both ends up, and nsctl's listing says exactly what ip says.
    let vb = &ip_json(Some(&b), &["-d", "link", "show", "vb"])[0];
    assert_eq!(vb["linkinfo"]["info_kind"], "veth");
    assert!(vb["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let l = link_list(&b);
    let e = l.links.iter().find(|l| l.name == "vb").unwrap();
    assert!(
        e.addresses.contains(&"10.71.0.2/24".to_string())
            && e.addresses.contains(&"fd71::2/64".to_string())
    );
    assert_links_match_ip(&a);
    assert_links_match_ip(&b);

    // addr list, one device and all.
    let r = nsctl(&["--ns", &a, "addr", "list", "--dev", "va"])
        .ok()
        .json();
    let cidrs: Vec<&str> = r["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x["cidr"].as_str().unwrap())
        .collect();
    assert!(
        cidrs.contains(&"10.71.0.1/24") && cidrs.contains(&"fd71::1/64"),
        "{r}"
    );
    assert!(r["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .all(|x| x["dev"] == "va"));
    finish(lab);
}

#[test]
fn three_namespaces_on_a_bridge_ping_across() {
    let lab = Lab::new();
    let hub = quiet_ns(&lab, "hub");
    let r = nsctl(&["--ns", &hub, "bridge", "add", "br0", "--up"]).ok();
    assert_eq!(r.json()["bridge"]["state"], "up");
    let mut clients = vec![];
    for i in 1..=3 {
        let c = quiet_ns(&lab, &format!("c{i}"));
        let port = format!("p{i}");
        if i == 3 {
            // The third one from the client's side: its peer enslaved in the hub.
            nsctl_line(&format!(
                "--ns {c} veth add e0 --peer {port} --peer-ns {hub} --peer-master br0 --up"
            ))
            .ok();
        } else {
            nsctl_line(&format!(
                "--ns {hub} veth add {port} --peer e0 --peer-ns {c} --master br0 --up"
            ))
            .ok();
        }
        nsctl_line(&format!("--ns {c} addr add 10.72.0.{i}/24 --dev e0")).ok();
        nsctl_line(&format!("--ns {c} addr add fd72::{i}/64 --dev e0 --nodad")).ok();
        clients.push(c);
    }
    let ports: Vec<String> = link_list(&hub)
        .links
        .into_iter()
        .filter(|l| l.master.as_deref() == Some("br0"))
        .map(|l| l.name)
        .collect();
    assert_eq!(ports, ["p1", "p2", "p3"]);
    assert_links_match_ip(&hub);
    assert!(ping(&clients[0], "10.72.0.2", 2));
    assert!(ping(&clients[0], "10.72.0.3", 2));
    assert!(ping(&clients[2], "10.72.0.1", 2));
    assert!(ping(&clients[1], "fd72::3", 2));
    finish(lab);
}

#[test]
fn namespaces_are_shared_with_ip_netns_both_ways() {
    let lab = Lab::new();
    let ours = lab.name("ours");
    let r = nsctl(&["netns", "add", &ours]).ok().json();
    assert_eq!(r["changed"], true);
    assert_eq!(r["netns"]["path"], format!("/run/netns/{ours}"));
    assert!(run("ip", &["netns", "list"])
        .stdout
        .lines()
        .any(|l| l.split_whitespace().next() == Some(ours.as_str())));
    let inside = run("ip", &["netns", "exec", &ours, "ip", "-j", "link"]).ok();
    assert_eq!(
        serde_json::from_str::<Value>(&inside.stdout)
            .unwrap()
            .as_array()
            .unwrap()
            .len(),
        1,
        "only lo"
    );

    let theirs = lab.netns("theirs");
    let list = netns_list();
    assert!(!list.changed);
    let e = list
        .netns
        .iter()
        .find(|e| e.name == theirs)
        .expect("ip's namespace listed");
    assert_eq!(e.path, format!("/run/netns/{theirs}"));
    assert!(list.netns.iter().any(|e| e.name == ours));

    // exec: the command's exit status, its stdout, the namespace's own /sys.
    assert_eq!(
        nsctl(&["exec", &theirs, "--", "sh", "-c", "exit 7"]).code,
        7
    );
    let r = nsctl(&["exec", &theirs, "--", "ls", "/sys/class/net"]).ok();
    assert_eq!(r.stdout.split_whitespace().collect::<Vec<_>>(), ["lo"]);
    nsctl(&["exec", &lab.name("missing"), "--", "true"]).fails(1, &lab.name("missing"));
    nsctl(&["exec", &ours, "--", "/nonexistent/cmd"]).fails(1, "/nonexistent/cmd");

    // del, twice.
    assert!(nsctl(&["netns", "del", &theirs]).ok().changed());
    assert!(!nsctl(&["netns", "del", &theirs]).ok().changed());
    assert!(!run("ip", &["netns", "list"]).stdout.contains(&theirs));
    finish(lab);
}

#[test]
fn netns_del_with_links_and_processes_inside() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let b = quiet_ns(&lab, "b");
    nsctl_line(&format!(
        "--ns {a} veth add x0 --peer x1 --peer-ns {b} --up"
    ))
    .ok();
    nsctl(&["--ns", &a, "bridge", "add", "br0", "--up"]).ok();
    let mut sleeper = std::process::Command::new("ip")
        .args(["netns", "exec", &a, "sleep", "30"])
        .spawn()
        .unwrap();
    wait_until(
        &format!("a process runs in {a}"),
        Duration::from_secs(10),
        || !run("ip", &["netns", "pids", &a]).stdout.trim().is_empty(),
    );
    assert!(nsctl(&["netns", "del", &a]).ok().changed());
    assert!(!run("ip", &["netns", "list"]).stdout.contains(&a));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // With a gone, the veth goes too: b's end disappears once the namespace is freed.
    wait_until(
        &format!("x1 is gone from {b} after its peer's namespace was deleted"),
        Duration::from_secs(5),
        || {
            ip_json(Some(&b), &["link", "show"])
                .as_array()
                .unwrap()
                .iter()
                .all(|l| l["ifname"] != "x1")
        },
    );
    assert!(!nsctl(&["netns", "del", &a]).ok().changed());
    finish(lab);
}

#[test]
fn sysctl_is_per_namespace() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let key = "net.ipv4.ip_forward";
    let root = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
        .unwrap()
        .trim()
        .to_string();
    let other = if root == "1" { "0" } else { "1" };
    let set = format!("{key}={other}");
    let check = nsctl(&["--check", "--ns", &a, "sysctl", &set]).ok().json();
    assert_eq!(check["changed"], true);
    assert_eq!(
        run("ip", &["netns", "exec", &a, "sysctl", "-n", key])
            .stdout
            .trim(),
        root,
        "--check changed nothing"
    );
    let real = nsctl(&["--ns", &a, "sysctl", &set]).ok().json();
    assert_eq!(real, check, "--check predicted the real run");
    assert_eq!(real["sysctl"]["previous"], root.as_str());
    assert_eq!(
        run("ip", &["netns", "exec", &a, "sysctl", "-n", key])
            .stdout
            .trim(),
        other
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward")
            .unwrap()
            .trim(),
        root,
        "root untouched"
    );
    assert!(!nsctl(&["--ns", &a, "sysctl", &set]).ok().changed());
    let read = nsctl(&["--ns", &a, "sysctl", key]).ok().json();
    assert_eq!(read["sysctl"]["value"], other);
    assert_eq!(read["changed"], false);
    // A multi-value sysctl compares field by field.
    let range = nsctl(&["--ns", &a, "sysctl", "net.ipv4.ip_local_port_range"])
        .ok()
        .json();
    let v = range["sysctl"]["value"]
        .as_str()
        .unwrap()
        .split_whitespace()
        .collect::<Vec<_>>()
        .join(" ");
    // One argument with a space inside: not for nsctl_line.
    let setting = format!("net.ipv4.ip_local_port_range={v}");
    assert!(!nsctl(&["--ns", &a, "sysctl", &setting]).ok().changed());
    finish(lab);
}

/// Runs `cmd` (nsctl's arguments as one line) with --check, for real, and for real
/// again: the check predicts the first run and changes nothing; the second run reports
/// changed:false and changes nothing.
fn twice(nses: &[&str], cmd: &str) {
    let check = format!("--check {cmd}");
    let before = settled_state(nses);
    let predicted = nsctl_line(&check).ok().json();
    assert_same_state(
        &state(nses),
        &before,
        &format!("--check {cmd} changed the kernel"),
    );
    let first = nsctl_line(cmd).ok().json();
    assert_eq!(first, predicted, "--check {cmd} mispredicted");
    assert_eq!(
        first["changed"], true,
        "{cmd} on a fresh setup must change something: {first}"
    );
    let after = settled_state(nses);
    assert_ne!(
        after, before,
        "{cmd} said changed but the kernel did not change"
    );
    let second = nsctl_line(cmd).ok().json();
    assert_eq!(second["changed"], false, "{cmd} second run: {second}");
    let mut same = first.clone();
    same["changed"] = Value::Bool(false);
    if let Some(s) = same.get_mut("sysctl") {
        s["previous"] = s["value"].clone(); // the one field that is history, not state
    }
    assert_eq!(second, same, "{cmd}: second run reports a different object");
    assert_same_state(
        &after,
        &settled_state(nses),
        &format!("{cmd}: second run changed the kernel"),
    );
    assert_eq!(
        nsctl_line(&check).ok().json(),
        second,
        "--check after convergence"
    );
}

#[test]
fn every_mutating_command_is_idempotent_and_check_predicts_it() {
    let lab = Lab::new();
    let x = lab.name("x");
    let y = lab.name("y");
    let nses = [x.as_str(), y.as_str()];
    twice(&nses, &format!("netns add {x}"));
    twice(&nses, &format!("netns add {y}"));
    for ns in [&x, &y] {
        nsctl(&["--ns", ns, "sysctl", "net.ipv6.conf.all.accept_dad=0"]).ok();
        nsctl(&["--ns", ns, "sysctl", "net.ipv6.conf.default.accept_dad=0"]).ok();
        // No link-local addresses: they appear when carrier does, a moment after `up`.
        nsctl_line(&format!(
            "--ns {ns} sysctl net.ipv6.conf.default.addr_gen_mode=1"
        ))
        .ok();
    }
    for cmd in [
        format!("--ns {x} link set lo --up"),
        format!("--ns {x} bridge add br0"),
        format!("--ns {x} bridge add br0 --up"),
        format!("--ns {y} bridge add bry --up"),
        format!("--ns {x} veth add v0 --peer v0p --peer-ns {y} --master br0 --up"),
        format!("--ns {x} veth add v1 --peer v1p --peer-ns {y} --peer-master bry"),
        format!("--ns {x} veth add v1 --peer v1p --peer-ns {y} --up"),
        format!("--ns {x} veth add v2 --peer v2p"),
        format!("--ns {y} link set v0p --mtu 1400"),
        format!("--ns {y} link set v0p --down"),
        format!("--ns {x} link set v2 --master br0 --up"),
        format!("--ns {x} link set v2 --isolated on"),
        format!("--ns {x} link set v2 --nomaster"),
        format!("--ns {x} link set v2p --netns {y} --up --master bry"),
        format!("--ns {x} bridge add brm --address 02:00:5E:AA:00:01 --up"),
        format!("--ns {y} link set v2p --address 02:00:5e:aa:00:02"),
        format!("--ns {x} link set br0 --address 02:00:5e:aa:00:03"),
        format!("--ns {x} addr add 10.73.0.1/24 --dev br0"),
        format!("--ns {x} addr add fd73::1/64 --dev br0 --nodad"),
        format!("--ns {x} addr add 10.73.0.1/16 --dev br0 --replace"),
        format!("--ns {x} sysctl net.ipv4.ip_forward=1"),
        format!("--ns {x} addr del fd73::1/64 --dev br0"),
        format!("--ns {x} link del v0"),
        format!("--ns {x} bridge add v1 --replace"),
        format!("netns del {y}"),
    ] {
        twice(&nses, &cmd);
    }
    assert_links_match_ip(&x);
    finish(lab);
}

#[test]
fn existing_names_with_other_settings_fail_unless_replace() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    nsctl(&["--ns", &a, "veth", "add", "v0", "--peer", "v0p"]).ok();
    nsctl(&["--ns", &a, "addr", "add", "10.74.0.1/24", "--dev", "v0"]).ok();
    let before = settled_state(&[&a]);
    nsctl(&["--ns", &a, "bridge", "add", "v0"])
        .fails(1, "bridge v0 already exists")
        .fails(1, "veth");
    nsctl(&["--ns", &a, "veth", "add", "v0", "--peer", "other"]).fails(1, "other");
    nsctl(&["--ns", &a, "veth", "add", "lo", "--peer", "lop"]).fails(1, "already exists");
    nsctl(&["--ns", &a, "addr", "add", "10.74.0.1/16", "--dev", "v0"]).fails(1, "10.74.0.1/24");
    assert_same_state(
        &before,
        &settled_state(&[&a]),
        "a refused command changed the namespace",
    );
    finish(lab);
}

#[test]
fn bad_input_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let b = quiet_ns(&lab, "b");
    nsctl(&["--ns", &a, "bridge", "add", "br0", "--up"]).ok();
    let missing = lab.name("missing");
    let long = "a234567890123456";
    let cases: Vec<(i32, &str, String)> = vec![
        (2, long, format!("--ns {a} bridge add {long}")),
        (2, long, format!("--ns {a} link set {long} --up")),
        (2, long, format!("--ns {a} veth add v0 --peer {long}")),
        (2, "../x", "netns add ../x".into()),
        (2, "a/b", "netns add a/b".into()),
        (2, "../x", "netns del ../x".into()),
        (2, "../x", "--ns ../x link list".into()),
        (2, "a/b", "--ns a/b link list".into()),
        (2, "../x", "exec ../x -- true".into()),
        (
            2,
            "10.292.0.1/24",
            format!("--ns {a} addr add 10.292.0.1/24 --dev br0"),
        ),
        (
            2,
            "10.0.0.1/33",
            format!("--ns {a} addr add 10.0.0.1/33 --dev br0"),
        ),
        (
            2,
            "10.0.0.1",
            format!("--ns {a} addr add 10.0.0.1 --dev br0"),
        ),
        (2, "10", format!("--ns {a} link set br0 --mtu 10")),
        (2, "--down", format!("--ns {a} link set br0 --up --down")),
        (
            2,
            "../../etc/passwd",
            format!("--ns {a} sysctl ../../etc/passwd=1"),
        ),
        (2, "net/../../x", format!("--ns {a} sysctl net/../../x")),
        (
            1,
            "nosuchdev",
            format!("--ns {a} addr add 10.0.0.1/24 --dev nosuchdev"),
        ),
        (
            1,
            "nosuchdev",
            format!("--ns {a} addr del 10.0.0.1/24 --dev nosuchdev"),
        ),
        (1, "nosuchdev", format!("--ns {a} link set nosuchdev --up")),
        (
            1,
            "nosuchbr",
            format!("--ns {a} link set br0 --master nosuchbr"),
        ),
        (
            1,
            &missing,
            format!("--ns {a} link set br0 --netns {missing}"),
        ),
        (1, &missing, format!("--ns {missing} link list")),
        (1, &missing, format!("--ns {missing} bridge add br0")),
        (
            1,
            "net.ipv4.nosuchkey",
            format!("--ns {a} sysctl net.ipv4.nosuchkey"),
        ),
        // Multi-step commands that fail part-way leave no veth behind.
        (
            1,
            "nosuchbr",
            format!("--ns {a} veth add v0 --peer v0p --master nosuchbr"),
        ),
        (
            1,
            &missing,
            format!("--ns {a} veth add v0 --peer v0p --peer-ns {missing}"),
        ),
        (
            1,
            "nosuchbr",
            format!("--ns {a} veth add v0 --peer v0p --peer-ns {b} --peer-master nosuchbr"),
        ),
        (
            1,
            "lo",
            format!("--ns {a} veth add v0 --peer lo --peer-ns {b}"),
        ),
    ];
    // Only the kernel knows this one fails (lo cannot be a master), after the pair exists:
    // the pair is removed again. --check cannot foresee it.
    let kernel_refuses =
        format!("--ns {a} veth add v0 --peer v0p --peer-ns {b} --peer-master lo --up");
    let before = settled_state(&[&a, &b]);
    let root_before = snapshot(None);
    for (code, needle, cmd) in &cases {
        nsctl_line(cmd).fails(*code, needle);
        nsctl_line(&format!("--check {cmd}")).fails(*code, needle);
    }
    nsctl_line(&kernel_refuses).fails(1, "v0p");
    assert_same_state(
        &before,
        &settled_state(&[&a, &b]),
        "bad input changed a namespace",
    );
    assert_eq!(
        snapshot(None),
        root_before,
        "bad input changed the root namespace"
    );
    finish(lab);
}

#[test]
fn errors_name_the_object_and_namespace() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let r = nsctl(&["--ns", &a, "link", "set", "ghost0", "--up"]).fails(1, "ghost0");
    assert!(r.stderr.starts_with("nsctl: error: "), "{}", r.stderr);
    assert!(r.stderr.contains(&a), "names the namespace: {}", r.stderr);
    let r = nsctl_line(&format!("--ns {a} veth add v0 --peer v0p --master nob")).fails(1, "nob");
    assert!(r.stderr.contains(&a), "{}", r.stderr);
    finish(lab);
}

#[test]
fn batch_of_200_namespaces_on_one_bridge() {
    let lab = Lab::new();
    let hub = lab.name("hub");
    let n = 200;
    let mut lines = vec![
        "# 200 clients on one bridge".to_string(),
        format!("netns add {hub}"),
        format!("--ns {hub} bridge add br0 --up"),
    ];
    for i in 0..n {
        let c = lab.name(&format!("c{i}"));
        lines.push(format!("netns add {c}"));
        lines.push(format!(
            "--ns {hub} veth add p{i} --peer e0 --peer-ns {c} --master br0 --up"
        ));
        lines.push(format!(
            "--ns {c} addr add 10.75.{}.{}/16 --dev e0",
            i / 250,
            i % 250 + 1
        ));
    }
    let text = lines.join("\n") + "\n";
    let file = std::env::temp_dir().join(format!("{}.batch", lab.prefix));
    std::fs::write(&file, &text).unwrap();
    let path = file.to_str().unwrap();

    let r = nsctl(&["-b", path]).ok();
    let out = r.json_lines();
    assert_eq!(out.len(), lines.len() - 1, "one JSON line per command");
    assert!(
        out.iter().all(|o| o["changed"] == true),
        "first run changes every line"
    );

    let ports = ip_json(Some(&hub), &["link", "show", "master", "br0"]);
    let ports = ports.as_array().unwrap();
    assert_eq!(ports.len(), n);
    assert!(ports
        .iter()
        .all(|p| p["flags"].as_array().unwrap().iter().any(|f| f == "UP")));
    for i in 0..n {
        let c = lab.name(&format!("c{i}"));
        let a = ip_json(Some(&c), &["-4", "addr", "show", "dev", "e0"]);
        let info = &a[0]["addr_info"][0];
        assert_eq!(
            info["local"],
            format!("10.75.{}.{}", i / 250, i % 250 + 1),
            "{c}"
        );
        assert_eq!(info["prefixlen"], 16);
        assert!(
            a[0]["flags"].as_array().unwrap().iter().any(|f| f == "UP"),
            "{c}: e0 up"
        );
    }
    assert!(
        ping(&lab.name("c0"), "10.75.0.200", 2),
        "first client reaches the last"
    );

    // The same batch again converges without a change.
    let again = nsctl(&["-b", path]).ok().json_lines();
    assert!(
        again.iter().all(|o| o["changed"] == false),
        "second run changes nothing"
    );

    // A failing line stops the batch: nothing after it runs, exit non-zero.
    let bad = format!(
        "netns add {}\n--ns {hub} link set nosuch --up\nnetns add {}\n",
        lab.name("z1"),
        lab.name("z2")
    );
    std::fs::write(&file, bad).unwrap();
    let r = nsctl(&["-b", path]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    assert_eq!(r.json_lines().len(), 1);
    assert!(!run("ip", &["netns", "list"])
        .stdout
        .contains(&lab.name("z2")));
    std::fs::remove_file(&file).unwrap();
    finish(lab);
}

// ---- netns add/del: leftovers, concurrency, kills at random instants ----

/// The file system type mounted at `path` (`nsfs` for a namespace), None if nothing is mounted
/// there (a plain file, or no file).
fn mounted_fstype(path: &str) -> Option<String> {
    let r = run("findmnt", &["-n", "-o", "FSTYPE", "--mountpoint", path]);
    let t = r.stdout.lines().last().unwrap_or("").trim().to_string();
    (r.code == 0 && !t.is_empty()).then_some(t)
}

/// Asserts namespace `name` is real: an nsfs mount on /run/netns/NAME that `ip` can enter.
#[track_caller]
fn assert_real_netns(name: &str) {
    let path = format!("/run/netns/{name}");
    assert_eq!(
        mounted_fstype(&path).as_deref(),
        Some("nsfs"),
        "{path} is not a namespace mount"
    );
    let links = ip_json(Some(name), &["link", "show"]);
    assert_eq!(links[0]["ifname"], "lo", "{name}: {links}");
}

fn netns_listed(name: &str) -> bool {
    netns_list().netns.iter().any(|e| e.name == name)
}

#[test]
fn leftover_netns_file_is_reclaimed_and_never_listed() {
    let lab = Lab::new();
    let x = lab.name("x");
    let path = format!("/run/netns/{x}");
    // What a killed `netns add` used to leave: the file, nothing mounted on it.
    std::fs::write(&path, "").unwrap();
    assert!(
        !netns_listed(&x),
        "a leftover file is listed as a namespace"
    );
    assert!(
        nsctl(&["--check", "netns", "add", &x]).ok().changed(),
        "--check: add would reclaim the leftover"
    );
    assert_eq!(mounted_fstype(&path), None, "--check mounted something");
    assert!(
        std::path::Path::new(&path).exists(),
        "--check removed the file"
    );
    let r = nsctl(&["netns", "add", &x]).ok().json();
    assert_eq!(r["changed"], true, "{r}");
    assert_real_netns(&x);
    assert!(netns_listed(&x));
    assert!(!nsctl(&["netns", "add", &x]).ok().changed());

    // del of a leftover removes it; del again is a no-op.
    let y = lab.name("y");
    let path_y = format!("/run/netns/{y}");
    std::fs::write(&path_y, "").unwrap();
    assert!(nsctl(&["--check", "netns", "del", &y]).ok().changed());
    assert!(std::path::Path::new(&path_y).exists(), "--check removed it");
    assert!(nsctl(&["netns", "del", &y]).ok().changed());
    assert!(!std::path::Path::new(&path_y).exists(), "{path_y} left");
    assert!(!nsctl(&["netns", "del", &y]).ok().changed());
    assert!(nsctl(&["netns", "del", &x]).ok().changed());
    assert!(!std::path::Path::new(&path).exists(), "{path} left");
    finish(lab);
}

#[test]
fn concurrent_netns_add_of_one_name_changes_it_once() {
    let lab = Lab::new();
    let name = lab.name("c");
    let racers = 8;
    for round in 0..5 {
        let start = std::sync::Barrier::new(racers);
        let runs: Vec<Run> = std::thread::scope(|s| {
            let handles: Vec<_> = (0..racers)
                .map(|_| {
                    s.spawn(|| {
                        start.wait();
                        let r = nsctl(&["netns", "add", &name]);
                        // When any of them returns, the namespace must be there for real.
                        if r.code == 0 {
                            assert_real_netns(&name);
                        }
                        r
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).collect()
        });
        let changed = runs
            .into_iter()
            .filter(|r| r.clone().ok().changed())
            .count();
        assert_eq!(changed, 1, "round {round}: exactly one add changes it");
        assert_real_netns(&name);
        assert!(nsctl(&["netns", "del", &name]).ok().changed());
        assert!(!std::path::Path::new(&format!("/run/netns/{name}")).exists());
    }
    finish(lab);
}

/// xorshift64*: a small deterministic generator, seeded from /dev/urandom (the seed is printed
/// so a failure can be replayed with NIRANSIX_TEST_SEED).
struct Rng(u64);

impl Rng {
    fn seeded() -> Rng {
        let seed = std::env::var("NIRANSIX_TEST_SEED")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| {
                use std::io::Read;
                let mut b = [0u8; 8];
                std::fs::File::open("/dev/urandom")
                    .and_then(|mut f| f.read_exact(&mut b))
                    .unwrap();
                u64::from_le_bytes(b) | 1
            });
        eprintln!("seed: NIRANSIX_TEST_SEED={seed}");
        Rng(seed)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d) % n
    }
}

/// What a killed run left at /run/netns/NAME.
fn leftover_kind(name: &str) -> &'static str {
    let path = format!("/run/netns/{name}");
    match (std::path::Path::new(&path).exists(), mounted_fstype(&path)) {
        (false, _) => "nothing",
        (true, Some(t)) if t == "nsfs" => "namespace",
        (true, Some(_)) => "other mount",
        (true, None) => "plain file",
    }
}

/// Starts `nsctl ARGS`, waits `micros`, SIGKILLs it; returns what it left.
fn kill_after(args: &[&str], micros: u64, name: &str) -> &'static str {
    let mut child = std::process::Command::new(tool_path("nsctl"))
        .args(args)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    std::thread::sleep(Duration::from_micros(micros));
    let _ = child.kill(); // SIGKILL; it may have finished already
    child.wait().unwrap();
    let left = leftover_kind(name);
    // Whatever it left, `netns list` reports only a real namespace.
    assert_eq!(
        netns_listed(name),
        left == "namespace",
        "netns list after a kill that left: {left}"
    );
    left
}

#[test]
fn netns_add_and_del_killed_at_random_instants_never_block_the_next() {
    let lab = Lab::new();
    let name = lab.name("k");
    let mut rng = Rng::seeded();
    let mut after_add = BTreeMap::new();
    let mut after_del = BTreeMap::new();
    for _ in 0..30 {
        let left = kill_after(&["netns", "add", &name], rng.below(3000), &name);
        *after_add.entry(left).or_insert(0) += 1;
        nsctl(&["netns", "add", &name]).ok();
        assert_real_netns(&name);

        let left = kill_after(&["netns", "del", &name], rng.below(3000), &name);
        *after_del.entry(left).or_insert(0) += 1;
        nsctl(&["netns", "del", &name]).ok();
        assert_eq!(leftover_kind(&name), "nothing");
    }
    eprintln!("left by a killed add: {after_add:?}; by a killed del: {after_del:?}");
    assert!(!run("ls", &["/run/netns"]).stdout.contains(&name));
    finish(lab);
}

// ---- MAC addresses ----

/// The MAC of `dev` in `ns` as `ip -j link` reports it.
fn mac_of(ns: &str, dev: &str) -> String {
    ip_json(Some(ns), &["link", "show", dev])[0]["address"]
        .as_str()
        .unwrap()
        .to_string()
}

/// Adds veth `port` (peer `port`p) in `ns` with MAC `mac`, enslaved to `bridge`, up.
fn add_port(ns: &str, bridge: &str, port: &str, mac: &str) {
    nsctl_line(&format!(
        "--ns {ns} veth add {port} --peer {port}p --master {bridge} --up"
    ))
    .ok();
    nsctl_line(&format!("--ns {ns} link set {port} --address {mac}")).ok();
    assert_eq!(mac_of(ns, port), mac);
}

#[test]
fn bridge_with_a_fixed_address_keeps_it_when_ports_come_and_go() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let fixed = "02:ab:cd:00:00:50";
    let r = nsctl(&[
        "--ns",
        &a,
        "bridge",
        "add",
        "br0",
        "--address",
        "02:AB:CD:00:00:50",
        "--up",
    ])
    .ok()
    .json();
    assert_eq!(r["changed"], true);
    assert_eq!(r["bridge"]["address"], fixed, "printed lowercase: {r}");
    assert_eq!(mac_of(&a, "br0"), fixed);
    // The kernel marks it as chosen (NET_ADDR_SET), which is what keeps it in place.
    let assign = nsh(&a, "cat /sys/class/net/br0/addr_assign_type").ok();
    assert_eq!(assign.stdout.trim(), "3");

    // A control bridge without --address: the kernel gives it the lowest MAC of its ports.
    nsctl(&["--ns", &a, "bridge", "add", "br1", "--up"]).ok();
    for (br, port, mac) in [
        ("br0", "p1", "02:00:00:00:00:01"),
        ("br0", "p2", "02:00:00:00:00:02"),
        ("br1", "p3", "02:00:00:00:00:03"),
        ("br1", "p4", "02:00:00:00:00:04"),
    ] {
        add_port(&a, br, port, mac);
    }
    assert_eq!(mac_of(&a, "br0"), fixed, "br0 took a port's MAC");
    assert_eq!(mac_of(&a, "br1"), "02:00:00:00:00:03", "control bridge");
    nsctl(&["--ns", &a, "link", "del", "p1"]).ok();
    nsctl(&["--ns", &a, "link", "del", "p3"]).ok();
    assert_eq!(mac_of(&a, "br0"), fixed, "br0's MAC moved when a port left");
    assert_eq!(mac_of(&a, "br1"), "02:00:00:00:00:04", "control bridge");

    // Re-adding with the same MAC changes nothing.
    let again = nsctl(&["--ns", &a, "bridge", "add", "br0", "--address", fixed])
        .ok()
        .json();
    assert_eq!(again["changed"], false, "{again}");

    // br1 has 02:..:04 only by inheritance: asking for that MAC pins it (a change), once.
    let pin = format!("--ns {a} bridge add br1 --address 02:00:00:00:00:04");
    assert!(nsctl_line(&format!("--check {pin}")).ok().changed());
    assert!(nsctl_line(&pin).ok().changed(), "pinning is a change");
    assert!(!nsctl_line(&pin).ok().changed());
    add_port(&a, "br1", "p5", "02:00:00:00:00:03");
    assert_eq!(mac_of(&a, "br1"), "02:00:00:00:00:04", "pinned MAC moved");

    // Another MAC for an existing bridge: refused (exit 1, nothing changes) unless --replace,
    // which sets it in place: ports stay.
    let before = settled_state(&[&a]);
    nsctl_line(&format!(
        "--ns {a} bridge add br0 --address 02:ab:cd:00:00:51"
    ))
    .fails(1, fixed);
    assert_same_state(&before, &settled_state(&[&a]), "a refused add changed it");
    let r = nsctl_line(&format!(
        "--ns {a} bridge add br0 --address 02:ab:cd:00:00:51 --replace"
    ))
    .ok();
    assert!(r.changed());
    assert_eq!(mac_of(&a, "br0"), "02:ab:cd:00:00:51");
    let ports = ip_json(Some(&a), &["link", "show", "master", "br0"]);
    assert_eq!(
        ports[0]["ifname"], "p2",
        "--replace kept the ports: {ports}"
    );
    assert_links_match_ip(&a);
    finish(lab);
}

#[test]
fn link_set_address_changes_the_mac_once() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    nsctl(&["--ns", &a, "veth", "add", "v0", "--peer", "v0p"]).ok();
    let set = format!("--ns {a} link set v0 --address 02:12:34:56:78:9A");
    let check = nsctl_line(&format!("--check {set}")).ok().json();
    assert_eq!(check["changed"], true);
    assert_ne!(mac_of(&a, "v0"), "02:12:34:56:78:9a", "--check changed it");
    let r = nsctl_line(&set).ok().json();
    assert_eq!(r, check, "--check predicted the real run");
    assert_eq!(r["link"]["address"], "02:12:34:56:78:9a");
    assert_eq!(mac_of(&a, "v0"), "02:12:34:56:78:9a");
    assert!(!nsctl_line(&set).ok().changed());
    assert!(!nsctl_line(&format!("--check {set}")).ok().changed());
    let listed = link_list(&a);
    let v0 = listed.links.iter().find(|l| l.name == "v0").unwrap();
    assert_eq!(v0.address.as_deref(), Some("02:12:34:56:78:9a"));
    finish(lab);
}

#[test]
fn malformed_mac_addresses_are_refused_and_change_nothing() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    nsctl(&["--ns", &a, "veth", "add", "v0", "--peer", "v0p"]).ok();
    let before = settled_state(&[&a]);
    for bad in [
        "aa:bb:cc:dd:ee",
        "zz:bb:cc:dd:ee:ff",
        "aa-bb-cc-dd-ee-ff",
        "02:bb:cc:dd:ee:ff:00",
        "2:bb:cc:dd:ee:ff",
        "01:00:5e:00:00:01",
        "ff:ff:ff:ff:ff:ff",
        "00:00:00:00:00:00",
    ] {
        for cmd in [
            format!("--ns {a} link set v0 --address {bad}"),
            format!("--ns {a} bridge add br9 --address {bad}"),
            format!("--ns {a} bridge add br9 --up --address {bad}"),
        ] {
            nsctl_line(&cmd).fails(2, bad);
            nsctl_line(&format!("--check {cmd}")).fails(2, bad);
        }
    }
    assert_same_state(
        &before,
        &settled_state(&[&a]),
        "a malformed MAC changed the namespace",
    );
    finish(lab);
}

// ---- sysctl: only per-namespace keys ----

#[test]
fn sysctl_refuses_keys_that_are_not_per_namespace() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let hostname = run("hostname", &[]).ok().stdout;
    let rmem_max = std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap();
    for key in [
        "kernel.hostname",
        "vm.swappiness",
        "net.core.rmem_max",
        "net.core.wmem_default",
        "net.core.netdev_max_backlog",
        "net.ipv4.tcp_mem",
        "net.ipv4.neigh.default.gc_thresh3",
    ] {
        for setting in [key.to_string(), format!("{key}=4096")] {
            for pre in ["", "--check"] {
                nsctl_line(&format!("{pre} --ns {a} sysctl {setting}"))
                    .fails(2, key)
                    .fails(2, "not per network namespace");
                nsctl_line(&format!("{pre} sysctl {setting}")).fails(2, key);
            }
        }
    }
    assert_eq!(run("hostname", &[]).ok().stdout, hostname);
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/rmem_max").unwrap(),
        rmem_max
    );
    // In a batch the refusal comes before line 1 runs.
    let ns = lab.name("b");
    let batch = format!("netns add {ns}\nsysctl kernel.hostname\n");
    let r = run_stdin(tool_path("nsctl"), &["-b", "-"], Some(&batch));
    assert_eq!(r.code, 2, "{}", r.stderr);
    assert!(r.stderr.contains("kernel.hostname"), "{}", r.stderr);
    assert!(!netns_listed(&ns), "line 1 ran");

    // Per-namespace keys, net.core's among them, still work, and only in the namespace.
    let host_fwd = std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap();
    let fwd = nsctl(&["--ns", &a, "sysctl", "net.ipv4.ip_forward=1"]).ok();
    assert_eq!(fwd.json()["sysctl"]["value"], "1");
    assert_eq!(
        nsh(&a, "cat /proc/sys/net/ipv4/ip_forward")
            .ok()
            .stdout
            .trim(),
        "1"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/ipv4/ip_forward").unwrap(),
        host_fwd,
        "host untouched"
    );
    let host_somaxconn = std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap();
    nsctl(&["--ns", &a, "sysctl", "net.core.somaxconn=1234"]).ok();
    assert_eq!(
        nsh(&a, "cat /proc/sys/net/core/somaxconn")
            .ok()
            .stdout
            .trim(),
        "1234"
    );
    assert_eq!(
        std::fs::read_to_string("/proc/sys/net/core/somaxconn").unwrap(),
        host_somaxconn
    );
    finish(lab);
}

// ---- What the kernel says of links and addresses (issue 14) ----

/// Waits (up to 5 s) until `ip` reports `dev` in `ns` with operstate `want` (the kernel's link
/// watch settles it up to a second after a change).
#[track_caller]
fn wait_operstate(ns: &str, dev: &str, want: &str) {
    wait_until(
        &format!("{ns}: {dev} reaches operstate {want}"),
        Duration::from_secs(5),
        || ip_json(Some(ns), &["link", "show", dev])[0]["operstate"] == want,
    );
}

/// The listed link `name`.
#[track_caller]
fn listed<'a>(l: &'a LinkList, name: &str) -> &'a LinkEntry {
    l.links
        .iter()
        .find(|x| x.name == name)
        .unwrap_or_else(|| panic!("{name} not listed: {l:?}"))
}

#[test]
fn link_list_shows_operstate_carrier_mac_and_veth_peers_like_ip() {
    let lab = Lab::new();
    let a = lab.netns("a");
    let b = lab.netns("b");
    let root_end = lab.name("r0");
    // A veth whose peer is down, both ends here (the complaint of issue 14).
    ip_in(&a, "link add v3 type veth peer name v4");
    ip_in(&a, "link set v3 up");
    // A veth with its peer in another named namespace, and one with its peer in the root
    // namespace, which has no name under /run/netns.
    ip_in(&a, &format!("link add v1 type veth peer name v2 netns {b}"));
    ip_in(&a, "link set v1 up");
    ip_in(&b, "link set v2 up");
    run(
        "ip",
        &[
            "link", "add", &root_end, "type", "veth", "peer", "name", "vr", "netns", &a,
        ],
    )
    .ok();
    // A bridge with a MAC of its own, a macvlan on v3.
    ip_in(&a, "link add br0 address 02:00:5e:00:53:01 type bridge");
    ip_in(&a, "link set v4 master br0");
    ip_in(&a, "link add mv0 link v3 type macvlan mode bridge");
    wait_operstate(&a, "v1", "UP");
    wait_operstate(&a, "v3", "LOWERLAYERDOWN");

    let l = link_list(&a);
    let v3 = listed(&l, "v3");
    assert_eq!(
        (v3.state.as_str(), v3.operstate.as_deref(), v3.carrier),
        ("up", Some("lowerlayerdown"), false),
        "admin up, peer down: {v3:?}"
    );
    assert_eq!(v3.peer.as_deref(), Some("v4"));
    assert_eq!(v3.peer_netns.as_deref(), Some(a.as_str()));
    let v1 = listed(&l, "v1");
    assert_eq!((v1.operstate.as_deref(), v1.carrier), (Some("up"), true));
    assert_eq!(v1.peer.as_deref(), Some("v2"));
    assert_eq!(v1.peer_netns.as_deref(), Some(b.as_str()));
    let vr = listed(&l, "vr");
    let host_peer = host_is_here().then_some(root_end.as_str());
    assert_eq!(
        (vr.peer.as_deref(), vr.peer_netns.as_deref()),
        (host_peer, None)
    );
    let br = listed(&l, "br0");
    assert_eq!(br.kind.as_deref(), Some("bridge"));
    assert_eq!(br.address.as_deref(), Some("02:00:5e:00:53:01"));
    assert_eq!(listed(&l, "v4").master.as_deref(), Some("br0"));
    let mv = listed(&l, "mv0");
    assert_eq!(mv.kind.as_deref(), Some("macvlan"));
    assert_eq!((mv.peer.as_deref(), mv.peer_netns.as_deref()), (None, None));
    let lo = listed(&l, "lo");
    assert_eq!((lo.kind.as_deref(), lo.peer.as_deref()), (None, None));
    let from_b = link_list(&b);
    let v2 = listed(&from_b, "v2");
    assert_eq!(v2.peer.as_deref(), Some("v1"));
    assert_eq!(v2.peer_netns.as_deref(), Some(a.as_str()));
    assert_links_match_ip(&a);
    assert_links_match_ip(&b);
    // --no-peers: the peers in other namespaces left out, the one here still named, the rest
    // the same.
    let brief = tool("nsctl", &["--ns", &a, "link", "list", "--no-peers"])
        .ok()
        .json();
    let full = tool("nsctl", &["--ns", &a, "link", "list"]).ok().json();
    for (b, f) in brief["links"]
        .as_array()
        .unwrap()
        .iter()
        .zip(full["links"].as_array().unwrap())
    {
        let mut f = f.clone();
        if f["name"] == "v1" || f["name"] == "vr" {
            f["peer"] = Value::Null;
            f["peer_netns"] = Value::Null;
        }
        assert_eq!(b, &f, "--no-peers lists the same but the peers elsewhere");
    }
    assert_eq!(listed(&l, "v3").peer.as_deref(), Some("v4"));

    // The peer comes up: the kernel's view changes, and ours with it.
    ip_in(&a, "link set v4 up");
    wait_operstate(&a, "v3", "UP");
    let l = link_list(&a);
    let v3 = listed(&l, "v3");
    assert_eq!((v3.operstate.as_deref(), v3.carrier), (Some("up"), true));
    assert_links_match_ip(&a);
    finish(lab);
}

#[test]
fn link_list_shows_whether_each_link_takes_ipv6() {
    let lab = Lab::new();
    let a = lab.netns("a");
    ip_in(&a, "link add v1 type veth peer name v2");
    ip_in(&a, "link add v3 type veth peer name v4");
    nsh(&a, "sysctl -qw net.ipv6.conf.v1.disable_ipv6=1").ok();
    // Below IPv6's minimum MTU a link has no IPv6 at all: the kernel reports nothing.
    ip_in(&a, "link set v3 mtu 1200");
    let l = link_list(&a);
    let ipv6 = |name: &str| listed(&l, name).ipv6;
    assert_eq!(
        [ipv6("v1"), ipv6("v2"), ipv6("v3"), ipv6("lo")],
        [Some(false), Some(true), None, Some(true)]
    );
    assert_links_match_ip(&a);
    // Turned back on: listed so at once.
    nsh(&a, "sysctl -qw net.ipv6.conf.v1.disable_ipv6=0").ok();
    assert_eq!(listed(&link_list(&a), "v1").ipv6, Some(true));
    finish(lab);
}

#[test]
fn link_list_shows_a_tun_as_kind_tun_without_mac_like_ip() {
    let lab = Lab::new();
    let a = lab.netns("a");
    // What wireguard-go makes: the kernel knows it only as a TUN device.
    ip_in(&a, "tuntap add dev tn0 mode tun");
    ip_in(&a, "link set tn0 up");
    let l = link_list(&a);
    let tn = listed(&l, "tn0");
    assert_eq!(tn.kind.as_deref(), Some("tun"));
    assert_eq!(tn.address, None, "a tun has no MAC");
    assert_eq!(tn.state, "up");
    // No process holds it open: no carrier.
    assert_eq!((tn.operstate.as_deref(), tn.carrier), (Some("down"), false));
    assert_eq!((tn.peer.as_deref(), tn.peer_netns.as_deref()), (None, None));
    assert_links_match_ip(&a);
    finish(lab);
}

/// Waits (up to 10 s) until `ip` shows `flag` on address `local` in `ns`.
#[track_caller]
fn wait_addr_flag(ns: &str, local: &str, flag: &str) {
    wait_until(
        &format!("{ns}: {local} has flag {flag}"),
        Duration::from_secs(10),
        || {
            let links = ip_json(Some(ns), &["addr", "show"]);
            links.as_array().unwrap().iter().any(|l| {
                l["addr_info"]
                    .as_array()
                    .unwrap()
                    .iter()
                    .any(|i| i["local"] == local && i[flag] == true)
            })
        },
    );
}

/// Addresses with a peer (`ip addr add A peer B/N`) and a label: `addr list` prints them as
/// `ip -j -d addr` does, and `addr add` of the plain address never takes one of them for it:
/// it refuses naming what is there, and swaps it with --replace.
#[test]
fn addr_peer_and_label_list_like_ip() {
    let lab = Lab::new();
    let a = lab.netns("a");
    ip_in(&a, "link add p0 type veth peer name p1");
    ip_in(&a, "link set p0 up");
    ip_in(&a, "addr add 10.5.0.1 peer 10.5.0.2/32 dev p0");
    ip_in(&a, "addr add 10.5.0.1 peer 10.5.0.3/32 dev p0");
    ip_in(&a, "addr add 10.6.0.1/24 dev p0 label p0:web");
    ip_in(&a, "addr add 10.7.0.1/24 dev p0");
    ip_in(&a, "addr add fd00:7::1/64 peer fd00:7::2 dev p0 nodad");
    assert_addresses_match_ip(&a);
    let l = addr_list(&a);
    let find = |cidr: &str, peer: Option<&str>| {
        l.addresses
            .iter()
            .find(|x| x.cidr == cidr && x.peer.as_deref() == peer)
            .unwrap_or_else(|| panic!("{cidr} peer {peer:?} not listed: {l:?}"))
    };
    let ip_info = |local: &str| -> Vec<Value> {
        let links = ip_json(Some(&a), &["-d", "addr", "show", "dev", "p0"]);
        links[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|i| i["local"] == local)
            .cloned()
            .collect()
    };
    assert_eq!(ip_info("10.5.0.1").len(), 2);
    for peer in ["10.5.0.2", "10.5.0.3"] {
        assert_eq!(find("10.5.0.1/32", Some(peer)).label.as_deref(), Some("p0"));
    }
    assert_eq!(find("10.6.0.1/24", None).label.as_deref(), Some("p0:web"));
    assert_eq!(find("10.7.0.1/24", None).label.as_deref(), Some("p0"));
    let v6 = find("fd00:7::1/128", Some("fd00:7::2"));
    assert_eq!((v6.family.as_str(), v6.label.as_deref()), ("inet6", None));
    assert_eq!(ip_info("fd00:7::1")[0]["address"], "fd00:7::2");
    // `link list` words each address as `ip addr` does: the peers and the label tell them apart
    let links = nsctl(&["--ns", &a, "link", "list"]).ok().json();
    let p0 = links["links"]
        .as_array()
        .unwrap()
        .iter()
        .find(|l| l["name"] == "p0")
        .expect("p0 listed")
        .clone();
    let mut listed: Vec<&str> = p0["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .filter(|a| !a.starts_with("fe80:"))
        .collect();
    listed.sort_unstable();
    assert_eq!(
        listed,
        [
            "10.5.0.1/32 peer 10.5.0.2",
            "10.5.0.1/32 peer 10.5.0.3",
            "10.6.0.1/24 label p0:web",
            "10.7.0.1/24",
            "fd00:7::1/128 peer fd00:7::2"
        ]
    );

    let add = |args: &[&str]| nsctl(&[&["--ns", &a, "addr", "add"][..], args].concat());
    // The plain address is not the one with a peer, nor the labelled one.
    add(&["10.5.0.1/32", "--dev", "p0"]).fails(1, "peer 10.5.0.");
    add(&["10.6.0.1/24", "--dev", "p0"]).fails(1, "label p0:web");
    add(&["fd00:7::1/128", "--dev", "p0", "--nodad"]).fails(1, "peer fd00:7::2");
    assert!(!add(&["10.7.0.1/24", "--dev", "p0"]).ok().changed());
    assert_addresses_match_ip(&a);
    assert!(add(&["10.6.0.1/24", "--dev", "p0", "--replace"])
        .ok()
        .changed());
    assert_eq!(find_label(&a, "10.6.0.1"), "p0");
    assert!(!add(&["10.6.0.1/24", "--dev", "p0"]).ok().changed());
    assert_addresses_match_ip(&a);
    finish(lab);
}

/// `addr add` and `addr del` weigh only the addresses of their own link and family (read from
/// the kernel for that link alone; an IPv6 one asked for by itself): the same address on
/// another link is no obstacle, and on its own link with another prefix length it is refused
/// naming what is there, swapped with --replace, and not deleted by the other length.
#[test]
fn addr_add_weighs_only_its_own_link_and_family() {
    let lab = Lab::new();
    let a = lab.netns("o");
    ip_in(&a, "link add p0 type veth peer name p1");
    ip_in(&a, "link set p0 up");
    ip_in(&a, "addr add 10.8.0.1/24 dev p1");
    ip_in(&a, "addr add fd00:8::1/64 dev p1 nodad");
    let add = |args: &[&str]| nsctl(&[&["--ns", &a, "addr", "add"][..], args].concat());
    let del = |args: &[&str]| nsctl(&[&["--ns", &a, "addr", "del"][..], args].concat());
    for cidr in ["10.8.0.1/32", "fd00:8::1/128"] {
        assert!(add(&[cidr, "--dev", "p0", "--nodad"]).ok().changed());
        assert!(!add(&[cidr, "--dev", "p0", "--nodad"]).ok().changed());
    }
    assert_addresses_match_ip(&a);
    add(&["fd00:8::1/64", "--dev", "p0", "--nodad"]).fails(1, "p0 already has fd00:8::1/128");
    add(&["10.8.0.1/24", "--dev", "p0"]).fails(1, "p0 already has 10.8.0.1/32");
    assert!(
        add(&["fd00:8::1/64", "--dev", "p0", "--nodad", "--replace"])
            .ok()
            .changed()
    );
    assert!(!del(&["fd00:8::1/128", "--dev", "p0"]).ok().changed());
    assert_addresses_match_ip(&a);
    let on_p0 = |family: &str| -> Vec<String> {
        ip_json(
            Some(&a),
            &[family, "addr", "show", "dev", "p0", "scope", "global"],
        )[0]["addr_info"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| format!("{}/{}", i["local"].as_str().unwrap(), i["prefixlen"]))
            .collect()
    };
    assert_eq!(on_p0("-6"), ["fd00:8::1/64"]);
    assert_eq!(on_p0("-4"), ["10.8.0.1/32"]);
    for cidr in ["fd00:8::1/64", "10.8.0.1/32"] {
        assert!(del(&[cidr, "--dev", "p0"]).ok().changed());
        assert!(!del(&[cidr, "--dev", "p0"]).ok().changed());
    }
    // p1 kept its own
    let p1 = ip_json(Some(&a), &["addr", "show", "dev", "p1", "scope", "global"]);
    assert_eq!(p1[0]["addr_info"].as_array().unwrap().len(), 2, "{p1}");
    finish(lab);
}

/// `ip -j`'s label of the address `local` in `ns`.
fn find_label(ns: &str, local: &str) -> Value {
    let links = ip_json(Some(ns), &["addr", "show"]);
    links
        .as_array()
        .unwrap()
        .iter()
        .flat_map(|l| l["addr_info"].as_array().unwrap().clone())
        .find(|i| i["local"] == local)
        .map(|i| i["label"].clone())
        .unwrap_or(Value::Null)
}

#[test]
fn addr_list_shows_scope_flags_and_lifetimes_like_ip() {
    let lab = Lab::new();
    let a = lab.netns("a");
    let b = lab.netns("b");
    for ns in [&a, &b] {
        sysctl_in(ns, "net.ipv6.conf.default.accept_dad=1");
    }
    ip_in(&a, &format!("link add x0 type veth peer name x1 netns {b}"));
    ip_in(&a, "link set x0 up");
    ip_in(&b, "link set x1 up");
    // On a link that stays down, an IPv6 address stays tentative (DAD waits for the link).
    ip_in(&a, "link add dn0 type veth peer name dn1");
    ip_in(&a, "addr add fd00:2::1/64 dev dn0");
    ip_in(
        &a,
        "addr add 10.9.0.1/24 dev x0 valid_lft 100 preferred_lft 50",
    );
    ip_in(&a, "addr add 10.9.1.1/24 dev x0 scope link");
    ip_in(&a, "addr add 10.9.2.1/24 dev x0 scope host");
    ip_in(&a, "addr add 10.9.3.1/24 dev x0 scope 100");
    ip_in(&a, "addr add fd00:4::1/64 dev x0 nodad noprefixroute");
    ip_in(
        &a,
        "addr add fd00:5::1/64 dev x0 nodad valid_lft 100 preferred_lft 0",
    );
    ip_in(&a, "addr add fd00:6::1/64 dev x0 nodad home mngtmpaddr");
    // dadfailed: b holds fd00:3::1 already when a tries it on the same wire.
    ip_in(&b, "addr add fd00:3::1/64 dev x1 nodad");
    wait_operstate(&a, "x0", "UP");
    ip_in(&a, "addr add fd00:3::1/64 dev x0");
    wait_addr_flag(&a, "fd00:3::1", "dadfailed");

    let l = addr_list(&a);
    let find = |cidr: &str| {
        l.addresses
            .iter()
            .find(|x| x.cidr == cidr)
            .unwrap_or_else(|| panic!("{cidr} not listed: {l:?}"))
    };
    let has = |cidr: &str, flags: &[&str]| {
        let a = find(cidr);
        for f in flags {
            assert!(a.flags.iter().any(|x| x == f), "{cidr}: no {f}: {a:?}");
        }
    };
    has("fd00:2::1/64", &["tentative"]);
    has("fd00:3::1/64", &["tentative", "dadfailed"]);
    has("fd00:4::1/64", &["nodad", "noprefixroute", "permanent"]);
    has("fd00:5::1/64", &["nodad", "deprecated"]);
    has("fd00:6::1/64", &["nodad", "home", "mngtmpaddr"]);
    let timed = find("10.9.0.1/24");
    assert!(!timed.flags.iter().any(|f| f == "permanent"), "{timed:?}");
    assert!(
        (95..=100).contains(&timed.valid_life_time.unwrap()),
        "{timed:?}"
    );
    assert!(
        (45..=50).contains(&timed.preferred_life_time.unwrap()),
        "{timed:?}"
    );
    let forever = find("10.9.3.1/24");
    assert_eq!(forever.valid_life_time, Some(u64::from(u32::MAX)));
    assert_eq!(forever.preferred_life_time, Some(u64::from(u32::MAX)));
    assert_eq!(forever.scope, 100, "a scope without a name is its number");
    assert_eq!(find("10.9.1.1/24").scope, "link");
    assert_eq!(find("10.9.2.1/24").scope, "host");
    assert_eq!(find("10.9.0.1/24").scope, "global");
    assert_eq!(find("10.9.0.1/24").family, "inet");
    assert_eq!(find("fd00:4::1/64").family, "inet6");
    assert_addresses_match_ip(&a);
    assert_addresses_match_ip(&b);
    finish(lab);
}

#[test]
fn bad_vlan_ids_and_names_are_refused_and_change_nothing() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    nsctl(&["--ns", &a, "veth", "add", "v0", "--peer", "v0p"]).ok();
    let before = settled_state(&[&a]);
    for bad in ["0", "4095", "65536", "-1", "ten", "0x10"] {
        let args = [
            "--ns", &a, "vlan", "add", "v0.9", "--link", "v0", "--id", bad,
        ];
        nsctl(&args).fails(2, bad);
        let mut check = args.to_vec();
        check.insert(0, "--check");
        nsctl(&check).fails(2, bad);
    }
    for (bad, cmd) in [
        (
            "x234567890123456",
            &["dummy", "add", "x234567890123456"][..],
        ),
        ("d/0", &["dummy", "add", "d/0"]),
        (
            "v 0",
            &["vlan", "add", "v0.9", "--link", "v 0", "--id", "9"],
        ),
        ("--id", &["vlan", "add", "v0.9", "--link", "v0"]),
        ("--link", &["vlan", "add", "v0.9", "--id", "9"]),
    ] {
        nsctl(&[&["--ns", &a][..], cmd].concat()).fails(2, bad);
    }
    assert_same_state(
        &before,
        &settled_state(&[&a]),
        "refused input changed the namespace",
    );
    finish(lab);
}

#[test]
fn dummy_and_vlan_add_like_ip_link_add() {
    let test = "dummy_and_vlan_add_like_ip_link_add";
    if !needs_kernel("dummy", test) || !needs_kernel("vlan", test) {
        return;
    }
    let lab = Lab::new();
    let x = quiet_ns(&lab, "x");
    nsctl_line(&format!(
        "--ns {x} sysctl net.ipv6.conf.default.addr_gen_mode=1"
    ))
    .ok();
    let nses = [x.as_str()];
    for cmd in [
        format!("--ns {x} dummy add d0"),
        format!("--ns {x} dummy add d0 --up"),
        format!("--ns {x} link set d0 --address 02:00:5e:00:53:10"),
        format!("--ns {x} vlan add d0.10 --link d0 --id 10"),
        format!("--ns {x} vlan add d0.10 --link d0 --id 10 --up"),
        format!("--ns {x} vlan add d0.10 --link d0 --id 20 --replace --up"),
        format!("--ns {x} dummy add d1 --up"),
    ] {
        twice(&nses, &cmd);
    }
    let vlan = nsctl_line(&format!("--ns {x} vlan add d0.10 --link d0 --id 20"))
        .ok()
        .json();
    assert_eq!(
        vlan,
        serde_json::json!({"changed": false, "vlan": {"name": "d0.10", "netns": x, "link": "d0",
            "id": 20, "state": "up"}})
    );
    let dummy = nsctl_line(&format!("--ns {x} dummy add d1")).ok().json();
    assert_eq!(
        dummy,
        serde_json::json!({"changed": false, "dummy": {"name": "d1", "netns": x, "state": "up"}})
    );
    // What the kernel holds, by ip.
    let d0 = &ip_json(Some(&x), &["-d", "link", "show", "d0"])[0];
    assert_eq!(d0["linkinfo"]["info_kind"], "dummy");
    assert_eq!(d0["address"], "02:00:5e:00:53:10");
    assert!(d0["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    let v = &ip_json(Some(&x), &["-d", "link", "show", "d0.10"])[0];
    assert_eq!(v["linkinfo"]["info_kind"], "vlan");
    assert_eq!(v["linkinfo"]["info_data"]["id"], 20);
    assert_eq!(v["linkinfo"]["info_data"]["protocol"], "802.1Q");
    assert_eq!(v["link"], "d0");
    assert!(v["flags"].as_array().unwrap().iter().any(|f| f == "UP"));
    assert_links_match_ip(&x);

    // Another id, another lower device, another kind under the name: refused, nothing changes.
    let before = settled_state(&nses);
    nsctl_line(&format!("--ns {x} vlan add d0.10 --link d0 --id 30")).fails(1, "d0.10");
    nsctl_line(&format!("--ns {x} vlan add d0.10 --link d1 --id 20")).fails(1, "d1");
    nsctl_line(&format!("--ns {x} dummy add d0.10")).fails(1, "is a vlan");
    nsctl_line(&format!("--ns {x} vlan add d1 --link d0 --id 5")).fails(1, "is a dummy");
    nsctl_line(&format!("--ns {x} vlan add d2.5 --link nosuch --id 5")).fails(1, "nosuch");
    assert_same_state(&before, &settled_state(&nses), "a refused add changed it");
    finish(lab);
}

// ---- Bridge port isolation (IFLA_BRPORT_ISOLATED) ----

/// Whether `port` in `ns` is an isolated bridge port, as `bridge -d -j link show` reports it.
#[track_caller]
fn kernel_isolated(ns: &str, port: &str) -> bool {
    let r = run(
        "bridge",
        &["-n", ns, "-d", "-j", "link", "show", "dev", port],
    )
    .ok();
    let ports: Value = serde_json::from_str(&r.stdout).expect("bridge -j output");
    ports[0]["isolated"]
        .as_bool()
        .unwrap_or_else(|| panic!("{ns}: bridge link shows no isolated flag for {port}: {ports}"))
}

/// True if not one of three pings from `ns` to `dest` is answered (ping's exit status 1 without
/// a deadline: no reply at all).
fn unanswered(ns: &str, dest: &str) -> bool {
    let r = run(
        "ip",
        &[
            "netns", "exec", ns, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-W", "1", dest,
        ],
    );
    r.code == 1 && r.stdout.contains(" 0 received")
}

/// The `isolated` that `link list` gives each of `names` in `ns`.
fn listed_isolation(ns: &str, names: &[&str]) -> Vec<Option<bool>> {
    let l = link_list(ns);
    names.iter().map(|n| listed(&l, n).isolated).collect()
}

#[test]
fn isolated_bridge_ports_cannot_reach_each_other_but_reach_the_rest() {
    let lab = Lab::new();
    let hub = quiet_ns(&lab, "hub");
    nsctl(&["--ns", &hub, "bridge", "add", "br0", "--up"]).ok();
    let mut clients = vec![];
    for i in 1..=3 {
        let c = quiet_ns(&lab, &format!("c{i}"));
        nsctl_line(&format!(
            "--ns {hub} veth add p{i} --peer e0 --peer-ns {c} --master br0 --up"
        ))
        .ok();
        nsctl_line(&format!("--ns {c} addr add 10.76.0.{i}/24 --dev e0")).ok();
        clients.push(c);
    }
    let (c1, c2, c3) = (&clients[0], &clients[1], &clients[2]);
    assert!(ping(c1, "10.76.0.2", 2), "before isolation: c1 -> c2");
    assert_eq!(
        listed_isolation(&hub, &["p1", "p2", "p3", "br0", "lo"]),
        [Some(false), Some(false), Some(false), None, None],
        "ports list isolated:false, the rest null"
    );

    // --check predicts and changes nothing.
    let before = settled_state(&[&hub]);
    let predicted = nsctl_line(&format!("--check --ns {hub} link set p1 --isolated on"))
        .ok()
        .json();
    assert_eq!(predicted["changed"], true, "{predicted}");
    assert_eq!(predicted["link"]["isolated"], true, "{predicted}");
    assert_same_state(
        &before,
        &settled_state(&[&hub]),
        "--check changed the kernel",
    );
    assert!(!kernel_isolated(&hub, "p1"), "--check isolated p1");

    for port in ["p1", "p2"] {
        let set = format!("--ns {hub} link set {port} --isolated on");
        let first = nsctl_line(&set).ok().json();
        if port == "p1" {
            assert_eq!(first, predicted, "--check predicted the real run");
        }
        assert_eq!(first["changed"], true, "{first}");
        assert_eq!(first["link"]["isolated"], true, "{first}");
        assert_eq!(first["link"]["master"], "br0", "{first}");
        let again = nsctl_line(&set).ok().json();
        assert_eq!(again["changed"], false, "second run: {again}");
        assert_eq!(
            again["link"], first["link"],
            "second run reports the same link"
        );
        assert!(!nsctl_line(&format!("--check {set}")).ok().changed());
    }
    assert!(kernel_isolated(&hub, "p1") && kernel_isolated(&hub, "p2"));
    assert!(!kernel_isolated(&hub, "p3"), "p3 was left alone");
    assert_eq!(
        listed_isolation(&hub, &["p1", "p2", "p3", "br0"]),
        [Some(true), Some(true), Some(false), None]
    );
    assert_links_match_ip(&hub);

    // Real traffic: the two isolated ports exchange nothing; each reaches the open one.
    assert!(
        unanswered(c1, "10.76.0.2"),
        "isolated c1 reached isolated c2"
    );
    assert!(
        unanswered(c2, "10.76.0.1"),
        "isolated c2 reached isolated c1"
    );
    assert!(ping(c1, "10.76.0.3", 2), "isolated c1 -> open c3");
    assert!(ping(c2, "10.76.0.3", 2), "isolated c2 -> open c3");
    assert!(ping(c3, "10.76.0.1", 2), "open c3 -> isolated c1");
    assert!(ping(c3, "10.76.0.2", 2), "open c3 -> isolated c2");

    // Off again: reachability is back.
    let off = format!("--ns {hub} link set p1 --isolated off");
    let r = nsctl_line(&off).ok().json();
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["link"]["isolated"], false, "{r}");
    assert!(!nsctl_line(&off).ok().changed(), "off twice");
    assert!(!kernel_isolated(&hub, "p1"));
    assert!(ping(c1, "10.76.0.2", 2), "c1 -> c2 once p1 is open again");
    assert!(ping(c2, "10.76.0.1", 2), "c2 -> c1 once p1 is open again");

    // Master and isolation in one command: the master first, then the flag, on a link that
    // was no port; --check predicts it, a second run changes nothing.
    nsctl_line(&format!("--ns {hub} veth add q0 --peer q0p")).ok();
    twice(
        &[&hub],
        &format!("--ns {hub} link set q0 --master br0 --isolated on --up"),
    );
    assert!(kernel_isolated(&hub, "q0"));
    assert_eq!(listed_isolation(&hub, &["q0", "q0p"]), [Some(true), None]);
    finish(lab);
}

#[test]
fn isolation_of_a_link_that_is_no_bridge_port_is_refused_and_changes_nothing() {
    let lab = Lab::new();
    let a = quiet_ns(&lab, "a");
    let b = quiet_ns(&lab, "b");
    nsctl(&["--ns", &a, "bridge", "add", "br0", "--up"]).ok();
    nsctl_line(&format!("--ns {a} veth add v0 --peer v0p")).ok();
    nsctl_line(&format!("--ns {a} veth add v1 --peer v1p --master br0")).ok();
    let before = settled_state(&[&a, &b]);
    for (code, needle, cmd) in [
        (
            2,
            "v0 is not a bridge port (no master)",
            format!("--ns {a} link set v0 --isolated on"),
        ),
        (
            2,
            "v0 is not a bridge port",
            format!("--ns {a} link set v0 --isolated off --up --mtu 1400"),
        ),
        (
            2,
            "br0 is not a bridge port",
            format!("--ns {a} link set br0 --isolated on"),
        ),
        (
            2,
            "v0p is a veth",
            format!("--ns {a} link set v0 --master v0p --isolated on"),
        ),
        (
            2,
            "--nomaster",
            format!("--ns {a} link set v1 --nomaster --isolated on"),
        ),
        (2, "maybe", format!("--ns {a} link set v1 --isolated maybe")),
        (
            2,
            "--master",
            format!("--ns {a} link set v1 --netns {b} --isolated on"),
        ),
        (
            2,
            "--master",
            format!("--ns {a} veth add v2 --peer v2p --isolated"),
        ),
        (
            2,
            "not a bridge",
            format!("--ns {a} veth add v2 --peer v2p --master v0p --isolated"),
        ),
    ] {
        nsctl_line(&cmd).fails(code, needle);
        nsctl_line(&format!("--check {cmd}")).fails(code, needle);
    }
    assert_same_state(
        &before,
        &settled_state(&[&a, &b]),
        "a refused isolation changed a namespace",
    );
    finish(lab);
}

#[test]
fn veth_add_isolated_makes_an_isolated_port_and_converges_an_existing_one() {
    let lab = Lab::new();
    let hub = quiet_ns(&lab, "hub");
    let c = quiet_ns(&lab, "c");
    nsctl(&["--ns", &hub, "bridge", "add", "br0", "--up"]).ok();
    for ns in [&hub, &c] {
        // No link-local addresses: they appear when carrier does, a moment after `up`.
        nsctl_line(&format!(
            "--ns {ns} sysctl net.ipv6.conf.default.addr_gen_mode=1"
        ))
        .ok();
    }
    let add =
        format!("--ns {hub} veth add p1 --peer e0 --peer-ns {c} --master br0 --isolated --up");
    twice(&[&hub, &c], &add);
    assert!(kernel_isolated(&hub, "p1"));
    let r = nsctl_line(&add).ok().json();
    assert_eq!(
        r["veth"],
        serde_json::json!({"name": "p1", "netns": hub, "peer": "e0", "peer_netns": c,
            "master": "br0", "isolated": true, "peer_master": null, "state": "up"})
    );
    // Without --isolated an existing isolated port stays so, and says so.
    let plain = format!("--ns {hub} veth add p1 --peer e0 --peer-ns {c} --master br0 --up");
    let r = nsctl_line(&plain).ok().json();
    assert_eq!(r["changed"], false, "{r}");
    assert_eq!(r["veth"]["isolated"], true, "{r}");
    assert!(kernel_isolated(&hub, "p1"));

    // A pair that exists on the bridge with isolation off gets it: changed once.
    nsctl_line(&format!(
        "--ns {hub} veth add p2 --peer e1 --master br0 --up"
    ))
    .ok();
    assert!(!kernel_isolated(&hub, "p2"));
    let converge = format!("--ns {hub} veth add p2 --peer e1 --master br0 --up --isolated");
    let predicted = nsctl_line(&format!("--check {converge}")).ok().json();
    assert!(!kernel_isolated(&hub, "p2"), "--check isolated p2");
    let r = nsctl_line(&converge).ok().json();
    assert_eq!(r, predicted, "--check predicted it");
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["veth"]["isolated"], true, "{r}");
    assert!(kernel_isolated(&hub, "p2"));
    assert!(!nsctl_line(&converge).ok().changed(), "second run");

    // A pair moved to the bridge by veth add --isolated: master first, then the flag.
    nsctl_line(&format!("--ns {hub} veth add p3 --peer e2")).ok();
    let r = nsctl_line(&format!(
        "--ns {hub} veth add p3 --peer e2 --master br0 --isolated"
    ))
    .ok()
    .json();
    assert_eq!(r["changed"], true, "{r}");
    assert_eq!(r["veth"]["isolated"], true, "{r}");
    assert!(kernel_isolated(&hub, "p3"));
    assert_eq!(
        listed_isolation(&hub, &["p1", "p2", "p3", "e1", "br0"]),
        [Some(true), Some(true), Some(true), None, None]
    );
    assert_links_match_ip(&hub);
    finish(lab);
}

/// Holds UDP sockets in namespace `ns` until dropped: IPv4 on `v4` (wildcard), IPv6 only on `v6`
/// (wildcard), and one on 127.0.0.1:`connected` connected to 127.0.0.1:9.
struct UdpHolder(std::process::Child);

impl UdpHolder {
    fn new(ns: &str, v4: u16, v6: u16, connected: u16) -> UdpHolder {
        use std::io::BufRead;
        let code = format!(
            "import socket, sys, time\n\
             a = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); a.bind(('0.0.0.0', {v4}))\n\
             b = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)\n\
             b.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1); b.bind(('::', {v6}))\n\
             c = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); c.bind(('127.0.0.1', {connected}))\n\
             c.connect(('127.0.0.1', 9))\n\
             print('ready', flush=True)\n\
             time.sleep(60)\n"
        );
        let mut child = std::process::Command::new("ip")
            .args(["netns", "exec", ns, "python3", "-c", &code])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .expect("python3 runs");
        let mut line = String::new();
        let out = child.stdout.take().expect("its stdout");
        std::io::BufReader::new(out).read_line(&mut line).ok();
        assert_eq!(line.trim(), "ready", "the sockets are bound");
        UdpHolder(child)
    }
}

impl Drop for UdpHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The (family, local address, port) of every UDP socket `ss` shows in `ns`.
fn ss_udp(ns: &str) -> BTreeSet<(String, String, u16)> {
    let r = run("ip", &["netns", "exec", ns, "ss", "-Huan"]).ok();
    r.stdout
        .lines()
        .filter_map(|l| {
            let local = l.split_whitespace().nth(3)?;
            let (addr, port) = local.rsplit_once(':')?;
            let addr = addr.trim_start_matches('[').trim_end_matches(']');
            let addr = addr.split('%').next()?.to_string();
            let family = if addr.contains(':') { "inet6" } else { "inet" };
            let addr = if addr == "*" { "::".to_string() } else { addr };
            Some((family.to_string(), addr, port.parse().ok()?))
        })
        .collect()
}

fn sock_list(ns: &str, ports: &[u16]) -> Vec<Value> {
    let mut args = vec![
        "--ns".to_string(),
        ns.to_string(),
        "sock".into(),
        "list".into(),
        "--udp".into(),
    ];
    for p in ports {
        args.extend(["--port".to_string(), p.to_string()]);
    }
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let r = nsctl(&args).ok();
    let v = r.json();
    assert_eq!(v["changed"], false);
    v["sockets"].as_array().expect("a list of sockets").clone()
}

#[test]
fn udp_sockets_by_port_and_one_link_by_name() {
    let lab = Lab::new();
    let ns = quiet_ns(&lab, "s");
    let holder = UdpHolder::new(&ns, 40001, 40002, 40003);
    // Every socket, as ss sees them.
    let all = sock_list(&ns, &[]);
    let seen: BTreeSet<(String, String, u16)> = all
        .iter()
        .map(|s| {
            (
                s["family"].as_str().unwrap().to_string(),
                s["local"].as_str().unwrap().to_string(),
                s["port"].as_u64().unwrap() as u16,
            )
        })
        .collect();
    assert_eq!(seen, ss_udp(&ns));
    assert_eq!(seen.len(), 3, "{all:?}");
    assert!(all
        .iter()
        .all(|s| s["proto"] == "udp" && s["netns"] == ns.as_str()));
    // Only the ports asked for; a connected socket with its remote end.
    let some = sock_list(&ns, &[40003, 40002, 40009]);
    let ports: Vec<u64> = some.iter().map(|s| s["port"].as_u64().unwrap()).collect();
    assert_eq!(ports, [40002, 40003]);
    assert_eq!(some[0]["family"], "inet6");
    assert_eq!(some[0]["remote"], Value::Null);
    assert_eq!(some[1]["local"], "127.0.0.1");
    assert_eq!(some[1]["remote"], "127.0.0.1:9");
    assert!(sock_list(&ns, &[40009]).is_empty(), "a port nobody holds");
    // Asked in a batch, as the hub does.
    let batch = format!(
        "--ns {ns} sock list --udp --port 40001\n--ns {ns} link list --dev lo --no-peers\n"
    );
    let lines = run_stdin(tool_path("nsctl"), &["-b", "-"], Some(&batch))
        .ok()
        .json_lines();
    assert_eq!(lines[0]["sockets"][0]["port"], 40001);
    assert_eq!(lines[1]["links"][0]["name"], "lo");
    drop(holder);
    assert!(
        sock_list(&ns, &[40001, 40002, 40003]).is_empty(),
        "gone with their process"
    );
    // Bad ports are refused, naming the value; --udp is required.
    nsctl(&["--ns", &ns, "sock", "list", "--udp", "--port", "0"]).fails(2, "0");
    nsctl(&["--ns", &ns, "sock", "list", "--udp", "--port", "70000"]).fails(2, "70000");
    nsctl(&["--ns", &ns, "sock", "list"]).fails(2, "--udp");
    // One link by name, with its addresses; a missing one is an empty list.
    let lo = nsctl(&["--ns", &ns, "link", "list", "--dev", "lo"])
        .ok()
        .json();
    let links = lo["links"].as_array().unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(links[0]["name"], "lo");
    let addrs: Vec<&str> = links[0]["addresses"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert!(addrs.contains(&"127.0.0.1/8"), "{addrs:?}");
    let none = nsctl(&["--ns", &ns, "link", "list", "--dev", "nope0"])
        .ok()
        .json();
    assert_eq!(none, serde_json::json!({"changed": false, "links": []}));
    finish(lab);
}
