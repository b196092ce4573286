//! `nsctl addr add|del|list`: IPv4 and IPv6 addresses (like `ip addr`).

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr};

use clap::Subcommand;
use ipnet::IpNet;
use netlink_packet_route::address::{AddressAttribute, AddressFlags, AddressMessage, AddressScope};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::Handle;
use serde::Serialize;

use common::family::Family;
use common::link::LinkExt;
use common::types::{parse_cidr, IfName};
use common::{Context, Ctx, Error, Outcome, Result};

use super::addr_cidr;

#[derive(Subcommand, Debug)]
pub enum Addr {
    /// Add an address, or make sure it is there (like `ip addr add CIDR dev IFACE`)
    Add {
        /// Address with prefix length, e.g. 10.0.0.1/24 or 2001:db8::1/64
        #[arg(value_parser = parse_cidr)]
        cidr: IpNet,
        /// The interface
        #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
        dev: IfName,
        /// IPv6: skip duplicate address detection, usable at once (`ip addr add ... nodad`)
        #[arg(long)]
        nodad: bool,
        /// If the address is on IFACE with another prefix length, replace it
        #[arg(long)]
        replace: bool,
    },
    /// Remove an address (like `ip addr del CIDR dev IFACE`)
    Del {
        /// Address with prefix length, as added
        #[arg(value_parser = parse_cidr)]
        cidr: IpNet,
        /// The interface
        #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
        dev: IfName,
    },
    /// List addresses, of one interface with --dev (like `ip addr show [dev IFACE]`)
    List {
        /// Only this interface
        #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
        dev: Option<IfName>,
    },
}

/// An address on a device: what `addr add`/`addr del` print (`{"changed":..,"address":{..}}`)
/// and every entry of `addr list` starts with.
#[derive(Debug, Serialize)]
pub struct AddressView {
    pub cidr: String,
    pub dev: String,
    /// "inet" or "inet6", as `ip -j` writes it.
    pub family: &'static str,
    /// The namespace by the name given to `--ns`; null for the caller's.
    pub netns: Option<String>,
}

impl AddressView {
    fn new(cidr: IpNet, dev: String, netns: Option<String>) -> AddressView {
        AddressView {
            cidr: cidr.to_string(),
            dev,
            family: family(&cidr),
            netns,
        }
    }
}

/// One address of `addr list`: the address and what the kernel says of it, as `ip -j addr`.
#[derive(Debug, Serialize)]
pub struct ListedAddress {
    #[serde(flatten)]
    pub address: AddressView,
    /// `global`, `site`, `link`, `host`, `nowhere`, or the number of another scope.
    pub scope: Scope,
    /// The IFA_F_* flags by `ip`'s names, in `ip`'s order: `secondary` (IPv4) / `temporary`
    /// (IPv6), `nodad`, `optimistic`, `dadfailed`, `home`, `deprecated`, `tentative`,
    /// `permanent`, `mngtmpaddr`, `noprefixroute`, `autojoin`, `stable-privacy`; a bit without
    /// a name as `0x...`. (`ip` prints `dynamic` where `permanent` is absent.)
    pub flags: Vec<String>,
    /// Seconds left; 4294967295 is forever (`ip`'s `valid_lft forever`). Null if the kernel
    /// does not say.
    pub valid_life_time: Option<u32>,
    pub preferred_life_time: Option<u32>,
    /// The peer of a point-to-point address (`ip addr add A peer B/N`: `cidr` is then `A/N`),
    /// `ip -j`'s `address`; null for an address without one.
    pub peer: Option<String>,
    /// The label (`IFA_LABEL`, `ip addr add ... label DEV:NAME`): the device's name unless
    /// set; IPv4 only, null for IPv6 (as `ip -j`).
    pub label: Option<String>,
}

/// The peer of an address message: IFA_ADDRESS where it differs from IFA_LOCAL (as `ip`).
fn peer_of(msg: &AddressMessage) -> Option<IpAddr> {
    let (mut local, mut address) = (None, None);
    for a in &msg.attributes {
        match a {
            AddressAttribute::Local(ip) => local = Some(*ip),
            AddressAttribute::Address(ip) => address = Some(*ip),
            _ => {}
        }
    }
    address.filter(|_| local.is_some() && local != address)
}

/// The label of an address message (IFA_LABEL).
fn label_of(msg: &AddressMessage) -> Option<String> {
    msg.attributes.iter().find_map(|a| match a {
        AddressAttribute::Label(l) => Some(l.clone()),
        _ => None,
    })
}

/// An address on `dev` as `ip addr` would add it: `cidr` with no peer and the default label.
fn is_plain(msg: &AddressMessage, cidr: IpNet, dev: &IfName) -> bool {
    addr_cidr(msg) == Some(cidr)
        && peer_of(msg).is_none()
        && label_of(msg).is_none_or(|l| l == dev.as_str())
}

