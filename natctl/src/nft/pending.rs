//! A batch's rule adds, and its rule deletions, committed together: the lines of `natctl -b`
//! that add rules in one namespace, one after the other, are planned one by one (each checked
//! against the table and against the adds before it, each with its output) and committed as one
//! transaction when the batch runner settles them (`common::Command::settle`, after at most 32
//! lines, or before a line of another kind or namespace); so are the lines that delete rules.
//!
//! nftables validates the whole table at every commit that adds a rule, so in a hub center of
//! 1,000 tunnels each commit costs ~5 ms of the kernel's time; a tunnel's dozen rules in one
//! commit cost that once. A commit that deletes rules waits for an RCU grace period before it
//! frees them (a few ms, however small the table): a tunnel's dozen deletions in one commit wait
//! once. The namespace's lock is held from the first line planned to the commit, so no other
//! natctl acts in between.
//!
//! A batch's element adds and deletions likewise: nftables does not check the table for them,
//! but a commit that deletes one waits for an RCU grace period as a rule's does (~4 ms: a
//! peer's seven elements deleted one by one took 29 ms). Each line is planned against the
//! kernel and the elements pending before it.
//!
//! If the transaction fails, nothing of it took effect: the lines are then committed one by
//! one, as without deferral, so the lines before the first that fails take effect and that
//! line's error is the batch's, exactly as if each had been committed alone.

use std::cell::RefCell;

use common::Error;
use nftnl::nftnl_sys::libc;

use super::cache::{self, Change};
use super::lock::NsLock;
use super::set::Companion;
use super::{dispatch, Deletion, Planned, Structure};
use crate::rule::Rule;
use crate::set::{Key, SetDef, SetName, Value};

/// One add, planned.
pub struct Add {
    pub rule: Rule,
    pub id: String,
    pub structure: Structure,
    pub replacing: Vec<(String, u64)>,
    /// What the add is, for its error: "adding rule ID (...) to table inet natctl in NS".
    pub what: String,
}

/// One deletion, planned: the nftables rules of an id, and the key chains they leave empty.
pub struct Del {
    pub id: String,
    pub deletion: Deletion,
    /// What it is, for its error: "deleting rule ID from table inet natctl in NS".
    pub what: String,
}

/// One element's change, planned: the element of set `def` as it was (deleted) and as it is to
/// be (added), each a key and its value.
pub struct ElementOp {
    pub def: SetDef,
    /// The sets natctl keeps beside `def` that are not there (a map an older natctl made, whose
    /// elements may still be deleted): passed by.
    pub lacking: Vec<Companion>,
    pub old: Option<(Key, Option<Value>)>,
    pub new: Option<(Key, Option<Value>)>,
    /// What it is, for its error: "adding element c07-wg to set tunnels in NS".
    pub what: String,
}

/// A line's change, planned.
pub enum Op {
    Add(Add),
    Del(Del),
    Element(ElementOp),
}

impl From<Add> for Op {
    fn from(add: Add) -> Op {
        Op::Add(add)
    }
}

impl From<Del> for Op {
    fn from(del: Del) -> Op {
        Op::Del(del)
    }
}

impl From<ElementOp> for Op {
    fn from(op: ElementOp) -> Op {
        Op::Element(op)
    }
}

/// What the element changes pending in the namespace of LOCK make of the element KEY of SET:
/// None, nothing; Some(None), deleted; Some(Some(value)), added with that value.
pub fn element(lock: &NsLock, set: &SetName, key: &Key) -> Option<Option<Option<Value>>> {
    in_namespace(lock, |ops| {
        ops.iter().rev().filter_map(Op::element).find_map(|e| {
            let of = |side: &Option<(Key, Option<Value>)>| {
                side.as_ref()
                    .filter(|(k, _)| &e.def.name == set && k == key)
                    .map(|(_, v)| *v)
            };
            of(&e.new).map(Some).or_else(|| of(&e.old).map(|_| None))
        })
    })
    .flatten()
}

