//! One shard of the point index: an open-addressing table of `u64` words, each a
//! key's 32-bit hash tag (high half) and its slot id (low half), linear probing.
//!
//! It replaced a `hashbrown::HashTable<u32>` of slot ids, whose lookup touched
//! three cache lines one after another: the control bytes, the bucket holding
//! the id, then the slot. Here the tag and the id share the word the probe
//! reads, so a lookup is one line of this table and then the slot (a false
//! tag match, one in 2^32 per probe, only costs a slot read).
//!
//! A word's home position comes from its tag alone (`tag * capacity >> 32`),
//! so growing and the backward shift of a removal never rehash a key: no
//! slot is read, and a shard's growth (by half) costs a pass over its words. Probing
//! wraps at the end. At most [`MAX_LOAD_PER_MILLE`] of the words are used,
//! so every probe sequence ends at an empty word.

/// An unused word. A used one never equals it: slot ids stay below `u32::MAX`
/// (2^32 keys would need >150 GiB of keydir: memory runs out first).
const EMPTY: u64 = u64::MAX;
/// Fullest a shard gets before growing (per mille): linear probing's misses
/// (a lookup of an absent key, an insert) probe ~13 words at 0.8, two lines.
const MAX_LOAD_PER_MILLE: usize = 800;
/// Smallest table, in words.
const MIN_WORDS: usize = 16;

/// A shard: `words.len()` is its capacity.
#[derive(Debug, Default)]
pub(super) struct Shard {
    words: Box<[u64]>,
    len: usize,
}

fn word(tag: u32, id: u32) -> u64 {
    (u64::from(tag) << 32) | u64::from(id)
}

fn tag_of(w: u64) -> u32 {
    (w >> 32) as u32
}

#[allow(clippy::cast_possible_truncation, reason = "the low half, on purpose")]
fn id_of(w: u64) -> u32 {
    w as u32
}

/// Largest number of words used in a table of `cap` words.
fn max_len(cap: usize) -> usize {
    cap / 1000 * MAX_LOAD_PER_MILLE + cap % 1000 * MAX_LOAD_PER_MILLE / 1000
}

/// Words for `n` keys: the smallest capacity that holds them within the load.
fn words_for(n: usize) -> usize {
    let mut cap = MIN_WORDS;
    while max_len(cap) < n {
        cap = cap.saturating_add(cap / 2);
    }
    cap
}

impl Shard {
    /// A shard sized for `n` keys.
    pub fn with_capacity(n: usize) -> Shard {
        Shard {
            words: vec![EMPTY; words_for(n)].into_boxed_slice(),
            len: 0,
        }
    }

    fn home(&self, tag: u32) -> usize {
        ((u64::from(tag) * self.words.len() as u64) >> 32) as usize
    }

    fn next(&self, i: usize) -> usize {
        if i + 1 == self.words.len() { 0 } else { i + 1 }
    }

    /// Where the word of `tag` whose id satisfies `is` sits.
    fn position(&self, tag: u32, mut is: impl FnMut(u32) -> bool) -> Option<usize> {
        if self.words.is_empty() {
            return None;
        }
        let mut i = self.home(tag);
        loop {
            let w = *self.words.get(i)?;
            if w == EMPTY {
                return None;
            }
            if tag_of(w) == tag && is(id_of(w)) {
                return Some(i);
            }
            i = self.next(i);
        }
    }

    /// The id stored under `tag` that satisfies `is` (the slot holds the key).
    pub fn find(&self, tag: u32, is: impl FnMut(u32) -> bool) -> Option<u32> {
        let i = self.position(tag, is)?;
        self.words.get(i).map(|&w| id_of(w))
    }

    /// Starts loading the line a lookup of `tag` reads first.
    pub fn prefetch(&self, tag: u32) {
        if let Some(w) = self.words.get(self.home(tag)) {
            super::prefetch_line(w);
        }
    }

    /// Adds `id` under `tag`; the caller knows the key is not in the table.
    pub fn insert(&mut self, tag: u32, id: u32) {
        if self.len + 1 > max_len(self.words.len()) {
            self.grow();
        }
        self.place(word(tag, id));
        self.len += 1;
    }

