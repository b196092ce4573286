//! Whether what the kernel holds under a natctl id is what that id stands for.
//!
//! A rule's comment names its id and canonical arguments, but anyone with `nft` can change a
//! rule and keep its comment (`nft replace rule ... comment "natctl:ID masquerade ..."`), or
//! delete one of the several nftables rules a natctl rule is made of. So natctl trusts a
//! comment only as far as the rule's expressions agree with it: the canonical arguments are
//! parsed back, encoded as `add` would encode them, and each part's expressions compared with
//! the kernel's ([`list::shape_of`](crate::nft::list)). An id is *intact* when every part is
//! in the kernel, in its chain, with exactly its expressions, once, and nothing else carries
//! the id; otherwise its nftables rules are *tampered* (expressions that differ, or an extra
//! copy) and/or *missing*. `add` replaces an id that is not intact, `list` shows which.

use std::collections::{HashMap, HashSet};

use serde::Serialize;

use crate::nft::encode;
use crate::nft::list::KernelRule;
use crate::rule::Rule;

/// A part of a natctl rule that the kernel lacks: its index among the rule's parts (the order
/// docs/natctl.md gives) and the chain it belongs in.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Missing {
    pub part: usize,
    pub chain: String,
}

/// What the kernel holds under one id.
#[derive(Debug, Clone)]
pub struct IdAudit {
    /// The rule the comment names (None: its arguments no longer parse).
    pub rule: Option<Rule>,
    /// The parts no kernel rule of the id matches.
    pub missing: Vec<Missing>,
    /// Every part present exactly once, and no other kernel rule carries the id.
    pub intact: bool,
}

/// The audit of a dump of natctl's table.
#[derive(Debug, Default)]
pub struct Audit {
    /// For each kernel rule (same index as the dump): whether it carries a natctl id but its
    /// expressions are not those of any part of that id's rule (or it repeats one).
    pub tampered: Vec<bool>,
    /// Every natctl id found, by id.
    pub ids: HashMap<String, IdAudit>,
}

/// The ids of `kernel` (a dump of natctl's table) whose rules are exactly what the id stands
/// for, and the others (`nft::cache::Classify`).
pub fn classify(kernel: &[KernelRule], rebuild: Rebuild) -> (HashSet<String>, HashSet<String>) {
    let (intact, stale): (Vec<_>, Vec<_>) = audit(kernel, rebuild)
        .ids
        .into_iter()
        .partition(|(_, a)| a.intact);
    (
        intact.into_iter().map(|(id, _)| id).collect(),
        stale.into_iter().map(|(id, _)| id).collect(),
    )
}

/// What rebuilds a rule from the comment natctl stored with it (the command line's own parser,
/// `cmd::stored_rule`, handed in: the audit sits below the commands).
pub type Rebuild = fn(&str) -> Option<Rule>;

