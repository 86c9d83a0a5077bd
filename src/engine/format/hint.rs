//! The hint file: the index of one sealed segment, so start-up reads keys and
//! locations instead of values.
//!
//! ```text
//! offset  size  field
//! 0       20    file header (kind = hint, segment id of the segment it indexes);
//!               its byte 11 holds the hint flags (bit 0: SORTED)
//! 20      8     length of the segment file it describes (u64 LE)
//! 28      4     entry count (u32 LE)
//! 32      ...   entries, in segment order, or when SORTED in strictly
//!               ascending key order with one entry (the newest) per key:
//!                 1  kind (1 put, 2 tombstone)
//!                 8  expiry ms (u64 LE, 0 = never)
//!                 4  record offset in the segment (u32 LE)
//!                 4  key length (u32 LE)
//!                 4  value length (u32 LE)
//!                 k  key
//! end-4   4     crc32 of every byte before it
//! ```
//!
//! A hint is trusted only whole: magic, version, segment id, segment length and
//! the trailing checksum must all match, otherwise recovery scans the segment.
//!
//! SORTED lets open merge the hints of all segments as sorted runs (no sort,
//! no per-key tree descent). It needs no version bump: a reader that ignores
//! the flag (byte 11 was always written as zero and never checked) replays the
//! entries in file order, which is still right because a sorted hint has one
//! entry per key. Unflagged hints (older builds, compaction outputs, whose
//! records are in file order) are sorted in memory at open. A flag whose
//! promise does not hold is a damaged hint: rejected whole, segment scanned.

#![allow(clippy::indexing_slicing)] // Bounds are checked first; the owner may convert.

use super::record::{KEY_LEN_LIMIT, RecordKind};
use super::{DecodeError, FILE_HEADER_LEN, FileHeader, FileKind, read_u32, read_u64};
use crate::engine::SegmentId;

const ENTRY_FIXED_LEN: usize = 21;
const PREAMBLE_LEN: usize = FILE_HEADER_LEN + 12;
/// Where the flags live: the header's spare byte.
const FLAGS_AT: usize = 11;
/// Entries are in strictly ascending key order.
const SORTED: u8 = 1;

/// One hint entry: where a record of a key lives and what it says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HintEntry<'a> {
    /// Put or tombstone (batch markers are not indexed).
    pub kind: RecordKind,
    /// Absolute expiry in ms; 0 = never.
    pub expiry: u64,
    /// Offset of the record's first byte in the segment.
    pub offset: u32,
    /// Length of the record's value.
    pub value_len: u32,
    /// The key.
    pub key: &'a [u8],
}

/// Builds a hint file in memory.
#[derive(Debug)]
pub struct HintWriter {
    buf: Vec<u8>,
    count: u32,
    /// Where the last entry's key starts in `buf`, to check SORTED's promise.
    last_key: Option<usize>,
    sorted: bool,
}

impl HintWriter {
    /// Starts the hint of `segment`, whose file is `segment_len` bytes long.
    pub fn new(segment: SegmentId, segment_len: u64) -> HintWriter {
        HintWriter {
            // The count is filled in by `finish`.
            buf: preamble(4096, segment, segment_len, 0),
            count: 0,
            last_key: None,
            sorted: false,
        }
    }

    /// The hint of a segment from its entries in segment order: sorted by key,
    /// keeping the newest (last) entry of each key, flagged SORTED.
    pub fn sorted(segment: SegmentId, segment_len: u64, entries: Vec<HintEntry<'_>>) -> Vec<u8> {
        let mut w = HintWriter::new(segment, segment_len);
        w.sorted = true;
        for e in sort_newest(entries) {
            w.push(&e);
        }
        w.finish()
    }

    /// Adds one entry.
    pub fn push(&mut self, e: &HintEntry<'_>) {
        if self.sorted {
            let prev = self.last_key.and_then(|at| self.buf.get(at..));
            if prev.is_some_and(|p| p >= e.key) {
                // Never happens through `sorted`; a hint must not lie, though.
                self.sorted = false;
            }
            self.last_key = Some(self.buf.len() + ENTRY_FIXED_LEN);
        }
        encode_entry(&mut self.buf, e);
        self.count += 1;
    }

