//! The two roles of a pair of hubs. `hub reseed [NAME...]`: the hub starts the handshake with
//! each peer's client itself, at the client's last known endpoint (its record's), instead of
//! waiting for the client's timers (up to two minutes for an idle device): after a takeover, or
//! after `up` made a tunnel anew (`up` reseeds those itself). Without NAME: every peer, and a
//! standby serves again. `hub standby`: this hub is the standby of a pair; every tunnel forgets
//! its client's session and endpoint, and no command starts a handshake or sets an endpoint
//! until `reseed` (a standby that took a client would take it from the primary).
//!
//! A handshake is started the way both WireGuard implementations start one on their own: the
//! client is set again (its old session goes with it) with the endpoint and a persistent
//! keepalive, which, switched on, sends a keepalive at once; that needs a session, so a
//! handshake initiation goes to the endpoint. A peer without a keepalive of its own has it
//! switched off again right away.

use serde_json::{json, Value};

use super::Outcome;
use crate::error::{failed, Result};
use crate::exec::Tool::Wgctl;
use crate::hub::Hub;
use crate::input;
use crate::names::Names;
use crate::plan::{ns_opt, quote};
use crate::record::Peer;
use crate::steps::Step;

pub fn reseed(hub: &mut Hub, names: &[String]) -> Result<Outcome> {
    for n in names {
        input::name(&hub.conf, n)?;
    }
    hub.lock()?;
    hub.load_center()?;
    hub.require_up()?;
    hub.load_peers()?;
    let standby = hub.state.standby();
    if standby && !names.is_empty() {
        return Err(failed(
            "this hub is a standby ('hub standby'): it starts no handshake; 'hub reseed' without a NAME makes it serve",
        ));
    }
    for n in names {
        if !hub.peers.contains_key(n) {
            return Err(failed(format!(
                "no peer '{n}' in {}",
                hub.state.dir.display()
            )));
        }
    }
    let wanted: Vec<String> = if names.is_empty() {
        hub.peers.keys().cloned().collect()
    } else {
        names.to_vec()
    };
    if standby {
        hub.state.set_standby(false)?;
        hub.run
            .changed_by("center", "this hub serves: no longer a standby");
    }
    hub.run.repair = true; // (one peer's broken tunnel does not stop the others')
    seed(hub, &wanted)?;
    hub.run.repair = false;
    let peers: Vec<Value> = wanted
        .iter()
        .map(|n| {
            let mut p =
                json!({"name": n, "changed": hub.run.changed(n), "endpoint": hub.peer(n).endpoint});
            if hub.run.failed.contains(n) {
                p["failed"] = json!(true);
            }
            p
        })
        .collect();
    let out = json!({"changed": hub.run.any_changed(), "standby": false, "peers": peers});
    let mut broken: Vec<&String> = wanted
        .iter()
        .filter(|n| hub.run.failed.contains(*n))
        .collect();
    if broken.is_empty() {
        return Ok(Outcome::json(&out));
    }
    broken.sort();
    super::print(&format!("{out}\n"))?;
    Err(failed(format!(
        "the reseed of peer(s) {} failed (the step above names why; 'hub up' repairs a tunnel, and reseeds it)",
        broken.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
    )))
}

pub fn standby(hub: &mut Hub) -> Result<Outcome> {
    hub.lock()?;
    hub.load_center()?;
    hub.require_up()?;
    hub.load_peers()?;
    let was = hub.state.standby();
    hub.state.set_standby(true)?;
    if !was {
        hub.run.changed_by("center", "this hub is a standby");
    }
    let layout = hub.layout();
    let mut steps = Vec::new();
    for p in hub.peers.values() {
        let Some(client) = &p.client_public_key else {
            continue;
        };
        let (place, wg) = place(hub, &p.name);
        steps.push(Step::new(
            Wgctl,
            &p.name,
            format!("{place}peer del {wg} --public-key {client}"),
        ));
        // (the client again as the hub sets it: without an endpoint)
        steps.extend(layout.tunnel_steps(p, "", &place, false).pop());
    }
    hub.run.repair = true;
    hub.stage(steps, &[Wgctl])?;
    hub.run.repair = false;
    let mut broken: Vec<String> = hub.run.failed.iter().cloned().collect();
    let out = json!({"changed": hub.run.any_changed(), "standby": true});
    if broken.is_empty() {
        return Ok(Outcome::json(&out));
    }
    broken.sort();
    super::print(&format!("{out}\n"))?;
    Err(failed(format!(
        "the tunnel(s) of peer(s) {} could not be reset ('hub up' repairs them; on a standby it starts no handshake)",
        broken.join(" ")
    )))
}

