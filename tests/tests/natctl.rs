//! natctl against the real kernel: port forwards, NAPT and 1:1 NETMAP with real packets,
//! conntrack zones for overlapping networks, atomicity, concurrency, scale and bad input.
//!
//! Build the tools first (`cargo test` builds only the test crate):
//! `cargo build -p natctl -p nsctl -p routectl && cargo test -p niransix-tests --test natctl`.
//! The DNAT walkthrough is wired with nsctl, the overlapping networks' policy routing with routectl.

use std::collections::HashSet;
use std::process::{Command, Stdio};
use std::time::Instant;

use niransix_tests::*;
use serde::Deserialize;
use serde_json::Value;

/// One rule as natctl prints it (add/del: without counters; list: with them).
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RuleJson {
    id: String,
    kind: String,
    netns: Option<String>,
    family: String,
    to: Option<String>,
    src: Option<String>,
    dst: Option<String>,
    daddr: Option<String>,
    oif: Option<String>,
    iif: Option<String>,
    proto: Option<String>,
    dport: Option<String>,
    reply: Option<bool>,
    zone: Option<u16>,
    dir: Option<String>,
    set: Option<u32>,
    local: Option<bool>,
    early: Option<bool>,
    verdict: Option<String>,
    #[serde(rename = "default")]
    default_verdict: Option<String>,
    chain: Option<String>,
    handle: Option<u64>,
    packets: Option<u64>,
    bytes: Option<u64>,
    tampered: Option<bool>,
    complete: Option<bool>,
    missing: Option<Vec<MissingPart>>,
}

/// A part of a listed rule that the kernel lacks.
#[derive(Debug, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
struct MissingPart {
    part: usize,
    chain: String,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Added {
    changed: bool,
    rule: RuleJson,
}

/// `del` of an id that is not there: only the id.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Gone {
    changed: bool,
    rule: GoneRule,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct GoneRule {
    id: String,
    netns: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Flushed {
    changed: bool,
    table: String,
    netns: Option<String>,
    removed_rules: usize,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Listed {
    changed: bool,
    rules: Vec<RuleJson>,
    foreign_tables: Vec<String>,
}

fn natctl(ns: &str, args: &[&str]) -> Run {
    let mut full = vec!["--ns", ns];
    full.extend_from_slice(args);
    tool("natctl", &full)
}

/// A command's JSON, parsed into the shape it must have (unknown keys fail).
#[track_caller]
fn parse<T: serde::de::DeserializeOwned>(r: &Run) -> T {
    serde_json::from_value(r.json()).unwrap_or_else(|e| panic!("{}: {e}: {}", r.cmdline, r.stdout))
}

#[track_caller]
fn add(ns: &str, args: &[&str]) -> Added {
    parse(&natctl(ns, args).ok())
}

#[track_caller]
fn list(ns: &str) -> Vec<RuleJson> {
    let l: Listed = parse(&natctl(ns, &["list"]).ok());
    assert!(!l.changed);
    l.rules
}

/// `list`, every rule of which must be intact: what its id stands for, complete, unchanged.
#[track_caller]
fn list_intact(ns: &str) -> Vec<RuleJson> {
    let rules = list(ns);
    for r in &rules {
        assert_eq!(
            (r.tampered, r.complete, r.missing.as_deref()),
            (Some(false), Some(true), Some(&[][..])),
            "{r:?}"
        );
    }
    rules
}

/// The namespace's whole nftables ruleset, with handles: what "unchanged" is checked against.
fn ruleset(ns: &str) -> String {
    nsh(ns, "nft -a list ruleset").ok().stdout
}

/// Rules natctl put into the kernel, counted from `nft list ruleset`.
fn kernel_rule_count(ns: &str) -> usize {
    ruleset(ns).matches("comment \"natctl:").count()
}

/// A veth pair with one end in each namespace, both up.
fn veth(a: &str, a_name: &str, b: &str, b_name: &str) {
    run(
        "ip",
        &[
            "-n", a, "link", "add", a_name, "type", "veth", "peer", "name", b_name, "netns", b,
        ],
    )
    .ok();
    run("ip", &["-n", a, "link", "set", a_name, "up"]).ok();
    run("ip", &["-n", b, "link", "set", b_name, "up"]).ok();
}

/// The DNAT walkthrough's network: lan (192.0.2.1) - router - wan (203.0.113.1), plus IPv6
/// (fd00:2::/64 inside, fd00:113::/64 outside).
struct Walk {
    lan: String,
    router: String,
    wan: String,
}

fn walkthrough(lab: &Lab) -> Walk {
    let (lan, router, wan) = (lab.netns("lan"), lab.netns("router"), lab.netns("wan"));
    let nsctl = |ns: &str, args: &str| {
        let mut full = vec!["--ns", ns];
        full.extend(args.split_whitespace());
        tool("nsctl", &full).ok();
    };
    // Built with nsctl like the walkthrough's `ip` steps; routes with `ip route` (routectl is
    // tested on its own). No IPv6 DAD, so addresses are usable at once.
    for ns in [&lan, &router, &wan] {
        nsctl(ns, "sysctl net.ipv6.conf.default.accept_dad=0");
    }
    nsctl(
        &lan,
        &format!("veth add lan-veth0 --peer gw-veth0 --peer-ns {router} --up"),
    );
    nsctl(
        &wan,
        &format!("veth add wan-veth0 --peer gw-veth1 --peer-ns {router} --up"),
    );
    nsctl(&router, "link set gw-veth0 --up");
    nsctl(&router, "link set gw-veth1 --up");
    nsctl(&lan, "addr add 192.0.2.1/24 --dev lan-veth0");
    nsctl(&lan, "addr add fd00:2::1/64 --dev lan-veth0");
    nsctl(&router, "addr add 192.0.2.254/24 --dev gw-veth0");
    nsctl(&router, "addr add 203.0.113.254/24 --dev gw-veth1");
    nsctl(&router, "addr add fd00:2::fe/64 --dev gw-veth0");
    nsctl(&router, "addr add fd00:113::fe/64 --dev gw-veth1");
    nsctl(&router, "sysctl net.ipv4.ip_forward=1");
    nsctl(&router, "sysctl net.ipv6.conf.all.forwarding=1");
    nsctl(&wan, "addr add 203.0.113.1/24 --dev wan-veth0");
    nsctl(&wan, "addr add fd00:113::1/64 --dev wan-veth0");
    ip_in(&lan, "route add default via 192.0.2.254");
    ip_in(&lan, "-6 route add default via fd00:2::fe");
    ip_in(&wan, "route add default via 203.0.113.254");
    ip_in(&wan, "-6 route add default via fd00:113::fe");
    Walk { lan, router, wan }
}

/// One TCP exchange: a listener in `server` on `port` (`nc -lnv`), a client in `client`
/// sending a line to `dest`. Returns (what the listener received, the listener's stderr,
/// which names the peer address).
fn tcp_exchange(server: &str, port: u16, client: &str, dest: &str, v6: bool) -> (String, String) {
    tcp_exchange_from(server, port, client, None, dest, v6)
}

/// [`tcp_exchange`] with the client bound to `source` (`nc -s`) when given.
fn tcp_exchange_from(
    server: &str,
    port: u16,
    client: &str,
    source: Option<&str>,
    dest: &str,
    v6: bool,
) -> (String, String) {
    let fam = if v6 { "-6" } else { "-4" };
    let bind = source.map_or(String::new(), |a| format!("-s {a}"));
    let script = format!(
        r#"
        out=$(mktemp); err=$(mktemp)
        ip netns exec {server} timeout 10 nc {fam} -lnv {port} >"$out" 2>"$err" &
        for i in $(seq 1 50); do
            ip netns exec {server} ss -Hltn "sport = :{port}" | grep -q . && break; sleep 0.1
        done
        echo hello-from-client | ip netns exec {client} nc {bind} -N -w 3 {dest} {port}
        wait
        cat "$out"; echo ---; cat "$err"; rm -f "$out" "$err"
        "#
    );
    let r = sh(&script);
    let (got, err) = r.stdout.split_once("---\n").unwrap_or((&r.stdout, ""));
    (got.trim().to_string(), err.to_string())
}

#[test]
fn dnat_walkthrough_forwards_tcp_and_keeps_the_source() {
    let lab = Lab::new();
    let w = walkthrough(&lab);

    let added = add(
        &w.router,
        &[
            "dnat",
            "--daddr",
            "203.0.113.254",
            "--proto",
            "tcp",
            "--dport",
            "54321",
            "--to",
            "192.0.2.1",
        ],
    );
    assert!(added.changed);
    assert_eq!(added.rule.kind, "dnat");
    assert_eq!(added.rule.family, "inet");
    assert_eq!(added.rule.netns.as_deref(), Some(w.router.as_str()));
    assert_eq!(added.rule.to.as_deref(), Some("192.0.2.1"));

    // nft shows the walkthrough's rule (in natctl's inet table, so `dnat ip to`).
    let rs = ruleset(&w.router);
    assert!(rs.contains("table inet natctl"), "{rs}");
    assert!(
        rs.contains("type nat hook prerouting priority dstnat"),
        "{rs}"
    );
    assert!(
        rs.contains(
            "ip daddr 203.0.113.254 tcp dport 54321 counter packets 0 bytes 0 dnat ip to 192.0.2.1"
        ),
        "{rs}"
    );

    // wan -> router's public address and port lands on lan, which sees wan's real address.
    let (got, err) = tcp_exchange(&w.lan, 54321, &w.wan, "203.0.113.254", false);
    assert_eq!(got, "hello-from-client", "listener stderr: {err}");
    assert!(
        err.contains("203.0.113.1"),
        "lan should see wan's address: {err}"
    );

    // The counter is read back from the kernel.
    let rules = list(&w.router);
    assert_eq!(rules.len(), 1);
    assert_eq!(rules[0].id, added.rule.id);
    assert!(rules[0].packets.unwrap() >= 1, "{rules:?}");
    assert!(rules[0].bytes.unwrap() > 0);

    // The same over IPv6, with a port rewrite: [fd00:113::fe]:8443 -> [fd00:2::1]:54322.
    let v6 = add(
        &w.router,
        &[
            "dnat",
            "--daddr",
            "fd00:113::fe",
            "--proto",
            "tcp",
            "--dport",
            "8443",
            "--to",
            "[fd00:2::1]:54322",
        ],
    );
    assert_eq!(v6.rule.family, "inet6");
    assert!(ruleset(&w.router).contains("dnat ip6 to [fd00:2::1]:54322"));
    let script = format!(
        r#"
        out=$(mktemp); err=$(mktemp)
        ip netns exec {lan} timeout 10 nc -6 -lnv 54322 >"$out" 2>"$err" &
        for i in $(seq 1 50); do ip netns exec {lan} ss -Hltn "sport = :54322" | grep -q . && break; sleep 0.1; done
        echo hello6 | ip netns exec {wan} nc -N -w 3 fd00:113::fe 8443
        wait; cat "$out"; echo ---; cat "$err"; rm -f "$out" "$err"
        "#,
        lan = w.lan,
        wan = w.wan
    );
    let r = sh(&script);
    assert!(r.stdout.starts_with("hello6"), "{}", r.stdout);
    assert!(
        r.stdout.contains("fd00:113::1"),
        "lan should see wan's v6 address: {}",
        r.stdout
    );
}

/// A TCP exchange from lan to wan (203.0.113.1) on `port` reaches wan from `public`, and the
/// router's conntrack entry shows the reply tuple addressed to `public`.
#[track_caller]
fn assert_leaves_as(w: &Walk, port: u16, public: &str) {
    let (got, err) = tcp_exchange(&w.wan, port, &w.lan, "203.0.113.1", false);
    assert_eq!(got, "hello-from-client", "{err}");
    assert!(err.contains(public), "wan should see {public}: {err}");
    let ct = nsh(
        &w.router,
        &format!("conntrack -L -p tcp --dport {port} 2>/dev/null"),
    )
    .ok()
    .stdout;
    assert!(
        ct.contains("src=192.0.2.1 dst=203.0.113.1")
            && ct.contains(&format!("src=203.0.113.1 dst={public}")),
        "conntrack should show the reply tuple to {public}: {ct}"
    );
}

#[test]
fn masquerade_and_snat_show_the_translated_tuple_in_conntrack() {
    let lab = Lab::new();
    let w = walkthrough(&lab);

    let masq = add(
        &w.router,
        &["masquerade", "--oif", "gw-veth1", "--src", "192.0.2.0/24"],
    );
    assert!(masq.changed);
    assert_leaves_as(&w, 8080, "203.0.113.254");

    // Replace masquerade by SNAT to a second public address.
    natctl(&w.router, &["del", &masq.rule.id]).ok();
    ip_in(&w.router, "addr add 203.0.113.253/24 dev gw-veth1");
    nsh(&w.router, "conntrack -F 2>/dev/null").ok();
    let snat = add(
        &w.router,
        &[
            "snat",
            "--to",
            "203.0.113.253",
            "--src",
            "192.0.2.0/24",
            "--oif",
            "gw-veth1",
        ],
    );
    assert_eq!(snat.rule.kind, "snat");
    assert!(ruleset(&w.router).contains("snat ip to 203.0.113.253"));
    assert_leaves_as(&w, 8081, "203.0.113.253");
    let rules = list(&w.router);
    assert_eq!(rules.len(), 1, "{rules:?}");
    assert!(rules[0].packets.unwrap() >= 1);
}

/// Echo requests namespace `ns` has received so far (`IcmpInEchos` / `Icmp6InEchos`): proof of
/// which side a ping reached when both sides have the same address.
fn echo_requests(ns: &str, v6: bool) -> u64 {
    let counter = if v6 { "Icmp6InEchos" } else { "IcmpInEchos" };
    let out = nsh(ns, &format!("nstat -asz {counter}")).ok().stdout;
    out.lines()
        .find_map(|l| {
            let mut f = l.split_whitespace();
            (f.next() == Some(counter)).then(|| f.next()?.parse().ok())?
        })
        .unwrap_or_else(|| panic!("no {counter} in nstat output: {out}"))
}

/// Pings `dest` from `from` and checks that the requests arrived in `to`, not anywhere else.
#[track_caller]
fn ping_reaches(from: &str, dest: &str, to: &str, v6: bool) {
    let (seen_to, seen_from) = (echo_requests(to, v6), echo_requests(from, v6));
    assert!(ping(from, dest, 3), "{from} -> {dest}");
    assert!(
        echo_requests(to, v6) >= seen_to + 3,
        "{from} -> {dest} did not reach {to}"
    );
    assert_eq!(
        echo_requests(from, v6),
        seen_from,
        "{from} -> {dest} came back to {from}"
    );
}

/// The overlapping-networks addressing for one family.
#[derive(Clone, Copy)]
enum Net {
    V4,
    V6,
}

impl Net {
    /// (shared prefix, mapped prefix, middleman address, host address, `ip` family flag)
    fn plan(
        self,
    ) -> (
        &'static str,
        &'static str,
        &'static str,
        &'static str,
        &'static str,
    ) {
        match self {
            Net::V4 => (
                "192.168.2.0/24",
                "192.168.3.0/24",
                "192.168.2.1",
                "192.168.2.10",
                "-4",
            ),
            Net::V6 => (
                "fd00:2::/64",
                "fd00:3::/64",
                "fd00:2::1",
                "fd00:2::10",
                "-6",
            ),
        }
    }
}

/// inner - mid - outer, where inner and outer use the same prefix and mid has the same address
/// on both sides; tables 100 (inner side) and 200 (outer side), and `fwmark 100 lookup 200`,
/// `fwmark 200 lookup 100` (policy routing with routectl in place of the scenario's VRFs).
fn overlap(lab: &Lab, net: Net) -> (String, String, String) {
    let (shared, mapped, mid_addr, host, fam) = net.plan();
    let plen = shared.split_once('/').unwrap().1;
    let (inner, mid, outer) = (lab.netns("inner"), lab.netns("mid"), lab.netns("outer"));
    sysctl_in(&mid, "net.ipv4.conf.all.rp_filter=0");
    sysctl_in(&mid, "net.ipv4.conf.default.rp_filter=0");
    sysctl_in(&mid, "net.ipv4.ip_forward=1");
    sysctl_in(&mid, "net.ipv6.conf.all.forwarding=1");
    veth(&inner, "eth0", &mid, "mid-in");
    veth(&outer, "eth0", &mid, "mid-out");
    let nodad = if matches!(net, Net::V6) { " nodad" } else { "" };
    let routectl = |ns: &str, args: &str| {
        let mut full = vec!["--ns", ns];
        full.extend(args.split_whitespace());
        tool("routectl", &full).ok();
    };
    for side in [&inner, &outer] {
        ip_in(
            side,
            &format!("{fam} addr add {host}/{plen} dev eth0{nodad}"),
        );
        routectl(side, &format!("route add {mapped} --via {mid_addr}"));
    }
    for dev in ["mid-in", "mid-out"] {
        ip_in(
            &mid,
            &format!("{fam} addr add {mid_addr}/{plen} dev {dev}{nodad}"),
        );
    }
    routectl(
        &mid,
        &format!("route add {shared} --dev mid-in --table 100"),
    );
    routectl(
        &mid,
        &format!("route add {shared} --dev mid-out --table 200"),
    );
    routectl(
        &mid,
        &format!("rule add --priority 100 --fwmark 100 --table 200 {fam}"),
    );
    routectl(
        &mid,
        &format!("rule add --priority 200 --fwmark 200 --table 100 {fam}"),
    );
    (inner, mid, outer)
}

/// The overlapping-networks walk without VRF: inner and outer both use 192.168.2.0/24 and reach
/// each other as 192.168.3.0/24 through a middleman with NETMAP both ways, per-side fwmarks
/// selecting the other side's routing table, and per-side conntrack zones (original direction).
#[test]
fn overlapping_networks_meet_through_netmap_marks_and_zones() {
    let lab = Lab::new();
    let (inner, mid, outer) = overlap(&lab, Net::V4);

    for args in [
        &[
            "netmap",
            "--dst",
            "192.168.3.0/24",
            "--to",
            "192.168.2.0/24",
        ][..],
        &[
            "netmap",
            "--src",
            "192.168.2.0/24",
            "--to",
            "192.168.3.0/24",
        ],
        &[
            "mark",
            "--iif",
            "mid-in",
            "--dst",
            "192.168.3.0/24",
            "--set",
            "100",
        ],
        &[
            "mark",
            "--iif",
            "mid-out",
            "--dst",
            "192.168.3.0/24",
            "--set",
            "200",
        ],
        &[
            "zone",
            "--iif",
            "mid-in",
            "--src",
            "192.168.2.0/24",
            "--zone",
            "100",
            "--dir",
            "original",
        ],
        &[
            "zone",
            "--iif",
            "mid-out",
            "--src",
            "192.168.2.0/24",
            "--zone",
            "200",
            "--dir",
            "original",
        ],
    ] {
        assert!(add(&mid, args).changed, "{args:?}");
    }
    let rs = ruleset(&mid);
    for needle in [
        "ip daddr 192.168.3.0/24 counter packets 0 bytes 0 dnat ip prefix to 192.168.2.0/24",
        "ip saddr 192.168.2.0/24 counter packets 0 bytes 0 snat ip prefix to 192.168.3.0/24",
        "meta mark set 0x00000064",
        "ct original zone set 200",
        "type filter hook prerouting priority raw",
        "type filter hook prerouting priority mangle",
    ] {
        assert!(rs.contains(needle), "missing {needle:?} in:\n{rs}");
    }

    // Both directions by ping.
    ping_reaches(&inner, "192.168.3.10", &outer, false);
    ping_reaches(&outer, "192.168.3.10", &inner, false);

    // The same tuple from both sides: 192.168.2.10:4000 -> 192.168.3.10:80. Each side serves its
    // own banner, so each client proves it reached the other side.
    let script = format!(
        r#"
        printf outer-banner | ip netns exec {outer} timeout 10 nc -4 -N -l 80 >/dev/null &
        printf inner-banner | ip netns exec {inner} timeout 10 nc -4 -N -l 80 >/dev/null &
        for ns in {outer} {inner}; do
            for i in $(seq 1 50); do ip netns exec $ns ss -Hltn "sport = :80" | grep -q . && break; sleep 0.1; done
        done
        a=$(ip netns exec {inner} nc -4 -d -w 3 -p 4000 192.168.3.10 80)
        b=$(ip netns exec {outer} nc -4 -d -w 3 -p 4000 192.168.3.10 80)
        wait
        echo "inner-got=$a"; echo "outer-got=$b"
        "#
    );
    let r = sh(&script);
    assert!(r.stdout.contains("inner-got=outer-banner"), "{r:?}");
    assert!(r.stdout.contains("outer-got=inner-banner"), "{r:?}");
    let ct = nsh(
        &mid,
        "conntrack -L -p tcp --sport 4000 --dport 80 2>/dev/null",
    )
    .ok()
    .stdout;
    let lines: Vec<&str> = ct
        .lines()
        .filter(|l| l.contains("src=192.168.2.10 dst=192.168.3.10 sport=4000 dport=80"))
        .collect();
    assert_eq!(lines.len(), 2, "two connections with the same tuple: {ct}");
    assert!(lines.iter().any(|l| l.contains("zone-orig=100")), "{ct}");
    assert!(lines.iter().any(|l| l.contains("zone-orig=200")), "{ct}");

    // Every rule saw traffic.
    for rule in list(&mid) {
        assert!(
            rule.packets.unwrap() > 0,
            "rule {} ({}) matched nothing",
            rule.id,
            rule.kind
        );
    }
}

#[test]
fn a_batch_the_kernel_refuses_leaves_the_ruleset_byte_identical() {
    let lab = Lab::new();
    let ns = lab.netns("atom");
    // A table natctl would use, hand-made with a chain of the wrong type: natctl's transaction
    // (table, its base chains, the rule) fails at the srcnat chain, after creating others.
    nsh(
        &ns,
        "nft add table inet natctl && nft add chain inet natctl srcnat '{ type filter hook postrouting priority 0; }' \
         && nft add table ip nat && nft add chain ip nat post '{ type nat hook postrouting priority 100; }'",
    )
    .ok();
    let before = ruleset(&ns);
    natctl(&ns, &["masquerade", "--oif", "eth0"]).fails(1, "adding rule");
    natctl(&ns, &["zone", "--iif", "eth0", "--zone", "3"]).fails(1, "Operation not supported");
    assert_eq!(ruleset(&ns), before, "a refused batch must leave no trace");

    // Once the conflict is gone, the same commands apply; a later refusal changes nothing either.
    nsh(&ns, "nft delete table inet natctl").ok();
    add(&ns, &["zone", "--iif", "eth0", "--zone", "3"]);
    add(&ns, &["masquerade", "--oif", "eth0"]);
    nsh(
        &ns,
        "nft add chain inet natctl extra && nft add rule inet natctl extra counter",
    )
    .ok();
    nsh(&ns, "nft delete chain inet natctl marks").ok();
    nsh(
        &ns,
        "nft add chain inet natctl marks '{ type nat hook prerouting priority -150; }'",
    )
    .ok();
    let before = ruleset(&ns);
    natctl(&ns, &["mark", "--iif", "eth0", "--set", "5"]).fails(1, "adding rule");
    assert_eq!(ruleset(&ns), before);
}

#[test]
fn concurrent_adds_never_duplicate_or_lose_rules() {
    let lab = Lab::new();
    let ns = lab.netns("conc");
    let bin = tool_path("natctl");
    let mut children = Vec::new();
    for i in 0..30 {
        let args: Vec<String> = if i < 20 {
            [
                "dnat",
                "--proto",
                "tcp",
                "--dport",
                &(20000 + i).to_string(),
                "--to",
                "10.9.0.1",
            ]
            .map(String::from)
            .to_vec()
        } else {
            [
                "dnat",
                "--proto",
                "udp",
                "--dport",
                "53",
                "--to",
                "10.9.0.53",
            ]
            .map(String::from)
            .to_vec()
        };
        let child = Command::new(&bin)
            .args(["--ns", &ns])
            .args(&args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn natctl");
        children.push(child);
    }
    let mut identical_changed = 0;
    for (i, child) in children.into_iter().enumerate() {
        let out = child.wait_with_output().expect("natctl");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v: Value = serde_json::from_slice(&out.stdout).expect("json");
        if i >= 20 && v["changed"] == Value::Bool(true) {
            identical_changed += 1;
        }
    }
    assert_eq!(
        identical_changed, 1,
        "exactly one of the identical adds changes the kernel"
    );
    assert_eq!(kernel_rule_count(&ns), 21, "{}", ruleset(&ns));
    let rules = list(&ns);
    assert_eq!(rules.len(), 21);
    let ids: HashSet<&str> = rules.iter().map(|r| r.id.as_str()).collect();
    assert_eq!(ids.len(), 21);
}

/// `nft monitor` in a namespace, for the commits made there: killed when dropped.
struct Monitor {
    child: std::process::Child,
    lines: std::sync::mpsc::Receiver<String>,
    ns: String,
}

impl Monitor {
    /// Starts it, and returns once it sees a commit (its own marker table's).
    fn start(ns: &str) -> Monitor {
        use std::io::BufRead;
        let mut child = Command::new("ip")
            .args(["netns", "exec", ns, "nft", "monitor"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("nft monitor");
        let out = child.stdout.take().expect("its stdout");
        let (tx, lines) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            for line in std::io::BufReader::new(out).lines().map_while(|l| l.ok()) {
                if tx.send(line).is_err() {
                    break;
                }
            }
        });
        let mut monitor = Monitor {
            child,
            lines,
            ns: ns.to_string(),
        };
        // (it may start listening after a first marker: marks until it sees one)
        let deadline = Instant::now() + std::time::Duration::from_secs(10);
        for n in 0.. {
            assert!(
                Instant::now() < deadline,
                "nft monitor saw no commit in {ns}"
            );
            if monitor.commits(&format!("start{n}")).is_some() {
                break;
            }
        }
        monitor
    }

    /// Commits a marker table TAG, and returns the commits seen until then (the processes
    /// that made them, as `nft monitor` names them), the marker's own left out; None if the
    /// marker did not show within 2 s.
    fn commits(&mut self, tag: &str) -> Option<Vec<String>> {
        nsh(&self.ns, &format!("nft add table inet {tag}")).ok();
        // (a commit's events come first, then its line "# new generation N by process P")
        let mut seen = Vec::new();
        let mut marker = false;
        while let Ok(line) = self.lines.recv_timeout(std::time::Duration::from_secs(2)) {
            if let Some(by) = line.strip_prefix("# new generation ") {
                if marker {
                    return Some(seen);
                }
                seen.push(
                    by.split_once(" by process ")
                        .map_or(by, |(_, p)| p)
                        .to_string(),
                );
            }
            marker |= line.contains(&format!("table inet {tag}"));
        }
        None
    }
}

impl Drop for Monitor {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A batch's rule adds in one namespace are committed together, at most 32 lines a
/// transaction (`nft monitor` counts the commits), with their outputs as alone: an id twice in
/// the batch is added once. A line of another kind (`del`) commits what came before it first.
/// When the transaction fails, the lines before the failing one still take effect, and the
/// batch fails on that line, as if each had been committed alone.
#[test]
fn a_batchs_adds_are_committed_together() {
    let lab = Lab::new();
    let ns = lab.netns("group");
    let accept = |i: u32| format!("filter --iif p{i} --dst 10.0.0.0/8 --verdict accept\n");
    // 40 adds, the 7th again at the end: two commits (32, then 9).
    let mut text: String = (0..40).map(accept).collect();
    text.push_str(&accept(6));
    let mut monitor = Monitor::start(&ns);
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text)).ok();
    let lines = out.json_lines();
    assert_eq!(lines.len(), 41);
    assert!(lines[..40]
        .iter()
        .all(|l| l["changed"] == Value::Bool(true)));
    assert_eq!(lines[40]["changed"], Value::Bool(false), "the 7th again");
    assert_eq!(lines[40]["rule"]["id"], lines[6]["rule"]["id"]);
    let commits = monitor.commits("mark1").expect("the marker");
    assert_eq!(commits.len(), 2, "the batch's commits: {commits:?}");
    assert!(commits.iter().all(|c| c.contains("natctl")), "{commits:?}");
    assert_eq!(kernel_rule_count(&ns), 40, "{}", ruleset(&ns));
    assert_list_matches_nft(&ns);

    // add, add, del of the first, add: the del comes between two commits, in order.
    let id = |i: u32| {
        let words = accept(i);
        let words: Vec<&str> = words.split_whitespace().collect();
        let r = natctl(&ns, &[&["--check"][..], &words].concat())
            .ok()
            .json();
        r["rule"]["id"].as_str().unwrap().to_string()
    };
    let text = format!("{}{}del {}\n{}", accept(50), accept(51), id(50), accept(52));
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text)).ok();
    assert!(out
        .json_lines()
        .iter()
        .all(|l| l["changed"] == Value::Bool(true)));
    assert_eq!(monitor.commits("mark2").expect("the marker").len(), 3);
    assert!(handles_of(&ns, &id(50)).is_empty());
    assert_eq!(handles_of(&ns, &id(51)).len(), 1);
    assert_eq!(handles_of(&ns, &id(52)).len(), 1);

    // The map element for p61 already leads elsewhere (made with nft): p61's add fails in the
    // kernel, so the transaction does; p60's still takes effect, p62's does not.
    nsh(
        &ns,
        "nft add chain inet natctl elsewhere && \
         nft add element inet natctl forward.iif '{ \"p61\" : jump elsewhere }'",
    )
    .ok();
    let before = kernel_rule_count(&ns);
    let text = format!("{}{}{}", accept(60), accept(61), accept(62));
    let r = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(
        r.stderr.contains("batch line 2: adding rule"),
        "{}",
        r.stderr
    );
    assert_eq!(
        r.json_lines().len(),
        1,
        "only line 1's output: {}",
        r.stdout
    );
    assert_eq!(
        r.json_lines()[0]["rule"]["id"].as_str(),
        Some(id(60).as_str())
    );
    // (handles_of would refuse the foreign element: the ruleset as nft lists it)
    let rs = ruleset(&ns);
    assert!(rs.contains(&format!("natctl:{}", id(60))), "{rs}");
    assert!(!rs.contains(&id(61)) && !rs.contains(&id(62)), "{rs}");
    assert_eq!(kernel_rule_count(&ns), before + 1);
}

#[test]
fn two_thousand_rules_in_one_batch_file() {
    let lab = Lab::new();
    let ns = lab.netns("scale");
    let mut text = String::from("# 2,000 port forwards\n");
    for i in 0..2000u32 {
        text.push_str(&format!(
            "dnat --proto tcp --dport {} --to 10.{}.{}.{}:80\n",
            10000 + i,
            i / 62500,
            (i / 250) % 250,
            i % 250 + 1
        ));
    }
    let file = std::env::temp_dir().join(format!("{}-natctl-batch.txt", lab.name("")));
    std::fs::write(&file, &text).unwrap();
    let path = file.to_str().unwrap();

    let t = Instant::now();
    let r = natctl(&ns, &["-b", path]).ok();
    let took = t.elapsed();
    let lines = r.json_lines();
    assert_eq!(lines.len(), 2000);
    assert!(lines.iter().all(|l| l["changed"] == Value::Bool(true)));
    let added: HashSet<String> = lines
        .iter()
        .map(|l| l["rule"]["id"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(added.len(), 2000);

    let t = Instant::now();
    let rules = list(&ns);
    let list_took = t.elapsed();
    assert_eq!(rules.len(), 2000);
    let listed: HashSet<String> = rules.iter().map(|r| r.id.clone()).collect();
    assert_eq!(listed, added);
    assert_eq!(kernel_rule_count(&ns), 2000);

    // Re-running the file changes nothing.
    let t = Instant::now();
    let again = natctl(&ns, &["-b", path]).ok().json_lines();
    let again_took = t.elapsed();
    assert!(again.iter().all(|l| l["changed"] == Value::Bool(false)));
    assert_eq!(kernel_rule_count(&ns), 2000);
    let _ = std::fs::remove_file(&file);
    eprintln!(
        "natctl scale: 2000 adds {:.1?}, list {:.1?}, 2000 no-op adds {:.1?}",
        took, list_took, again_took
    );
}

/// A big table (300 rules: 32 or more) has its ids kept between processes (natctl's store), for the
/// ruleset generation they were read at. A change made behind natctl's back (`nft delete rule`)
/// moves the generation: the next natctl must see the kernel as it is, not the stored ids.
#[test]
fn stored_ids_hold_only_while_the_ruleset_is_unchanged() {
    let lab = Lab::new();
    let ns = lab.netns("store");
    let forward = |i: u32| {
        format!(
            "dnat --proto tcp --dport {} --to 10.0.{}.{}:80",
            20000 + i,
            i / 250,
            i % 250 + 1
        )
    };
    let text: String = (0..300).map(|i| forward(i) + "\n").collect();
    let r = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text)).ok();
    assert_eq!(r.json_lines().len(), 300);
    assert_eq!(kernel_rule_count(&ns), 300);
    let words = |i: u32| {
        forward(i)
            .split_whitespace()
            .map(str::to_string)
            .collect::<Vec<_>>()
    };
    let check = |i: u32| {
        let mut args = vec!["--check".to_string()];
        args.extend(words(i));
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        add(&ns, &args)
    };
    // One process after another (each reads the store, or fills it): all there.
    let present = check(7);
    assert!(!present.changed);
    assert!(!check(8).changed);

    // Rule 7 deleted by nft itself, not by natctl.
    let victim = nft_rules(&ns)
        .into_iter()
        .find(|r| {
            r.comment
                .as_deref()
                .is_some_and(|c| c.contains(&present.rule.id))
        })
        .expect("rule 7 in the kernel");
    nsh(
        &ns,
        &format!(
            "nft delete rule inet natctl {} handle {}",
            victim.chain, victim.handle
        ),
    )
    .ok();
    assert_eq!(kernel_rule_count(&ns), 299);
    assert!(
        check(7).changed,
        "natctl trusted stored ids after the ruleset changed"
    );
    let w = words(7);
    let again = add(&ns, &w.iter().map(String::as_str).collect::<Vec<_>>());
    assert!(again.changed);
    assert_eq!(kernel_rule_count(&ns), 300);
    assert!(!check(7).changed);

    // The stored snapshot changed behind natctl's back (rule 8's line cut, the header kept): not
    // what natctl wrote, so not trusted; rule 8 is still found, in the kernel.
    let line8 = format!("{} ", check(8).rule.id);
    let file = store_file(&ns);
    let text = std::fs::read_to_string(&file).expect("the stored ids");
    let cut: String = text
        .lines()
        .filter(|l| !l.starts_with(&line8))
        .map(|l| format!("{l}\n"))
        .collect();
    assert_ne!(cut, text, "rule 8's line in the stored snapshot");
    std::fs::write(&file, cut).unwrap();
    assert!(
        !check(8).changed,
        "natctl trusted a snapshot changed behind its back"
    );

    // Two deletes in one batch (one dump), then each id is gone from the kernel.
    let (a, b) = (check(1).rule.id, check(2).rule.id);
    let dels = format!("del {a}\ndel {b}\n");
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&dels)).ok();
    assert!(out
        .json_lines()
        .iter()
        .all(|l| l["changed"] == Value::Bool(true)));
    assert_eq!(kernel_rule_count(&ns), 298);
    let left = ruleset(&ns);
    assert!(!left.contains(&a) && !left.contains(&b));
    assert!(check(1).changed && check(2).changed);
}

