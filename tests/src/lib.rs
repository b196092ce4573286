//! Test kit for the integration tests: runs our binaries, reads the kernel's own view
//! (`ip -j`, `nft`, `wg`, `conntrack`) and owns a per-test prefix for every namespace, link
//! and WireGuard interface it makes, removing all of them when dropped, even on panic.
//!
//! Every name a test creates starts with [`ROOT_PREFIX`], so `leakcheck.sh` can prove after the
//! suite that nothing was left behind.
//!
//! [`HubLab`] is one niransix-sh/hub under test on a Lab of its own (the hub suites share it), and
//! [`wait_until`] and its kin wait for what a test needs (a socket bound, a process gone, the
//! kernel settled) instead of sleeping and assuming it happened.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use serde_json::Value;

/// Every test object's name starts with this.
pub const ROOT_PREFIX: &str = "nx";

/// The prefix this run's test objects start with: [`ROOT_PREFIX`], unless `NIRANSIX_TEST_PREFIX`
/// names another (2–3 lowercase letters, e.g. `ny`) so that a second suite can run beside another
/// on one machine and `tests/leakcheck.sh ny` checks only its own leftovers.
pub fn root_prefix() -> String {
    match std::env::var("NIRANSIX_TEST_PREFIX") {
        Ok(p) if (2..=3).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_lowercase()) => p,
        _ => ROOT_PREFIX.to_string(),
    }
}

/// True inside the kernel VM lane (`tests/vm/inside.sh` sets `NIRANSIX_VM=1`), where the kernel
/// has WireGuard and VRF: tests must then require those features instead of skipping.
pub fn in_vm_lane() -> bool {
    std::env::var_os("NIRANSIX_VM").is_some_and(|v| v == "1")
}

/// The hub mode the hub suites run in: `NIRANSIX_HUB_MODE`, `netns` (the default) or `zones`
/// (tests/run.sh runs them once in each).
pub fn hub_mode() -> &'static str {
    match std::env::var("NIRANSIX_HUB_MODE").as_deref() {
        Err(_) | Ok("") | Ok("netns") => "netns",
        Ok("zones") => "zones",
        Ok(other) => panic!("NIRANSIX_HUB_MODE '{other}' must be netns or zones"),
    }
}

/// Whether this kernel can create a link of `kind` (`wireguard`, `vrf`, `dummy`, `vlan`, ...).
/// Tries it in a throwaway namespace (`unshare -n ip link add`), which also loads the module
/// where there is one; a vlan gets a veth to sit on.
pub fn kernel_supports(kind: &str) -> bool {
    let probe = match kind {
        "vrf" => "ip link add nxprobe type vrf table 10".to_string(),
        "vlan" => "ip link add nxv0 type veth peer name nxv1 && \
                   ip link add link nxv0 name nxv0.5 type vlan id 5"
            .to_string(),
        k => format!("ip link add nxprobe type {k}"),
    };
    run("unshare", &["-n", "sh", "-c", &probe]).code == 0
}

/// Reports the calling test as skipped (the caller returns right after): prints
/// `SKIPPED (<reason>)` on stderr and appends `<test>\t<reason>` to `$NIRANSIX_SKIP_LOG`, so
/// `tests/run.sh` counts it as skipped, never as passed. In the VM lane skipping is not allowed:
/// this panics there.
#[track_caller]
pub fn skip(test: &str, reason: &str) {
    assert!(
        !in_vm_lane(),
        "{test}: would skip ({reason}), but the VM lane (NIRANSIX_VM=1) must run it"
    );
    eprintln!("\n*** {test}: SKIPPED ({reason}) ***\n");
    if let Some(path) = std::env::var_os("NIRANSIX_SKIP_LOG") {
        use std::io::Write;
        if let Ok(mut f) = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
        {
            let _ = writeln!(f, "{test}\t{reason}");
        }
    }
}

/// For a test that needs a kernel link kind this machine may lack (`wireguard`, `vrf`): true if
/// the kernel has it. Otherwise reports the test as skipped ("kernel lacks VRF; runs in the VM
/// lane") and returns false — or panics inside the VM lane, where the feature must exist.
/// Use: `if !needs_kernel("vrf", "my_test") { return; }`
#[track_caller]
pub fn needs_kernel(kind: &str, test: &str) -> bool {
    if kernel_supports(kind) {
        return true;
    }
    let what = match kind {
        "vrf" => "VRF".to_string(),
        "wireguard" => "WireGuard".to_string(),
        "vlan" => "802.1Q VLAN".to_string(),
        k => k.to_string(),
    };
    skip(test, &format!("kernel lacks {what}; runs in the VM lane"));
    false
}

/// The directory holding the built tools (`target/debug` or `target/release`).
pub fn bin_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("NIRANSIX_BIN_DIR") {
        return PathBuf::from(d);
    }
    let exe = std::env::current_exe().expect("test executable path");
    // target/<profile>/deps/<test> -> target/<profile>
    exe.parent()
        .and_then(|p| p.parent())
        .expect("target dir")
        .to_path_buf()
}

/// The path of one of our tools (`nsctl`, `wgctl`, `natctl`, `routectl`).
pub fn tool_path(name: &str) -> PathBuf {
    let p = bin_dir().join(name);
    assert!(
        p.exists(),
        "{} is not built: run `cargo build --workspace` first",
        p.display()
    );
    p
}

/// The repository root (for scripts under niransix-sh/).
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("repo root")
        .to_path_buf()
}

