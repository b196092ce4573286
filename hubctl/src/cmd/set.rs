//! `hub peer set NAME`: one peer's settings changed in place: its record, then its tunnel
//! converged to it (MTU, keepalive and preshared key set on the live interface; DNS is the
//! client's alone). No other peer is read or touched. `none` takes a preshared key or DNS away.

use super::{add, peers_report, Outcome};
use crate::access;
use crate::args::Args;
use crate::error::{invalid, Result};
use crate::hub::Hub;
use crate::input::{self, Psk, Wanted, OPTION_LABELS};

pub fn set(hub: &mut Hub, args: &Args) -> Result<Outcome> {
    let [n] = args.names.as_slice() else {
        return Err(invalid("peer set: give exactly one peer NAME"));
    };
    input::name(&hub.conf, n)?;
    if args.options.is_empty() {
        return Err(invalid(
            "peer set: give at least one of --mtu, --keepalive, --dns, --preshared-key, --forward, --allow",
        ));
    }
    let mut given = args.settings();
    let psk_none = given.psk.as_deref() == Some("none");
    let dns_none = given.dns.as_deref() == Some("none");
    if psk_none {
        given.psk = None;
    }
    if dns_none {
        given.dns = None;
    }
    let wanted = given.check(&hub.conf, OPTION_LABELS)?;
    hub.lock()?;
    hub.load_center()?;
    hub.require_up()?;
    hub.require_peer(n, &format!(" ('hub peer add {n}' makes one)"))?;
    // What the peer will have: the given settings over the recorded ones.
    let s = hub.peer(n).settings.clone();
    let mut will = Wanted {
        keepalive: wanted.keepalive.or(s.keepalive),
        mtu: wanted.mtu.or(s.mtu),
        dns: if dns_none {
            None
        } else {
            wanted.dns.clone().or(s.dns.clone())
        },
        psk: wanted.psk.clone(),
        forwards: Some(wanted.forwards.clone().unwrap_or(s.forwards.clone())),
        allow: Some(wanted.allow.clone().unwrap_or(s.allow.clone())),
    };
    if !psk_none && will.psk.is_none() && s.preshared_key {
        will.psk = Some(Psk::Generate); // (keeps the one it has)
    }
    if settings_differ(hub, n, &will) {
        let keeps_psk = will.psk == Some(Psk::Generate) && s.preshared_key;
        if !keeps_psk && !hub.run.check {
            crate::state::remove(&hub.state.psk_path(n))?;
        }
        let mut peer = hub.peer(n).clone();
        add::take_settings(hub, &mut peer, &will);
        if access::takes_away(&hub.conf, &s, &peer.settings) {
            hub.reaccess.insert(n.clone());
        }
        hub.peers.insert(n.clone(), peer);
        hub.state.mark_pending([n.as_str()])?;
        hub.save_peer(n)?;
        hub.run.changed_by(n, format!("record peer {n}'s settings"));
    }
    hub.apply_peers(std::slice::from_ref(n))?;
    hub.state.clear_pending([n.as_str()])?;
    Ok(Outcome::json(&peers_report(hub, std::slice::from_ref(n))))
}

/// Whether the recorded settings of NAME are not WILL (a preshared key given as a file differs
/// unless it is the recorded one).
pub fn settings_differ(hub: &Hub, n: &str, will: &Wanted) -> bool {
    let s = &hub.peer(n).settings;
    if will.keepalive != s.keepalive || will.mtu != s.mtu || will.dns != s.dns {
        return true;
    }
    let none = Vec::new();
    if *will.forwards.as_ref().unwrap_or(&none) != s.forwards {
        return true;
    }
    if *will.allow.as_ref().unwrap_or(&Vec::new()) != s.allow {
        return true;
    }
    match &will.psk {
        None => s.preshared_key,
        Some(_) if !s.preshared_key => true,
        Some(Psk::Generate) => false,
        Some(Psk::File(f)) => !add::same_key(f, &hub.state.psk_path(n)),
        Some(Psk::Key(k)) => {
            crate::state::first_line(&hub.state.psk_path(n)).as_deref() != Some(k.0.as_str())
        }
    }
}