#[test]
fn bad_input_exits_2_and_changes_nothing() {
    let lab = Lab::new();
    let ns = lab.netns("bad");
    add(&ns, &["masquerade", "--oif", "eth0"]);
    let before = ruleset(&ns);
    let cases: &[(&[&str], &str)] = &[
        (
            &["dnat", "--to", "10.0.0.1:70000", "--proto", "tcp"],
            "70000",
        ),
        (
            &["dnat", "--to", "10.0.0.1", "--proto", "tcp", "--dport", "0"],
            "'0'",
        ),
        (
            &[
                "dnat", "--to", "10.0.0.1", "--proto", "icmp", "--dport", "80",
            ],
            "icmp",
        ),
        (&["dnat", "--to", "10.0.0.1", "--dport", "80"], "--proto"),
        (&["dnat", "--to", "10.0.0.1:80"], "--proto"),
        (
            &["dnat", "--to", "10.0.0.1", "--daddr", "2001:db8::1"],
            "2001:db8::1",
        ),
        (
            &["snat", "--to", "10.0.0.1", "--src", "2001:db8::/64"],
            "2001:db8::",
        ),
        (&["snat", "--to", "10.0.0.9-10.0.0.1"], "10.0.0.9-10.0.0.1"),
        (
            &["netmap", "--dst", "10.0.0.0/24", "--to", "10.1.0.0/16"],
            "10.1.0.0/16",
        ),
        (
            &["netmap", "--dst", "10.0.0.0/24", "--to", "2001:db8::/24"],
            "2001:db8::",
        ),
        (
            &["netmap", "--dst", "10.0.0.1/24", "--to", "10.1.0.0/24"],
            "10.0.0.1/24",
        ),
        (&["netmap", "--to", "10.1.0.0/24"], "--dst"),
        (&["zone", "--iif", "eth0", "--zone", "70000"], "70000"),
        (
            &["zone", "--iif", "eth0", "--zone", "1", "--dir", "sideways"],
            "sideways",
        ),
        (
            &["mark", "--iif", "eth0", "--set", "0x1ffffffff"],
            "0x1ffffffff",
        ),
        (
            &["masquerade", "--oif", "averyveryverylongname"],
            "averyveryverylongname",
        ),
        (
            &["masquerade", "--oif", "eth0", "--src", "10.292.0.0/16"],
            "10.292.0.0/16",
        ),
        (&["del", "not-an-id"], "not-an-id"),
        (&["masquerade"], "--oif IFACE, --src CIDR, --dst CIDR"),
        (
            &[
                "masquerade",
                "--src",
                "10.0.0.0/8",
                "--dst",
                "2001:db8::/32",
            ],
            "2001:db8::",
        ),
        (&["masquerade", "--dst", "10.0.0.300/8"], "10.0.0.300/8"),
        (
            &["snat", "--to", "10.0.0.1", "--dport", "80"],
            "--dport 80 needs --proto",
        ),
        (
            &["snat", "--to", "10.0.0.1", "--dst", "2001:db8::/64"],
            "2001:db8::",
        ),
        (
            &[
                "snat",
                "--to",
                "2001:db8::1",
                "--src",
                "10.0.0.0/8",
                "--dst",
                "2001:db8::/64",
            ],
            "10.0.0.0",
        ),
        (&["snat", "--to", "10.0.0.1", "--proto", "icmp"], "icmp"),
        (
            &[
                "snat", "--to", "10.0.0.1", "--proto", "tcp", "--dport", "70000",
            ],
            "70000",
        ),
        (
            &[
                "snat", "--to", "10.0.0.1", "--proto", "tcp", "--dport", "90-80",
            ],
            "90-80",
        ),
        (
            &["dnat", "--to", "10.0.0.1", "--iif", "eth0", "--local"],
            "--local",
        ),
        (
            &[
                "dnat",
                "--to",
                "10.0.0.1",
                "--local",
                "--daddr",
                "2001:db8::1",
            ],
            "2001:db8::1",
        ),
        (&["connmark", "--iif", "eth0", "--set", "0"], "--set 0"),
        (
            &["connmark", "--iif", "eth0", "--set", "4294967296"],
            "4294967296",
        ),
        (&["connmark", "--iif", "eth0", "--set", "ten"], "ten"),
        (&["connmark", "--set", "5"], "--iif"),
        (&["connmark", "--iif", "eth0"], "--set"),
        (&["connmark", "--iif", "bad/name", "--set", "5"], "bad/name"),
    ];
    for (args, needle) in cases {
        natctl(&ns, args).fails(2, needle);
        natctl(&ns, &[&["--check"][..], args].concat()).fails(2, needle);
        assert_eq!(ruleset(&ns), before, "{args:?} changed the ruleset");
    }
    // An unknown (well-formed) id: deleting what is absent succeeds with changed:false.
    let absent: Gone = parse(&natctl(&ns, &["del", "0123456789ab"]).ok());
    assert!(!absent.changed);
    assert_eq!(absent.rule.id, "0123456789ab");
    assert_eq!(absent.rule.netns.as_deref(), Some(ns.as_str()));
    assert!(!natctl(&ns, &["--check", "del", "0123456789ab"])
        .ok()
        .changed());
    tool("natctl", &["--ns", &lab.name("missing"), "list"]).fails(1, &lab.name("missing"));
    assert_eq!(ruleset(&ns), before);
}

#[test]
fn adds_are_idempotent_and_check_predicts_without_changing() {
    let lab = Lab::new();
    let ns = lab.netns("idem");
    let args = [
        "dnat",
        "--iif",
        "eth0",
        "--proto",
        "udp",
        "--dport",
        "5000-5010",
        "--to",
        "192.0.2.7",
    ];

    let empty = ruleset(&ns);
    let check = natctl(&ns, &[&["--check"][..], &args].concat()).ok().json();
    assert_eq!(check["changed"], Value::Bool(true));
    assert_eq!(ruleset(&ns), empty, "--check must not touch the kernel");

    let first = add(&ns, &args);
    assert!(first.changed);
    assert_eq!(first.rule.id, check["rule"]["id"].as_str().unwrap());
    assert_eq!(first.rule.dport.as_deref(), Some("5000-5010"));
    assert!(ruleset(&ns).contains("udp dport 5000-5010"));
    let after_first = ruleset(&ns);

    // Same arguments in another order and spelling: same id, no change.
    let again = add(
        &ns,
        &[
            "dnat",
            "--to",
            "192.0.2.7",
            "--dport",
            "5000-5010",
            "--proto",
            "udp",
            "--iif",
            "eth0",
        ],
    );
    assert!(!again.changed);
    assert_eq!(again.rule.id, first.rule.id);
    let check = natctl(&ns, &[&["--check"][..], &args].concat()).ok();
    assert!(!check.changed());
    assert_eq!(ruleset(&ns), after_first);
    assert_eq!(kernel_rule_count(&ns), 1);

    // Different arguments, different id; ids survive a round trip through the kernel.
    let other = add(
        &ns,
        &[
            "mark",
            "--iif",
            "eth0",
            "--set",
            "0x10",
            "--dst",
            "198.51.100.0/24",
        ],
    );
    assert_ne!(other.rule.id, first.rule.id);
    assert_eq!(other.rule.set, Some(16));
    // Each in the chain of its interface (the mark's --dst is a network, not a host), listed
    // in the kernel's order of those chains: the order they were made in.
    let listed = list(&ns);
    assert_eq!(
        listed
            .iter()
            .map(|r| (r.id.as_str(), r.chain.as_deref().unwrap()))
            .collect::<Vec<_>>(),
        vec![
            (first.rule.id.as_str(), "dstnat.iif.eth0"),
            (other.rule.id.as_str(), "marks.iif.eth0")
        ]
    );
    assert_list_matches_nft(&ns);

    // del: --check first, then for real; the id is then absent: changed:false, nothing touched.
    let before = ruleset(&ns);
    assert!(natctl(&ns, &["--check", "del", &first.rule.id])
        .ok()
        .changed());
    assert_eq!(ruleset(&ns), before);
    let del: Added = parse(&natctl(&ns, &["del", &first.rule.id]).ok());
    assert!(del.changed);
    assert_eq!(del.rule.kind, "dnat");
    assert_eq!(del.rule.id, first.rule.id);
    assert_eq!(kernel_rule_count(&ns), 1);
    // (its key's chain went with it: it held no other rule)
    let after = ruleset(&ns);
    assert!(!after.contains("dstnat.iif.eth0"), "{after}");
    assert_list_matches_nft(&ns);
    let again: Gone = parse(&natctl(&ns, &["del", &first.rule.id]).ok());
    assert!(!again.changed);
    assert_eq!(again.rule.id, first.rule.id);
    assert_eq!(again.rule.netns.as_deref(), Some(ns.as_str()));
    assert_eq!(
        ruleset(&ns),
        after,
        "deleting an absent id changed the ruleset"
    );
}

#[test]
fn flush_removes_only_natctls_table() {
    let lab = Lab::new();
    let ns = lab.netns("flush");
    nsh(
        &ns,
        "nft add table ip nat && nft add chain ip nat POSTROUTING '{ type nat hook postrouting priority srcnat; }' \
         && nft add rule ip nat POSTROUTING oifname eth0 masquerade",
    )
    .ok();
    let hand_made = nsh(&ns, "nft list table ip nat").ok().stdout;

    let m = add(&ns, &["masquerade", "--oif", "eth0"]);
    add(
        &ns,
        &[
            "netmap",
            "--src",
            "fd00:2::/64",
            "--to",
            "fd00:3::/64",
            "--oif",
            "eth0",
        ],
    );
    add(
        &ns,
        &["zone", "--iif", "eth0", "--zone", "9", "--dir", "reply"],
    );
    list(&ns);
    natctl(&ns, &["del", &m.rule.id]).ok();
    assert_eq!(nsh(&ns, "nft list table ip nat").ok().stdout, hand_made);

    assert!(natctl(&ns, &["--check", "flush"]).ok().changed());
    assert!(ruleset(&ns).contains("table inet natctl"));
    // (the table holds natctl's two rules, their keys' chains and maps, and the dispatch rules)
    let held = nft_table(&ns);
    assert_layout(&held);
    assert_eq!(held.rules().len(), 2);
    assert_eq!(held.key_chains(), ["zones.iif.eth0"]);
    let flushed: Flushed = parse(&natctl(&ns, &["flush"]).ok());
    assert!(flushed.changed);
    assert_eq!(flushed.table, "inet natctl");
    assert_eq!(flushed.netns.as_deref(), Some(ns.as_str()));
    assert_eq!(
        flushed.removed_rules,
        held.all.len(),
        "every rule the table held"
    );
    let rs = ruleset(&ns);
    assert!(!rs.contains("natctl"), "{rs}");
    assert_eq!(nsh(&ns, "nft list table ip nat").ok().stdout, hand_made);
    assert!(!natctl(&ns, &["flush"]).ok().changed());
    assert!(list(&ns).is_empty());
}

#[test]
fn ipv6_overlapping_networks_map_the_same_way() {
    let lab = Lab::new();
    let (inner, mid, outer) = overlap(&lab, Net::V6);
    for args in [
        &["netmap", "--dst", "fd00:3::/64", "--to", "fd00:2::/64"][..],
        &["netmap", "--src", "fd00:2::/64", "--to", "fd00:3::/64"],
        &[
            "mark",
            "--iif",
            "mid-in",
            "--dst",
            "fd00:3::/64",
            "--set",
            "100",
        ],
        &[
            "mark",
            "--iif",
            "mid-out",
            "--dst",
            "fd00:3::/64",
            "--set",
            "200",
        ],
        &[
            "zone", "--iif", "mid-in", "--zone", "100", "--dir", "original",
        ],
        &[
            "zone", "--iif", "mid-out", "--zone", "200", "--dir", "original",
        ],
    ] {
        let added = add(&mid, args);
        assert!(added.changed, "{args:?}");
        let family = if args[0] == "zone" { "any" } else { "inet6" };
        assert_eq!(added.rule.family, family, "{args:?}");
    }
    let rs = ruleset(&mid);
    assert!(rs.contains("dnat ip6 prefix to fd00:2::/64"), "{rs}");
    assert!(rs.contains("snat ip6 prefix to fd00:3::/64"), "{rs}");
    ping_reaches(&inner, "fd00:3::10", &outer, true);
    ping_reaches(&outer, "fd00:3::10", &inner, true);
    let ct = nsh(&mid, "conntrack -L -f ipv6 2>/dev/null").ok().stdout;
    assert!(
        ct.contains("zone-orig=100") && ct.contains("zone-orig=200"),
        "{ct}"
    );
}

#[test]
fn batch_lines_see_the_kernel_as_earlier_lines_left_it() {
    let lab = Lab::new();
    let ns = lab.netns("blines");
    let text = "mark --iif eth0 --set 1\nmark --iif eth0 --set 0x1\nflush\nmark --iif eth0 --set 1\nzone --iif eth0 --zone 1\nlist\n";
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(text))
        .ok()
        .json_lines();
    let changed: Vec<bool> = out
        .iter()
        .map(|l| l["changed"].as_bool().unwrap())
        .collect();
    assert_eq!(changed, [true, false, true, true, true, false], "{out:?}");
    assert_eq!(out[0]["rule"]["id"], out[3]["rule"]["id"]);
    assert_eq!(out[5]["rules"].as_array().unwrap().len(), 2);
    assert_eq!(kernel_rule_count(&ns), 2);
}

/// One rule of `nft -j list table inet natctl`, the kernel's own account of it.
#[derive(Debug, Clone, Deserialize)]
struct NftRule {
    chain: String,
    handle: u64,
    comment: Option<String>,
    expr: Vec<Value>,
}

/// One chain of natctl's table as `nft -j` shows it: a base chain has a hook, a key's chain
/// (`forward.iif.d1`) none.
#[derive(Debug, Clone, Deserialize)]
struct NftChain {
    name: String,
    hook: Option<String>,
}

/// One verdict map of natctl's table (`map forward.iif { type ifname : verdict }`), with its
/// elements `[KEY, {"jump":{"target":CHAIN}}]`.
#[derive(Debug, Clone, Deserialize)]
struct NftMap {
    name: String,
    #[serde(rename = "type")]
    key_type: String,
    map: String,
    #[serde(default)]
    elem: Vec<(Value, Value)>,
}

/// natctl's table as `nft -j list table inet natctl` shows it, unchecked.
#[derive(Debug)]
struct NftTable {
    chains: Vec<NftChain>,
    maps: Vec<NftMap>,
    /// Every rule, chain by chain in the kernel's order, dispatch rules included.
    all: Vec<NftRule>,
}

impl NftTable {
    /// The rules that are not dispatch rules: natctl's own (and any put there by hand).
    fn rules(&self) -> Vec<NftRule> {
        self.all
            .iter()
            .filter(|r| !is_dispatch(r))
            .cloned()
            .collect()
    }

    /// The chains with no hook: the keys' chains.
    fn key_chains(&self) -> Vec<&str> {
        self.chains
            .iter()
            .filter(|c| c.hook.is_none())
            .map(|c| c.name.as_str())
            .collect()
    }

    /// The rules of CHAIN, in the kernel's order.
    fn chain(&self, chain: &str) -> Vec<&NftRule> {
        self.all.iter().filter(|r| r.chain == chain).collect()
    }

    /// The elements of map NAME as (key, chain it jumps to); the key as a chain name writes it
    /// (a mark in hex).
    fn elements(&self, name: &str) -> Vec<(String, String)> {
        let map = self
            .maps
            .iter()
            .find(|m| m.name == name)
            .unwrap_or_else(|| panic!("no map {name}: {:?}", self.maps));
        map.elem
            .iter()
            .map(|(key, verdict)| {
                let target = verdict["jump"]["target"]
                    .as_str()
                    .unwrap_or_else(|| panic!("{name}: {verdict} is not a jump"));
                (key_text(key), target.to_string())
            })
            .collect()
    }
}

fn nft_table(ns: &str) -> NftTable {
    let out = nsh(ns, "nft -j list table inet natctl").ok().stdout;
    let v: Value = serde_json::from_str(&out).unwrap_or_else(|e| panic!("nft -j: {e}: {out}"));
    let objects = v["nftables"].as_array().expect("nftables array");
    NftTable {
        chains: objects_of(objects, "chain"),
        maps: objects_of(objects, "map"),
        all: objects_of(objects, "rule"),
    }
}

/// The objects of KIND (`chain`, `map`, `rule`) in `nft -j` output, in its order.
fn objects_of<T: serde::de::DeserializeOwned>(objects: &[Value], kind: &str) -> Vec<T> {
    objects
        .iter()
        .filter_map(|o| o.get(kind))
        .map(|o| serde_json::from_value(o.clone()).unwrap_or_else(|e| panic!("{e}: {o}")))
        .collect()
}

/// Every rule in natctl's table but the dispatch rules, as `nft -j` shows it, once the table's
/// layout is checked ([`assert_layout`]).
#[track_caller]
fn nft_rules(ns: &str) -> Vec<NftRule> {
    let table = nft_table(ns);
    assert_layout(&table);
    table.rules()
}

/// natctl's base chains in the table's order, each with the kinds of key it dispatches by, in
/// the order of its dispatch rules: a rule part lives in the chain of the first of these keys
/// that it matches (`STAGE.KIND.VALUE`), else in the base chain.
const BASE_CHAINS: [(&str, &[&str]); 12] = [
    ("zones", &["dst4", "dst6", "iif"]),
    ("connmarks", &["dst4", "dst6", "iif", "ctmark"]),
    ("marks", &["dst4", "dst6", "iif"]),
    ("dstnat", &["dst4", "dst6", "iif"]),
    ("output", &["dst4", "dst6"]),
    ("srcnat", &["iif"]),
    ("input", &["iif"]),
    ("localmarks", &["ctmark", "dst4", "dst6"]),
    ("forward", &["iif"]),
    ("local_in", &["iif"]),
    ("zones_out", &["dst4", "dst6"]),
    ("marks_out", &["dst4", "dst6"]),
];

/// The kinds of key base chain STAGE dispatches by.
fn keys_of(stage: &str) -> &'static [&'static str] {
    BASE_CHAINS
        .iter()
        .find(|(s, _)| *s == stage)
        .unwrap_or_else(|| panic!("{stage} is not a base chain"))
        .1
}

/// What a key of KIND is read from, as nft -j writes it.
fn key_expr(kind: &str) -> Value {
    use serde_json::json;
    match kind {
        "dst4" => json!({"payload": {"protocol": "ip", "field": "daddr"}}),
        "dst6" => json!({"payload": {"protocol": "ip6", "field": "daddr"}}),
        "iif" => json!({"meta": {"key": "iifname"}}),
        "ctmark" => json!({"ct": {"key": "mark"}}),
        other => panic!("no key kind {other}"),
    }
}

/// A key as a chain name writes it: a name or address as it is, a mark in hex (`0x10`).
fn key_text(key: &Value) -> String {
    match key {
        Value::String(s) => s.clone(),
        Value::Number(n) => format!("{:#x}", n.as_u64().unwrap()),
        other => panic!("key {other}"),
    }
}

