//! natctl's nftables plumbing: its table and base chains, the batch sender, expressions the
//! nftnl crate lacks, rule encoding, the rule dump, and the per-namespace lock.
//!
//! Layout in every namespace natctl acts on:
//! ```text
//! table inet natctl {
//!     chain zones     { type filter hook prerouting  priority raw;         }  ct zone set
//!     chain connmarks { type filter hook prerouting  priority mangle - 10; }  ct mark set (new, original),
//!                                                                             drop foreign replies, meta mark set ct mark
//!     chain marks     { type filter hook prerouting  priority mangle;      }  meta mark set
//!     chain dstnat    { type nat    hook prerouting  priority dstnat;      }  dnat, netmap --dst
//!     chain output    { type nat    hook output      priority dstnat;      }  dnat --local
//!     chain srcnat    { type nat    hook postrouting priority srcnat;      }  masquerade, snat, netmap --src
//!     chain input     { type nat    hook input       priority srcnat;      }  snat --local
//!     chain localmarks { type route hook output      priority mangle - 10; }  meta mark set ct mark,
//!                                                                             connmark --local: ct mark set (new)
//!     chain forward   { type filter hook forward     priority filter;      }  filter (forwarded traffic)
//!     chain local_in  { type filter hook input       priority filter;      }  filter --local (to this namespace)
//!     chain zones_out { type filter hook output      priority raw;         }  zone --local
//!     chain marks_out { type route  hook output      priority mangle;      }  mark --local
//! }
//! ```
//! Rules are appended to their chain, in the order they are added, with one exception: a
//! `filter` rule with selectors (`--verdict`) is inserted at the head of `forward`/`local_in`
//! (nft `insert rule`), and a `filter --default` is appended. So in those two chains every
//! selector rule, newest first, comes before every default, whatever order they were added in:
//! an interface's accepts are always evaluated before its default drop. (The filter chains are
//! at priority `filter` (0), after every NAT of prerouting: they see the translated destination
//! of a DNAT, and, for a reply, the untranslated one.)
//! In `connmarks`, connmark's own parts: first the one marking connections (their first packet,
//! original direction), then the drop of reply-direction packets on its interface whose
//! connection is not marked, then the restore.
//! The `output`/`input`/`localmarks` chains are for the namespace's own sockets: `snat --local` also translates connections
//! to this namespace itself (NAT of locally delivered packets happens in the input hook), and a
//! connmark restores its mark onto the replies this namespace sends itself (a `route` chain: a
//! mark set there makes the kernel route the packet again).
//! The output hook mirrors prerouting for the connections this namespace opens itself:
//! `zones_out` (raw, -300) sets a zone before conntrack (-200) sees the packet; `localmarks`
//! (mangle - 10, after conntrack) holds connmark's parts there (`connmark --local` marking a new
//! connection, and the restore onto replies); `marks_out` (mangle, -150) comes after it, so an
//! explicit `mark --local` wins over a restored connection mark, as `marks` does after
//! `connmarks`; NAT (`output`, -100) comes last. `localmarks` and `marks_out` are `route` chains:
//! a mark set there makes the kernel route the packet again.
//! In prerouting a packet meets them in this order: its zone is set before conntrack looks the
//! packet up (priority -200), so the lookup happens in that zone; connection marks need the
//! conntrack entry, so they come after it, and before `marks`, so an explicit `mark` rule
//! overrides a restored connection mark; NAT comes last, after every mark is set.
//! One `inet` table serves IPv4 and IPv6 (NAT in inet tables needs Linux 5.2); a rule limited to
//! one family starts with `meta nfproto ipv4|ipv6`.

pub mod batch;
pub mod cache;
pub mod dispatch;
pub mod encode;
pub mod expr;
pub mod held;
pub mod list;
pub mod lock;
pub mod pending;
pub mod set;
pub mod store;

use std::ffi::CStr;
use std::io;
use std::ptr::NonNull;

use nftnl::{Batch, Chain, ChainType, Hook, MsgType, ProtoFamily, Table};

use crate::rule::Rule;
use crate::set::SetDef;
use dispatch::{DispatchMap, Element, Key, KeyKind};
use set::{Companion, ElementMsg, SetMsg};

/// The base chains, as a rule's parts name them.
pub use crate::rule::Stage;

/// The name of natctl's table.
pub const TABLE: &CStr = c"natctl";

/// How the table is named in messages and in `nft list`.
pub const TABLE_LABEL: &str = "table inet natctl";

