//! What the hub asks of its center namespace: which UDP ports its sockets hold (every peer's
//! WireGuard socket listens there, and the allocator skips someone else's) and which links it
//! has (a link with a new peer's name is someone else's; the center's own interface holds the
//! zones' addresses).
//!
//! Asked of nsctl, for the ports and links in question only (`sock list --udp --port P`,
//! `link list --dev NAME`): a center holds a socket and, in zones mode, a link for every peer,
//! and reading them all for one `peer add` made its cost grow with the fleet (10 ms of 1,000
//! peers' /proc/net/udp and /sys/class/net, and four processes). `status` alone asks for
//! every port.

use std::collections::{HashMap, HashSet};

use serde_json::Value;

use crate::error::Result;
use crate::exec::{How, Tool};
use crate::hub::Hub;
use crate::plan::ns_opt;

/// How many candidate ports one question asks about beyond those the command will hand out
/// (the allocator's hint keeps the first free one near the front).
const PORTS_ASKED: usize = 8;
/// At most this many ports in one question (nsctl's limit).
const PORTS_MAX: usize = 1024;

/// What this command has learnt of the center, until one of its stages changes the center:
/// whether a UDP socket holds each port asked about.
#[derive(Debug, Default)]
pub struct Seen {
    ports: HashMap<u16, bool>,
}

impl Hub<'_> {
    /// A free port from HUB_PORT_BASE on that no peer claims and no socket in the center
    /// holds. The center is asked about the first candidates only, those not asked before in
    /// this command. None: no port left.
    pub fn allocate_port(&mut self) -> Result<Option<u16>> {
        let base = self.conf.port_base;
        loop {
            let held: HashSet<u16> = self.held_ports().collect();
            let candidates = self.index().port_candidates(base, PORTS_ASKED, &held);
            if candidates.is_empty() {
                return Ok(None);
            }
            let unknown: Vec<u16> = candidates
                .iter()
                .copied()
                .filter(|p| !self.seen.ports.contains_key(p))
                .collect();
            self.ask_center(&[], &unknown)?;
            if candidates
                .iter()
                .any(|p| self.seen.ports.get(p) == Some(&false))
            {
                let held: HashSet<u16> = self.held_ports().collect();
                return self.index().allocate_port(base, |p| held.contains(&p));
            }
        }
    }

    /// Which of NAMES are links in the center. The same question asks about the ports the
    /// next AHEAD allocations would try, so a `peer add` asks the center once.
    pub fn center_links(&mut self, names: &[String], ahead: usize) -> Result<HashSet<String>> {
        let ports = if ahead == 0 {
            Vec::new()
        } else {
            let held: HashSet<u16> = self.held_ports().collect();
            let (base, wanted) = (self.conf.port_base, (ahead + PORTS_ASKED).min(PORTS_MAX));
            self.index().port_candidates(base, wanted, &held)
        };
        self.ask_center(names, &ports)
    }

    /// Every UDP port a socket in the center holds.
    pub fn udp_ports(&mut self) -> Result<HashSet<u16>> {
        let answers = self.read_center(vec!["sock list --udp".to_string()])?;
        Ok(ports_in(&answers).collect())
    }

    /// Forgets what was learnt of the center: a stage is about to change it.
    pub fn center_changes(&mut self) {
        self.seen = Seen::default();
    }

    fn held_ports(&self) -> impl Iterator<Item = u16> + '_ {
        self.seen
            .ports
            .iter()
            .filter(|(_, held)| **held)
            .map(|(p, _)| *p)
    }

    /// Asks the center which of LINKS it has (the answer) and which of PORTS a socket holds
    /// (kept in `seen`), in one batch.
    fn ask_center(&mut self, links: &[String], ports: &[u16]) -> Result<HashSet<String>> {
        let mut lines: Vec<String> = links
            .iter()
            .map(|n| format!("link list --no-peers --dev {n}"))
            .collect();
        for chunk in ports.chunks(PORTS_MAX) {
            let mut line = "sock list --udp".to_string();
            for p in chunk {
                line.push_str(&format!(" --port {p}"));
            }
            lines.push(line);
        }
        let answers = self.read_center(lines)?;
        let held: HashSet<u16> = ports_in(&answers).collect();
        for p in ports {
            self.seen.ports.insert(*p, held.contains(p));
        }
        Ok(answers
            .iter()
            .filter_map(|v| v["links"].as_array())
            .flatten()
            .filter_map(|l| l["name"].as_str().map(str::to_string))
            .collect())
    }

    /// LINES, nsctl reads in the center, run quietly (no echo, no error shown): their JSON.
    /// No center namespace, or a read that fails: nothing is there (the tools that then act
    /// say what is wrong).
    fn read_center(&mut self, lines: Vec<String>) -> Result<Vec<Value>> {
        let ns = self.conf.ns.clone();
        if lines.is_empty() || !(ns.is_empty() || self.ns_exists(&ns)) {
            return Ok(Vec::new());
        }
        let at = ns_opt(&ns);
        let lines = lines.into_iter().map(|l| format!("{at}{l}")).collect();
        let quiet = How {
            check: false,
            quiet: true,
        };
        let ran = self
            .run
            .executor()
            .run(quiet, &[vec![(Tool::Nsctl, lines)]])?;
        Ok(ran
            .into_iter()
            .flat_map(|r| r.out)
            .filter_map(|line| serde_json::from_str(&line).ok())
            .collect())
    }
}

/// The ports of the sockets in nsctl's `sock list` answers.
fn ports_in(answers: &[Value]) -> impl Iterator<Item = u16> + '_ {
    answers
        .iter()
        .filter_map(|v| v["sockets"].as_array())
        .flatten()
        .filter_map(|s| s["port"].as_u64().and_then(|p| u16::try_from(p).ok()))
}
