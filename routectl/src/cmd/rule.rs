//! `routectl rule`: policy routing rules (`ip rule`).
//!
//! A rule is matched by its selectors, table and (when given) priority, read back from the
//! kernel: the kernel itself happily stores duplicates, so `add` compares first.

use std::fmt;
use std::str::FromStr;

use clap::{Args, Subcommand};
use common::types::{IfName, Port, PortRange};
use common::{Context, Ctx, Error, Kind, Outcome, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_core::{NLM_F_ACK, NLM_F_CREATE, NLM_F_ECHO, NLM_F_EXCL};
use netlink_packet_route::route::RouteRealm;
use netlink_packet_route::rule::{
    RuleAction, RuleAttribute, RuleFlags, RuleMessage, RulePortRange, RuleUidRange,
};
use netlink_packet_route::RouteNetlinkMessage;
use rtnetlink::{Handle, IpVersion};
use serde::Serialize;

use super::{parse_prefix, Family, FamilyArgs};
use crate::iproute2::{self, Named};
use crate::table::{self, Table};

#[derive(Subcommand, Debug)]
pub enum RuleCmd {
    /// Add a rule that looks up TABLE (like `ip rule add ... lookup TABLE`) or goes on at
    /// the rule of priority P (`ip rule add ... goto P`); an identical rule already present is
    /// left alone (changed: false)
    Add {
        #[command(flatten)]
        sel: Selectors,
        /// Table to look up: 1-4294967294, main, local, default or a name from rt_tables
        /// (`ip rule ... lookup T`)
        #[arg(long, value_name = "T", add = common::complete::names(table::names),
              required_unless_present = "goto", conflicts_with = "goto")]
        table: Option<Table>,
        /// Go on at the first rule of priority P, after this rule's own (`ip rule ... goto P`):
        /// the packets it matches skip the rules between
        #[arg(long, value_name = "P")]
        goto: Option<u32>,
    },
    /// Delete every rule with these selectors (like `ip rule del`); none present: changed: false
    Del {
        #[command(flatten)]
        sel: Selectors,
        /// Only rules that look up this table (`ip rule del ... lookup T`)
        #[arg(long, value_name = "T", add = common::complete::names(table::names),
              conflicts_with = "goto")]
        table: Option<Table>,
        /// Only rules that go on at priority P (`ip rule del ... goto P`)
        #[arg(long, value_name = "P")]
        goto: Option<u32>,
    },
    /// List the rules of both families, with every selector the kernel reports
    List {
        #[command(flatten)]
        family: FamilyArgs,
    },
}

/// What a rule matches on.
#[derive(Args, Debug, Clone)]
pub struct Selectors {
    /// Priority 0-4294967295 (`ip rule ... priority P`); without it the kernel picks one, and
    /// any priority matches for idempotency and `del`
    #[arg(long, value_name = "P")]
    priority: Option<u32>,
    /// Match the packets the other selectors do NOT match (`ip rule add not ...`)
    #[arg(long)]
    not: bool,
    /// Source prefix, or one address (`ip rule ... from CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix)]
    from: Option<IpNet>,
    /// Destination prefix, or one address (`ip rule ... to CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_prefix)]
    to: Option<IpNet>,
    /// Firewall mark, decimal or 0x-hex, with an optional mask (`ip rule ... fwmark N/MASK`)
    #[arg(long, value_name = "N[/MASK]")]
    fwmark: Option<Fwmark>,
    /// Incoming interface; it need not exist yet (`ip rule ... iif IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    iif: Option<IfName>,
    /// Outgoing interface; it need not exist yet (`ip rule ... oif IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    oif: Option<IfName>,
    /// Ignore the table's answer when its prefix is N bits or shorter, 0-128
    /// (`ip rule ... suppress_prefixlength N`; wg-quick's `lookup main suppress_prefixlength 0`)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u32).range(0..=128))]
    suppress_prefixlength: Option<u32>,
    /// Sockets of users A to B (`ip rule ... uidrange A-B`)
    #[arg(long, value_name = "A-B")]
    uidrange: Option<UidRange>,
    /// Transport protocol: tcp, udp or a number 0-255 (`ip rule ... ipproto P`)
    #[arg(long, value_name = "tcp|udp|N")]
    ipproto: Option<IpProto>,
    /// Source port or range (`ip rule ... sport P[-P]`)
    #[arg(long, value_name = "P[-P]")]
    sport: Option<PortRange>,
    /// Destination port or range (`ip rule ... dport P[-P]`)
    #[arg(long, value_name = "P[-P]")]
    dport: Option<PortRange>,
    #[command(flatten)]
    family: FamilyArgs,
}

