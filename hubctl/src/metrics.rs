//! `hub metrics`: the status object (health.rs) as Prometheus text exposition, for
//! node_exporter's textfile collector. A port of the jq program of `cmd_metrics` in
//! niransix-sh/hub, with the metric and label names of prometheus_wireguard_exporter
//! (interface, public_key: the client's, allowed_ips, friendly_name: the peer's name) plus `peer`
//! (the same name), so existing WireGuard dashboards work unchanged. A peer whose interface is
//! gone has no byte, handshake or endpoint series (a 0 would read as a counter reset); its up and
//! healthy say 0. Label values are escaped as the exposition format wants (`\\`, `\"`, `\n`),
//! which the jq program did not do.

use std::fmt::Write;

use serde_json::Value;

use crate::health::jq_text;

/// The metrics of STATUS (a `hub status` object) at NOW_UNIX (seconds since the epoch).
pub fn metrics(status: &Value, now_unix: u64) -> String {
    let peers: &[Value] = status["peers"].as_array().map_or(&[], Vec::as_slice);
    let up: Vec<&Value> = peers.iter().filter(|p| truthy(&p["up"])).collect();
    let all: Vec<&Value> = peers.iter().collect();
    let mut out = String::new();
    family(
        &mut out,
        "wireguard_sent_bytes_total",
        "counter",
        "Bytes sent to the peer",
        &up,
        |p| Some(jq_text(&p["tx_bytes"])),
    );
    family(
        &mut out,
        "wireguard_received_bytes_total",
        "counter",
        "Bytes received from the peer",
        &up,
        |p| Some(jq_text(&p["rx_bytes"])),
    );
    family(
        &mut out,
        "wireguard_latest_handshake_seconds",
        "gauge",
        "UNIX time of the latest handshake with the peer (0: none)",
        &up,
        |p| Some(jq_text(or(&p["latest_handshake"], &Value::from(0)))),
    );
    family(
        &mut out,
        "wireguard_latest_handshake_delay_seconds",
        "gauge",
        "Seconds since the latest handshake with the peer",
        &up,
        |p| match &p["latest_handshake"] {
            Value::Null => None,
            at => Some(number(
                (now_unix as f64 - at.as_f64().unwrap_or(f64::NAN)).max(0.0),
            )),
        },
    );
    out.push_str("# HELP niransix_hub_peer_endpoint_info Where the peer's client was last seen (1 per peer and endpoint)\n");
    out.push_str("# TYPE niransix_hub_peer_endpoint_info gauge\n");
    for p in up.iter().filter(|p| !p["endpoint"].is_null()) {
        let endpoint = escape(&jq_text(&p["endpoint"]));
        let _ = writeln!(
            out,
            "niransix_hub_peer_endpoint_info{{{},endpoint=\"{endpoint}\"}} 1",
            labels(p)
        );
    }
    family(
        &mut out,
        "niransix_hub_peer_up",
        "gauge",
        "1 if the peer's WireGuard interface exists",
        &all,
        |p| Some(flag(&p["up"])),
    );
    family(
        &mut out,
        "niransix_hub_peer_healthy",
        "gauge",
        "1 if every object the hub built for the peer is there as recorded (hub check)",
        &all,
        |p| Some(flag(&p["healthy"])),
    );
    family(
        &mut out,
        "niransix_hub_peer_denied_packets_total",
        "counter",
        "Packets from the peer's device that HUB_ALLOW, its allow list or HUB_ISOLATE refused",
        &all,
        |p| p.get("denied_packets").map(jq_text),
    );
    out.push_str(
        "# HELP niransix_hub_healthy 1 if the center and every peer are healthy (hub check)\n",
    );
    out.push_str("# TYPE niransix_hub_healthy gauge\n");
    let _ = writeln!(out, "niransix_hub_healthy {}", flag(&status["healthy"]));
    out.push_str(
        "# HELP niransix_hub_peers Peers recorded by the hub\n# TYPE niransix_hub_peers gauge\n",
    );
    let _ = writeln!(out, "niransix_hub_peers {}", peers.len());
    out
}

