//! What a natctl set is, independent of how nftables encodes it: its name, the type of its keys
//! and, for a map, of its values, and whether each element counts the packets that matched it.
//!
//! A set holds per-object facts as data (`"c07-wg"`, `"c07-wg" : 50007`) that a few rules look
//! up, so adding or removing one object is one element: nftables needs no check of the table
//! for that, where a rule of its own makes it walk every chain at the commit.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::ValueEnum;
use common::types::IfName;
use common::{Error, Result};
use serde::Serialize;

use crate::rule::Match;

/// The longest set name natctl takes (nft allows 255; a short name keeps `list` readable).
const NAME_MAX: usize = 32;

/// A set's name: a letter, then letters, digits, `_` and `-`, at most 32 bytes. It never
/// holds a dot, so it never names one of natctl's own dispatch maps (`forward.iif`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct SetName(String);

impl FromStr for SetName {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let mut chars = s.chars();
        let first_ok = chars.next().is_some_and(|c| c.is_ascii_alphabetic());
        let rest_ok = chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-');
        if !first_ok || !rest_ok || s.len() > NAME_MAX {
            return Err(format!(
                "set name '{s}' must be a letter, then letters, digits, '_' or '-', at most {NAME_MAX} bytes"
            ));
        }
        Ok(SetName(s.to_string()))
    }
}

impl SetName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The set natctl keeps beside a map of connection marks, of its keys each with its mark
    /// (`KEY . MARK`): what the guard of `connmark --iif @MAP` looks a reply up in.
    pub fn pairs(&self) -> String {
        format!("{}.pairs", self.0)
    }

    /// The map natctl keeps beside a map of connection marks, from each mark to its key: who
    /// holds a mark.
    pub fn marks(&self) -> String {
        format!("{}.marks", self.0)
    }

    /// The set natctl keeps beside a map of connection marks, of its keys: what the guard of
    /// `connmark --iif @MAP` matches a reply's interface in.
    pub fn keys(&self) -> String {
        format!("{}.keys", self.0)
    }

    /// The set natctl keeps beside a map of connection marks, of its marks: what its restores
    /// match a connection's mark in.
    pub fn values(&self) -> String {
        format!("{}.values", self.0)
    }
}

impl fmt::Display for SetName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// An argument given as itself or as `@SET`, a set or map of natctl's: `--iif c07-wg` or
/// `--iif @tunnels` (nft `iifname @tunnels`), `--zone 7` or `--zone @zone_of` (the zone the map
/// gives for the rule's key: nft `ct zone set iifname map @zone_of`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum OrSet<T> {
    Given(T),
    Set(SetName),
}

impl<T> OrSet<T> {
    /// TEXT as `@SET`, or as itself by GIVEN.
    pub fn parse(
        text: &str,
        given: impl FnOnce(&str) -> std::result::Result<T, String>,
    ) -> std::result::Result<Self, String> {
        match text.strip_prefix('@') {
            Some(set) => set
                .parse()
                .map(OrSet::Set)
                .map_err(|e| format!("{e} (after the @ of a set)")),
            None => given(text).map(OrSet::Given),
        }
    }

    pub fn given(&self) -> Option<&T> {
        match self {
            OrSet::Given(v) => Some(v),
            OrSet::Set(_) => None,
        }
    }

    pub fn set(&self) -> Option<&SetName> {
        match self {
            OrSet::Given(_) => None,
            OrSet::Set(name) => Some(name),
        }
    }
}

impl<T: fmt::Display> fmt::Display for OrSet<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            OrSet::Given(v) => v.fmt(f),
            OrSet::Set(set) => write!(f, "@{set}"),
        }
    }
}

/// `--iif IFACE|@SET`.
pub type Iif = OrSet<IfName>;

impl FromStr for Iif {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        OrSet::parse(s, IfName::from_str)
    }
}

impl Iif {
    /// The rule's match for it.
    pub fn to_match(&self) -> Match {
        match self {
            OrSet::Given(name) => Match::Iif(name.to_string()),
            OrSet::Set(set) => Match::IifIn(set.to_string()),
        }
    }
}

/// `--dst CIDR|@SET`.
pub type Dst = OrSet<ipnet::IpNet>;

