//! The keydir: the in-memory index from every live key to the location of its
//! newest record, in key order, plus the live-data figures `stats()` reads in O(1).
//!
//! Three parts (a B-tree map did all of it before; a point lookup was then
//! ~20 key comparisons down the tree, most of them cache misses):
//! - `slots`: one 32-byte slot per key (key inline up to 16 bytes, location),
//!   named by a `u32` id;
//! - hash tables of slot ids with 32-bit hash tags (`table`, 64 shards, foldhash
//!   of the key bytes): `get`, `insert` of a present key and `remove` read one
//!   line of the table and then the slot;
//! - `order`: the slot ids in key order, in blocks, for scans, listings and
//!   resumable ranges (O(log n) seek, then sequential).
//!
//! Expiries and segment ids too wide for a slot are rare: they live in side
//! tables keyed by slot id, flagged in the slot, so a key without TTL pays no
//! byte for them.
//!
//! Invariants, kept by every method under the caller's write lock:
//! - the table, the order and the live slots hold the same keys, once each;
//! - `live_value_bytes` / `live_record_bytes` are the sums over the entries;
//! - `(e, id)` is in `expiring` exactly when slot `id`'s entry has expiry `e != 0`.
//!
//! Expired entries may linger until [`Keydir::sweep`]; readers treat them as absent.

mod order;
mod slots;
mod table;

use std::collections::BTreeSet;
use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::ops::Bound;

use hashbrown::HashMap;

use super::SegmentId;
use super::format::record;
pub use super::key::{Key, KeySlice};
use order::{Order, Pos};
use slots::{HAS_EXPIRY, Probe, SEGMENT_LIMIT, Slots, WIDE_SEGMENT};
use table::Shard;

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

/// Side tables keyed by slot id: nothing to defend against (ids are ours).
type SideMap = HashMap<u32, u64, foldhash::fast::FixedState>;

/// Shards of the point index: [`SHARD_BITS`] bits of a key's hash from
/// [`SHARD_SHIFT`] up pick one.
const SHARD_BITS: u32 = 6;
const SHARDS: usize = 1 << SHARD_BITS;
/// A shard's table takes a key's tag (and, from the tag, its position) from
/// the hash's low 32 bits; the shard bits must be clear of them, or every key
/// of a shard would share tag bits and land in one part of its table.
const SHARD_SHIFT: u32 = 40;

/// The tag a shard's table files a key under: the hash's low 32 bits.
#[allow(clippy::cast_possible_truncation, reason = "the low half, on purpose")]
fn tag(h: u64) -> u32 {
    h as u32
}

/// The point index, in [`SHARDS`] tables chosen by middle bits of the hash
/// (see [`SHARD_SHIFT`]). A table grows by moving all it holds at once (no key
/// is read: positions follow the tags): one table of millions of keys would
/// stall every reader and writer behind the keydir lock at each growth; a
/// shard holds 1/64th of the keys, so a growth costs 1/64th of that. Shards
/// also grow at different moments, which evens out the unused capacity.
#[derive(Debug, Default)]
struct Table {
    /// Empty until the first insert, then [`SHARDS`] long.
    shards: Vec<Shard>,
}

fn shard_of(h: u64) -> usize {
    usize::try_from((h >> SHARD_SHIFT) & (SHARDS as u64 - 1)).unwrap_or(0)
}

impl Table {
    fn shard(&self, h: u64) -> Option<&Shard> {
        self.shards.get(shard_of(h))
    }

    fn shard_mut(&mut self, h: u64) -> &mut Shard {
        if self.shards.len() != SHARDS {
            self.shards = (0..SHARDS).map(|_| Shard::default()).collect();
        }
        &mut self.shards[shard_of(h)]
    }

    fn allocation_size(&self) -> usize {
        self.shards
            .iter()
            .map(Shard::allocation_size)
            .sum::<usize>()
            + self.shards.capacity() * std::mem::size_of::<Shard>()
    }
}

