//! The systemd units in `systemd/`: `systemd-analyze verify` accepts them as shipped; their
//! command lines, run as systemd would run them, fail on a missing config (exit 2, the file
//! named) and bring up the hub the config describes; and the properties the design rests on
//! hold: reload is `hub up`, stop is `hub down --keep-state` (plain `down` would forget every
//! peer), the repair reloads
//! the hub service instead of running `hub up` in a service of its own (whose end would kill
//! the wireguard-go it restarted) and never starts a stopped hub.
//!
//! `cargo build --workspace && cargo test -p niransix-tests --test units`

use std::fs;
use std::path::{Path, PathBuf};

use niransix_tests::*;

const HUB_SERVICE: &str = "niransix-hub.service";
const REPAIR_SERVICE: &str = "niransix-hub-repair.service";
const REPAIR_TIMER: &str = "niransix-hub-repair.timer";
const UNITS: [&str; 3] = [HUB_SERVICE, REPAIR_SERVICE, REPAIR_TIMER];

/// Where the units expect the hub script and its config.
const HUB_PROGRAM: &str = "/usr/bin/niransix-hub";
const HUB_CONFIG: &str = "/etc/niransix/hub.conf";

/// The PATH systemd gives a system service.
const SYSTEMD_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// The settings of a service that run a command.
const EXEC_KEYS: [&str; 7] = [
    "ExecStartPre",
    "ExecStart",
    "ExecStartPost",
    "ExecReload",
    "ExecStop",
    "ExecStopPost",
    "ExecCondition",
];

/// One unit file of `systemd/`, as `[Section]` / `Key=value` entries in file order. Enough of
/// systemd.syntax(7) for these files: comments, sections, repeated keys, and an empty value
/// that resets the list; a continuation line (trailing `\`) is refused rather than misread.
struct Unit {
    name: &'static str,
    entries: Vec<(String, String, String)>,
}

impl Unit {
    fn path(name: &str) -> PathBuf {
        repo_root().join("systemd").join(name)
    }

    fn load(name: &'static str) -> Unit {
        let path = Unit::path(name);
        let text = fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
        let mut entries: Vec<(String, String, String)> = Vec::new();
        let mut section = String::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') || line.starts_with(';') {
                continue;
            }
            assert!(
                !line.ends_with('\\'),
                "{name}:{}: a continuation line; this test's parser does not read them",
                i + 1
            );
            if let Some(s) = line.strip_prefix('[').and_then(|l| l.strip_suffix(']')) {
                section = s.to_string();
                continue;
            }
            let (key, value) = line
                .split_once('=')
                .unwrap_or_else(|| panic!("{name}:{}: not `Key=value`: {raw:?}", i + 1));
            let (key, value) = (key.trim(), value.trim());
            if value.is_empty() {
                entries.retain(|(s, k, _)| !(*s == section && k == key));
            } else {
                entries.push((section.clone(), key.to_string(), value.to_string()));
            }
        }
        Unit { name, entries }
    }

    /// Every value of `key` in `section`; a dependency list (`After=a b`) split into names.
    fn values(&self, section: &str, key: &str) -> Vec<&str> {
        self.entries
            .iter()
            .filter(|(s, k, _)| s == section && k == key)
            .flat_map(|(_, k, v)| {
                if k.starts_with("Exec") {
                    vec![v.as_str()]
                } else {
                    v.split_whitespace().collect()
                }
            })
            .collect()
    }

    /// The one value of `key` in `section`, if set.
    #[track_caller]
    fn value(&self, section: &str, key: &str) -> Option<&str> {
        let all = self.values(section, key);
        assert!(
            all.len() <= 1,
            "{}: [{section}] {key}= is set {} times: {all:?}",
            self.name,
            all.len()
        );
        all.first().copied()
    }

    /// Every command line the unit can run (`Exec*=`), with its key.
    fn exec_lines(&self) -> Vec<(&'static str, &str)> {
        EXEC_KEYS
            .iter()
            .flat_map(|k| self.values("Service", k).into_iter().map(move |v| (*k, v)))
            .collect()
    }
}

