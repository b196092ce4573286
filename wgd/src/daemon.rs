//! The control thread: the control socket ([`crate::proto`]), which worker serves which
//! interface, signals, and leaving when nothing is served.
//!
//! wgd serves as long as it has interfaces. After the last one goes it leaves at once, and one
//! that never got an interface leaves after [`FIRST_ADD_WAIT`]: like a wireguard-go per
//! interface, nothing of it outlives the interfaces it served. SIGTERM or SIGINT close every
//! interface (their links go with them) and leave.
//!
//! An interface goes when wgctl deletes it, when its link or the namespace it lives in is
//! deleted, or when its UAPI socket file is removed (as `rm /var/run/wireguard/NAME.sock` is
//! the end of a wireguard-go whose process is gone): an interface whose namespace was only
//! unmounted (`ip netns del` while its own UDP socket, which wgd holds, keeps that namespace
//! alive) is closed that way, and its namespace freed. One whose TUN device was opened in a
//! named namespace goes when that name does ([`crate::homes`]).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::net::{UnixListener, UnixStream};
use std::sync::mpsc::channel;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use nix::fcntl::{Flock, FlockArg};
use nix::poll::{poll, PollFd, PollFlags};
use nix::sys::inotify::{AddWatchFlags, InitFlags, Inotify, InotifyEvent};
use nix::sys::signal::{SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};

use crate::homes::{Home, Homes};
use crate::iface::{uapi_file_is, UAPI_DIR};
use crate::proto::{self, Reply, Request};
use crate::tun;
use crate::worker::{self, Handle, Order};

/// How long a wgd that has served nothing yet waits for its first interface.
pub const FIRST_ADD_WAIT: Duration = Duration::from_secs(10);

/// How long the control thread waits for a worker to open or close an interface.
const WORKER_WAIT: Duration = Duration::from_secs(10);

/// How often every interface's UAPI socket file and home namespace's name are looked at,
/// besides the directories' removal events (which stop if a directory itself is removed and
/// made again).
const SWEEP: Duration = Duration::from_secs(10);

/// Which worker serves an interface, the interface's id there, and its UAPI socket file
/// (device, inode).
#[derive(Debug, Clone, Copy)]
pub struct Entry {
    pub worker: usize,
    pub id: u32,
    pub uapi_file: (u64, u64),
}

/// Every interface served, by name; workers strike those whose TUN device went away.
pub type Registry = Arc<Mutex<HashMap<String, Entry>>>;

pub struct Options {
    pub workers: usize,
}

struct Daemon {
    listener: UnixListener,
    /// Removals from the UAPI directory and from /run/netns.
    removals: Inotify,
    homes: Homes,
    registry: Registry,
    workers: Vec<Handle>,
    next_id: u32,
    served_any: bool,
    started: Instant,
}

/// Runs wgd until it has nothing to serve or is told to stop.
pub fn run(options: Options) -> Result<(), String> {
    // Sockets and files wgd makes are root's alone.
    nix::sys::stat::umask(nix::sys::stat::Mode::from_bits_truncate(0o077));
    std::fs::create_dir_all(proto::RUN_DIR)
        .map_err(|e| format!("creating {}: {e}", proto::RUN_DIR))?;
    let path = proto::socket_path();
    if UnixStream::connect(&path).is_ok() {
        return Err(format!("{} is live: wgd runs already", path.display()));
    }
    let _ = std::fs::remove_file(&path);
    let listener =
        UnixListener::bind(&path).map_err(|e| format!("listening on {}: {e}", path.display()))?;

    let mut signals = SigSet::empty();
    for s in [Signal::SIGTERM, Signal::SIGINT, Signal::SIGHUP] {
        signals.add(s);
    }
    // Blocked here, before the workers start, so every thread inherits it: signals reach
    // only the signalfd.
    signals
        .thread_block()
        .map_err(|e| format!("blocking signals: {e}"))?;
    let signal_fd = SignalFd::with_flags(&signals, SfdFlags::SFD_CLOEXEC)
        .map_err(|e| format!("opening a signalfd: {e}"))?;

    // Out of whichever namespace the wgctl that started it was in, into an empty one of its
    // own: a process left in a namespace keeps it alive after `ip netns del`. Each interface's
    // sockets are made in its own birthplace; the control and UAPI sockets are paths, which
    // every namespace reaches.
    nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)
        .map_err(|e| format!("making a network namespace of its own: {e}"))?;
    std::fs::create_dir_all(UAPI_DIR).map_err(|e| format!("creating {UAPI_DIR}: {e}"))?;
    let removals = Inotify::init(InitFlags::IN_NONBLOCK | InitFlags::IN_CLOEXEC)
        .and_then(|i| {
            i.add_watch(
                UAPI_DIR,
                AddWatchFlags::IN_DELETE | AddWatchFlags::IN_MOVED_FROM,
            )?;
            Ok(i)
        })
        .map_err(|e| format!("watching {UAPI_DIR}: {e}"))?;
    let registry: Registry = Arc::default();
    let workers = (0..options.workers.max(1))
        .map(|i| worker::spawn(i, Arc::clone(&registry)))
        .collect::<std::io::Result<Vec<_>>>()
        .map_err(|e| format!("starting the workers: {e}"))?;
    let mut daemon = Daemon {
        listener,
        removals,
        homes: Homes::default(),
        registry,
        workers,
        next_id: 1,
        served_any: false,
        started: Instant::now(),
    };
    daemon.serve(&signal_fd);
    let _ = std::fs::remove_file(&path);
    for w in daemon.workers {
        w.join();
    }
    Ok(())
}

