//! Ordered iteration over live keys *and values*: [`Engine::range`] and
//! [`Engine::prefix`](super::Engine::prefix).
//!
//! The keydir is read in chunks of [`CHUNK`] entries under its read lock, which is
//! released before anything is handed to the caller: a slow consumer never delays
//! writers by more than one chunk. Each pair borrows its key and value from the
//! segment's mapping (or the memtable), after the record's checksum is verified —
//! no copy unless the caller asks for one ([`KvPair::into_parts`]). A pair keeps
//! its segment mapped while it lives, even if compaction retires the file.
//!
//! The iterator is a snapshot per chunk, not of the whole range: a key written
//! after its chunk was read is not seen, one deleted after is still yielded.
//!
//! [`Engine::range`]: super::Engine::range

use std::collections::VecDeque;
use std::ops::{Bound, Range, RangeBounds};
use std::sync::Arc;

use super::Shared;
use super::error::Result;
use super::format::record::encoded_len;
use super::key::{cmp_keys, same_key};
use super::keydir::{Entry, Key, KeySlice, prefetch_bytes};
use super::segment::{SegmentRef, SegmentView, record_at};

/// Keydir entries read per lock hold.
pub const CHUNK: usize = 256;

/// One live key and its value.
#[derive(Debug, Clone)]
pub struct KvPair(Pair);

#[derive(Debug, Clone)]
enum Pair {
    /// Borrowed from a mapped segment or the memtable.
    Mapped {
        segment: SegmentRef,
        key: Range<usize>,
        value: Range<usize>,
    },
    /// Read again after its segment was retired mid-chunk.
    Owned { key: Vec<u8>, value: Vec<u8> },
}

impl KvPair {
    /// The key.
    pub fn key(&self) -> &[u8] {
        match &self.0 {
            Pair::Mapped { segment, key, .. } => &segment.view().bytes()[key.clone()],
            Pair::Owned { key, .. } => key,
        }
    }

    /// The value.
    pub fn value(&self) -> &[u8] {
        match &self.0 {
            Pair::Mapped { segment, value, .. } => &segment.view().bytes()[value.clone()],
            Pair::Owned { value, .. } => value,
        }
    }

    /// Key and value, copied out.
    pub fn into_parts(self) -> (Vec<u8>, Vec<u8>) {
        match self.0 {
            Pair::Owned { key, value } => (key, value),
            Pair::Mapped { .. } => (self.key().to_vec(), self.value().to_vec()),
        }
    }
}

/// Live `(key, value)` pairs in key order; an error (a damaged record) is
/// yielded in place of its pair and the iteration goes on.
#[derive(Debug)]
pub struct Iter {
    shared: Arc<Shared>,
    /// Where the next chunk starts.
    from: Bound<Key>,
    to: Bound<Vec<u8>>,
    ready: VecDeque<Result<KvPair>>,
    done: bool,
}

/// Owned bounds of a caller's range.
pub(crate) fn bounds<K: AsRef<[u8]>>(range: impl RangeBounds<K>) -> (Bound<Key>, Bound<Vec<u8>>) {
    let from = match range.start_bound() {
        Bound::Included(k) => Bound::Included(Key::from_slice(k.as_ref())),
        Bound::Excluded(k) => Bound::Excluded(Key::from_slice(k.as_ref())),
        Bound::Unbounded => Bound::Unbounded,
    };
    let to = match range.end_bound() {
        Bound::Included(k) => Bound::Included(k.as_ref().to_vec()),
        Bound::Excluded(k) => Bound::Excluded(k.as_ref().to_vec()),
        Bound::Unbounded => Bound::Unbounded,
    };
    (from, to)
}

/// The bounds of every key starting with `prefix`: exactly those keys, so
/// the iterator need not check the prefix of each.
pub(crate) fn prefix_bounds(prefix: &[u8]) -> (Bound<Key>, Bound<Vec<u8>>) {
    let from = Bound::Included(Key::from_slice(prefix));
    // The first key past the prefix: drop trailing 0xff bytes, bump the last.
    let mut end = prefix.to_vec();
    while end.last() == Some(&0xff) {
        end.pop();
    }
    let to = match end.last_mut() {
        Some(b) => {
            *b += 1;
            Bound::Excluded(end)
        }
        None => Bound::Unbounded,
    };
    (from, to)
}

impl Iter {
    pub(crate) fn new(shared: Arc<Shared>, (from, to): (Bound<Key>, Bound<Vec<u8>>)) -> Iter {
        Iter {
            shared,
            from,
            to,
            ready: VecDeque::new(),
            done: false,
        }
    }

    fn before_end(&self, key: &[u8]) -> bool {
        match &self.to {
            Bound::Included(k) => cmp_keys(key, k).is_le(),
            Bound::Excluded(k) => cmp_keys(key, k).is_lt(),
            Bound::Unbounded => true,
        }
    }

