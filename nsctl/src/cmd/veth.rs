//! `nsctl veth add NAME --peer PEER [--peer-ns NS2] [--master BR [--isolated]] [--peer-master BR]
//! [--up]`.
//!
//! One RTM_NEWLINK creates both ends: the peer directly in NS2 (IFLA_NET_NS_FD inside the peer
//! message), the local end enslaved (IFLA_MASTER) and both up when asked, so the kernel applies
//! it all or nothing. Only `--isolated` (the kernel takes port settings only from a port that
//! has its master) and `--peer-master` (in NS2) need steps of their own; if one fails, the veth
//! is deleted again.

use clap::Subcommand;
use netlink_packet_route::link::{InfoData, InfoKind, InfoVeth, LinkMessage};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth};
use serde::Serialize;

use common::link::LinkExt;
use common::netns::NetnsFd;
use common::nl::connect_in;
use common::types::{ns_label, IfName, NsTarget};
use common::{Ctx, Error, Kind, Outcome, Result};

use super::{bridge_port_isolated, kind_label, link_at, set_isolated, set_link, undo_set};

#[derive(Subcommand, Debug)]
pub enum Veth {
    /// Create a veth pair, or make sure it exists
    /// (like `ip link add NAME type veth peer name PEER netns NS2`)
    Add {
        /// Name of the local end (1-15 bytes)
        name: IfName,
        /// Name of the other end
        #[arg(long)]
        peer: IfName,
        /// Put the other end in namespace NS2 (name or path); default: next to the local end
        #[arg(long, value_name = "NS2", add = common::complete::namespaces())]
        peer_ns: Option<NsTarget>,
        /// Enslave the local end to bridge BR (`ip link set NAME master BR`)
        #[arg(long, value_name = "BR", add = common::complete::links(&[]))]
        master: Option<IfName>,
        /// Make the local end an isolated port of BR (`bridge link set dev NAME isolated on`):
        /// no frames to or from the bridge's other isolated ports; needs --master
        #[arg(long, requires = "master")]
        isolated: bool,
        /// Enslave the other end to bridge BR in the peer's namespace
        #[arg(long, value_name = "BR", add = common::complete::links(&["--peer-ns"]))]
        peer_master: Option<IfName>,
        /// Bring both ends up
        #[arg(long)]
        up: bool,
        /// If NAME exists but is not this veth pair, delete it and create the pair
        #[arg(long)]
        replace: bool,
    },
}

/// A veth pair as `veth add` prints it (`{"changed":..,"veth":{..}}`).
#[derive(Debug, Serialize)]
pub struct VethView {
    pub name: String,
    /// The namespace of NAME by the name given to `--ns`; null for the caller's.
    pub netns: Option<String>,
    pub peer: String,
    /// The namespace of the peer, named the same way (`--peer-ns`, else `netns`).
    pub peer_netns: Option<String>,
    pub master: Option<String>,
    /// Whether NAME is an isolated port of `master` (already, or made so by `--isolated`);
    /// null without `--master` or when the master is no bridge.
    pub isolated: Option<bool>,
    pub peer_master: Option<String>,
    /// The administrative state of NAME, "up" or "down".
    pub state: &'static str,
}

/// Everything `veth add` was asked for, resolved.
struct Plan<'a> {
    name: &'a IfName,
    peer: &'a IfName,
    peer_ns: Option<&'a NetnsFd>,
    master: Option<Master>,
    /// Make NAME an isolated port of `master`.
    isolated: bool,
    peer_master: Option<&'a IfName>,
    up: bool,
    here: &'a str,
    there: &'a str,
    check: bool,
}

/// The link `--master` names.
#[derive(Clone, Copy)]
struct Master {
    index: u32,
    /// It is a bridge (so NAME on it is a bridge port, isolated or not).
    bridge: bool,
}