impl FromStr for Dst {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        OrSet::parse(s, common::types::parse_network)
    }
}

impl Dst {
    /// The rule's match for it.
    pub fn to_match(&self) -> Match {
        match self {
            OrSet::Given(net) => Match::Dst(*net),
            OrSet::Set(set) => Match::DstIn(set.to_string()),
        }
    }
}

/// What a set's keys are, by nft's type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum KeyType {
    /// An interface name (`iifname`)
    Ifname,
    /// An IPv4 address (`ip daddr`)
    Ipv4Addr,
    /// An IPv6 address (`ip6 daddr`)
    Ipv6Addr,
    /// A packet or connection mark
    Mark,
}

/// What a map's values are.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Serialize)]
#[serde(rename_all = "snake_case")]
#[value(rename_all = "snake_case")]
pub enum ValueType {
    /// A conntrack zone, 0-65535 (`ct zone set ... map`)
    Zone,
    /// A packet or connection mark, 0-4294967295 (`meta mark set ... map`)
    Mark,
    /// An IPv4 address (`snat ip to ... map`)
    Ipv4Addr,
    /// An IPv6 address (`snat ip6 to ... map`)
    Ipv6Addr,
    /// A connection mark, 1-4294967295, one key's only (`connmark --set @MAP`: each key's
    /// connections are marked with it, and its replies get it back)
    Ctmark,
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl fmt::Display for ValueType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.label())
    }
}

impl KeyType {
    pub fn label(self) -> &'static str {
        match self {
            KeyType::Ifname => "ifname",
            KeyType::Ipv4Addr => "ipv4_addr",
            KeyType::Ipv6Addr => "ipv6_addr",
            KeyType::Mark => "mark",
        }
    }
}

impl ValueType {
    pub fn label(self) -> &'static str {
        match self {
            ValueType::Zone => "zone",
            ValueType::Mark => "mark",
            ValueType::Ipv4Addr => "ipv4_addr",
            ValueType::Ipv6Addr => "ipv6_addr",
            ValueType::Ctmark => "ctmark",
        }
    }
}

/// A set as asked for (`set add`) or as the kernel holds it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SetDef {
    pub name: SetName,
    #[serde(rename = "type")]
    pub key: KeyType,
    /// The values' type: Some for a map.
    pub value: Option<ValueType>,
    /// Every element counts the packets and bytes that matched it.
    pub counter: bool,
}

/// One element's key, of its set's key type.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Key {
    Ifname(String),
    Addr(IpAddr),
    Mark(u32),
}

/// One element's value, of its map's value type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(untagged)]
pub enum Value {
    Zone(u16),
    Mark(u32),
    Addr(IpAddr),
}

impl fmt::Display for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Key::Ifname(name) => f.write_str(name),
            Key::Addr(addr) => addr.fmt(f),
            Key::Mark(mark) => mark.fmt(f),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Zone(zone) => zone.fmt(f),
            Value::Mark(mark) => mark.fmt(f),
            Value::Addr(addr) => addr.fmt(f),
        }
    }
}

impl KeyType {
    /// TEXT as a key of this type, for set NAME (exit 2 naming both when it is not one).
    pub fn parse(self, name: &SetName, text: &str) -> Result<Key> {
        let refused = |why: String| {
            Error::invalid(format!(
                "'{text}' is not a key of set {name} (type {self}): {why}"
            ))
        };
        match self {
            KeyType::Ifname => IfName::from_str(text)
                .map(|n| Key::Ifname(n.as_str().to_string()))
                .map_err(refused),
            KeyType::Ipv4Addr | KeyType::Ipv6Addr => {
                let addr: IpAddr = text
                    .parse()
                    .map_err(|_| refused("not an IP address".into()))?;
                if addr.is_ipv4() != (self == KeyType::Ipv4Addr) {
                    return Err(refused("of the other address family".into()));
                }
                Ok(Key::Addr(addr))
            }
            KeyType::Mark => common::num::parse_u32(text)
                .map(Key::Mark)
                .ok_or_else(|| refused("not a number of 0 to 4294967295".into())),
        }
    }
}

