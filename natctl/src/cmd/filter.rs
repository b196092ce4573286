//! `natctl filter --iif IFACE [--src CIDR] [--dst CIDR] [--proto tcp|udp|icmp|icmpv6
//! [--dport PORT[-PORT]]] [--reply] [--local] --verdict accept|drop` and
//! `natctl filter --iif IFACE --default accept|drop [--local]`: access control by incoming
//! interface.
//!
//! Forwarded traffic is filtered in the `forward` chain (hook forward), traffic to this
//! namespace itself (`--local`) in `local_in` (hook input), both at priority `filter`. A rule
//! with selectors is inserted at the head of its chain and a default is appended, so an
//! interface's accepts and drops are always evaluated before its default, whatever order they
//! were added in (among themselves, the most recently added first). Nothing is accepted by
//! connection state on its own: a reply that arrives on IFACE passes only if a rule of IFACE
//! accepts it, such as one with `--reply` (`ct direction reply`: every packet that answers a
//! connection opened from elsewhere).

use std::fmt;

use clap::{Args, ValueEnum};
use common::types::{parse_network, PortRange};
use common::{Error, Result};
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{
    dst_arg, net_arg, rule_family, Action, Arg, Family, FamilyArg, Match, Part, Rule, Verdict,
};
use crate::set::{Dst, Iif};

#[derive(Args, Debug, Clone)]
pub struct Filter {
    /// Traffic arriving on this interface (nft `iifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Iif,
    /// Only packets from this network (nft `ip saddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network, conflicts_with = "default")]
    pub src: Option<IpNet>,
    /// Only packets to this network (nft `ip daddr CIDR`), or to an address of set @SET
    #[arg(long, value_name = "CIDR|@SET", conflicts_with = "default")]
    pub dst: Option<Dst>,
    /// Only this protocol (nft `meta l4proto tcp`); icmp is IPv4's, icmpv6 IPv6's
    #[arg(long, value_enum, conflicts_with = "default")]
    pub proto: Option<FilterProto>,
    /// Only this destination port or range (nft `tcp dport PORT[-PORT]`); needs --proto tcp|udp
    #[arg(long, value_name = "PORT[-PORT]", conflicts_with = "default")]
    pub dport: Option<PortRange>,
    /// Only packets that travel against their connection's first packet (nft `ct direction
    /// reply`), e.g. a device's replies to connections the other side opened; not with
    /// --early (conntrack has not seen the packet there)
    #[arg(long, conflicts_with = "default")]
    pub reply: bool,
    /// What to do with matching packets (nft `accept`/`drop`); the rule is inserted before
    /// every default (nft `insert rule`)
    #[arg(long, value_enum, required_unless_present = "default")]
    pub verdict: Option<Verdict>,
    /// The verdict for every packet from IFACE that no other filter rule of IFACE decided:
    /// appended after all of them (nft `add rule ... iifname IFACE drop`)
    #[arg(long, value_enum, value_name = "VERDICT", conflicts_with = "verdict")]
    pub default: Option<Verdict>,
    /// Traffic to this namespace itself (chain `local_in`, hook input), instead of forwarded
    /// traffic (chain `forward`, hook forward)
    #[arg(long)]
    pub local: bool,
    /// Before connection tracking (chain `zones`, hook prerouting, priority raw), for
    /// `--verdict drop` only: a packet dropped here is never looked up by conntrack, so it
    /// changes no connection's state (a forged reply of another's connection, say)
    #[arg(long, conflicts_with_all = ["local", "default"])]
    pub early: bool,
    /// The family of the addresses in the sets the rule names (natctl reads it from them)
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

/// The protocols a filter selects (`meta l4proto`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FilterProto {
    Tcp,
    Udp,
    Icmp,
    Icmpv6,
}

impl FilterProto {
    fn number(self) -> u8 {
        (match self {
            FilterProto::Tcp => libc::IPPROTO_TCP,
            FilterProto::Udp => libc::IPPROTO_UDP,
            FilterProto::Icmp => libc::IPPROTO_ICMP,
            FilterProto::Icmpv6 => libc::IPPROTO_ICMPV6,
        }) as u8
    }

    /// The family an ICMP protocol implies.
    fn family(self) -> Option<Family> {
        match self {
            FilterProto::Icmp => Some(Family::V4),
            FilterProto::Icmpv6 => Some(Family::V6),
            FilterProto::Tcp | FilterProto::Udp => None,
        }
    }
}

impl fmt::Display for FilterProto {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FilterProto::Tcp => "tcp",
            FilterProto::Udp => "udp",
            FilterProto::Icmp => "icmp",
            FilterProto::Icmpv6 => "icmpv6",
        })
    }
}