/// The index and its running totals.
#[derive(Default)]
pub struct Keydir {
    table: Table,
    /// Seeded per process: keys come from clients, and a fixed hash would let
    /// them pick colliding keys.
    hasher: foldhash::fast::RandomState,
    slots: Slots,
    order: Order,
    expiry: SideMap,
    wide: SideMap,
    expiring: BTreeSet<(u64, u32)>,
    live_value_bytes: u64,
    live_record_bytes: u64,
    live_slots: usize,
}

impl fmt::Debug for Keydir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Keydir")
            .field("len", &self.len())
            .field("expiring", &self.expiring.len())
            .field("live_value_bytes", &self.live_value_bytes)
            .field("live_record_bytes", &self.live_record_bytes)
            .finish_non_exhaustive()
    }
}

/// How far ahead of the entry being read a range prefetches slots.
const SCAN_AHEAD: usize = 8;

/// Asks the CPU to bring `item`'s cache line in, without waiting for it.
#[inline]
fn prefetch_line<T>(item: &T) {
    #[cfg(target_arch = "x86_64")]
    #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
    // SAFETY: SSE is part of the x86_64 baseline, and a prefetch never
    // faults nor reads into the program: it is only a hint to the cache.
    unsafe {
        std::arch::x86_64::_mm_prefetch::<{ std::arch::x86_64::_MM_HINT_T0 }>(
            std::ptr::from_ref(item).cast(),
        );
    }
    #[cfg(not(target_arch = "x86_64"))]
    let _ = item;
}

/// Asks the CPU to bring every cache line of `bytes` in, without waiting.
#[inline]
pub(crate) fn prefetch_bytes(bytes: &[u8]) {
    const LINE: usize = 64;
    let first = bytes.as_ptr() as usize & !(LINE - 1);
    let end = bytes.as_ptr() as usize + bytes.len();
    // Line by line from the one holding the first byte: the last line is
    // covered even when `bytes` starts mid-line.
    let mut at = first;
    while at < end {
        let offset = at.saturating_sub(bytes.as_ptr() as usize);
        if let Some(byte) = bytes.get(offset) {
            prefetch_line(byte);
        }
        at += LINE;
    }
}

fn hash_key(state: &foldhash::fast::RandomState, key: &[u8]) -> u64 {
    let mut h = state.build_hasher();
    h.write(key);
    h.finish()
}

/// Builds a keydir from keys given in ascending order (open's merge): slots and
/// order are appended to, and the hash table is built once at the end at its
/// final size, with no rehash.
#[derive(Debug, Default)]
pub struct Builder {
    kd: Keydir,
    /// The leading words of the last key pushed in order.
    last_words: (u64, u64),
    /// Keys that came out of order: inserted the ordinary way at the end.
    late: Vec<(Key, Entry)>,
}

impl Builder {
    /// An empty builder.
    pub fn new() -> Builder {
        Builder::default()
    }

    /// Adds `key`; later pushes of a key already pushed win.
    pub fn push(&mut self, key: &[u8], e: Entry) {
        let kd = &mut self.kd;
        let words = super::key::words(key);
        let in_order = match kd.order.last() {
            None => true,
            Some(last) => match self.last_words.cmp(&words) {
                std::cmp::Ordering::Less => true,
                std::cmp::Ordering::Equal => kd.slots.key(last) < key,
                std::cmp::Ordering::Greater => false,
            },
        };
        if !in_order {
            self.late.push((Key::from_slice(key), e));
            return;
        }
        self.last_words = words;
        kd.add_totals(key, &e);
        let id = kd.slots.alloc(key);
        if e.expiry == 0 && e.segment.0 < SEGMENT_LIMIT {
            // The common case, without the side tables' bookkeeping.
            kd.slots.set(id, e.segment.0, e.offset, e.value_len, 0);
        } else {
            kd.write_entry(id, 0, &e);
        }
        kd.order.push_back(&kd.slots, id);
    }

    /// The keydir.
    pub fn finish(self) -> Keydir {
        let mut kd = self.kd;
        kd.table = build_table(&kd.slots, &kd.hasher, &kd.order, kd.live_slots);
        for (key, e) in self.late {
            kd.insert(&key, e);
        }
        kd
    }
}

