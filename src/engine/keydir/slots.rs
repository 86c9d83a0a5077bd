//! Slot storage: one fixed 32-byte slot per key, addressed by a `u32` id that
//! stays put while the key lives, so the hash table and the key order can name
//! a key in 4 bytes.
//!
//! Slots live in fixed chunks rather than one `Vec`: growing never copies the
//! slots already there and never leaves a doubling's worth of unused capacity
//! (the bulk of a keydir's memory is here). A freed slot joins an intrusive free
//! list (its `offset` field links to the next free one), so it costs nothing.
//!
//! A key of up to [`INLINE`] bytes sits in the slot, zero-padded, so a lookup
//! compares two words and chases no pointer. A longer key lives in the arena
//! (`u32` length then bytes); the slot keeps its arena offset and its first 8
//! bytes, which settle most comparisons without the arena. Freed arena bytes
//! are counted and reclaimed by rewriting the arena once they are the majority.
//!
//! `meta` packs the location's segment id (low 48 bits), the key tag (inline
//! length, [`TAG_LONG`] or [`TAG_FREE`]) and two flags telling the keydir that
//! the expiry, or a segment id too wide for 48 bits, is in its side tables.

use std::fmt;

/// Longest key kept inside its slot.
pub(super) const INLINE: usize = 16;
const CHUNK_BITS: u32 = 10;
const CHUNK: usize = 1 << CHUNK_BITS;
/// Segment ids below this fit the slot.
pub(super) const SEGMENT_LIMIT: u64 = 1 << 48;
const TAG_SHIFT: u32 = 48;
const TAG_MASK: u64 = 0x1f;
const TAG_LONG: u64 = 31;
const TAG_FREE: u64 = 30;
/// The entry has an expiry, kept in the keydir's side table.
pub(super) const HAS_EXPIRY: u64 = 1 << 62;
/// The segment id is at least [`SEGMENT_LIMIT`], kept in the keydir's side table.
pub(super) const WIDE_SEGMENT: u64 = 1 << 63;
const FLAGS: u64 = HAS_EXPIRY | WIDE_SEGMENT;
const NO_FREE: u32 = u32::MAX;
/// Freed arena bytes tolerated before the arena is rewritten.
const ARENA_SLACK: usize = 64 << 10;

/// One key's slot.
#[derive(Clone, Copy)]
#[repr(C)]
pub(super) struct Slot {
    /// Inline key bytes, zero-padded; or arena offset (LE) then first 8 bytes.
    key: [u8; INLINE],
    pub offset: u32,
    pub value_len: u32,
    pub meta: u64,
}

const EMPTY: Slot = Slot {
    key: [0; INLINE],
    offset: 0,
    value_len: 0,
    meta: 0,
};

/// A key prepared for comparing against slots.
pub(super) struct Probe<'k> {
    key: &'k [u8],
    /// The key zero-padded (inline keys) or its first 8 bytes (long keys).
    padded: [u8; INLINE],
}

impl<'k> Probe<'k> {
    pub fn new(key: &'k [u8]) -> Probe<'k> {
        let mut padded = [0u8; INLINE];
        if key.len() <= INLINE {
            padded[..key.len()].copy_from_slice(key);
        } else {
            padded[8..].copy_from_slice(&key[..8]);
        }
        Probe { key, padded }
    }
}

/// The slots and the arena of long keys.
#[derive(Default)]
pub(super) struct Slots {
    /// Each `CHUNK` slots long.
    chunks: Vec<Box<[Slot]>>,
    /// Ids below `next` have been handed out at least once.
    next: u32,
    /// Head of the free list.
    free: Option<u32>,
    arena: Vec<u8>,
    arena_garbage: usize,
}

impl fmt::Debug for Slots {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Slots")
            .field("chunks", &self.chunks.len())
            .field("arena", &self.arena.len())
            .finish_non_exhaustive()
    }
}

fn split(id: u32) -> (usize, usize) {
    ((id >> CHUNK_BITS) as usize, id as usize & (CHUNK - 1))
}

impl Slots {
    pub fn slot(&self, id: u32) -> &Slot {
        let (c, i) = split(id);
        self.chunks
            .get(c)
            .and_then(|chunk| chunk.get(i))
            .unwrap_or(&EMPTY)
    }

    fn slot_mut(&mut self, id: u32) -> Option<&mut Slot> {
        let (c, i) = split(id);
        self.chunks.get_mut(c).and_then(|chunk| chunk.get_mut(i))
    }

    /// The key of a live slot.
    pub fn key(&self, id: u32) -> &[u8] {
        let s = self.slot(id);
        let tag = (s.meta >> TAG_SHIFT) & TAG_MASK;
        if tag as usize <= INLINE {
            &s.key[..tag as usize]
        } else {
            self.arena_key(s)
        }
    }

    fn arena_key(&self, s: &Slot) -> &[u8] {
        let mut at = [0u8; 8];
        at.copy_from_slice(&s.key[..8]);
        let at = usize::try_from(u64::from_le_bytes(at)).unwrap_or(usize::MAX);
        let len = self
            .arena
            .get(at..at.saturating_add(4))
            .map_or(0, |b| u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize);
        self.arena.get(at + 4..at + 4 + len).unwrap_or(&[])
    }