    /// Finishes the file: fills in the count and appends the checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[FILE_HEADER_LEN + 8..PREAMBLE_LEN].copy_from_slice(&self.count.to_le_bytes());
        if self.sorted {
            self.buf[FLAGS_AT] |= SORTED;
        }
        let crc = crc32fast::hash(&self.buf);
        self.buf.extend_from_slice(&crc.to_le_bytes());
        self.buf
    }
}

/// A buffer of `capacity` holding the file header, segment length and count.
fn preamble(capacity: usize, segment: SegmentId, segment_len: u64, count: u32) -> Vec<u8> {
    let mut buf = Vec::with_capacity(capacity);
    FileHeader {
        kind: FileKind::Hint,
        segment,
    }
    .encode(&mut buf);
    buf.extend_from_slice(&segment_len.to_le_bytes());
    buf.extend_from_slice(&count.to_le_bytes());
    buf
}

fn encode_entry(buf: &mut Vec<u8>, e: &HintEntry<'_>) {
    // One copy of the fixed part (built in registers) and one of the key:
    // open re-encodes every entry of `wal.log`, and five small copies each were
    // a tenth of its time.
    let mut fixed = [0u8; ENTRY_FIXED_LEN];
    fixed[0] = e.kind as u8;
    fixed[1..9].copy_from_slice(&e.expiry.to_le_bytes());
    fixed[9..13].copy_from_slice(&e.offset.to_le_bytes());
    fixed[13..17].copy_from_slice(&super::record::len_u32(e.key.len()).to_le_bytes());
    fixed[17..21].copy_from_slice(&e.value_len.to_le_bytes());
    buf.reserve(ENTRY_FIXED_LEN + e.key.len());
    buf.extend_from_slice(&fixed);
    buf.extend_from_slice(e.key);
}

/// A hint file whose checksum and header have been verified.
#[derive(Debug)]
pub struct Hint<'a> {
    /// The segment it indexes.
    pub segment: SegmentId,
    /// The length of the segment file it was written for.
    pub segment_len: u64,
    count: u32,
    sorted: bool,
    entries: &'a [u8],
}

impl<'a> Hint<'a> {
    /// Verifies a whole hint file.
    pub fn parse(bytes: &'a [u8]) -> Result<Hint<'a>, DecodeError> {
        let header = FileHeader::decode(bytes)?;
        if header.kind != FileKind::Hint {
            return Err(DecodeError::Invalid {
                field: "file kind",
                value: header.kind as u64,
            });
        }
        if bytes.len() < PREAMBLE_LEN + 4 {
            return Err(DecodeError::Truncated {
                needed: PREAMBLE_LEN + 4,
                available: bytes.len(),
            });
        }
        let body_end = bytes.len() - 4;
        let stored = read_u32(bytes, body_end);
        let computed = crc32fast::hash(&bytes[..body_end]);
        if stored != computed {
            return Err(DecodeError::Checksum { stored, computed });
        }
        let flags = bytes[FLAGS_AT];
        if flags & !SORTED != 0 {
            return Err(DecodeError::Invalid {
                field: "hint flags",
                value: u64::from(flags),
            });
        }
        Ok(Hint {
            segment: header.segment,
            segment_len: read_u64(bytes, FILE_HEADER_LEN),
            count: read_u32(bytes, FILE_HEADER_LEN + 8),
            sorted: flags & SORTED != 0,
            entries: &bytes[PREAMBLE_LEN..body_end],
        })
    }

    /// Number of entries the file claims.
    #[cfg(test)]
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when the hint indexes no record.
    #[allow(dead_code, reason = "unused since the module went private")]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// True when the file is flagged SORTED (checked only by [`SortedRun::load`]).
    pub fn is_sorted(&self) -> bool {
        self.sorted
    }

    /// Visits every entry in order. Stops with an error at the first entry that
    /// does not decode (possible only if a writer was buggy: the checksum held).
    pub fn for_each(&self, mut visit: impl FnMut(HintEntry<'a>)) -> Result<(), DecodeError> {
        let mut rest = self.entries;
        for _ in 0..self.count {
            let (e, used) = decode_entry(rest)?;
            visit(e);
            rest = &rest[used..];
        }
        if rest.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::Invalid {
                field: "hint trailing bytes",
                value: rest.len() as u64,
            })
        }
    }
}

