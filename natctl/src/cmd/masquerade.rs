//! `natctl masquerade --oif IFACE [--src CIDR]`

use clap::Args;
use common::types::{parse_network, IfName};
use common::Result;
use ipnet::IpNet;

use crate::nft::Stage;
use crate::rule::{net_arg, Action, Arg, Family, Match, Rule};

#[derive(Args, Debug, Clone)]
pub struct Masquerade {
    /// Outgoing interface (nft `oifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub oif: IfName,
    /// Only packets from this network (nft `ip saddr CIDR`); without it, IPv4 and IPv6 alike
    #[arg(long, value_name = "CIDR", value_parser = parse_network)]
    pub src: Option<IpNet>,
}

impl Masquerade {
    pub fn rule(&self) -> Result<Rule> {
        let mut matches = vec![Match::Oif(self.oif.to_string())];
        matches.extend(self.src.map(Match::Src));
        Ok(Rule {
            kind: "masquerade",
            stage: Stage::Srcnat,
            family: self.src.map(|n| Family::of(n.addr())),
            matches,
            action: Action::Masquerade,
            args: vec![
                ("oif", Some(Arg::text(&self.oif))),
                ("src", self.src.as_ref().map(net_arg)),
            ],
        })
    }
}
