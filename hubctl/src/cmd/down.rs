//! `hub down [--keep-state]`: every object the hub made goes, and (unless --keep-state) its
//! records and keys. `down --keep-state` is a stop, after which `up` builds the same hub again
//! (same keys, ports and addresses: the clients' configs keep working); it keeps the center's
//! namespace too, with what the user put there.

use serde_json::json;

use super::Outcome;
use crate::error::Result;
use crate::exec::Tool::{Natctl, Nsctl, Routectl};
use crate::hub::Hub;
use crate::listing::{self, NatList, NatRule, SetList};
use crate::plan::ns_opt;
use crate::steps::Step;

pub fn down(hub: &mut Hub, keep_state: bool) -> Result<Outcome> {
    hub.lock()?;
    hub.load_center()?;
    hub.load_peers()?;
    let c = hub.conf.clone();
    let removed: Vec<String> = hub.peers.keys().cloned().collect();
    let center = hub.center.clone();
    // zones: a center namespace the hub made goes as a whole; the peers then need only their
    // wireguard-go stopped (deleting the rules one by one costs O(N) each at 1,000 peers)
    let center_goes = c.zones() && !keep_state && center.as_ref().is_some_and(|r| r.ns_created);
    if keep_state {
        hub.remove_objects(&removed, false)?;
    } else if center_goes {
        hub.remove_objects(&removed, true)?;
        for n in &removed {
            hub.forget_peer(n)?;
        }
    } else {
        hub.remove_peers(&removed)?;
    }
    if let Some(r) = &center {
        let co = ns_opt(&c.ns);
        let mut steps = Vec::new();
        let mut step = |tool, line: String| steps.push(Step::new(tool, "center", line));
        // The switch namespace takes the bridge and the center's veth with it.
        if let Some(sw) = &r.switch {
            step(Nsctl, format!("netns del {sw}"));
        }
        if r.ns_created && !keep_state {
            step(Nsctl, format!("netns del {}", c.ns));
        } else if c.ns.is_empty() || hub.ns_exists(&c.ns) {
            step(Nsctl, format!("{co}link del {}", c.center_if()));
            if r.switch.is_none() && r.bridge_created {
                step(Nsctl, format!("{co}link del {}", c.bridge));
            }
            if let Some(old) = r.forward_old.as_deref().filter(|v| *v != "1") {
                step(Nsctl, format!("{co}sysctl net.ipv4.ip_forward={old}"));
            }
            if c.zones() {
                for v6 in std::iter::once(false).chain(c.v6.is_some().then_some(true)) {
                    for rule in crate::fwmark::center_rules(v6) {
                        step(Routectl, format!("{co}rule del {rule}"));
                    }
                }
            }
            // (zones: the center's rules over the hub's sets, and the sets, go; natctl's table
            // in the kept center with them, unless a rule of the user's own keeps it)
            if c.zones() && !hub.run.check {
                let list = hub
                    .run
                    .probe(Step::new(Natctl, "center", format!("{co}list")))?
                    .unwrap_or_default();
                let list: NatList = listing::parse(&list, &format!("'natctl {co}list'"))?;
                let (ours, theirs): (Vec<&NatRule>, Vec<&NatRule>) = list
                    .rules
                    .iter()
                    .partition(|r| crate::sets::over_hub_sets(r));
                if theirs.is_empty() {
                    step(Natctl, format!("{co}flush"));
                } else {
                    let mut ids: Vec<&str> = ours.iter().filter_map(|r| r.id()).collect();
                    ids.sort_unstable();
                    ids.dedup();
                    for id in ids {
                        step(Natctl, format!("{co}del {id}"));
                    }
                    let sets = hub
                        .run
                        .probe(Step::new(Natctl, "center", format!("{co}set list")))?
                        .unwrap_or_default();
                    let sets: SetList = listing::parse(&sets, &format!("'natctl {co}set list'"))?;
                    for set in sets.sets.iter().filter(|s| crate::sets::is_hubs(&s.name)) {
                        step(Natctl, format!("{co}set del {}", set.name));
                    }
                }
            }
        }
        hub.stage(steps, &[Nsctl, Natctl, Routectl])?;
        if !keep_state {
            let path = hub.state.center_path().display().to_string();
            hub.run.changed_by("center", format!("remove {path}"));
        }
        // Stopped: nothing of the hub is left, so `up` may build it again in either HUB_MODE.
        if keep_state {
            hub.state.set_stopped(true)?;
        }
    }
    if !keep_state {
        hub.state.remove_all()?;
    }
    let out = json!({"changed": hub.run.any_changed(), "removed": {"center": center.is_some(), "peers": removed}, "state_kept": keep_state});
    Ok(Outcome::json(&out))
}