/// Decodes the entry at the start of `rest`; returns it and its length.
fn decode_entry(rest: &[u8]) -> Result<(HintEntry<'_>, usize), DecodeError> {
    if rest.len() < ENTRY_FIXED_LEN {
        return Err(DecodeError::Truncated {
            needed: ENTRY_FIXED_LEN,
            available: rest.len(),
        });
    }
    let kind = match rest[0] {
        1 => RecordKind::Put,
        2 => RecordKind::Tombstone,
        other => {
            return Err(DecodeError::Invalid {
                field: "hint entry kind",
                value: u64::from(other),
            });
        }
    };
    let key_len = read_u32(rest, 13);
    if key_len > KEY_LEN_LIMIT || (key_len as usize) > rest.len() - ENTRY_FIXED_LEN {
        return Err(DecodeError::Invalid {
            field: "hint key length",
            value: u64::from(key_len),
        });
    }
    let key_end = ENTRY_FIXED_LEN + key_len as usize;
    let e = HintEntry {
        kind,
        expiry: read_u64(rest, 1),
        offset: read_u32(rest, 9),
        value_len: read_u32(rest, 17),
        key: &rest[ENTRY_FIXED_LEN..key_end],
    };
    Ok((e, key_end))
}

/// `entries` (in segment order) sorted by key, keeping the last of each key.
///
/// Sorts 24-byte (leading key words, index) triples rather than the entries:
/// for keys up to 16 bytes a comparison is two integer compares with no
/// pointer to follow. The index breaks ties, so the order is stable.
fn sort_newest(entries: Vec<HintEntry<'_>>) -> Vec<HintEntry<'_>> {
    let Ok(n) = u32::try_from(entries.len()) else {
        // Beyond any segment (a hint holds at most 2^32 entries): plain sort.
        let mut entries = entries;
        entries.sort_by(|a, b| a.key.cmp(b.key));
        return dedup_last(entries.into_iter());
    };
    let mut order: Vec<((u64, u64), u32)> = (0..n)
        .zip(&entries)
        .map(|(i, e)| (crate::engine::key::words(e.key), i))
        .collect();
    // The index makes every element distinct, so an unstable sort (ipnsort)
    // gives the stable order, faster on the random order of overwrites; it
    // still finds a run already in order (a segment of key-ordered writes)
    // in one pass.
    order.sort_unstable_by(|a, b| {
        a.0.cmp(&b.0)
            .then_with(|| {
                crate::engine::key::cmp_past_words(
                    entries[a.1 as usize].key,
                    entries[b.1 as usize].key,
                )
            })
            .then(a.1.cmp(&b.1))
    });
    // Newest of each key: the last of a group of equal keys. Equal leading
    // words are rare (overwrites in one segment), so most entries cost one
    // integer compare here and no memcmp.
    let mut out: Vec<HintEntry<'_>> = Vec::with_capacity(order.len());
    let mut last_words = None;
    for &(w, i) in &order {
        let e = entries[i as usize];
        match out.last_mut() {
            Some(last)
                if last_words == Some(w)
                    && crate::engine::key::cmp_past_words(last.key, e.key).is_eq() =>
            {
                *last = e
            }
            _ => out.push(e),
        }
        last_words = Some(w);
    }
    out
}

/// Entries sorted by key (equal keys oldest first), newest of each key only.
fn dedup_last<'a>(sorted: impl Iterator<Item = HintEntry<'a>>) -> Vec<HintEntry<'a>> {
    let mut out: Vec<HintEntry<'a>> = Vec::with_capacity(sorted.size_hint().0);
    for e in sorted {
        match out.last_mut() {
            Some(last) if last.key == e.key => *last = e,
            _ => out.push(e),
        }
    }
    out
}

/// The entries of one segment in strictly ascending key order, one (the
/// newest) per key, encoded as in a hint file: what open merges. It owns its
/// bytes, so a run read from a SORTED hint file is that file's buffer.
#[derive(Debug)]
pub struct SortedRun {
    bytes: Vec<u8>,
    start: usize,
    end: usize,
    #[cfg_attr(not(test), allow(dead_code, reason = "read by the unit tests' checks"))]
    len: u32,
}