/// An `Exec*=` value as systemd reads it, for these plain command lines: the prefix characters
/// (`-` ignore failure, `@`, `:`, `+`, `!`) and the words.
#[track_caller]
fn command_line(unit: &str, key: &str, value: &str) -> (String, Vec<String>) {
    assert!(
        !value.contains(['"', '\'', '$', '%', '\\']),
        "{unit}: {key}={value}: quotes, $ or % specifiers; this test's parser takes plain words"
    );
    let prefix: String = value.chars().take_while(|c| "-@:+!".contains(*c)).collect();
    let words = value[prefix.len()..]
        .split_whitespace()
        .map(str::to_string)
        .collect();
    (prefix, words)
}

/// The hub service's command line for `key`, checked for what the test relies on: no `-`
/// prefix (systemd would ignore its failure), the hub program, and `-c` HUB_CONFIG.
#[track_caller]
fn hub_command(unit: &Unit, key: &str) -> Vec<String> {
    let value = unit
        .value("Service", key)
        .unwrap_or_else(|| panic!("{}: no {key}=", unit.name));
    let (prefix, words) = command_line(unit.name, key, value);
    assert!(
        !prefix.contains('-'),
        "{}: {key}={value}: the `-` prefix makes systemd ignore the hub's failure, so a \
         missing config would not fail the unit",
        unit.name
    );
    assert_eq!(words[0], HUB_PROGRAM, "{}: {key}={value}", unit.name);
    assert!(
        words.windows(2).any(|w| w[0] == "-c" && w[1] == HUB_CONFIG),
        "{}: {key}={value}: the config must be given with `-c {HUB_CONFIG}`: without -c, a \
         missing config silently brings up a hub with the default settings",
        unit.name
    );
    words
}

/// `words` with the program and the config path replaced, run as systemd would: a clean
/// environment with systemd's PATH, plus `env`.
fn run_hub_command(words: &[String], config: &Path, env: &[String]) -> Run {
    let hub = repo_root().join("niransix-sh").join("hub");
    let mut args = vec!["-i".to_string(), format!("PATH={SYSTEMD_PATH}")];
    args.extend(env.iter().cloned());
    args.push(hub.to_string_lossy().into_owned());
    for w in &words[1..] {
        args.push(if w == HUB_CONFIG {
            config.to_string_lossy().into_owned()
        } else {
            w.clone()
        });
    }
    let refs: Vec<&str> = args.iter().map(String::as_str).collect();
    run("env", &refs)
}

/// A per-test temporary directory, removed on drop (also when the test fails).
struct TempDir(PathBuf);

impl TempDir {
    fn new(lab: &Lab, what: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("{}-{what}", lab.prefix));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).unwrap();
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// `systemd-analyze`, or a failure saying how to get it (scripts/bootstrap.sh installs it).
fn systemd_analyze() -> &'static str {
    assert_eq!(
        sh("command -v systemd-analyze").code,
        0,
        "systemd-analyze is missing: apt-get install systemd (scripts/bootstrap.sh does)"
    );
    "systemd-analyze"
}

/// A root directory for `systemd-analyze verify --root`: this machine's system units, the
/// units under test in etc/systemd/system, and every program their `Exec*=` lines name: the
/// hub script as /usr/bin/niransix-hub, the others copied from this machine (verify checks
/// that each exists and is executable).
fn verify_root(lab: &Lab) -> TempDir {
    let root = TempDir::new(lab, "verify-root");
    let r = &root.0;
    // The same merged-/usr layout (or not) as this machine, so that /bin/systemctl resolves.
    for top in ["bin", "sbin", "lib"] {
        let host = Path::new("/").join(top);
        match fs::read_link(&host) {
            Ok(target) => std::os::unix::fs::symlink(target, r.join(top)).unwrap(),
            Err(_) if host.is_dir() => fs::create_dir_all(r.join(top)).unwrap(),
            Err(_) => {}
        }
    }
    // This machine's system units (sysinit.target, network.target, ...), which verify loads.
    for dir in ["usr/lib/systemd", "lib/systemd"] {
        let host = Path::new("/").join(dir).join("system");
        let dest = r.join(dir);
        if host.is_dir() && !dest.join("system").exists() {
            fs::create_dir_all(&dest).unwrap();
            run(
                "cp",
                &["-a", host.to_str().unwrap(), dest.to_str().unwrap()],
            )
            .ok();
        }
    }
    let units = r.join("etc/systemd/system");
    fs::create_dir_all(&units).unwrap();
    for name in UNITS {
        let unit = Unit::load(name);
        fs::copy(Unit::path(name), units.join(name)).unwrap();
        for (key, value) in unit.exec_lines() {
            let program = command_line(name, key, value).1[0].clone();
            let source = if program == HUB_PROGRAM {
                repo_root().join("niransix-sh/hub")
            } else {
                PathBuf::from(&program)
            };
            assert!(
                source.is_file(),
                "{name}: {key}= runs {program}, which does not exist on this machine"
            );
            let dest = r.join(program.trim_start_matches('/'));
            fs::create_dir_all(dest.parent().unwrap()).unwrap();
            fs::copy(&source, &dest).unwrap();
        }
    }
    root
}

