//! `hub peer rekey NAME [--client]`: a new hub-side key (--client: and a new client pair) for
//! the same port, address and namespace. The old keys stop working at once: the tunnel is made
//! again.

use serde_json::json;

use super::Outcome;
use crate::error::{invalid, Result};
use crate::exec::Tool::Wgctl;
use crate::hub::Hub;
use crate::input;
use crate::names::Names;
use crate::plan::{ns_opt, quote};
use crate::record::ClientKey;
use crate::state::remove;
use crate::steps::Step;

pub fn rekey(hub: &mut Hub, names: &[String], client: bool) -> Result<Outcome> {
    let [n] = names else {
        return Err(invalid("peer rekey: give exactly one peer NAME"));
    };
    input::name(&hub.conf, n)?;
    hub.lock()?;
    hub.load_center()?;
    hub.require_up()?;
    hub.require_peer(n, "")?;
    // 1. the record forgets the keys being replaced, 2. their files go, 3. new ones are made
    // and recorded: a kill anywhere leaves a record that the next run completes from the files.
    {
        let p = hub.peers.get_mut(n).expect("loaded");
        p.public_key = None;
        if client {
            p.client_key = ClientKey::Generated;
            p.client_public_key = None;
        }
    }
    if hub.run.check {
        hub.run.foresight.predicted.insert(n.clone()); // (every step of it makes something new)
    }
    hub.save_peer(n)?;
    if !hub.run.check {
        remove(&hub.state.key_path(n))?;
        if client {
            remove(&hub.state.client_key_path(n))?;
        }
    }
    let mut keys = vec![Step::new(
        Wgctl,
        &format!("{n}:hub"),
        format!("genkey --out {}", quote(&hub.state.key_path(n))),
    )];
    if client {
        keys.push(Step::new(
            Wgctl,
            &format!("{n}:client"),
            format!("genkey --out {}", quote(&hub.state.client_key_path(n))),
        ));
    }
    for d in hub.stage(keys, &[Wgctl])? {
        let Some(public) = crate::steps::field(&d.json, "public_key") else {
            continue;
        };
        let p = hub.peers.get_mut(n).expect("loaded");
        if d.owner.ends_with(":hub") {
            p.public_key = Some(public);
        } else {
            p.client_public_key = Some(public);
        }
    }
    hub.save_peer(n)?;
    // 4. the tunnel again: its interface (old key, old client) goes, apply_peers makes it anew.
    let c = &hub.conf;
    let nm = Names::of(c, n);
    let del = if c.zones() {
        Some(format!("{}iface del {}", ns_opt(&c.ns), nm.wg))
    } else {
        hub.ns_exists(&nm.ns)
            .then(|| format!("--ns {} iface del {}", nm.ns, nm.wg))
    };
    hub.stage(
        del.into_iter().map(|l| Step::new(Wgctl, n, l)).collect(),
        &[Wgctl],
    )?;
    hub.apply_peers(std::slice::from_ref(n))?;
    let p = hub.peer(n);
    let peer =
        json!({"name": n, "public_key": p.public_key, "client_public_key": p.client_public_key});
    Ok(Outcome::json(
        &json!({"changed": hub.run.any_changed(), "peer": peer}),
    ))
}
