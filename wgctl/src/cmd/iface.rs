//! `iface add` / `iface del`: WireGuard interfaces and the birthplace-namespace pattern.
//!
//! `iface add NAME --into-ns NS2` creates NAME in the current (`--ns`) namespace, the
//! *birthplace*, where its UDP socket is opened and stays; configures it there; moves the link
//! into NS2; and brings it up in NS2. If a step fails, everything it did is undone: the link is
//! deleted wherever it got to and a wireguard-go it started is stopped.
//!
//! `--replace` changes an existing interface's private key, listen port, fwmark and MTU in
//! place, so it keeps its peers; only another backend means deleting it and creating it anew.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::{Args, Subcommand, ValueHint};
use common::netns::{run_in, NetnsFd};
use common::types::{IfName, NsTarget, Port};
use common::{vlog, Ctx, Error, Outcome, Result};
use serde::Serialize;
use wireguard_control::{Device, DeviceUpdate, Key};

use crate::backend::{self, Backend, BackendChoice, Found, KernelCreate, Link, Uapi};
use crate::keys;

#[derive(Subcommand, Debug)]
pub enum IfaceCmd {
    /// Create and configure a WireGuard interface, optionally moving it into another namespace
    /// (like `ip link add NAME type wireguard; wg set NAME private-key FILE listen-port N;
    /// ip link set NAME netns NS2; ip -n NS2 link set NAME up`)
    Add(AddArgs),
    /// Delete a WireGuard interface; for wireguard-go also stop its process and remove its UAPI
    /// socket (like `ip link del NAME`)
    Del(DelArgs),
}

#[derive(Args, Debug)]
pub struct AddArgs {
    /// Interface name (1-15 bytes)
    pub name: IfName,
    /// File holding the private key, base64 (like `wg set NAME private-key FILE`); must not be
    /// accessible by others (mode 0600)
    #[arg(long, value_name = "FILE", value_parser = keys::key_file_path, value_hint = ValueHint::FilePath)]
    pub private_key: PathBuf,
    /// UDP listen port (like `wg set NAME listen-port N`); default: chosen by the kernel
    #[arg(long, value_name = "N")]
    pub listen_port: Option<Port>,
    /// Firewall mark on the tunnel's UDP packets, decimal or 0x-hex; 0 is off
    /// (like `wg set NAME fwmark N`)
    #[arg(long, value_name = "N", value_parser = parse_fwmark)]
    pub fwmark: Option<u32>,
    /// Link MTU (like `ip link set NAME mtu N`); default: the backend's (1420)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
    pub mtu: Option<u32>,
    /// Move the interface into namespace NS2 and bring it up there; its UDP socket stays in the
    /// birthplace namespace (like `ip link set NAME netns NS2`)
    #[arg(long, value_name = "NS2", add = common::complete::namespaces())]
    pub into_ns: Option<NsTarget>,
    /// Implementation: the kernel module, wireguard-go, or auto (kernel if available)
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// If NAME exists with a different private key, listen port, fwmark or MTU, change them in
    /// place (it keeps its peers); with a different backend, delete it and create it anew (its
    /// peers are lost). Without this: exit 1
    #[arg(long)]
    pub replace: bool,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    /// Interface name
    #[arg(add = backend::completer())]
    pub name: IfName,
    /// Also look in namespace NS2 (where `iface add --into-ns NS2` moved it). A userspace
    /// interface is found wherever it lives, through its UAPI socket.
    #[arg(long, value_name = "NS2", add = common::complete::namespaces())]
    pub into_ns: Option<NsTarget>,
}

/// Parses a firewall mark: decimal or `0x` hex, 32 bits.
pub fn parse_fwmark(s: &str) -> std::result::Result<u32, String> {
    common::num::parse_u32(s)
        .ok_or_else(|| format!("fwmark '{s}' is not a 32-bit number (decimal or 0x-hex)"))
}

