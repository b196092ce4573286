//! routectl against the real kernel: policy routing proven with real packets between test
//! namespaces, `rule list` against `ip -j rule`, idempotency, --check, bad input, and VRF
//! (exercised where the kernel has it, reported as missing where it does not).

use std::collections::BTreeMap;

use niransix_tests::*;
use serde::{de::DeserializeOwned, Deserialize, Serialize};
use serde_json::{json, Value};

/// `routectl --ns NS ARGS...`
fn rt(ns: &str, args: &[&str]) -> Run {
    let mut full = vec!["--ns", ns];
    full.extend_from_slice(args);
    tool("routectl", &full)
}

/// A rule as routectl prints it (docs/routectl.md); unknown keys fail, and [`parse_exact`]
/// fails a missing one.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    family: String,
    netns: Option<String>,
    priority: Option<u32>,
    not: bool,
    src: Option<String>,
    srclen: Option<u8>,
    dst: Option<String>,
    dstlen: Option<u8>,
    tos: Option<u8>,
    fwmark: Option<u32>,
    fwmask: Option<u32>,
    iif: Option<String>,
    iif_detached: bool,
    oif: Option<String>,
    oif_detached: bool,
    l3mdev: bool,
    uidrange: Option<String>,
    proto: Option<Value>,
    sport: Option<String>,
    dport: Option<String>,
    suppress_prefixlength: Option<u32>,
    suppress_ifgroup: Option<u32>,
    tun_id: Option<u64>,
    realms: Option<String>,
    protocol: Option<Value>,
    table: Option<Value>,
    table_id: Option<u32>,
    action: Value,
    goto: Option<u32>,
    unresolved: bool,
}

/// A route as routectl prints it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Route {
    family: String,
    netns: Option<String>,
    #[serde(rename = "type")]
    kind: String,
    dst: String,
    gateway: Option<String>,
    dev: Option<String>,
    prefsrc: Option<String>,
    table: Value,
    table_id: u32,
    metric: u32,
    proto: Value,
    scope: String,
    flags: Vec<String>,
    mtu: Option<u32>,
    metrics: serde_json::Map<String, Value>,
    expires: Option<i32>,
    pref: Option<String>,
    nexthops: Vec<Nexthop>,
    nhid: Option<u32>,
}

#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
struct Nexthop {
    gateway: Option<String>,
    dev: Option<String>,
    weight: u16,
    flags: Vec<String>,
}

/// `v` as a `T`, which must print back to exactly `v`: no key unknown, none missing.
#[track_caller]
fn parse_exact<T: DeserializeOwned + Serialize>(v: &Value) -> T {
    let t: T =
        serde_json::from_value(v.clone()).unwrap_or_else(|e| panic!("unexpected shape ({e}): {v}"));
    assert_eq!(&serde_json::to_value(&t).unwrap(), v, "a key is missing");
    t
}

/// The objects under `key` of a command's JSON, each parsed exactly.
#[track_caller]
fn listed<T: DeserializeOwned + Serialize>(run: &Run, key: &str) -> Vec<T> {
    let v = run.json();
    v[key]
        .as_array()
        .unwrap_or_else(|| panic!("no {key} array: {v}"))
        .iter()
        .map(parse_exact)
        .collect()
}

/// What iproute2 prints as a name or, with `-N`, as a number: the name when the two differ,
/// else the number (routectl's `table`, `proto`, `protocol`).
fn name_or_number(named: &Value, numeric: &Value) -> Value {
    match (named.as_str(), numeric.as_str()) {
        (Some(a), Some(b)) if a != b => json!(a),
        (_, Some(b)) => json!(b.parse::<u64>().expect("a number")),
        _ => Value::Null,
    }
}

fn host_len(family: &str) -> u8 {
    if family == "inet" {
        32
    } else {
        128
    }
}

/// A hex string of `ip -j` (`"0xca6c"`) as a number.
fn hex(v: &Value) -> Option<u32> {
    v.as_str()
        .map(|s| u32::from_str_radix(s.trim_start_matches("0x"), 16).expect("hex"))
}

/// `sport`/`sport_start`+`sport_end` of `ip -j rule` as the flag writes it.
fn port_range(ip: &Value, key: &str) -> Option<String> {
    match (
        &ip[key],
        &ip[format!("{key}_start")],
        &ip[format!("{key}_end")],
    ) {
        (Value::Number(p), _, _) => Some(p.to_string()),
        (_, Value::Number(a), Value::Number(b)) => Some(format!("{a}-{b}")),
        _ => None,
    }
}

/// `ip -j -d [-N] rule show` of one family (`"inet"`, `"inet6"`) of `ns` in routectl's terms,
/// field by field: what `rule list` must print.
fn ip_rules(ns: &str, family: &str) -> Vec<Rule> {
    let fam = if family == "inet" { "-4" } else { "-6" };
    let named = ip_json(Some(ns), &[fam, "-d", "rule", "show"]);
    let numeric = ip_json(Some(ns), &["-N", fam, "-d", "rule", "show"]);
    let (named, numeric) = (named.as_array().unwrap(), numeric.as_array().unwrap());
    assert_eq!(named.len(), numeric.len());
    named
        .iter()
        .zip(numeric)
        .map(|(ip, n)| {
            let addr = |key: &str| {
                let a = ip[key].as_str().filter(|a| *a != "all")?;
                let len = ip[format!("{key}len")]
                    .as_u64()
                    .map_or(host_len(family), |l| l as u8);
                Some((a.to_string(), len))
            };
            let (src, dst) = (addr("src"), addr("dst"));
            let fwmark = hex(&n["fwmark"]);
            let ipproto = n["ipproto"].as_str().map(|p| {
                match p.trim_start_matches("ipproto-").parse::<u32>().unwrap() {
                    6 => json!("tcp"),
                    17 => json!("udp"),
                    other => json!(other),
                }
            });
            let action = match (ip.get("action"), ip.get("goto"), ip.get("nop")) {
                (Some(a), _, _) => a.clone(),
                (_, Some(_), _) => json!("goto"),
                (_, _, Some(_)) => json!("nop"),
                _ => json!("lookup"),
            };
            let table = name_or_number(&ip["table"], &n["table"]);
            Rule {
                family: family.into(),
                netns: Some(ns.into()),
                priority: ip["priority"].as_u64().map(|p| p as u32),
                not: ip.get("not").is_some(),
                srclen: src.as_ref().map(|s| s.1),
                src: src.map(|s| s.0),
                dstlen: dst.as_ref().map(|d| d.1),
                dst: dst.map(|d| d.0),
                tos: hex(&n["tos"]).map(|t| t as u8),
                fwmark,
                fwmask: hex(&n["fwmask"]).or(fwmark.map(|_| u32::MAX)),
                iif: ip["iif"].as_str().map(String::from),
                iif_detached: ip.get("iif_detached").is_some(),
                oif: ip["oif"].as_str().map(String::from),
                oif_detached: ip.get("oif_detached").is_some(),
                l3mdev: ip.get("l3mdev").is_some(),
                uidrange: ip["uid_start"]
                    .as_u64()
                    .map(|a| format!("{a}-{}", ip["uid_end"])),
                proto: ipproto,
                sport: port_range(ip, "sport"),
                dport: port_range(ip, "dport"),
                suppress_prefixlength: ip["suppress_prefixlen"].as_u64().map(|n| n as u32),
                suppress_ifgroup: n["suppress_ifgroup"].as_str().map(|g| g.parse().unwrap()),
                tun_id: ip["tun_id"].as_u64(),
                realms: match (n["flow_from"].as_str(), n["flow_to"].as_str()) {
                    (Some(from), Some(to)) => Some(format!("{from}/{to}")),
                    (None, Some(to)) => Some(to.to_string()),
                    _ => None,
                },
                protocol: Some(name_or_number(&ip["protocol"], &n["protocol"])),
                table_id: n["table"].as_str().map(|t| t.parse().unwrap()),
                table: (!table.is_null()).then_some(table),
                action,
                goto: ip["goto"].as_u64().map(|g| g as u32),
                unresolved: ip.get("unresolved").is_some(),
            }
        })
        .collect()
}

/// `ip -j -d [-N] route show table all` of one family of `ns` in routectl's terms: what
/// `route list --table all` must print.
fn ip_routes(ns: &str, family: &str) -> Vec<Route> {
    let fam = if family == "inet" { "-4" } else { "-6" };
    // The table read twice (names, numbers): the kernel adds some routes of a link just
    // brought up a moment later (IPv6 link-local and multicast), so a pair that differs is read
    // again.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    let (named, numeric) = loop {
        let named = ip_json(Some(ns), &[fam, "-d", "route", "show", "table", "all"]);
        let numeric = ip_json(
            Some(ns),
            &["-N", fam, "-d", "route", "show", "table", "all"],
        );
        if named.as_array().map(Vec::len) == numeric.as_array().map(Vec::len) {
            break (named, numeric);
        }
        assert!(
            std::time::Instant::now() < deadline,
            "ip route show kept changing between two reads: {named} / {numeric}"
        );
    };
    let (named, numeric) = (named.as_array().unwrap(), numeric.as_array().unwrap());
    let text = |v: &Value| v.as_str().map(String::from);
    let flags = |v: &Value| -> Vec<String> {
        v.as_array()
            .unwrap()
            .iter()
            .map(|f| f.as_str().unwrap().to_string())
            .collect()
    };
    named
        .iter()
        .zip(numeric)
        .map(|(ip, n)| {
            let dst = ip["dst"].as_str().unwrap();
            let dst = if dst == "default" || dst.contains('/') {
                dst.to_string()
            } else {
                format!("{dst}/{}", host_len(family))
            };
            Route {
                family: family.into(),
                netns: Some(ns.into()),
                kind: text(&ip["type"]).unwrap(),
                dst,
                gateway: text(&ip["gateway"]),
                dev: text(&ip["dev"]),
                prefsrc: text(&ip["prefsrc"]),
                table: name_or_number(&ip["table"], &n["table"]),
                table_id: n["table"].as_str().unwrap().parse().unwrap(),
                metric: ip["metric"].as_u64().unwrap_or(0) as u32,
                proto: name_or_number(&ip["protocol"], &n["protocol"]),
                scope: text(&ip["scope"]).unwrap(),
                flags: flags(&ip["flags"]),
                mtu: ip["metrics"]
                    .as_array()
                    .and_then(|ms| ms.iter().find_map(|m| m["mtu"].as_u64()))
                    .map(|m| m as u32),
                metrics: ip["metrics"]
                    .as_array()
                    .and_then(|ms| ms.first())
                    .and_then(Value::as_object)
                    .cloned()
                    .map(|mut ms| {
                        ms.remove("mtu");
                        ms
                    })
                    .unwrap_or_default(),
                expires: ip["expires"].as_i64().map(|e| e as i32),
                pref: text(&ip["pref"]),
                nexthops: ip["nexthops"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|h| Nexthop {
                        gateway: text(&h["gateway"]),
                        dev: text(&h["dev"]),
                        weight: h["weight"].as_u64().unwrap() as u16,
                        flags: flags(&h["flags"]),
                    })
                    .collect(),
                nhid: ip["nhid"].as_u64().map(|n| n as u32),
            }
        })
        .collect()
}