/// Top bits of a key's tag (so of its position in its shard's table, which
/// follows the tag) whose order the bulk build follows (see [`build_table`]):
/// with the shard bits, 1024 groups.
const GROUP_BITS: u32 = 4;

/// The point index of the `n` ids in `order`, every shard at its final size.
///
/// Inserting in key order would write all over several MiB of tables, one
/// cache miss or two per key: that was most of open's time. A key's position
/// in its shard follows its tag, so the ids are first grouped (one counting
/// pass) by shard and the top [`GROUP_BITS`] of the tag; each group's inserts
/// then land in one 1/1024th of the index, which stays in cache.
fn build_table(
    slots: &Slots,
    hasher: &foldhash::fast::RandomState,
    order: &Order,
    n: usize,
) -> Table {
    // Sized up front: collecting from the order's iterator (no exact size)
    // would copy the vector at every doubling.
    let mut hashed: Vec<(u64, u32)> = Vec::with_capacity(n);
    hashed.extend(
        order
            .iter_from(Pos { block: 0, at: 0 })
            .map(|id| (hash_key(hasher, slots.key(id)), id)),
    );
    let mut per_shard = [0usize; SHARDS];
    for &(h, _) in &hashed {
        per_shard[shard_of(h)] += 1;
    }
    let group = |h: u64| (shard_of(h) << GROUP_BITS) | (tag(h) >> (32 - GROUP_BITS)) as usize;
    let mut starts = vec![0usize; (SHARDS << GROUP_BITS) + 1];
    for &(h, _) in &hashed {
        starts[group(h) + 1] += 1;
    }
    for g in 1..starts.len() {
        starts[g] += starts[g - 1];
    }
    let mut grouped = vec![(0u64, 0u32); hashed.len()];
    for &(h, id) in &hashed {
        let at = &mut starts[group(h)];
        grouped[*at] = (h, id);
        *at += 1;
    }
    drop(hashed);
    let mut table = Table {
        shards: per_shard.iter().map(|&n| Shard::with_capacity(n)).collect(),
    };
    for (h, id) in grouped {
        table.shard_mut(h).insert(tag(h), id);
    }
    table
}

impl Keydir {
    /// Builds a keydir from entries sorted by key with no duplicates.
    pub fn from_sorted(entries: Vec<(Key, Entry)>) -> Keydir {
        let mut b = Builder::new();
        for (key, e) in &entries {
            b.push(key, *e);
        }
        b.finish()
    }

    fn add_totals(&mut self, key: &[u8], e: &Entry) {
        self.live_value_bytes += u64::from(e.value_len);
        self.live_record_bytes += e.record_len(key);
        self.live_slots += 1;
    }

    fn sub_totals(&mut self, key: &[u8], e: &Entry) {
        self.live_value_bytes -= u64::from(e.value_len);
        self.live_record_bytes -= e.record_len(key);
        self.live_slots -= 1;
    }

    fn hash(&self, key: &[u8]) -> u64 {
        hash_key(&self.hasher, key)
    }

    fn find(&self, key: &[u8]) -> Option<u32> {
        let probe = Probe::new(key);
        let h = self.hash(key);
        self.table
            .shard(h)?
            .find(tag(h), |id| self.slots.matches(id, &probe))
    }

    fn entry_of(&self, id: u32) -> Entry {
        let s = self.slots.slot(id);
        let segment = if s.meta & WIDE_SEGMENT != 0 {
            self.wide.get(&id).copied().unwrap_or(0)
        } else {
            s.meta & (SEGMENT_LIMIT - 1)
        };
        let expiry = if s.meta & HAS_EXPIRY != 0 {
            self.expiry.get(&id).copied().unwrap_or(0)
        } else {
            0
        };
        Entry {
            segment: SegmentId(segment),
            offset: s.offset,
            value_len: s.value_len,
            expiry,
        }
    }