/// `systemd-analyze verify --root=ROOT --man=no UNITS...`: its exit code and the lines of its
/// output that name one of our units. --man=no: the niransix-hub(8) page of Documentation=
/// comes with the Debian package, and verify would look it up with this machine's `man`.
fn verify(root: &Path, units: &[&str]) -> (Run, Vec<String>) {
    let root_arg = format!("--root={}", root.display());
    let mut args = vec!["verify", root_arg.as_str(), "--man=no"];
    args.extend_from_slice(units);
    let r = run(systemd_analyze(), &args);
    let ours = r
        .stderr
        .lines()
        .chain(r.stdout.lines())
        .filter(|l| l.contains("niransix-hub"))
        .map(str::to_string)
        .collect();
    (r, ours)
}

#[test]
fn systemd_analyze_verify_accepts_the_units_as_shipped() {
    let lab = Lab::new();
    let root = verify_root(&lab);
    let (r, ours) = verify(&root.0, &UNITS);
    assert!(
        r.code == 0 && ours.is_empty(),
        "`{}`: exit {}, warnings about our units: {ours:#?}\nstderr: {}",
        r.cmdline,
        r.code,
        r.stderr
    );

    // The check must be able to fail: verify exits 0 on a misspelled directive and only warns,
    // which the filter above has to catch.
    let copy = root.0.join("etc/systemd/system").join(HUB_SERVICE);
    let text = fs::read_to_string(&copy).unwrap();
    fs::write(&copy, text.replace("RemainAfterExit=", "RemainAfterExt=")).unwrap();
    let (r, ours) = verify(&root.0, &[HUB_SERVICE]);
    assert!(
        ours.iter().any(|l| l.contains("RemainAfterExt")),
        "verify did not flag a misspelled directive in {HUB_SERVICE}, so this test could not \
         fail: exit {}, stderr: {}",
        r.code,
        r.stderr
    );
}

#[test]
fn a_missing_config_fails_the_hub_unit_naming_the_file() {
    let lab = Lab::new();
    let tmp = TempDir::new(&lab, "units");
    let missing = tmp.0.join("no-such-dir/hub.conf");
    let state = tmp.0.join("state");
    let unit = Unit::load(HUB_SERVICE);
    for key in ["ExecStart", "ExecReload"] {
        let words = hub_command(&unit, key);
        // A hub that wrongly went on would build a test hub in this temporary state dir, never
        // the machine's default one (the environment wins over a config file).
        let env = [
            format!("NIRANSIX_BIN_DIR={}", bin_dir().display()),
            format!("HUB_NS={}", lab.name("hub")),
            format!("HUB_PREFIX={}", lab.prefix),
            format!("HUB_STATE_DIR={}", state.display()),
        ];
        run_hub_command(&words, &missing, &env).fails(
            2,
            &format!("hub: error: cannot read config file {}", missing.display()),
        );
        assert!(
            !state.exists(),
            "{key}: the hub made its state dir before failing"
        );
        assert_eq!(
            netns_with_prefix(&lab.prefix),
            Vec::<String>::new(),
            "{key}: the hub created namespaces before failing"
        );
    }
}

/// `hub down` with the test config, on drop: whatever the test brought up goes, even on failure.
struct HubDown<'a> {
    config: &'a Path,
}

impl Drop for HubDown<'_> {
    fn drop(&mut self) {
        let words: Vec<String> = [HUB_PROGRAM, "-q", "-c", HUB_CONFIG, "down"]
            .map(String::from)
            .to_vec();
        let env = [format!("NIRANSIX_BIN_DIR={}", bin_dir().display())];
        let _ = run_hub_command(&words, self.config, &env);
    }
}

