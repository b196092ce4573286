//! What every tool shares (common/): a batch refuses a line it cannot run and text that is not
//! UTF-8 before any line runs; a FIFO, directory or device given as a namespace or key file is
//! exit 2 at once (never a hang, `--check` or not); and run without root, the key commands work
//! while the others say plainly that they need root.
//!
//! Build the tools first: `cargo build -p nsctl -p wgctl -p natctl -p routectl &&
//! cargo test -p niransix-tests --test cli`.

use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use niransix_tests::*;

/// How long a command that must fail at once may take before the test calls it a hang.
const AT_ONCE: Duration = Duration::from_secs(5);

/// The uid/gid of `nobody`, for the unprivileged runs.
const NOBODY: &str = "65534";

/// A per-test directory for FIFOs, batch and key files (open to `nobody`), removed on drop.
struct Scratch {
    dir: PathBuf,
}

impl Scratch {
    fn new(lab: &Lab) -> Scratch {
        let dir = std::env::temp_dir().join(format!("{}-cli", lab.prefix));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        Scratch { dir }
    }

    fn path(&self, name: &str) -> String {
        self.dir.join(name).to_str().unwrap().to_string()
    }

    /// A FIFO made with `mkfifo`: opening it for reading blocks until a writer comes.
    fn fifo(&self, name: &str) -> String {
        let p = self.path(name);
        run("mkfifo", &["-m", "600", &p]).ok();
        p
    }

    fn subdir(&self, name: &str) -> String {
        let p = self.path(name);
        std::fs::create_dir(&p).unwrap();
        p
    }

    fn write(&self, name: &str, content: &[u8]) -> String {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
    }

