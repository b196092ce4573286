//! `hub sync FILE|-`: make the hub's peers the set in FILE. The whole set is read and checked
//! first (every line, the conflicts, the capacity), then: the extra peers go; those whose port,
//! address or client key changed are rebuilt (keeping their hub key, so only what changed
//! changes for the client); those whose settings alone changed are updated in place; the new
//! ones are added; the others stay untouched, except those a killed run left half built
//! (pending), which are finished. The keys a line of `export --secrets` carries (private_key,
//! client_private_key, the preshared key inline) go into the key files (0600): a hub key or
//! client key other than the peer's rebuilds it. A line's `endpoint` is recorded (for `reseed`),
//! never set on a tunnel: on a standby no command but `reseed` sets one.

use std::collections::{HashMap, HashSet};
use std::io::Read;

use serde_json::json;

use super::{add, set::settings_differ, Outcome};
use crate::access;
use crate::error::{failed, invalid, Result};
use crate::hub::Hub;
use crate::index::Slot;
use crate::input::{self, Line, Psk};
use crate::record::{ClientKey, Peer};
use crate::state::{first_line, remove, write_atomic};

/// The plan of a sync: which peer goes where.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Diff {
    pub remove: Vec<String>,
    pub rebuild: Vec<String>,
    pub settle: Vec<String>,
    pub add: Vec<String>,
    pub finish: Vec<String>,
    /// Only their last endpoint changed: their records alone.
    pub reseen: Vec<String>,
}

/// The sync diff: RECORDED peers against the WANTED set (PENDING: left half built).
pub fn diff(
    recorded: &std::collections::BTreeMap<String, Peer>,
    wanted: &[Line],
    pending: &HashSet<String>,
    differs: impl Fn(&Line) -> bool,
) -> Diff {
    let mut d = Diff::default();
    let names: HashSet<&str> = wanted.iter().map(|l| l.name.as_str()).collect();
    d.remove = recorded
        .keys()
        .filter(|n| !names.contains(n.as_str()))
        .cloned()
        .collect();
    for l in wanted {
        match recorded.get(&l.name) {
            None => d.add.push(l.name.clone()),
            Some(p) if identity_differs(p, l) => d.rebuild.push(l.name.clone()),
            Some(_) if differs(l) => d.settle.push(l.name.clone()),
            Some(_) if pending.contains(&l.name) => d.finish.push(l.name.clone()),
            Some(p) if endpoint_differs(p, l) => d.reseen.push(l.name.clone()),
            Some(_) => {}
        }
    }
    d
}

/// Whether the set gives the recorded peer another port, address, hub key or client key (which
/// take a new tunnel: the peer is rebuilt).
fn identity_differs(p: &Peer, l: &Line) -> bool {
    let client = match (&l.client_private_key, &l.public_key) {
        (Some(k), _) => {
            p.client_key != ClientKey::Generated || p.client_public_key != Some(k.public())
        }
        (None, Some(k)) => {
            p.client_key != ClientKey::Given || p.client_public_key.as_ref() != Some(k)
        }
        (None, None) => p.client_key != ClientKey::Generated,
    };
    l.port.is_some_and(|x| x != p.listen_port)
        || l.address.is_some_and(|x| x != p.address)
        || l.private_key
            .as_ref()
            .is_some_and(|k| p.public_key != Some(k.public()))
        || client
}

/// Whether the set gives the recorded peer another last endpoint (a record's change alone).
fn endpoint_differs(p: &Peer, l: &Line) -> bool {
    l.endpoint
        .is_some_and(|e| p.endpoint.as_deref() != Some(e.to_string().as_str()))
}

