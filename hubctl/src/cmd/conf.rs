//! `hub peer conf NAME [--qr] [--private-key-file FILE]`: the wg-quick config of the client
//! side. The keys go from their files to stdout (or to qrencode), never into argv or a log.
//!
//! `hub peer conf --all`: every peer's config in one JSON object, for a tool that delivers them
//! (the Ansible role writes each to the controller): `{"changed":false,"peers":[{"name","conf",
//! "private_key"},..]}` in name order, `private_key` false where the client brought its own key
//! (its config holds the placeholder). Its cost is the records' and the key files', not a
//! process per peer.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::json;

use super::Outcome;
use crate::args::Args;
use crate::error::{failed, invalid, Result};
use crate::exec::Tool::Nsctl;
use crate::hub::{public_key_of, Hub};
use crate::input::{self, key_line};
use crate::plan::ns_opt;
use crate::record::{ClientKey, Peer};
use crate::steps::Step;

pub fn conf(hub: &mut Hub, args: &Args) -> Result<Outcome> {
    if args.flag("--all") {
        return all(hub, args);
    }
    let [n] = args.names.as_slice() else {
        return Err(invalid(
            "peer conf: give exactly one peer NAME (or --all for every peer's, as JSON)",
        ));
    };
    input::name(&hub.conf, n)?;
    let qr = args.flag("--qr");
    if qr && !on_path("qrencode") {
        return Err(invalid("--qr needs qrencode (apt-get install qrencode)"));
    }
    hub.lock_shared()?;
    hub.load_center()?;
    hub.require_peer(n, "")?;
    let peer = hub.peer(n).clone();
    let given_file = args.value("--private-key-file").map(PathBuf::from);
    let keyfile = match (peer.client_key, given_file) {
        (ClientKey::Generated, Some(_)) => {
            return Err(invalid(format!(
                "--private-key-file: peer '{n}' has a client key pair the hub made; it is in the config already"
            )))
        }
        (ClientKey::Generated, None) => Some(hub.state.client_key_path(n)),
        (ClientKey::Given, Some(f)) => {
            let shown = f.display().to_string();
            if !f.is_file() || std::fs::File::open(&f).is_err() {
                return Err(invalid(format!("--private-key-file '{shown}' is not a readable file")));
            }
            let public = public_key_of(&f)
                .map_err(|_| invalid(format!("--private-key-file '{shown}' does not hold a WireGuard private key")))?;
            if Some(&public) != peer.client_public_key.as_ref() {
                return Err(invalid(format!(
                    "--private-key-file '{shown}' is not the key of peer '{n}' (its public key is not {})",
                    peer.client_public_key.as_deref().unwrap_or("")
                )));
            }
            Some(f)
        }
        (ClientKey::Given, None) => {
            eprintln!(
                "{}: warning: peer '{n}' brought its own key: the config's PrivateKey is a placeholder that wg-quick refuses; fill in the private key of {}, or give it with --private-key-file FILE",
                crate::prog(),
                peer.client_public_key.as_deref().unwrap_or("")
            );
            None
        }
    };
    let keys = keys(hub, &peer, keyfile.as_deref())?;
    let endpoint = endpoint(hub)?;
    let text = client_conf(hub, &peer, &endpoint, &keys)?;
    if qr {
        let mut child = Command::new("qrencode")
            .args(["-t", "ansiutf8"])
            .stdin(Stdio::piped())
            .spawn()
            .map_err(|e| failed(format!("cannot run qrencode: {e}")))?;
        let fed = child.stdin.take().map(|mut i| i.write_all(text.as_bytes()));
        let status = child.wait().map_err(|e| failed(format!("qrencode: {e}")))?;
        if !status.success() || !matches!(fed, Some(Ok(()))) {
            return Err(failed("qrencode failed"));
        }
        return Ok(Outcome {
            out: String::new(),
            code: 0,
        });
    }
    Ok(Outcome { out: text, code: 0 })
}

/// `peer conf --all`: every peer's config, the one endpoint looked up once.
fn all(hub: &mut Hub, args: &Args) -> Result<Outcome> {
    if !args.names.is_empty() {
        return Err(invalid(format!(
            "peer conf --all takes no NAME, got '{}'",
            args.names.join(" ")
        )));
    }
    if let Some(o) = ["--qr", "--private-key-file"]
        .into_iter()
        .find(|o| args.options.contains_key(*o))
    {
        return Err(invalid(format!("{o} does not go with 'peer conf --all'")));
    }
    hub.lock_shared()?;
    hub.load_center()?;
    hub.load_peers()?;
    // Every key first (a missing one is the error, whatever the endpoint), then the endpoint.
    let keys = hub
        .peers
        .values()
        .map(|peer| {
            let keyfile = (peer.client_key == ClientKey::Generated)
                .then(|| hub.state.client_key_path(&peer.name));
            keys(hub, peer, keyfile.as_deref())
        })
        .collect::<Result<Vec<Keys>>>()?;
    let endpoint = if keys.is_empty() {
        String::new()
    } else {
        endpoint(hub)?
    };
    let mut peers = Vec::with_capacity(keys.len());
    for (peer, keys) in hub.peers.values().zip(&keys) {
        let conf = client_conf(hub, peer, &endpoint, keys)?;
        let own = peer.client_key == ClientKey::Generated;
        peers.push(json!({"name": peer.name, "conf": conf, "private_key": own}));
    }
    let out = json!({"changed": false, "peers": peers});
    Ok(Outcome {
        out: format!("{out}\n"),
        code: 0,
    })
}