/// What a run leaves NAME as.
struct After {
    changed: bool,
    up: bool,
    isolated: Option<bool>,
}

impl Veth {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let Veth::Add {
            name,
            peer,
            peer_ns,
            master: master_br,
            isolated,
            peer_master,
            up,
            replace,
        } = self;
        if peer_ns.is_none() && peer == name {
            return Err(Error::invalid(format!(
                "veth {name}: the peer needs a different name in the same namespace"
            )));
        }
        let handle = ctx.netlink()?;
        let peer_fd = peer_ns.as_ref().map(NetnsFd::open).transpose()?;
        // A --peer-ns that is where we are anyway is no other namespace.
        let peer_fd = match peer_fd {
            Some(fd) if fd.id()? == NetnsFd::current()?.id()? => None,
            other => other,
        };
        let here = ctx.ns_label();
        let plan_there = match &peer_fd {
            Some(_) => ns_label(peer_ns.as_ref()),
            None => here.clone(),
        };
        let after = ctx.block_on(async {
            let master = match &master_br {
                Some(br) => {
                    let l = bridge(&handle, br, &name, &here).await?;
                    let bridge = l.kind() == Some(&InfoKind::Bridge);
                    if isolated && !bridge {
                        return Err(Error::invalid(format!(
                            "making {name} an isolated port of {br}: {br} in {here} is a {}, \
                             not a bridge",
                            kind_label(&l)
                        )));
                    }
                    Some(Master {
                        index: l.header.index,
                        bridge,
                    })
                }
                None => None,
            };
            let plan = Plan {
                name: &name,
                peer: &peer,
                peer_ns: peer_fd.as_ref(),
                master,
                isolated,
                peer_master: peer_master.as_ref(),
                up,
                here: &here,
                there: &plan_there,
                check: ctx.check,
            };
            match common::nl::find_link(&handle, name.as_str()).await? {
                Some(l) => match is_our_pair(&handle, &l, &plan).await? {
                    Ok(()) => converge(&handle, &l, &plan).await,
                    Err(why) if !replace => Err(Error::failed(format!(
                        "{name} already exists in {here} but {why} (--replace recreates it)"
                    ))),
                    Err(_) => {
                        if !plan.check {
                            super::link::del(&handle, &name, &here, false).await?;
                        }
                        create(&handle, &plan).await
                    }
                },
                None => create(&handle, &plan).await,
            }
        })?;
        let view = VethView {
            name: name.to_string(),
            netns: ctx.netns_name(),
            peer: peer.to_string(),
            peer_netns: peer_ns.map(|n| n.to_string()).or_else(|| ctx.netns_name()),
            master: master_br.map(|b| b.to_string()),
            isolated: after.isolated,
            peer_master: peer_master.map(|b| b.to_string()),
            state: super::state(after.up),
        };
        Outcome::object(after.changed, "veth", view)
    }
}

/// The bridge `br` that `port` is to be enslaved to (the link of that name, whatever its kind:
/// the kernel judges whether it can be a master).
async fn bridge(handle: &Handle, br: &IfName, port: &IfName, where_: &str) -> Result<LinkMessage> {
    match common::nl::find_link(handle, br.as_str()).await? {
        Some(l) => Ok(l),
        None => Err(Error::failed(format!(
            "enslaving {port} to {br}: bridge '{br}' not found in {where_}"
        ))),
    }
}