/// Where each base chain hooks into the kernel, and its nftables object.
impl Stage {
    /// The hook and priority: nft's `raw` (-300), `mangle - 10`, `mangle` (-150), `dstnat`
    /// (-100), `filter` (0) and `srcnat` (100); conntrack itself runs at -200.
    fn hook(self) -> (Hook, i32, ChainType) {
        match self {
            Stage::Zones => (Hook::PreRouting, -300, ChainType::Filter),
            Stage::Connmarks => (Hook::PreRouting, -160, ChainType::Filter),
            Stage::Marks => (Hook::PreRouting, -150, ChainType::Filter),
            Stage::Dstnat => (Hook::PreRouting, -100, ChainType::Nat),
            Stage::Output => (Hook::Out, -100, ChainType::Nat),
            Stage::Srcnat => (Hook::PostRouting, 100, ChainType::Nat),
            Stage::Input => (Hook::In, 100, ChainType::Nat),
            Stage::LocalMarks => (Hook::Out, -160, ChainType::Route),
            Stage::Forward => (Hook::Forward, 0, ChainType::Filter),
            Stage::LocalIn => (Hook::In, 0, ChainType::Filter),
            // Before conntrack (-200) in the output hook, as `zones` is in prerouting.
            Stage::ZonesOut => (Hook::Out, -300, ChainType::Filter),
            // `mark --local` has a chain of its own rather than sharing `localmarks`: there
            // connmark restores a connection's mark onto replies, and rules of one chain run in
            // the order they were added. After it, an explicit `mark --local` wins over a restored
            // connection mark whatever order the two were added in, as `marks` (-150) does after
            // `connmarks` (-160) in prerouting.
            Stage::MarksOut => (Hook::Out, -150, ChainType::Route),
        }
    }

    /// The base chain object, for adding (idempotent without NLM_F_EXCL) or addressing rules.
    pub fn chain(self, table: &Table) -> Chain<'_> {
        let mut chain = Chain::new(self.name(), table);
        let (hook, priority, kind) = self.hook();
        chain.set_hook(hook, priority);
        chain.set_type(kind);
        chain
    }
}

/// A libnftnl object just allocated, or abort when the allocation failed (libnftnl answers
/// NULL): like nftnl itself, and like Rust on allocation failure, since a tiny allocation
/// failing leaves nothing sensible to do. Every raw libnftnl call on it may then assume non-NULL.
fn allocated<T>(ptr: *mut T) -> NonNull<T> {
    NonNull::new(ptr).unwrap_or_else(|| std::process::abort())
}

/// natctl's table object.
pub fn table() -> Table {
    Table::new(TABLE, ProtoFamily::Inet)
}

/// What of the table's structure (the table, its base chains, their dispatch maps and rules) an
/// add must make besides the rule.
pub enum Structure {
    /// All of it exists: we committed it at the generation the add was planned at.
    Complete,
    /// Make sure the table, base chains and maps exist (re-adding an existing object without
    /// NLM_F_EXCL changes nothing), and make anew the dispatch rules of these base chains, which
    /// a dump found lacking some (with the handles of those they have).
    Lacking(Vec<(Stage, Vec<u64>)>),
}

/// One rule's add as planned: what of the table's structure to make with it, and the nftables
/// rules (chain name, handle) it replaces.
pub struct Planned<'a> {
    pub rule: &'a Rule,
    pub structure: &'a Structure,
    pub replacing: &'a [(String, u64)],
}

/// One transaction: the table's structure as `structure` says; delete the nftables rules
/// `replacing` (chain name, handle) names; then each of the rule's nftables rules, in its
/// base chain or its key's chain (made with its map element if new; see `dispatch`), appended
/// or at the head for a part that says so.
pub fn add_rule(rule: &Rule, structure: &Structure, replacing: &[(String, u64)]) -> io::Result<()> {
    add_rules(&[Planned {
        rule,
        structure,
        replacing,
    }])
}

