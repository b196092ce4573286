//! The hub's records, one codec: a peer's (peers/NAME.json) and the center's (center.json).
//! Each is one line of JSON, replaced by rename, and says its format's version. Records of every
//! earlier version are read: a record without a version (the bash hub's), a peer record without
//! its settings (before `peer set` existed), a center record without its mode (a netns hub) or
//! settings (before they were recorded). A record of a later version than this hubctl knows is
//! refused (state.rs): a downgrade would drop what it does not know.

/// The version of the records this hubctl writes.
pub const VERSION: u32 = 1;

use std::net::Ipv4Addr;

use serde::{Deserialize, Serialize};

use crate::access::{Allow, Forward};

/// Where the client's key pair comes from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientKey {
    /// The client brought its public key.
    Given,
    /// The hub made the pair (peers/NAME.client.key).
    Generated,
}

/// A peer's per-tunnel settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Settings {
    /// A preshared key in peers/NAME.psk.
    #[serde(default)]
    pub preshared_key: bool,
    /// Persistent keepalive of the hub side, seconds (None: the default, none).
    #[serde(default)]
    pub keepalive: Option<u16>,
    #[serde(default)]
    pub mtu: Option<u32>,
    /// DNS servers for the client config, comma-separated.
    #[serde(default)]
    pub dns: Option<String>,
    /// The peer's own forwards (beside HUB_FORWARDS).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub forwards: Vec<Forward>,
    /// The peer's own allow entries (beside HUB_ALLOW).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub allow: Vec<Allow>,
}

/// One peer: its tunnel's port, its internal address and its keys.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Peer {
    /// The record's format (0: written before records had one).
    #[serde(default)]
    pub version: u32,
    pub name: String,
    pub listen_port: u16,
    pub address: Ipv4Addr,
    pub client_key: ClientKey,
    /// None until its key exists (a record written before its keys were made).
    pub client_public_key: Option<String>,
    pub public_key: Option<String>,
    #[serde(flatten)]
    pub settings: Settings,
    /// The client's last known endpoint (ADDRESS:PORT), as `up` last saw it on the tunnel or
    /// `sync` was given it: where `reseed` sends the hub's handshake.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub endpoint: Option<String>,
}

impl Peer {
    pub fn new(name: &str, listen_port: u16, address: Ipv4Addr) -> Peer {
        Peer {
            version: VERSION,
            name: name.to_string(),
            listen_port,
            address,
            client_key: ClientKey::Generated,
            client_public_key: None,
            public_key: None,
            settings: Settings::default(),
            endpoint: None,
        }
    }

    /// The record as written: in this hubctl's version.
    pub fn line(&self) -> String {
        serde_json::to_string(&Peer {
            version: VERSION,
            ..self.clone()
        })
        .expect("a peer record serializes")
    }
}

/// What `up` found and made of the center, so that `down` removes only that, and the settings
/// the hub was built with.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Center {
    /// The record's format (0: written before records had one).
    #[serde(default)]
    pub version: u32,
    pub ns: Option<String>,
    pub prefix: String,
    pub ns_created: bool,
    pub bridge_created: bool,
    /// net.ipv4.ip_forward before the hub set it ("0" or "1"; None: the hub made the namespace).
    pub forward_old: Option<String>,
    /// The switch namespace (the bridge and the peers' ports); None: the bridge is in the center.
    #[serde(default)]
    pub switch: Option<String>,
    #[serde(default = "netns_mode")]
    pub mode: String,
    #[serde(flatten)]
    pub settings: Option<Recorded>,
}

fn netns_mode() -> String {
    "netns".to_string()
}

/// The settings that define a built hub.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Recorded {
    pub bridge: String,
    pub cidr: String,
    pub address: String,
    pub port_base: String,
    pub client_address: String,
    pub cidr6: String,
    pub address6: String,
    pub client_address6: String,
}

impl Recorded {
    pub fn get(&self, key: &str) -> &str {
        match key {
            "bridge" => &self.bridge,
            "cidr" => &self.cidr,
            "address" => &self.address,
            "port_base" => &self.port_base,
            "client_address" => &self.client_address,
            "cidr6" => &self.cidr6,
            "address6" => &self.address6,
            _ => &self.client_address6,
        }
    }
}

impl Center {
    /// The record as written: in this hubctl's version.
    pub fn line(&self) -> String {
        serde_json::to_string(&Center {
            version: VERSION,
            ..self.clone()
        })
        .expect("a center record serializes")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn todays_and_older_peer_records_are_read() {
        let old = r#"{"name":"c01","listen_port":50000,"address":"100.64.0.1","client_key":"generated","client_public_key":"Q","public_key":null}"#;
        let p: Peer = serde_json::from_str(old).unwrap();
        assert_eq!(p.settings, Settings::default());
        assert_eq!(p.public_key, None);
        let full = r#"{"name":"c01","listen_port":50000,"address":"100.64.0.1","client_key":"given","client_public_key":"Q","public_key":"P","preshared_key":true,"keepalive":25,"mtu":1380,"dns":"192.0.2.53,192.0.2.54"}"#;
        let p: Peer = serde_json::from_str(full).unwrap();
        assert_eq!(p.version, 0);
        assert_eq!(
            p.line(),
            full.replacen('{', "{\"version\":1,", 1),
            "written as read, in today's version, key order kept"
        );
        assert!(serde_json::from_str::<Peer>(&full.replace("given", "stolen")).is_err());
    }

    #[test]
    fn center_records_old_and_new() {
        let old = r#"{"ns":"hub","prefix":"","ns_created":true,"bridge_created":true,"forward_old":null}"#;
        let c: Center = serde_json::from_str(old).unwrap();
        assert_eq!(
            (c.mode.as_str(), c.switch.clone(), c.settings.clone()),
            ("netns", None, None)
        );
        let new = r#"{"ns":null,"prefix":"x","ns_created":false,"bridge_created":true,"forward_old":"0","switch":"xhub.switch","mode":"zones","bridge":"br-internal","cidr":"100.64.0.0/24","address":"100.64.0.10","port_base":"50000","client_address":"192.168.1.10/32","cidr6":"","address6":"","client_address6":""}"#;
        let c: Center = serde_json::from_str(new).unwrap();
        assert_eq!(c.line(), new.replacen('{', "{\"version\":1,", 1));
        assert_eq!(c.settings.unwrap().get("cidr"), "100.64.0.0/24");
    }
}