fn is_dispatch(rule: &NftRule) -> bool {
    rule.comment
        .as_deref()
        .is_some_and(|c| c.starts_with("natctl dispatch by "))
}

/// The chain a rule with expressions EXPRS belongs in, in base chain STAGE: that of the first
/// of the stage's keys it matches with `==` (an interface, one destination host, a mark), else
/// STAGE itself.
fn keyed_chain(stage: &str, exprs: &[Value]) -> String {
    keys_of(stage)
        .iter()
        .find_map(|kind| {
            let left = key_expr(kind);
            exprs.iter().find_map(|e| {
                let m = e.get("match")?;
                let key = &m["right"];
                (m["op"] == "==" && m["left"] == left && (key.is_string() || key.is_u64()))
                    .then(|| format!("{stage}.{kind}.{}", key_text(key)))
            })
        })
        .unwrap_or_else(|| stage.to_string())
}

/// natctl's table is laid out as docs/natctl.md says: the twelve base chains; at the head of
/// each, one dispatch rule per kind of key, in order (`iifname vmap @forward.iif comment
/// "natctl dispatch by iif"`), and no dispatch rule anywhere else; a verdict map per base chain
/// and kind, whose elements jump to the key's chain (`"d1" : jump forward.iif.d1`), one for each
/// key chain and none for another; every key chain holds rules, each of which matches its key;
/// and every other rule is in the chain of its own key.
#[track_caller]
fn assert_layout(t: &NftTable) {
    let maps = assert_dispatch(t);
    let mut targets: Vec<String> = maps
        .iter()
        .flat_map(|m| t.elements(m).into_iter().map(|(_, target)| target))
        .collect();
    let mut key_chains: Vec<String> = t.key_chains().iter().map(|c| c.to_string()).collect();
    targets.sort();
    key_chains.sort();
    assert_eq!(key_chains, targets, "a map element for each key chain");
    for chain in t.key_chains() {
        assert!(!t.chain(chain).is_empty(), "key chain {chain} is empty");
    }
    for rule in t.rules() {
        let stage = rule.chain.split('.').next().unwrap();
        assert_eq!(
            keyed_chain(stage, &rule.expr),
            rule.chain,
            "a rule outside its key's chain: {rule:?}"
        );
    }
}

/// The part of [`assert_layout`] that holds whatever rules the table has: the base chains,
/// their dispatch rules and maps, each element jumping to the chain of its key. Returns the
/// maps' names.
#[track_caller]
fn assert_dispatch(t: &NftTable) -> Vec<String> {
    use serde_json::json;
    let base: Vec<&str> = t
        .chains
        .iter()
        .filter(|c| c.hook.is_some())
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(base, BASE_CHAINS.map(|(s, _)| s), "the base chains");
    let mut maps: Vec<String> = Vec::new();
    for (stage, kinds) in BASE_CHAINS {
        let head: Vec<(Option<String>, Vec<Value>)> = t
            .chain(stage)
            .iter()
            .take(kinds.len())
            .map(|r| (r.comment.clone(), r.expr.clone()))
            .collect();
        let expected: Vec<(Option<String>, Vec<Value>)> = kinds
            .iter()
            .map(|k| {
                let vmap = json!({"vmap": {"key": key_expr(k), "data": format!("@{stage}.{k}")}});
                (Some(format!("natctl dispatch by {k}")), vec![vmap])
            })
            .collect();
        assert_eq!(head, expected, "the dispatch rules at the head of {stage}");
        for kind in kinds {
            let name = format!("{stage}.{kind}");
            let map = t.maps.iter().find(|m| m.name == name);
            let map = map.unwrap_or_else(|| panic!("no map {name}: {:?}", t.maps));
            let key_type = match *kind {
                "dst4" => "ipv4_addr",
                "dst6" => "ipv6_addr",
                "iif" => "ifname",
                _ => "mark",
            };
            assert_eq!(
                (map.key_type.as_str(), map.map.as_str()),
                (key_type, "verdict")
            );
            for (key, target) in t.elements(&name) {
                assert_eq!(target, format!("{name}.{key}"), "an element of {name}");
            }
            maps.push(name);
        }
    }
    let mut all_maps: Vec<String> = t.maps.iter().map(|m| m.name.clone()).collect();
    all_maps.sort();
    maps.sort();
    assert_eq!(all_maps, maps, "the dispatch maps");
    let dispatch = t.all.iter().filter(|r| is_dispatch(r)).count();
    let kinds: usize = BASE_CHAINS.iter().map(|(_, k)| k.len()).sum();
    assert_eq!(
        dispatch, kinds,
        "one dispatch rule per base chain and kind, none elsewhere"
    );
    maps
}

/// A rule's expressions without its counter, and the counter's (packets, bytes).
fn without_counter(exprs: &[Value]) -> (Vec<Value>, (u64, u64)) {
    let mut counter = (0, 0);
    let rest = exprs
        .iter()
        .filter(|e| match e.get("counter") {
            Some(c) => {
                counter = (c["packets"].as_u64().unwrap(), c["bytes"].as_u64().unwrap());
                false
            }
            None => true,
        })
        .cloned()
        .collect();
    (rest, counter)
}

/// `{"match":{"op":"==","left":LEFT,"right":RIGHT}}`
fn nft_match(left: Value, right: Value) -> Value {
    serde_json::json!({"match": {"op": "==", "left": left, "right": right}})
}

/// An address or network as nft -j writes it: a bare address, or `{"prefix":{..}}`.
fn nft_addr(a: &str) -> Value {
    match a.split_once('/') {
        Some((addr, len)) => {
            serde_json::json!({"prefix": {"addr": addr, "len": len.parse::<u8>().unwrap()}})
        }
        None => serde_json::json!(a),
    }
}

/// A port, or a range as `{"range":[first,last]}`; an address range the same way.
fn nft_range<T: std::str::FromStr + serde::Serialize>(v: &str) -> Value
where
    T::Err: std::fmt::Debug,
{
    match v.split_once('-') {
        Some((a, b)) => {
            serde_json::json!({"range": [a.parse::<T>().unwrap(), b.parse::<T>().unwrap()]})
        }
        None => serde_json::json!(v.parse::<T>().unwrap()),
    }
}

/// What `nft -j` must show for the `part`-th nftables rule of a listed natctl rule (the
/// mapping docs/natctl.md documents), built from the listed fields alone.
fn expected_exprs(r: &RuleJson, part: usize) -> Vec<Value> {
    use serde_json::json;
    let counter = json!({"counter": {"packets": r.packets.unwrap(), "bytes": r.bytes.unwrap()}});
    let ct = |key: &str| json!({"ct": {"key": key}});
    let op = |op: &str, left: Value, right: Value| json!({"match": {"op": op, "left": left, "right": right}});
    // connmark --dst: one rule marks the connections opened to DST (from IFACE, or any: the
    // 1st, in connmarks; with --local the 2nd, in localmarks), the others (in connmarks and
    // localmarks) restore the mark on replies; no guard. The rule is of one family: the
    // restores start with `meta nfproto` (the marking has `ip daddr`).
    if let (true, Some(dst)) = (r.kind == "connmark", r.dst.as_deref()) {
        let marking = if r.local == Some(true) { 1 } else { 0 };
        let set = json!(r.set.unwrap());
        let (proto, nfproto) = match r.family.as_str() {
            "inet" => ("ip", "ipv4"),
            _ => ("ip6", "ipv6"),
        };
        let daddr = json!({"payload": {"protocol": proto, "field": "daddr"}});
        return if part == marking {
            let mut e: Vec<Value> = r
                .iif
                .iter()
                .map(|i| nft_match(json!({"meta": {"key": "iifname"}}), json!(i)))
                .collect();
            e.extend([
                nft_match(daddr, nft_addr(dst)),
                op("in", ct("state"), json!("new")),
                nft_match(ct("direction"), json!("original")),
                counter,
                json!({"mangle": {"key": {"ct": {"key": "mark"}}, "value": set}}),
            ]);
            e
        } else {
            vec![
                nft_match(json!({"meta": {"key": "nfproto"}}), json!(nfproto)),
                nft_match(ct("direction"), json!("reply")),
                nft_match(ct("mark"), set),
                counter,
                json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"ct": {"key": "mark"}}}}),
            ]
        };
    }
    // connmark: 1st rule marks the connections IFACE opens, 2nd drops foreign replies on IFACE,
    // 3rd and 4th (connmarks and localmarks) restore the mark on replies.
    if r.kind == "connmark" {
        let (iif, set) = (json!(r.iif.as_deref().unwrap()), json!(r.set.unwrap()));
        let iifname = nft_match(json!({"meta": {"key": "iifname"}}), iif);
        return match part {
            0 => vec![
                iifname,
                op("in", ct("state"), json!("new")),
                nft_match(ct("direction"), json!("original")),
                counter,
                json!({"mangle": {"key": {"ct": {"key": "mark"}}, "value": set}}),
            ],
            1 => vec![
                iifname,
                nft_match(ct("direction"), json!("reply")),
                op("!=", ct("mark"), set),
                counter,
                json!({"drop": null}),
            ],
            _ => vec![
                nft_match(ct("direction"), json!("reply")),
                nft_match(ct("mark"), set),
                counter,
                json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": {"ct": {"key": "mark"}}}}),
            ],
        };
    }
    let family = match r.family.as_str() {
        "inet" => Some("ip"),
        "inet6" => Some("ip6"),
        "any" => None,
        other => panic!("family {other}"),
    };
    let mut e = Vec::new();
    let addressed = r.src.is_some() || r.dst.is_some() || r.daddr.is_some();
    // nft leaves `meta nfproto` implied by an ICMP protocol too.
    let icmp = matches!(r.proto.as_deref(), Some("icmp" | "icmpv6"));
    if let (Some(f), false, false) = (family, addressed, icmp) {
        let nfproto = if f == "ip" { "ipv4" } else { "ipv6" };
        e.push(nft_match(
            json!({"meta": {"key": "nfproto"}}),
            json!(nfproto),
        ));
    }
    let meta = |key: &str| json!({"meta": {"key": key}});
    let payload =
        |protocol: &str, field: &str| json!({"payload": {"protocol": protocol, "field": field}});
    e.extend(
        r.iif
            .as_deref()
            .map(|i| nft_match(meta("iifname"), json!(i))),
    );
    e.extend(
        r.oif
            .as_deref()
            .map(|i| nft_match(meta("oifname"), json!(i))),
    );
    let f = family.unwrap_or_default();
    e.extend(
        r.src
            .as_deref()
            .map(|a| nft_match(payload(f, "saddr"), nft_addr(a))),
    );
    for a in [&r.dst, &r.daddr].into_iter().flatten() {
        e.push(nft_match(payload(f, "daddr"), nft_addr(a)));
    }
    match (r.proto.as_deref(), r.dport.as_deref()) {
        (Some(p), Some(d)) => e.push(nft_match(payload(p, "dport"), nft_range::<u16>(d))),
        (Some("icmpv6"), None) => e.push(nft_match(meta("l4proto"), json!("ipv6-icmp"))),
        (Some(p), None) => e.push(nft_match(meta("l4proto"), json!(p))),
        _ => {}
    }
    if r.reply == Some(true) {
        e.push(nft_match(ct("direction"), json!("reply")));
    }
    e.push(counter);
    let to = r.to.as_deref().unwrap_or_default();
    e.push(match r.kind.as_str() {
        "filter" => {
            let verdict = r.verdict.as_deref().or(r.default_verdict.as_deref());
            json!({ verdict.unwrap(): null })
        }
        "masquerade" => json!({"masquerade": null}),
        "snat" => json!({"snat": {"family": f, "addr": nft_range::<std::net::IpAddr>(to)}}),
        "dnat" => {
            let (addr, port) = match to.strip_prefix('[') {
                Some(v6) => v6.split_once("]:").unwrap(),
                None if to.parse::<std::net::IpAddr>().is_ok() => (to, ""),
                None => to.split_once(':').unwrap(),
            };
            let mut nat = json!({"family": f, "addr": addr});
            if !port.is_empty() {
                nat["port"] = nft_range::<u16>(port);
            }
            json!({"dnat": nat})
        }
        "mark" => json!({"mangle": {"key": {"meta": {"key": "mark"}}, "value": r.set.unwrap()}}),
        "zone" => {
            let mut ct = json!({"key": "zone"});
            if r.dir.as_deref() != Some("both") {
                ct["dir"] = json!(r.dir);
            }
            json!({"mangle": {"key": {"ct": ct}, "value": r.zone.unwrap()}})
        }
        other => panic!("no expectation for kind {other}"),
    });
    e
}

/// The chain each part of a listed rule belongs in, in the order of its parts (docs/natctl.md),
/// built from the listed fields alone: the base chain of the part, or the chain of its key there
/// (`STAGE.KIND.VALUE`): its destination host (`--dst`, `--daddr` without a prefix length) where
/// the base chain dispatches by destination, else its interface (`--iif`) where that chain
/// dispatches by interface; a connection mark's restores by the mark (`0x10`).
fn part_chains(r: &RuleJson) -> Vec<String> {
    let dst = r.dst.as_deref().or(r.daddr.as_deref());
    // (a part keyed by a mark is a restore: `restores` below)
    let keyed = |stage: &str| -> String {
        let host = dst.filter(|d| !d.contains('/'));
        keys_of(stage)
            .iter()
            .find_map(|kind| match *kind {
                "dst4" => host
                    .filter(|h| !h.contains(':'))
                    .map(|h| format!("dst4.{h}")),
                "dst6" => host
                    .filter(|h| h.contains(':'))
                    .map(|h| format!("dst6.{h}")),
                "iif" => r.iif.as_deref().map(|i| format!("iif.{i}")),
                _ => None,
            })
            .map_or_else(|| stage.to_string(), |key| format!("{stage}.{key}"))
    };
    let local = r.local == Some(true);
    let restores = |set: u32| {
        // (they match no interface and no destination: only the mark)
        let chain = |stage: &str| format!("{stage}.ctmark.{set:#x}");
        [chain("connmarks"), chain("localmarks")]
    };
    match r.kind.as_str() {
        "masquerade" => vec![keyed("srcnat")],
        "netmap" if r.src.is_some() => vec![keyed("srcnat")],
        "netmap" => vec![keyed("dstnat")],
        "snat" if local => vec![keyed("srcnat"), keyed("input")],
        "snat" => vec![keyed("srcnat")],
        "dnat" if local => vec![keyed("dstnat"), keyed("output")],
        "dnat" => vec![keyed("dstnat")],
        "zone" if local => vec![keyed("zones_out")],
        "zone" => vec![keyed("zones")],
        "mark" if local => vec![keyed("marks_out")],
        "mark" => vec![keyed("marks")],
        "filter" if r.early == Some(true) => vec![keyed("zones")],
        "filter" if local => vec![keyed("local_in")],
        "filter" => vec![keyed("forward")],
        "connmark" => {
            let set = r.set.unwrap();
            let [connmarks, localmarks] = restores(set);
            match (dst, local) {
                (None, _) => {
                    let own = keyed("connmarks");
                    vec![own.clone(), own, connmarks, localmarks]
                }
                (Some(_), false) => vec![keyed("connmarks"), connmarks, localmarks],
                (Some(_), true) => vec![connmarks, keyed("localmarks"), localmarks],
            }
        }
        other => panic!("no chains for kind {other}"),
    }
}

/// Which part of its rule the I-th listed entry is: the one that belongs in its chain (the
/// n-th of them for the n-th entry of its id there: a chain holds a rule's parts in order).
#[track_caller]
fn part_of(listed: &[RuleJson], i: usize) -> usize {
    let r = &listed[i];
    let chain = r.chain.as_deref().unwrap();
    let nth = listed[..i]
        .iter()
        .filter(|o| o.id == r.id && o.chain == r.chain)
        .count();
    let chains = part_chains(r);
    (0..chains.len())
        .filter(|&j| chains[j] == chain)
        .nth(nth)
        .unwrap_or_else(|| panic!("{r:?} is in {chain}, its parts belong in {chains:?}"))
}

/// Every listed rule is one nftables rule, with the same chain, handle, comment and, expression
/// by expression, what its listed arguments say. Its counters lie between those nft reads just
/// before and just after the listing: a late packet (a neighbour probe) may arrive in between.
#[track_caller]
fn assert_list_matches_nft(ns: &str) -> Vec<RuleJson> {
    let before = nft_rules(ns);
    let listed = list_intact(ns);
    let kernel = nft_rules(ns);
    assert_eq!(listed.len(), kernel.len(), "{listed:?}\n{kernel:?}");
    let find = |rules: &[NftRule], r: &RuleJson| -> Option<NftRule> {
        let k = rules
            .iter()
            .find(|k| Some(&k.chain) == r.chain.as_ref() && Some(k.handle) == r.handle)?;
        Some(k.clone())
    };
    let mut parts: std::collections::HashMap<&str, Vec<usize>> = Default::default();
    for (i, r) in listed.iter().enumerate() {
        let k =
            find(&kernel, r).unwrap_or_else(|| panic!("listed {r:?} is not in nft -j: {kernel:?}"));
        let comment = k.comment.as_deref().unwrap_or_default();
        assert!(
            comment.starts_with(&format!("natctl:{} {} ", r.id, r.kind)),
            "{comment}"
        );
        let part = part_of(&listed, i);
        parts.entry(&r.id).or_default().push(part);
        let (exprs, after) = without_counter(&k.expr);
        let (expected, listed_counter) = without_counter(&expected_exprs(r, part));
        assert_eq!(exprs, expected, "{} part {part}: {comment}", r.kind);
        let earlier = find(&before, r).map_or((0, 0), |b| without_counter(&b.expr).1);
        assert!(
            earlier.0 <= listed_counter.0
                && listed_counter.0 <= after.0
                && earlier.1 <= listed_counter.1
                && listed_counter.1 <= after.1,
            "{} part {part}: listed counter {listed_counter:?} not between nft's {earlier:?} \
             and {after:?}: {comment}",
            r.kind
        );
    }
    // every part of every rule, once
    for (id, mut found) in parts {
        let r = listed.iter().find(|r| r.id == id).unwrap();
        found.sort();
        assert_eq!(
            found,
            (0..part_chains(r).len()).collect::<Vec<_>>(),
            "{r:?}"
        );
    }
    listed
}

#[test]
fn new_kinds_read_back_from_the_kernel_field_by_field() {
    let lab = Lab::new();
    let ns = lab.netns("fields");
    let cases: &[&[&str]] = &[
        &["masquerade", "--src", "192.0.2.0/24"],
        &["masquerade", "--dst", "2001:db8:5::/64"],
        &[
            "masquerade",
            "--oif",
            "eth0",
            "--src",
            "fd00::/8",
            "--dst",
            "fd00:1::1",
        ],
        &[
            "snat",
            "--to",
            "203.0.113.9",
            "--dst",
            "198.51.100.0/24",
            "--proto",
            "tcp",
            "--dport",
            "443",
        ],
        &[
            "snat",
            "--to",
            "2001:db8::1-2001:db8::5",
            "--dst",
            "2001:db8:1::/64",
            "--proto",
            "udp",
            "--dport",
            "53-60",
        ],
        &[
            "snat",
            "--to",
            "203.0.113.10",
            "--oif",
            "eth0",
            "--proto",
            "udp",
            "--dport",
            "53",
        ],
        &[
            "snat",
            "--to",
            "2001:db8::7",
            "--src",
            "2001:db8:2::/64",
            "--proto",
            "tcp",
        ],
        &[
            "dnat",
            "--to",
            "192.0.2.1",
            "--daddr",
            "203.0.113.254",
            "--proto",
            "tcp",
            "--dport",
            "54321",
            "--local",
        ],
        &[
            "dnat",
            "--to",
            "[2001:db8::1]:8080",
            "--daddr",
            "2001:db8:9::1",
            "--proto",
            "tcp",
            "--dport",
            "80",
            "--local",
        ],
        &["connmark", "--iif", "eth0", "--set", "0x10"],
        &["connmark", "--iif", "eth1", "--set", "4294967295"],
        &["snat", "--to", "100.64.0.7", "--iif", "wg7", "--local"],
        &["snat", "--to", "fd64::7", "--iif", "wg7", "--local"],
        &["snat", "--to", "100.64.0.8", "--iif", "wg8"],
    ];
    for args in cases {
        // --check predicts, changes nothing; the add does what it predicted; the same add
        // again is changed:false with the same id, and so is its --check.
        let before = ruleset(&ns);
        let check: Added = parse(&natctl(&ns, &[&["--check"][..], args].concat()).ok());
        assert!(check.changed, "{args:?}");
        assert_eq!(ruleset(&ns), before, "--check {args:?} changed the ruleset");
        let added = add(&ns, args);
        assert!(added.changed, "{args:?}");
        assert_eq!(added.rule.id, check.rule.id, "{args:?}");
        assert_eq!(added.rule.kind, args[0]);
        let after = ruleset(&ns);
        let again = add(&ns, args);
        assert!(!again.changed, "{args:?}");
        assert_eq!(again.rule.id, added.rule.id, "{args:?}");
        assert!(!natctl(&ns, &[&["--check"][..], args].concat())
            .ok()
            .changed());
        assert_eq!(
            ruleset(&ns),
            after,
            "re-adding {args:?} changed the ruleset"
        );
    }
    let listed = assert_list_matches_nft(&ns);

    // dnat --local is in prerouting and output, snat --local in postrouting and input, each in
    // the chain of its destination host, or of its interface; connmark is four rules: one
    // marks, one drops foreign replies (both in the chain of its interface), two restore (in the
    // chains of its mark in connmarks, and localmarks for replies the namespace sends itself).
    // Each as listed, in the kernel's order: chain by chain, in the order they were made.
    let chains = |kind: &str, family: &str| -> Vec<String> {
        listed
            .iter()
            .filter(|r| r.kind == kind && r.family == family)
            .map(|r| r.chain.clone().unwrap())
            .collect()
    };
    assert_eq!(
        chains("dnat", "inet"),
        ["dstnat.dst4.203.0.113.254", "output.dst4.203.0.113.254"]
    );
    assert_eq!(
        chains("dnat", "inet6"),
        ["dstnat.dst6.2001:db8:9::1", "output.dst6.2001:db8:9::1"]
    );
    assert_eq!(
        chains("connmark", "any"),
        [
            "connmarks.iif.eth0",
            "connmarks.iif.eth0",
            "connmarks.ctmark.0x10",
            "localmarks.ctmark.0x10",
            "connmarks.iif.eth1",
            "connmarks.iif.eth1",
            "connmarks.ctmark.0xffffffff",
            "localmarks.ctmark.0xffffffff",
        ]
    );
    // (rules with no key stay in their base chain, after its dispatch rules)
    assert_eq!(chains("masquerade", "inet6"), ["srcnat", "srcnat"]);
    let snat_chains = |to: &str| -> Vec<String> {
        listed
            .iter()
            .filter(|r| r.kind == "snat" && r.to.as_deref() == Some(to))
            .map(|r| r.chain.clone().unwrap())
            .collect()
    };
    assert_eq!(
        snat_chains("100.64.0.7"),
        ["srcnat.iif.wg7", "input.iif.wg7"]
    );
    assert_eq!(snat_chains("fd64::7"), ["srcnat.iif.wg7", "input.iif.wg7"]);
    assert_eq!(snat_chains("100.64.0.8"), ["srcnat.iif.wg8"]);
    assert_eq!(snat_chains("203.0.113.9"), ["srcnat"]);
    assert!(listed
        .iter()
        .filter(|r| r.kind == "dnat")
        .all(|r| r.local == Some(true)));
    let connmark_16 = listed.iter().find(|r| r.kind == "connmark").unwrap();
    assert_eq!(connmark_16.set, Some(16));
    assert_eq!(connmark_16.iif.as_deref(), Some("eth0"));
    let masq = listed.iter().find(|r| r.kind == "masquerade").unwrap();
    assert_eq!((masq.oif.as_deref(), masq.family.as_str()), (None, "inet"));

    // The base chains' hooks and priorities, as nft reads them back.
    let rs = nsh(&ns, "nft list table inet natctl").ok().stdout;
    for chain in [
        "chain zones {\n\t\ttype filter hook prerouting priority raw;",
        "chain connmarks {\n\t\ttype filter hook prerouting priority mangle - 10;",
        "chain marks {\n\t\ttype filter hook prerouting priority mangle;",
        "chain dstnat {\n\t\ttype nat hook prerouting priority dstnat;",
        "chain output {\n\t\ttype nat hook output priority -100;",
        "chain srcnat {\n\t\ttype nat hook postrouting priority srcnat;",
        "chain input {\n\t\ttype nat hook input priority 100;",
        "chain localmarks {\n\t\ttype route hook output priority mangle - 10;",
    ] {
        assert!(rs.contains(chain), "{chain}: {rs}");
    }

    // del removes every nftables rule of the id at once.
    let dnat = listed.iter().find(|r| r.kind == "dnat").unwrap();
    let del: Added = parse(&natctl(&ns, &["del", &dnat.id]).ok());
    assert!(del.changed);
    assert_eq!(del.rule.local, Some(true));
    assert!(!nft_rules(&ns).iter().any(|k| k
        .comment
        .as_deref()
        .unwrap_or_default()
        .contains(&dnat.id)));
    // and the chains of its destination, which held nothing else
    let key_chains = nft_table(&ns).key_chains().join(" ");
    assert!(!key_chains.contains("203.0.113.254"), "{key_chains}");
    assert_list_matches_nft(&ns);
}

/// A listed rule of `kind` in `chain`.
#[track_caller]
fn listed_in(ns: &str, kind: &str, chain: &str, family: &str) -> RuleJson {
    list(ns)
        .into_iter()
        .find(|r| r.kind == kind && r.chain.as_deref() == Some(chain) && r.family == family)
        .unwrap_or_else(|| panic!("no {kind} {family} rule in chain {chain}"))
}

#[test]
fn dnat_local_forwards_what_the_router_itself_opens() {
    let lab = Lab::new();
    let w = walkthrough(&lab);
    for (public, lan_host, v6) in [
        ("203.0.113.254", "192.0.2.1", false),
        ("fd00:113::fe", "fd00:2::1", true),
    ] {
        let family = if v6 { "inet6" } else { "inet" };
        let forward = [
            "dnat", "--daddr", public, "--proto", "tcp", "--dport", "54321", "--to", lan_host,
        ];
        // Without --local the router's own connection is not translated: nothing listens on
        // the router's port, so it is refused.
        let plain = add(&w.router, &forward);
        let refused = nsh(&w.router, &format!("nc -z -w 2 {public} 54321"));
        assert_ne!(
            refused.code, 0,
            "{public}:54321 answered without --local: {refused:?}"
        );
        natctl(&w.router, &["del", &plain.rule.id]).ok();

        let local = add(&w.router, &[&forward[..], &["--local"]].concat());
        assert!(local.changed && local.rule.local == Some(true));
        assert_ne!(local.rule.id, plain.rule.id);
        let (got, err) = tcp_exchange(&w.lan, 54321, &w.router, public, v6);
        assert_eq!(got, "hello-from-client", "{public} -> {lan_host}: {err}");
        // It went through the output hook: that rule counted it, the prerouting one did not.
        let v = if v6 { "dst6" } else { "dst4" };
        let (output, dstnat) = (
            format!("output.{v}.{public}"),
            format!("dstnat.{v}.{public}"),
        );
        assert!(
            listed_in(&w.router, "dnat", &output, family)
                .packets
                .unwrap()
                >= 1
        );
        assert_eq!(
            listed_in(&w.router, "dnat", &dstnat, family).packets,
            Some(0)
        );
        assert_list_matches_nft(&w.router);
        // The walkthrough's forward from wan still works with the same rule.
        let (got, err) = tcp_exchange(&w.lan, 54321, &w.wan, public, v6);
        assert_eq!(got, "hello-from-client", "wan -> {public}: {err}");
        assert!(
            listed_in(&w.router, "dnat", &dstnat, family)
                .packets
                .unwrap()
                >= 1
        );
    }
}