/// What the element changes pending in the namespace of LOCK make of who holds MARK in SET, a
/// map of connection marks: None, nothing; Some(None), no key; Some(Some(key)), KEY.
pub fn mark_holder(lock: &NsLock, set: &SetName, mark: u32) -> Option<Option<Key>> {
    in_namespace(lock, |ops| {
        ops.iter().rev().filter_map(Op::element).find_map(|e| {
            let holds = |side: &Option<(Key, Option<Value>)>| match side {
                Some((k, Some(Value::Mark(m)))) if &e.def.name == set && *m == mark => {
                    Some(k.clone())
                }
                _ => None,
            };
            holds(&e.new)
                .map(Some)
                .or_else(|| holds(&e.old).map(|_| None))
        })
    })
    .flatten()
}

struct Pending {
    /// The namespace's lock, held until the commit.
    lock: NsLock,
    /// The ruleset generation the first line was planned at.
    generation: u32,
    ops: Vec<Op>,
}

thread_local! {
    static PENDING: RefCell<Option<Pending>> = const { RefCell::new(None) };
}

/// Whether adds are pending in the namespace of LOCK (so the table's structure comes with the
/// first of them: the next add's is complete), and whether one of them is of ID.
pub fn pending(lock: &NsLock, id: &str) -> (bool, bool) {
    in_namespace(lock, |ops| {
        let mut adds = ops.iter().filter_map(Op::add);
        let any = adds.clone().next().is_some();
        (any, adds.any(|a| a.id == id))
    })
    .unwrap_or((false, false))
}

/// The deletions pending in the namespace of LOCK: the nftables rules (chain, handle) they
/// delete, and whether one of them is of ID (which is then as good as gone).
pub fn deleting(lock: &NsLock, id: &str) -> (Vec<(String, u64)>, bool) {
    in_namespace(lock, |ops| {
        let mut dels = ops.iter().filter_map(Op::del);
        let rules = dels
            .clone()
            .flat_map(|d| d.deletion.rules.iter().cloned())
            .collect();
        (rules, dels.any(|d| d.id == id))
    })
    .unwrap_or_default()
}

fn in_namespace<T>(lock: &NsLock, f: impl FnOnce(&[Op]) -> T) -> Option<T> {
    PENDING.with(|p| match &*p.borrow() {
        Some(p) if p.lock.ns == lock.ns => Some(f(&p.ops)),
        _ => None,
    })
}

/// Whether a line of LOCK's namespace may be left pending: nothing is pending, or only lines
/// of that namespace (else the caller commits it alone).
pub fn may_defer(lock: &NsLock) -> bool {
    PENDING.with(|p| p.borrow().as_ref().is_none_or(|p| p.lock.ns == lock.ns))
}

/// Leaves OP pending, planned at GENERATION (in a namespace [`may_defer`] accepted).
pub fn defer(lock: &NsLock, generation: u32, op: impl Into<Op>) {
    PENDING.with(|p| match &mut *p.borrow_mut() {
        Some(p) => {
            debug_assert!(
                p.lock.ns == lock.ns,
                "deferred beside another namespace's lines"
            );
            p.ops.push(op.into());
        }
        none => {
            *none = Some(Pending {
                lock: lock.clone(),
                generation,
                ops: vec![op.into()],
            });
        }
    })
}