/// `routectl --ns NS ARGS` lists under `key` exactly `theirs` (what ip says, in our terms),
/// field by field; returns our listing.
#[track_caller]
fn assert_listing<T>(ns: &str, args: &[&str], key: &str, theirs: Vec<T>) -> Vec<T>
where
    T: DeserializeOwned + Serialize + PartialEq + std::fmt::Debug,
{
    let ours: Vec<T> = listed(&rt(ns, args).ok(), key);
    assert_eq!(ours.len(), theirs.len(), "{ours:#?}\n{theirs:#?}");
    for (o, t) in ours.iter().zip(&theirs) {
        assert_eq!(o, t);
    }
    ours
}

/// `rule list` of `ns` equals `ip -j rule` of both families, field by field.
#[track_caller]
fn assert_rules_match_ip(ns: &str) -> Vec<Rule> {
    let mut theirs = ip_rules(ns, "inet");
    theirs.extend(ip_rules(ns, "inet6"));
    assert_listing(ns, &["rule", "list"], "rules", theirs)
}

/// `route list --table all` of `ns` equals `ip -j -d route show table all`, field by field.
#[track_caller]
fn assert_routes_match_ip(ns: &str) -> Vec<Route> {
    let mut theirs = ip_routes(ns, "inet");
    theirs.extend(ip_routes(ns, "inet6"));
    assert_listing(ns, &["route", "list", "--table", "all"], "routes", theirs)
}

/// A veth pair with one end in each namespace, both up, each with an address.
#[track_caller]
fn veth(a: (&str, &str, &str), b: (&str, &str, &str)) {
    let ((ans, aname, acidr), (bns, bname, bcidr)) = (a, b);
    ip_in(
        ans,
        &format!("link add {aname} type veth peer name {bname} netns {bns}"),
    );
    ip_in(ans, &format!("addr add {acidr} dev {aname}"));
    ip_in(bns, &format!("addr add {bcidr} dev {bname}"));
    ip_in(ans, &format!("link set {aname} up"));
    ip_in(bns, &format!("link set {bname} up"));
    // Wait for carrier on both ends, so routes are not `linkdown` and the first ping counts.
    sh(&format!(
        "for i in $(seq 50); do \
           ip -n {ans} link show {aname} | grep -q LOWER_UP && \
           ip -n {bns} link show {bname} | grep -q LOWER_UP && exit 0; sleep 0.05; done; exit 1"
    ))
    .ok();
}

