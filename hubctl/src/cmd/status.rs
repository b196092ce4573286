//! `hub status`, `check`, `metrics` and `show`: every record held against what the tools report
//! of the kernel (one batch per tool and group: a few reads per peer, however many peers).

use std::io::IsTerminal;
use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

use super::Outcome;
use crate::error::Result;
use crate::hub::Hub;

pub fn status(hub: &mut Hub) -> Result<Value> {
    hub.lock_shared()?;
    hub.load_center()?;
    hub.load_peers()?;
    let seen = hub.observe()?;
    // (empty is unset, as a shell's `NIRANSIX_HUB_OBSERVED= hub status` means)
    if let Some(path) = std::env::var_os("NIRANSIX_HUB_OBSERVED").filter(|p| !p.is_empty()) {
        // (what status read of the kernel, for a bug report or a health test's fixture)
        let observed = seen.to_json();
        std::fs::write(&path, format!("{observed}\n")).map_err(|e| {
            crate::error::failed(format!(
                "writing what status read to {}: {e}",
                std::path::Path::new(&path).display()
            ))
        })?;
    }
    Ok(crate::health::status(
        &hub.conf,
        hub.center.as_ref(),
        &hub.peers,
        &seen,
    ))
}

/// `status`, exit 1 unless everything is healthy.
pub fn check(hub: &mut Hub) -> Result<Outcome> {
    let s = status(hub)?;
    let code = if s["healthy"] == true { 0 } else { 1 };
    Ok(Outcome {
        out: format!("{s}\n"),
        code,
    })
}

pub fn metrics(hub: &mut Hub) -> Result<Outcome> {
    let s = status(hub)?;
    Ok(Outcome {
        out: crate::metrics::metrics(&s, now()),
        code: 0,
    })
}

pub fn show(hub: &mut Hub) -> Result<Outcome> {
    let s = status(hub)?;
    Ok(Outcome {
        out: crate::show::show(&s, now(), std::io::stdout().is_terminal()),
        code: 0,
    })
}

fn now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}
