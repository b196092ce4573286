//! `hub export`: the peer set as JSON Lines that `sync` takes back, one peer a line in name
//! order, from the records alone (no kernel read, so its cost is the records'): the name, port
//! and address, the client's public key when it brought its own (otherwise the hub makes the
//! pair), a preshared key as `generate` (which keeps the one a peer has), every setting, and
//! the peer's own forwards and allow entries. `hub export | hub sync -` changes nothing.

use serde_json::{json, Map, Value};

use super::Outcome;
use crate::error::Result;
use crate::hub::Hub;
use crate::record::{ClientKey, Peer};

pub fn export(hub: &mut Hub) -> Result<Outcome> {
    hub.lock_shared()?;
    hub.load_center()?;
    hub.load_peers()?;
    let out: String = hub
        .peers
        .values()
        .map(|p| format!("{}\n", Value::Object(line(p))))
        .collect();
    Ok(Outcome { out, code: 0 })
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
