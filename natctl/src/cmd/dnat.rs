//! `natctl dnat --to ADDR[:PORT] [--daddr ADDR] [--iif IFACE] [--proto tcp|udp --dport PORT[-PORT]] [--local]`

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use clap::Args;
use common::types::PortRange;
use common::{Error, Result};

use crate::nft::Stage;
use crate::rule::{
    common_family, dst_arg, port_matches, Action, Arg, Match, NatKind, Part, Proto, Rule,
};
use crate::set::{Dst, Iif};

#[derive(Args, Debug, Clone)]
pub struct Dnat {
    /// New destination: ADDR, ADDR:PORT[-PORT], [IPV6]:PORT (nft `dnat ip to ADDR:PORT`)
    #[arg(long, value_name = "ADDR[:PORT]")]
    pub to: NatTo,
    /// Only packets to this address or network (nft `ip daddr ADDR`), or to an address of set
    /// @SET (one rule forwarding the port of many addresses)
    #[arg(long, value_name = "ADDR|@SET")]
    pub daddr: Option<Dst>,
    /// Only packets arriving on this interface (nft `iifname IFACE`)
    #[arg(long, value_name = "IFACE", add = common::complete::links(&[]))]
    pub iif: Option<Iif>,
    /// Only this transport protocol (nft `meta l4proto tcp`)
    #[arg(long, value_enum)]
    pub proto: Option<Proto>,
    /// Only this destination port or range (nft `tcp dport PORT[-PORT]`); needs --proto
    #[arg(long, value_name = "PORT[-PORT]")]
    pub dport: Option<PortRange>,
    /// Also connections this namespace itself opens: the rule is put into the output hook too
    /// (nft `type nat hook output`, iptables `-t nat -A OUTPUT`); they arrive on no interface,
    /// so not with --iif
    #[arg(long, conflicts_with = "iif")]
    pub local: bool,
}

impl Dnat {
    pub fn rule(&self) -> Result<Rule> {
        let mut addrs = vec![("--to", self.to.addr)];
        addrs.extend(
            self.daddr
                .as_ref()
                .and_then(Dst::given)
                .map(|n| ("--daddr", n.addr())),
        );
        let family = common_family("dnat", &addrs)?;
        let ports = port_matches("dnat", self.proto, self.dport)?;
        if self.to.port.is_some() && self.proto.is_none() {
            return Err(Error::invalid(format!(
                "dnat: --to {} rewrites the port, which needs --proto tcp|udp",
                self.to
            )));
        }
        let mut matches: Vec<Match> = self.iif.iter().map(|i| i.to_match()).collect();
        matches.extend(self.daddr.as_ref().map(Dst::to_match));
        matches.extend(ports);
        let forwarded = Part {
            stage: Stage::Dstnat,
            matches,
            action: Action::Nat {
                kind: NatKind::Dnat,
                min: self.to.addr,
                max: self.to.addr,
                ports: self.to.port.map(|p| (p.first.0, p.last.0)),
                netmap: false,
            },
        };
        let local = self.local.then(|| Part {
            stage: Stage::Output,
            ..forwarded.clone()
        });
        Ok(Rule {
            kind: "dnat",
            family,
            parts: std::iter::once(forwarded).chain(local).collect(),
            args: vec![
                ("to", Some(Arg::text(self.to))),
                ("daddr", self.daddr.as_ref().map(dst_arg)),
                ("iif", self.iif.as_ref().map(Arg::text)),
                ("proto", self.proto.map(Arg::text)),
                ("dport", self.dport.map(Arg::text)),
                ("local", Some(Arg::Flag(self.local))),
            ],
        })
    }
}

/// `ADDR`, `ADDR:PORT[-PORT]` or `[IPV6]:PORT[-PORT]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NatTo {
    pub addr: IpAddr,
    pub port: Option<PortRange>,
}

impl FromStr for NatTo {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        let bad = || format!("'{s}' is not ADDR, ADDR:PORT or [IPV6]:PORT");
        let (addr, port) = if let Some(rest) = s.strip_prefix('[') {
            let (a, after) = rest.split_once(']').ok_or_else(bad)?;
            let port = match after {
                "" => None,
                p => Some(p.strip_prefix(':').ok_or_else(bad)?),
            };
            (
                a.parse::<std::net::Ipv6Addr>().map_err(|_| bad())?.into(),
                port,
            )
        } else if let Ok(a) = s.parse::<IpAddr>() {
            (a, None)
        } else {
            let (a, p) = s.rsplit_once(':').ok_or_else(bad)?;
            (
                a.parse::<std::net::Ipv4Addr>().map_err(|_| bad())?.into(),
                Some(p),
            )
        };
        let port = port
            .map(|p| p.parse::<PortRange>().map_err(|e| format!("'{s}': {e}")))
            .transpose()?;
        Ok(NatTo { addr, port })
    }
}

impl fmt::Display for NatTo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match (self.addr, self.port) {
            (a, None) => a.fmt(f),
            (IpAddr::V4(a), Some(p)) => write!(f, "{a}:{p}"),
            (IpAddr::V6(a), Some(p)) => write!(f, "[{a}]:{p}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::NatTo;

    #[test]
    fn targets() {
        for ok in [
            "192.0.2.1",
            "192.0.2.1:80",
            "192.0.2.1:80-90",
            "2001:db8::1",
            "[2001:db8::1]:443",
        ] {
            assert_eq!(ok.parse::<NatTo>().unwrap().to_string(), ok);
        }
        assert_eq!(
            "[2001:db8::1]".parse::<NatTo>().unwrap().to_string(),
            "2001:db8::1"
        );
        assert!("10.0.0.1:70000"
            .parse::<NatTo>()
            .unwrap_err()
            .contains("70000"));
        assert!("10.0.0.1:0".parse::<NatTo>().is_err());
        assert!("host:80".parse::<NatTo>().is_err());
        assert!("[10.0.0.1]:80".parse::<NatTo>().is_err());
    }
}
