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
//!
//! [`Iface`] is the one handle `iface add` and `iface del` act through: an interface, the
//! namespace it is born in and the one it ends up in.

use std::cell::Cell;
use std::future::Future;
use std::io::ErrorKind;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::listener::{self, Listener};
use crate::userspace::{self, Userspace};
use common::link::{delete_link_if_exists, LinkExt};
use common::netns::{current_id, run_in, NetnsFd};
use common::types::{IfName, NsTarget};
use common::{vlog, Context, Ctx, Error, Result};
use netlink_packet_route::link::{InfoKind, LinkMessage};
use rtnetlink::{Handle, LinkUnspec, LinkWireguard};
use serde::Serialize;
use wireguard_control::{Device, DeviceUpdate, InterfaceName, Key, PeerInfo};

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

/// Whether the kernel module looks available, without changing anything (for `--check`).
pub fn kernel_probably_supported() -> bool {
    Path::new("/sys/module/wireguard").exists()
}

// ---------------------------------------------------------------------------------------------
// One interface and the two namespaces it spans

/// One of the two namespaces an [`Iface`] spans.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The birthplace, the `--ns` namespace the command runs in: the kernel link is created, or
    /// wireguard-go started, there, and the interface's UDP socket stays there.
    Birth,
    /// Where the interface ends up: `--into-ns`, or the birthplace itself without it.
    Dest,
}

/// A namespace as an [`Iface`] names and enters it.
struct Namespace {
    /// For messages: "namespace c1", "the current namespace".
    label: String,
    /// For JSON (`netns`, `birth_netns`); None is the caller's namespace.
    json: Option<String>,
    /// None: the namespace the command runs in.
    fd: Option<NetnsFd>,
    /// Its name under /run/netns, if it was given by one.
    name: Option<String>,
}

impl Namespace {
    fn run<T>(&self, work: impl FnOnce() -> Result<T>) -> Result<T> {
        match &self.fd {
            Some(fd) => run_in(fd, work),
            None => work(),
        }
    }

    /// Netlink work on link `name` here, given its index.
    fn on_link<T, F, Fut>(&self, name: &IfName, work: F) -> Result<T>
    where
        F: FnOnce(Handle, u32) -> Fut,
        Fut: Future<Output = Result<T>>,
    {
        self.run(|| {
            netlink(|h| async move {
                let index = common::nl::link_index(&h, name.as_str(), &self.label).await?;
                work(h, index).await
            })
        })
    }
}

/// An interface's own WireGuard settings, as `wg set NAME private-key .. listen-port ..
/// fwmark ..` sets them: None leaves one as it is.
pub struct Settings {
    pub private_key: Option<Key>,
    pub listen_port: Option<u16>,
    pub fwmark: Option<u32>,
}

/// How long `iface add` waits for wireguard-go to open its route listener once its link is up:
/// it sees an "up" in its own namespace at once, one in another namespace at the next tick of
/// its once-a-second check (on kernels where that check can tell; docs/wgctl.md), plus a margin
/// for a loaded machine.
const ROUTE_LISTENER_WAIT: Duration = Duration::from_secs(2);

/// One WireGuard interface and the two namespaces it spans: where it is born (the command's
/// `--ns`) and where it ends up (`--into-ns`). `iface add` and `iface del` act only through
/// it, one call per step; each runs in the namespace it belongs to and names it in its errors.
pub struct Iface {
    pub name: IfName,
    birth: Namespace,
    /// `--into-ns`, unless it is the birthplace itself.
    dest: Option<Namespace>,
    /// A listener left unfiltered was reported (once per interface).
    warned: Cell<bool>,
}

impl Iface {
    /// Interface `name` of a command running in `ctx`'s namespace, moved into `into` if given.
    pub fn new(ctx: &Ctx, name: &IfName, into: Option<&NsTarget>) -> Result<Iface> {
        let dest = match into {
            Some(target) => {
                let fd = NetnsFd::open(target)?;
                (fd.id()? != current_id()?).then(|| Namespace {
                    label: format!("namespace {target}"),
                    json: Some(target.to_string()),
                    fd: Some(fd),
                    name: match target {
                        NsTarget::Name(name) => Some(name.to_string()),
                        NsTarget::Path(_) => None,
                    },
                })
            }
            None => None,
        };
        let birth = Namespace {
            label: ctx.ns_label(),
            json: ctx.netns_name(),
            fd: None,
            name: None,
        };
        Ok(Iface {
            name: name.clone(),
            birth,
            dest,
            warned: Cell::new(false),
        })
    }

