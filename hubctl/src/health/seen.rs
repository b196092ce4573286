//! What the tools print, the parts the health rules read: a key that is absent or null reads
//! as jq's null (`// default`), and an output of another shape reads as absent.

use std::collections::HashMap;

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use super::Observed;

/// A `Vec` field that may be null (jq's `.list[]?` and `.list // []`).
pub(super) fn null_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `nsctl link list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct LinkList {
    #[serde(deserialize_with = "null_empty")]
    pub(super) links: Vec<Link>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Link {
    pub(super) name: String,
    pub(super) state: Option<String>,
    pub(super) master: Option<String>,
    pub(super) mtu: Option<u64>,
    #[serde(deserialize_with = "null_empty")]
    pub(super) addresses: Vec<String>,
    /// A bridge port's isolation (nsctl lists it for ports only).
    pub(super) isolated: Option<bool>,
    /// It takes IPv6 (null: the kernel has no IPv6 for it, or an nsctl that does not say).
    pub(super) ipv6: Option<bool>,
}

/// `nsctl sysctl KEY`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SysctlShow {
    pub(super) sysctl: Option<Sysctl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Sysctl {
    pub(super) value: Option<String>,
}

impl SysctlShow {
    pub(super) fn is_on(&self) -> bool {
        self.sysctl.as_ref().and_then(|s| s.value.as_deref()) == Some("1")
    }
}

/// `wgctl show`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WgShow {
    #[serde(deserialize_with = "null_empty")]
    pub(super) interfaces: Vec<WgInterface>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WgInterface {
    pub(super) name: Option<String>,
    pub(super) public_key: Option<String>,
    pub(super) listen_port: Option<u64>,
    #[serde(deserialize_with = "null_empty")]
    pub(super) peers: Vec<WgPeer>,
    /// wireguard-go's listener filters the center's link events (null: unknown).
    pub(super) listener_filtered: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct WgPeer {
    pub(super) public_key: Option<String>,
    pub(super) endpoint: Option<String>,
    #[serde(deserialize_with = "null_empty")]
    pub(super) allowed_ips: Vec<String>,
    pub(super) latest_handshake: Option<u64>,
    pub(super) rx_bytes: Option<u64>,
    pub(super) tx_bytes: Option<u64>,
    pub(super) persistent_keepalive: Option<u64>,
    pub(super) preshared_key: Option<bool>,
}

/// `routectl route list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RouteList {
    #[serde(deserialize_with = "null_empty")]
    pub(super) routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Route {
    pub(super) family: Option<String>,
    pub(super) dst: Option<String>,
    pub(super) dev: Option<String>,
    /// Its name ("main") or its number.
    pub(super) table: Value,
    pub(super) table_id: Option<u64>,
}

/// `routectl rule list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct RuleList {
    #[serde(deserialize_with = "null_empty")]
    pub(super) rules: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct Rule {
    pub(super) family: Option<String>,
    pub(super) not: bool,
    pub(super) fwmark: Option<u64>,
    pub(super) fwmask: Option<u64>,
    pub(super) table_id: Option<u64>,
    pub(super) goto: Option<u64>,
    pub(super) priority: Option<u64>,
}

impl Rule {
    /// The rule FAMILY (inet, inet6) of `routectl rule add ARGS` as [`crate::fwmark`] writes
    /// them: `[-6] [--not] [--fwmark M[/MASK]] --table T|--goto P --priority P`.
    pub(super) fn is(&self, family: &str, args: &str) -> bool {
        let mut want = Rule {
            family: Some(family.to_string()),
            ..Rule::default()
        };
        let mut words = args.split_whitespace();
        while let Some(w) = words.next() {
            let mut value = || words.next().and_then(|v| parse_u64(v.split('/').next()?));
            match w {
                "--not" => want.not = true,
                "--fwmark" => want.fwmark = value(),
                "--table" => want.table_id = value(),
                "--goto" => want.goto = value(),
                "--priority" => want.priority = value(),
                _ => {}
            }
        }
        let mask = args
            .split_whitespace()
            .find_map(|w| w.split_once('/').map(|(_, m)| parse_u64(m)))
            .flatten();
        self.family == want.family
            && self.not == want.not
            && self.fwmark == want.fwmark
            && (want.fwmark.is_none() || self.fwmask == mask.or(Some(u64::from(u32::MAX))))
            && self.table_id == want.table_id
            && self.goto == want.goto
            && self.priority == want.priority
    }
}

/// A decimal or 0x-hex number.
fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `natctl list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NatList {
    #[serde(deserialize_with = "null_empty")]
    pub(super) rules: Vec<NatRule>,
    #[serde(deserialize_with = "null_empty")]
    pub(super) foreign_tables: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct NatRule {
    pub(super) id: Value,
    pub(super) kind: Option<String>,
    pub(super) iif: Option<String>,
    pub(super) oif: Option<String>,
    /// A number, or `"@MAP"` for a rule over a map.
    pub(super) zone: Option<Value>,
    pub(super) dir: Option<String>,
    /// A mark, or `"@MAP"`.
    pub(super) set: Option<Value>,
    pub(super) to: Option<String>,
    pub(super) src: Option<String>,
    pub(super) dst: Option<String>,
    pub(super) daddr: Option<String>,
    pub(super) proto: Option<String>,
    pub(super) dport: Option<String>,
    pub(super) reply: Option<bool>,
    pub(super) packets: Option<u64>,
    pub(super) local: Option<bool>,
    pub(super) early: Option<bool>,
    pub(super) verdict: Option<String>,
    pub(super) default: Option<String>,
    pub(super) tampered: Option<bool>,
    pub(super) complete: Option<bool>,
}

/// `natctl set list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SetList {
    #[serde(deserialize_with = "null_empty")]
    pub(super) sets: Vec<SetShow>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct SetShow {
    pub(super) name: String,
    #[serde(deserialize_with = "null_empty")]
    pub(super) elements: Vec<ElementShow>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(super) struct ElementShow {
    pub(super) key: Value,
    pub(super) value: Value,
    pub(super) packets: Option<u64>,
}

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
