//! Running a plan: every tool line remembers the peer (or "center") it belongs to; a stage's
//! lines run as one batch per tool, the owners split into HUB_JOBS groups whose batches run at
//! the same time (starting wireguard-go and moving links is most of a peer's time, and one
//! group's overlaps another's). One owner's lines keep their order.
//!
//! With --check every line runs with the tool's --check, except those that cannot be asked
//! because what they act on does not exist yet (an earlier step would make it): those would
//! change (`Foresight`).

use std::collections::{HashMap, HashSet};

use crate::error::{Fail, Result};
use crate::exec::{Executor, How, Ran, Tool};

/// One line of a tool batch and whose it is ("center", a peer's name, or NAME:what).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Step {
    pub tool: Tool,
    pub owner: String,
    pub line: String,
    /// A lane of its own: the steps of a lane run in a group of their own, beside the peer's
    /// other steps (its keys and tunnel, made while its namespace, addresses and rules are).
    pub lane: Option<String>,
}

impl Step {
    pub fn new(tool: Tool, owner: &str, line: impl Into<String>) -> Step {
        Step {
            tool,
            owner: owner.to_string(),
            line: line.into(),
            lane: None,
        }
    }

    /// The same step, in LANE.
    pub fn in_lane(self, lane: String) -> Step {
        Step {
            lane: Some(lane),
            ..self
        }
    }

    /// What it is grouped by: its lane, else its peer.
    fn group_key(&self) -> &str {
        self.lane.as_deref().unwrap_or_else(|| self.peer())
    }

    /// The owner's peer (or "center"): the part before ':'.
    pub fn peer(&self) -> &str {
        self.owner.split(':').next().unwrap_or("")
    }
}

/// What a step did: its JSON, whether it changed something (or with --check would), whether it
/// failed (a repair goes on past it).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Done {
    pub owner: String,
    /// `TOOL ARGS`, or what was done without a tool (a record written); empty: nothing to say.
    pub command: String,
    pub json: String,
    pub changed: bool,
    pub failed: bool,
}

impl Done {
    pub fn peer(&self) -> &str {
        self.owner.split(':').next().unwrap_or("")
    }
}

/// --check: what cannot be asked yet. ABSENT namespaces, the links seen in the namespaces
/// asked ("." is the caller's), and the peers whose keys do not exist yet (predicted).
#[derive(Debug, Default)]
pub struct Foresight {
    pub absent: HashSet<String>,
    pub asked: HashSet<String>,
    pub links: HashSet<(String, String)>,
    pub predicted: HashSet<String>,
}

impl Foresight {
    fn link_missing(&self, ns: &str, link: &str) -> bool {
        self.asked.contains(ns) && !self.links.contains(&(ns.to_string(), link.to_string()))
    }

    /// Whether LINE cannot be asked and would change.
    pub fn would_change(&self, owner: &str, line: &str) -> bool {
        if self
            .predicted
            .contains(owner.split(':').next().unwrap_or(""))
        {
            return true;
        }
        let w: Vec<&str> = line.split_whitespace().collect();
        if w.first() == Some(&"netns") {
            return false; // `netns add|del NAME` answers for itself
        }
        let (mut ns, mut peer_ns) = (".", None);
        for pair in w.windows(2) {
            match pair[0] {
                "--ns" | "--into-ns" | "--peer-ns" if self.absent.contains(pair[1]) => return true,
                _ => {}
            }
            match pair[0] {
                "--ns" => ns = pair[1],
                "--peer-ns" => peer_ns = Some(pair[1]),
                _ => {}
            }
        }
        let peer_ns = peer_ns.unwrap_or(ns);
        for (i, pair) in w.windows(2).enumerate() {
            let missing = match pair[0] {
                // (`--iif @SET` names a set of natctl's, not a link)
                "--master" | "--dev" | "--oif" | "--iif" => {
                    !pair[1].starts_with('@') && self.link_missing(ns, pair[1])
                }
                "--peer-master" => self.link_missing(peer_ns, pair[1]),
                "link" | "peer"
                    if matches!((pair[0], pair[1]), ("link", "set") | ("peer", "add")) =>
                {
                    self.link_missing(ns, w.get(i + 2).copied().unwrap_or(""))
                }
                _ => false,
            };
            if missing {
                return true;
            }
        }
        // a per-interface sysctl
        w.iter().any(|word| {
            let Some(rest) = word
                .strip_prefix("net.ipv4.conf.")
                .or_else(|| word.strip_prefix("net.ipv6.conf."))
            else {
                return false;
            };
            let Some((dev, _)) = rest.split_once('.') else {
                return false;
            };
            word.contains('=') && dev != "all" && dev != "default" && self.link_missing(ns, dev)
        })
    }
}

