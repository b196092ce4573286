//! The names and numbers of a peer's objects. Every name starts with HUB_PREFIX, so hubs
//! coexist.

use std::net::Ipv6Addr;

use crate::conf::{Conf, ZONE_MARK_BASE};
use crate::record::Peer;

/// A peer's objects.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    /// Its namespace (HUB_MODE=netns).
    pub ns: String,
    /// Its veth end on the bridge.
    pub br: String,
    /// Its veth end in its namespace, holding its internal address.
    pub inside: String,
    /// Its WireGuard interface: born in the center (its UDP socket there), lives in the peer's
    /// namespace (HUB_MODE=zones: in the center).
    pub wg: String,
}

impl Names {
    pub fn of(conf: &Conf, name: &str) -> Names {
        let p = &conf.prefix;
        Names {
            ns: format!("{p}{name}"),
            br: format!("{p}{name}-br"),
            inside: format!("{p}{name}-in"),
            wg: format!("{p}{name}-wg"),
        }
    }
}

/// The bridge that holds a peer's port. A Linux bridge takes at most 1023 ports, so in the
/// switch namespace every HUB_BRIDGE_PORTS peers (by address) share a bridge of their own,
/// HUB_BRIDGE.K, joined to HUB_BRIDGE by a veth (down on HUB_BRIDGE, up on bridge K): one
/// broadcast domain.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// 0: HUB_BRIDGE itself.
    pub k: u32,
    pub bridge: String,
    /// The veth joining bridge K to HUB_BRIDGE (None for K = 0).
    pub trunk: Option<Trunk>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Trunk {
    /// Its end on HUB_BRIDGE.
    pub down: String,
    /// Its end on bridge K.
    pub up: String,
}

/// Where PEER's port goes; SWITCHED: the hub has a switch namespace (without one, a bridge
/// made by an earlier version or the user's, every port is on HUB_BRIDGE).
pub fn placement(conf: &Conf, peer: &Peer, switched: bool) -> Placement {
    let k = if switched {
        (u32::from(peer.address) - conf.cidr.first) / conf.bridge_ports
    } else {
        0
    };
    if k == 0 {
        return Placement {
            k,
            bridge: conf.bridge.clone(),
            trunk: None,
        };
    }
    let digits = k.to_string().len();
    let keep = conf.bridge.len().min(15 - 1 - digits);
    Placement {
        k,
        bridge: format!("{}.{k}", &conf.bridge[..keep]),
        trunk: Some(Trunk {
            down: format!("{}dn{k}", conf.prefix),
            up: format!("{}up{k}", conf.prefix),
        }),
    }
}

/// The peer's internal IPv6 address: host N of HUB_CIDR6 where its IPv4 address is host N of
/// HUB_CIDR (None without HUB_CIDR6).
pub fn address6(conf: &Conf, peer: &Peer) -> Option<Ipv6Addr> {
    conf.v6
        .as_ref()
        .map(|v6| v6.cidr.host(conf.cidr.host_of(peer.address)))
}

/// HUB_MODE=zones: the peer's conntrack zone (its port: unique, 1..65535) and its connection
/// mark and routing table.
pub fn zone(peer: &Peer) -> (u16, u32) {
    (
        peer.listen_port,
        ZONE_MARK_BASE + u32::from(peer.listen_port),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::net::Ipv4Addr;

    #[test]
    fn bridges_of_a_thousand_ports() {
        let vars: HashMap<String, String> = [
            ("HUB_CIDR", "100.64.0.0/16"),
            ("HUB_PREFIX", "t"),
            ("HUB_BRIDGE_PORTS", "1000"),
        ]
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
        let conf = Conf::from_map(&vars).unwrap();
        let first = Peer::new("a", 50000, Ipv4Addr::new(100, 64, 0, 1));
        assert_eq!(placement(&conf, &first, true).bridge, "br-internal");
        let far = Peer::new("b", 50001, Ipv4Addr::new(100, 64, 3, 233)); // host 1001
        let p = placement(&conf, &far, true);
        assert_eq!((p.k, p.bridge.as_str()), (1, "br-internal.1"));
        assert_eq!(
            p.trunk.unwrap(),
            Trunk {
                down: "tdn1".into(),
                up: "tup1".into()
            }
        );
        assert_eq!(placement(&conf, &far, false).k, 0);
        assert_eq!(Names::of(&conf, "c01").wg, "tc01-wg");
        assert_eq!(zone(&first), (50000, 0x4e58_0000 + 50000));
    }
}