pub fn run(ctx: &Ctx, cmd: IfaceCmd) -> Result<Outcome> {
    match cmd {
        IfaceCmd::Add(a) => add(ctx, a),
        IfaceCmd::Del(a) => del(ctx, a),
    }
}

/// What `iface add` and `iface del` print as `interface`.
#[derive(Serialize)]
struct IfaceJson {
    name: IfName,
    /// Where the link lives (null: the caller's namespace).
    netns: Option<String>,
    /// Where its UDP socket lives (null: the caller's namespace); `iface add` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    birth_netns: Option<Option<String>>,
    backend: Option<Backend>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_port: Option<Option<u16>>,
}

/// The namespaces `iface add` works with.
struct Places {
    /// The `--ns` namespace (the birthplace), for messages and JSON.
    here: String,
    here_netns: Option<String>,
    /// `--into-ns`, unless it is the birthplace itself.
    target: Option<(NsTarget, NetnsFd)>,
}

impl Places {
    fn new(ctx: &Ctx, into: Option<&NsTarget>) -> Result<Places> {
        let target = match into {
            Some(t) => {
                let fd = NetnsFd::open(t)?;
                let same = fd.id()? == NetnsFd::current()?.id()?;
                (!same).then(|| (t.clone(), fd))
            }
            None => None,
        };
        Ok(Places {
            here: ctx.ns_label(),
            here_netns: ctx.netns_name(),
            target,
        })
    }

    fn dest_label(&self) -> String {
        match &self.target {
            Some((t, _)) => format!("namespace {t}"),
            None => self.here.clone(),
        }
    }

    fn dest_netns(&self) -> Option<String> {
        match &self.target {
            Some((t, _)) => Some(t.to_string()),
            None => self.here_netns.clone(),
        }
    }

    fn target_fd(&self) -> Option<&NetnsFd> {
        self.target.as_ref().map(|(_, fd)| fd)
    }

    /// The namespace an existing interface was found in, for messages.
    fn label_of(&self, at: At) -> String {
        match at {
            At::Dest => self.dest_label(),
            At::Birth => self.here.clone(),
        }
    }

    /// The namespace an existing interface was found in, as an fd (None: the current one).
    fn fd_of(&self, at: At) -> Option<&NetnsFd> {
        self.target_fd().filter(|_| at == At::Dest)
    }
}

/// Where an existing interface was found.
#[derive(Clone, Copy, PartialEq, Eq)]
enum At {
    /// In `--into-ns` (or, without it, the current namespace): where it belongs.
    Dest,
    /// In the birthplace although `--into-ns` was given: a run interrupted before the move.
    Birth,
}

/// The settings `iface add` asks for.
struct Wanted {
    /// The private key (never shown; `public` is what messages compare).
    key: Key,
    public: Key,
    listen_port: Option<u16>,
    fwmark: Option<u32>,
    mtu: Option<u32>,
    backend: Option<Backend>,
}

impl Wanted {
    /// How an existing interface differs (empty: same settings). Never shows key material.
    fn differences(&self, link: &Link, dev: &Device) -> Vec<String> {
        let mut d = Vec::new();
        if let Some(b) = self.backend.filter(|b| *b != link.backend) {
            d.push(format!(
                "backend {} (wanted {})",
                link.backend.as_str(),
                b.as_str()
            ));
        }
        if dev.public_key.as_ref() != Some(&self.public) {
            d.push("a different private key".into());
        }
        if let Some(p) = self.listen_port.filter(|p| dev.listen_port != Some(*p)) {
            d.push(format!(
                "listen port {} (wanted {p})",
                dev.listen_port.unwrap_or(0)
            ));
        }
        let mark = dev.fwmark.unwrap_or(0);
        if let Some(f) = self.fwmark.filter(|f| *f != mark) {
            d.push(format!("fwmark {mark} (wanted {f})"));
        }
        if let Some(m) = self.mtu.filter(|m| link.mtu != Some(*m)) {
            d.push(format!("mtu {} (wanted {m})", link.mtu.unwrap_or(0)));
        }
        d
    }
}

