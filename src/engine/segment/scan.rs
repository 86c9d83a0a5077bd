//! Walking the records of a segment, honouring batch framing.
//!
//! Only puts and tombstones are handed to the visitor; a batch's records are
//! handed over only once every one of them decoded. What happens at damage
//! depends on the segment:
//! - [`OnDamage::Stop`] (`wal.log`): the first bad record ends the scan; `end` is
//!   where the good prefix stops, so the caller truncates there. An incomplete
//!   batch ends the good prefix at its marker.
//! - [`OnDamage::Resync`] (sealed): the bad record is counted and skipped by
//!   searching forward for the next offset that decodes; a damaged batch is
//!   discarded whole.
//!
//! In both, zeros from the first undecodable offset to the end are the unused,
//! preallocated rest of the file — the end of the records, not damage (no record
//! starts with a zero checksum and a zero kind byte).

use crate::engine::format::DecodeError;
use crate::engine::format::record::{self, MIN_RECORD_LEN, RecordKind, RecordRef};

/// What a scan does at a record that does not decode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnDamage {
    /// Stop: the rest is a torn tail.
    Stop,
    /// Count it and continue at the next record that decodes.
    Resync,
}

/// What a scan found.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ScanSummary {
    /// Offset just past the last record (or complete batch) accepted.
    pub end: usize,
    /// Records handed to the visitor.
    pub records: u64,
    /// Damaged spots skipped (Resync) or found (Stop: at most 1).
    pub corrupt: u64,
    /// Batches dropped because not all their records were intact.
    pub batches_discarded: u64,
    /// True when everything after `end` is zeros (or nothing): no torn bytes.
    pub clean_end: bool,
}

