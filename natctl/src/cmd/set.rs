//! `natctl set add NAME --type TYPE [--value TYPE] [--counter]`, `natctl set del NAME`,
//! `natctl set list [NAME]`: named sets and maps in natctl's table, for rules that look a packet
//! up in them (`filter --iif @NAME`), so that one element, not one rule, stands for each object
//! (nft `add set inet natctl NAME { type ifname; counter; }`).

use clap::{Args, Subcommand};
use common::{Context, Ctx, Error, Kind, Outcome, Result};
use serde::Serialize;

use super::reading;
use crate::nft::{self, lock, TABLE_LABEL};
use crate::set::{Key, KeyType, SetDef, SetName, Value, ValueType};

#[derive(Subcommand, Debug)]
pub enum Set {
    /// Make a set, or with --value a map (like `nft add set inet natctl NAME { type ifname; }`
    /// or `nft add map inet natctl NAME { type ifname : mark; }`)
    Add(Add),
    /// Delete a set and its elements (like `nft delete set inet natctl NAME`); refused while a
    /// rule uses it
    Del(Del),
    /// List natctl's sets with their elements and counters (like `nft list sets`)
    List(List),
}

#[derive(Args, Debug)]
pub struct Add {
    /// The set's name: a letter, then letters, digits, '_' or '-' (at most 32)
    #[arg(value_name = "NAME")]
    pub name: SetName,
    /// What its keys are
    #[arg(long = "type", value_enum, value_name = "TYPE")]
    pub key: KeyType,
    /// What each key maps to: the set is a map (`type ifname : mark`)
    #[arg(long, value_enum, value_name = "TYPE")]
    pub value: Option<ValueType>,
    /// Each element counts the packets and bytes that a rule matched by it (nft `counter`)
    #[arg(long)]
    pub counter: bool,
}

#[derive(Args, Debug)]
pub struct Del {
    #[arg(value_name = "NAME")]
    pub name: SetName,
}

#[derive(Args, Debug)]
pub struct List {
    /// Only this set (an error when it is not there)
    #[arg(value_name = "NAME")]
    pub name: Option<SetName>,
}

impl Set {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Set::Add(c) => c.run(ctx),
            Set::Del(c) => c.run(ctx),
            Set::List(c) => c.run(ctx),
        }
    }
}

/// A set as the commands print it: its definition and namespace.
#[derive(Debug, Serialize)]
struct SetView {
    #[serde(flatten)]
    def: SetDef,
    netns: Option<String>,
}

/// What set DEF is, in words: "a map of ifname to zone with counters".
fn describe(def: &SetDef) -> String {
    let what = match def.value {
        Some(value) => format!("a map of {} to {value}", def.key),
        None => format!("a set of {}", def.key),
    };
    let counting = if def.counter { "with" } else { "without" };
    format!("{what} {counting} counters")
}

impl Add {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let def = SetDef {
            name: self.name,
            key: self.key,
            value: self.value,
            counter: self.counter,
        };
        let what = || {
            format!(
                "adding set {} to {TABLE_LABEL} in {}",
                def.name,
                ctx.ns_label()
            )
        };
        let lock = lock::namespace(&ctx.ns_label())?;
        let existing = nft::set::get(&def.name).with_context(|| reading(ctx))?;
        // (a map of connection marks an older natctl made lacks sets natctl now keeps beside
        // it: made here, from its elements)
        let mut lacking = Vec::new();
        let changed = match existing {
            Some(found) if found == def => {
                lacking = nft::set::lacking(&def).with_context(|| reading(ctx))?;
                !lacking.is_empty()
            }
            Some(found) => {
                return Err(Error::failed(format!(
                    "{}: it exists as {}, not {} (natctl set del {} first)",
                    what(),
                    describe(&found),
                    describe(&def),
                    def.name
                )))
            }
            None => true,
        };
        if changed && !ctx.check {
            if lacking.is_empty() {
                commit(&lock, || nft::add_set(&def)).with_context(what)?;
            } else {
                commit(&lock, || nft::complete_set(&def, &lacking)).with_context(what)?;
            }
        }
        let netns = ctx.netns_name();
        Outcome::object(changed, "set", SetView { def, netns })
    }
}