pub fn sync(hub: &mut Hub, file: &str, allow_empty: bool) -> Result<Outcome> {
    let wanted = read_set(hub, file, allow_empty)?;
    hub.lock()?;
    hub.load_center()?;
    hub.load_peers()?;
    let pending: HashSet<String> = hub.state.pending().into_iter().collect();
    let by_name: HashMap<String, Line> =
        wanted.iter().map(|l| (l.name.clone(), l.clone())).collect();
    let d = diff(&hub.peers, &wanted, &pending, |l| {
        settings_differ(hub, &l.name, &l.settings)
    });
    for n in d.add.iter().chain(&d.rebuild) {
        let l = &by_name[n];
        if let Some(p) = l.port {
            conflict(hub, Slot::Port(p), l, &by_name)?;
        }
        if let Some(a) = l.address {
            conflict(hub, Slot::Address(a), l, &by_name)?;
        }
    }
    capacity(hub, &wanted)?;
    if !d.add.is_empty() {
        // (asking the center, also about the ports the new peers will be given)
        let ahead = d.add.iter().filter(|n| by_name[*n].port.is_none()).count();
        hub.refuse_foreign(&d.add, ahead)?;
    }
    let center_new = hub.center.is_none();
    if center_new {
        hub.up_center()?;
    }
    // 1. the extra peers go; the rebuilt ones lose their objects (not their keys or claims).
    hub.remove_peers(&d.remove)?;
    for n in &d.remove {
        hub.run
            .changed_by(n, format!("remove the record of peer {n}"));
    }
    hub.remove_objects(&d.rebuild, false)?;
    if hub.run.check {
        hub.run
            .foresight
            .predicted
            .extend(d.rebuild.iter().cloned()); // (built anew)
    }
    // 2. what the set gives, claimed first (in this run); then the rest allocated.
    let mut old: HashMap<String, (Option<u16>, Option<std::net::Ipv4Addr>)> = HashMap::new();
    for n in d.add.iter().chain(&d.rebuild).chain(&d.settle) {
        let l = &by_name[n];
        let was = hub.peers.get(n).cloned();
        old.insert(
            n.clone(),
            (
                was.as_ref().map(|p| p.listen_port),
                was.as_ref().map(|p| p.address),
            ),
        );
        let mut p = was
            .clone()
            .unwrap_or_else(|| Peer::new(n, 0, std::net::Ipv4Addr::UNSPECIFIED));
        if let Some(port) = l.port {
            p.listen_port = port;
        }
        if let Some(a) = l.address {
            p.address = a;
        }
        if let Some(k) = &l.private_key {
            p.public_key = Some(k.public());
        }
        if let Some(e) = l.endpoint {
            p.endpoint = Some(e.to_string());
        }
        match (&l.client_private_key, &l.public_key) {
            (Some(k), _) => {
                p.client_key = ClientKey::Generated;
                p.client_public_key = Some(k.public());
            }
            (None, Some(k)) => {
                if was
                    .as_ref()
                    .is_some_and(|w| w.client_key == ClientKey::Generated)
                    && !hub.run.check
                {
                    remove(&hub.state.client_key_path(n))?;
                }
                p.client_key = ClientKey::Given;
                p.client_public_key = Some(k.clone());
            }
            (None, None) if p.client_key != ClientKey::Generated || was.is_none() => {
                p.client_key = ClientKey::Generated;
                p.client_public_key = None;
            }
            (None, None) => {}
        }
        // A preshared key stays only if the set asks for one to be generated and there is one.
        let keeps_psk = l.settings.psk == Some(Psk::Generate)
            && was.as_ref().is_some_and(|w| w.settings.preshared_key);
        if !keeps_psk && !hub.run.check {
            remove(&hub.state.psk_path(n))?;
        }
        add::take_settings(hub, &mut p, &l.settings);
        if was
            .as_ref()
            .is_some_and(|w| access::takes_away(&hub.conf, &w.settings, &p.settings))
        {
            hub.reaccess.insert(n.clone());
        }
        let mut index = hub.index();
        if l.port.is_some() || was.is_some() {
            index.reserve(Slot::Port(p.listen_port), n);
        }
        if l.address.is_some() || was.is_some() {
            index.reserve(Slot::Address(p.address), n);
        }
        hub.peers.insert(n.clone(), p);
    }
    // (the capacity was counted: an allocation cannot fail here)
    for n in &d.add {
        let l = &by_name[n];
        if l.port.is_none() {
            let base = hub.conf.port_base;
            let port = hub.allocate_port()?;
            hub.peers.get_mut(n).expect("set").listen_port = port
                .ok_or_else(|| failed(format!("no free port left above HUB_PORT_BASE {base}")))?;
        }
        if l.address.is_none() {
            let (cidr, center) = (hub.conf.cidr, hub.conf.address);
            let a = hub.index().allocate_address(&cidr, center)?;
            hub.peers.get_mut(n).expect("set").address = a.ok_or_else(|| {
                failed(format!(
                    "no free address left in HUB_CIDR {}",
                    hub.conf.cidr_text
                ))
            })?;
        }
        let p = hub.peers[n].clone();
        hub.index().claim(&p)?;
    }
    // 3. records: new claims, then the record, then the old claims go (a record's claims are
    // never released while it lives); a kill from here on leaves them pending.
    let marked: Vec<&str> = d
        .add
        .iter()
        .chain(&d.rebuild)
        .chain(&d.settle)
        .map(String::as_str)
        .collect();
    hub.state.mark_pending(marked.iter().copied())?;
    // (the keys the set gives, before the records that name them: a kill between the two
    // leaves a peer pending, which the next run rebuilds from the set again)
    for n in &marked {
        write_keys(hub, &by_name[*n])?;
    }
    for n in &d.reseen {
        let p = hub.peers.get_mut(n).expect("loaded");
        p.endpoint = by_name[n].endpoint.map(|e| e.to_string());
        let p = p.clone();
        hub.state.save_peer(&p)?;
        hub.run
            .changed_by(n, format!("record the last endpoint of peer {n}"));
    }
    for n in d.rebuild.iter().chain(&d.settle) {
        hub.save_peer(n)?;
        let p = hub.peers[n].clone();
        let (old_port, old_addr) = old[n];
        let mut gone = Vec::new();
        if let Some(x) = old_port.filter(|x| *x != p.listen_port) {
            gone.push(Slot::Port(x));
        }
        if let Some(x) = old_addr.filter(|x| *x != p.address) {
            gone.push(Slot::Address(x));
        }
        hub.index().unclaim(n, &gone)?;
        hub.run.changed_by(
            n,
            format!(
                "record peer {n} with port {}, address {}",
                p.listen_port, p.address
            ),
        );
    }
    for n in &d.add {
        hub.save_peer(n)?;
        let p = &hub.peers[n];
        let what = format!(
            "record peer {n} with port {}, address {}",
            p.listen_port, p.address
        );
        hub.run.changed_by(n, what);
    }
    // 4. build (or update in place, or finish) them, one batch per tool; a failure undoes the
    // added peers.
    let build: Vec<String> = d
        .add
        .iter()
        .chain(&d.rebuild)
        .chain(&d.settle)
        .chain(&d.finish)
        .cloned()
        .collect();
    if let Err(e) = hub.apply_peers(&build) {
        add::undo(hub, &d.add);
        return Err(e);
    }
    hub.state.clear_pending(build.iter().map(String::as_str))?;
    let updated: Vec<&String> = d.rebuild.iter().chain(&d.settle).chain(&d.finish).collect();
    let peers: Vec<_> = wanted
        .iter()
        .map(|l| json!({"name": l.name, "changed": hub.run.changed(&l.name)}))
        .collect();
    Ok(Outcome::json(
        &json!({"changed": hub.run.any_changed(), "center": {"changed": hub.run.changed("center")},
        "added": d.add, "removed": d.remove, "updated": updated, "peers": peers}),
    ))
}