    /// Whether it moves: `--into-ns` named another namespace than the birthplace.
    pub fn moves(&self) -> bool {
        self.dest.is_some()
    }

    fn ns(&self, side: Side) -> &Namespace {
        match (side, &self.dest) {
            (Side::Dest, Some(dest)) => dest,
            _ => &self.birth,
        }
    }

    /// The namespace of `side`, for messages.
    pub fn label(&self, side: Side) -> &str {
        &self.ns(side).label
    }

    /// The namespace of `side`, for JSON (None: the caller's).
    pub fn netns(&self, side: Side) -> Option<String> {
        self.ns(side).json.clone()
    }

    /// Its namespaces, `first` first (just one when it does not move), to look for it in.
    pub fn sides(&self, first: Side) -> Vec<Side> {
        let other = match first {
            Side::Birth => Side::Dest,
            Side::Dest => Side::Birth,
        };
        if self.moves() {
            vec![first, other]
        } else {
            vec![first]
        }
    }

    /// What the name is in the namespace of `side`.
    pub fn lookup(&self, side: Side) -> Result<Found> {
        self.ns(side)
            .run(|| netlink(|h| async move { lookup(&h, self.name.as_str()).await }))
    }

    /// Its configuration and peer statistics: a kernel interface read in the namespace of
    /// `side`, a userspace one over its UAPI socket from anywhere.
    pub fn read(&self, side: Side, backend: Backend) -> Result<DeviceInfo> {
        match backend {
            Backend::Kernel => self.ns(side).run(|| read_device(&self.name, backend)),
            Backend::Userspace => read_device(&self.name, backend),
        }
    }

    /// Fails if UDP `port` is taken in the birthplace, where the socket will listen.
    pub fn check_port_free(&self, port: u16) -> Result<()> {
        check_port_free(port, &self.birth.label)
    }

    /// Creates the interface with the backend `choice` allows, `userspace` serving it if that
    /// is the userspace backend; returns the one used and the side its link is on. Its UDP
    /// socket is the birthplace's. The link is born there too, and moved later, except for a
    /// wgd one going into a named namespace ([`Iface::hand_to_wgd`]). A wireguard-go started
    /// here gets its link listener filtered (`listener`); a boringtun or wgd link gets the MTU
    /// wireguard-go would give it unless `mtu` is asked for (set later, with the other
    /// settings). wgd binds listen `port` at once (the others when it is set).
    pub fn create(
        &self,
        choice: BackendChoice,
        userspace: Userspace,
        mtu: Option<u32>,
        port: Option<u16>,
    ) -> Result<(Backend, Side)> {
        let (name, here) = (&self.name, &self.birth.label);
        if choice != BackendChoice::Userspace {
            match create_kernel(name, mtu, here)? {
                KernelCreate::Created => return Ok((Backend::Kernel, Side::Birth)),
                KernelCreate::Unsupported if choice == BackendChoice::Kernel => {
                    return Err(Error::failed(format!(
                        "kernel lacks WireGuard (CONFIG_WIREGUARD): creating {name} of type \
                         wireguard in {here} was refused (EOPNOTSUPP); use --backend userspace \
                         or auto"
                    )));
                }
                KernelCreate::Unsupported => {
                    vlog!(1, "kernel lacks WireGuard; using {}", userspace.as_str());
                }
            }
        }
        let side = if userspace == Userspace::Wgd {
            self.hand_to_wgd(port)?
        } else {
            userspace::start(userspace, name, here, mtu, port)?;
            Side::Birth
        };
        if userspace != Userspace::WireguardGo && mtu.is_none() {
            self.set_mtu(side, userspace::TUN_MTU)?;
        }
        if let Some(ifindex) = index_here(name) {
            self.quiet(Listener::Link { ifindex }, Duration::ZERO);
        }
        Ok((Backend::Userspace, side))
    }

