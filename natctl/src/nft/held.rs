//! The ids natctl's table holds, each with how (its rules intact or not) and where (the chains
//! holding them): what `cache` knows of a table and `store` keeps on disk.
//!
//! Built to be loaded by every process: at a hub center of 1,000 tunnels the table holds 12,000
//! ids, and each natctl reads them from the store before its first add. So an id is kept as the
//! number its 12 hex digits spell (natctl makes no other kind) and its chains as a slice of one
//! text, the file's own: loading costs no allocation per id. Loading them as strings, a set of
//! ids and a map of chain lists, took 7-9 ms of a 10 ms natctl.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hasher};
use std::ops::Range;

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
    by_id: HashMap<u64, Held, BuildHasherDefault<IdHasher>>,
    /// The chain lists the ids point into, comma-separated: a file's text, then the lists of
    /// the ids held since.
    text: String,
}

#[derive(Debug, Clone, Copy)]
struct Held {
    intact: bool,
    /// Where its chain list is in `text`.
    at: u32,
    len: u32,
}

/// What [`HeldIds::load`] hands its parser: it holds and releases ids whose chain lists are
/// slices of the text being parsed.
pub struct Loader<'t> {
    text: &'t str,
    by_id: HashMap<u64, Held, BuildHasherDefault<IdHasher>>,
}

impl Loader<'_> {
    /// Holds `id` (12 hex digits, else nothing is held: false) with `chains`, a slice of the
    /// text.
    pub fn hold(&mut self, id: &str, intact: bool, chains: &str) -> bool {
        let Some(key) = key(id) else { return false };
        let at = chains.as_ptr() as usize - self.text.as_ptr() as usize;
        debug_assert!(at + chains.len() <= self.text.len(), "a slice of the text");
        let (Ok(at), Ok(len)) = (u32::try_from(at), u32::try_from(chains.len())) else {
            return false;
        };
        self.by_id.insert(key, Held { intact, at, len });
        true
    }

    pub fn release(&mut self, id: &str) {
        if let Some(key) = key(id) {
            self.by_id.remove(&key);
        }
    }
}

impl HeldIds {
    /// The ids `parse` holds from `text` (which their chain lists are slices of), with what it
    /// returns; None if it does.
    pub fn load<T>(
        text: String,
        parse: impl FnOnce(&str, &mut Loader<'_>) -> Option<T>,
    ) -> Option<(HeldIds, T)> {
        let mut loader = Loader {
            text: &text,
            // (an id takes about 40 bytes of a file)
            by_id: HashMap::with_capacity_and_hasher(text.len() / 40, Default::default()),
        };
        let parsed = parse(&text, &mut loader)?;
        let by_id = loader.by_id;
        Some((HeldIds { by_id, text }, parsed))
    }

    pub fn presence(&self, id: &str) -> Presence {
        match key(id).and_then(|k| self.by_id.get(&k)) {
            Some(held) if held.intact => Presence::Intact,
            Some(_) => Presence::Stale,
            None => Presence::Absent,
        }
    }

    /// The chains holding the rules of `id`, if it is held (none known: empty).
    pub fn chains(&self, id: &str) -> Option<Vec<String>> {
        let held = self.by_id.get(&key(id)?)?;
        Some(self.list(held).map(str::to_string).collect())
    }

    /// Holds `id` (12 hex digits, else nothing is held) with its rules in `chains`.
    pub fn hold<'a>(&mut self, id: &str, intact: bool, chains: impl IntoIterator<Item = &'a str>) {
        let Some(key) = key(id) else { return };
        let start = self.text.len();
        for (i, chain) in chains.into_iter().enumerate() {
            if i > 0 {
                self.text.push(',');
            }
            self.text.push_str(chain);
        }
        let Ok(span) = to_span(start..self.text.len()) else {
            self.by_id.remove(&key);
            return;
        };
        self.by_id.insert(
            key,
            Held {
                intact,
                at: span.0,
                len: span.1,
            },
        );
    }

    pub fn release(&mut self, id: &str) {
        if let Some(key) = key(id) {
            self.by_id.remove(&key);
        }
    }

    pub fn len(&self) -> usize {
        self.by_id.len()
    }

    pub fn is_empty(&self) -> bool {
        self.by_id.is_empty()
    }

    /// Every id (as natctl writes it), whether intact, and its chain list, comma-separated.
    pub fn iter(&self) -> impl Iterator<Item = (String, bool, &str)> {
        self.by_id
            .iter()
            .map(|(k, held)| (format!("{k:012x}"), held.intact, self.slice(held)))
    }

    fn slice(&self, held: &Held) -> &str {
        let at = held.at as usize;
        &self.text[at..at + held.len as usize]
    }

    fn list(&self, held: &Held) -> impl Iterator<Item = &str> {
        self.slice(held).split(',').filter(|c| !c.is_empty())
    }
}

/// Two id sets are equal when they hold the same ids the same way in the same chains.
impl PartialEq for HeldIds {
    fn eq(&self, other: &HeldIds) -> bool {
        self.by_id.len() == other.by_id.len()
            && self.by_id.iter().all(|(k, held)| {
                other
                    .by_id
                    .get(k)
                    .is_some_and(|o| o.intact == held.intact && other.slice(o) == self.slice(held))
            })
    }
}

fn to_span(range: Range<usize>) -> Result<(u32, u32), std::num::TryFromIntError> {
    Ok((u32::try_from(range.start)?, u32::try_from(range.len())?))
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
            b'A'..=b'F' => b - b'A' + 10,
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

    #[test]
    fn ids_are_held_by_number_with_their_chains() {
        let mut ids = HeldIds::default();
        ids.hold("00000000abcd", true, ["zones.iif.w1", "srcnat"]);
        ids.hold("0000000000ff", false, []);
        assert_eq!(ids.presence("00000000abcd"), Presence::Intact);
        assert_eq!(ids.presence("0000000000ff"), Presence::Stale);
        assert_eq!(ids.presence("000000000000"), Presence::Absent);
        // (not an id natctl makes: never held)
        assert_eq!(ids.presence("abcd"), Presence::Absent);
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
    fn a_loaded_text_is_pointed_into() {
        let text = "aaaaaaaaaaaa zones,srcnat\nbbbbbbbbbbbb forward\n".to_string();
        let (ids, lines) = HeldIds::load(text, |text, loader| {
            let mut n = 0;
            for line in text.lines() {
                let (id, chains) = line.split_once(' ')?;
                loader.hold(id, true, chains);
                n += 1;
            }
            loader.release("bbbbbbbbbbbb");
            Some(n)
        })
        .unwrap();
        assert_eq!(lines, 2);
        assert_eq!(ids.chains("aaaaaaaaaaaa").unwrap(), ["zones", "srcnat"]);
        assert_eq!(ids.presence("bbbbbbbbbbbb"), Presence::Absent);
        let mut same = HeldIds::default();
        same.hold("aaaaaaaaaaaa", true, ["zones", "srcnat"]);
        assert_eq!(ids, same);
        same.hold("aaaaaaaaaaaa", false, ["zones", "srcnat"]);
        assert_ne!(ids, same);
    }
}
