//! `natctl netmap --dst FROM --to TO [--iif IFACE]` and `natctl netmap --src FROM --to TO [--oif IFACE]`

use clap::Args;
use common::types::{parse_network, IfName};
use common::{Error, Result};
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{common_family, Action, Arg, Match, NatKind, Part, Rule};
use crate::set::Iif;

#[derive(Args, Debug, Clone)]
pub struct Netmap {
    /// Map destinations in this prefix, before routing, like iptables NETMAP in PREROUTING
    /// (nft `ip daddr FROM dnat ip prefix to TO`)
    #[arg(long, value_name = "FROM_CIDR", value_parser = parse_network, conflicts_with = "src")]
    pub dst: Option<IpNet>,
    /// Map sources in this prefix, after routing, like iptables NETMAP in POSTROUTING
    /// (nft `ip saddr FROM snat ip prefix to TO`)
    #[arg(long, value_name = "FROM_CIDR", value_parser = parse_network)]
    pub src: Option<IpNet>,
    /// The prefix to map onto: same length as FROM; host bits are kept
    #[arg(long, value_name = "TO_CIDR", value_parser = parse_network)]
    pub to: IpNet,
    /// With --dst: only packets arriving on this interface (nft `iifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]), conflicts_with = "src")]
    pub iif: Option<Iif>,
    /// With --src: only packets leaving through this interface (nft `oifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]), conflicts_with = "dst")]
    pub oif: Option<IfName>,
}

impl Netmap {
    pub fn rule(&self) -> Result<Rule> {
        let (flag, from, kind) = match (self.dst, self.src) {
            (Some(d), _) => ("--dst", d, NatKind::Dnat),
            (None, Some(s)) => ("--src", s, NatKind::Snat),
            (None, None) => return Err(Error::invalid(
                "netmap needs --dst FROM_CIDR (map destinations) or --src FROM_CIDR (map sources)",
            )),
        };
        let family = common_family("netmap", &[(flag, from.addr()), ("--to", self.to.addr())])?;
        if from.prefix_len() != self.to.prefix_len() {
            return Err(Error::invalid(format!(
                "netmap: {flag} {from} and --to {} differ in prefix length; a 1:1 mapping needs equal lengths",
                self.to
            )));
        }
        let mut matches = Vec::new();
        matches.extend(self.iif.as_ref().map(|i| i.to_match()));
        matches.extend(self.oif.as_ref().map(|i| Match::Oif(i.to_string())));
        matches.push(match kind {
            NatKind::Dnat => Match::Dst(from),
            NatKind::Snat => Match::Src(from),
        });
        Ok(Rule {
            kind: "netmap",
            family,
            parts: vec![Part {
                stage: match kind {
                    NatKind::Dnat => Stage::Dstnat,
                    NatKind::Snat => Stage::Srcnat,
                },
                matches,
                action: Action::Nat {
                    kind,
                    min: self.to.network(),
                    max: self.to.broadcast(),
                    ports: None,
                    netmap: true,
                },
            }],
            args: vec![
                ("dst", self.dst.as_ref().map(Arg::text)),
                ("src", self.src.as_ref().map(Arg::text)),
                ("to", Some(Arg::text(self.to))),
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("oif", self.oif.as_ref().map(Arg::text)),
            ],
        })
    }
}
