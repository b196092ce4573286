//! The ids natctl's table holds, each with how (its rules intact or not) and where (the chains
//! holding them): what `cache` knows of a table and `store` keeps on disk.
//!
//! Built to be loaded by every process: at a hub center of 1,000 tunnels the table holds 12,000
//! ids, and each natctl reads them from the store before its first add, to ask about the few ids
//! of its own lines. So the store's snapshot is kept as its text, its lines sorted by id, and an
//! id is looked up there by bisection; loading reads no line and allocates nothing per id (the
//! store checks the snapshot's digest). What changed since (the journal, this process's
//! commits) is a small map over it. Loading the ids into maps of strings took 7-9 ms of a 10 ms
//! natctl; into a map keyed by number, 4-5 ms; checking each line's shape and order, 2 ms.

use std::cmp::Ordering;
use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};

/// How an id is held in natctl's table.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Presence {
    /// Every part, exactly as the id stands for.
    Intact,
    /// Some nftables rules carry the id, but not exactly its parts (tampered or incomplete).
    Stale,
    Absent,
}

/// The ids of a table, with their chains.
#[derive(Debug, Default)]
pub struct HeldIds {
    /// A snapshot's lines, `ID CHAINS` (intact) or `!ID CHAINS` (held otherwise), each ending in
    /// a newline, sorted by id; then the chain lists of the ids held since.
    text: String,
    /// Where the snapshot's lines end in `text`, and how many there are.
    snapshot_end: usize,
    snapshot_ids: usize,
    /// The ids held (Some) or released (None) since the snapshot, by number.
    since: HashMap<u64, Option<Held>, BuildHasherDefault<IdHasher>>,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    intact: bool,
    /// Where its chain list is in `text`.
    at: usize,
    len: usize,
}

impl HeldIds {
    /// The ids of a snapshot's LINES, COUNT of them, each `ID CHAINS` or `!ID CHAINS` ending in
    /// a newline, sorted by id, as natctl wrote them: the caller has made sure they are (`store`:
    /// the snapshot's digest), so nothing here reads them all.
    pub fn from_snapshot(lines: String, count: usize) -> HeldIds {
        HeldIds {
            snapshot_end: lines.len(),
            snapshot_ids: count,
            text: lines,
            since: HashMap::default(),
        }
    }

    pub fn presence(&self, id: &str) -> Presence {
        match key(id).and_then(|k| self.get(k)) {
            Some(held) if held.intact => Presence::Intact,
            Some(_) => Presence::Stale,
            None => Presence::Absent,
        }
    }

    /// The chains holding the rules of `id`, if it is held (none known: empty).
    pub fn chains(&self, id: &str) -> Option<Vec<String>> {
        let held = self.get(key(id)?)?;
        Some(self.list(&held).map(str::to_string).collect())
    }

