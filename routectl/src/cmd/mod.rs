//! One module per object; what they share (address family, prefix parsing, names the kernel
//! keeps as numbers) lives here.

use std::collections::HashMap;
use std::future::Future;
use std::net::IpAddr;

use clap::Args;
use common::link::LinkExt;
use common::{Context, Ctx, Error, Kind, Outcome, Result};
use ipnet::IpNet;
use rtnetlink::Handle;
use serde::Serialize;

pub mod route;
pub mod rule;
pub mod vrf;

pub use common::family::Family;

/// `-4` / `-6` (like `ip -4` / `ip -6`): the family when no address says it.
#[derive(Args, Debug, Clone, Copy, Default)]
pub struct FamilyArgs {
    /// IPv4 (the default when no address tells the family), like `ip -4`
    #[arg(short = '4', conflicts_with = "ipv6")]
    pub ipv4: bool,
    /// IPv6, like `ip -6`
    #[arg(short = '6')]
    pub ipv6: bool,
}

impl FamilyArgs {
    fn flag(self) -> Option<Family> {
        match (self.ipv4, self.ipv6) {
            (true, _) => Some(Family::V4),
            (_, true) => Some(Family::V6),
            _ => None,
        }
    }

    /// The families a listing shows: the one flag given, else both.
    pub fn families(self) -> Vec<Family> {
        self.flag()
            .map_or_else(|| vec![Family::V4, Family::V6], |f| vec![f])
    }

    /// The family every given address agrees on (and the flag, if any); IPv4 when nothing
    /// says. Each address comes with how the user wrote it (`--from 10.0.0.0/8`); a mix of
    /// families is invalid input naming both.
    pub fn resolve(self, addrs: &[(String, IpAddr)]) -> Result<Family> {
        let mut seen: Option<(Family, String)> = self.flag().map(|f| {
            let flag = if f == Family::V4 { "-4" } else { "-6" };
            (f, flag.to_string())
        });
        for (this, addr) in addrs {
            let fam = Family::of(*addr);
            match &seen {
                Some((f, first)) if *f != fam => {
                    return Err(Error::invalid(format!(
                        "{this} is {} but {first} is {}: a rule or route has one family",
                        fam.label(),
                        f.label()
                    )))
                }
                Some(_) => {}
                None => seen = Some((fam, this.clone())),
            }
        }
        Ok(seen.map_or(Family::V4, |(f, _)| f))
    }
}

/// A prefix as `ip rule from` / `ip route` take it: `10.0.0.0/24`, or a bare address for one
/// host; host bits must be zero.
pub fn parse_prefix(s: &str) -> std::result::Result<IpNet, String> {
    let net = common::types::parse_prefix_or_host(s)?;
    if net.trunc() != net {
        return Err(format!(
            "'{s}' has host bits set (the prefix is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

/// `DEST|default` of `route add/del`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dest {
    Default,
    Prefix(IpNet),
}

impl std::str::FromStr for Dest {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        if s == "default" {
            Ok(Dest::Default)
        } else {
            parse_prefix(s).map(Dest::Prefix)
        }
    }
}

impl std::fmt::Display for Dest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dest::Default => f.write_str("default"),
            Dest::Prefix(p) => p.fmt(f),
        }
    }
}

/// What `del` does once it has found the matching objects (kernel message and parsed object
/// each): deletes them (unless `--check`; one already gone counts as deleted, since another
/// process may have removed it between our dump and our delete) and prints them all under `key`,
/// `changed` when there was any. `what` says what was attempted, for an error.
pub fn delete_found<M: Clone, O, V: Serialize, Fut>(
    ctx: &Ctx,
    key: &'static str,
    found: &[&(M, O)],
    delete: impl Fn(M) -> Fut,
    view: impl Fn(&O) -> V,
    what: impl Fn() -> String,
) -> Result<Outcome>
where
    Fut: Future<Output = std::result::Result<(), rtnetlink::Error>>,
{
    if !ctx.check {
        for (msg, _) in found {
            let gone = ctx.block_on(delete(msg.clone())).with_context(&what);
            match gone {
                Err(e) if e.kind() != Kind::NotFound => return Err(e),
                _ => {}
            }
        }
    }
    let removed: Vec<V> = found.iter().map(|(_, o)| view(o)).collect();
    Outcome::object(!removed.is_empty(), key, removed)
}

/// Index -> name of every link in the namespace.
pub async fn link_names(handle: &Handle) -> Result<HashMap<u32, String>> {
    Ok(common::nl::links(handle)
        .await?
        .iter()
        .filter_map(|l| l.name().map(|n| (l.header.index, n.to_string())))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes() {
        assert_eq!(parse_prefix("10.0.0.1").unwrap().prefix_len(), 32);
        assert!(parse_prefix("10.0.0.1/24")
            .unwrap_err()
            .contains("10.0.0.0/24"));
        assert_eq!("default".parse::<Dest>().unwrap(), Dest::Default);
    }

    #[test]
    fn mixed_families_are_refused() {
        let a: IpAddr = "10.0.0.0".parse().unwrap();
        let b: IpAddr = "2001:db8::".parse().unwrap();
        let err = FamilyArgs::default()
            .resolve(&[
                ("--from 10.0.0.0/8".into(), a),
                ("--to 2001:db8::/32".into(), b),
            ])
            .unwrap_err();
        assert_eq!(err.exit_code(), 2);
        assert!(err.to_string().contains("2001:db8::/32"));
        let six = FamilyArgs {
            ipv4: false,
            ipv6: true,
        };
        assert_eq!(six.resolve(&[]).unwrap(), Family::V6);
        assert!(six.resolve(&[("--from 10.0.0.0/8".into(), a)]).is_err());
    }
}
