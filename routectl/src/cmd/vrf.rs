//! `routectl vrf`: VRF devices, their tables and members (`ip link add type vrf`,
//! `ip link set IFACE master VRF`).
//!
//! Kernels built without CONFIG_NET_VRF answer EOPNOTSUPP to a VRF link; that is reported as
//! such rather than as a bare errno.

use clap::Subcommand;
use common::link::{delete_link_if_exists, LinkExt};
use common::types::IfName;
use common::{Context, Ctx, Error, Kind, Outcome, Result};
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVrf, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::{Handle, LinkUnspec, LinkVrf};
use serde::Serialize;

use crate::iproute2::Named;
use crate::table::{self, Table};

#[derive(Subcommand, Debug)]
pub enum VrfCmd {
    /// Create a VRF device bound to a table, up (`ip link add NAME type vrf table T`)
    Add {
        /// VRF device name
        name: IfName,
        /// Its routing table: 1-4294967294, main, local or default
        #[arg(long, value_name = "T", add = common::complete::names(table::names))]
        table: Table,
    },
    /// Delete a VRF device; its members are released (`ip link del NAME`)
    Del {
        /// VRF device name
        #[arg(add = common::complete::links_where(&[], is_vrf))]
        name: IfName,
    },
    /// Put an interface into a VRF (`ip link set IFACE master VRF`)
    Enslave {
        /// Interface to move into the VRF
        #[arg(add = common::complete::links(&[]))]
        iface: IfName,
        /// The VRF device
        #[arg(long, value_name = "NAME", add = common::complete::links_where(&[], is_vrf))]
        vrf: IfName,
    },
    /// List VRF devices with their table and members
    List,
}

/// A VRF as `vrf add`, `del` and `list` print it.
#[derive(Debug, Serialize)]
pub struct VrfView {
    name: String,
    netns: Option<String>,
    /// The VRF's table by its name when it has one, else its number.
    table: Named,
    table_id: u32,
    /// The interfaces enslaved to it.
    members: Vec<String>,
}

/// What `vrf enslave` prints: the interface and the VRF it is (or would be) in.
#[derive(Debug, Serialize)]
pub struct MemberView {
    name: String,
    netns: Option<String>,
    vrf: String,
}

