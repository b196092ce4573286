//! A hub at work: its settings, its state directory, its center record and the records it
//! loaded, and the runner that has the tools do the plan. The operations every command shares:
//! the center, building (or converging) peers, removing them.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::path::Path;

use crate::conf::Conf;
use crate::error::{failed, invalid, Result};
use crate::exec::Tool::{Natctl, Nsctl, Routectl, Wgctl};
use crate::fwmark;
use crate::index::{Index, RunClaims, Slot};
use crate::input::{key_line, Psk};
use crate::names::Names;
use crate::plan::{ns_opt, Layout};
use crate::record::{Center, Peer};
use crate::state::{write_atomic, State};
use crate::steps::{Runner, Step};

pub struct Hub<'e> {
    pub conf: Conf,
    pub state: State,
    pub run: Runner<'e>,
    /// The center record (None: the hub is not up).
    pub center: Option<Center>,
    /// Whether the center record holds the hub's settings (a record from before they were
    /// recorded gets them at the next `up`).
    pub settings_recorded: bool,
    /// The records loaded, by name.
    pub peers: BTreeMap<String, Peer>,
    /// Where a peer's new preshared key comes from (a file given, or generated).
    pub psk_from: HashMap<String, Psk>,
    /// This run's claims and releases.
    claims: RunClaims,
    /// What this command has learnt of the center (`center`).
    pub(crate) seen: crate::center::Seen,
    /// Peers whose forwards or allow list may have lost entries in this run: their natctl
    /// rules that the plan no longer holds go (`up` prunes every peer).
    pub reaccess: HashSet<String>,
}

/// The public key of the private key in FILE.
pub fn public_key_of(file: &Path) -> Result<String> {
    let text = std::fs::read_to_string(file)
        .map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
    let key = key_line(&text)
        .and_then(|k| wireguard_control::Key::from_base64(k).ok())
        .ok_or_else(|| failed(format!("{} holds no WireGuard private key", file.display())))?;
    Ok(key.get_public().to_base64())
}

impl<'e> Hub<'e> {
    pub fn new(conf: Conf, run: Runner<'e>) -> Hub<'e> {
        let state = State::new(&conf.state_dir, run.check);
        Hub {
            conf,
            state,
            run,
            center: None,
            settings_recorded: false,
            peers: BTreeMap::new(),
            psk_from: HashMap::new(),
            claims: RunClaims::new(),
            seen: crate::center::Seen::default(),
            reaccess: HashSet::new(),
        }
    }

    /// Whether the namespace NAME exists.
    pub fn ns_exists(&self, name: &str) -> bool {
        self.run.netns_exists(name)
    }

    pub fn layout(&self) -> Layout<'_> {
        Layout {
            conf: &self.conf,
            state: &self.state,
            switch: self.center.as_ref().and_then(|c| c.switch.as_deref()),
        }
    }

