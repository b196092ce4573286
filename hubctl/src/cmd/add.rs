//! `hub peer add NAME...`: new peers get the next free port and address (or the ones given),
//! keys, and their objects; an existing peer is converged, its given options held against its
//! record. A failure undoes the peers this command created.

use std::collections::HashSet;
use std::net::Ipv4Addr;

use super::{peers_report, Outcome};
use crate::args::Args;
use crate::error::{failed, invalid, Result};
use crate::hub::Hub;
use crate::index::Slot;
use crate::input::{self, Psk, Wanted, OPTION_LABELS};
use crate::record::{ClientKey, Peer};

pub fn add(hub: &mut Hub, args: &Args) -> Result<Outcome> {
    let names = &args.names;
    if names.is_empty() {
        return Err(invalid("peer add: give at least one peer NAME"));
    }
    let (port, address, key) = (
        args.value("--port"),
        args.value("--address"),
        args.value("--public-key"),
    );
    if names.len() > 1 && (port.is_some() || address.is_some() || key.is_some()) {
        return Err(invalid(
            "peer add: --port, --address and --public-key apply to one peer; give one NAME",
        ));
    }
    let mut seen = HashSet::new();
    for n in names {
        input::name(&hub.conf, n)?;
        if !seen.insert(n) {
            return Err(invalid(format!("peer add: '{n}' given twice")));
        }
    }
    let port = port.map(|p| input::port("--port", &p)).transpose()?;
    let address = address
        .map(|a| input::address(&hub.conf, "--address", &a))
        .transpose()?;
    let key = key
        .map(|k| input::public_key("--public-key", &k))
        .transpose()?;
    let wanted = args.settings().check(&hub.conf, OPTION_LABELS)?;

    hub.lock()?;
    hub.load_center()?;
    hub.require_up()?;
    // Allocate (or check against the record) before anything changes: this reads and writes
    // only the named peers' records and claims, so its cost does not grow with the hub.
    let unrecorded: Vec<String> = names
        .iter()
        .filter(|n| hub.state.load_peer(n).ok().flatten().is_none())
        .cloned()
        .collect();
    if !unrecorded.is_empty() {
        // (asking the center, also about the ports the new peers will be given)
        let ahead = if port.is_some() { 0 } else { unrecorded.len() };
        hub.refuse_foreign(&unrecorded, ahead)?;
    }
    let mut fresh: Vec<String> = Vec::new();
    for n in names {
        if hub.load_peer(n)? {
            existing_matches(hub, n, port, address, key.as_deref(), &wanted)?;
            continue;
        }
        let allocated = allocate(hub, port, address);
        let (p, a) = match allocated {
            Ok(pa) => pa,
            Err(e) => {
                for f in &fresh {
                    hub.forget_peer(f)?;
                }
                return Err(e);
            }
        };
        let mut peer = Peer::new(n, p, a);
        if let Some(k) = &key {
            peer.client_key = ClientKey::Given;
            peer.client_public_key = Some(k.clone());
        }
        take_settings(hub, &mut peer, &wanted);
        hub.peers.insert(n.clone(), peer);
        // Reserved now for this run's next allocations; claimed on disk with the record, once
        // every name passed, before anything is built (a claim without its record is no claim).
        let mut index = hub.index();
        index.reserve(Slot::Port(p), n);
        index.reserve(Slot::Address(a), n);
        fresh.push(n.clone());
    }
    if !fresh.is_empty() {
        hub.run.changed_by("-", "");
    }
    hub.state.mark_pending(names.iter().map(String::as_str))?;
    // (a record before any object: a kill from here on leaves a recorded, pending peer, which
    // the next `peer add`, `sync` or `up` finishes; its keys are filled in once made)
    for n in &fresh {
        hub.save_peer(n)?;
    }
    if let Err(e) = hub.apply_peers(names) {
        undo(hub, &fresh);
        return Err(e);
    }
    hub.state.clear_pending(names.iter().map(String::as_str))?;
    Ok(Outcome::json(&peers_report(hub, names)))
}

/// The port and address of a new peer: those given (if free), or the next free ones.
fn allocate(
    hub: &mut Hub,
    port: Option<u16>,
    address: Option<Ipv4Addr>,
) -> Result<(u16, Ipv4Addr)> {
    let port = match port {
        Some(p) => {
            if let Some(owner) = hub.index().owner(Slot::Port(p)) {
                return Err(invalid(format!(
                    "--port {p} is already used by peer '{owner}'"
                )));
            }
            p
        }
        None => {
            // (a port a socket of someone else's holds in the center is skipped)
            let base = hub.conf.port_base;
            hub.allocate_port()?
                .ok_or_else(|| failed(format!("no free port left above HUB_PORT_BASE {base}")))?
        }
    };
    let address = match address {
        Some(a) => {
            if let Some(owner) = hub.index().owner(Slot::Address(a)) {
                return Err(invalid(format!(
                    "--address {a} is already used by peer '{owner}'"
                )));
            }
            a
        }
        None => {
            let (cidr, center) = (hub.conf.cidr, hub.conf.address);
            hub.index()
                .allocate_address(&cidr, center)?
                .ok_or_else(|| {
                    failed(format!(
                        "no free address left in HUB_CIDR {}",
                        hub.conf.cidr_text
                    ))
                })?
        }
    };
    Ok((port, address))
}