/// Runs COMMIT, one transaction of ours that adds or deletes no rule, and carries what this
/// process knows of the table's rules over it (`cache`): the rules are as they were.
pub(super) fn commit(
    lock: &lock::NsLock,
    commit: impl FnOnce() -> std::io::Result<()>,
) -> std::io::Result<()> {
    let before = nft::cache::generation()?;
    commit()?;
    nft::cache::committed(lock, before, &[]);
    Ok(())
}

impl Del {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let what = || {
            format!(
                "deleting set {} from {TABLE_LABEL} in {}",
                self.name,
                ctx.ns_label()
            )
        };
        let lock = lock::namespace(&ctx.ns_label())?;
        let Some(def) = nft::set::get(&self.name).with_context(|| reading(ctx))? else {
            common::vlog!(1, "no set {} in {}", self.name, ctx.ns_label());
            return Outcome::object(false, "set", self.unknown(ctx));
        };
        if !ctx.check {
            match commit(&lock, || nft::delete_set(&def)) {
                Ok(()) => {}
                Err(e) if Kind::of(&e) == Kind::Busy => {
                    let users = users(&self.name).with_context(|| reading(ctx))?;
                    return Err(Error::failed(format!(
                        "{}: rules use it ({}); delete them first",
                        what(),
                        users.join(", ")
                    )));
                }
                Err(e) => return Err(Error::caused(what(), e)),
            }
        }
        let netns = ctx.netns_name();
        Outcome::object(true, "set", SetView { def, netns })
    }

    fn unknown(&self, ctx: &Ctx) -> Named {
        Named {
            name: self.name.clone(),
            netns: ctx.netns_name(),
        }
    }
}

/// What `set del` prints of a set that is not there.
#[derive(Debug, Serialize)]
struct Named {
    name: SetName,
    netns: Option<String>,
}

/// The ids of natctl's rules that look NAME up (their arguments name `@NAME`).
fn users(name: &SetName) -> std::io::Result<Vec<String>> {
    let reference = format!("@{name}");
    let mut ids: Vec<String> = nft::list::rules()?
        .iter()
        .filter_map(|k| {
            let (id, args) = crate::rule::parse_comment(k.comment.as_deref()?)?;
            args.split_whitespace()
                .any(|a| a == reference)
                .then(|| id.to_string())
        })
        .collect();
    ids.sort_unstable();
    ids.dedup();
    if ids.is_empty() {
        // (a rule made with nft, without natctl's comment)
        ids.push("a rule not natctl's".into());
    }
    Ok(ids)
}

/// One element as `set list` prints it.
#[derive(Debug, Serialize)]
struct ElementView {
    key: Key,
    value: Option<Value>,
    packets: Option<u64>,
    bytes: Option<u64>,
}

#[derive(Debug, Serialize)]
struct Listed {
    #[serde(flatten)]
    set: SetView,
    elements: Vec<ElementView>,
}

/// `{"sets":[..]}`.
#[derive(Debug, Serialize)]
struct Sets {
    sets: Vec<Listed>,
}

impl List {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let sets = match &self.name {
            Some(name) => match nft::set::get(name).with_context(|| reading(ctx))? {
                Some(def) => vec![def],
                None => {
                    return Err(Error::failed(format!(
                        "listing set {name}: there is no set {name} in {TABLE_LABEL} in {}",
                        ctx.ns_label()
                    )))
                }
            },
            None => nft::set::all().with_context(|| reading(ctx))?,
        };
        let mut out = Vec::with_capacity(sets.len());
        for def in sets {
            let elements = nft::set::elements(&def)
                .with_context(|| format!("reading the elements of set {}", def.name))?
                .into_iter()
                .map(|e| ElementView {
                    key: e.key,
                    value: e.value,
                    packets: e.counter.map(|c| c.0),
                    bytes: e.counter.map(|c| c.1),
                })
                .collect();
            let netns = ctx.netns_name();
            out.push(Listed {
                set: SetView { def, netns },
                elements,
            });
        }
        Outcome::report(false, Sets { sets: out })
    }
}
