//! What a natctl rule is, independent of how nftables encodes it: the packets it matches, what
//! it does to them, the base chain it lives in, and its canonical arguments.
//!
//! The canonical arguments (`dnat --to 192.0.2.1 --daddr 203.0.113.254 --proto tcp --dport
//! 54321`) are the command line that recreates the rule, with every value normalised and in a
//! fixed order. They are stored in the rule's comment, they give the rule its id, and `list`
//! parses them back with the same clap parser the command line uses.

use std::ffi::CStr;
use std::fmt;
use std::net::IpAddr;

use clap::ValueEnum;
use common::types::PortRange;
use common::{Error, Result};
use ipnet::IpNet;
use serde::ser::{Serialize, Serializer};

use crate::set::{Dst, Iif, OrSet, SetName};

/// The address family a rule is limited to; `None` in [`Rule::family`] means both.
pub use common::family::Family;

/// The one family every address of a rule belongs to. `what` names each address by its flag,
/// so a mix is reported as e.g. "--to 192.0.2.1 is IPv4 but --daddr 2001:db8::1 is IPv6".
pub fn common_family(kind: &str, addrs: &[(&str, IpAddr)]) -> Result<Option<Family>> {
    let mut first: Option<(&str, IpAddr)> = None;
    for &(flag, addr) in addrs {
        match first {
            None => first = Some((flag, addr)),
            Some((f0, a0)) if Family::of(a0) != Family::of(addr) => {
                return Err(Error::invalid(format!(
                    "{kind}: {f0} {a0} is {} but {flag} {addr} is {}; a rule is either IPv4 or IPv6",
                    Family::of(a0).label(),
                    Family::of(addr).label()
                )));
            }
            Some(_) => {}
        }
    }
    Ok(first.map(|(_, a)| Family::of(a)))
}

/// `--family ipv4|ipv6`: the family of a rule whose addresses are all in sets. natctl reads it
/// from the sets when it is not given, and keeps it in the rule's arguments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FamilyArg {
    Ipv4,
    Ipv6,
}

impl FamilyArg {
    pub fn family(self) -> Family {
        match self {
            FamilyArg::Ipv4 => Family::V4,
            FamilyArg::Ipv6 => Family::V6,
        }
    }

    pub fn of(family: Family) -> FamilyArg {
        match family {
            Family::V4 => FamilyArg::Ipv4,
            Family::V6 => FamilyArg::Ipv6,
        }
    }
}

impl fmt::Display for FamilyArg {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FamilyArg::Ipv4 => "ipv4",
            FamilyArg::Ipv6 => "ipv6",
        })
    }
}

/// The family of KIND's addresses ([`common_family`]) and its `--family`, which must agree.
pub fn rule_family(
    kind: &str,
    addrs: &[(&str, IpAddr)],
    given: Option<FamilyArg>,
) -> Result<Option<Family>> {
    let of_addrs = common_family(kind, addrs)?;
    match (of_addrs, given.map(FamilyArg::family)) {
        (Some(a), Some(g)) if a != g => Err(Error::invalid(format!(
            "{kind}: --family {} but the addresses are {}",
            FamilyArg::of(g),
            a.label()
        ))),
        (a, g) => Ok(a.or(g)),
    }
}

/// Checks that KIND's VALUE (the flag FLAG), when it is `@MAP`, has its key: a selector naming
/// the same map (`--iif @MAP`, `--dst @MAP`) among KEYS, which the map is looked up by.
pub fn map_keyed<T>(
    kind: &str,
    flag: &str,
    value: &OrSet<T>,
    keys: &[Option<&SetName>],
) -> Result<()> {
    match value.set() {
        Some(map) if !keys.contains(&Some(map)) => Err(Error::invalid(format!(
            "{kind}: {flag} @{map} takes its value from map {map} by the rule's key: name the map in the key too (--iif @{map} or --dst @{map})"
        ))),
        _ => Ok(()),
    }
}

/// The family of KIND, a rule keyed by IIF and/or DST (either may name a set), whose other
/// addresses are OTHERS, with `--family` FAMILY; when its VALUE (the flag, and what it holds) is
/// `@MAP`, the key must name MAP too ([`map_keyed`]).
pub fn keyed_family<T>(
    kind: &str,
    (iif, dst): (Option<&Iif>, Option<&Dst>),
    (flag, value): (&str, &OrSet<T>),
    others: &[(&str, IpAddr)],
    family: Option<FamilyArg>,
) -> Result<Option<Family>> {
    let mut addrs = others.to_vec();
    addrs.extend(dst.and_then(Dst::given).map(|n| ("--dst", n.addr())));
    let family = rule_family(kind, &addrs, family)?;
    map_keyed(
        kind,
        flag,
        value,
        &[iif.and_then(Iif::set), dst.and_then(Dst::set)],
    )?;
    Ok(family)
}

