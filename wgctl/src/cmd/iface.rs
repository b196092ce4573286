//! `iface add` / `iface del`: WireGuard interfaces and the birthplace-namespace pattern.
//!
//! `iface add NAME --into-ns NS2` creates NAME in the current (`--ns`) namespace, the
//! *birthplace*, where its UDP socket is opened and stays; configures it there; moves the link
//! into NS2; and brings it up in NS2. If a step fails, everything it did is undone: the link is
//! deleted wherever it got to and a wireguard-go it started is stopped.
//!
//! `--replace` changes an existing interface's private key, listen port, fwmark, MTU and IPv6
//! in place, so it keeps its peers; another backend or userspace implementation, or a new listen
//! port for boringtun (which would keep the old one open), means deleting it and creating it
//! anew.
//!
//! Both commands act through one [`Iface`], which knows the birthplace and `--into-ns`: the
//! plan reads through it, and each step (create, configure, move, up, remove) is one call.

use std::path::PathBuf;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{Args, Subcommand, ValueHint};
use common::types::{IfName, NsTarget, Port};
use common::{vlog, Ctx, Error, Outcome, Result};
use serde::Serialize;
use wireguard_control::Key;

use crate::backend::{
    self, on_off, Backend, BackendChoice, DeviceInfo, Found, Iface, Link, Settings, Side, Uapi,
};
use crate::keys;
use crate::userspace::{self, Userspace};

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
    /// Whether the link carries IPv6, set where it ends up before it comes up (like `sysctl -w
    /// net.ipv6.conf.NAME.disable_ipv6=0|1`): off, it has no link-local address and no IPv6
    /// route, so the kernel's walks of a namespace's IPv6 routes at each link change do not
    /// grow with its tunnels; default: as the namespace gives new links
    #[arg(
        long,
        value_name = "on|off",
        value_parser = PossibleValuesParser::new(["on", "off"]).map(|v| v == "on"),
    )]
    pub ipv6: Option<bool>,
    /// Move the interface into namespace NS2 and bring it up there; its UDP socket stays in the
    /// birthplace namespace (like `ip link set NAME netns NS2`)
    #[arg(long, value_name = "NS2", add = common::complete::namespaces())]
    pub into_ns: Option<NsTarget>,
    /// Implementation: the kernel module, userspace (see --userspace), or auto (kernel if
    /// available)
    #[arg(long, value_enum, default_value_t = BackendChoice::Auto)]
    pub backend: BackendChoice,
    /// Which userspace implementation serves it when the backend is userspace; default: wgd
    /// (one process for every interface). An existing interface served by another one differs
    /// (see --replace)
    #[arg(long, value_enum, env = "NIRANSIX_WG_USERSPACE", value_name = "IMPL")]
    pub userspace: Option<Userspace>,
    /// If NAME exists with a different private key, listen port, fwmark, MTU or IPv6, change
    /// them in place (it keeps its peers); with a different backend, delete it and create it
    /// anew (its peers are lost). Without this: exit 1
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
    /// The userspace implementation serving it (null: the kernel's); `iface add` only.
    #[serde(skip_serializing_if = "Option::is_none")]
    userspace: Option<Option<Userspace>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    public_key: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    listen_port: Option<Option<u16>>,
}

/// The settings `iface add` asks for.
struct Wanted {
    /// The private key (never shown; `public` is what messages compare).
    key: Key,
    public: Key,
    listen_port: Option<u16>,
    fwmark: Option<u32>,
    mtu: Option<u32>,
    /// `--ipv6`: whether the link carries IPv6 (None: as it is).
    ipv6: Option<bool>,
    backend: Option<Backend>,
    /// `--userspace` (or its variable), if given: an interface served by the other one differs.
    userspace: Option<Userspace>,
}

