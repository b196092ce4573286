//! The two WireGuard implementations behind one interface name, and the link plumbing around
//! them:
//!
//! - **kernel**: the link is created with rtnetlink (`type wireguard`) and configured over
//!   generic netlink (wireguard-control's Kernel backend), in the calling thread's namespace.
//! - **userspace**: `wireguard-go NAME` is started in the birthplace namespace (its TUN device and
//!   UDP socket are born there) and configured over its UAPI socket
//!   `/var/run/wireguard/NAME.sock` (wireguard-control's Userspace backend). That path is one for
//!   all namespaces, so a userspace name is unique machine-wide.
//!
//! Which one an existing interface uses is read from the kernel: link kind `wireguard` is the
//! kernel module; kind `tun` with a live UAPI socket of the same name is wireguard-go.

use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::listener::{self, Listener};
use common::link::{delete_link_if_exists, LinkExt};
use common::netns::{run_in, NetnsFd};
use common::types::IfName;
use common::{vlog, Context, Error, Result};
use netlink_packet_route::link::{InfoKind, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkWireguard};
use serde::Serialize;
use wireguard_control::{Device, DeviceUpdate, InterfaceName};

/// Where wireguard-go puts its UAPI sockets (the same directory for every namespace).
pub const UAPI_DIR: &str = "/var/run/wireguard";

/// The implementation serving an interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Backend {
    Kernel,
    Userspace,
}

impl Backend {
    pub fn as_str(self) -> &'static str {
        match self {
            Backend::Kernel => "kernel",
            Backend::Userspace => "userspace",
        }
    }

    fn wc(self) -> wireguard_control::Backend {
        match self {
            Backend::Kernel => wireguard_control::Backend::Kernel,
            Backend::Userspace => wireguard_control::Backend::Userspace,
        }
    }
}

/// `--backend`: which implementation a new interface gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BackendChoice {
    /// The kernel module when the kernel has it, wireguard-go otherwise
    Auto,
    /// The kernel module (CONFIG_WIREGUARD); fail if the kernel lacks it
    Kernel,
    /// wireguard-go (or $WG_USERSPACE_IMPLEMENTATION), like wg-quick's fallback
    Userspace,
}

