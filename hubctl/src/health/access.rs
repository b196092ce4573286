//! Both directions of a peer's traffic held against its plan: each forward and each allow entry
//! has its natctl rule, nothing else lets the device through, and what was refused is counted.

use super::seen::NatRule;
use crate::access::{self, Allow, Forward, Net};
use crate::conf::Conf;
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
    /// Traffic to the center itself (natctl's `--local`).
    local: bool,
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
            && n.local.unwrap_or(false) == self.local
            && n.early != Some(true)
            && n.tampered != Some(true)
    }

    /// Forward F: a DNAT of DADDR to TO, of what arrives on IIF (None: on any interface, and
    /// what the center itself sends).
    fn forward(f: &Forward, iif: Option<&str>, daddr: String, to: String) -> Want {
        Want {
            what: format!("forward {f} (dnat of {daddr} to {to})"),
            kind: "dnat",
            iif: iif.map(str::to_string),
            dst: Some(daddr),
            proto: Some(f.proto.as_str().to_string()),
            dport: Some(f.port.to_string()),
            to: Some(to),
            local: iif.is_none(),
            ..Want::default()
        }
    }

    /// The replies WG's device sends, forwarded (or, LOCAL, to the center itself), accepted.
    fn replies(wg: &str, local: bool) -> Want {
        let itself = if local { " to the center itself" } else { "" };
        Want {
            what: format!("filter letting the replies from {wg}{itself} pass"),
            kind: "filter",
            iif: Some(wg.to_string()),
            verdict: Some("accept"),
            reply: true,
            local,
            ..Want::default()
        }
    }

    /// A accepts WG's traffic to DST (LOCAL: DST is the center's own address).
    fn allow(a: &Allow, wg: &str, dst: Net, local: bool) -> Want {
        // (natctl lists a host as its bare address)
        let host = dst.len == if dst.addr.is_ipv4() { 32 } else { 128 };
        let dst = if host {
            dst.addr.to_string()
        } else {
            dst.to_string()
        };
        let what = if local {
            // (the center's address, and the entry's protocol and ports)
            let rest = &a.to_string()[a.net.to_string().len()..];
            format!("{dst}{rest} (the center itself)")
        } else {
            a.to_string()
        };
        Want {
            what: format!("filter letting {wg}'s traffic reach {what}"),
            kind: "filter",
            iif: Some(wg.to_string()),
            local,
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

/// The access rules of PEER that natctl lists (HUB_MODE=netns: in its namespace; zones: in the
/// center, of its tunnel and its addresses), besides those the zones checks hold (zones, marks,
/// SNAT, the default drops).
pub(super) fn wants(conf: &Conf, peer: &Peer) -> Vec<Want> {
    let nm = Names::of(conf, &peer.name);
    let allow = access::merged_allow(conf, &conf.allow, &peer.settings.allow);
    let mut w: Vec<Want> = allow
        .iter()
        .map(|a| Want::allow(a, &nm.wg, a.net, false))
        .collect();
    let zones = conf.zones();
    for d in access::dnats(conf, peer) {
        let iif = (!zones).then_some(nm.inside.as_str());
        w.push(Want::forward(&d.forward, iif, d.daddr, d.to));
    }
    w.push(Want::replies(&nm.wg, false));
    if zones {
        w.push(Want::replies(&nm.wg, true));
        for (addr, a) in access::center_allowed(conf, &allow) {
            let len = if addr.is_ipv4() { 32 } else { 128 };
            w.push(Want::allow(&a, &nm.wg, Net { addr, len }, true));
        }
        return w;
    }
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