    /// Points live slot `id` (whose expiry was `old_expiry`) at `e`.
    fn write_entry(&mut self, id: u32, old_expiry: u64, e: &Entry) {
        let mut flags = 0;
        let was_wide = self.slots.flags(id) & WIDE_SEGMENT != 0;
        let low = if e.segment.0 >= SEGMENT_LIMIT {
            self.wide.insert(id, e.segment.0);
            flags |= WIDE_SEGMENT;
            0
        } else {
            if was_wide {
                self.wide.remove(&id);
            }
            e.segment.0
        };
        if e.expiry != 0 {
            flags |= HAS_EXPIRY;
        }
        if old_expiry != e.expiry {
            if old_expiry != 0 {
                self.expiring.remove(&(old_expiry, id));
                self.expiry.remove(&id);
            }
            if e.expiry != 0 {
                self.expiring.insert((e.expiry, id));
                self.expiry.insert(id, e.expiry);
            }
        }
        self.slots.set(id, low, e.offset, e.value_len, flags);
    }

    /// Drops live slot `id` holding `key` from everything but the table.
    fn forget(&mut self, id: u32, key: &[u8]) -> Entry {
        let old = self.entry_of(id);
        self.sub_totals(key, &old);
        if old.expiry != 0 {
            self.expiring.remove(&(old.expiry, id));
            self.expiry.remove(&id);
        }
        if self.slots.flags(id) & WIDE_SEGMENT != 0 {
            self.wide.remove(&id);
        }
        self.order.remove(&self.slots, key);
        self.slots.release(id);
        old
    }

    /// Starts loading the table line a lookup of `key` reads, so that a
    /// writer can encode and copy its record while the cache miss resolves.
    pub fn prefetch(&self, key: &[u8]) {
        let h = self.hash(key);
        if let Some(shard) = self.table.shard(h) {
            shard.prefetch(tag(h));
        }
    }

    /// The entry of `key`, expired or not.
    pub fn get(&self, key: &[u8]) -> Option<Entry> {
        self.find(key).map(|id| self.entry_of(id))
    }

    /// Points `key` at a new record, returning the entry it replaced.
    pub fn insert(&mut self, key: &[u8], e: Entry) -> Option<Entry> {
        let h = self.hash(key);
        let probe = Probe::new(key);
        let present = self
            .table
            .shard(h)
            .and_then(|t| t.find(tag(h), |id| self.slots.matches(id, &probe)));
        if let Some(id) = present {
            let old = self.entry_of(id);
            self.sub_totals(key, &old);
            self.add_totals(key, &e);
            self.write_entry(id, old.expiry, &e);
            return Some(old);
        }
        self.add_totals(key, &e);
        let id = self.slots.alloc(key);
        self.write_entry(id, 0, &e);
        let (pos, _) = self.order.seek(&self.slots, key);
        self.order.insert(&self.slots, pos, id);
        self.table.shard_mut(h).insert(tag(h), id);
        None
    }

    /// Removes `key`, returning its entry.
    pub fn remove(&mut self, key: &[u8]) -> Option<Entry> {
        let h = self.hash(key);
        let probe = Probe::new(key);
        let slots = &self.slots;
        let id = self
            .table
            .shard_mut(h)
            .remove(tag(h), |id| slots.matches(id, &probe))?;
        Some(self.forget(id, key))
    }