/// `up`, after its repair (run.done holds its steps): the endpoint each tunnel reports goes into
/// its record (`export` prints it, `reseed` sends there), and the peers whose tunnel it made
/// anew are reseeded. A standby does neither: its records hold the primary's endpoints.
pub fn after_repair(hub: &mut Hub, names: &[String]) -> Result<()> {
    if hub.state.standby() {
        return Ok(());
    }
    let mut remade = Vec::new();
    let mut seen: Vec<(String, String)> = Vec::new();
    for d in &hub.run.done {
        if !names.iter().any(|n| n == d.peer()) || !d.command.starts_with("wgctl ") {
            continue;
        }
        if d.changed && d.command.contains(" iface add ") {
            remade.push(d.peer().to_string());
        }
        if d.command.contains(" peer add ") {
            let v: Value = serde_json::from_str(&d.json).unwrap_or_default();
            if let Some(e) = v["peer"]["endpoint"].as_str() {
                seen.push((d.peer().to_string(), e.to_string()));
            }
        }
    }
    for (n, e) in seen {
        let p = hub.peers.get_mut(&n).expect("loaded");
        if p.endpoint.as_deref() != Some(e.as_str()) {
            p.endpoint = Some(e);
            let p = p.clone();
            hub.state.save_peer(&p)?;
        }
    }
    remade.dedup();
    seed(hub, &remade)
}

/// Where peer N's tunnel is: the batch line prefix, and its interface.
fn place(hub: &Hub, n: &str) -> (String, String) {
    let nm = Names::of(&hub.conf, n);
    let ns = if hub.conf.zones() {
        hub.conf.ns.clone()
    } else {
        nm.ns
    };
    (ns_opt(&ns), nm.wg)
}

/// The handshake started with each listed peer that has a last known endpoint.
fn seed(hub: &mut Hub, names: &[String]) -> Result<()> {
    let mut steps = Vec::new();
    for n in names {
        steps.extend(seed_steps(hub, &hub.peers[n]));
    }
    hub.stage(steps, &[Wgctl])?;
    Ok(())
}

/// PEER's client set again, with its endpoint and a keepalive switched on (which starts the
/// handshake), then its own keepalive back.
fn seed_steps(hub: &Hub, peer: &Peer) -> Vec<Step> {
    let (Some(client), Some(endpoint)) = (&peer.client_public_key, &peer.endpoint) else {
        return Vec::new();
    };
    let n = &peer.name;
    let (place, wg) = place(hub, n);
    let psk = if peer.settings.preshared_key {
        quote(&hub.state.psk_path(n))
    } else {
        "none".to_string()
    };
    let keepalive = peer.settings.keepalive.unwrap_or(0);
    let set = format!("{place}peer add {wg} --public-key {client} --allowed-ips 0.0.0.0/0,::/0");
    let mut s = vec![
        Step::new(
            Wgctl,
            n,
            format!("{place}peer del {wg} --public-key {client}"),
        ),
        Step::new(
            Wgctl,
            n,
            format!(
                "{set} --preshared-key {psk} --keepalive {} --endpoint {endpoint} --replace",
                keepalive.max(1)
            ),
        ),
    ];
    if keepalive == 0 {
        s.push(Step::new(
            Wgctl,
            n,
            format!("{set} --keepalive 0 --replace"),
        ));
    }
    s
}
