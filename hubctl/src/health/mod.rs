//! The health of a built hub: every record held against what the tools report. This is the
//! object `hub status` and `hub check` print, a port of niransix-sh/status.jq: the same keys in
//! the same order, the same problems in the same words and order. Every problem names the object
//! and what is wrong with it, in words a person can act on ('hub up' repairs all of them).
//!
//! One addition to status.jq: a WireGuard interface whose wireguard-go listener is unfiltered
//! (`wgctl show` says `"listener_filtered": false`) is a problem of its peer.
//!
//! What the tools printed is read into structs of the parts read here; a key that is absent or
//! null reads as jq's null (`// default`), and an output of another shape reads as absent.

mod access;
mod eval;
mod rules;
mod seen;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::{BTreeMap, HashMap, HashSet};

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::conf::Conf;
use crate::record::{Center, Peer};
use eval::Health;
pub(crate) use seen::jq_text;

/// What the hub saw of the kernel.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observed {
    /// What the tools printed (their one JSON object), by owner: "center:links", "center:fwd",
    /// "center:switch", "center:wg", "center:nat", "center:rules", "center:routes" (zones), and per
    /// peer "NAME:links", "NAME:fwd", "NAME:fwd6", "NAME:wg", "NAME:routes", "NAME:nat" (netns).
    /// Kept as printed, each read straight into the shape the health rules want (a listing of
    /// 16,000 rules made into a `Value` first cost more than the rules).
    pub shows: HashMap<String, String>,
    /// The namespaces that exist.
    pub netns: HashSet<String>,
    /// The UDP ports open in the center.
    pub udp_ports: HashSet<u16>,
}

impl Observed {
    /// As one JSON object (`NIRANSIX_HUB_OBSERVED`, the health tests' fixtures): `shows`, each
    /// listing as the tool printed it, `netns` and `udp_ports`, sorted.
    pub fn to_json(&self) -> Value {
        let shows: serde_json::Map<String, Value> = self
            .shows
            .iter()
            .map(|(owner, json)| {
                let v = serde_json::from_str(json).unwrap_or(Value::Null);
                (owner.clone(), v)
            })
            .collect();
        serde_json::json!({
            "shows": shows,
            "netns": self.netns.iter().collect::<std::collections::BTreeSet<_>>(),
            "udp_ports": self.udp_ports.iter().collect::<std::collections::BTreeSet<_>>(),
        })
    }

    /// What [`Observed::to_json`] wrote (missing parts: empty).
    pub fn from_json(v: &Value) -> Observed {
        Observed {
            shows: v["shows"]
                .as_object()
                .into_iter()
                .flatten()
                .map(|(owner, show)| (owner.clone(), show.to_string()))
                .collect(),
            netns: serde_json::from_value(v["netns"].clone()).unwrap_or_default(),
            udp_ports: serde_json::from_value(v["udp_ports"].clone()).unwrap_or_default(),
        }
    }
}

/// `hub status`: the center and every peer, with their health.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct Status {
    pub changed: bool,
    pub healthy: bool,
    pub mode: String,
    pub center: CenterStatus,
    pub peers: Vec<PeerStatus>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct CenterStatus {
    pub ns: Option<String>,
    pub switch: Option<String>,
    pub bridge: String,
    pub interface: String,
    pub address: String,
    pub cidr: String,
    pub address6: Option<String>,
    pub cidr6: Option<String>,
    pub up: bool,
    pub healthy: bool,
    pub problems: Vec<String>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(default)]
pub struct PeerStatus {
    pub name: String,
    /// Its namespace (HUB_MODE=zones: the center's; null for the host).
    pub ns: Option<String>,
    pub address: String,
    pub address6: Option<String>,
    pub listen_port: u16,
    pub public_key: Option<String>,
    pub client_public_key: Option<String>,
    pub preshared_key: bool,
    pub keepalive: Option<u16>,
    pub mtu: Option<u32>,
    pub dns: Vec<String>,
    pub interface: String,
    /// Its WireGuard interface exists.
    pub up: bool,
    pub endpoint: Option<String>,
    /// What its tunnel routes to the client, as WireGuard has it.
    pub allowed_ips: Vec<String>,
    pub latest_handshake: Option<u64>,
    pub rx_bytes: u64,
    pub tx_bytes: u64,
    /// Its forwards and allow entries in force (the hub's and its own; allow: none given is the
    /// whole internal network).
    pub forwards: Vec<String>,
    pub allow: Vec<String>,
    /// Packets from its device that were refused (dropped and counted).
    pub denied_packets: u64,
    pub healthy: bool,
    pub problems: Vec<String>,
}

/// The status object of the hub CONF (CENTER: its record, None when it is not up; PEERS: the
/// peer records by name) as SEEN.
pub fn status(
    conf: &Conf,
    center: Option<&Center>,
    peers: &BTreeMap<String, Peer>,
    seen: &Observed,
) -> Value {
    serde_json::to_value(Health::new(conf, center, peers, seen).status())
        .expect("a status serializes")
}