/// Each `(port, source, dest, seen, v6)`: a TCP exchange from lan's address `source` to wan's
/// `dest` on `port` arrives at wan from the address `seen`.
#[track_caller]
fn assert_arrive_as(w: &Walk, cases: &[(u16, &str, &str, &str, bool)]) {
    for &(port, source, dest, seen, v6) in cases {
        let (got, err) = tcp_exchange_from(&w.wan, port, &w.lan, Some(source), dest, v6);
        assert_eq!(got, "hello-from-client", "{source} -> {dest}:{port}: {err}");
        assert!(
            err.contains(&format!("on {seen} ")),
            "{source} -> {dest}:{port} should arrive as {seen}: {err}"
        );
    }
}

#[test]
fn masquerade_by_source_and_snat_by_port_translate_only_what_they_select() {
    let lab = Lab::new();
    let w = walkthrough(&lab);
    ip_in(&w.lan, "addr add 192.0.2.2/24 dev lan-veth0");
    ip_in(&w.lan, "addr add fd00:2::2/64 dev lan-veth0 nodad");
    // iptables -t nat -A POSTROUTING -s 192.0.2.1 -j MASQUERADE: no interface at all.
    let m4 = add(&w.router, &["masquerade", "--src", "192.0.2.1"]);
    let m6 = add(&w.router, &["masquerade", "--src", "fd00:2::1/128"]);
    assert_eq!(
        (m4.rule.family.as_str(), m4.rule.oif.as_deref()),
        ("inet", None)
    );
    assert_eq!(m6.rule.src.as_deref(), Some("fd00:2::1"));
    assert_arrive_as(
        &w,
        &[
            (8090, "192.0.2.1", "203.0.113.1", "203.0.113.254", false),
            (8091, "192.0.2.2", "203.0.113.1", "192.0.2.2", false),
            (8092, "fd00:2::1", "fd00:113::1", "fd00:113::fe", true),
            (8093, "fd00:2::2", "fd00:113::1", "fd00:2::2", true),
        ],
    );
    let ct = nsh(&w.router, "conntrack -L -p tcp 2>/dev/null")
        .ok()
        .stdout;
    assert!(
        ct.contains("src=203.0.113.1 dst=203.0.113.254 sport=8090"),
        "{ct}"
    );
    assert!(
        ct.contains("src=203.0.113.1 dst=192.0.2.2 sport=8091"),
        "{ct}"
    );
    assert_list_matches_nft(&w.router);
    natctl(&w.router, &["flush"]).ok();
    nsh(&w.router, "conntrack -F 2>/dev/null").ok();

    // SNAT by destination port: only connections to port 8094 leave as 203.0.113.253.
    ip_in(&w.router, "addr add 203.0.113.253/24 dev gw-veth1");
    ip_in(&w.router, "addr add fd00:113::fd/64 dev gw-veth1 nodad");
    add(
        &w.router,
        &[
            "snat",
            "--to",
            "203.0.113.253",
            "--proto",
            "tcp",
            "--dport",
            "8094",
        ],
    );
    add(
        &w.router,
        &[
            "snat",
            "--to",
            "fd00:113::fd",
            "--dst",
            "fd00:113::/64",
            "--proto",
            "tcp",
            "--dport",
            "8094-8095",
        ],
    );
    assert_arrive_as(
        &w,
        &[
            (8094, "192.0.2.1", "203.0.113.1", "203.0.113.253", false),
            (8096, "192.0.2.1", "203.0.113.1", "192.0.2.1", false),
            (8095, "fd00:2::1", "fd00:113::1", "fd00:113::fd", true),
            (8096, "fd00:2::1", "fd00:113::1", "fd00:2::1", true),
        ],
    );
    for r in assert_list_matches_nft(&w.router) {
        assert!(r.packets.unwrap() >= 1, "{r:?} matched nothing");
    }
}

#[test]
fn connmark_sends_replies_back_the_way_they_came() {
    // Two clients with the same addresses (10.1.0.3, fd00:1::3) on two veths into one router,
    // each in its own conntrack zone, both talking to one server at once: only the connection
    // mark tells the router which interface a reply belongs to.
    let lab = Lab::new();
    let (router, server) = (lab.netns("cmr"), lab.netns("cms"));
    let clients = [lab.netns("cm1"), lab.netns("cm2")];
    dual_stack_router(&router, &[&server, &clients[0], &clients[1]]);
    veth(&router, "cm-s", &server, "eth0");
    ip_in(&router, "addr add 10.2.0.254/24 dev cm-s");
    ip_in(&router, "addr add fd00:2::fe/64 dev cm-s");
    ip_in(&server, "addr add 10.2.0.1/24 dev eth0");
    ip_in(&server, "addr add fd00:2::1/64 dev eth0");
    for (i, client) in clients.iter().enumerate() {
        let n = i + 1;
        let dev = format!("cm-c{n}");
        veth(&router, &dev, client, "eth0");
        ip_in(client, "addr add 10.1.0.3/24 dev eth0");
        ip_in(client, "addr add fd00:1::3/64 dev eth0");
        ip_in(client, "route add default via 10.1.0.1");
        ip_in(client, "-6 route add default via fd00:1::1");
        ip_in(
            &router,
            &format!("addr add 10.1.0.1/24 dev {dev} noprefixroute"),
        );
        ip_in(
            &router,
            &format!("addr add fd00:1::1/64 dev {dev} noprefixroute"),
        );
        // Only the marked table knows the way to a client: fwmark N lookup 100+N.
        for fam in ["-4", "-6"] {
            let net = if fam == "-4" {
                "10.1.0.0/24"
            } else {
                "fd00:1::/64"
            };
            ip_in(
                &router,
                &format!("{fam} route add {net} dev {dev} table {}", 100 + n),
            );
            ip_in(
                &router,
                &format!("{fam} rule add fwmark {n} lookup {}", 100 + n),
            );
        }
        let iif = dev.as_str();
        add(
            &router,
            &[
                "zone",
                "--iif",
                iif,
                "--zone",
                &n.to_string(),
                "--dir",
                "original",
            ],
        );
    }
    let masquerade = add(&router, &["masquerade", "--oif", "cm-s"]).rule.id;
    let both_ping = |dest: &str| -> (bool, bool) {
        let r = sh(&format!(
            "ip netns exec {0} ping -c 3 -i 0.2 -W 2 {dest} >/dev/null & a=$!; \
             ip netns exec {1} ping -c 3 -i 0.2 -W 2 {dest} >/dev/null & b=$!; \
             wait $a; echo a=$?; wait $b; echo b=$?",
            clients[0], clients[1]
        ));
        (r.stdout.contains("a=0"), r.stdout.contains("b=0"))
    };
    // Without connection marks the replies have no route back: neither client hears back.
    assert_eq!(both_ping("10.2.0.1"), (false, false));
    nsh(&router, "conntrack -F 2>/dev/null").ok();

    for n in [1, 2] {
        let added = add(
            &router,
            &[
                "connmark",
                "--iif",
                &format!("cm-c{n}"),
                "--set",
                &n.to_string(),
            ],
        );
        assert_eq!(
            (added.rule.set, added.rule.family.as_str()),
            (Some(n), "any")
        );
    }
    for dest in ["10.2.0.1", "fd00:2::1"] {
        assert_eq!(
            both_ping(dest),
            (true, true),
            "both clients ping {dest} at once"
        );
    }
    // conntrack: each client's connection is in its zone and carries its mark.
    let ct = nsh(
        &router,
        "conntrack -L 2>/dev/null; conntrack -L -f ipv6 2>/dev/null",
    )
    .ok()
    .stdout;
    for n in [1, 2] {
        for src in ["src=10.1.0.3 dst=10.2.0.1", "src=fd00:1::3 dst=fd00:2::1"] {
            assert!(
                ct.lines().any(|l| l.contains(src)
                    && l.contains(&format!(" mark={n} "))
                    && l.contains(&format!("zone-orig={n}"))),
                "no {src} connection with mark={n} zone-orig={n}: {ct}"
            );
        }
    }
    // The router's own address: its replies take the output hook, where connmark's localmarks
    // rule restores the mark. Each client is SNATed to an address of its own (snat --iif
    // --local: the input hook, and postrouting for what is forwarded, in place of the
    // masquerade), so that the two same-tuple connections have distinct replies.
    nsh(&router, "conntrack -F 2>/dev/null").ok();
    natctl(&router, &["del", &masquerade]).ok();
    ip_in(&server, "route add 10.9.0.0/24 via 10.2.0.254");
    for n in [1, 2] {
        let dev = format!("cm-c{n}");
        ip_in(&router, &format!("addr add 10.9.0.{n}/32 dev {dev}"));
        let to = format!("10.9.0.{n}");
        add(&router, &["snat", "--to", &to, "--iif", &dev, "--local"]);
    }
    for dest in ["10.2.0.254", "10.2.0.1"] {
        assert_eq!(
            both_ping(dest),
            (true, true),
            "both clients ping {dest} at once, each SNATed to its own address"
        );
    }
    let ct = nsh(&router, "conntrack -L 2>/dev/null").ok().stdout;
    for n in [1, 2] {
        assert!(
            ct.lines()
                .any(|l| l.contains("src=10.1.0.3 dst=10.2.0.254 ")
                    && l.contains(&format!("src=10.2.0.254 dst=10.9.0.{n} "))
                    && l.contains(&format!("zone-orig={n}"))),
            "client {n}'s ping of the router, SNATed to 10.9.0.{n} in zone {n}: {ct}"
        );
    }
    // Every connmark rule did its part: marked the requests, restored the mark on replies;
    // no reply arrived from a client, so the guard against foreign replies dropped nothing.
    let listed = assert_list_matches_nft(&router);
    for (i, r) in listed.iter().enumerate() {
        if r.kind == "connmark" && part_of(&listed, i) == 1 {
            assert_eq!(r.packets, Some(0), "{r:?} dropped something");
        } else {
            assert!(r.packets.unwrap() >= 1, "{r:?} matched nothing");
        }
    }
}

/// ROUTER forwards IPv4 and IPv6 without reverse-path filtering (the replies of identical
/// clients come back on other interfaces than a FIB lookup would pick); no namespace of ROUTER
/// and OTHERS runs duplicate address detection, so addresses work at once.
fn dual_stack_router(router: &str, others: &[&String]) {
    for ns in std::iter::once(router).chain(others.iter().map(|s| s.as_str())) {
        sysctl_in(ns, "net.ipv6.conf.all.accept_dad=0");
        sysctl_in(ns, "net.ipv6.conf.default.accept_dad=0");
    }
    sysctl_in(router, "net.ipv4.ip_forward=1");
    sysctl_in(router, "net.ipv6.conf.all.forwarding=1");
    sysctl_in(router, "net.ipv4.conf.all.rp_filter=0");
    sysctl_in(router, "net.ipv4.conf.default.rp_filter=0");
}

/// The zones-mode center in miniature: devices A and B (both 192.168.1.10) behind interfaces
/// `ta` and `tb` of `center`, each in its own conntrack zone (original direction), marked by
/// connmark 1 and 2, SNATed to 100.64.0.11 and 100.64.0.12 and routed back by `fwmark N lookup
/// N`; a server at 100.64.0.1 behind `sv0`. OVER_MAPS: the zone, connmark and SNAT are three
/// rules over maps (`--iif @zone_of --zone @zone_of`...), each device three elements of them;
/// else each device has rules of its own. Returns (center, devA, devB, server).
fn connmark_center(lab: &Lab, over_maps: bool) -> (String, String, String, String) {
    let center = lab.netns("ctr");
    let (dev_a, dev_b, server) = (lab.netns("da"), lab.netns("db"), lab.netns("sv"));
    sysctl_in(&center, "net.ipv4.ip_forward=1");
    sysctl_in(&center, "net.ipv4.conf.all.rp_filter=0");
    sysctl_in(&center, "net.ipv4.conf.default.rp_filter=0");
    veth(&center, "sv0", &server, "eth0");
    ip_in(&center, "addr add 100.64.0.254/24 dev sv0");
    ip_in(&server, "addr add 100.64.0.1/24 dev eth0");
    if over_maps {
        for (map, value) in [
            ("zone_of", "zone"),
            ("cm", "ctmark"),
            ("snat_of", "ipv4_addr"),
        ] {
            natctl(
                &center,
                &["set", "add", map, "--type", "ifname", "--value", value],
            )
            .ok();
        }
        for args in [
            &[
                "zone", "--iif", "@zone_of", "--zone", "@zone_of", "--dir", "original",
            ][..],
            &["connmark", "--iif", "@cm", "--set", "@cm"],
            &["snat", "--to", "@snat_of", "--iif", "@snat_of"],
        ] {
            natctl(&center, args).ok();
        }
    }
    for (n, (dev, iface)) in [(&dev_a, "ta"), (&dev_b, "tb")].into_iter().enumerate() {
        let n = n + 1;
        veth(&center, iface, dev, "eth0");
        ip_in(dev, "addr add 192.168.1.10/24 dev eth0");
        ip_in(dev, "route add default via 192.168.1.1");
        ip_in(
            &center,
            &format!("addr add 192.168.1.1/24 dev {iface} noprefixroute"),
        );
        ip_in(&center, &format!("addr add 100.64.0.1{n}/32 dev sv0"));
        ip_in(&center, &format!("route add default dev {iface} table {n}"));
        ip_in(&center, &format!("rule add fwmark {n} lookup {n}"));
        let (n, addr) = (n.to_string(), format!("100.64.0.1{n}"));
        if over_maps {
            for (map, value) in [("zone_of", &n), ("cm", &n), ("snat_of", &addr)] {
                natctl(&center, &["element", "add", map, iface, value]).ok();
            }
            continue;
        }
        add(
            &center,
            &["zone", "--iif", iface, "--zone", &n, "--dir", "original"],
        );
        add(&center, &["connmark", "--iif", iface, "--set", &n]);
        add(&center, &["snat", "--to", &addr, "--iif", iface]);
    }
    (center, dev_a, dev_b, server)
}

/// A UDP server on 100.64.0.1:5000 that answers the first datagram with datagrams `srv-I`,
/// 50 ms apart, at least 60 and until told to stop, then `end`; a client in device B
/// (192.168.1.10:4000) that says hello until the first comes back and counts them up to `end`;
/// and, once B's connection is there and while the server sends, device A sending 40 datagrams
/// spoofed as the reply side of B's connection (from 100.64.0.1:5000 to B's address
/// 100.64.0.12:4000) and counting the server's datagrams that reach it.
///
/// Each phase waits for the one before rather than for a fixed time: in the VM lane's emulated
/// CPU, starting python takes seconds.
/// Returns (B's count, A's count, the server's count).
fn spoof_run(dev_a: &str, dev_b: &str, server: &str) -> (u32, u32, u32) {
    let server_py = r#"
import os, socket, sys, time
stop = os.path.join(sys.argv[1], "stop")
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", 5000))
s.settimeout(60)
try:
    _, peer = s.recvfrom(100)
except socket.timeout:
    sys.exit("the server heard no hello")
n, end = 0, time.time() + 60
while n < 60 or (not os.path.exists(stop) and time.time() < end):
    s.sendto(b"srv-%d" % n, peer); n += 1; time.sleep(0.05)
for _ in range(3):
    s.sendto(b"end", peer)
print("S", n)
"#;
    let client_py = r#"
import os, socket, sys
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("192.168.1.10", 4000))
s.settimeout(0.25)
n = 0
for _ in range(240):
    s.sendto(b"hello", ("100.64.0.1", 5000))
    try:
        d, _ = s.recvfrom(100)
        n += d.startswith(b"srv-")
        break
    except socket.timeout:
        pass
open(os.path.join(sys.argv[1], "ready"), "w").close()
s.settimeout(10)
try:
    while n:
        d, _ = s.recvfrom(100)
        if d == b"end":
            break
        n += d.startswith(b"srv-")
except socket.timeout:
    pass
print("B", n)
"#;
    // Raw IPv4 + UDP (checksum 0: none), so the source can be any address.
    let attacker_py = r#"
import socket, struct, time
raw = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
rx.bind(("0.0.0.0", 4000))
rx.setblocking(False)
src, dst = socket.inet_aton("100.64.0.1"), socket.inet_aton("100.64.0.12")
payload = b"spoof"
udp = struct.pack("!HHHH", 5000, 4000, 8 + len(payload), 0) + payload
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, src, dst)
def drain():
    n = 0
    try:
        while True:
            n += rx.recv(100).startswith(b"srv-")
    except BlockingIOError:
        return n
n = 0
for _ in range(40):
    raw.sendto(ip + udp, ("100.64.0.12", 0))
    time.sleep(0.05)
    n += drain()
time.sleep(0.5)
print("A", n + drain())
"#;
    let script = format!(
        r#"
        dir=$(mktemp -d); trap 'rm -rf "$dir"' EXIT
        # waits (up to a minute) for a UDP socket on PORT in NS: a datagram before the
        # server's bind would be lost
        bound() {{
            for _ in $(seq 1 1200); do
                ip netns exec "$1" ss -Hlun "sport = :$2" | grep -q . && return; sleep 0.05
            done
            echo "no UDP socket on port $2 in $1" >&2; return 1
        }}
        ip netns exec {server} python3 -c '{server_py}' "$dir" & s=$!
        bound {server} 5000 || {{ kill $s; exit 1; }}
        ip netns exec {dev_b} python3 -c '{client_py}' "$dir" & b=$!
        for _ in $(seq 1 1200); do [ -e "$dir/ready" ] && break; sleep 0.05; done
        ip netns exec {dev_a} python3 -c '{attacker_py}' & a=$!
        wait $a; touch "$dir/stop"; wait $b; wait $s
        "#
    );
    let out = sh(&script).ok().stdout;
    let count = |who: &str| -> u32 {
        out.lines()
            .find_map(|l| l.strip_prefix(&format!("{who} ")))
            .unwrap_or_else(|| panic!("no count from {who}: {out}"))
            .trim()
            .parse()
            .unwrap()
    };
    (count("B"), count("A"), count("S"))
}

/// A device cannot take over another device's connection by sending packets that conntrack
/// takes for that connection's replies (zones are original-direction only, so the reply tuple
/// is shared): connmark marks only a connection's first packet, and drops a reply-direction
/// packet on IFACE whose connection is not marked N.
#[test]
fn connmark_spoofed_replies_cannot_hijack_another_devices_connection() {
    spoofed_replies_are_dropped(false);
}

/// The same, with the zones, connection marks and SNAT of the devices as elements of maps that
/// three rules look up: the guard looks a reply's interface and mark up in the pairs natctl
/// keeps beside the map of marks.
#[test]
fn connmark_over_maps_keeps_spoofed_replies_out_too() {
    spoofed_replies_are_dropped(true);
}

fn spoofed_replies_are_dropped(over_maps: bool) {
    let lab = Lab::new();
    let (center, dev_a, dev_b, server) = connmark_center(&lab, over_maps);
    let (b, a, sent) = spoof_run(&dev_a, &dev_b, &server);
    assert_eq!(
        a, 0,
        "device A received {a} of the server's datagrams for B"
    );
    assert!(sent >= 60, "the server sent {sent} datagrams");
    assert_eq!(
        b, sent,
        "device B received {b} of the server's {sent} datagrams"
    );
    let ct = nsh(&center, "conntrack -L -p udp 2>/dev/null").ok().stdout;
    assert!(
        ct.lines().any(
            |l| l.contains("src=192.168.1.10 dst=100.64.0.1 sport=4000 dport=5000")
                && l.contains("src=100.64.0.1 dst=100.64.0.12 sport=5000 dport=4000")
                && l.contains(" mark=2 ")
        ),
        "B's connection keeps mark 2: {ct}"
    );
    // The spoofed datagrams were dropped, and counted on the connmark rule that drops them: ta's
    // own guard, or the one guard of every key of the map.
    // (over maps, nft shows every lookup: the set of the map's keys natctl keeps beside it)
    let guard = if over_maps {
        "ct direction reply iifname @cm.keys iifname . ct mark != @cm.pairs counter packets "
    } else {
        "iifname \"ta\" ct direction reply ct mark != 0x00000001 counter packets "
    };
    let rules = ruleset(&center);
    if over_maps {
        let restores = rules
            .matches("ct direction reply ct mark @cm.values counter packets")
            .count();
        assert_eq!(restores, 2, "the restores (connmarks, localmarks): {rules}");
    }
    let drops: u64 = rules
        .lines()
        .find_map(|l| l.split_once(guard))
        .and_then(|(_, after)| after.split_whitespace().next()?.parse().ok())
        .unwrap_or_else(|| panic!("no guard {guard:?} in {rules}"));
    assert!(drops >= 10, "A's spoofed datagrams were seen: {drops}");
    // Every rule is what its id stands for.
    let listed = natctl(&center, &["list"]).ok().json();
    for r in listed["rules"].as_array().unwrap() {
        assert_eq!(
            (&r["tampered"], &r["complete"]),
            (&Value::Bool(false), &Value::Bool(true))
        );
    }
}

/// One UDP datagram from `client` to `dest:port`, received by a socket on `port` in `server`.
fn udp_reaches(server: &str, port: u16, client: &str, dest: &str) -> bool {
    let script = format!(
        r#"
        out=$(mktemp)
        ip netns exec {server} python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind(("0.0.0.0", {port})); s.settimeout(2)
try:
    print(s.recv(100).decode())
except socket.timeout:
    pass
' >"$out" &
        l=$!
        for i in $(seq 1 50); do
            ip netns exec {server} ss -Hlun "sport = :{port}" | grep -q . && break; sleep 0.05
        done
        for i in 1 2 3; do
            ip netns exec {client} python3 -c '
import socket
socket.socket(socket.AF_INET, socket.SOCK_DGRAM).sendto(b"udp-hello", ("{dest}", {port}))'
            sleep 0.1
        done
        wait $l; cat "$out"; rm -f "$out"
        "#
    );
    sh(&script).ok().stdout.contains("udp-hello")
}

/// A hub (`fh`) with a device behind `d1` (10.1.0.2), the internal network behind `s0`
/// (server 100.64.0.1, the hub 100.64.0.10) and another network behind `o0` (10.9.0.1).
/// Returns (hub, device, server, other).
fn filter_hub(lab: &Lab) -> (String, String, String, String) {
    let hub = lab.netns("fh");
    let (dev, server, other) = (lab.netns("fd"), lab.netns("fs"), lab.netns("fo"));
    sysctl_in(&hub, "net.ipv4.ip_forward=1");
    for (iface, ns, hub_addr, addr) in [
        ("d1", &dev, "10.1.0.1/24", "10.1.0.2/24"),
        ("s0", &server, "100.64.0.10/24", "100.64.0.1/24"),
        ("o0", &other, "10.9.0.254/24", "10.9.0.1/24"),
    ] {
        veth(&hub, iface, ns, "eth0");
        ip_in(&hub, &format!("addr add {hub_addr} dev {iface}"));
        ip_in(ns, &format!("addr add {addr} dev eth0"));
        let gw = hub_addr.split('/').next().unwrap();
        ip_in(ns, &format!("route add default via {gw}"));
    }
    (hub, dev, server, other)
}