/// `peer add` of an existing peer: each option given must be the recorded one (exit 1 naming
/// it; `hub peer set` changes a setting in place).
fn existing_matches(
    hub: &Hub,
    n: &str,
    port: Option<u16>,
    address: Option<Ipv4Addr>,
    key: Option<&str>,
    wanted: &Wanted,
) -> Result<()> {
    let p = hub.peer(n);
    if let Some(port) = port.filter(|x| *x != p.listen_port) {
        return Err(failed(format!(
            "peer '{n}' exists with port {}, not {port} (another port is another tunnel: 'hub peer del {n}', then 'hub peer add {n} --port {port}' makes it anew, and its client needs the new config)",
            p.listen_port
        )));
    }
    if let Some(a) = address.filter(|x| *x != p.address) {
        return Err(failed(format!(
            "peer '{n}' exists with address {}, not {a} (another address is another tunnel: 'hub peer del {n}', then 'hub peer add {n} --address {a}' makes it anew, and its client needs the new config)",
            p.address
        )));
    }
    if let Some(k) = key.filter(|k| Some(*k) != p.client_public_key.as_deref()) {
        return Err(failed(format!(
            "peer '{n}' exists with client key {}, not {k} ('hub peer del {n}', then 'hub peer add {n} --public-key ...' makes it anew with that key)",
            p.client_public_key.as_deref().unwrap_or("?")
        )));
    }
    let s = &p.settings;
    let mut what = None;
    if wanted.keepalive.is_some() && wanted.keepalive != s.keepalive {
        what = Some(format!(
            "keepalive {}",
            s.keepalive.map_or("default".to_string(), |k| k.to_string())
        ));
    }
    if wanted.mtu.is_some() && wanted.mtu != s.mtu {
        what = Some(format!(
            "MTU {}",
            s.mtu.map_or("default".to_string(), |m| m.to_string())
        ));
    }
    if wanted.dns.is_some() && wanted.dns != s.dns {
        what = Some(format!("DNS {}", s.dns.as_deref().unwrap_or("none")));
    }
    if wanted.forwards.as_ref().is_some_and(|f| *f != s.forwards) {
        what = Some(format!("forwards [{}]", list(&s.forwards)));
    }
    if wanted.allow.as_ref().is_some_and(|a| *a != s.allow) {
        what = Some(format!("allow [{}]", list(&s.allow)));
    }
    if let Some(psk) = &wanted.psk {
        if !s.preshared_key {
            what = Some("no preshared key".to_string());
        } else if let Psk::File(f) = psk {
            if !same_key(f, &hub.state.psk_path(n)) {
                what = Some("another preshared key".to_string());
            }
        }
    }
    match what {
        Some(w) => Err(failed(format!(
            "peer '{n}' exists with {w} ('hub peer set {n}' changes a setting in place, touching no other peer)"
        ))),
        None => Ok(()),
    }
}

/// A list setting in words.
fn list<T: std::fmt::Display>(items: &[T]) -> String {
    items.iter().map(T::to_string).collect::<Vec<_>>().join(" ")
}

/// Whether two files hold the same bytes.
pub fn same_key(a: &std::path::Path, b: &std::path::Path) -> bool {
    matches!((std::fs::read(a), std::fs::read(b)), (Ok(x), Ok(y)) if x == y)
}

/// The settings become the peer's (and where its preshared key comes from).
pub fn take_settings(hub: &mut Hub, peer: &mut Peer, wanted: &Wanted) {
    peer.settings.keepalive = wanted.keepalive;
    peer.settings.mtu = wanted.mtu;
    peer.settings.dns = wanted.dns.clone();
    peer.settings.preshared_key = wanted.psk.is_some();
    peer.settings.forwards = wanted.forwards.clone().unwrap_or_default();
    peer.settings.allow = wanted.allow.clone().unwrap_or_default();
    if let Some(psk) = &wanted.psk {
        hub.psk_from.insert(peer.name.clone(), psk.clone());
    }
}

/// A failed `peer add` or `sync` undoes the peers it created; a re-run converges the others.
pub fn undo(hub: &mut Hub, fresh: &[String]) {
    if fresh.is_empty() {
        return;
    }
    eprintln!(
        "{}: warning: undoing the new peer(s): {}",
        crate::prog(),
        fresh.join(" ")
    );
    let repair = std::mem::replace(&mut hub.run.repair, false);
    if hub.remove_peers(fresh).is_err() {
        eprintln!(
            "{}: warning: undo incomplete; run 'hub peer del {}'",
            crate::prog(),
            fresh.join(" ")
        );
    }
    hub.run.repair = repair;
}
