//! wgctl's side of wgd (`--userspace wgd`), the one process that serves every userspace
//! interface: it is started on the first `iface add` that needs it and leaves by itself after
//! the last interface is gone. An interface is handed to it whole (its TUN device and its
//! birthplace) over wgd's control socket; everything else goes over the interface's UAPI
//! socket, as for the other implementations.

use std::fs::File;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use common::types::IfName;
use common::{vlog, Context, Error, Result};
use nix::fcntl::{Flock, FlockArg};
use wgd::proto::{self, Reply, Request};

/// How long wgctl waits for a wgd it started to listen, and for an answer.
const WAIT: Duration = Duration::from_secs(15);

/// The wgd to start: `$NIRANSIX_WGD`, else the one installed beside this wgctl (a build
/// directory, or /usr/bin), else `wgd` from PATH.
pub fn program() -> String {
    if let Ok(p) = std::env::var("NIRANSIX_WGD") {
        return p;
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.join("wgd")))
        .filter(|p| p.is_file())
        .map_or_else(|| "wgd".into(), |p| p.display().to_string())
}

/// The named namespace (`/run/netns/NAME`) a TUN device handed to wgd may be opened in, when
/// that is where its link belongs: the link then never moves (a move makes the kernel wait for
/// RCU grace periods). wgd watches the name, and closes the interface when it goes, since the
/// device's descriptor it keeps holds the namespace alive.
pub struct Home<'a> {
    pub name: &'a str,
    pub netns: BorrowedFd<'a>,
}

/// Hands interface `name` to wgd, which binds UDP `port` (0: one the kernel picks) in the
/// calling thread's namespace (`here`, its birthplace). Its TUN device is what `open_tun(vnet,
/// at_home)` opens: in `home` if given and wgd knows homes (`at_home`), else in the birthplace;
/// with a virtio-net header (`vnet`), so that wgd may merge what it writes into it, unless wgd
/// is older than that. Returns whether the device was opened at home.
pub fn add(
    name: &IfName,
    here: &str,
    port: u16,
    home: Option<Home<'_>>,
    open_tun: impl Fn(bool, bool) -> Result<OwnedFd>,
) -> Result<bool> {
    let what = || format!("handing {name} (born in {here}) to wgd");
    let netns = File::open("/proc/thread-self/ns/net").with_context(what)?;
    let _lock = lock()?;
    let (mut vnet, mut at_home) = (true, home.is_some());
    loop {
        let request = Request::Add {
            name: name.to_string(),
            port,
            vnet,
            home: home
                .as_ref()
                .filter(|_| at_home)
                .map(|h| h.name.to_string()),
        };
        let tun = open_tun(vnet, at_home)?;
        let mut fds = vec![tun.as_fd(), netns.as_fd()];
        fds.extend(home.as_ref().filter(|_| at_home).map(|h| h.netns));
        match ask(&request, &fds, connect_or_start).with_context(what)? {
            Reply::Ok(bound) => {
                vlog!(1, "wgd serves {name}, UDP port {bound} in {here}");
                return Ok(at_home);
            }
            // (an older wgd: without the newest word first)
            Reply::Error(e) if at_home && e.ends_with(" is not a request") => {
                vlog!(
                    1,
                    "wgd is older than homes ({e}): a TUN device born in {here}"
                );
                at_home = false;
            }
            Reply::Error(e) if vnet && e.ends_with(" is not a request") => {
                vlog!(
                    1,
                    "wgd is older than virtio-net headers ({e}): a plain TUN device"
                );
                vnet = false;
            }
            Reply::Error(e) => return Err(Error::failed(format!("{}: {e}", what()))),
        }
    }
}

/// Asks the running wgd (if one runs) to close interface `name`; returns whether it served it.
pub fn del(name: &str) -> Result<bool> {
    let what = || format!("asking wgd to close {name}");
    let request = Request::Del { name: name.into() };
    let connect = || {
        UnixStream::connect(proto::socket_path())
            .map_err(|_| Error::failed("wgd does not run".to_string()))
    };
    if connect().is_err() {
        return Ok(false);
    }
    match ask(&request, &[], connect) {
        Ok(Reply::Ok(n)) => Ok(n == 1),
        Ok(Reply::Error(e)) => Err(Error::failed(format!("{}: {e}", what()))),
        // It left (or died) meanwhile, and its interfaces with it.
        Err(_) if connect().is_err() => Ok(false),
        Err(e) => Err(e).with_context(what),
    }
}

/// Sends `request` over a connection from `connect` and reads the answer. A wgd that dies
/// while it answers (killed: its listening socket still queues connections for a moment, then
/// resets them) is asked again, on a new connection, a few times.
fn ask(
    request: &Request,
    fds: &[std::os::fd::BorrowedFd<'_>],
    connect: impl Fn() -> Result<UnixStream>,
) -> Result<Reply> {
    let mut attempt = 0;
    loop {
        let stream = connect()?;
        match exchange(&stream, request, fds) {
            Ok(reply) => return Ok(reply),
            Err(e) if attempt < 3 && gone(&e) => {
                vlog!(1, "wgd went away while answering ({e}): asking again");
                attempt += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(Error::caused("talking to wgd", e)),
        }
    }
}

/// An error of a connection whose other end is gone.
fn gone(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(
        e.kind(),
        ConnectionReset | BrokenPipe | UnexpectedEof | ConnectionAborted
    )
}

fn exchange(
    stream: &UnixStream,
    request: &Request,
    fds: &[std::os::fd::BorrowedFd<'_>],
) -> std::io::Result<Reply> {
    stream.set_read_timeout(Some(WAIT))?;
    stream.set_write_timeout(Some(WAIT))?;
    proto::send(stream, &request.encode(), fds)?;
    let (line, _) = proto::receive(stream)?;
    Ok(Reply::decode(&line))
}

/// wgd's lock (see [`proto::lock_path`]), held while starting it or adding an interface.
fn lock() -> Result<Flock<File>> {
    let path = proto::lock_path();
    std::fs::create_dir_all(proto::RUN_DIR)
        .with_context(|| format!("creating {}", proto::RUN_DIR))?;
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    Flock::lock(file, FlockArg::LockExclusive)
        .map_err(|(_, e)| Error::caused(format!("locking {}", path.display()), e))
}

/// A connection to the running wgd, started first if none runs. A wgd that refuses to start
/// because another one still answers (one that is dying: killed, its listening socket not yet
/// closed) is started again, a few times.
fn connect_or_start() -> Result<UnixStream> {
    let path: PathBuf = proto::socket_path();
    let program = program();
    let mut attempt = 0;
    loop {
        if let Ok(stream) = UnixStream::connect(&path) {
            return Ok(stream);
        }
        vlog!(1, "starting {program}");
        let mut child = crate::userspace::detached(&program, None)
            .spawn()
            .with_context(|| format!("starting {program}"))?;
        let deadline = Instant::now() + WAIT;
        let status = loop {
            if let Ok(stream) = UnixStream::connect(&path) {
                return Ok(stream);
            }
            if let Ok(Some(status)) = child.try_wait() {
                break status;
            }
            if Instant::now() > deadline {
                let _ = child.kill();
                let _ = child.wait();
                return Err(Error::failed(format!(
                    "{program} started but its control socket {} never appeared",
                    path.display()
                )));
            }
            std::thread::sleep(Duration::from_millis(1));
        };
        attempt += 1;
        if attempt == 3 {
            return Err(Error::failed(format!(
                "starting {program}: it exited with {status}"
            )));
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}