/// A failing line's output in a repair: it, and its owner's later lines, did not run.
pub const SKIPPED: &str = r#"{"changed":false,"failed":true}"#;

pub struct Runner<'e> {
    exec: &'e mut dyn Executor,
    pub check: bool,
    pub jobs: usize,
    /// `up`: one peer's failing step does not stop the others' repair.
    pub repair: bool,
    /// The owners whose step failed in a repair.
    pub failed: HashSet<String>,
    pub done: Vec<Done>,
    pub foresight: Foresight,
}

impl<'e> Runner<'e> {
    pub fn new(exec: &'e mut dyn Executor, check: bool, jobs: usize) -> Runner<'e> {
        Runner {
            exec,
            check,
            jobs,
            repair: false,
            failed: HashSet::new(),
            done: Vec::new(),
            foresight: Foresight::default(),
        }
    }

    pub fn executor(&mut self) -> &mut dyn Executor {
        self.exec
    }

    /// Whether the namespace NAME exists (as the executor sees it).
    pub fn netns_exists(&self, name: &str) -> bool {
        self.exec.netns_exists(name)
    }

    /// A change made (or with --check, that would be made) without asking a tool.
    pub fn changed_by(&mut self, owner: &str, what: impl Into<String>) {
        self.done.push(Done {
            owner: owner.to_string(),
            command: what.into(),
            json: r#"{"changed":true}"#.into(),
            changed: true,
            failed: false,
        });
    }

    /// Runs STEPS as steps of this command, the tools in the order given; each one's result is
    /// recorded (`done`) and returned.
    pub fn stage(&mut self, steps: Vec<Step>, order: &[Tool]) -> Result<Vec<Done>> {
        let mut asked = Vec::new();
        for s in steps {
            if self.check && self.foresight.would_change(&s.owner, &s.line) {
                self.changed_by(&s.owner, format!("{} {}", s.tool.as_str(), s.line));
            } else {
                asked.push(s);
            }
        }
        let done = self.run(
            asked,
            order,
            How {
                check: self.check,
                quiet: false,
            },
        )?;
        self.done.extend(done.iter().cloned());
        Ok(done)
    }

    /// Runs STEPS as reads: not steps of this command (never predicted, not in its report).
    pub fn read(&mut self, steps: Vec<Step>, order: &[Tool]) -> Result<Vec<Done>> {
        let repair = std::mem::replace(&mut self.repair, false);
        let done = self.run(steps, order, How::default());
        self.repair = repair;
        done
    }

    /// Reads with the tools' --check (natctl --check prints a rule's id).
    pub fn read_checked(&mut self, steps: Vec<Step>, order: &[Tool]) -> Result<Vec<Done>> {
        let repair = std::mem::replace(&mut self.repair, false);
        let done = self.run(
            steps,
            order,
            How {
                check: true,
                quiet: false,
            },
        );
        self.repair = repair;
        done
    }

    /// Whether one read succeeds, quietly (not echoed, its error not shown).
    pub fn probe(&mut self, step: Step) -> Result<Option<String>> {
        let ran = self.exec.run(
            How {
                check: false,
                quiet: true,
            },
            &[vec![(step.tool, vec![step.line])]],
        )?;
        Ok(ran
            .into_iter()
            .next()
            .filter(|r| r.rc == 0)
            .and_then(|r| r.out.into_iter().next()))
    }

    fn run(&mut self, steps: Vec<Step>, order: &[Tool], how: How) -> Result<Vec<Done>> {
        if steps.is_empty() {
            return Ok(Vec::new());
        }
        // (a step of a tool not in ORDER would never run)
        debug_assert!(
            steps.iter().all(|s| order.contains(&s.tool)),
            "a stage of {order:?} given steps of another tool: {:?}",
            steps
                .iter()
                .filter(|s| !order.contains(&s.tool))
                .map(|s| format!("{} {}", s.tool.as_str(), s.line))
                .collect::<Vec<_>>()
        );
        // the groups: owners (or lanes) dealt round-robin by first appearance
        let mut group_of: HashMap<String, usize> = HashMap::new();
        for s in &steps {
            let n = group_of.len();
            group_of
                .entry(s.group_key().to_string())
                .or_insert(n % self.jobs.max(1));
        }
        let ngroups = group_of.values().max().map_or(0, |m| m + 1);
        let mut results: Vec<Option<String>> = vec![None; steps.len()];
        if self.repair {
            for tool in order {
                let mut todo: Vec<usize> = (0..steps.len())
                    .filter(|&i| steps[i].tool == *tool)
                    .collect();
                while !todo.is_empty() {
                    let mut groups: Vec<Vec<usize>> = vec![Vec::new(); ngroups];
                    for &i in &todo {
                        if !self.failed.contains(steps[i].peer()) {
                            groups[group_of[steps[i].group_key()]].push(i);
                        }
                    }
                    groups.retain(|g| !g.is_empty());
                    if groups.is_empty() {
                        break;
                    }
                    let request: Vec<Vec<(Tool, Vec<String>)>> = groups
                        .iter()
                        .map(|g| vec![(*tool, g.iter().map(|&i| steps[i].line.clone()).collect())])
                        .collect();
                    let ran = self.exec.run(how, &request)?;
                    todo.clear();
                    for (g, r) in groups.iter().zip(ran) {
                        for (k, out) in r.out.iter().enumerate().take(g.len()) {
                            results[g[k]] = Some(out.clone());
                        }
                        let Some(at) = stopped_at(&r, g.len()) else {
                            continue;
                        };
                        // the line that failed: its owner stops, the rest of the group goes on
                        self.failed.insert(steps[g[at]].peer().to_string());
                        todo.extend(g[at + 1..].iter().copied());
                    }
                }
            }
        } else {
            let mut groups: Vec<Vec<(Tool, Vec<usize>)>> = vec![Vec::new(); ngroups];
            for tool in order {
                for (i, s) in steps.iter().enumerate().filter(|(_, s)| s.tool == *tool) {
                    let g = &mut groups[group_of[s.group_key()]];
                    match g.last_mut() {
                        Some((t, idx)) if t == tool => idx.push(i),
                        _ => g.push((*tool, vec![i])),
                    }
                }
            }
            let request: Vec<Vec<(Tool, Vec<String>)>> = groups
                .iter()
                .map(|g| {
                    g.iter()
                        .map(|(t, idx)| (*t, idx.iter().map(|&i| steps[i].line.clone()).collect()))
                        .collect()
                })
                .collect();
            let ran = self.exec.run(how, &request)?;
            let mut failure: Option<Fail> = None;
            for (g, r) in groups.iter().zip(ran) {
                let order: Vec<usize> = g.iter().flat_map(|(_, idx)| idx.iter().copied()).collect();
                for (k, out) in r.out.iter().enumerate().take(order.len()) {
                    results[order[k]] = Some(out.clone());
                }
                if let (Some(at), None) = (stopped_at(&r, order.len()), &failure) {
                    let tool = steps[order[at]].tool.as_str();
                    failure = Some(if r.rc == 0 {
                        Fail {
                            code: 1,
                            msg: format!(
                                "{tool} batch stopped after {} of its {} lines, and its exit code was lost",
                                r.out.len(),
                                order.len()
                            ),
                        }
                    } else {
                        Fail {
                            code: u8::try_from(r.rc).unwrap_or(1),
                            msg: format!(
                                "{tool} batch failed (exit {}); the line above names the step",
                                r.rc
                            ),
                        }
                    });
                }
            }
            if let Some(f) = failure {
                return Err(f);
            }
        }
        Ok(steps
            .into_iter()
            .zip(results)
            .map(|(s, out)| {
                let json = out.unwrap_or_else(|| SKIPPED.to_string());
                Done {
                    command: format!("{} {}", s.tool.as_str(), s.line),
                    changed: json.contains(r#""changed":true"#),
                    failed: json == SKIPPED,
                    owner: s.owner,
                    json,
                }
            })
            .collect())
    }

    /// Whether any step of OWNER's peer changed something.
    pub fn changed(&self, peer: &str) -> bool {
        self.done.iter().any(|d| d.peer() == peer && d.changed)
    }

    pub fn any_changed(&self) -> bool {
        self.done.iter().any(|d| d.changed)
    }

    /// The commands that changed something for PEER (what `up` repaired).
    pub fn actions(&self, peer: &str) -> Vec<String> {
        self.done
            .iter()
            .filter(|d| d.peer() == peer && d.changed && !d.command.is_empty())
            .map(|d| d.command.clone())
            .collect()
    }
}

/// Where group R of LINES lines stopped, if it did: a tool prints one JSON line for each line it
/// ran, so the first line without its output (a group that printed all but exited non-zero: the
/// last). None: every line ran. An exit code of 0 with lines missing is a stop too, whatever
/// lost the code.
fn stopped_at(r: &Ran, lines: usize) -> Option<usize> {
    let printed = r.out.len().min(lines);
    if lines == 0 || (r.rc == 0 && printed == lines) {
        return None;
    }
    Some(printed.min(lines - 1))
}

/// The JSON value of a string field in a tool's output line.
pub fn field(json: &str, key: &str) -> Option<String> {
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    v.get(key)?.as_str().map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Answers each group with one JSON line per line, except group SHORT, which prints none
    /// and exits RC.
    struct Short {
        short: usize,
        rc: i32,
    }

    impl Executor for Short {
        fn run(&mut self, _: How, groups: &[Vec<(Tool, Vec<String>)>]) -> Result<Vec<Ran>> {
            Ok(groups
                .iter()
                .enumerate()
                .map(|(g, segments)| {
                    let lines = segments.iter().map(|(_, l)| l.len()).sum();
                    if g == self.short {
                        Ran {
                            rc: self.rc,
                            out: Vec::new(),
                        }
                    } else {
                        Ran {
                            rc: 0,
                            out: vec![r#"{"changed":true}"#.to_string(); lines],
                        }
                    }
                })
                .collect())
        }

        fn lock(&mut self, _: &std::path::Path, _: bool) -> Result<()> {
            Ok(())
        }
    }

    /// Two peers' lines: a (group 0) and b (group 1), two lines each.
    fn steps() -> Vec<Step> {
        ["a", "b"]
            .iter()
            .flat_map(|p| {
                [
                    Step::new(Tool::Natctl, p, format!("element add tunnels {p}-wg")),
                    Step::new(Tool::Natctl, p, format!("element add denied {p}-wg")),
                ]
            })
            .collect()
    }

    #[test]
    fn a_later_group_that_printed_nothing_fails_the_stage_whatever_its_exit_code() {
        for rc in [0, 1] {
            let mut exec = Short { short: 1, rc };
            let mut run = Runner::new(&mut exec, false, 2);
            let e = run.stage(steps(), &[Tool::Natctl]).unwrap_err();
            assert_eq!(e.code, 1);
            let want = if rc == 0 {
                "natctl batch stopped after 0 of its 2 lines, and its exit code was lost"
            } else {
                "natctl batch failed (exit 1)"
            };
            assert!(e.msg.contains(want), "rc {rc}: {}", e.msg);
        }
        let mut exec = Short { short: 9, rc: 0 };
        let mut run = Runner::new(&mut exec, false, 2);
        let done = run.stage(steps(), &[Tool::Natctl]).unwrap();
        assert!(done.iter().all(|d| d.changed && !d.failed));
    }

    #[test]
    fn a_repair_marks_the_owner_of_a_group_that_stopped_failed() {
        for rc in [0, 1] {
            let mut exec = Short { short: 1, rc };
            let mut run = Runner::new(&mut exec, false, 2);
            run.repair = true;
            let done = run.stage(steps(), &[Tool::Natctl]).unwrap();
            assert_eq!(run.failed, HashSet::from(["b".to_string()]), "rc {rc}");
            let failed: Vec<&str> = done
                .iter()
                .filter(|d| d.failed)
                .map(|d| d.owner.as_str())
                .collect();
            assert_eq!(failed, ["b", "b"], "rc {rc}");
        }
    }
}
