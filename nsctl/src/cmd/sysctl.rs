//! `nsctl [--ns NS] sysctl KEY[=VALUE]`: read or set a sysctl as seen from the namespace
//! (the thread is already inside it, and /proc/sys/net follows the opening thread's namespace).
//!
//! Only sysctls that belong to a network namespace are accepted: keys under `net.`, minus the
//! ones that are host-wide although they live under `net.` (see [`HOST_WIDE`]). Anything else
//! (`kernel.hostname`, `vm.*`, `net.core.rmem_max`) would read or change the host's value while
//! reporting it as the namespace's, so it is refused as invalid input (exit 2) before anything
//! is read or written.

use std::path::PathBuf;

use clap::Args;
use nix::sched::{unshare, CloneFlags};
use serde::Serialize;

use common::{Context, Ctx, Error, Outcome, Result};

#[derive(Args, Debug)]
pub struct Sysctl {
    /// KEY to read, or KEY=VALUE to set, e.g. net.ipv4.ip_forward=1
    /// (like `sysctl [-w] KEY[=VALUE]`; KEY may also use `/`: net/ipv4/conf/eth0.10/forwarding)
    #[arg(value_parser = parse_setting)]
    pub setting: Setting,
}

/// A sysctl as `sysctl` prints (`{"changed":..,"sysctl":{..}}`).
#[derive(Debug, Serialize)]
pub struct SysctlView {
    /// The dotted key, e.g. net.ipv4.ip_forward.
    pub key: String,
    /// The value now (with `=VALUE`: the one set, or that would be set under --check).
    pub value: String,
    /// With `=VALUE`: the value before; null when only reading.
    pub previous: Option<String>,
    /// The namespace by the name given to `--ns`; null for the caller's.
    pub netns: Option<String>,
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
    let key = parts.join(".");
    if let Some(why) = host_wide(&key) {
        return Err(not_per_netns(&key, why));
    }
    Ok(Setting {
        key,
        path: PathBuf::from("/proc/sys").join(parts.join("/")),
        value,
    })
}

fn not_per_netns(key: &str, why: &str) -> String {
    format!(
        "sysctl '{key}' is not per network namespace ({why}): it would read or change the \
         host's value; nsctl sysctl takes only per-namespace keys"
    )
}

/// Sysctls under `net.` that are host-wide: the kernel registers them for the initial
/// namespace only (net/core/sysctl_net_core.c `net_core_table`, the IPv4/IPv6 globals, the
/// neighbour tables' defaults), or shows other namespaces a read-only copy of the host's value
/// (`net.core.rmem_max` and friends, `nf_conntrack_max`). Taken from Linux 6.1 to 6.18 and
/// checked against a fresh namespace on 6.18 (absent or read-only there, writable in the host).
pub const HOST_WIDE: &[&str] = &[
    "net.core.bpf_jit_enable",
    "net.core.bpf_jit_harden",
    "net.core.bpf_jit_kallsyms",
    "net.core.bpf_jit_limit",
    "net.core.busy_poll",
    "net.core.busy_read",
    "net.core.default_qdisc",
    "net.core.dev_weight",
    "net.core.dev_weight_rx_bias",
    "net.core.dev_weight_tx_bias",
    "net.core.devconf_inherit_init_net",
    "net.core.fb_tunnels_only_for_init_net",
    "net.core.flow_limit_cpu_bitmap",
    "net.core.flow_limit_table_len",
    "net.core.gro_normal_batch",
    "net.core.high_order_alloc_disable",
    "net.core.max_skb_frags",
    "net.core.mem_pcpu_rsv",
    "net.core.message_burst",
    "net.core.message_cost",
    "net.core.netdev_budget",
    "net.core.netdev_budget_usecs",
    "net.core.netdev_max_backlog",
    "net.core.netdev_rss_key",
    "net.core.netdev_tstamp_prequeue",
    "net.core.netdev_unregister_timeout_secs",
    "net.core.rmem_default",
    "net.core.rmem_max",
    "net.core.rps_sock_flow_entries",
    "net.core.skb_defer_max",
    "net.core.warnings",
    "net.core.wmem_default",
    "net.core.wmem_max",
    "net.ipv4.cipso_cache_bucket_size",
    "net.ipv4.cipso_cache_enable",
    "net.ipv4.cipso_rbm_optfmt",
    "net.ipv4.cipso_rbm_strictvalid",
    "net.ipv4.fib_sync_mem",
    "net.ipv4.inet_peer_maxttl",
    "net.ipv4.inet_peer_minttl",
    "net.ipv4.inet_peer_threshold",
    "net.ipv4.ipfrag_secret_interval",
    "net.ipv4.route.error_burst",
    "net.ipv4.route.error_cost",
    "net.ipv4.route.gc_elasticity",
    "net.ipv4.route.gc_interval",
    "net.ipv4.route.gc_min_interval",
    "net.ipv4.route.gc_min_interval_ms",
    "net.ipv4.route.gc_thresh",
    "net.ipv4.route.gc_timeout",
    "net.ipv4.route.max_size",
    "net.ipv4.route.redirect_load",
    "net.ipv4.route.redirect_number",
    "net.ipv4.route.redirect_silence",
    "net.ipv4.tcp_allowed_congestion_control",
    "net.ipv4.tcp_available_congestion_control",
    "net.ipv4.tcp_available_ulp",
    "net.ipv4.tcp_low_latency",
    "net.ipv4.tcp_max_orphans",
    "net.ipv4.tcp_mem",
    "net.ipv4.udp_mem",
    "net.ipv6.calipso_cache_bucket_size",
    "net.ipv6.calipso_cache_enable",
    "net.ipv6.ip6frag_secret_interval",
    "net.ipv6.mld_max_msf",
    "net.ipv6.mld_qrv",
    "net.mptcp.available_path_managers",
    "net.mptcp.available_schedulers",
    "net.netfilter.nf_conntrack_buckets",
    "net.netfilter.nf_conntrack_expect_max",
    "net.netfilter.nf_conntrack_max",
    "net.netfilter.nf_log_all_netns",
    "net.nf_conntrack_max",
];

