//! Which rule ids natctl's table holds intact, and which it holds otherwise (tampered with or
//! incomplete: `audit`), and, once dumped, its rules with their handles, remembered across the
//! commands of one process.
//!
//! Batch mode (`natctl -b`) runs thousands of commands in one process; dumping the whole table
//! before each add would make that quadratic. nf_tables numbers every committed transaction
//! (the ruleset generation, `NFT_MSG_GETGEN`), so a remembered id set stays valid exactly as
//! long as the generation has not moved. After our own commit, the generation must have moved
//! by exactly one for the set to be carried forward; anything else (another process, `nft`)
//! forces a fresh dump. Callers hold the namespace lock, so natctls cannot interleave.
//!
//! The same set is kept on disk between processes (`store`), for the big tables: a natctl that
//! finds it there for the current generation needs no dump either.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;

use nftnl::nftnl_sys::{self as sys, libc};

use super::batch;
use super::list::{self, KernelRule};
use super::lock::NsLock;
use super::store;

struct Known {
    generation: u32,
    /// The ids whose nftables rules are exactly what the id stands for (`audit`).
    ids: HashSet<String>,
    /// The ids the table holds otherwise: some part missing, changed or repeated.
    stale: HashSet<String>,
    /// The table, all its base chains and their dispatch maps and rules exist (we committed them
    /// at this generation, or a dump showed them), so the next add can skip re-adding them:
    /// updating an existing base chain costs the kernel far more than adding a rule.
    complete: bool,
    /// The rules as this process dumped them at `generation`, with their handles (what `del`
    /// needs); None when the ids came from the store, or after an add (its handle is unknown).
    rules: Option<Vec<KernelRule>>,
}

/// A commit of ours, to carry what is known forward by.
pub enum Change<'a> {
    /// The rule of this id was added (replacing whatever carried the id before).
    Added(&'a str),
    /// The rules of this id were deleted.
    Deleted(&'a str),
}

/// How an id is held in natctl's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Every part, exactly as the id stands for.
    Intact,
    /// Some nftables rules carry the id, but not exactly its parts (tampered or incomplete).
    Stale,
    Absent,
}

/// The ids of natctl's table, as [`with_ids`] shows them.
pub struct Ids<'a> {
    intact: &'a HashSet<String>,
    stale: &'a HashSet<String>,
}

impl Ids<'_> {
    pub fn presence(&self, id: &str) -> Presence {
        if self.intact.contains(id) {
            Presence::Intact
        } else if self.stale.contains(id) {
            Presence::Stale
        } else {
            Presence::Absent
        }
    }
}

/// What [`with_ids`] and [`with_rules`] found.
pub struct Seen<T> {
    pub generation: u32,
    pub complete: bool,
    pub answer: T,
}

thread_local! {
    static KNOWN: RefCell<HashMap<u64, Known>> = RefCell::new(HashMap::new());
}

/// The ruleset generation of the current namespace.
pub fn generation() -> io::Result<u32> {
    let seq = 1;
    let family = libc::AF_UNSPEC as u16;
    // GETGEN has no payload: the header alone.
    let msg = list::request_msg(libc::NFT_MSG_GETGEN, family, libc::NLM_F_ACK, seq, |_| {});
    let mut gen = None;
    batch::request(&msg, seq, parse_gen, &mut gen)?;
    gen.ok_or_else(|| io::Error::other("nf_tables sent no ruleset generation"))
}

fn parse_gen(hdr: &libc::nlmsghdr, out: &mut Option<u32>) -> libc::c_int {
    // SAFETY: `hdr` is a whole NEWGEN message that libmnl has length-checked inside our receive
    // buffer; the gen object is allocated here (non-NULL, see `allocated`), read only after a
    // successful parse, and freed before returning.
    unsafe {
        let g = super::allocated(sys::nftnl_gen_alloc()).as_ptr();
        if sys::nftnl_gen_nlmsg_parse(hdr, g) >= 0 {
            *out = Some(sys::nftnl_gen_get_u32(g, sys::NFTNL_GEN_ID as u16));
        }
        sys::nftnl_gen_free(g);
    }
    mnl::mnl_sys::MNL_CB_OK
}

/// What tells the ids of a dump whose rules are exactly what the id stands for (intact) from
/// those held otherwise (stale): natctl's audit, handed in by the caller (the cache sits below
/// the rules it would need to know that).
pub type Classify = fn(&[KernelRule]) -> (HashSet<String>, HashSet<String>);

