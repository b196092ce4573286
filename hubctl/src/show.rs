//! `hub show`: the hub for people, as `wg show` shows an interface. The center first (where it
//! is, its mode, its addresses, healthy or its problems), then a table of the peers: name,
//! internal address, port, the client's endpoint, the latest handshake ("1 minute, 12 seconds
//! ago"), the transfer ("1.20 MiB received, 300.00 KiB sent") and the health, with what its
//! allow list refused ("refused: 12 packets from its device", when any) and each problem under
//! its peer. Times and sizes are written as wg show writes them (wg's show.c: `ago`,
//! `bytes`). With colour (stdout is a terminal), a few ANSI attributes where wg show puts them:
//! the center green, peers yellow, labels bold; and the health green or red.

use serde_json::Value;

use crate::health::Status;

const RESET: &str = "\x1b[0m";
const BOLD: &str = "\x1b[1m";
const RED: &str = "\x1b[31m";
const GREEN: &str = "\x1b[32m";
const YELLOW: &str = "\x1b[33m";

/// STATUS (a `hub status` object) for people, at NOW_UNIX (seconds since the epoch); COLOUR:
/// with ANSI colours.
pub fn show(status: &Value, now_unix: u64, colour: bool) -> String {
    let status: Status = match serde_json::from_value(status.clone()) {
        Ok(s) => s,
        Err(e) => return format!("(not a hub status: {e})\n"),
    };
    let paint = Paint { on: colour };
    let mut out = String::new();
    let c = &status.center;
    let place =
        c.ns.as_deref()
            .map_or_else(|| "the host".to_string(), |ns| format!("namespace {ns}"));
    out += &format!(
        "{}: {}\n",
        paint.with(&[BOLD, GREEN], "center"),
        paint.with(&[GREEN], &place)
    );
    let switch = c
        .switch
        .as_deref()
        .map(|s| format!(" (switch namespace {s})"))
        .unwrap_or_default();
    out += &format!(
        "  {}: {}{switch}\n",
        paint.with(&[BOLD], "mode"),
        status.mode
    );
    let mut addresses = format!("{} in {}", c.address, c.cidr);
    if let (Some(a6), Some(cidr6)) = (&c.address6, &c.cidr6) {
        addresses += &format!(", {a6} in {cidr6}");
    }
    out += &format!("  {}: {addresses}\n", paint.with(&[BOLD], "address"));
    out += &format!(
        "  {}: {}\n",
        paint.with(&[BOLD], "health"),
        paint.health(c.healthy)
    );
    for problem in &c.problems {
        out += &format!("    - {problem}\n");
    }
    out.push('\n');
    if status.peers.is_empty() {
        out += "no peers\n";
        return out;
    }

    let header = [
        "peer",
        "address",
        "port",
        "endpoint",
        "latest handshake",
        "transfer",
        "health",
    ];
    let rows: Vec<[String; 7]> = status
        .peers
        .iter()
        .map(|p| {
            let mut address = p.address.clone();
            if let Some(a6) = &p.address6 {
                address += &format!(", {a6}");
            }
            let handshake = p
                .latest_handshake
                .map_or_else(|| "never".to_string(), |at| ago(now_unix, at));
            [
                p.name.clone(),
                address,
                p.listen_port.to_string(),
                p.endpoint.clone().unwrap_or_else(|| "(none)".to_string()),
                handshake,
                format!("{} received, {} sent", bytes(p.rx_bytes), bytes(p.tx_bytes)),
                health_word(p.healthy).to_string(),
            ]
        })
        .collect();
    let mut widths = header.map(str::len);
    for row in &rows {
        for (w, cell) in widths.iter_mut().zip(row) {
            *w = (*w).max(cell.chars().count());
        }
    }
    let line = |cells: [String; 7], styles: [&[&str]; 7]| {
        let mut text = String::new();
        for (i, cell) in cells.iter().enumerate() {
            let last = i == cells.len() - 1;
            let pad = if last {
                0
            } else {
                widths[i] - cell.chars().count() + 2
            };
            text += &paint.with(styles[i], cell);
            text += &" ".repeat(pad);
        }
        text + "\n"
    };
    out += &line(header.map(String::from), [&[BOLD]; 7]);
    for (p, row) in status.peers.iter().zip(rows) {
        let health: &[&str] = if p.healthy { &[GREEN] } else { &[BOLD, RED] };
        out += &line(row, [&[YELLOW], &[], &[], &[], &[], &[], health]);
        if p.denied_packets > 0 {
            let s = if p.denied_packets == 1 { "" } else { "s" };
            out += &format!(
                "  {}: {} packet{s} from its device\n",
                paint.with(&[BOLD], "refused"),
                p.denied_packets
            );
        }
        for problem in &p.problems {
            out += &format!("  - {problem}\n");
        }
    }
    out
}

