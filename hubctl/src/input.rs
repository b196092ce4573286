//! Every input the hub takes besides hub.conf, checked in one place: peer names, a peer's
//! port, address and client key, its settings (from `peer add`/`peer set` options or a `sync`
//! line), and the peer set `sync` reads. A refusal is exit 2 naming the value.

use std::net::Ipv4Addr;
use std::path::PathBuf;

use serde_json::{Map, Value};

use crate::access::{self, Allow, Forward};
use crate::conf::Conf;
use crate::error::{invalid, Result};
use crate::net;

/// A peer name: letters, digits, '_' or '-' (not leading '-'), short enough for its links.
pub fn name(conf: &Conf, n: &str) -> Result<()> {
    let shown: String = n
        .chars()
        .map(|c| {
            if matches!(c, '\0' | '\x1f' | '\n') {
                '?'
            } else {
                c
            }
        })
        .collect();
    let chars_ok = !n.is_empty()
        && !n.starts_with('-')
        && n.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-');
    if !chars_ok {
        return Err(invalid(format!(
            "peer name '{shown}' must be letters, digits, '_' or '-' (not leading '-')"
        )));
    }
    if n.len() > conf.name_max() {
        let p = &conf.prefix;
        return Err(invalid(format!(
            "peer name '{n}' is too long: its links would be '{p}{n}-wg' ({}+{}+3 bytes, max 15); use at most {} bytes",
            p.len(),
            n.len(),
            conf.name_max()
        )));
    }
    if n == "hub0" || format!("{}{n}", conf.prefix) == conf.ns {
        return Err(invalid(format!(
            "peer name '{n}' would clash with the center's own names ({}, HUB_NS '{}')",
            conf.center_if(),
            conf.ns
        )));
    }
    Ok(())
}

/// A WireGuard key as wg prints it: base64 of exactly 32 bytes.
pub fn key_valid(key: &str) -> bool {
    let b = key.as_bytes();
    b.len() == 44
        && b[..42]
            .iter()
            .all(|c| c.is_ascii_alphanumeric() || *c == b'+' || *c == b'/')
        && b"AEIMQUYcgkosw048".contains(&b[42])
        && b[43] == b'='
}

/// A peer's internal address: a host of HUB_CIDR that is not the center's.
pub fn address(conf: &Conf, label: &str, text: &str) -> Result<Ipv4Addr> {
    let a = net::ip4(text)
        .filter(|a| conf.cidr.holds(*a))
        .ok_or_else(|| {
            invalid(format!(
                "{label} '{text}' is not a host address inside HUB_CIDR {}",
                conf.cidr_text
            ))
        })?;
    if a == conf.address {
        return Err(invalid(format!(
            "{label} '{text}' is the center's own address (HUB_ADDRESS)"
        )));
    }
    Ok(a)
}

pub fn port(label: &str, text: &str) -> Result<u16> {
    net::port(text).ok_or_else(|| invalid(format!("{label} '{text}' is not a port (1-65535)")))
}

pub fn public_key(label: &str, text: &str) -> Result<String> {
    if key_valid(text) {
        Ok(text.to_string())
    } else {
        Err(invalid(format!(
            "{label} '{text}' is not a WireGuard public key (base64 of 32 bytes)"
        )))
    }
}

/// The key in a key file, as it will be copied: the first word of its first non-blank line,
/// without a CR.
pub fn key_line(text: &str) -> Option<&str> {
    text.lines()
        .find_map(|l| l.trim_end_matches('\r').split_whitespace().next())
}

/// Where a peer's preshared key comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Psk {
    Generate,
    File(PathBuf),
    /// The key itself (a `sync` line of `export --secrets`).
    Key(Secret),
}

/// Key material given inline (a `sync` line of `export --secrets`): never printed, not even by
/// `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(pub String);

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

impl Secret {
    /// The public key of this private key.
    pub fn public(&self) -> String {
        wireguard_control::Key::from_base64(&self.0)
            .map(|k| k.get_public().to_base64())
            .unwrap_or_default()
    }
}