    /// True when live slot `id` holds the probed key.
    #[inline]
    pub fn matches(&self, id: u32, p: &Probe<'_>) -> bool {
        let s = self.slot(id);
        let tag = (s.meta >> TAG_SHIFT) & TAG_MASK;
        if p.key.len() <= INLINE {
            tag as usize == p.key.len() && s.key == p.padded
        } else {
            tag == TAG_LONG && s.key[8..] == p.padded[8..] && self.arena_key(s) == p.key
        }
    }

    /// A fresh slot holding `key`, its location zeroed and its flags clear.
    pub fn alloc(&mut self, key: &[u8]) -> u32 {
        let id = match self.free {
            Some(id) => {
                let next = self.slot(id).offset;
                self.free = (next != NO_FREE).then_some(next);
                id
            }
            None => {
                let id = self.next;
                if split(id).0 == self.chunks.len() {
                    // Built on the heap: a boxed array literal went through the stack.
                    self.chunks.push(vec![EMPTY; CHUNK].into_boxed_slice());
                }
                // 2^32 keys would need >150 GiB of keydir: memory runs out first.
                self.next += 1;
                id
            }
        };
        let mut slot = EMPTY;
        if key.len() <= INLINE {
            slot.key[..key.len()].copy_from_slice(key);
            slot.meta = (key.len() as u64) << TAG_SHIFT;
        } else {
            let at = self.arena.len() as u64;
            self.arena
                .extend_from_slice(&super::super::format::record::len_u32(key.len()).to_le_bytes());
            self.arena.extend_from_slice(key);
            slot.key[..8].copy_from_slice(&at.to_le_bytes());
            slot.key[8..].copy_from_slice(&key[..8]);
            slot.meta = TAG_LONG << TAG_SHIFT;
        }
        if let Some(s) = self.slot_mut(id) {
            *s = slot;
        }
        id
    }

    /// Sets a live slot's location and flags (its key stays).
    pub fn set(&mut self, id: u32, segment_low: u64, offset: u32, value_len: u32, flags: u64) {
        if let Some(s) = self.slot_mut(id) {
            s.meta =
                (s.meta & (TAG_MASK << TAG_SHIFT)) | (segment_low & (SEGMENT_LIMIT - 1)) | flags;
            s.offset = offset;
            s.value_len = value_len;
        }
    }

    /// The flags of a live slot.
    pub fn flags(&self, id: u32) -> u64 {
        self.slot(id).meta & FLAGS
    }

    /// Frees slot `id`; its key is gone.
    pub fn release(&mut self, id: u32) {
        let s = *self.slot(id);
        if (s.meta >> TAG_SHIFT) & TAG_MASK == TAG_LONG {
            self.arena_garbage += 4 + self.arena_key(&s).len();
        }
        let next = self.free.unwrap_or(NO_FREE);
        if let Some(slot) = self.slot_mut(id) {
            *slot = Slot {
                offset: next,
                meta: TAG_FREE << TAG_SHIFT,
                ..EMPTY
            };
        }
        self.free = Some(id);
        if self.arena_garbage > ARENA_SLACK && self.arena_garbage * 2 > self.arena.len() {
            self.compact_arena();
        }
    }

    /// Rewrites the arena with only the keys of live slots.
    fn compact_arena(&mut self) {
        let mut arena = Vec::with_capacity(self.arena.len() - self.arena_garbage);
        for c in 0..self.chunks.len() {
            for i in 0..self.chunks[c].len() {
                let s = self.chunks[c][i];
                if (s.meta >> TAG_SHIFT) & TAG_MASK != TAG_LONG {
                    continue;
                }
                let key = self.arena_key(&s);
                let at = arena.len() as u64;
                arena.extend_from_slice(
                    &super::super::format::record::len_u32(key.len()).to_le_bytes(),
                );
                arena.extend_from_slice(key);
                self.chunks[c][i].key[..8].copy_from_slice(&at.to_le_bytes());
            }
        }
        self.arena = arena;
        self.arena_garbage = 0;
    }

    /// Bytes of heap this storage holds.
    pub fn heap_bytes(&self) -> usize {
        self.chunks.len() * CHUNK * std::mem::size_of::<Slot>()
            + self.chunks.capacity() * std::mem::size_of::<usize>()
            + self.arena.capacity()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_slot_is_32_bytes() {
        assert_eq!(std::mem::size_of::<Slot>(), 32);
    }

    #[test]
    fn long_keys_survive_frees_and_arena_rewrites() {
        let mut slots = Slots::default();
        let key = |i: usize| format!("a-key-longer-than-sixteen-bytes-{i:08}").into_bytes();
        let ids: Vec<u32> = (0..20_000).map(|i| slots.alloc(&key(i))).collect();
        for (i, &id) in ids.iter().enumerate() {
            if i % 4 != 0 {
                slots.release(id);
            }
        }
        let full = 20_000 * (4 + key(0).len());
        assert!(slots.arena.len() < full / 2, "the arena was rewritten");
        assert!(slots.arena_garbage * 2 <= slots.arena.len());
        for (i, &id) in ids.iter().enumerate().filter(|(i, _)| i % 4 == 0) {
            assert_eq!(slots.key(id), key(i));
            assert!(slots.matches(id, &Probe::new(&key(i))));
            assert!(!slots.matches(id, &Probe::new(&key(i + 1))));
        }
        // Freed ids are handed out again before fresh ones.
        let again = slots.alloc(b"short");
        assert!(again < 20_000);
        assert_eq!(slots.key(again), b"short");
    }
}
