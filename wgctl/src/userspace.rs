//! The userspace implementations wgctl starts for the userspace backend, and what differs
//! between them (`--userspace`, or `$NIRANSIX_WG_USERSPACE`):
//!
//! - **wgd** (the default, [`DEFAULT`]): one process for every interface (the `wgd` crate);
//!   wgctl makes the TUN device and hands it over with the birthplace ([`crate::wgd`]).
//! - **boringtun** (lighter per peer than wireguard-go, bench/userspace.sh): `boringtun-cli`,
//!   Cloudflare's implementation in Rust. wgctl opens its TUN device itself, in the birthplace, and hands it over as a descriptor (`--tun-fd N`), because
//!   boringtun-cli 0.7 re-reads the MTU of a device it opened by name every second, through a
//!   socket of its own namespace: once the link has moved into another namespace that read
//!   fails and leaks the socket, one descriptor a second for ever. Given a descriptor it reads
//!   no MTU (it reads packets into a 1500-byte buffer, so the MTU may not exceed 1500) and names
//!   its UAPI socket after the descriptor, `/var/run/wireguard/N.sock`: wgctl picks an N no
//!   live boringtun uses (under a lock) and links `NAME.sock` to the same socket, so wgctl and
//!   `wg` find it by the interface's name. It opens its UDP socket only when it is given a listen
//!   port, and listens to no netlink events at all (nothing for `listener` to filter).
//! - **wireguard-go** (`$WG_USERSPACE_IMPLEMENTATION`, as wg-quick honours it, or
//!   `wireguard-go`): creates its TUN device by name, UAPI socket `/var/run/wireguard/NAME.sock`.
//!
//! The last two run one process per interface, started in the birthplace (where the UDP socket is
//! bound), in the foreground, in a session of their own, with /dev/null for stdin/stdout/stderr,
//! no descriptor of ours (but the TUN device's) and an environment holding only PATH; keys
//! reach them only over the UAPI socket.

use std::fs::File;
use std::os::fd::{AsRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::types::IfName;
use common::{vlog, Context, Error, Result};
use nix::fcntl::{Flock, FlockArg};
use serde::Serialize;

use crate::backend::{uapi_path, uapi_state, Uapi, UAPI_DIR};

/// `--userspace`: which implementation serves a userspace interface.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, clap::ValueEnum)]
pub enum Userspace {
    /// Go's reference implementation
    #[value(name = "wireguard-go")]
    #[serde(rename = "wireguard-go")]
    WireguardGo,
    /// Cloudflare's, in Rust (boringtun-cli)
    #[value(name = "boringtun")]
    #[serde(rename = "boringtun")]
    Boringtun,
    /// niransix's one process for every interface, on boringtun's protocol library
    #[value(name = "wgd")]
    #[serde(rename = "wgd")]
    Wgd,
}

/// The implementation a new userspace interface gets without `--userspace`: wgd, which
/// bench/userspace.sh measures best where it matters for a hub (at 1,000 interfaces: 0.09 MB
/// and 0.1 % of the machine idle for all of them, against 2.1 MB and 5.7 % for wireguard-go;
/// throughput 1.4x wireguard-go's, 0.9x boringtun-cli's) and which holds no random port
/// (boringtun-cli 0.7 does, see docs/wgctl.md).
pub const DEFAULT: Userspace = Userspace::Wgd;

/// The MTU of a boringtun or wgd interface created without `--mtu` (wireguard-go's and the
/// kernel's; wgctl makes their TUN devices, which start at 1500).
pub const TUN_MTU: u32 = 1420;

/// boringtun reads each packet into a buffer of this size when it is given its TUN device.
const BORINGTUN_MAX_MTU: u32 = 1500;

/// boringtun's worker threads per interface: one serves an idle interface with the least
/// memory, and bench/userspace.sh shows a second adds no throughput on this machine.
const BORINGTUN_THREADS: &str = "1";

/// The descriptor numbers boringtun's UAPI sockets are named after start here (0-2 are stdio).
const FIRST_TUN_FD: u32 = 3;

impl Userspace {
    pub fn as_str(self) -> &'static str {
        match self {
            Userspace::WireguardGo => "wireguard-go",
            Userspace::Boringtun => "boringtun",
            Userspace::Wgd => "wgd",
        }
    }

    /// The program started for it.
    pub fn program(self) -> String {
        match self {
            Userspace::WireguardGo => std::env::var("WG_USERSPACE_IMPLEMENTATION")
                .or_else(|_| std::env::var("WG_QUICK_USERSPACE_IMPLEMENTATION"))
                .unwrap_or_else(|_| "wireguard-go".into()),
            Userspace::Boringtun => "boringtun-cli".into(),
            Userspace::Wgd => crate::wgd::program(),
        }
    }

    /// The implementation a program is, by its file name.
    fn of_program(argv0: &str) -> Option<Userspace> {
        let base = program_base(argv0);
        if base == "boringtun-cli" || base == "boringtun" {
            Some(Userspace::Boringtun)
        } else if base == "wgd" {
            Some(Userspace::Wgd)
        } else if base == "wireguard-go" || base == program_base(&Self::WireguardGo.program()) {
            Some(Userspace::WireguardGo)
        } else {
            None
        }
    }
}