/// The private keys line L gives, into its peer's key files (0600).
fn write_keys(hub: &Hub, l: &Line) -> Result<()> {
    if hub.run.check {
        return Ok(());
    }
    let n = &l.name;
    for (key, path) in [
        (&l.private_key, hub.state.key_path(n)),
        (&l.client_private_key, hub.state.client_key_path(n)),
    ] {
        if let Some(k) = key {
            if first_line(&path).as_deref() != Some(k.0.as_str()) {
                write_atomic(&path, &format!("{}\n", k.0))?;
            }
        }
    }
    Ok(())
}

/// The set, every line checked before anything changes (exit 2 naming the line). An empty set
/// removes every peer and its keys: what a truncated file or an empty pipe looks like, so it
/// takes --allow-empty.
fn read_set(hub: &Hub, file: &str, allow_empty: bool) -> Result<Vec<Line>> {
    let mut bytes = Vec::new();
    let read = if file == "-" {
        std::io::stdin().read_to_end(&mut bytes).is_ok()
    } else {
        std::path::Path::new(file).is_file()
            && std::fs::File::open(file)
                .and_then(|mut f| f.read_to_end(&mut bytes))
                .is_ok()
    };
    if !read {
        return Err(invalid(format!(
            "sync: cannot read '{file}' (a file, or - for standard input)"
        )));
    }
    let text = String::from_utf8(bytes)
        .map_err(|_| invalid(format!("sync: cannot read '{file}' (not text?)")))?;
    let lines = input::peer_set(&hub.conf, &text)?;
    if lines.is_empty() && !allow_empty {
        return Err(invalid(format!(
            "sync: '{file}' holds no peer: that would remove every peer and its keys; give --allow-empty if that is what you want"
        )));
    }
    Ok(lines)
}