/// `fwmark N[/MASK]`; without a mask every bit counts (0xffffffff), as in the kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Fwmark {
    pub mark: u32,
    pub mask: u32,
}

impl FromStr for Fwmark {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (mark, mask) = match s.split_once('/') {
            Some((m, k)) => (m, Some(k)),
            None => (s, None),
        };
        let bad = |part: &str, what: &str| {
            format!("fwmark '{s}': {what} '{part}' is not a 32-bit number (decimal or 0x-hex)")
        };
        let mark_v = common::num::parse_u32(mark).ok_or_else(|| bad(mark, "mark"))?;
        let mask_v = match mask {
            Some(k) => common::num::parse_u32(k).ok_or_else(|| bad(k, "mask"))?,
            None => u32::MAX,
        };
        Ok(Fwmark {
            mark: mark_v,
            mask: mask_v,
        })
    }
}

/// `uidrange A-B` (a single `A` is `A-A`), printed as `A-B` like `ip rule`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UidRange {
    pub start: u32,
    pub end: u32,
}

impl FromStr for UidRange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        match (a.parse::<u32>(), b.parse::<u32>()) {
            (Ok(start), Ok(end)) if start <= end => Ok(UidRange { start, end }),
            (Ok(_), Ok(_)) => Err(format!("uidrange '{s}' runs backwards")),
            _ => Err(format!("uidrange '{s}' is not A-B with user ids A <= B")),
        }
    }
}

impl fmt::Display for UidRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.start, self.end)
    }
}

impl Serialize for UidRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> std::result::Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// `ipproto tcp|udp|N`: the IP protocol number.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct IpProto(pub u8);

const TCP: u8 = 6;
const UDP: u8 = 17;

impl FromStr for IpProto {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "tcp" => Ok(IpProto(TCP)),
            "udp" => Ok(IpProto(UDP)),
            _ => s.parse().map(IpProto).map_err(|_| {
                format!("ipproto '{s}' is invalid: use tcp, udp or a number from 0 to 255")
            }),
        }
    }
}

impl IpProto {
    /// As the listings print it: `tcp`, `udp`, else the number (what the flag takes back).
    fn named(self) -> Named {
        match self.0 {
            TCP => Named::Name("tcp".into()),
            UDP => Named::Name("udp".into()),
            n => Named::Number(u32::from(n)),
        }
    }
}

impl fmt::Display for IpProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.named() {
            Named::Name(n) => f.write_str(&n),
            Named::Number(n) => n.fmt(f),
        }
    }
}

/// The selectors a user can set; two rules with equal `Match` match the same packets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Match {
    not: bool,
    src: Option<IpNet>,
    dst: Option<IpNet>,
    fwmark: Option<Fwmark>,
    iif: Option<String>,
    oif: Option<String>,
    suppress_prefixlength: Option<u32>,
    uidrange: Option<UidRange>,
    ipproto: Option<IpProto>,
    sport: Option<PortRange>,
    dport: Option<PortRange>,
}

/// What the kernel may report of a rule that routectl never sets.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct Foreign {
    tos: u8,
    l3mdev: bool,
    tun_id: Option<u64>,
    suppress_ifgroup: Option<u32>,
    realms: Option<RouteRealm>,
}

/// A rule: the one parsed form of what the user asked for and of what the kernel reports.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    family: Family,
    /// None: not given (a wanted rule), the kernel picks it.
    priority: Option<u32>,
    sel: Match,
    /// The table looked up; None: not given (a wanted rule), or not a lookup rule.
    table: Option<u32>,
    /// The priority a goto rule goes on at; None: not given (a wanted rule), or not a goto rule.
    goto: Option<u32>,
    /// A goto rule whose target priority has no rule (`FIB_RULE_UNRESOLVED`): the kernel's
    /// state of the rule, not part of what it is.
    unresolved: bool,
    action: RuleAction,
    foreign: Foreign,
    /// Who made it (`FRA_PROTOCOL`), as the kernel reports it.
    protocol: Option<u8>,
    iif_detached: bool,
    oif_detached: bool,
}