/// The hub's access control: a device may reach only the internal network and, of the hub's
/// own addresses, only 100.64.0.10; everything else from it is dropped and counted, whatever
/// order the rules were added in, and nothing is let through by connection state.
#[test]
fn filter_allows_what_is_listed_and_drops_the_rest_per_interface() {
    let lab = Lab::new();
    let (hub, dev, server, other) = filter_hub(&lab);
    // Before any filter everything flows.
    assert!(ping(&dev, "10.9.0.1", 1));
    assert!(ping(&dev, "10.1.0.1", 1));

    // The defaults first: the accepts added after them must still be evaluated before them.
    let default_fwd = add(&hub, &["filter", "--iif", "d1", "--default", "drop"]);
    let default_local = add(
        &hub,
        &["filter", "--iif", "d1", "--default", "drop", "--local"],
    );
    assert!(default_fwd.changed && default_local.changed);
    assert_eq!(
        (
            default_fwd.rule.default_verdict.as_deref(),
            default_fwd.rule.verdict.as_deref(),
            default_fwd.rule.local
        ),
        (Some("drop"), None, Some(false))
    );
    assert!(
        !ping(&dev, "100.64.0.1", 1),
        "default drop, nothing accepted yet"
    );
    let accept = [
        "filter",
        "--iif",
        "d1",
        "--dst",
        "100.64.0.0/24",
        "--verdict",
        "accept",
    ];
    let before = ruleset(&hub);
    let check = natctl(&hub, &[&["--check"][..], &accept].concat()).ok();
    assert!(check.changed());
    assert_eq!(ruleset(&hub), before, "--check changed the kernel");
    let fwd_accept = add(&hub, &accept);
    assert!(fwd_accept.changed);
    assert_eq!(fwd_accept.rule.family, "inet");
    let again = add(
        &hub,
        &[
            "filter",
            "--verdict",
            "accept",
            "--dst",
            "100.64.0.0/24",
            "--iif",
            "d1",
        ],
    );
    assert_eq!(
        (again.changed, &again.rule.id),
        (false, &fwd_accept.rule.id)
    );
    assert_eq!(ruleset(&hub), ruleset(&hub));
    let local_accept = add(
        &hub,
        &[
            "filter",
            "--iif",
            "d1",
            "--local",
            "--dst",
            "100.64.0.10",
            "--verdict",
            "accept",
        ],
    );
    assert_eq!(local_accept.rule.dst.as_deref(), Some("100.64.0.10"));

    // Forwarded: the internal network by ping, TCP and UDP; another network not.
    assert!(ping(&dev, "100.64.0.1", 2));
    let (got, _) = tcp_exchange(&server, 8080, &dev, "100.64.0.1", false);
    assert_eq!(got.trim(), "hello-from-client");
    assert!(udp_reaches(&server, 5353, &dev, "100.64.0.1"));
    assert!(!ping(&dev, "10.9.0.1", 2));
    assert!(!udp_reaches(&other, 5353, &dev, "10.9.0.1"));
    let (got, _) = tcp_exchange(&other, 8080, &dev, "10.9.0.1", false);
    assert_eq!(got.trim(), "", "TCP to another network passed");
    // Local: the hub's internal address, not its address on the device's own link.
    assert!(ping(&dev, "100.64.0.10", 2));
    assert!(!ping(&dev, "10.1.0.1", 2));

    // Replies to connections the device did not start are not accepted by state: another
    // network's ping reaches the device (nothing filters o0), but the device's answers are
    // dropped by d1's default.
    let seen = echo_requests(&dev, false);
    assert!(!ping(&other, "10.1.0.2", 2));
    assert!(
        echo_requests(&dev, false) >= seen + 2,
        "the pings reached the device"
    );

    // A selector drop added later is evaluated before the older accept (newest first).
    let drop_8081 = add(
        &hub,
        &[
            "filter",
            "--iif",
            "d1",
            "--dst",
            "100.64.0.0/24",
            "--proto",
            "tcp",
            "--dport",
            "8081",
            "--verdict",
            "drop",
        ],
    );
    let (got, _) = tcp_exchange(&server, 8081, &dev, "100.64.0.1", false);
    assert_eq!(got.trim(), "", "tcp/8081 passed its drop");
    let (got, _) = tcp_exchange(&server, 8080, &dev, "100.64.0.1", false);
    assert_eq!(got.trim(), "hello-from-client");

    // The kernel's order and counters, and list's account of them: d1's forward rules in the
    // chain of d1, which the forward chain's dispatch rule (all it holds) jumps to.
    let chain = nsh(&hub, "nft list chain inet natctl forward.iif.d1")
        .ok()
        .stdout;
    let pos = |needle: &str| {
        chain
            .find(needle)
            .unwrap_or_else(|| panic!("{needle} not in {chain}"))
    };
    assert!(pos("dport 8081") < pos("daddr 100.64.0.0/24 counter"));
    assert!(pos("daddr 100.64.0.0/24 counter") < pos("--default drop"));
    let listed = assert_list_matches_nft(&hub);
    let packets = |id: &str| {
        listed
            .iter()
            .find(|r| r.id == id)
            .unwrap_or_else(|| panic!("{id} not listed"))
            .packets
            .unwrap()
    };
    assert!(packets(&default_fwd.rule.id) >= 5, "forward drops counted");
    assert!(packets(&default_local.rule.id) >= 2, "local drops counted");
    assert!(packets(&fwd_accept.rule.id) >= 4);
    assert!(packets(&local_accept.rule.id) >= 2);
    assert!(packets(&drop_8081.rule.id) >= 1);
    let forward: Vec<_> = listed
        .iter()
        .filter(|r| r.chain.as_deref() == Some("forward.iif.d1"))
        .collect();
    assert_eq!(forward.len(), 3);
    let table = nft_table(&hub);
    assert_eq!(
        table.chain("forward").len(),
        1,
        "{:?}",
        table.chain("forward")
    );
    assert_eq!(
        table.elements("forward.iif"),
        [("d1".into(), "forward.iif.d1".into())]
    );

    // del: the internal network is then dropped too; del of what is gone is changed:false.
    let gone = natctl(&hub, &["del", &fwd_accept.rule.id]).ok();
    assert!(gone.changed());
    assert!(!ping(&dev, "100.64.0.1", 1));
    assert!(!natctl(&hub, &["del", &fwd_accept.rule.id]).ok().changed());
    for id in [&default_fwd.rule.id, &default_local.rule.id] {
        assert!(natctl(&hub, &["del", id]).ok().changed());
    }
    assert!(
        ping(&dev, "10.9.0.1", 1),
        "no default left: forwarded again"
    );
    assert!(ping(&dev, "10.1.0.1", 1), "no local default left");
}

#[test]
fn filter_bad_input_exits_2() {
    let lab = Lab::new();
    let ns = lab.netns("fbad");
    for (args, needle) in [
        (&["filter", "--iif", "x"][..], "--verdict"),
        (
            &[
                "filter",
                "--iif",
                "x",
                "--default",
                "drop",
                "--dst",
                "10.0.0.0/8",
            ],
            "--dst",
        ),
        (
            &[
                "filter",
                "--iif",
                "x",
                "--default",
                "drop",
                "--verdict",
                "drop",
            ],
            "--verdict",
        ),
        (
            &["filter", "--iif", "x", "--dport", "22", "--verdict", "drop"],
            "--proto tcp|udp",
        ),
        (
            &[
                "filter",
                "--iif",
                "x",
                "--proto",
                "icmp",
                "--dport",
                "22",
                "--verdict",
                "drop",
            ],
            "--proto tcp|udp",
        ),
        (
            &[
                "filter",
                "--iif",
                "x",
                "--proto",
                "icmp",
                "--dst",
                "2001:db8::1",
                "--verdict",
                "drop",
            ],
            "icmp",
        ),
        (&["filter", "--iif", "x", "--verdict", "reject"], "reject"),
        (
            &["filter", "--iif", "x", "--verdict", "accept", "--early"],
            "--early takes --verdict drop only",
        ),
        (
            &[
                "filter",
                "--iif",
                "x",
                "--verdict",
                "drop",
                "--early",
                "--local",
            ],
            "--local",
        ),
        (
            &[
                "filter",
                "--iif",
                "x",
                "--src",
                "10.0.0.1",
                "--dst",
                "::1",
                "--verdict",
                "drop",
            ],
            "IPv",
        ),
    ] {
        natctl(&ns, args).fails(2, needle);
    }
    assert_eq!(kernel_rule_count(&ns), 0);
    // ICMP by family: icmp is IPv4's, icmpv6 IPv6's.
    let v4 = add(
        &ns,
        &[
            "filter",
            "--iif",
            "x",
            "--proto",
            "icmp",
            "--verdict",
            "accept",
        ],
    );
    let v6 = add(
        &ns,
        &[
            "filter",
            "--iif",
            "x",
            "--proto",
            "icmpv6",
            "--verdict",
            "accept",
        ],
    );
    assert_eq!(
        (v4.rule.family.as_str(), v6.rule.family.as_str()),
        ("inet", "inet6")
    );
    assert_list_matches_nft(&ns);
}

/// `filter --reply` (`ct direction reply`): with it accepted and a default drop on d1, the
/// internal network opens connections to the device behind d1 and gets its answers (echo
/// replies, the SYN-ACK), while everything the device opens itself is dropped and counted by
/// the default; the same for the hub's own traffic with `--local`. The ct match is part of the
/// rule's id and of what the audit compares, and `--reply` takes neither `--early` nor
/// `--default`.
#[test]
fn filter_reply_lets_a_device_answer_but_not_open() {
    let lab = Lab::new();
    let (hub, dev, server, _) = filter_hub(&lab);
    let reply = ["filter", "--iif", "d1", "--reply", "--verdict", "accept"];
    let plain = add(
        &hub,
        &["--check", "filter", "--iif", "d1", "--verdict", "accept"],
    );
    let accept = add(&hub, &reply);
    assert!(accept.changed);
    assert_eq!(accept.rule.reply, Some(true));
    assert_ne!(accept.rule.id, plain.rule.id, "--reply is part of the id");
    let default = add(&hub, &["filter", "--iif", "d1", "--default", "drop"]);
    assert_eq!(default.rule.reply, Some(false));
    let again = add(&hub, &reply);
    assert_eq!((again.changed, &again.rule.id), (false, &accept.rule.id));
    let packets = |id: &str| listed_id(&hub, id)[0].packets.unwrap();

    // The internal network opens, the device answers.
    assert!(
        ping(&server, "10.1.0.2", 2),
        "the echo replies were dropped"
    );
    let (got, _) = tcp_exchange(&dev, 8080, &server, "10.1.0.2", false);
    assert_eq!(got, "hello-from-client", "the device's SYN-ACK was dropped");
    assert!(packets(&accept.rule.id) >= 4);
    // The device opens nothing.
    let dropped = packets(&default.rule.id);
    assert!(!ping(&dev, "100.64.0.1", 2));
    let (got, _) = tcp_exchange(&server, 8081, &dev, "100.64.0.1", false);
    assert_eq!(got, "", "the device opened a TCP connection");
    assert!(!udp_reaches(&server, 5353, &dev, "100.64.0.1"));
    assert!(packets(&default.rule.id) >= dropped + 6, "counted");

    // A reply drop, inserted before the accept: the echo replies go, TCP still answers.
    let icmp_drop = add(
        &hub,
        &[
            "filter",
            "--iif",
            "d1",
            "--proto",
            "icmp",
            "--reply",
            "--verdict",
            "drop",
        ],
    );
    assert!(!ping(&server, "10.1.0.2", 2));
    let (got, _) = tcp_exchange(&dev, 8082, &server, "10.1.0.2", false);
    assert_eq!(got, "hello-from-client");
    assert!(natctl(&hub, &["del", &icmp_drop.rule.id]).ok().changed());

    // --local: the hub's own pings are answered, the device's pings of the hub are not.
    for args in [
        &[
            "filter",
            "--iif",
            "d1",
            "--local",
            "--reply",
            "--verdict",
            "accept",
        ][..],
        &["filter", "--iif", "d1", "--local", "--default", "drop"],
    ] {
        assert!(add(&hub, args).changed);
    }
    assert!(ping(&hub, "10.1.0.2", 2));
    assert!(!ping(&dev, "10.1.0.1", 2));

    // The kernel holds `ct direction reply` in the rule, as list says it does.
    let ct_reply = nft_match(
        serde_json::json!({"ct": {"key": "direction"}}),
        serde_json::json!("reply"),
    );
    let (chain, handle) = handles_of(&hub, &accept.rule.id).remove(0);
    let kernel = nft_rules(&hub)
        .into_iter()
        .find(|k| (&k.chain, k.handle) == (&chain, handle))
        .unwrap();
    assert!(kernel.expr.contains(&ct_reply), "{kernel:?}");
    let listed = assert_list_matches_nft(&hub);
    assert_eq!(listed.iter().filter(|r| r.reply == Some(true)).count(), 2);

    // Without its ct match (the comment kept) the rule is tampered, and add restores it.
    let comment = format!(
        "natctl:{} filter --iif d1 --reply --verdict accept",
        accept.rule.id
    );
    nsh(
        &hub,
        &format!(
            r#"nft replace rule inet natctl {chain} handle {handle} iifname "d1" counter accept comment '"{comment}"'"#
        ),
    )
    .ok();
    assert_eq!(listed_id(&hub, &accept.rule.id)[0].tampered, Some(true));
    assert!(add(&hub, &reply).changed);
    assert_list_matches_nft(&hub);

    // --reply takes neither --early (no direction before conntrack) nor --default.
    let before = ruleset(&hub);
    natctl(
        &hub,
        &[
            "filter",
            "--iif",
            "d1",
            "--reply",
            "--verdict",
            "drop",
            "--early",
        ],
    )
    .fails(2, "--reply cannot be used with --early");
    natctl(
        &hub,
        &["filter", "--iif", "d1", "--reply", "--default", "drop"],
    )
    .fails(2, "--default");
    assert_eq!(ruleset(&hub), before);
}

/// The nftables rules (chain, handle) of natctl's table whose comment carries `id`, once the
/// table's layout is checked ([`nft_rules`]).
fn handles_of(ns: &str, id: &str) -> Vec<(String, u64)> {
    carrying(nft_rules(ns), id)
}

/// The (chain, handle) of those of RULES whose comment carries `id`.
fn carrying(rules: Vec<NftRule>, id: &str) -> Vec<(String, u64)> {
    rules
        .into_iter()
        .filter(|r| {
            r.comment
                .as_deref()
                .is_some_and(|c| c.starts_with(&format!("natctl:{id} ")))
        })
        .map(|r| (r.chain, r.handle))
        .collect()
}

/// The chains the parts of rule ID are listed in, in the order of its parts ([`part_of`]).
fn chains_by_part(ns: &str, id: &str) -> Vec<String> {
    let listed = list(ns);
    let mut parts: Vec<(usize, String)> = (0..listed.len())
        .filter(|&i| listed[i].id == id)
        .map(|i| (part_of(&listed, i), listed[i].chain.clone().unwrap()))
        .collect();
    parts.sort();
    parts.into_iter().map(|(_, chain)| chain).collect()
}

/// The listed entries of `id`.
fn listed_id(ns: &str, id: &str) -> Vec<RuleJson> {
    list(ns).into_iter().filter(|r| r.id == id).collect()
}

/// A rule changed with `nft` behind natctl's back, keeping its comment, is not what its id
/// stands for: `list` says so, `add` of the same arguments replaces it, `del` removes it.
#[test]
fn a_rule_changed_behind_natctls_back_is_tampered_and_replaced() {
    let lab = Lab::new();
    let ns = lab.netns("tamp");
    let masq = add(&ns, &["masquerade", "--oif", "x"]).rule.id;
    let other = add(&ns, &["snat", "--to", "192.0.2.1", "--oif", "y"])
        .rule
        .id;
    list_intact(&ns);
    let (chain, handle) = handles_of(&ns, &masq).remove(0);
    let comment = format!("natctl:{masq} masquerade --oif x");
    nsh(
        &ns,
        &format!(
            r#"nft replace rule inet natctl {chain} handle {handle} oifname "x" snat ip to 100.64.0.7 comment '"{comment}"'"#
        ),
    )
    .ok();
    assert!(ruleset(&ns).contains("snat ip to 100.64.0.7 comment \"natctl:"));
    let entry = listed_id(&ns, &masq);
    assert_eq!(entry.len(), 1);
    assert_eq!(
        entry[0].kind, "masquerade",
        "listed as what its comment says"
    );
    assert_eq!(
        (entry[0].tampered, entry[0].complete),
        (Some(true), Some(false))
    );
    assert_eq!(
        entry[0].missing.as_deref(),
        Some(
            &[MissingPart {
                part: 0,
                chain: "srcnat".into()
            }][..]
        )
    );
    let untouched = listed_id(&ns, &other);
    assert_eq!(untouched[0].tampered, Some(false));

    // --check predicts the repair without making it; add makes it.
    let before = ruleset(&ns);
    let check = natctl(&ns, &["--check", "masquerade", "--oif", "x"]).ok();
    assert!(check.changed());
    assert_eq!(ruleset(&ns), before);
    assert!(add(&ns, &["masquerade", "--oif", "x"]).changed);
    let now = ruleset(&ns);
    assert!(
        !now.contains("100.64.0.7"),
        "the tampered rule stayed: {now}"
    );
    assert_eq!(handles_of(&ns, &masq).len(), 1);
    assert!(!add(&ns, &["masquerade", "--oif", "x"]).changed);
    assert_list_matches_nft(&ns);

    // Tampered again (another verdict, same comment): del removes it.
    let (chain, handle) = handles_of(&ns, &masq).remove(0);
    nsh(
        &ns,
        &format!(
            r#"nft replace rule inet natctl {chain} handle {handle} oifname "z" masquerade comment '"{comment}"'"#
        ),
    )
    .ok();
    assert_eq!(listed_id(&ns, &masq)[0].tampered, Some(true));
    assert!(natctl(&ns, &["del", &masq]).ok().changed());
    assert!(handles_of(&ns, &masq).is_empty());
    assert_eq!(list_intact(&ns).len(), 1);

    // Other tables are reported, never touched.
    nsh(&ns, "nft add table inet filter; nft add table ip nat").ok();
    let l: Listed = parse(&natctl(&ns, &["list"]).ok());
    assert_eq!(l.foreign_tables, ["inet filter", "ip nat"]);
    natctl(&ns, &["flush"]).ok();
    let l: Listed = parse(&natctl(&ns, &["list"]).ok());
    assert_eq!(l.foreign_tables, ["inet filter", "ip nat"]);
    assert!(l.rules.is_empty());
}

/// A natctl rule made of several nftables rules, one of them deleted with `nft`: `list` shows
/// it incomplete with the part missing, `add` puts it back.
#[test]
fn a_multi_part_rule_missing_a_part_is_incomplete_and_restored() {
    let lab = Lab::new();
    let ns = lab.netns("parts");
    // (each with the part deleted, the chain it is in, and which of the id's rules there it is)
    let cases: &[(&[&str], usize, &str, usize)] = &[
        (
            &["connmark", "--iif", "t1", "--set", "5"],
            1,
            "connmarks.iif.t1",
            1,
        ),
        (
            &["connmark", "--iif", "t2", "--set", "6"],
            3,
            "localmarks.ctmark.0x6",
            0,
        ),
        (
            &["snat", "--to", "10.9.0.1", "--iif", "t1", "--local"],
            1,
            "input.iif.t1",
            0,
        ),
        (
            &[
                "dnat",
                "--to",
                "192.0.2.1",
                "--daddr",
                "203.0.113.1",
                "--local",
            ],
            1,
            "output.dst4.203.0.113.1",
            0,
        ),
        (
            &[
                "dnat",
                "--to",
                "192.0.2.2",
                "--daddr",
                "203.0.113.2",
                "--local",
            ],
            0,
            "dstnat.dst4.203.0.113.2",
            0,
        ),
    ];
    for (args, part, chain, nth) in cases {
        let id = add(&ns, args).rule.id;
        let parts = handles_of(&ns, &id);
        let (c, h) = {
            let listed = listed_id(&ns, &id);
            let mut there = listed.iter().filter(|r| r.chain.as_deref() == Some(*chain));
            let r = there
                .nth(*nth)
                .unwrap_or_else(|| panic!("{args:?}: {listed:?}"));
            (r.chain.clone().unwrap(), r.handle.unwrap())
        };
        assert!(parts.contains(&(c.clone(), h)));
        nsh(&ns, &format!("nft delete rule inet natctl {c} handle {h}")).ok();
        let entries = listed_id(&ns, &id);
        assert_eq!(entries.len(), parts.len() - 1);
        for e in &entries {
            assert_eq!(
                (e.tampered, e.complete),
                (Some(false), Some(false)),
                "{e:?}"
            );
            assert_eq!(
                e.missing.as_deref(),
                Some(
                    &[MissingPart {
                        part: *part,
                        chain: chain.to_string()
                    }][..]
                )
            );
        }
        let repaired = add(&ns, args);
        assert!(
            repaired.changed,
            "{args:?}: the missing part was not restored"
        );
        assert_eq!(handles_of(&ns, &id).len(), parts.len());
        assert!(!add(&ns, args).changed);
    }
    assert_list_matches_nft(&ns);
}

/// A connmark made by natctl before the guard against foreign replies (three rules: `iifname
/// IFACE ct mark set N` and the two restores, in the base chains, as natctl then had them)
/// carries the same id; `add` sees that its rules are not what the id now stands for and
/// replaces them.
#[test]
fn an_old_connmark_is_upgraded_by_add() {
    let lab = Lab::new();
    let ns = lab.netns("upg");
    // A table made by natctl (chains as now), then the old rules by hand.
    let id = add(&ns, &["connmark", "--iif", "t1", "--set", "5"]).rule.id;
    natctl(&ns, &["del", &id]).ok();
    let comment = format!("natctl:{id} connmark --iif t1 --set 5");
    nsh(
        &ns,
        &format!(
            r#"nft add rule inet natctl connmarks iifname "t1" counter ct mark set 5 comment '"{comment}"'
               nft add rule inet natctl connmarks ct direction reply ct mark 5 counter meta mark set ct mark comment '"{comment}"'
               nft add rule inet natctl localmarks ct direction reply ct mark 5 counter meta mark set ct mark comment '"{comment}"'"#
        ),
    )
    .ok();
    // Every old rule is tampered (none is in the chain its part belongs in), every part missing.
    let old = listed_id(&ns, &id);
    assert_eq!(old.len(), 3);
    assert!(
        old.iter()
            .all(|r| (r.tampered, r.complete) == (Some(true), Some(false))),
        "{old:?}"
    );
    let missing = |part: usize, chain: &str| MissingPart {
        part,
        chain: chain.into(),
    };
    assert_eq!(
        old[0].missing.as_deref(),
        Some(
            &[
                missing(0, "connmarks.iif.t1"),
                missing(1, "connmarks.iif.t1"),
                missing(2, "connmarks.ctmark.0x5"),
                missing(3, "localmarks.ctmark.0x5"),
            ][..]
        )
    );
    assert!(add(&ns, &["connmark", "--iif", "t1", "--set", "5"]).changed);
    let chain = nsh(&ns, "nft list chain inet natctl connmarks.iif.t1")
        .ok()
        .stdout;
    assert!(
        chain.contains("ct state new ct direction original"),
        "{chain}"
    );
    assert!(chain.contains("ct mark != 0x00000005"), "{chain}");
    // the old rules are gone from the base chains, which hold only their dispatch rules again
    let chains: Vec<String> = handles_of(&ns, &id).into_iter().map(|(c, _)| c).collect();
    assert_eq!(
        chains,
        [
            "connmarks.iif.t1",
            "connmarks.iif.t1",
            "connmarks.ctmark.0x5",
            "localmarks.ctmark.0x5"
        ]
    );
    let table = nft_table(&ns);
    assert!(table.chain("connmarks").iter().all(|r| is_dispatch(r)));
    assert!(table.chain("localmarks").iter().all(|r| is_dispatch(r)));
    assert!(!add(&ns, &["connmark", "--iif", "t1", "--set", "5"]).changed);
    assert_list_matches_nft(&ns);
}

/// A big table's ids kept between processes (natctl's store) do not hide a tampered rule: a
/// process that finds it tampered stores it as such, and the next process's add repairs it.
#[test]
fn stored_ids_do_not_hide_a_tampered_rule() {
    let lab = Lab::new();
    let ns = lab.netns("stt");
    let text: String = (0..300)
        .map(|i| format!("snat --to 10.8.{}.{} --iif p{i}\n", i / 250, i % 250 + 1))
        .collect();
    run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text)).ok();
    let args = ["snat", "--to", "10.8.0.8", "--iif", "p7"];
    let id = add(&ns, &[&["--check"][..], &args].concat()).rule.id;
    let (chain, handle) = handles_of(&ns, &id).remove(0);
    let comment = format!("natctl:{id} snat --to 10.8.0.8 --iif p7");
    nsh(
        &ns,
        &format!(
            r#"nft replace rule inet natctl {chain} handle {handle} meta nfproto ipv4 iifname "p7" snat ip to 10.7.7.7 comment '"{comment}"'"#
        ),
    )
    .ok();
    // A --check in one process (dumps, stores the id as tampered), then another (reads the
    // store): both see it must be replaced.
    for _ in 0..2 {
        let check = natctl(&ns, &[&["--check"][..], &args].concat()).ok();
        assert!(check.changed(), "natctl took the tampered rule for intact");
    }
    assert!(add(&ns, &args).changed);
    assert!(!ruleset(&ns).contains("10.7.7.7"));
    assert!(!add(&ns, &args).changed);
    assert_eq!(kernel_rule_count(&ns), 300);
}