impl BackendChoice {
    /// The backend this choice insists on, if any.
    pub fn required(self) -> Option<Backend> {
        match self {
            BackendChoice::Auto => None,
            BackendChoice::Kernel => Some(Backend::Kernel),
            BackendChoice::Userspace => Some(Backend::Userspace),
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Links

/// A WireGuard link as the kernel shows it in one namespace.
#[derive(Debug, Clone)]
pub struct Link {
    pub backend: Backend,
    pub index: u32,
    pub mtu: Option<u32>,
    pub up: bool,
}

/// What a name is in one namespace.
#[derive(Debug, Clone)]
pub enum Found {
    Absent,
    WireGuard(Link),
    /// Some other kind of link (`veth`, `bridge`, a `tun` that is not wireguard-go ...).
    Other(String),
}

/// Runs netlink work in the calling thread's namespace, over the command's connection there
/// ([`common::nl::connect`]) on the process's runtime.
pub fn netlink<T, F, Fut>(f: F) -> Result<T>
where
    F: FnOnce(Handle) -> Fut,
    Fut: Future<Output = Result<T>>,
{
    let h = common::nl::connect()?;
    common::netns::block_on(f(h))?
}

/// Classifies the link `name` in the namespace `h` talks to.
pub async fn lookup(h: &Handle, name: &str) -> Result<Found> {
    Ok(match common::nl::find_link(h, name).await? {
        Some(msg) => classify(&msg, name),
        None => Found::Absent,
    })
}

/// Whether a link is a WireGuard interface, and of which backend.
fn classify(msg: &LinkMessage, name: &str) -> Found {
    let backend = match msg.kind() {
        Some(InfoKind::Wireguard) => Backend::Kernel,
        Some(InfoKind::Tun) if uapi_state(name) == Uapi::Live => Backend::Userspace,
        Some(k) => return Found::Other(format!("{k:?}").to_lowercase()),
        None => return Found::Other("device".into()),
    };
    Found::WireGuard(Link {
        backend,
        index: msg.header.index,
        mtu: msg.mtu(),
        up: msg.is_up(),
    })
}

/// Completes the names of the WireGuard interfaces in the namespace the command acts in.
pub fn completer() -> common::complete::ArgValueCompleter {
    common::complete::links_where(&[], |msg| {
        let name = msg.name().unwrap_or_default();
        matches!(classify(msg, name), Found::WireGuard(_))
    })
}

/// [`lookup`] in the calling thread's namespace.
pub fn lookup_here(name: &IfName) -> Result<Found> {
    netlink(|h| async move { lookup(&h, name.as_str()).await })
}

/// [`lookup`] in another namespace.
pub fn lookup_in(ns: &NetnsFd, name: &IfName) -> Result<Found> {
    run_in(ns, || lookup_here(name))
}

/// All WireGuard links of the calling thread's namespace, in index order.
pub fn list_here() -> Result<Vec<(String, Link)>> {
    netlink(|h| async move {
        let mut out = Vec::new();
        for msg in common::nl::links(&h).await? {
            let Some(name) = msg.name().map(str::to_owned) else {
                continue;
            };
            if let Found::WireGuard(link) = classify(&msg, &name) {
                out.push((name, link));
            }
        }
        out.sort_by_key(|(_, l)| l.index);
        Ok(out)
    })
}

/// Sets the MTU of a link in the calling thread's namespace.
pub fn set_mtu(name: &IfName, mtu: u32, where_: &str) -> Result<()> {
    netlink(|h| async move {
        let idx = common::nl::link_index(&h, name.as_str(), where_).await?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).mtu(mtu).build())
            .execute()
            .await
            .with_context(|| format!("setting mtu {mtu} on {name} in {where_}"))
    })
}

/// Moves a link from the calling thread's namespace into `to`.
pub fn move_link(name: &IfName, to: &NetnsFd, where_: &str) -> Result<()> {
    let fd = to.raw();
    netlink(|h| async move {
        let idx = common::nl::link_index(&h, name.as_str(), where_).await?;
        h.link()
            .set(LinkUnspec::new_with_index(idx).setns_by_fd(fd).build())
            .execute()
            .await
            .with_context(|| format!("moving {name} from {where_} into namespace {}", to.label()))
    })
}

/// Brings a link up in the calling thread's namespace.
pub fn set_up(name: &IfName, where_: &str) -> Result<()> {
    netlink(|h| async move {
        let idx = common::nl::link_index(&h, name.as_str(), where_).await?;
        common::link::set_up(&h, idx, true, || format!("bringing {name} up in {where_}")).await
    })
}

/// Deletes a link in the calling thread's namespace; false if it was not there.
pub fn delete_link(name: &IfName, where_: &str) -> Result<bool> {
    netlink(|h| async move {
        let Some(msg) = common::nl::find_link(&h, name.as_str()).await? else {
            return Ok(false);
        };
        delete_link_if_exists(&h, msg.header.index, || {
            format!("deleting {name} in {where_}")
        })
        .await
    })
}

/// Outcome of asking the kernel for a `type wireguard` link.
pub enum KernelCreate {
    Created,
    /// EOPNOTSUPP: this kernel has no WireGuard module.
    Unsupported,
}

/// Creates a kernel WireGuard link in the calling thread's namespace.
pub fn create_kernel(name: &IfName, mtu: Option<u32>, where_: &str) -> Result<KernelCreate> {
    netlink(|h| async move {
        let mut b = LinkWireguard::new(name.as_str());
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        let created = h.link().add(b.build()).execute().await;
        match created.with_context(|| format!("creating WireGuard link {name} in {where_}")) {
            Ok(()) => Ok(KernelCreate::Created),
            Err(e) if e.kind() == common::Kind::Unsupported => Ok(KernelCreate::Unsupported),
            Err(e) => Err(e),
        }
    })
}

/// Whether the kernel module looks available, without changing anything (for `--check`).
pub fn kernel_probably_supported() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

// ---------------------------------------------------------------------------------------------
// Configuration through wireguard-control

fn wc_name(name: &IfName) -> Result<InterfaceName> {
    name.as_str()
        .parse()
        .map_err(|e| Error::invalid(format!("interface name '{name}': {e}")))
}

/// Reads an interface's configuration and peer statistics. Kernel: in the calling thread's
/// namespace; userspace: over the UAPI socket, wherever the link lives.
pub fn read_device(name: &IfName, backend: Backend) -> Result<Device> {
    if backend == Backend::Userspace {
        require_live_uapi(name)?;
    }
    Device::get(&wc_name(name)?, backend.wc()).with_context(|| {
        format!(
            "reading the configuration of {name} ({} backend)",
            backend.as_str()
        )
    })
}

/// Applies an update to an interface that exists. (wireguard-control would otherwise create
/// the interface itself: a kernel link, or a wireguard-go that inherits our stdout.)
pub fn apply(name: &IfName, backend: Backend, update: DeviceUpdate, what: &str) -> Result<()> {
    if backend == Backend::Userspace {
        require_live_uapi(name)?;
    }
    update
        .apply(&wc_name(name)?, backend.wc())
        .with_context(|| format!("{what} ({} backend)", backend.as_str()))
}

// ---------------------------------------------------------------------------------------------
// wireguard-go processes and UAPI sockets

/// The UAPI socket of a userspace interface.
pub fn uapi_path(name: &str) -> PathBuf {
    Path::new(UAPI_DIR).join(format!("{name}.sock"))
}

/// The state of a UAPI socket path.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Uapi {
    Absent,
    /// The file exists but nobody listens (a crashed wireguard-go).
    Stale,
    Live,
}