fn health_word(healthy: bool) -> &'static str {
    if healthy {
        "healthy"
    } else {
        "UNHEALTHY"
    }
}

/// ANSI attributes, or none.
struct Paint {
    on: bool,
}

impl Paint {
    fn with(&self, styles: &[&str], text: &str) -> String {
        if !self.on || styles.is_empty() || text.is_empty() {
            return text.to_string();
        }
        format!("{}{text}{RESET}", styles.concat())
    }

    fn health(&self, healthy: bool) -> String {
        let styles: &[&str] = if healthy { &[GREEN] } else { &[BOLD, RED] };
        self.with(styles, health_word(healthy))
    }
}

/// How long before NOW the time AT was, as wg show writes a handshake's age: "1 minute, 12
/// seconds ago" (years of 365 days; no zero parts), "now", or a note when AT is ahead of NOW.
pub fn ago(now: u64, at: u64) -> String {
    if at == now {
        return "now".to_string();
    }
    if at > now {
        return "(in the future: the clock was wound back)".to_string();
    }
    let mut left = now - at;
    let mut parts = Vec::new();
    for (unit, seconds) in [
        ("year", 365 * 24 * 3600),
        ("day", 24 * 3600),
        ("hour", 3600),
        ("minute", 60),
        ("second", 1),
    ] {
        let n = left / seconds;
        left %= seconds;
        if n > 0 {
            parts.push(format!("{n} {unit}{}", if n == 1 { "" } else { "s" }));
        }
    }
    parts.join(", ") + " ago"
}

