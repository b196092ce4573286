//! Which rule ids natctl's table holds, remembered across the commands of one process.
//!
//! Batch mode (`natctl -b`) runs thousands of commands in one process; dumping the whole table
//! before each add would make that quadratic. nf_tables numbers every committed transaction
//! (the ruleset generation, `NFT_MSG_GETGEN`), so a remembered id set stays valid exactly as
//! long as the generation has not moved. After our own commit, the generation must have moved
//! by exactly one for the set to be carried forward; anything else (another process, `nft`)
//! forces a fresh dump. Callers hold the namespace lock, so natctls cannot interleave.

use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::io;

use nftnl::nftnl_sys::{self as sys, libc};

use super::{batch, list};
use crate::rule::parse_comment;

struct Known {
    generation: u32,
    ids: HashSet<String>,
    /// The table and all its base chains exist (we committed them at this generation), so the
    /// next add can skip re-adding them: updating an existing base chain costs the kernel far
    /// more than adding a rule.
    complete: bool,
}

/// What [`with_ids`] found.
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

/// Looks at the rule ids in natctl's table of namespace `ns` (its inode); returns the
/// generation they hold for. Dumps the table only when the generation moved since this process
/// last looked.
pub fn with_ids<T>(ns: u64, f: impl FnOnce(&HashSet<String>) -> T) -> io::Result<Seen<T>> {
    let generation = generation()?;
    let fresh = KNOWN.with(|k| {
        k.borrow()
            .get(&ns)
            .is_some_and(|known| known.generation == generation)
    });
    if !fresh {
        let ids: HashSet<String> = list::rules()?
            .iter()
            .filter_map(|r| parse_comment(r.comment.as_deref()?).map(|(id, _)| id.to_string()))
            .collect();
        let known = Known {
            generation,
            ids,
            complete: false,
        };
        KNOWN.with(|k| k.borrow_mut().insert(ns, known));
    }
    KNOWN.with(|k| {
        let k = k.borrow();
        let known = &k[&ns];
        Ok(Seen {
            generation,
            complete: known.complete,
            answer: f(&known.ids),
        })
    })
}

/// After our own commit (the ids were read at generation `before`): carry the set forward with
/// `update` applied if ours was the only commit since, else forget it.
pub fn committed(ns: u64, before: u32, update: impl FnOnce(&mut HashSet<String>)) {
    let after = generation().ok();
    KNOWN.with(|k| {
        let mut k = k.borrow_mut();
        match (after, k.get_mut(&ns)) {
            (Some(g), Some(known)) if known.generation == before && g == before.wrapping_add(1) => {
                update(&mut known.ids);
                known.generation = g;
                known.complete = true;
            }
            _ => {
                k.remove(&ns);
            }
        }
    });
}
