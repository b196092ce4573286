//! `nsctl link set|del|list`: any link's state, master, MTU, MAC and namespace (like `ip link`).

use std::collections::{BTreeMap, BTreeSet};
use std::os::fd::AsRawFd;

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::{ArgGroup, Subcommand};
use netlink_packet_route::link::{InfoKind, LinkMessage};
use netlink_packet_route::nsid::{NsidAttribute, NsidMessage};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, LinkUnspec};
use serde::Serialize;

use common::link::{delete_link_if_exists, LinkExt};
use common::netns::NetnsFd;
use common::nl::connect_in;
use common::types::{ns_label, IfName, NsName, NsTarget};
use common::{Ctx, Error, Outcome, Result};

use super::{
    addr_cidr, bridge_port_isolated, kind_label, link_at, set_isolated, set_link, state, undo_set,
};

#[derive(Subcommand, Debug)]
pub enum Link {
    /// Change a link (like `ip link set NAME [up|down] [master BR|nomaster] [mtu N]
    /// [address MAC] [netns NS]`, and `ip link set NAME type bridge_slave isolated on|off`)
    #[command(group(ArgGroup::new("updown").args(["up", "down"])))]
    #[command(group(ArgGroup::new("mastery").args(["master", "nomaster"])))]
    Set {
        /// Link name
        #[arg(add = common::complete::links(&[]))]
        name: IfName,
        /// Bring it up (`ip link set NAME up`)
        #[arg(long)]
        up: bool,
        /// Bring it down (`ip link set NAME down`)
        #[arg(long)]
        down: bool,
        /// Enslave it to bridge BR (`ip link set NAME master BR`)
        #[arg(long, value_name = "BR", add = common::complete::links(&["--netns"]))]
        master: Option<IfName>,
        /// Release it from its master (`ip link set NAME nomaster`)
        #[arg(long)]
        nomaster: bool,
        /// Set the MTU (`ip link set NAME mtu N`)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(68..=65535))]
        mtu: Option<u32>,
        /// Set the MAC, aa:bb:cc:dd:ee:ff (`ip link set NAME address MAC`)
        #[arg(long, value_name = "MAC")]
        address: Option<Mac>,
        /// Move it into namespace NS2 first (`ip link set NAME netns NS2`); the other settings
        /// then apply there (a moved link arrives down and without master)
        #[arg(long, value_name = "NS2", add = common::complete::namespaces())]
        netns: Option<NsTarget>,
        /// Isolate the bridge port from the other isolated ports of its bridge, or not (`bridge
        /// link set dev NAME isolated on|off`); after `--master`, if both are given
        #[arg(
            long,
            value_name = "on|off",
            conflicts_with = "nomaster",
            value_parser = PossibleValuesParser::new(["on", "off"])
                .map(|v| v == "on"),
        )]
        isolated: Option<bool>,
    },
    /// Delete a link; a veth takes its peer with it (like `ip link del NAME`)
    Del {
        /// Link name
        #[arg(add = common::complete::links(&[]))]
        name: IfName,
    },
    /// List links with kind, state, operstate, carrier, master, bridge port isolation, MTU,
    /// MAC, veth peer and addresses (like `ip -d addr show`)
    List {
        /// Leave out the veth peers in other namespaces (their names and namespaces are null):
        /// naming each costs a question to its namespace, a thousand for a hub's switch
        #[arg(long)]
        no_peers: bool,
        /// Only the link of this name (like `ip link show dev NAME`), asked for by name; none
        /// (an empty list, not an error) when there is no such link
        #[arg(long, value_name = "NAME", add = common::complete::links(&[]))]
        dev: Option<IfName>,
    },
}

/// What `link set` asks for; None means "leave as it is".
#[derive(Debug, Clone, Default)]
pub struct Settings {
    pub up: Option<bool>,
    pub master: Option<Option<IfName>>,
    pub mtu: Option<u32>,
    pub address: Option<Mac>,
    /// IFLA_BRPORT_ISOLATED, set after the master.
    pub isolated: Option<bool>,
}

/// The parts of a link `link set` changes.
#[derive(Debug, Clone)]
struct Current {
    index: u32,
    kind: Option<String>,
    up: bool,
    master: Option<u32>,
    /// Whether it is an isolated bridge port; None when it is no bridge port.
    isolated: Option<bool>,
    mtu: u32,
    address: Option<String>,
}

