//! A peer's natctl rules that its plan no longer has: a forward or an allow entry taken away
//! (`peer set`, `sync`, or HUB_FORWARDS/HUB_ALLOW changed before `up`). Adding converges only
//! what is planned; these go here, by id, so that a device never keeps access it lost. And (zones)
//! the gates of blocks of ports no peer holds any more, and the sets of entries none has.

use std::collections::{HashMap, HashSet};

use crate::conf::{Conf, ZONE_MARK_BASE};
use crate::error::Result;
use crate::exec::Tool::{Natctl, Routectl};
use crate::fwmark;
use crate::health::jq_text;
use crate::hub::Hub;
use crate::listing::{self, NatList, NatRule, RuleList, SetList, SetShow};
use crate::names::Names;
use crate::plan::{ns_opt, CENTER_NAT_LANE};
use crate::steps::Step;

impl Hub<'_> {
    /// Delete the natctl rules of the listed peers that their plan does not hold: in HUB_MODE=
    /// netns every rule of the peer's namespace; in zones mode every rule of the center that
    /// names the peer's tunnel or one of its internal addresses (the plan has none: a peer is
    /// elements of the center's sets, and a hub built before it had rules), and every element
    /// keyed by them that the plan does not hold. Only namespaces that exist are read. With
    /// ENTRY_SETS (`up`, over a center that was up), in zones mode, also the sets of allow
    /// entries and forwards that no recorded peer has any more, with the rules over them, from
    /// the same read of the center.
    pub fn prune_rules(&mut self, names: &[String], entry_sets: bool) -> Result<()> {
        if self.conf.zones() {
            return self.prune_zones(names, entry_sets);
        }
        if names.is_empty() {
            return Ok(());
        }
        let c = self.conf.clone();
        let layout = self.layout();
        let planned: Vec<Step> = names
            .iter()
            .flat_map(|n| {
                layout
                    .peer_steps(&self.peers[n], false)
                    .into_iter()
                    .filter(|s| s.tool == Natctl)
                    .map(move |s| Step::new(Natctl, n, s.line))
            })
            .collect();
        let mut lists = Vec::new();
        for n in names {
            let ns = Names::of(&c, n).ns;
            if self.ns_exists(&ns) {
                lists.push(Step::new(Natctl, n, format!("{}list", ns_opt(&ns))));
            }
        }
        if lists.is_empty() {
            return Ok(());
        }
        let ids = self.rule_ids(planned)?;
        let keep: HashSet<&String> = ids.values().flatten().collect();
        let mut steps = Vec::new();
        for d in self.run.read(lists, &[Natctl])? {
            let ns = Names::of(&c, &d.owner).ns;
            let list: NatList = listing::parse(&d.json, &format!("'{}'", d.command))?;
            for id in list.rules.iter().filter_map(NatRule::id) {
                if !keep.contains(&id.to_string()) {
                    steps.push(Step::new(
                        Natctl,
                        &d.owner,
                        format!("{}del {id}", ns_opt(&ns)),
                    ));
                }
            }
        }
        if !steps.is_empty() {
            self.stage(steps, &[Natctl])?;
        }
        Ok(())
    }

    /// HUB_MODE=zones: [`Self::prune_rules`] in the center, which is read once.
    fn prune_zones(&mut self, names: &[String], entry_sets: bool) -> Result<()> {
        let c = self.conf.clone();
        if (names.is_empty() && !entry_sets) || (!c.ns.is_empty() && !self.ns_exists(&c.ns)) {
            return Ok(());
        }
        let co = ns_opt(&c.ns);
        let reads = vec![
            Step::new(Natctl, "center:nat", format!("{co}list")),
            Step::new(Natctl, "center:sets", format!("{co}set list")),
        ];
        let (mut rules, mut sets) = (Vec::new(), Vec::new());
        for d in self.run.read(reads, &[Natctl])? {
            let what = format!("'{}'", d.command);
            if d.owner == "center:sets" {
                sets = listing::parse::<SetList>(&d.json, &what)?.sets;
            } else {
                rules = listing::parse::<NatList>(&d.json, &what)?.rules;
            }
        }
        let mut stale = vec![self.stale_of_peers(names, &rules, &sets)];
        if entry_sets {
            // (the sets of allow entries and forwards that no recorded peer has any more: an
            // entry taken from HUB_ALLOW or HUB_FORWARDS, or from the last peer that had it.
            // Empty, they match nothing, but they are not the hub's to keep; a set goes once no
            // rule looks it up)
            let wanted = self.wanted_entry_sets();
            stale.push(stale_entry_rules(&c, &rules, &wanted));
            stale.push(stale_entry_sets(&c, &sets, &wanted));
        }
        for steps in stale {
            if !steps.is_empty() {
                self.stage(steps, &[Natctl])?;
            }
        }
        Ok(())
    }

    /// The deletions of the listed peers' rules and elements, among the center's RULES and SETS
    /// (as natctl lists them), that their plan does not hold.
    fn stale_of_peers(&self, names: &[String], rules: &[NatRule], sets: &[SetShow]) -> Vec<Step> {
        let c = &self.conf;
        // (a peer's rules and elements are keyed by its tunnel or one of its addresses)
        let mut owners: HashMap<String, String> = HashMap::new();
        let mut planned: HashSet<(String, String)> = HashSet::new();
        for n in names {
            let peer = &self.peers[n];
            let a6 = crate::names::address6(c, peer).map(|a| a.to_string());
            for key in [Some(Names::of(c, n).wg), Some(peer.address.to_string()), a6]
                .into_iter()
                .flatten()
            {
                owners.insert(key, n.clone());
            }
            planned.extend(
                crate::sets::elements(c, peer)
                    .into_iter()
                    .map(|e| (e.set, e.key)),
            );
        }
        let co = ns_opt(&c.ns);
        let step = |owner: &String, line: String| {
            Step::new(Natctl, owner, format!("{co}{line}")).in_lane(CENTER_NAT_LANE.to_string())
        };
        let mut steps = Vec::new();
        for r in rules {
            let owner = r.matched().find_map(|m| owners.get(m));
            if let (Some(owner), Some(id)) = (owner, r.id()) {
                steps.push(step(owner, format!("del {id}")));
            }
        }
        for set in sets {
            let name = &set.name;
            for key in set.elements.iter().map(|e| jq_text(&e.key)) {
                let Some(owner) = owners.get(&key) else {
                    continue;
                };
                if !planned.contains(&(name.clone(), key.clone())) {
                    steps.push(step(owner, format!("element del {name} {key}")));
                }
            }
        }
        steps
    }

    /// The sets of allow entries and forwards that some recorded peer has.
    fn wanted_entry_sets(&self) -> HashSet<String> {
        self.peers
            .values()
            .flat_map(|p| crate::sets::peer_entries(&self.conf, p))
            .map(|(set, _, _)| set.name)
            .collect()
    }

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
        let list: RuleList = listing::parse(&list, &format!("'routectl {co}rule list'"))?;
        let mut steps = Vec::new();
        for r in &list.rules {
            let (Some(mark), Some(_)) = (r.fwmark, r.goto) else {
                continue;
            };
            let port = mark
                .checked_sub(u64::from(ZONE_MARK_BASE))
                .and_then(|p| u16::try_from(p).ok());
            let Some(port) = port else { continue };
            let v6 = r.family.as_deref() == Some("inet6");
            let gate = fwmark::gate(v6, port);
            let ours = r.priority == Some(u64::from(fwmark::GATE_PRIORITY))
                && r.fwmask == Some(u64::from(fwmark::GATE_MASK))
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

/// The deletions of the center's RULES (as natctl lists them) over an entry set not WANTED.
fn stale_entry_rules(c: &Conf, rules: &[NatRule], wanted: &HashSet<String>) -> Vec<Step> {
    let co = ns_opt(&c.ns);
    let mut steps: Vec<Step> = Vec::new();
    for r in rules {
        let stale = r
            .sets()
            .any(|set| crate::sets::is_entry_set(set) && !wanted.contains(set));
        if let (true, Some(id)) = (stale, r.id()) {
            let line = format!("{co}del {id}");
            // (a rule of two parts is listed twice)
            if !steps.iter().any(|s| s.line == line) {
                steps.push(Step::new(Natctl, "center", line));
            }
        }
    }
    steps
}

/// The deletions of the center's entry SETS (as natctl lists them) not WANTED.
fn stale_entry_sets(c: &Conf, sets: &[SetShow], wanted: &HashSet<String>) -> Vec<Step> {
    let co = ns_opt(&c.ns);
    sets.iter()
        .map(|set| set.name.as_str())
        .filter(|name| crate::sets::is_entry_set(name) && !wanted.contains(*name))
        .map(|name| Step::new(Natctl, "center", format!("{co}set del {name}")))
        .collect()
}