    /// Hands the interface to wgd, its TUN device opened where the link belongs when that is a
    /// named namespace (`--into-ns NAME`), so that it never moves: a move makes the kernel wait
    /// for RCU grace periods, 15–35 ms beside a namespace just made (most of a hub peer's
    /// add). wgd watches the name and closes the interface when it goes (`ip netns del`),
    /// since the descriptor it keeps holds the namespace alive. Otherwise (a path, or a wgd
    /// older than that) the device is opened in the birthplace and moved later. Returns the
    /// side the link is on.
    fn hand_to_wgd(&self, port: Option<u16>) -> Result<Side> {
        let (name, here) = (&self.name, &self.birth.label);
        let home = self
            .dest
            .as_ref()
            .and_then(|dest| Some((dest, dest.name.as_deref()?, dest.fd.as_ref()?)));
        let at_home = crate::wgd::add(
            name,
            here,
            port.unwrap_or(0),
            home.map(|(_, name, fd)| crate::wgd::Home {
                name,
                netns: fd.as_fd(),
            }),
            |vnet, at_home| match home {
                Some((dest, ..)) if at_home => {
                    dest.run(|| userspace::open_tun(name, &dest.label, vnet))
                }
                _ => userspace::open_tun(name, here, vnet),
            },
        )?;
        Ok(if at_home { Side::Dest } else { Side::Birth })
    }

    /// Sets `settings` on the interface where it lives (`side`; as [`Iface::read`]); `doing`
    /// names the step in errors ("configuring", "updating"). A new listen port makes
    /// wireguard-go open a new route listener before it answers: that one is filtered too.
    pub fn apply(
        &self,
        side: Side,
        backend: Backend,
        settings: &Settings,
        doing: &str,
    ) -> Result<()> {
        let mut update = DeviceUpdate::new();
        if let Some(key) = &settings.private_key {
            update = update.set_private_key(key.clone());
        }
        if let Some(port) = settings.listen_port {
            update = update.set_listen_port(port);
        }
        // wireguard-control sends a fwmark before a listen port, and boringtun marks the sockets
        // it has, not the ones a new port opens: a userspace mark follows in an update of its own.
        let mut marking = None;
        if let Some(mark) = settings.fwmark {
            match backend {
                Backend::Kernel => update = update.set_fwmark(mark),
                Backend::Userspace => marking = Some(DeviceUpdate::new().set_fwmark(mark)),
            }
        }
        let what = format!("{doing} {} in {}", self.name, self.label(side));
        match backend {
            Backend::Kernel => self
                .ns(side)
                .run(|| apply(&self.name, backend, update, &what))?,
            Backend::Userspace => {
                apply(&self.name, backend, update, &what)?;
                if let Some(marking) = marking {
                    apply(&self.name, backend, marking, &what)?;
                }
            }
        }
        if backend == Backend::Userspace && settings.listen_port.is_some() {
            self.quiet(Listener::Route, Duration::ZERO);
            self.release_start_port()?;
        }
        Ok(())
    }

    /// boringtun-cli keeps the random port it bound at start once it has its listen port
    /// (`listener::release_ports`): that port is released.
    fn release_start_port(&self) -> Result<()> {
        let name = &self.name;
        let Some(pid) = uapi_server_pid(name.as_str())
            .filter(|pid| userspace::serving(*pid, name.as_str()) == Some(Userspace::Boringtun))
        else {
            return Ok(());
        };
        let port = read_device(name, Backend::Userspace)?
            .listen_port
            .unwrap_or(0);
        let released = listener::release_ports(pid, port).map_err(|e| {
            Error::caused(
                format!("releasing the start port of boringtun {name} (pid {pid})"),
                e,
            )
        })?;
        vlog!(
            1,
            "boringtun {name} (pid {pid}): {released} start socket(s) released"
        );
        Ok(())
    }

    /// Sets the link's MTU in the namespace of `side` (like `ip link set NAME mtu N`).
    pub fn set_mtu(&self, side: Side, mtu: u32) -> Result<()> {
        let ns = self.ns(side);
        let name = &self.name;
        ns.on_link(name, |h, index| async move {
            h.link()
                .set(LinkUnspec::new_with_index(index).mtu(mtu).build())
                .execute()
                .await
                .with_context(|| format!("setting mtu {mtu} on {name} in {}", ns.label))
        })
    }

