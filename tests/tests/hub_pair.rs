//! Issue 25: another box takes over. Two hubs (each its own center namespace, `HubLab`), one
//! underlay for the devices (a bridge in a namespace of its own, where the floating address
//! lives) and one central network with a server (a bridge in a namespace, the server's address on
//! it), all on this machine. The devices are the real `wg-quick` (wireguard-go) with the config
//! the first hub printed; the pair is run by the real keepalived (VRRP between the two centers,
//! each inside its namespace with its own config and pid files in a temporary directory) with
//! examples/keepalived/niransix-notify. Every test asserts traffic or the kernel's WireGuard
//! state; timings are printed (the figures docs/ha.md quotes), never asserted beyond the issue's
//! bounds.

use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use niransix_tests::*;
use serde_json::Value;

/// The floating address (HUB_ENDPOINT of both hubs) on the underlay 10.99.0.0/24.
const VIP: &str = "10.99.0.100";
/// The server on the central network (HUB_CIDR).
const SERVER: &str = "100.64.0.200";
/// The devices' tunnel address, the same for all.
const DEVICE: &str = "192.168.1.10";

/// The shared networks: the underlay `<p>ul` and the central network `<p>cn` (the server's
/// namespace), each a bridge `br0`; the devices; and whatever the test started in them.
struct Net {
    lab: Lab,
    ul: String,
    cn: String,
    dir: PathBuf,
    children: Vec<Child>,
    /// The pid files of the keepalived started (its parent and its VRRP process).
    pid_files: Vec<PathBuf>,
}