fn on_path(program: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(program).is_file()))
}

/// HUB_ENDPOINT, else the center's first global address off the bridge.
fn endpoint(hub: &mut Hub) -> Result<String> {
    let c = hub.conf.clone();
    let ep = if !c.endpoint.is_empty() {
        c.endpoint.clone()
    } else {
        let json = hub
            .run
            .probe(Step::new(
                Nsctl,
                "center",
                format!("{}link list", ns_opt(&c.ns)),
            ))?
            .unwrap_or_default();
        let v: serde_json::Value = serde_json::from_str(&json).unwrap_or_default();
        let skip = [c.bridge.clone(), c.center_if(), "lo".to_string()];
        let found = v["links"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|l| !skip.iter().any(|s| l["name"] == s.as_str()))
            .flat_map(|l| {
                l["addresses"]
                    .as_array()
                    .cloned()
                    .unwrap_or_default()
                    .into_iter()
                    .filter_map(|a| {
                        a.as_str()
                            .map(|s| s.split('/').next().unwrap_or("").to_string())
                    })
            })
            .find(|a| !(a.starts_with("127.") || a.starts_with("fe80:") || a == "::1"));
        found.ok_or_else(|| {
            failed("no endpoint: the center has no global address; set HUB_ENDPOINT")
        })?
    };
    Ok(if ep.contains(':') && !ep.starts_with('[') {
        format!("[{ep}]")
    } else {
        ep
    })
}

/// The keys a client config holds, read before a line of it is made (no partial config).
struct Keys {
    /// The client's private key, or the placeholder that wg-quick refuses.
    private: String,
    preshared: Option<String>,
}

/// PEER's keys: its client private key from KEYFILE (None: the placeholder) and its preshared
/// key; a key file that is missing or empty is exit 1 naming it.
fn keys(hub: &Hub, peer: &Peer, keyfile: Option<&Path>) -> Result<Keys> {
    let n = &peer.name;
    let read_key = |f: &Path| {
        std::fs::read_to_string(f)
            .ok()
            .and_then(|t| key_line(&t).map(str::to_string))
            .ok_or_else(|| {
                failed(format!(
                    "peer '{n}': its key file {} is missing or empty ('hub peer rekey {n} --client' makes a new client pair)",
                    f.display()
                ))
            })
    };
    let preshared = match peer.settings.preshared_key {
        true => Some(read_key(&hub.state.psk_path(n))?),
        false => None,
    };
    let private = match keyfile {
        Some(f) => read_key(f)?,
        None => format!(
            "(fill in the private key of {})",
            peer.client_public_key.as_deref().unwrap_or("")
        ),
    };
    Ok(Keys { private, preshared })
}

/// The wg-quick config of PEER's client side, with its KEYS.
fn client_conf(hub: &Hub, peer: &Peer, endpoint: &str, keys: &Keys) -> Result<String> {
    let c = &hub.conf;
    let n = &peer.name;
    // The port the client dials: the peer's own, or with HUB_PUBLIC_PORT_BASE (a firewall in
    // front forwarding other ports) the same offset from that.
    let port = match c.public_port_base {
        None => i64::from(peer.listen_port),
        Some(base) => {
            let offset = i64::from(peer.listen_port) - i64::from(c.port_base);
            let port = i64::from(base) + offset;
            if !(1..=65535).contains(&port) {
                return Err(failed(format!(
                    "peer '{n}' listens on {}: HUB_PUBLIC_PORT_BASE {base} + {offset} is no port",
                    peer.listen_port
                )));
            }
            port
        }
    };
    let (mut address, mut allowed) = (c.client_address.clone(), c.cidr_text.clone());
    if let Some(v6) = &c.v6 {
        address.push_str(&format!(", {}", v6.client_address));
        allowed.push_str(&format!(", {}", v6.cidr_text));
    }
    let mut t = format!("# niransix hub: client side of peer {n} (wg-quick)\n[Interface]\nPrivateKey = {}\nAddress = {address}\n", keys.private);
    if let Some(m) = peer.settings.mtu {
        t.push_str(&format!("MTU = {m}\n"));
    }
    if let Some(d) = &peer.settings.dns {
        t.push_str(&format!("DNS = {}\n", d.replace(',', ", ")));
    }
    t.push_str(&format!(
        "\n[Peer]\nPublicKey = {}\n",
        peer.public_key.as_deref().unwrap_or("")
    ));
    if let Some(k) = &keys.preshared {
        t.push_str(&format!("PresharedKey = {k}\n"));
    }
    t.push_str(&format!(
        "Endpoint = {endpoint}:{port}\nAllowedIPs = {allowed}\n"
    ));
    let ka = peer.settings.keepalive.unwrap_or(25);
    if ka != 0 {
        t.push_str(&format!("PersistentKeepalive = {ka}\n"));
    }
    Ok(t)
}