/// A number or `@MAP` as a rule argument.
pub fn number_arg<T: Copy + Into<u64>>(value: &OrSet<T>) -> Arg {
    match value {
        OrSet::Given(n) => Arg::Number((*n).into()),
        OrSet::Set(map) => Arg::text(format!("@{map}")),
    }
}

/// Transport protocol of a port match (`meta l4proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Proto {
    Tcp,
    Udp,
}

impl Proto {
    pub fn number(self) -> u8 {
        match self {
            Proto::Tcp => libc::IPPROTO_TCP as u8,
            Proto::Udp => libc::IPPROTO_UDP as u8,
        }
    }
}

impl fmt::Display for Proto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

/// Which conntrack direction a zone applies to (`ct [original|reply] zone set`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ZoneDir {
    Both,
    Original,
    Reply,
}

impl fmt::Display for ZoneDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            ZoneDir::Both => "both",
            ZoneDir::Original => "original",
            ZoneDir::Reply => "reply",
        })
    }
}

/// One packet match; all of a rule's matches must hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Match {
    /// `iifname NAME`
    Iif(String),
    /// `iifname @SET`: the interface is a key of natctl's set or map SET (of type ifname).
    IifIn(String),
    /// `ip daddr @SET` / `ip6 daddr @SET`: the destination is a key of SET (of the rule's
    /// family's addresses).
    DstIn(String),
    /// `ct mark @SET`: the connection's mark is in SET (of marks).
    CtMarkIn(String),
    /// `iifname . ct mark != @SET`: the interface and the connection's mark are no pair of SET.
    IifMarkNotIn(String),
    /// `oifname NAME`
    Oif(String),
    /// `ip saddr NET` / `ip6 saddr NET`
    Src(IpNet),
    /// `ip daddr NET` / `ip6 daddr NET`
    Dst(IpNet),
    /// `meta l4proto N` (an IPPROTO_* number: tcp, udp, icmp, ipv6-icmp)
    Proto(u8),
    /// `th dport FIRST[-LAST]` (after a Proto match)
    Dport(u16, u16),
    /// `ct direction reply`: the packet travels against its connection's first packet.
    CtReply,
    /// `ct direction original`: the packet travels the way its connection's first packet did.
    CtOriginal,
    /// `ct state new`: the packet is its connection's first (conntrack has not confirmed it).
    CtNew,
    /// `ct mark N`
    CtMark(u32),
    /// `ct mark != N`
    CtMarkNot(u32),
}

/// `meta l4proto PROTO [th dport PORT[-PORT]]`; a port without a protocol is invalid.
pub fn port_matches(
    kind: &str,
    proto: Option<Proto>,
    dport: Option<PortRange>,
) -> Result<Vec<Match>> {
    if let (Some(dport), None) = (dport, proto) {
        return Err(Error::invalid(format!(
            "{kind}: --dport {dport} needs --proto tcp|udp"
        )));
    }
    let mut matches: Vec<Match> = proto
        .map(|p| Match::Proto(p.number()))
        .into_iter()
        .collect();
    matches.extend(dport.map(|p| Match::Dport(p.first.0, p.last.0)));
    Ok(matches)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NatKind {
    Snat,
    Dnat,
}

/// What the rule does to a matching packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// `masquerade`
    Masquerade,
    /// `snat|dnat [prefix] to MIN[-MAX][:PORT[-PORT]]`; `netmap` maps the whole prefix 1:1.
    Nat {
        kind: NatKind,
        min: IpAddr,
        max: IpAddr,
        ports: Option<(u16, u16)>,
        netmap: bool,
    },
    /// `ct [original|reply] zone set N`, or `... set KEY map @MAP`
    Zone { zone: OrSet<u16>, dir: ZoneDir },
    /// `meta mark set N`, or `meta mark set KEY map @MAP`
    Mark(OrSet<u32>),
    /// `snat|dnat to KEY map @MAP`: the address the map gives for the rule's key.
    NatMap { kind: NatKind, map: String },
    /// `ct mark set N`, or `ct mark set KEY map @MAP`
    CtMark(OrSet<u32>),
    /// `meta mark set ct mark`
    MarkFromCt,
    /// `accept` or `drop`. `at_head`: the rule is inserted at the head of its chain (nft
    /// `insert rule`) instead of appended, so it is evaluated before every rule appended there.
    Verdict { verdict: Verdict, at_head: bool },
}

/// A filter verdict (nft `accept`, `drop`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Verdict {
    Accept,
    Drop,
}

impl fmt::Display for Verdict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Verdict::Accept => "accept",
            Verdict::Drop => "drop",
        })
    }
}