/// `Ok(Ok(()))` if link `l` is the veth pair the plan describes, `Ok(Err(why))` if not.
async fn is_our_pair(
    handle: &Handle,
    l: &LinkMessage,
    plan: &Plan<'_>,
) -> Result<std::result::Result<(), String>> {
    let kind = kind_label(l);
    if kind != "veth" {
        return Ok(Err(format!("is a {kind}, not a veth")));
    }
    let Some(peer_idx) = l.link_index() else {
        return Ok(Err("it is a veth without a peer".into()));
    };
    let peer = match (plan.peer_ns, l.link_netnsid().is_some()) {
        (None, false) => link_at(handle, peer_idx).await,
        (Some(fd), true) => link_at(&connect_in(fd)?, peer_idx).await,
        _ => None,
    };
    match peer.as_ref().map(|p| (p.name(), p.link_index())) {
        Some((Some(n), Some(back))) if n == plan.peer.as_str() && back == l.header.index => {
            Ok(Ok(()))
        }
        _ => Ok(Err(format!(
            "it is a veth whose peer is not {} in {}",
            plan.peer, plan.there
        ))),
    }
}

/// The RTM_SETLINK that enslaves link `l` to `master_idx` and brings it up if asked, with the
/// one that puts it back as it was; None when it already is so.
fn update(
    l: &LinkMessage,
    master_idx: Option<u32>,
    up: bool,
) -> Option<(LinkMessage, LinkMessage)> {
    let mut msg = LinkUnspec::new_with_index(l.header.index);
    let mut undo = LinkUnspec::new_with_index(l.header.index);
    let mut changed = false;
    if let Some(m) = master_idx.filter(|&m| l.master() != Some(m)) {
        msg = msg.controller(m);
        undo = match l.master() {
            Some(old) => undo.controller(old),
            None => undo.nocontroller(),
        };
        changed = true;
    }
    if up && !l.is_up() {
        msg = msg.up();
        undo = undo.down();
        changed = true;
    }
    changed.then(|| (msg.build(), undo.build()))
}

/// The pair exists: bring master, port isolation and up state to what was asked (isolation
/// after the master, undoing the master and state if it fails), then the peer's settings.
async fn converge(handle: &Handle, l: &LinkMessage, plan: &Plan<'_>) -> Result<After> {
    let (name, here) = (plan.name, plan.here);
    let master = plan.master;
    let msg = update(l, master.map(|m| m.index), plan.up);
    let changed = msg.is_some();
    // NAME's isolation once on `master`: as it is on the same master; a new bridge port starts
    // out not isolated.
    let isolated_now = match master {
        Some(m) if !m.bridge => None,
        Some(m) if l.master() == Some(m.index) => bridge_port_isolated(l),
        Some(_) => Some(false),
        None => None,
    };
    let isolate = plan.isolated && isolated_now != Some(true);
    if !plan.check {
        let mut undo = None;
        if let Some((msg, back)) = msg {
            set_link(handle, msg, || format!("updating veth {name} in {here}")).await?;
            undo = Some(back);
        }
        if isolate {
            if let Err(e) = isolate_port(handle, l.header.index, plan).await {
                if let Some(back) = undo {
                    let what = format!("setting veth {name} back as it was in {here}");
                    undo_set(handle, back, &what).await;
                }
                return Err(e);
            }
        }
    }
    let peer_changed = peer_side(handle, plan, true).await?;
    Ok(After {
        changed: changed || isolate || peer_changed,
        up: l.is_up() || plan.up,
        isolated: if isolate { Some(true) } else { isolated_now },
    })
}

/// Makes NAME (link `index`) an isolated port of its master.
async fn isolate_port(handle: &Handle, index: u32, plan: &Plan<'_>) -> Result<()> {
    let (name, here) = (plan.name, plan.here);
    set_isolated(handle, index, true, || {
        format!("making veth {name} an isolated bridge port in {here}")
    })
    .await
}

