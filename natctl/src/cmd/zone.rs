//! `natctl zone --iif IFACE --zone N [--src CIDR] [--dst CIDR] [--dir both|original|reply]` and
//! `natctl zone --local --zone N [--src CIDR] [--dst CIDR] [--dir ...]`
//!
//! Without `--local` the zone is set in chain `zones` (prerouting, priority raw) for traffic
//! arriving on IFACE; with it, in chain `zones_out` (output, priority raw) for traffic this
//! namespace originates. Both run before conntrack (-200) looks the packet up, so the lookup, and
//! a new connection, happen in that zone.

use clap::Args;
use common::types::{parse_network, IfName};
use common::{Error, Result};
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{common_family, net_arg, Action, Arg, Match, Part, Rule, ZoneDir};

#[derive(Args, Debug, Clone)]
pub struct Zone {
    /// Traffic arriving on this interface (nft `iifname IFACE`); required unless --local
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Option<IfName>,
    /// Conntrack zone, 0-65535 (nft `ct zone set N`, iptables `CT --zone N`)
    #[arg(long, value_name = "N")]
    pub zone: u16,
    /// Only packets from this network (nft `ip saddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub src: Option<IpNet>,
    /// Which direction's tuple gets the zone: both (`ct zone set`), original (`ct original zone
    /// set`, iptables `--zone-orig`; what overlapping networks behind NETMAP need) or reply
    /// (`ct reply zone set`, iptables `--zone-reply`; a port forward into one of several devices
    /// with the same address: `--dst` the device's address, `--dir reply`)
    #[arg(long, value_enum, default_value_t = ZoneDir::Both)]
    pub dir: ZoneDir,
    /// Only packets to this network (nft `ip daddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub dst: Option<IpNet>,
    /// Traffic this namespace itself originates, instead of traffic arriving on an interface:
    /// chain `zones_out` (nft `type filter hook output priority raw`, iptables `-t raw -A OUTPUT
    /// -j CT --zone`); needs --dst or --src, not with --iif
    #[arg(long, conflicts_with = "iif")]
    pub local: bool,
}

impl Zone {
    pub fn rule(&self) -> Result<Rule> {
        let mut addrs = Vec::new();
        addrs.extend(self.src.map(|n| ("--src", n.addr())));
        addrs.extend(self.dst.map(|n| ("--dst", n.addr())));
        let family = common_family("zone", &addrs)?;
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
            (None, true) if addrs.is_empty() => {
                return Err(Error::invalid(
                    "zone --local needs --dst CIDR or --src CIDR (without one, every connection this namespace opens would be in the zone)",
                ))
            }
            (None, true) => Stage::ZonesOut,
            (Some(_), false) => Stage::Zones,
        };
        let mut matches: Vec<Match> = self.iif.iter().map(|i| Match::Iif(i.to_string())).collect();
        matches.extend(self.src.map(Match::Src));
        matches.extend(self.dst.map(Match::Dst));
        Ok(Rule {
            kind: "zone",
            family,
            parts: vec![Part {
                stage,
                matches,
                action: Action::Zone {
                    zone: self.zone,
                    dir: self.dir,
                },
            }],
            // New arguments go last, so rules made before them keep their ids.
            args: vec![
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("zone", Some(Arg::Number(self.zone.into()))),
                ("src", self.src.as_ref().map(net_arg)),
                ("dir", Some(Arg::text(self.dir))),
                ("dst", self.dst.as_ref().map(net_arg)),
                ("local", Some(Arg::Flag(self.local))),
            ],
        })
    }
}
