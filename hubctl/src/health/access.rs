//! Both directions of a peer's traffic held against its plan: each forward and each allow entry
//! has its natctl rule, nothing else lets the device through, and what was refused is counted.

use crate::access::{self, Allow, Forward};
use crate::conf::Conf;
use crate::listing::NatRule;
use crate::names::Names;
use crate::record::Peer;

/// One rule the plan holds, by the arguments natctl lists it with.
#[derive(Debug, Default)]
pub(super) struct Want {
    /// The rule in words, for a problem.
    what: String,
    kind: &'static str,
    /// The interface it names (None: the center's own traffic, or any interface).
    iif: Option<String>,
    dst: Option<String>,
    proto: Option<String>,
    dport: Option<String>,
    to: Option<String>,
    verdict: Option<&'static str>,
    default: Option<&'static str>,
    reply: bool,
}

impl Want {
    fn holds(&self, n: &NatRule) -> bool {
        n.kind.as_deref() == Some(self.kind)
            && n.iif == self.iif
            && n.dst.as_ref().or(n.daddr.as_ref()) == self.dst.as_ref()
            && n.proto == self.proto
            && n.dport == self.dport
            && (self.kind != "dnat" || n.to == self.to)
            && n.verdict.as_deref() == self.verdict
            && n.default.as_deref() == self.default
            && n.reply.unwrap_or(false) == self.reply
            && n.local != Some(true)
            && n.early != Some(true)
            && n.tampered != Some(true)
    }

    /// Forward F: a DNAT of DADDR to TO, of what arrives on IIF.
    fn forward(f: &Forward, iif: &str, daddr: String, to: String) -> Want {
        Want {
            what: format!("forward {f} (dnat of {daddr} to {to})"),
            kind: "dnat",
            iif: Some(iif.to_string()),
            dst: Some(daddr),
            proto: Some(f.proto.as_str().to_string()),
            dport: Some(f.port.to_string()),
            to: Some(to),
            ..Want::default()
        }
    }

    /// The replies WG's device sends, forwarded, accepted.
    fn replies(wg: &str) -> Want {
        Want {
            what: format!("filter letting the replies from {wg} pass"),
            kind: "filter",
            iif: Some(wg.to_string()),
            verdict: Some("accept"),
            reply: true,
            ..Want::default()
        }
    }

    /// A accepts WG's traffic to what it names.
    fn allow(a: &Allow, wg: &str) -> Want {
        // (natctl lists a host as its bare address)
        let dst = a.net;
        let host = dst.len == if dst.addr.is_ipv4() { 32 } else { 128 };
        let dst = if host {
            dst.addr.to_string()
        } else {
            dst.to_string()
        };
        Want {
            what: format!("filter letting {wg}'s traffic reach {a}"),
            kind: "filter",
            iif: Some(wg.to_string()),
            dst: Some(dst),
            proto: a.proto.map(|p| p.as_str().to_string()),
            dport: a.ports.map(|(x, y)| {
                if x == y {
                    x.to_string()
                } else {
                    format!("{x}-{y}")
                }
            }),
            verdict: Some("accept"),
            ..Want::default()
        }
    }
}

/// The access rules of PEER that natctl lists in its namespace (HUB_MODE=netns; a zones peer's
/// are elements of the center's sets: `sets::peer_entries`).
pub(super) fn wants(conf: &Conf, peer: &Peer) -> Vec<Want> {
    let nm = Names::of(conf, &peer.name);
    let allow = access::merged_allow(conf, &conf.allow, &peer.settings.allow);
    let mut w: Vec<Want> = allow.iter().map(|a| Want::allow(a, &nm.wg)).collect();
    for d in access::dnats(conf, peer) {
        w.push(Want::forward(&d.forward, &nm.inside, d.daddr, d.to));
    }
    w.push(Want::replies(&nm.wg));
    w.push(Want {
        what: format!("filter dropping the rest of {}'s traffic", nm.wg),
        kind: "filter",
        iif: Some(nm.wg.clone()),
        default: Some("drop"),
        ..Want::default()
    });
    w
}

/// What the plan WANTS that RULES lack, and the rules of the kinds it plans (forwards, the
/// tunnel's forwarded-traffic accepts) that it does not hold: a forward or an allow entry
/// taken away, still in force until `hub up`.
pub(super) fn access_problems(
    out: &mut Vec<String>,
    rules: &[&NatRule],
    wants: &[Want],
    wg: &str,
    place: &str,
) {
    for w in wants {
        if !rules.iter().any(|n| w.holds(n)) {
            out.push(format!("no {} in {place}", w.what));
        }
    }
    for n in rules {
        let planned_kind = n.kind.as_deref() == Some("dnat")
            || (n.kind.as_deref() == Some("filter")
                && n.iif.as_deref() == Some(wg)
                && n.early != Some(true)
                && n.verdict.as_deref() == Some("accept"));
        if planned_kind && n.tampered != Some(true) && !wants.iter().any(|w| w.holds(n)) {
            let what = n
                .dst
                .as_ref()
                .or(n.daddr.as_ref())
                .map_or(String::new(), |d| {
                    let port = n
                        .dport
                        .as_deref()
                        .map_or(String::new(), |p| format!(" port {p}"));
                    format!(" to {d}{port}")
                });
            out.push(format!(
                "natctl rule {} ({}{what}) in {place} is not in the plan (a forward or allow entry taken away is in force until 'hub up')",
                super::seen::jq_text(&n.id),
                n.kind.as_deref().unwrap_or("?")
            ));
        }
    }
}

/// The packets WG's traffic had refused: the counters of its drops.
pub(super) fn denied(rules: &[&NatRule], wg: &str) -> u64 {
    rules
        .iter()
        .filter(|n| {
            n.kind.as_deref() == Some("filter")
                && n.iif.as_deref() == Some(wg)
                && (n.verdict.as_deref() == Some("drop") || n.default.as_deref() == Some("drop"))
        })
        .filter_map(|n| n.packets)
        .sum()
}