/// A finished process: exit code and captured output.
#[derive(Debug, Clone)]
pub struct Run {
    pub cmdline: String,
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(cmdline: String, out: Output) -> Run {
        Run {
            cmdline,
            code: out.status.code().unwrap_or(-1),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit 0 and returns self.
    #[track_caller]
    pub fn ok(self) -> Run {
        assert_eq!(
            self.code, 0,
            "`{}` failed (exit {}):\nstdout: {}\nstderr: {}",
            self.cmdline, self.code, self.stdout, self.stderr
        );
        self
    }

    /// Asserts the exit code, an empty stdout, and that stderr mentions `needle`
    /// (the contract for bad input and failed operations).
    #[track_caller]
    pub fn fails(self, code: i32, needle: &str) -> Run {
        assert_eq!(
            self.code, code,
            "`{}`: expected exit {code}, got {}\nstdout: {}\nstderr: {}",
            self.cmdline, self.code, self.stdout, self.stderr
        );
        assert!(
            self.stdout.is_empty(),
            "`{}`: stdout must stay empty on error, got {:?}",
            self.cmdline,
            self.stdout
        );
        assert!(
            self.stderr.contains(needle),
            "`{}`: stderr should mention {needle:?}: {}",
            self.cmdline,
            self.stderr
        );
        self
    }

    /// stdout as exactly one JSON object (the contract for every non-batch command).
    #[track_caller]
    pub fn json(&self) -> Value {
        let v: Value = serde_json::from_str(self.stdout.trim_end()).unwrap_or_else(|e| {
            panic!(
                "`{}`: stdout is not one JSON value ({e}): {:?}",
                self.cmdline, self.stdout
            )
        });
        assert!(v.is_object(), "`{}`: not a JSON object: {v}", self.cmdline);
        v
    }

    /// `changed` of the JSON object.
    #[track_caller]
    pub fn changed(&self) -> bool {
        self.json()["changed"]
            .as_bool()
            .unwrap_or_else(|| panic!("`{}`: no boolean `changed`", self.cmdline))
    }

    /// stdout as JSON Lines (batch mode).
    #[track_caller]
    pub fn json_lines(&self) -> Vec<Value> {
        self.stdout
            .lines()
            .map(|l| {
                serde_json::from_str(l)
                    .unwrap_or_else(|e| panic!("`{}`: bad JSON line {l:?}: {e}", self.cmdline))
            })
            .collect()
    }
}

/// Runs a program with arguments (no shell) and captures its output.
pub fn run(program: impl AsRef<std::ffi::OsStr>, args: &[&str]) -> Run {
    run_stdin(program, args, None)
}

/// Like [`run`], feeding `stdin` to the process.
pub fn run_stdin(program: impl AsRef<std::ffi::OsStr>, args: &[&str], stdin: Option<&str>) -> Run {
    let program = program.as_ref();
    let cmdline = format!("{} {}", program.to_string_lossy(), args.join(" "));
    let mut cmd = Command::new(program);
    cmd.args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    if let Some(text) = stdin {
        use std::io::Write;
        let mut pipe = child.stdin.take().expect("stdin pipe");
        pipe.write_all(text.as_bytes()).expect("writing stdin");
    }
    let out = child
        .wait_with_output()
        .unwrap_or_else(|e| panic!("waiting for `{cmdline}`: {e}"));
    Run::from_output(cmdline, out)
}

/// Runs one of our tools.
pub fn tool(name: &str, args: &[&str]) -> Run {
    run(tool_path(name), args)
}

/// Runs a shell snippet with `bash -c` (for kernel-side checks: ip, nft, ping, nc, conntrack).
pub fn sh(script: &str) -> Run {
    run("bash", &["-c", script])
}

/// `ip -j [-n NS] ARGS...` parsed.
#[track_caller]
pub fn ip_json(ns: Option<&str>, args: &[&str]) -> Value {
    let mut full = vec!["-j"];
    if let Some(ns) = ns {
        full.extend(["-n", ns]);
    }
    full.extend_from_slice(args);
    let r = run("ip", &full).ok();
    if r.stdout.trim().is_empty() {
        return Value::Array(vec![]);
    }
    serde_json::from_str(&r.stdout).unwrap_or_else(|e| panic!("ip -j output: {e}: {}", r.stdout))
}

/// `ping -c COUNT -W 2` from inside namespace `ns`; true if every reply came back.
pub fn ping(ns: &str, dest: &str, count: u32) -> bool {
    let c = count.to_string();
    run(
        "ip",
        &[
            "netns", "exec", ns, "ping", "-n", "-q", "-c", &c, "-i", "0.2", "-W", "2", dest,
        ],
    )
    .code
        == 0
}

/// Three pings from address `source` in `ns` to `dest`, all answered within `secs` seconds
/// (`ping -c 3 -i 0.2 -w SECS -I SOURCE`).
pub fn pings_from(ns: &str, source: &str, dest: &str, secs: u32) -> bool {
    let deadline = secs.to_string();
    let args = [
        "netns", "exec", ns, "ping", "-n", "-q", "-c", "3", "-i", "0.2", "-w", &deadline, "-I",
        source, dest,
    ];
    run("ip", &args).code == 0
}

/// Removes from `ip -j` output what the kernel changes by itself, a moment later, so that two
/// readings taken around a command compare equal unless the command changed something: bridge
/// timers (`*_timer`), a bridge port's STP state, the carrier-derived operational state
/// (`operstate`; the NO-CARRIER, LOWER_UP, M-DOWN and linkdown flags: link watch runs up to a
/// second after a link comes up) and the IPv6 link-local and multicast routes (fe80::, ff00::)
/// that addrconf adds when carrier appears. The administrative state (the UP flag), masters,
/// MTUs, addresses and every other route stay.
pub fn strip_volatile(v: &mut Value) {
    const DERIVED: [&str; 4] = ["NO-CARRIER", "LOWER_UP", "M-DOWN", "linkdown"];
    match v {
        Value::Object(m) => {
            m.retain(|k, _| !k.ends_with("_timer") && k != "operstate");
            if let Some(Value::Object(port)) = m.get_mut("info_slave_data") {
                port.remove("state");
            }
            if let Some(Value::Array(flags)) = m.get_mut("flags") {
                flags.retain(|f| !DERIVED.iter().any(|d| f == d));
            }
            m.values_mut().for_each(strip_volatile);
        }
        Value::Array(a) => {
            a.retain(|e| {
                let dst = e["dst"].as_str().unwrap_or("");
                !(dst.starts_with("fe80::") || dst.starts_with("ff00::"))
            });
            a.iter_mut().for_each(strip_volatile);
        }
        _ => {}
    }
}

/// Everything a command could have changed in namespace `ns` (None: the root namespace):
/// links, addresses, routes, rules (`ip -j`, with [`strip_volatile`] applied) and the nftables
/// ruleset. The machine-wide list of namespaces is not part of it (other suites change it
/// concurrently): compare [`netns_with_prefix`] for that. A namespace that does not exist
/// reads as `absent`.
pub fn snapshot(ns: Option<&str>) -> String {
    let mut out = String::new();
    for args in [
        &["-d", "link", "show"][..],
        &["addr", "show"],
        &["route", "show", "table", "all"],
        &["rule", "show"],
        &["-6", "rule", "show"],
    ] {
        let mut full = vec!["-j"];
        if let Some(ns) = ns {
            full.extend(["-n", ns]);
        }
        full.extend_from_slice(args);
        let r = run("ip", &full);
        if r.code != 0 {
            return format!("{}: absent\n", ns.unwrap_or("root namespace"));
        }
        let mut v: Value = serde_json::from_str(&r.stdout).unwrap_or(Value::Null);
        strip_volatile(&mut v);
        out.push_str(&format!("{args:?}: {v}\n"));
    }
    let nft = match ns {
        Some(ns) => run("ip", &["netns", "exec", ns, "nft", "list", "ruleset"]),
        None => run("nft", &["list", "ruleset"]),
    };
    out.push_str(&nft.stdout);
    out
}

/// `bash -c SCRIPT` inside namespace `ns` (`ip netns exec`).
pub fn nsh(ns: &str, script: &str) -> Run {
    run("ip", &["netns", "exec", ns, "bash", "-c", script])
}

/// `ip -n NS WORDS...` (split on white space), which must succeed:
/// `ip_in(&ns, "route add default via 10.0.0.1")`.
#[track_caller]
pub fn ip_in(ns: &str, words: &str) {
    let mut full = vec!["-n", ns];
    full.extend(words.split_whitespace());
    run("ip", &full).ok();
}

/// `sysctl -qw KEY=VALUE` inside namespace `ns`, which must succeed.
#[track_caller]
pub fn sysctl_in(ns: &str, kv: &str) {
    run("ip", &["netns", "exec", ns, "sysctl", "-qw", kv]).ok();
}

/// The names of the namespaces that start with `prefix` (sorted), for before/after checks.
pub fn netns_with_prefix(prefix: &str) -> Vec<String> {
    let mut names: Vec<String> = run("ip", &["netns", "list"])
        .stdout
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .filter(|n| n.starts_with(prefix))
        .map(str::to_string)
        .collect();
    names.sort();
    names
}

/// Fails the test loudly unless we are root on a kernel that can run it.
pub fn require_root() {
    // SAFETY: geteuid(2) takes no arguments, always succeeds and touches no memory of ours.
    let uid = unsafe { libc::geteuid() };
    assert_eq!(
        uid, 0,
        "these integration tests need root (they build network namespaces); run them as root"
    );
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

/// A test's own namespace/link prefix, and the cleanup of everything that carries it.
///
/// Names are short because link names must fit 15 bytes: `nx` + 3 hex digits of the pid +
/// a per-process counter, e.g. `nx3a71` — leave room for suffixes of up to ~8 bytes.
pub struct Lab {
    pub prefix: String,
}

impl Lab {
    pub fn new() -> Lab {
        require_root();
        let n = COUNTER.fetch_add(1, Ordering::SeqCst);
        let prefix = format!("{}{:03x}{n}", root_prefix(), std::process::id() & 0xfff);
        let lab = Lab { prefix };
        lab.cleanup();
        lab
    }

    /// A name carrying the prefix: `lab.name("c1")` -> `nx3a71c1`.
    pub fn name(&self, suffix: &str) -> String {
        format!("{}{suffix}", self.prefix)
    }

    /// Creates namespace `prefix+suffix` with `ip netns add` and brings its loopback up.
    pub fn netns(&self, suffix: &str) -> String {
        let name = self.name(suffix);
        run("ip", &["netns", "add", &name]).ok();
        run("ip", &["-n", &name, "link", "set", "lo", "up"]).ok();
        name
    }

    /// Removes every namespace, root-namespace link, wireguard-go or boringtun process and UAPI
    /// socket whose name starts with the prefix (and boringtun's numbered socket). Safe to call repeatedly.
    pub fn cleanup(&self) {
        cleanup_prefix(&self.prefix);
    }
}

impl Default for Lab {
    fn default() -> Self {
        Lab::new()
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        self.cleanup();
    }
}

/// Removes everything named with `prefix` (see [`Lab::cleanup`]).
pub fn cleanup_prefix(prefix: &str) {
    let p = prefix;
    let script = format!(
        r#"
        for n in $(ip netns list | awk '{{print $1}}' | grep '^{p}'); do ip netns del "$n"; done
        for l in $(ip -o link show | awk -F': ' '{{print $2}}' | cut -d@ -f1 | grep '^{p}'); do ip link del "$l"; done
        for pid in $(pgrep -f '^boringtun-cli .* {p}'); do
          n=$(tr '\0' ' ' </proc/$pid/cmdline | sed -n 's/.*--tun-fd \([0-9]*\) .*/\1/p')
          [ -n "$n" ] && rm -f /var/run/wireguard/$n.sock
        done
        pkill -9 -f '^boringtun-cli .* {p}' ; pkill -f '^wireguard-go {p}' ; sleep 0.05
        rm -f /var/run/wireguard/{p}*.sock
        for t in $(nft list tables 2>/dev/null | awk '{{print $2" "$3}}' | grep ' {p}'); do nft delete table $t; done
        true
        "#
    );
    let _ = sh(&script);
}

/// The processes serving userspace interface `name`: `wireguard-go NAME`, `boringtun-cli ..
/// NAME`, and the wgd listening on its UAPI socket (wgd serves every interface and names none
/// on its command line).
pub fn userspace_pids(name: &str) -> Vec<String> {
    let pattern = format!("^(wireguard-go|boringtun-cli .*) {name}$");
    let mut pids: Vec<String> = run("pgrep", &["-f", &pattern])
        .stdout
        .lines()
        .map(str::to_string)
        .collect();
    pids.extend(uapi_server(name).filter(|pid| {
        std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim() == "wgd")
    }));
    pids
}

/// How many userspace interfaces whose names start with `prefix` are served now (a live UAPI
/// socket: a process per interface for wireguard-go and boringtun, one wgd for all).
pub fn userspace_served(prefix: &str) -> usize {
    let Ok(dir) = std::fs::read_dir("/var/run/wireguard") else {
        return 0;
    };
    dir.filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter_map(|f| f.strip_suffix(".sock").map(str::to_string))
        .filter(|name| name.starts_with(prefix) && uapi_server(name).is_some())
        .count()
}

/// What identifies the userspace tunnel `name` is: its process(es) and its UAPI socket's
/// inode. Made anew (a new process, or wgd's new socket), it differs; empty once it is gone.
pub fn userspace_identity(name: &str) -> String {
    use std::os::unix::fs::MetadataExt;
    let inode = std::fs::metadata(format!("/var/run/wireguard/{name}.sock"))
        .map(|m| m.ino().to_string())
        .unwrap_or_default();
    let pids = userspace_pids(name);
    if pids.is_empty() {
        return String::new();
    }
    format!("{} {inode}", pids.join(","))
}

/// Makes userspace interface `name` fail as a crash of what serves it would: its own process
/// (wireguard-go, boringtun) gets `signal`, and the test waits until it is gone. wgd serves
/// every interface, and a crash of it is every tunnel's (wgd's own suite kills it): for one
/// interface alone, wgd is made to close it, which leaves what a crashed wireguard-go leaves
/// to the hub (no link, no live UAPI socket).
#[track_caller]
pub fn crash_userspace(name: &str, signal: &str) {
    let server = uapi_server(name);
    let comm = server
        .as_ref()
        .and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/comm")).ok());
    if comm.as_deref().map(str::trim) == Some("wgd") {
        let mut s = std::os::unix::net::UnixStream::connect("/run/niransix/wgd.sock").unwrap();
        use std::io::{Read, Write};
        s.write_all(format!("del {name}\n").as_bytes()).unwrap();
        let mut reply = String::new();
        s.read_to_string(&mut reply).unwrap();
        assert_eq!(reply.trim(), "ok 1", "wgd closing {name}");
        return;
    }
    kill_and_wait(signal, &format!("^(wireguard-go|boringtun-cli .*) {name}$"));
}

/// The process listening on userspace interface `name`'s UAPI socket (its credentials, as
/// the kernel gives them to whoever connects).
pub fn uapi_server(name: &str) -> Option<String> {
    use std::os::fd::AsRawFd;
    let stream =
        std::os::unix::net::UnixStream::connect(format!("/var/run/wireguard/{name}.sock")).ok()?;
    let mut cred = libc::ucred {
        pid: 0,
        uid: 0,
        gid: 0,
    };
    let mut len = std::mem::size_of::<libc::ucred>() as libc::socklen_t;
    // SAFETY: SO_PEERCRED writes one ucred of `len` bytes into `cred`, alive across the call.
    let r = unsafe {
        libc::getsockopt(
            stream.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_PEERCRED,
            (&mut cred as *mut libc::ucred).cast(),
            &mut len,
        )
    };
    (r == 0 && cred.pid > 0).then(|| cred.pid.to_string())
}

// ---- waiting for the kernel and for processes ----

/// How often the waiting helpers look again.
const POLL_INTERVAL: Duration = Duration::from_millis(50);

/// Looks at `condition` until it holds or `within` passed; whether it held. For a test that
/// asserts with its own message after the wait, or goes on either way.
pub fn poll_until(within: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + within;
    loop {
        if condition() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Waits until `condition` holds (a socket bound, a process gone, a lock taken) instead of
/// sleeping and assuming it does; panics naming `what` if it still does not after `within`.
#[track_caller]
pub fn wait_until(what: &str, within: Duration, condition: impl FnMut() -> bool) {
    assert!(
        poll_until(within, condition),
        "timed out after {within:?} waiting until {what}"
    );
}

/// Reads `read` until two readings `gap` apart agree, and returns that reading: the kernel's
/// own asynchronous updates (linkwatch, addrconf, bridge ports) are over. Panics naming `what`
/// if it is still moving after `within` (two readings are always compared: a reading slower
/// than `within`, as under emulation on a busy machine, is no sign of movement).
#[track_caller]
pub fn wait_stable<T: PartialEq + std::fmt::Debug>(
    what: &str,
    within: Duration,
    gap: Duration,
    mut read: impl FnMut() -> T,
) -> T {
    let deadline = Instant::now() + within;
    let mut last = read();
    loop {
        std::thread::sleep(gap);
        let now = read();
        if now == last {
            return now;
        }
        if Instant::now() >= deadline {
            panic!("{what} never settled within {within:?}: {now:?}");
        }
        last = now;
    }
}

/// Whether a socket of `proto` (`-t` TCP listening, `-u` UDP bound) in namespace `ns` has local
/// port `port`, as `ss` shows it.
fn has_socket(ns: &str, proto: &str, port: u16) -> bool {
    let filter = format!("sport = :{port}");
    let r = run("ip", &["netns", "exec", ns, "ss", "-Hln", proto, &filter]);
    r.code == 0 && !r.stdout.trim().is_empty()
}

/// Whether a UDP socket in namespace `ns` is bound to local port `port` (`ss -lun`).
pub fn udp_bound(ns: &str, port: u16) -> bool {
    has_socket(ns, "-u", port)
}

/// Whether a TCP socket in namespace `ns` listens on local port `port` (`ss -ltn`).
pub fn tcp_listening(ns: &str, port: u16) -> bool {
    has_socket(ns, "-t", port)
}

/// `pkill -SIGNAL -f PATTERN`, which must signal at least one process, then waits (up to 10 s)
/// until no process matching PATTERN is left.
#[track_caller]
pub fn kill_and_wait(signal: &str, pattern: &str) {
    run("pkill", &[&format!("-{signal}"), "-f", pattern]).ok();
    wait_until(
        &format!("no process matches {pattern:?} after SIG{signal}"),
        Duration::from_secs(10),
        || run("pgrep", &["-f", pattern]).code == 1,
    );
}

/// `wg show IFACE WHAT` inside namespace `ns`, which must succeed, trimmed.
#[track_caller]
pub fn wg_show(ns: &str, iface: &str, what: &str) -> String {
    run("ip", &["netns", "exec", ns, "wg", "show", iface, what])
        .ok()
        .stdout
        .trim()
        .to_string()
}

// ---- a hub under test ----

/// The path of one of the scripts under niransix-sh/ (`hub`, `client`).
pub fn script(name: &str) -> String {
    repo_root()
        .join("niransix-sh")
        .join(name)
        .to_string_lossy()
        .into_owned()
}

/// The names of the peers a hub's JSON lists under `peers` (`status`, `peer add`, `check`,
/// `up`), in its order.
#[track_caller]
pub fn peer_names(v: &Value) -> Vec<String> {
    v["peers"]
        .as_array()
        .unwrap_or_else(|| panic!("no peers list: {v}"))
        .iter()
        .map(|p| p["name"].as_str().expect("peer name").to_string())
        .collect()
}

/// One niransix-sh/hub under test on a [`Lab`] of its own: its center namespace (`HUB_NS`) and
/// every object (`HUB_PREFIX`) carry the Lab's prefix, so it never touches the host's own network
/// and the Lab removes whatever a failure leaves; its state directory (`HUB_STATE_DIR`) is in the
/// temporary directory. It runs in the mode `NIRANSIX_HUB_MODE` names ([`hub_mode`]) unless
/// built [`without_mode`](HubLab::without_mode). On drop: `hub down` with the same settings,
/// the state directory and every scratch file or directory a test keeps beside it
/// (`STATE.something`, [`Path::with_extension`](std::path::Path::with_extension)), then the Lab.
///
/// ```ignore
/// let hub = HubLab::new().with_env(&["HUB_JOBS=1"]);
/// hub.hub(&["-q", "up"]).ok();
/// hub.add("c1", &[]);
/// hub.assert_healthy("after c1");
/// ```
pub struct HubLab {
    /// The center's namespace, `<prefix>hub`.
    pub ns: String,
    pub state: PathBuf,
    /// Whether the hub runs with HUB_MODE=zones (else netns).
    pub zones: bool,
    /// HUB_MODE given to every command (None: left to the hub's default).
    mode: Option<&'static str>,
    /// More settings (`KEY=VALUE`) for every command of this hub, `down` on drop included.
    settings: Vec<String>,
    /// Whether the IPv6 underlay bridge is there, and how many clients joined it so far.
    underlay: bool,
    clients: u32,
    pub lab: Lab,
}

impl HubLab {
    /// A hub not yet up (run `hub up` for that), after checking that the tools are built.
    pub fn new() -> HubLab {
        for t in ["nsctl", "wgctl", "natctl", "routectl"] {
            tool_path(t);
        }
        let lab = Lab::new();
        let state = std::env::temp_dir().join(format!("{}-hubstate", lab.prefix));
        let _ = std::fs::remove_dir_all(&state);
        let mode = hub_mode();
        HubLab {
            ns: lab.name("hub"),
            state,
            zones: mode == "zones",
            mode: Some(mode),
            settings: Vec::new(),
            underlay: false,
            clients: 0,
            lab,
        }
    }

    /// Adds settings (`KEY=VALUE`, e.g. `HUB_CIDR6=fd64::/64`) to every command of this hub.
    pub fn with_env(mut self, settings: &[&str]) -> HubLab {
        self.settings.extend(settings.iter().map(|s| s.to_string()));
        self
    }

    /// Leaves HUB_MODE out of the environment, as a caller that does not set it (the ansible
    /// playbook) runs the hub: the hub's default, netns.
    pub fn without_mode(mut self) -> HubLab {
        self.mode = None;
        self.zones = false;
        self
    }

    /// This hub's environment, `KEY=VALUE` each: namespace, prefix, state directory, the tools'
    /// directory, the mode and the settings added.
    pub fn environment(&self) -> Vec<String> {
        let mut env = vec![
            format!("HUB_NS={}", self.ns),
            format!("HUB_PREFIX={}", self.lab.prefix),
            format!("HUB_STATE_DIR={}", self.state.display()),
            format!("NIRANSIX_BIN_DIR={}", bin_dir().display()),
        ];
        env.extend(self.mode.map(|m| format!("HUB_MODE={m}")));
        env.extend(self.settings.iter().cloned());
        env
    }

    /// `hub ARGS...` with this hub's environment.
    pub fn hub(&self, args: &[&str]) -> Run {
        self.hub_full(&[], args, None)
    }

    /// `hub ARGS...` with `extra` settings on top of this hub's (later ones win).
    pub fn hub_env(&self, extra: &[&str], args: &[&str]) -> Run {
        self.hub_full(extra, args, None)
    }

    /// `hub ARGS...` reading `stdin` (e.g. `sync -`).
    pub fn hub_stdin(&self, args: &[&str], stdin: &str) -> Run {
        self.hub_full(&[], args, Some(stdin))
    }

    /// `hub ARGS...` with `extra` settings, reading `stdin` if given (through `env`).
    pub fn hub_full(&self, extra: &[&str], args: &[&str], stdin: Option<&str>) -> Run {
        let mut all = self.environment();
        all.extend(extra.iter().map(|s| s.to_string()));
        all.push(script("hub"));
        all.extend(args.iter().map(|s| s.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        run_stdin("env", &refs, stdin)
    }

    /// `hub ARGS...` with this hub's environment, not yet started (to run in the background or
    /// kill at a chosen moment).
    pub fn command(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(script("hub"));
        for kv in self.environment() {
            let (k, v) = kv.split_once('=').expect("KEY=VALUE");
            cmd.env(k, v);
        }
        cmd.args(args);
        cmd
    }

    /// `hub peer add NAME OPTIONS...`, which must succeed and create it.
    #[track_caller]
    pub fn add(&self, name: &str, options: &[&str]) {
        let mut args = vec!["-q", "peer", "add", name];
        args.extend_from_slice(options);
        let r = self.hub(&args).ok();
        assert!(r.changed(), "peer add {name}: {}", r.stdout);
    }

    /// `hub peer conf NAME`'s text, which must succeed.
    #[track_caller]
    pub fn conf(&self, name: &str) -> String {
        self.hub(&["peer", "conf", name]).ok().stdout
    }

    /// `hub export` (`--secrets` if SECRETS), which must succeed: the peer set, JSON Lines.
    #[track_caller]
    pub fn export(&self, secrets: bool) -> String {
        let args: &[&str] = if secrets {
            &["export", "--secrets"]
        } else {
            &["export"]
        };
        self.hub(args).ok().stdout
    }

    /// `hub status`, which must succeed.
    #[track_caller]
    pub fn status(&self) -> Value {
        self.hub(&["-q", "status"]).ok().json()
    }

    /// Peer `name`'s entry in `hub status`.
    #[track_caller]
    pub fn peer_status(&self, name: &str) -> Value {
        let status = self.status();
        status["peers"]
            .as_array()
            .expect("status: peers")
            .iter()
            .find(|p| p["name"] == name)
            .unwrap_or_else(|| panic!("peer {name} not in hub status: {status}"))
            .clone()
    }

    /// `hub check`: its JSON, and whether it exited 0 (healthy) or 1 (not); anything else fails.
    #[track_caller]
    pub fn check(&self) -> (Value, bool) {
        let r = self.hub(&["-q", "check"]);
        assert!(
            r.code == 0 || r.code == 1,
            "hub check: exit {}: {}",
            r.code,
            r.stderr
        );
        let v = r.json();
        assert_eq!(
            v["healthy"],
            r.code == 0,
            "exit status and healthy agree: {v}"
        );
        (v, r.code == 0)
    }

    /// `hub check` says healthy (`what` names the moment, for the message).
    #[track_caller]
    pub fn assert_healthy(&self, what: &str) {
        let (check, healthy) = self.check();
        assert!(healthy, "{what}: {check}");
    }

    /// The namespace peer `name`'s tunnel ends in: its own, or (zones) the center's.
    pub fn peer_ns(&self, name: &str) -> String {
        if self.zones {
            self.ns.clone()
        } else {
            self.lab.name(name)
        }
    }

    /// Peer `name`'s WireGuard interface on the hub side.
    pub fn peer_wg(&self, name: &str) -> String {
        self.lab.name(&format!("{name}-wg"))
    }

    /// `wg show <peer's interface> WHAT` on the hub side.
    #[track_caller]
    pub fn hub_wg(&self, name: &str, what: &str) -> String {
        wg_show(&self.peer_ns(name), &self.peer_wg(name), what)
    }

    /// `wgctl show` of the peer's interface on the hub side: what `wg show` cannot tell of a
    /// boringtun interface (its public key, its peers' handshake times; docs/wgctl.md).
    #[track_caller]
    pub fn hub_wgctl_show(&self, name: &str) -> serde_json::Value {
        let args = ["--ns", &self.peer_ns(name), "show", &self.peer_wg(name)];
        tool("wgctl", &args).ok().json()["interfaces"][0].clone()
    }

    /// The pid(s) of the userspace WireGuard process (wireguard-go, boringtun or wgd) serving
    /// the peer's interface on the hub side, one a line.
    pub fn hub_wg_pids(&self, name: &str) -> String {
        userspace_pids(&self.peer_wg(name))
            .iter()
            .map(|p| format!("{p}\n"))
            .collect()
    }

    /// The namespace of the client [`underlay_client`](HubLab::underlay_client) made for `tag`.
    pub fn client_ns(&self, tag: &str) -> String {
        self.lab.name(&format!("k{tag}"))
    }

    /// The IPv6 underlay, once: a bridge `ul` in the center holding 2001:db8::10 (what
    /// `peer conf` names as the endpoint). Its MAC is fixed: a bridge without one takes the
    /// lowest of its ports', so a client joining later could change it under the clients
    /// already up (their neighbour entry for 2001:db8::10 then points nowhere for seconds).
    pub fn underlay(&mut self) {
        if self.underlay {
            return;
        }
        let ns = &self.ns;
        sh(&format!(
            "set -e; ip -n {ns} link add ul address 02:00:5e:10:00:10 type bridge; \
             ip -n {ns} link set ul up; ip -n {ns} addr add 2001:db8::10/64 dev ul nodad"
        ))
        .ok();
        self.underlay = true;
    }

    /// A client namespace `<prefix>k<tag>` on the underlay (made first if need be), joined by a
    /// veth `<prefix>u<tag>` (on the bridge) / `<prefix>e<tag>` (in the client) and holding
    /// 2001:db8::2N, N counting the clients of this hub from 1; nothing else in it yet.
    pub fn underlay_client(&mut self, tag: &str) -> String {
        self.underlay();
        self.clients += 1;
        let cns = self.lab.netns(&format!("k{tag}"));
        let (ns, p) = (&self.ns, &self.lab.prefix);
        sh(&format!(
            "set -e; ip link add {p}u{tag} netns {ns} type veth peer name {p}e{tag} netns {cns}; \
             ip -n {ns} link set {p}u{tag} master ul up; \
             ip -n {cns} addr add 2001:db8::{:x}/64 dev {p}e{tag} nodad; \
             ip -n {cns} link set {p}e{tag} up",
            0x20 + self.clients
        ))
        .ok();
        cns
    }

    /// The underlay again, once the center's namespace (which held it) was deleted: the
    /// namespace, the bridge, and each client's veth joined again with the address it had.
    pub fn underlay_again(&mut self) {
        if !self.underlay {
            return;
        }
        self.underlay = false;
        sh(&format!("ip netns add {}", self.ns)).ok();
        self.underlay();
        let (ns, p) = (&self.ns, &self.lab.prefix);
        for cns in netns_with_prefix(&format!("{p}k")) {
            let tag = cns.trim_start_matches(&format!("{p}k")).to_string();
            let addr = ip_json(Some(&cns), &["-6", "addr", "show", "scope", "global"])[0]
                ["addr_info"][0]["local"]
                .as_str()
                .expect("the client's underlay address")
                .to_string();
            sh(&format!(
                "ip -n {cns} link del {p}e{tag}; \
                 ip link add {p}u{tag} netns {ns} type veth peer name {p}e{tag} netns {cns}; \
                 ip -n {ns} link set {p}u{tag} master ul up; \
                 ip -n {cns} addr add {addr}/64 dev {p}e{tag} nodad; ip -n {cns} link set {p}e{tag} up"
            ))
            .ok();
        }
    }

    /// The WireGuard interfaces and peers carrying the prefix (`wg show all dump`, which lists
    /// every userspace interface whatever its namespace; without private keys, handshakes and
    /// counters, which keepalives move) and the wireguard-go or boringtun processes, a line each.
    pub fn tunnels(&self) -> String {
        let p = &self.lab.prefix;
        let wg = sh(&format!(
            "wg show all dump | grep '^{p}' | sort | \
             awk -F'\\t' 'NF == 5 {{ print $1, $3, $4, $5 }} NF == 9 {{ print $1, $2, $3, $4, $5, $9 }}'"
        ))
        .stdout;
        let served_by_wgd: String = sh(&format!(
            "ls /var/run/wireguard/ | grep '^{p}.*\\.sock$' | sort"
        ))
        .stdout
        .lines()
        .filter_map(|s| s.strip_suffix(".sock"))
        .filter(|name| {
            userspace_pids(name).iter().any(|pid| {
                std::fs::read_to_string(format!("/proc/{pid}/comm"))
                    .is_ok_and(|c| c.trim() == "wgd")
            })
        })
        .map(|name| format!("wgd {name}\n"))
        .collect();
        wg + &sh(&format!(
            "pgrep -a '^(wireguard-go|boringtun-cli)$' | grep ' {p}' | sort"
        ))
        .stdout
            + &served_by_wgd
    }

    /// `tests/leakcheck.sh PREFIX`: leftovers carrying this hub's prefix (namespaces, links,
    /// wireguard-go, sockets) fail it.
    pub fn leaks(&self) -> Run {
        run(
            repo_root().join("tests/leakcheck.sh").as_os_str(),
            &[&self.lab.prefix],
        )
    }
}

impl Default for HubLab {
    fn default() -> Self {
        HubLab::new()
    }
}

impl Drop for HubLab {
    /// `down`, then the state directory and every scratch file a test keeps beside it
    /// (`STATE.something`), also when the test failed; then the Lab's cleanup.
    fn drop(&mut self) {
        let _ = self.hub(&["-q", "down"]);
        let _ = std::fs::remove_dir_all(&self.state);
        let (Some(dir), Some(name)) = (self.state.parent(), self.state.file_name()) else {
            return;
        };
        let siblings = format!("{}.", name.to_string_lossy());
        for e in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if e.file_name().to_string_lossy().starts_with(&siblings) {
                let path = e.path();
                let _ = std::fs::remove_dir_all(&path).or_else(|_| std::fs::remove_file(&path));
            }
        }
    }
}

/// `ansible-playbook` with a directory of its own for its configuration, home and temporary
/// files (no ansible.cfg of the machine or the working directory applies; pipelining on, as
/// examples/ansible/ansible.cfg has it), removed on drop.
pub struct Ansible {
    pub dir: PathBuf,
}

/// One host's line of a PLAY RECAP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Recap {
    pub ok: u32,
    pub changed: u32,
    pub failed: u32,
}

impl Ansible {
    /// A runner whose files live in DIR (made anew). None, said loudly with [`skip`], when
    /// ansible-playbook is not installed.
    pub fn new(dir: PathBuf, test: &str) -> Option<Ansible> {
        if run("ansible-playbook", &["--version"]).code != 0 {
            skip(
                test,
                "ansible-playbook is not installed (apt-get install ansible-core)",
            );
            return None;
        }
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("Ansible's directory");
        std::fs::write(
            dir.join("ansible.cfg"),
            "[defaults]\nforks = 20\n[connection]\npipelining = True\n",
        )
        .expect("ansible.cfg");
        Some(Ansible { dir })
    }

    /// `ansible-playbook -i INVENTORY examples/ansible/PLAYBOOK -e VARS ARGS...`: the run, which
    /// must reach its PLAY RECAP without a failed host; returns the output and each host's recap.
    #[track_caller]
    pub fn playbook(
        &self,
        inventory: &std::path::Path,
        playbook: &str,
        vars: &Value,
        args: &[&str],
    ) -> (Run, BTreeMap<String, Recap>) {
        let r = self.playbook_may_fail(inventory, playbook, vars, args);
        let recap = Self::recap(&r);
        assert!(
            !recap.is_empty() && recap.values().all(|h| h.failed == 0),
            "ansible-playbook {playbook} {args:?} failed: {recap:?}\n{}\n{}",
            r.stdout,
            r.stderr
        );
        (r, recap)
    }

    /// The same run, whatever its outcome.
    pub fn playbook_may_fail(
        &self,
        inventory: &std::path::Path,
        playbook: &str,
        vars: &Value,
        args: &[&str],
    ) -> Run {
        let dir = |sub: &str| self.dir.join(sub).display().to_string();
        let mut all = vec![
            format!("ANSIBLE_CONFIG={}", dir("ansible.cfg")),
            format!("ANSIBLE_HOME={}", dir("home")),
            format!("ANSIBLE_LOCAL_TEMP={}", dir("local-tmp")),
            format!("ANSIBLE_REMOTE_TEMP={}", dir("remote-tmp")),
            "ANSIBLE_NOCOLOR=1".into(),
            "ANSIBLE_STDOUT_CALLBACK=default".into(),
            "ANSIBLE_RETRY_FILES_ENABLED=False".into(),
            "ANSIBLE_LOCALHOST_WARNING=False".into(),
            "ANSIBLE_INVENTORY_UNPARSED_WARNING=False".into(),
            "ansible-playbook".into(),
            "-i".into(),
            inventory.display().to_string(),
            repo_root()
                .join("examples/ansible")
                .join(playbook)
                .display()
                .to_string(),
            "-e".into(),
            vars.to_string(),
        ];
        all.extend(args.iter().map(|a| a.to_string()));
        let refs: Vec<&str> = all.iter().map(String::as_str).collect();
        let started = Instant::now();
        let r = run("env", &refs);
        eprintln!(
            "ansible-playbook {playbook} {}: {:.1} s",
            args.join(" "),
            started.elapsed().as_secs_f64()
        );
        r
    }

    /// Each host's counts in a run's PLAY RECAP.
    pub fn recap(r: &Run) -> BTreeMap<String, Recap> {
        let tail = r.stdout.rsplit("PLAY RECAP").next().unwrap_or("");
        let count = |line: &str, key: &str| -> u32 {
            line.split(&format!("{key}="))
                .nth(1)
                .and_then(|s| s.split_whitespace().next())
                .and_then(|n| n.parse().ok())
                .unwrap_or(0)
        };
        tail.lines()
            .filter(|l| l.contains(" : ok="))
            .filter_map(|l| {
                let host = l.split_whitespace().next()?.to_string();
                Some((
                    host,
                    Recap {
                        ok: count(l, "ok"),
                        changed: count(l, "changed"),
                        failed: count(l, "failed") + count(l, "unreachable"),
                    },
                ))
            })
            .collect()
    }
}

impl Drop for Ansible {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A device namespace `<lab prefix>d<TAG>` on the bridge `br0` of namespace UL (an underlay), at
/// `NET.(10+TAG)/24` on its `eth0` (veth `<prefix>v<TAG>` on the bridge).
pub fn underlay_device(lab: &Lab, ul: &str, net: &str, tag: u8) -> String {
    let d = lab.netns(&format!("d{tag}"));
    let p = &lab.prefix;
    sh(&format!(
        "set -e; ip link add {p}v{tag} netns {ul} type veth peer name eth0 netns {d}; \
         ip -n {ul} link set {p}v{tag} master br0 up; \
         ip -n {d} addr add {net}.{}/24 dev eth0; ip -n {d} link set eth0 up",
        10 + tag
    ))
    .ok();
    d
}

/// The real client in device namespace D: `wg-quick up` (wireguard-go) with CONF, unedited,
/// written to DIR as `<lab prefix>w<TAG>.conf` (0600): its interface carries the prefix, so that
/// the Lab's cleanup ends its wireguard-go.
pub fn wg_quick_up(lab: &Lab, dir: &std::path::Path, d: &str, tag: u8, conf: &str) {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(format!("{}w{tag}.conf", lab.prefix));
    std::fs::write(&path, conf).expect("the client config");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let path = path.to_string_lossy();
    let env = "WG_QUICK_USERSPACE_IMPLEMENTATION=wireguard-go";
    run(
        "ip",
        &["netns", "exec", d, "env", env, "wg-quick", "up", &path],
    )
    .ok();
}

/// Every key in a peer set as `hub export --secrets` prints it (private, client private and
/// preshared keys).
pub fn secrets_of(set: &str) -> Vec<String> {
    set.lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .flat_map(|v| {
            ["private_key", "client_private_key", "preshared_key"]
                .into_iter()
                .filter_map(move |k| v[k].as_str().map(str::to_string))
        })
        .collect()
}
