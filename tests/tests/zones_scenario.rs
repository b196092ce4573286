//! The kernel's own scenario for identical clients (tools/testing/selftests/net/netfilter/
//! nft_nat_zones.sh), rebuilt with our tools alone: 100 client namespaces on veths into one
//! gateway, every client 10.1.0.3, a server behind the gateway. The gateway gives what arrives on
//! each client's veth its own conntrack zone and connection mark (natctl zone, natctl connmark),
//! masquerades out to the server, and routes each reply back by its mark (routectl rule + a table
//! per client). Every client then opens the same UDP "connection" (10.1.0.3:10000 ->
//! 10.3.0.99:5000) at once: 100 same-tuple connections must be 100 conntrack entries in 100 zones,
//! and every client must get its own reply back (the echo carries the client's number).

use niransix_tests::*;

const CLIENTS: usize = 100;
const SERVER: &str = "10.3.0.99";

/// One batch of `tool` lines, every line changing something.
fn batch(tool_name: &str, lines: &[String]) {
    let out = run_stdin(tool_path(tool_name), &["-b", "-"], Some(&lines.join("\n"))).ok();
    let results = out.json_lines();
    assert_eq!(
        results.len(),
        lines.len(),
        "{tool_name}: one result per line"
    );
    for (line, result) in lines.iter().zip(&results) {
        assert_eq!(result["changed"], true, "{tool_name} {line}: {result}");
    }
}