/// An nftables table `inet count` in `ns` whose rules count packets; each rule carries a
/// comment naming the counter.
fn counters_setup(ns: &str, hook: &str, rules: &[(&str, &str)]) {
    let mut text = format!(
        "table inet count {{ chain c {{ type filter hook {hook} priority -300; policy accept;\n"
    );
    for (name, expr) in rules {
        text.push_str(&format!("{expr} counter comment \"{name}\"\n"));
    }
    text.push_str("}\n}\n");
    run_stdin("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(&text)).ok();
}

/// Current packet counts of the `count` table in `ns`, by comment.
fn counters(ns: &str) -> BTreeMap<String, u64> {
    let out = nsh(ns, "nft -j list table inet count").ok();
    let v: Value = serde_json::from_str(&out.stdout).expect("nft -j output");
    let mut map = BTreeMap::new();
    for item in v["nftables"].as_array().expect("nftables array") {
        let Some(rule) = item.get("rule") else {
            continue;
        };
        let name = rule["comment"].as_str().unwrap_or_default().to_string();
        let packets = rule["expr"]
            .as_array()
            .into_iter()
            .flatten()
            .find_map(|e| e.get("counter").and_then(|c| c["packets"].as_u64()))
            .unwrap_or(0);
        map.insert(name, packets);
    }
    map
}

fn ping_from(ns: &str, src: &str, dest: &str, count: u32) -> bool {
    nsh(
        ns,
        &format!("ping -n -q -c {count} -i 0.2 -W 1 -I {src} {dest}"),
    )
    .code
        == 0
}

/// How many packets each counter of each namespace in `nses` (see `counters`) saw while
/// `traffic` ran.
#[track_caller]
fn seen<const N: usize>(nses: [&str; N], traffic: impl FnOnce()) -> [BTreeMap<String, u64>; N] {
    let before = nses.map(counters);
    traffic();
    let mut moved = nses.map(counters);
    for (after, before) in moved.iter_mut().zip(&before) {
        for (name, n) in after.iter_mut() {
            *n -= before[name];
        }
    }
    moved
}

/// What routectl can change in `ns`: non-kernel routes of every table, rules of both families,
/// links (name, kind, master). Unlike the kit's `snapshot` it also leaves out the kernel's own
/// routes and the route flags, which settle on their own while a fresh veth comes up.
fn state(ns: &str) -> String {
    let routes = "[.[] | select(.protocol != \"kernel\") | del(.flags)]";
    let links = "[.[] | {ifname, master, kind: .linkinfo.info_kind}]";
    sh(&format!(
        "set -o pipefail; ip -n {ns} -j route show table all | jq -c '{routes}' && \
         ip -n {ns} -6 -j route show table all | jq -c '{routes}' && \
         ip -n {ns} -j rule show && ip -n {ns} -6 -j rule show && \
         ip -n {ns} -j -d link show | jq -c '{links}'"
    ))
    .ok()
    .stdout
}

/// Chaining hops by source (docs/scenarios/wireguard-chaining-policy-routing.txt): clients on
/// two ranges behind `hop`; range A is sent to a second hop by a rule and a default route in
/// table 100, range B leaves through the main table; the direct routes in table 100 keep
/// client-to-client traffic local. Then per-range SNAT lets the next hops tell them apart.
#[test]
fn chaining_hops_by_source() {
    let lab = Lab::new();
    let ca = lab.netns("ca");
    let cb = lab.netns("cb");
    let hop = lab.netns("hop");
    let wan = lab.netns("wan");
    let hop2 = lab.netns("hop2");
    let n = |s: &str| lab.name(s);
    veth(
        (&ca, &n("ca"), "10.10.1.2/24"),
        (&hop, &n("ha"), "10.10.1.1/24"),
    );
    veth(
        (&cb, &n("cb"), "10.10.2.2/24"),
        (&hop, &n("hb"), "10.10.2.1/24"),
    );
    veth(
        (&hop, &n("up1"), "10.20.0.1/24"),
        (&wan, &n("w"), "10.20.0.2/24"),
    );
    veth(
        (&hop, &n("up2"), "10.30.0.1/24"),
        (&hop2, &n("h2"), "10.30.0.2/24"),
    );
    ip_in(&ca, "route add default via 10.10.1.1");
    ip_in(&cb, "route add default via 10.10.2.1");
    sysctl_in(&hop, "net.ipv4.ip_forward=1");
    // The same "internet" address sits behind both exits; only the path differs.
    for ns in [&wan, &hop2] {
        ip_in(ns, "addr add 198.51.100.1/32 dev lo");
    }
    ip_in(&wan, "route add 10.10.0.0/16 via 10.20.0.1");
    ip_in(&hop2, "route add 10.10.0.0/16 via 10.30.0.1");
    let echo = "icmp type echo-request";
    for ns in [&wan, &hop2] {
        counters_setup(
            ns,
            "prerouting",
            &[
                ("a", &format!("ip saddr 10.10.1.2 {echo}")),
                ("b", &format!("ip saddr 10.10.2.2 {echo}")),
                ("nat_a", &format!("ip saddr 10.30.0.101 {echo}")),
                ("nat_b", &format!("ip saddr 10.20.0.102 {echo}")),
            ],
        );
    }
    rt(&hop, &["route", "add", "default", "--via", "10.20.0.2"]).ok();

    // Without policy routing both ranges leave through the main table (wan).
    let [w, h] = seen([&wan, &hop2], || {
        assert!(ping_from(&ca, "10.10.1.2", "198.51.100.1", 3));
        assert!(ping_from(&cb, "10.10.2.2", "198.51.100.1", 3));
    });
    assert_eq!(w["a"], 3, "range A should use wan before the rule");
    assert_eq!(h["a"], 0);

    // Range A: `ip rule add from 10.10.1.0/24 lookup 100` + default via the second hop.
    let r = rt(
        &hop,
        &["rule", "add", "--from", "10.10.1.0/24", "--table", "100"],
    )
    .ok();
    assert!(r.changed());
    assert_eq!(r.json()["rule"]["src"], "10.10.1.0");
    rt(
        &hop,
        &[
            "route",
            "add",
            "default",
            "--via",
            "10.30.0.2",
            "--table",
            "100",
        ],
    )
    .ok();
    let [w, h] = seen([&wan, &hop2], || {
        assert!(ping_from(&ca, "10.10.1.2", "198.51.100.1", 4));
        assert!(ping_from(&cb, "10.10.2.2", "198.51.100.1", 4));
    });
    assert_eq!(h["a"], 4, "range A must leave by the second hop");
    assert_eq!(w["a"], 0, "range A must not use the main table");
    assert_eq!(w["b"], 4, "range B must leave by the main table");
    assert_eq!(h["b"], 0, "range B must not reach the second hop");

    // Client to client: without direct routes in table 100, A's packets to B follow the
    // rule to the second hop and are lost there; the two direct routes keep them local.
    let [h] = seen([&hop2], || {
        assert!(!ping_from(&ca, "10.10.1.2", "10.10.2.2", 2))
    });
    assert_eq!(h["a"], 2, "A->B should have leaked to the second hop");
    for (net, dev) in [("10.10.1.0/24", n("ha")), ("10.10.2.0/24", n("hb"))] {
        let r = rt(
            &hop,
            &["route", "add", net, "--dev", &dev, "--table", "100"],
        )
        .ok();
        assert!(r.changed());
        assert_eq!(r.json()["route"]["scope"], "link");
    }
    let [h] = seen([&hop2], || {
        assert!(ping_from(&ca, "10.10.1.2", "10.10.2.2", 3))
    });
    assert_eq!(h["a"], 0, "A->B must stay local");
    let tbl = ip_json(Some(&hop), &["route", "show", "table", "100"]);
    assert_eq!(tbl.as_array().unwrap().len(), 3, "table 100: {tbl}");

    // Per-range SNAT: the next hops no longer route 10.10.0.0/16 back, yet each still sees
    // which range a packet came from by its translated source.
    ip_in(&wan, "route del 10.10.0.0/16");
    ip_in(&hop2, "route del 10.10.0.0/16");
    ip_in(&hop, &format!("addr add 10.30.0.101/24 dev {}", n("up2")));
    ip_in(&hop, &format!("addr add 10.20.0.102/24 dev {}", n("up1")));
    snat(&hop, "10.10.1.0/24", &n("up2"), "10.30.0.101");
    snat(&hop, "10.10.2.0/24", &n("up1"), "10.20.0.102");
    let [w, h] = seen([&wan, &hop2], || {
        assert!(ping_from(&ca, "10.10.1.2", "198.51.100.1", 3));
        assert!(ping_from(&cb, "10.10.2.2", "198.51.100.1", 3));
    });
    assert_eq!(h["nat_a"], 3, "second hop sees range A as 10.30.0.101");
    assert_eq!(w["nat_b"], 3, "main exit sees range B as 10.20.0.102");
    assert_eq!(h["nat_b"] + w["nat_a"], 0);
    assert_eq!(h["a"] + w["b"], 0);
}

/// Source NAT of `from` leaving `oif` to `to`: natctl when it is built and takes the
/// command, else plain nft (natctl is developed alongside).
fn snat(ns: &str, from: &str, oif: &str, to: &str) {
    let natctl = bin_dir().join("natctl");
    if natctl.exists() {
        let r = run(
            &natctl,
            &["--ns", ns, "snat", "--src", from, "--oif", oif, "--to", to],
        );
        if r.code == 0 {
            eprintln!("snat {from} -> {to} via natctl");
            return;
        }
        eprintln!("natctl snat unavailable ({}), using nft", r.stderr.trim());
    }
    let text = format!(
        "table ip rtnat {{ chain post {{ type nat hook postrouting priority 100;\n\
         ip saddr {from} oifname \"{oif}\" snat to {to}\n}}\n}}\n"
    );
    run_stdin("ip", &["netns", "exec", ns, "nft", "-f", "-"], Some(&text)).ok();
    eprintln!("snat {from} -> {to} via nft (natctl not built)");
}

/// Return-path routing ("原路返回", docs/scenarios/wireguard-site-networking.txt): a router
/// whose default route points into a tunnel answers pings to its WAN address through the
/// tunnel (lost) until `rule add --from WAN_ADDR --table wan` and a default route in that
/// table send the replies back out of the WAN.
#[test]
fn return_path_by_source_address() {
    let lab = Lab::new();
    let router = lab.netns("r");
    let ext = lab.netns("ext");
    let peer = lab.netns("peer");
    let n = |s: &str| lab.name(s);
    veth(
        (&router, &n("wan"), "10.40.0.2/24"),
        (&ext, &n("e"), "10.40.0.1/24"),
    );
    veth(
        (&router, &n("tun"), "10.50.0.2/24"),
        (&peer, &n("p"), "10.50.0.1/24"),
    );
    ip_in(&ext, "addr add 203.0.113.5/32 dev lo");
    rt(&router, &["route", "add", "default", "--via", "10.50.0.1"]).ok();
    counters_setup(
        &peer,
        "prerouting",
        &[("reply", "ip saddr 10.40.0.2 icmp type echo-reply")],
    );

    let [p] = seen([&peer], || {
        assert!(
            !ping_from(&ext, "203.0.113.5", "10.40.0.2", 2),
            "without the rule the reply must go into the tunnel"
        );
    });
    assert_eq!(p["reply"], 2, "replies should have left by the tunnel");

    rt(
        &router,
        &[
            "rule",
            "add",
            "--from",
            "10.40.0.2",
            "--table",
            "10",
            "--priority",
            "3",
        ],
    )
    .ok();
    rt(
        &router,
        &[
            "route",
            "add",
            "default",
            "--via",
            "10.40.0.1",
            "--dev",
            &n("wan"),
            "--table",
            "10",
        ],
    )
    .ok();
    let rules = ip_json(Some(&router), &["rule", "show", "priority", "3"]);
    assert_eq!(rules[0]["src"], "10.40.0.2");
    assert_eq!(rules[0]["table"], "10");
    let [p] = seen([&peer], || {
        assert!(ping_from(&ext, "203.0.113.5", "10.40.0.2", 3))
    });
    assert_eq!(p["reply"], 0, "replies must now leave by the WAN");
}

/// `--fwmark N/MASK` selects a table for marked traffic only (ping -m sets SO_MARK).
#[test]
fn fwmark_with_mask_selects_table() {
    let lab = Lab::new();
    let m = lab.netns("m");
    let far = lab.netns("far");
    veth(
        (&m, &lab.name("m"), "10.60.0.1/24"),
        (&far, &lab.name("f"), "10.60.0.2/24"),
    );
    ip_in(&far, "addr add 198.51.100.7/32 dev lo");
    rt(
        &m,
        &[
            "route",
            "add",
            "198.51.100.0/24",
            "--via",
            "10.60.0.2",
            "--table",
            "20",
        ],
    )
    .ok();
    let r = rt(
        &m,
        &[
            "rule",
            "add",
            "--fwmark",
            "0x10/0xf0",
            "--table",
            "20",
            "--priority",
            "100",
        ],
    )
    .ok();
    let rule: Rule = parse_exact(&r.json()["rule"]);
    assert_eq!((rule.fwmark, rule.fwmask), (Some(0x10), Some(0xf0)));
    assert_eq!((rule.table, rule.table_id), (Some(json!(20)), Some(20)));
    let get = |mark: &str| sh(&format!("ip -n {m} -j route get 198.51.100.7 mark {mark}"));
    let via = get("0x13").ok().stdout;
    assert!(
        via.contains("\"gateway\":\"10.60.0.2\""),
        "mark 0x13 uses table 20: {via}"
    );
    assert_ne!(
        get("0x23").code,
        0,
        "mark 0x23 & 0xf0 != 0x10: main has no route"
    );
    assert!(nsh(&m, "ping -n -q -c 2 -i 0.2 -W 1 -m 19 198.51.100.7").code == 0);
    assert!(nsh(&m, "ping -n -q -c 1 -W 1 -m 35 198.51.100.7").code != 0);
    assert!(nsh(&m, "ping -n -q -c 1 -W 1 198.51.100.7").code != 0);
}

/// `rule list` shows the same rules with the same fields as `ip -j rule show` (and -6), for
/// rules routectl added.
#[test]
fn rule_list_matches_ip() {
    let lab = Lab::new();
    let ns = lab.netns("l");
    let dev = lab.name("l0");
    veth(
        (&ns, &dev, "10.70.0.1/24"),
        (&ns, &lab.name("l1"), "10.70.0.2/24"),
    );
    let adds: &[&[&str]] = &[
        &["--from", "10.1.0.0/24", "--table", "100"],
        &[
            "--from",
            "10.1.2.3",
            "--to",
            "10.9.0.0/16",
            "--table",
            "main",
            "--priority",
            "500",
        ],
        &["--fwmark", "0x5", "--table", "4000000000"],
        &["--fwmark", "0x100/0xff00", "--iif", &dev, "--table", "7"],
        &[
            "--oif",
            "nxgone0",
            "--to",
            "10.8.0.0/16",
            "--table",
            "default",
        ],
        &["--from", "2001:db8::/64", "--table", "200"],
        &["-6", "--fwmark", "7", "--table", "201", "--priority", "20"],
        &["--to", "2001:db8:1::1", "--iif", "lo", "--table", "202"],
        // wg-quick's pair, and the port, user and protocol selectors.
        &["--not", "--fwmark", "0xca6c", "--table", "51820"],
        &["--table", "main", "--suppress-prefixlength", "0"],
        &[
            "--uidrange",
            "100-200",
            "--ipproto",
            "tcp",
            "--sport",
            "1000-2000",
            "--dport",
            "53",
            "--table",
            "7",
        ],
        &["--ipproto", "47", "--table", "8"],
        &[
            "-6",
            "--not",
            "--from",
            "2001:db8::/32",
            "--suppress-prefixlength",
            "64",
            "--table",
            "main",
        ],
        &["-6", "--ipproto", "udp", "--dport", "53", "--table", "9"],
    ];
    for a in adds {
        let mut args = vec!["rule", "add"];
        args.extend_from_slice(a);
        assert!(rt(&ns, &args).ok().changed());
    }
    assert_eq!(rt(&ns, &["rule", "list"]).ok().json()["changed"], false);
    let ours = assert_rules_match_ip(&ns);
    let count = |fam: &str| ours.iter().filter(|r| r.family == fam).count();
    assert_eq!((count("inet"), count("inet6")), (12, 7), "{ours:#?}");
    let only6: Vec<Rule> = listed(&rt(&ns, &["rule", "list", "-6"]).ok(), "rules");
    assert_eq!(only6.len(), 7);
    assert!(only6.iter().all(|r| r.family == "inet6"));
}

/// One mutating command's whole contract in `ns`: `--check` predicts what the real run then
/// reports and changes nothing; the real run changes the kernel, which `ip -j` then reports
/// field by field as routectl lists it, with the fields of `expect`; a second run is
/// `changed: false` with the same kernel state; `del` (also `--check`ed) restores the state
/// before, and a second `del` is `changed: false`.
#[track_caller]
fn add_check_del(ns: &str, add: &[&str], del: &[&str], expect: &Value) {
    let before = state(ns);
    let check = [add, &["--check"]].concat();
    let predicted = rt(ns, &check).ok();
    assert!(predicted.changed(), "{check:?}");
    assert_eq!(state(ns), before, "--check changed something: {check:?}");
    let first = rt(ns, add).ok();
    assert!(first.changed(), "{add:?}");
    let after = state(ns);
    assert_ne!(after, before);
    let second = rt(ns, add).ok();
    assert!(!second.changed(), "second {add:?} changed something");
    assert_eq!(state(ns), after);
    assert!(!rt(ns, &check).ok().changed());
    // The prediction is what the kernel then reported, but for a kernel-chosen priority.
    let key = add[0];
    let (mut p, f) = (predicted.json()[key].clone(), first.json()[key].clone());
    if key == "rule" {
        let rules = assert_rules_match_ip(ns);
        assert!(rules.contains(&parse_exact(&f)), "{f} not in {rules:#?}");
        if p["priority"].is_null() {
            p["priority"] = f["priority"].clone();
        }
    } else {
        let routes = assert_routes_match_ip(ns);
        assert!(routes.contains(&parse_exact(&f)), "{f} not in {routes:#?}");
    }
    assert_eq!(p, f, "{add:?}");
    assert_eq!(second.json()[key], f);
    for (k, v) in expect.as_object().unwrap() {
        assert_eq!(&f[k], v, "{k} of {add:?}: {f}");
    }

    let dcheck = [del, &["--check"]].concat();
    assert!(rt(ns, &dcheck).ok().changed());
    assert_eq!(state(ns), after);
    assert!(rt(ns, del).ok().changed(), "{del:?}");
    assert_eq!(state(ns), before, "del did not restore {add:?}");
    assert!(!rt(ns, del).ok().changed());
    assert!(!rt(ns, &dcheck).ok().changed());
}

/// Every mutating command twice: the second is `changed: false` with identical kernel state;
/// `--check` predicts the real run and changes nothing; del of what is absent is a no-op.
#[test]
fn idempotency_and_check() {
    let lab = Lab::new();
    let ns = lab.netns("i");
    let gw = lab.netns("ig");
    let dev = lab.name("i0");
    veth(
        (&ns, &dev, "10.80.0.1/24"),
        (&gw, &lab.name("i1"), "10.80.0.2/24"),
    );
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            vec![
                "rule",
                "add",
                "--from",
                "10.2.0.0/16",
                "--fwmark",
                "0x1/0x1",
                "--table",
                "300",
                "--priority",
                "1000",
            ],
            vec![
                "rule",
                "del",
                "--from",
                "10.2.0.0/16",
                "--fwmark",
                "0x1/0x1",
                "--table",
                "300",
                "--priority",
                "1000",
            ],
        ),
        (
            vec!["rule", "add", "--to", "2001:db8:5::/48", "--table", "301"],
            vec!["rule", "del", "--to", "2001:db8:5::/48", "--table", "301"],
        ),
        (
            vec![
                "route",
                "add",
                "default",
                "--via",
                "10.80.0.2",
                "--table",
                "300",
                "--metric",
                "7",
            ],
            vec!["route", "del", "default", "--table", "300", "--metric", "7"],
        ),
        (
            vec![
                "route",
                "add",
                "10.99.0.0/16",
                "--dev",
                &dev,
                "--src",
                "10.80.0.1",
            ],
            vec!["route", "del", "10.99.0.0/16"],
        ),
    ];
    for (add, del) in &cases {
        add_check_del(&ns, add, del, &json!({}));
    }

    // Same destination, table and metric with another next hop: exit 1 unless --replace.
    rt(&ns, &["route", "add", "10.98.0.0/16", "--via", "10.80.0.2"]).ok();
    let before = state(&ns);
    rt(&ns, &["route", "add", "10.98.0.0/16", "--dev", &dev]).fails(1, "--replace");
    assert_eq!(state(&ns), before);
    let r = rt(
        &ns,
        &["route", "add", "10.98.0.0/16", "--dev", &dev, "--replace"],
    )
    .ok();
    assert!(r.changed());
    let routes = ip_json(Some(&ns), &["route", "show", "10.98.0.0/16"]);
    assert_eq!(routes.as_array().unwrap().len(), 1);
    assert!(routes[0].get("gateway").is_none(), "{routes}");

    // route list reads the kernel back, per table or all, field by field as ip does.
    let all = assert_routes_match_ip(&ns);
    assert!(all
        .iter()
        .any(|r| r.table == json!("local") && r.table_id == 255 && r.kind == "local"));
    assert!(all
        .iter()
        .any(|r| r.dst == "10.98.0.0/16" && r.dev.as_deref() == Some(dev.as_str())));
    let main: Vec<Route> = listed(&rt(&ns, &["route", "list"]).ok(), "routes");
    assert!(!main.is_empty() && main.iter().all(|r| r.table == json!("main")));
}