impl Rule {
    fn from_selectors(sel: &Selectors, table: Option<Table>, goto: Option<u32>) -> Result<Rule> {
        let mut addrs = Vec::new();
        if let Some(n) = sel.from {
            addrs.push((format!("--from {n}"), n.addr()));
        }
        if let Some(n) = sel.to {
            addrs.push((format!("--to {n}"), n.addr()));
        }
        let family = sel.family.resolve(&addrs)?;
        if let (Some(to), Some(p)) = (goto, sel.priority) {
            if to <= p {
                return Err(Error::invalid(format!(
                    "--goto {to} must be after the rule's own --priority {p}: a rule goes on only at a later one"
                )));
            }
        }
        if let (Some(n), Family::V4) = (sel.suppress_prefixlength, family) {
            if n > 32 {
                return Err(Error::invalid(format!(
                    "--suppress-prefixlength {n} is longer than an IPv4 prefix (0-32)"
                )));
            }
        }
        for (flag, range) in [("--sport", sel.sport), ("--dport", sel.dport)] {
            if let Some(r) = range.filter(|r| r.last.0 == u16::MAX) {
                return Err(Error::invalid(format!(
                    "{flag} {r}: a rule matches ports 1 to 65534 (the kernel refuses 65535)"
                )));
            }
        }
        Ok(Rule {
            family,
            priority: sel.priority,
            sel: Match {
                not: sel.not,
                src: sel.from,
                dst: sel.to,
                fwmark: sel.fwmark,
                iif: sel.iif.as_ref().map(|i| i.to_string()),
                oif: sel.oif.as_ref().map(|i| i.to_string()),
                suppress_prefixlength: sel.suppress_prefixlength,
                uidrange: sel.uidrange,
                ipproto: sel.ipproto,
                sport: sel.sport,
                dport: sel.dport,
            },
            table: table.map(|t| t.0),
            goto,
            unresolved: false,
            action: if goto.is_some() {
                RuleAction::Goto
            } else {
                RuleAction::ToTable
            },
            foreign: Foreign::default(),
            // What the kernel records for a rule added without one (RTPROT_UNSPEC).
            protocol: Some(0),
            iif_detached: false,
            oif_detached: false,
        })
    }

    fn from_message(msg: &RuleMessage) -> Option<Rule> {
        let h = &msg.header;
        let mut rule = Rule {
            family: Family::from_netlink(h.family)?,
            priority: Some(0),
            sel: Match {
                not: h.flags.contains(RuleFlags::Invert),
                ..Match::default()
            },
            table: Some(u32::from(h.table)),
            goto: None,
            unresolved: h.flags.contains(RuleFlags::Unresolved),
            action: h.action,
            foreign: Foreign {
                tos: h.tos,
                ..Foreign::default()
            },
            protocol: None,
            iif_detached: h.flags.contains(RuleFlags::IifDetached),
            oif_detached: h.flags.contains(RuleFlags::OifDetached),
        };
        let (mut mark, mut mask) = (None, None);
        let ports = |r: &RulePortRange| PortRange {
            first: Port(r.start),
            last: Port(r.end),
        };
        let (sel, foreign) = (&mut rule.sel, &mut rule.foreign);
        for attr in &msg.attributes {
            match attr {
                RuleAttribute::Priority(p) => rule.priority = Some(*p),
                RuleAttribute::Source(a) => sel.src = IpNet::new(*a, h.src_len).ok(),
                RuleAttribute::Destination(a) => sel.dst = IpNet::new(*a, h.dst_len).ok(),
                RuleAttribute::FwMark(m) => mark = Some(*m),
                RuleAttribute::FwMask(m) => mask = Some(*m),
                RuleAttribute::Iifname(n) => sel.iif = Some(n.clone()),
                RuleAttribute::Oifname(n) => sel.oif = Some(n.clone()),
                RuleAttribute::Table(t) => rule.table = Some(*t),
                RuleAttribute::SuppressPrefixLen(n) => {
                    sel.suppress_prefixlength = Some(*n).filter(|n| *n != u32::MAX);
                }
                RuleAttribute::UidRange(u) => {
                    sel.uidrange = Some(UidRange {
                        start: u.start,
                        end: u.end,
                    });
                }
                RuleAttribute::IpProtocol(p) => sel.ipproto = Some(IpProto(u8::from(*p))),
                RuleAttribute::SourcePortRange(r) => sel.sport = Some(ports(r)),
                RuleAttribute::DestinationPortRange(r) => sel.dport = Some(ports(r)),
                RuleAttribute::Protocol(p) => rule.protocol = Some(u8::from(*p)),
                RuleAttribute::L3MDev(on) => foreign.l3mdev = *on,
                RuleAttribute::TunId(t) => foreign.tun_id = Some(*t),
                RuleAttribute::SuppressIfGroup(g) => {
                    foreign.suppress_ifgroup = Some(*g).filter(|g| *g != u32::MAX);
                }
                RuleAttribute::Realm(r) => foreign.realms = Some(*r),
                RuleAttribute::Goto(g) => rule.goto = Some(*g),
                _ => {}
            }
        }
        if mark.is_some() || mask.is_some() {
            sel.fwmark = Some(Fwmark {
                mark: mark.unwrap_or(0),
                mask: mask.unwrap_or(u32::MAX),
            });
        }
        if rule.action != RuleAction::ToTable || rule.table == Some(0) {
            rule.table = None;
        }
        Some(rule)
    }