    /// Whether the link carries IPv6 in the namespace of `side` (its `disable_ipv6` is 0); None
    /// where the kernel has no IPv6.
    pub fn ipv6(&self, side: Side) -> Result<Option<bool>> {
        let ns = self.ns(side);
        let path = disable_ipv6_path(&self.name);
        ns.run(|| match std::fs::read_to_string(&path) {
            Ok(text) => Ok(Some(text.trim() == "0")),
            Err(e) if e.kind() == ErrorKind::NotFound => Ok(None),
            Err(e) => Err(e).with_context(|| format!("reading {} in {}", path.display(), ns.label)),
        })
    }

    /// Lets the link carry IPv6 or not in the namespace of `side` (like `sysctl -w
    /// net.ipv6.conf.NAME.disable_ipv6=0|1`): off, it has no link-local address and no IPv6
    /// route, and takes no IPv6 packet.
    pub fn set_ipv6(&self, side: Side, on: bool) -> Result<()> {
        let ns = self.ns(side);
        let path = disable_ipv6_path(&self.name);
        let value = if on { "0" } else { "1" };
        ns.run(|| match std::fs::write(&path, value) {
            // (a kernel without IPv6 carries none anyway)
            Err(e) if e.kind() == ErrorKind::NotFound && !on => Ok(()),
            done => done.with_context(|| {
                format!(
                    "setting IPv6 {} on {} in {} ({})",
                    on_off(on),
                    self.name,
                    ns.label,
                    path.display()
                )
            }),
        })
    }

    /// Moves the link from the birthplace into `--into-ns` (like `ip link set NAME netns NS2`);
    /// returns whether there was a move to make.
    pub fn move_to_dest(&self) -> Result<bool> {
        let Some((dest, Some(fd))) = self.dest.as_ref().map(|dest| (dest, &dest.fd)) else {
            return Ok(false);
        };
        let (name, fd) = (&self.name, fd.raw());
        vlog!(1, "moving {name} into {}", dest.label);
        self.birth.on_link(name, |h, index| async move {
            h.link()
                .set(LinkUnspec::new_with_index(index).setns_by_fd(fd).build())
                .execute()
                .await
                .with_context(|| {
                    format!(
                        "moving {name} from {} into {}",
                        self.birth.label, dest.label
                    )
                })
        })?;
        Ok(true)
    }

    /// Brings the link up where it ends up. wireguard-go then opens its route listener (at
    /// once, or at its next check when the link lives in another namespace): waited for, up to
    /// [`ROUTE_LISTENER_WAIT`], and filtered.
    pub fn bring_up(&self, backend: Backend) -> Result<()> {
        let dest = self.ns(Side::Dest);
        let name = &self.name;
        dest.on_link(name, |h, index| async move {
            common::link::set_up(&h, index, true, || {
                format!("bringing {name} up in {}", dest.label)
            })
            .await
        })?;
        if backend == Backend::Userspace {
            self.quiet(Listener::Route, ROUTE_LISTENER_WAIT);
        }
        Ok(())
    }

    /// An interface that exists, served by a wireguard-go whose listeners are not all filtered
    /// (a run killed before it filtered them, or a process started by hand): they are filtered
    /// now, the link listener by the interface's index (kept across the move). Returns whether
    /// that changed something (a refused filter changes nothing: it warns); with CHECK, whether
    /// it would.
    pub fn refilter(&self, link: &Link, check: bool) -> bool {
        if listener_filtered(&self.name, link.backend) != Some(false) {
            return false;
        }
        if check {
            return true;
        }
        self.quiet(
            Listener::Link {
                ifindex: link.index,
            },
            Duration::ZERO,
        );
        self.quiet(Listener::Route, Duration::ZERO);
        listener_filtered(&self.name, link.backend) == Some(true)
    }