/// `10.0.0.1/32 peer 10.0.0.2 label eth0:1`, as `ip addr` words it (the label only when not
/// the device's own name).
pub(super) fn describe(msg: &AddressMessage, dev: &IfName) -> String {
    let mut s = addr_cidr(msg).map_or_else(String::new, |c| c.to_string());
    if let Some(p) = peer_of(msg) {
        s.push_str(&format!(" peer {p}"));
    }
    if let Some(l) = label_of(msg).filter(|l| l != dev.as_str()) {
        s.push_str(&format!(" label {l}"));
    }
    s
}

/// An address scope: its name when it has one, else its number (`ip` does the same).
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Scope {
    Name(&'static str),
    Number(u8),
}

impl From<&AddressScope> for Scope {
    fn from(s: &AddressScope) -> Scope {
        match s {
            AddressScope::Universe => Scope::Name("global"),
            AddressScope::Site => Scope::Name("site"),
            AddressScope::Link => Scope::Name("link"),
            AddressScope::Host => Scope::Name("host"),
            AddressScope::Nowhere => Scope::Name("nowhere"),
            other => Scope::Number(u8::from(*other)),
        }
    }
}

/// IFA_F_* flags by the names `ip` prints, in its order (iproute2 `ifa_flag_data`).
const FLAG_NAMES: &[(AddressFlags, &str)] = &[
    (AddressFlags::Secondary, "secondary"),
    (AddressFlags::Nodad, "nodad"),
    (AddressFlags::Optimistic, "optimistic"),
    (AddressFlags::Dadfailed, "dadfailed"),
    (AddressFlags::Homeaddress, "home"),
    (AddressFlags::Deprecated, "deprecated"),
    (AddressFlags::Tentative, "tentative"),
    (AddressFlags::Permanent, "permanent"),
    (AddressFlags::Managetempaddr, "mngtmpaddr"),
    (AddressFlags::Noprefixroute, "noprefixroute"),
    (AddressFlags::Mcautojoin, "autojoin"),
    (AddressFlags::StablePrivacy, "stable-privacy"),
];

/// The flags of an address message by name: IFA_FLAGS (32 bits) when present, else the
/// header's 8 bits. IFA_F_SECONDARY is `temporary` on an IPv6 address, as in `ip`.
fn flag_names(msg: &AddressMessage, ipv6: bool) -> Vec<String> {
    let bits = msg
        .attributes
        .iter()
        .find_map(|a| match a {
            AddressAttribute::Flags(f) => Some(*f),
            _ => None,
        })
        .unwrap_or_else(|| AddressFlags::from_bits_retain(u32::from(msg.header.flags.bits())));
    let mut left = bits;
    let mut names = Vec::new();
    for (flag, name) in FLAG_NAMES {
        if bits.contains(*flag) {
            let secondary = *flag == AddressFlags::Secondary;
            names.push(if secondary && ipv6 { "temporary" } else { name }.to_string());
            left.remove(*flag);
        }
    }
    if !left.is_empty() {
        names.push(format!("{:#x}", left.bits()));
    }
    names
}

fn family(net: &IpNet) -> &'static str {
    match net {
        IpNet::V4(_) => "inet",
        IpNet::V6(_) => "inet6",
    }
}

impl Addr {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let handle = ctx.netlink()?;
        let here = ctx.ns_label();
        match self {
            Addr::Add {
                cidr,
                dev,
                nodad,
                replace,
            } => {
                let changed =
                    ctx.block_on(add(&handle, cidr, &dev, nodad, replace, &here, ctx.check))?;
                let view = AddressView::new(cidr, dev.to_string(), ctx.netns_name());
                Outcome::object(changed, "address", view)
            }
            Addr::Del { cidr, dev } => {
                let changed = ctx.block_on(del(&handle, cidr, &dev, &here, ctx.check))?;
                let view = AddressView::new(cidr, dev.to_string(), ctx.netns_name());
                Outcome::object(changed, "address", view)
            }
            Addr::List { dev } => {
                let list = ctx.block_on(list(&handle, dev.as_ref(), &here, ctx.netns_name()))?;
                Outcome::listing("addresses", list)
            }
        }
    }
}

/// The addresses on `dev` that CIDR's address could be (its family's; of IPv6, that address
/// alone), and its index.
async fn on_dev(
    handle: &Handle,
    cidr: IpNet,
    dev: &IfName,
    here: &str,
) -> Result<(u32, Vec<AddressMessage>)> {
    let index = common::nl::link_index(handle, dev.as_str(), here).await?;
    let present = match cidr.addr() {
        IpAddr::V6(ip) => super::address6(handle, index, ip)
            .await?
            .into_iter()
            .collect(),
        IpAddr::V4(ip) => address4(index, ip)
            .map_err(|e| Error::caused(format!("looking up address {ip} on {dev} in {here}"), e))?,
    };
    Ok((index, present))
}

