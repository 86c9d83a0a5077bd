//! The keydir: the ordered in-memory index from every live key to the location
//! of its newest record, plus the live-data figures `stats()` reads in O(1).
//!
//! Invariants, kept by every method under the caller's write lock:
//! - `live_value_bytes` / `live_record_bytes` are the sums over `map`'s entries;
//! - a key is in `expiring` with expiry `e` exactly when its entry has expiry `e != 0`.
//!
//! Expired entries may linger until [`Keydir::sweep`]; readers treat them as absent.

use std::collections::{BTreeMap, BTreeSet};
use std::ops::Bound;

use super::SegmentId;
use super::format::record;
pub use super::key::{Key, KeySlice};

/// Where the newest record of a key lives and when it expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Entry {
    /// The segment holding the record.
    pub segment: SegmentId,
    /// Offset of the record's first byte in that segment.
    pub offset: u32,
    /// Length of the value.
    pub value_len: u32,
    /// Absolute expiry in ms, 0 = never.
    pub expiry: u64,
}

impl Entry {
    /// True when the entry has expired at `now_ms`.
    pub fn is_expired(&self, now_ms: u64) -> bool {
        self.expiry != 0 && self.expiry <= now_ms
    }

    fn record_len(&self, key: &[u8]) -> u64 {
        record::encoded_len(key.len(), self.value_len as usize, self.expiry) as u64
    }
}

/// The ordered index and its running totals.
#[derive(Debug, Default)]
pub struct Keydir {
    map: BTreeMap<Key, Entry>,
    expiring: BTreeSet<(u64, Key)>,
    live_value_bytes: u64,
    live_record_bytes: u64,
}

impl Keydir {
    /// Builds a keydir from entries sorted by key with no duplicates.
    pub fn from_sorted(entries: Vec<(Key, Entry)>) -> Keydir {
        let mut kd = Keydir::default();
        for (key, e) in &entries {
            kd.add_totals(key, e);
            if e.expiry != 0 {
                kd.expiring.insert((e.expiry, key.clone()));
            }
        }
        kd.map = entries.into_iter().collect();
        kd
    }

    fn add_totals(&mut self, key: &[u8], e: &Entry) {
        self.live_value_bytes += u64::from(e.value_len);
        self.live_record_bytes += e.record_len(key);
    }

    fn sub_totals(&mut self, key: &[u8], e: &Entry) {
        self.live_value_bytes -= u64::from(e.value_len);
        self.live_record_bytes -= e.record_len(key);
    }