    /// Holds `id` (12 hex digits, else nothing is held: false) with its rules in `chains`.
    pub fn hold<'a>(
        &mut self,
        id: &str,
        intact: bool,
        chains: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let Some(k) = key(id) else { return false };
        let at = self.text.len();
        for (i, chain) in chains.into_iter().filter(|c| !c.is_empty()).enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(chain);
        }
        let len = self.text.len() - at;
        self.since.insert(k, Some(Held { intact, at, len }));
        true
    }

    pub fn release(&mut self, id: &str) {
        if let Some(k) = key(id) {
            self.since.insert(k, None);
        }
    }

    /// How many ids are held: a walk of the snapshot's lines (what a snapshot's writing costs
    /// anyway). For a bound that costs nothing, [`HeldIds::at_most`].
    pub fn len(&self) -> usize {
        let kept = self
            .snapshot_lines()
            .filter(|(k, _)| !self.since.contains_key(k))
            .count();
        kept + self.since.values().filter(|h| h.is_some()).count()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// At least as many ids as are held (those held since the snapshot that it held already
    /// count twice), without reading the snapshot: what a commit asks of a big table.
    pub fn at_most(&self) -> usize {
        self.snapshot_ids + self.since.values().filter(|h| h.is_some()).count()
    }

    /// Every id (as natctl writes it), whether intact, and its chain list, comma-separated, in
    /// ascending order of ids: the lines of the next snapshot.
    pub fn iter(&self) -> impl Iterator<Item = (String, bool, &str)> {
        let mut all: Vec<(u64, Held)> = self
            .snapshot_lines()
            .filter(|(k, _)| !self.since.contains_key(k))
            .chain(self.since.iter().filter_map(|(k, h)| h.map(|h| (*k, h))))
            .collect();
        all.sort_unstable_by_key(|(k, _)| *k);
        all.into_iter()
            .map(|(k, held)| (format!("{k:012x}"), held.intact, self.slice(&held)))
    }

    fn get(&self, k: u64) -> Option<Held> {
        match self.since.get(&k) {
            Some(now) => *now,
            None => self.in_snapshot(k),
        }
    }

    /// The snapshot's line of id `k`, by bisection (the lines were checked when loaded).
    fn in_snapshot(&self, k: u64) -> Option<Held> {
        let bytes = &self.text.as_bytes()[..self.snapshot_end];
        let (mut lo, mut hi) = (0, bytes.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let start = bytes[lo..mid]
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(lo, |i| lo + i + 1);
            let end = start + bytes[start..hi].iter().position(|b| *b == b'\n')?;
            let (held, id) = parse_line(&self.text, start, end)?;
            match id.cmp(&k) {
                Ordering::Equal => return Some(held),
                Ordering::Less => lo = end + 1,
                Ordering::Greater => hi = start,
            }
        }
        None
    }

    fn snapshot_lines(&self) -> impl Iterator<Item = (u64, Held)> + '_ {
        let mut start = 0;
        std::iter::from_fn(move || {
            let end = start + self.text[start..self.snapshot_end].find('\n')?;
            let (held, k) = parse_line(&self.text, start, end)?;
            start = end + 1;
            Some((k, held))
        })
    }

    fn slice(&self, held: &Held) -> &str {
        &self.text[held.at..held.at + held.len]
    }

    fn list(&self, held: &Held) -> impl Iterator<Item = &str> {
        self.slice(held).split(',').filter(|c| !c.is_empty())
    }
}

/// Two id sets are equal when they hold the same ids the same way in the same chains.
impl PartialEq for HeldIds {
    fn eq(&self, other: &HeldIds) -> bool {
        self.iter().eq(other.iter())
    }
}

/// The snapshot line of TEXT from START to END (its newline), `ID CHAINS` or `!ID CHAINS`:
/// how it is held, where its chains are in TEXT, and its id's number.
fn parse_line(text: &str, start: usize, end: usize) -> Option<(Held, u64)> {
    let line = &text[start..end];
    let (intact, rest) = match line.strip_prefix('!') {
        Some(rest) => (false, rest),
        None => (true, line),
    };
    let (id, chains) = rest.split_once(' ')?;
    let held = Held {
        intact,
        at: end - chains.len(),
        len: chains.len(),
    };
    Some((held, key(id)?))
}

/// The number an id's 12 hex digits spell.
fn key(id: &str) -> Option<u64> {
    if id.len() != 12 {
        return None;
    }
    id.bytes().try_fold(0u64, |n, b| {
        let digit = match b {
            b'0'..=b'9' => b - b'0',
            b'a'..=b'f' => b - b'a' + 10,
            _ => return None,
        };
        Some(n << 4 | u64::from(digit))
    })
}

/// An id is a hash already: its number, spread over the 64 bits (the map sorts by the top
/// ones), is hash enough.
#[derive(Default)]
pub struct IdHasher(u64);

