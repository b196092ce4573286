//! `natctl zone --iif IFACE --zone N [--src CIDR] [--dir both|original|reply]`

use clap::Args;
use common::types::{parse_network, IfName};
use common::Result;
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{net_arg, Action, Arg, Family, Match, Part, Rule, ZoneDir};

#[derive(Args, Debug, Clone)]
pub struct Zone {
    /// Traffic arriving on this interface (nft `iifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: IfName,
    /// Conntrack zone, 0-65535 (nft `ct zone set N`, iptables `CT --zone N`)
    #[arg(long, value_name = "N")]
    pub zone: u16,
    /// Only packets from this network (nft `ip saddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub src: Option<IpNet>,
    /// Which direction's tuple gets the zone: both (`ct zone set`), original (`ct original zone
    /// set`, iptables `--zone-orig`; what overlapping networks behind NETMAP need) or reply
    #[arg(long, value_enum, default_value_t = ZoneDir::Both)]
    pub dir: ZoneDir,
}

impl Zone {
    pub fn rule(&self) -> Result<Rule> {
        let mut matches = vec![Match::Iif(self.iif.to_string())];
        matches.extend(self.src.map(Match::Src));
        Ok(Rule {
            kind: "zone",
            family: self.src.map(|n| Family::of(n.addr())),
            parts: vec![Part {
                stage: Stage::Zones,
                matches,
                action: Action::Zone {
                    zone: self.zone,
                    dir: self.dir,
                },
            }],
            args: vec![
                ("iif", Some(Arg::text(&self.iif))),
                ("zone", Some(Arg::Number(self.zone.into()))),
                ("src", self.src.as_ref().map(net_arg)),
                ("dir", Some(Arg::text(self.dir))),
            ],
        })
    }
}
