//! `routectl rule`: policy routing rules (`ip rule`).
//!
//! A rule is matched by its selectors, table and (when given) priority, read back from the
//! kernel: the kernel itself happily stores duplicates, so `add` compares first.

use std::fmt;
use std::str::FromStr;

use clap::{Args, Subcommand};
use common::types::IfName;
use common::{Context, Ctx, Error, Outcome, Result};
use futures::TryStreamExt;
use ipnet::IpNet;
use netlink_packet_route::rule::{RuleAction, RuleAttribute, RuleFlags, RuleMessage};
use rtnetlink::{Handle, IpVersion};
use serde_json::{json, Map, Value};

use super::{parse_prefix, Family, FamilyArgs};
use crate::table::{self, Table};

#[derive(Subcommand, Debug)]
pub enum RuleCmd {
    /// Add a rule that looks up TABLE (like `ip rule add ... lookup TABLE`); an identical rule
    /// already present is left alone (changed: false)
    Add {
        #[command(flatten)]
        sel: Selectors,
        /// Table to look up: 1-4294967294, main, local or default (`ip rule ... lookup T`)
        #[arg(long, value_name = "T", add = common::complete::names(table::names))]
        table: Table,
    },
    /// Delete every rule with these selectors (like `ip rule del`); none present: changed: false
    Del {
        #[command(flatten)]
        sel: Selectors,
        /// Only rules that look up this table (`ip rule del ... lookup T`)
        #[arg(long, value_name = "T", add = common::complete::names(table::names))]
        table: Option<Table>,
    },
    /// List the rules of both families, with the fields `ip -j rule show` prints
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

/// A rule in the terms we compare: the selectors and table we set, and whether the kernel's
/// rule has anything else we do not model (tos, `not`, goto, uid/port ranges, ...).
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rule {
    family: Family,
    priority: Option<u32>,
    src: Option<IpNet>,
    dst: Option<IpNet>,
    fwmark: Option<Fwmark>,
    iif: Option<String>,
    oif: Option<String>,
    table: Option<u32>,
    action: RuleAction,
    extra: bool,
}

impl Rule {
    fn from_selectors(sel: &Selectors, table: Option<Table>) -> Result<Rule> {
        let mut addrs = Vec::new();
        if let Some(n) = sel.from {
            addrs.push((format!("--from {n}"), n.addr()));
        }
        if let Some(n) = sel.to {
            addrs.push((format!("--to {n}"), n.addr()));
        }
        Ok(Rule {
            family: sel.family.resolve(&addrs)?,
            priority: sel.priority,
            src: sel.from,
            dst: sel.to,
            fwmark: sel.fwmark,
            iif: sel.iif.as_ref().map(|i| i.to_string()),
            oif: sel.oif.as_ref().map(|i| i.to_string()),
            table: table.map(|t| t.0),
            action: RuleAction::ToTable,
            extra: false,
        })
    }

