//! What every tool shares (common/): a batch refuses a line it cannot run and text that is not
//! UTF-8 before any line runs.
//!
//! Build the tools first: `cargo build -p nsctl && cargo test -p niransix-tests --test cli`.

use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use niransix_tests::*;

/// How long a command that must fail at once may take before the test calls it a hang.
const AT_ONCE: Duration = Duration::from_secs(5);

/// A per-test directory for batch files, removed on drop.
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

    fn write(&self, name: &str, content: &[u8]) -> String {
        let p = self.path(name);
        std::fs::write(&p, content).unwrap();
        p
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

/// Root-namespace links carrying the lab's prefix, and the lab's namespaces: what a refused
/// command must not have created.
fn lab_objects(lab: &Lab) -> String {
    let links = sh(&format!("ip -o link show | grep ': {}' ; true", lab.prefix)).stdout;
    format!(
        "links: {links}\nnetns: {:?}",
        netns_with_prefix(&lab.prefix)
    )
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
