//! `nsctl vlan add NAME --link DEV --id N [--up] [--replace]`: an 802.1Q VLAN device on DEV
//! (like `ip link add link DEV name NAME type vlan id N`), down unless `--up`.
//!
//! Its identity is the lower device and the id: an existing NAME that is a VLAN on another
//! device or with another id is refused (exit 1) unless `--replace`, which re-creates it.

use clap::Subcommand;
use netlink_packet_route::link::{
    InfoData, InfoKind, InfoVlan, LinkAttribute, LinkInfo, LinkMessage,
};
use rtnetlink::LinkVlan;
use serde::Serialize;

use common::link::LinkExt;
use common::types::IfName;
use common::{Ctx, Error, Outcome, Result};

use super::{create_link, existing, state, up_if_asked};

#[derive(Subcommand, Debug)]
pub enum Vlan {
    /// Create VLAN device NAME on DEV with id N, or make sure it exists
    /// (like `ip link add link DEV name NAME type vlan id N`)
    Add {
        /// Device name (1-15 bytes)
        name: IfName,
        /// The lower device the tagged frames go out on (`ip link add link DEV ...`)
        #[arg(long, value_name = "DEV", add = common::complete::links(&[]))]
        link: IfName,
        /// The VLAN id, 1-4094 (`... type vlan id N`)
        #[arg(long, value_name = "N", value_parser = clap::value_parser!(u16).range(1..=4094))]
        id: u16,
        /// Bring it up (like `ip link set NAME up`); without it a new device stays down and an
        /// existing one is left as it is
        #[arg(long)]
        up: bool,
        /// If NAME exists but is not this VLAN (another kind, device or id), delete it and
        /// create the VLAN
        #[arg(long)]
        replace: bool,
    },
}

/// A VLAN device as `vlan add` prints it (`{"changed":..,"vlan":{..}}`).
#[derive(Debug, Serialize)]
pub struct VlanView {
    pub name: String,
    /// The namespace by the name given to `--ns`; null for the caller's.
    pub netns: Option<String>,
    /// The lower device.
    pub link: String,
    pub id: u16,
    /// The administrative state, "up" or "down".
    pub state: &'static str,
}

/// The VLAN id of a vlan link (IFLA_VLAN_ID inside IFLA_INFO_DATA).
fn vlan_id(l: &LinkMessage) -> Option<u16> {
    l.attributes.iter().find_map(|a| match a {
        LinkAttribute::LinkInfo(infos) => infos.iter().find_map(|i| match i {
            LinkInfo::Data(InfoData::Vlan(v)) => v.iter().find_map(|x| match x {
                InfoVlan::Id(id) => Some(*id),
                _ => None,
            }),
            _ => None,
        }),
        _ => None,
    })
}

impl Vlan {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let Vlan::Add {
            name,
            link,
            id,
            up,
            replace,
        } = self;
        let handle = ctx.netlink()?;
        let here = ctx.ns_label();
        let (changed, now_up) = ctx.block_on(async {
            let Some(lower) = common::nl::find_link(&handle, link.as_str()).await? else {
                return Err(Error::failed(format!(
                    "creating vlan {name} id {id} on {link}: device '{link}' not found in {here}"
                )));
            };
            let lower = lower.header.index;
            let found = existing(&handle, &name, InfoKind::Vlan, &here, replace, ctx.check);
            if let Some(l) = found.await? {
                let same = l.link_index() == Some(lower)
                    && l.link_netnsid().is_none()
                    && vlan_id(&l) == Some(id);
                if same {
                    let what = || format!("bringing up vlan {name} in {here}");
                    let changed = up_if_asked(&handle, &l, up, ctx.check, what).await?;
                    return Ok((changed, up || l.is_up()));
                }
                if !replace {
                    return Err(Error::failed(format!(
                        "vlan {name} already exists in {here} but is not id {id} on {link} \
                         (--replace recreates it)"
                    )));
                }
                if !ctx.check {
                    super::link::del(&handle, &name, &here, false).await?;
                }
            }
            if !ctx.check {
                let b = LinkVlan::new(name.as_str(), lower, id);
                create_link(&handle, b, up, || {
                    format!("creating vlan {name} id {id} on {link} in {here}")
                })
                .await?;
            }
            Ok((true, up))
        })?;
        let view = VlanView {
            name: name.to_string(),
            netns: ctx.netns_name(),
            link: link.to_string(),
            id,
            state: state(now_up),
        };
        Outcome::object(changed, "vlan", view)
    }
}
