//! `natctl element add SET KEY [VALUE] [--replace]`, `natctl element del SET KEY`: one element
//! of a set or map (nft `add element inet natctl SET { KEY [: VALUE] }`). One element is one
//! small transaction that nftables does not check the table for, however many elements and
//! rules the table holds.

use clap::{Args, Subcommand};
use common::{Context, Ctx, Error, Outcome, Result};
use serde::Serialize;

use super::reading;
use super::set::commit;
use crate::nft::lock::{self, NsLock};
use crate::nft::pending::{self, ElementOp};
use crate::nft::set::Companion;
use crate::nft::{self, TABLE_LABEL};
use crate::set::{Key, SetDef, SetName, Value, ValueType};

#[derive(Subcommand, Debug)]
pub enum Element {
    /// Add KEY to a set, or KEY : VALUE to a map (like `nft add element inet natctl SET { KEY
    /// : VALUE }`); the same key with another value is refused unless --replace
    Add(Add),
    /// Delete KEY from a set or map (like `nft delete element inet natctl SET { KEY }`); a key
    /// that is not there is changed:false
    Del(Del),
}

#[derive(Args, Debug)]
pub struct Add {
    /// The set or map
    #[arg(value_name = "SET")]
    pub set: SetName,
    /// The key, of the set's type: an interface name, an address or a mark
    #[arg(value_name = "KEY")]
    pub key: String,
    /// The value, of the map's type (a map needs one, a set takes none)
    #[arg(value_name = "VALUE")]
    pub value: Option<String>,
    /// If KEY is there with another value, give it this one (its counter restarts)
    #[arg(long)]
    pub replace: bool,
}

#[derive(Args, Debug)]
pub struct Del {
    #[arg(value_name = "SET")]
    pub set: SetName,
    #[arg(value_name = "KEY")]
    pub key: String,
}

impl Element {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            Element::Add(c) => c.run(ctx),
            Element::Del(c) => c.run(ctx),
        }
    }
}

/// `{"set":..,"key":..,"value":..,"netns":..}`.
#[derive(Debug, Serialize)]
struct ElementView {
    set: SetName,
    key: Key,
    value: Option<Value>,
    netns: Option<String>,
}

/// Set NAME, which must exist (exit 1 naming it and the namespace), with the sets natctl keeps
/// beside it ([`complete`]).
fn existing(ctx: &Ctx, name: &SetName, doing: &str) -> Result<SetDef> {
    let def = nft::set::get(name)
        .with_context(|| reading(ctx))?
        .ok_or_else(|| {
            Error::failed(format!(
                "{doing}: there is no set {name} in {TABLE_LABEL} in {} (natctl set add {name} ...)",
                ctx.ns_label()
            ))
        })?;
    complete(ctx, &def, doing)?;
    Ok(def)
}

/// The sets natctl keeps beside DEF that are not there: a map of connection marks made by an
/// older natctl, which `natctl set add` completes.
fn lacking(ctx: &Ctx, def: &SetDef) -> Result<Vec<Companion>> {
    if Companion::of(def).is_empty() {
        return Ok(Vec::new());
    }
    nft::set::lacking(def).with_context(|| reading(ctx))
}

/// Refuses (exit 1) set DEF when a set natctl keeps beside it is not there ([`lacking`]): what
/// adds an element to it, or a rule over it, would miss them.
pub(super) fn complete(ctx: &Ctx, def: &SetDef, doing: &str) -> Result<()> {
    match lacking(ctx, def)?.first() {
        None => Ok(()),
        Some(c) => Err(Error::failed(format!(
            "{doing}: {} lacks {}, which natctl keeps beside a map of connection marks (an older natctl made it): 'natctl{} set add {} --type {} --value ctmark' makes it",
            def.name,
            c.name(&def.name),
            ctx.netns_name().map_or_else(String::new, |ns| format!(" --ns {ns}")),
            def.name,
            def.key
        ))),
    }
}

/// Whether KEY is in set DEF, and with which value, as the lines of this batch still pending
/// leave it, else as the kernel has it.
fn present(ctx: &Ctx, lock: &NsLock, def: &SetDef, key: &Key) -> Result<Option<Option<Value>>> {
    match pending::element(lock, &def.name, key) {
        Some(planned) => Ok(planned),
        None => Ok(nft::set::element(def, key)
            .with_context(|| reading(ctx))?
            .map(|e| e.value)),
    }
}