/// Reads a device where it lives: kernel devices in their namespace (`ns`, or the current
/// one), userspace ones over their UAPI socket from anywhere.
fn read_at(name: &IfName, backend: Backend, ns: Option<&NetnsFd>) -> Result<Device> {
    match (backend, ns) {
        (Backend::Kernel, Some(fd)) => run_in(fd, || backend::read_device(name, backend)),
        _ => backend::read_device(name, backend),
    }
}

/// Applies an update to a device where it lives, like [`read_at`].
fn apply_at(
    name: &IfName,
    backend: Backend,
    ns: Option<&NetnsFd>,
    update: DeviceUpdate,
    what: &str,
) -> Result<()> {
    match (backend, ns) {
        (Backend::Kernel, Some(fd)) => run_in(fd, || backend::apply(name, backend, update, what)),
        _ => backend::apply(name, backend, update, what),
    }
}

/// Sets the MTU of the link in the namespace it lives in (`ns`, or the current one).
fn set_mtu_at(name: &IfName, mtu: u32, ns: Option<&NetnsFd>, where_: &str) -> Result<()> {
    match ns {
        Some(fd) => run_in(fd, || backend::set_mtu(name, mtu, where_)),
        None => backend::set_mtu(name, mtu, where_),
    }
}

/// `iface add`: plan (what exists already decides), create, configure, report.
fn add(ctx: &Ctx, a: AddArgs) -> Result<Outcome> {
    let key = keys::read_key_file(&a.private_key, "private key")?;
    let places = Places::new(ctx, a.into_ns.as_ref())?;
    let want = Wanted {
        public: key.get_public(),
        key,
        listen_port: a.listen_port.map(|p| p.0),
        fwmark: a.fwmark,
        mtu: a.mtu,
        backend: a.backend.required(),
    };
    let name = &a.name;

    let replacing = match plan(ctx, name, &places, &want, a.replace)? {
        Plan::Settled(outcome) => return Ok(outcome),
        Plan::Create { replacing } => replacing,
    };
    // (In a dry run of --replace the old interface still holds its port.)
    if let Some(p) = want.listen_port.filter(|_| !(ctx.check && replacing)) {
        backend::check_port_free(p, &places.here)?;
    }
    if ctx.check {
        let guess = want.backend.unwrap_or_else(likely_backend);
        return report(
            true,
            name,
            &places,
            Some(guess),
            &want.public,
            want.listen_port,
        );
    }
    let used = create(name, &a.backend, want.mtu, &places)?;
    let port = configure_new(name, used, &want, &places)?;
    report(true, name, &places, Some(used), &want.public, port)
}

/// What `iface add` has left to do once it has looked for NAME.
enum Plan {
    /// The interface there was finished, kept or updated: this is the answer.
    Settled(Outcome),
    /// Create it (`replacing`: an interface of another backend was removed first, or would be
    /// in a dry run).
    Create { replacing: bool },
}