    /// The listen port the backend picked when the link came up (when none was asked for),
    /// waiting up to 2 s for it (wireguard-go notices an "up" in another namespace within a
    /// second).
    pub fn picked_port(&self, backend: Backend) -> Result<Option<u16>> {
        let deadline = Instant::now() + Duration::from_secs(2);
        loop {
            let port = self
                .read(Side::Dest, backend)?
                .listen_port
                .filter(|p| *p != 0);
            if port.is_some() || Instant::now() > deadline {
                return Ok(port);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Deletes the link in the namespace of `side`; for wireguard-go also stops the process and
    /// removes its UAPI socket.
    pub fn remove(&self, side: Side, backend: Backend) -> Result<()> {
        self.delete_link(side)?;
        if backend == Backend::Userspace {
            stop_userspace(self.name.as_str())?;
        }
        Ok(())
    }

    /// [`Iface::remove`] for a failed `iface add`, best effort: each step is tried, and what
    /// fails is logged (-v), not returned.
    pub fn undo(&self, side: Side, backend: Backend) {
        vlog!(1, "undoing the creation of {}", self.name);
        if let Err(e) = self.delete_link(side) {
            vlog!(1, "undo: {e}");
        }
        if backend == Backend::Userspace {
            if let Err(e) = stop_userspace(self.name.as_str()) {
                vlog!(1, "undo: {e}");
            }
        }
    }

    /// Deletes the link in the namespace of `side`; false if it was not there.
    fn delete_link(&self, side: Side) -> Result<bool> {
        let ns = self.ns(side);
        let name = &self.name;
        ns.run(|| {
            netlink(|h| async move {
                let Some(msg) = common::nl::find_link(&h, name.as_str()).await? else {
                    return Ok(false);
                };
                delete_link_if_exists(&h, msg.header.index, || {
                    format!("deleting {name} in {}", ns.label)
                })
                .await
            })
        })
    }

    /// Filters `listener` of the wireguard-go serving the interface (see `listener`), waiting up
    /// to `wait` for it to be open. Best effort: what keeps it unfiltered is a warning, once per
    /// interface, since every event of the birthplace then wakes the process.
    fn quiet(&self, listener: Listener, wait: Duration) {
        let Some(pid) = served(&self.name)
            .ok()
            .filter(|s| s.userspace == Some(Userspace::WireguardGo))
            .map(|s| s.pid)
        else {
            return;
        };
        let what = listener.label();
        let why = match listener::quiet(pid, listener, wait) {
            Ok(0) if wait.is_zero() => {
                return vlog!(1, "wireguard-go {} (pid {pid}): no {what} yet", self.name);
            }
            Ok(0) => format!("it did not open within {} s", wait.as_secs()),
            Ok(_) => return vlog!(1, "wireguard-go {} (pid {pid}): {what} filtered", self.name),
            Err(e) => format!("attaching the filter was refused: {e}"),
        };
        if self.warned.replace(true) {
            vlog!(
                1,
                "wireguard-go {} (pid {pid}): {what} left unfiltered ({why})",
                self.name
            );
        } else {
            eprintln!(
                "wgctl: warning: {}: the {what} of its wireguard-go (pid {pid}) is left \
                 unfiltered ({why}): every {} in {} wakes the process",
                self.name,
                listener.hears(),
                self.birth.label
            );
        }
    }
}

/// Outcome of asking the kernel for a `type wireguard` link.
enum KernelCreate {
    Created,
    /// EOPNOTSUPP: this kernel has no WireGuard module.
    Unsupported,
}

/// Creates a kernel WireGuard link in the calling thread's namespace, `here`.
fn create_kernel(name: &IfName, mtu: Option<u32>, here: &str) -> Result<KernelCreate> {
    netlink(|h| async move {
        let mut b = LinkWireguard::new(name.as_str());
        if let Some(m) = mtu {
            b = b.mtu(m);
        }
        let created = h.link().add(b.build()).execute().await;
        match created.with_context(|| format!("creating WireGuard link {name} in {here}")) {
            Ok(()) => Ok(KernelCreate::Created),
            Err(e) if e.kind() == common::Kind::Unsupported => Ok(KernelCreate::Unsupported),
            Err(e) => Err(e),
        }
    })
}

// ---------------------------------------------------------------------------------------------
// Configuration through wireguard-control

fn wc_name(name: &IfName) -> Result<InterfaceName> {
    name.as_str()
        .parse()
        .map_err(|e| Error::invalid(format!("interface name '{name}': {e}")))
}

/// An interface's WireGuard configuration and its peers' statistics, as either backend reports
/// them (wireguard-control's `Device`, which only it can build).
#[derive(Debug, Clone)]
pub struct DeviceInfo {
    pub public_key: Option<Key>,
    /// None where the implementation never tells it (boringtun).
    pub private_key: Option<Key>,
    pub fwmark: Option<u32>,
    pub listen_port: Option<u16>,
    pub peers: Vec<PeerInfo>,
}

impl From<Device> for DeviceInfo {
    fn from(d: Device) -> DeviceInfo {
        DeviceInfo {
            public_key: d.public_key,
            private_key: d.private_key,
            fwmark: d.fwmark,
            listen_port: d.listen_port,
            peers: d.peers,
        }
    }
}

/// Reads an interface's configuration and peer statistics. Kernel: in the calling thread's
/// namespace; userspace: over the UAPI socket, wherever the link lives.
pub fn read_device(name: &IfName, backend: Backend) -> Result<DeviceInfo> {
    if backend == Backend::Userspace {
        return served(name)?.read(name);
    }
    let dev = Device::get(&wc_name(name)?, backend.wc()).with_context(|| {
        format!(
            "reading the configuration of {name} ({} backend)",
            backend.as_str()
        )
    })?;
    Ok(dev.into())
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
// A link's IPv6 (a sysctl)

/// A setting's state as the command line and messages say it.
pub fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// The `disable_ipv6` sysctl of link `name` (/proc/sys/net follows the namespace of the thread
/// that opens it).
fn disable_ipv6_path(name: &IfName) -> PathBuf {
    Path::new("/proc/sys/net/ipv6/conf")
        .join(name.as_str())
        .join("disable_ipv6")
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

/// Whether the UAPI socket of `name` stops being live within `limit` (the process serving it
/// is dying, or dead).
pub fn uapi_gone_within(name: &IfName, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    loop {
        if uapi_state(name.as_str()) != Uapi::Live {
            return true;
        }
        if Instant::now() > deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The process serving a userspace interface and which implementation it is, found through
/// one connection to the interface's UAPI socket (its peer's credentials): `show` of a
/// thousand interfaces asks each process once for this, once for its state, and no more.
pub struct Served {
    pub pid: i32,
    /// None: a process wgctl does not know (or whose command line it cannot read).
    pub userspace: Option<Userspace>,
}

/// The server of userspace interface `name`; an error when its UAPI socket is not live.
pub fn served(name: &IfName) -> Result<Served> {
    let pid = uapi_peer_pid(name.as_str()).ok_or_else(|| no_live_uapi(name))?;
    let userspace = (pid > 0)
        .then(|| userspace::serving_socket(pid, name.as_str()))
        .flatten();
    Ok(Served { pid, userspace })
}

impl Served {
    /// The interface's configuration and peer statistics, over its UAPI socket in the
    /// implementation's dialect.
    pub fn read(&self, name: &IfName) -> Result<DeviceInfo> {
        crate::uapi::get(name, self.userspace.unwrap_or(Userspace::WireguardGo))
    }

    /// Whether its listeners carry wgctl's filters (`listener::filtered`): None unless it is
    /// wireguard-go (another implementation's listeners wgctl leaves alone) and its sockets can
    /// be read.
    pub fn listener_filtered(&self) -> Option<bool> {
        (self.userspace == Some(Userspace::WireguardGo))
            .then(|| listener::filtered(self.pid).ok())
            .flatten()
    }
}

fn no_live_uapi(name: &IfName) -> Error {
    Error::failed(format!(
        "userspace WireGuard interface {name} has no live UAPI socket ({})",
        uapi_path(name.as_str()).display()
    ))
}

fn require_live_uapi(name: &IfName) -> Result<()> {
    match uapi_state(name.as_str()) {
        Uapi::Live => Ok(()),
        _ => Err(no_live_uapi(name)),
    }
}

/// The index of link `name` in the calling thread's namespace (if_nametoindex(3)).
fn index_here(name: &IfName) -> Option<u32> {
    let cname = std::ffi::CString::new(name.as_str()).ok()?;
    // SAFETY: `cname` is a NUL-terminated string alive for the call.
    let index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
    (index != 0).then_some(index)
}

/// Whether the listeners of the wireguard-go serving `name` carry wgctl's filters now
/// (`listener::filtered`): None for the kernel backend, for another userspace implementation
/// (whose listeners wgctl leaves alone), and when its sockets cannot be read.
pub fn listener_filtered(name: &IfName, backend: Backend) -> Option<bool> {
    if backend == Backend::Kernel {
        return None;
    }
    served(name).ok()?.listener_filtered()
}

/// The implementation serving userspace interface `name` now, if its UAPI socket is live and
/// its process one wgctl knows.
pub fn running_userspace(name: &str) -> Option<Userspace> {
    userspace::serving_socket(uapi_server_pid(name)?, name)
}

/// Processes serving userspace interface `name` (`wireguard-go NAME`, `boringtun-cli .. NAME`).
/// The one listening on the live UAPI socket is asked for directly
/// (SO_PEERCRED), so the cost does not grow with the number of interfaces on the machine; only
/// without a live socket (a process that lost it, or one still starting) is /proc searched.
pub fn userspace_pids(name: &str) -> Vec<i32> {
    let serves = |pid: i32| userspace::serving(pid, name).is_some();
    if let Some(pid) = uapi_server_pid(name).filter(|pid| serves(*pid)) {
        return vec![pid];
    }
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<i32>().ok())
        .filter(|pid| serves(*pid))
        .collect()
}

/// The process that listens on `name`'s UAPI socket, if it is live.
fn uapi_server_pid(name: &str) -> Option<i32> {
    uapi_peer_pid(name).filter(|&pid| pid > 0)
}

/// The process at the other end of NAME's UAPI socket (0: the kernel did not say), if the socket
/// answers.
fn uapi_peer_pid(name: &str) -> Option<i32> {
    use nix::sys::socket::{getsockopt, sockopt::PeerCredentials};
    let stream = UnixStream::connect(uapi_path(name)).ok()?;
    Some(getsockopt(&stream, PeerCredentials).map_or(0, |c| c.pid()))
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

/// Stops the userspace implementation serving `name` (SIGTERM, then SIGKILL; wgd, which serves
/// others too, is asked to close it) and removes its UAPI socket. Returns whether there was
/// anything to stop or remove.
pub fn stop_userspace(name: &str) -> Result<bool> {
    use nix::sys::signal::{kill, Signal};
    use nix::unistd::Pid;
    // wgd may serve it even when its socket is gone (removed by hand): it is asked whenever
    // it runs.
    let closed = crate::wgd::del(name)?;
    // (a userspace name is machine-wide: wgctl makes no second server for a name one serves, so
    // what wgd closed needs no search of every process's command line for another, which costs
    // in proportion to the processes of the machine: ~10 ms of a `del` beside 130)
    let pids = if closed {
        Vec::new()
    } else {
        userspace_pids(name)
    };
    // boringtun's socket named after its TUN descriptor (it removes it itself on SIGTERM).
    let own: Vec<PathBuf> = pids
        .iter()
        .filter_map(|p| userspace::own_socket(*p))
        .collect();
    for pid in &pids {
        vlog!(
            1,
            "stopping the userspace WireGuard process for {name} (pid {pid})"
        );
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
    let mut removed = false;
    for sock in own.iter().chain([&uapi_path(name)]) {
        removed |= match std::fs::remove_file(sock) {
            Ok(()) => true,
            Err(e) if e.kind() == ErrorKind::NotFound => false,
            Err(e) => return Err(Error::caused(format!("removing {}", sock.display()), e)),
        };
    }
    Ok(closed || !pids.is_empty() || removed)
}

/// Fails if UDP `port` is already bound in the calling thread's namespace (IPv4 or IPv6), so
/// a conflict is reported before anything is created (wireguard-go binds only later, when the
/// link goes up, and would fail silently).
fn check_port_free(port: u16, here: &str) -> Result<()> {
    use std::net::{Ipv4Addr, Ipv6Addr, UdpSocket};
    // One at a time: a dual-stack [::] socket would collide with our own 0.0.0.0 one.
    let v4 = UdpSocket::bind((Ipv4Addr::UNSPECIFIED, port)).map(drop);
    let v6 = UdpSocket::bind((Ipv6Addr::UNSPECIFIED, port)).map(drop);
    for r in [v4, v6] {
        if let Err(e) = r {
            if e.kind() == ErrorKind::AddrInUse {
                return Err(Error::failed(format!(
                    "listen port {port} is already in use in {here}"
                )));
            }
        }
    }
    Ok(())
}