impl Net {
    fn new() -> Net {
        let lab = Lab::new();
        let (ul, cn) = (lab.netns("ul"), lab.netns("cn"));
        sh(&format!(
            "set -e; for n in {ul} {cn}; do ip -n $n link add br0 type bridge; ip -n $n link set br0 up; done; \
             ip -n {cn} addr add {SERVER}/24 dev br0"
        ))
        .ok();
        let dir = std::env::temp_dir().join(format!("{}-pair", lab.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("the pair's directory");
        Net {
            lab,
            ul,
            cn,
            dir,
            children: Vec::new(),
            pid_files: Vec::new(),
        }
    }

    /// Joins HUB's center to the underlay (10.99.0.N, link `ul0` there) and its bridge to the
    /// central network through its internal side `<hub prefix>int` (in its switch namespace),
    /// left down.
    fn attach(&self, hub: &HubLab, n: u8) {
        let (p, ns, ul, cn) = (&hub.lab.prefix, &hub.ns, &self.ul, &self.cn);
        sh(&format!(
            "set -e; ip link add {p}u netns {ul} type veth peer name ul0 netns {ns}; \
             ip -n {ul} link set {p}u master br0 up; \
             ip -n {ns} addr add 10.99.0.{n}/24 dev ul0; ip -n {ns} link set ul0 up; \
             ip link add {p}x netns {cn} type veth peer name {p}int netns {p}hub.switch; \
             ip -n {cn} link set {p}x master br0 up; \
             ip -n {p}hub.switch link set {p}int master br-internal down"
        ))
        .ok();
    }

    /// A device namespace `<p>d<tag>` on the underlay at 10.99.0.(10+N).
    fn device(&self, tag: u8) -> String {
        underlay_device(&self.lab, &self.ul, "10.99.0", tag)
    }

    /// The real client in device namespace D: `wg-quick up` with CONF, unedited.
    fn wg_quick_up(&self, d: &str, tag: u8, conf: &str) {
        wg_quick_up(&self.lab, &self.dir, d, tag, conf);
    }

    /// A TCP service on port 22 of device D (its tunnel address), kept until the end.
    fn listen(&mut self, d: &str) {
        let child = Command::new("ip")
            .args(["netns", "exec", d, "nc", "-lk", DEVICE, "22"])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nc");
        self.children.push(child);
        wait_until(
            "the device listens on tcp/22",
            Duration::from_secs(5),
            || tcp_listening(d, 22),
        );
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for f in &self.pid_files {
            let pid = std::fs::read_to_string(f).unwrap_or_default();
            if let Ok(pid) = pid.trim().parse::<i32>() {
                // SAFETY: kill(2) of a keepalived this test started (its pid file).
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A hub of the pair: forwards tcp/22 of every device, the floating address as its endpoint.
fn pair_hub() -> HubLab {
    let hub = HubLab::new().with_env(&[&format!("HUB_ENDPOINT={VIP}"), "HUB_FORWARDS=tcp/22"]);
    hub.hub(&["-q", "up"]).ok();
    hub
}

/// Whether a TCP connection from namespace NS to ADDR:22 is accepted within a second.
fn connects(ns: &str, addr: &str) -> bool {
    nsh(ns, &format!("nc -z -w 1 {addr} 22")).code == 0
}

/// The hub side's `wg show` of peer NAME's tunnel, WHAT (`endpoints`, `latest-handshakes`,
/// `transfer`): its value (the second word).
fn wg_field(hub: &HubLab, name: &str, what: &str) -> String {
    hub.hub_wg(name, what)
        .split_whitespace()
        .nth(1)
        .unwrap_or("")
        .to_string()
}

#[test]
fn export_secrets_builds_the_same_hub_and_a_killed_sync_converges() {
    let a = pair_hub();
    let key = sh("wg genkey | wg pubkey").ok().stdout.trim().to_string();
    a.add("g1", &["--preshared-key", "generate", "--keepalive", "0"]);
    a.add("g2", &["--public-key", &key, "--forward", "tcp/8080=80"]);
    a.add("g3", &["--mtu", "1380"]);
    let plain = a.export(false);
    let full = a.export(true);
    let keys = secrets_of(&full);
    assert_eq!(
        keys.len(),
        6,
        "3 hub keys, 2 client keys, 1 psk: {}",
        keys.len()
    );
    for k in &keys {
        assert!(
            !plain.contains(k.as_str()),
            "export without --secrets shows key material"
        );
    }
    assert!(
        !plain.contains("private_key") && plain.contains("\"preshared_key\":\"generate\""),
        "{plain}"
    );

    // A set with a last endpoint for g1: recorded, exported, never set on the tunnel.
    let mut lines = parsed(&full);
    lines[0]["endpoint"] = "10.99.0.11:51820".into();
    let set: String = lines.iter().map(|l| format!("{l}\n")).collect();

    let b = pair_hub();
    // Killed at three moments of its work, then run again: the same hub each time.
    for after_ms in [150u64, 600, 1500] {
        let mut cmd = b.command(&["-q", "sync", "-"]);
        cmd.stdin(Stdio::piped())
            .stdout(Stdio::null())
            .stderr(Stdio::null());
        cmd.process_group(0);
        let mut child = cmd.spawn().expect("hub sync");
        {
            use std::io::Write;
            let mut stdin = child.stdin.take().unwrap();
            stdin.write_all(set.as_bytes()).unwrap();
        }
        std::thread::sleep(Duration::from_millis(after_ms));
        // SAFETY: kill(2) of the process group this test started (the hub and its tools).
        unsafe { libc::kill(-(child.id() as i32), libc::SIGKILL) };
        let _ = child.wait();
        let r = b.hub_stdin(&["sync", "-"], &set).ok();
        for k in &keys {
            assert!(
                !r.stdout.contains(k.as_str()) && !r.stderr.contains(k.as_str()),
                "sync printed key material"
            );
        }
        assert_eq!(
            parsed(&b.export(true)),
            lines,
            "killed after {after_ms} ms: not the same set"
        );
        b.assert_healthy(&format!("after a sync killed after {after_ms} ms"));
    }
    // The same tunnels: ports, hub keys, clients; the same client configs.
    for n in ["g1", "g2", "g3"] {
        for what in ["public-key", "listen-port", "peers", "preshared-keys"] {
            assert_eq!(a.hub_wg(n, what), b.hub_wg(n, what), "{n} {what}");
        }
        assert_eq!(a.conf(n), b.conf(n), "peer conf {n}");
    }
    assert_eq!(
        wg_field(&b, "g1", "endpoints"),
        "(none)",
        "sync set an endpoint"
    );
    // Key files 0600.
    let modes = sh(&format!(
        "find {} -name '*.key' -o -name '*.psk' | xargs stat -c '%a %n'",
        b.state.display()
    ))
    .ok()
    .stdout;
    assert_eq!(modes.lines().count(), 6, "{modes}");
    assert!(modes.lines().all(|l| l.starts_with("600 ")), "{modes}");
    // Again: nothing changes.
    assert!(!b.hub_stdin(&["-q", "sync", "-"], &set).ok().changed());

    // Bad key material: exit 2 naming the field and the peer, never the key; nothing changed.
    let before = b.export(true);
    let mut bad = lines.clone();
    let cut = &keys[0][..43];
    bad[1]["private_key"] = cut.into();
    let text: String = bad.iter().map(|l| format!("{l}\n")).collect();
    let r = b
        .hub_stdin(&["sync", "-"], &text)
        .fails(2, "line 2: peer 'g2': \"private_key\"");
    assert!(
        !r.stderr.contains(cut),
        "the error quotes the key: {}",
        r.stderr
    );
    // A transfer cut short (an export killed on the primary): refused whole.
    let short = &set[..set.len() - 20];
    b.hub_stdin(&["sync", "-"], short).fails(2, "cut short");
    assert_eq!(b.export(true), before, "a refused sync changed the set");
}

/// A set's lines as JSON (compared as objects: key order aside).
fn parsed(set: &str) -> Vec<Value> {
    set.lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

/// The idle device behind a tunnel of HUB: handshaken once (it pinged the center), its
/// endpoint recorded by `up`.
fn idle_device(net: &mut Net, hub: &HubLab, name: &str, tag: u8) -> String {
    let d = net.device(tag);
    net.wg_quick_up(&d, tag, &hub.conf(name));
    net.listen(&d);
    assert!(ping(&d, "100.64.0.10", 3), "{name} reaches the center");
    hub.hub(&["-q", "up"]).ok();
    d
}

#[test]
fn up_reseeds_a_restarted_tunnel_and_an_idle_device_is_reachable_again() {
    let mut net = Net::new();
    let a = pair_hub();
    net.attach(&a, 1);
    sh(&format!("ip -n {} addr add {VIP}/24 dev ul0", a.ns)).ok();
    a.add("i1", &["--keepalive", "0"]);
    idle_device(&mut net, &a, "i1", 1);
    let recorded = a.export(false);
    assert!(
        recorded.contains("\"endpoint\":\"10.99.0.11:"),
        "up recorded no endpoint: {recorded}"
    );
    let wg = a.peer_wg("i1");
    crash_userspace(&wg, "KILL");
    let r = a.hub(&["up"]).ok();
    let done = Instant::now();
    assert!(
        r.stderr.contains("--endpoint 10.99.0.11:"),
        "up did not reseed: {}",
        r.stderr
    );
    // The hub starts the handshake (the device sends nothing: no keepalive, no traffic).
    assert!(
        poll_until(Duration::from_secs(2), || {
            wg_field(&a, "i1", "latest-handshakes") != "0"
        }),
        "no handshake within 2 s of up"
    );
    let handshake = done.elapsed();
    let center = a.ns.clone();
    assert!(
        poll_until(Duration::from_secs(2), || connects(&center, "100.64.0.1")),
        "the center does not reach the idle device's tcp/22 within 2 s of up"
    );
    eprintln!(
        "reseed after up: handshake {} ms, device reachable {} ms after up returned",
        handshake.as_millis(),
        done.elapsed().as_millis()
    );
}

/// keepalived in HUB's center with priority PRIO and the example notify script (through a
/// wrapper that gives it this hub's settings and a log of its steps).
fn keepalived(net: &mut Net, hub: &HubLab, id: &str, prio: u32) -> PathBuf {
    let dir = net.dir.join(id);
    std::fs::create_dir_all(&dir).unwrap();
    let log = dir.join("notify.log");
    let mut env = hub.environment();
    env.push(format!("NIRANSIX_HUB={}", script("hub")));
    env.push(format!("NIRANSIX_INTERNAL={}int", hub.lab.prefix));
    env.push(format!("NIRANSIX_NOTIFY_LOG={}", log.display()));
    env.push(format!(
        "NIRANSIX_NOTIFY_LOCK={}",
        dir.join("lock").display()
    ));
    env.push(format!("NIRANSIX_HUB_CONF={}", dir.join("none").display()));
    env.push(format!(
        "PATH={}:/usr/sbin:/usr/bin:/sbin:/bin",
        bin_dir().display()
    ));
    let notify = dir.join("notify");
    std::fs::write(
        &notify,
        format!(
            "#!/bin/sh\nexec env {} {} \"$@\" 2>>{}\n",
            env.join(" "),
            repo_root()
                .join("examples/keepalived/niransix-notify")
                .display(),
            dir.join("notify.err").display()
        ),
    )
    .unwrap();
    run("chmod", &["700", &notify.to_string_lossy()]).ok();
    let example = std::fs::read_to_string(repo_root().join("examples/keepalived/keepalived.conf"))
        .expect("examples/keepalived/keepalived.conf");
    let conf = example
        .replace("router_id hub-a", &format!("router_id {id}"))
        .replace("    enable_script_security\n", "")
        .replace("interface eth0", "interface ul0")
        .replace("dev eth0", "dev ul0")
        .replace("192.0.2.100/24", &format!("{VIP}/24"))
        .replace(
            "virtual_router_id 64",
            &format!("virtual_router_id {}", 64 + (std::process::id() % 100)),
        )
        .replace("priority 150", &format!("priority {prio}"))
        .replace("/usr/local/sbin/niransix-notify", &notify.to_string_lossy());
    let path = dir.join("keepalived.conf");
    std::fs::write(&path, conf).unwrap();
    let child = Command::new("ip")
        .args([
            "netns",
            "exec",
            &hub.ns,
            "keepalived",
            "-n",
            "-l",
            "-G",
            "-P",
        ])
        .arg("-f")
        .arg(&path)
        .arg("-p")
        .arg(dir.join("keepalived.pid"))
        .arg("-r")
        .arg(dir.join("vrrp.pid"))
        .stdin(Stdio::null())
        .stdout(std::fs::File::create(dir.join("keepalived.log")).unwrap())
        .stderr(Stdio::null())
        .spawn()
        .expect("keepalived (Debian's package keepalived)");
    net.children.push(child);
    net.pid_files.push(dir.join("vrrp.pid"));
    net.pid_files.push(dir.join("keepalived.pid"));
    log
}

/// Whether HUB holds the floating address.
fn holds_vip(hub: &HubLab) -> bool {
    sh(&format!("ip -n {} -o addr show dev ul0", hub.ns))
        .stdout
        .contains(&format!("{VIP}/"))
}

/// Whether HUB's internal side is up.
fn internal_up(hub: &HubLab) -> bool {
    let p = &hub.lab.prefix;
    ip_json(
        Some(&format!("{p}hub.switch")),
        &["link", "show", "dev", &format!("{p}int")],
    )[0]["flags"]
        .as_array()
        .is_some_and(|f| f.iter().any(|x| x == "UP"))
}

/// Whether HUB is a standby (its notify script ran `hub standby`).
fn standby(hub: &HubLab) -> bool {
    hub.state.join("standby").exists()
}

/// Pings DEST from D every 0.1 s until a reply comes, for at most SECS; how long it took.
/// How long after SINCE pinging device D1 answered the server, and the server reached the idle
/// device d2 through its forward (None: not within 10 s).
fn back_since(net: &Net, d1: &str, since: Instant) -> (Option<Duration>, Option<Duration>) {
    let ping = first_reply(d1, SERVER, 10).map(|_| since.elapsed());
    let server = poll_until(Duration::from_secs(10), || connects(&net.cn, "100.64.0.2"))
        .then(|| since.elapsed());
    (ping, server)
}

/// The issue's goal: both devices back within 5 s.
fn assert_within_5s(ping_back: Option<Duration>, server_back: Option<Duration>) {
    let five = Duration::from_secs(5);
    assert!(ping_back.is_some_and(|t| t <= five), "d1: {ping_back:?}");
    assert!(
        server_back.is_some_and(|t| t <= five),
        "d2: {server_back:?}"
    );
}

fn first_reply(d: &str, dest: &str, secs: u64) -> Option<Duration> {
    let t = Instant::now();
    poll_until(Duration::from_secs(secs), || {
        nsh(d, &format!("ping -n -q -c 1 -W 0.2 {dest}")).code == 0
    })
    .then(|| t.elapsed())
}

/// The notify log's steps after T0 (epoch seconds): "STEP +MS" each.
fn steps_since(log: &PathBuf, t0: f64) -> String {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let (t, what) = l.split_once(' ')?;
            let t: f64 = t.parse().ok()?;
            (t >= t0).then(|| format!("{what} +{:.0} ms", (t - t0) * 1000.0))
        })
        .collect::<Vec<_>>()
        .join(", ")
}

fn now_epoch() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// Cuts (or restores) HUB's uplinks: its underlay port and its central network port.
fn uplinks(net: &Net, hub: &HubLab, up: bool) {
    let (p, state) = (&hub.lab.prefix, if up { "up" } else { "down" });
    sh(&format!(
        "ip -n {} link set {p}u {state}; ip -n {} link set {p}x {state}",
        net.ul, net.cn
    ))
    .ok();
}

#[test]
fn a_keepalived_pair_takes_over_and_back_and_the_standby_takes_no_client() {
    if run("sh", &["-c", "command -v keepalived && command -v arping"]).code != 0 {
        panic!("keepalived and arping are needed (scripts/bootstrap.sh installs them)");
    }
    let mut net = Net::new();
    let (a, b) = (pair_hub(), pair_hub());
    net.attach(&a, 1);
    net.attach(&b, 2);
    a.add("d1", &[]);
    a.add("d2", &["--keepalive", "0"]);
    // B: the primary's set, as the pull timer gives it.
    let log_a = keepalived(&mut net, &a, "a", 150);
    let log_b = keepalived(&mut net, &b, "b", 100);
    wait_until(
        "A is MASTER and B the standby",
        Duration::from_secs(15),
        || holds_vip(&a) && internal_up(&a) && standby(&b) && !internal_up(&b) && !holds_vip(&b),
    );
    // The devices: d1 pings the server, d2 is idle (no keepalive) and serves tcp/22.
    let d1 = net.device(1);
    net.wg_quick_up(&d1, 1, &a.conf("d1"));
    let d2 = idle_device(&mut net, &a, "d2", 2);
    assert!(ping(&d1, SERVER, 3), "d1 reaches the server through A");
    assert!(
        connects(&net.cn, "100.64.0.2"),
        "the server reaches d2's tcp/22 through A"
    );
    a.hub(&["-q", "up"]).ok(); // (the repair timer: A records the endpoints)
    b.hub_stdin(&["-q", "sync", "-"], &a.export(true)).ok();
    assert!(
        b.export(false).contains("\"endpoint\":\"10.99.0.12:"),
        "B has the endpoints"
    );

    // Split brain: while A serves, B takes no client: no endpoint, no handshake, nothing sent,
    // even after its repair remade a tunnel.
    let wg = b.peer_wg("d2");
    crash_userspace(&wg, "KILL");
    let r = b.hub(&["up"]).ok();
    assert!(
        !r.stderr.contains("--endpoint"),
        "the standby's up reseeded: {}",
        r.stderr
    );
    std::thread::sleep(Duration::from_secs(2));
    for n in ["d1", "d2"] {
        assert_eq!(
            wg_field(&b, n, "endpoints"),
            "(none)",
            "the standby knows where {n} is"
        );
        assert_eq!(
            wg_field(&b, n, "latest-handshakes"),
            "0",
            "the standby took {n}"
        );
        assert_eq!(
            b.hub_wg(n, "transfer").split_whitespace().nth(2),
            Some("0"),
            "the standby sent to {n}"
        );
    }
    assert!(holds_vip(&a) && !internal_up(&b), "A still serves alone");

    // Takeover: A's uplinks cut while d1 pings.
    let t0 = now_epoch();
    let cut = Instant::now();
    uplinks(&net, &a, false);
    let (ping_back, server_back) = back_since(&net, &d1, cut);
    eprintln!(
        "takeover: d1's pings answered after {ping_back:?}, the server reached idle d2 after {server_back:?}; B: {}; A: {}",
        steps_since(&log_b, t0),
        steps_since(&log_a, t0)
    );
    assert_within_5s(ping_back, server_back);
    assert!(holds_vip(&b) && internal_up(&b) && !standby(&b), "B serves");
    wait_until("A is the standby", Duration::from_secs(5), || {
        standby(&a) && !internal_up(&a)
    });

    // Failback: A's uplinks back; A (the higher priority) takes over again.
    let t0 = now_epoch();
    let back = Instant::now();
    uplinks(&net, &a, true);
    wait_until("A is MASTER again", Duration::from_secs(10), || {
        holds_vip(&a) && internal_up(&a) && !standby(&a)
    });
    let (ping_back, server_back) = back_since(&net, &d1, back);
    wait_until("B is the standby again", Duration::from_secs(5), || {
        standby(&b) && !internal_up(&b)
    });
    eprintln!(
        "failback: d1's pings answered after {ping_back:?}, the server reached d2 after {server_back:?}; A: {}; B: {}",
        steps_since(&log_a, t0),
        steps_since(&log_b, t0)
    );
    assert_within_5s(ping_back, server_back);
    assert!(wg_field(&a, "d1", "latest-handshakes") != "0");
    let _ = d2;
}