    /// A FIFO, a directory and a character device: what must never be taken for a file.
    fn not_files(&self) -> [String; 3] {
        [
            self.fifo("fifo"),
            self.subdir("dir"),
            "/dev/null".to_string(),
        ]
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Runs one of our tools and requires it to have exited within [`AT_ONCE`]: a child still
/// running then is killed and the test fails, so a regression that hangs cannot hang the suite.
#[track_caller]
fn at_once(name: &str, args: &[&str]) -> Run {
    let program = tool_path(name);
    let cmdline = format!("{} {}", program.display(), args.join(" "));
    let mut child = Command::new(&program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start `{cmdline}`: {e}"));
    let started = Instant::now();
    while child.try_wait().unwrap().is_none() {
        if started.elapsed() > AT_ONCE {
            let _ = child.kill();
            let _ = child.wait();
            panic!("`{cmdline}` still ran after {AT_ONCE:?}: it hangs");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let out = child.wait_with_output().unwrap();
    Run {
        cmdline,
        code: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// Runs one of our tools as `nobody` (no capabilities, no supplementary groups).
fn as_nobody(name: &str, args: &[&str], stdin: Option<&str>) -> Run {
    let program = tool_path(name);
    let mut full = vec![
        "--reuid",
        NOBODY,
        "--regid",
        NOBODY,
        "--clear-groups",
        "--",
        program.to_str().unwrap(),
    ];
    full.extend_from_slice(args);
    run_stdin("setpriv", &full, stdin)
}

/// Root-namespace links carrying the lab's prefix, and the lab's namespaces: what a refused
/// command must not have created.
fn lab_objects(lab: &Lab) -> String {
    let links = sh(&format!("ip -o link show | grep ': {}' ; true", lab.prefix)).stdout;
    format!(
        "links: {links}\nnetns: {:?}",
        netns_with_prefix(&lab.prefix)
    )
}

/// True if `s` is 32 bytes of base64 (a WireGuard key), as `wg pubkey` reads it.
fn is_key(s: &str) -> bool {
    run_stdin("wg", &["pubkey"], Some(s)).code == 0 && s.trim().len() == 44
}

/// `nsctl exec` replaces the process, so in a batch it would silently drop the lines after it:
/// such a batch is exit 2, naming the line, before line 1 runs.
#[test]
fn exec_in_a_batch_is_refused_before_any_line_runs() {
    let lab = Lab::new();
    let files = Scratch::new(&lab);
    let (a, b) = (lab.name("a"), lab.name("b"));
    let before = lab_objects(&lab);
    let batch = files.write(
        "exec.batch",
        format!("netns add {a}\n# the namespace exists by now\nexec {a} -- true\nnetns add {b}\n")
            .as_bytes(),
    );
    let r = at_once("nsctl", &["-b", &batch]).fails(2, "batch line 3");
    assert!(
        r.stderr.contains(&format!("exec {a} -- true")),
        "{}",
        r.stderr
    );
    assert!(r.stderr.contains("cannot run in a batch"), "{}", r.stderr);

    // From stdin, and as the only line, the same.
    let piped = run_stdin(
        tool_path("nsctl"),
        &["-b", "-"],
        Some(&format!("exec {a} -- true\n")),
    );
    piped.fails(2, "batch line 1");
    assert_eq!(
        lab_objects(&lab),
        before,
        "a refused batch changed something"
    );
}

/// Exit 2 promises that nothing changed. A batch line whose input turns out invalid only as it
/// runs (a key read from stdin, a value checked by the command itself), after an earlier line
/// changed something, is exit 1 naming its line and saying so; before any change it stays exit 2.
#[test]
fn a_batch_line_failing_after_a_change_is_exit_1() {
    let lab = Lab::new();
    let files = Scratch::new(&lab);
    // wgctl: genkey --out F writes F, then pubkey reads a stdin that is no key
    let key = files.path("k");
    let batch = files.write(
        "keys.batch",
        format!("genkey --out {key}\npubkey\n").as_bytes(),
    );
    let r = run_stdin(tool_path("wgctl"), &["-b", &batch], Some("notakey\n"));
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("batch line 2"), "{}", r.stderr);
    assert!(
        r.stderr.contains("after line 1 had changed something"),
        "{}",
        r.stderr
    );
    assert!(std::path::Path::new(&key).exists(), "line 1 wrote its file");
    // nothing changed before it: still exit 2
    let batch = files.write("pubkey.batch", b"pubkey\n");
    run_stdin(tool_path("wgctl"), &["-b", &batch], Some("notakey\n")).fails(2, "batch line 1");
    // natctl: a masquerade made, then a connmark whose --set 0 the command itself refuses
    let ns = lab.netns("nat");
    let batch = files.write(
        "nat.batch",
        b"masquerade --oif x0\nconnmark --iif x0 --set 0\n",
    );
    let r = at_once("natctl", &["--ns", &ns, "-b", &batch]);
    assert_eq!(r.code, 1, "{}", r.stderr);
    assert!(r.stderr.contains("batch line 2"), "{}", r.stderr);
    let nft = sh(&format!("ip netns exec {ns} nft list ruleset"))
        .ok()
        .stdout;
    assert!(nft.contains("masquerade"), "line 1 ran: {nft}");
}

/// A batch file holding bytes that are not UTF-8 (0xff 0xfe) is invalid input: exit 2 naming
/// the file and the line, and the valid line before it never runs.
#[test]
fn batch_that_is_not_utf8_is_refused_before_any_line_runs() {
    let lab = Lab::new();
    let files = Scratch::new(&lab);
    let (a, b) = (lab.name("a"), lab.name("b"));
    let before = lab_objects(&lab);
    let mut text = format!("netns add {a}\nnetns add {b}").into_bytes();
    text.extend_from_slice(&[0xff, 0xfe, b'\n']);
    let batch = files.write("latin.batch", &text);
    let r = at_once("nsctl", &["-b", &batch]).fails(2, &batch);
    assert!(r.stderr.contains("line 2"), "{}", r.stderr);
    assert!(r.stderr.contains("UTF-8"), "{}", r.stderr);
    assert!(
        netns_with_prefix(&a).is_empty(),
        "line 1 (netns add {a}) ran"
    );
    assert_eq!(lab_objects(&lab), before);
}

/// `--ns PATH` (every tool) and `--into-ns PATH` (wgctl) naming a FIFO, a directory or a device:
/// exit 2 at once, naming the path, with and without `--check`, even as the last line of a batch
/// (reported before its first line runs); nothing created, the FIFO untouched.
#[test]
fn fifo_directory_or_device_as_namespace_exits_2_at_once() {
    let lab = Lab::new();
    let files = Scratch::new(&lab);
    let center = lab.netns("c");
    let key = files.write("key", b"");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::write(&key, run("wg", &["genkey"]).ok().stdout).unwrap();
    let (br, w) = (lab.name("br"), lab.name("w"));
    let before = lab_objects(&lab);
    let center_before = snapshot(Some(&center));

    for path in files.not_files() {
        let ns = ["--ns", path.as_str()];
        let commands: [(&str, Vec<&str>); 5] = [
            ("nsctl", [&ns[..], &["bridge", "add", &br]].concat()),
            ("nsctl", [&ns[..], &["link", "list"]].concat()),
            (
                "natctl",
                [&ns[..], &["masquerade", "--oif", "eth0"]].concat(),
            ),
            ("routectl", [&ns[..], &["rule", "list"]].concat()),
            ("wgctl", [&ns[..], &["show"]].concat()),
        ];
        for (name, args) in &commands {
            at_once(name, args).fails(2, &path);
            at_once(name, &[&["--check"], &args[..]].concat()).fails(2, &path);
        }
        let add = [
            "--ns",
            &center,
            "iface",
            "add",
            &w,
            "--private-key",
            &key,
            "--into-ns",
            &path,
        ];
        at_once("wgctl", &add).fails(2, &path);
        at_once("wgctl", &[&add[..], &["--check"]].concat()).fails(2, &path);
        at_once(
            "wgctl",
            &["--ns", &center, "iface", "del", &w, "--into-ns", &path],
        )
        .fails(2, &path);

        let batch = files.write(
            "ns.batch",
            format!("link list\nbridge add {br}\n--ns {path} link list\n").as_bytes(),
        );
        at_once("nsctl", &["-b", &batch]).fails(2, &path);
    }
    assert_eq!(
        lab_objects(&lab),
        before,
        "a refused command created something"
    );
    assert_eq!(snapshot(Some(&center)), center_before);
    let fifo = std::fs::metadata(files.path("fifo")).unwrap();
    assert!(fifo.file_type().is_fifo());

    // A regular file that is no namespace, and a namespace of another kind: invalid too.
    at_once("nsctl", &["--ns", "/etc/hostname", "link", "list"]).fails(2, "/etc/hostname");
    at_once("nsctl", &["--ns", "/proc/self/ns/mnt", "link", "list"]).fails(2, "/proc/self/ns/mnt");
    // A real namespace by path still works.
    let by_path = format!("/run/netns/{center}");
    at_once("nsctl", &["--ns", &by_path, "link", "list"]).ok();
    at_once("nsctl", &["--ns", "/proc/self/ns/net", "link", "list"]).ok();
}

/// `--private-key` / `--preshared-key` naming a FIFO, a directory or a device: exit 2 at once,
/// naming the file, with and without `--check`; nothing created. (`pubkey` reads stdin, which
/// may well be a pipe.)
#[test]
fn fifo_directory_or_device_as_key_file_exits_2_at_once() {
    let lab = Lab::new();
    let files = Scratch::new(&lab);
    let center = lab.netns("c");
    let w = lab.name("w");
    let peer = run_stdin("wg", &["pubkey"], Some(&run("wg", &["genkey"]).ok().stdout))
        .ok()
        .stdout
        .trim()
        .to_string();
    let before = lab_objects(&lab);
    let center_before = snapshot(Some(&center));
    for path in files.not_files() {
        let add = ["--ns", &center, "iface", "add", &w, "--private-key", &path];
        at_once("wgctl", &add).fails(2, &path);
        at_once("wgctl", &[&add[..], &["--check"]].concat()).fails(2, &path);
        let peer_add = [
            "--ns",
            &center,
            "peer",
            "add",
            &w,
            "--public-key",
            &peer,
            "--allowed-ips",
            "10.0.0.2/32",
            "--preshared-key",
            &path,
        ];
        at_once("wgctl", &peer_add).fails(2, &path);
        at_once("wgctl", &[&peer_add[..], &["--check"]].concat()).fails(2, &path);
        // As a later batch line: reported before the first line runs.
        let batch = files.write(
            "key.batch",
            format!("show\niface add {w} --private-key {path}\n").as_bytes(),
        );
        at_once("wgctl", &["--ns", &center, "-b", &batch]).fails(2, &path);
    }
    assert_eq!(
        lab_objects(&lab),
        before,
        "a refused command created something"
    );
    assert_eq!(snapshot(Some(&center)), center_before);
    assert!(std::fs::metadata(files.path("fifo"))
        .unwrap()
        .file_type()
        .is_fifo());
}

/// `wgctl genkey` and `genpsk` (with and without `--out`) and `wgctl pubkey` need no privilege,
/// like `wg`.
#[test]
fn keys_need_no_privilege() {
    let lab = Lab::new();
    let files = Scratch::new(&lab);
    let bare = as_nobody("wgctl", &["genkey"], None).ok();
    assert!(is_key(&bare.stdout), "not a key: {:?}", bare.stdout);
    assert!(!bare.stderr.contains("(current)"), "{}", bare.stderr);

    let derived = as_nobody("wgctl", &["pubkey"], Some(&bare.stdout))
        .ok()
        .json();
    let theirs = run_stdin("wg", &["pubkey"], Some(&bare.stdout)).ok();
    assert_eq!(derived["public_key"], theirs.stdout.trim());
    assert_eq!(derived["changed"], false);

    let own = files.subdir("nobody");
    run("chown", &[NOBODY, &own]).ok();
    let out = format!("{own}/key");
    let written = as_nobody("wgctl", &["genkey", "--out", &out], None)
        .ok()
        .json();
    assert_eq!(written["changed"], true);
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let text = std::fs::read_to_string(&out).unwrap();
    assert!(is_key(&text));
    let theirs = run_stdin("wg", &["pubkey"], Some(&text)).ok();
    assert_eq!(written["public_key"], theirs.stdout.trim());
    // Again: kept, same public key.
    let again = as_nobody("wgctl", &["genkey", "--out", &out], None)
        .ok()
        .json();
    assert_eq!(again["changed"], false);
    assert_eq!(again["public_key"], written["public_key"]);

    // genpsk too, bare and into a file.
    let bare = as_nobody("wgctl", &["genpsk"], None).ok();
    assert!(is_key(&bare.stdout), "not a key: {:?}", bare.stdout);
    let out = format!("{own}/psk");
    for changed in [true, false] {
        let written = as_nobody("wgctl", &["genpsk", "--out", &out], None)
            .ok()
            .json();
        assert_eq!(written, serde_json::json!({ "changed": changed }));
    }
    let meta = std::fs::metadata(&out).unwrap();
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    assert!(is_key(&std::fs::read_to_string(&out).unwrap()));
}

/// Without root, commands never mention entering '(current)': listings work or fail plainly,
/// and changes fail (exit 1) saying they need root; nothing is created.
#[test]
fn without_root_commands_say_they_need_root() {
    let lab = Lab::new();
    let br = lab.name("br");
    let ns = lab.netns("c");
    let before = lab_objects(&lab);
    let plain = |r: &Run| {
        assert!(
            !r.stderr.contains("(current)"),
            "{}: {}",
            r.cmdline,
            r.stderr
        );
        assert!(r.code == 0 || r.code == 1, "{}: exit {}", r.cmdline, r.code);
        if r.code == 0 {
            r.json();
        } else {
            assert!(r.stdout.is_empty(), "{}: {}", r.cmdline, r.stdout);
        }
    };
    plain(&as_nobody("nsctl", &["netns", "list"], None));
    plain(&as_nobody("nsctl", &["link", "list"], None));
    plain(&as_nobody("wgctl", &["show"], None));

    let needs_root = |r: Run, needle: &str| {
        let r = r.fails(1, needle);
        assert!(
            r.stderr.contains("root") && r.stderr.contains("CAP_"),
            "{}: {}",
            r.cmdline,
            r.stderr
        );
        assert!(
            !r.stderr.contains("(current)"),
            "{}: {}",
            r.cmdline,
            r.stderr
        );
    };
    needs_root(as_nobody("nsctl", &["bridge", "add", &br], None), &br);
    needs_root(as_nobody("nsctl", &["netns", "add", &br], None), &br);
    needs_root(as_nobody("natctl", &["list"], None), "natctl");
    needs_root(
        as_nobody("routectl", &["rule", "add", "--table", "100"], None),
        "100",
    );
    needs_root(
        as_nobody("nsctl", &["--ns", &ns, "link", "list"], None),
        &ns,
    );
    assert!(
        !Path::new(&format!("/sys/class/net/{br}")).exists(),
        "{br} was created"
    );
    assert_eq!(
        lab_objects(&lab),
        before,
        "an unprivileged command created something"
    );
}