/// Looks for NAME: an interrupted add is finished, the same settings converge, other settings
/// are an error without `--replace`, and with it are updated in place (same backend) or the
/// old interface is removed to be created again.
fn plan(ctx: &Ctx, name: &IfName, places: &Places, want: &Wanted, replace: bool) -> Result<Plan> {
    let Some((at, link)) = find_existing(name, places)? else {
        let Some(conflict) = uapi_conflict(name) else {
            return Ok(Plan::Create { replacing: false });
        };
        if !replace {
            return Err(conflict);
        }
        // A userspace interface of this name running elsewhere: moved away behind our back,
        // or born in a namespace since deleted (its socket keeps that one alive, unnamed).
        // --replace makes it anew here.
        if !ctx.check {
            vlog!(
                1,
                "{name} runs in another namespace: stopping it to create it in {}",
                places.here
            );
            backend::stop_userspace(name.as_str())?;
        }
        return Ok(Plan::Create { replacing: true });
    };
    let dev = read_at(name, link.backend, places.fd_of(at))?;
    if dev.public_key.is_none() && (at == At::Birth || places.target.is_none()) {
        // Created but never configured: a run killed right after creating it. Finish it.
        vlog!(
            1,
            "{name} exists without a key (an interrupted add): configuring it"
        );
        let port = if ctx.check {
            want.listen_port
        } else {
            configure(name, link.backend, want, places, &mut false)?
        };
        let out = report(true, name, places, Some(link.backend), &want.public, port)?;
        return Ok(Plan::Settled(out));
    }
    let diffs = want.differences(&link, &dev);
    let found = Existing { at, link, dev };
    if diffs.is_empty() {
        return converge(ctx, name, places, &found).map(Plan::Settled);
    }
    if !replace {
        return Err(Error::failed(format!(
            "WireGuard interface {name} already exists in {} with different settings: {}; \
             use --replace to change them",
            places.label_of(at),
            diffs.join(", ")
        )));
    }
    if want.backend.is_none_or(|b| b == found.link.backend) {
        return update_in_place(ctx, name, places, &found, want).map(Plan::Settled);
    }
    if !ctx.check {
        vlog!(1, "replacing {name}: {}", diffs.join(", "));
        remove_existing(name, places, at, found.link.backend)?;
    }
    Ok(Plan::Create { replacing: true })
}

/// The backend `--backend auto` would pick, for a dry run.
fn likely_backend() -> Backend {
    if backend::kernel_probably_supported() {
        Backend::Kernel
    } else {
        Backend::Userspace
    }
}

/// [`configure`] for the interface `add` just created: if it fails, the interface is removed
/// again, and a userspace daemon that died at start is named as the likely cause.
fn configure_new(
    name: &IfName,
    used: Backend,
    want: &Wanted,
    places: &Places,
) -> Result<Option<u16>> {
    let mut moved = false;
    configure(name, used, want, places, &mut moved).map_err(|e| {
        let died = used == Backend::Userspace && backend::userspace_pids(name.as_str()).is_empty();
        rollback(name, used, places, moved);
        if died {
            return Error::caused(
                format!(
                    "{} {name} exited right after starting in {} (each one needs an inotify \
                     instance: is fs.inotify.max_user_instances exhausted?)",
                    backend::userspace_program(),
                    places.here
                ),
                e,
            );
        }
        e
    })
}

fn find_existing(name: &IfName, places: &Places) -> Result<Option<(At, Link)>> {
    let not_wg = |kind: &str, where_: &str| {
        Error::failed(format!(
            "{name} already exists in {where_} but is a {kind} link, not a WireGuard interface"
        ))
    };
    if let Some((t, fd)) = &places.target {
        match backend::lookup_in(fd, name)? {
            Found::WireGuard(l) => return Ok(Some((At::Dest, l))),
            Found::Other(k) => return Err(not_wg(&k, &format!("namespace {t}"))),
            Found::Absent => {}
        }
    }
    let at = if places.target.is_some() {
        At::Birth
    } else {
        At::Dest
    };
    match backend::lookup_here(name)? {
        Found::WireGuard(l) => Ok(Some((at, l))),
        Found::Other(k) => Err(not_wg(&k, &places.here)),
        Found::Absent => Ok(None),
    }
}

/// A live UAPI socket for a name that has no link here or in `--into-ns`: a userspace
/// interface of that name lives in some other namespace, and the socket path is shared.
fn uapi_conflict(name: &IfName) -> Option<Error> {
    (backend::uapi_state(name.as_str()) == Uapi::Live).then(|| {
        Error::failed(format!(
            "a userspace WireGuard interface named {name} already exists in another namespace \
             (its UAPI socket {} is shared by all namespaces); choose another name",
            backend::uapi_path(name.as_str()).display()
        ))
    })
}

