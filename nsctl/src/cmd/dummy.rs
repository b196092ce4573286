//! `nsctl dummy add NAME [--up] [--replace]`: a dummy device, a link that swallows what is sent
//! to it (like `ip link add NAME type dummy`), down unless `--up`.

use clap::Subcommand;
use netlink_packet_route::link::InfoKind;
use rtnetlink::LinkDummy;
use serde::Serialize;

use common::link::LinkExt;
use common::types::IfName;
use common::{Ctx, Outcome, Result};

use super::{create_link, existing, state, up_if_asked};

#[derive(Subcommand, Debug)]
pub enum Dummy {
    /// Create dummy device NAME, or make sure it exists (like `ip link add NAME type dummy`)
    Add {
        /// Device name (1-15 bytes)
        name: IfName,
        /// Bring it up (like `ip link set NAME up`); without it a new device stays down and an
        /// existing one is left as it is
        #[arg(long)]
        up: bool,
        /// If NAME exists but is not a dummy device, delete it and create the dummy
        #[arg(long)]
        replace: bool,
    },
}

/// A dummy device as `dummy add` prints it (`{"changed":..,"dummy":{..}}`).
#[derive(Debug, Serialize)]
pub struct DummyView {
    pub name: String,
    /// The namespace by the name given to `--ns`; null for the caller's.
    pub netns: Option<String>,
    /// The administrative state, "up" or "down".
    pub state: &'static str,
}

impl Dummy {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let Dummy::Add { name, up, replace } = self;
        let handle = ctx.netlink()?;
        let here = ctx.ns_label();
        let (changed, now_up) = ctx.block_on(async {
            let found = existing(&handle, &name, InfoKind::Dummy, &here, replace, ctx.check);
            if let Some(l) = found.await? {
                let what = || format!("bringing up dummy {name} in {here}");
                let changed = up_if_asked(&handle, &l, up, ctx.check, what).await?;
                return Ok((changed, up || l.is_up()));
            }
            if !ctx.check {
                let b = LinkDummy::new(name.as_str());
                create_link(&handle, b, up, || {
                    format!("creating dummy {name} in {here}")
                })
                .await?;
            }
            Ok((true, up))
        })?;
        let view = DummyView {
            name: name.to_string(),
            netns: ctx.netns_name(),
            state: state(now_up),
        };
        Outcome::object(changed, "dummy", view)
    }
}