#[test]
fn the_hub_units_command_lines_bring_up_the_configured_hub_and_reload_converges() {
    for t in ["nsctl", "wgctl", "natctl", "routectl"] {
        tool_path(t);
    }
    let lab = Lab::new();
    let tmp = TempDir::new(&lab, "units");
    let state = tmp.0.join("state");
    let config = tmp.0.join("hub.conf");
    let center = lab.name("hub");
    // Every setting comes from the file: proof that the unit's `-c` is what the hub reads.
    fs::write(
        &config,
        format!(
            "HUB_NS={center}\nHUB_PREFIX={}\nHUB_STATE_DIR={}\n",
            lab.prefix,
            state.display()
        ),
    )
    .unwrap();
    let _down = HubDown { config: &config };
    let unit = Unit::load(HUB_SERVICE);
    let env = [format!("NIRANSIX_BIN_DIR={}", bin_dir().display())];

    let start = run_hub_command(&hub_command(&unit, "ExecStart"), &config, &env).ok();
    assert!(start.changed(), "ExecStart on a new hub: {}", start.stdout);
    assert_eq!(
        start.json()["center"]["ns"],
        center.as_str(),
        "the center is the config's: {}",
        start.stdout
    );
    // -q: the journal gets the JSON report, not every command.
    assert_eq!(start.stderr, "", "ExecStart with -q printed on stderr");
    let spaces = netns_with_prefix(&lab.prefix);
    assert!(
        spaces.contains(&center),
        "no namespace {center} after ExecStart: {spaces:?}"
    );
    assert!(state.join("center.json").is_file(), "no center record");

    let reload = run_hub_command(&hub_command(&unit, "ExecReload"), &config, &env).ok();
    assert!(
        !reload.changed(),
        "ExecReload on a healthy hub changed something: {}",
        reload.stdout
    );
    assert_eq!(reload.stderr, "", "ExecReload with -q printed on stderr");
    assert_eq!(netns_with_prefix(&lab.prefix), spaces, "ExecReload");
}

#[test]
fn hub_service_reload_is_up_and_stop_keeps_the_state() {
    let unit = Unit::load(HUB_SERVICE);
    assert_eq!(unit.value("Service", "Type"), Some("oneshot"));
    assert_eq!(
        unit.value("Service", "RemainAfterExit"),
        Some("yes"),
        "without RemainAfterExit=yes the service ends when `hub up` returns, and systemd kills \
         every wireguard-go in it"
    );
    let start = hub_command(&unit, "ExecStart");
    let reload = hub_command(&unit, "ExecReload");
    assert_eq!(start.last().map(String::as_str), Some("up"), "ExecStart");
    assert_eq!(
        reload, start,
        "ExecReload must run the same `hub up` as ExecStart"
    );
    let stop = hub_command(&unit, "ExecStop");
    assert_eq!(
        stop[stop.len() - 2..],
        ["down", "--keep-state"],
        "ExecStop takes the hub down and keeps its records"
    );
    assert_eq!(
        stop[..stop.len() - 2],
        start[..start.len() - 1],
        "ExecStop: same program, config"
    );
    for (key, value) in unit.exec_lines() {
        let words = command_line(unit.name, key, value).1;
        assert!(
            !words.iter().any(|w| w == "down") || words.iter().any(|w| w == "--keep-state"),
            "{key}={value}: plain `hub down` forgets every peer (records, keys, ports, \
             addresses): run at stop, a reboot would bring up an empty hub"
        );
    }
    // Stopping relies on systemd stopping every process of the service (each wireguard-go).
    assert!(
        matches!(
            unit.value("Service", "KillMode"),
            None | Some("control-group")
        ),
        "KillMode= must stay control-group: the wireguard-go processes go at stop"
    );
    // All of a hub's wireguard-go (~12 threads each) live in this one service.
    assert_eq!(
        unit.value("Service", "TasksMax"),
        Some("infinity"),
        "the default TasksMax stops a userspace hub at a few hundred peers"
    );
    assert_eq!(
        unit.value("Service", "OOMPolicy"),
        Some("continue"),
        "with the default OOMPolicy=stop, one OOM-killed wireguard-go stops the whole hub"
    );
}

