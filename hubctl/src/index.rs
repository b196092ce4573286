//! Claims and allocation: index/port/N and index/address/A name the peer holding port N and
//! address A; index/port.next and index/address.next say where the search for a free one
//! starts. A new peer's port and address are claimed, then its keys made, then its record
//! written, then its objects built; a claim whose owner's record says otherwise (a killed
//! `peer add`) is free again. A record's claims are never released while it lives.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs;
use std::net::Ipv4Addr;
use std::path::PathBuf;

use crate::error::{failed, Result};
use crate::net::Cidr4;
use crate::record::Peer;
use crate::state::{first_line, remove, State};

/// What a peer holds, one of each kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Slot {
    Port(u16),
    Address(Ipv4Addr),
}

impl Slot {
    pub fn kind(self) -> &'static str {
        match self {
            Slot::Port(_) => "port",
            Slot::Address(_) => "address",
        }
    }

    fn value(self) -> String {
        match self {
            Slot::Port(p) => p.to_string(),
            Slot::Address(a) => a.to_string(),
        }
    }

    /// Whether PEER's record holds this slot.
    fn held_by(self, peer: &Peer) -> bool {
        match self {
            Slot::Port(p) => peer.listen_port == p,
            Slot::Address(a) => peer.address == a,
        }
    }
}

/// What this run did to a slot, over what the files say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Held {
    /// NAME holds it for the rest of this run; its claim file is not written (yet).
    Reserved(String),
    /// NAME holds it, and its claim file says so.
    Claimed(String),
    /// Free again.
    Released,
}

impl Held {
    fn holder(&self) -> Option<&str> {
        match self {
            Held::Reserved(n) | Held::Claimed(n) => Some(n),
            Held::Released => None,
        }
    }
}

/// This run's claims and releases.
pub type RunClaims = HashMap<Slot, Held>;

pub struct Index<'a> {
    state: &'a State,
    run: &'a mut RunClaims,
}