/// Looks at the rule ids in natctl's table of the locked namespace; returns the generation
/// they hold for. Dumps the table only when neither this process nor the store knows it at the
/// current generation.
pub fn with_ids<T>(
    lock: &NsLock,
    classify: Classify,
    f: impl FnOnce(&Ids) -> T,
) -> io::Result<Seen<T>> {
    look(lock, false, classify, |known| {
        f(&Ids {
            intact: &known.ids,
            stale: &known.stale,
        })
    })
}

/// Looks at the rules in natctl's table of the locked namespace, with their handles; dumps the
/// table unless this process did so at the current generation.
pub fn with_rules<T>(
    lock: &NsLock,
    classify: Classify,
    f: impl FnOnce(&[KernelRule]) -> T,
) -> io::Result<Seen<T>> {
    look(lock, true, classify, |known| {
        f(known.rules.as_deref().unwrap_or_default())
    })
}

fn look<T>(
    lock: &NsLock,
    need_rules: bool,
    classify: Classify,
    f: impl FnOnce(&Known) -> T,
) -> io::Result<Seen<T>> {
    let generation = generation()?;
    let ns = lock.ns;
    let fresh = KNOWN.with(|k| {
        k.borrow().get(&ns).is_some_and(|known| {
            known.generation == generation && (known.rules.is_some() || !need_rules)
        })
    });
    if !fresh {
        // (known at this generation without the rules, after an add of ours: keep what it knew)
        let complete = KNOWN.with(|k| {
            let k = k.borrow();
            let same = k.get(&ns).filter(|known| known.generation == generation);
            same.map(|known| known.complete)
        });
        let stored = (!need_rules)
            .then(|| lock.cookie.and_then(|c| store::load(c, generation)))
            .flatten();
        let known = match stored {
            Some(stored) => Known {
                generation,
                ids: stored.ids,
                stale: stored.stale,
                complete: stored.complete,
                rules: None,
            },
            None => {
                let rules = list::rules()?;
                let (intact, stale) = classify(&rules);
                // (a dump shows it too: every base chain with all its dispatch rules means the
                // table, the chains and the maps those rules look up are there; so an add after
                // a `del`, whose dump is stored, need not dump again to learn it)
                let whole = complete.unwrap_or_else(|| {
                    super::dispatch::lacking(
                        rules
                            .iter()
                            .map(|k| (k.chain.as_str(), k.comment.as_deref(), k.handle)),
                    )
                    .is_empty()
                });
                let known = Known {
                    generation,
                    ids: intact,
                    stale,
                    complete: whole,
                    rules: Some(rules),
                };
                if complete.is_none() {
                    persist(lock, &known);
                }
                known
            }
        };
        KNOWN.with(|k| k.borrow_mut().insert(ns, known));
    }
    KNOWN.with(|k| {
        let k = k.borrow();
        let known = &k[&ns];
        Ok(Seen {
            generation,
            complete: known.complete,
            answer: f(known),
        })
    })
}

/// After our own commit (what is known was read at generation `before`): carry it forward by
/// `change` if ours was the only commit since, else forget it.
pub fn committed(lock: &NsLock, before: u32, change: Change) {
    let after = generation().ok();
    let ns = lock.ns;
    KNOWN.with(|k| {
        let mut k = k.borrow_mut();
        match (after, k.get_mut(&ns)) {
            (Some(g), Some(known)) if known.generation == before && g == before.wrapping_add(1) => {
                match change {
                    Change::Added(id) => {
                        known.ids.insert(id.to_string());
                        known.stale.remove(id);
                        known.rules = None;
                        known.complete = true;
                    }
                    Change::Deleted(id) => {
                        known.ids.remove(id);
                        known.stale.remove(id);
                        if let Some(rules) = &mut known.rules {
                            rules.retain(|r| r.id() != Some(id));
                        }
                    }
                }
                known.generation = g;
                persist(lock, known);
            }
            _ => {
                k.remove(&ns);
            }
        }
    });
}

fn persist(lock: &NsLock, known: &Known) {
    if let Some(cookie) = lock.cookie {
        store::save(
            cookie,
            known.generation,
            known.complete,
            &known.ids,
            &known.stale,
        );
    }
}
