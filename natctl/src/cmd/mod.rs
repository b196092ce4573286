//! One module per verb. The seven rule verbs each turn their arguments into a [`Rule`] and share
//! one add path ([`add`]); `list`, `del` and `flush` work on what the kernel holds.

pub mod connmark;
pub mod del;
pub mod dnat;
pub mod element;
pub mod filter;
pub mod flush;
pub mod list;
pub mod mark;
pub mod masquerade;
pub mod netmap;
pub mod set;
pub mod snat;
pub mod zone;

use std::cell::RefCell;
use std::collections::HashSet;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use common::{Context, Ctx, Error, Outcome, Result};

use crate::nft::cache::Presence;
use crate::nft::list::KernelRule;
use crate::nft::pending::Add;
use crate::nft::{self, encode::COMMENT_MAX, lock, Structure, TABLE_LABEL};
use crate::rule::Family;
use crate::rule::{parse_comment, Match, Rule};
use crate::set::{KeyType, SetName, ValueType};

/// The verbs that add a rule.
#[derive(Subcommand, Debug, Clone)]
pub enum RuleCmd {
    /// Source NAT to the outgoing interface's address
    /// (like `nft add rule inet natctl srcnat oifname IFACE ip saddr CIDR masquerade`)
    Masquerade(masquerade::Masquerade),
    /// Source NAT to an address or address range (like `... srcnat ip saddr CIDR snat ip to ADDR`)
    Snat(snat::Snat),
    /// Destination NAT, e.g. a port forward
    /// (like `... dstnat ip daddr ADDR tcp dport PORT dnat ip to ADDR:PORT`)
    Dnat(dnat::Dnat),
    /// 1:1 mapping of a whole prefix onto another of the same length, like iptables NETMAP
    /// (`... dstnat ip daddr FROM dnat ip prefix to TO` or `... srcnat ip saddr FROM snat ip prefix to TO`)
    Netmap(netmap::Netmap),
    /// Conntrack zone for traffic arriving on an interface, or (--local) that this namespace
    /// originates, like iptables `CT --zone[-orig|-reply]`
    /// (`... zones iifname IFACE ip daddr CIDR ct original zone set N`, `... zones_out ip daddr
    /// CIDR ct reply zone set N`)
    Zone(zone::Zone),
    /// Packet mark (fwmark) for traffic arriving on an interface, or (--local) that this
    /// namespace originates, for policy routing (`... marks iifname IFACE ip daddr CIDR meta mark
    /// set N`, `... marks_out ip daddr CIDR meta mark set N`)
    Mark(mark::Mark),
    /// Connection mark by incoming interface or by destination, restored onto the replies as
    /// their fwmark (`... connmarks iifname IFACE ct mark set N` or `... connmarks ip daddr CIDR
    /// ct mark set N`, and `... ct direction reply ct mark N meta mark set ct mark`), so policy
    /// routing sends replies back the way they came
    Connmark(connmark::Connmark),
    /// Access control by incoming interface: accept or drop forwarded traffic (or, with
    /// --local, traffic to this namespace) by source, destination, protocol, port and
    /// connection direction, with a default per interface (`... forward iifname IFACE ip daddr
    /// CIDR accept`, inserted before `... forward iifname IFACE drop`)
    Filter(filter::Filter),
}

impl RuleCmd {
    /// Validates the arguments into a rule (exit 2 on bad input).
    /// Validates the arguments into a rule (exit 2 on bad input), without the kernel: a rule
    /// naming sets of addresses without `--family` has no family yet ([`sets_of`]).
    fn parsed(&self) -> Result<Rule> {
        match self {
            RuleCmd::Masquerade(c) => c.rule(),
            RuleCmd::Snat(c) => c.rule(),
            RuleCmd::Dnat(c) => c.rule(),
            RuleCmd::Netmap(c) => c.rule(),
            RuleCmd::Zone(c) => c.rule(),
            RuleCmd::Mark(c) => c.rule(),
            RuleCmd::Connmark(c) => c.rule(),
            RuleCmd::Filter(c) => c.rule(),
        }
    }

    /// Validates the arguments into a rule (exit 2 on bad input).
    pub fn rule(&self) -> Result<Rule> {
        fits(self.parsed()?)
    }

    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let mut rule = self.parsed()?;
        sets_of(ctx, &mut rule)?;
        add(ctx, &fits(rule)?)
    }
}