/// Host-wide prefixes under `net.`: the neighbour tables' defaults exist in the initial
/// namespace only (per-device `neigh.DEV.*` are per namespace).
const HOST_WIDE_PREFIXES: &[&str] = &["net.ipv4.neigh.default.", "net.ipv6.neigh.default."];

/// Keys that were host-wide in older kernels and belong to each namespace in newer ones
/// (`optmem_max` since 6.8; `tstamp_allow_data` and `rps_default_mask` later): [`Sysctl::run`]
/// asks the running kernel (see [`per_netns_here`]).
const MOVED_INTO_NETNS: &[&str] = &[
    "net.core.optmem_max",
    "net.core.rps_default_mask",
    "net.core.tstamp_allow_data",
];

/// Why `key` is not a per-namespace sysctl, if it is not (judged by name alone).
fn host_wide(key: &str) -> Option<&'static str> {
    if !key.starts_with("net.") {
        return Some("only keys under net. are");
    }
    if HOST_WIDE.contains(&key) || HOST_WIDE_PREFIXES.iter().any(|p| key.starts_with(p)) {
        return Some("the kernel keeps it host-wide");
    }
    None
}

/// For keys whose scope changed between kernel versions: true if a freshly created namespace
/// has its own writable copy (the kernel registers host-wide keys in the initial namespace
/// only). Creates a throwaway namespace on a short-lived thread.
fn per_netns_here(path: &std::path::Path) -> Result<bool> {
    std::thread::scope(|s| {
        s.spawn(|| -> Result<bool> {
            unshare(CloneFlags::CLONE_NEWNET).context("creating a throwaway network namespace")?;
            Ok(match std::fs::metadata(path) {
                Ok(m) => std::os::unix::fs::PermissionsExt::mode(&m.permissions()) & 0o200 != 0,
                Err(_) => false,
            })
        })
        .join()
        .unwrap_or_else(|_| Err(Error::failed("sysctl probe thread panicked")))
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
        if MOVED_INTO_NETNS.contains(&key.as_str())
            && !per_netns_here(&path)
                .with_context(|| format!("finding out whether sysctl {key} is per namespace"))?
        {
            return Err(Error::invalid(not_per_netns(
                &key,
                "this kernel keeps it host-wide",
            )));
        }
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
            let view = SysctlView {
                key,
                value: current,
                previous: None,
                netns: ctx.netns_name(),
            };
            return Outcome::object(false, "sysctl", view);
        };
        let changed = !same(&current, &value);
        if changed && !ctx.check {
            std::fs::write(&path, format!("{value}\n"))
                .with_context(|| format!("setting sysctl {key}={value} in {here}"))?;
            common::vlog!(1, "set {key}={value} in {here}");
        }
        let view = SysctlView {
            key,
            value,
            previous: Some(current),
            netns: ctx.netns_name(),
        };
        Outcome::object(changed, "sysctl", view)
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

    #[test]
    fn only_per_namespace_keys_are_accepted() {
        for ok in [
            "net.ipv4.ip_forward",
            "net.core.somaxconn",
            "net.ipv4.conf.all.forwarding",
            "net.ipv4.neigh.eth0.gc_stale_time",
            "net.ipv4.ip_local_port_range",
            "net.netfilter.nf_conntrack_tcp_loose",
        ] {
            parse_setting(ok).unwrap();
        }
        for bad in [
            "kernel.hostname",
            "vm.swappiness=10",
            "fs.file-max",
            "network.x",
            "net.core.rmem_max",
            "net/core/wmem_default",
            "net.core.netdev_max_backlog=1000",
            "net.ipv4.tcp_mem",
            "net.ipv4.neigh.default.gc_thresh3",
            "net.nf_conntrack_max",
        ] {
            let e = parse_setting(bad).unwrap_err();
            let key = bad.split('=').next().unwrap().replace('/', ".");
            assert!(e.contains(&format!("'{key}'")), "{bad}: {e}");
            assert!(e.contains("not per network namespace"), "{bad}: {e}");
        }
    }
}