/// Whether TEXT looks like key material (base64 of about 32 bytes): an error never quotes it.
fn looks_like_key(text: &str) -> bool {
    (40..=48).contains(&text.len())
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
}

/// Settings as given (None: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Given {
    pub psk: Option<String>,
    pub keepalive: Option<String>,
    pub mtu: Option<String>,
    pub dns: Option<String>,
    /// Each item given (`none` alone: none).
    pub forwards: Option<Vec<String>>,
    pub allow: Option<Vec<String>>,
}

/// Settings checked (None: not given).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Wanted {
    pub psk: Option<Psk>,
    pub keepalive: Option<u16>,
    pub mtu: Option<u32>,
    pub dns: Option<String>,
    pub forwards: Option<Vec<Forward>>,
    pub allow: Option<Vec<Allow>>,
}

/// What each setting is called where it was given.
pub const OPTION_LABELS: [&str; 6] = [
    "--preshared-key",
    "--keepalive",
    "--mtu",
    "--dns",
    "--forward",
    "--allow",
];
pub const SYNC_LABELS: [&str; 6] = [
    "preshared_key",
    "keepalive",
    "mtu",
    "dns",
    "forwards",
    "allow",
];

/// The items of a list setting: `none` alone is the empty list.
fn items(given: &[String]) -> impl Iterator<Item = &str> {
    let none = given.len() == 1 && given[0] == "none";
    given.iter().map(String::as_str).filter(move |_| !none)
}

impl Given {
    pub fn check(&self, conf: &Conf, labels: [&str; 6]) -> Result<Wanted> {
        let psk = match self.psk.as_deref() {
            None | Some("") => None,
            Some("generate") => Some(Psk::Generate),
            // (a sync line may carry the key itself: what `export --secrets` prints)
            Some(key) if labels[0] == SYNC_LABELS[0] && key_valid(key) => {
                Some(Psk::Key(Secret(key.to_string())))
            }
            Some(key) if labels[0] == SYNC_LABELS[0] && looks_like_key(key) => {
                return Err(invalid(format!(
                    "{} is not a preshared key (base64 of 32 bytes, as 'wg genpsk' prints), 'generate' or a file",
                    labels[0]
                )))
            }
            Some(file) => {
                let text = std::fs::read(file)
                    .ok()
                    .filter(|_| std::path::Path::new(file).is_file())
                    .ok_or_else(|| {
                        invalid(format!(
                            "{} '{file}' is not a readable file (or 'generate')",
                            labels[0]
                        ))
                    })?;
                let text = String::from_utf8_lossy(&text);
                if !key_line(&text).is_some_and(key_valid) {
                    return Err(invalid(format!(
                        "{} '{file}' does not hold a preshared key (32 bytes of base64, as 'wg genpsk' prints)",
                        labels[0]
                    )));
                }
                Some(Psk::File(PathBuf::from(file)))
            }
        };
        let keepalive = match self.keepalive.as_deref() {
            None | Some("") => None,
            Some(k) => {
                let ok = k == "0"
                    || (k.len() <= 5
                        && !k.starts_with('0')
                        && k.bytes().all(|b| b.is_ascii_digit()));
                Some(ok.then(|| k.parse::<u16>().ok()).flatten().ok_or_else(|| {
                    invalid(format!("{} '{k}' is not 0..65535 seconds", labels[1]))
                })?)
            }
        };
        let mtu = match self.mtu.as_deref() {
            None | Some("") => None,
            Some(m) => {
                let ok = (3..=5).contains(&m.len())
                    && !m.starts_with('0')
                    && m.bytes().all(|b| b.is_ascii_digit());
                let v = ok
                    .then(|| m.parse::<u32>().ok())
                    .flatten()
                    .filter(|v| (conf.mtu_min()..=65535).contains(v));
                Some(v.ok_or_else(|| {
                    let why = if conf.v6.is_some() {
                        " (IPv6 inside the tunnel needs 1280)"
                    } else {
                        ""
                    };
                    invalid(format!(
                        "{} '{m}' is not {}..65535{why}",
                        labels[2],
                        conf.mtu_min()
                    ))
                })?)
            }
        };
        let dns = match self.dns.as_deref() {
            None | Some("") => None,
            Some(d) => {
                if d.starts_with(',') || d.ends_with(',') {
                    return Err(invalid(format!(
                        "{} '{d}' is not a list of addresses (ADDR[,ADDR])",
                        labels[3]
                    )));
                }
                for a in d.split(',') {
                    if net::ip4(a).is_none() && net::ip6(a).is_none() {
                        return Err(invalid(format!(
                            "{} '{a}' is not an IPv4 or IPv6 address",
                            labels[3]
                        )));
                    }
                }
                Some(d.to_string())
            }
        };
        let forwards = self
            .forwards
            .as_deref()
            .map(|f| access::forwards(labels[4], items(f)))
            .transpose()?;
        let allow = self
            .allow
            .as_deref()
            .map(|a| access::allow(conf, labels[5], items(a)))
            .transpose()?;
        if forwards.as_ref().is_some_and(|f| !f.is_empty()) {
            conf.forwards_possible(labels[4])?;
        }
        Ok(Wanted {
            psk,
            keepalive,
            mtu,
            dns,
            forwards,
            allow,
        })
    }
}