    fn place(&mut self, w: u64) {
        let mut i = self.home(tag_of(w));
        while let Some(slot) = self.words.get_mut(i) {
            if *slot == EMPTY {
                *slot = w;
                return;
            }
            i = self.next(i);
        }
    }

    fn grow(&mut self) {
        let cap = self.words.len();
        let new_cap = if cap < MIN_WORDS {
            MIN_WORDS
        } else {
            cap.saturating_add(cap / 2)
        };
        let old = std::mem::replace(&mut self.words, vec![EMPTY; new_cap].into_boxed_slice());
        for w in old.iter().copied().filter(|&w| w != EMPTY) {
            self.place(w);
        }
    }

    /// Removes the word of `tag` whose id satisfies `is`; returns its id.
    pub fn remove(&mut self, tag: u32, is: impl FnMut(u32) -> bool) -> Option<u32> {
        let at = self.position(tag, is)?;
        let id = self.words.get(at).map(|&w| id_of(w))?;
        // Backward shift: each later word of the run moves into the hole unless
        // its home lies cyclically after the hole (it would then be out of reach).
        let cap = self.words.len();
        let dist = |from: usize, to: usize| (to + cap - from) % cap;
        let mut hole = at;
        let mut i = self.next(at);
        while let Some(&w) = self.words.get(i) {
            if w == EMPTY {
                break;
            }
            if dist(self.home(tag_of(w)), i) >= dist(hole, i) {
                if let Some(h) = self.words.get_mut(hole) {
                    *h = w;
                }
                hole = i;
            }
            i = self.next(i);
        }
        if let Some(h) = self.words.get_mut(hole) {
            *h = EMPTY;
        }
        self.len -= 1;
        Some(id)
    }

    /// Keys held.
    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.len
    }

    /// Heap bytes held.
    pub fn allocation_size(&self) -> usize {
        self.words.len() * std::mem::size_of::<u64>()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    /// Tags crowded into a few homes, so runs are long and wrap around the end.
    fn crowded(i: u32) -> u32 {
        (i % 7).wrapping_mul(0x2492_4924) ^ (i / 7 % 3)
    }

    #[test]
    fn agrees_with_a_map_through_inserts_removes_and_growth() {
        let mut shard = Shard::default();
        let mut model: HashMap<u32, u32> = HashMap::new();
        let mut x: u64 = 7;
        for step in 0..20_000u32 {
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let id = (x >> 40) as u32 % 3000;
            let tag = if step % 2 == 0 {
                crowded(id)
            } else {
                id.wrapping_mul(0x9E37_79B9)
            };
            if let Some(&t) = model.get(&id) {
                assert_eq!(shard.remove(t, |i| i == id), Some(id));
                model.remove(&id);
            } else {
                shard.insert(tag, id);
                model.insert(id, tag);
            }
            assert_eq!(shard.len(), model.len());
            if step % 997 == 0 {
                for (&id, &t) in &model {
                    assert_eq!(shard.find(t, |i| i == id), Some(id), "step {step}");
                }
            }
        }
        for (&id, &t) in &model {
            assert_eq!(shard.find(t, |i| i == id), Some(id));
        }
        assert_eq!(shard.find(12345, |_| true), None);
    }

    #[test]
    fn a_tag_match_with_another_id_is_passed_over() {
        let mut shard = Shard::with_capacity(4);
        shard.insert(5, 1);
        shard.insert(5, 2);
        assert_eq!(shard.find(5, |i| i == 2), Some(2));
        assert_eq!(shard.remove(5, |i| i == 1), Some(1));
        assert_eq!(shard.find(5, |i| i == 2), Some(2));
        assert_eq!(shard.find(5, |i| i == 1), None);
    }

    #[test]
    fn capacity_keeps_the_load_within_bounds() {
        for n in [0usize, 1, 12, 13, 100, 15_625, 1_000_000] {
            let cap = words_for(n);
            assert!(max_len(cap) >= n, "{n} keys in {cap} words");
            // Grown by half at a time: a shard is never much emptier than 0.8 / 1.5.
            if n >= 100 {
                assert!(n as f64 / cap as f64 > 0.5, "{n} keys in {cap} words");
            }
        }
    }
}