/// A rule with a priority and an action is added without reading the rules first (the
/// kernel refuses a second equal one): one already there, made by `ip rule`, is reported
/// unchanged and not added again; one the kernel calls equal that is not this one (the same
/// selectors inverted, a goto to another priority) is refused, exit 1, and nothing changes;
/// one that differs in its table is added beside it.
#[test]
fn a_rule_of_a_given_priority_is_added_once_and_an_equal_other_refused() {
    let lab = Lab::new();
    let ns = lab.netns("e");
    ip_in(&ns, "rule add fwmark 0x5 lookup 100 pref 500");
    ip_in(&ns, "rule add fwmark 0x6 goto 900 pref 600");
    let before = state(&ns);
    let add = |args: &[&str]| rt(&ns, &[&["rule", "add"][..], args].concat());
    let again = add(&["--fwmark", "0x5", "--table", "100", "--priority", "500"]).ok();
    assert!(!again.changed());
    assert_eq!(again.json()["rule"]["priority"], 500);
    assert!(
        !add(&["--fwmark", "0x6", "--goto", "900", "--priority", "600"])
            .ok()
            .changed()
    );
    assert_eq!(state(&ns), before);
    add(&[
        "--not",
        "--fwmark",
        "0x5",
        "--table",
        "100",
        "--priority",
        "500",
    ])
    .fails(1, "not this one");
    add(&["--fwmark", "0x6", "--goto", "901", "--priority", "600"]).fails(1, "not this one");
    assert_eq!(state(&ns), before);
    let other = add(&["--fwmark", "0x5", "--table", "101", "--priority", "500"]).ok();
    assert!(other.changed());
    assert_eq!(other.json()["rule"]["table_id"], 101);
    let at_500: Vec<Rule> = ip_rules(&ns, "inet")
        .into_iter()
        .filter(|r| r.priority == Some(500))
        .collect();
    assert_eq!(at_500.len(), 2, "{at_500:?}");
}

/// Bad input: exit 2 naming the value (or 1 for a missing device), stdout empty, nothing
/// changed.
#[test]
fn bad_input_changes_nothing() {
    let lab = Lab::new();
    let ns = lab.netns("b");
    veth(
        (&ns, &lab.name("b0"), "10.90.0.1/24"),
        (&ns, &lab.name("b1"), "10.90.0.2/24"),
    );
    let before = state(&ns);
    let cases: &[(&[&str], i32, &str)] = &[
        (&["rule", "add", "--table", "0"], 2, "'0'"),
        (&["rule", "add", "--table", "4294967295"], 2, "4294967295"),
        (
            &["rule", "add", "--table", "5", "--priority", "4294967296"],
            2,
            "4294967296",
        ),
        (
            &["rule", "add", "--table", "5", "--fwmark", "0x1/0xzz"],
            2,
            "0xzz",
        ),
        (
            &[
                "rule",
                "add",
                "--table",
                "5",
                "--from",
                "10.0.0.0/8",
                "--to",
                "2001:db8::/32",
            ],
            2,
            "2001:db8::/32",
        ),
        (
            &["rule", "add", "--table", "5", "-6", "--from", "10.0.0.0/8"],
            2,
            "10.0.0.0/8",
        ),
        (
            &["rule", "add", "--table", "5", "--from", "10.0.0.1/8"],
            2,
            "10.0.0.1/8",
        ),
        (&["rule", "del"], 2, "selector"),
        (
            &["route", "add", "10.5.0.0/33", "--via", "10.90.0.2"],
            2,
            "10.5.0.0/33",
        ),
        (
            &[
                "route",
                "add",
                "default",
                "--via",
                "10.90.0.2",
                "--table",
                "0",
            ],
            2,
            "'0'",
        ),
        (
            &[
                "route",
                "add",
                "default",
                "--via",
                "2001:db8::1",
                "--src",
                "10.90.0.1",
            ],
            2,
            "2001:db8::1",
        ),
        (
            &["route", "add", "10.6.0.0/16", "--dev", "nxnosuchdev"],
            1,
            "nxnosuchdev",
        ),
        (&["vrf", "add", "x", "--table", "0"], 2, "'0'"),
        (&["rule", "add", "--table", "nosuchname"], 2, "'nosuchname'"),
        (
            &["rule", "add", "--table", "5", "--uidrange", "9-1"],
            2,
            "9-1",
        ),
        (
            &["rule", "add", "--table", "5", "--uidrange", "a-b"],
            2,
            "a-b",
        ),
        (&["rule", "add", "--table", "5", "--sport", "0"], 2, "'0'"),
        (
            &["rule", "add", "--table", "5", "--dport", "70000"],
            2,
            "70000",
        ),
        (
            &["rule", "add", "--table", "5", "--dport", "1-65535"],
            2,
            "65535",
        ),
        (
            &["rule", "add", "--table", "5", "--ipproto", "tcpx"],
            2,
            "tcpx",
        ),
        (
            &["rule", "add", "--table", "5", "--ipproto", "256"],
            2,
            "256",
        ),
        (
            &[
                "rule",
                "add",
                "--table",
                "5",
                "--suppress-prefixlength",
                "33",
            ],
            2,
            "33",
        ),
        (
            &[
                "rule",
                "add",
                "-6",
                "--table",
                "5",
                "--suppress-prefixlength",
                "129",
            ],
            2,
            "129",
        ),
        (
            &[
                "route",
                "add",
                "10.6.0.0/16",
                "--nexthop",
                "via=10.90.0.2,weight=0",
            ],
            2,
            "weight '0'",
        ),
        (
            &["route", "add", "10.6.0.0/16", "--nexthop", "bogus=1"],
            2,
            "bogus=1",
        ),
        (
            &[
                "route",
                "add",
                "2001:db8::/32",
                "--nexthop",
                "via=10.90.0.2",
            ],
            2,
            "10.90.0.2",
        ),
        (
            &[
                "route",
                "add",
                "10.6.0.0/16",
                "--via",
                "10.90.0.2",
                "--nexthop",
                "via=10.90.0.2",
            ],
            2,
            "--nexthop",
        ),
        (
            &[
                "route",
                "add",
                "10.6.0.0/16",
                "--type",
                "blackhole",
                "--via",
                "10.90.0.2",
            ],
            2,
            "blackhole",
        ),
        (
            &["route", "add", "10.6.0.0/16", "--type", "bogus"],
            2,
            "bogus",
        ),
        (
            &[
                "route",
                "add",
                "10.6.0.0/16",
                "--via",
                "10.90.0.2",
                "--proto",
                "nosuchproto",
            ],
            2,
            "nosuchproto",
        ),
        (
            &[
                "route",
                "add",
                "10.6.0.0/16",
                "--via",
                "10.90.0.2",
                "--mtu",
                "20",
            ],
            2,
            "20",
        ),
        (&["route", "add", "10.6.0.0/16", "--onlink"], 2, "onlink"),
    ];
    for (args, code, needle) in cases {
        rt(&ns, args).fails(*code, needle);
        assert_eq!(state(&ns), before, "{args:?} changed something");
    }
    // The attempted action and the namespace are named.
    rt(&ns, &["route", "add", "default", "--dev", "nxnosuchdev"]).fails(
        1,
        &format!("adding route default dev nxnosuchdev in namespace {ns}"),
    );
    tool("routectl", &["--ns", &lab.name("gone"), "rule", "list"]).fails(1, &lab.name("gone"));
}

