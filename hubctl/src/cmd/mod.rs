//! The hub's commands, each a module; `run` dispatches. Every command but `peer conf` and
//! `show` prints one JSON object with `changed`.

mod add;
mod conf;
mod del;
mod down;
mod export;
mod rekey;
mod reseed;
mod set;
mod status;
mod sync;
mod up;

use std::io::Write;

use serde_json::{json, Value};

use crate::args::{Args, Verb};
use crate::error::{failed, Result};
use crate::hub::Hub;

/// What a command ends with: its output and its exit code.
pub struct Outcome {
    pub out: String,
    pub code: u8,
}

impl Outcome {
    pub fn json(v: &Value) -> Outcome {
        Outcome {
            out: format!("{v}\n"),
            code: 0,
        }
    }
}

pub fn run(hub: &mut Hub, args: &Args) -> Result<Outcome> {
    match args.verb {
        Verb::Up => up::up(hub),
        Verb::Down => down::down(hub, args.flag("--keep-state")),
        Verb::Status => status::status(hub).map(|s| Outcome::json(&s)),
        Verb::Check => status::check(hub),
        Verb::Metrics => status::metrics(hub),
        Verb::Show => status::show(hub),
        Verb::Export => export::export(hub, args.flag("--secrets")),
        Verb::Reseed => reseed::reseed(hub, &args.names),
        Verb::Standby => reseed::standby(hub),
        Verb::Sync => sync::sync(hub, &args.names[0], args.flag("--allow-empty")),
        Verb::PeerAdd => add::add(hub, args),
        Verb::PeerSet => set::set(hub, args),
        Verb::PeerDel => del::del(hub, &args.names),
        Verb::PeerRekey => rekey::rekey(hub, &args.names, args.flag("--client")),
        Verb::PeerConf => conf::conf(hub, args),
    }
}

/// The namespace a peer's tunnel ends in: its own, or (zones) the center's (null: the host).
fn peer_ns(hub: &Hub, name: &str) -> Value {
    let ns = if hub.conf.zones() {
        hub.conf.ns.clone()
    } else {
        format!("{}{name}", hub.conf.prefix)
    };
    if ns.is_empty() {
        Value::Null
    } else {
        json!(ns)
    }
}

/// The `peer add`/`peer set` report.
fn peers_report(hub: &Hub, names: &[String]) -> Value {
    let peers: Vec<Value> = names
        .iter()
        .map(|n| {
            let p = hub.peer(n);
            json!({"name": n, "changed": hub.run.changed(n), "ns": peer_ns(hub, n), "address": p.address.to_string(),
                   "listen_port": p.listen_port, "public_key": p.public_key, "client_public_key": p.client_public_key})
        })
        .collect();
    json!({"changed": hub.run.any_changed(), "peers": peers})
}

/// Writes TEXT to stdout.
pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())
        .and_then(|()| out.flush())
        .map_err(|e| failed(format!("cannot write the output: {e}")))
}