/// RULE, unless its canonical arguments are too long to store in its comment (exit 2).
fn fits(rule: Rule) -> Result<Rule> {
    {
        if rule.comment().len() > COMMENT_MAX {
            return Err(Error::invalid(format!(
                "the arguments '{}' are too long to store in the rule ({COMMENT_MAX} bytes at most)",
                rule.canonical()
            )));
        }
        Ok(rule)
    }
}

/// The stored form: canonical arguments parsed with the command line's own parser.
#[derive(Parser, Debug)]
#[command(no_binary_name = true)]
struct Stored {
    #[command(subcommand)]
    rule: RuleCmd,
}

thread_local! {
    /// Built once: constructing the clap command costs more than parsing one rule with it.
    static STORED: RefCell<clap::Command> = RefCell::new(Stored::command());
}

/// The ids of a dump of natctl's table that are intact, and the others (the audit, with this
/// parser to rebuild each rule from its comment).
fn classify(kernel: &[KernelRule]) -> (HashSet<String>, HashSet<String>) {
    crate::audit::classify(kernel, stored_rule)
}

/// Rebuilds a rule from a comment natctl wrote; None for anything else.
pub fn stored_rule(comment: &str) -> Option<Rule> {
    let (_, canonical) = parse_comment(comment)?;
    let matches = STORED
        .with(|cmd| {
            cmd.borrow_mut()
                .try_get_matches_from_mut(canonical.split_whitespace())
        })
        .ok()?;
    Stored::from_arg_matches(&matches).ok()?.rule.rule().ok()
}

/// What a failed read of natctl's table was doing, for error messages.
pub fn reading(ctx: &Ctx) -> String {
    format!("reading {TABLE_LABEL} in {}", ctx.ns_label())
}

/// Adds `rule` unless its id is already there, intact; one transaction, under the namespace
/// lock so concurrent natctls neither duplicate nor lose rules. (Every command takes the lock,
/// `--check` too, so its answer is what the real run would report at that moment.)
///
/// An id whose nftables rules are not exactly what it stands for (one was changed behind
/// natctl's back, a part was deleted, or a natctl before this one made the rule differently:
/// see `audit`) is replaced: the same transaction deletes every nftables rule carrying the id
/// and adds the rule anew (its counters restart).
fn add(ctx: &Ctx, rule: &Rule) -> Result<Outcome> {
    let id = rule.id();
    let what = || {
        format!(
            "adding rule {id} ({}) to {TABLE_LABEL} in {}",
            rule.canonical(),
            ctx.ns_label()
        )
    };
    let lock = lock::namespace(&ctx.ns_label())?;
    // (an earlier line of this batch adds it, in a transaction still to come: see `pending`)
    let (pending, planned) = nft::pending::pending(&lock, &id);
    let mut seen = nft::cache::with_ids(&lock, classify, |ids| ids.presence(&id))
        .with_context(|| reading(ctx))?;
    let presence = seen.answer;
    if presence == Presence::Intact || planned {
        return Outcome::object(false, "rule", rule.view(ctx.netns_name()));
    }
    let mut replacing = Vec::new();
    if presence == Presence::Stale {
        // (the handles need a dump, unless this process has one of this generation)
        let found = nft::cache::with_rules(&lock, classify, |kernel| {
            kernel
                .iter()
                .filter(|k| k.id() == Some(id.as_str()))
                .map(|k| (k.chain.clone(), k.handle))
                .collect::<Vec<_>>()
        })
        .with_context(|| reading(ctx))?;
        (seen.generation, seen.complete) = (found.generation, found.complete);
        replacing = found.answer;
    }
    if !ctx.check {
        for (chain, handle) in &replacing {
            common::vlog!(
                1,
                "nft delete rule inet natctl {chain} handle {handle} (carries id {id}, but is not what it stands for)"
            );
        }
        for part in &rule.parts {
            common::vlog!(
                1,
                "nft {} rule inet natctl {} ... comment \"{}\"",
                if part.at_head() { "insert" } else { "add" },
                nft::dispatch::chain_of(part),
                rule.comment()
            );
        }
        let structure = if seen.complete || pending {
            Structure::Complete
        } else {
            // (the dump this process made to find the ids, unless they came from the store)
            let lacking = nft::cache::with_rules(&lock, classify, |kernel| {
                nft::dispatch::lacking(
                    kernel
                        .iter()
                        .map(|k| (k.chain.as_str(), k.comment.as_deref(), k.handle)),
                )
            })
            .with_context(|| reading(ctx))?;
            seen.generation = lacking.generation;
            // (every base chain with all its dispatch rules: the table, the chains and the maps
            // those rules look up are there too)
            if lacking.answer.is_empty() {
                Structure::Complete
            } else {
                Structure::Lacking(lacking.answer)
            }
        };
        let add = Add {
            rule: rule.clone(),
            id: id.clone(),
            structure,
            replacing,
            what: what(),
        };
        if ctx.defer && nft::pending::may_defer(&lock) {
            nft::pending::defer(&lock, seen.generation, add);
        } else {
            nft::add_rule(rule, &add.structure, &add.replacing).with_context(what)?;
            let chains = nft::dispatch::chains_of(rule);
            let change = nft::cache::Change::Added(&id, &chains);
            nft::cache::committed(&lock, seen.generation, &[change]);
        }
    }
    Outcome::object(true, "rule", rule.view(ctx.netns_name()))
}