#[test]
fn hub_service_keeps_the_machines_mount_namespace() {
    // Each of these gives the service a mount namespace of its own (or namespaces, devices it
    // needs): the /run/netns/NAME mounts the hub makes would then be invisible outside it, or
    // the hub could not make namespaces or open /dev/net/tun at all.
    const BREAKING: [&str; 30] = [
        "PrivateTmp",
        "PrivateDevices",
        "PrivateMounts",
        "PrivateNetwork",
        "PrivateUsers",
        "PrivateIPC",
        "ProtectSystem",
        "ProtectHome",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectKernelLogs",
        "ProtectControlGroups",
        "ProtectClock",
        "ProtectProc",
        "ProcSubset",
        "ReadWritePaths",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "ExecPaths",
        "NoExecPaths",
        "TemporaryFileSystem",
        "BindPaths",
        "BindReadOnlyPaths",
        "RootDirectory",
        "RootImage",
        "MountAPIVFS",
        "NetworkNamespacePath",
        "RestrictNamespaces",
        "DevicePolicy",
        "DeviceAllow",
    ];
    let unit = Unit::load(HUB_SERVICE);
    let found: Vec<&str> = BREAKING
        .into_iter()
        .filter(|k| !unit.values("Service", k).is_empty())
        .collect();
    assert!(
        found.is_empty(),
        "{HUB_SERVICE} sets {found:?}: the hub must run in the machine's mount namespace, with \
         the right to make network namespaces and TUN devices"
    );
    for key in ["DynamicUser", "User", "Group"] {
        assert_eq!(
            unit.value("Service", key),
            None,
            "{HUB_SERVICE}: {key}=: the hub runs as root"
        );
    }
}

#[test]
fn repair_reloads_the_hub_service_and_never_starts_it() {
    let repair = Unit::load(REPAIR_SERVICE);
    assert_eq!(repair.value("Service", "Type"), Some("oneshot"));
    let lines = repair.exec_lines();
    assert_eq!(lines.len(), 1, "{REPAIR_SERVICE}: one command: {lines:?}");
    let (prefix, words) = command_line(REPAIR_SERVICE, lines[0].0, lines[0].1);
    assert!(lines[0].0 == "ExecStart" && prefix.is_empty(), "{lines:?}");
    assert!(
        words[0].ends_with("/systemctl") && words[1..] == ["reload", HUB_SERVICE],
        "{REPAIR_SERVICE} must run `systemctl reload {HUB_SERVICE}`, not `hub up` itself: the \
         wireguard-go that `hub up` restarts would be this oneshot's, and die with it: {words:?}"
    );
    assert!(
        repair.values("Unit", "Requisite").contains(&HUB_SERVICE)
            && repair.values("Unit", "After").contains(&HUB_SERVICE),
        "{REPAIR_SERVICE}: Requisite= and After={HUB_SERVICE}: do nothing unless the hub is up"
    );

    let timer = Unit::load(REPAIR_TIMER);
    assert!(
        matches!(timer.value("Timer", "Unit"), None | Some(REPAIR_SERVICE)),
        "{REPAIR_TIMER} starts {REPAIR_SERVICE}"
    );
    assert_eq!(
        timer.value("Timer", "OnUnitActiveSec").map(seconds),
        Some(60),
        "{REPAIR_TIMER}: every minute"
    );
    assert!(
        timer.values("Unit", "PartOf").contains(&HUB_SERVICE)
            && timer.values("Install", "WantedBy") == [HUB_SERVICE],
        "{REPAIR_TIMER}: started with the hub service (WantedBy=) and stopped with it (PartOf=)"
    );

    // Neither may start the hub: no dependency that pulls it in.
    for unit in [&repair, &timer] {
        for key in [
            "Wants",
            "Requires",
            "BindsTo",
            "Upholds",
            "OnSuccess",
            "OnFailure",
        ] {
            assert!(
                !unit.values("Unit", key).contains(&HUB_SERVICE),
                "{}: {key}={HUB_SERVICE} would start a hub that was stopped",
                unit.name
            );
        }
    }
}

/// A systemd time span of one unit (`60`, `60s`, `1min`, `1m`) in seconds.
#[track_caller]
fn seconds(span: &str) -> u64 {
    let digits = span.trim_end_matches(|c: char| c.is_ascii_alphabetic());
    let n: u64 = digits
        .parse()
        .unwrap_or_else(|_| panic!("time span {span:?}: this test reads N, Ns, Nsec, Nm, Nmin"));
    match &span[digits.len()..] {
        "" | "s" | "sec" => n,
        "m" | "min" => n * 60,
        u => panic!("time span {span:?}: unit {u:?} not read by this test"),
    }
}