/// Scans `bytes` from `start`, calling `visit(offset, record)` for every put and
/// tombstone accepted, in order.
pub fn scan<'a>(
    bytes: &'a [u8],
    start: usize,
    on_damage: OnDamage,
    mut visit: impl FnMut(u32, RecordRef<'a>),
) -> ScanSummary {
    let mut s = ScanSummary {
        end: start,
        clean_end: true,
        ..ScanSummary::default()
    };
    let mut at = start;
    let mut batch: Vec<(u32, RecordRef<'a>)> = Vec::new();
    while at < bytes.len() {
        let rec = match record::decode(&bytes[at..]) {
            Ok(rec) => rec,
            Err(_) if all_zero(&bytes[at..]) => return s,
            Err(err) => {
                s.clean_end = false;
                if matches!(err, DecodeError::Truncated { .. }) && on_damage == OnDamage::Stop {
                    // Torn tail: nothing after it can be whole.
                } else {
                    s.corrupt += 1;
                }
                match on_damage {
                    OnDamage::Stop => return s,
                    OnDamage::Resync => match resync(bytes, at + 1) {
                        Some(next) => {
                            at = next;
                            continue;
                        }
                        None => return s,
                    },
                }
            }
        };
        let Ok(offset) = u32::try_from(at) else {
            // Segments are bounded far below 4 GiB; a larger file is not ours.
            s.corrupt += 1;
            return s;
        };
        let len = rec.encoded_len();
        match rec.kind {
            RecordKind::Put | RecordKind::Tombstone => {
                visit(offset, rec);
                s.records += 1;
                at += len;
                s.end = at;
            }
            RecordKind::BatchMarker => {
                let marker_at = at;
                let count = rec.batch_count().unwrap_or(0);
                at += len;
                batch.clear();
                let mut whole = rec.batch_count().is_some();
                while whole && batch.len() < count as usize {
                    match bytes.get(at..).map(record::decode) {
                        Some(Ok(r)) if r.kind != RecordKind::BatchMarker => {
                            let Ok(off) = u32::try_from(at) else {
                                whole = false;
                                break;
                            };
                            batch.push((off, r));
                            at += r.encoded_len();
                        }
                        _ => whole = false,
                    }
                }
                if whole {
                    for (off, r) in batch.drain(..) {
                        visit(off, r);
                        s.records += 1;
                    }
                    s.end = at;
                    continue;
                }
                s.batches_discarded += 1;
                s.clean_end = false;
                match on_damage {
                    OnDamage::Stop => {
                        s.end = marker_at;
                        return s;
                    }
                    OnDamage::Resync => {
                        s.corrupt += 1;
                        // Resume at the first decodable record after the damage,
                        // which is past the batch's intact records.
                        match resync(bytes, at + 1) {
                            Some(next) => at = next,
                            None => return s,
                        }
                    }
                }
            }
        }
    }
    s
}

/// True when every byte is zero (word at a time: tails run to megabytes).
pub fn all_zero(bytes: &[u8]) -> bool {
    let mut words = bytes.chunks_exact(8);
    words.all(|w| w == [0u8; 8]) && words.remainder().iter().all(|&b| b == 0)
}

fn resync(bytes: &[u8], from: usize) -> Option<usize> {
    (from..bytes.len().saturating_sub(MIN_RECORD_LEN - 1))
        .find(|&at| record::decode(&bytes[at..]).is_ok())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::format::record::{encode, encode_batch_marker};

    fn keys(bytes: &[u8], mode: OnDamage) -> (Vec<Vec<u8>>, ScanSummary) {
        let mut seen = Vec::new();
        let s = scan(bytes, 0, mode, |_, r| seen.push(r.key.to_vec()));
        (seen, s)
    }

    fn put(buf: &mut Vec<u8>, k: &[u8]) {
        encode(buf, RecordKind::Put, 0, k, b"value");
    }

    #[test]
    fn torn_tail_stops_at_the_last_whole_record() {
        let mut buf = Vec::new();
        put(&mut buf, b"a");
        let good = buf.len();
        put(&mut buf, b"b");
        buf.truncate(buf.len() - 3);
        let (seen, s) = keys(&buf, OnDamage::Stop);
        assert_eq!(seen, vec![b"a".to_vec()]);
        assert_eq!(s.end, good);
        assert_eq!(s.corrupt, 0);
    }

    #[test]
    fn incomplete_batch_is_discarded_whole() {
        let mut buf = Vec::new();
        put(&mut buf, b"a");
        let good = buf.len();
        encode_batch_marker(&mut buf, 3);
        put(&mut buf, b"b1");
        put(&mut buf, b"b2");
        let (seen, s) = keys(&buf, OnDamage::Stop);
        assert_eq!(seen, vec![b"a".to_vec()]);
        assert_eq!(s.end, good);
        assert_eq!(s.batches_discarded, 1);
    }

    #[test]
    fn zeros_after_the_records_are_the_end_not_damage() {
        let mut buf = Vec::new();
        put(&mut buf, b"a");
        let good = buf.len();
        buf.resize(good + 4096, 0);
        for mode in [OnDamage::Stop, OnDamage::Resync] {
            let (seen, s) = keys(&buf, mode);
            assert_eq!(seen, vec![b"a".to_vec()]);
            assert_eq!((s.end, s.corrupt, s.clean_end), (good, 0, true), "{mode:?}");
        }
        // A torn record in front of the zeros is not clean.
        let mut torn = buf.clone();
        torn[good + 3] = 7;
        let (_, s) = keys(&torn, OnDamage::Stop);
        assert_eq!((s.end, s.clean_end), (good, false));
    }

    #[test]
    fn complete_batch_is_accepted() {
        let mut buf = Vec::new();
        encode_batch_marker(&mut buf, 2);
        put(&mut buf, b"b1");
        put(&mut buf, b"b2");
        let (seen, s) = keys(&buf, OnDamage::Stop);
        assert_eq!(seen.len(), 2);
        assert_eq!(s.end, buf.len());
    }

    #[test]
    fn resync_skips_a_flipped_record_and_keeps_the_rest() {
        let mut buf = Vec::new();
        put(&mut buf, b"a");
        let bad_at = buf.len() + 9;
        put(&mut buf, b"b");
        put(&mut buf, b"c");
        buf[bad_at] ^= 0xff;
        let (seen, s) = keys(&buf, OnDamage::Resync);
        assert_eq!(seen, vec![b"a".to_vec(), b"c".to_vec()]);
        assert_eq!(s.corrupt, 1);
    }

    #[test]
    fn resync_discards_a_damaged_batch_whole() {
        let mut buf = Vec::new();
        encode_batch_marker(&mut buf, 2);
        put(&mut buf, b"b1");
        let bad_at = buf.len() + 9;
        put(&mut buf, b"b2");
        put(&mut buf, b"after");
        buf[bad_at] ^= 0xff;
        let (seen, s) = keys(&buf, OnDamage::Resync);
        assert_eq!(seen, vec![b"after".to_vec()]);
        assert_eq!(s.batches_discarded, 1);
    }
}
