//! A peer's natctl rules that its plan no longer has: a forward or an allow entry taken away
//! (`peer set`, `sync`, or HUB_FORWARDS/HUB_ALLOW changed before `up`). Adding converges only
//! what is planned; these go here, by id, so that a device never keeps access it lost. And (zones)
//! the gates of blocks of ports no peer holds any more.

use std::collections::{HashMap, HashSet};

use crate::conf::ZONE_MARK_BASE;
use crate::error::Result;
use crate::exec::Tool::{Natctl, Routectl};
use crate::fwmark;
use crate::hub::Hub;
use crate::names::Names;
use crate::plan::{ns_opt, CENTER_NAT_LANE};
use crate::steps::Step;

impl Hub<'_> {
    /// Delete the natctl rules of the listed peers that their plan does not hold: in HUB_MODE=
    /// netns every rule of the peer's namespace, in zones mode the center's rules that name the
    /// peer's tunnel or one of its internal addresses. Only namespaces that exist are read.
    pub fn prune_rules(&mut self, names: &[String]) -> Result<()> {
        if names.is_empty() {
            return Ok(());
        }
        let c = self.conf.clone();
        let layout = self.layout();
        let planned: Vec<Step> = names
            .iter()
            .flat_map(|n| {
                let peer = &self.peers[n];
                let lines = if c.zones() {
                    layout.zone_nat_lines(peer, "")
                } else {
                    layout
                        .peer_steps(peer, false)
                        .into_iter()
                        .filter(|s| s.tool == Natctl)
                        .map(|s| s.line)
                        .collect()
                };
                lines.into_iter().map(move |l| Step::new(Natctl, n, l))
            })
            .collect();
        let (lists, wgs): (Vec<Step>, HashMap<String, String>) = if c.zones() {
            if !c.ns.is_empty() && !self.ns_exists(&c.ns) {
                return Ok(());
            }
            // (a peer's rules name its tunnel, or one of its internal addresses)
            let wgs = names
                .iter()
                .flat_map(|n| {
                    let peer = &self.peers[n];
                    let a6 = crate::names::address6(&c, peer).map(|a| a.to_string());
                    [
                        Some(Names::of(&c, n).wg),
                        Some(peer.address.to_string()),
                        a6,
                    ]
                    .into_iter()
                    .flatten()
                    .map(move |k| (k, n.clone()))
                })
                .collect();
            let list = Step::new(Natctl, "center", format!("{}list", ns_opt(&c.ns)));
            (vec![list], wgs)
        } else {
            let mut lists = Vec::new();
            for n in names {
                let ns = Names::of(&c, n).ns;
                if self.ns_exists(&ns) {
                    lists.push(Step::new(Natctl, n, format!("{}list", ns_opt(&ns))));
                }
            }
            (lists, HashMap::new())
        };
        if lists.is_empty() {
            return Ok(());
        }
        let ids = self.rule_ids(planned)?;
        let keep: HashSet<&String> = ids.values().flatten().collect();
        let mut gone = Vec::new();
        for d in self.run.read(lists, &[Natctl])? {
            let v: serde_json::Value = serde_json::from_str(&d.json).unwrap_or_default();
            for r in v["rules"].as_array().into_iter().flatten() {
                let Some(id) = r["id"].as_str() else { continue };
                if keep.contains(&id.to_string()) {
                    continue;
                }
                // (zones: only the rules of these peers' tunnels; netns: the namespace is the
                // peer's alone)
                let (owner, ns) = if c.zones() {
                    let keys = [&r["iif"], &r["dst"], &r["daddr"]];
                    match keys
                        .iter()
                        .find_map(|k| k.as_str().and_then(|k| wgs.get(k)))
                    {
                        Some(n) => (n.clone(), c.ns.clone()),
                        None => continue,
                    }
                } else {
                    (d.owner.clone(), Names::of(&c, &d.owner).ns)
                };
                gone.push((owner, ns, id.to_string()));
            }
        }
        let steps: Vec<Step> = gone
            .into_iter()
            .map(|(owner, ns, id)| {
                let step = Step::new(Natctl, &owner, format!("{}del {id}", ns_opt(&ns)));
                if c.zones() {
                    step.in_lane(CENTER_NAT_LANE.to_string())
                } else {
                    step
                }
            })
            .collect();
        if !steps.is_empty() {
            self.stage(steps, &[Natctl])?;
        }
        Ok(())
    }
}

impl Hub<'_> {
    /// HUB_MODE=zones: the gates of blocks of ports that no recorded peer holds any more (a
    /// `peer del` killed between a block's last rule and its gate): they would go on at a
    /// priority that holds no rule, which the kernel passes over, but they are not the hub's to
    /// keep. The center's rules are read once.
    pub fn prune_gates(&mut self) -> Result<()> {
        let c = self.conf.clone();
        if !c.zones() || (!c.ns.is_empty() && !self.ns_exists(&c.ns)) {
            return Ok(());
        }
        let co = ns_opt(&c.ns);
        let Some(list) = self
            .run
            .probe(Step::new(Routectl, "center", format!("{co}rule list")))?
        else {
            return Ok(());
        };
        let held: HashSet<u32> = self
            .peers
            .values()
            .map(|p| fwmark::block(p.listen_port))
            .collect();
        let v: serde_json::Value = serde_json::from_str(&list).unwrap_or_default();
        let mut steps = Vec::new();
        for r in v["rules"].as_array().into_iter().flatten() {
            let (Some(mark), Some(_)) = (r["fwmark"].as_u64(), r["goto"].as_u64()) else {
                continue;
            };
            let port = mark
                .checked_sub(u64::from(ZONE_MARK_BASE))
                .and_then(|p| u16::try_from(p).ok());
            let Some(port) = port else { continue };
            let v6 = r["family"] == "inet6";
            let gate = fwmark::gate(v6, port);
            let ours = r["priority"] == fwmark::GATE_PRIORITY
                && r["fwmask"] == fwmark::GATE_MASK
                && u64::from(fwmark::gate_mark(port)) == mark;
            if ours && !held.contains(&fwmark::block(port)) {
                steps.push(Step::new(
                    Routectl,
                    "center",
                    format!("{co}rule del {gate}"),
                ));
            }
        }
        if !steps.is_empty() {
            self.stage(steps, &[Routectl])?;
        }
        Ok(())
    }
}