impl SortedRun {
    /// A run from entries in segment order (a scan, or an unflagged hint).
    pub fn from_entries(entries: Vec<HintEntry<'_>>) -> SortedRun {
        let sorted = sort_newest(entries);
        let mut bytes = Vec::with_capacity(
            sorted
                .iter()
                .map(|e| ENTRY_FIXED_LEN + e.key.len())
                .sum::<usize>(),
        );
        for e in &sorted {
            encode_entry(&mut bytes, e);
        }
        SortedRun {
            end: bytes.len(),
            bytes,
            start: 0,
            len: super::record::len_u32(sorted.len()),
        }
    }

    /// Verifies a whole hint file and makes it a run: in place when it is
    /// SORTED (its order checked entry by entry), else sorted in memory.
    /// Returns the hint's segment id and segment length for the caller to
    /// match, and its entry count.
    pub fn load(bytes: Vec<u8>) -> Result<(SegmentId, u64, u32, SortedRun), DecodeError> {
        let hint = Hint::parse(&bytes)?;
        let (segment, segment_len, count) = (hint.segment, hint.segment_len, hint.count);
        if !hint.is_sorted() {
            let mut entries = Vec::with_capacity(count as usize);
            hint.for_each(|e| entries.push(e))?;
            return Ok((
                segment,
                segment_len,
                count,
                SortedRun::from_entries(entries),
            ));
        }
        let mut prev: Option<&[u8]> = None;
        let mut out_of_order = false;
        hint.for_each(|e| {
            out_of_order |= prev.is_some_and(|p| p >= e.key);
            prev = Some(e.key);
        })?;
        if out_of_order {
            return Err(DecodeError::Invalid {
                field: "sorted hint key order",
                value: 0,
            });
        }
        let (start, end) = (PREAMBLE_LEN, bytes.len() - 4);
        Ok((
            segment,
            segment_len,
            count,
            SortedRun {
                bytes,
                start,
                end,
                len: count,
            },
        ))
    }

    /// Number of entries.
    #[cfg(test)]
    #[allow(clippy::len_without_is_empty, reason = "a test-only count")]
    pub fn len(&self) -> u32 {
        self.len
    }

    /// The entries in key order.
    pub fn iter(&self) -> RunIter<'_> {
        RunIter {
            rest: self.bytes.get(self.start..self.end).unwrap_or(&[]),
        }
    }
}

/// Iterator over a [`SortedRun`].
#[derive(Debug, Clone)]
pub struct RunIter<'a> {
    rest: &'a [u8],
}

impl<'a> Iterator for RunIter<'a> {
    type Item = HintEntry<'a>;

    fn next(&mut self) -> Option<HintEntry<'a>> {
        // A run's bytes were decoded once already (verified or encoded here),
        // so an error cannot happen; it would end the run, never panic.
        let (e, used) = decode_entry(self.rest).ok()?;
        self.rest = &self.rest[used..];
        Some(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Vec<u8> {
        let mut w = HintWriter::new(SegmentId(7), 1000);
        w.push(&HintEntry {
            kind: RecordKind::Put,
            expiry: 5,
            offset: 20,
            value_len: 3,
            key: b"alpha",
        });
        w.push(&HintEntry {
            kind: RecordKind::Tombstone,
            expiry: 0,
            offset: 49,
            value_len: 0,
            key: b"beta",
        });
        w.finish()
    }

    #[test]
    fn hint_round_trips() {
        let bytes = sample();
        let hint = Hint::parse(&bytes).unwrap();
        assert_eq!(hint.segment, SegmentId(7));
        assert_eq!(hint.segment_len, 1000);
        let mut seen = Vec::new();
        hint.for_each(|e| seen.push((e.kind, e.key.to_vec(), e.offset)))
            .unwrap();
        assert_eq!(
            seen,
            vec![
                (RecordKind::Put, b"alpha".to_vec(), 20),
                (RecordKind::Tombstone, b"beta".to_vec(), 49)
            ]
        );
    }

    #[test]
    fn any_damage_to_a_hint_rejects_it_whole() {
        let bytes = sample();
        for i in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[i] ^= 1;
            assert!(Hint::parse(&bad).is_err(), "flip at {i} accepted");
        }
        assert!(Hint::parse(&bytes[..bytes.len() - 1]).is_err());
    }