impl Daemon {
    fn serve(&mut self, signal_fd: &SignalFd) {
        let mut swept = Instant::now();
        loop {
            let mut fds = [
                PollFd::new(self.listener.as_fd(), PollFlags::POLLIN),
                PollFd::new(signal_fd.as_fd(), PollFlags::POLLIN),
                PollFd::new(self.removals.as_fd(), PollFlags::POLLIN),
            ];
            let _ = poll(&mut fds, 1000u16);
            let [listening, signalled, removed] = fds.map(|f| f.any().unwrap_or(false));
            if signalled {
                return;
            }
            if removed {
                self.close_removed();
            }
            if swept.elapsed() >= SWEEP {
                self.close_unlinked();
                self.close_homeless();
                swept = Instant::now();
            }
            if listening {
                if let Ok((stream, _)) = self.listener.accept() {
                    self.handle(&stream);
                }
            }
            if self.nothing_to_serve() {
                // Held until the process exits: a wgctl that takes it next finds no socket
                // and starts a new wgd.
                if let Some(lock) = try_lock() {
                    if self.registry.lock().expect("registry lock").is_empty() {
                        let _ = std::fs::remove_file(proto::socket_path());
                        std::mem::forget(lock);
                        return;
                    }
                }
            }
        }
    }

    /// Closes the interfaces whose UAPI socket file was removed (or replaced by another's), and
    /// those whose home namespace's name was.
    fn close_removed(&mut self) {
        let Ok(events) = self.removals.read_events() else {
            return;
        };
        for event in events {
            let name = event.name.as_ref().and_then(|n| n.to_str());
            if self.homes.is_watch(event.wd) {
                self.on_netns_event(&event, name);
                continue;
            }
            let Some(name) = name.and_then(|n| n.strip_suffix(".sock")) else {
                continue;
            };
            let entry = self
                .registry
                .lock()
                .expect("registry lock")
                .get(name)
                .copied();
            if entry.is_some_and(|e| !uapi_file_is(name, e.uapi_file)) {
                self.del(name);
            }
        }
    }

    /// A name removed from (or moved within) /run/netns: the interfaces at home there close if
    /// it no longer names their namespace.
    fn on_netns_event(&mut self, event: &InotifyEvent, name: Option<&str>) {
        if event.mask.contains(AddWatchFlags::IN_IGNORED) {
            self.homes.lost_watch();
        }
        if let Some(name) = name {
            for iface in self.homes.homeless(Some(name)) {
                self.del(&iface);
            }
        }
    }

    /// Closes the interfaces whose home namespace lost its name without an event seen (the
    /// directory removed and made again), and forgets those the workers struck.
    fn close_homeless(&mut self) {
        {
            let registry = self.registry.lock().expect("registry lock");
            self.homes.retain(|iface| registry.contains_key(iface));
        }
        if self.homes.is_empty() {
            return;
        }
        if let Err(e) = self.homes.watch(&self.removals) {
            warn(&e);
        }
        for iface in self.homes.homeless(None) {
            self.del(&iface);
        }
    }

    /// Closes the interfaces whose UAPI socket file is no longer theirs.
    fn close_unlinked(&mut self) {
        let gone: Vec<String> = self
            .registry
            .lock()
            .expect("registry lock")
            .iter()
            .filter(|(name, e)| !uapi_file_is(name, e.uapi_file))
            .map(|(name, _)| name.clone())
            .collect();
        for name in gone {
            self.del(&name);
        }
    }

    fn nothing_to_serve(&self) -> bool {
        self.registry.lock().expect("registry lock").is_empty()
            && (self.served_any || self.started.elapsed() > FIRST_ADD_WAIT)
    }