/// One metric family: its HELP and TYPE, then a sample per peer of PEERS that VALUE gives one.
fn family(
    out: &mut String,
    name: &str,
    kind: &str,
    help: &str,
    peers: &[&Value],
    value: impl Fn(&Value) -> Option<String>,
) {
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
    for p in peers {
        if let Some(v) = value(p) {
            let _ = writeln!(out, "{name}{{{}}} {v}", labels(p));
        }
    }
}

/// A peer's labels, as prometheus_wireguard_exporter names them, plus `peer`.
fn labels(p: &Value) -> String {
    let allowed = match p["allowed_ips"].as_array() {
        Some(ips) if !ips.is_empty() => ips.iter().map(jq_text).collect::<Vec<_>>().join(","),
        _ => "0.0.0.0/0,::/0".to_string(),
    };
    let name = escape(&jq_text(&p["name"]));
    format!(
        "interface=\"{}\",public_key=\"{}\",allowed_ips=\"{}\",friendly_name=\"{name}\",peer=\"{name}\"",
        escape(&jq_text(&p["interface"])),
        escape(&jq_text(or(&p["client_public_key"], &Value::from("")))),
        escape(&allowed),
    )
}

/// A label value as the exposition format writes it.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// jq's truth: everything but null and false.
fn truthy(v: &Value) -> bool {
    !matches!(v, Value::Null | Value::Bool(false))
}

/// jq's `A // B`.
fn or<'v>(a: &'v Value, b: &'v Value) -> &'v Value {
    if truthy(a) {
        a
    } else {
        b
    }
}

fn flag(v: &Value) -> String {
    if truthy(v) { "1" } else { "0" }.to_string()
}

/// A number as jq prints it (integers without a fraction).
fn number(n: f64) -> String {
    if n.fract() == 0.0 && n.abs() < 1e17 {
        format!("{n:.0}")
    } else {
        n.to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::tests::fixture;

    /// What cmd_metrics' jq printed for these statuses at this time (capture.sh metrics).
    const NOW: u64 = 1764920072;

    #[test]
    fn metrics_are_cmd_metrics() {
        // netns-synthetic: a handshake 72 s before NOW, an endpoint, bytes, an empty allowed_ips;
        // zones-v6-broken: a peer whose interface is gone
        for name in [
            "netns-synthetic",
            "zones-v6-broken",
            "netns-healthy",
            "netns-no-center",
        ] {
            let status: Value =
                serde_json::from_str(&fixture(&format!("{name}.status.json"))).unwrap();
            let got = metrics(&status, NOW);
            crate::health::tests::update_fixture(&format!("{name}.metrics.txt"), &got);
            let want = fixture(&format!("{name}.metrics.txt"));
            assert_eq!(got, want, "{name}");
        }
    }

    #[test]
    fn label_values_are_escaped_and_handshakes_not_in_the_future() {
        let status = serde_json::json!({"healthy": true, "peers": [{
            "name": "a\"b", "interface": "x\\y", "client_public_key": null, "allowed_ips": ["10.0.0.1/32"],
            "up": true, "healthy": true, "endpoint": "line\nbreak", "latest_handshake": NOW + 5,
            "rx_bytes": 1, "tx_bytes": 2}]});
        let text = metrics(&status, NOW);
        let labels = r#"interface="x\\y",public_key="",allowed_ips="10.0.0.1/32",friendly_name="a\"b",peer="a\"b""#;
        assert!(
            text.contains(&format!("wireguard_sent_bytes_total{{{labels}}} 2\n")),
            "{text}"
        );
        assert!(text.contains(&format!(
            "wireguard_latest_handshake_delay_seconds{{{labels}}} 0\n"
        )));
        assert!(text.contains(&format!(
            "niransix_hub_peer_endpoint_info{{{labels},endpoint=\"line\\nbreak\"}} 1\n"
        )));
        assert!(text.ends_with("niransix_hub_healthy 1\n# HELP niransix_hub_peers Peers recorded by the hub\n# TYPE niransix_hub_peers gauge\nniransix_hub_peers 1\n"));
    }
}