/// Commits the pending lines (in the namespace they were planned in, which the calling thread
/// must be in), in one transaction when they are all adds or all deletions (a batch groups
/// only lines of one kind). On failure: how many took effect, and the error of the first that
/// did not.
pub fn settle() -> Result<(), (usize, Error)> {
    let Some(p) = PENDING.with(|p| p.borrow_mut().take()) else {
        return Ok(());
    };
    let chains: Vec<Vec<String>> = p
        .ops
        .iter()
        .map(|op| {
            op.add()
                .map_or_else(Vec::new, |a| dispatch::chains_of(&a.rule))
        })
        .collect();
    let adds: Vec<Planned> = p.ops.iter().filter_map(Op::add).map(Add::planned).collect();
    let dels: Vec<&Deletion> = p
        .ops
        .iter()
        .filter_map(Op::del)
        .map(|d| &d.deletion)
        .collect();
    let elements: Vec<&ElementOp> = p.ops.iter().filter_map(Op::element).collect();
    let together = if elements.len() == p.ops.len() {
        super::change_elements(&elements)
    } else if !elements.is_empty() {
        return one_by_one(&p, &chains, None);
    } else if dels.is_empty() {
        super::add_rules(&adds)
    } else if adds.is_empty() {
        super::delete_many(&dels)
    } else {
        return one_by_one(&p, &chains, None);
    };
    match together {
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
            Ok(g) if g == p.generation => one_by_one(&p, &chains, Some(e)),
            _ => Err((0, Error::caused(p.ops[0].what(), e))),
        },
        Err(e) => one_by_one(&p, &chains, Some(e)),
    }
}

/// Carries what the cache knows forward by P's lines, committed (CHAINS: each add's chains).
fn committed(p: &Pending, chains: &[Vec<String>]) {
    let changes: Vec<Change> = (p.ops.iter().zip(chains))
        .filter_map(|(op, c)| op.change(c))
        .collect();
    cache::committed(&p.lock, p.generation, &changes);
}

/// Whether E says the kernel's answers were not all read (lost for want of buffer space, or
/// late), rather than that it refused the transaction.
fn unanswered(e: &std::io::Error) -> bool {
    e.raw_os_error() == Some(libc::ENOBUFS) || e.kind() == std::io::ErrorKind::TimedOut
}

/// After the transaction of P's lines failed with E (none took effect), or when they are of
/// both kinds: each alone, in order (CHAINS: each add's chains), until one fails.
fn one_by_one(
    p: &Pending,
    chains: &[Vec<String>],
    e: Option<std::io::Error>,
) -> Result<(), (usize, Error)> {
    if let Some(e) = e {
        common::vlog!(
            1,
            "the {} changes in one transaction failed ({e}); making them one by one",
            p.ops.len()
        );
    }
    for (i, (op, chains)) in p.ops.iter().zip(chains).enumerate() {
        let failed = |e| (i, Error::caused(op.what(), e));
        let before = cache::generation().map_err(failed)?;
        match op {
            Op::Add(add) => super::add_rules(&[add.planned()]),
            Op::Del(del) => super::delete_rules(&del.deletion),
            Op::Element(e) => super::change_elements(&[e]),
        }
        .map_err(failed)?;
        let change: Vec<Change> = op.change(chains).into_iter().collect();
        cache::committed(&p.lock, before, &change);
    }
    Ok(())
}

impl Op {
    fn add(&self) -> Option<&Add> {
        match self {
            Op::Add(a) => Some(a),
            _ => None,
        }
    }

    fn del(&self) -> Option<&Del> {
        match self {
            Op::Del(d) => Some(d),
            _ => None,
        }
    }

    fn element(&self) -> Option<&ElementOp> {
        match self {
            Op::Element(e) => Some(e),
            _ => None,
        }
    }

    fn what(&self) -> &str {
        match self {
            Op::Add(a) => &a.what,
            Op::Del(d) => &d.what,
            Op::Element(e) => &e.what,
        }
    }

    /// What it changes of the rules, for the cache (CHAINS: an add's chains): an element's
    /// change, nothing.
    fn change<'a>(&'a self, chains: &'a [String]) -> Option<Change<'a>> {
        match self {
            Op::Add(a) => Some(Change::Added(&a.id, chains)),
            Op::Del(d) => Some(Change::Deleted(&d.id)),
            Op::Element(_) => None,
        }
    }
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