    fn from_message(msg: &RuleMessage) -> Option<Rule> {
        let family = Family::from_netlink(msg.header.family)?;
        let mut rule = Rule {
            family,
            priority: Some(0),
            src: None,
            dst: None,
            fwmark: None,
            iif: None,
            oif: None,
            table: Some(u32::from(msg.header.table)),
            action: msg.header.action,
            extra: msg.header.tos != 0 || msg.header.flags.contains(RuleFlags::Invert),
        };
        let (mut mark, mut mask) = (None, None);
        for attr in &msg.attributes {
            match attr {
                RuleAttribute::Priority(p) => rule.priority = Some(*p),
                RuleAttribute::Source(a) => {
                    rule.src = IpNet::new(*a, msg.header.src_len).ok();
                }
                RuleAttribute::Destination(a) => {
                    rule.dst = IpNet::new(*a, msg.header.dst_len).ok();
                }
                RuleAttribute::FwMark(m) => mark = Some(*m),
                RuleAttribute::FwMask(m) => mask = Some(*m),
                RuleAttribute::Iifname(n) => rule.iif = Some(n.clone()),
                RuleAttribute::Oifname(n) => rule.oif = Some(n.clone()),
                RuleAttribute::Table(t) => rule.table = Some(*t),
                RuleAttribute::Protocol(_) => {}
                RuleAttribute::SuppressPrefixLen(n) if *n == u32::MAX => {}
                _ => rule.extra = true,
            }
        }
        if mark.is_some() || mask.is_some() {
            rule.fwmark = Some(Fwmark {
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
    /// when given.
    fn matches(&self, existing: &Rule) -> bool {
        !existing.extra
            && self.family == existing.family
            && (self.priority.is_none() || self.priority == existing.priority)
            && self.src == existing.src
            && self.dst == existing.dst
            && self.fwmark == existing.fwmark
            && self.iif == existing.iif
            && self.oif == existing.oif
            && (self.table.is_none()
                || (existing.action == RuleAction::ToTable && self.table == existing.table))
    }

    /// The message `ip rule add` would send: explicit to-table action (the crate's default
    /// `Unspec` makes a rule that does nothing), table id in the attribute (ids above 255),
    /// fwmask as a raw attribute (the crate has no setter).
    fn to_message(&self) -> RuleMessage {
        let mut msg = RuleMessage::default();
        msg.header.family = self.family.netlink();
        msg.header.action = RuleAction::ToTable;
        let table = self.table.unwrap_or(table::MAIN);
        msg.header.table = u8::try_from(table).unwrap_or(0);
        let attrs = &mut msg.attributes;
        attrs.push(RuleAttribute::Table(table));
        if let Some(p) = self.priority {
            attrs.push(RuleAttribute::Priority(p));
        }
        if let Some(n) = self.src {
            msg.header.src_len = n.prefix_len();
            attrs.push(RuleAttribute::Source(n.addr()));
        }
        if let Some(n) = self.dst {
            msg.header.dst_len = n.prefix_len();
            attrs.push(RuleAttribute::Destination(n.addr()));
        }
        if let Some(f) = self.fwmark {
            attrs.push(RuleAttribute::FwMark(f.mark));
            attrs.push(RuleAttribute::FwMask(f.mask));
        }
        if let Some(i) = &self.iif {
            attrs.push(RuleAttribute::Iifname(i.clone()));
        }
        if let Some(o) = &self.oif {
            attrs.push(RuleAttribute::Oifname(o.clone()));
        }
        msg
    }
}

/// The rule as `ip rule` writes it: `from 10.0.0.0/8 fwmark 0x1/0xff lookup 100`.
impl fmt::Display for Rule {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.src {
            Some(n) => write!(f, "from {n}")?,
            None => write!(f, "from all")?,
        }
        if let Some(n) = self.dst {
            write!(f, " to {n}")?;
        }
        if let Some(m) = self.fwmark {
            write!(f, " fwmark {}", hex(m.mark))?;
            if m.mask != u32::MAX {
                write!(f, "/{}", hex(m.mask))?;
            }
        }
        if let Some(i) = &self.iif {
            write!(f, " iif {i}")?;
        }
        if let Some(o) = &self.oif {
            write!(f, " oif {o}")?;
        }
        if let Some(t) = self.table {
            write!(f, " lookup {}", table::name(t))?;
        }
        if let Some(p) = self.priority {
            write!(f, " priority {p}")?;
        }
        Ok(())
    }
}

/// `%#x` as iproute2 prints marks: `0` or `0x1f`.
fn hex(v: u32) -> String {
    if v == 0 {
        "0".into()
    } else {
        format!("{v:#x}")
    }
}

/// A rule as `ip -j rule show` prints it (same keys, same values), plus `family`.
fn rule_json(msg: &RuleMessage) -> Value {
    let mut o = Map::new();
    let fam = Family::from_netlink(msg.header.family);
    o.insert("family".into(), json!(fam.map(Family::inet_name)));
    let priority = rule_attr(msg, |a| match a {
        RuleAttribute::Priority(p) => Some(*p),
        _ => None,
    });
    o.insert("priority".into(), json!(priority.unwrap_or(0)));
    selectors_json(msg, fam, &mut o);
    attributes_json(msg, &mut o);
    action_json(msg, &mut o);
    Value::Object(o)
}

/// The first attribute of the rule that `pick` takes.
fn rule_attr<T>(msg: &RuleMessage, pick: impl Fn(&RuleAttribute) -> Option<T>) -> Option<T> {
    msg.attributes.iter().find_map(pick)
}

/// What the rule matches: `not`, `src`/`srclen`, `dst`/`dstlen`, `tos`, `fwmark`/`fwmask`,
/// `iif`, `oif` (and whether those are detached).
fn selectors_json(msg: &RuleMessage, fam: Option<Family>, o: &mut Map<String, Value>) {
    let h = &msg.header;
    if h.flags.contains(RuleFlags::Invert) {
        o.insert("not".into(), Value::Null);
    }
    let host_len = if fam == Some(Family::V6) { 128 } else { 32 };
    let src = rule_attr(msg, |a| match a {
        RuleAttribute::Source(s) => Some(s.to_string()),
        _ => None,
    });
    let dst = rule_attr(msg, |a| match a {
        RuleAttribute::Destination(s) => Some(s.to_string()),
        _ => None,
    });
    for (key, addr, len, all) in [
        ("src", src, h.src_len, true),
        ("dst", dst, h.dst_len, false),
    ] {
        match addr {
            Some(a) => {
                o.insert(key.into(), json!(a));
                if len != host_len {
                    o.insert(format!("{key}len"), json!(len));
                }
            }
            None if len != 0 => {
                o.insert(key.into(), json!("0"));
                o.insert(format!("{key}len"), json!(len));
            }
            None if all => {
                o.insert(key.into(), json!("all"));
            }
            None => {}
        }
    }
    if h.tos != 0 {
        o.insert("tos".into(), json!(format!("{:#x}", h.tos)));
    }
    let mark = rule_attr(msg, |a| match a {
        RuleAttribute::FwMark(m) => Some(*m),
        _ => None,
    });
    let mask = rule_attr(msg, |a| match a {
        RuleAttribute::FwMask(m) => Some(*m),
        _ => None,
    });
    if mark.is_some() || mask.is_some() {
        o.insert("fwmark".into(), json!(hex(mark.unwrap_or(0))));
        let mask = mask.unwrap_or(u32::MAX);
        if mask != u32::MAX {
            o.insert("fwmask".into(), json!(hex(mask)));
        }
    }
    for a in &msg.attributes {
        let (key, name, detached) = match a {
            RuleAttribute::Iifname(n) => ("iif", n, RuleFlags::IifDetached),
            RuleAttribute::Oifname(n) => ("oif", n, RuleFlags::OifDetached),
            _ => continue,
        };
        o.insert(key.into(), json!(name));
        if h.flags.contains(detached) {
            o.insert(format!("{key}_detached"), Value::Null);
        }
    }
}

/// Who made the rule and where it looks: `protocol` (unless unspecified or kernel), `table`.
fn attributes_json(msg: &RuleMessage, o: &mut Map<String, Value>) {
    // The last one that says something: 0 (unspec) and 2 (kernel) are not printed.
    let protocol = msg.attributes.iter().rev().find_map(|a| match a {
        RuleAttribute::Protocol(p) => Some(u8::from(*p)).filter(|p| *p != 0 && *p != 2),
        _ => None,
    });
    if let Some(p) = protocol {
        o.insert("protocol".into(), json!(crate::cmd::protocol_name(p)));
    }
    let table = rule_attr(msg, |a| match a {
        RuleAttribute::Table(t) => Some(*t),
        _ => None,
    })
    .unwrap_or(u32::from(msg.header.table));
    if table != 0 {
        o.insert("table".into(), json!(table::name(table)));
    }
}

/// What the rule does besides looking up its table: `goto`, `nop` or `action`.
fn action_json(msg: &RuleMessage, o: &mut Map<String, Value>) {
    match msg.header.action {
        RuleAction::ToTable => {}
        RuleAction::Goto => {
            let target = rule_attr(msg, |a| match a {
                RuleAttribute::Goto(g) => Some(json!(g)),
                _ => None,
            });
            o.insert("goto".into(), target.unwrap_or(json!("none")));
        }
        RuleAction::Nop => {
            o.insert("nop".into(), Value::Null);
        }
        other => {
            let name = match u8::from(other) {
                0 => "none".to_string(),
                6 => "blackhole".to_string(),
                7 => "unreachable".to_string(),
                8 => "prohibit".to_string(),
                n => n.to_string(),
            };
            o.insert("action".into(), json!(name));
        }
    }
}

/// The rules of one family (or both), in kernel order.
async fn dump(handle: &Handle, families: &[Family]) -> Result<Vec<RuleMessage>> {
    let mut all = Vec::new();
    for fam in families {
        let version = match fam {
            Family::V4 => IpVersion::V4,
            Family::V6 => IpVersion::V6,
        };
        let mut rules: Vec<RuleMessage> = handle
            .rule()
            .get(version)
            .execute()
            .try_collect()
            .await
            .with_context(|| format!("listing {} rules", fam.inet_name()))?;
        all.append(&mut rules);
    }
    Ok(all)
}

fn matching<'a>(want: &Rule, rules: &'a [RuleMessage]) -> Vec<&'a RuleMessage> {
    rules
        .iter()
        .filter(|m| Rule::from_message(m).is_some_and(|r| want.matches(&r)))
        .collect()
}

impl RuleCmd {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        match self {
            RuleCmd::Add { sel, table } => add(ctx, &Rule::from_selectors(&sel, Some(table))?),
            RuleCmd::Del { sel, table } => {
                let want = Rule::from_selectors(&sel, table)?;
                if want == Rule::from_selectors(&Selectors::empty(sel.family), None)? {
                    return Err(Error::invalid(
                        "rule del needs at least one selector (--table, --priority, --from, --to, --fwmark, --iif or --oif)",
                    ));
                }
                del(ctx, &want)
            }
            RuleCmd::List { family } => {
                let families = match (family.ipv4, family.ipv6) {
                    (true, _) => vec![Family::V4],
                    (_, true) => vec![Family::V6],
                    _ => vec![Family::V4, Family::V6],
                };
                let handle = ctx.netlink()?;
                let rules = ctx
                    .block_on(dump(&handle, &families))
                    .with_context(|| format!("in {}", ctx.ns_label()))?;
                let rules: Vec<Value> = rules.iter().map(rule_json).collect();
                Outcome::json(json!({"changed": false, "rules": rules}))
            }
        }
    }
}

impl Selectors {
    fn empty(family: FamilyArgs) -> Selectors {
        Selectors {
            priority: None,
            from: None,
            to: None,
            fwmark: None,
            iif: None,
            oif: None,
            family,
        }
    }
}

fn add(ctx: &Ctx, want: &Rule) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let what = || format!("adding rule {want} in {}", ctx.ns_label());
    let before = ctx
        .block_on(dump(&handle, &[want.family]))
        .with_context(what)?;
    if let Some(found) = matching(want, &before).first() {
        return Outcome::json(json!({"changed": false, "rule": rule_json(found)}));
    }
    let msg = want.to_message();
    if ctx.check {
        let mut predicted = rule_json(&msg);
        if want.priority.is_none() {
            // The kernel picks it on the real run.
            predicted["priority"] = Value::Null;
        }
        return Outcome::json(json!({"changed": true, "rule": predicted}));
    }
    common::vlog!(1, "ip rule add {want} (in {})", ctx.ns_label());
    let mut req = handle.rule().add();
    *req.message_mut() = msg.clone();
    ctx.block_on(req.execute()).with_context(what)?;
    let after = ctx
        .block_on(dump(&handle, &[want.family]))
        .with_context(what)?;
    let added = matching(want, &after)
        .first()
        .map_or_else(|| rule_json(&msg), |m| rule_json(m));
    Outcome::json(json!({"changed": true, "rule": added}))
}