/// On a kernel without VRF (this host): `vrf add` fails with exit 1 saying so, nothing is
/// created, `vrf list` still works. Where the kernel has VRF this check does not apply.
#[test]
fn vrf_missing_kernel_support_is_reported() {
    if kernel_supports("vrf") {
        skip(
            "vrf_missing_kernel_support_is_reported",
            "kernel has VRF; this checks the message on kernels without it",
        );
        return;
    }
    let lab = Lab::new();
    let ns = lab.netns("nv");
    let before = state(&ns);
    rt(&ns, &["vrf", "add", "red", "--table", "10"])
        .fails(1, "lacks VRF support")
        .fails(1, "CONFIG_NET_VRF");
    assert_eq!(state(&ns), before);
    let l = rt(&ns, &["vrf", "list"]).ok().json();
    assert_eq!(l, json!({"changed": false, "vrfs": []}));
    assert!(!rt(&ns, &["vrf", "del", "red"]).ok().changed());
    rt(&ns, &["vrf", "enslave", "lo", "--vrf", "red"]).fails(1, "VRF red not found");
}

/// VRF for real (kernel-VM lane): add/enslave/list/del, idempotency, and packets answered
/// through the VRF's table. Skipped loudly where the kernel has no VRF.
#[test]
fn vrf_add_enslave_list_del() {
    if !needs_kernel("vrf", "vrf_add_enslave_list_del") {
        return;
    }
    let lab = Lab::new();
    let ns = lab.netns("v");
    let out = lab.netns("vo");
    let vrf = lab.name("vrf");
    let dev = lab.name("v0");
    veth(
        (&ns, &dev, "10.95.0.1/24"),
        (&out, &lab.name("o0"), "10.95.0.2/24"),
    );
    let r = rt(&ns, &["vrf", "add", &vrf, "--table", "1010"]).ok();
    assert!(r.changed());
    assert!(!rt(&ns, &["vrf", "add", &vrf, "--table", "1010"])
        .ok()
        .changed());
    rt(&ns, &["vrf", "add", &vrf, "--table", "1011"]).fails(1, "1010");
    let link = ip_json(Some(&ns), &["-d", "link", "show", &vrf]);
    assert_eq!(link[0]["linkinfo"]["info_kind"], "vrf");
    assert_eq!(link[0]["linkinfo"]["info_data"]["table"], 1010);

    assert!(rt(&ns, &["vrf", "enslave", &dev, "--vrf", &vrf, "--check"])
        .ok()
        .changed());
    let r = rt(&ns, &["vrf", "enslave", &dev, "--vrf", &vrf]).ok();
    assert_eq!(
        r.json(),
        json!({"changed": true, "member": {"name": dev, "netns": ns, "vrf": vrf}})
    );
    assert!(!rt(&ns, &["vrf", "enslave", &dev, "--vrf", &vrf])
        .ok()
        .changed());
    let l = rt(&ns, &["vrf", "list"]).ok().json();
    assert_eq!(
        l,
        json!({"changed": false, "vrfs": [
            {"name": vrf, "netns": ns, "table": 1010, "table_id": 1010, "members": [dev]}
        ]})
    );
    let link = ip_json(Some(&ns), &["link", "show", &dev]);
    assert_eq!(link[0]["master"], vrf.as_str());
    // The connected route moved into the VRF's table, and pings are answered through it.
    let t = rt(&ns, &["route", "list", "--table", "1010"]).ok().json();
    assert!(t["routes"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["dst"] == "10.95.0.0/24"));
    assert!(ping(&out, "10.95.0.1", 2));

    assert!(rt(&ns, &["vrf", "del", &vrf]).ok().changed());
    assert!(!rt(&ns, &["vrf", "del", &vrf]).ok().changed());
    assert_eq!(rt(&ns, &["vrf", "list"]).ok().json()["vrfs"], json!([]));
}

/// An rt_tables.d file naming tables for the tests that use it, removed when dropped (also
/// when the test panics). Its name carries the lab prefix, so it never collides with another
/// suite's or the machine's own files.
struct TableNames {
    path: std::path::PathBuf,
}

impl TableNames {
    /// Writes `/etc/iproute2/rt_tables.d/PREFIX.conf` with one `ID NAME` line per table.
    fn new(lab: &Lab, tables: &[(u32, &str)]) -> TableNames {
        let dir = std::path::Path::new("/etc/iproute2/rt_tables.d");
        std::fs::create_dir_all(dir).expect("rt_tables.d");
        let path = dir.join(format!("{}.conf", lab.prefix));
        let text: String = tables
            .iter()
            .map(|(id, name)| format!("{id}\t{name}\n"))
            .collect();
        std::fs::write(&path, text).expect("writing the rt_tables.d file");
        TableNames { path }
    }
}

impl Drop for TableNames {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
    }
}

/// A table id of this test process's own, from a range nothing else uses (below 2^31: `ip`
/// reads rt_tables ids as a C int).
fn own_table(n: u32) -> u32 {
    1_900_000_000 + (std::process::id() % 100_000) * 10 + n
}

/// Rules made with `ip rule` using every selector, a named table, and what routectl never
/// sets (tos, goto, nop, blackhole, realms): `rule list` prints them as `ip -j` does, field by
/// field, and a rule with `suppress_prefixlength` never like one without. `rule del` removes
/// exactly the rule whose selectors it is given.
#[test]
fn rules_made_by_ip_list_like_ip() {
    let lab = Lab::new();
    let ns = lab.netns("ri");
    let wan = lab.name("wan");
    let id = own_table(1);
    let _names = TableNames::new(&lab, &[(id, &wan)]);
    for rule in [
        "not fwmark 0xca6c lookup 51820".to_string(),
        "lookup main suppress_prefixlength 0".into(),
        "lookup main".into(),
        format!(
            "from 10.1.0.0/16 uidrange 100-200 ipproto tcp sport 1000-2000 dport 53 lookup {wan}"
        ),
        format!("to 10.2.0.1 ipproto udp dport 53 lookup {id}"),
        "ipproto 47 sport 7 lookup 8".into(),
        "iif nxgone1 oif lo fwmark 0x10/0xf0 lookup 9".into(),
        "tos 0x10 lookup 10".into(),
        "priority 50 goto 100".into(),
        "priority 51 nop".into(),
        "priority 52 from 10.3.0.0/24 blackhole".into(),
        "priority 53 realms 1/2 lookup 11".into(),
    ] {
        ip_in(&ns, &format!("rule add {rule}"));
    }
    for rule in [
        "not from 2001:db8::/32 suppress_prefixlength 64 lookup main",
        "to 2001:db8:1::/48 ipproto udp dport 500-501 uidrange 0-0 lookup 12",
        "prohibit from 2001:db8:2::/48",
    ] {
        ip_in(&ns, &format!("-6 rule add {rule}"));
    }
    let ours = assert_rules_match_ip(&ns);
    let goto = |rules: &[Rule]| rules.iter().find(|r| r.goto == Some(100)).cloned().unwrap();
    assert!(goto(&ours).unresolved, "no rule at priority 100: {ours:#?}");
    let named: Vec<&Rule> = ours
        .iter()
        .filter(|r| r.table == Some(json!(wan)))
        .collect();
    assert_eq!(named.len(), 2, "by name and by number: {ours:#?}");
    assert!(named.iter().all(|r| r.table_id == Some(id)));
    let main: Vec<&Rule> = ours
        .iter()
        .filter(|r| r.family == "inet" && r.table == Some(json!("main")))
        .collect();
    assert_eq!(main.len(), 3, "the two added and the kernel's: {main:#?}");
    assert_eq!(
        main.iter()
            .filter(|r| r.suppress_prefixlength == Some(0))
            .count(),
        1
    );

    // del with the suppress selector removes that rule only, not the plain `lookup main`.
    let del = [
        "rule",
        "del",
        "--table",
        "main",
        "--suppress-prefixlength",
        "0",
    ];
    let gone: Vec<Rule> = listed(&rt(&ns, &del).ok(), "rules");
    assert_eq!(gone.len(), 1);
    assert_eq!(gone[0].suppress_prefixlength, Some(0));
    let v4 = ip_json(Some(&ns), &["rule", "show", "table", "main"]);
    assert_eq!(v4.as_array().unwrap().len(), 2, "{v4}");
    assert!(v4
        .as_array()
        .unwrap()
        .iter()
        .all(|r| r.get("suppress_prefixlen").is_none()));
    assert!(!rt(&ns, &del).ok().changed());
    // A rule with a tos routectl does not set is never one of its own.
    assert!(!rt(&ns, &["rule", "del", "--table", "10"]).ok().changed());
    // Selectors by name: the table, the ports, the protocol as `rule list` printed them.
    let r = rt(
        &ns,
        &[
            "rule",
            "del",
            "--from",
            "10.1.0.0/16",
            "--uidrange",
            "100-200",
            "--ipproto",
            "tcp",
            "--sport",
            "1000-2000",
            "--dport",
            "53",
            "--table",
            &wan,
        ],
    )
    .ok();
    assert!(r.changed());
    assert_rules_match_ip(&ns);
    // A rule at the target priority resolves the goto.
    ip_in(&ns, "rule add priority 100 nop");
    assert!(!goto(&assert_rules_match_ip(&ns)).unresolved);
}