/// Compares every natctl rule of `kernel` (a dump of natctl's table) with what its id stands
/// for.
pub fn audit(kernel: &[KernelRule], rebuild: Rebuild) -> Audit {
    let mut by_id: HashMap<&str, Vec<usize>> = HashMap::new();
    for (i, k) in kernel.iter().enumerate() {
        if let Some(id) = k.id() {
            by_id.entry(id).or_default().push(i);
        }
    }
    let mut tampered = vec![false; kernel.len()];
    let mut ids = HashMap::with_capacity(by_id.len());
    for (id, found) in by_id {
        let comment = kernel[found[0]].comment.as_deref().unwrap_or_default();
        let rule = rebuild(comment);
        let expected: Vec<(String, Vec<u8>)> = rule.as_ref().map_or_else(Vec::new, |rule| {
            rule.parts
                .iter()
                .map(|p| {
                    let chain = crate::nft::dispatch::chain_of(p);
                    (chain, encode::part_shape(rule, p))
                })
                .collect()
        });
        let mut used = vec![false; expected.len()];
        for &i in &found {
            let k = &kernel[i];
            let part = expected
                .iter()
                .enumerate()
                .position(|(j, (chain, shape))| !used[j] && *chain == k.chain && *shape == k.shape);
            match part {
                Some(j) if k.reachable => used[j] = true,
                // (the right rule where no packet reaches it: its part is missing)
                Some(_) => common::vlog!(
                    1,
                    "rule handle {} in chain {} carries id {id}, but no map element leads there",
                    k.handle,
                    k.chain
                ),
                None => {
                    tampered[i] = true;
                    common::vlog!(
                        1,
                        "rule handle {} in chain {} carries id {id} but is not what it stands for",
                        k.handle,
                        k.chain
                    );
                }
            }
        }
        let missing: Vec<Missing> = expected
            .iter()
            .enumerate()
            .filter(|(j, _)| !used[*j])
            .map(|(part, (chain, _))| Missing {
                part,
                chain: chain.clone(),
            })
            .collect();
        let intact = rule.is_some() && missing.is_empty() && found.iter().all(|&i| !tampered[i]);
        ids.insert(
            id.to_string(),
            IdAudit {
                rule,
                missing,
                intact,
            },
        );
    }
    Audit { tampered, ids }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cmd::RuleCmd;
    use crate::nft::encode::part_shape;
    use clap::Parser;

    #[derive(Parser)]
    #[command(no_binary_name = true)]
    struct Cli {
        #[command(subcommand)]
        rule: RuleCmd,
    }

    fn rule(args: &str) -> Rule {
        Cli::parse_from(args.split_whitespace())
            .rule
            .rule()
            .unwrap()
    }

    /// The kernel rules `add` would make of `rule`, as a dump would show them.
    fn kernel_of(rule: &Rule, first_handle: u64) -> Vec<KernelRule> {
        rule.parts
            .iter()
            .zip(first_handle..)
            .map(|(p, handle)| KernelRule {
                chain: crate::nft::dispatch::chain_of(p),
                handle,
                comment: Some(rule.comment()),
                packets: 0,
                bytes: 0,
                shape: part_shape(rule, p),
                reachable: true,
            })
            .collect()
    }

    #[test]
    fn what_natctl_wrote_is_intact() {
        let connmark = rule("connmark --iif t1 --set 5");
        let snat = rule("snat --to 10.0.0.1 --iif t1 --local");
        let mut kernel = kernel_of(&connmark, 1);
        kernel.extend(kernel_of(&snat, 10));
        let audit = audit(&kernel, crate::cmd::stored_rule);
        assert!(audit.tampered.iter().all(|t| !t));
        assert!(audit.ids[&connmark.id()].intact);
        assert!(audit.ids[&snat.id()].intact);
    }

    #[test]
    fn other_expressions_under_the_comment_are_tampered() {
        let masquerade = rule("masquerade --oif x");
        let snat = rule("snat --to 100.64.0.7 --oif x");
        let mut kernel = kernel_of(&masquerade, 1);
        kernel[0].shape = kernel_of(&snat, 1)[0].shape.clone();
        let audit = audit(&kernel, crate::cmd::stored_rule);
        assert_eq!(audit.tampered, [true]);
        let id = &audit.ids[&masquerade.id()];
        assert!(!id.intact);
        assert_eq!(
            id.missing,
            [Missing {
                part: 0,
                chain: "srcnat".into()
            }]
        );
        // The right expressions in another chain are not the rule either.
        let mut moved = kernel_of(&masquerade, 1);
        moved[0].chain = "dstnat".into();
        assert_eq!(
            super::audit(&moved, crate::cmd::stored_rule).tampered,
            [true]
        );
    }

    #[test]
    fn a_filter_that_lost_its_ct_match_is_tampered() {
        let reply = rule("filter --iif t1 --reply --verdict accept");
        let plain = rule("filter --iif t1 --verdict accept");
        assert!(audit(&kernel_of(&reply, 1), crate::cmd::stored_rule).ids[&reply.id()].intact);
        // The comment kept, the expressions those of the same filter without `ct direction reply`.
        let mut kernel = kernel_of(&reply, 1);
        kernel[0].shape = kernel_of(&plain, 1)[0].shape.clone();
        let audit = audit(&kernel, crate::cmd::stored_rule);
        assert_eq!(audit.tampered, [true]);
        assert!(!audit.ids[&reply.id()].intact);
    }

    #[test]
    fn a_missing_or_repeated_part_is_not_intact() {
        let connmark = rule("connmark --iif t1 --set 5");
        let mut kernel = kernel_of(&connmark, 1);
        kernel.remove(1);
        let audit = audit(&kernel, crate::cmd::stored_rule);
        let id = &audit.ids[&connmark.id()];
        assert!(!id.intact && audit.tampered.iter().all(|t| !t));
        assert_eq!(
            id.missing,
            [Missing {
                part: 1,
                chain: "connmarks.iif.t1".into()
            }]
        );
        let mut twice = kernel_of(&connmark, 1);
        twice.push(twice[0].clone());
        let audit = super::audit(&twice, crate::cmd::stored_rule);
        assert_eq!(audit.tampered, [false, false, false, false, true]);
        assert!(!audit.ids[&connmark.id()].intact);
    }

    #[test]
    fn destination_and_local_forms_are_audited_like_every_rule() {
        let rules = [
            rule("zone --local --dst 100.64.0.11 --zone 1 --dir reply"),
            rule("zone --iif sv0 --dst 100.64.0.11 --zone 1 --dir reply"),
            rule("mark --local --dst fd64::11 --set 1"),
            rule("connmark --local --dst 100.64.0.11 --set 1"),
            rule("connmark --iif sv0 --dst 100.64.0.11 --set 1"),
        ];
        let mut kernel = Vec::new();
        for r in &rules {
            kernel.extend(kernel_of(r, 10 * kernel.len() as u64 + 1));
        }
        let audit = audit(&kernel, crate::cmd::stored_rule);
        assert!(audit.tampered.iter().all(|t| !t));
        assert!(rules.iter().all(|r| audit.ids[&r.id()].intact));

        // zone --local's expressions in `zones` (prerouting) instead of its chain in
        // `zones_out`: tampered.
        let mut moved = kernel_of(&rules[0], 1);
        moved[0].chain = "zones.dst4.100.64.0.11".into();
        let moved_audit = super::audit(&moved, crate::cmd::stored_rule);
        assert_eq!(moved_audit.tampered, [true]);
        assert_eq!(
            moved_audit.ids[&rules[0].id()].missing,
            [Missing {
                part: 0,
                chain: "zones_out.dst4.100.64.0.11".into()
            }]
        );
        // connmark --local without its marking part (part 1, in localmarks): incomplete.
        let mut parts = kernel_of(&rules[3], 1);
        parts.remove(1);
        let partial = super::audit(&parts, crate::cmd::stored_rule);
        assert!(!partial.ids[&rules[3].id()].intact);
        assert_eq!(
            partial.ids[&rules[3].id()].missing,
            [Missing {
                part: 1,
                chain: "localmarks.dst4.100.64.0.11".into()
            }]
        );
    }
}