impl Current {
    fn of(l: &LinkMessage) -> Current {
        Current {
            index: l.header.index,
            kind: l.kind().map(ToString::to_string),
            up: l.is_up(),
            master: l.master(),
            isolated: bridge_port_isolated(l),
            mtu: l.mtu().unwrap_or(0),
            address: l.mac(),
        }
    }
}

/// A link's settings, what `link set` prints (`{"changed":..,"link":{..}}`) and every entry of
/// `link list` starts with.
#[derive(Debug, Clone, Serialize)]
pub struct LinkView {
    pub name: String,
    /// The namespace by the name given to `--ns` (`--netns` for a moved link); null for the
    /// caller's.
    pub netns: Option<String>,
    /// The kind as the kernel names it (`ip -d link`'s `info_kind`): veth, bridge, tun,
    /// wireguard, dummy, vlan, ...; null for a device without one (lo).
    pub kind: Option<String>,
    /// The administrative state, "up" or "down".
    pub state: &'static str,
    pub master: Option<String>,
    /// For a bridge port: it is isolated (IFLA_BRPORT_ISOLATED: it exchanges no frames with the
    /// bridge's other isolated ports); null for a link that is no bridge port.
    pub isolated: Option<bool>,
    pub mtu: u32,
    /// The MAC, lowercase like `ip link`; null for a device without one (a tun).
    pub address: Option<String>,
}

/// A link that `link del` names: `{"changed":..,"link":{"name":..,"netns":..}}`.
#[derive(Debug, Serialize)]
struct LinkRef {
    name: String,
    netns: Option<String>,
}

/// One link of `link list`: its settings and what the kernel says of it, as `ip -j -d link`.
#[derive(Debug, Serialize)]
pub struct ListedLink {
    #[serde(flatten)]
    pub link: LinkView,
    pub index: u32,
    /// RFC 2863 operational state, lower case (`ip`'s `operstate`): up, down, lowerlayerdown
    /// (e.g. a veth whose peer is down), unknown, ...
    pub operstate: Option<String>,
    /// The link has carrier (IFLA_CARRIER).
    pub carrier: bool,
    /// It takes IPv6 (`net.ipv6.conf.NAME.disable_ipv6` is 0); null where the kernel has no
    /// IPv6 for it (an MTU below 1,280, or no IPv6 at all).
    pub ipv6: Option<bool>,
    /// For a veth: the other end's name, null when its namespace cannot be found (neither
    /// under /run/netns nor the host's). Null for other kinds.
    pub peer: Option<String>,
    /// For a veth: the namespace of the other end by its /run/netns name (`netns` when both
    /// ends are together); null for the host's namespace (PID 1's, which has no name there)
    /// and when it cannot be found. Null for other kinds.
    pub peer_netns: Option<String>,
    /// Every address as CIDR, in kernel order.
    pub addresses: Vec<String>,
}

impl Link {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Link::Set {
                name,
                up,
                down,
                master,
                nomaster,
                mtu,
                address,
                netns,
                isolated,
            } => {
                let s = Settings {
                    up: (up || down).then_some(up),
                    master: if nomaster {
                        Some(None)
                    } else {
                        master.map(Some)
                    },
                    mtu,
                    address,
                    isolated,
                };
                set(ctx, &name, &s, netns)
            }
            Link::Del { name } => {
                let handle = ctx.netlink()?;
                let changed = ctx.block_on(del(&handle, &name, &ctx.ns_label(), ctx.check))?;
                let link = LinkRef {
                    name: name.to_string(),
                    netns: ctx.netns_name(),
                };
                Outcome::object(changed, "link", link)
            }
            Link::List { no_peers, dev } => {
                let handle = ctx.netlink()?;
                let links =
                    ctx.block_on(list(&handle, ctx.netns_name(), !no_peers, dev.as_ref()))?;
                Outcome::listing("links", links)
            }
        }
    }
}