/// A route through a nexthop object (`nhid`), routes with metrics besides mtu (and a locked
/// mtu), an IPv6 route that expires: `route list` prints them as `ip -j -d` does, field by
/// field, and `route add` of a plain route with the same key never reports one of them as
/// already there: it refuses, naming what is there, and changes it with --replace.
#[test]
fn nhid_metrics_and_expires_list_like_ip() {
    let lab = Lab::new();
    let ns = lab.netns("rn");
    let (a, b) = (lab.name("a"), lab.name("b"));
    veth((&ns, &a, "10.0.0.1/24"), (&ns, &b, "10.0.1.1/24"));
    ip_in(&ns, &format!("addr add 2001:db8::1/64 dev {a} nodad"));
    ip_in(&ns, &format!("nexthop add id 10 via 10.0.0.2 dev {a}"));
    ip_in(&ns, "route add 10.9.0.0/24 nhid 10");
    ip_in(
        &ns,
        &format!(
            "route add 10.8.0.0/24 via 10.0.0.2 dev {a} mtu 1300 advmss 1000 initcwnd 10 \
             initrwnd 20 window 3000 rtt 100 rttvar 20 hoplimit 5 quickack 1 features ecn \
             congctl cubic fastopen_no_cookie 1"
        ),
    );
    ip_in(
        &ns,
        &format!("route add 10.7.0.0/24 via 10.0.0.2 dev {a} mtu lock 1300"),
    );
    ip_in(
        &ns,
        &format!("-6 route add 2001:db8:5::/48 via 2001:db8::2 dev {a} expires 1000"),
    );

    // `expires` counts down: ours lies between ip's before and after.
    let ip_all = || [ip_routes(&ns, "inet"), ip_routes(&ns, "inet6")].concat();
    let before = ip_all();
    let ours: Vec<Route> = listed(
        &rt(&ns, &["route", "list", "--table", "all"]).ok(),
        "routes",
    );
    let after = ip_all();
    assert_eq!(ours.len(), before.len(), "{ours:#?}\n{before:#?}");
    for ((o, then), now) in ours.iter().zip(&before).zip(&after) {
        let mut o = o.clone();
        if let (Some(e), Some(hi), Some(lo)) = (o.expires, then.expires, now.expires) {
            assert!((lo..=hi).contains(&e), "{e} not in {lo}..={hi}");
            o.expires = then.expires;
        }
        assert_eq!(&o, then);
    }
    let route = |dst: &str| ours.iter().find(|r| r.dst == dst).unwrap().clone();
    let nh = route("10.9.0.0/24");
    assert_eq!(nh.nhid, Some(10));
    assert_eq!(nh.gateway.as_deref(), Some("10.0.0.2"));
    let m = route("10.8.0.0/24");
    assert_eq!(m.mtu, Some(1300));
    assert_eq!(
        Value::Object(m.metrics),
        json!({"window": 3000, "rtt": 12, "rttvar": 5, "advmss": 1000, "hoplimit": 5,
               "initcwnd": 10, "ecn": null, "initrwnd": 20, "quickack": 1,
               "congestion": "cubic", "fastopen_no_cookie": 1})
    );
    assert!(route("10.7.0.0/24").metrics.is_empty());
    let exp = route("2001:db8:5::/48").expires.unwrap();
    assert!((990..=1000).contains(&exp), "expires {exp}");
    assert!(ours
        .iter()
        .filter(|r| r.dst != "2001:db8:5::/48")
        .all(|r| r.expires.is_none()));

    // `route del --via --dev` does not take the route through nexthop 10 for one via that
    // gateway and dev, which it lists (nor does the kernel: `ip route del ... via` refuses)
    assert_ne!(
        run(
            "ip",
            &[
                "-n",
                &ns,
                "route",
                "del",
                "10.9.0.0/24",
                "via",
                "10.0.0.2",
                "dev",
                &a
            ]
        )
        .code,
        0
    );
    let del = rt(
        &ns,
        &[
            "route",
            "del",
            "10.9.0.0/24",
            "--via",
            "10.0.0.2",
            "--dev",
            &a,
        ],
    );
    assert!(
        !del.ok().changed(),
        "the nhid route is not via 10.0.0.2 dev {a}"
    );
    let after = ip_json(Some(&ns), &["route", "show", "10.9.0.0/24"]);
    assert_eq!(after[0]["nhid"], 10, "still there: {after}");

    // A plain route with the same key is not any of them.
    let add = |args: &[&str]| rt(&ns, &[&["route", "add"][..], args].concat());
    for (dst, via, extra, named) in [
        ("10.9.0.0/24", "10.0.0.2", &[][..], "nhid 10"),
        (
            "10.8.0.0/24",
            "10.0.0.2",
            &["--mtu", "1300"][..],
            "advmss 1000",
        ),
        (
            "10.7.0.0/24",
            "10.0.0.2",
            &["--mtu", "1300"][..],
            "mtu lock 1300",
        ),
        ("2001:db8:5::/48", "2001:db8::2", &[][..], "expires"),
    ] {
        let args = [&[dst, "--via", via, "--dev", &a][..], extra].concat();
        add(&args).fails(1, named).fails(1, "--replace");
        let replaced = add(&[&args[..], &["--replace"]].concat()).ok();
        assert!(replaced.changed(), "{dst}");
        let r: Route = parse_exact(&replaced.json()["route"]);
        assert_eq!(
            (r.nhid, r.metrics.is_empty(), r.expires),
            (None, true, None),
            "{r:#?}"
        );
        assert!(!add(&args).ok().changed(), "{dst} is now the plain route");
    }
    assert_routes_match_ip(&ns);
    assert!(ip_json(Some(&ns), &["route", "show", "10.9.0.0/24"])[0]
        .get("nhid")
        .is_none());
}

/// Routes made with `ip route`: multipath, every type, onlink, mtu, pref, protocols by name and
/// number, a named table, both families: `route list` prints them as `ip -j -d` does, field by
/// field; `route del` with `--nexthop`, `--type` and `--proto` removes them.
#[test]
fn routes_made_by_ip_list_like_ip() {
    let lab = Lab::new();
    let ns = lab.netns("ro");
    let (a, b) = (lab.name("a"), lab.name("b"));
    let wan = lab.name("wan");
    let id = own_table(2);
    let _names = TableNames::new(&lab, &[(id, &wan)]);
    veth((&ns, &a, "10.0.0.1/24"), (&ns, &b, "10.0.1.1/24"));
    ip_in(&ns, &format!("addr add 2001:db8::1/64 dev {a} nodad"));
    ip_in(&ns, &format!("addr add 2001:db8:1::1/64 dev {b} nodad"));
    for route in [
        format!("10.9.0.0/16 proto bird nexthop via 10.0.0.2 dev {a} weight 2 nexthop via 10.0.1.2 dev {b}"),
        format!("10.3.0.0/16 nexthop dev {a} nexthop dev {b} weight 5"),
        "blackhole 10.8.0.0/16".into(),
        format!("unreachable 10.7.0.0/16 table {wan}"),
        "prohibit 10.6.0.0/16 metric 5".into(),
        format!("local 10.5.0.1 dev {a}"),
        format!("10.4.0.0/16 via 192.0.2.1 dev {a} onlink mtu 1300 proto 77"),
        format!("default via 10.0.0.2 table {id}"),
        format!("throw 10.10.0.0/16 table {id}"),
    ] {
        ip_in(&ns, &format!("route add {route}"));
    }
    for route in [
        format!("2001:db8:9::/48 nexthop via 2001:db8::2 dev {a} weight 3 nexthop via 2001:db8:1::2 dev {b}"),
        "2001:db8:8::/48 via 2001:db8::3 mtu 1400 pref high".into(),
        format!("2001:db8:6::/48 via fe80::1 dev {a} onlink"),
        "blackhole 2001:db8:7::/48".into(),
        format!("unreachable 2001:db8:4::/48 table {wan}"),
        format!("local 2001:db8:5::1 dev {a}"),
    ] {
        ip_in(&ns, &format!("-6 route add {route}"));
    }
    let ours = assert_routes_match_ip(&ns);
    let multipath: Vec<&Route> = ours.iter().filter(|r| !r.nexthops.is_empty()).collect();
    assert_eq!(multipath.len(), 3, "{multipath:#?}");
    assert!(multipath
        .iter()
        .all(|r| r.gateway.is_none() && r.dev.is_none()));
    let wan_routes: Vec<&Route> = ours.iter().filter(|r| r.table == json!(wan)).collect();
    assert_eq!(wan_routes.len(), 4, "{wan_routes:#?}");
    assert!(wan_routes.iter().all(|r| r.table_id == id));
    assert!(ours
        .iter()
        .any(|r| r.proto == json!(77) && r.mtu == Some(1300) && r.flags == ["onlink"]));

    // del by next hops, type and protocol; the rest stays.
    let del = |args: &[&str]| rt(&ns, &[&["route", "del"][..], args].concat()).ok();
    let hop = |via: &str, dev: &str, w: &str| format!("via={via},dev={dev},weight={w}");
    let (h1, h2) = (hop("10.0.0.2", &a, "2"), hop("10.0.1.2", &b, "1"));
    assert!(
        !del(&["10.9.0.0/16", "--nexthop", &h1]).changed(),
        "one hop is not the route"
    );
    assert!(del(&["10.9.0.0/16", "--nexthop", &h2, "--nexthop", &h1]).changed());
    assert!(!del(&["10.8.0.0/16", "--type", "prohibit"]).changed());
    assert!(del(&["10.8.0.0/16", "--type", "blackhole"]).changed());
    assert!(!del(&["10.4.0.0/16", "--proto", "bird"]).changed());
    assert!(del(&["10.4.0.0/16", "--proto", "77"]).changed());
    assert!(del(&["10.7.0.0/16", "--table", &wan]).changed());
    assert!(del(&["2001:db8:5::1", "--type", "local"]).changed());
    assert!(del(&["2001:db8:9::/48"]).changed());
    let left = assert_routes_match_ip(&ns);
    for gone in [
        "10.9.0.0/16",
        "10.8.0.0/16",
        "10.4.0.0/16",
        "10.7.0.0/16",
        "2001:db8:9::/48",
    ] {
        assert!(left.iter().all(|r| r.dst != gone), "{gone} left: {left:#?}");
    }
    assert!(left
        .iter()
        .any(|r| r.dst == "2001:db8:4::/48" && r.table == json!(wan)));
}

/// The words of an add command and of the del that undoes it.
type AddDel = (Vec<String>, Vec<String>);

