//! `hub up`: the center, and every recorded peer again: after a reboot, and to repair (it says
//! per peer what it repaired; one peer's failure does not stop the others'). The endpoint each
//! tunnel reports is recorded, and a tunnel made anew is reseeded (not on a standby: reseed.rs).

use serde_json::{json, Value};

use super::Outcome;
use crate::error::{failed, Result};
use crate::hub::Hub;

pub fn up(hub: &mut Hub) -> Result<Outcome> {
    hub.lock()?;
    hub.load_center()?;
    hub.load_peers()?;
    crate::index::Index::reindex(&hub.state, &hub.peers)?;
    hub.state.orphan_keys(&hub.peers)?;
    let was_up = hub.up_center()?;
    // (the center first, as one: the peers need it)
    hub.run.repair = true;
    let names: Vec<String> = hub.peers.keys().cloned().collect();
    hub.apply_peers(&names)?;
    // (a center just made holds no set of the entries of before)
    hub.prune_rules(&names, was_up)?;
    hub.prune_gates()?;
    super::reseed::after_repair(hub, &names)?;
    hub.run.repair = false;
    let mut failed_peers: Vec<String> = hub.run.failed.iter().cloned().collect();
    failed_peers.sort();
    if failed_peers.is_empty() {
        hub.state.clear_all_pending()?; // (every peer converged)
    }
    let out = report(hub, was_up, &names);
    if failed_peers.is_empty() {
        return Ok(Outcome::json(&out));
    }
    super::print(&format!("{out}\n"))?;
    Err(failed(format!(
        "the repair of peer(s) {} failed (the step above names why); every other peer was repaired",
        failed_peers.join(" ")
    )))
}

/// Per peer and for the center, what was repaired (or, the first time, created for the center).
fn report(hub: &Hub, was_up: bool, names: &[String]) -> Value {
    let c = &hub.conf;
    let null_if_empty = |s: &str| if s.is_empty() { Value::Null } else { json!(s) };
    let switch = hub.layout().switch.unwrap_or("").to_string();
    let mut center = json!({"ns": null_if_empty(&c.ns), "switch": null_if_empty(&switch), "bridge": c.bridge,
        "interface": c.center_if(), "address": c.address_text, "cidr": c.cidr_text, "changed": hub.run.changed("center")});
    center[if was_up { "repaired" } else { "created" }] = json!(hub.run.actions("center"));
    let peers: Vec<Value> = names
        .iter()
        .map(|n| {
            let mut p =
                json!({"name": n, "changed": hub.run.changed(n), "repaired": hub.run.actions(n)});
            if hub.run.done.iter().any(|d| d.peer() == n && d.failed) {
                p["failed"] = json!(true);
            }
            p
        })
        .collect();
    json!({"changed": hub.run.any_changed(), "center": center, "peers": peers})
}