/// Every link in the namespace of `handle` (named `netns`), or only `dev`, with its addresses
/// and, for a veth, its peer (in another namespace: only with `peers`).
async fn list(
    handle: &Handle,
    netns: Option<String>,
    peers: bool,
    dev: Option<&IfName>,
) -> Result<Vec<ListedLink>> {
    let links = match dev {
        Some(name) => common::nl::find_link(handle, name.as_str())
            .await?
            .into_iter()
            .collect(),
        None => common::nl::links(handle).await?,
    };
    let names: BTreeMap<u32, String> = links
        .iter()
        .map(|l| (l.header.index, l.name().unwrap_or_default().to_string()))
        .collect();
    // (as `ip addr` words each: a peer or a label makes another address than the plain one)
    let mut addresses: BTreeMap<u32, Vec<String>> = BTreeMap::new();
    let addressed = match (dev, links.first()) {
        (Some(_), None) => Vec::new(),
        (Some(_), Some(l)) => super::addresses(handle, Some(l.header.index), None).await?,
        (None, _) => super::addresses(handle, None, None).await?,
    };
    for a in addressed {
        let dev = names
            .get(&a.header.index)
            .and_then(|n| n.parse::<IfName>().ok());
        if let (Some(_), Some(dev)) = (addr_cidr(&a), dev) {
            let on = addresses.entry(a.header.index).or_default();
            on.push(super::addr::describe(&a, &dev));
        }
    }
    let elsewhere: BTreeSet<i32> = links
        .iter()
        .filter(|l| peers && l.kind() == Some(&InfoKind::Veth))
        .filter_map(LinkExt::link_netnsid)
        .collect();
    let named = named_nsids(handle, &elsewhere).await;
    let mut out = Vec::with_capacity(links.len());
    for l in &links {
        let (peer, peer_netns) = match (l.kind(), l.link_index(), l.link_netnsid()) {
            (Some(InfoKind::Veth), Some(i), None) => (names.get(&i).cloned(), netns.clone()),
            (Some(InfoKind::Veth), Some(i), Some(nsid)) => match named.get(&nsid) {
                Some(ns) => (peer_name_in(ns, i).await, ns.name()),
                None => (None, None),
            },
            _ => (None, None),
        };
        let master = l
            .master()
            .map(|m| names.get(&m).cloned().unwrap_or_else(|| m.to_string()));
        out.push(ListedLink {
            link: LinkView {
                name: l.name().unwrap_or_default().to_string(),
                netns: netns.clone(),
                kind: l.kind().map(ToString::to_string),
                state: state(l.is_up()),
                master,
                isolated: bridge_port_isolated(l),
                mtu: l.mtu().unwrap_or(0),
                address: l.mac(),
            },
            index: l.header.index,
            operstate: l.operstate(),
            carrier: l.carrier().unwrap_or(false),
            ipv6: l.ipv6(),
            peer,
            peer_netns,
            addresses: addresses.remove(&l.header.index).unwrap_or_default(),
        });
    }
    Ok(out)
}

/// A namespace other than the listing one, that a veth's peer is in.
enum PeerNs {
    /// Under /run/netns by this name.
    Named(NsName),
    /// The host's (PID 1's), which has no name there.
    Host,
}

impl PeerNs {
    fn target(&self) -> NsTarget {
        match self {
            PeerNs::Named(n) => NsTarget::Name(n.clone()),
            PeerNs::Host => NsTarget::Path("/proc/1/ns/net".into()),
        }
    }

    /// `peer_netns`: the /run/netns name; null for the host's.
    fn name(&self) -> Option<String> {
        match self {
            PeerNs::Named(n) => Some(n.to_string()),
            PeerNs::Host => None,
        }
    }
}

/// The /run/netns names that held a veth's peer in an earlier listing of this process: asked
/// first, since the lines of a batch (`--ns c00 link list`, `--ns c01 link list`, ...) tend to
/// find their peers in the same namespace (a hub's switch), which then costs one question
/// instead of one per namespace on the machine.
static PEER_NAMESPACES: std::sync::Mutex<Vec<NsName>> = std::sync::Mutex::new(Vec::new());

/// The namespaces with ids `nsids` (as seen from the namespace of `handle`), like `ip`'s
/// `link-netns`: the host's (PID 1's) is checked first, then the kernel is asked for the id of
/// each name under /run/netns (those that answered before first), until every id is found. An
/// id found nowhere stays out.
async fn named_nsids(handle: &Handle, nsids: &BTreeSet<i32>) -> BTreeMap<i32, PeerNs> {
    let mut named = BTreeMap::new();
    if nsids.is_empty() {
        return named;
    }
    if let Some(id) = nsid_of(handle, NsidAttribute::Pid(1)).await {
        if nsids.contains(&id) {
            named.insert(id, PeerNs::Host);
        }
    }
    let seen = PEER_NAMESPACES
        .lock()
        .map(|s| s.clone())
        .unwrap_or_default();
    // (/run/netns read only if those did not answer: a hub's thousand namespaces would cost a
    // directory read for every line of a batch)
    let rest = std::iter::once_with(super::netns::names).flatten();
    let mut names = seen
        .iter()
        .cloned()
        .chain(rest.filter(|n| !seen.contains(n)));
    while named.len() < nsids.len() {
        let Some(name) = names.next() else { break };
        // A leftover file that is no namespace cannot be opened as one, or has no id.
        let Ok(file) = std::fs::File::open(name.path()) else {
            continue;
        };
        let fd = NsidAttribute::Fd(file.as_raw_fd() as u32);
        if let Some(id) = nsid_of(handle, fd).await.filter(|id| nsids.contains(id)) {
            if !seen.contains(&name) {
                if let Ok(mut s) = PEER_NAMESPACES.lock() {
                    s.push(name.clone());
                }
            }
            named.entry(id).or_insert(PeerNs::Named(name));
        }
    }
    named
}

