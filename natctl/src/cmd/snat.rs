//! `natctl snat --to ADDR[-ADDR] [--src CIDR] [--dst CIDR] [--oif IFACE | --iif IFACE]
//! [--proto tcp|udp [--dport PORT[-PORT]]] [--local]`

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::Args;
use common::types::{parse_network, IfName, PortRange};
use common::Result;
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{
    map_keyed, net_arg, port_matches, rule_family, Action, Arg, FamilyArg, Match, NatKind, Part,
    Proto, Rule,
};
use crate::set::{Iif, OrSet};

#[derive(Args, Debug, Clone)]
pub struct Snat {
    /// New source address, or an inclusive range FIRST-LAST (nft `snat ip to ADDR[-ADDR]`), or
    /// @MAP: the address map MAP gives for the rule's key, which names MAP too (`--iif @MAP`:
    /// nft `snat ip to iifname map @MAP`)
    #[arg(long, value_name = "ADDR[-ADDR]|@MAP", value_parser = parse_to)]
    pub to: OrSet<AddrRange>,
    /// Only packets from this network (nft `ip saddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub src: Option<IpNet>,
    /// Only packets leaving through this interface (nft `oifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub oif: Option<IfName>,
    /// Only packets to this network (nft `ip daddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub dst: Option<IpNet>,
    /// Only this transport protocol (nft `meta l4proto tcp`)
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,
    /// Only this destination port or range (nft `tcp dport PORT[-PORT]`); needs --proto
    #[arg(long, value_name = "PORT[-PORT]")]
    pub dport: Option<PortRange>,
    /// Only packets that arrived on this interface (nft `iifname IFACE`): SNAT by where the
    /// traffic came from, e.g. one address per tunnel
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Option<Iif>,
    /// Also connections to this namespace itself: the rule is put into the input hook too
    /// (nft `type nat hook input`, iptables `-t nat -A INPUT`); they leave on no interface, so
    /// not with --oif
    #[arg(long, conflicts_with = "oif")]
    pub local: bool,
    /// The family of the addresses in the map the rule names (natctl reads it from it)
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

/// An address, a range or `@MAP`.
fn parse_to(s: &str) -> std::result::Result<OrSet<AddrRange>, String> {
    OrSet::parse(s, AddrRange::from_str)
}

impl Snat {
    pub fn rule(&self) -> Result<Rule> {
        let mut addrs: Vec<(&str, IpAddr)> = self
            .to
            .given()
            .map(|t| ("--to", t.first))
            .into_iter()
            .collect();
        addrs.extend(self.src.map(|n| ("--src", n.addr())));
        addrs.extend(self.dst.map(|n| ("--dst", n.addr())));
        let family = rule_family("snat", &addrs, self.family)?;
        map_keyed(
            "snat",
            "--to",
            &self.to,
            &[self.iif.as_ref().and_then(Iif::set)],
        )?;
        let mut matches: Vec<Match> = self.oif.iter().map(|i| Match::Oif(i.to_string())).collect();
        matches.extend(self.src.map(Match::Src));
        matches.extend(self.dst.map(Match::Dst));
        matches.extend(port_matches("snat", self.proto, self.dport)?);
        matches.extend(self.iif.iter().map(|i| i.to_match()));
        let forwarded = Part {
            stage: Stage::Srcnat,
            matches,
            action: match &self.to {
                OrSet::Given(to) => Action::Nat {
                    kind: NatKind::Snat,
                    min: to.first,
                    max: to.last,
                    ports: None,
                    netmap: false,
                },
                OrSet::Set(map) => Action::NatMap {
                    kind: NatKind::Snat,
                    map: map.to_string(),
                },
            },
        };
        let local = self.local.then(|| Part {
            stage: Stage::Input,
            ..forwarded.clone()
        });
        Ok(Rule {
            kind: "snat",
            family,
            parts: std::iter::once(forwarded).chain(local).collect(),
            // New arguments go last, so rules made before them keep their ids.
            args: vec![
                ("to", Some(Arg::text(&self.to))),
                ("src", self.src.as_ref().map(net_arg)),
                ("oif", self.oif.as_ref().map(Arg::text)),
                ("dst", self.dst.as_ref().map(net_arg)),
                ("proto", self.proto.map(Arg::text)),
                ("dport", self.dport.map(Arg::text)),
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("local", Some(Arg::Flag(self.local))),
                ("family", self.family.map(Arg::text)),
            ],
        })
    }
}

/// `ADDR` or `FIRST-LAST`, both of one family, FIRST <= LAST.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AddrRange {
    pub first: IpAddr,
    pub last: IpAddr,
}

impl FromStr for AddrRange {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let parse = |x: &str| {
            x.parse::<IpAddr>()
                .map_err(|_| format!("'{x}' in '{s}' is not an IPv4 or IPv6 address"))
        };
        let (first, last) = (parse(a)?, parse(b)?);
        if first.is_ipv4() != last.is_ipv4() {
            return Err(format!("address range '{s}' mixes IPv4 and IPv6"));
        }
        if first > last {
            return Err(format!("address range '{s}' runs backwards"));
        }
        Ok(AddrRange { first, last })
    }
}

impl fmt::Display for AddrRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.first == self.last {
            self.first.fmt(f)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::AddrRange;

    #[test]
    fn ranges() {
        let r: AddrRange = "10.0.0.1-10.0.0.9".parse().unwrap();
        assert_eq!(r.to_string(), "10.0.0.1-10.0.0.9");
        assert_eq!(
            "10.0.0.1".parse::<AddrRange>().unwrap().to_string(),
            "10.0.0.1"
        );
        assert!("10.0.0.9-10.0.0.1".parse::<AddrRange>().is_err());
        assert!("10.0.0.1-2001:db8::1".parse::<AddrRange>().is_err());
        assert!("10.0.0.300"
            .parse::<AddrRange>()
            .unwrap_err()
            .contains("10.0.0.300"));
    }
}