    /// True if `existing` (read from the kernel) is this rule; priority and table only count
    /// when given, and a rule with anything routectl does not set never matches.
    fn matches(&self, existing: &Rule) -> bool {
        existing.foreign == Foreign::default()
            && self.family == existing.family
            && (self.priority.is_none() || self.priority == existing.priority)
            && self.sel == existing.sel
            && (self.table.is_none()
                || (existing.action == RuleAction::ToTable && self.table == existing.table))
            && (self.goto.is_none()
                || (existing.action == RuleAction::Goto && self.goto == existing.goto))
            // (a wanted lookup rule is not a goto rule of the same selectors, nor the reverse)
            && (self.action == existing.action || (self.table.is_none() && self.goto.is_none()))
    }

    /// Nothing selects: `rule del` would remove every rule.
    fn selects_nothing(&self) -> bool {
        self.priority.is_none()
            && self.table.is_none()
            && self.goto.is_none()
            && self.sel == Match::default()
    }

    /// The message `ip rule add` would send: explicit to-table action (the crate's default
    /// `Unspec` makes a rule that does nothing), table id in the attribute (ids above 255),
    /// fwmask as a raw attribute (the crate has no setter).
    fn to_message(&self) -> RuleMessage {
        let mut msg = RuleMessage::default();
        let sel = &self.sel;
        msg.header.family = self.family.netlink();
        if sel.not {
            msg.header.flags |= RuleFlags::Invert;
        }
        let attrs = &mut msg.attributes;
        match self.goto {
            Some(to) => {
                msg.header.action = RuleAction::Goto;
                attrs.push(RuleAttribute::Goto(to));
            }
            None => {
                msg.header.action = RuleAction::ToTable;
                let table = self.table.unwrap_or(table::MAIN);
                msg.header.table = u8::try_from(table).unwrap_or(0);
                attrs.push(RuleAttribute::Table(table));
            }
        }
        if let Some(p) = self.priority {
            attrs.push(RuleAttribute::Priority(p));
        }
        if let Some(n) = sel.src {
            msg.header.src_len = n.prefix_len();
            attrs.push(RuleAttribute::Source(n.addr()));
        }
        if let Some(n) = sel.dst {
            msg.header.dst_len = n.prefix_len();
            attrs.push(RuleAttribute::Destination(n.addr()));
        }
        if let Some(f) = sel.fwmark {
            attrs.push(RuleAttribute::FwMark(f.mark));
            attrs.push(RuleAttribute::FwMask(f.mask));
        }
        if let Some(i) = &sel.iif {
            attrs.push(RuleAttribute::Iifname(i.clone()));
        }
        if let Some(o) = &sel.oif {
            attrs.push(RuleAttribute::Oifname(o.clone()));
        }
        if let Some(n) = sel.suppress_prefixlength {
            attrs.push(RuleAttribute::SuppressPrefixLen(n));
        }
        if let Some(u) = sel.uidrange {
            attrs.push(RuleAttribute::UidRange(RuleUidRange {
                start: u.start,
                end: u.end,
            }));
        }
        if let Some(p) = sel.ipproto {
            attrs.push(RuleAttribute::IpProtocol(p.0.into()));
        }
        let ports = |r: PortRange| RulePortRange {
            start: r.first.0,
            end: r.last.0,
        };
        if let Some(r) = sel.sport {
            attrs.push(RuleAttribute::SourcePortRange(ports(r)));
        }
        if let Some(r) = sel.dport {
            attrs.push(RuleAttribute::DestinationPortRange(ports(r)));
        }
        msg
    }

