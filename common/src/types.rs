//! Validated input types. Each parses from the command line (clap uses `FromStr`) and
//! rejects bad values with a message naming the value, so bad input exits 2 before any change.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;

use ipnet::IpNet;
use serde::Serialize;

/// An interface name: 1–15 bytes, no `/`, whitespace or `:` (the kernel's IFNAMSIZ rules).
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct IfName(String);

impl FromStr for IfName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.is_empty() || s.len() > 15 {
            return Err(format!(
                "interface name '{s}' must be 1 to 15 bytes (it is {})",
                s.len()
            ));
        }
        if s == "." || s == ".." {
            return Err(format!("interface name '{s}' is not allowed"));
        }
        if let Some(c) = s
            .chars()
            .find(|c| *c == '/' || *c == ':' || c.is_whitespace() || c.is_control())
        {
            return Err(format!("interface name '{s}' contains {c:?}"));
        }
        Ok(IfName(s.to_owned()))
    }
}

impl IfName {
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for IfName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Where `ip netns` bind-mounts named namespaces.
pub const NETNS_RUN_DIR: &str = "/run/netns";

/// A named network namespace: `[A-Za-z0-9_.-]{1,64}`, not `.` or `..`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct NsName(String);

impl FromStr for NsName {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let ok_chars = s
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.' || b == b'-');
        if s.is_empty() || s.len() > 64 || !ok_chars || s == "." || s == ".." {
            return Err(format!(
                "namespace name '{s}' is invalid: use 1 to 64 of [A-Za-z0-9_.-], not '.' or '..'"
            ));
        }
        Ok(NsName(s.to_owned()))
    }
}

impl NsName {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// Where `ip netns` keeps the namespace: `/run/netns/NAME`.
    pub fn path(&self) -> PathBuf {
        PathBuf::from(NETNS_RUN_DIR).join(&self.0)
    }
}

impl fmt::Display for NsName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The target of `--ns`: a name under /run/netns, or (when it contains `/`) a path such as
/// `/proc/PID/ns/net`.
///
/// A path that exists but is not a regular file (a FIFO, a directory, a device) is refused when
/// parsed, so even a batch line far down is reported before the first line runs;
/// [`crate::netns::NetnsFd::open`] checks again (a name, or a path that appears later).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NsTarget {
    Name(NsName),
    Path(PathBuf),
}

impl FromStr for NsTarget {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        if s.contains('/') {
            if !s.starts_with('/') {
                return Err(format!(
                    "namespace '{s}' is neither a name ([A-Za-z0-9_.-]) nor an absolute path"
                ));
            }
            match std::fs::metadata(s) {
                Ok(meta) if !meta.is_file() => Err(format!(
                    "namespace path '{s}' is {}, not a network namespace",
                    crate::files::describe(&meta.file_type())
                )),
                _ => Ok(NsTarget::Path(PathBuf::from(s))),
            }
        } else {
            s.parse().map(NsTarget::Name)
        }
    }
}

impl NsTarget {
    pub fn path(&self) -> PathBuf {
        match self {
            NsTarget::Name(n) => n.path(),
            NsTarget::Path(p) => p.clone(),
        }
    }
}

/// How to name a namespace target in messages: `namespace c00` or `the current namespace`.
pub fn ns_label(ns: Option<&NsTarget>) -> String {
    match ns {
        Some(n) => format!("namespace {n}"),
        None => "the current namespace".into(),
    }
}

impl fmt::Display for NsTarget {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            NsTarget::Name(n) => n.fmt(f),
            NsTarget::Path(p) => p.display().fmt(f),
        }
    }
}

impl Serialize for NsTarget {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// An address with prefix length (`10.0.0.1/24`, `2001:db8::1/64`); host bits are kept.
/// A bare address is refused: say `/32` or `/128` explicitly.
pub fn parse_cidr(s: &str) -> Result<IpNet, String> {
    s.parse::<IpNet>().map_err(|_| {
        if s.parse::<IpAddr>().is_ok() {
            format!("'{s}' has no prefix length (write {s}/32 or {s}/128)")
        } else {
            format!(
                "'{s}' is not a valid CIDR (ADDRESS/PREFIX, prefix 0-32 for IPv4, 0-128 for IPv6)"
            )
        }
    })
}

/// Like [`parse_cidr`], but a bare address means the single host (`/32` or `/128`).
pub fn parse_prefix_or_host(s: &str) -> Result<IpNet, String> {
    match s.parse::<IpAddr>() {
        Ok(a) => Ok(IpNet::from(a)),
        Err(_) => parse_cidr(s),
    }
}

/// A network prefix: like [`parse_cidr`] but host bits must be zero (`10.0.0.0/24`, not
/// `10.0.0.1/24`), as `ip route` and `nft` expect.
pub fn parse_network(s: &str) -> Result<IpNet, String> {
    let net = parse_prefix_or_host(s)?;
    if net.trunc() != net {
        return Err(format!(
            "'{s}' has host bits set (the network is {})",
            net.trunc()
        ));
    }
    Ok(net)
}

/// An IP address (v4 or v6).
pub fn parse_addr(s: &str) -> Result<IpAddr, String> {
    s.parse()
        .map_err(|_| format!("'{s}' is not a valid IPv4 or IPv6 address"))
}

/// A TCP/UDP port, 1–65535.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct Port(pub u16);

impl FromStr for Port {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.parse::<u32>() {
            Ok(n) if (1..=65535).contains(&n) => Ok(Port(n as u16)),
            _ => Err(format!("port '{s}' is not a number from 1 to 65535")),
        }
    }
}