/// How a rule uses a set of natctl's.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Use {
    /// `--iif @SET`: looks the incoming interface up.
    Iif,
    /// `--dst @SET`: looks the destination address up.
    Dst,
    /// `--zone @MAP`, `mark --set @MAP`, `snat --to @MAP`: takes its value from the map.
    Value,
}

/// Checks every set RULE names against the kernel's: there, of a type its use takes (the kernel
/// would take a set of another type and compare the key's first bytes with its keys), and of
/// one family, which the rule then has (`--family`, when not given, is read from the sets).
fn sets_of(ctx: &Ctx, rule: &mut Rule) -> Result<()> {
    let mut uses: Vec<(&str, Use)> = Vec::new();
    for part in &rule.parts {
        for m in &part.matches {
            let named = match m {
                // (a set natctl keeps beside a map, `M.keys`, is checked with its map M)
                Match::IifIn(set) if set.contains('.') => continue,
                Match::IifIn(set) => (set.as_str(), Use::Iif),
                Match::DstIn(set) => (set.as_str(), Use::Dst),
                _ => continue,
            };
            if !uses.contains(&named) {
                uses.push(named);
            }
        }
        if let Some(map) = part.action.map() {
            if !uses.contains(&(map, Use::Value)) {
                uses.push((map, Use::Value));
            }
        }
    }
    let value_flag = match rule.kind {
        "zone" => "--zone",
        "mark" | "connmark" => "--set",
        _ => "--to",
    };
    let mut family: Option<(Family, String)> = None;
    for &(name, used) in &uses {
        // (a name that parsed as the rule's argument)
        let set: SetName = name.parse().map_err(Error::invalid)?;
        let flag = match used {
            Use::Iif => "--iif",
            Use::Dst if rule.kind == "dnat" => "--daddr",
            Use::Dst => "--dst",
            Use::Value => value_flag,
        };
        let what = format!("{} {flag} @{set}", rule.kind);
        let Some(def) = nft::set::get(&set).with_context(|| reading(ctx))? else {
            return Err(Error::failed(format!(
                "{what}: there is no set {set} in {TABLE_LABEL} in {} (natctl set add {set} ...)",
                ctx.ns_label()
            )));
        };
        // (a map's keys are looked up for its value; kernels before 6.4 refuse a map as a set)
        if used != Use::Value && def.value.is_some() && !uses.contains(&(name, Use::Value)) {
            return Err(Error::invalid(format!(
                "{what}: {set} is a map, whose keys a rule looks up for the value it takes (zone --zone @{set}, mark or connmark --set @{set}, snat --to @{set}); a match takes a set"
            )));
        }
        let (fits, implied) = match used {
            Use::Iif => (def.key == KeyType::Ifname, None),
            Use::Dst => match def.key {
                KeyType::Ipv4Addr => (true, Some(Family::V4)),
                KeyType::Ipv6Addr => (true, Some(Family::V6)),
                _ => (false, None),
            },
            Use::Value => match (rule.kind, def.value) {
                ("zone", Some(ValueType::Zone))
                | ("mark", Some(ValueType::Mark))
                | ("connmark", Some(ValueType::Ctmark)) => (true, None),
                ("snat", Some(ValueType::Ipv4Addr)) => (true, Some(Family::V4)),
                ("snat", Some(ValueType::Ipv6Addr)) => (true, Some(Family::V6)),
                _ => (false, None),
            },
        };
        if !fits {
            let takes = match (used, rule.kind) {
                (Use::Iif, _) => "a set of interface names (--type ifname)",
                (Use::Dst, _) => "a set of addresses (--type ipv4_addr or ipv6_addr)",
                (Use::Value, "zone") => "a map to zones (--value zone)",
                (Use::Value, "mark") => "a map to marks (--value mark)",
                (Use::Value, "connmark") => "a map to connection marks (--value ctmark)",
                (Use::Value, _) => "a map to addresses (--value ipv4_addr or ipv6_addr)",
            };
            let is = match def.value {
                Some(value) => format!("a map of {} to {value}", def.key),
                None => format!("a set of {}", def.key),
            };
            return Err(Error::invalid(format!(
                "{what}: {set} is {is}; this takes {takes}"
            )));
        }
        if used == Use::Value {
            element::complete(ctx, &def, &what)?;
        }
        match (implied, &family) {
            (Some(f), Some((g, other))) if f != *g => {
                return Err(Error::invalid(format!(
                    "{what}: {set} holds {} addresses but {other} {}",
                    f.label(),
                    g.label()
                )))
            }
            (Some(f), None) => family = Some((f, format!("@{set}"))),
            _ => {}
        }
    }
    match (family, rule.family) {
        (Some((f, set)), Some(given)) if f != given => Err(Error::invalid(format!(
            "{}: {set} holds {} addresses, but the rule is {}",
            rule.kind,
            f.label(),
            given.label()
        ))),
        (Some((f, _)), None) => {
            rule.set_family(f);
            Ok(())
        }
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nft::Stage;
    use crate::rule::{Action, Family, Match, Part, Verdict, ZoneDir};
    use crate::set::OrSet;

    fn parsed(args: &str) -> Result<Rule> {
        let stored = Stored::try_parse_from(args.split_whitespace())
            .map_err(|e| Error::invalid(e.to_string()))?;
        stored.rule.rule()
    }

    fn rule(args: &str) -> Rule {
        parsed(args).unwrap_or_else(|e| panic!("{args}: {e}"))
    }

    /// What `args` is refused with (exit 2: invalid input).
    fn refused(args: &str) -> String {
        let e = parsed(args).expect_err(args);
        assert_eq!(e.exit_code(), 2, "{args}: {e}");
        e.to_string()
    }

    fn part(stage: Stage, matches: Vec<Match>, action: Action) -> Part {
        Part {
            stage,
            matches,
            action,
        }
    }

    fn iif(name: &str) -> Match {
        Match::Iif(name.into())
    }

    fn net(s: &str) -> ipnet::IpNet {
        s.parse().unwrap()
    }

    /// The ids and comments below were recorded with natctl as it was before zone, mark and
    /// connmark took `--dst`/`--local` (`target/debug/natctl --check ARGS` printed the ids, `nft
    /// list ruleset` the comments): a table made then must read back intact, not tampered.
    #[test]
    fn rules_made_before_dst_and_local_keep_their_comments_and_ids() {
        let recorded = [
            (
                "zone --iif ta --zone 1 --dir both",
                "95c3394af799",
                "zone --iif ta --zone 1 --dir both",
            ),
            (
                "zone --iif ta --zone 1",
                "95c3394af799",
                "zone --iif ta --zone 1 --dir both",
            ),
            (
                "zone --iif sv0 --zone 1 --src 100.64.0.0/24 --dir reply",
                "e6ce1f1ccb44",
                "zone --iif sv0 --zone 1 --src 100.64.0.0/24 --dir reply",
            ),
            (
                "zone --iif tb --zone 2 --src fd00::/64 --dir original",
                "075c795afdc7",
                "zone --iif tb --zone 2 --src fd00::/64 --dir original",
            ),
            (
                "mark --iif sv0 --set 1",
                "34ad57d9989e",
                "mark --iif sv0 --set 1",
            ),
            (
                "mark --iif sv0 --set 1 --dst 100.64.0.11/32",
                "add453a2cf2f",
                "mark --iif sv0 --set 1 --dst 100.64.0.11",
            ),
            (
                "mark --iif sv0 --set 2 --dst fd00::/64",
                "b5a924937b9c",
                "mark --iif sv0 --set 2 --dst fd00::/64",
            ),
            (
                "connmark --iif ta --set 1",
                "f8d6ca71bad7",
                "connmark --iif ta --set 1",
            ),
        ];
        for (args, id, canonical) in recorded {
            let r = rule(args);
            assert_eq!(r.canonical(), canonical, "{args}");
            assert_eq!(r.id(), id, "{args}");
            assert_eq!(r.comment(), format!("natctl:{id} {canonical}"), "{args}");
            // Read back from its comment, it is the same rule.
            let back = stored_rule(&r.comment()).expect(args);
            assert_eq!((back.canonical(), back.parts), (r.canonical(), r.parts));
        }
        // Their nftables rules, part by part, are what they were (the encoder is unchanged, so
        // equal parts are equal expressions).
        let zone = rule("zone --iif sv0 --zone 1 --src 100.64.0.0/24 --dir reply");
        assert_eq!(zone.family, Some(Family::V4));
        assert_eq!(
            zone.parts,
            [part(
                Stage::Zones,
                vec![iif("sv0"), Match::Src(net("100.64.0.0/24"))],
                Action::Zone {
                    zone: OrSet::Given(1),
                    dir: ZoneDir::Reply
                }
            )]
        );
        let mark = rule("mark --iif sv0 --set 1 --dst 100.64.0.11/32");
        assert_eq!(mark.family, Some(Family::V4));
        assert_eq!(
            mark.parts,
            [part(
                Stage::Marks,
                vec![iif("sv0"), Match::Dst(net("100.64.0.11/32"))],
                Action::Mark(OrSet::Given(1))
            )]
        );
        let connmark = rule("connmark --iif ta --set 1");
        assert_eq!(connmark.family, None);
        let restore = vec![Match::CtReply, Match::CtMark(1)];
        assert_eq!(
            connmark.parts,
            [
                part(
                    Stage::Connmarks,
                    vec![iif("ta"), Match::CtNew, Match::CtOriginal],
                    Action::CtMark(OrSet::Given(1))
                ),
                part(
                    Stage::Connmarks,
                    vec![iif("ta"), Match::CtReply, Match::CtMarkNot(1)],
                    Action::Verdict {
                        verdict: Verdict::Drop,
                        at_head: false
                    }
                ),
                part(Stage::Connmarks, restore.clone(), Action::MarkFromCt),
                part(Stage::LocalMarks, restore, Action::MarkFromCt),
            ]
        );
    }

    #[test]
    fn zone_by_destination_and_for_this_namespaces_own_traffic() {
        let forwarded = rule("zone --iif sv0 --dst 100.64.0.11/32 --zone 1 --dir reply");
        assert_eq!(
            forwarded.canonical(),
            "zone --iif sv0 --zone 1 --dir reply --dst 100.64.0.11"
        );
        assert_eq!(forwarded.family, Some(Family::V4));
        let reply = Action::Zone {
            zone: OrSet::Given(1),
            dir: ZoneDir::Reply,
        };
        assert_eq!(
            forwarded.parts,
            [part(
                Stage::Zones,
                vec![iif("sv0"), Match::Dst(net("100.64.0.11/32"))],
                reply.clone()
            )]
        );
        let local = rule("zone --local --dst fd64::11 --zone 1 --dir reply");
        assert_eq!(
            local.canonical(),
            "zone --zone 1 --dir reply --dst fd64::11 --local"
        );
        assert_eq!(local.family, Some(Family::V6));
        assert_eq!(
            local.parts,
            [part(
                Stage::ZonesOut,
                vec![Match::Dst(net("fd64::11/128"))],
                reply
            )]
        );
        let by_source = rule("zone --local --src 10.0.0.0/8 --dst 10.1.0.0/16 --zone 3");
        assert_eq!(
            by_source.parts[0].matches,
            [
                Match::Src(net("10.0.0.0/8")),
                Match::Dst(net("10.1.0.0/16"))
            ]
        );
        // The new arguments are part of the identity.
        let ids: HashSet<String> = [
            "zone --iif sv0 --zone 1 --dir reply",
            "zone --iif sv0 --zone 1 --dir reply --dst 100.64.0.11",
            "zone --iif sv0 --zone 1 --dir reply --dst 100.64.0.12",
            "zone --local --zone 1 --dir reply --dst 100.64.0.11",
        ]
        .iter()
        .map(|a| rule(a).id())
        .collect();
        assert_eq!(ids.len(), 4);

        assert!(refused("zone --local --iif ta --zone 1 --dst 10.0.0.1").contains("--local"));
        assert!(refused("zone --local --zone 1").contains("--dst CIDR or --src CIDR"));
        assert!(refused("zone --zone 1").contains("--iif IFACE, or --local"));
        assert!(
            refused("zone --local --zone 1 --src 10.0.0.0/8 --dst fd00::1").contains("fd00::1")
        );
        assert!(refused("zone --iif a --zone 1 --src 10.0.0.0/8 --dst fd00::1").contains("IPv6"));
    }

    #[test]
    fn mark_for_this_namespaces_own_traffic() {
        let local = rule("mark --local --dst 100.64.0.11 --set 1");
        assert_eq!(local.canonical(), "mark --set 1 --dst 100.64.0.11 --local");
        assert_eq!(local.family, Some(Family::V4));
        assert_eq!(
            local.parts,
            [part(
                Stage::MarksOut,
                vec![Match::Dst(net("100.64.0.11/32"))],
                Action::Mark(OrSet::Given(1))
            )]
        );
        assert_ne!(
            local.id(),
            rule("mark --iif sv0 --dst 100.64.0.11 --set 1").id()
        );
        assert!(refused("mark --local --set 1").contains("--local needs --dst"));
        assert!(refused("mark --local --iif sv0 --dst 10.0.0.1 --set 1").contains("--iif"));
        assert!(refused("mark --set 1").contains("--iif IFACE, or --local --dst"));
    }

    #[test]
    fn connmark_by_destination_has_no_guard() {
        let restore = |stage| {
            part(
                stage,
                vec![Match::CtReply, Match::CtMark(7)],
                Action::MarkFromCt,
            )
        };
        let marking = |stage, mut matches: Vec<Match>| {
            matches.extend([Match::CtNew, Match::CtOriginal]);
            part(stage, matches, Action::CtMark(OrSet::Given(7)))
        };
        let dst = Match::Dst(net("100.64.0.11/32"));
        // From any interface, from one, from this namespace: the marking part, then the two
        // restores of every connmark.
        // (--local: its marking part in localmarks, so the parts in chain order as `list`
        // shows them: the restore in connmarks first)
        for (args, parts) in [
            (
                "connmark --dst 100.64.0.11 --set 7",
                [
                    marking(Stage::Connmarks, vec![dst.clone()]),
                    restore(Stage::Connmarks),
                    restore(Stage::LocalMarks),
                ],
            ),
            (
                "connmark --iif sv0 --dst 100.64.0.11/32 --set 7",
                [
                    marking(Stage::Connmarks, vec![iif("sv0"), dst.clone()]),
                    restore(Stage::Connmarks),
                    restore(Stage::LocalMarks),
                ],
            ),
            (
                "connmark --local --dst 100.64.0.11 --set 7",
                [
                    restore(Stage::Connmarks),
                    marking(Stage::LocalMarks, vec![dst.clone()]),
                    restore(Stage::LocalMarks),
                ],
            ),
        ] {
            let r = rule(args);
            assert_eq!(r.family, Some(Family::V4), "{args}");
            assert_eq!(r.parts, parts, "{args}");
            let back = stored_rule(&r.comment()).expect(args);
            assert_eq!(back.parts, r.parts);
        }
        assert_eq!(
            rule("connmark --iif sv0 --dst 100.64.0.11 --set 7").canonical(),
            "connmark --iif sv0 --set 7 --dst 100.64.0.11"
        );
        assert_eq!(
            rule("connmark --local --dst fd64::11 --set 7").canonical(),
            "connmark --set 7 --dst fd64::11 --local"
        );
        assert_eq!(
            rule("connmark --local --dst fd64::11 --set 7").family,
            Some(Family::V6)
        );
        assert!(refused("connmark --local --set 7").contains("--local needs --dst"));
        assert!(refused("connmark --local --iif sv0 --dst 10.0.0.1 --set 7").contains("--iif"));
        assert!(refused("connmark --set 7").contains("--iif IFACE"));
        assert!(refused("connmark --dst 10.0.0.1 --set 0").contains("--set 0"));
    }
}
