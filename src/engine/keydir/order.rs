//! The key order: slot ids in ascending key order, cut into blocks of at most
//! [`BLOCK`] ids, with each block's first key's leading two words (its fence)
//! in a compact array.
//!
//! A seek binary-searches the fences (16 bytes per block, a few hundred KB for
//! millions of keys, so they stay in cache) and then one block, touching
//! about log2(BLOCK) slots. Inserting a new key moves at most one block's ids;
//! a full block splits in two, and a block emptied below an eighth merges with
//! a neighbour, so blocks stay between an eighth and all full. Point lookups
//! never come here: the hash table finds them.

use std::cmp::Ordering;

use super::super::key::{cmp_keys, same_key, words};
use super::slots::Slots;

/// Most ids in one block.
pub(super) const BLOCK: usize = 512;

#[derive(Debug, Default)]
pub(super) struct Order {
    blocks: Vec<Vec<u32>>,
    fences: Vec<(u64, u64)>,
}

/// Where a key is, or would go: block and position in it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Pos {
    pub block: usize,
    pub at: usize,
}

impl Order {
    /// The first position whose key is not below `key`, and whether it is `key`.
    pub fn seek(&self, slots: &Slots, key: &[u8]) -> (Pos, bool) {
        let w = words(key);
        // A key above the last one (a load in key order) goes at the end:
        // one slot read instead of a search.
        if let Some(last) = self.blocks.last()
            && let Some(&id) = last.last()
            && cmp_keys(slots.key(id), key).is_lt()
        {
            return (
                Pos {
                    block: self.blocks.len() - 1,
                    at: last.len(),
                },
                false,
            );
        }
        // Blocks whose first key is at most `key`.
        let (mut lo, mut hi) = (0, self.blocks.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            // The fences (in cache) settle the step unless the leading words
            // tie; only then is the block's first slot read.
            let greater = match self.fences[mid].cmp(&w) {
                Ordering::Equal => {
                    let first = self.blocks[mid]
                        .first()
                        .map_or(&[][..], |&id| slots.key(id));
                    cmp_keys(first, key).is_gt()
                }
                o => o == Ordering::Greater,
            };
            if greater {
                hi = mid;
            } else {
                lo = mid + 1;
            }
        }
        let block = lo.saturating_sub(1);
        let Some(ids) = self.blocks.get(block) else {
            return (Pos { block: 0, at: 0 }, false);
        };
        let at = ids.partition_point(|&id| cmp_keys(slots.key(id), key).is_lt());
        let found = ids.get(at).is_some_and(|&id| same_key(slots.key(id), key));
        (Pos { block, at }, found)
    }

    /// Puts `id` (whose key is in `slots`) at `pos`, as found by [`Order::seek`].
    pub fn insert(&mut self, slots: &Slots, pos: Pos, id: u32) {
        if self.blocks.is_empty() {
            self.push_back(slots, id);
            return;
        }
        let Pos { mut block, mut at } = pos;
        if block + 1 == self.blocks.len() && at == self.blocks[block].len() {
            // Appending (a load in key order): full blocks, not halves.
            self.push_back(slots, id);
            return;
        }
        if self.blocks[block].len() >= BLOCK {
            let right = self.blocks[block].split_off(BLOCK / 2);
            let fence = right.first().map_or((0, 0), |&id| words(slots.key(id)));
            self.blocks.insert(block + 1, right);
            self.fences.insert(block + 1, fence);
            if at > BLOCK / 2 {
                block += 1;
                at -= BLOCK / 2;
            }
        }
        self.blocks[block].insert(at, id);
        if at == 0 {
            self.fences[block] = words(slots.key(id));
        }
    }

    /// Appends `id`, whose key is above every key here (bulk building).
    pub fn push_back(&mut self, slots: &Slots, id: u32) {
        match self.blocks.last_mut() {
            Some(last) if last.len() < BLOCK => last.push(id),
            _ => {
                let mut ids = Vec::with_capacity(BLOCK);
                ids.push(id);
                self.blocks.push(ids);
                self.fences.push(words(slots.key(id)));
            }
        }
    }

    /// The id last in order.
    pub fn last(&self) -> Option<u32> {
        self.blocks.last().and_then(|b| b.last()).copied()
    }

    /// Takes `key`'s id out of the order (before its slot is freed).
    pub fn remove(&mut self, slots: &Slots, key: &[u8]) -> bool {
        let (Pos { block, at }, found) = self.seek(slots, key);
        if !found {
            return false;
        }
        let ids = &mut self.blocks[block];
        ids.remove(at);
        if ids.is_empty() {
            self.blocks.remove(block);
            self.fences.remove(block);
            return true;
        }
        if at == 0 {
            self.fences[block] = words(slots.key(ids[0]));
        }
        if ids.len() < BLOCK / 8 {
            self.merge_small(block);
        }
        true
    }

    /// Merges a small block into a neighbour when both fit one block.
    fn merge_small(&mut self, block: usize) {
        let len = self.blocks[block].len();
        let fits = |other: &Vec<u32>| other.len() + len <= BLOCK * 3 / 4;
        if self.blocks.get(block + 1).is_some_and(fits) {
            let next = self.blocks.remove(block + 1);
            self.fences.remove(block + 1);
            self.blocks[block].extend_from_slice(&next);
        } else if block > 0 && fits(&self.blocks[block - 1]) {
            let this = self.blocks.remove(block);
            self.fences.remove(block);
            self.blocks[block - 1].extend_from_slice(&this);
        }
    }

    /// Ids from `pos` on, in key order.
    pub fn iter_from(&self, pos: Pos) -> impl Iterator<Item = u32> + '_ {
        self.blocks_from(pos).flat_map(|ids| ids.iter().copied())
    }

    /// The ids from `pos` on, one block's slice at a time.
    pub fn blocks_from(&self, pos: Pos) -> impl Iterator<Item = &[u32]> + '_ {
        self.blocks
            .get(pos.block..)
            .unwrap_or(&[])
            .iter()
            .enumerate()
            .map(move |(i, ids)| {
                let start = if i == 0 { pos.at } else { 0 };
                ids.get(start..).unwrap_or(&[])
            })
    }

    /// Bytes of heap the order holds.
    pub fn heap_bytes(&self) -> usize {
        self.blocks.iter().map(|b| b.capacity() * 4).sum::<usize>()
            + self.blocks.capacity() * std::mem::size_of::<Vec<u32>>()
            + self.fences.capacity() * std::mem::size_of::<(u64, u64)>()
    }

    /// Checks the structure's invariants (tests).
    #[cfg(test)]
    pub fn check(&self, slots: &Slots) -> usize {
        assert_eq!(self.blocks.len(), self.fences.len());
        let mut prev: Option<&[u8]> = None;
        let mut n = 0;
        for (ids, fence) in self.blocks.iter().zip(&self.fences) {
            assert!(!ids.is_empty() && ids.len() <= BLOCK);
            assert_eq!(*fence, words(slots.key(ids[0])));
            for &id in ids {
                let k = slots.key(id);
                assert!(prev.is_none_or(|p| p < k), "order broken");
                prev = Some(k);
                n += 1;
            }
        }
        n
    }
}