impl ValueType {
    /// TEXT as a value of this type, for map NAME (exit 2 naming both when it is not one).
    pub fn parse(self, name: &SetName, text: &str) -> Result<Value> {
        let refused = |why: &str| {
            Error::invalid(format!(
                "'{text}' is not a value of map {name} (type {self}): {why}"
            ))
        };
        match self {
            ValueType::Zone => text
                .parse()
                .map(Value::Zone)
                .map_err(|_| refused("not a zone of 0 to 65535")),
            ValueType::Mark => common::num::parse_u32(text)
                .map(Value::Mark)
                .ok_or_else(|| refused("not a number of 0 to 4294967295")),
            ValueType::Ctmark => common::num::parse_u32(text)
                .filter(|m| *m != 0)
                .map(Value::Mark)
                .ok_or_else(|| {
                    refused("not a number of 1 to 4294967295 (0 is an unmarked connection's)")
                }),
            ValueType::Ipv4Addr | ValueType::Ipv6Addr => {
                let addr: IpAddr = text.parse().map_err(|_| refused("not an IP address"))?;
                if addr.is_ipv4() != (self == ValueType::Ipv4Addr) {
                    return Err(refused("of the other address family"));
                }
                Ok(Value::Addr(addr))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn name(s: &str) -> SetName {
        s.parse().unwrap()
    }

    #[test]
    fn a_set_name_is_a_letter_then_letters_digits_underscores_and_dashes() {
        for good in ["tunnels", "zone_of", "a", "T-1", &"x".repeat(32)] {
            assert!(good.parse::<SetName>().is_ok(), "{good}");
        }
        for bad in [
            "",
            "1st",
            "_x",
            "forward.iif",
            "a b",
            "é",
            "@tunnels",
            &"x".repeat(33),
        ] {
            let e = bad.parse::<SetName>().unwrap_err();
            assert!(e.contains(&format!("'{bad}'")), "{e}");
        }
    }

    #[test]
    fn keys_are_read_by_their_sets_type_and_refused_naming_both() {
        let s = name("s");
        assert_eq!(
            KeyType::Ifname.parse(&s, "c07-wg").unwrap(),
            Key::Ifname("c07-wg".into())
        );
        assert_eq!(
            KeyType::Ipv4Addr.parse(&s, "100.64.0.7").unwrap(),
            Key::Addr("100.64.0.7".parse().unwrap())
        );
        assert_eq!(
            KeyType::Mark.parse(&s, "0x4e58c350").unwrap(),
            Key::Mark(0x4e58_c350)
        );
        assert_eq!(KeyType::Mark.parse(&s, "7").unwrap(), Key::Mark(7));
        for (t, bad) in [
            (KeyType::Ifname, "a/b"),
            (KeyType::Ifname, "sixteen-bytes-xx"),
            (KeyType::Ipv4Addr, "fd00::1"),
            (KeyType::Ipv6Addr, "100.64.0.7"),
            (KeyType::Ipv4Addr, "100.64.0.0/24"),
            (KeyType::Mark, "-1"),
            (KeyType::Mark, "4294967296"),
        ] {
            let e = t.parse(&s, bad).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            let msg = e.to_string();
            assert!(
                msg.contains(&format!("'{bad}'")) && msg.contains("set s"),
                "{msg}"
            );
        }
    }

    #[test]
    fn values_are_read_by_their_maps_type_and_refused_naming_both() {
        let m = name("m");
        assert_eq!(
            ValueType::Zone.parse(&m, "50000").unwrap(),
            Value::Zone(50000)
        );
        assert_eq!(ValueType::Mark.parse(&m, "0x10").unwrap(), Value::Mark(16));
        assert_eq!(
            ValueType::Ipv6Addr.parse(&m, "fd00::7").unwrap(),
            Value::Addr("fd00::7".parse().unwrap())
        );
        for (t, bad) in [
            (ValueType::Zone, "65536"),
            (ValueType::Zone, "0x10"),
            (ValueType::Mark, "x"),
            (ValueType::Ipv4Addr, "fd00::7"),
        ] {
            let e = t.parse(&m, bad).unwrap_err();
            assert_eq!(e.exit_code(), 2);
            assert!(e.to_string().contains("map m"), "{e}");
        }
    }
}