pub fn uapi_state(name: &str) -> Uapi {
    match UnixStream::connect(uapi_path(name)) {
        Ok(_) => Uapi::Live,
        Err(e) if e.kind() == ErrorKind::NotFound => Uapi::Absent,
        Err(_) => Uapi::Stale,
    }
}

fn require_live_uapi(name: &IfName) -> Result<()> {
    match uapi_state(name.as_str()) {
        Uapi::Live => Ok(()),
        _ => Err(Error::failed(format!(
            "userspace WireGuard interface {name} has no live UAPI socket ({})",
            uapi_path(name.as_str()).display()
        ))),
    }
}

/// The userspace implementation to start: `$WG_USERSPACE_IMPLEMENTATION` (as wg-quick and
/// wireguard-control honour it) or `wireguard-go`.
pub fn userspace_program() -> String {
    std::env::var("WG_USERSPACE_IMPLEMENTATION")
        .or_else(|_| std::env::var("WG_QUICK_USERSPACE_IMPLEMENTATION"))
        .unwrap_or_else(|_| "wireguard-go".into())
}

/// Starts `wireguard-go NAME` in the calling thread's namespace and waits for its UAPI socket.
///
/// It runs in the foreground (`WG_PROCESS_FOREGROUND=1`: one Go start instead of two, the
/// daemonising re-exec is skipped) in a session of its own, with /dev/null for
/// stdin/stdout/stderr, no descriptor of ours beyond those (so a pipe reading our stdout sees
/// EOF when we exit, not when the daemon does), and an environment holding only PATH. An
/// implementation that daemonises anyway is fine: its foreground part exits 0 and the socket
/// shows up. No key is ever passed to it here: keys go over the UAPI socket. Once it is up,
/// wireguard-go's link listener is filtered to its own link (`listener`); its route listener
/// comes with the device's "up" ([`quiet_route_listener`]).
pub fn spawn_userspace(name: &IfName, where_: &str) -> Result<()> {
    let program = userspace_program();
    let mut cmd = Command::new(&program);
    cmd.arg(name.as_str())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .env_clear()
        .env("WG_PROCESS_FOREGROUND", "1");
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: two raw system calls, no allocation, no lock. CLOSE_RANGE_CLOEXEC marks
    // descriptors >= 3 close-on-exec instead of closing them, so no descriptor another owner
    // holds (std's pipe that reports a failed exec) is closed behind its back.
    unsafe {
        cmd.pre_exec(|| {
            // A fresh child is never a process group leader; checked all the same.
            nix::unistd::setsid()?;
            // Linux < 5.11 answers EINVAL: the descriptors stay as they are (std opens its own
            // close-on-exec, and so does this process).
            libc::syscall(
                libc::SYS_close_range,
                3u32,
                u32::MAX,
                libc::CLOSE_RANGE_CLOEXEC,
            );
            Ok(())
        });
    }
    vlog!(1, "starting {program} {name} in {where_}");
    let mut child = cmd
        .spawn()
        .with_context(|| format!("starting {program} {name} in {where_}"))?;
    // Generous: a Go program starting under emulation (the kernel VM lane) takes seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut exited_ok = false;
    while uapi_state(name.as_str()) != Uapi::Live {
        if !exited_ok {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => exited_ok = true,
                Ok(Some(status)) => {
                    return Err(Error::failed(format!(
                        "starting {program} {name} in {where_}: it exited with {status}"
                    )));
                }
                _ => {}
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::failed(format!(
                "{program} {name} started in {where_} but its UAPI socket {} never appeared",
                uapi_path(name.as_str()).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    if let (Some(pid), Some(ifindex)) = (wireguard_go_pid(name), index_here(name)) {
        let link = Listener::Link { ifindex };
        listener::quiet(pid, link, name.as_str(), Duration::ZERO);
    }
    Ok(())
}

/// The index of link `name` in the calling thread's namespace (if_nametoindex(3)).
fn index_here(name: &IfName) -> Option<u32> {
    let cname = std::ffi::CString::new(name.as_str()).ok()?;
    // SAFETY: `cname` is a NUL-terminated string alive for the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    (index != 0).then_some(index)
}

/// Filters the route listener of the wireguard-go serving `name` (see `listener`), which it
/// opens each time its device comes up or changes its listen port: call after either, with
/// `wait` for how long the process may take to open it.
pub fn quiet_route_listener(name: &IfName, wait: Duration) {
    if let Some(pid) = wireguard_go_pid(name) {
        listener::quiet(pid, Listener::Route, name.as_str(), wait);
    }
}

/// The process serving `name`, if it is wireguard-go itself (whose listeners `listener` knows).
fn wireguard_go_pid(name: &IfName) -> Option<i32> {
    let pid = uapi_server_pid(name.as_str())?;
    serves(pid, name.as_str(), "wireguard-go").then_some(pid)
}

fn program_base(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// Processes serving userspace interface `name`: `wireguard-go NAME` (or the configured
/// implementation). The one listening on the live UAPI socket is asked for directly
/// (SO_PEERCRED), so the cost does not grow with the number of interfaces on the machine; only
/// without a live socket (a process that lost it, or one still starting) is /proc searched.
pub fn userspace_pids(name: &str) -> Vec<i32> {
    let program = userspace_program();
    if let Some(pid) = uapi_server_pid(name).filter(|pid| serves(*pid, name, &program)) {
        return vec![pid];
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| serves(*pid, name, &program))
        .collect()
}

/// The process that listens on `name`'s UAPI socket, if it is live.
fn uapi_server_pid(name: &str) -> Option<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let stream = UnixStream::connect(uapi_path(name)).ok()?;
    let pid = getsockopt(&stream, PeerCredentials).ok()?.pid();
    (pid > 0).then_some(pid)
}

/// Whether process `pid` is `program NAME` (or `wireguard-go NAME`).
fn serves(pid: i32, name: &str, program: &str) -> bool {
    let Ok(raw) = std::fs::read(format!("/proc/{pid}/cmdline")) else {
        return false;
    };
    let argv: Vec<String> = raw
        .split(|b| *b == 0)
        .filter(|a| !a.is_empty())
        .map(|a| String::from_utf8_lossy(a).into_owned())
        .collect();
    argv.len() >= 2
        && argv.last().map(String::as_str) == Some(name)
        && (program_base(&argv[0]) == program_base(program)
            || program_base(&argv[0]) == "wireguard-go")
}

fn alive(pid: i32) -> bool {
    // A zombie still has /proc/PID; it holds no descriptors any more, which is what matters.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit(')')
            .next()
            .is_some_and(|rest| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

fn wait_gone(pids: &[i32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        // Short: wireguard-go exits within a few ms of SIGTERM, and `iface del` waits for it.
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Stops the userspace implementation serving `name` (SIGTERM, then SIGKILL) and removes its
/// UAPI socket. Returns whether there was anything to stop or remove.
pub fn stop_userspace(name: &str) -> Result<bool> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    let pids = userspace_pids(name);
    for pid in &pids {
        vlog!(1, "stopping {} {name} (pid {pid})", userspace_program());
        let _ = kill(Pid::from_raw(*pid), Signal::SIGTERM);
    }
    if !wait_gone(&pids, Duration::from_secs(3)) {
        for pid in &pids {
            let _ = kill(Pid::from_raw(*pid), Signal::SIGKILL);
        }
        if !wait_gone(&pids, Duration::from_secs(2)) {
            return Err(Error::failed(format!(
                "stopping the userspace WireGuard process for {name} (pids {pids:?})"
            )));
        }
    }
    let sock = uapi_path(name);
    let removed = match std::fs::remove_file(&sock) {
        Ok(()) => true,
        Err(e) if e.kind() == ErrorKind::NotFound => false,
        Err(e) => return Err(Error::caused(format!("removing {}", sock.display()), e)),
    };
    Ok(!pids.is_empty() || removed)
}

/// Fails if UDP `port` is already bound in the calling thread's namespace (IPv4 or IPv6), so
/// a conflict is reported before anything is created (wireguard-go binds only later, when the
/// link goes up, and would fail silently).
pub fn check_port_free(port: u16, where_: &str) -> Result<()> {
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
    // One at a time: a dual-stack [::] socket would collide with our own 0.0.0.0 one.
    let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map(drop);
    let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).map(drop);
    for r in [v4, v6] {
        if let Err(e) = r {
            if e.kind() == ErrorKind::AddrInUse {
                return Err(Error::failed(format!(
                    "listen port {port} is already in use in {where_}"
                )));
            }
        }
    }
    Ok(())
}
