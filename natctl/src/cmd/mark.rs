//! `natctl mark --iif IFACE --set N [--dst CIDR]` and `natctl mark --local --dst CIDR --set N`
//!
//! Without `--local` the mark is set in chain `marks` (prerouting, priority mangle) on traffic
//! arriving on IFACE; with it, in chain `marks_out` (output, priority mangle, type `route`: the
//! kernel routes the packet again once the mark is set) on traffic this namespace originates.

use clap::Args;
use common::types::{parse_network, IfName};
use common::{Error, Result};
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{net_arg, Action, Arg, Family, Match, Part, Rule};

#[derive(Args, Debug, Clone)]
pub struct Mark {
    /// Traffic arriving on this interface (nft `iifname IFACE`); required unless --local
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Option<IfName>,
    /// The mark, decimal or 0x-hex, for `ip rule add fwmark N` (nft `meta mark set N`)
    #[arg(long = "set", value_name = "N", value_parser = parse_mark)]
    pub mark: u32,
    /// Only packets to this network (nft `ip daddr CIDR`); required with --local
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub dst: Option<IpNet>,
    /// Traffic this namespace itself originates, instead of traffic arriving on an interface:
    /// chain `marks_out` (nft `type route hook output priority mangle`, iptables `-t mangle -A
    /// OUTPUT`; the packet is routed again by its new mark); needs --dst, not with --iif
    #[arg(long, conflicts_with = "iif")]
    pub local: bool,
}

impl Mark {
    pub fn rule(&self) -> Result<Rule> {
        let stage = match (&self.iif, self.local, self.dst) {
            (Some(iif), true, _) => {
                return Err(Error::invalid(format!(
                    "mark: --local (traffic this namespace originates) cannot be used with --iif {iif} (it arrives on no interface)"
                )))
            }
            (None, false, _) => {
                return Err(Error::invalid(
                    "mark needs --iif IFACE, or --local --dst CIDR for traffic this namespace originates",
                ))
            }
            (None, true, None) => {
                return Err(Error::invalid(
                    "mark --local needs --dst CIDR (without it, every packet this namespace sends would be marked)",
                ))
            }
            (None, true, Some(_)) => Stage::MarksOut,
            (Some(_), false, _) => Stage::Marks,
        };
        let mut matches: Vec<Match> = self.iif.iter().map(|i| Match::Iif(i.to_string())).collect();
        matches.extend(self.dst.map(Match::Dst));
        Ok(Rule {
            kind: "mark",
            family: self.dst.map(|n| Family::of(n.addr())),
            parts: vec![Part {
                stage,
                matches,
                action: Action::Mark(self.mark),
            }],
            // New arguments go last, so rules made before them keep their ids.
            args: vec![
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("set", Some(Arg::Number(self.mark.into()))),
                ("dst", self.dst.as_ref().map(net_arg)),
                ("local", Some(Arg::Flag(self.local))),
            ],
        })
    }
}

/// A 32-bit mark: decimal or `0x` hex.
pub fn parse_mark(s: &str) -> std::result::Result<u32, String> {
    common::num::parse_u32(s)
        .ok_or_else(|| format!("mark '{s}' is not a number from 0 to 4294967295 (or 0x-hex)"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn marks() {
        assert_eq!(super::parse_mark("100"), Ok(100));
        assert_eq!(super::parse_mark("0x64"), Ok(100));
        assert!(super::parse_mark("4294967296")
            .unwrap_err()
            .contains("4294967296"));
        assert!(super::parse_mark("-1").is_err());
    }
}