/// The id the namespace of `handle` gives the namespace `which` names (a NETNSA_PID or
/// NETNSA_FD), by RTM_GETNSID; None if it has none (or the kernel does not answer).
async fn nsid_of(handle: &Handle, which: NsidAttribute) -> Option<i32> {
    let mut msg = NsidMessage::default();
    msg.attributes = vec![which];
    let answers = common::nl::ask(handle, RouteNetlinkMessage::GetNsId(msg), 0)
        .await
        .ok()?;
    answers.into_iter().find_map(|a| match a {
        RouteNetlinkMessage::NewNsId(m) => m.attributes.iter().find_map(|a| match a {
            NsidAttribute::Id(id) if *id >= 0 => Some(*id),
            _ => None,
        }),
        _ => None,
    })
}

/// The name of link `index` in namespace `ns`, if it can be looked up there.
async fn peer_name_in(ns: &PeerNs, index: u32) -> Option<String> {
    let fd = NetnsFd::open(&ns.target()).ok()?;
    let peer = link_at(&connect_in(&fd).ok()?, index).await?;
    peer.name().map(str::to_string)
}

/// Deletes link NAME; `Ok(false)` if there is none.
pub async fn del(handle: &Handle, name: &IfName, where_: &str, check: bool) -> Result<bool> {
    let Some(l) = common::nl::find_link(handle, name.as_str()).await? else {
        return Ok(false);
    };
    if check {
        return Ok(true);
    }
    delete_link_if_exists(handle, l.header.index, || {
        format!("deleting link {name} in {where_}")
    })
    .await
}

fn set(ctx: &Ctx, name: &IfName, s: &Settings, to: Option<NsTarget>) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let here = ctx.ns_label();
    let Some(to) = to else {
        let (changed, view) = ctx.block_on(async {
            let l = common::nl::link(&handle, name.as_str(), &here).await?;
            apply(&handle, name, Current::of(&l), s, &here, ctx.check).await
        })?;
        let link = LinkView {
            netns: ctx.netns_name(),
            ..view
        };
        return Outcome::object(changed, "link", link);
    };
    let there = ns_label(Some(&to));
    let target = NetnsFd::open(&to)?;
    let same = target.id()? == NetnsFd::current()?.id()?;
    let found = ctx.block_on(common::nl::find_link(&handle, name.as_str()))?;
    let (changed, view) = match found {
        Some(l) if !same => {
            if s.isolated.is_some() && !matches!(s.master, Some(Some(_))) {
                return Err(Error::invalid(format!(
                    "link {name} is not a bridge port once moved to {there} (a moved link arrives \
                     without master): --isolated needs --master there"
                )));
            }
            // Move, then apply the rest in the target namespace.
            if !ctx.check {
                let msg = LinkUnspec::new_with_index(l.header.index)
                    .setns_by_fd(target.raw())
                    .build();
                ctx.block_on(set_link(&handle, msg, || {
                    format!("moving link {name} from {here} to {there}")
                }))?;
            }
            let check = ctx.check;
            let moved = Current {
                up: false,
                master: None,
                isolated: None,
                ..Current::of(&l)
            };
            let (_, view) = ctx.block_on(async {
                let h = connect_in(&target)?;
                if check {
                    if common::nl::find_link(&h, name.as_str()).await?.is_some() {
                        return Err(Error::failed(format!(
                            "moving link {name} from {here} to {there}: {there} already has a link {name}"
                        )));
                    }
                    return apply(&h, name, moved, s, &there, true).await;
                }
                let l = common::nl::link(&h, name.as_str(), &there).await?;
                apply(&h, name, Current::of(&l), s, &there, false).await
            })?;
            (true, view)
        }
        Some(l) => ctx.block_on(apply(&handle, name, Current::of(&l), s, &here, ctx.check))?,
        // Already moved (a second run): converge the settings there.
        None => ctx.block_on(async {
            let h = connect_in(&target)?;
            let Some(l) = common::nl::find_link(&h, name.as_str()).await? else {
                return Err(Error::failed(format!(
                    "device '{name}' not found in {here} nor in {there}"
                )));
            };
            apply(&h, name, Current::of(&l), s, &there, ctx.check).await
        })?,
    };
    let link = LinkView {
        netns: Some(to.to_string()),
        ..view
    };
    Outcome::object(changed, "link", link)
}

