//! `natctl masquerade [--oif IFACE] [--src CIDR] [--dst CIDR]` (at least one of them)

use clap::Args;
use common::types::{parse_network, IfName};
use common::{Error, Result};
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{common_family, net_arg, Action, Arg, Match, Part, Rule};

#[derive(Args, Debug, Clone)]
pub struct Masquerade {
    /// Only packets leaving through this interface (nft `oifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub oif: Option<IfName>,
    /// Only packets from this network (nft `ip saddr CIDR`, iptables `-s CIDR -j MASQUERADE`);
    /// without --src and --dst, IPv4 and IPv6 alike
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub src: Option<IpNet>,
    /// Only packets to this network (nft `ip daddr CIDR`)
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub dst: Option<IpNet>,
}

impl Masquerade {
    pub fn rule(&self) -> Result<Rule> {
        if self.oif.is_none() && self.src.is_none() && self.dst.is_none() {
            return Err(Error::invalid(
                "masquerade needs at least one of --oif IFACE, --src CIDR, --dst CIDR \
                 (masquerading every packet is not offered)",
            ));
        }
        let mut addrs = Vec::new();
        addrs.extend(self.src.map(|n| ("--src", n.addr())));
        addrs.extend(self.dst.map(|n| ("--dst", n.addr())));
        let family = common_family("masquerade", &addrs)?;
        let mut matches: Vec<Match> = self.oif.iter().map(|i| Match::Oif(i.to_string())).collect();
        matches.extend(self.src.map(Match::Src));
        matches.extend(self.dst.map(Match::Dst));
        Ok(Rule {
            kind: "masquerade",
            family,
            parts: vec![Part {
                stage: Stage::Srcnat,
                matches,
                action: Action::Masquerade,
            }],
            args: vec![
                ("oif", self.oif.as_ref().map(Arg::text)),
                ("src", self.src.as_ref().map(net_arg)),
                ("dst", self.dst.as_ref().map(net_arg)),
            ],
        })
    }
}