impl fmt::Display for Port {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// A port or an inclusive port range `LOW-HIGH` (LOW <= HIGH).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct PortRange {
    pub first: Port,
    pub last: Port,
}

impl FromStr for PortRange {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (a, b) = s.split_once('-').unwrap_or((s, s));
        let first: Port = a.parse().map_err(|e| format!("port range '{s}': {e}"))?;
        let last: Port = b.parse().map_err(|e| format!("port range '{s}': {e}"))?;
        if first > last {
            return Err(format!("port range '{s}' runs backwards"));
        }
        Ok(PortRange { first, last })
    }
}

impl PortRange {
    pub fn is_single(&self) -> bool {
        self.first == self.last
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.is_single() {
            self.first.fmt(f)
        } else {
            write!(f, "{}-{}", self.first, self.last)
        }
    }
}

impl Serialize for PortRange {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interface_names() {
        assert!("eth0".parse::<IfName>().is_ok());
        assert!("a23456789012345".parse::<IfName>().is_ok());
        let long = "a234567890123456".parse::<IfName>().unwrap_err();
        assert!(long.contains("a234567890123456"), "{long}");
        assert!("".parse::<IfName>().is_err());
        assert!("a/b".parse::<IfName>().is_err());
        assert!("a b".parse::<IfName>().is_err());
        assert!("a:1".parse::<IfName>().is_err());
    }

    #[test]
    fn namespace_labels() {
        assert_eq!(ns_label(None), "the current namespace");
        let c00: NsTarget = "c00".parse().unwrap();
        assert_eq!(ns_label(Some(&c00)), "namespace c00");
        let path = NsTarget::Path(PathBuf::from("/proc/1/ns/net"));
        assert_eq!(ns_label(Some(&path)), "namespace /proc/1/ns/net");
    }

    #[test]
    fn namespace_names_and_paths() {
        assert!("c00".parse::<NsName>().is_ok());
        assert!("a.b_c-D".parse::<NsName>().is_ok());
        for bad in ["", ".", "..", "a b", "x".repeat(65).as_str()] {
            assert!(bad.parse::<NsName>().is_err(), "{bad:?}");
        }
        assert!(matches!("../x".parse::<NsTarget>(), Err(e) if e.contains("../x")));
        assert!("a/b".parse::<NsTarget>().is_err());
        for not_a_file in ["/", "/dev/null"] {
            let e = not_a_file.parse::<NsTarget>().unwrap_err();
            assert!(
                e.contains(not_a_file) && e.contains("not a network namespace"),
                "{e}"
            );
        }
        assert_eq!(
            "/proc/1/ns/net".parse::<NsTarget>().unwrap().path(),
            PathBuf::from("/proc/1/ns/net")
        );
        assert_eq!(
            "c00".parse::<NsTarget>().unwrap().path(),
            PathBuf::from("/run/netns/c00")
        );
    }

    #[test]
    fn cidrs() {
        assert_eq!(
            parse_cidr("10.0.0.1/24").unwrap().to_string(),
            "10.0.0.1/24"
        );
        assert!(parse_cidr("2001:db8::1/64").is_ok());
        assert!(parse_cidr("10.292.0.1/24")
            .unwrap_err()
            .contains("10.292.0.1/24"));
        assert!(parse_cidr("10.0.0.1/33").is_err());
        assert!(parse_cidr("10.0.0.1").unwrap_err().contains("no prefix"));
        assert_eq!(
            parse_network("10.0.0.7").unwrap().to_string(),
            "10.0.0.7/32"
        );
        assert!(parse_network("10.0.0.1/24")
            .unwrap_err()
            .contains("10.0.0.0/24"));
    }

    #[test]
    fn ports() {
        assert_eq!("80".parse::<Port>().unwrap(), Port(80));
        assert!("0".parse::<Port>().is_err());
        assert!("70000".parse::<Port>().unwrap_err().contains("70000"));
        let r: PortRange = "1000-2000".parse().unwrap();
        assert_eq!((r.first.0, r.last.0), (1000, 2000));
        assert!("2000-1000".parse::<PortRange>().is_err());
        assert_eq!("22".parse::<PortRange>().unwrap().to_string(), "22");
    }
}