fn program_base(program: &str) -> &str {
    program.rsplit('/').next().unwrap_or(program)
}

/// The command line of process `pid`.
fn cmdline(pid: i32) -> Option<Vec<String>> {
    let raw = std::fs::read(format!("/proc/{pid}/cmdline")).ok()?;
    Some(
        raw.split(|b| *b == 0)
            .filter(|a| !a.is_empty())
            .map(|a| String::from_utf8_lossy(a).into_owned())
            .collect(),
    )
}

/// The implementation process `pid` runs, if it serves interface `name` (`PROGRAM .. NAME`).
/// wgd, which serves every interface and names none, is never found this way: only through
/// an interface's UAPI socket ([`serving_socket`]).
pub fn serving(pid: i32, name: &str) -> Option<Userspace> {
    let argv = cmdline(pid)?;
    if argv.len() < 2 || argv.last().map(String::as_str) != Some(name) {
        return None;
    }
    Userspace::of_program(&argv[0]).filter(|u| *u != Userspace::Wgd)
}

/// The implementation process `pid`, found listening on interface `name`'s UAPI socket, runs.
pub fn serving_socket(pid: i32, name: &str) -> Option<Userspace> {
    serving(pid, name).or_else(|| {
        let argv = cmdline(pid)?;
        (program_base(argv.first()?) == "wgd").then_some(Userspace::Wgd)
    })
}

/// The UAPI socket a boringtun process named after its TUN descriptor (`--tun-fd N`), beside
/// the `NAME.sock` wgctl linked to it.
pub fn own_socket(pid: i32) -> Option<PathBuf> {
    let argv = cmdline(pid)?;
    let at = argv.iter().position(|a| a == "--tun-fd")?;
    let n: u32 = argv.get(at + 1)?.parse().ok()?;
    Some(uapi_path(&n.to_string()))
}

/// Starts `userspace` for interface `name` in the calling thread's namespace (`here`) and
/// waits until `NAME.sock` answers. `mtu` is the one asked for (checked against boringtun's
/// limit before anything is made). wgd binds `port` at once (0: one the kernel picks).
pub fn start(
    userspace: Userspace,
    name: &IfName,
    here: &str,
    mtu: Option<u32>,
    port: Option<u16>,
) -> Result<()> {
    match userspace {
        Userspace::WireguardGo => launch(userspace, name, here, None),
        Userspace::Boringtun => start_boringtun(name, here, mtu),
        Userspace::Wgd => crate::wgd::add(name, here, port.unwrap_or(0), None, |vnet, _| {
            open_tun(name, here, vnet)
        })
        .map(|_| ()),
    }
}