/// One transaction adding each of ADDS in turn, as [`add_rule`] does one. nftables validates
/// the whole table at every commit of a rule (its jumps, its maps' verdicts): in a table of
/// 1,000 tunnels' rules a commit costs ~5 ms, so adding a tunnel's dozen rules in one commit
/// rather than twelve is what keeps an add as cheap beside 1,000 tunnels as beside 10.
pub fn add_rules(adds: &[Planned]) -> io::Result<()> {
    let table = table();
    let chains: Vec<Chain> = Stage::ALL.iter().map(|s| s.chain(&table)).collect();
    let maps: Vec<((Stage, KeyKind), DispatchMap)> = Stage::ALL
        .iter()
        .flat_map(|s| s.keys().iter().map(move |k| (*s, *k)))
        .zip(1..)
        .map(|((stage, kind), id)| ((stage, kind), DispatchMap::new(stage, kind, id)))
        .collect();
    let mut batch = Batch::new();
    // (the key chains this transaction makes: a second rule of the key does not make it again)
    let mut made: Vec<String> = Vec::new();
    for add in adds {
        if let Structure::Lacking(lacking) = add.structure {
            add_structure(&mut batch, &table, &chains, &maps, lacking);
        }
        let old_chains = chains_of(&table, add.replacing);
        delete_by_handle(&mut batch, &old_chains, add.replacing);
        append_rule(&mut batch, &table, &chains, add.rule, &mut made)?;
    }
    batch::send(&batch.finalize())
}

/// The base chain of STAGE among CHAINS (one for each of [`Stage::ALL`], in that order).
fn base<'a, 'b>(chains: &'b [Chain<'a>], stage: Stage) -> &'b Chain<'a> {
    let at = Stage::ALL.iter().position(|s| *s == stage).unwrap_or(0);
    &chains[at]
}

/// Adds to BATCH the table, its base chains CHAINS and dispatch MAPS (re-adding an existing
/// object without NLM_F_EXCL changes nothing), and the dispatch rules of the base chains
/// LACKING names, made anew (with the handles of those they have, deleted).
fn add_structure(
    batch: &mut Batch,
    table: &Table,
    chains: &[Chain],
    maps: &[((Stage, KeyKind), DispatchMap)],
    lacking: &[(Stage, Vec<u64>)],
) {
    batch.add(table, MsgType::Add);
    for chain in chains {
        batch.add(chain, MsgType::Add);
    }
    for (_, map) in maps {
        batch.add(map, MsgType::Add);
    }
    for (stage, handles) in lacking {
        for handle in handles {
            let mut rule = nftnl::Rule::new(base(chains, *stage));
            rule.set_handle(*handle);
            batch.add(&rule, MsgType::Del);
        }
    }
    // Each is inserted at the head: the last kind first, so they end up in kind order.
    for (stage, _) in lacking {
        for kind in stage.keys().iter().rev() {
            let id = maps.iter().position(|(sk, _)| *sk == (*stage, *kind));
            let msg = dispatch::dispatch_rule(
                base(chains, *stage),
                *stage,
                *kind,
                id.map_or(0, |i| i as u32 + 1),
            );
            batch.add(&msg, MsgType::Add);
        }
    }
}

/// Adds to BATCH each of RULE's nftables rules, in its base chain (of CHAINS) or its key's
/// chain, made with its map element unless MADE (the key chains this batch made) has it.
fn append_rule(
    batch: &mut Batch,
    table: &Table,
    chains: &[Chain],
    rule: &Rule,
    made: &mut Vec<String>,
) -> io::Result<()> {
    // (the parts of one rule may share a key's chain: each is made once)
    let mut names: Vec<String> = Vec::new();
    let mut keyed: Vec<Chain> = Vec::new();
    for part in &rule.parts {
        if let Some(key) = dispatch::key_of(part) {
            let name = key.chain_name(part.stage);
            if !names.contains(&name) {
                let chain = dispatch::chain(table, &name);
                if !made.contains(&name) {
                    batch.add(&chain, MsgType::Add);
                    batch.add(&Element::new(part.stage, &key), MsgType::Add);
                    made.push(name.clone());
                }
                keyed.push(chain);
                names.push(name);
            }
        }
    }
    for part in &rule.parts {
        let name = dispatch::chain_of(part);
        let chain = match names.iter().position(|n| *n == name) {
            Some(at) => &keyed[at],
            None => base(chains, part.stage),
        };
        let msg = encode::rule_msg(chain, rule, part)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        batch.add(&msg, MsgType::Add);
    }
    Ok(())
}

/// The chains of RULES (chain name, handle), one for each, to address them in TABLE.
fn chains_of<'a>(table: &'a Table, rules: &[(String, u64)]) -> Vec<Chain<'a>> {
    rules
        .iter()
        .map(|(chain, _)| dispatch::chain(table, chain))
        .collect()
}

/// Adds to BATCH the deletion of each of RULES (chain name, handle) from its chain of CHAINS
/// ([`chains_of`] them).
fn delete_by_handle(batch: &mut Batch, chains: &[Chain], rules: &[(String, u64)]) {
    for (chain, (_, handle)) in chains.iter().zip(rules) {
        let mut rule = nftnl::Rule::new(chain);
        rule.set_handle(*handle);
        batch.add(&rule, MsgType::Del);
    }
}

