//! What the tools print, as the health rules read it: the listings of [`crate::listing`] by
//! owner, and how a listed rule compares with the line that adds it.

use std::collections::HashMap;

use serde::de::DeserializeOwned;
use serde_json::Value;

use super::Observed;
use crate::listing::{Link, LinkList, Route};

/// Whether RULE (as `natctl list` prints it) is the rule LINE adds (`KIND --flag value ...`, as
/// the hub writes it): of that kind, every flag's value as the line gives it (a flag alone:
/// true), and not changed behind natctl's back.
pub(super) fn lists_line(rule: &Value, line: &str) -> bool {
    let mut words = line.split_whitespace().peekable();
    if rule["kind"].as_str() != words.next() || rule["tampered"] == Value::Bool(true) {
        return false;
    }
    while let Some(flag) = words.next() {
        let Some(name) = flag.strip_prefix("--") else {
            return false;
        };
        let value = match words.peek() {
            Some(v) if !v.starts_with("--") => words.next(),
            _ => None,
        };
        // (natctl lists a host as its bare address)
        let same = match value {
            None => rule[name] == Value::Bool(true),
            Some(v) => {
                let listed = jq_text(&rule[name]);
                listed == v
                    || [listed.clone() + "/32", listed + "/128"]
                        .iter()
                        .any(|l| l == v)
            }
        };
        if !same {
            return false;
        }
    }
    true
}

/// A value as jq's string interpolation writes it: a string as itself, anything else as JSON.
pub(crate) fn jq_text(v: &Value) -> String {
    match v {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// An optional value as jq writes it (`null` when absent).
pub(super) fn or_null<T: ToString>(v: Option<T>) -> String {
    v.map_or_else(|| "null".to_string(), |v| v.to_string())
}

/// The links of one namespace by name, in the order the tool listed them (jq's `from_entries`: a
/// repeated name keeps its first place and its last value).
pub(super) struct Links {
    pub(super) links: Vec<Link>,
    pub(super) by_name: HashMap<String, usize>,
}

impl Links {
    pub(super) fn new(list: LinkList) -> Links {
        let mut links: Vec<Link> = Vec::new();
        let mut by_name = HashMap::new();
        for link in list.links {
            match by_name.get(&link.name) {
                Some(&at) => links[at] = link,
                None => {
                    by_name.insert(link.name.clone(), links.len());
                    links.push(link);
                }
            }
        }
        Links { links, by_name }
    }

    pub(super) fn get(&self, name: &str) -> Option<&Link> {
        self.by_name.get(name).map(|&at| &self.links[at])
    }
}

/// A routing table a default route must be in.
#[derive(Clone, Copy)]
pub(super) enum Table {
    Main,
    Id(u32),
}

impl Table {
    pub(super) fn holds(self, route: &Route) -> bool {
        match self {
            Table::Main => route.table.as_str() == Some("main"),
            Table::Id(id) => {
                route.table.as_f64() == Some(f64::from(id)) || route.table_id == Some(u64::from(id))
            }
        }
    }
}

/// The tool output of OWNER (absent, or of another shape: the default, jq's null).
pub(super) fn read<T: DeserializeOwned + Default>(seen: &Observed, owner: &str) -> T {
    seen.shows
        .get(owner)
        .and_then(|json| serde_json::from_str(json).ok())
        .unwrap_or_default()
}

pub(super) fn ip_version(family: &str) -> &'static str {
    if family == "inet6" {
        "IPv6 "
    } else {
        ""
    }
}