#[test]
fn hundred_identical_clients_get_their_own_replies_through_one_gateway() {
    let lab = Lab::new();
    let (gw, srv) = (lab.name("gw"), lab.name("srv"));
    let client = |i: usize| lab.name(&format!("c{i}"));
    let veth = |i: usize| lab.name(&format!("v{i}"));
    let uplink = lab.name("s0");

    // Namespaces, links and addresses: nsctl (`veth add --up` brings both ends up).
    let mut ns_lines = vec![format!("netns add {gw}"), format!("netns add {srv}")];
    let mut links = vec![
        format!("--ns {gw} link set lo --up"),
        format!("--ns {srv} link set lo --up"),
        format!("--ns {gw} sysctl net.ipv4.ip_forward=1"),
        format!("--ns {gw} veth add {uplink} --peer eth0 --peer-ns {srv} --up"),
        format!("--ns {gw} addr add 10.3.0.1/24 --dev {uplink}"),
        format!("--ns {srv} addr add {SERVER}/24 --dev eth0"),
    ];
    let (mut routes, mut nat) = (Vec::new(), Vec::new());
    for i in 1..=CLIENTS {
        let (c, v) = (client(i), veth(i));
        ns_lines.push(format!("netns add {c}"));
        links.extend([
            format!("--ns {gw} veth add {v} --peer eth0 --peer-ns {c} --up"),
            format!("--ns {gw} addr add 10.1.0.1/24 --dev {v}"),
            format!("--ns {c} addr add 10.1.0.3/24 --dev eth0"),
        ]);
        // Replies find their client by the connection's mark: fwmark i -> table 1000+i -> v_i.
        routes.extend([
            format!("--ns {c} route add default --via 10.1.0.1"),
            format!(
                "--ns {gw} route add 10.1.0.0/24 --dev {v} --table {}",
                1000 + i
            ),
            format!(
                "--ns {gw} rule add --fwmark {i} --table {} --priority 1000",
                1000 + i
            ),
        ]);
        nat.extend([
            format!("--ns {gw} zone --iif {v} --zone {i} --dir original"),
            format!("--ns {gw} connmark --iif {v} --set {i}"),
        ]);
    }
    nat.push(format!("--ns {gw} masquerade --oif {uplink}"));
    batch("nsctl", &ns_lines);
    batch("nsctl", &links);
    batch("routectl", &routes);
    batch("natctl", &nat);

    // What the gateway holds, as the kernel reports it.
    let rules = ip_json(Some(&gw), &["rule", "show", "priority", "1000"]);
    assert_eq!(rules.as_array().unwrap().len(), CLIENTS, "{rules}");
    let nft = sh(&format!("ip netns exec {gw} nft list table inet natctl"))
        .ok()
        .stdout;
    assert_eq!(nft.matches("ct original zone set").count(), CLIENTS);
    assert_eq!(nft.matches("meta mark set ct mark").count(), 2 * CLIENTS);

    // A UDP echo server (it sends every datagram back to where it came from), then every client
    // at once: from 10.1.0.3:10000 to the server, waiting for its own number to come back.
    let py = "/usr/bin/python3";
    let server = format!(
        "import socket\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('{SERVER}', 5000))\nwhile True:\n    d, a = s.recvfrom(100)\n    s.sendto(d, a)\n"
    );
    let client_py = format!(
        "import socket, sys\ns = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n\
         s.bind(('10.1.0.3', 10000))\ns.settimeout(2)\nme = sys.argv[1].encode()\n\
         for _ in range(5):\n    s.sendto(me, ('{SERVER}', 5000))\n    try:\n        \
         d = s.recv(100)\n    except socket.timeout:\n        continue\n    \
         print('got', d.decode())\n    sys.exit(0 if d == me else 1)\nsys.exit(2)\n"
    );
    let dir = std::env::temp_dir().join(lab.name("zones"));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(dir.join("server.py"), server).unwrap();
    std::fs::write(dir.join("client.py"), client_py).unwrap();
    let d = dir.display();
    let clients: Vec<String> = (1..=CLIENTS).map(client).collect();
    let script = format!(
        "ip netns exec {srv} timeout 60 {py} {d}/server.py & server=$!; sleep 0.5\n\
         i=0; for c in {all}; do i=$((i + 1)); \
         ip netns exec $c timeout 20 {py} {d}/client.py $i >{d}/out.$i 2>&1 & done; wait $(jobs -p | grep -v $server) 2>/dev/null\n\
         ok=0; for i in $(seq 1 {CLIENTS}); do grep -qx \"got $i\" {d}/out.$i && ok=$((ok + 1)) || \
         {{ echo \"client $i:\"; cat {d}/out.$i; }}; done\n\
         kill $server; echo \"ok=$ok\"",
        all = clients.join(" ")
    );
    let out = sh(&script);
    let _ = std::fs::remove_dir_all(&dir);
    assert!(
        out.stdout.contains(&format!("ok={CLIENTS}")),
        "every client gets its own reply: {}{}",
        out.stdout,
        out.stderr
    );

    // 100 same-tuple connections, 100 conntrack entries in 100 zones, each with the mark of its
    // zone and a reply tuple of its own (masquerade gave each another source port).
    let ct = sh(&format!(
        "ip netns exec {gw} conntrack -L -p udp --orig-src 10.1.0.3 --orig-dst {SERVER} 2>/dev/null"
    ))
    .ok()
    .stdout;
    let entries: Vec<&str> = ct
        .lines()
        .filter(|l| l.contains("sport=10000 dport=5000 "))
        .collect();
    assert_eq!(entries.len(), CLIENTS, "one entry per client: {ct}");
    let field = |line: &str, key: &str| -> String {
        line.split_whitespace()
            .find_map(|w| w.strip_prefix(key))
            .unwrap_or_else(|| panic!("no {key} in {line}"))
            .to_string()
    };
    let mut zones: Vec<u32> = Vec::new();
    let mut reply_ports = std::collections::BTreeSet::new();
    for line in &entries {
        let zone: u32 = field(line, "zone-orig=").parse().unwrap();
        assert_eq!(
            field(line, "mark="),
            zone.to_string(),
            "mark follows zone: {line}"
        );
        // The reply tuple's destination port: the last dport= on the line.
        let dport = line
            .split_whitespace()
            .rev()
            .find_map(|w| w.strip_prefix("dport="))
            .unwrap()
            .to_string();
        reply_ports.insert(dport);
        zones.push(zone);
    }
    zones.sort();
    assert_eq!(zones, (1..=CLIENTS as u32).collect::<Vec<_>>(), "100 zones");
    assert_eq!(reply_ports.len(), CLIENTS, "100 distinct reply tuples");
}
