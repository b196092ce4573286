//! The overlapping-networks scenario with real VRFs (docs/scenarios/netmap-vrf-overlapping.txt),
//! built only with our tools: one middleman with two interfaces that both hold 192.168.2.1/24,
//! one in each VRF; NETMAP through 192.168.3.0/24 both ways; an fwmark per incoming side that
//! selects the other side's table; conntrack zones per side (original direction). The inner and
//! the outer node, both at 192.168.2.10, reach each other through the mapped range, and the
//! same-tuple clash from the scenario's correction yields two conntrack entries in two zones.
//!
//! Needs VRF: on a kernel without it the test reports itself SKIPPED (kernel lacks VRF; runs in
//! the VM lane) and returns; inside the VM lane (NIRANSIX_VM=1) it must run.

use std::process::{Child, Command, Stdio};
use std::thread::sleep;
use std::time::{Duration, Instant};

use niransix_tests::*;

const PORT: &str = "8080";
const CLIENT_PORT: &str = "4000";

/// Background `nc -l` servers, killed when dropped (also on panic).
#[derive(Default)]
struct Servers(Vec<Child>);

impl Drop for Servers {
    fn drop(&mut self) {
        for c in &mut self.0 {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// An `nc -l` server in `ns` that answers one connection with `reply`.
fn serve(servers: &mut Servers, ns: &str, reply: &str) {
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            ns,
            "sh",
            "-c",
            &format!("echo {reply} | timeout 60 nc -l -N {PORT}"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting nc -l");
    servers.0.push(child);
    let deadline = Instant::now() + Duration::from_secs(10);
    while sh(&format!(
        "ip netns exec {ns} ss -Hltn sport = :{PORT} | grep -q ."
    ))
    .code
        != 0
    {
        assert!(
            Instant::now() < deadline,
            "nc -l {PORT} in {ns} never listened"
        );
        sleep(Duration::from_millis(50));
    }
}

/// Connects from `ns`, source port 4000, to `dest`:8080 and returns what the server said.
fn fetch(ns: &str, dest: &str) -> String {
    run(
        "ip",
        &[
            "netns",
            "exec",
            ns,
            "nc",
            "-N",
            "-w",
            "5",
            "-p",
            CLIENT_PORT,
            dest,
            PORT,
        ],
    )
    .stdout
    .trim()
    .to_string()
}

#[test]
fn overlapping_networks_through_vrfs_netmap_and_zones() {
    require_root();
    if !needs_kernel(
        "vrf",
        "vrf_scenario::overlapping_networks_through_vrfs_netmap_and_zones",
    ) {
        return;
    }
    let lab = Lab::new();
    let m = lab.netns("m");
    let inner = lab.netns("i");
    let outer = lab.netns("o");

    // Links: middleman e0 <-> inner node eth0, middleman e1 <-> outer node eth0.
    for (side, node) in [("e0", &inner), ("e1", &outer)] {
        tool(
            "nsctl",
            &[
                "--ns",
                &m,
                "veth",
                "add",
                side,
                "--peer",
                "eth0",
                "--peer-ns",
                node,
                "--up",
            ],
        )
        .ok();
        tool("nsctl", &["--ns", node, "link", "set", "eth0", "--up"]).ok();
        tool(
            "nsctl",
            &["--ns", &m, "addr", "add", "192.168.2.1/24", "--dev", side],
        )
        .ok();
        tool(
            "nsctl",
            &[
                "--ns",
                node,
                "addr",
                "add",
                "192.168.2.10/24",
                "--dev",
                "eth0",
            ],
        )
        .ok();
        tool(
            "routectl",
            &[
                "--ns",
                node,
                "route",
                "add",
                "192.168.3.0/24",
                "--via",
                "192.168.2.1",
            ],
        )
        .ok();
    }

    // The middleman: two VRFs, one per side.
    for (vrf, table, side) in [("vinner", "100", "e0"), ("vouter", "200", "e1")] {
        tool(
            "routectl",
            &["--ns", &m, "vrf", "add", vrf, "--table", table],
        )
        .ok();
        tool("nsctl", &["--ns", &m, "link", "set", vrf, "--up"]).ok();
        tool(
            "routectl",
            &["--ns", &m, "vrf", "enslave", side, "--vrf", vrf],
        )
        .ok();
    }
    tool("nsctl", &["--ns", &m, "sysctl", "net.ipv4.ip_forward=1"]).ok();

    // The kernel agrees: each side's connected route lives in its VRF's table, none in main.
    for (table, side) in [("100", "e0"), ("200", "e1")] {
        let routes = ip_json(Some(&m), &["route", "show", "table", table]);
        assert!(
            routes
                .as_array()
                .unwrap()
                .iter()
                .any(|r| r["dst"] == "192.168.2.0/24" && r["dev"] == side),
            "table {table} lacks 192.168.2.0/24 dev {side}: {routes}"
        );
    }
    let main = ip_json(Some(&m), &["route", "show", "table", "main"]);
    assert!(
        !main.to_string().contains("192.168.2.0/24"),
        "main table still routes 192.168.2.0/24: {main}"
    );
    let vrfs = tool("routectl", &["--ns", &m, "vrf", "list"]).ok().json();
    for (vrf, table, side) in [("vinner", "100", "e0"), ("vouter", "200", "e1")] {
        let v = vrfs["vrfs"]
            .as_array()
            .unwrap()
            .iter()
            .find(|v| v["name"] == vrf)
            .unwrap_or_else(|| panic!("vrf list lacks {vrf}: {vrfs}"));
        // a number, or its decimal string
        assert_eq!(v["table"].to_string().trim_matches('"'), table, "{vrfs}");
        assert!(
            v["members"].as_array().unwrap().iter().any(|x| x == side),
            "{vrf} should have member {side}: {vrfs}"
        );
    }

    // (a) NETMAP 192.168.3.0/24 <-> 192.168.2.0/24 both ways.
    tool(
        "natctl",
        &[
            "--ns",
            &m,
            "netmap",
            "--dst",
            "192.168.3.0/24",
            "--to",
            "192.168.2.0/24",
        ],
    )
    .ok();
    tool(
        "natctl",
        &[
            "--ns",
            &m,
            "netmap",
            "--src",
            "192.168.2.0/24",
            "--to",
            "192.168.3.0/24",
        ],
    )
    .ok();
    // (b) mark by incoming side; the mark selects the OTHER side's table.
    for (side, mark, other_table, prio) in
        [("e0", "100", "200", "100"), ("e1", "200", "100", "200")]
    {
        tool(
            "natctl",
            &[
                "--ns",
                &m,
                "mark",
                "--iif",
                side,
                "--set",
                mark,
                "--dst",
                "192.168.3.0/24",
            ],
        )
        .ok();
        tool(
            "routectl",
            &[
                "--ns",
                &m,
                "rule",
                "add",
                "--fwmark",
                mark,
                "--table",
                other_table,
                "--priority",
                prio,
            ],
        )
        .ok();
        // Conntrack zone per side, original direction only (the reply arrives on the other side).
        tool(
            "natctl",
            &[
                "--ns",
                &m,
                "zone",
                "--iif",
                side,
                "--zone",
                mark,
                "--src",
                "192.168.2.0/24",
                "--dir",
                "original",
            ],
        )
        .ok();
    }
    let rules = ip_json(Some(&m), &["rule", "show"]).to_string();
    assert!(
        rules.contains("\"fwmark\":\"0x64\"") && rules.contains("\"fwmark\":\"0xc8\""),
        "ip rule lacks the fwmark rules: {rules}"
    );

    // The inner node reaches the outer one (and vice versa) at 192.168.3.10.
    assert!(
        ping(&inner, "192.168.3.10", 3),
        "inner 192.168.2.10 cannot ping the outer node as 192.168.3.10"
    );
    assert!(
        ping(&outer, "192.168.3.10", 3),
        "outer 192.168.2.10 cannot ping the inner node as 192.168.3.10"
    );

    // The same-tuple clash: both nodes connect from 192.168.2.10:4000 to 192.168.3.10:8080.
    // Each must reach the OTHER node (the reply says who answered), and the middleman must hold
    // two conntrack entries with that original tuple, one per zone.
    let mut servers = Servers::default();
    serve(&mut servers, &outer, "outer");
    serve(&mut servers, &inner, "inner");
    assert_eq!(
        fetch(&inner, "192.168.3.10"),
        "outer",
        "inner node's connection to 192.168.3.10 did not reach the outer node"
    );
    assert_eq!(
        fetch(&outer, "192.168.3.10"),
        "inner",
        "outer node's connection to 192.168.3.10 did not reach the inner node \
         (the clash with the inner node's connection was not separated by zones)"
    );
    let ct = sh(&format!(
        "ip netns exec {m} conntrack -L -p tcp 2>/dev/null"
    ))
    .ok()
    .stdout;
    let tuple = "src=192.168.2.10 dst=192.168.3.10 sport=4000 dport=8080";
    for zone in ["100", "200"] {
        assert!(
            ct.lines()
                .any(|l| l.contains(tuple) && l.contains(&format!("zone-orig={zone}"))),
            "no conntrack entry {tuple} in zone-orig={zone}:\n{ct}"
        );
    }
    assert_eq!(
        ct.lines().filter(|l| l.contains(tuple)).count(),
        2,
        "expected exactly two entries {tuple}:\n{ct}"
    );
    drop(servers);
}