    /// The rule as the listings print it, in namespace `netns`.
    fn view(&self, netns: Option<String>) -> RuleView {
        let sel = &self.sel;
        let addr = |n: Option<IpNet>| n.map(|n| n.addr().to_string());
        let realms = self.foreign.realms.map(|r| match r.source {
            0 => r.destination.to_string(),
            s => format!("{s}/{}", r.destination),
        });
        RuleView {
            family: self.family.inet_name(),
            netns,
            priority: self.priority,
            not: sel.not,
            src: addr(sel.src),
            srclen: sel.src.map(|n| n.prefix_len()),
            dst: addr(sel.dst),
            dstlen: sel.dst.map(|n| n.prefix_len()),
            tos: Some(self.foreign.tos).filter(|t| *t != 0),
            fwmark: sel.fwmark.map(|f| f.mark),
            fwmask: sel.fwmark.map(|f| f.mask),
            iif: sel.iif.clone(),
            iif_detached: self.iif_detached,
            oif: sel.oif.clone(),
            oif_detached: self.oif_detached,
            l3mdev: self.foreign.l3mdev,
            uidrange: sel.uidrange,
            proto: sel.ipproto.map(IpProto::named),
            sport: sel.sport,
            dport: sel.dport,
            suppress_prefixlength: sel.suppress_prefixlength,
            suppress_ifgroup: self.foreign.suppress_ifgroup,
            tun_id: self.foreign.tun_id,
            realms,
            protocol: self
                .protocol
                .map(|p| iproute2::protocols().named(u32::from(p))),
            table: self.table.map(table::named),
            table_id: self.table,
            action: action_name(self.action),
            goto: self.goto,
            unresolved: self.unresolved,
        }
    }
}

/// A rule as `rule list`, `add` and `del` print it: every selector the kernel reports, each
/// key always present (`null`/`false` when unset), in the terms of docs/json.md.
#[derive(Debug, Serialize)]
pub struct RuleView {
    family: &'static str,
    netns: Option<String>,
    /// null only in a `--check` prediction of a rule whose priority the kernel will pick.
    priority: Option<u32>,
    not: bool,
    src: Option<String>,
    srclen: Option<u8>,
    dst: Option<String>,
    dstlen: Option<u8>,
    tos: Option<u8>,
    fwmark: Option<u32>,
    fwmask: Option<u32>,
    iif: Option<String>,
    iif_detached: bool,
    oif: Option<String>,
    oif_detached: bool,
    l3mdev: bool,
    uidrange: Option<UidRange>,
    /// The transport protocol (`ipproto`).
    proto: Option<Named>,
    sport: Option<PortRange>,
    dport: Option<PortRange>,
    suppress_prefixlength: Option<u32>,
    suppress_ifgroup: Option<u32>,
    tun_id: Option<u64>,
    realms: Option<String>,
    /// Who made the rule (`FRA_PROTOCOL`: `kernel`, `static`, ...).
    protocol: Option<Named>,
    table: Option<Named>,
    table_id: Option<u32>,
    action: Named,
    goto: Option<u32>,
    /// A goto rule whose target priority has no rule (`ip -j rule`'s `"unresolved"`).
    unresolved: bool,
}

/// What the rule does, as `ip rule` names it: `lookup`, `goto`, `nop`, `blackhole`,
/// `unreachable`, `prohibit`, else the number.
fn action_name(action: RuleAction) -> Named {
    let name = match u8::from(action) {
        1 => "lookup",
        2 => "goto",
        3 => "nop",
        6 => "blackhole",
        7 => "unreachable",
        8 => "prohibit",
        n => return Named::Number(u32::from(n)),
    };
    Named::Name(name.into())
}