    /// The entry of `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.map.get(KeySlice::new(key)).copied()
    }

    /// Points `key` at a new record, returning the entry it replaced.
    pub fn insert(&mut self, key: &[u8], e: Entry) -> Option<Entry> {
        self.add_totals(key, &e);
        // One descent: an inline key costs no allocation to build.
        let old = match self.map.entry(Key::from_slice(key)) {
            std::collections::btree_map::Entry::Occupied(mut slot) => Some(slot.insert(e)),
            std::collections::btree_map::Entry::Vacant(slot) => {
                slot.insert(e);
                None
            }
        };
        if let Some(old) = &old {
            self.sub_totals(key, old);
            if old.expiry != 0 && old.expiry != e.expiry {
                self.expiring.remove(&(old.expiry, Key::from_slice(key)));
            }
        }
        if e.expiry != 0 && old.is_none_or(|o| o.expiry != e.expiry) {
            self.expiring.insert((e.expiry, Key::from_slice(key)));
        }
        old
    }

    /// Removes `key`, returning its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let old = self.map.remove(KeySlice::new(key))?;
        self.sub_totals(key, &old);
        if old.expiry != 0 {
            self.expiring.remove(&(old.expiry, Key::from_slice(key)));
        }
        Some(old)
    }

    /// For each `(key, expected, new)`, with `moves` in key order, points `key`
    /// at `new` only if it still points at `expected`: compaction uses this so
    /// a write made meanwhile keeps its newer location. Walks the map alongside
    /// `moves` instead of descending once per key; re-seeks when many keys lie
    /// between two moves. Returns how many moved.
    pub fn relocate_sorted<'a>(
        &mut self,
        moves: impl IntoIterator<Item = (&'a Key, &'a Entry, Entry)>,
    ) -> usize {
        /// Keys stepped over before a fresh descent is cheaper.
        const RESEEK_AFTER: usize = 32;
        fn from(k: &Key) -> (Bound<&KeySlice>, Bound<&KeySlice>) {
            (Bound::Included(KeySlice::new(k)), Bound::Unbounded)
        }
        let mut moves = moves.into_iter().peekable();
        let Some(&(first, _, _)) = moves.peek() else {
            return 0;
        };
        let mut it = self.map.range_mut::<KeySlice, _>(from(first)).peekable();
        let mut moved = 0;
        for (key, expected, new) in moves {
            let mut skipped = 0;
            loop {
                let Some((k, _)) = it.peek() else {
                    return moved;
                };
                match (**k).cmp(key) {
                    std::cmp::Ordering::Less if skipped < RESEEK_AFTER => {
                        it.next();
                        skipped += 1;
                    }
                    std::cmp::Ordering::Less => {
                        it = self.map.range_mut::<KeySlice, _>(from(key)).peekable();
                        skipped = 0;
                    }
                    std::cmp::Ordering::Equal => {
                        if let Some((_, slot)) = it.next()
                            && slot == expected
                        {
                            *slot = new;
                            moved += 1;
                        }
                        break;
                    }
                    // The key is gone (deleted or expired meanwhile).
                    std::cmp::Ordering::Greater => break,
                }
            }
        }
        moved
    }

    /// True when some entry has expired at `now_ms` and awaits a sweep.
    pub fn has_expired(&self, now_ms: u64) -> bool {
        self.expiring.first().is_some_and(|(e, _)| *e <= now_ms)
    }

    /// Drops every entry expired at `now_ms`; returns how many.
    pub fn sweep(&mut self, now_ms: u64) -> usize {
        let mut n = 0;
        while let Some((exp, _)) = self.expiring.first() {
            if *exp > now_ms {
                break;
            }
            let Some((_, key)) = self.expiring.pop_first() else {
                break;
            };
            if let Some(e) = self.map.remove(&key) {
                self.sub_totals(&key, &e);
            }
            n += 1;
        }
        n
    }

    /// Number of entries (live once swept).
    pub fn len(&self) -> usize {
        self.map.len()
    }

    /// True when there is no entry.
    #[allow(dead_code, reason = "unused since the module went private")]
    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    /// Sum of the value lengths of all entries.
    pub fn live_value_bytes(&self) -> u64 {
        self.live_value_bytes
    }

    /// Sum of the encoded record lengths of all entries.
    pub fn live_record_bytes(&self) -> u64 {
        self.live_record_bytes
    }

    /// Visits keys starting with `prefix`, strictly after `after`, in byte order,
    /// skipping those expired at `now_ms`, until `visit` returns false.
    pub fn scan(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        now_ms: u64,
        mut visit: impl FnMut(&[u8], &Entry) -> bool,
    ) {
        let start = match after {
            Some(a) if a >= prefix => Bound::Excluded(KeySlice::new(a)),
            _ => Bound::Included(KeySlice::new(prefix)),
        };
        for (k, e) in self.map.range::<KeySlice, _>((start, Bound::Unbounded)) {
            if !k.starts_with(prefix) {
                break;
            }
            if e.is_expired(now_ms) {
                continue;
            }
            if !visit(k, e) {
                break;
            }
        }
    }

    /// Entries from `from` on, in key order (expired ones included).
    pub fn range_from<'a>(
        &'a self,
        from: Bound<&KeySlice>,
    ) -> impl Iterator<Item = (&'a [u8], &'a Entry)> + 'a {
        self.map
            .range::<KeySlice, _>((from, Bound::Unbounded))
            .map(|(k, e)| (&**k, e))
    }

    /// Visits every entry in key order.
    #[allow(dead_code, reason = "unused since the module went private")]
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], &Entry)> {
        self.map.iter().map(|(k, e)| (&**k, e))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(value_len: u32, expiry: u64) -> Entry {
        Entry {
            segment: SegmentId(1),
            offset: 20,
            value_len,
            expiry,
        }
    }

    #[test]
    fn totals_follow_inserts_and_removes() {
        let mut kd = Keydir::default();
        assert!(kd.insert(b"a", entry(10, 0)).is_none());
        assert!(kd.insert(b"a", entry(4, 0)).is_some());
        kd.insert(b"bb", entry(6, 0));
        assert_eq!(kd.live_value_bytes(), 10);
        assert_eq!(kd.live_record_bytes(), (7 + 1 + 4) + (7 + 2 + 6));
        kd.remove(b"a");
        assert_eq!(kd.live_value_bytes(), 6);
        assert_eq!(kd.len(), 1);
    }

    #[test]
    fn sweep_drops_only_what_expired() {
        let mut kd = Keydir::default();
        kd.insert(b"soon", entry(1, 100));
        kd.insert(b"later", entry(1, 200));
        kd.insert(b"never", entry(1, 0));
        assert!(!kd.has_expired(99));
        assert_eq!(kd.sweep(150), 1);
        assert!(kd.get(b"soon").is_none());
        assert_eq!(kd.len(), 2);
        assert_eq!(kd.live_value_bytes(), 2);
    }

    #[test]
    fn overwrite_without_ttl_clears_the_expiry() {
        let mut kd = Keydir::default();
        kd.insert(b"k", entry(1, 100));
        kd.insert(b"k", entry(1, 0));
        assert_eq!(kd.sweep(1000), 0);
        assert!(kd.get(b"k").is_some());
    }

    #[test]
    fn scan_pages_in_byte_order_within_the_prefix() {
        let mut kd = Keydir::default();
        for k in ["a", "p1", "p2", "p3", "q"] {
            kd.insert(k.as_bytes(), entry(1, 0));
        }
        kd.insert(b"p0", entry(1, 5));
        let mut seen = Vec::new();
        kd.scan(b"p", Some(b"p1"), 10, |k, _| {
            seen.push(k.to_vec());
            true
        });
        assert_eq!(seen, vec![b"p2".to_vec(), b"p3".to_vec()]);
    }

    #[test]
    fn relocate_refuses_when_the_key_moved_on() {
        let mut kd = Keydir::default();
        let old = entry(1, 0);
        kd.insert(b"k", old);
        let newer = Entry { offset: 99, ..old };
        kd.insert(b"k", newer);
        let compacted = Entry {
            segment: SegmentId(9),
            ..old
        };
        let k = Key::from_slice(b"k");
        assert_eq!(kd.relocate_sorted([(&k, &old, compacted)]), 0);
        assert_eq!(kd.get(b"k"), Some(newer));
    }

    #[test]
    fn relocate_sorted_matches_checking_and_moving_one_by_one() {
        // Keys 0..2000; moves name every third key plus some that were never
        // inserted, some whose entry moved on, and runs with long gaps (re-seek).
        let key = |i: u32| Key::from_slice(format!("key{i:06}").as_bytes());
        let (mut walked, mut looked_up) = (Keydir::default(), Keydir::default());
        for i in 0..2000 {
            let e = Entry {
                offset: i,
                ..entry(1, 0)
            };
            walked.insert(&key(i), e);
            looked_up.insert(&key(i), e);
        }
        let mut moves = Vec::new();
        for i in (0..2600).filter(|i| i % 3 == 0 && !(700..1500).contains(i) || i % 401 == 0) {
            let expected = Entry {
                offset: if i % 7 == 0 { i + 1 } else { i },
                ..entry(1, 0)
            };
            let new = Entry {
                segment: SegmentId(9),
                ..expected
            };
            moves.push((key(i), expected, new));
        }
        moves.sort_by(|a, b| a.0.cmp(&b.0));
        let moved = walked.relocate_sorted(moves.iter().map(|(k, old, new)| (k, old, *new)));
        let one_by_one = moves
            .iter()
            .filter(|(k, old, new)| {
                let still = looked_up.get(k) == Some(*old);
                if still {
                    looked_up.insert(k, *new);
                }
                still
            })
            .count();
        assert_eq!(moved, one_by_one);
        assert!(moved > 300, "{moved}");
        assert!(walked.iter().eq(looked_up.iter()));
    }
}