/// The base chain a rule lives in (the table's layout is drawn in `nft`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Zones,
    Connmarks,
    Marks,
    Dstnat,
    Output,
    Srcnat,
    Input,
    LocalMarks,
    Forward,
    LocalIn,
    ZonesOut,
    MarksOut,
}

impl Stage {
    /// Every base chain, in the order a new table gets them. The two newest come last, so that a
    /// table made before them (which gains them on its next add) lists its chains in the same
    /// order as a new one.
    pub const ALL: [Stage; 12] = [
        Stage::Zones,
        Stage::Connmarks,
        Stage::Marks,
        Stage::Dstnat,
        Stage::Output,
        Stage::Srcnat,
        Stage::Input,
        Stage::LocalMarks,
        Stage::Forward,
        Stage::LocalIn,
        Stage::ZonesOut,
        Stage::MarksOut,
    ];

    /// The chain's name in natctl's table.
    pub fn name(self) -> &'static CStr {
        match self {
            Stage::Zones => c"zones",
            Stage::Connmarks => c"connmarks",
            Stage::Marks => c"marks",
            Stage::Dstnat => c"dstnat",
            Stage::Output => c"output",
            Stage::Srcnat => c"srcnat",
            Stage::Input => c"input",
            Stage::LocalMarks => c"localmarks",
            Stage::Forward => c"forward",
            Stage::LocalIn => c"local_in",
            Stage::ZonesOut => c"zones_out",
            Stage::MarksOut => c"marks_out",
        }
    }
}

impl Action {
    /// The map the action takes its value from, if it does.
    pub fn map(&self) -> Option<&str> {
        match self {
            Action::Zone {
                zone: OrSet::Set(map),
                ..
            }
            | Action::Mark(OrSet::Set(map))
            | Action::CtMark(OrSet::Set(map)) => Some(map.as_str()),
            Action::NatMap { map, .. } => Some(map),
            _ => None,
        }
    }
}

impl Part {
    /// Whether the part is inserted at the head of its chain rather than appended.
    pub fn at_head(&self) -> bool {
        matches!(self.action, Action::Verdict { at_head: true, .. })
    }
}

/// One nftables rule of a natctl rule: the base chain it is in, its matches and its statement.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Part {
    pub stage: Stage,
    pub matches: Vec<Match>,
    pub action: Action,
}

/// A validated rule, ready to be encoded or compared.
#[derive(Debug, Clone)]
pub struct Rule {
    pub kind: &'static str,
    pub family: Option<Family>,
    /// The nftables rules it is made of, in this order, all carrying the same comment: one for
    /// most kinds; `dnat --local` adds one in the output hook, `connmark` one restoring the mark.
    pub parts: Vec<Part>,
    /// Every argument of the kind, in canonical order; `None` when not given.
    pub args: Vec<(&'static str, Option<Arg>)>,
}

/// One argument value, printed the way the command line takes it: in JSON a string, a number,
/// or for a flag without a value a boolean.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(untagged)]
pub enum Arg {
    Text(String),
    Number(u64),
    /// A flag such as `--local`: on the command line only when true.
    Flag(bool),
}

impl Arg {
    pub fn text(v: impl fmt::Display) -> Arg {
        Arg::Text(v.to_string())
    }

    /// How the argument `--key` appears on the canonical command line (nothing for an unset
    /// flag, so adding a flag to a kind does not change the ids of rules made before it).
    fn write_canonical(&self, key: &str, out: &mut String) {
        match self {
            Arg::Text(s) => out.push_str(&format!(" --{key} {s}")),
            Arg::Number(n) => out.push_str(&format!(" --{key} {n}")),
            Arg::Flag(true) => out.push_str(&format!(" --{key}")),
            Arg::Flag(false) => {}
        }
    }
}

/// Prints a network the short way: a single host as its bare address.
/// `--dst` as a rule argument: a network as [`net_arg`], or `@SET`.
pub fn dst_arg(dst: &OrSet<IpNet>) -> Arg {
    match dst {
        OrSet::Given(net) => net_arg(net),
        OrSet::Set(set) => Arg::text(format!("@{set}")),
    }
}

pub fn net_arg(net: &IpNet) -> Arg {
    if net.prefix_len() == net.max_prefix_len() {
        Arg::text(net.addr())
    } else {
        Arg::text(net)
    }
}

/// The comment prefix that marks a rule as natctl's: `natctl:ID ARGS`.
const COMMENT_TAG: &str = "natctl:";

impl Rule {
    /// The canonical command line: `KIND --flag value ...`.
    pub fn canonical(&self) -> String {
        let mut s = String::from(self.kind);
        for (key, val) in &self.args {
            if let Some(v) = val {
                v.write_canonical(key, &mut s);
            }
        }
        s
    }