/// The rule as `ip rule` writes it: `not from 10.0.0.0/8 fwmark 0x1/0xff lookup 100`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let sel = &self.sel;
        if sel.not {
            write!(f, "not ")?;
        }
        match sel.src {
            Some(n) => write!(f, "from {n}")?,
            None => write!(f, "from all")?,
        }
        if let Some(n) = sel.dst {
            write!(f, " to {n}")?;
        }
        if let Some(m) = sel.fwmark {
            write!(f, " fwmark {:#x}", m.mark)?;
            if m.mask != u32::MAX {
                write!(f, "/{:#x}", m.mask)?;
            }
        }
        if let Some(i) = &sel.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &sel.oif {
            write!(f, " oif {o}")?;
        }
        if let Some(u) = sel.uidrange {
            write!(f, " uidrange {u}")?;
        }
        if let Some(p) = sel.ipproto {
            write!(f, " ipproto {p}")?;
        }
        if let Some(p) = sel.sport {
            write!(f, " sport {p}")?;
        }
        if let Some(p) = sel.dport {
            write!(f, " dport {p}")?;
        }
        if let Some(t) = self.table {
            write!(f, " lookup {}", table::name(t))?;
        }
        if let Some(p) = self.goto {
            write!(f, " goto {p}")?;
        }
        if let Some(n) = sel.suppress_prefixlength {
            write!(f, " suppress_prefixlength {n}")?;
        }
        if let Some(p) = self.priority {
            write!(f, " priority {p}")?;
        }
        Ok(())
    }
}

/// Adds the rule MSG as `ip rule add` does (NLM_F_EXCL), asking for the rule as the kernel
/// holds it (NLM_F_ECHO, which the kernel answers before its acknowledgement): the rule to
/// report, without the dump of every rule after it (a hub center holds two per peer).
async fn add_echoed(
    handle: &Handle,
    msg: RuleMessage,
) -> std::result::Result<Option<RuleMessage>, rtnetlink::Error> {
    let flags = NLM_F_ACK | NLM_F_EXCL | NLM_F_CREATE | NLM_F_ECHO;
    let answers = common::nl::ask(handle, RouteNetlinkMessage::NewRule(msg), flags).await?;
    Ok(answers.into_iter().find_map(|a| match a {
        RouteNetlinkMessage::NewRule(rule) => Some(rule),
        _ => None,
    }))
}

/// The rules of one family (or both), in kernel order, parsed.
async fn dump(handle: &Handle, families: &[Family]) -> Result<Vec<(RuleMessage, Rule)>> {
    let mut all = Vec::new();
    for fam in families {
        let version = match fam {
            Family::V4 => IpVersion::V4,
            Family::V6 => IpVersion::V6,
        };
        let rules: Vec<RuleMessage> = handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .with_context(|| format!("listing {} rules", fam.inet_name()))?;
        all.extend(rules.into_iter().filter_map(|m| {
            let r = Rule::from_message(&m)?;
            Some((m, r))
        }));
    }
    Ok(all)
}

/// The rules of WANT's family that could be WANT (of its priority, when it names one), parsed.
/// The kernel has no request for one rule, only the dump of all: a hub's center holds two rules
/// a peer, and the messages of the other priorities are sifted as bytes, not parsed.
async fn dump_for(handle: &Handle, want: &Rule) -> Result<Vec<(RuleMessage, Rule)>> {
    const FRA_PRIORITY: u16 = 6;
    const FIB_RULE_HDR: usize = 12;
    // (a rule of priority 0, the kernel's `local`, is dumped without FRA_PRIORITY)
    let Some(priority) = want.priority.filter(|p| *p != 0) else {
        return dump(handle, &[want.family]).await;
    };
    let mut msg = RuleMessage::default();
    msg.header.family = want.family.netlink();
    let bytes = priority.to_ne_bytes();
    let answers = common::nl::dump_sifted(RouteNetlinkMessage::GetRule(msg), false, |m| {
        common::nl::attributes(m, FIB_RULE_HDR)
            .any(|(kind, value)| kind == FRA_PRIORITY && value == bytes)
    })
    .with_context(|| {
        format!(
            "listing {} rules of priority {priority}",
            want.family.inet_name()
        )
    })?;
    Ok(answers
        .into_iter()
        .filter_map(|a| match a {
            RouteNetlinkMessage::NewRule(m) => {
                let r = Rule::from_message(&m)?;
                Some((m, r))
            }
            _ => None,
        })
        .collect())
}

impl RuleCmd {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            RuleCmd::Add { sel, table, goto } => {
                add(ctx, &Rule::from_selectors(&sel, table, goto)?)
            }
            RuleCmd::Del { sel, table, goto } => {
                del(ctx, &Rule::from_selectors(&sel, table, goto)?)
            }
            RuleCmd::List { family } => list(ctx, family),
        }
    }
}