/// Every new flag made by routectl, IPv4 and IPv6: `--check` predicts, the kernel (`ip -j`)
/// then has it, a second run changes nothing, del undoes it.
#[test]
fn new_flags_idempotent_checked_and_seen_by_ip() {
    let lab = Lab::new();
    let ns = lab.netns("nf");
    let gw = lab.netns("nfg");
    let (dev, far) = (lab.name("n0"), lab.name("n1"));
    veth((&ns, &dev, "10.81.0.1/24"), (&gw, &far, "10.81.0.2/24"));
    ip_in(&ns, &format!("addr add 2001:db8:81::1/64 dev {dev} nodad"));
    let wan = lab.name("wan");
    let id = own_table(3);
    let _names = TableNames::new(&lab, &[(id, &wan)]);
    let nh = |via: &str, w: &str| format!("via={via},dev={dev},weight={w}");
    let (n1, n2) = (nh("10.81.0.2", "3"), nh("10.81.0.3", "1"));
    let (n6a, n6b) = (nh("2001:db8:81::2", "1"), nh("2001:db8:81::3", "2"));
    let rule = |sel: &[&str]| -> AddDel {
        let add = [&["rule", "add"][..], sel].concat();
        let del = [&["rule", "del"][..], sel].concat();
        (
            add.iter().map(|s| s.to_string()).collect(),
            del.iter().map(|s| s.to_string()).collect(),
        )
    };
    let route = |dest: &str, sel: &[&str], del_sel: &[&str]| -> AddDel {
        let add = [&["route", "add", dest][..], sel].concat();
        let del = [&["route", "del", dest][..], del_sel].concat();
        (
            add.iter().map(|s| s.to_string()).collect(),
            del.iter().map(|s| s.to_string()).collect(),
        )
    };
    let cases: Vec<(AddDel, Value)> = vec![
        (
            rule(&["--not", "--fwmark", "51820", "--table", "51820"]),
            json!({"not": true, "fwmark": 51820, "fwmask": 4294967295u32, "table": 51820}),
        ),
        (
            rule(&["--table", "main", "--suppress-prefixlength", "0"]),
            json!({"suppress_prefixlength": 0, "table": "main", "table_id": 254}),
        ),
        (
            rule(&[
                "-6",
                "--table",
                "main",
                "--suppress-prefixlength",
                "0",
                "--priority",
                "77",
            ]),
            json!({"family": "inet6", "suppress_prefixlength": 0, "priority": 77}),
        ),
        (
            rule(&[
                "--uidrange",
                "1000-1999",
                "--ipproto",
                "tcp",
                "--sport",
                "1024-65534",
                "--dport",
                "443",
                "--table",
                &wan,
            ]),
            json!({"uidrange": "1000-1999", "proto": "tcp", "sport": "1024-65534",
                   "dport": "443", "table": wan, "table_id": id}),
        ),
        (
            rule(&[
                "--to",
                "2001:db8:53::/48",
                "--ipproto",
                "udp",
                "--dport",
                "53",
                "--not",
                "--table",
                "31",
            ]),
            json!({"family": "inet6", "proto": "udp", "dport": "53", "not": true, "dstlen": 48}),
        ),
        (
            rule(&["-6", "--ipproto", "58", "--uidrange", "0", "--table", "32"]),
            json!({"proto": 58, "uidrange": "0-0"}),
        ),
        (
            route(
                "10.77.0.0/16",
                &["--type", "blackhole"],
                &["--type", "blackhole"],
            ),
            json!({"type": "blackhole", "dev": null, "scope": "global", "proto": "static"}),
        ),
        (
            route(
                "2001:db8:77::/48",
                &["--type", "unreachable", "--table", &wan],
                &["--table", &wan],
            ),
            json!({"type": "unreachable", "dev": "lo", "table": wan, "table_id": id, "pref": "medium"}),
        ),
        (
            route(
                "10.76.0.0/16",
                &["--type", "prohibit", "--metric", "9"],
                &[],
            ),
            json!({"type": "prohibit", "metric": 9}),
        ),
        (
            route(
                "10.81.0.9",
                &["--type", "local", "--dev", &dev],
                &["--type", "local"],
            ),
            json!({"type": "local", "table": "local", "scope": "host", "dst": "10.81.0.9/32"}),
        ),
        (
            route(
                "10.75.0.0/16",
                &["--nexthop", &n1, "--nexthop", &n2, "--proto", "bird"],
                &[],
            ),
            json!({"proto": "bird", "gateway": null, "dev": null, "nexthops": [
                {"gateway": "10.81.0.2", "dev": dev, "weight": 3, "flags": []},
                {"gateway": "10.81.0.3", "dev": dev, "weight": 1, "flags": []}]}),
        ),
        (
            route(
                "2001:db8:75::/48",
                &["--nexthop", &n6a, "--nexthop", &n6b],
                &[],
            ),
            json!({"nexthops": [
                {"gateway": "2001:db8:81::2", "dev": dev, "weight": 1, "flags": []},
                {"gateway": "2001:db8:81::3", "dev": dev, "weight": 2, "flags": []}]}),
        ),
        (
            route(
                "10.74.0.0/16",
                &[
                    "--via",
                    "192.0.2.1",
                    "--dev",
                    &dev,
                    "--onlink",
                    "--mtu",
                    "1280",
                    "--proto",
                    "99",
                ],
                &[],
            ),
            json!({"gateway": "192.0.2.1", "flags": ["onlink"], "mtu": 1280, "proto": "openr"}),
        ),
        (
            route(
                "2001:db8:74::/48",
                &["--via", "2001:db8:81::2", "--mtu", "1400", "--proto", "123"],
                &["--proto", "123"],
            ),
            json!({"mtu": 1400, "proto": 123, "pref": "medium", "dev": dev}),
        ),
        (
            route(
                "default",
                &["--via", "10.81.0.2", "--table", &wan],
                &["--table", &wan],
            ),
            json!({"table": wan, "table_id": id, "dev": dev}),
        ),
    ];
    for ((add, del), expect) in &cases {
        let add: Vec<&str> = add.iter().map(String::as_str).collect();
        let del: Vec<&str> = del.iter().map(String::as_str).collect();
        add_check_del(&ns, &add, &del, expect);
    }

    // A route with the same key but another type, MTU or next hops needs --replace.
    rt(&ns, &["route", "add", "10.73.0.0/16", "--via", "10.81.0.2"]).ok();
    let before = state(&ns);
    for other in [
        &["--type", "blackhole"][..],
        &["--via", "10.81.0.2", "--mtu", "1300"],
        &["--nexthop", &n1, "--nexthop", &n2],
    ] {
        rt(
            &ns,
            &[&["route", "add", "10.73.0.0/16"][..], other].concat(),
        )
        .fails(1, "--replace");
        assert_eq!(state(&ns), before);
    }
    let r = rt(
        &ns,
        &[
            "route",
            "add",
            "10.73.0.0/16",
            "--type",
            "blackhole",
            "--replace",
        ],
    )
    .ok();
    assert!(r.changed());
    let shown = ip_json(Some(&ns), &["route", "show", "10.73.0.0/16"]);
    assert_eq!(shown[0]["type"], "blackhole", "{shown}");
}

/// A blackhole route drops real packets (IPv4 and IPv6); without it they pass.
#[test]
fn blackhole_route_drops_packets() {
    let lab = Lab::new();
    let a = lab.netns("ba");
    let b = lab.netns("bb");
    veth(
        (&a, &lab.name("a"), "10.82.0.1/24"),
        (&b, &lab.name("b"), "10.82.0.2/24"),
    );
    ip_in(
        &a,
        &format!("addr add 2001:db8:82::1/64 dev {} nodad", lab.name("a")),
    );
    ip_in(
        &b,
        &format!("addr add 2001:db8:82::2/64 dev {} nodad", lab.name("b")),
    );
    for (dest, host) in [
        ("10.82.0.2", "10.82.0.2/32"),
        ("2001:db8:82::2", "2001:db8:82::2/128"),
    ] {
        assert!(
            ping(&a, dest, 2),
            "{dest} should answer before the blackhole"
        );
        let r = rt(&a, &["route", "add", host, "--type", "blackhole"]).ok();
        assert!(r.changed());
        let all = ip_json(Some(&a), &["route", "show", "table", "all"]);
        let dst = host.trim_end_matches("/32").trim_end_matches("/128");
        assert!(
            all.as_array()
                .unwrap()
                .iter()
                .any(|r| r["dst"] == dst && r["type"] == "blackhole"),
            "{all}"
        );
        assert!(
            !ping(&a, dest, 2),
            "{dest} must be dropped by the blackhole"
        );
        assert!(rt(&a, &["route", "del", host, "--type", "blackhole"])
            .ok()
            .changed());
        assert!(ping(&a, dest, 2), "{dest} should answer again");
    }
}

/// wg-quick's split routing with a veth for a tunnel: table T holds a default route into the
/// "tunnel", `not fwmark X lookup T` sends everything unmarked there, and `lookup main
/// suppress_prefixlength 0` lets every route of main but its default win first. A LAN
/// destination with a more specific main route stays on the LAN; the rest, and the LAN too once
/// the suppress rule is gone, goes through the tunnel; marked packets (the tunnel's own) take
/// the main table's default.
#[test]
fn suppress_prefixlength_split_routing() {
    let lab = Lab::new();
    let c = lab.netns("sc");
    let tun = lab.netns("st");
    let up = lab.netns("su");
    let lan = lab.netns("sl");
    let n = |s: &str| lab.name(s);
    veth(
        (&c, &n("t"), "10.83.0.1/30"),
        (&tun, &n("tp"), "10.83.0.2/30"),
    );
    veth(
        (&c, &n("u"), "10.84.0.1/24"),
        (&up, &n("up"), "10.84.0.2/24"),
    );
    veth(
        (&c, &n("l"), "192.168.83.1/24"),
        (&lan, &n("lp"), "192.168.83.2/24"),
    );
    for ns in [&tun, &up] {
        ip_in(ns, "addr add 198.51.100.9/32 dev lo");
    }
    ip_in(&c, "route add default via 10.84.0.2");
    let echo = "icmp type echo-request";
    for ns in [&tun, &up] {
        counters_setup(
            ns,
            "prerouting",
            &[
                ("far", &format!("ip daddr 198.51.100.9 {echo}")),
                ("lan", &format!("ip daddr 192.168.83.2 {echo}")),
            ],
        );
    }
    let table = "51820";
    rt(
        &c,
        &[
            "route",
            "add",
            "default",
            "--via",
            "10.83.0.2",
            "--table",
            table,
        ],
    )
    .ok();
    rt(
        &c,
        &["rule", "add", "--not", "--fwmark", table, "--table", table],
    )
    .ok();
    let suppress = ["--table", "main", "--suppress-prefixlength", "0"];
    rt(&c, &[&["rule", "add"][..], &suppress].concat()).ok();
    let rules = ip_json(Some(&c), &["rule", "show"]);
    assert!(
        rules
            .as_array()
            .unwrap()
            .iter()
            .any(|r| r["suppress_prefixlen"] == 0),
        "{rules}"
    );

    let lan_ping = || nsh(&c, "ping -n -q -c 2 -i 0.2 -W 1 192.168.83.2").code == 0;
    let [t, u] = seen([&tun, &up], || {
        assert!(ping(&c, "198.51.100.9", 3));
        assert!(lan_ping(), "the LAN's more specific main route must win");
    });
    assert_eq!(
        (t["far"], u["far"]),
        (3, 0),
        "the rest goes through the tunnel"
    );
    assert_eq!(t["lan"] + u["lan"], 0, "LAN traffic stays on the LAN");
    let [t, u] = seen([&tun, &up], || {
        assert!(
            nsh(
                &c,
                &format!("ping -n -q -c 2 -i 0.2 -W 1 -m {table} 198.51.100.9")
            )
            .code
                == 0
        );
    });
    assert_eq!(
        (t["far"], u["far"]),
        (0, 2),
        "marked packets take main's default"
    );

    // Without the suppress rule the LAN is lost into the tunnel.
    assert!(rt(&c, &[&["rule", "del"][..], &suppress].concat())
        .ok()
        .changed());
    let [t] = seen([&tun], || {
        assert!(!lan_ping(), "the LAN must now go into the tunnel")
    });
    assert_eq!(t["lan"], 2);
    assert!(rt(&c, &[&["rule", "add"][..], &suppress].concat())
        .ok()
        .changed());
    let [t] = seen([&tun], || assert!(lan_ping()));
    assert_eq!(t["lan"], 0);
}

