//! What the tools print, typed: `nsctl`, `wgctl`, `routectl` and `natctl` listings as the hub
//! reads them (health, pruning, `down`). A key that is absent or null reads as jq's null
//! (`// default`), and a list that is null as empty.

use serde::de::{DeserializeOwned, Deserializer};
use serde::Deserialize;
use serde_json::Value;

use crate::error::{failed, Fail};

/// OUT, what WHAT printed (`natctl list` of the center), as T; nothing printed (a stand-in's
/// read) as T's default. Output of another shape is an error: pruning or `down` acting on a
/// listing it misread would leave behind what it should delete.
pub(crate) fn parse<T: DeserializeOwned + Default>(out: &str, what: &str) -> Result<T, Fail> {
    if out.trim().is_empty() {
        return Ok(T::default());
    }
    serde_json::from_str(out).map_err(|e| failed(format!("reading what {what} printed: {e}")))
}

/// A `Vec` field that may be null (jq's `.list[]?` and `.list // []`).
pub(crate) fn null_empty<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Vec<T>, D::Error> {
    Ok(Option::<Vec<T>>::deserialize(d)?.unwrap_or_default())
}

/// `nsctl link list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct LinkList {
    #[serde(deserialize_with = "null_empty")]
    pub(crate) links: Vec<Link>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Link {
    pub(crate) name: String,
    pub(crate) state: Option<String>,
    pub(crate) master: Option<String>,
    pub(crate) mtu: Option<u64>,
    #[serde(deserialize_with = "null_empty")]
    pub(crate) addresses: Vec<String>,
    /// A bridge port's isolation (nsctl lists it for ports only).
    pub(crate) isolated: Option<bool>,
    /// It takes IPv6 (null: the kernel has no IPv6 for it, or an nsctl that does not say).
    pub(crate) ipv6: Option<bool>,
}

/// `nsctl sysctl KEY`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SysctlShow {
    pub(crate) sysctl: Option<Sysctl>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Sysctl {
    pub(crate) value: Option<String>,
}

impl SysctlShow {
    pub(crate) fn is_on(&self) -> bool {
        self.sysctl.as_ref().and_then(|s| s.value.as_deref()) == Some("1")
    }
}