fn list(ctx: &Ctx, family: FamilyArgs) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let rules = ctx
        .block_on(dump(&handle, &family.families()))
        .with_context(|| format!("in {}", ctx.ns_label()))?;
    let views: Vec<RuleView> = rules
        .iter()
        .map(|(_, r)| r.view(ctx.netns_name()))
        .collect();
    Outcome::listing("rules", views)
}

fn add(ctx: &Ctx, want: &Rule) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let what = || format!("adding rule {want} in {}", ctx.ns_label());
    // A rule of a given priority and action needs no dump first: the kernel refuses to add a
    // second one equal to it (EEXIST, below), and every rule `matches` finds is one it calls
    // equal. (A hub's center holds two rules a peer; one dump of them cost a peer's add 0.7 ms
    // at 1,000 peers.)
    let exclusive = want.priority.is_some() && (want.table.is_some() || want.goto.is_some());
    if ctx.check || !exclusive {
        let before = ctx.block_on(dump_for(&handle, want)).with_context(what)?;
        if let Some((_, found)) = before.iter().find(|(_, r)| want.matches(r)) {
            return Outcome::object(false, "rule", found.view(ctx.netns_name()));
        }
    }
    if ctx.check {
        // The priority, when not given, is the kernel's to pick on the real run.
        return Outcome::object(true, "rule", want.view(ctx.netns_name()));
    }
    common::vlog!(1, "ip rule add {want} (in {})", ctx.ns_label());
    // (EEXIST: the rule is there, added before or by another process since the dump, as two
    // peers of one block adding their gate at once do, so this add changed nothing; or the
    // kernel holds one it calls equal that is not this one, which the dump below tells)
    let (raced, echoed) = match ctx.block_on(add_echoed(&handle, want.to_message())) {
        Ok(echoed) => (false, echoed.as_ref().and_then(Rule::from_message)),
        Err(e) if Kind::of(&e) == Kind::Exists => (true, None),
        Err(e) => return Err(e).with_context(what),
    };
    if let Some(added) = echoed.filter(|r| want.matches(r)) {
        return Outcome::object(true, "rule", added.view(ctx.netns_name()));
    }
    let after = ctx.block_on(dump_for(&handle, want)).with_context(what)?;
    let added = after.iter().map(|(_, r)| r).find(|r| want.matches(r));
    if raced && added.is_none() {
        return Err(Error::failed(format!(
            "{}: the kernel has an equal rule (EEXIST), which is not this one",
            what()
        )));
    }
    Outcome::object(!raced, "rule", added.unwrap_or(want).view(ctx.netns_name()))
}