/// The TUN descriptor a boringtun child gets, and the number it gets it under.
#[derive(Clone, Copy)]
pub struct TunFd {
    ours: RawFd,
    theirs: u32,
}

/// Fails (exit 2) if `userspace` cannot serve interface `name` with MTU `mtu`.
pub fn check_mtu(userspace: Userspace, name: &IfName, mtu: u32) -> Result<()> {
    if userspace == Userspace::Boringtun && mtu > BORINGTUN_MAX_MTU {
        return Err(Error::invalid(format!(
            "mtu {mtu} for {name}: boringtun reads at most {BORINGTUN_MAX_MTU} bytes a packet; \
             use --userspace wireguard-go for a larger MTU"
        )));
    }
    Ok(())
}

fn start_boringtun(name: &IfName, here: &str, mtu: Option<u32>) -> Result<()> {
    if let Some(m) = mtu {
        check_mtu(Userspace::Boringtun, name, m)?;
    }
    let _lock = lock_uapi_dir()?;
    let number = free_tun_number();
    let tun = open_tun(name, here, false)?;
    let fd = TunFd {
        ours: tun.as_raw_fd(),
        theirs: number,
    };
    launch(Userspace::Boringtun, name, here, Some(fd))?;
    drop(tun);
    let own = uapi_path(&number.to_string());
    let named = uapi_path(name.as_str());
    match std::fs::remove_file(&named) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::caused(format!("removing {}", named.display()), e)),
    }
    std::fs::hard_link(&own, &named).with_context(|| {
        format!(
            "linking {} to boringtun's UAPI socket {} for {name}",
            named.display(),
            own.display()
        )
    })
}

/// Holds `/var/run/wireguard/.boringtun.lock`: one wgctl at a time picks a descriptor number
/// and links its socket.
fn lock_uapi_dir() -> Result<Flock<File>> {
    std::fs::create_dir_all(UAPI_DIR).with_context(|| format!("creating {UAPI_DIR}"))?;
    let path = format!("{UAPI_DIR}/.boringtun.lock");
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {path}"))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::caused(format!("locking {path}"), e))
}

/// The lowest descriptor number whose UAPI socket `N.sock` no live boringtun holds.
fn free_tun_number() -> u32 {
    (FIRST_TUN_FD..)
        .find(|n| uapi_state(&n.to_string()) != Uapi::Live)
        .unwrap_or(FIRST_TUN_FD)
}

/// Opens TUN device `name` in the calling thread's namespace (like `ip tuntap add NAME mode
/// tun`, without packet information; it lives as long as a descriptor of it is open). With
/// `vnet`, a virtio-net header comes before every packet (`IFF_VNET_HDR`, what wgd reads).
pub fn open_tun(name: &IfName, here: &str, vnet: bool) -> Result<OwnedFd> {
    let what = || format!("creating TUN device {name} in {here}");
    let file = File::options()
        .read(true)
        .write(true)
        .open("/dev/net/tun")
        .with_context(|| format!("{}: opening /dev/net/tun", what()))?;
    // SAFETY: ifreq is plain old data; all zeroes is a valid value.
    let mut req: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in req.ifr_name.iter_mut().zip(name.as_str().bytes()) {
        *dst = src as libc::c_char;
    }
    let header = if vnet { libc::IFF_VNET_HDR } else { 0 };
    req.ifr_ifru.ifru_flags = (libc::IFF_TUN | libc::IFF_NO_PI | header) as libc::c_short;
    // SAFETY: TUNSETIFF reads and writes one ifreq, which lives across the call.
    if unsafe { libc::ioctl(file.as_raw_fd(), libc::TUNSETIFF, &mut req) } < 0 {
        return Err(Error::caused(what(), std::io::Error::last_os_error()));
    }
    Ok(OwnedFd::from(file))
}