/// A byte count as wg show writes it: B below 1 KiB, else KiB, MiB, GiB or TiB with 2 decimals.
pub fn bytes(b: u64) -> String {
    const UNITS: [&str; 4] = ["KiB", "MiB", "GiB", "TiB"];
    if b < 1024 {
        return format!("{b} B");
    }
    let mut scale = 1024u64;
    for (i, unit) in UNITS.iter().enumerate() {
        if i == UNITS.len() - 1 || b < scale * 1024 {
            return format!("{:.2} {unit}", b as f64 / scale as f64);
        }
        scale *= 1024;
    }
    unreachable!("TiB takes the rest")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::tests::fixture;

    const NOW: u64 = 1764920072;

    fn strip_ansi(text: &str) -> String {
        let mut out = String::new();
        let mut chars = text.chars();
        while let Some(c) = chars.next() {
            if c == '\x1b' {
                for c in chars.by_ref() {
                    if c == 'm' {
                        break;
                    }
                }
            } else {
                out.push(c);
            }
        }
        out
    }

    #[test]
    fn ages_as_wg_show_writes_them() {
        let at = NOW - 1000;
        for (age, want) in [
            (0, "now"),
            (1, "1 second ago"),
            (59, "59 seconds ago"),
            (60, "1 minute ago"),
            (72, "1 minute, 12 seconds ago"),
            (3600, "1 hour ago"),
            (2 * 3600 + 5, "2 hours, 5 seconds ago"),
            (86400 - 1, "23 hours, 59 minutes, 59 seconds ago"),
            (86400, "1 day ago"),
            (3 * 86400 + 2 * 3600 + 60, "3 days, 2 hours, 1 minute ago"),
            (366 * 86400, "1 year, 1 day ago"),
        ] {
            assert_eq!(ago(at + age, at), want, "{age} s");
        }
        assert_eq!(ago(at, at + 1), "(in the future: the clock was wound back)");
    }

    #[test]
    fn sizes_as_wg_show_writes_them() {
        const K: u64 = 1024;
        for (b, want) in [
            (0, "0 B"),
            (1, "1 B"),
            (K - 1, "1023 B"),
            (K, "1.00 KiB"),
            (300 * K, "300.00 KiB"),
            (K * K - 1, "1024.00 KiB"),
            (K * K, "1.00 MiB"),
            (1_258_291, "1.20 MiB"),
            (K * K * K - 1, "1024.00 MiB"),
            (K * K * K, "1.00 GiB"),
            (K * K * K * K - 1, "1024.00 GiB"),
            (K * K * K * K, "1.00 TiB"),
            (5 * K * K * K * K * K, "5120.00 TiB"),
            (u64::MAX, "16777216.00 TiB"),
        ] {
            assert_eq!(bytes(b), want, "{b}");
        }
    }

    fn status(name: &str) -> Value {
        serde_json::from_str(&fixture(&format!("{name}.status.json"))).unwrap()
    }

    #[test]
    fn a_hub_for_people() {
        let want = "\
center: namespace hxhub
  mode: netns (switch namespace hxhub.switch)
  address: 100.64.0.10 in 100.64.0.0/24
  health: healthy

peer  address     port   endpoint            latest handshake          transfer                            health
a     100.64.0.1  50000  198.51.100.7:40000  1 minute, 12 seconds ago  1.20 MiB received, 300.00 KiB sent  UNHEALTHY
  - IPv4 forwarding is off in namespace hxa
  - hxa-wg has MTU 1400, not the recorded 1380
  - no filter letting hxa-wg's traffic reach 100.64.0.0/24 in namespace hxa
  - no filter letting the replies from hxa-wg pass in namespace hxa
  - no filter dropping the rest of hxa-wg's traffic in namespace hxa
  - bridge port hxa-br in namespace hxhub.switch is not isolated (HUB_ISOLATE=yes)
b     100.64.0.2  50001  (none)              never                     0 B received, 0 B sent              UNHEALTHY
  - hxb-wg has the public key 1JlPtE2QBFf71I2O7CVuQeUbAqIcYI1mjfoA4a74R3w=, not the recorded null
  - the client's peer on hxb-wg has a preshared key (the record has none)
  - the client's peer on hxb-wg routes nothing, not 0.0.0.0/0,::/0
  - no filter letting hxb-wg's traffic reach 100.64.0.0/24 in namespace hxb
  - no filter letting the replies from hxb-wg pass in namespace hxb
  - no filter dropping the rest of hxb-wg's traffic in namespace hxb
  - bridge port hxb-br in namespace hxhub.switch is not isolated (HUB_ISOLATE=yes)
c     100.64.0.3  50002  (none)              never                     0 B received, 0 B sent              UNHEALTHY
  - veth hxc-in is missing in namespace hxc
  - WireGuard interface hxc-wg is missing in namespace hxc
  - no NAPT rule (masquerade out of hxc-in) in namespace hxc
  - natctl rule 5919ba4a50cf (masquerade --oif hxc-in) in namespace hxc was changed behind natctl's back
  - no filter letting hxc-wg's traffic reach 100.64.0.0/24 in namespace hxc
  - no filter letting the replies from hxc-wg pass in namespace hxc
  - no filter dropping the rest of hxc-wg's traffic in namespace hxc
  - nftables ip nat in namespace hxc is not the hub's (only natctl's table belongs in a peer's namespace)
  - nftables inet filter in namespace hxc is not the hub's (only natctl's table belongs in a peer's namespace)
  - bridge port hxc-br in namespace hxhub.switch is not isolated (HUB_ISOLATE=yes)
  - nothing listens on UDP port 50002 in the center (namespace hxhub)
";
        assert_eq!(show(&status("netns-synthetic"), NOW, false), want);
    }

    #[test]
    fn refused_packets_are_shown_under_their_peer() {
        let mut status = status("zones-healthy");
        status["peers"][0]["denied_packets"] = 12.into();
        status["peers"][1]["denied_packets"] = 1.into();
        let got = show(&status, NOW, false);
        let lines: Vec<&str> = got.lines().collect();
        let at = |peer: &str| lines.iter().position(|l| l.starts_with(peer)).unwrap();
        assert_eq!(
            lines[at("a ") + 1],
            "  refused: 12 packets from its device",
            "{got}"
        );
        assert_eq!(
            lines[at("b ") + 1],
            "  refused: 1 packet from its device",
            "{got}"
        );
        assert!(!got.contains("refused: 0"), "{got}");
    }

    #[test]
    fn the_center_its_problems_and_v6() {
        let got = show(&status("netns-v6-trunks-broken"), NOW, false);
        let head = "\
center: namespace hxhub
  mode: netns (switch namespace hxhub.switch)
  address: 100.64.0.10 in 100.64.0.0/24, fd00:64::a in fd00:64::/64
  health: UNHEALTHY
    - bridge port hxdn1 is missing in namespace hxhub.switch
    - bridge port hxup1 is missing in namespace hxhub.switch
    - bridge port hxdn2 is down in namespace hxhub.switch
    - hxhub0 lacks its address fd00:64::a/64

peer  address                 port   endpoint  latest handshake  transfer                health
a     100.64.0.1, fd00:64::1  50000  (none)    never             0 B received, 0 B sent  UNHEALTHY
";
        assert!(got.starts_with(head), "{got}");
        let empty = serde_json::json!({"healthy": true, "mode": "zones", "center": {"ns": null,
            "address": "100.64.0.10", "cidr": "100.64.0.0/24", "healthy": true}, "peers": []});
        assert_eq!(
            show(&empty, NOW, false),
            "center: the host\n  mode: zones\n  address: 100.64.0.10 in 100.64.0.0/24\n  health: healthy\n\nno peers\n"
        );
        assert!(
            show(&serde_json::json!({"peers": 3}), NOW, false).starts_with("(not a hub status: ")
        );
    }

    #[test]
    fn a_long_name_widens_its_column() {
        let mut s = status("netns-healthy");
        s["peers"][1]["name"] = "a-long-name1".into();
        let got = show(&s, NOW, false);
        let lines: Vec<&str> = got
            .lines()
            .filter(|l| !l.starts_with(' '))
            .skip_while(|l| !l.starts_with("peer"))
            .collect();
        assert_eq!(lines.len(), 4, "{got}");
        let column = |l: &str| l.find("100.64.0.").unwrap();
        assert_eq!(lines[0].find("address"), Some(14));
        assert!(lines[1..].iter().all(|l| column(l) == 14), "{got}");
        assert!(lines[2].starts_with("a-long-name1  100.64.0.2"));
    }

    #[test]
    fn colour_is_only_attributes() {
        for name in ["netns-synthetic", "netns-healthy", "zones-v6-broken"] {
            let plain = show(&status(name), NOW, false);
            let coloured = show(&status(name), NOW, true);
            assert!(!plain.contains('\x1b'));
            assert_ne!(plain, coloured);
            assert_eq!(strip_ansi(&coloured), plain, "{name}");
        }
        let coloured = show(&status("netns-synthetic"), NOW, true);
        assert!(
            coloured.starts_with("\x1b[1m\x1b[32mcenter\x1b[0m: \x1b[32mnamespace hxhub\x1b[0m\n")
        );
        assert!(coloured.contains("\x1b[33ma\x1b[0m     100.64.0.1"));
        assert!(coloured.contains("\x1b[1m\x1b[31mUNHEALTHY\x1b[0m\n  - IPv4 forwarding"));
        assert!(show(&status("netns-healthy"), NOW, true)
            .contains("health\x1b[0m: \x1b[32mhealthy\x1b[0m\n"));
    }
}