/// `wgctl show`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WgShow {
    #[serde(deserialize_with = "null_empty")]
    pub(crate) interfaces: Vec<WgInterface>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WgInterface {
    pub(crate) name: Option<String>,
    pub(crate) public_key: Option<String>,
    pub(crate) listen_port: Option<u64>,
    #[serde(deserialize_with = "null_empty")]
    pub(crate) peers: Vec<WgPeer>,
    /// wireguard-go's listener filters the center's link events (null: unknown).
    pub(crate) listener_filtered: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WgPeer {
    pub(crate) public_key: Option<String>,
    pub(crate) endpoint: Option<String>,
    #[serde(deserialize_with = "null_empty")]
    pub(crate) allowed_ips: Vec<String>,
    pub(crate) latest_handshake: Option<u64>,
    pub(crate) rx_bytes: Option<u64>,
    pub(crate) tx_bytes: Option<u64>,
    pub(crate) persistent_keepalive: Option<u64>,
    pub(crate) preshared_key: Option<bool>,
}

/// `routectl route list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RouteList {
    #[serde(deserialize_with = "null_empty")]
    pub(crate) routes: Vec<Route>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Route {
    pub(crate) family: Option<String>,
    pub(crate) dst: Option<String>,
    pub(crate) dev: Option<String>,
    /// Its name ("main") or its number.
    pub(crate) table: Value,
    pub(crate) table_id: Option<u64>,
}

/// `routectl rule list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct RuleList {
    #[serde(deserialize_with = "null_empty")]
    pub(crate) rules: Vec<Rule>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Rule {
    pub(crate) family: Option<String>,
    pub(crate) not: bool,
    pub(crate) fwmark: Option<u64>,
    pub(crate) fwmask: Option<u64>,
    pub(crate) table_id: Option<u64>,
    pub(crate) goto: Option<u64>,
    pub(crate) priority: Option<u64>,
}

impl Rule {
    /// The rule FAMILY (inet, inet6) of `routectl rule add ARGS` as [`crate::fwmark`] writes
    /// them: `[-6] [--not] [--fwmark M[/MASK]] --table T|--goto P --priority P`.
    pub(crate) fn is(&self, family: &str, args: &str) -> bool {
        let mut want = Rule {
            family: Some(family.to_string()),
            ..Rule::default()
        };
        let mut words = args.split_whitespace();
        while let Some(w) = words.next() {
            let mut value = || words.next().and_then(|v| parse_u64(v.split('/').next()?));
            match w {
                "--not" => want.not = true,
                "--fwmark" => want.fwmark = value(),
                "--table" => want.table_id = value(),
                "--goto" => want.goto = value(),
                "--priority" => want.priority = value(),
                _ => {}
            }
        }
        let mask = args
            .split_whitespace()
            .find_map(|w| w.split_once('/').map(|(_, m)| parse_u64(m)))
            .flatten();
        self.family == want.family
            && self.not == want.not
            && self.fwmark == want.fwmark
            && (want.fwmark.is_none() || self.fwmask == mask.or(Some(u64::from(u32::MAX))))
            && self.table_id == want.table_id
            && self.goto == want.goto
            && self.priority == want.priority
    }
}

/// A decimal or 0x-hex number.
fn parse_u64(s: &str) -> Option<u64> {
    match s.strip_prefix("0x") {
        Some(hex) => u64::from_str_radix(hex, 16).ok(),
        None => s.parse().ok(),
    }
}

/// `natctl list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NatList {
    #[serde(deserialize_with = "null_empty")]
    pub(crate) rules: Vec<NatRule>,
    #[serde(deserialize_with = "null_empty")]
    pub(crate) foreign_tables: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct NatRule {
    pub(crate) id: Value,
    pub(crate) kind: Option<String>,
    pub(crate) iif: Option<String>,
    pub(crate) oif: Option<String>,
    /// A number, or `"@MAP"` for a rule over a map.
    pub(crate) zone: Option<Value>,
    pub(crate) dir: Option<String>,
    /// A mark, or `"@MAP"`.
    pub(crate) set: Option<Value>,
    pub(crate) to: Option<String>,
    pub(crate) src: Option<String>,
    pub(crate) dst: Option<String>,
    pub(crate) daddr: Option<String>,
    pub(crate) proto: Option<String>,
    pub(crate) dport: Option<String>,
    pub(crate) reply: Option<bool>,
    pub(crate) packets: Option<u64>,
    pub(crate) local: Option<bool>,
    pub(crate) early: Option<bool>,
    pub(crate) verdict: Option<String>,
    pub(crate) default: Option<String>,
    pub(crate) tampered: Option<bool>,
    pub(crate) complete: Option<bool>,
}

impl NatRule {
    /// The rule's id (natctl's hex digest).
    pub(crate) fn id(&self) -> Option<&str> {
        self.id.as_str()
    }

    /// What the rule matches a packet's interface or address against: a name, an address, or
    /// `@SET`.
    pub(crate) fn matched(&self) -> impl Iterator<Item = &str> {
        [&self.iif, &self.dst, &self.daddr]
            .into_iter()
            .filter_map(Option::as_deref)
    }

    /// The sets the rule looks a packet up in.
    pub(crate) fn sets(&self) -> impl Iterator<Item = &str> {
        self.matched().filter_map(|m| m.strip_prefix('@'))
    }
}

/// `natctl set list`.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SetList {
    #[serde(deserialize_with = "null_empty")]
    pub(crate) sets: Vec<SetShow>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct SetShow {
    pub(crate) name: String,
    #[serde(deserialize_with = "null_empty")]
    pub(crate) elements: Vec<ElementShow>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct ElementShow {
    pub(crate) key: Value,
    pub(crate) value: Value,
    pub(crate) packets: Option<u64>,
}