/// `filter --early`: a packet dropped before connection tracking leaves no conntrack entry (a
/// forged packet changes no connection's state), is counted, and only what it selects goes.
#[test]
fn filter_early_drops_before_conntrack_sees_the_packet() {
    let lab = Lab::new();
    let (hub, dev, server, _) = filter_hub(&lab);
    // the device also sends from 100.64.0.99, an address of the internal network it must not use
    ip_in(&dev, "addr add 100.64.0.99/32 dev eth0");
    // (a NAT rule, as a hub has: conntrack works in a namespace only once something uses it)
    add(&hub, &["masquerade", "--oif", "s0"]);
    let r = add(
        &hub,
        &[
            "filter",
            "--iif",
            "d1",
            "--src",
            "100.64.0.0/24",
            "--verdict",
            "drop",
            "--early",
        ],
    );
    assert!(r.changed);
    let conntrack = |port: u16| {
        sh(&format!(
            "ip netns exec {hub} conntrack -L -p udp --dport {port} 2>/dev/null | grep -c dport"
        ))
        .stdout
        .trim()
        .parse::<u32>()
        .unwrap_or(0)
    };
    // from its own address: through, tracked
    assert!(udp_reaches(&server, 7001, &dev, "100.64.0.1"));
    assert!(conntrack(7001) >= 1, "the device's own flow is tracked");
    // from the forbidden source: dropped before conntrack, nothing tracked
    sh(&format!(
        "ip netns exec {dev} python3 -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((\"100.64.0.99\", 0))
for i in range(20): s.sendto(b\"forged\", (\"100.64.0.1\", 7002))'"
    ))
    .ok();
    assert_eq!(
        conntrack(7002),
        0,
        "conntrack never saw the dropped packets"
    );
    let listed = listed_in(&hub, "filter", "zones.iif.d1", "inet");
    assert_eq!(listed.early, Some(true));
    assert!(listed.packets.unwrap() >= 20, "{listed:?}");
    assert!(
        !add(
            &hub,
            &[
                "filter",
                "--iif",
                "d1",
                "--src",
                "100.64.0.0/24",
                "--verdict",
                "drop",
                "--early"
            ],
        )
        .changed
    );
}

/// A process started in a namespace for the length of a test, killed (by its pid) when dropped.
struct Serving(std::process::Child);

impl Drop for Serving {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// A TCP server on port 22 of namespace `ns` (IPv4 and IPv6) that answers every connection
/// with `name` and closes it; returns once it listens.
fn name_server(ns: &str, name: &str) -> Serving {
    let py = format!(
        r#"
import socket
s = socket.socket(socket.AF_INET6)
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
s.bind(("::", 22))
s.listen(16)
while True:
    c, _ = s.accept()
    c.sendall(b"{name}\n")
    c.close()
"#
    );
    let child = Command::new("ip")
        .args(["netns", "exec", ns, "python3", "-c", &py])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the name server");
    let server = Serving(child);
    let listening = || nsh(ns, "ss -Hltn 'sport = :22'").stdout.contains(":22");
    let start = Instant::now();
    while !listening() {
        assert!(
            start.elapsed().as_secs() < 10,
            "the name server in {ns} never listened"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    server
}

/// From namespace `ns`, one TCP connection to each of `dests` port 22, all open at once, each
/// from source port `sport` (0: any; SO_REUSEADDR lets several sockets bind one port while
/// none listens); returns what each answered, in order ("" for none).
fn names_from(ns: &str, dests: &[&str], sport: u16) -> Vec<String> {
    let py = format!(
        r#"
import socket, sys
socks = []
for dst in sys.argv[1:]:
    s = socket.socket(socket.AF_INET6 if ":" in dst else socket.AF_INET)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.settimeout(5)
    if {sport}:
        s.bind(("::" if ":" in dst else "0.0.0.0", {sport}))
    try:
        s.connect((dst, 22))
    except OSError as e:
        print("connect", dst, e, file=sys.stderr)
    socks.append(s)
for dst, s in zip(sys.argv[1:], socks):
    try:
        print(s.recv(100).decode().strip())
    except OSError as e:
        print("", flush=True); print("recv", dst, e, file=sys.stderr)
"#
    );
    let mut args = vec!["netns", "exec", ns, "python3", "-c", &py];
    args.extend_from_slice(dests);
    let r = run("ip", &args);
    let mut answers: Vec<String> = r.stdout.lines().map(str::to_string).collect();
    answers.resize(dests.len(), String::new());
    if answers.iter().any(String::is_empty) {
        eprintln!("{}: {}", r.cmdline, r.stderr);
    }
    answers
}

/// One zones-mode device behind the center: its namespace, the center's interface to it, its
/// zone and mark (the same number) and its internal addresses.
struct ZoneDevice {
    ns: String,
    iface: &'static str,
    n: u32,
    addr: &'static str,
    addr6: &'static str,
}

/// The hub's zones mode in miniature, with forwards into the devices: namespace `ctr` holds
/// interfaces `ta` and `tb` to devices A and B (both 192.168.1.10 and fd00:1::10, veths in
/// place of WireGuard) and `sv0` to a server (100.64.0.1, fd64::1), with 100.64.0.254 and the
/// devices' internal addresses 100.64.0.11 (A), 100.64.0.12 (B) (and fd64::11, fd64::12) as
/// /32s (/128s) on sv0. Per device X (zone = mark = N): what zones mode has (`zone --iif tX
/// --dir both`, `connmark --iif tX`, `snat --to AX --iif tX --local`, `fwmark N lookup N` with
/// `default dev tX` and the internal network via sv0 in table N), and the forward of AX:22 to
/// the device's 192.168.1.10:22, from sv0 and from the center itself, built from the
/// destination-keyed blocks. Returns (center, server, devices).
fn zones_forward_center(lab: &Lab) -> (String, String, Vec<ZoneDevice>) {
    let center = lab.netns("ctr");
    let server = lab.netns("srv");
    let devices = vec![
        ZoneDevice {
            ns: lab.netns("da"),
            iface: "ta",
            n: 1,
            addr: "100.64.0.11",
            addr6: "fd64::11",
        },
        ZoneDevice {
            ns: lab.netns("db"),
            iface: "tb",
            n: 2,
            addr: "100.64.0.12",
            addr6: "fd64::12",
        },
    ];
    dual_stack_router(&center, &[&server, &devices[0].ns, &devices[1].ns]);
    veth(&center, "sv0", &server, "eth0");
    ip_in(&center, "addr add 100.64.0.254/24 dev sv0");
    ip_in(&center, "addr add fd64::fe/64 dev sv0 nodad");
    ip_in(&server, "addr add 100.64.0.1/24 dev eth0");
    ip_in(&server, "addr add fd64::1/64 dev eth0 nodad");
    for d in &devices {
        let (t, n) = (d.iface, d.n.to_string());
        veth(&center, t, &d.ns, "eth0");
        ip_in(&d.ns, "addr add 192.168.1.10/24 dev eth0");
        ip_in(&d.ns, "addr add fd00:1::10/64 dev eth0 nodad");
        ip_in(&d.ns, "route add default via 192.168.1.1");
        ip_in(&d.ns, "-6 route add default via fd00:1::1");
        ip_in(
            &center,
            &format!("addr add 192.168.1.1/24 dev {t} noprefixroute"),
        );
        ip_in(
            &center,
            &format!("addr add fd00:1::1/64 dev {t} noprefixroute nodad"),
        );
        ip_in(&center, &format!("addr add {}/32 dev sv0", d.addr));
        ip_in(&center, &format!("addr add {}/128 dev sv0 nodad", d.addr6));
        for (fam, internal) in [("-4", "100.64.0.0/24"), ("-6", "fd64::/64")] {
            ip_in(
                &center,
                &format!("{fam} route add default dev {t} table {n}"),
            );
            ip_in(
                &center,
                &format!("{fam} route add {internal} dev sv0 table {n}"),
            );
            ip_in(&center, &format!("{fam} rule add fwmark {n} lookup {n}"));
        }
        // zones mode itself
        add(
            &center,
            &["zone", "--iif", t, "--zone", &n, "--dir", "both"],
        );
        add(&center, &["connmark", "--iif", t, "--set", &n]);
        for a in [d.addr, d.addr6] {
            add(&center, &["snat", "--to", a, "--iif", t, "--local"]);
        }
        // the forward into the device, from sv0 and from the center
        for (a, to) in [(d.addr, "192.168.1.10:22"), (d.addr6, "[fd00:1::10]:22")] {
            let steps: [&[&str]; 8] = [
                &[
                    "zone", "--iif", "sv0", "--dst", a, "--zone", &n, "--dir", "reply",
                ],
                &[
                    "zone", "--local", "--dst", a, "--zone", &n, "--dir", "reply",
                ],
                &["mark", "--iif", "sv0", "--dst", a, "--set", &n],
                &["mark", "--local", "--dst", a, "--set", &n],
                &["connmark", "--iif", "sv0", "--dst", a, "--set", &n],
                &["connmark", "--local", "--dst", a, "--set", &n],
                &[
                    "dnat", "--iif", "sv0", "--daddr", a, "--proto", "tcp", "--dport", "22",
                    "--to", to,
                ],
                &[
                    "dnat", "--daddr", a, "--proto", "tcp", "--dport", "22", "--to", to, "--local",
                ],
            ];
            for args in steps {
                add(&center, args);
            }
        }
    }
    (center, server, devices)
}

/// Port forwards into zones-mode devices that all have one address: a connection to a device's
/// internal address AX:22, from a server on sv0 or from the center itself, reaches that device's
/// 192.168.1.10:22 and its answer comes back; two connections from one source port to two
/// devices at once both work, their identical reply tuples kept apart in zones 1 and 2; and the
/// devices still reach the server themselves, at once.
#[test]
fn zones_forward_reaches_each_device_by_its_address() {
    let lab = Lab::new();
    let (center, server, devices) = zones_forward_center(&lab);
    let _servers: Vec<Serving> = devices
        .iter()
        .map(|d| name_server(&d.ns, &format!("device-{}", d.n)))
        .collect();
    let names: Vec<String> = devices.iter().map(|d| format!("device-{}", d.n)).collect();
    for v6 in [false, true] {
        let dests: Vec<&str> = devices
            .iter()
            .map(|d| if v6 { d.addr6 } else { d.addr })
            .collect();
        // (a) from the server, (b) from the center itself: each address answers with its device.
        for from in [&server, &center] {
            for (dest, name) in dests.iter().zip(&names) {
                assert_eq!(
                    names_from(from, &[dest], 0),
                    [name.as_str()],
                    "{dest}:22 from {from}"
                );
            }
        }
        // (c) the server to both at once, from one source port.
        let sport = if v6 { 40006 } else { 40004 };
        assert_eq!(
            names_from(&server, &dests, sport),
            names,
            "one source port, two devices"
        );
        let fam = if v6 { "-f ipv6" } else { "" };
        let ct = nsh(&center, &format!("conntrack -L {fam} -p tcp 2>/dev/null"))
            .ok()
            .stdout;
        let (client, device) = if v6 {
            ("fd64::1", "fd00:1::10")
        } else {
            ("100.64.0.1", "192.168.1.10")
        };
        for d in &devices {
            let a = if v6 { d.addr6 } else { d.addr };
            let original = format!("src={client} dst={a} sport={sport} dport=22 ");
            let reply = format!("src={device} dst={client} sport=22 dport={sport} ");
            assert!(
                ct.lines().any(|l| l.contains(&original)
                    && l.contains(&reply)
                    && l.contains(&format!("zone-reply={} ", d.n))
                    && l.contains(&format!(" mark={} ", d.n))),
                "no connection {original}/{reply} in zone {} with mark {}: {ct}",
                d.n,
                d.n
            );
        }
    }
    // (d) the devices reach the server themselves, both at once; each reply finds its device.
    for dest in ["100.64.0.1", "fd64::1"] {
        let r = sh(&format!(
            "ip netns exec {0} ping -c 3 -i 0.2 -W 2 {dest} >/dev/null & a=$!; \
             ip netns exec {1} ping -c 3 -i 0.2 -W 2 {dest} >/dev/null & b=$!; \
             wait $a; echo a=$?; wait $b; echo b=$?",
            devices[0].ns, devices[1].ns
        ));
        assert!(
            r.stdout.contains("a=0") && r.stdout.contains("b=0"),
            "both devices ping {dest} at once: {}",
            r.stdout
        );
    }
    let ct = nsh(&center, "conntrack -L -p icmp 2>/dev/null").ok().stdout;
    for d in &devices {
        assert!(
            ct.lines()
                .any(|l| l.contains("src=192.168.1.10 dst=100.64.0.1 ")
                    && l.contains(&format!("dst={} ", d.addr))
                    && l.contains(&format!("zone={} ", d.n))),
            "device {}'s ping, SNATed to {} in zone {}: {ct}",
            d.n,
            d.addr,
            d.n
        );
    }
    // Every rule is what its id stands for, and each new block did its part; the --local
    // zone and mark of each address in a chain of their own, keyed by the address.
    let listed = assert_list_matches_nft(&center);
    for stage in ["zones_out", "marks_out"] {
        let rules: Vec<&RuleJson> = listed
            .iter()
            .filter(|r| r.chain.as_deref().unwrap().starts_with(stage))
            .collect();
        let chains: Vec<&str> = rules.iter().map(|r| r.chain.as_deref().unwrap()).collect();
        let expected: Vec<String> = devices
            .iter()
            .flat_map(|d| [format!("dst4.{}", d.addr), format!("dst6.{}", d.addr6)])
            .map(|key| format!("{stage}.{key}"))
            .collect();
        assert_eq!(chains, expected, "{stage}: {rules:?}");
        assert!(
            rules
                .iter()
                .all(|r| r.local == Some(true) && r.packets >= Some(1)),
            "{stage}: {rules:?}"
        );
    }
    // Each connmark --dst marked the connections to its address (its marking part: the first,
    // or with --local the second).
    for (i, r) in listed.iter().enumerate() {
        let marking = if r.local == Some(true) { 1 } else { 0 };
        if r.kind == "connmark" && r.dst.is_some() && part_of(&listed, i) == marking {
            assert!(r.packets >= Some(1), "{r:?} marked nothing");
        }
    }
    for d in &devices {
        // The device's guard (part 1 of its connmark) dropped nothing: its replies to the
        // forwards carry its mark.
        let own: Vec<usize> = (0..listed.len())
            .filter(|&i| listed[i].kind == "connmark" && listed[i].iif.as_deref() == Some(d.iface))
            .collect();
        assert_eq!(own.len(), 4);
        let guard = own.iter().find(|&&i| part_of(&listed, i) == 1).unwrap();
        assert_eq!(listed[*guard].packets, Some(0), "{:?}", listed[*guard]);
        for a in [d.addr, d.addr6] {
            let zone = listed
                .iter()
                .find(|r| {
                    r.kind == "zone"
                        && r.iif.as_deref() == Some("sv0")
                        && r.dst.as_deref() == Some(a)
                })
                .unwrap_or_else(|| panic!("zone --iif sv0 --dst {a}"));
            assert!(zone.packets >= Some(1), "{zone:?}");
        }
    }
}

/// zone/mark/connmark keyed by destination, and for this namespace's own traffic (`--local`):
/// `--check` predicts, the add does it, the same add again changes nothing; each nftables rule
/// is, expression by expression, what `list` says, in the chain its form belongs in; and one
/// changed behind natctl's back is tampered and repaired like any other.
#[test]
fn destination_and_local_forms_read_back_from_the_kernel_field_by_field() {
    let lab = Lab::new();
    let ns = lab.netns("dstf");
    // (each with the chains its parts are listed in)
    let cases: &[(&[&str], &[&str])] = &[
        (
            &[
                "zone",
                "--iif",
                "sv0",
                "--dst",
                "100.64.0.11/32",
                "--zone",
                "1",
                "--dir",
                "reply",
            ],
            &["zones.dst4.100.64.0.11"],
        ),
        (
            &[
                "zone",
                "--iif",
                "sv0",
                "--src",
                "fd64::/64",
                "--dst",
                "fd64::11",
                "--zone",
                "1",
            ],
            &["zones.dst6.fd64::11"],
        ),
        (
            &[
                "zone",
                "--local",
                "--dst",
                "100.64.0.11",
                "--zone",
                "1",
                "--dir",
                "reply",
            ],
            &["zones_out.dst4.100.64.0.11"],
        ),
        (
            &[
                "zone",
                "--local",
                "--src",
                "fd64::/64",
                "--zone",
                "2",
                "--dir",
                "original",
            ],
            &["zones_out"],
        ),
        (
            &["mark", "--local", "--dst", "100.64.0.0/24", "--set", "0x10"],
            &["marks_out"],
        ),
        (
            &["mark", "--local", "--dst", "fd64::11", "--set", "1"],
            &["marks_out.dst6.fd64::11"],
        ),
        (
            &["mark", "--iif", "sv0", "--dst", "fd64::12", "--set", "2"],
            &["marks.dst6.fd64::12"],
        ),
        (
            &["connmark", "--dst", "100.64.0.11", "--set", "1"],
            &[
                "connmarks.dst4.100.64.0.11",
                "connmarks.ctmark.0x1",
                "localmarks.ctmark.0x1",
            ],
        ),
        (
            &[
                "connmark", "--iif", "sv0", "--dst", "fd64::11", "--set", "1",
            ],
            &[
                "connmarks.dst6.fd64::11",
                "connmarks.ctmark.0x1",
                "localmarks.ctmark.0x1",
            ],
        ),
        (
            &[
                "connmark",
                "--local",
                "--dst",
                "100.64.0.12/32",
                "--set",
                "2",
            ],
            &[
                "connmarks.ctmark.0x2",
                "localmarks.dst4.100.64.0.12",
                "localmarks.ctmark.0x2",
            ],
        ),
        (
            &["connmark", "--local", "--dst", "fd64::/64", "--set", "3"],
            &[
                "connmarks.ctmark.0x3",
                "localmarks",
                "localmarks.ctmark.0x3",
            ],
        ),
    ];
    let mut ids = HashSet::new();
    for (args, chains) in cases {
        let before = ruleset(&ns);
        let check: Added = parse(&natctl(&ns, &[&["--check"][..], args].concat()).ok());
        assert!(check.changed, "{args:?}");
        assert_eq!(ruleset(&ns), before, "--check {args:?} changed the ruleset");
        let added = add(&ns, args);
        assert!(added.changed, "{args:?}");
        assert_eq!(added.rule.id, check.rule.id, "{args:?}");
        let local = args.contains(&"--local");
        assert_eq!(added.rule.local, Some(local), "{args:?}");
        assert_eq!(
            added.rule.iif.is_some(),
            args.contains(&"--iif"),
            "{args:?}"
        );
        let v6 = args.iter().any(|a| a.contains(':'));
        assert_eq!(
            added.rule.family,
            if v6 { "inet6" } else { "inet" },
            "{args:?}"
        );
        let after = ruleset(&ns);
        let again = add(&ns, args);
        assert!(!again.changed, "{args:?}");
        assert_eq!(again.rule.id, added.rule.id);
        assert!(!natctl(&ns, &[&["--check"][..], args].concat())
            .ok()
            .changed());
        assert_eq!(
            ruleset(&ns),
            after,
            "re-adding {args:?} changed the ruleset"
        );
        assert_eq!(chains_by_part(&ns, &added.rule.id), *chains, "{args:?}");
        assert!(ids.insert(added.rule.id), "{args:?}: an id of its own");
    }
    assert_list_matches_nft(&ns);

    // The two new base chains, as nft reads them back.
    let rs = nsh(&ns, "nft list table inet natctl").ok().stdout;
    for chain in [
        "chain zones_out {\n\t\ttype filter hook output priority raw;",
        "chain marks_out {\n\t\ttype route hook output priority mangle;",
    ] {
        assert!(rs.contains(chain), "{chain}: {rs}");
    }

    // zone --local changed with nft (another zone, the comment kept): tampered; add repairs it.
    let args = [
        "zone",
        "--local",
        "--dst",
        "100.64.0.11",
        "--zone",
        "1",
        "--dir",
        "reply",
    ];
    let id = add(&ns, &args).rule.id;
    let (chain, handle) = handles_of(&ns, &id).remove(0);
    assert_eq!(chain, "zones_out.dst4.100.64.0.11");
    let comment = format!("natctl:{id} zone --zone 1 --dir reply --dst 100.64.0.11 --local");
    nsh(
        &ns,
        &format!(
            r#"nft replace rule inet natctl {chain} handle {handle} ip daddr 100.64.0.11 counter ct reply zone set 9 comment '"{comment}"'"#
        ),
    )
    .ok();
    let entry = listed_id(&ns, &id);
    assert_eq!(
        (entry[0].tampered, entry[0].complete),
        (Some(true), Some(false))
    );
    assert!(natctl(&ns, &[&["--check"][..], &args].concat())
        .ok()
        .changed());
    assert!(add(&ns, &args).changed);
    assert!(!add(&ns, &args).changed);
    // connmark --local without its marking part (part 1, in the chain of its destination in
    // localmarks, which it leaves empty): incomplete; add restores it.
    let args = [
        "connmark",
        "--local",
        "--dst",
        "100.64.0.12/32",
        "--set",
        "2",
    ];
    let id = add(&ns, &args).rule.id;
    let chain = "localmarks.dst4.100.64.0.12";
    let entries = listed_id(&ns, &id);
    let marking = entries.iter().find(|r| r.chain.as_deref() == Some(chain));
    nsh(
        &ns,
        &format!(
            "nft delete rule inet natctl {chain} handle {}",
            marking.unwrap().handle.unwrap()
        ),
    )
    .ok();
    let entries = listed_id(&ns, &id);
    assert_eq!(entries.len(), 2);
    assert_eq!(
        entries[0].missing.as_deref(),
        Some(
            &[MissingPart {
                part: 1,
                chain: chain.into()
            }][..]
        )
    );
    assert!(add(&ns, &args).changed);
    assert_eq!(handles_of(&ns, &id).len(), 3);
    assert_list_matches_nft(&ns);
}

/// The new flags' bad combinations are invalid input: exit 2 naming the flags, nothing changed.
#[test]
fn destination_and_local_forms_bad_input_exits_2() {
    let lab = Lab::new();
    let ns = lab.netns("dstb");
    add(&ns, &["zone", "--iif", "ta", "--zone", "1"]);
    let before = ruleset(&ns);
    let cases: &[(&[&str], &str)] = &[
        (
            &[
                "zone", "--local", "--iif", "ta", "--zone", "1", "--dst", "10.0.0.1",
            ],
            "'--local' cannot be used with '--iif",
        ),
        (
            &["zone", "--local", "--zone", "1"],
            "--dst CIDR or --src CIDR",
        ),
        (&["zone", "--zone", "1"], "--iif IFACE, or --local"),
        (
            &["zone", "--zone", "1", "--dst", "10.0.0.1"],
            "--iif IFACE, or --local",
        ),
        (
            &[
                "zone",
                "--local",
                "--zone",
                "1",
                "--src",
                "10.0.0.0/8",
                "--dst",
                "fd00::1",
            ],
            "fd00::1",
        ),
        (
            &["zone", "--iif", "ta", "--zone", "1", "--dst", "10.0.0.0/33"],
            "10.0.0.0/33",
        ),
        (
            &["mark", "--local", "--set", "1"],
            "mark --local needs --dst",
        ),
        (
            &[
                "mark", "--local", "--iif", "ta", "--dst", "10.0.0.1", "--set", "1",
            ],
            "'--local' cannot be used with '--iif",
        ),
        (
            &["mark", "--dst", "10.0.0.1", "--set", "1"],
            "--iif IFACE, or --local --dst",
        ),
        (
            &["connmark", "--local", "--set", "1"],
            "connmark --local needs --dst",
        ),
        (
            &[
                "connmark", "--local", "--iif", "ta", "--dst", "10.0.0.1", "--set", "1",
            ],
            "'--local' cannot be used with '--iif",
        ),
        (&["connmark", "--set", "1"], "--iif IFACE"),
        (&["connmark", "--dst", "10.0.0.1", "--set", "0"], "--set 0"),
        (
            &["connmark", "--dst", "10.0.0.300", "--set", "1"],
            "10.0.0.300",
        ),
    ];
    for (args, needle) in cases {
        natctl(&ns, args).fails(2, needle);
        natctl(&ns, &[&["--check"][..], args].concat()).fails(2, needle);
        assert_eq!(ruleset(&ns), before, "{args:?} changed the ruleset");
    }
}

/// A table made by natctl before per-key chains (and before `zones_out` and `marks_out`): ten
/// base chains, every rule in its base chain, no maps. `list` shows its rules that have a key
/// stale (each is in a chain none of its parts belongs in) and the others intact. The first add
/// gives the table its new chains, its maps and, at the head of every base chain, its dispatch
/// rules, and leaves the old rules as they are (the base chains still run them, after the
/// dispatch rules); adding an old rule again moves it into the chain of its key.
#[test]
fn a_table_made_before_per_key_chains_is_upgraded_by_add() {
    let lab = Lab::new();
    let ns = lab.netns("old");
    let zone = ["zone", "--iif", "ta", "--zone", "1", "--dir", "both"];
    let snat = ["snat", "--to", "100.64.0.11", "--iif", "ta", "--local"];
    let masquerade = ["masquerade", "--oif", "uplink"];
    // (the comments natctl writes, from a table made by natctl now)
    let mut comments = Vec::new();
    for args in [&zone[..], &snat, &masquerade] {
        let id = add(&ns, args).rule.id;
        let rule = nft_rules(&ns)
            .into_iter()
            .find(|r| r.comment.as_ref().unwrap().contains(&id));
        comments.push(rule.unwrap().comment.unwrap());
    }
    let [zone_c, snat_c, masq_c] = [0, 1, 2].map(|i| &comments[i]);
    nsh(
        &ns,
        &format!(
            r#"nft delete table inet natctl && nft -f - <<'EOF'
table inet natctl {{
    chain zones {{ type filter hook prerouting priority raw; }}
    chain connmarks {{ type filter hook prerouting priority mangle - 10; }}
    chain marks {{ type filter hook prerouting priority mangle; }}
    chain dstnat {{ type nat hook prerouting priority dstnat; }}
    chain output {{ type nat hook output priority -100; }}
    chain srcnat {{ type nat hook postrouting priority srcnat; }}
    chain input {{ type nat hook input priority 100; }}
    chain localmarks {{ type route hook output priority mangle - 10; }}
    chain forward {{ type filter hook forward priority filter; }}
    chain local_in {{ type filter hook input priority filter; }}
}}
add rule inet natctl zones iifname "ta" counter ct zone set 1 comment "{zone_c}"
add rule inet natctl srcnat meta nfproto ipv4 iifname "ta" counter snat ip to 100.64.0.11 comment "{snat_c}"
add rule inet natctl input meta nfproto ipv4 iifname "ta" counter snat ip to 100.64.0.11 comment "{snat_c}"
add rule inet natctl srcnat oifname "uplink" counter masquerade comment "{masq_c}"
EOF"#
        ),
    )
    .ok();
    let old = nft_table(&ns);
    assert!(old.maps.is_empty() && old.key_chains().is_empty());
    // In list: the rules with a key stale, each part missing from its key's chain.
    let state = |r: &RuleJson| {
        let missing: Vec<(usize, String)> = r
            .missing
            .as_ref()
            .unwrap()
            .iter()
            .map(|m| (m.part, m.chain.clone()))
            .collect();
        (
            r.kind.clone(),
            r.chain.clone().unwrap(),
            r.tampered.unwrap(),
            missing,
        )
    };
    let listed: Vec<_> = list(&ns).iter().map(state).collect();
    let snat_missing = vec![
        (0, "srcnat.iif.ta".to_string()),
        (1, "input.iif.ta".to_string()),
    ];
    assert_eq!(
        listed,
        [
            (
                "zone".into(),
                "zones".into(),
                true,
                vec![(0, "zones.iif.ta".to_string())]
            ),
            ("snat".into(), "srcnat".into(), true, snat_missing.clone()),
            ("masquerade".into(), "srcnat".into(), false, vec![]),
            ("snat".into(), "input".into(), true, snat_missing),
        ]
    );
    assert!(!add(&ns, &masquerade).changed);

    // The first add that changes something brings the new layout; the old rules stay as they
    // were, after the dispatch rules of their chains.
    let filter = add(&ns, &["filter", "--iif", "ta", "--default", "drop"]);
    assert!(filter.changed);
    let upgraded = nft_table(&ns);
    assert_dispatch(&upgraded);
    assert_eq!(upgraded.key_chains(), ["forward.iif.ta"]);
    let old_rules = old.rules();
    let now = upgraded.rules();
    assert_eq!(now.len(), old_rules.len() + 1);
    for rule in &old_rules {
        assert!(
            now.iter().any(|r| (&r.chain, r.handle, &r.comment, &r.expr)
                == (&rule.chain, rule.handle, &rule.comment, &rule.expr)),
            "{rule:?} changed"
        );
    }
    assert_eq!(
        list(&ns)
            .iter()
            .filter(|r| r.tampered == Some(true))
            .count(),
        3
    );

    // Each old rule added again goes into its key's chains, its old copies go.
    for args in [&zone[..], &snat] {
        assert!(add(&ns, args).changed, "{args:?}");
        assert!(!add(&ns, args).changed, "{args:?}");
    }
    let listed = assert_list_matches_nft(&ns);
    assert_eq!(listed.len(), 5);
    let table = nft_table(&ns);
    let mut key_chains = table.key_chains();
    key_chains.sort();
    assert_eq!(
        key_chains,
        [
            "forward.iif.ta",
            "input.iif.ta",
            "srcnat.iif.ta",
            "zones.iif.ta"
        ]
    );
    for (stage, kinds) in BASE_CHAINS {
        let unkeyed = usize::from(stage == "srcnat");
        assert_eq!(table.chain(stage).len(), kinds.len() + unkeyed, "{stage}");
    }
}

/// A rule that has a key, put into its base chain by hand with natctl's own comment (as an
/// earlier natctl left it), is stale in `list`: a part missing from its key's chain, a rule
/// where none belongs. The next add of the rule moves it: the base chain's copy goes.
#[test]
fn a_keyed_rule_in_its_base_chain_is_stale_and_moved_by_add() {
    let lab = Lab::new();
    let ns = lab.netns("kbase");
    let args = ["filter", "--iif", "x", "--default", "drop"];
    let id = add(&ns, &args).rule.id;
    let (chain, handle) = handles_of(&ns, &id).remove(0);
    assert_eq!(chain, "forward.iif.x");
    let comment = nft_rules(&ns).remove(0).comment.unwrap();
    assert!(natctl(&ns, &["del", &id]).ok().changed());
    nsh(
        &ns,
        &format!(
            r#"nft add rule inet natctl forward iifname "x" counter drop comment '"{comment}"'"#
        ),
    )
    .ok();
    let stale = listed_id(&ns, &id);
    assert_eq!(stale.len(), 1);
    assert_eq!(
        (
            stale[0].chain.as_deref(),
            stale[0].tampered,
            stale[0].complete
        ),
        (Some("forward"), Some(true), Some(false))
    );
    assert_eq!(
        stale[0].missing.as_deref(),
        Some(
            &[MissingPart {
                part: 0,
                chain: chain.clone()
            }][..]
        )
    );
    assert!(natctl(&ns, &[&["--check"][..], &args].concat())
        .ok()
        .changed());
    assert!(add(&ns, &args).changed);
    let moved = handles_of(&ns, &id);
    assert_eq!(moved.len(), 1);
    assert_eq!(moved[0].0, chain);
    assert_ne!(moved[0].1, handle);
    assert_eq!(
        nft_table(&ns).chain("forward").len(),
        1,
        "only the dispatch rule"
    );
    assert!(!add(&ns, &args).changed);
    assert_list_matches_nft(&ns);
}

/// The ids an earlier natctl kept for a big table are not trusted, whatever they say: its
/// `complete` meant less than it does now. Format `v2`: the ten base chains of before
/// `zones_out` and `marks_out` exist; `v3`: the twelve base chains exist, but not the dispatch
/// maps and rules of per-key chains. Taken at their word, the next add would skip what they did
/// not cover and fail to put a rule where it belongs.
#[test]
fn stored_ids_of_earlier_layouts_are_not_trusted() {
    let lab = Lab::new();
    let ns = lab.netns("stold");
    let text: String = (0..300)
        .map(|i| format!("mark --iif p{i} --set {}\n", i + 1))
        .collect();
    run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text)).ok();
    let file = store_file(&ns);
    for format in ["v2", "v3"] {
        // The table as the natctl of then knew it complete. v2: no zones_out, no marks_out
        // (their maps stay, harmless). v3: zones_out without its dispatch rules and maps.
        let undo = if format == "v2" {
            "nft delete chain inet natctl zones_out && nft delete chain inet natctl marks_out"
                .to_string()
        } else {
            let table = nft_table(&ns);
            let mut steps: Vec<String> = table
                .chain("zones_out")
                .iter()
                .map(|r| format!("nft delete rule inet natctl zones_out handle {}", r.handle))
                .collect();
            steps.extend(
                ["dst4", "dst6"].map(|k| format!("nft delete map inet natctl zones_out.{k}")),
            );
            steps.join(" && ")
        };
        nsh(&ns, &undo).ok();
        // A --check dumps the table and stores its ids for the current generation.
        assert!(
            !natctl(&ns, &["--check", "mark", "--iif", "p7", "--set", "8"])
                .ok()
                .changed()
        );
        let stored = std::fs::read_to_string(&file).expect("the stored ids");
        let (head, ids) = stored.split_once('\n').unwrap();
        let generation = head
            .strip_prefix("v7 ")
            .expect(head)
            .split(' ')
            .next()
            .unwrap();
        // What the natctl of then would have written after an add of its own at this generation.
        std::fs::write(&file, format!("{format} {generation} complete\n{ids}")).unwrap();
        let zone = add(
            &ns,
            &["zone", "--local", "--dst", "100.64.0.11", "--zone", "1"],
        );
        assert!(zone.changed, "{format}");
        let chains: Vec<String> = handles_of(&ns, &zone.rule.id)
            .into_iter()
            .map(|(chain, _)| chain)
            .collect();
        assert_eq!(chains, ["zones_out.dst4.100.64.0.11"], "{format}");
        let mark = add(
            &ns,
            &["mark", "--local", "--dst", "100.64.0.11", "--set", "1"],
        );
        assert!(mark.changed, "{format}");
        // (and gone again: the table of then had no key chains in zones_out)
        for id in [&zone.rule.id, &mark.rule.id] {
            assert!(natctl(&ns, &["del", id]).ok().changed());
        }
        assert!(nft_table(&ns)
            .key_chains()
            .iter()
            .all(|c| c.starts_with("marks.iif.p")));
    }
}

/// Where natctl keeps the rule ids of namespace NS between processes (the store): a file named
/// by the namespace's cookie.
fn store_file(ns: &str) -> String {
    let cookie = nsh(
        ns,
        "python3 -c 'import socket, struct; \
         s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); \
         print(\"%016x\" % struct.unpack(\"Q\", s.getsockopt(socket.SOL_SOCKET, 71, 8))[0])'",
    )
    .ok()
    .stdout;
    format!("/run/niransix/natctl/{}", cookie.trim())
}

/// In a big table (the store keeps its ids, and the chains of each), a `del` of its own process
/// reads only the chains of its id, and each commit is a line appended to the store: a key's
/// chain and map element still go with its last rule, an id deleted is gone for the next
/// process, and a store cut short in the middle of a line (a natctl killed while appending) is
/// not trusted.
#[test]
fn deletes_in_a_big_table_from_the_stored_chains() {
    let lab = Lab::new();
    let ns = lab.netns("bigdel");
    let accept = |i: u32| format!("filter --iif p{i} --dst 10.0.0.0/8 --verdict accept");
    let default = |i: u32| format!("filter --iif p{i} --default drop");
    let text: String = (0..150)
        .map(|i| format!("{}\n{}\n", accept(i), default(i)))
        .collect();
    let r = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text)).ok();
    let ids: Vec<String> = r
        .json_lines()
        .iter()
        .map(|l| l["rule"]["id"].as_str().expect("an id").to_string())
        .collect();
    let accept_id = |i: usize| ids[2 * i].clone();
    let default_id = |i: usize| ids[2 * i + 1].clone();
    assert_eq!(kernel_rule_count(&ns), 300);
    let file = store_file(&ns);
    let elements = |ns: &str| nft_table(ns).elements("forward.iif").len();
    assert_eq!(elements(&ns), 150);

    // p5's accept goes: its chain and element stay, with the default.
    assert!(natctl(&ns, &["del", &accept_id(5)]).ok().changed());
    assert_eq!(handles_of(&ns, &default_id(5))[0].0, "forward.iif.p5");
    assert_eq!(elements(&ns), 150);
    // Its default goes: so do its chain and element; an id gone is not there for the next one.
    assert!(natctl(&ns, &["del", &default_id(5)]).ok().changed());
    natctl_chain_absent(&ns, "forward.iif.p5");
    assert_eq!(elements(&ns), 149);
    assert!(!natctl(&ns, &["del", &default_id(5)]).ok().changed());
    assert_eq!(kernel_rule_count(&ns), 298);
    let stored = std::fs::read_to_string(&file).expect("the store");
    // (the journal's last two lines: the batch's adds since its snapshot come before)
    let journal: Vec<&str> = stored.lines().filter(|l| l.starts_with('@')).collect();
    assert!(journal.len() >= 2, "{stored}");
    assert_eq!(
        journal[journal.len() - 2..]
            .iter()
            .map(|l| l.split(' ').nth(1).unwrap())
            .collect::<Vec<_>>(),
        [format!("-{}", accept_id(5)), format!("-{}", default_id(5))],
        "each delete appended to the store: {stored}"
    );

    // Cut short, as by a kill in the middle of an append: the next natctl dumps.
    std::fs::write(&file, &stored[..stored.len() - 1]).unwrap();
    let words = default(5);
    let words: Vec<&str> = words.split(' ').collect();
    let back = add(&ns, &words);
    assert!(back.changed && back.rule.id == default_id(5));
    assert_eq!(handles_of(&ns, &default_id(5))[0].0, "forward.iif.p5");
    assert!(natctl(&ns, &["del", &default_id(6)]).ok().changed());
    assert!(natctl(&ns, &["del", &accept_id(6)]).ok().changed());
    natctl_chain_absent(&ns, "forward.iif.p6");
    assert_eq!(elements(&ns), 149);
    assert_eq!(kernel_rule_count(&ns), 297);
    assert_list_matches_nft(&ns);
}

