//! `nsctl bridge add NAME [--up]`: a Linux bridge, down unless `--up` (like
//! `ip link add NAME type bridge`).

use clap::Subcommand;
use rtnetlink::{LinkBridge, LinkMessageBuilder};
use serde::Serialize;
use serde_json::Value;

use common::types::IfName;
use common::{Context, Ctx, Error, Outcome, Result};

use super::{is_up, kind, kind_label, set_up};

#[derive(Subcommand, Debug)]
pub enum Bridge {
    /// Create bridge NAME, or make sure it exists (like `ip link add NAME type bridge`)
    Add {
        /// Bridge name (1-15 bytes)
        name: IfName,
        /// Bring it up (like `ip link set NAME up`); without it a new bridge stays down and an
        /// existing one is left as it is
        #[arg(long)]
        up: bool,
        /// If NAME exists but is not a bridge, delete it and create the bridge
        #[arg(long)]
        replace: bool,
    },
}

#[derive(Serialize)]
struct View {
    name: String,
    netns: Value,
    state: &'static str,
}

#[derive(Serialize)]
struct Changed {
    changed: bool,
    bridge: View,
}

impl Bridge {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let Bridge::Add { name, up, replace } = self;
        let handle = ctx.netlink()?;
        let where_ = ctx.ns_label();
        let what = |verb: &str| format!("{verb} bridge {name} in {where_}");
        let (changed, now_up) = ctx.block_on(async {
            let existing = common::nl::find_link(&handle, name.as_str()).await?;
            match existing {
                Some(l) if kind(&l).as_deref() == Some("bridge") => {
                    let bring_up = up && !is_up(&l);
                    if bring_up && !ctx.check {
                        set_up(&handle, l.header.index, true, || what("bringing up")).await?;
                    }
                    Ok::<_, Error>((bring_up, is_up(&l) || up))
                }
                Some(l) if !replace => Err(Error::failed(format!(
                    "bridge {name} already exists in {where_} but is a {} (--replace deletes it)",
                    kind_label(&l)
                ))),
                other => {
                    if ctx.check {
                        return Ok((true, up));
                    }
                    if other.is_some() {
                        super::link::del(&handle, &name, &where_, false).await?;
                    }
                    // LinkBridge::new would bring it up; build it down like `ip link add`.
                    let mut b = LinkMessageBuilder::<LinkBridge>::new(name.as_str());
                    if up {
                        b = b.up();
                    }
                    handle
                        .link()
                        .add(b.build())
                        .execute()
                        .await
                        .with_context(|| what("creating"))?;
                    common::vlog!(1, "created bridge {name} in {where_}");
                    Ok((true, up))
                }
            }
        })?;
        Outcome::json(Changed {
            changed,
            bridge: View {
                name: name.to_string(),
                netns: ctx.ns_json(),
                state: super::state(now_up),
            },
        })
    }
}
