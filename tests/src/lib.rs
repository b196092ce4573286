//! Test kit for the integration tests: runs our binaries, reads the kernel's own view
//! (`ip -j`, `nft`, `wg`, `conntrack`) and owns a per-test prefix for every namespace, link
//! and WireGuard interface it makes, removing all of them when dropped, even on panic.
//!
//! Every name a test creates starts with [`ROOT_PREFIX`], so `leakcheck.sh` can prove after the
//! suite that nothing was left behind.

use std::path::PathBuf;
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};

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

    /// Removes every namespace, root-namespace link, wireguard-go process and UAPI socket
    /// whose name starts with the prefix. Safe to call repeatedly.
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
        pkill -f '^wireguard-go {p}' ; sleep 0.05
        rm -f /var/run/wireguard/{p}*.sock
        for t in $(nft list tables 2>/dev/null | awk '{{print $2" "$3}}' | grep ' {p}'); do nft delete table $t; done
        true
        "#
    );
    let _ = sh(&script);
}