impl Filter {
    pub fn rule(&self) -> Result<Rule> {
        let mut addrs = Vec::new();
        addrs.extend(self.src.map(|n| ("--src", n.addr())));
        addrs.extend(
            self.dst
                .as_ref()
                .and_then(Dst::given)
                .map(|n| ("--dst", n.addr())),
        );
        let mut family = rule_family("filter", &addrs, self.family)?;
        if let Some(implied) = self.proto.and_then(FilterProto::family) {
            if family.is_some_and(|f| f != implied) {
                return Err(Error::invalid(format!(
                    "filter: --proto {} is {} but the addresses are {}",
                    self.proto.unwrap_or(FilterProto::Icmp),
                    implied.label(),
                    family.map_or("", Family::label)
                )));
            }
            family = Some(implied);
        }
        if let Some(dport) = self.dport {
            if !matches!(self.proto, Some(FilterProto::Tcp | FilterProto::Udp)) {
                return Err(Error::invalid(format!(
                    "filter: --dport {dport} needs --proto tcp|udp"
                )));
            }
        }
        let (verdict, at_head) = match (self.verdict, self.default) {
            (Some(v), None) => (v, true),
            (None, Some(v)) => (v, false),
            _ => {
                return Err(Error::invalid(
                    "filter needs exactly one of --verdict accept|drop, --default accept|drop",
                ))
            }
        };
        if self.early && self.reply {
            return Err(Error::invalid(
                "filter: --reply cannot be used with --early (in chain zones conntrack has not seen the packet yet, so it has no direction)",
            ));
        }
        if self.early && verdict != Verdict::Drop {
            // (an accept there would end the chain before the zones are set)
            return Err(Error::invalid(
                "filter: --early takes --verdict drop only (an accept before conntrack would skip the zones)",
            ));
        }
        let mut matches = vec![self.iif.to_match()];
        matches.extend(self.src.map(Match::Src));
        matches.extend(self.dst.as_ref().map(Dst::to_match));
        matches.extend(self.proto.map(|p| Match::Proto(p.number())));
        matches.extend(self.dport.map(|p| Match::Dport(p.first.0, p.last.0)));
        if self.reply {
            matches.push(Match::CtReply);
        }
        Ok(Rule {
            kind: "filter",
            family,
            parts: vec![Part {
                stage: if self.early {
                    Stage::Zones
                } else if self.local {
                    Stage::LocalIn
                } else {
                    Stage::Forward
                },
                matches,
                action: Action::Verdict { verdict, at_head },
            }],
            args: vec![
                ("iif", Some(Arg::text(&self.iif))),
                ("src", self.src.as_ref().map(net_arg)),
                ("dst", self.dst.as_ref().map(dst_arg)),
                ("proto", self.proto.map(Arg::text)),
                ("dport", self.dport.map(Arg::text)),
                ("reply", Some(Arg::Flag(self.reply))),
                ("verdict", self.verdict.map(Arg::text)),
                ("default", self.default.map(Arg::text)),
                ("local", Some(Arg::Flag(self.local))),
                ("early", Some(Arg::Flag(self.early))),
                ("family", self.family.map(Arg::text)),
            ],
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(clap::Parser)]
    #[command(no_binary_name = true)]
    struct Cli {
        #[command(flatten)]
        filter: Filter,
    }

    fn filter(args: &str) -> Rule {
        <Cli as clap::Parser>::parse_from(args.split_whitespace())
            .filter
            .rule()
            .unwrap()
    }

    #[test]
    fn selectors_go_first_defaults_last() {
        let accept = filter("--iif x --dst 100.64.0.0/24 --verdict accept");
        assert!(accept.parts[0].at_head());
        assert_eq!(accept.parts[0].stage, Stage::Forward);
        assert_eq!(
            accept.canonical(),
            "filter --iif x --dst 100.64.0.0/24 --verdict accept"
        );
        let default = filter("--iif x --default drop --local");
        assert!(!default.parts[0].at_head());
        assert_eq!(default.parts[0].stage, Stage::LocalIn);
        assert_eq!(default.canonical(), "filter --iif x --default drop --local");
        assert_eq!(default.family, None);
    }

    #[test]
    fn reply_is_a_ct_match_after_the_selectors_and_part_of_the_id() {
        let reply = filter("--iif x --proto tcp --dport 22 --reply --verdict accept --local");
        assert_eq!(
            reply.parts[0].matches,
            [
                Match::Iif("x".into()),
                Match::Proto(libc::IPPROTO_TCP as u8),
                Match::Dport(22, 22),
                Match::CtReply
            ]
        );
        assert_eq!(reply.parts[0].stage, Stage::LocalIn);
        assert_eq!(
            reply.canonical(),
            "filter --iif x --proto tcp --dport 22 --reply --verdict accept --local"
        );
        let plain = filter("--iif x --proto tcp --dport 22 --verdict accept --local");
        assert!(!plain.parts[0].matches.contains(&Match::CtReply));
        assert_ne!(reply.id(), plain.id());
    }

    #[test]
    fn reply_conflicts_with_early_and_default() {
        let parse = |args: &str| <Cli as clap::Parser>::try_parse_from(args.split_whitespace());
        let early = parse("--iif x --reply --verdict drop --early")
            .unwrap()
            .filter
            .rule()
            .unwrap_err();
        assert_eq!(early.exit_code(), 2);
        let msg = early.to_string();
        assert!(msg.contains("--reply") && msg.contains("--early"), "{msg}");
        let default = parse("--iif x --reply --default drop").err().unwrap();
        assert_eq!(default.kind(), clap::error::ErrorKind::ArgumentConflict);
    }

    #[test]
    fn icmp_implies_its_family() {
        assert_eq!(
            filter("--iif x --proto icmp --verdict accept").family,
            Some(Family::V4)
        );
        assert_eq!(
            filter("--iif x --proto icmpv6 --verdict accept").family,
            Some(Family::V6)
        );
    }
}