/// The key holding MARK in DEF, a map of connection marks, as [`present`] sees it.
fn holder(ctx: &Ctx, lock: &NsLock, def: &SetDef, mark: u32) -> Result<Option<Key>> {
    match pending::mark_holder(lock, &def.name, mark) {
        Some(planned) => Ok(planned),
        None => nft::set::mark_holder(def, mark).with_context(|| reading(ctx)),
    }
}

/// Makes OP: in one transaction, or, in a batch, with the element lines around it (`pending`).
fn apply(ctx: &Ctx, lock: &NsLock, op: ElementOp) -> Result<()> {
    if ctx.defer && pending::may_defer(lock) {
        let generation = nft::cache::generation().with_context(|| reading(ctx))?;
        pending::defer(lock, generation, op);
        return Ok(());
    }
    commit(lock, || nft::change_elements(&[&op])).with_context(|| op.what.clone())
}

impl Add {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let what = format!(
            "adding element {} to set {} in {}",
            self.key,
            self.set,
            ctx.ns_label()
        );
        let lock = lock::namespace(&ctx.ns_label())?;
        let def = existing(ctx, &self.set, &what)?;
        let key = def.key.parse(&def.name, &self.key)?;
        let value = match (def.value, &self.value) {
            (Some(t), Some(text)) => Some(t.parse(&def.name, text)?),
            (None, None) => None,
            (Some(t), None) => {
                return Err(Error::invalid(format!(
                    "{what}: {} is a map, so the key needs a value ({t})",
                    def.name
                )))
            }
            (None, Some(text)) => {
                return Err(Error::invalid(format!(
                    "{what}: {} is a set, not a map: it takes no value ('{text}')",
                    def.name
                )))
            }
        };
        let found = present(ctx, &lock, &def, &key)?;
        if let (Some(ValueType::Ctmark), Some(Value::Mark(mark))) = (def.value, value) {
            // (a connection mark names one key: the replies it marks go back to that key's)
            match holder(ctx, &lock, &def, mark)? {
                Some(holder) if holder != key => {
                    return Err(Error::failed(format!(
                        "{what}: mark {mark} is {holder}'s in {} (a connection mark is one key's)",
                        def.name
                    )))
                }
                _ => {}
            }
        }
        let changed = match found {
            Some(had) if had == value => false,
            Some(had) if !self.replace => {
                let had = had.map_or_else(String::new, |v| v.to_string());
                return Err(Error::failed(format!(
                    "{what}: {key} maps to {had} there, not {} (--replace changes it)",
                    value.map_or_else(String::new, |v| v.to_string())
                )));
            }
            _ => true,
        };
        if changed && !ctx.check {
            let op = ElementOp {
                def: def.clone(),
                lacking: Vec::new(),
                old: found.map(|had| (key.clone(), had)),
                new: Some((key.clone(), value)),
                what,
            };
            apply(ctx, &lock, op)?;
        }
        let view = ElementView {
            set: def.name,
            key,
            value,
            netns: ctx.netns_name(),
        };
        Outcome::object(changed, "element", view)
    }
}

impl Del {
    fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let what = format!(
            "deleting element {} from set {} in {}",
            self.key,
            self.set,
            ctx.ns_label()
        );
        let lock = lock::namespace(&ctx.ns_label())?;
        let view = |key: Option<Key>, value: Option<Value>| ElementView {
            set: self.set.clone(),
            key: key.unwrap_or_else(|| Key::Ifname(self.key.clone())),
            value,
            netns: ctx.netns_name(),
        };
        // (deleting from a set that is not there changes nothing, as a key that is not there)
        let Some(def) = nft::set::get(&self.set).with_context(|| reading(ctx))? else {
            common::vlog!(1, "no set {} in {}", self.set, ctx.ns_label());
            return Outcome::object(false, "element", view(None, None));
        };
        // (an element of a map an older natctl made goes, with what there is beside it)
        let lacking = lacking(ctx, &def)?;
        let key = def.key.parse(&def.name, &self.key)?;
        let Some(had) = present(ctx, &lock, &def, &key)? else {
            common::vlog!(1, "no element {} in set {}", self.key, self.set);
            return Outcome::object(false, "element", view(Some(key), None));
        };
        if !ctx.check {
            let op = ElementOp {
                def,
                lacking,
                old: Some((key.clone(), had)),
                new: None,
                what,
            };
            apply(ctx, &lock, op)?;
        }
        Outcome::object(true, "element", view(Some(key), had))
    }
}
