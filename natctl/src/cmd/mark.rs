//! `natctl mark --iif IFACE --set N [--dst CIDR]` and `natctl mark --local --dst CIDR --set N`
//!
//! Without `--local` the mark is set in chain `marks` (prerouting, priority mangle) on traffic
//! arriving on IFACE; with it, in chain `marks_out` (output, priority mangle, type `route`: the
//! kernel routes the packet again once the mark is set) on traffic this namespace originates.

use crate::nft::Stage;
use crate::rule::{dst_arg, keyed_family, number_arg, Action, Arg, FamilyArg, Match, Part, Rule};
use crate::set::{Dst, Iif, OrSet};
use clap::Args;
use common::{Error, Result};

#[derive(Args, Debug, Clone)]
pub struct Mark {
    /// Traffic arriving on this interface (nft `iifname IFACE`); required unless --local
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Option<Iif>,
    /// The mark, decimal or 0x-hex, for `ip rule add fwmark N` (nft `meta mark set N`), or
    /// @MAP: the mark map MAP gives for the rule's key, which names MAP too (`--dst @MAP`: nft
    /// `meta mark set ip daddr map @MAP`)
    #[arg(long = "set", value_name = "N|@MAP", value_parser = parse_mark_setting)]
    pub mark: OrSet<u32>,
    /// Only packets to this network (nft `ip daddr CIDR`), or to an address of set @SET;
    /// required with --local
    #[arg(long, value_name = "CIDR|@SET")]
    pub dst: Option<Dst>,
    /// Traffic this namespace itself originates, instead of traffic arriving on an interface:
    /// chain `marks_out` (nft `type route hook output priority mangle`, iptables `-t mangle -A
    /// OUTPUT`; the packet is routed again by its new mark); needs --dst, not with --iif
    #[arg(long, conflicts_with = "iif")]
    pub local: bool,
    /// The family of the addresses in the sets the rule names (natctl reads it from them)
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

impl Mark {
    pub fn rule(&self) -> Result<Rule> {
        let stage = match (&self.iif, self.local, &self.dst) {
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
        let mut matches: Vec<Match> = self.iif.iter().map(|i| i.to_match()).collect();
        matches.extend(self.dst.as_ref().map(Dst::to_match));
        let family = keyed_family(
            "mark",
            (self.iif.as_ref(), self.dst.as_ref()),
            ("--set", &self.mark),
            &[],
            self.family,
        )?;
        Ok(Rule {
            kind: "mark",
            family,
            parts: vec![Part {
                stage,
                matches,
                action: Action::Mark(self.mark.clone()),
            }],
            // New arguments go last, so rules made before them keep their ids.
            args: vec![
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("set", Some(number_arg(&self.mark))),
                ("dst", self.dst.as_ref().map(dst_arg)),
                ("local", Some(Arg::Flag(self.local))),
                ("family", self.family.map(Arg::text)),
            ],
        })
    }
}

/// A mark or `@MAP`.
pub fn parse_mark_setting(s: &str) -> std::result::Result<OrSet<u32>, String> {
    OrSet::parse(s, parse_mark)
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