/// The peer's own settings (master, up), applied in its namespace. `exists`: the peer is
/// already there (else, in a dry run, only validate).
async fn peer_side(handle: &Handle, plan: &Plan<'_>, exists: bool) -> Result<bool> {
    if exists && plan.peer_master.is_none() && !plan.up {
        return Ok(false);
    }
    let (peer, br, up, check, there) =
        (plan.peer, plan.peer_master, plan.up, plan.check, plan.there);
    let work = |h: Handle| async move {
        let br_idx = match br {
            Some(br) => Some(bridge(&h, br, peer, there).await?.header.index),
            None => None,
        };
        let Some(p) = common::nl::find_link(&h, peer.as_str()).await? else {
            return if exists {
                Err(Error::failed(format!(
                    "veth peer '{peer}' not found in {there}"
                )))
            } else {
                Ok(br_idx.is_some())
            };
        };
        if !exists {
            return Err(Error::failed(format!(
                "creating veth with peer {peer} in {there}: {there} already has a link {peer}"
            )));
        }
        let msg = update(&p, br_idx, up);
        let changed = msg.is_some();
        if let Some((msg, _)) = msg.filter(|_| !check) {
            set_link(&h, msg, || format!("updating veth peer {peer} in {there}")).await?;
        }
        Ok(changed)
    };
    match plan.peer_ns {
        Some(fd) => work(connect_in(fd)?).await,
        None => work(handle.clone()).await,
    }
}

/// Creates the pair in one request; then `--isolated` and `--peer-master`, undoing the pair if
/// one fails.
async fn create(handle: &Handle, plan: &Plan<'_>) -> Result<After> {
    let after = After {
        changed: true,
        up: plan.up,
        isolated: plan.master.filter(|m| m.bridge).map(|_| plan.isolated),
    };
    let (name, peer, here, there) = (plan.name, plan.peer, plan.here, plan.there);
    if plan.check || plan.peer_master.is_some() {
        // Validate the peer side first: the bridge is there, the name is free.
        let dry = Plan {
            check: true,
            up: false,
            ..*plan
        };
        peer_side(handle, &dry, false).await?;
        if plan.check {
            return Ok(after);
        }
    }
    let mut p = LinkUnspec::new_with_name(peer.as_str());
    if let Some(fd) = plan.peer_ns {
        p = p.setns_by_fd(fd.raw());
    }
    let mut b = LinkMessageBuilder::<LinkVeth>::new_with_info_kind(InfoKind::Veth)
        .name(name.as_str())
        .set_info_data(InfoData::Veth(InfoVeth::Peer(p.build())));
    if let Some(m) = plan.master {
        b = b.controller(m.index);
    }
    if plan.up {
        b = b.up();
    }
    let what = || format!("creating veth {name} in {here} with peer {peer} in {there}");
    match handle.link().add(b.build()).execute().await {
        Ok(()) => {}
        Err(e) if Kind::of(&e) == Kind::Exists => {
            return Err(Error::caused(
                format!("{}: {peer} already exists in {there}", what()),
                e,
            ))
        }
        Err(e) => return Err(Error::caused(what(), e)),
    }
    common::vlog!(
        1,
        "created veth {name} in {here} with peer {peer} in {there}"
    );
    let rest = async {
        if plan.isolated {
            let index = common::nl::link_index(handle, name.as_str(), here).await?;
            isolate_port(handle, index, plan).await?;
        }
        if plan.up {
            peer_up(handle, plan).await?;
        }
        if plan.peer_master.is_some() {
            let only_master = Plan { up: false, ..*plan };
            peer_side(handle, &only_master, true).await?;
        }
        Ok(())
    };
    if let Err(e) = rest.await {
        super::undo_create(handle, name.as_str()).await;
        return Err(e);
    }
    Ok(after)
}

/// Brings the new peer up: the kernel configures a veth peer before the pair is joined, so it
/// cannot be created up.
async fn peer_up(handle: &Handle, plan: &Plan<'_>) -> Result<()> {
    let (peer, there) = (plan.peer, plan.there);
    let h = match plan.peer_ns {
        Some(fd) => connect_in(fd)?,
        None => handle.clone(),
    };
    let idx = common::nl::link_index(&h, peer.as_str(), there).await?;
    common::link::set_up(&h, idx, true, || {
        format!("bringing up veth peer {peer} in {there}")
    })
    .await
}