/// Tables by the names of an rt_tables.d file: accepted by rule and route add/del and route
/// list, printed by name with `table_id`, as `ip` does; an undefined name is exit 2, naming it,
/// and changes nothing.
#[test]
fn tables_by_name() {
    let lab = Lab::new();
    let ns = lab.netns("tn");
    let gw = lab.netns("tg");
    veth(
        (&ns, &lab.name("t0"), "10.85.0.1/24"),
        (&gw, &lab.name("t1"), "10.85.0.2/24"),
    );
    let (wan, vpn) = (lab.name("wan"), lab.name("vpn"));
    let (wan_id, vpn_id) = (own_table(4), own_table(5));
    let names = TableNames::new(&lab, &[(wan_id, &wan), (vpn_id, &vpn)]);
    let r = rt(
        &ns,
        &["rule", "add", "--from", "10.85.0.0/24", "--table", &wan],
    )
    .ok();
    let rule: Rule = parse_exact(&r.json()["rule"]);
    assert_eq!(
        (rule.table, rule.table_id),
        (Some(json!(wan)), Some(wan_id))
    );
    let shown = ip_json(Some(&ns), &["-N", "rule", "show", "from", "10.85.0.0/24"]);
    assert_eq!(shown[0]["table"], wan_id.to_string(), "{shown}");
    rt(
        &ns,
        &[
            "route",
            "add",
            "default",
            "--via",
            "10.85.0.2",
            "--table",
            &vpn,
        ],
    )
    .ok();
    let listed_vpn: Vec<Route> =
        listed(&rt(&ns, &["route", "list", "--table", &vpn]).ok(), "routes");
    assert_eq!(listed_vpn.len(), 1);
    assert_eq!(
        (&listed_vpn[0].table, listed_vpn[0].table_id),
        (&json!(vpn), vpn_id)
    );
    let theirs = ip_json(Some(&ns), &["route", "show", "table", &vpn_id.to_string()]);
    assert_eq!(theirs[0]["gateway"], "10.85.0.2");
    assert_rules_match_ip(&ns);
    assert_routes_match_ip(&ns);

    let before = state(&ns);
    for args in [
        &["rule", "add", "--table", "nosuchtable"][..],
        &[
            "route",
            "add",
            "default",
            "--via",
            "10.85.0.2",
            "--table",
            "nosuchtable",
        ],
        &["route", "list", "--table", "nosuchtable"],
    ] {
        rt(&ns, args).fails(2, "'nosuchtable'");
    }
    assert_eq!(state(&ns), before);
    let del = ["rule", "del", "--from", "10.85.0.0/24", "--table", &wan];
    assert!(rt(&ns, &del).ok().changed());
    assert!(rt(&ns, &["route", "del", "default", "--table", &vpn])
        .ok()
        .changed());

    // Once the file is gone the name means nothing, and the number prints as a number.
    rt(&ns, &["rule", "add", "--fwmark", "1", "--table", &wan]).ok();
    drop(names);
    rt(&ns, &["rule", "del", "--table", &wan]).fails(2, &wan);
    let rules: Vec<Rule> = listed(&rt(&ns, &["rule", "list", "-4"]).ok(), "rules");
    assert!(rules
        .iter()
        .any(|r| r.table == Some(json!(wan_id)) && r.table_id == Some(wan_id)));
}

/// `rule add --goto P`: a marked packet skips the rules between (here one that would send it
/// elsewhere) and goes on at priority P; unresolved while no rule has priority P. Idempotent,
/// listed as `ip` lists it, and deleted by its `--goto`.
#[test]
fn goto_skips_the_rules_between() {
    let lab = Lab::new();
    let m = lab.netns("g");
    let far = lab.netns("gfar");
    veth(
        (&m, &lab.name("g"), "10.61.0.1/24"),
        (&far, &lab.name("gf"), "10.61.0.2/24"),
    );
    ip_in(&far, "addr add 198.51.100.9/32 dev lo");
    for (table, kind) in [("30", "blackhole"), ("31", "unicast")] {
        let mut args = vec!["route", "add", "198.51.100.0/24", "--table", table];
        if kind == "blackhole" {
            args.extend(["--type", "blackhole"]);
        } else {
            args.extend(["--via", "10.61.0.2"]);
        }
        rt(&m, &args).ok();
    }
    let goto = [
        "rule",
        "add",
        "--fwmark",
        "0x7",
        "--goto",
        "300",
        "--priority",
        "100",
    ];
    let added = rt(&m, &goto).ok().json();
    assert_eq!(added["changed"], true);
    assert_eq!(
        (&added["rule"]["goto"], &added["rule"]["unresolved"]),
        (&json!(300), &json!(true)),
        "no rule at 300 yet: {added}"
    );
    assert_eq!(rt(&m, &goto).ok().json()["changed"], false, "idempotent");
    let _ = assert_rules_match_ip(&m);
    // (between: everything to table 30, a blackhole; at 300: table 31, the way through)
    rt(&m, &["rule", "add", "--table", "30", "--priority", "200"]).ok();
    rt(&m, &["rule", "add", "--table", "31", "--priority", "300"]).ok();
    let listed = rt(&m, &["rule", "list"]).ok().json();
    let g = listed["rules"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["goto"] == 300)
        .unwrap_or_else(|| panic!("the goto rule: {listed}"));
    assert_eq!(
        (&g["action"], &g["unresolved"]),
        (&json!("goto"), &json!(false))
    );
    let _ = assert_rules_match_ip(&m);
    assert!(
        nsh(&m, "ping -n -q -c 2 -i 0.2 -W 1 -m 7 198.51.100.9").code == 0,
        "mark 7 skips the blackhole"
    );
    assert!(
        nsh(&m, "ping -n -q -c 1 -W 1 198.51.100.9").code != 0,
        "unmarked, the blackhole of table 30"
    );
    // a lookup rule of the same selectors is another rule; --goto deletes only the goto rule
    let lookup = [
        "rule",
        "add",
        "--fwmark",
        "0x7",
        "--table",
        "31",
        "--priority",
        "100",
    ];
    assert_eq!(rt(&m, &lookup).ok().json()["changed"], true);
    let del = rt(&m, &["rule", "del", "--fwmark", "0x7", "--goto", "300"])
        .ok()
        .json();
    assert_eq!(del["rules"].as_array().map(Vec::len), Some(1), "{del}");
    assert!(ip_rules(&m, "inet").iter().all(|r| r.goto.is_none()));
    // a goto to an earlier priority is refused, naming both
    rt(
        &m,
        &[
            "rule",
            "add",
            "--fwmark",
            "0x8",
            "--goto",
            "50",
            "--priority",
            "100",
        ],
    )
    .fails(2, "--goto 50 must be after the rule's own --priority 100");
}

/// One table of many is read alone (the kernel filters the dump: a hub's center has two routes
/// in each of a thousand tables), and holds exactly what `ip route show table T` shows; a table
/// that holds nothing is an empty list, in both families.
#[test]
fn one_table_is_read_alone() {
    let lab = Lab::new();
    let ns = lab.netns("rt");
    let (a, b) = (lab.name("a"), lab.name("b"));
    veth((&ns, &a, "10.0.0.1/24"), (&ns, &b, "10.0.1.1/24"));
    ip_in(&ns, &format!("addr add 2001:db8::1/64 dev {a} nodad"));
    for t in ["100", "1000000"] {
        for route in [
            format!("default --dev {a}"),
            "10.9.0.0/24 --via 10.0.1.2".to_string(),
            format!("2001:db8:9::/48 --dev {a}"),
        ] {
            let line = format!("route add {route} --table {t}");
            rt(&ns, &line.split_whitespace().collect::<Vec<_>>()).ok();
        }
    }
    for family in ["inet", "inet6"] {
        let flag = if family == "inet" { "-4" } else { "-6" };
        for table in ["100", "1000000", "main", "local"] {
            let theirs: Vec<Route> = ip_routes(&ns, family)
                .into_iter()
                .filter(|r| match &r.table {
                    Value::String(name) => name == table,
                    id => id.as_u64().is_some_and(|id| id.to_string() == table),
                })
                .collect();
            let ours = assert_listing(
                &ns,
                &["route", "list", flag, "--table", table],
                "routes",
                theirs,
            );
            if table != "main" {
                assert!(!ours.is_empty(), "{family} table {table}");
            }
        }
        let none = rt(&ns, &["route", "list", flag, "--table", "300"])
            .ok()
            .json();
        assert_eq!(none, json!({"changed": false, "routes": []}), "{family}");
    }
    // An add compares with its own table only: the same route in another table is no match.
    let add_in = |table: &str| {
        let line = format!("route add 10.9.0.0/24 --via 10.0.1.2 --table {table}");
        rt(&ns, &line.split_whitespace().collect::<Vec<_>>()).ok()
    };
    assert!(!add_in("100").changed());
    let new = add_in("200");
    assert!(new.changed());
    assert_eq!(new.json()["route"]["table_id"], 200);
}
