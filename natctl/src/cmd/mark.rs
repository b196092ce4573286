//! `natctl mark --iif IFACE --set N [--dst CIDR]`

use clap::Args;
use common::types::{parse_network, IfName};
use common::Result;
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{net_arg, Action, Arg, Family, Match, Part, Rule};

#[derive(Args, Debug, Clone)]
pub struct Mark {
    /// Traffic arriving on this interface (nft `iifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: IfName,
    /// The mark, decimal or 0x-hex, for `ip rule add fwmark N` (nft `meta mark set N`)
    #[arg(long = "set", value_name = "N", value_parser = parse_mark)]
    pub mark: u32,
    /// Only packets to this network (nft `ip daddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub dst: Option<IpNet>,
}

impl Mark {
    pub fn rule(&self) -> Result<Rule> {
        let mut matches = vec![Match::Iif(self.iif.to_string())];
        matches.extend(self.dst.map(Match::Dst));
        Ok(Rule {
            kind: "mark",
            family: self.dst.map(|n| Family::of(n.addr())),
            parts: vec![Part {
                stage: Stage::Marks,
                matches,
                action: Action::Mark(self.mark),
            }],
            args: vec![
                ("iif", Some(Arg::text(&self.iif))),
                ("set", Some(Arg::Number(self.mark.into()))),
                ("dst", self.dst.as_ref().map(net_arg)),
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