/// The interface `plan` found: where it is, its link and its WireGuard settings.
struct Existing {
    at: At,
    link: Link,
    dev: Device,
}

/// An interface with the wanted settings exists: finish what an interrupted run left undone
/// (the move, bringing it up), or report that nothing changes.
fn converge(ctx: &Ctx, name: &IfName, places: &Places, found: &Existing) -> Result<Outcome> {
    let Existing { at, link, dev } = found;
    let changed = finish(ctx, name, places, *at, link)?;
    let port = dev.listen_port.filter(|p| *p != 0);
    let public = dev.public_key.clone().unwrap_or_else(Key::zero);
    report(changed, name, places, Some(link.backend), &public, port)
}

/// Moves an interface an interrupted run left in the birthplace and brings it up; returns
/// whether there was anything to do.
fn finish(ctx: &Ctx, name: &IfName, places: &Places, at: At, link: &Link) -> Result<bool> {
    let moving = at == At::Birth;
    let changed = moving || !link.up;
    if changed && !ctx.check {
        if let Some(fd) = places.target_fd().filter(|_| moving) {
            backend::move_link(name, fd, &places.here)?;
        }
        bring_up(name, link.backend, places)?;
    }
    Ok(changed)
}

/// `--replace` with the same backend: sets what differs (MTU, then private key, fwmark and
/// listen port in one update) on the live interface, which keeps its peers, then finishes it
/// like [`converge`]. If the update fails, the MTU and what the update may have set before
/// failing are put back.
fn update_in_place(
    ctx: &Ctx,
    name: &IfName,
    places: &Places,
    found: &Existing,
    want: &Wanted,
) -> Result<Outcome> {
    let Existing { at, link, dev } = found;
    let (at, ns, label) = (*at, places.fd_of(*at), places.label_of(*at));
    let old_port = dev.listen_port.filter(|p| *p != 0);
    let old_mark = dev.fwmark.unwrap_or(0);
    let port = want.listen_port.filter(|p| old_port != Some(*p));
    let mark = want.fwmark.filter(|f| *f != old_mark);
    let rekey = dev.public_key.as_ref() != Some(&want.public);
    let mtu = want.mtu.filter(|m| link.mtu != Some(*m));
    if let Some(p) = port {
        backend::check_port_free(p, &places.here)?;
    }
    if !ctx.check {
        vlog!(1, "updating {name} in {label} in place");
        if let Some(m) = mtu {
            set_mtu_at(name, m, ns, &label)?;
        }
        let mut update = DeviceUpdate::new();
        let mut undo = DeviceUpdate::new();
        if rekey {
            update = update.set_private_key(want.key.clone());
            if let Some(old) = dev.private_key.clone() {
                undo = undo.set_private_key(old);
            }
        }
        if let Some(f) = mark {
            update = update.set_fwmark(f);
            undo = undo.set_fwmark(old_mark);
        }
        if let Some(p) = port {
            update = update.set_listen_port(p);
        }
        let what = format!("updating {name} in {label}");
        if let Err(e) = apply_at(name, link.backend, ns, update, &what) {
            vlog!(1, "undoing the update of {name}");
            let undone = apply_at(name, link.backend, ns, undo, &what);
            let mtu_back = match (mtu, link.mtu) {
                (Some(_), Some(m)) => set_mtu_at(name, m, ns, &label),
                _ => Ok(()),
            };
            if let Err(u) = undone.and(mtu_back) {
                vlog!(1, "undo: {u}");
            }
            return Err(e);
        }
        if port.is_some() && link.backend == Backend::Userspace {
            // (a new listen port: wireguard-go opened a new route listener)
            backend::quiet_route_listener(name, Duration::ZERO);
        }
    }
    finish(ctx, name, places, at, link)?;
    report(
        true,
        name,
        places,
        Some(link.backend),
        &want.public,
        port.or(old_port),
    )
}