/// Starts the program and waits for its UAPI socket: `NAME.sock` for wireguard-go, `N.sock`
/// for a boringtun given its TUN device as descriptor N.
fn launch(userspace: Userspace, name: &IfName, here: &str, tun: Option<TunFd>) -> Result<()> {
    let program = userspace.program();
    let mut cmd = detached(&program, tun);
    let socket = match (userspace, tun) {
        (Userspace::Boringtun, Some(fd)) => {
            cmd.args(["--foreground", "--disable-drop-privileges", "--threads"])
                .arg(BORINGTUN_THREADS)
                .arg("--tun-fd")
                .arg(fd.theirs.to_string());
            fd.theirs.to_string()
        }
        _ => {
            // One Go start instead of two: the daemonising re-exec is skipped.
            cmd.env("WG_PROCESS_FOREGROUND", "1");
            name.to_string()
        }
    };
    cmd.arg(name.as_str());
    vlog!(1, "starting {program} {name} in {here}");
    let child = cmd
        .spawn()
        .with_context(|| format!("starting {program} {name} in {here}"))?;
    wait_for_socket(child, &program, name, here, &socket)
}

/// A command for a daemon: in a session of its own, in `/`, with /dev/null for stdin, stdout
/// and stderr, an environment holding only PATH, and no descriptor of ours but `tun` (at the
/// number it is to have).
pub fn detached(program: &str, tun: Option<TunFd>) -> Command {
    let mut cmd = Command::new(program);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .current_dir("/")
        .env_clear();
    if let Some(path) = std::env::var_os("PATH") {
        cmd.env("PATH", path);
    }
    // SAFETY: the closure runs in the forked child before exec, where only async-signal-safe
    // calls are allowed: raw system calls, no allocation, no lock. CLOSE_RANGE_CLOEXEC marks
    // descriptors >= 3 close-on-exec instead of closing them, so no descriptor another owner
    // holds (std's pipe that reports a failed exec) is closed behind its back; the TUN device
    // is then duplicated to the number boringtun is told (dup2 clears close-on-exec).
    unsafe {
        cmd.pre_exec(move || {
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
            if let Some(fd) = tun {
                hand_over(fd)?;
            }
            Ok(())
        });
    }
    cmd
}

/// In the child: puts the TUN descriptor at the number boringtun is told, raising the
/// descriptor limit if that number is beyond it.
fn hand_over(fd: TunFd) -> std::io::Result<()> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit/setrlimit read or write one rlimit, alive across the call.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) == 0
            && limit.rlim_cur <= libc::rlim_t::from(fd.theirs) + 64
        {
            limit.rlim_cur = (libc::rlim_t::from(fd.theirs) + 1024).min(limit.rlim_max);
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
    let theirs = fd.theirs as RawFd;
    // SAFETY: dup2/fcntl on descriptors of this (child) process.
    let r = unsafe {
        if fd.ours == theirs {
            libc::fcntl(theirs, libc::F_SETFD, 0)
        } else {
            libc::dup2(fd.ours, theirs)
        }
    };
    if r < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// Waits until UAPI socket `socket` (`socket.sock`) is live; a program that exits 0 may have
/// daemonised, one that exits otherwise failed.
fn wait_for_socket(
    mut child: Child,
    program: &str,
    name: &IfName,
    here: &str,
    socket: &str,
) -> Result<()> {
    // Generous: a Go program starting under emulation (the kernel VM lane) takes seconds.
    let deadline = Instant::now() + Duration::from_secs(15);
    let mut exited_ok = false;
    while uapi_state(socket) != Uapi::Live {
        if !exited_ok {
            match child.try_wait() {
                Ok(Some(status)) if status.success() => exited_ok = true,
                Ok(Some(status)) => {
                    return Err(Error::failed(format!(
                        "starting {program} {name} in {here}: it exited with {status}"
                    )));
                }
                _ => {}
            }
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            let _ = child.wait();
            return Err(Error::failed(format!(
                "{program} {name} started in {here} but its UAPI socket {} never appeared",
                uapi_path(socket).display()
            )));
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    Ok(())
}
