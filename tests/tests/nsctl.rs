//! nsctl against the real kernel: namespaces, veths, bridges, links, addresses, sysctls, batch
//! mode. Every claim nsctl makes in JSON is checked with `ip -j`, pings or /proc.

use std::collections::BTreeSet;
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
    index: u32,
    kind: Option<String>,
    state: String,
    master: Option<String>,
    mtu: u32,
    addresses: Vec<String>,
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
        let up = t["flags"].as_array().unwrap().iter().any(|f| f == "UP");
        assert_eq!(
            l.state,
            if up { "up" } else { "down" },
            "{ns} {}: state",
            l.name
        );
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
fn settled_state(nses: &[&str]) -> String {
    let mut prev = state(nses);
    for _ in 0..20 {
        std::thread::sleep(Duration::from_millis(300));
        let cur = state(nses);
        if cur == prev {
            return cur;
        }
        prev = cur;
    }
    prev
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
    std::thread::sleep(Duration::from_millis(200));
    assert!(nsctl(&["netns", "del", &a]).ok().changed());
    assert!(!run("ip", &["netns", "list"]).stdout.contains(&a));
    sleeper.kill().unwrap();
    sleeper.wait().unwrap();
    // With a gone, the veth goes too: b's end disappears once the namespace is freed.
    let mut gone = false;
    for _ in 0..50 {
        if ip_json(Some(&b), &["link", "show"])
            .as_array()
            .unwrap()
            .iter()
            .all(|l| l["ifname"] != "x1")
        {
            gone = true;
            break;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    assert!(
        gone,
        "x1 still in {b} after its peer's namespace was deleted"
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
        format!("--ns {x} link set v2 --nomaster"),
        format!("--ns {x} link set v2p --netns {y} --up --master bry"),
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