fn del(ctx: &Ctx, want: &Rule) -> Result<Outcome> {
    if want.selects_nothing() {
        return Err(Error::invalid(
            "rule del needs at least one selector (--table, --goto, --priority, --from, --to, --fwmark, \
             --iif, --oif, --not, --suppress-prefixlength, --uidrange, --ipproto, --sport or --dport)",
        ));
    }
    let handle = ctx.netlink()?;
    let what = || format!("deleting rule {want} in {}", ctx.ns_label());
    let rules = ctx.block_on(dump_for(&handle, want)).with_context(what)?;
    let found: Vec<&(RuleMessage, Rule)> = rules.iter().filter(|(_, r)| want.matches(r)).collect();
    if !ctx.check && !found.is_empty() {
        common::vlog!(1, "ip rule del {want} (in {})", ctx.ns_label());
    }
    let delete = |msg| handle.rule().del(msg).execute();
    let view = |r: &Rule| r.view(ctx.netns_name());
    super::delete_found(ctx, "rules", &found, delete, view, what)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flag_values() {
        assert_eq!(
            "0x1/0xff".parse::<Fwmark>().unwrap(),
            Fwmark {
                mark: 1,
                mask: 0xff
            }
        );
        assert_eq!("7".parse::<Fwmark>().unwrap().mask, u32::MAX);
        let err = "0x1/0xzz".parse::<Fwmark>().unwrap_err();
        assert!(err.contains("'0xzz'"), "{err}");
        assert!("4294967296".parse::<Fwmark>().is_err());
        assert_eq!(
            "100-200".parse::<UidRange>().unwrap(),
            UidRange {
                start: 100,
                end: 200
            }
        );
        assert!("200-100"
            .parse::<UidRange>()
            .unwrap_err()
            .contains("200-100"));
        assert!("x".parse::<UidRange>().unwrap_err().contains("'x'"));
        assert_eq!("tcp".parse::<IpProto>().unwrap(), IpProto(6));
        assert_eq!("47".parse::<IpProto>().unwrap().to_string(), "47");
        assert!("256".parse::<IpProto>().unwrap_err().contains("'256'"));
    }

    fn every_selector() -> Rule {
        Rule {
            family: Family::V4,
            priority: Some(100),
            sel: Match {
                not: true,
                src: Some("10.1.0.0/24".parse().unwrap()),
                dst: Some("10.0.0.1/32".parse().unwrap()),
                fwmark: Some(Fwmark {
                    mark: 1,
                    mask: 0xff,
                }),
                iif: Some("eth0".into()),
                oif: Some("wg0".into()),
                suppress_prefixlength: Some(0),
                uidrange: Some(UidRange { start: 1, end: 2 }),
                ipproto: Some(IpProto(UDP)),
                sport: Some("53".parse().unwrap()),
                dport: Some("1000-2000".parse().unwrap()),
            },
            table: Some(1000),
            goto: None,
            unresolved: false,
            action: RuleAction::ToTable,
            foreign: Foreign::default(),
            protocol: None,
            iif_detached: false,
            oif_detached: false,
        }
    }

    #[test]
    fn message_round_trip() {
        let rule = every_selector();
        let msg = rule.to_message();
        assert_eq!(msg.header.action, RuleAction::ToTable);
        assert_eq!(Rule::from_message(&msg).unwrap(), rule);
        assert_eq!(
            rule.to_string(),
            "not from 10.1.0.0/24 to 10.0.0.1/32 fwmark 0x1/0xff iif eth0 oif wg0 uidrange 1-2 \
             ipproto udp sport 53 dport 1000-2000 lookup 1000 suppress_prefixlength 0 priority 100"
        );
    }

    #[test]
    fn view_of_every_part() {
        let v = serde_json::to_value(every_selector().view(Some("ns1".into()))).unwrap();
        // (Compared as JSON values: key order is the view struct's, not this list's.)
        let want: serde_json::Value = serde_json::from_str(
            r#"{"action":"lookup","dport":"1000-2000","dst":"10.0.0.1","dstlen":32,"family":"inet","fwmark":1,"fwmask":255,"goto":null,"iif":"eth0","iif_detached":false,"l3mdev":false,"netns":"ns1","not":true,"oif":"wg0","oif_detached":false,"priority":100,"proto":"udp","protocol":null,"realms":null,"sport":"53","src":"10.1.0.0","srclen":24,"suppress_ifgroup":null,"suppress_prefixlength":0,"table":1000,"table_id":1000,"tos":null,"tun_id":null,"uidrange":"1-2","unresolved":false}"#,
        )
        .unwrap();
        assert_eq!(v, want);
        // What routectl never sets still shows, and keeps such a rule from matching.
        let mut msg = every_selector().to_message();
        msg.header.tos = 0x10;
        msg.header.action = RuleAction::Goto;
        msg.attributes.push(RuleAttribute::Goto(7));
        msg.attributes.push(RuleAttribute::Realm(RouteRealm {
            source: 1,
            destination: 2,
        }));
        let got = Rule::from_message(&msg).unwrap();
        assert!(!every_selector().matches(&got));
        let v = serde_json::to_value(got.view(None)).unwrap();
        let shown = ["tos", "action", "goto", "table", "realms"].map(|k| v[k].to_string());
        assert_eq!(shown, ["16", r#""goto""#, "7", "null", r#""1/2""#]);
    }

    #[test]
    fn a_goto_rule_round_trips_and_is_not_a_lookup_rule() {
        let mut rule = every_selector();
        (rule.table, rule.goto, rule.action) = (None, Some(2000), RuleAction::Goto);
        let msg = rule.to_message();
        assert_eq!(msg.header.action, RuleAction::Goto);
        assert!(msg.attributes.contains(&RuleAttribute::Goto(2000)));
        assert_eq!(Rule::from_message(&msg).unwrap(), rule);
        assert!(rule
            .to_string()
            .ends_with("goto 2000 suppress_prefixlength 0 priority 100"));
        assert!(!every_selector().matches(&rule) && !rule.matches(&every_selector()));
    }
}