impl Wanted {
    /// The userspace implementation serving `link` (`running`) if another one is wanted.
    fn other_userspace(&self, link: &Link, running: Option<Userspace>) -> Option<String> {
        let wanted = self
            .userspace
            .filter(|_| self.backend != Some(Backend::Kernel))?;
        let running = running.filter(|_| link.backend == Backend::Userspace)?;
        (running != wanted).then(|| {
            format!(
                "userspace implementation {} (wanted {})",
                running.as_str(),
                wanted.as_str()
            )
        })
    }

    /// How an existing interface differs (empty: same settings); `ipv6`: whether its link
    /// carries IPv6 (read only when `--ipv6` asks). Never shows key material.
    fn differences(
        &self,
        link: &Link,
        dev: &DeviceInfo,
        running: Option<Userspace>,
        ipv6: Option<bool>,
    ) -> Vec<String> {
        let mut d = Vec::new();
        if let Some(b) = self.backend.filter(|b| *b != link.backend) {
            d.push(format!(
                "backend {} (wanted {})",
                link.backend.as_str(),
                b.as_str()
            ));
        }
        d.extend(self.other_userspace(link, running));
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
        if let (Some(on), Some(now)) = (self.ipv6, ipv6) {
            if on != now {
                d.push(format!("IPv6 {} (wanted {})", on_off(now), on_off(on)));
            }
        }
        d
    }

    /// What a new interface is configured with.
    fn settings(&self) -> Settings {
        Settings {
            private_key: Some(self.key.clone()),
            listen_port: self.listen_port,
            fwmark: self.fwmark,
        }
    }
}

/// `iface add`: plan (what exists already decides), create, configure, report.
fn add(ctx: &Ctx, a: AddArgs) -> Result<Outcome> {
    let key = keys::read_key_file(&a.private_key, "private key")?;
    let iface = Iface::new(ctx, &a.name, a.into_ns.as_ref())?;
    let want = Wanted {
        public: key.get_public(),
        key,
        listen_port: a.listen_port.map(|p| p.0),
        fwmark: a.fwmark,
        mtu: a.mtu,
        ipv6: a.ipv6,
        backend: a.backend.required(),
        userspace: a.userspace,
    };

    let replacing = match plan(ctx, &iface, &want, a.replace)? {
        Plan::Settled(outcome) => return Ok(outcome),
        Plan::Create { replacing } => replacing,
    };
    // (In a dry run of --replace the old interface still holds its port.)
    if let Some(p) = want.listen_port.filter(|_| !(ctx.check && replacing)) {
        iface.check_port_free(p)?;
    }
    let serving = want.userspace.unwrap_or(userspace::DEFAULT);
    if ctx.check {
        let guess = want.backend.unwrap_or_else(likely_backend);
        if let (Backend::Userspace, Some(m)) = (guess, want.mtu) {
            userspace::check_mtu(serving, &a.name, m)?;
        }
        let out = Served::new(guess, serving);
        return report(true, &iface, out, &want.public, want.listen_port);
    }
    let (used, side) = iface.create(a.backend, serving, want.mtu, want.listen_port)?;
    let port = configure_new(&iface, used, side, &want)?;
    report(true, &iface, Served::new(used, serving), &want.public, port)
}

/// What `iface add` reports as serving an interface.
#[derive(Clone, Copy)]
struct Served {
    backend: Backend,
    userspace: Option<Userspace>,
}

impl Served {
    fn new(backend: Backend, userspace: Userspace) -> Served {
        let userspace = (backend == Backend::Userspace).then_some(userspace);
        Served { backend, userspace }
    }

