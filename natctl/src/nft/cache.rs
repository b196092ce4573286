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
use super::held::HeldIds;
pub use super::held::Presence;
use super::list::{self, KernelRule};
use super::lock::NsLock;
use super::store::{self, Stored};

struct Known {
    generation: u32,
    /// What is known of the table at `generation`: the ids whose nftables rules are exactly
    /// what the id stands for (`audit`), those the table holds otherwise (some part missing,
    /// changed or repeated), the chains holding each id's rules, and whether the table, all its
    /// base chains and their dispatch maps and rules exist (we committed them at this
    /// generation, or a dump showed them), so the next add can skip re-adding them: updating an
    /// existing base chain costs the kernel far more than adding a rule.
    table: Stored,
    /// The rules as this process dumped them at `generation`, with their handles (what `del`
    /// needs); None when the ids came from the store, or after an add (its handle is unknown).
    rules: Option<Vec<KernelRule>>,
    /// The generation the store's file holds, as far as this process knows (it read or wrote
    /// it): a commit of ours from there is one line appended.
    stored_at: Option<u32>,
}

/// A commit of ours, to carry what is known forward by.
pub enum Change<'a> {
    /// The rule of this id was added in these chains (replacing whatever carried the id
    /// before).
    Added(&'a str, &'a [String]),
    /// The rules of this id were deleted.
    Deleted(&'a str),
}

/// The ids of natctl's table, as [`with_ids`] shows them.
pub struct Ids<'a> {
    held: &'a HeldIds,
}

impl Ids<'_> {
    pub fn presence(&self, id: &str) -> Presence {
        self.held.presence(id)
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
            held: &known.table.ids,
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

/// Where the rules of one id are to be read.
enum Whereabouts {
    /// In this process's dump, or anywhere: the whole table.
    Anywhere,
    /// Nowhere: the table holds no rule of the id.
    Nowhere,
    /// Only in these chains.
    In(Vec<String>),
}

/// As [`with_rules`], for what concerns the rules of ID: every rule of the chains that hold
/// them (all of the table when this process dumped it at the current generation). Where this
/// process or the store knows those chains at the current generation, only they are dumped: a
/// `del` in a big table then costs what it costs in a small one. `f` gets no rule when the id
/// is not there.
pub fn with_rules_of<T>(
    lock: &NsLock,
    classify: Classify,
    id: &str,
    f: impl FnOnce(&[KernelRule]) -> T,
) -> io::Result<Seen<T>> {
    let seen = look(lock, false, classify, |known| {
        let t = &known.table;
        if known.rules.is_some() {
            Whereabouts::Anywhere
        } else {
            match t.ids.chains(id) {
                Some(chains) if chains.is_empty() => Whereabouts::Anywhere,
                Some(chains) => Whereabouts::In(chains),
                None => Whereabouts::Nowhere,
            }
        }
    })?;
    let rules = match seen.answer {
        Whereabouts::Anywhere => return with_rules(lock, classify, f),
        Whereabouts::Nowhere => Vec::new(),
        Whereabouts::In(chains) => {
            let rules = list::rules_in(&chains)?;
            // (a commit by someone else since: what those chains said may be of another table)
            if generation()? != seen.generation {
                return with_rules(lock, classify, f);
            }
            rules
        }
    };
    Ok(Seen {
        generation: seen.generation,
        complete: seen.complete,
        answer: f(&rules),
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
    // What this process knows at this generation (without the rules, after an add of ours).
    let (fresh, earlier) = KNOWN.with(|k| {
        let k = k.borrow();
        let same = k.get(&ns).filter(|known| known.generation == generation);
        (
            same.is_some_and(|known| known.rules.is_some() || !need_rules),
            same.map(|known| (known.table.complete, known.stored_at)),
        )
    });
    if !fresh {
        let stored = (!need_rules)
            .then(|| lock.cookie.and_then(|c| store::load(c, generation)))
            .flatten();
        let known = match stored {
            Some(table) => Known {
                generation,
                table,
                rules: None,
                stored_at: Some(generation),
            },
            None => {
                let rules = list::rules()?;
                let (intact, _) = classify(&rules);
                let mut chains: HashMap<&str, Vec<&str>> = HashMap::new();
                for rule in &rules {
                    if let Some(id) = rule.id() {
                        let list = chains.entry(id).or_default();
                        if !list.contains(&rule.chain.as_str()) {
                            list.push(&rule.chain);
                        }
                    }
                }
                let mut ids = HeldIds::default();
                for (id, list) in chains {
                    ids.hold(id, intact.contains(id), list);
                }
                // (a dump shows it too: every base chain with all its dispatch rules means the
                // table, the chains and the maps those rules look up are there; so an add after
                // a `del`, whose dump is stored, need not dump again to learn it)
                let complete = earlier.map(|(complete, _)| complete).unwrap_or_else(|| {
                    super::dispatch::lacking(
                        rules
                            .iter()
                            .map(|k| (k.chain.as_str(), k.comment.as_deref(), k.handle)),
                    )
                    .is_empty()
                });
                let mut known = Known {
                    generation,
                    table: Stored {
                        complete,
                        ids,
                        journal: 0,
                    },
                    rules: Some(rules),
                    stored_at: earlier.and_then(|(_, at)| at),
                };
                if known.stored_at != Some(generation) {
                    persist(lock, &mut known);
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
            complete: known.table.complete,
            answer: f(known),
        })
    })
}

/// After our own commit (what is known was read at generation `before`): carry it forward by
/// `changes` (the commit's, in order) if ours was the only commit since, else forget it.
pub fn committed(lock: &NsLock, before: u32, changes: &[Change]) {
    let after = generation().ok();
    let ns = lock.ns;
    KNOWN.with(|k| {
        let mut k = k.borrow_mut();
        match (after, k.get_mut(&ns)) {
            (Some(g), Some(known)) if known.generation == before && g == before.wrapping_add(1) => {
                let t = &mut known.table;
                let mut entries = Vec::new();
                for change in changes {
                    entries.push(match *change {
                        Change::Added(id, chains) => {
                            t.ids.hold(id, true, chains.iter().map(String::as_str));
                            t.complete = true;
                            known.rules = None;
                            store::Entry::Added(id, chains)
                        }
                        Change::Deleted(id) => {
                            t.ids.release(id);
                            if let Some(rules) = &mut known.rules {
                                rules.retain(|r| r.id() != Some(id));
                            }
                            store::Entry::Deleted(id)
                        }
                    });
                }
                known.generation = g;
                record(lock, known, &entries);
            }
            _ => {
                k.remove(&ns);
            }
        }
    });
}

/// Stores KNOWN after a commit of ours, ENTRIES: lines appended when the file holds the
/// generation before, else a snapshot.
fn record(lock: &NsLock, known: &mut Known, entries: &[store::Entry]) {
    let Some(cookie) = lock.cookie else { return };
    let appendable = known.stored_at == Some(known.generation.wrapping_sub(1))
        && !store::journal_full(&known.table);
    if appendable && store::append(cookie, known.generation, entries).is_ok() {
        known.table.journal += entries.len();
        known.stored_at = Some(known.generation);
    } else {
        persist(lock, known);
    }
}

/// Writes KNOWN's snapshot to the store.
fn persist(lock: &NsLock, known: &mut Known) {
    let Some(cookie) = lock.cookie else { return };
    known.table.journal = 0;
    let written = store::save(cookie, known.generation, &known.table);
    known.stored_at = written.then_some(known.generation);
}