/// Brings link `cur` to settings `s`: one RTM_SETLINK for the state, master, MTU and MAC that
/// differ, then one RTM_NEWLINK for the port isolation if it differs (it needs the new master in
/// place; if it fails, the RTM_SETLINK is undone). Nothing is sent for what already is so.
async fn apply(
    handle: &Handle,
    name: &IfName,
    cur: Current,
    s: &Settings,
    where_: &str,
    check: bool,
) -> Result<(bool, LinkView)> {
    let mut msg = LinkUnspec::new_with_index(cur.index);
    // What puts back each change of `msg`, should the isolation step after it fail.
    let mut undo = LinkUnspec::new_with_index(cur.index);
    let mut changed = false;
    let mut master_name = None;
    let mut new_master = cur.master;
    let mut new_isolated = cur.isolated;
    match &s.master {
        Some(Some(br)) => {
            let master = common::nl::find_link(handle, br.as_str())
                .await?
                .ok_or_else(|| {
                    Error::failed(format!(
                        "setting master of {name} to {br}: bridge '{br}' not found in {where_}"
                    ))
                })?;
            let idx = master.header.index;
            if cur.master != Some(idx) {
                msg = msg.controller(idx);
                undo = match cur.master {
                    Some(old) => undo.controller(old),
                    None => undo.nocontroller(),
                };
                changed = true;
                // A new port of a bridge starts out not isolated.
                new_isolated = (master.kind() == Some(&InfoKind::Bridge)).then_some(false);
            }
            new_master = Some(idx);
            master_name = Some(br.to_string());
        }
        Some(None) => {
            if let Some(old) = cur.master {
                msg = msg.nocontroller();
                undo = undo.controller(old);
                changed = true;
            }
            new_master = None;
            new_isolated = None;
        }
        None => {}
    }
    if let (Some(idx), None) = (new_master, &master_name) {
        master_name = Some(master_label(handle, idx).await);
    }
    let isolate = match (s.isolated, new_isolated) {
        (Some(want), Some(now)) => (want != now).then_some(want),
        (Some(_), None) => {
            let why = match (new_master, &master_name) {
                (Some(idx), Some(m)) => {
                    let kind = link_at(handle, idx).await.map(|l| kind_label(&l));
                    format!(
                        "its master {m} is a {}",
                        kind.as_deref().unwrap_or("non-bridge")
                    )
                }
                _ => "no master".to_string(),
            };
            return Err(Error::invalid(format!(
                "setting link {name} isolated in {where_}: {name} is not a bridge port ({why})"
            )));
        }
        (None, _) => None,
    };
    let mut new_mtu = cur.mtu;
    if let Some(m) = s.mtu {
        if m != cur.mtu {
            msg = msg.mtu(m);
            undo = undo.mtu(cur.mtu);
            changed = true;
            new_mtu = m;
        }
    }
    let mut new_address = cur.address.clone();
    if let Some(mac) = s.address {
        let want = mac.to_string();
        if new_address.as_deref() != Some(want.as_str()) {
            msg = msg.address(mac.0.to_vec());
            if let Some(old) = cur.address.as_deref().and_then(mac_bytes) {
                undo = undo.address(old);
            }
            changed = true;
            new_address = Some(want);
        }
    }
    let mut new_up = cur.up;
    if let Some(up) = s.up {
        if up != cur.up {
            msg = if up { msg.up() } else { msg.down() };
            undo = if cur.up { undo.up() } else { undo.down() };
            changed = true;
            new_up = up;
        }
    }
    if changed && !check {
        set_link(handle, msg.build(), || describe(name, s, where_)).await?;
    }
    if let Some(on) = isolate {
        if !check {
            let what = || format!("setting link {name} isolated {} in {where_}", on_off(on));
            if let Err(e) = set_isolated(handle, cur.index, on, what).await {
                if changed {
                    let what = format!("setting link {name} back as it was in {where_}");
                    undo_set(handle, undo.build(), &what).await;
                }
                return Err(e);
            }
        }
        new_isolated = Some(on);
    }
    Ok((
        changed || isolate.is_some(),
        LinkView {
            name: name.to_string(),
            netns: None,
            kind: cur.kind,
            state: state(new_up),
            master: master_name,
            isolated: new_isolated,
            mtu: new_mtu,
            address: new_address,
        },
    ))
}

