//! `nsctl exec NAME -- CMD [ARGS]`: what `ip netns exec` does, then becomes CMD.
//!
//! Enter the network namespace, take a private (slave) mount namespace, mount a /sys that shows
//! the namespace's own devices, bind /etc/netns/NAME/* over /etc, and execvp.

use std::ffi::CString;
use std::path::Path;

use clap::Args;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use serde::Serialize;

use common::netns::NetnsFd;
use common::types::NsTarget;
use common::{Context, Ctx, Error, Outcome, Result};

#[derive(Args, Debug)]
pub struct Exec {
    /// Namespace name (/run/netns/NAME) or path such as /proc/PID/ns/net
    #[arg(add = common::complete::namespaces())]
    pub name: NsTarget,
    /// The command and its arguments (after `--`)
    #[arg(required = true, last = true, allow_hyphen_values = true, value_hint = clap::ValueHint::CommandWithArguments)]
    pub command: Vec<String>,
}

/// What `exec --check` prints instead of running (`{"changed":false,"exec":{..}}`).
#[derive(Debug, Serialize)]
struct ExecView<'a> {
    netns: String,
    command: &'a [String],
}

impl Exec {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let argv: Vec<CString> = self
            .command
            .iter()
            .map(|a| CString::new(a.as_bytes()))
            .collect::<std::result::Result<_, _>>()
            .map_err(|_| Error::invalid("a command argument contains a NUL byte"))?;
        let ns = NetnsFd::open(&self.name)?;
        if ctx.check {
            let view = ExecView {
                netns: self.name.to_string(),
                command: &self.command,
            };
            return Outcome::object(false, "exec", view);
        }
        let what = || format!("running {} in namespace {}", self.command[0], self.name);
        enter(&ns, &self.name).with_context(what)?;
        common::output::restore_stdout();
        let err = nix::unistd::execvp(&argv[0], &argv).unwrap_err();
        Err(Error::caused(what(), err))
    }
}

/// Network namespace, private mounts, a fresh /sys, and /etc/netns/NAME overlays.
fn enter(ns: &NetnsFd, target: &NsTarget) -> Result<()> {
    ns.enter_for_good()?;
    super::private_mounts()?;
    let sys_flags = match nix::sys::statvfs::statvfs("/sys") {
        Ok(st) if st.flags().contains(nix::sys::statvfs::FsFlags::ST_RDONLY) => MsFlags::MS_RDONLY,
        _ => MsFlags::empty(),
    };
    // Like ip netns exec: a failure to remount /sys leaves the caller's view, not an error.
    if umount2("/sys", MntFlags::MNT_DETACH).is_ok() {
        let src = match target {
            NsTarget::Name(n) => n.to_string(),
            NsTarget::Path(_) => "sysfs".into(),
        };
        mount(
            Some(src.as_str()),
            "/sys",
            Some("sysfs"),
            sys_flags,
            None::<&str>,
        )
        .context("mounting /sys for the namespace")?;
    }
    if let NsTarget::Name(n) = target {
        bind_etc(n.as_str());
    }
    Ok(())
}

/// Binds each /etc/netns/NAME/FILE over /etc/FILE (resolv.conf, hosts, ...), like ip netns exec.
fn bind_etc(name: &str) {
    let dir = Path::new("/etc/netns").join(name);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return;
    };
    for ent in entries.flatten() {
        let target = Path::new("/etc").join(ent.file_name());
        if let Err(e) = mount(
            Some(&ent.path()),
            &target,
            Some("none"),
            MsFlags::MS_BIND,
            None::<&str>,
        ) {
            eprintln!(
                "nsctl: warning: binding {} over {}: {e}",
                ent.path().display(),
                target.display()
            );
        }
    }
}