/// A value the set gives L's peer while a peer that the set keeps holds it is refused (exit 2):
/// the holder gives it up only if the set moves it elsewhere.
fn conflict(hub: &Hub, slot: Slot, l: &Line, set: &HashMap<String, Line>) -> Result<()> {
    let Some(owner) = crate::index::Index::peek(&hub.state, slot) else {
        return Ok(());
    };
    let Some(theirs) = set.get(&owner).filter(|_| owner != l.name) else {
        return Ok(());
    };
    let moved = match slot {
        Slot::Port(p) => theirs.port.is_some_and(|x| x != p),
        Slot::Address(a) => theirs.address.is_some_and(|x| x != a),
    };
    if moved {
        return Ok(());
    }
    let value = match slot {
        Slot::Port(p) => p.to_string(),
        Slot::Address(a) => a.to_string(),
    };
    Err(invalid(format!(
        "{} {value} is held by peer '{owner}' (line {}), which keeps it",
        slot.kind(),
        theirs.line
    ))
    .at(&format!("line {}: ", l.line)))
}

/// Whether the whole set fits, before anything changes (exit 2 if not): every peer of the set
/// ends up with the port and address it is given or holds, and each new one without a given
/// value takes a free one from HUB_PORT_BASE..65535 and HUB_CIDR.
fn capacity(hub: &Hub, wanted: &[Line]) -> Result<()> {
    let c = &hub.conf;
    let (mut ports, mut addrs) = (HashSet::new(), HashSet::new());
    let (mut need_p, mut need_a) = (0usize, 0usize);
    for l in wanted {
        let held = hub.peers.get(&l.name);
        match l.port.or(held.map(|p| p.listen_port)) {
            None => need_p += 1,
            Some(p) if p >= c.port_base => {
                ports.insert(p);
            }
            Some(_) => {}
        }
        match l.address.or(held.map(|p| p.address)) {
            None => need_a += 1,
            Some(a) => {
                addrs.insert(a);
            }
        }
    }
    let free_p = (65535 - usize::from(c.port_base) + 1).saturating_sub(ports.len());
    let mut slots = (c.cidr.last - c.cidr.first + 1) as usize;
    if c.cidr.holds(c.address) {
        slots -= 1;
    }
    let free_a = slots.saturating_sub(addrs.len());
    if need_p > free_p {
        return Err(invalid(format!(
            "sync: the set needs {need_p} new port(s) but only {free_p} are free above HUB_PORT_BASE {}; nothing was changed",
            c.port_base
        )));
    }
    if need_a > free_a {
        return Err(invalid(format!(
            "sync: the set has {} peers, but HUB_CIDR {} holds {slots} (only {free_a} free for the {need_a} new one(s)); nothing was changed",
            wanted.len(),
            c.cidr_text
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::input::Wanted;
    use std::collections::BTreeMap;
    use std::net::Ipv4Addr;

    fn line(name: &str, port: Option<u16>, key: Option<&str>) -> Line {
        Line {
            line: 1,
            name: name.into(),
            public_key: key.map(str::to_string),
            port,
            address: None,
            settings: Wanted::default(),
            private_key: None,
            client_private_key: None,
            endpoint: None,
        }
    }

    #[test]
    fn the_diff_sorts_every_peer_once() {
        let mut recorded = BTreeMap::new();
        for (i, n) in ["keep", "gone", "moved", "rekeyed", "tuned", "half"]
            .iter()
            .enumerate()
        {
            recorded.insert(
                n.to_string(),
                Peer::new(n, 50000 + i as u16, Ipv4Addr::new(100, 64, 0, 1 + i as u8)),
            );
        }
        let wanted = vec![
            line("keep", Some(50000), None),
            line("moved", Some(50100), None),
            line("rekeyed", None, Some("K")),
            line("tuned", None, None),
            line("half", None, None),
            line("new", None, None),
        ];
        let pending: HashSet<String> = ["half".to_string(), "keep-not".to_string()].into();
        let d = diff(&recorded, &wanted, &pending, |l| l.name == "tuned");
        assert_eq!(d.remove, ["gone"]);
        assert_eq!(d.rebuild, ["moved", "rekeyed"]);
        assert_eq!(d.settle, ["tuned"]);
        assert_eq!(d.finish, ["half"]);
        assert_eq!(d.add, ["new"]);
        // the same set again, nothing pending or changed: nothing to do
        let none = diff(&recorded, &wanted[..1], &HashSet::new(), |_| false);
        assert_eq!(
            (
                none.add.len(),
                none.rebuild.len(),
                none.settle.len(),
                none.finish.len()
            ),
            (0, 0, 0, 0)
        );
        assert_eq!(none.remove.len(), 5);
    }
}