/// One peer of the set `sync` reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Line {
    /// Its line number in the input.
    pub line: usize,
    pub name: String,
    pub public_key: Option<String>,
    pub port: Option<u16>,
    pub address: Option<Ipv4Addr>,
    pub settings: Wanted,
    /// The hub side's private key (`export --secrets`).
    pub private_key: Option<Secret>,
    /// The client's private key, when the hub made the pair (`export --secrets`).
    pub client_private_key: Option<Secret>,
    /// The client's last known endpoint: recorded, never set on a tunnel by `sync`.
    pub endpoint: Option<std::net::SocketAddr>,
}

impl Line {
    /// The client's public key this line gives: its own, or that of its private key.
    pub fn client_public(&self) -> Option<String> {
        self.client_private_key
            .as_ref()
            .map(Secret::public)
            .or_else(|| self.public_key.clone())
    }
}

/// The keys of a peer in the set: what makes it, then its settings, then what `export` adds:
/// the last endpoint and (--secrets) the private keys.
pub const SET_KEYS: [&str; 13] = joined(
    &["name", "public_key", "port", "address"],
    &joined::<9>(
        &SYNC_LABELS,
        &["endpoint", "private_key", "client_private_key"],
    ),
);

/// HEAD, then TAIL, as one array of N (the sum of their lengths), for the key lists above.
pub const fn joined<const N: usize>(
    head: &[&'static str],
    tail: &[&'static str],
) -> [&'static str; N] {
    assert!(head.len() + tail.len() == N);
    let mut all = [""; N];
    let mut i = 0;
    while i < N {
        all[i] = if i < head.len() {
            head[i]
        } else {
            tail[i - head.len()]
        };
        i += 1;
    }
    all
}

/// The peer set in TEXT (JSON Lines), every line checked (exit 2 naming the line). Blank lines
/// are skipped. An input whose last line has no newline was cut short (a file still being
/// written): refused whole. No message quotes a whole line (a key file given by mistake would be
/// echoed).
pub fn peer_set(conf: &Conf, text: &str) -> Result<Vec<Line>> {
    if !text.is_empty() && !text.ends_with('\n') {
        return Err(invalid(format!(
            "line {}: no newline at the end: the input was cut short (a file still being written?); every line ends with a newline",
            text.split('\n').count()
        )));
    }
    let mut lines: Vec<Line> = Vec::new();
    for (i, raw) in text.split('\n').enumerate() {
        let n = i + 1;
        if raw.trim().is_empty() {
            continue;
        }
        let at = format!("line {n}: ");
        let line = one_line(conf, raw, n, &lines).map_err(|e| e.at(&at))?;
        lines.push(line);
    }
    Ok(lines)
}

/// One line of the set; EARLIER: the lines before it (a name, port or address is on one only).
fn one_line(conf: &Conf, raw: &str, n: usize, earlier: &[Line]) -> Result<Line> {
    let Ok(Value::Object(o)) = serde_json::from_str::<Value>(raw) else {
        return Err(invalid(
            "not a JSON object (one object per line: {\"name\":..})",
        ));
    };
    if let Some(k) = SET_KEYS.iter().find(|k| given_twice(raw, k)) {
        return Err(invalid(format!("key \"{k}\" is given twice")));
    }
    let mut extra: Vec<&String> = o
        .keys()
        .filter(|k| !SET_KEYS.contains(&k.as_str()))
        .collect();
    extra.sort();
    if let Some(k) = extra.first() {
        let cut: String = k.chars().take(40).collect();
        return Err(invalid(format!(
            "unknown key {} (a peer has {})",
            Value::String(cut),
            SET_KEYS.join(", ")
        )));
    }
    if !o.contains_key("name") {
        return Err(invalid("no \"name\""));
    }
    for (k, t) in [
        ("name", "string"),
        ("public_key", "string"),
        ("port", "number"),
        ("address", "string"),
        ("preshared_key", "string"),
        ("keepalive", "number"),
        ("mtu", "number"),
        ("endpoint", "string"),
        ("private_key", "string"),
        ("client_private_key", "string"),
    ] {
        if o.get(k).is_some_and(|v| type_name(v) != t) {
            return Err(invalid(format!("\"{k}\" must be a {t}")));
        }
    }
    let list = |k: &str| -> Result<Option<Vec<String>>> {
        match o.get(k) {
            None => Ok(None),
            Some(Value::Array(a)) if a.iter().all(Value::is_string) => Ok(Some(
                a.iter()
                    .filter_map(Value::as_str)
                    .map(String::from)
                    .collect(),
            )),
            Some(_) => Err(invalid(format!("\"{k}\" must be an array of strings"))),
        }
    };
    let (forwards, allow) = (list("forwards")?, list("allow")?);
    let dns = match o.get("dns") {
        None => None,
        Some(Value::String(s)) => Some(s.clone()),
        Some(Value::Array(a)) if a.iter().all(Value::is_string) => Some(
            a.iter()
                .filter_map(Value::as_str)
                .collect::<Vec<_>>()
                .join(","),
        ),
        Some(_) => return Err(invalid("\"dns\" must be a string or an array of strings")),
    };
    let name = text(&o, "name").unwrap_or_default();
    self::name(conf, &name)?;
    if let Some(other) = earlier.iter().find(|l| l.name == name) {
        return Err(invalid(format!(
            "peer '{name}' is already on line {}",
            other.line
        )));
    }
    let public_key = text(&o, "public_key")
        .map(|k| public_key("public_key", &k))
        .transpose()?;
    let port = text(&o, "port")
        .map(|p| self::port("port", &p))
        .transpose()?;
    if let Some(other) = port.and_then(|p| earlier.iter().find(|l| l.port == Some(p))) {
        return Err(invalid(format!(
            "port {} is already on line {}",
            port.unwrap_or(0),
            other.line
        )));
    }
    let address = text(&o, "address")
        .map(|a| address(conf, "address", &a))
        .transpose()?;
    if let Some(other) = address.and_then(|a| earlier.iter().find(|l| l.address == Some(a))) {
        return Err(invalid(format!(
            "address {} is already on line {}",
            address.map(|a| a.to_string()).unwrap_or_default(),
            other.line
        )));
    }
    let settings = Given {
        psk: text(&o, "preshared_key"),
        keepalive: text(&o, "keepalive"),
        mtu: text(&o, "mtu"),
        dns,
        forwards,
        allow,
    }
    .check(conf, SYNC_LABELS)?;
    let secret = |key: &str| -> Result<Option<Secret>> {
        match text(&o, key) {
            None => Ok(None),
            Some(k) if key_valid(&k) => Ok(Some(Secret(k))),
            // (never the value: it is key material)
            Some(_) => Err(invalid(format!(
                "peer '{name}': \"{key}\" is not a WireGuard private key (base64 of 32 bytes, as 'wg genkey' prints)"
            ))),
        }
    };
    let (private_key, client_private_key) = (secret("private_key")?, secret("client_private_key")?);
    if let (Some(k), Some(p)) = (&client_private_key, &public_key) {
        if k.public() != *p {
            return Err(invalid(format!(
                "peer '{name}': \"client_private_key\" is not the private key of \"public_key\" {p}"
            )));
        }
    }
    let endpoint = text(&o, "endpoint")
        .map(|e| {
            e.parse::<std::net::SocketAddr>().map_err(|_| {
                invalid(format!(
                    "\"endpoint\" '{e}' is not ADDRESS:PORT (an IPv6 address in brackets)"
                ))
            })
        })
        .transpose()?;
    Ok(Line {
        line: n,
        name,
        public_key,
        port,
        address,
        settings,
        private_key,
        client_private_key,
        endpoint,
    })
}

/// Whether KEY is a key of more than one member of the object RAW (serde keeps the last).
fn given_twice(raw: &str, key: &str) -> bool {
    let needle = format!("\"{key}\"");
    let mut count = 0;
    let mut rest = raw;
    while let Some(at) = rest.find(&needle) {
        rest = &rest[at + needle.len()..];
        if rest.trim_start().starts_with(':') {
            count += 1;
        }
    }
    count > 1
}

fn type_name(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

/// A member as text (numbers as jq writes them: 1e3 is 1000); None: absent or empty.
fn text(o: &Map<String, Value>, key: &str) -> Option<String> {
    let t = match o.get(key)? {
        Value::String(s) => s.clone(),
        Value::Number(n) => match n.as_f64() {
            Some(f) if n.is_f64() && f.fract() == 0.0 && f.abs() < 1e15 => format!("{}", f as i64),
            _ => n.to_string(),
        },
        _ => return None,
    };
    (!t.is_empty()).then_some(t)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn conf() -> Conf {
        Conf::from_map(&HashMap::new()).unwrap()
    }

    fn refused(text: &str, naming: &str) {
        let e = peer_set(&conf(), text).expect_err(naming);
        assert_eq!(e.code, 2, "{}", e.msg);
        assert!(
            e.msg.contains(naming),
            "'{}' does not say '{naming}'",
            e.msg
        );
    }

    const KEY: &str = "x3G8l5kzJk4Kcc8hWGZ8JtU4l4jjz1ozPZ/j9fjdvlU=";

    #[test]
    fn a_good_set() {
        let text = format!(
            "{{\"name\":\"a\"}}\n\n  \n{{\"name\":\"b\",\"port\":50007,\"address\":\"100.64.0.7\",\"public_key\":\"{KEY}\",\"keepalive\":0,\"mtu\":1e3,\"dns\":[\"192.0.2.53\",\"2001:db8::53\"]}}\n"
        );
        let set = peer_set(&conf(), &text).unwrap();
        assert_eq!(set.len(), 2);
        assert_eq!(
            (set[1].line, set[1].port, set[1].settings.mtu),
            (4, Some(50007), Some(1000))
        );
        assert_eq!(set[1].settings.keepalive, Some(0));
        assert_eq!(
            set[1].settings.dns.as_deref(),
            Some("192.0.2.53,2001:db8::53")
        );
        assert!(peer_set(&conf(), "").unwrap().is_empty());
    }

    #[test]
    fn every_bad_line_is_refused_by_line() {
        refused("{\"name\":\"a\"}", "line 1: no newline at the end");
        refused("[1]\n", "line 1: not a JSON object");
        refused(
            "{\"name\":\"a\",\"name\":\"b\"}\n",
            "key \"name\" is given twice",
        );
        refused(
            "{\"name\":\"a\",\"zz\":1,\"color\":2}\n",
            "unknown key \"color\"",
        );
        refused("{\"port\":1}\n", "line 1: no \"name\"");
        refused("{\"name\":7}\n", "\"name\" must be a string");
        refused(
            "{\"name\":\"a\",\"port\":\"50000\"}\n",
            "\"port\" must be a number",
        );
        refused(
            "{\"name\":\"a\",\"dns\":[1]}\n",
            "\"dns\" must be a string or an array of strings",
        );
        refused("{\"name\":\"-a\"}\n", "peer name '-a'");
        refused(
            "{\"name\":\"a\"}\n{\"name\":\"a\"}\n",
            "line 2: peer 'a' is already on line 1",
        );
        refused("{\"name\":\"a\",\"port\":0}\n", "port '0'");
        refused(
            "{\"name\":\"a\",\"port\":50000}\n{\"name\":\"b\",\"port\":50000}\n",
            "line 2: port 50000 is already on line 1",
        );
        refused(
            "{\"name\":\"a\",\"address\":\"100.64.0.10\"}\n",
            "center's own address",
        );
        refused(
            "{\"name\":\"a\",\"address\":\"100.64.1.1\"}\n",
            "not a host address inside HUB_CIDR",
        );
        refused(
            "{\"name\":\"a\",\"public_key\":\"nope\"}\n",
            "public_key 'nope'",
        );
        refused(
            "{\"name\":\"a\",\"keepalive\":70000}\n",
            "keepalive '70000'",
        );
        refused(
            "{\"name\":\"a\",\"mtu\":100}\n",
            "mtu '100' is not 576..65535",
        );
        refused(
            "{\"name\":\"a\",\"dns\":\"1.2.3.4,\"}\n",
            "not a list of addresses",
        );
        refused("{\"name\":\"a\",\"dns\":\"1.2.3.4,x\"}\n", "dns 'x'");
        refused(
            "{\"name\":\"a\",\"preshared_key\":\"/nonexistent\"}\n",
            "preshared_key '/nonexistent' is not a readable file",
        );
    }

    #[test]
    fn secrets_and_endpoints_of_export() {
        let private = "YBUrqN0rgfswJC5kyZbyPVOnaRBvyeUjTPMmWXVJh3k=";
        let public = Secret(private.to_string()).public();
        let text = format!(
            "{{\"name\":\"a\",\"private_key\":\"{private}\",\"client_private_key\":\"{private}\",\"public_key\":\"{public}\",\"preshared_key\":\"{KEY}\",\"endpoint\":\"[2001:db8::21]:51820\"}}\n"
        );
        let l = &peer_set(&conf(), &text).unwrap()[0];
        assert_eq!(l.private_key, Some(Secret(private.into())));
        assert_eq!(l.client_public().as_deref(), Some(public.as_str()));
        assert_eq!(l.settings.psk, Some(Psk::Key(Secret(KEY.into()))));
        assert_eq!(l.endpoint.unwrap().port(), 51820);
        assert!(!format!("{l:?}").contains(private), "Debug shows no key");
        // bad key material: the field and the peer named, never the value
        let cut = &private[..43];
        for (key, value) in [
            ("private_key", cut),
            ("client_private_key", cut),
            ("preshared_key", cut),
        ] {
            let e = peer_set(
                &conf(),
                &format!("{{\"name\":\"a\",\"{key}\":\"{value}\"}}\n"),
            )
            .unwrap_err();
            assert!(e.code == 2 && e.msg.contains(key), "{}", e.msg);
            assert!(!e.msg.contains(value), "the key is quoted: {}", e.msg);
        }
        refused(
            &format!("{{\"name\":\"a\",\"client_private_key\":\"{private}\",\"public_key\":\"{KEY}\"}}\n"),
            "peer 'a': \"client_private_key\" is not the private key of \"public_key\"",
        );
        refused(
            "{\"name\":\"a\",\"endpoint\":\"2001:db8::1:5\"}\n",
            "\"endpoint\" '2001:db8::1:5' is not ADDRESS:PORT",
        );
    }

    #[test]
    fn names_and_keys() {
        let c = conf();
        assert!(name(&c, "c01").is_ok());
        assert!(name(&c, "waytoolongname")
            .unwrap_err()
            .msg
            .contains("too long"));
        assert!(name(&c, "hub0").unwrap_err().msg.contains("clash"));
        assert!(name(&c, "../x").unwrap_err().msg.contains("'../x'"));
        assert!(key_valid(KEY));
        assert!(
            !key_valid(&KEY.replace('U', "V")),
            "not canonical base64 of 32 bytes"
        );
        assert_eq!(key_line("\n  \r\nKEY rest\r\nother"), Some("KEY"));
    }
}