    /// One request on a control connection.
    fn handle(&mut self, stream: &UnixStream) {
        let _ = stream.set_read_timeout(Some(Duration::from_secs(2)));
        let reply = match proto::receive(stream) {
            Ok((line, fds)) => match Request::decode(&line) {
                Ok(Request::Add {
                    name,
                    port,
                    vnet,
                    home,
                }) => {
                    let mut fds = fds.into_iter();
                    match (fds.next(), fds.next(), fds.next(), home) {
                        (Some(tun), Some(netns), None, None) => {
                            self.add_checked(name, tun, netns, port, vnet, None)
                        }
                        (Some(tun), Some(netns), Some(home_fd), Some(home)) => {
                            match self.home(&home, &home_fd) {
                                Ok(home) => {
                                    self.add_checked(name, tun, netns, port, vnet, Some(home))
                                }
                                Err(e) => Reply::Error(format!("add {name}: {e}")),
                            }
                        }
                        (.., home) => Reply::Error(format!(
                            "add {name}: the TUN device and the namespace{} must come with it",
                            if home.is_some() { "s" } else { "" }
                        )),
                    }
                }
                Ok(Request::Del { name }) => self.del(&name),
                Err(e) => Reply::Error(e),
            },
            Err(e) => Reply::Error(format!("reading the request: {e}")),
        };
        let _ = stream.set_write_timeout(Some(Duration::from_secs(2)));
        let _ = proto::send(stream, &reply.encode(), &[]);
    }

    /// Home namespace `name`, given as `netns`, watched from now on (before its name is
    /// compared, so that no removal goes unseen).
    fn home(&mut self, name: &str, netns: &OwnedFd) -> Result<Home, String> {
        self.homes.watch(&self.removals)?;
        Home::new(name, netns)
    }

    /// [`Daemon::add`], once the TUN device is known to have the header `vnet` says.
    fn add_checked(
        &mut self,
        name: String,
        tun: OwnedFd,
        netns: OwnedFd,
        port: u16,
        vnet: bool,
        home: Option<Home>,
    ) -> Reply {
        match tun::has_vnet_header(&tun) {
            Ok(has) if has == vnet => self.add(name, tun, netns, port, home),
            Ok(has) => Reply::Error(format!(
                "add {name}: the TUN device {} a virtio-net header, and the request says it {}",
                if has { "has" } else { "lacks" },
                if vnet { "has" } else { "lacks" },
            )),
            Err(e) => Reply::Error(format!(
                "add {name}: reading the TUN device's flags: {}",
                e.desc()
            )),
        }
    }

    fn add(
        &mut self,
        name: String,
        tun: OwnedFd,
        netns: OwnedFd,
        port: u16,
        home: Option<Home>,
    ) -> Reply {
        // A name served already (its link gone, not yet noticed) is served anew.
        self.del(&name);
        let worker = self.least_busy();
        let id = self.next_id;
        self.next_id = self.next_id.wrapping_add(1).max(1);
        let (reply, answer) = channel();
        self.workers[worker].send(Order::Add {
            id,
            name: name.clone(),
            tun,
            netns,
            port,
            reply,
        });
        match answer.recv_timeout(WORKER_WAIT) {
            Ok(Ok(opened)) => {
                let entry = Entry {
                    worker,
                    id,
                    uapi_file: opened.uapi_file,
                };
                if let Some(home) = home {
                    self.homes.insert(&name, home);
                }
                self.registry
                    .lock()
                    .expect("registry lock")
                    .insert(name, entry);
                self.served_any = true;
                Reply::Ok(u32::from(opened.port))
            }
            Ok(Err(e)) => Reply::Error(e),
            Err(_) => Reply::Error(format!("worker {worker} did not open {name}")),
        }
    }

    fn del(&mut self, name: &str) -> Reply {
        self.homes.remove(name);
        let Some(entry) = self.registry.lock().expect("registry lock").remove(name) else {
            return Reply::Ok(0);
        };
        let (reply, answer) = channel();
        self.workers[entry.worker].send(Order::Del {
            id: entry.id,
            reply,
        });
        match answer.recv_timeout(WORKER_WAIT) {
            Ok(was) => Reply::Ok(u32::from(was)),
            Err(_) => Reply::Error(format!("worker {} did not close {name}", entry.worker)),
        }
    }

    fn least_busy(&self) -> usize {
        let registry = self.registry.lock().expect("registry lock");
        let mut load = vec![0usize; self.workers.len()];
        for e in registry.values() {
            load[e.worker] += 1;
        }
        (0..load.len()).min_by_key(|w| load[*w]).unwrap_or(0)
    }
}

/// The lock wgctl holds while it starts wgd or adds an interface, if free now.
/// Tells the system log (the journal under systemd: `journalctl -t wgd`) what an operator
/// should know while wgd runs: its standard streams go nowhere, wgctl starts it detached.
pub fn warn(message: &str) {
    let Ok(text) = std::ffi::CString::new(message) else {
        return;
    };
    // SAFETY: both strings are NUL-terminated and live across the call; "%s" takes one.
    unsafe {
        libc::syslog(
            libc::LOG_DAEMON | libc::LOG_WARNING,
            c"%s".as_ptr(),
            text.as_ptr(),
        )
    };
}

fn try_lock() -> Option<Flock<File>> {
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(proto::lock_path())
        .ok()?;
    Flock::lock(file, FlockArg::LockExclusiveNonblock).ok()
}