impl Hasher for IdHasher {
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0 << 8) | u64::from(*b);
        }
    }

    fn write_u64(&mut self, n: u64) {
        self.0 = n;
    }

    fn finish(&self) -> u64 {
        self.0.wrapping_mul(0x9e37_79b9_7f4a_7c15)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> String {
        format!("{n:012x}")
    }

    #[test]
    fn ids_are_held_with_their_chains() {
        let mut ids = HeldIds::default();
        ids.hold("00000000abcd", true, ["zones.iif.w1", "srcnat"]);
        ids.hold("0000000000ff", false, []);
        assert_eq!(ids.presence("00000000abcd"), Presence::Intact);
        assert_eq!(ids.presence("0000000000ff"), Presence::Stale);
        assert_eq!(ids.presence("000000000000"), Presence::Absent);
        // (not an id natctl makes: never held)
        assert_eq!(ids.presence("abcd"), Presence::Absent);
        assert!(!ids.hold("ABCDEF000000", true, []));
        assert_eq!(
            ids.chains("00000000abcd").unwrap(),
            ["zones.iif.w1", "srcnat"]
        );
        assert_eq!(ids.chains("0000000000ff").unwrap(), Vec::<String>::new());
        // Held again: the last word counts.
        ids.hold("00000000abcd", false, ["forward"]);
        assert_eq!(ids.presence("00000000abcd"), Presence::Stale);
        assert_eq!(ids.chains("00000000abcd").unwrap(), ["forward"]);
        ids.release("00000000abcd");
        assert_eq!(ids.presence("00000000abcd"), Presence::Absent);
        assert_eq!(ids.len(), 1);
        let all: Vec<_> = ids.iter().collect();
        assert_eq!(all, [("0000000000ff".to_string(), false, "")]);
    }

    #[test]
    fn a_snapshot_is_bisected_and_changed_over() {
        // 500 ids, every third held otherwise, some without chains
        let mut text = String::new();
        for n in 0..500u64 {
            let mark = if n % 3 == 0 { "!" } else { "" };
            let chains = if n % 7 == 0 {
                String::new()
            } else {
                format!("c{n},d{n}")
            };
            text.push_str(&format!("{mark}{} {chains}\n", id(n * 1000 + 7)));
        }
        let mut ids = HeldIds::from_snapshot(text, 500);
        assert_eq!(ids.len(), 500);
        for n in 0..500u64 {
            let want = if n % 3 == 0 {
                Presence::Stale
            } else {
                Presence::Intact
            };
            assert_eq!(ids.presence(&id(n * 1000 + 7)), want, "{n}");
            // (between two ids, before the first, after the last: none)
            assert_eq!(ids.presence(&id(n * 1000 + 8)), Presence::Absent);
            let chains = ids.chains(&id(n * 1000 + 7)).unwrap();
            if n % 7 == 0 {
                assert!(chains.is_empty());
            } else {
                assert_eq!(chains, [format!("c{n}"), format!("d{n}")]);
            }
        }
        assert_eq!(ids.presence(&id(0)), Presence::Absent);
        assert_eq!(ids.presence(&id(u64::from(u32::MAX))), Presence::Absent);
        // Changes over the snapshot: one released, one held anew, one new.
        ids.release(&id(7));
        ids.hold(&id(1007), false, ["e"]);
        ids.hold(&id(5), true, ["f"]);
        assert_eq!(ids.presence(&id(7)), Presence::Absent);
        assert_eq!(ids.presence(&id(1007)), Presence::Stale);
        assert_eq!(ids.chains(&id(5)).unwrap(), ["f"]);
        assert_eq!(ids.len(), 500);
        assert_eq!(
            ids.at_most(),
            502,
            "an id held again counts twice, a released one once"
        );
        let all: Vec<_> = ids.iter().collect();
        assert_eq!(all.len(), 500);
        assert!(all.windows(2).all(|w| w[0].0 < w[1].0), "in order");
        assert_eq!(all[0], (id(5), true, "f"));
        assert_eq!(all[1], (id(1007), false, "e"));
        // The same set built by holding each id is equal.
        let mut same = HeldIds::default();
        for (i, intact, chains) in &all {
            same.hold(i, *intact, chains.split(','));
        }
        assert_eq!(ids, same);
    }
}
