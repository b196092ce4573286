//! `hub export [--secrets]`: the peer set as JSON Lines that `sync` takes back, one peer a line
//! in name order, from the records and key files alone (no kernel read, so its cost is the
//! records': 1,000 peers are 1,000 small files): the name, port and address, the client's public
//! key when it brought its own (otherwise the hub makes the pair), a preshared key as `generate`
//! (which keeps the one a peer has), every setting, the peer's own forwards and allow entries,
//! and its last known endpoint (the one `up` last saw on its tunnel: at most a repair period
//! old). `hub export | hub sync -` changes nothing.
//!
//! --secrets adds the key material, inline: `private_key` (the hub side's), `client_private_key`
//! (when the hub made the client's pair) and the preshared key itself. `export --secrets | sync
//! -` on another machine builds the same hub: every client config works there unedited.

use serde_json::{json, Map, Value};

use super::Outcome;
use crate::error::{failed, Result};
use crate::hub::Hub;
use crate::input::key_line;
use crate::record::{ClientKey, Peer};
use crate::state::State;

pub fn export(hub: &mut Hub, secrets: bool) -> Result<Outcome> {
    hub.lock_shared()?;
    hub.load_center()?;
    hub.load_peers()?;
    let mut out = String::new();
    for p in hub.peers.values() {
        let mut o = line(p);
        if secrets {
            add_secrets(&hub.state, p, &mut o)?;
        }
        out.push_str(&format!("{}\n", Value::Object(o)));
    }
    Ok(Outcome { out, code: 0 })
}

/// The key material of PEER into its line O (a key file that is missing or holds no key is
/// exit 1 naming the file: the set would not build the same hub).
fn add_secrets(state: &State, peer: &Peer, o: &mut Map<String, Value>) -> Result<()> {
    let n = &peer.name;
    let key = |path: std::path::PathBuf| -> Result<Value> {
        let text = std::fs::read_to_string(&path).unwrap_or_default();
        key_line(&text)
            .filter(|k| crate::input::key_valid(k))
            .map(|k| json!(k))
            .ok_or_else(|| {
                failed(format!(
                    "export --secrets: {} holds no key (peer '{n}' is not built yet? run 'hub up')",
                    path.display()
                ))
            })
    };
    o.insert("private_key".into(), key(state.key_path(n))?);
    if peer.client_key == ClientKey::Generated {
        o.insert("client_private_key".into(), key(state.client_key_path(n))?);
    }
    if peer.settings.preshared_key {
        o.insert("preshared_key".into(), key(state.psk_path(n))?);
    }
    Ok(())
}

/// PEER as a line of the set.
fn line(peer: &Peer) -> Map<String, Value> {
    let s = &peer.settings;
    let mut o = Map::new();
    o.insert("name".into(), json!(peer.name));
    o.insert("port".into(), json!(peer.listen_port));
    o.insert("address".into(), json!(peer.address.to_string()));
    if peer.client_key == ClientKey::Given {
        o.insert("public_key".into(), json!(peer.client_public_key));
    }
    if s.preshared_key {
        o.insert("preshared_key".into(), json!("generate"));
    }
    if let Some(k) = s.keepalive {
        o.insert("keepalive".into(), json!(k));
    }
    if let Some(m) = s.mtu {
        o.insert("mtu".into(), json!(m));
    }
    if let Some(d) = &s.dns {
        o.insert("dns".into(), json!(d.split(',').collect::<Vec<_>>()));
    }
    if !s.forwards.is_empty() {
        o.insert("forwards".into(), json!(s.forwards));
    }
    if !s.allow.is_empty() {
        o.insert("allow".into(), json!(s.allow));
    }
    if let Some(e) = &peer.endpoint {
        o.insert("endpoint".into(), json!(e));
    }
    o
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conf::Conf;
    use crate::input::peer_set;
    use std::collections::HashMap;

    #[test]
    fn a_line_is_what_sync_reads_back() {
        let conf = Conf::from_map(&HashMap::new()).unwrap();
        let mut p = Peer::new("c07", 50007, "100.64.0.7".parse().unwrap());
        p.client_key = ClientKey::Given;
        p.client_public_key = Some("xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=".into());
        p.settings.keepalive = Some(25);
        p.settings.mtu = Some(1400);
        p.settings.dns = Some("192.0.2.53,192.0.2.54".into());
        p.settings.forwards = vec!["tcp/8080=80".parse().unwrap()];
        p.settings.allow = vec!["100.64.0.10/32,tcp/443".parse().unwrap()];
        let text = format!("{}\n", Value::Object(line(&p)));
        assert_eq!(
            text,
            "{\"name\":\"c07\",\"port\":50007,\"address\":\"100.64.0.7\",\"public_key\":\"xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=\",\"keepalive\":25,\"mtu\":1400,\"dns\":[\"192.0.2.53\",\"192.0.2.54\"],\"forwards\":[\"tcp/8080=80\"],\"allow\":[\"100.64.0.10/32,tcp/443\"]}\n"
        );
        let back = &peer_set(&conf, &text).unwrap()[0];
        assert_eq!(
            (back.port, back.address, back.public_key.as_deref()),
            (Some(50007), Some(p.address), p.client_public_key.as_deref())
        );
        let w = &back.settings;
        assert_eq!(
            (w.keepalive, w.mtu, w.dns.as_deref()),
            (Some(25), Some(1400), s(&p.settings.dns))
        );
        assert_eq!(w.forwards.as_ref(), Some(&p.settings.forwards));
        assert_eq!(w.allow.as_ref(), Some(&p.settings.allow));
    }

    fn s(v: &Option<String>) -> Option<&str> {
        v.as_deref()
    }
}