    /// For each `(key, expected, new)`, points `key` at `new` only if it still
    /// points at `expected`: compaction uses this so a write made meanwhile
    /// keeps its newer location. (Key order is no longer needed: each move is
    /// one hash lookup; callers still pass them sorted.) Returns how many moved.
    pub fn relocate_sorted<'a>(
        &mut self,
        moves: impl IntoIterator<Item = (&'a Key, &'a Entry, Entry)>,
    ) -> usize {
        let mut moved = 0;
        for (key, expected, new) in moves {
            let Some(id) = self.find(key) else { continue };
            let old = self.entry_of(id);
            if old != *expected {
                continue;
            }
            self.sub_totals(key, &old);
            self.add_totals(key, &new);
            self.write_entry(id, old.expiry, &new);
            moved += 1;
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
        while let Some(&(exp, id)) = self.expiring.first() {
            if exp > now_ms {
                break;
            }
            let key = Key::from_slice(self.slots.key(id));
            let h = self.hash(&key);
            self.table.shard_mut(h).remove(tag(h), |x| x == id);
            // Takes (exp, id) out of `expiring`.
            self.forget(id, &key);
            n += 1;
        }
        n
    }

    /// Number of entries (live once swept).
    pub fn len(&self) -> usize {
        self.live_slots
    }

    /// True when there is no entry.
    pub fn is_empty(&self) -> bool {
        self.live_slots == 0
    }

    /// Sum of the value lengths of all entries.
    pub fn live_value_bytes(&self) -> u64 {
        self.live_value_bytes
    }

    /// Sum of the encoded record lengths of all entries.
    pub fn live_record_bytes(&self) -> u64 {
        self.live_record_bytes
    }

    /// Heap bytes held, all parts included (the expiry tables roughly).
    pub fn heap_bytes(&self) -> usize {
        self.slots.heap_bytes()
            + self.order.heap_bytes()
            + self.table.allocation_size()
            + self.expiry.allocation_size()
            + self.wide.allocation_size()
            + self.expiring.len() * 2 * std::mem::size_of::<(u64, u32)>()
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
        for (k, e) in self.range_from(start) {
            if !k.starts_with(prefix) {
                break;
            }
            if e.is_expired(now_ms) {
                continue;
            }
            if !visit(k, &e) {
                break;
            }
        }
    }

    /// Entries from `from` on, in key order (expired ones included).
    pub fn range_from<'a>(
        &'a self,
        from: Bound<&KeySlice>,
    ) -> impl Iterator<Item = (&'a [u8], Entry)> + 'a {
        let pos = match from {
            Bound::Unbounded => Pos { block: 0, at: 0 },
            Bound::Included(k) => self.order.seek(&self.slots, k.as_bytes()).0,
            Bound::Excluded(k) => match self.order.seek(&self.slots, k.as_bytes()) {
                (p, true) => Pos { at: p.at + 1, ..p },
                (p, false) => p,
            },
        };
        // Slot ids in key order are in no memory order: each slot is a cache
        // miss. Prefetching the slot [`SCAN_AHEAD`] places on lets those
        // misses overlap instead of one waiting per entry.
        self.order.blocks_from(pos).flat_map(move |ids| {
            ids.iter().enumerate().map(move |(j, &id)| {
                if let Some(&ahead) = ids.get(j + SCAN_AHEAD) {
                    prefetch_line(self.slots.slot(ahead));
                }
                (self.slots.key(id), self.entry_of(id))
            })
        })
    }

    /// Visits every entry in key order.
    pub fn iter(&self) -> impl Iterator<Item = (&[u8], Entry)> {
        self.range_from(Bound::Unbounded)
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

    /// Checks every invariant of `kd` against the model.
    fn agrees(kd: &Keydir, model: &std::collections::BTreeMap<Vec<u8>, Entry>) {
        assert_eq!(kd.len(), model.len());
        assert_eq!(kd.order.check(&kd.slots), model.len());
        assert!(
            kd.iter()
                .map(|(k, e)| (k.to_vec(), e))
                .eq(model.iter().map(|(k, e)| (k.clone(), *e)))
        );
        for (k, e) in model {
            assert_eq!(kd.get(k), Some(*e));
        }
        let values: u64 = model.values().map(|e| u64::from(e.value_len)).sum();
        let records: u64 = model.iter().map(|(k, e)| e.record_len(k)).sum();
        assert_eq!(
            (kd.live_value_bytes(), kd.live_record_bytes()),
            (values, records)
        );
        let expiring: Vec<(u64, Vec<u8>)> = kd
            .expiring
            .iter()
            .map(|&(e, id)| (e, kd.slots.key(id).to_vec()))
            .collect();
        let mut want: Vec<(u64, Vec<u8>)> = model
            .iter()
            .filter(|(_, e)| e.expiry != 0)
            .map(|(k, e)| (e.expiry, k.clone()))
            .collect();
        want.sort();
        let mut got = expiring;
        got.sort();
        assert_eq!(got, want);
    }

    #[test]
    fn builder_takes_keys_out_of_order_and_twice() {
        let mut b = Builder::new();
        b.push(b"b", entry(1, 0));
        b.push(b"d", entry(2, 0));
        b.push(b"a", entry(3, 0));
        b.push(b"d", entry(4, 7));
        let kd = b.finish();
        let mut model = std::collections::BTreeMap::new();
        model.insert(b"a".to_vec(), entry(3, 0));
        model.insert(b"b".to_vec(), entry(1, 0));
        model.insert(b"d".to_vec(), entry(4, 7));
        agrees(&kd, &model);
    }

    #[test]
    fn shard_bits_lie_clear_of_the_tag() {
        // A key's position in its shard follows its tag (the hash's low 32
        // bits): shard bits among them would crowd a shard's keys into one
        // part of its table. Checked on the layout, not on a sample of hashes.
        const { assert!(SHARD_SHIFT >= 32 && SHARD_SHIFT + SHARD_BITS <= 64) };
        let h = ((SHARDS as u64 - 1) << SHARD_SHIFT) | 0x1234_5678;
        assert_eq!(shard_of(h), SHARDS - 1);
        assert_eq!(tag(h), 0x1234_5678);
        assert_eq!(shard_of(h & 0xFFFF_FFFF), 0);
    }

    #[test]
    fn memory_per_16_byte_key_stays_under_key_length_plus_40() {
        let n: u32 = 200_000;
        let mut kd = Keydir::default();
        let mut x: u64 = 1;
        for _ in 0..n {
            // A multiplicative permutation: keys arrive in random order.
            x = x
                .wrapping_mul(6_364_136_223_846_793_005)
                .wrapping_add(1_442_695_040_888_963_407);
            let key = format!("{:016x}", x >> 1);
            kd.insert(key.as_bytes(), entry(100, 0));
        }
        let per_key = kd.heap_bytes() as f64 / kd.len() as f64;
        assert!(per_key <= 56.0, "{per_key:.1} bytes per key");
        // Built in order (as at open), the order's blocks are full.
        let built = Keydir::from_sorted(kd.iter().map(|(k, e)| (Key::from_slice(k), e)).collect());
        // The table built in bucket order finds every key.
        assert!(kd.iter().all(|(k, e)| built.get(k) == Some(e)));
        assert_eq!(built.len(), kd.len());
        let per_key_built = built.heap_bytes() as f64 / built.len() as f64;
        assert!(
            per_key_built <= per_key,
            "{per_key_built:.1} > {per_key:.1}"
        );
    }

    mod model {
        use super::*;
        use proptest::prelude::*;
        use std::collections::BTreeMap;

        #[derive(Debug, Clone)]
        enum Op {
            Insert(Vec<u8>, Entry),
            Remove(Vec<u8>),
            Sweep(u64),
            Relocate(Vec<Vec<u8>>, bool),
            Range(Vec<u8>, bool),
        }

        fn key() -> impl Strategy<Value = Vec<u8>> {
            // Few distinct keys so operations collide; short, 16-byte and long
            // keys with shared prefixes and zero bytes.
            prop_oneof![
                proptest::collection::vec(prop_oneof![Just(0u8), Just(b'a'), Just(b'b')], 0..4),
                (0u8..4).prop_map(|i| {
                    let mut k = b"0123456789abcde".to_vec();
                    k.push(i);
                    k
                }),
                (0u8..4).prop_map(|i| {
                    let mut k = b"a shared prefix longer than 16 bytes ".to_vec();
                    k.push(i);
                    k
                }),
            ]
        }

        fn an_entry() -> impl Strategy<Value = Entry> {
            (
                prop_oneof![Just(1u64), Just(5), Just(SEGMENT_LIMIT), Just(u64::MAX)],
                0u32..4,
                0u32..100,
                prop_oneof![Just(0u64), 1u64..50],
            )
                .prop_map(|(segment, offset, value_len, expiry)| Entry {
                    segment: SegmentId(segment),
                    offset,
                    value_len,
                    expiry,
                })
        }

        fn op() -> impl Strategy<Value = Op> {
            prop_oneof![
                6 => (key(), an_entry()).prop_map(|(k, e)| Op::Insert(k, e)),
                3 => key().prop_map(Op::Remove),
                1 => (0u64..60).prop_map(Op::Sweep),
                1 => (proptest::collection::vec(key(), 0..6), any::<bool>())
                    .prop_map(|(k, b)| Op::Relocate(k, b)),
                2 => (key(), any::<bool>()).prop_map(|(k, b)| Op::Range(k, b)),
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]
            #[test]
            fn keydir_behaves_like_an_ordered_map(ops in proptest::collection::vec(op(), 1..200)) {
                let mut kd = Keydir::default();
                let mut model: BTreeMap<Vec<u8>, Entry> = BTreeMap::new();
                for op in ops {
                    match op {
                        Op::Insert(k, e) => {
                            prop_assert_eq!(kd.insert(&k, e), model.insert(k, e));
                        }
                        Op::Remove(k) => {
                            prop_assert_eq!(kd.remove(&k), model.remove(&k));
                        }
                        Op::Sweep(now) => {
                            let before = model.len();
                            model.retain(|_, e| !e.is_expired(now));
                            prop_assert_eq!(kd.has_expired(now), before != model.len());
                            prop_assert_eq!(kd.sweep(now), before - model.len());
                        }
                        Op::Relocate(mut keys, matching) => {
                            keys.sort();
                            keys.dedup();
                            let moves: Vec<(Key, Entry, Entry)> = keys
                                .iter()
                                .map(|k| {
                                    let cur = model.get(k).copied().unwrap_or(entry(1, 0));
                                    let expected = if matching { cur } else { Entry { offset: cur.offset + 1, ..cur } };
                                    (Key::from_slice(k), expected, Entry { segment: SegmentId(77), offset: 3, ..cur })
                                })
                                .collect();
                            let mut want = 0;
                            for (k, expected, new) in &moves {
                                if model.get(&k[..]) == Some(expected) {
                                    model.insert(k.to_vec(), *new);
                                    want += 1;
                                }
                            }
                            let got = kd.relocate_sorted(moves.iter().map(|(k, o, n)| (k, o, *n)));
                            prop_assert_eq!(got, want);
                        }
                        Op::Range(k, excluded) => {
                            let b = if excluded {
                                Bound::Excluded(KeySlice::new(&k))
                            } else {
                                Bound::Included(KeySlice::new(&k))
                            };
                            let mb = if excluded { Bound::Excluded(k.clone()) } else { Bound::Included(k.clone()) };
                            let got: Vec<(Vec<u8>, Entry)> =
                                kd.range_from(b).map(|(k, e)| (k.to_vec(), e)).collect();
                            let want: Vec<(Vec<u8>, Entry)> = model
                                .range((mb, Bound::Unbounded))
                                .map(|(k, e)| (k.clone(), *e))
                                .collect();
                            prop_assert_eq!(got, want);
                        }
                    }
                }
                agrees(&kd, &model);
            }

            #[test]
            fn many_keys_split_and_merge_blocks(n in 1000usize..3000, keep in 1usize..20) {
                let mut kd = Keydir::default();
                let mut model = BTreeMap::new();
                for i in 0..n {
                    let k = format!("{:08}", (i * 7919) % n).into_bytes();
                    kd.insert(&k, entry(1, 0));
                    model.insert(k, entry(1, 0));
                }
                agrees(&kd, &model);
                for i in 0..n {
                    if i % keep != 0 {
                        let k = format!("{:08}", (i * 104_729) % n).into_bytes();
                        prop_assert_eq!(kd.remove(&k), model.remove(&k));
                    }
                }
                agrees(&kd, &model);
            }
        }
    }
}
