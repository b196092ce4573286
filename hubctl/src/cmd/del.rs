//! `hub peer del NAME...`: every object of the peers, then their records and keys.

use serde_json::json;

use super::Outcome;
use crate::error::{invalid, Result};
use crate::hub::Hub;
use crate::input;

pub fn del(hub: &mut Hub, names: &[String]) -> Result<Outcome> {
    if names.is_empty() {
        return Err(invalid("peer del: give at least one peer NAME"));
    }
    for n in names {
        input::name(&hub.conf, n)?;
    }
    if hub.state.exists() {
        hub.lock()?;
    }
    hub.load_center()?;
    let mut known = Vec::new();
    for n in names {
        if hub.load_peer(n)? {
            known.push(n.clone());
        }
    }
    hub.remove_peers(&known)?;
    for n in &known {
        hub.run.changed_by(n, ""); // its record
    }
    let peers: Vec<_> = names
        .iter()
        .map(|n| json!({"name": n, "changed": hub.run.changed(n)}))
        .collect();
    Ok(Outcome::json(
        &json!({"changed": hub.run.any_changed(), "peers": peers}),
    ))
}