fn bring_up(name: &IfName, used: Backend, places: &Places) -> Result<()> {
    match places.target_fd() {
        Some(fd) => {
            let label = places.dest_label();
            run_in(fd, || backend::set_up(name, &label))?;
        }
        None => backend::set_up(name, &places.here)?,
    }
    if used == Backend::Userspace {
        // wireguard-go opens its route listener once it sees the "up": at once when the link
        // is in its namespace; moved away, it notices within a second, too long to wait for
        // (and the route events of its own namespace are then few).
        let wait = match places.target_fd() {
            Some(_) => Duration::ZERO,
            None => Duration::from_secs(1),
        };
        backend::quiet_route_listener(name, wait);
    }
    Ok(())
}

/// Creates the link in the birthplace with the chosen backend; returns the backend used.
fn create(
    name: &IfName,
    choice: &BackendChoice,
    mtu: Option<u32>,
    places: &Places,
) -> Result<Backend> {
    let here = &places.here;
    if *choice != BackendChoice::Userspace {
        match backend::create_kernel(name, mtu, here)? {
            KernelCreate::Created => return Ok(Backend::Kernel),
            KernelCreate::Unsupported if *choice == BackendChoice::Kernel => {
                return Err(Error::failed(format!(
                    "kernel lacks WireGuard (CONFIG_WIREGUARD): creating {name} of type wireguard \
                     in {here} was refused (EOPNOTSUPP); use --backend userspace or auto"
                )));
            }
            KernelCreate::Unsupported => {
                vlog!(
                    1,
                    "kernel lacks WireGuard; using {}",
                    backend::userspace_program()
                );
            }
        }
    }
    backend::spawn_userspace(name, here)?;
    Ok(Backend::Userspace)
}

