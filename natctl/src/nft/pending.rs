//! A batch's rule adds, committed together: the lines of `natctl -b` that add rules in one
//! namespace, one after the other, are planned one by one (each checked against the table and
//! against the adds before it, each with its output) and committed as one transaction when the
//! batch runner settles them (`common::Command::settle`, after at most 32 lines, or before a
//! line of another kind or namespace).
//!
//! nftables validates the whole table at every commit that adds a rule, so in a hub center of
//! 1,000 tunnels each commit costs ~5 ms of the kernel's time; a tunnel's dozen rules in one
//! commit cost that once. The namespace's lock is held from the first add planned to the
//! commit, so no other natctl acts in between.
//!
//! If the transaction fails, nothing of it took effect: the adds are then made one by one, as
//! without deferral, so the lines before the first that fails take effect and that line's error
//! is the batch's, exactly as if each had been committed alone.

use std::cell::RefCell;

use common::Error;
use nftnl::nftnl_sys::libc;

use super::cache::{self, Change};
use super::lock::NsLock;
use super::{dispatch, Planned, Structure};
use crate::rule::Rule;

/// One add, planned.
pub struct Add {
    pub rule: Rule,
    pub id: String,
    pub structure: Structure,
    pub replacing: Vec<(String, u64)>,
    /// What the add is, for its error: "adding rule ID (...) to table inet natctl in NS".
    pub what: String,
}

struct Pending {
    /// The namespace's lock, held until the commit.
    lock: NsLock,
    /// The ruleset generation the first add was planned at.
    generation: u32,
    adds: Vec<Add>,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// Whether adds are pending in the namespace of LOCK (so the table's structure comes with the
/// first of them: the next add's is complete), and whether one of them is of ID.
pub fn pending(lock: &NsLock, id: &str) -> (bool, bool) {
    PENDING.with(|p| match &*p.borrow() {
        Some(p) if p.lock.ns == lock.ns => (true, p.adds.iter().any(|a| a.id == id)),
        _ => (false, false),
    })
}

/// Leaves ADD pending, planned at GENERATION, if nothing is pending in another namespace;
/// gives it back otherwise (the caller commits it alone).
pub fn defer(lock: &NsLock, generation: u32, add: Add) -> Option<Add> {
    PENDING.with(|p| {
        let mut p = p.borrow_mut();
        match &mut *p {
            None => {
                *p = Some(Pending {
                    lock: lock.clone(),
                    generation,
                    adds: vec![add],
                });
                None
            }
            Some(p) if p.lock.ns == lock.ns => {
                p.adds.push(add);
                None
            }
            Some(_) => Some(add),
        }
    })
}

/// Commits the pending adds (in the namespace they were planned in, which the calling thread
/// must be in). On failure: how many took effect, and the error of the first that did not.
pub fn settle() -> Result<(), (usize, Error)> {
    let Some(p) = PENDING.with(|p| p.borrow_mut().take()) else {
        return Ok(());
    };
    let chains: Vec<Vec<String>> = p
        .adds
        .iter()
        .map(|a| dispatch::chains_of(&a.rule))
        .collect();
    let planned: Vec<Planned> = p.adds.iter().map(Add::planned).collect();
    match super::add_rules(&planned) {
        Ok(()) => {
            committed(&p, &chains);
            Ok(())
        }
        // (the answers were lost, not necessarily the commit: nf_tables moves the generation
        // only when it commits, and the lock keeps other natctls out)
        Err(e) if unanswered(&e) => match cache::generation() {
            Ok(g) if g == p.generation.wrapping_add(1) => {
                committed(&p, &chains);
                Ok(())
            }
            Ok(g) if g == p.generation => one_by_one(&p, &chains, e),
            _ => Err((0, Error::caused(&p.adds[0].what, e))),
        },
        Err(e) => one_by_one(&p, &chains, e),
    }
}

/// Carries what the cache knows forward by P's adds, committed (CHAINS: each one's chains).
fn committed(p: &Pending, chains: &[Vec<String>]) {
    let changes: Vec<Change> = (p.adds.iter().zip(chains))
        .map(|(a, c)| Change::Added(&a.id, c))
        .collect();
    cache::committed(&p.lock, p.generation, &changes);
}

/// Whether E says the kernel's answers were not all read (lost for want of buffer space, or
/// late), rather than that it refused the transaction.
fn unanswered(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::TimedOut
}

/// After the transaction of P's adds failed with E (none took effect): each add alone, in
/// order (CHAINS: each one's chains), until one fails.
fn one_by_one(
    p: &Pending,
    chains: &[Vec<String>],
    e: std::io::Error,
) -> Result<(), (usize, Error)> {
    common::vlog!(
        1,
        "the {} adds in one transaction failed ({e}); adding them one by one",
        p.adds.len()
    );
    for (i, (add, chains)) in p.adds.iter().zip(chains).enumerate() {
        let failed = |e| (i, Error::caused(&add.what, e));
        let before = cache::generation().map_err(failed)?;
        super::add_rules(&[add.planned()]).map_err(failed)?;
        cache::committed(&p.lock, before, &[Change::Added(&add.id, chains)]);
    }
    Ok(())
}

impl Add {
    fn planned(&self) -> Planned<'_> {
        Planned {
            rule: &self.rule,
            structure: &self.structure,
            replacing: &self.replacing,
        }
    }
}