impl<'a> Index<'a> {
    pub fn new(state: &'a State, run: &'a mut RunClaims) -> Index<'a> {
        Index { state, run }
    }

    /// The peer holding SLOT by the files alone (its record agreeing).
    pub fn peek(state: &State, slot: Slot) -> Option<String> {
        let owner = first_line(&state.index_dir().join(slot.kind()).join(slot.value()))?;
        let peer = state.load_peer(&owner).ok()??;
        slot.held_by(&peer).then_some(owner)
    }

    fn path(&self, slot: Slot) -> PathBuf {
        self.state.index_dir().join(slot.kind()).join(slot.value())
    }

    fn hint_path(&self, kind: &str) -> PathBuf {
        self.state.index_dir().join(format!("{kind}.next"))
    }

    fn write(&self, path: PathBuf, text: String) -> Result<()> {
        if self.state.check {
            return Ok(());
        }
        fs::write(&path, text).map_err(|e| failed(format!("cannot write {}: {e}", path.display())))
    }

    /// The index names PEER as the holder of its port and address (a claim this run already
    /// wrote is not written again).
    pub fn claim(&mut self, peer: &Peer) -> Result<()> {
        for slot in [Slot::Port(peer.listen_port), Slot::Address(peer.address)] {
            let claimed = Held::Claimed(peer.name.clone());
            if self.run.get(&slot) == Some(&claimed) {
                continue;
            }
            self.write(self.path(slot), format!("{}\n", peer.name))?;
            self.run.insert(slot, claimed);
        }
        Ok(())
    }

    /// Claimed for the rest of this run only (a plan: nothing written yet).
    pub fn reserve(&mut self, slot: Slot, name: &str) {
        self.run.insert(slot, Held::Reserved(name.to_string()));
    }

    /// The index forgets that NAME holds these slots, unless another peer claimed them since.
    pub fn unclaim(&mut self, name: &str, slots: &[Slot]) -> Result<()> {
        for &slot in slots {
            if let Some(Held::Claimed(n)) = self.run.get(&slot) {
                if n == name {
                    self.run.insert(slot, Held::Reserved(name.to_string()));
                }
            }
        }
        if self.state.check {
            return Ok(());
        }
        for &slot in slots {
            let path = self.path(slot);
            if first_line(&path).as_deref() == Some(name) {
                remove(&path)?;
            }
        }
        Ok(())
    }

    /// PEER's port and address are free again; the search for a free one restarts at what it
    /// held, if that is lower.
    pub fn release(&mut self, peer: &Peer) -> Result<()> {
        let slots = [Slot::Port(peer.listen_port), Slot::Address(peer.address)];
        for slot in slots {
            self.run.insert(slot, Held::Released);
        }
        if self.state.check {
            return Ok(());
        }
        self.unclaim(&peer.name, &slots)?;
        let port = u32::from(peer.listen_port);
        if self.hint("port", 0) > port {
            self.write(self.hint_path("port"), format!("{port}\n"))?;
        }
        let addr = u32::from(peer.address);
        if self.hint("address", 0) > addr {
            self.write(self.hint_path("address"), format!("{addr}\n"))?;
        }
        Ok(())
    }

    /// The peer holding SLOT: none if this run freed it, or if the claim is stale (its owner's
    /// record says otherwise: a `peer add` killed between the two).
    pub fn owner(&self, slot: Slot) -> Option<String> {
        match self.run.get(&slot) {
            Some(held) => held.holder().map(str::to_string),
            None => Index::peek(self.state, slot),
        }
    }

    fn hint(&self, kind: &str, default: u32) -> u32 {
        first_line(&self.hint_path(kind))
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    }

    /// The first free slot from the hint on (then from FIRST, if none is free above it); SKIP
    /// is never handed out, nor what TAKEN says is someone else's. One look per taken slot
    /// passed, which the hint keeps to about one.
    fn allocate(
        &mut self,
        kind: &str,
        first: u32,
        last: u32,
        slot_of: impl Fn(u32) -> Slot,
        free: impl Fn(Slot) -> bool,
    ) -> Result<Option<Slot>> {
        let found = self
            .unclaimed(kind, first, last, &slot_of)
            .find(|i| free(slot_of(*i)));
        let Some(i) = found else { return Ok(None) };
        self.write(self.hint_path(kind), format!("{}\n", u64::from(i) + 1))?;
        Ok(Some(slot_of(i)))
    }

    /// The slots FIRST..=LAST that no peer claims, in the order `allocate` tries them: from the
    /// hint on, then from FIRST.
    fn unclaimed<'s>(
        &'s self,
        kind: &str,
        first: u32,
        last: u32,
        slot_of: impl Fn(u32) -> Slot + 's,
    ) -> impl Iterator<Item = u32> + 's {
        let mut start = self.hint(kind, first);
        if !(first..=last).contains(&start) {
            start = first;
        }
        [start, first]
            .into_iter()
            .flat_map(move |from| from..=last)
            .filter(move |i| self.owner(slot_of(*i)).is_none())
    }

    /// The first COUNT ports `allocate_port` from BASE would try, those in HELD left out: what
    /// to ask the center about.
    pub fn port_candidates(&self, base: u16, count: usize, held: &HashSet<u16>) -> Vec<u16> {
        let mut seen = HashSet::new();
        self.unclaimed("port", u32::from(base), 65535, |i| Slot::Port(i as u16))
            .map(|i| i as u16)
            .filter(|p| !held.contains(p) && seen.insert(*p))
            .take(count)
            .collect()
    }

    /// A free port from BASE on that no socket in the center holds (IN_USE).
    pub fn allocate_port(
        &mut self,
        base: u16,
        in_use: impl Fn(u16) -> bool,
    ) -> Result<Option<u16>> {
        let slot = self.allocate(
            "port",
            u32::from(base),
            65535,
            |i| Slot::Port(i as u16),
            |s| match s {
                Slot::Port(p) => !in_use(p),
                Slot::Address(_) => true,
            },
        )?;
        Ok(slot.map(|s| match s {
            Slot::Port(p) => p,
            Slot::Address(_) => unreachable!("a port slot"),
        }))
    }

    /// A free host of CIDR that is not the center's own address.
    pub fn allocate_address(&mut self, cidr: &Cidr4, center: Ipv4Addr) -> Result<Option<Ipv4Addr>> {
        let skip = u32::from(center);
        let slot = self.allocate(
            "address",
            cidr.first,
            cidr.last,
            |i| Slot::Address(Ipv4Addr::from(i)),
            |s| s != Slot::Address(Ipv4Addr::from(skip)),
        )?;
        Ok(slot.map(|s| match s {
            Slot::Address(a) => a,
            Slot::Port(_) => unreachable!("an address slot"),
        }))
    }

    /// Every record's claims checked (by `up`, which reads every record anyway) and written
    /// only where missing or wrong: a repair that needs no new state writes none (it must work
    /// on a full disk).
    pub fn reindex(state: &State, peers: &BTreeMap<String, Peer>) -> Result<()> {
        if state.check {
            return Ok(());
        }
        state.prepare()?;
        for p in peers.values() {
            for slot in [Slot::Port(p.listen_port), Slot::Address(p.address)] {
                let path = state.index_dir().join(slot.kind()).join(slot.value());
                if first_line(&path).as_deref() != Some(p.name.as_str()) {
                    fs::write(&path, format!("{}\n", p.name))
                        .map_err(|e| failed(format!("cannot write {}: {e}", path.display())))?;
                }
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scratch(tag: &str) -> State {
        let dir = std::env::temp_dir().join(format!("hubctl-index-{tag}-{}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        let s = State::new(&dir, false);
        s.prepare().unwrap();
        s
    }

    fn add(state: &State, run: &mut RunClaims, name: &str, cidr: &Cidr4) -> Peer {
        let mut index = Index::new(state, run);
        let port = index.allocate_port(50000, |_| false).unwrap().unwrap();
        let addr = index
            .allocate_address(cidr, Ipv4Addr::new(100, 64, 0, 10))
            .unwrap()
            .unwrap();
        let p = Peer::new(name, port, addr);
        index.claim(&p).unwrap();
        state.save_peer(&p).unwrap();
        p
    }

    #[test]
    fn allocation_fills_gaps_and_skips_the_center_and_foreign_sockets() {
        let state = scratch("gaps");
        let cidr = Cidr4::parse("100.64.0.0/28").unwrap();
        let mut run = RunClaims::new();
        let peers: Vec<Peer> = (0..10)
            .map(|i| add(&state, &mut run, &format!("p{i}"), &cidr))
            .collect();
        let addrs: Vec<String> = peers.iter().map(|p| p.address.to_string()).collect();
        assert!(
            !addrs.contains(&"100.64.0.10".to_string()),
            "the center's address is never handed out"
        );
        assert_eq!(peers[9].address, Ipv4Addr::new(100, 64, 0, 11));
        // a gap: p3 goes; the next peer takes its port and address
        let mut run = RunClaims::new();
        Index::new(&state, &mut run).release(&peers[3]).unwrap();
        state.forget_files("p3").unwrap();
        let again = add(&state, &mut run, "n", &cidr);
        assert_eq!(
            (again.listen_port, again.address),
            (peers[3].listen_port, peers[3].address)
        );
        // a socket of someone else's holds the next port: skipped
        let mut run = RunClaims::new();
        let port = Index::new(&state, &mut run)
            .allocate_port(50000, |p| p == 50010)
            .unwrap();
        assert_eq!(port, Some(50011));
        // full: the /28 has 14 hosts, one the center's
        let mut run = RunClaims::new();
        for i in 0..3 {
            add(&state, &mut run, &format!("f{i}"), &cidr);
        }
        assert_eq!(
            Index::new(&state, &mut run)
                .allocate_address(&cidr, Ipv4Addr::new(100, 64, 0, 10))
                .unwrap(),
            None
        );
        fs::remove_dir_all(&state.dir).unwrap();
    }

    #[test]
    fn the_center_is_asked_about_the_ports_allocation_would_try() {
        let state = scratch("candidates");
        let cidr = Cidr4::parse("100.64.0.0/24").unwrap();
        let mut run = RunClaims::new();
        let peers: Vec<Peer> = (0..6)
            .map(|i| add(&state, &mut run, &format!("p{i}"), &cidr))
            .collect();
        // p1 goes: its port is the first to try, then those after the last claimed
        let mut run = RunClaims::new();
        Index::new(&state, &mut run).release(&peers[1]).unwrap();
        state.forget_files("p1").unwrap();
        let index = Index::new(&state, &mut run);
        let none = HashSet::new();
        assert_eq!(
            index.port_candidates(50000, 3, &none),
            [50001, 50006, 50007]
        );
        // what the center said it holds is not asked again
        let held = HashSet::from([50001, 50006]);
        assert_eq!(
            index.port_candidates(50000, 3, &held),
            [50007, 50008, 50009]
        );
        // and allocation takes the first candidate not held
        let mut index = Index::new(&state, &mut run);
        assert_eq!(
            index.allocate_port(50000, |p| held.contains(&p)).unwrap(),
            Some(50007)
        );
        fs::remove_dir_all(&state.dir).unwrap();
    }

    #[test]
    fn a_claim_left_by_a_crash_is_free_again() {
        let state = scratch("crash");
        let cidr = Cidr4::parse("100.64.0.0/24").unwrap();
        let mut run = RunClaims::new();
        // claimed, then killed before the record was written
        Index::new(&state, &mut run)
            .claim(&Peer::new("ghost", 50000, Ipv4Addr::new(100, 64, 0, 1)))
            .unwrap();
        assert_eq!(
            Index::peek(&state, Slot::Port(50000)),
            None,
            "no record: a stale claim"
        );
        // a record that moved on: its old claim is stale too
        let mut p = Peer::new("moved", 50001, Ipv4Addr::new(100, 64, 0, 2));
        Index::new(&state, &mut run).claim(&p).unwrap();
        p.listen_port = 50005;
        state.save_peer(&p).unwrap();
        assert_eq!(Index::peek(&state, Slot::Port(50001)), None);
        assert_eq!(
            Index::peek(&state, Slot::Address(Ipv4Addr::new(100, 64, 0, 2))).as_deref(),
            Some("moved")
        );
        let mut fresh = RunClaims::new();
        assert_eq!(
            Index::new(&state, &mut fresh)
                .allocate_port(50000, |_| false)
                .unwrap(),
            Some(50000)
        );
        let _ = cidr;
        fs::remove_dir_all(&state.dir).unwrap();
    }

    #[test]
    fn a_claim_is_written_once_a_run_and_again_after_an_unclaim() {
        let state = scratch("once");
        let mut run = RunClaims::new();
        let p = Peer::new("p", 50000, Ipv4Addr::new(100, 64, 0, 1));
        let port_file = state.index_dir().join("port/50000");
        let mut index = Index::new(&state, &mut run);
        index.reserve(Slot::Port(50000), "p");
        assert!(!port_file.exists(), "a reservation writes nothing");
        index.claim(&p).unwrap();
        assert_eq!(first_line(&port_file).as_deref(), Some("p"));
        // (a mark only a write would replace)
        fs::write(&port_file, "unwritten\n").unwrap();
        index.claim(&p).unwrap();
        assert_eq!(
            first_line(&port_file).as_deref(),
            Some("unwritten"),
            "the second claim of the run wrote the file again"
        );
        fs::write(&port_file, "p\n").unwrap();
        // (sync: a slot the record no longer holds goes; claimed again, it is written again)
        index.unclaim("p", &[Slot::Port(50000)]).unwrap();
        assert!(!port_file.exists());
        index.claim(&p).unwrap();
        assert_eq!(first_line(&port_file).as_deref(), Some("p"));
        fs::remove_dir_all(&state.dir).unwrap();
    }
}
