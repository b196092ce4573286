//! `nsctl bridge add NAME [--up] [--address MAC]`: a Linux bridge, down unless `--up` (like
//! `ip link add NAME [address MAC] type bridge`).
//!
//! A bridge given `--address` keeps that MAC: the kernel marks it as set by the user
//! (addr_assign_type NET_ADDR_SET) and stops taking the lowest MAC of its ports, so the bridge's
//! MAC no longer changes when ports come and go.

use clap::Subcommand;
use netlink_packet_route::link::InfoKind;
use nix::mount::{mount, MsFlags};
use rtnetlink::{Handle, LinkBridge, LinkMessageBuilder, LinkUnspec};
use serde::Serialize;

use common::link::LinkExt;
use common::types::IfName;
use common::{Context, Ctx, Error, Outcome, Result};

use super::link::Mac;
use super::{create_link, existing, set_link};

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
        /// Give it this fixed MAC, aa:bb:cc:dd:ee:ff (like `ip link add NAME address MAC type
        /// bridge`); it then keeps it whatever ports come and go
        #[arg(long, value_name = "MAC")]
        address: Option<Mac>,
        /// If NAME exists but is not a bridge, delete it and create the bridge; if it is a bridge
        /// with another MAC, set the MAC (ports and addresses stay)
        #[arg(long)]
        replace: bool,
    },
}

/// A bridge as `bridge add` prints it (`{"changed":..,"bridge":{..}}`).
#[derive(Debug, Serialize)]
pub struct BridgeView {
    pub name: String,
    /// The namespace by the name given to `--ns`; null for the caller's.
    pub netns: Option<String>,
    /// The administrative state, "up" or "down".
    pub state: &'static str,
    /// The fixed MAC asked for with `--address`; null without it (the same for a new and an
    /// existing bridge, so `--check` and a re-run print the same object).
    pub address: Option<String>,
}

/// What was asked of the bridge.
#[derive(Clone, Copy)]
struct Want {
    up: bool,
    address: Option<Mac>,
    replace: bool,
}

/// What a run does to the bridge.
struct Plan {
    changed: bool,
    up: bool,
    address: Option<String>,
}

impl Bridge {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let Bridge::Add {
            name,
            up,
            address,
            replace,
        } = self;
        let handle = ctx.netlink()?;
        let where_ = ctx.ns_label();
        let want = Want {
            up,
            address,
            replace,
        };
        let plan = ctx.block_on(async {
            let found = existing(
                &handle,
                &name,
                InfoKind::Bridge,
                &where_,
                replace,
                ctx.check,
            );
            match found.await? {
                Some(l) => converge(&handle, &l, &name, want, &where_, ctx.check).await,
                None => {
                    if !ctx.check {
                        create(&handle, &name, up, address, &where_).await?;
                    }
                    Ok(Plan {
                        changed: true,
                        up,
                        address: address.map(|m| m.to_string()),
                    })
                }
            }
        })?;
        let view = BridgeView {
            name: name.to_string(),
            netns: ctx.netns_name(),
            state: super::state(plan.up),
            address: plan.address,
        };
        Outcome::object(plan.changed, "bridge", view)
    }
}

/// Creates the bridge in one RTM_NEWLINK, with its MAC (IFLA_ADDRESS) when given: set at
/// creation, the kernel marks it as chosen by the user.
async fn create(
    handle: &Handle,
    name: &IfName,
    up: bool,
    address: Option<Mac>,
    where_: &str,
) -> Result<()> {
    // LinkBridge::new would bring it up; build it down like `ip link add`.
    let mut b = LinkMessageBuilder::<LinkBridge>::new(name.as_str());
    if let Some(mac) = address {
        b = b.address(mac.0.to_vec());
    }
    let with = address.map(|m| format!(" address {m}")).unwrap_or_default();
    create_link(handle, b, up, || {
        format!("creating bridge {name}{with} in {where_}")
    })
    .await
}

/// Brings an existing bridge to what was asked: up if `--up`, the MAC if `--address` (another
/// MAC only with `--replace`), in one RTM_SETLINK.
async fn converge(
    handle: &Handle,
    l: &netlink_packet_route::link::LinkMessage,
    name: &IfName,
    want: Want,
    where_: &str,
    check: bool,
) -> Result<Plan> {
    let Want {
        up,
        address,
        replace,
    } = want;
    let current = l.mac();
    let mut msg = LinkUnspec::new_with_index(l.header.index);
    let bring_up = up && !l.is_up();
    if bring_up {
        msg = msg.up();
    }
    let mut set_mac = false;
    if let Some(mac) = address {
        let wanted = mac.to_string();
        if current.as_deref() != Some(wanted.as_str()) {
            if !replace {
                return Err(Error::failed(format!(
                    "bridge {name} already exists in {where_} with address {} instead of {wanted} \
                     (--replace sets it)",
                    current.as_deref().unwrap_or("none")
                )));
            }
            set_mac = true;
        } else {
            // The same MAC, but maybe only taken from a port: pin it, or it moves with the ports.
            set_mac = !address_is_fixed(name);
        }
        if set_mac {
            msg = msg.address(mac.0.to_vec());
        }
    }
    let changed = bring_up || set_mac;
    if changed && !check {
        set_link(handle, msg.build(), || {
            let mut words = format!("setting bridge {name}");
            if bring_up {
                words.push_str(" up");
            }
            if let (true, Some(mac)) = (set_mac, address) {
                words.push_str(&format!(" address {mac}"));
            }
            format!("{words} in {where_}")
        })
        .await?;
    }
    Ok(Plan {
        changed,
        up: l.is_up() || up,
        address: address.map(|m| m.to_string()),
    })
}

/// True if the kernel keeps link NAME's MAC as set by the user (addr_assign_type 3,
/// NET_ADDR_SET), which rtnetlink does not report. Read from a sysfs mounted for this namespace
/// in a private mount namespace of a short-lived thread (the thread shares the caller's network
/// namespace; nothing outside it sees the mount). If it cannot be read, says true (so a re-run
/// stays `changed:false`) and warns.
fn address_is_fixed(name: &IfName) -> bool {
    const NET_ADDR_SET: &str = "3";
    let read = std::thread::scope(|s| {
        s.spawn(|| -> Result<String> {
            super::private_mounts()?;
            mount(
                Some("sysfs"),
                "/sys",
                Some("sysfs"),
                MsFlags::empty(),
                None::<&str>,
            )
            .context("mounting /sys for the namespace")?;
            let path = format!("/sys/class/net/{name}/addr_assign_type");
            std::fs::read_to_string(&path).with_context(|| format!("reading {path}"))
        })
        .join()
        .unwrap_or_else(|_| Err(Error::failed("sysfs reader thread panicked")))
    });
    match read {
        Ok(t) => t.trim() == NET_ADDR_SET,
        Err(e) => {
            eprintln!(
                "nsctl: warning: cannot tell whether bridge {name}'s MAC is fixed, assuming it is: {e}"
            );
            true
        }
    }
}