/// "on" or "off", as `ip` words a port flag.
fn on_off(on: bool) -> &'static str {
    if on {
        "on"
    } else {
        "off"
    }
}

/// The bytes of a MAC as `LinkExt::mac` prints it (hex pairs joined by `:`).
fn mac_bytes(mac: &str) -> Option<Vec<u8>> {
    mac.split(':')
        .map(|pair| u8::from_str_radix(pair, 16).ok())
        .collect()
}

/// The name of link `index`, or the number if it cannot be looked up.
async fn master_label(handle: &Handle, index: u32) -> String {
    match link_at(handle, index).await {
        Some(l) => l.name().unwrap_or_default().to_string(),
        None => index.to_string(),
    }
}

/// "setting link X up master br0 mtu 1400 in namespace c1", for error messages.
fn describe(name: &IfName, s: &Settings, where_: &str) -> String {
    let mut words = format!("setting link {name}");
    match s.up {
        Some(true) => words.push_str(" up"),
        Some(false) => words.push_str(" down"),
        None => {}
    }
    match &s.master {
        Some(Some(br)) => words.push_str(&format!(" master {br}")),
        Some(None) => words.push_str(" nomaster"),
        None => {}
    }
    if let Some(m) = s.mtu {
        words.push_str(&format!(" mtu {m}"));
    }
    if let Some(mac) = s.address {
        words.push_str(&format!(" address {mac}"));
    }
    format!("{words} in {where_}")
}

/// An Ethernet MAC address as `--address` takes it: six hex pairs `aa:bb:cc:dd:ee:ff` (either
/// case, printed lowercase). Multicast (and broadcast) and all-zero addresses are refused, as
/// the kernel refuses them for an Ethernet device (`is_valid_ether_addr`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Mac(pub [u8; 6]);

impl std::str::FromStr for Mac {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mac, String> {
        let pairs: Vec<&str> = s.split(':').collect();
        let hex_pair = |p: &&str| p.len() == 2 && p.bytes().all(|b| b.is_ascii_hexdigit());
        if pairs.len() != 6 || !pairs.iter().all(hex_pair) {
            return Err(format!(
                "MAC address '{s}' is invalid: use six hex pairs like 02:00:5e:10:00:01"
            ));
        }
        let mut octets = [0u8; 6];
        for (o, p) in octets.iter_mut().zip(&pairs) {
            *o = u8::from_str_radix(p, 16).map_err(|e| format!("MAC address '{s}': {e}"))?;
        }
        if octets[0] & 1 == 1 {
            return Err(format!(
                "MAC address '{s}' is a multicast address (lowest bit of the first octet set): \
                 an Ethernet device needs a unicast one"
            ));
        }
        if octets == [0; 6] {
            return Err(format!("MAC address '{s}' is all zeros"));
        }
        Ok(Mac(octets))
    }
}

impl std::fmt::Display for Mac {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let [a, b, c, d, e, g] = self.0;
        write!(f, "{a:02x}:{b:02x}:{c:02x}:{d:02x}:{e:02x}:{g:02x}")
    }
}

impl Serialize for Mac {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::Mac;

    #[test]
    fn mac_addresses_parse_strictly_and_print_lowercase() {
        let m: Mac = "02:AB:cd:00:0f:FF".parse().unwrap();
        assert_eq!(m.0, [0x02, 0xab, 0xcd, 0x00, 0x0f, 0xff]);
        assert_eq!(m.to_string(), "02:ab:cd:00:0f:ff");
        for bad in [
            "",
            "aa:bb:cc:dd:ee",
            "aa:bb:cc:dd:ee:ff:00",
            "zz:bb:cc:dd:ee:ff",
            "aa-bb-cc-dd-ee-ff",
            "a:bb:cc:dd:ee:ff",
            "aaa:bb:cc:dd:ee:f",
            "+a:bb:cc:dd:ee:ff",
            "01:00:5e:00:00:01",
            "ff:ff:ff:ff:ff:ff",
            "00:00:00:00:00:00",
        ] {
            let e = bad.parse::<Mac>().unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{bad}: {e}");
        }
    }
}