/// Configures a freshly created interface, moves it and brings it up; returns the listen port.
fn configure(
    name: &IfName,
    used: Backend,
    want: &Wanted,
    places: &Places,
    moved: &mut bool,
) -> Result<Option<u16>> {
    let mut update = DeviceUpdate::new().set_private_key(want.key.clone());
    if let Some(p) = want.listen_port {
        update = update.set_listen_port(p);
    }
    if let Some(f) = want.fwmark {
        update = update.set_fwmark(f);
    }
    vlog!(
        1,
        "configuring {name} in {} (private key, listen port, fwmark)",
        places.here
    );
    backend::apply(
        name,
        used,
        update,
        &format!("configuring {name} in {}", places.here),
    )?;
    if let (Backend::Userspace, Some(m)) = (used, want.mtu) {
        backend::set_mtu(name, m, &places.here)?;
    }
    if let Some(fd) = places.target_fd() {
        vlog!(1, "moving {name} into {}", places.dest_label());
        backend::move_link(name, fd, &places.here)?;
        *moved = true;
    }
    bring_up(name, used, places)?;
    if want.listen_port.is_some() {
        return Ok(want.listen_port);
    }
    // No port asked for: the backend picks one when the link comes up (wireguard-go notices
    // an "up" in another namespace within a second).
    let ns = places.target_fd();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let port = read_at(name, used, ns)?.listen_port.filter(|p| *p != 0);
        if port.is_some() || Instant::now() > deadline {
            return Ok(port);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Undoes a failed `iface add`: deletes the link where it got to, stops wireguard-go.
fn rollback(name: &IfName, used: Backend, places: &Places, moved: bool) {
    vlog!(1, "undoing the creation of {name}");
    let deleted = match places.target_fd().filter(|_| moved) {
        Some(fd) => {
            let label = places.dest_label();
            run_in(fd, || backend::delete_link(name, &label))
        }
        None => backend::delete_link(name, &places.here),
    };
    if let Err(e) = deleted {
        vlog!(1, "undo: {e}");
    }
    if used == Backend::Userspace {
        if let Err(e) = backend::stop_userspace(name.as_str()) {
            vlog!(1, "undo: {e}");
        }
    }
}

/// Deletes an interface found by [`find_existing`] (for `--replace`).
fn remove_existing(name: &IfName, places: &Places, at: At, used: Backend) -> Result<()> {
    match (at, places.target_fd()) {
        (At::Dest, Some(fd)) => {
            let label = places.dest_label();
            run_in(fd, || backend::delete_link(name, &label))?;
        }
        _ => {
            backend::delete_link(name, &places.here)?;
        }
    }
    if used == Backend::Userspace {
        backend::stop_userspace(name.as_str())?;
    }
    Ok(())
}

fn report(
    changed: bool,
    name: &IfName,
    places: &Places,
    used: Option<Backend>,
    public: &Key,
    listen_port: Option<u16>,
) -> Result<Outcome> {
    Outcome::object(
        changed,
        "interface",
        IfaceJson {
            name: name.clone(),
            netns: places.dest_netns(),
            birth_netns: Some(places.here_netns.clone()),
            backend: used,
            public_key: Some(public.to_base64()),
            listen_port: Some(listen_port),
        },
    )
}

fn del(ctx: &Ctx, a: DelArgs) -> Result<Outcome> {
    let name = &a.name;
    let here = ctx.ns_label();
    let not_wg = |kind: &str, where_: &str| {
        Error::failed(format!(
            "{name} in {where_} is a {kind} link, not a WireGuard interface; not deleting it"
        ))
    };
    let target = a.into_ns.as_ref().map(NetnsFd::open).transpose()?;
    let mut found: Option<(Option<&NetnsFd>, String, Option<String>, Link)> = None;
    match backend::lookup_here(name)? {
        Found::WireGuard(l) => {
            found = Some((
                None,
                here.clone(),
                ctx.ns.as_ref().map(ToString::to_string),
                l,
            ));
        }
        Found::Other(k) => return Err(not_wg(&k, &here)),
        Found::Absent => {}
    }
    if let (None, Some(fd), Some(t)) = (&found, &target, &a.into_ns) {
        let label = format!("namespace {t}");
        match backend::lookup_in(fd, name)? {
            Found::WireGuard(l) => found = Some((Some(fd), label, Some(t.to_string()), l)),
            Found::Other(k) => return Err(not_wg(&k, &label)),
            Found::Absent => {}
        }
    }
    let out = |changed: bool, netns: Option<String>, backend: Option<Backend>| {
        Outcome::object(
            changed,
            "interface",
            IfaceJson {
                name: name.clone(),
                netns,
                birth_netns: None,
                backend,
                public_key: None,
                listen_port: None,
            },
        )
    };
    if let Some((ns, label, netns, link)) = found {
        if !ctx.check {
            vlog!(1, "deleting {name} in {label}");
            match ns {
                Some(fd) => run_in(fd, || backend::delete_link(name, &label))?,
                None => backend::delete_link(name, &label)?,
            };
            if link.backend == Backend::Userspace {
                backend::stop_userspace(name.as_str())?;
            }
        }
        return out(true, netns, Some(link.backend));
    }
    // Not here: a userspace interface living elsewhere is still reachable through its process.
    let running = !backend::userspace_pids(name.as_str()).is_empty()
        || backend::uapi_state(name.as_str()) == Uapi::Live;
    if !ctx.check && (running || backend::uapi_state(name.as_str()) != Uapi::Absent) {
        backend::stop_userspace(name.as_str())?;
    }
    out(running, None, running.then_some(Backend::Userspace))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwmark_forms() {
        assert_eq!(parse_fwmark("51820"), Ok(51820));
        assert_eq!(parse_fwmark("0xca6c"), Ok(0xca6c));
        assert!(parse_fwmark("4294967296").is_err());
        assert!(parse_fwmark("mark").is_err());
    }
}
