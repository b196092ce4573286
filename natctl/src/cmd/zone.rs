//! `natctl zone --iif IFACE --zone N [--src CIDR] [--dst CIDR] [--dir both|original|reply]` and
//! `natctl zone --local --zone N [--src CIDR] [--dst CIDR] [--dir ...]`
//!
//! Without `--local` the zone is set in chain `zones` (prerouting, priority raw) for traffic
//! arriving on IFACE; with it, in chain `zones_out` (output, priority raw) for traffic this
//! namespace originates. Both run before conntrack (-200) looks the packet up, so the lookup, and
//! a new connection, happen in that zone.

use std::net::IpAddr;

use clap::Args;
use common::types::parse_network;
use common::{Error, Result};
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{
    dst_arg, keyed_family, net_arg, number_arg, Action, Arg, FamilyArg, Match, Part, Rule, ZoneDir,
};
use crate::set::{Dst, Iif, OrSet};

#[derive(Args, Debug, Clone)]
pub struct Zone {
    /// Traffic arriving on this interface (nft `iifname IFACE`); required unless --local
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Option<Iif>,
    /// Conntrack zone, 0-65535 (nft `ct zone set N`, iptables `CT --zone N`), or @MAP: the zone
    /// map MAP gives for the rule's key, which names MAP too (`--iif @MAP`: nft `ct zone set
    /// iifname map @MAP`)
    #[arg(long, value_name = "N|@MAP", value_parser = parse_zone)]
    pub zone: OrSet<u16>,
    /// Only packets from this network (nft `ip saddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub src: Option<IpNet>,
    /// Which direction's tuple gets the zone: both (`ct zone set`), original (`ct original zone
    /// set`, iptables `--zone-orig`; what overlapping networks behind NETMAP need) or reply
    /// (`ct reply zone set`, iptables `--zone-reply`; a port forward into one of several devices
    /// with the same address: `--dst` the device's address, `--dir reply`)
    #[arg(long, value_enum, default_value_t = ZoneDir::Both)]
    pub dir: ZoneDir,
    /// Only packets to this network (nft `ip daddr CIDR`), or to an address of set @SET
    #[arg(long, value_name = "CIDR|@SET")]
    pub dst: Option<Dst>,
    /// Traffic this namespace itself originates, instead of traffic arriving on an interface:
    /// chain `zones_out` (nft `type filter hook output priority raw`, iptables `-t raw -A OUTPUT
    /// -j CT --zone`); needs --dst or --src, not with --iif
    #[arg(long, conflicts_with = "iif")]
    pub local: bool,
    /// The family of the addresses in the sets the rule names (natctl reads it from them)
    #[arg(long, value_enum)]
    pub family: Option<FamilyArg>,
}

/// A zone, 0-65535, or `@MAP`.
fn parse_zone(s: &str) -> std::result::Result<OrSet<u16>, String> {
    OrSet::parse(s, |z| {
        z.parse()
            .map_err(|_| format!("zone '{z}' is not a number from 0 to 65535"))
    })
}

impl Zone {
    pub fn rule(&self) -> Result<Rule> {
        let src: Vec<(&str, IpAddr)> = self.src.map(|n| ("--src", n.addr())).into_iter().collect();
        let family = keyed_family(
            "zone",
            (self.iif.as_ref(), self.dst.as_ref()),
            ("--zone", &self.zone),
            &src,
            self.family,
        )?;
        let stage = match (&self.iif, self.local) {
            (Some(iif), true) => {
                return Err(Error::invalid(format!(
                    "zone: --local (traffic this namespace originates) cannot be used with --iif {iif} (it arrives on no interface)"
                )))
            }
            (None, false) => {
                return Err(Error::invalid(
                    "zone needs --iif IFACE, or --local for traffic this namespace originates",
                ))
            }
            (None, true) if self.src.is_none() && self.dst.is_none() => {
                return Err(Error::invalid(
                    "zone --local needs --dst CIDR or --src CIDR (without one, every connection this namespace opens would be in the zone)",
                ))
            }
            (None, true) => Stage::ZonesOut,
            (Some(_), false) => Stage::Zones,
        };
        let mut matches: Vec<Match> = self.iif.iter().map(|i| i.to_match()).collect();
        matches.extend(self.src.map(Match::Src));
        matches.extend(self.dst.as_ref().map(Dst::to_match));
        Ok(Rule {
            kind: "zone",
            family,
            parts: vec![Part {
                stage,
                matches,
                action: Action::Zone {
                    zone: self.zone.clone(),
                    dir: self.dir,
                },
            }],
            // New arguments go last, so rules made before them keep their ids.
            args: vec![
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("zone", Some(number_arg(&self.zone))),
                ("src", self.src.as_ref().map(net_arg)),
                ("dir", Some(Arg::text(self.dir))),
                ("dst", self.dst.as_ref().map(dst_arg)),
                ("local", Some(Arg::Flag(self.local))),
                ("family", self.family.map(Arg::text)),
            ],
        })
    }
}