/// The rules of each of 200 interfaces (a zone, a connection mark, a filter's accept and
/// default, added in one batch), as a hub center has them for each tunnel: each in the chains
/// of its own keys (its interface, its mark), so that the base chains hold only their dispatch
/// rules, the same as with one interface, and a packet walks only its own key's rules. `list`
/// shows every rule intact; traffic through one of the interfaces moves the counters of its
/// rules and of no other's.
#[test]
fn the_rules_of_200_interfaces_leave_the_base_chains_flat() {
    let lab = Lab::new();
    let (hub, dev, _server, _other) = filter_hub(&lab);
    let rules_of = |n: u32| -> [String; 4] {
        let mark = n + 1;
        [
            format!("zone --iif d{n} --zone {mark} --dir original"),
            format!("connmark --iif d{n} --set {mark}"),
            format!("filter --iif d{n} --dst 100.64.0.0/24 --verdict accept"),
            format!("filter --iif d{n} --default drop"),
        ]
    };
    // (ids[n]: the ids of interface dN's rules, in the order above)
    let batch = |interfaces: Vec<u32>| -> Vec<(u32, Vec<String>)> {
        let text: String = interfaces
            .iter()
            .flat_map(|&n| rules_of(n))
            .map(|l| l + "\n")
            .collect();
        let out = run_stdin(tool_path("natctl"), &["--ns", &hub, "-b", "-"], Some(&text))
            .ok()
            .json_lines();
        assert!(out.iter().all(|l| l["changed"] == Value::Bool(true)));
        let ids: Vec<String> = out
            .iter()
            .map(|l| l["rule"]["id"].as_str().unwrap().into())
            .collect();
        interfaces
            .iter()
            .zip(ids.chunks(4))
            .map(|(&n, ids)| (n, ids.to_vec()))
            .collect()
    };
    let base_chains = || -> Vec<(u64, Option<String>, Vec<Value>)> {
        let table = nft_table(&hub);
        BASE_CHAINS
            .iter()
            .flat_map(|(stage, _)| table.chain(stage))
            .map(|r| (r.handle, r.comment.clone(), r.expr.clone()))
            .collect()
    };
    // d1, the interface the device is behind, first and alone: then the others.
    let mut ids = batch(vec![1]);
    let with_one = base_chains();
    let dispatch_rules: usize = BASE_CHAINS.iter().map(|(_, kinds)| kinds.len()).sum();
    assert_eq!(
        with_one.len(),
        dispatch_rules,
        "base chains of dispatch rules only"
    );
    ids.extend(batch((0..200).filter(|&n| n != 1).collect()));
    assert_eq!(
        base_chains(),
        with_one,
        "the base chains grew with the interfaces"
    );

    // Every key's chain holds its key's rules and nothing else: dN's zone, its mark and guard,
    // its accept (inserted at the head) and default; its mark's restores.
    let table = nft_table(&hub);
    assert_layout(&table);
    let mut expected: Vec<(String, Vec<String>)> = Vec::new();
    for (n, id) in &ids {
        let mark = format!("{:#x}", n + 1);
        expected.extend([
            (format!("zones.iif.d{n}"), vec![id[0].clone()]),
            (
                format!("connmarks.iif.d{n}"),
                vec![id[1].clone(), id[1].clone()],
            ),
            (format!("connmarks.ctmark.{mark}"), vec![id[1].clone()]),
            (format!("localmarks.ctmark.{mark}"), vec![id[1].clone()]),
            (
                format!("forward.iif.d{n}"),
                vec![id[2].clone(), id[3].clone()],
            ),
        ]);
    }
    let id_of = |r: &&NftRule| -> String {
        let comment = r
            .comment
            .as_deref()
            .unwrap()
            .strip_prefix("natctl:")
            .unwrap();
        comment.split(' ').next().unwrap().to_string()
    };
    let mut found: Vec<(String, Vec<String>)> = table
        .key_chains()
        .iter()
        .map(|c| (c.to_string(), table.chain(c).iter().map(id_of).collect()))
        .collect();
    expected.sort();
    found.sort();
    assert_eq!(found.len(), 1000);
    assert_eq!(found, expected);
    let listed = assert_list_matches_nft(&hub);
    assert_eq!(listed.len(), 200 * 7);

    // Traffic from the device behind d1: to the internal network (accepted), elsewhere
    // (dropped by d1's default).
    assert!(ping(&dev, "100.64.0.1", 3));
    assert!(!ping(&dev, "10.9.0.1", 2));
    let table = nft_table(&hub);
    let d1_chains = [
        "zones.iif.d1",
        "connmarks.iif.d1",
        "connmarks.ctmark.0x2",
        "localmarks.ctmark.0x2",
        "forward.iif.d1",
    ];
    let packets = |chain: &str| -> Vec<u64> {
        table
            .chain(chain)
            .iter()
            .map(|r| without_counter(&r.expr).1 .0)
            .collect()
    };
    // (zone: both pings; mark: their two connections; guard: nothing; restore: the echo
    // replies; the namespace's own replies: none; accept, default)
    let moved: Vec<Vec<u64>> = d1_chains.iter().map(|c| packets(c)).collect();
    let [zone, own, restore, own_restore, forward] = [0, 1, 2, 3, 4].map(|i| &moved[i]);
    assert!(zone[0] >= 5, "{moved:?}");
    assert!(own[0] >= 2 && own[1] == 0, "{moved:?}");
    assert!(restore[0] >= 3 && own_restore[0] == 0, "{moved:?}");
    assert!(forward[0] >= 3 && forward[1] >= 2, "{moved:?}");
    for chain in table.key_chains().iter().filter(|c| !d1_chains.contains(c)) {
        assert!(
            packets(chain).iter().all(|&p| p == 0),
            "{chain}: {:?}",
            table.chain(chain)
        );
    }

    // Another process's add (the table's ids from natctl's store) adds a key's chain, not a
    // dispatch rule.
    let mark = add(&hub, &["mark", "--iif", "d1", "--set", "2"]);
    assert!(mark.changed);
    assert_eq!(base_chains(), with_one);
    assert_eq!(handles_of(&hub, &mark.rule.id)[0].0, "marks.iif.d1");
}

/// The map elements of natctl's table, each as (map, key).
fn elements(table: &NftTable) -> Vec<(String, String)> {
    let mut out: Vec<(String, String)> = table
        .maps
        .iter()
        .flat_map(|m| {
            table
                .elements(&m.name)
                .into_iter()
                .map(|(key, _)| (m.name.clone(), key))
        })
        .collect();
    out.sort();
    out
}

/// The chains of the keys of natctl's table, sorted.
fn key_chains(ns: &str) -> Vec<String> {
    let table = nft_table(ns);
    let mut chains: Vec<String> = table.key_chains().iter().map(|c| c.to_string()).collect();
    chains.sort();
    chains
}

/// A key's chain and its map element come with the key's first rule and go with its last
/// (`nft list` shows neither then); a chain other rules still use stays. Adding, deleting and
/// adding again, in separate processes or in one batch, never adds a dispatch rule twice, and
/// `flush` removes all of it.
#[test]
fn a_keys_chain_comes_with_its_first_rule_and_goes_with_its_last() {
    let lab = Lab::new();
    let ns = lab.netns("life");
    let accept = [
        "filter",
        "--iif",
        "a1",
        "--dst",
        "10.0.0.0/8",
        "--verdict",
        "accept",
    ];
    let default = ["filter", "--iif", "a1", "--default", "drop"];
    let connmark = ["connmark", "--iif", "a1", "--set", "5"];
    let to_host = ["connmark", "--dst", "10.1.0.5", "--set", "5"];
    // (each add a process of its own; nft_rules checks the dispatch rules, once each)
    let mut ids = Vec::new();
    for args in [&accept[..], &default, &connmark, &to_host] {
        ids.push(add(&ns, args).rule.id);
        assert!(!add(&ns, args).changed, "{args:?}");
        nft_rules(&ns);
    }
    let [accept_id, default_id, connmark_id, to_host_id] = [0, 1, 2, 3].map(|i| ids[i].clone());
    assert_eq!(
        key_chains(&ns),
        [
            "connmarks.ctmark.0x5",
            "connmarks.dst4.10.1.0.5",
            "connmarks.iif.a1",
            "forward.iif.a1",
            "localmarks.ctmark.0x5"
        ]
    );
    // (the two connmarks share their mark's chains: a restore of each there)
    let table = nft_table(&ns);
    assert_eq!(table.chain("connmarks.ctmark.0x5").len(), 2);
    assert_eq!(table.chain("localmarks.ctmark.0x5").len(), 2);
    let all_elements = elements(&table);

    // One of a1's two filters goes: its chain and element stay, with the other.
    assert!(natctl(&ns, &["del", &accept_id]).ok().changed());
    let table = nft_table(&ns);
    assert_eq!(handles_of(&ns, &default_id)[0].0, "forward.iif.a1");
    assert_eq!(elements(&table), all_elements);
    // The last goes: so do its chain and element.
    assert!(natctl(&ns, &["del", &default_id]).ok().changed());
    let rs = ruleset(&ns);
    assert!(!rs.contains("forward.iif.a1"), "{rs}");
    natctl_chain_absent(&ns, "forward.iif.a1");
    assert!(nft_table(&ns).elements("forward.iif").is_empty());
    // a1's connmark: its interface's chain goes, its mark's chains stay for the other's restores.
    assert!(natctl(&ns, &["del", &connmark_id]).ok().changed());
    nft_rules(&ns);
    assert_eq!(
        key_chains(&ns),
        [
            "connmarks.ctmark.0x5",
            "connmarks.dst4.10.1.0.5",
            "localmarks.ctmark.0x5"
        ]
    );
    assert!(natctl(&ns, &["del", &to_host_id]).ok().changed());
    let table = nft_table(&ns);
    assert_layout(&table);
    assert!(table.key_chains().is_empty() && elements(&table).is_empty());
    assert!(table.rules().is_empty());

    // Added again, deleted and added again, in separate processes and in one batch.
    for _ in 0..2 {
        assert!(add(&ns, &default).changed);
        assert!(natctl(&ns, &["del", &default_id]).ok().changed());
    }
    assert!(add(&ns, &default).changed);
    let text = format!(
        "del {default_id}\n{}\n{}\ndel {default_id}\n{}\n",
        default.join(" "),
        connmark.join(" "),
        default.join(" ")
    );
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text))
        .ok()
        .json_lines();
    assert!(
        out.iter().all(|l| l["changed"] == Value::Bool(true)),
        "{out:?}"
    );
    assert_eq!(
        key_chains(&ns),
        [
            "connmarks.ctmark.0x5",
            "connmarks.iif.a1",
            "forward.iif.a1",
            "localmarks.ctmark.0x5"
        ]
    );
    assert_eq!(assert_list_matches_nft(&ns).len(), 5);

    // flush: the table, its chains, maps and rules, all of it.
    assert!(natctl(&ns, &["flush"]).ok().changed());
    let tables = nsh(&ns, "nft list tables").ok().stdout;
    assert!(!tables.contains("natctl"), "{tables}");
    assert!(list(&ns).is_empty());
}

/// A batch's deletions are committed together, each planned as if those before it were done:
/// the rules of a key's chain deleted by several lines of one batch take the chain and its map
/// element with them, as one line deleting them all would; an id deleted twice is changed only
/// once; and the rules the batch does not name stay.
#[test]
fn a_batchs_deletions_together_take_the_chains_they_empty() {
    let lab = Lab::new();
    let ns = lab.netns("bdel");
    let rules = [
        "filter --iif b1 --dst 10.0.0.0/8 --verdict accept",
        "filter --iif b1 --default drop",
        "connmark --iif b1 --set 7",
        "connmark --dst 10.1.0.7 --set 7",
        "filter --iif b2 --default drop",
    ];
    let ids: Vec<String> = rules
        .iter()
        .map(|r| add(&ns, &r.split_whitespace().collect::<Vec<_>>()).rule.id)
        .collect();
    assert_eq!(
        key_chains(&ns),
        [
            "connmarks.ctmark.0x7",
            "connmarks.dst4.10.1.0.7",
            "connmarks.iif.b1",
            "forward.iif.b1",
            "forward.iif.b2",
            "localmarks.ctmark.0x7"
        ]
    );
    // every rule but b2's, the first twice
    let text: String = [0, 1, 2, 3, 0]
        .iter()
        .map(|&i| format!("del {}\n", ids[i]))
        .collect();
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text))
        .ok()
        .json_lines();
    let changed: Vec<bool> = out
        .iter()
        .map(|l| l["changed"] == Value::Bool(true))
        .collect();
    assert_eq!(changed, [true, true, true, true, false], "{out:?}");
    assert_eq!(key_chains(&ns), ["forward.iif.b2"]);
    for chain in ["forward.iif.b1", "connmarks.iif.b1", "connmarks.ctmark.0x7"] {
        natctl_chain_absent(&ns, chain);
    }
    let table = nft_table(&ns);
    assert_layout(&table);
    let elements = elements(&table);
    assert!(
        elements.len() == 1 && elements[0].0 == "forward.iif",
        "{elements:?}"
    );
    let left = assert_list_matches_nft(&ns);
    assert_eq!(left.len(), 1);
    assert!(ruleset(&ns).contains(&ids[4]));
    // (and again: nothing left to delete)
    let again = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&text))
        .ok()
        .json_lines();
    assert!(
        again.iter().all(|l| l["changed"] == Value::Bool(false)),
        "{again:?}"
    );
}

/// `nft list chain inet natctl CHAIN` fails: there is no such chain.
#[track_caller]
fn natctl_chain_absent(ns: &str, chain: &str) {
    let r = nsh(ns, &format!("nft list chain inet natctl {chain}"));
    assert_ne!(r.code, 0, "{chain} is still there: {}", r.stdout);
}

/// A key's map element deleted by hand (`nft delete element`): `del` of the key's last rule
/// still deletes the rule (its emptied chain stays, since deleting it with the absent element
/// fails), and the key's next rule uses that chain again and brings the element back.
#[test]
fn del_works_when_a_keys_map_element_was_deleted_by_hand() {
    let lab = Lab::new();
    let ns = lab.netns("helem");
    let h1 = ["filter", "--iif", "h1", "--default", "drop"];
    let id = add(&ns, &h1).rule.id;
    let other = add(&ns, &["filter", "--iif", "h2", "--default", "drop"])
        .rule
        .id;
    nsh(
        &ns,
        r#"nft delete element inet natctl forward.iif '{ "h1" }'"#,
    )
    .ok();
    let del: Added = parse(&natctl(&ns, &["del", &id]).ok());
    assert!(del.changed);
    assert_eq!(del.rule.iif.as_deref(), Some("h1"));
    let table = nft_table(&ns);
    assert!(carrying(table.rules(), &id).is_empty(), "the rule stayed");
    assert_dispatch(&table);
    assert!(table.chain("forward.iif.h1").is_empty());
    assert_eq!(
        table.elements("forward.iif"),
        [("h2".to_string(), "forward.iif.h2".to_string())]
    );
    assert_eq!(listed_id(&ns, &other).len(), 1);
    // The next rule of h1: its chain (the one left), its element back.
    assert!(add(&ns, &h1).changed);
    assert_eq!(handles_of(&ns, &id)[0].0, "forward.iif.h1");
    let mut keys: Vec<String> = nft_table(&ns)
        .elements("forward.iif")
        .into_iter()
        .map(|(key, _)| key)
        .collect();
    keys.sort();
    assert_eq!(keys, ["h1", "h2"]);
    assert_eq!(assert_list_matches_nft(&ns).len(), 2);
}

/// A base chain that lost one of its dispatch rules (deleted with `nft`) gets them all anew with
/// the next add, in key order at its head: `zones` lacking its `iifname` lookup has its host
/// lookups first again, then the interface's.
#[test]
fn a_lost_dispatch_rule_comes_back_in_its_place() {
    let lab = Lab::new();
    let ns = lab.netns("hdisp");
    add(&ns, &["filter", "--iif", "h1", "--default", "drop"]);
    let zones = nsh(&ns, "nft -a list chain inet natctl zones").ok().stdout;
    let handle = zones
        .lines()
        .find(|l| l.contains("natctl dispatch by iif"))
        .and_then(|l| l.rsplit("handle ").next())
        .unwrap_or_else(|| panic!("zones' iif dispatch: {zones}"))
        .trim()
        .to_string();
    nsh(
        &ns,
        &format!("nft delete rule inet natctl zones handle {handle}"),
    )
    .ok();
    assert!(add(&ns, &["mark", "--iif", "h2", "--set", "3"]).changed);
    // (nft_table checks every base chain's dispatch rules: once each, in key order, at its head)
    let table = nft_table(&ns);
    assert_dispatch(&table);
    assert_eq!(assert_list_matches_nft(&ns).len(), 2);
}

/// A key's map element deleted with `nft` leaves its chain's rules where no packet reaches them:
/// `list` shows each of them missing its part (in that chain), and the next add of one puts the
/// element back, after which all of them are intact again.
#[test]
fn a_rule_no_map_element_leads_to_is_missing_and_add_restores_it() {
    let lab = Lab::new();
    let ns = lab.netns("hreach");
    let default = ["filter", "--iif", "t7", "--default", "drop"];
    let accept = [
        "filter",
        "--iif",
        "t7",
        "--dst",
        "10.0.0.0/8",
        "--verdict",
        "accept",
    ];
    add(&ns, &default);
    add(&ns, &accept);
    nsh(
        &ns,
        r#"nft delete element inet natctl forward.iif '{ "t7" }'"#,
    )
    .ok();
    let rules = list(&ns);
    assert_eq!(rules.len(), 2, "{rules:?}");
    for r in &rules {
        assert_eq!(
            (r.complete, r.tampered, r.missing.as_ref().map(Vec::len)),
            (Some(false), Some(false), Some(1)),
            "{r:?}"
        );
        assert_eq!(r.missing.as_ref().unwrap()[0].chain, "forward.iif.t7");
    }
    assert!(add(&ns, &default).changed, "the add puts the element back");
    assert_eq!(
        nft_table(&ns).elements("forward.iif"),
        [("t7".to_string(), "forward.iif.t7".to_string())]
    );
    assert!(
        !add(&ns, &accept).changed,
        "the other rule is reached again"
    );
    assert_eq!(assert_list_matches_nft(&ns).len(), 2);
}

/// `set list`'s sets, each with its elements: (key, value, packets) as JSON values.
fn set_list(ns: &str) -> Value {
    let listed = natctl(ns, &["set", "list"]).ok();
    assert!(!listed.changed());
    listed.json()["sets"].clone()
}

/// The elements of set NAME as nft lists them, one line each ("c00-wg" : 50000).
fn nft_elements(ns: &str, name: &str) -> String {
    nsh(
        ns,
        &format!("nft list set inet natctl {name} || nft list map inet natctl {name}"),
    )
    .ok()
    .stdout
}