    fn put(key: &[u8], offset: u32) -> HintEntry<'_> {
        HintEntry {
            kind: RecordKind::Put,
            expiry: 0,
            offset,
            value_len: 1,
            key,
        }
    }

    fn keys_and_offsets(run: &SortedRun) -> Vec<(Vec<u8>, u32)> {
        run.iter().map(|e| (e.key.to_vec(), e.offset)).collect()
    }

    #[test]
    fn a_sorted_hint_keeps_the_newest_entry_of_each_key_in_key_order() {
        let entries = vec![put(b"b", 20), put(b"a", 30), put(b"b", 40), put(b"c", 50)];
        let bytes = HintWriter::sorted(SegmentId(2), 99, entries);
        let hint = Hint::parse(&bytes).unwrap();
        assert!(hint.is_sorted());
        assert_eq!(hint.len(), 3);
        let (segment, len, count, run) = SortedRun::load(bytes).unwrap();
        assert_eq!((segment, len, count), (SegmentId(2), 99, 3));
        assert_eq!(
            keys_and_offsets(&run),
            vec![
                (b"a".to_vec(), 30),
                (b"b".to_vec(), 40),
                (b"c".to_vec(), 50)
            ]
        );
    }

    #[test]
    fn an_unflagged_hint_of_an_older_build_is_sorted_on_load() {
        // What builds before SORTED wrote: segment order, a key twice, flags 0.
        let mut w = HintWriter::new(SegmentId(4), 500);
        for e in [put(b"zz", 20), put(b"aa", 31), put(b"zz", 45)] {
            w.push(&e);
        }
        let bytes = w.finish();
        assert_eq!(bytes[FLAGS_AT], 0);
        assert!(!Hint::parse(&bytes).unwrap().is_sorted());
        let (_, _, count, run) = SortedRun::load(bytes).unwrap();
        assert_eq!(count, 3);
        assert_eq!(
            keys_and_offsets(&run),
            vec![(b"aa".to_vec(), 31), (b"zz".to_vec(), 45)]
        );
    }

    /// `bytes` with byte `at` set to `value` and the checksum made right again.
    fn patched(mut bytes: Vec<u8>, at: usize, value: u8) -> Vec<u8> {
        bytes[at] = value;
        let end = bytes.len() - 4;
        let crc = crc32fast::hash(&bytes[..end]);
        bytes[end..].copy_from_slice(&crc.to_le_bytes());
        bytes
    }

    #[test]
    fn a_sorted_flag_that_lies_or_an_unknown_flag_rejects_the_hint() {
        let mut w = HintWriter::new(SegmentId(4), 500);
        for e in [put(b"b", 20), put(b"a", 31)] {
            w.push(&e);
        }
        let unsorted = w.finish();
        assert!(SortedRun::load(patched(unsorted.clone(), FLAGS_AT, SORTED)).is_err());
        let dup = HintWriter::sorted(SegmentId(4), 500, vec![put(b"a", 20)]);
        assert!(SortedRun::load(patched(dup, FLAGS_AT, SORTED)).is_ok());
        assert!(SortedRun::load(patched(unsorted, FLAGS_AT, 2)).is_err());
    }

    #[test]
    fn a_writer_pushed_out_of_order_does_not_claim_sorted() {
        let mut w = HintWriter::new(SegmentId(4), 500);
        w.sorted = true;
        for e in [put(b"a", 20), put(b"a", 31)] {
            w.push(&e);
        }
        assert!(!Hint::parse(&w.finish()).unwrap().is_sorted());
    }

    #[test]
    fn a_run_from_scanned_entries_matches_the_run_of_its_sorted_hint() {
        let keys: Vec<Vec<u8>> = (0..3000u32)
            .map(|i| format!("k{}", (i * 7) % 1000).into_bytes())
            .collect();
        let entries: Vec<HintEntry<'_>> = keys
            .iter()
            .enumerate()
            .map(|(i, k)| put(k, u32::try_from(i).unwrap()))
            .collect();
        let from_scan = SortedRun::from_entries(entries.clone());
        let (_, _, _, from_file) =
            SortedRun::load(HintWriter::sorted(SegmentId(1), 1, entries)).unwrap();
        assert_eq!(from_scan.len(), 1000);
        assert_eq!(keys_and_offsets(&from_scan), keys_and_offsets(&from_file));
        let got = keys_and_offsets(&from_scan);
        assert!(got.windows(2).all(|w| w[0].0 < w[1].0));
        // The newest of the three records of each key.
        assert!(got.iter().all(|(_, offset)| *offset >= 2000));
    }
}