/// The nftables rules of one id, by (chain name, handle), and the key chains (stage, key) that
/// deleting them leaves empty: those go too, with their map elements.
#[derive(Clone, Default)]
pub struct Deletion {
    pub rules: Vec<(String, u64)>,
    pub emptied: Vec<(Stage, Key)>,
}

/// One transaction of DELETION. Should it fail with emptied key chains (a key's map element
/// deleted by hand makes its chain's removal fail), the rules go all the same, in a second one:
/// the chain stays, empty, and is used again by its key's next rule.
pub fn delete_rules(deletion: &Deletion) -> io::Result<()> {
    match delete_many(&[deletion]) {
        Err(e) if !deletion.emptied.is_empty() => {
            common::vlog!(
                1,
                "removing the emptied key chains failed ({e}); deleting the rules only"
            );
            let rules_only = Deletion {
                rules: deletion.rules.clone(),
                emptied: Vec::new(),
            };
            delete_many(&[&rules_only])
        }
        done => done,
    }
}

/// One transaction making each of DELETIONS in turn: its rules, then its emptied key chains
/// with their map elements.
pub fn delete_many(deletions: &[&Deletion]) -> io::Result<()> {
    let table = table();
    let mut batch = Batch::new();
    for deletion in deletions {
        let chains = chains_of(&table, &deletion.rules);
        delete_by_handle(&mut batch, &chains, &deletion.rules);
        for (stage, key) in &deletion.emptied {
            let chain = dispatch::chain(&table, &key.chain_name(*stage));
            batch.add(&Element::new(*stage, key), MsgType::Del);
            batch.add(&chain, MsgType::Del);
        }
    }
    batch::send(&batch.finalize())
}

/// One transaction making set DEF, and natctl's table if it is not there (re-adding an existing
/// table without NLM_F_EXCL changes nothing). The set must not exist.
pub fn add_set(def: &SetDef) -> io::Result<()> {
    let mut batch = Batch::new();
    batch.add(&table(), MsgType::Add);
    batch.add(&SetMsg::new(def), MsgType::Add);
    for companion in SetMsg::companions(def) {
        batch.add(&companion, MsgType::Add);
    }
    batch::send(&batch.finalize())
}

/// One transaction deleting set DEF with its elements and the sets natctl keeps beside it
/// (those there: a map made by an older natctl has fewer). The kernel refuses while a rule uses
/// one.
pub fn delete_set(def: &SetDef) -> io::Result<()> {
    let lacking = set::lacking(def)?;
    let there: Vec<Companion> = Companion::of(def)
        .iter()
        .filter(|c| !lacking.contains(c))
        .copied()
        .collect();
    let mut batch = Batch::new();
    for set in SetMsg::with_companions(def, &there) {
        batch.add(&set, MsgType::Del);
    }
    batch::send(&batch.finalize())
}

/// One transaction making LACKING, sets natctl keeps beside set DEF that are not there (a map
/// made by an older natctl), each holding what it holds of DEF's elements.
pub fn complete_set(def: &SetDef, lacking: &[Companion]) -> io::Result<()> {
    let elements = set::elements(def)?;
    let mut batch = Batch::new();
    for companion in lacking {
        batch.add(&companion.set_msg(def), MsgType::Add);
    }
    for element in ElementMsg::of_companions(def, lacking, &elements) {
        batch.add(&element, MsgType::Add);
    }
    batch::send(&batch.finalize())
}

/// One transaction making each of CHANGES in turn: deleting its element as it was (when it
/// was), then adding it as it is to be (when it is to be), each with what the sets natctl keeps
/// beside its set hold of it (a key takes one value, so a new value is a new element).
pub fn change_elements(changes: &[&pending::ElementOp]) -> io::Result<()> {
    let mut batch = Batch::new();
    for change in changes {
        for (side, msg) in [(&change.old, MsgType::Del), (&change.new, MsgType::Add)] {
            let Some((key, value)) = side else {
                continue;
            };
            let elements =
                ElementMsg::with_companions(&change.def, &change.lacking, key, value.as_ref());
            for element in elements {
                batch.add(&element, msg);
            }
        }
    }
    batch::send(&batch.finalize())
}

/// One transaction deleting natctl's table with everything in it.
pub fn delete_table() -> io::Result<()> {
    let mut batch = Batch::new();
    batch.add(&table(), MsgType::Del);
    batch::send(&batch.finalize())
}