fn del(ctx: &Ctx, want: &Rule) -> Result<Outcome> {
    let handle = ctx.netlink()?;
    let what = || format!("deleting rule {want} in {}", ctx.ns_label());
    let rules = ctx
        .block_on(dump(&handle, &[want.family]))
        .with_context(what)?;
    let found = matching(want, &rules);
    let listed: Vec<Value> = found.iter().map(|m| rule_json(m)).collect();
    if !ctx.check {
        for msg in found {
            common::vlog!(1, "ip rule del {want} (in {})", ctx.ns_label());
            match ctx.block_on(handle.rule().del((*msg).clone()).execute()) {
                Ok(()) => {}
                Err(e) if common::nl::is_absent(&e) => {}
                Err(e) => return Err(Error::caused(what(), e)),
            }
        }
    }
    Outcome::json(json!({"changed": !listed.is_empty(), "rules": listed}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fwmarks() {
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
    }

    #[test]
    fn message_round_trip() {
        let rule = Rule {
            family: Family::V4,
            priority: Some(100),
            src: Some("10.1.0.0/24".parse().unwrap()),
            dst: None,
            fwmark: Some(Fwmark {
                mark: 1,
                mask: 0xff,
            }),
            iif: Some("eth0".into()),
            oif: None,
            table: Some(1000),
            action: RuleAction::ToTable,
            extra: false,
        };
        let msg = rule.to_message();
        assert_eq!(msg.header.action, RuleAction::ToTable);
        assert_eq!(Rule::from_message(&msg).unwrap(), rule);
        let j = rule_json(&msg);
        assert_eq!(j["table"], "1000");
        assert_eq!(j["srclen"], 24);
        assert_eq!(j["fwmask"], "0xff");
        assert_eq!(
            rule.to_string(),
            "from 10.1.0.0/24 fwmark 0x1/0xff iif eth0 lookup 1000 priority 100"
        );
    }

    #[test]
    fn json_of_every_part() {
        use netlink_packet_route::route::RouteProtocol;
        let rule = Rule {
            family: Family::V4,
            priority: Some(5),
            src: Some("10.0.0.1/32".parse().unwrap()),
            dst: Some("10.0.0.0/8".parse().unwrap()),
            fwmark: Some(Fwmark { mark: 0, mask: 7 }),
            iif: Some("e".into()),
            oif: Some("wg0".into()),
            table: Some(253),
            action: RuleAction::ToTable,
            extra: false,
        };
        let mut m = rule.to_message();
        assert_eq!(
            rule_json(&m).to_string(),
            r#"{"dst":"10.0.0.0","dstlen":8,"family":"inet","fwmark":"0","fwmask":"0x7","iif":"e","oif":"wg0","priority":5,"src":"10.0.0.1","table":"default"}"#
        );
        m.header.flags = RuleFlags::Invert | RuleFlags::IifDetached | RuleFlags::OifDetached;
        m.header.tos = 0x10;
        m.header.src_len = 3;
        m.header.action = RuleAction::Goto;
        m.attributes
            .retain(|a| !matches!(a, RuleAttribute::Source(_)));
        m.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::Static));
        m.attributes
            .push(RuleAttribute::Protocol(RouteProtocol::Kernel));
        m.attributes.push(RuleAttribute::Goto(7));
        assert_eq!(
            rule_json(&m).to_string(),
            r#"{"dst":"10.0.0.0","dstlen":8,"family":"inet","fwmark":"0","fwmask":"0x7","goto":7,"iif":"e","iif_detached":null,"not":null,"oif":"wg0","oif_detached":null,"priority":5,"protocol":"static","src":"0","srclen":3,"table":"default","tos":"0x10"}"#
        );
        m.header.action = RuleAction::Other(42);
        m.header.table = 100;
        m.header.dst_len = 9;
        m.attributes.retain(|a| {
            !matches!(
                a,
                RuleAttribute::Table(_)
                    | RuleAttribute::FwMark(_)
                    | RuleAttribute::FwMask(_)
                    | RuleAttribute::Destination(_)
            )
        });
        assert_eq!(
            rule_json(&m).to_string(),
            r#"{"action":"42","dst":"0","dstlen":9,"family":"inet","iif":"e","iif_detached":null,"not":null,"oif":"wg0","oif_detached":null,"priority":5,"protocol":"static","src":"0","srclen":3,"table":"100","tos":"0x10"}"#
        );
    }
}