fn vrf_table(link: &LinkMessage) -> Option<u32> {
    link.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vrf(v)) => v.iter().find_map(|x| match x {
                InfoVrf::TableId(t) => Some(*t),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

fn is_vrf(link: &LinkMessage) -> bool {
    link.kind() == Some(&InfoKind::Vrf)
}

fn kind_name(link: &LinkMessage) -> String {
    link.kind()
        .map_or_else(|| "a device without a kind".into(), |k| format!("a {k}"))
}

impl VrfView {
    fn new(ctx: &Ctx, name: &str, table: u32, members: Vec<String>) -> VrfView {
        VrfView {
            name: name.to_owned(),
            netns: ctx.netns_name(),
            table: table::named(table),
            table_id: table,
            members,
        }
    }
}

/// Every VRF in the namespace with its members.
fn vrfs(ctx: &Ctx, links: &[LinkMessage]) -> Vec<VrfView> {
    links
        .iter()
        .filter(|l| is_vrf(l))
        .map(|v| {
            let members = links
                .iter()
                .filter(|l| l.master() == Some(v.header.index))
                .filter_map(|l| l.name().map(str::to_string))
                .collect();
            let name = v.name().unwrap_or_default();
            VrfView::new(ctx, name, vrf_table(v).unwrap_or(0), members)
        })
        .collect()
}

fn one(ctx: &Ctx, links: &[LinkMessage], name: &str) -> Option<VrfView> {
    vrfs(ctx, links).into_iter().find(|v| v.name == name)
}

impl VrfCmd {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let handle = ctx.netlink()?;
        match self {
            VrfCmd::Add { name, table } => add(ctx, &handle, &name, table),
            VrfCmd::Del { name } => del(ctx, &handle, &name),
            VrfCmd::Enslave { iface, vrf } => enslave(ctx, &handle, &iface, &vrf),
            VrfCmd::List => list(ctx, &handle),
        }
    }
}

/// `vrf add NAME --table T`: an existing VRF with the same table is no change; any other
/// device of that name is an error.
fn add(ctx: &Ctx, handle: &Handle, name: &IfName, table: Table) -> Result<Outcome> {
    let ns = ctx.ns_label();
    let what = format!("creating VRF {name} (table {table}) in {ns}");
    if let Some(l) = ctx.block_on(common::nl::find_link(handle, name.as_str()))? {
        if !is_vrf(&l) {
            return Err(Error::failed(format!(
                "{what}: {name} already exists but is {}, not a VRF",
                kind_name(&l)
            )));
        }
        let have = vrf_table(&l).unwrap_or(0);
        if have != table.0 {
            return Err(Error::failed(format!(
                "{what}: VRF {name} already exists with table {}",
                table::name(have)
            )));
        }
        let all = ctx.block_on(common::nl::links(handle))?;
        return Outcome::object(false, "vrf", one(ctx, &all, name.as_str()));
    }
    let planned = VrfView::new(ctx, name.as_str(), table.0, vec![]);
    if ctx.check {
        return Outcome::object(true, "vrf", planned);
    }
    common::vlog!(1, "ip link add {name} type vrf table {table} (in {ns})");
    let msg = LinkVrf::new(name.as_str(), table.0).up().build();
    match ctx.block_on(handle.link().add(msg).execute()) {
        Ok(()) => {}
        Err(e) if Kind::of(&e) == Kind::Unsupported => {
            return Err(Error::caused(
                format!(
                    "{what}: this kernel lacks VRF support (CONFIG_NET_VRF, module 'vrf' not available)"
                ),
                e,
            ))
        }
        Err(e) => return Err(Error::caused(what, e)),
    }
    Outcome::object(true, "vrf", planned)
}

/// `vrf del NAME`: a missing VRF is no change; a device of that name that is not a VRF is an
/// error. Prints the VRF as it was.
fn del(ctx: &Ctx, handle: &Handle, name: &IfName) -> Result<Outcome> {
    let ns = ctx.ns_label();
    let what = format!("deleting VRF {name} in {ns}");
    let Some(l) = ctx.block_on(common::nl::find_link(handle, name.as_str()))? else {
        return Outcome::object(false, "vrf", None::<VrfView>);
    };
    if !is_vrf(&l) {
        return Err(Error::failed(format!(
            "{what}: {name} is {}, not a VRF",
            kind_name(&l)
        )));
    }
    let gone = one(
        ctx,
        &ctx.block_on(common::nl::links(handle))?,
        name.as_str(),
    );
    if !ctx.check {
        common::vlog!(1, "ip link del {name} (in {ns})");
        ctx.block_on(delete_link_if_exists(handle, l.header.index, || what))?;
    }
    Outcome::object(true, "vrf", gone)
}

/// `vrf enslave IFACE --vrf NAME`: already in that VRF is no change; in another master is an
/// error.
fn enslave(ctx: &Ctx, handle: &Handle, iface: &IfName, vrf: &IfName) -> Result<Outcome> {
    let ns = ctx.ns_label();
    let what = format!("enslaving {iface} to VRF {vrf} in {ns}");
    let v = ctx
        .block_on(common::nl::find_link(handle, vrf.as_str()))?
        .ok_or_else(|| Error::failed(format!("{what}: VRF {vrf} not found")))?;
    if !is_vrf(&v) {
        return Err(Error::failed(format!(
            "{what}: {vrf} is {}, not a VRF",
            kind_name(&v)
        )));
    }
    let dev = ctx
        .block_on(common::nl::link(handle, iface.as_str(), &ns))
        .context(what.clone())?;
    let changed = match dev.master() {
        Some(c) if c == v.header.index => false,
        Some(c) => {
            let all = ctx.block_on(common::nl::links(handle))?;
            let other = all
                .iter()
                .find(|l| l.header.index == c)
                .and_then(|l| l.name())
                .unwrap_or("another device");
            return Err(Error::failed(format!(
                "{what}: {iface} is already enslaved to {other}"
            )));
        }
        None => true,
    };
    if changed && !ctx.check {
        common::vlog!(1, "ip link set {iface} master {vrf} (in {ns})");
        let msg = LinkUnspec::new_with_index(dev.header.index)
            .controller(v.header.index)
            .build();
        ctx.block_on(handle.link().set(msg).execute())
            .context(what)?;
    }
    let member = MemberView {
        name: iface.to_string(),
        netns: ctx.netns_name(),
        vrf: vrf.to_string(),
    };
    Outcome::object(changed, "member", member)
}

/// `vrf list`: every VRF with its table and members.
fn list(ctx: &Ctx, handle: &Handle) -> Result<Outcome> {
    let all = ctx.block_on(common::nl::links(handle))?;
    Outcome::listing("vrfs", vrfs(ctx, &all))
}