    pub fn index(&mut self) -> Index<'_> {
        Index::new(&self.state, &mut self.claims)
    }

    /// The exclusive lock of a change: the state directory is made first (its lock file is
    /// there); then what an earlier version left is tidied. With --check: a shared lock, and
    /// nothing written.
    pub fn lock(&mut self) -> Result<()> {
        if self.run.check {
            return self.lock_shared();
        }
        self.state.prepare()?;
        let dir = self.state.dir.clone();
        self.run.executor().lock(&dir, true)?;
        let old = self.state.tidy()?;
        for peer in &old {
            self.index().claim(peer)?;
            self.state.save_peer(peer)?;
        }
        if !old.is_empty() {
            self.state.drop_jsonl()?;
        }
        Ok(())
    }

    /// Wait for a running change; create nothing.
    pub fn lock_shared(&mut self) -> Result<()> {
        if !self.state.dir.join("lock").exists() {
            return Ok(());
        }
        let dir = self.state.dir.clone();
        self.run.executor().lock(&dir, false)
    }

    /// The center record, held against this run's settings: another hub's state, another mode
    /// or another value of a recorded setting is refused (a stopped hub may change them).
    pub fn load_center(&mut self) -> Result<()> {
        let Some(center) = self.state.load_center()? else {
            return Ok(());
        };
        let c = &self.conf;
        if center.ns.as_deref().unwrap_or("") != c.ns || center.prefix != c.prefix {
            return Err(invalid(format!(
                "HUB_STATE_DIR {} belongs to another hub (HUB_NS='{}', HUB_PREFIX='{}'); give this hub its own HUB_STATE_DIR",
                self.state.dir.display(),
                center.ns.as_deref().unwrap_or(""),
                center.prefix
            )));
        }
        let stopped = self.state.stopped();
        if center.mode != c.mode.as_str() && !stopped {
            let (was, now) = (&center.mode, c.mode.as_str());
            return Err(invalid(format!(
                "this hub was built with HUB_MODE={was}, not {now}: a hub changes its mode by a rebuild ('hub down' with HUB_MODE={was}, then 'hub up' and the peers again with HUB_MODE={now}; 'hub down --keep-state' keeps the records and keys for that)"
            )));
        }
        self.settings_recorded = center.settings.is_some();
        if let Some(recorded) = center.settings.as_ref().filter(|_| !stopped) {
            for (key, var, value) in c.recorded_settings() {
                let was = recorded.get(key);
                if was != value {
                    return Err(invalid(format!(
                        "{var} is '{value}', but this hub was built with {var}='{was}' (recorded in {}): a built hub keeps its settings; to change them, stop it with 'hub down --keep-state' (records and keys are kept), then run 'hub up' with the new ones",
                        self.state.center_path().display()
                    )));
                }
            }
        }
        self.center = Some(center);
        Ok(())
    }

    /// The center record as this run would write it.
    pub fn center_record(
        &self,
        ns_created: bool,
        bridge_created: bool,
        forward_old: Option<String>,
        switch: Option<String>,
    ) -> Center {
        let c = &self.conf;
        let s = c.recorded_settings();
        Center {
            version: crate::record::VERSION,
            ns: (!c.ns.is_empty()).then(|| c.ns.clone()),
            prefix: c.prefix.clone(),
            ns_created,
            bridge_created,
            forward_old,
            switch,
            mode: c.mode.as_str().to_string(),
            settings: Some(crate::record::Recorded {
                bridge: s[0].2.clone(),
                cidr: s[1].2.clone(),
                address: s[2].2.clone(),
                port_base: s[3].2.clone(),
                client_address: s[4].2.clone(),
                cidr6: s[5].2.clone(),
                address6: s[6].2.clone(),
                client_address6: s[7].2.clone(),
            }),
        }
    }

    /// The center record again, in this run's mode and settings.
    pub fn resave_center(&mut self) -> Result<()> {
        let Some(old) = self.center.clone() else {
            return Ok(());
        };
        let center = self.center_record(
            old.ns_created,
            old.bridge_created,
            old.forward_old,
            old.switch,
        );
        self.state.save_center(&center)?;
        self.settings_recorded = true;
        self.center = Some(center);
        Ok(())
    }

    pub fn require_up(&self) -> Result<()> {
        if self.center.is_none() {
            return Err(failed(format!(
                "the hub is not up (no {}): run 'hub up' first",
                self.state.center_path().display()
            )));
        }
        Ok(())
    }

    pub fn load_peers(&mut self) -> Result<()> {
        self.peers = self.state.load_peers()?;
        Ok(())
    }

    /// The peer NAME's record into `peers`; false if it has none.
    pub fn load_peer(&mut self, name: &str) -> Result<bool> {
        match self.state.load_peer(name)? {
            Some(p) => {
                self.peers.insert(name.to_string(), p);
                Ok(true)
            }
            None => Ok(false),
        }
    }

    /// The peer NAME's record into `peers`, or exit 1 saying there is none (and ADVICE).
    pub fn require_peer(&mut self, name: &str, advice: &str) -> Result<()> {
        if self.load_peer(name)? {
            return Ok(());
        }
        Err(failed(format!(
            "no peer '{name}' in {}{advice}",
            self.state.dir.display()
        )))
    }

    pub fn peer(&self, name: &str) -> &Peer {
        &self.peers[name]
    }

    /// Runs a stage of this command.
    pub fn stage(
        &mut self,
        steps: Vec<Step>,
        order: &[crate::exec::Tool],
    ) -> Result<Vec<crate::steps::Done>> {
        self.center_changes();
        self.run.stage(steps, order)
    }

    /// --check: which namespaces are absent, and the links of those that exist (one `link
    /// list` each); "" is the caller's. Without --check: nothing.
    pub fn foresee(&mut self, spaces: &[String]) -> Result<()> {
        if !self.run.check {
            return Ok(());
        }
        let mut reads = Vec::new();
        for ns in spaces {
            let key = if ns.is_empty() { "." } else { ns.as_str() };
            if !self.run.foresight.asked.insert(key.to_string()) {
                continue;
            }
            if !ns.is_empty() && !self.ns_exists(ns) {
                self.run.foresight.absent.insert(ns.clone());
                continue;
            }
            reads.push(Step::new(
                Nsctl,
                &format!("links:{key}"),
                format!("{}link list --no-peers", ns_opt(ns)),
            ));
        }
        for d in self.run.read(reads, &[Nsctl])? {
            let ns = d.owner.trim_start_matches("links:").to_string();
            for name in link_names(&d.json) {
                self.run.foresight.links.insert((ns.clone(), name));
            }
        }
        Ok(())
    }

    /// The center: its namespace, bridge and forwarding, made, or checked and repaired. What
    /// exists before the hub touches anything the first time is recorded, so that `down`
    /// removes only what the hub made. Returns whether there was a center record before.
    pub fn up_center(&mut self) -> Result<bool> {
        let was_up = self.center.is_some();
        let c = self.conf.clone();
        if !was_up {
            let fresh_ns = !c.ns.is_empty() && !self.ns_exists(&c.ns);
            let (ns_created, bridge_created, forward_old) = if fresh_ns {
                (true, true, None)
            } else {
                let co = ns_opt(&c.ns);
                let found = self.run.read(
                    vec![
                        Step::new(Nsctl, "center", format!("{co}link list --no-peers")),
                        Step::new(Nsctl, "center", format!("{co}sysctl net.ipv4.ip_forward")),
                    ],
                    &[Nsctl],
                )?;
                (
                    false,
                    !link_names(&found[0].json).contains(&c.bridge),
                    sysctl_value(&found[1].json),
                )
            };
            // A bridge of our own lives in a namespace of its own, with the peers' ports: every
            // wireguard-go listens to the link events of the namespace it was born in (the
            // center), so 1,000 ports there would make each port's add and del wake 1,000.
            let switch = bridge_created.then(|| c.switch_name());
            let center = self.center_record(ns_created, bridge_created, forward_old, switch);
            self.state.save_center(&center)?;
            self.center = Some(center);
            self.settings_recorded = true;
            self.run.changed_by(
                "center",
                format!(
                    "record the center in {}",
                    self.state.center_path().display()
                ),
            );
        } else if self.state.stopped() && !self.run.check {
            self.fits_settings()?;
            self.resave_center()?;
            self.state.set_stopped(false)?;
        } else if !self.settings_recorded && !self.run.check {
            self.resave_center()?;
        }
        let bridge_ns = self.layout().bridge_ns().to_string();
        self.foresee(&[c.ns.clone(), bridge_ns])?;
        let bridge_ours = self.center.as_ref().is_some_and(|r| r.bridge_created);
        let self_ns = format!("/proc/{}/ns/net", std::process::id());
        let steps = self.layout().center_steps(bridge_ours, &self_ns);
        self.stage(steps, &[Nsctl, Routectl, Natctl])?;
        Ok(was_up)
    }

    /// A stopped hub may come back with other settings only if every peer's record fits them.
    fn fits_settings(&self) -> Result<()> {
        let c = &self.conf;
        for p in self.peers.values() {
            if !c.cidr.holds(p.address) || p.address == c.address {
                return Err(invalid(format!(
                    "peer '{}' has the address {}, which HUB_CIDR {} with HUB_ADDRESS {} cannot hold; keep the old settings, or move the peer first ('hub sync' with another address)",
                    p.name, p.address, c.cidr_text, c.address_text
                )));
            }
            if let Some(m) = p.settings.mtu.filter(|m| *m < c.mtu_min()) {
                return Err(invalid(format!(
                    "peer '{}' has MTU {m}, below the {} that IPv6 inside the tunnel (HUB_CIDR6) needs; give it a larger one first ('hub sync' with \"mtu\")",
                    p.name,
                    c.mtu_min()
                )));
            }
        }
        Ok(())
    }

    /// The index names PEER as the holder of its port and address, and its record is written.
    pub fn save_peer(&mut self, name: &str) -> Result<()> {
        let peer = self.peers[name].clone();
        self.index().claim(&peer)?;
        self.state.save_peer(&peer)
    }

    /// The peer's record, keys and claims go.
    pub fn forget_peer(&mut self, name: &str) -> Result<()> {
        if let Some(peer) = self.peers.remove(name) {
            self.index().release(&peer)?;
        }
        self.state.forget_files(name)
    }

    /// Build (or converge) every listed recorded peer, one batch per tool.
    ///
    /// Two stages: first the keys (a lane of their own) beside every peer's namespace insides
    /// and NAT rules, which need no key; then the tunnels and their routes, which need both.
    pub fn apply_peers(&mut self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let c = self.conf.clone();
        if self.run.check {
            let mut spaces = vec![c.ns.clone(), self.layout().bridge_ns().to_string()];
            if !c.zones() {
                spaces.extend(names.iter().map(|n| Names::of(&c, n).ns));
            }
            self.foresee(&spaces)?;
        }
        let mut trunks = Vec::new();
        if !c.zones() {
            // the extra bridges the peers' ports go on, which every group's ports may need: a
            // batch of their own before the groups, or, for one peer, the first lines of its
            // group (a process fewer)
            let layout = self.layout();
            let mut joined = HashSet::new();
            trunks = names
                .iter()
                .flat_map(|n| layout.trunk_steps(&self.peers[n], &mut joined))
                .collect();
            if let [one] = names {
                trunks = trunks.into_iter().map(|s| s.in_lane(one.clone())).collect();
            } else {
                self.stage(std::mem::take(&mut trunks), &[Nsctl])?;
            }
        }
        // first what needs no client key: namespaces, addresses, NAT rules, and (in its lane,
        // after its key) a zones tunnel with its routes and rules; then what does
        let first_stage = |s: &Step| s.lane.is_some() || matches!(s.tool, Nsctl | Natctl);
        let remake = self.remakes(names)?;
        if self.run.check && c.zones() {
            // (a peer whose key is not made yet: its tunnel, made in the first stage, cannot be
            // asked)
            for n in names {
                if !crate::state::has_content(&self.state.key_path(n)) {
                    self.run.foresight.predicted.insert(n.clone());
                }
            }
        }
        let mut first = self.key_steps(names)?;
        first.extend(trunks);
        first.extend(
            self.peer_steps(names, &remake)
                .into_iter()
                .filter(first_stage),
        );
        let made = self.stage(first, &[Wgctl, Nsctl, Natctl, Routectl])?;
        self.take_keys(names, &made)?;
        let then: Vec<Step> = self
            .peer_steps(names, &remake)
            .into_iter()
            .filter(|s| !first_stage(s))
            .collect();
        self.stage(then, &[Wgctl, Routectl])?;
        // (`up` prunes every peer itself, with the center's stale sets: stale.rs)
        if self.run.repair {
            return Ok(());
        }
        let prune: Vec<String> = names
            .iter()
            .filter(|n| self.reaccess.contains(*n))
            .cloned()
            .collect();
        self.prune_rules(&prune, false)
    }

    /// Every step of the listed peers, in this mode (REMAKE: their tunnels go first).
    fn peer_steps(&self, names: &[String], remake: &HashSet<String>) -> Vec<Step> {
        let layout = self.layout();
        names
            .iter()
            .flat_map(|n| {
                let peer = &self.peers[n];
                if self.conf.zones() {
                    layout.zone_steps(peer, remake.contains(n))
                } else {
                    layout.peer_steps(peer, remake.contains(n))
                }
            })
            .collect()
    }

    /// `up`: the tunnels whose UDP socket is not in the center, their birthplace: born in a center
    /// namespace since deleted, they are made anew, to be born again in this one.
    fn remakes(&mut self, names: &[String]) -> Result<HashSet<String>> {
        let mut remake = HashSet::new();
        if self.run.repair && !names.is_empty() {
            // (every peer's: the center's whole list, once)
            let held = self.udp_ports()?;
            for n in names {
                if !held.contains(&self.peers[n].listen_port) {
                    remake.insert(n.clone());
                }
            }
        }
        Ok(remake)
    }

    /// The key steps of the listed peers (each in its lane): the hub side of each tunnel, the
    /// client's pair unless it brought its own, the preshared key to generate; a preshared key
    /// given as a file (or inline, by `sync`) is written here.
    fn key_steps(&mut self, names: &[String]) -> Result<Vec<Step>> {
        let mut steps = Vec::new();
        for n in names {
            let peer = &self.peers[n];
            let needs_psk =
                peer.settings.preshared_key && !crate::state::has_content(&self.state.psk_path(n));
            let from = self.psk_from.get(n).cloned().unwrap_or(Psk::Generate);
            steps.extend(
                self.layout()
                    .key_steps(peer, needs_psk && from == Psk::Generate)
                    .into_iter()
                    .map(|s| s.in_lane(crate::plan::lane(n))),
            );
            let (key, what) = match (needs_psk, from) {
                (true, Psk::File(file)) => {
                    let text = std::fs::read_to_string(&file)
                        .map_err(|e| failed(format!("cannot read {}: {e}", file.display())))?;
                    let key = key_line(&text).unwrap_or_default().to_string();
                    (key, format!("preshared key from {}", file.display()))
                }
                (true, Psk::Key(k)) => (k.0, "preshared key as given".to_string()),
                _ => continue,
            };
            if !self.run.check {
                write_atomic(&self.state.psk_path(n), &format!("{key}\n"))?;
            }
            self.run.changed_by(n, what);
        }
        Ok(steps)
    }

    /// The public keys the key steps printed (MADE) go into the records; a key file written by
    /// a killed run, its record not yet updated, is read. With --check, a peer whose keys are
    /// not made yet is predicted: its later steps cannot be asked.
    fn take_keys(&mut self, names: &[String], made: &[crate::steps::Done]) -> Result<()> {
        let mut keyed: HashSet<String> = HashSet::new();
        for d in made {
            let Some(public) = crate::steps::field(&d.json, "public_key") else {
                continue;
            };
            let (n, side) = d.owner.split_once(':').unwrap_or((&d.owner, ""));
            if let Some(p) = self.peers.get_mut(n) {
                match side {
                    "hub" => p.public_key = Some(public),
                    "client" => p.client_public_key = Some(public),
                    _ => continue,
                }
                keyed.insert(n.to_string());
            }
        }
        for n in names {
            let p = &self.peers[n];
            if self.run.check {
                let psk_missing =
                    p.settings.preshared_key && !crate::state::has_content(&self.state.psk_path(n));
                if p.public_key.is_none() || p.client_public_key.is_none() || psk_missing {
                    self.run.foresight.predicted.insert(n.clone());
                }
                continue;
            }
            if p.public_key.is_none() {
                let k = public_key_of(&self.state.key_path(n))?;
                self.peers.get_mut(n).expect("loaded").public_key = Some(k);
                keyed.insert(n.clone());
            }
            if self.peers[n].client_public_key.is_none() {
                let k = public_key_of(&self.state.client_key_path(n))?;
                self.peers.get_mut(n).expect("loaded").client_public_key = Some(k);
                keyed.insert(n.clone());
            }
        }
        let mut keyed: Vec<String> = keyed.into_iter().collect();
        keyed.sort();
        for n in keyed {
            self.save_peer(&n)?;
        }
        Ok(())
    }

    /// Delete every object of the listed (loaded) peers; keep their records. CENTER_GOES:
    /// `down` deletes the center next, with every rule, route and address of the zones.
    pub fn remove_objects(&mut self, names: &[String], center_goes: bool) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let c = self.conf.clone();
        if c.zones() {
            return self.remove_zone_objects(names, center_goes);
        }
        let layout = self.layout();
        let center_ok = c.ns.is_empty() || self.ns_exists(&c.ns);
        let bridge_ns = layout.bridge_ns();
        let bridge_ok = bridge_ns.is_empty() || self.ns_exists(bridge_ns);
        let steps: Vec<Step> = names
            .iter()
            .flat_map(|n| {
                layout.removal_steps(
                    &self.peers[n],
                    center_ok,
                    bridge_ok,
                    self.ns_exists(&Names::of(&c, n).ns),
                )
            })
            .collect();
        self.stage(steps, &[Wgctl, Nsctl])?;
        Ok(())
    }

    fn remove_zone_objects(&mut self, names: &[String], center_goes: bool) -> Result<()> {
        let c = self.conf.clone();
        let gone = !c.ns.is_empty() && !self.ns_exists(&c.ns);
        // (with the center's namespace gone, or about to go, only the tunnels' wireguard-go is
        // left to stop: every rule, route and address goes with the namespace. A wireguard-go
        // whose socket holds a deleted center lives on: it is stopped by its name, from here)
        let co = if gone { String::new() } else { ns_opt(&c.ns) };
        if center_goes || gone {
            let steps = names
                .iter()
                .map(|n| Step::new(Wgctl, n, format!("{co}iface del {}", Names::of(&c, n).wg)))
                .collect();
            self.stage(steps, &[Wgctl])?;
            return Ok(());
        }
        // (the peers' addresses are on the center's interface: gone, a stopped or broken hub,
        // they went with it)
        let cif = !self.center_links(&[c.center_if()], 0)?.is_empty();
        let layout = self.layout();
        // (a block's gate goes with the last of its peers: the index tells who holds its other
        // ports, whose records need not be loaded)
        let state = &self.state;
        let staying = |port: u16| {
            fwmark::block_ports(port).any(|p| {
                p != port
                    && Index::peek(state, Slot::Port(p))
                        .is_some_and(|owner| !names.contains(&owner))
            })
        };
        let steps: Vec<Step> = names
            .iter()
            .flat_map(|n| {
                let peer = &self.peers[n];
                let last = !staying(peer.listen_port);
                layout.zone_removal_steps(peer, cif, last)
            })
            .collect();
        self.stage(steps, &[Natctl, Routectl, Wgctl, Nsctl])?;
        Ok(())
    }

    /// The ids of the natctl rules that LINES (natctl add lines) stand for, by owner: natctl
    /// --check of a rule prints it, `{"changed":..,"rule":{"id":..}}`.
    pub fn rule_ids(&mut self, lines: Vec<Step>) -> Result<HashMap<String, Vec<String>>> {
        let mut ids: HashMap<String, Vec<String>> = HashMap::new();
        for d in self.run.read_checked(lines, &[Natctl])? {
            let v: serde_json::Value = serde_json::from_str(&d.json).unwrap_or_default();
            if let Some(id) = v["rule"]["id"].as_str() {
                ids.entry(d.owner.clone()).or_default().push(id.to_string());
            }
        }
        Ok(ids)
    }

    /// Delete every object of the listed peers, then their records.
    pub fn remove_peers(&mut self, names: &[String]) -> Result<()> {
        self.remove_objects(names, false)?;
        for n in names {
            self.forget_peer(n)?;
        }
        Ok(())
    }

    /// The hub builds a new peer only where nothing of that name exists: a namespace
    /// (HUB_MODE=netns) or a link in the center with the peer's name is someone else's (the hub
    /// never adopts, and so never deletes, what it did not create). Exit 1 for a namespace, 2
    /// for a link, before anything changes.
    pub fn refuse_foreign(&mut self, names: &[String], ahead: usize) -> Result<()> {
        let c = self.conf.clone();
        if !c.zones() {
            for n in names {
                let ns = Names::of(&c, n).ns;
                if self.ns_exists(&ns) {
                    return Err(failed(format!(
                        "namespace {ns} exists, and the hub did not create it (peer '{n}' has no record): the hub does not adopt it; delete it or choose another peer name"
                    )));
                }
            }
        }
        if !c.ns.is_empty() && !self.ns_exists(&c.ns) {
            return Ok(());
        }
        let wgs: Vec<String> = names.iter().map(|n| Names::of(&c, n).wg).collect();
        let there = self.center_links(&wgs, ahead)?;
        if let Some((n, wg)) = names.iter().zip(&wgs).find(|(_, wg)| there.contains(*wg)) {
            return Err(invalid(format!(
                "a link named {wg} exists in {}, and the hub did not create it (peer '{n}' has no record): delete it or choose another peer name",
                c.where_center()
            )));
        }
        Ok(())
    }

    /// Status reads and their outputs, by owner.
    pub fn observe(&mut self) -> Result<crate::health::Observed> {
        let c = self.conf.clone();
        let mut netns = HashSet::new();
        let mut spaces: Vec<String> = Vec::new();
        if !c.ns.is_empty() {
            spaces.push(c.ns.clone());
        }
        if let Some(sw) = self.layout().switch {
            spaces.push(sw.to_string());
        }
        if !c.zones() {
            spaces.extend(self.peers.keys().map(|n| Names::of(&c, n).ns));
        }
        for s in spaces {
            if self.ns_exists(&s) {
                netns.insert(s);
            }
        }
        let center_ok = self.center.is_some() && (c.ns.is_empty() || netns.contains(&c.ns));
        let peers: Vec<&Peer> = self.peers.values().collect();
        let reads = self.layout().reads(&peers, center_ok, &netns);
        let done = self.run.read(reads, &[Nsctl, Wgctl, Routectl, Natctl])?;
        let shows = done.into_iter().map(|d| (d.owner, d.json)).collect();
        let udp_ports = if center_ok {
            self.udp_ports()?
        } else {
            HashSet::new()
        };
        Ok(crate::health::Observed {
            shows,
            netns,
            udp_ports,
        })
    }
}

/// The names in a `link list` (nsctl's `{"links":[{"name":..}]}`).
pub fn link_names(json: &str) -> Vec<String> {
    let v: serde_json::Value = serde_json::from_str(json).unwrap_or_default();
    v["links"].as_array().map_or_else(Vec::new, |l| {
        l.iter()
            .filter_map(|x| x["name"].as_str().map(str::to_string))
            .collect()
    })
}

/// The value of a sysctl read (nsctl's `{"sysctl":{"value":..}}`).
pub fn sysctl_value(json: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v["sysctl"]["value"].as_str().map(str::to_string)
}