    /// An interface that exists: its userspace implementation is asked of its process.
    fn of(iface: &Iface, link: &Link) -> Served {
        let userspace = match link.backend {
            Backend::Kernel => None,
            Backend::Userspace => backend::running_userspace(iface.name.as_str()),
        };
        Served {
            backend: link.backend,
            userspace,
        }
    }
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
fn plan(ctx: &Ctx, iface: &Iface, want: &Wanted, replace: bool) -> Result<Plan> {
    let name = &iface.name;
    let not_wg = |kind: &str, label: &str| {
        Error::failed(format!(
            "{name} already exists in {label} but is a {kind} link, not a WireGuard interface"
        ))
    };
    // Where it belongs first, then the birthplace (a run interrupted before the move).
    let Some((side, link)) = find(iface, Side::Dest, not_wg)? else {
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
                iface.label(Side::Birth)
            );
            backend::stop_userspace(name.as_str())?;
        }
        return Ok(Plan::Create { replacing: true });
    };
    let dev = iface.read(side, link.backend)?;
    let running = Served::of(iface, &link).userspace;
    // (only wgctl makes wgd interfaces, and one may be born where it belongs)
    let ours = side == Side::Birth || !iface.moves() || running == Some(Userspace::Wgd);
    if dev.public_key.is_none() && ours {
        // Created but never configured: a run killed right after creating it. Finish it.
        vlog!(
            1,
            "{name} exists without a key (an interrupted add): configuring it"
        );
        let port = if ctx.check {
            want.listen_port
        } else {
            let port = configure(iface, link.backend, side, want, &mut false)?;
            // (its link listener: the killed run may not have filtered it)
            iface.refilter(&link, false);
            port
        };
        let out = report(true, iface, Served::of(iface, &link), &want.public, port)?;
        return Ok(Plan::Settled(out));
    }
    // (a link not yet up where it belongs is one an add left unfinished, as is its IPv6, which
    // is set there just before it comes up: `finish` sets it)
    let ipv6 = match want.ipv6 {
        Some(_) if link.up && side == Side::Dest => iface.ipv6(side)?,
        _ => None,
    };
    let diffs = want.differences(&link, &dev, running, ipv6);
    // boringtun (0.7) keeps the socket of its old port open when given a new one.
    let remake = want.other_userspace(&link, running).is_some()
        || (running == Some(Userspace::Boringtun)
            && want.listen_port.is_some_and(|p| dev.listen_port != Some(p)));
    let found = Existing {
        side,
        link,
        dev,
        ipv6,
    };
    if diffs.is_empty() {
        return converge(ctx, iface, &found, want.ipv6).map(Plan::Settled);
    }
    if !replace {
        return Err(Error::failed(format!(
            "WireGuard interface {name} already exists in {} with different settings: {}; \
             use --replace to change them",
            iface.label(side),
            diffs.join(", ")
        )));
    }
    if want.backend.is_none_or(|b| b == found.link.backend) && !remake {
        return update_in_place(ctx, iface, &found, want).map(Plan::Settled);
    }
    if !ctx.check {
        vlog!(1, "replacing {name}: {}", diffs.join(", "));
        iface.remove(side, found.link.backend)?;
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
fn configure_new(iface: &Iface, used: Backend, side: Side, want: &Wanted) -> Result<Option<u16>> {
    let mut moved = false;
    configure(iface, used, side, want, &mut moved).map_err(|e| {
        let name = &iface.name;
        let died = used == Backend::Userspace && backend::userspace_pids(name.as_str()).is_empty();
        iface.undo(if moved { Side::Dest } else { Side::Birth }, used);
        if died {
            let serving = want.userspace.unwrap_or(userspace::DEFAULT);
            let hint = match serving {
                Userspace::WireguardGo => {
                    " (each one needs an inotify instance: is fs.inotify.max_user_instances \
                     exhausted?)"
                }
                Userspace::Boringtun | Userspace::Wgd => "",
            };
            return Error::caused(
                format!(
                    "{} {name} exited right after starting in {}{hint}",
                    serving.program(),
                    iface.label(Side::Birth)
                ),
                e,
            );
        }
        e
    })
}

/// The interface in the first of the interface's namespaces (`first`, then the other) that
/// has a WireGuard link of its name, and which one; a link of another kind there is the error
/// `not_wg(kind, label)`.
fn find(
    iface: &Iface,
    first: Side,
    not_wg: impl Fn(&str, &str) -> Error,
) -> Result<Option<(Side, Link)>> {
    for side in iface.sides(first) {
        match iface.lookup(side)? {
            Found::WireGuard(link) => return Ok(Some((side, link))),
            Found::Other(kind) => return Err(not_wg(&kind, iface.label(side))),
            Found::Absent => {}
        }
    }
    Ok(None)
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
    side: Side,
    link: Link,
    dev: DeviceInfo,
    /// Whether its link carries IPv6 (read only when `--ipv6` asks).
    ipv6: Option<bool>,
}

/// An interface with the wanted settings exists: finish what an interrupted run left undone
/// (the move, the IPv6 asked for, bringing it up), or report that nothing changes.
fn converge(ctx: &Ctx, iface: &Iface, found: &Existing, ipv6: Option<bool>) -> Result<Outcome> {
    let Existing {
        side, link, dev, ..
    } = found;
    let changed = finish(ctx, iface, *side, link, ipv6)?;
    let port = dev.listen_port.filter(|p| *p != 0);
    let public = dev.public_key.clone().unwrap_or_else(Key::zero);
    report(changed, iface, Served::of(iface, link), &public, port)
}

/// Moves an interface an interrupted run left in the birthplace, gives it the IPv6 asked for
/// (`ipv6`) and brings it up, and filters the listeners of its wireguard-go if they are not (a
/// run killed before it did); returns whether there was anything to do.
fn finish(ctx: &Ctx, iface: &Iface, side: Side, link: &Link, ipv6: Option<bool>) -> Result<bool> {
    let moving = side == Side::Birth && iface.moves();
    let changed = moving || !link.up;
    if changed && !ctx.check {
        if moving {
            iface.move_to_dest()?;
        }
        if let Some(on) = ipv6 {
            iface.set_ipv6(Side::Dest, on)?;
        }
        iface.bring_up(link.backend)?;
    }
    Ok(iface.refilter(link, ctx.check) || changed)
}

/// `--replace` with the same backend: sets what differs (MTU, then private key, fwmark and
/// listen port in one update) on the live interface, which keeps its peers, then finishes it
/// like [`converge`]. If the update fails, the MTU and what the update may have set before
/// failing are put back.
fn update_in_place(ctx: &Ctx, iface: &Iface, found: &Existing, want: &Wanted) -> Result<Outcome> {
    let Existing {
        side,
        link,
        dev,
        ipv6,
    } = found;
    let (name, side) = (&iface.name, *side);
    let old_port = dev.listen_port.filter(|p| *p != 0);
    let old_mark = dev.fwmark.unwrap_or(0);
    let port = want.listen_port.filter(|p| old_port != Some(*p));
    let mark = want.fwmark.filter(|f| *f != old_mark);
    let rekey = dev.public_key.as_ref() != Some(&want.public);
    let mtu = want.mtu.filter(|m| link.mtu != Some(*m));
    let ipv6 = want.ipv6.filter(|on| ipv6.is_some_and(|now| now != *on));
    if let Some(p) = port {
        iface.check_port_free(p)?;
    }
    let served = Served::of(iface, link);
    if let (Some(serving), Some(m)) = (served.userspace, mtu) {
        userspace::check_mtu(serving, name, m)?;
    }
    if !ctx.check {
        vlog!(1, "updating {name} in {} in place", iface.label(side));
        if let Some(on) = ipv6 {
            iface.set_ipv6(side, on)?;
        }
        if let Some(m) = mtu {
            if let Err(e) = iface.set_mtu(side, m) {
                ipv6_back(iface, side, ipv6);
                return Err(e);
            }
        }
        let update = Settings {
            private_key: rekey.then(|| want.key.clone()),
            listen_port: port,
            fwmark: mark,
        };
        let undo = Settings {
            private_key: dev.private_key.clone().filter(|_| rekey),
            listen_port: None,
            fwmark: mark.map(|_| old_mark),
        };
        if let Err(e) = iface.apply(side, link.backend, &update, "updating") {
            vlog!(1, "undoing the update of {name}");
            let undone = iface.apply(side, link.backend, &undo, "updating");
            let mtu_back = match (mtu, link.mtu) {
                (Some(_), Some(m)) => iface.set_mtu(side, m),
                _ => Ok(()),
            };
            if let Err(u) = undone.and(mtu_back) {
                vlog!(1, "undo: {u}");
            }
            ipv6_back(iface, side, ipv6);
            return Err(e);
        }
    }
    finish(ctx, iface, side, link, want.ipv6)?;
    let port = port.or(old_port);
    report(true, iface, served, &want.public, port)
}

/// Puts IPv6 on `side`'s link back as it was before an update set it to `set` (if it did).
fn ipv6_back(iface: &Iface, side: Side, set: Option<bool>) {
    if let Some(on) = set {
        if let Err(u) = iface.set_ipv6(side, !on) {
            vlog!(1, "undo: {u}");
        }
    }
}

/// Configures a freshly created interface where its link is (`side`), moves it if that is the
/// birthplace, and brings it up; returns the listen port. `moved` is set once the link is out
/// of the birthplace.
fn configure(
    iface: &Iface,
    used: Backend,
    side: Side,
    want: &Wanted,
    moved: &mut bool,
) -> Result<Option<u16>> {
    *moved = side == Side::Dest && iface.moves();
    vlog!(
        1,
        "configuring {} in {} (private key, listen port, fwmark)",
        iface.name,
        iface.label(side)
    );
    let mut settings = want.settings();
    if used == Backend::Userspace
        && backend::running_userspace(iface.name.as_str()) == Some(Userspace::Boringtun)
    {
        // boringtun opens its UDP socket only when told a port: 0 lets the kernel pick one.
        settings.listen_port.get_or_insert(0);
    }
    iface.apply(side, used, &settings, "configuring")?;
    if let (Backend::Userspace, Some(m)) = (used, want.mtu) {
        iface.set_mtu(side, m)?;
    }
    if side == Side::Birth {
        *moved = iface.move_to_dest()?;
    }
    // (where it ends up: a move gives the link that namespace's defaults)
    if let Some(on) = want.ipv6 {
        iface.set_ipv6(Side::Dest, on)?;
    }
    iface.bring_up(used)?;
    match want.listen_port {
        Some(port) => Ok(Some(port)),
        // None asked for: the backend picks one when the link comes up.
        None => iface.picked_port(used),
    }
}

fn report(
    changed: bool,
    iface: &Iface,
    served: Served,
    public: &Key,
    listen_port: Option<u16>,
) -> Result<Outcome> {
    Outcome::object(
        changed,
        "interface",
        IfaceJson {
            name: iface.name.clone(),
            netns: iface.netns(Side::Dest),
            birth_netns: Some(iface.netns(Side::Birth)),
            backend: Some(served.backend),
            userspace: Some(served.userspace),
            public_key: Some(public.to_base64()),
            listen_port: Some(listen_port),
        },
    )
}

/// `iface del`: the link in `--ns`, else in `--into-ns`; else a userspace interface living
/// anywhere, through its process and UAPI socket.
fn del(ctx: &Ctx, a: DelArgs) -> Result<Outcome> {
    let iface = Iface::new(ctx, &a.name, a.into_ns.as_ref())?;
    let name = &iface.name;
    let not_wg = |kind: &str, label: &str| {
        Error::failed(format!(
            "{name} in {label} is a {kind} link, not a WireGuard interface; not deleting it"
        ))
    };
    let found = find(&iface, Side::Birth, not_wg)?;
    let out = |changed: bool, netns: Option<String>, backend: Option<Backend>| {
        Outcome::object(
            changed,
            "interface",
            IfaceJson {
                name: name.clone(),
                netns,
                birth_netns: None,
                backend,
                userspace: None,
                public_key: None,
                listen_port: None,
            },
        )
    };
    if let Some((side, link)) = found {
        if !ctx.check {
            vlog!(1, "deleting {name} in {}", iface.label(side));
            iface.remove(side, link.backend)?;
        }
        return out(true, iface.netns(side), Some(link.backend));
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