/// The IPv4 addresses on link INDEX whose address is IP (with any prefix length, peer or
/// label). The kernel has no request for one IPv4 address, only the dump of a link's: the
/// messages of the others are sifted as bytes, not parsed (a hub's center holds an address for
/// every peer on one link).
fn address4(index: u32, ip: Ipv4Addr) -> std::io::Result<Vec<AddressMessage>> {
    const IFA_ADDRESS: u16 = 1;
    const IFA_LOCAL: u16 = 2;
    const IFADDRMSG: usize = 8;
    let mut msg = AddressMessage::default();
    msg.header.family = Family::V4.netlink();
    msg.header.index = index;
    let octets = ip.octets();
    let answers = common::nl::dump_sifted(RouteNetlinkMessage::GetAddress(msg), true, |m| {
        common::nl::attributes(m, IFADDRMSG)
            .any(|(kind, value)| matches!(kind, IFA_ADDRESS | IFA_LOCAL) && value == octets)
    })?;
    Ok(answers
        .into_iter()
        .filter_map(|a| match a {
            RouteNetlinkMessage::NewAddress(a) if a.header.index == index => Some(a),
            _ => None,
        })
        .collect())
}

async fn add(
    handle: &Handle,
    cidr: IpNet,
    dev: &IfName,
    nodad: bool,
    replace: bool,
    here: &str,
    check: bool,
) -> Result<bool> {
    let (index, present) = on_dev(handle, cidr, dev, here).await?;
    if present.iter().any(|a| is_plain(a, cidr, dev)) {
        return Ok(false);
    }
    // The same address with another prefix length, a peer or a label is another address.
    let mut stale = None;
    for a in present {
        match addr_cidr(&a) {
            Some(c) if c.addr() == cidr.addr() && !replace => {
                return Err(Error::failed(format!(
                    "adding address {cidr} to {dev} in {here}: {dev} already has {} \
                     (--replace swaps it)",
                    describe(&a, dev)
                )))
            }
            Some(c) if c.addr() == cidr.addr() => stale = Some(a),
            _ => {}
        }
    }
    if check {
        return Ok(true);
    }
    if let Some(old) = stale {
        handle
            .address()
            .del(old)
            .execute()
            .await
            .with_context(|| format!("replacing the address {} on {dev} in {here}", cidr.addr()))?;
    }
    let mut req = handle.address().add(index, cidr.addr(), cidr.prefix_len());
    if nodad && cidr.addr().is_ipv6() {
        req.message_mut()
            .attributes
            .push(AddressAttribute::Flags(AddressFlags::Nodad));
    }
    req.execute()
        .await
        .with_context(|| format!("adding address {cidr} to {dev} in {here}"))?;
    common::vlog!(1, "added {cidr} to {dev} in {here}");
    Ok(true)
}

async fn del(handle: &Handle, cidr: IpNet, dev: &IfName, here: &str, check: bool) -> Result<bool> {
    let (_, present) = on_dev(handle, cidr, dev, here).await?;
    let Some(a) = present.into_iter().find(|a| addr_cidr(a) == Some(cidr)) else {
        return Ok(false);
    };
    if check {
        return Ok(true);
    }
    match handle.address().del(a).execute().await {
        Ok(()) => Ok(true),
        Err(e) if common::nl::is_absent(&e) => Ok(false),
        Err(e) => Err(Error::caused(
            format!("deleting address {cidr} from {dev} in {here}"),
            e,
        )),
    }
}

async fn list(
    handle: &Handle,
    dev: Option<&IfName>,
    here: &str,
    netns: Option<String>,
) -> Result<Vec<ListedAddress>> {
    // The names of the links the addresses are on: of one, when it is given (a hub's center
    // holds a thousand links; reading them all to name one costs more than the listing).
    let (index, names): (Option<u32>, BTreeMap<u32, String>) = match dev {
        Some(d) => {
            let index = common::nl::link_index(handle, d.as_str(), here).await?;
            (Some(index), BTreeMap::from([(index, d.to_string())]))
        }
        None => {
            let links = common::nl::links(handle).await?;
            let names = links
                .iter()
                .map(|l| (l.header.index, l.name().unwrap_or_default().to_string()))
                .collect();
            (None, names)
        }
    };
    let name_of = |i: u32| names.get(&i).cloned().unwrap_or_else(|| i.to_string());
    Ok(super::addresses(handle, index, None)
        .await?
        .iter()
        .filter_map(|a| {
            let cidr = addr_cidr(a)?;
            let life = a.attributes.iter().find_map(|at| match at {
                AddressAttribute::CacheInfo(c) => Some(c),
                _ => None,
            });
            Some(ListedAddress {
                address: AddressView::new(cidr, name_of(a.header.index), netns.clone()),
                scope: Scope::from(&a.header.scope),
                flags: flag_names(a, cidr.addr().is_ipv6()),
                valid_life_time: life.map(|c| c.ifa_valid),
                preferred_life_time: life.map(|c| c.ifa_preferred),
                peer: peer_of(a).map(|p| p.to_string()),
                label: label_of(a),
            })
        })
        .collect())
}