    /// The stable id: 12 hex digits of the FNV-1a hash of the canonical arguments.
    pub fn id(&self) -> String {
        id_of(&self.canonical())
    }

    /// What goes into the rule's comment (nft shows it as `comment "..."`).
    pub fn comment(&self) -> String {
        let canonical = self.canonical();
        format!("{COMMENT_TAG}{} {canonical}", id_of(&canonical))
    }

    /// What `add`, `del` and `list` print of the rule, in namespace `netns`.
    pub fn view(&self, netns: Option<String>) -> RuleView {
        RuleView {
            id: self.id(),
            kind: self.kind,
            netns,
            family: self.family.map_or("any", Family::inet_name),
            // (`--family` is the view's `family` already, as `inet`/`inet6`)
            args: Args(
                self.args
                    .iter()
                    .filter(|(key, _)| *key != "family")
                    .cloned()
                    .collect(),
            ),
        }
    }

    /// The family as an argument too, once known from the sets the rule names: it is then in
    /// the canonical arguments, so the rule's id and its comment carry it (`list` encodes the
    /// rule from them alone).
    pub fn set_family(&mut self, family: Family) {
        self.family = Some(family);
        for (key, value) in &mut self.args {
            if *key == "family" {
                *value = Some(Arg::text(FamilyArg::of(family)));
            }
        }
    }
}

/// A rule as natctl prints it: `{"id":..,"kind":..,"netns":..,"family":..,<its arguments>}`.
#[derive(Debug, Clone, serde::Serialize)]
pub struct RuleView {
    /// The stable id (the hash of the canonical arguments).
    pub id: String,
    pub kind: &'static str,
    /// The namespace given to `--ns`; null for the caller's own.
    pub netns: Option<String>,
    /// `inet` (IPv4, `meta nfproto ipv4`), `inet6` (IPv6) or `any` (both: no address given).
    pub family: &'static str,
    /// Every argument of the kind, by its flag's name; null (false for a flag) when not given.
    #[serde(flatten)]
    pub args: Args,
}

/// A rule kind's arguments in canonical order, serialised as `"flag": value` members.
#[derive(Debug, Clone)]
pub struct Args(Vec<(&'static str, Option<Arg>)>);

impl Serialize for Args {
    fn serialize<S: Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_map(self.0.iter().map(|(key, val)| (key, val)))
    }
}

/// FNV-1a, 64 bits, folded to 48: stable across builds and platforms (unlike std's hasher).
fn id_of(canonical: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in canonical.bytes() {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{:012x}", (h ^ (h >> 48)) & 0xffff_ffff_ffff)
}

/// Splits a stored comment into (id, canonical arguments) if it is one of ours and intact.
pub fn parse_comment(comment: &str) -> Option<(&str, &str)> {
    let rest = comment.strip_prefix(COMMENT_TAG)?;
    let (id, canonical) = rest.split_once(' ')?;
    (id_of(canonical) == id).then_some((id, canonical))
}

/// Checks that a rule id looks like one natctl makes (12 hex digits).
pub fn parse_id(s: &str) -> std::result::Result<String, String> {
    if s.len() == 12 && s.bytes().all(|b| b.is_ascii_hexdigit()) {
        Ok(s.to_ascii_lowercase())
    } else {
        Err(format!(
            "rule id '{s}' is not 12 hex digits (see `natctl list`)"
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_stable_and_comments_round_trip() {
        let a = id_of("dnat --to 192.0.2.1");
        assert_eq!(a, id_of("dnat --to 192.0.2.1"));
        assert_ne!(a, id_of("dnat --to 192.0.2.2"));
        assert_eq!(a.len(), 12);
        let comment = format!("natctl:{a} dnat --to 192.0.2.1");
        assert_eq!(
            parse_comment(&comment),
            Some((a.as_str(), "dnat --to 192.0.2.1"))
        );
        assert_eq!(
            parse_comment("natctl:000000000000 dnat --to 192.0.2.1"),
            None
        );
        assert_eq!(parse_comment("hand made"), None);
    }

    #[test]
    fn mixed_families_are_refused() {
        let v4: IpAddr = "192.0.2.1".parse().unwrap();
        let v6: IpAddr = "2001:db8::1".parse().unwrap();
        assert_eq!(
            common_family("dnat", &[("--to", v4)]).unwrap(),
            Some(Family::V4)
        );
        assert_eq!(common_family("zone", &[]).unwrap(), None);
        let e = common_family("dnat", &[("--to", v4), ("--daddr", v6)]).unwrap_err();
        assert!(e.to_string().contains("2001:db8::1"), "{e}");
        assert_eq!(e.exit_code(), 2);
    }
}
