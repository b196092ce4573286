//! `nsctl [--ns NS] sysctl KEY[=VALUE]`: read or set a sysctl as seen from the namespace
//! (the thread is already inside it, and /proc/sys/net follows the opening thread's namespace).

use std::path::PathBuf;

use clap::Args;
use serde_json::json;

use common::{Context, Ctx, Error, Outcome, Result};

#[derive(Args, Debug)]
pub struct Sysctl {
    /// KEY to read, or KEY=VALUE to set, e.g. net.ipv4.ip_forward=1
    /// (like `sysctl [-w] KEY[=VALUE]`; KEY may also use `/`: net/ipv4/conf/eth0.10/forwarding)
    #[arg(value_parser = parse_setting)]
    pub setting: Setting,
}

#[derive(Debug, Clone)]
pub struct Setting {
    key: String,
    path: PathBuf,
    value: Option<String>,
}

/// Splits KEY[=VALUE] and maps KEY onto /proc/sys without letting it leave /proc/sys.
pub fn parse_setting(s: &str) -> std::result::Result<Setting, String> {
    let (key, value) = match s.split_once('=') {
        Some((k, v)) => (k.trim(), Some(v.trim().to_string())),
        None => (s.trim(), None),
    };
    let parts: Vec<&str> = if key.contains('/') {
        key.split('/').collect()
    } else {
        key.split('.').collect()
    };
    let bad = parts.iter().find(|p| {
        p.is_empty()
            || **p == "."
            || **p == ".."
            || p.bytes().any(|b| !(b.is_ascii_graphic()) || b == b'/')
    });
    if key.is_empty() || bad.is_some() {
        return Err(format!(
            "sysctl key '{key}' is invalid: use dotted names like net.ipv4.ip_forward"
        ));
    }
    if matches!(&value, Some(v) if v.contains('\n')) {
        return Err(format!("sysctl value for '{key}' contains a newline"));
    }
    Ok(Setting {
        key: parts.join("."),
        path: PathBuf::from("/proc/sys").join(parts.join("/")),
        value,
    })
}

/// Values compare by their whitespace-separated fields (`32768\t60999` == `32768 60999`).
fn same(a: &str, b: &str) -> bool {
    a.split_whitespace().eq(b.split_whitespace())
}

impl Sysctl {
    pub fn run(self, ctx: &Ctx) -> Result<Outcome> {
        let Setting { key, path, value } = self.setting;
        let here = ctx.ns_label();
        let current = std::fs::read_to_string(&path)
            .map_err(|e| match e.kind() {
                std::io::ErrorKind::NotFound => {
                    Error::failed(format!("sysctl '{key}' does not exist in {here}"))
                }
                _ => Error::caused(format!("reading sysctl {key} in {here}"), e),
            })?
            .trim_end()
            .to_string();
        let Some(value) = value else {
            return Outcome::json(json!({
                "changed": false,
                "sysctl": {"key": key, "value": current, "netns": ctx.ns_json()},
            }));
        };
        let changed = !same(&current, &value);
        if changed && !ctx.check {
            std::fs::write(&path, format!("{value}\n"))
                .with_context(|| format!("setting sysctl {key}={value} in {here}"))?;
            common::vlog!(1, "set {key}={value} in {here}");
        }
        Outcome::json(json!({
            "changed": changed,
            "sysctl": {"key": key, "value": value, "previous": current, "netns": ctx.ns_json()},
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_stay_inside_proc_sys() {
        let s = parse_setting("net.ipv4.ip_forward=1").unwrap();
        assert_eq!(s.path, PathBuf::from("/proc/sys/net/ipv4/ip_forward"));
        assert_eq!(s.value.as_deref(), Some("1"));
        let s = parse_setting("net/ipv4/conf/eth0.10/forwarding").unwrap();
        assert_eq!(
            s.path,
            PathBuf::from("/proc/sys/net/ipv4/conf/eth0.10/forwarding")
        );
        assert_eq!(s.key, "net.ipv4.conf.eth0.10.forwarding");
        for bad in [
            "",
            "../x",
            "net/../../etc/passwd",
            "net..ipv4",
            "/net/ipv4",
            "a b",
            "net/./x",
        ] {
            let e = parse_setting(bad).unwrap_err();
            assert!(e.contains("invalid"), "{bad}: {e}");
        }
        assert!(same("32768\t60999", "32768 60999"));
    }
}