/// Sets and maps: made once (the same definition again is changed:false, another refused),
/// elements added and deleted one by one with their values, refused when they are not of the
/// set's type, listed as the kernel holds them; a bad line changes nothing.
#[test]
fn sets_and_maps_hold_elements_of_their_type() {
    let lab = Lab::new();
    let ns = lab.netns("sets");
    let made = natctl(
        &ns,
        &["set", "add", "tunnels", "--type", "ifname", "--counter"],
    )
    .ok();
    assert!(made.changed());
    assert_eq!(
        made.json()["set"],
        serde_json::json!({"name": "tunnels", "type": "ifname", "value": null,
                           "counter": true, "netns": ns})
    );
    let again = natctl(
        &ns,
        &["set", "add", "tunnels", "--type", "ifname", "--counter"],
    )
    .ok();
    assert!(!again.changed());
    natctl(&ns, &["set", "add", "tunnels", "--type", "ifname"]).fails(
        1,
        "exists as a set of ifname with counters, not a set of ifname without",
    );
    assert!(natctl(
        &ns,
        &["set", "add", "zone_of", "--type", "ifname", "--value", "zone"]
    )
    .ok()
    .changed());
    assert!(natctl(
        &ns,
        &[
            "set",
            "add",
            "snat_of",
            "--type",
            "ifname",
            "--value",
            "ipv4_addr"
        ]
    )
    .ok()
    .changed());
    assert!(
        natctl(&ns, &["set", "add", "hosts6", "--type", "ipv6_addr"])
            .ok()
            .changed()
    );

    // Elements: new (changed), the same again (not), another value (refused, then --replace).
    let add_el = |args: &[&str]| natctl(&ns, &[&["element", "add"][..], args].concat());
    assert!(add_el(&["tunnels", "c00-wg"]).ok().changed());
    assert!(!add_el(&["tunnels", "c00-wg"]).ok().changed());
    assert!(add_el(&["zone_of", "c00-wg", "50000"]).ok().changed());
    assert!(!add_el(&["zone_of", "c00-wg", "50000"]).ok().changed());
    add_el(&["zone_of", "c00-wg", "50001"]).fails(1, "c00-wg maps to 50000 there, not 50001");
    let replaced = add_el(&["zone_of", "c00-wg", "50001", "--replace"]).ok();
    assert!(replaced.changed());
    assert_eq!(replaced.json()["element"]["value"], 50001);
    assert!(add_el(&["snat_of", "c00-wg", "100.64.0.1"]).ok().changed());
    assert!(add_el(&["hosts6", "fd00::7"]).ok().changed());
    assert!(nft_elements(&ns, "zone_of").contains("\"c00-wg\" : 50001"));
    assert!(nft_elements(&ns, "snat_of").contains("\"c00-wg\" : 100.64.0.1"));
    assert!(nft_elements(&ns, "hosts6").contains("fd00::7"));
    assert!(nft_elements(&ns, "tunnels").contains("\"c00-wg\" counter packets 0"));

    // Bad input: exit 2 naming the value, and nothing changes.
    let before = ruleset(&ns);
    for (args, needle) in [
        (
            &["element", "add", "tunnels", "a/b"][..],
            "'a/b' is not a key of set tunnels",
        ),
        (
            &["element", "add", "tunnels", "c01-wg", "7"],
            "takes no value ('7')",
        ),
        (
            &["element", "add", "zone_of", "c01-wg"],
            "needs a value (zone)",
        ),
        (
            &["element", "add", "zone_of", "c01-wg", "65536"],
            "'65536' is not a value of map zone_of",
        ),
        (
            &["element", "add", "snat_of", "c01-wg", "fd00::1"],
            "of the other address family",
        ),
        (
            &["element", "add", "hosts6", "100.64.0.7"],
            "'100.64.0.7' is not a key of set hosts6",
        ),
        (&["set", "add", "1st", "--type", "ifname"], "set name '1st'"),
        (
            &["set", "add", "forward.iif", "--type", "ifname"],
            "set name 'forward.iif'",
        ),
        (
            &["set", "add", "x", "--type", "port"],
            "invalid value 'port'",
        ),
        (
            &["filter", "--iif", "@", "--default", "drop"],
            "set name ''",
        ),
    ] {
        natctl(&ns, args).fails(2, needle);
    }
    natctl(&ns, &["element", "add", "nosuch", "c00-wg"]).fails(1, "there is no set nosuch");
    natctl(&ns, &["filter", "--iif", "@nosuch", "--default", "drop"])
        .fails(1, "there is no set nosuch");
    natctl(&ns, &["filter", "--iif", "@hosts6", "--default", "drop"]).fails(
        2,
        "hosts6 is a set of ipv6_addr; this takes a set of interface names",
    );
    natctl(&ns, &["--check", "element", "add", "tunnels", "c09-wg"]).ok();
    natctl(&ns, &["--check", "set", "add", "extra", "--type", "mark"]).ok();
    assert_eq!(
        ruleset(&ns),
        before,
        "a refused or checked line changed the kernel"
    );

    // A batch: 200 elements, each its own small transaction.
    let lines: String = (0..200)
        .map(|i| format!("element add tunnels t{i}\n"))
        .collect();
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(&lines)).ok();
    assert_eq!(out.json_lines().len(), 200);
    let sets = set_list(&ns);
    let tunnels = sets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tunnels")
        .expect("tunnels listed");
    assert_eq!(tunnels["elements"].as_array().unwrap().len(), 201);
    let names: Vec<&str> = sets
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        ["hosts6", "snat_of", "tunnels", "zone_of"],
        "sorted by name"
    );

    // Deletion: an element, then again (changed:false), a whole set, then again.
    let del_el = |args: &[&str]| natctl(&ns, &[&["element", "del"][..], args].concat()).ok();
    assert!(del_el(&["zone_of", "c00-wg"]).changed());
    assert!(!del_el(&["zone_of", "c00-wg"]).changed());
    assert!(!del_el(&["nosuch", "c00-wg"]).changed());
    assert!(!nft_elements(&ns, "zone_of").contains("c00-wg"));
    assert!(natctl(&ns, &["set", "del", "zone_of"]).ok().changed());
    assert!(!natctl(&ns, &["set", "del", "zone_of"]).ok().changed());
    natctl(&ns, &["set", "list", "zone_of"]).fails(1, "there is no set zone_of");
    // (flush takes the sets with the table)
    assert!(natctl(&ns, &["flush"]).ok().changed());
    assert_eq!(set_list(&ns), serde_json::json!([]));
}

/// `filter --iif @SET`: one rule for every interface of the set, each admitted or let go by one
/// element; a set's counter counts each element's packets; a set in use cannot be deleted.
#[test]
fn filter_by_a_set_of_interfaces_acts_on_each_element() {
    let lab = Lab::new();
    let (hub, dev, server, other) = filter_hub(&lab);
    natctl(&hub, &["set", "add", "devices", "--type", "ifname"]).ok();
    natctl(
        &hub,
        &["set", "add", "denied", "--type", "ifname", "--counter"],
    )
    .ok();
    let accept = add(
        &hub,
        &[
            "filter",
            "--iif",
            "@devices",
            "--dst",
            "100.64.0.0/24",
            "--verdict",
            "accept",
        ],
    );
    let default = add(&hub, &["filter", "--iif", "@denied", "--default", "drop"]);
    assert_eq!(accept.rule.iif.as_deref(), Some("@devices"));
    assert!(!add(&hub, &["filter", "--iif", "@denied", "--default", "drop"]).changed);
    // Neither set holds d1 yet: everything flows.
    assert!(ping(&dev, "10.9.0.1", 1));

    for set in ["devices", "denied"] {
        natctl(&hub, &["element", "add", set, "d1"]).ok();
    }
    assert!(ping(&dev, "100.64.0.1", 2), "accepted by its element");
    let (got, _) = tcp_exchange(&server, 8080, &dev, "100.64.0.1", false);
    assert_eq!(got.trim(), "hello-from-client");
    assert!(!ping(&dev, "10.9.0.1", 3), "dropped: d1 is denied the rest");
    // o0 is in neither set: its traffic is untouched.
    assert!(ping(&other, "100.64.0.1", 1));

    // The kernel's rules: one each, looking the interface up last; the element's counter
    // counts what d1 was denied.
    let forward = nsh(&hub, "nft list chain inet natctl forward").ok().stdout;
    assert!(
        forward.contains("ip daddr 100.64.0.0/24 iifname @devices counter"),
        "{forward}"
    );
    assert!(forward.contains("iifname @denied counter"), "{forward}");
    let denied = set_list(&hub)
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "denied")
        .unwrap()["elements"][0]
        .clone();
    assert_eq!(denied["key"], "d1");
    assert!(denied["packets"].as_u64().unwrap() >= 3, "{denied}");
    let listed = list_intact(&hub);
    let packets = |id: &str| listed.iter().find(|r| r.id == id).unwrap().packets.unwrap();
    assert_eq!(Some(packets(&default.rule.id)), denied["packets"].as_u64());
    assert!(packets(&accept.rule.id) >= 2);

    // A set in use stays; its element goes, and d1 is let go.
    natctl(&hub, &["set", "del", "denied"]).fails(1, &default.rule.id);
    assert!(natctl(&hub, &["element", "del", "denied", "d1"])
        .ok()
        .changed());
    assert!(ping(&dev, "10.9.0.1", 1), "d1 no longer denied");
    natctl(&hub, &["del", &default.rule.id]).ok();
    assert!(natctl(&hub, &["set", "del", "denied"]).ok().changed());
}

/// A rule over a map gives each key the map's value: each interface's connections their own
/// zone and source address, each destination its mark; one element changes one key's value.
#[test]
fn maps_give_each_key_its_zone_source_and_mark() {
    let lab = Lab::new();
    let (hub, dev, server, other) = filter_hub(&lab);
    for (name, key, value) in [
        ("zone_of", "ifname", "zone"),
        ("snat_of", "ifname", "ipv4_addr"),
        ("mark_of", "ipv4_addr", "mark"),
    ] {
        natctl(&hub, &["set", "add", name, "--type", key, "--value", value]).ok();
    }
    for (set, key, value) in [
        ("zone_of", "d1", "7"),
        ("zone_of", "o0", "9"),
        ("snat_of", "d1", "198.51.100.51"),
        ("snat_of", "o0", "198.51.100.52"),
    ] {
        natctl(&hub, &["element", "add", set, key, value]).ok();
    }
    // (the original direction's zone: the replies, from s0, are found in the default one)
    let zone = add_over_sets(
        &hub,
        &[
            "zone", "--iif", "@zone_of", "--zone", "@zone_of", "--dir", "original",
        ],
    );
    let snat = add_over_sets(&hub, &["snat", "--iif", "@snat_of", "--to", "@snat_of"]);
    assert_eq!(zone["rule"]["zone"], "@zone_of");
    // (the family comes from the map's addresses, and goes into the id)
    assert_eq!(snat["rule"]["family"], "inet");
    let again = add_over_sets(
        &hub,
        &[
            "snat", "--to", "@snat_of", "--iif", "@snat_of", "--family", "ipv4",
        ],
    );
    assert_eq!(again["rule"]["id"], snat["rule"]["id"]);
    assert_eq!(again["changed"], false);

    // Each device's connection leaves with its own address (outside s0's network, so that the
    // server answers through the hub), in its own zone.
    let (got, seen) = tcp_exchange(&server, 8080, &dev, "100.64.0.1", false);
    assert_eq!(got, "hello-from-client");
    assert!(seen.contains("198.51.100.51"), "d1's source: {seen}");
    let (got, seen) = tcp_exchange(&server, 8080, &other, "100.64.0.1", false);
    assert_eq!(got, "hello-from-client");
    assert!(seen.contains("198.51.100.52"), "o0's source: {seen}");
    let zoned = |src: &str, zone: u16| {
        let ct = nsh(&hub, "conntrack -L -p tcp 2>/dev/null").ok().stdout;
        ct.lines().any(|l| {
            l.contains(&format!("src={src} dst=100.64.0.1 "))
                && l.contains(&format!("zone-orig={zone} "))
        })
    };
    assert!(zoned("10.1.0.2", 7), "d1's connection in zone 7");
    assert!(zoned("10.9.0.1", 9), "o0's connection in zone 9");

    // One element changes one key's zone; the other keeps its own.
    natctl(&hub, &["element", "add", "zone_of", "d1", "8", "--replace"]).ok();
    tcp_exchange(&server, 8081, &dev, "100.64.0.1", false);
    let ct = nsh(&hub, "conntrack -L -p tcp --dport 8081 2>/dev/null")
        .ok()
        .stdout;
    assert!(ct.contains("zone-orig=8 "), "{ct}");

    // A mark by destination: what d1 sends to 100.64.0.1 is marked 0x77, which a routing rule
    // refuses; the rest is not.
    let mark = add_over_sets(
        &hub,
        &[
            "mark", "--iif", "d1", "--dst", "@mark_of", "--set", "@mark_of",
        ],
    );
    ip_in(&hub, "rule add fwmark 0x77 priority 10 prohibit");
    assert!(ping(&dev, "100.64.0.1", 1), "no element yet: not marked");
    natctl(&hub, &["element", "add", "mark_of", "100.64.0.1", "0x77"]).ok();
    assert!(
        !ping(&dev, "100.64.0.1", 2),
        "marked, so refused by the rule"
    );
    assert!(
        ping(&dev, "100.64.0.10", 1),
        "another destination: not marked"
    );
    natctl(&hub, &["element", "del", "mark_of", "100.64.0.1"]).ok();
    assert!(ping(&dev, "100.64.0.1", 1), "its element gone: not marked");

    // A port forward of every address of a set: one rule, one element per address (the
    // exchange connects to the port it listens on, 8080).
    natctl(&hub, &["set", "add", "fwd", "--type", "ipv4_addr"]).ok();
    let forward = [
        "dnat",
        "--daddr",
        "@fwd",
        "--proto",
        "tcp",
        "--dport",
        "8080",
        "--to",
        "100.64.0.1",
    ];
    let dnat = add(&hub, &forward);
    assert_eq!(dnat.rule.daddr.as_deref(), Some("@fwd"));
    // (no element yet: the hub has no route to 10.9.9.9, and says so at once)
    let probe = nsh(&dev, "nc -z -w 2 10.9.9.9 8080 2>&1");
    assert_ne!(probe.code, 0, "no element yet, yet forwarded: {probe:?}");
    natctl(&hub, &["element", "add", "fwd", "10.9.9.9"]).ok();
    let (got, _) = tcp_exchange(&server, 8080, &dev, "10.9.9.9", false);
    assert_eq!(got, "hello-from-client", "forwarded by its element");

    // Each rule is one nftables rule looking the key up in its map, and what its id says.
    let rules = ruleset(&hub);
    for needle in [
        "ct original zone set iifname map @zone_of",
        "snat ip to iifname map @snat_of",
        "meta mark set ip daddr map @mark_of",
        "tcp dport 8080 ip daddr @fwd",
    ] {
        assert!(rules.contains(needle), "{needle} in {rules}");
    }
    let listed = natctl(&hub, &["list"]).ok().json()["rules"].clone();
    let dnat = natctl(&hub, &forward).ok().json();
    for added in [&zone, &snat, &mark, &dnat] {
        let id = &added["rule"]["id"];
        let r = listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| &r["id"] == id)
            .unwrap_or_else(|| panic!("{id} not listed: {listed}"));
        assert_eq!(
            (&r["tampered"], &r["complete"]),
            (&Value::Bool(false), &Value::Bool(true)),
            "{r}"
        );
    }
    let zone_packets = |listed: &Value| {
        listed
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["id"] == zone["rule"]["id"])
            .unwrap()["packets"]
            .as_u64()
            .unwrap()
    };
    assert!(zone_packets(&listed) >= 10, "{listed}");
}

/// An add over sets or maps, whose JSON has `@MAP` where a number would be (`zone`, `set`).
#[track_caller]
fn add_over_sets(ns: &str, args: &[&str]) -> Value {
    natctl(ns, args).ok().json()
}

/// What a rule over sets refuses (exit 2 naming the value, nothing changed): a value from a
/// map no key names, a set of another type than its use takes, a family other than its sets'.
#[test]
fn rules_over_sets_refuse_what_does_not_fit() {
    let lab = Lab::new();
    let ns = lab.netns("setbad");
    for (name, key, value) in [
        ("zone_of", "ifname", Some("zone")),
        ("zdst", "ipv4_addr", Some("zone")),
        ("snat_of", "ifname", Some("ipv4_addr")),
        ("hosts6", "ipv6_addr", None),
    ] {
        let mut args = vec!["set", "add", name, "--type", key];
        args.extend(value.iter().flat_map(|v| ["--value", v]));
        natctl(&ns, &args).ok();
    }
    // (a family for a rule whose sets hold no address is taken as it is)
    let zone_v6 = add_over_sets(
        &ns,
        &[
            "zone", "--iif", "@zone_of", "--zone", "@zone_of", "--family", "ipv6",
        ],
    );
    assert_eq!(zone_v6["rule"]["family"], "inet6");
    natctl(&ns, &["del", zone_v6["rule"]["id"].as_str().unwrap()]).ok();
    let before = ruleset(&ns);
    for (args, needle) in [
        (
            &["zone", "--iif", "c0", "--zone", "@zone_of"][..],
            "name the map in the key too (--iif @zone_of or --dst @zone_of)",
        ),
        (
            &["zone", "--iif", "@zdst", "--zone", "@zdst"],
            "zdst is a map of ipv4_addr to zone",
        ),
        (
            &[
                "snat", "--iif", "@snat_of", "--to", "@snat_of", "--family", "ipv6",
            ],
            "holds IPv4 addresses, but the rule is IPv6",
        ),
        (
            &["mark", "--iif", "@zone_of", "--set", "@zone_of"],
            "this takes a map to marks",
        ),
        (
            &[
                "filter",
                "--iif",
                "c0",
                "--dst",
                "@hosts6",
                "--src",
                "10.0.0.0/8",
                "--verdict",
                "accept",
            ],
            "holds IPv6 addresses, but the rule is IPv4",
        ),
        (
            &[
                "filter",
                "--iif",
                "c0",
                "--dst",
                "@zone_of",
                "--verdict",
                "accept",
            ],
            "zone_of is a map, whose keys a rule looks up for the value",
        ),
        (&["zone", "--iif", "c0", "--zone", "@"], "set name ''"),
        (
            &["snat", "--to", "10.0.0.1", "--family", "ipv6"],
            "--family ipv6 but the addresses are IPv4",
        ),
    ] {
        natctl(&ns, args).fails(2, needle);
    }
    natctl(&ns, &["zone", "--iif", "@nosuch", "--zone", "@nosuch"])
        .fails(1, "there is no set nosuch");
    assert_eq!(ruleset(&ns), before, "a refused line changed the kernel");
}

/// A batch's element lines are one transaction, each planned against the kernel and the lines
/// before it: the same key again is changed:false, a key deleted after its add is gone, a mark
/// taken by an earlier line is refused; a line the kernel would refuse leaves the lines before
/// it in force.
/// A ruleset saved the usual way (`nft list ruleset > FILE`) loads back (`nft -f FILE`) with
/// natctl's sets and maps and the rules over them in it: a map of zones prints as `typeof
/// iifname : ct zone` (zones have no nft type, and without that record nft printed `type
/// ifname : 0`, which it refuses to read). Loaded into another namespace, it lists the same.
#[test]
fn a_saved_ruleset_loads_back_with_nft_f() {
    let lab = Lab::new();
    let (ns, other) = (lab.netns("save"), lab.netns("load"));
    for (set, key, value, element) in [
        ("zone_of", "ifname", "zone", "t0 5"),
        ("addr_zone", "ipv4_addr", "zone", "10.0.0.1 7"),
        ("addr_zone6", "ipv6_addr", "zone", "fd00::1 8"),
        ("mark_zone", "mark", "zone", "0x10 9"),
        ("cm", "ifname", "ctmark", "t0 1"),
        ("marks", "ifname", "mark", "t0 2"),
        ("snat_of", "ifname", "ipv4_addr", "t0 100.64.0.5"),
        ("hosts", "ipv4_addr", "", "10.9.0.1"),
    ] {
        let mut args = vec!["set", "add", set, "--type", key, "--counter"];
        if !value.is_empty() {
            args.extend(["--value", value]);
        }
        natctl(&ns, &args).ok();
        let element: Vec<&str> = element.split(' ').collect();
        natctl(&ns, &[&["element", "add", set][..], &element].concat()).ok();
    }
    for rule in [
        "zone --iif @zone_of --zone @zone_of --dir original",
        "zone --local --dst @addr_zone --zone @addr_zone --dir reply",
        "zone --local --dst @addr_zone6 --zone @addr_zone6 --dir reply",
        "connmark --iif @cm --set @cm",
        "mark --iif @marks --set @marks",
        "snat --to @snat_of --iif @snat_of",
        "filter --iif t0 --dst @hosts --verdict accept",
    ] {
        natctl(&ns, &rule.split(' ').collect::<Vec<_>>()).ok();
    }
    let saved = nsh(&ns, "nft list ruleset").ok().stdout;
    for (map, key) in [
        ("zone_of", "iifname"),
        ("addr_zone", "ip daddr"),
        ("addr_zone6", "ip6 daddr"),
        ("mark_zone", "meta mark"),
    ] {
        let typeof_line = format!("map {map} {{\n\t\ttypeof {key} : ct zone\n");
        assert!(saved.contains(&typeof_line), "{typeof_line:?} in {saved}");
    }
    let load = format!("ip netns exec {ns} nft list ruleset | ip netns exec {other} nft -f -");
    sh(&load).ok();
    assert_eq!(nsh(&other, "nft list ruleset").ok().stdout, saved);
    // natctl still reads its own maps as what they are
    let listed = natctl(&ns, &["set", "list", "zone_of"]).ok().json();
    assert_eq!(listed["sets"][0]["value"], "zone", "{listed}");
    assert_eq!(listed["sets"][0]["elements"][0]["value"], 5, "{listed}");
}

#[test]
fn a_batchs_elements_are_committed_together() {
    let lab = Lab::new();
    let ns = lab.netns("elgroup");
    natctl(&ns, &["set", "add", "tunnels", "--type", "ifname"]).ok();
    natctl(
        &ns,
        &["set", "add", "cm", "--type", "ifname", "--value", "ctmark"],
    )
    .ok();
    let mut monitor = Monitor::start(&ns);
    let text = "element add tunnels t0\n\
                element add tunnels t1\n\
                element add tunnels t0\n\
                element del tunnels t1\n\
                element add cm t0 0x10\n\
                element add cm t0 0x10\n\
                element add cm t1 0x11\n";
    let out = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(text)).ok();
    let changed: Vec<bool> = out
        .json_lines()
        .iter()
        .map(|l| l["changed"].as_bool().unwrap())
        .collect();
    assert_eq!(changed, [true, true, false, true, true, false, true]);
    let commits = monitor.commits("mark1").expect("the marker");
    assert_eq!(commits.len(), 1, "the batch's commits: {commits:?}");
    let sets = set_list(&ns);
    let keys = |name: &str| -> Vec<String> {
        let set = sets
            .as_array()
            .unwrap()
            .iter()
            .find(|s| s["name"] == name)
            .unwrap();
        let mut keys: Vec<String> = set["elements"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| format!("{}={}", e["key"].as_str().unwrap(), e["value"]))
            .collect();
        keys.sort();
        keys
    };
    assert_eq!(keys("tunnels"), ["t0=null"]);
    assert_eq!(keys("cm"), ["t0=16", "t1=17"]);
    assert!(nft_elements(&ns, "cm.pairs").contains("\"t1\" . 0x00000011"));
    assert!(nft_elements(&ns, "cm.keys").contains("\"t1\""));
    assert!(nft_elements(&ns, "cm.values").contains("0x00000011"));

    // A mark an earlier line of the batch gave to t2 is refused for t3: lines 1 and 2 stand.
    let text = "element add tunnels t2\n\
                element add cm t2 0x12\n\
                element add cm t3 0x12\n\
                element add tunnels t3\n";
    let r = run_stdin(tool_path("natctl"), &["--ns", &ns, "-b", "-"], Some(text));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("mark 18 is t2's in cm"), "{}", r.stderr);
    assert_eq!(r.json_lines().len(), 2, "{}", r.stdout);
    let sets = set_list(&ns);
    let tunnels = sets
        .as_array()
        .unwrap()
        .iter()
        .find(|s| s["name"] == "tunnels")
        .unwrap();
    assert_eq!(
        tunnels["elements"].as_array().unwrap().len(),
        2,
        "t0 and t2: {tunnels}"
    );
    assert!(nft_elements(&ns, "cm").contains("\"t2\" : 0x00000012"));
}

/// A map of connection marks made by an older natctl, with only `.pairs` and `.marks` beside
/// it: a new element and a rule over it are refused, naming what it lacks and the command that
/// makes it, and an element still goes; `set add` of the same map makes what it lacks from its
/// elements (once); `set del` deletes what there is of it.
#[test]
fn a_map_an_older_natctl_made_is_completed_by_set_add() {
    let lab = Lab::new();
    let ns = lab.netns("oldmap");
    let old = |name: &str| {
        format!(
            r#"table inet natctl {{
                map {name} {{ type ifname : mark; comment "natctl: connection marks, one key's each";
                    elements = {{ "t1" : 0x11, "t2" : 0x12 }} }}
                set {name}.pairs {{ type ifname . mark; elements = {{ "t1" . 0x11, "t2" . 0x12 }} }}
                map {name}.marks {{ type mark : ifname; elements = {{ 0x11 : "t1", 0x12 : "t2" }} }}
            }}"#
        )
    };
    nsh(
        &ns,
        &format!("nft -f - <<'EOF'\n{}\n{}\nEOF", old("cm"), old("om")),
    )
    .ok();
    let before = ruleset(&ns);
    natctl(&ns, &["element", "add", "cm", "t3", "0x13"]).fails(
        1,
        "cm lacks cm.keys, which natctl keeps beside a map of connection marks (an older natctl made it): 'natctl --ns ",
    );
    natctl(&ns, &["element", "add", "cm", "t3", "0x13"])
        .fails(1, "set add cm --type ifname --value ctmark' makes it");
    natctl(&ns, &["connmark", "--iif", "@cm", "--set", "@cm"]).fails(1, "cm lacks cm.keys");
    assert_eq!(ruleset(&ns), before, "a refused line changed the kernel");
    // (an element of it still goes, with what there is beside it)
    assert!(natctl(&ns, &["element", "del", "cm", "t2"]).ok().changed());
    for set in ["cm", "cm.pairs", "cm.marks"] {
        let elements = nft_elements(&ns, set);
        assert!(
            elements.contains("\"t1\"") && !elements.contains("\"t2\""),
            "{set}: {elements}"
        );
    }
    natctl(&ns, &["element", "add", "cm", "t2", "0x12"]).fails(1, "cm lacks cm.keys");
    nsh(&ns, "nft add element inet natctl cm '{ \"t2\" : 0x12 }'; nft add element inet natctl cm.pairs '{ \"t2\" . 0x12 }'; nft add element inet natctl cm.marks '{ 0x12 : \"t2\" }'").ok();
    let before = ruleset(&ns);

    let checked = natctl(
        &ns,
        &[
            "--check", "set", "add", "cm", "--type", "ifname", "--value", "ctmark",
        ],
    )
    .ok();
    assert!(checked.changed());
    assert_eq!(ruleset(&ns), before, "--check changed the kernel");
    let add = ["set", "add", "cm", "--type", "ifname", "--value", "ctmark"];
    assert!(natctl(&ns, &add).ok().changed());
    for (set, held) in [
        ("cm.keys", ["\"t1\"", "\"t2\""]),
        ("cm.values", ["0x00000011", "0x00000012"]),
    ] {
        let elements = nft_elements(&ns, set);
        assert!(
            held.iter().all(|e| elements.contains(e)),
            "{set}: {elements}"
        );
    }
    assert!(!natctl(&ns, &add).ok().changed());

    // Completed, it takes elements and rules as a map natctl made now.
    assert!(natctl(&ns, &["element", "add", "cm", "t3", "0x13"])
        .ok()
        .changed());
    assert!(nft_elements(&ns, "cm.keys").contains("\"t3\""));
    let rule = natctl(&ns, &["connmark", "--iif", "@cm", "--set", "@cm"]).ok();
    assert!(rule.changed());
    natctl(&ns, &["del", rule.json()["rule"]["id"].as_str().unwrap()]).ok();
    assert!(natctl(&ns, &["set", "del", "cm"]).ok().changed());

    // The other, never completed, goes whole.
    assert!(natctl(&ns, &["set", "del", "om"]).ok().changed());
    let left = ruleset(&ns);
    for gone in [" cm ", " cm.", " om ", " om."] {
        assert!(!left.contains(gone), "{gone:?} left: {left}");
    }
}