    /// Reads the next chunk of entries, then resolves them to pairs.
    fn fill(&mut self) -> Result<()> {
        let now = self.shared.opts.clock.now_ms();
        let mut entries: Vec<(Key, Entry)> = Vec::with_capacity(CHUNK);
        {
            let kd = self.shared.keydir_read()?;
            let from = match &self.from {
                Bound::Included(k) => Bound::Included(KeySlice::new(k)),
                Bound::Excluded(k) => Bound::Excluded(KeySlice::new(k)),
                Bound::Unbounded => Bound::Unbounded,
            };
            for (k, e) in kd.range_from(from) {
                if !self.before_end(k) {
                    self.done = true;
                    break;
                }
                if e.is_expired(now) {
                    continue;
                }
                entries.push((Key::from_slice(k), e));
                if entries.len() == CHUNK {
                    break;
                }
            }
        }
        match entries.last() {
            Some((k, _)) if entries.len() == CHUNK => self.from = Bound::Excluded(k.clone()),
            _ => self.done = true,
        }
        let set = self.shared.segments_read()?;
        let mut cached: Option<(super::SegmentId, SegmentView<'_>)> = None;
        // A chunk's records lie scattered over the log (key order is not
        // write order), so a scan with values waits on a cache miss per
        // record line. This pass asks for every line of every record of the
        // chunk without waiting for any, which the CPU overlaps; the decode
        // below then finds each record in cache.
        for (key, e) in &entries {
            if cached.as_ref().is_none_or(|(id, _)| *id != e.segment) {
                cached = set.view(e.segment).map(|s| (e.segment, s));
            }
            if let Some((_, segment)) = &cached {
                let len = encoded_len(key.len(), e.value_len as usize, e.expiry);
                let start = e.offset as usize;
                if let Some(record) = segment.bytes().get(start..start + len) {
                    prefetch_bytes(record);
                }
            }
        }
        let mut again = Vec::new();
        for (key, e) in entries {
            if cached.as_ref().is_none_or(|(id, _)| *id != e.segment) {
                cached = set.view(e.segment).map(|s| (e.segment, s));
            }
            let Some((_, segment)) = &cached else {
                // Retired by a compaction since the keydir was read: look again.
                again.push(key);
                continue;
            };
            self.ready.push_back(pair(*segment, &key, &e));
        }
        drop(set);
        for key in again {
            if let Some(value) = self.shared.read(&key, Some(now)).transpose() {
                self.ready.push_back(value.map(|value| {
                    KvPair(Pair::Owned {
                        key: key.to_vec(),
                        value,
                    })
                }));
            }
        }
        Ok(())
    }
}

/// The pair of `key` at `e` in `segment`, checksum and key verified.
fn pair(segment: SegmentView<'_>, key: &[u8], e: &Entry) -> Result<KvPair> {
    let bytes = segment.bytes();
    let rec = record_at(e.segment, bytes, e.offset)?;
    if !same_key(rec.key, key) {
        return Err(super::segment::corrupt(
            e.segment,
            e.offset,
            super::format::DecodeError::Invalid {
                field: "record key",
                value: rec.key.len() as u64,
            },
        ));
    }
    let base = bytes.as_ptr() as usize;
    let k = rec.key.as_ptr() as usize - base;
    let v = rec.value.as_ptr() as usize - base;
    Ok(KvPair(Pair::Mapped {
        segment: segment.to_ref(),
        key: k..k + rec.key.len(),
        value: v..v + rec.value.len(),
    }))
}

impl Iterator for Iter {
    type Item = Result<KvPair>;

    fn next(&mut self) -> Option<Result<KvPair>> {
        loop {
            if let Some(item) = self.ready.pop_front() {
                return Some(item);
            }
            if self.done {
                return None;
            }
            if let Err(e) = self.fill() {
                self.done = true;
                return Some(Err(e));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn within(key: &[u8], (from, to): &(Bound<Key>, Bound<Vec<u8>>)) -> bool {
        let above = match from {
            Bound::Included(k) => key >= &k[..],
            Bound::Excluded(k) => key > &k[..],
            Bound::Unbounded => true,
        };
        let below = match to {
            Bound::Included(k) => key <= k.as_slice(),
            Bound::Excluded(k) => key < k.as_slice(),
            Bound::Unbounded => true,
        };
        above && below
    }

    proptest! {
        // The iterator relies on this: it checks no key's prefix itself.
        #[test]
        fn prefix_bounds_hold_exactly_the_keys_with_the_prefix(
            prefix in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], 0..4),
            tail in proptest::collection::vec(prop_oneof![Just(0u8), Just(0xffu8), any::<u8>()], 0..6),
            under_prefix in any::<bool>(),
        ) {
            let key = if under_prefix { [&prefix[..], &tail[..]].concat() } else { tail };
            let bounds = prefix_bounds(&prefix);
            prop_assert_eq!(within(&key, &bounds), key.starts_with(&prefix));
        }
    }
}
