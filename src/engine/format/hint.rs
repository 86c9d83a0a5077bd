//! The hint file: the index of one sealed segment, so start-up reads keys and
//! locations instead of values.
//!
//! ```text
//! offset  size  field
//! 0       20    file header (kind = hint, segment id of the segment it indexes)
//! 20      8     length of the segment file it describes (u64 LE)
//! 28      4     entry count (u32 LE)
//! 32      ...   entries, in segment order:
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

#![allow(clippy::indexing_slicing)] // Bounds are checked first; the owner may convert.

use super::record::{KEY_LEN_LIMIT, RecordKind};
use super::{DecodeError, FILE_HEADER_LEN, FileHeader, FileKind, read_u32, read_u64};
use crate::engine::SegmentId;

const ENTRY_FIXED_LEN: usize = 21;
const PREAMBLE_LEN: usize = FILE_HEADER_LEN + 12;

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
}

impl HintWriter {
    /// Starts the hint of `segment`, whose file is `segment_len` bytes long.
    pub fn new(segment: SegmentId, segment_len: u64) -> HintWriter {
        HintWriter {
            // The count is filled in by `finish`.
            buf: preamble(4096, segment, segment_len, 0),
            count: 0,
        }
    }

    /// Adds one entry.
    pub fn push(&mut self, e: &HintEntry<'_>) {
        encode_entry(&mut self.buf, e);
        self.count += 1;
    }

    /// Finishes the file: fills in the count and appends the checksum.
    pub fn finish(mut self) -> Vec<u8> {
        self.buf[FILE_HEADER_LEN + 8..PREAMBLE_LEN].copy_from_slice(&self.count.to_le_bytes());
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
    buf.push(e.kind as u8);
    buf.extend_from_slice(&e.expiry.to_le_bytes());
    buf.extend_from_slice(&e.offset.to_le_bytes());
    buf.extend_from_slice(&super::record::len_u32(e.key.len()).to_le_bytes());
    buf.extend_from_slice(&e.value_len.to_le_bytes());
    buf.extend_from_slice(e.key);
}

/// Writes a hint file in pieces, for a segment whose length and entry count
/// are known before its first entry (compaction outputs): the bytes are the
/// same [`HintWriter`] would build, without holding the whole file in memory.
#[derive(Debug)]
pub struct HintStream {
    pending: Vec<u8>,
    crc: crc32fast::Hasher,
    left: u32,
}

impl HintStream {
    /// Starts the hint of `segment`, `segment_len` bytes long, with `count` entries.
    pub fn new(segment: SegmentId, segment_len: u64, count: u32) -> HintStream {
        HintStream {
            pending: preamble(64 << 10, segment, segment_len, count),
            crc: crc32fast::Hasher::new(),
            left: count,
        }
    }

    /// Adds one entry.
    pub fn push(&mut self, e: &HintEntry<'_>) {
        encode_entry(&mut self.pending, e);
        self.left = self.left.saturating_sub(1);
    }

    /// Bytes added since the last [`HintStream::take`].
    pub fn pending_len(&self) -> usize {
        self.pending.len()
    }

    /// Hands the bytes added since the last call to `write`.
    pub fn take<E>(&mut self, write: impl FnOnce(&[u8]) -> Result<(), E>) -> Result<(), E> {
        self.crc.update(&self.pending);
        write(&self.pending)?;
        self.pending.clear();
        Ok(())
    }

    /// The rest of the file, checksum included; `None` when fewer entries were
    /// pushed than declared (the file would not parse as what it claims).
    pub fn finish(mut self) -> Option<Vec<u8>> {
        if self.left != 0 {
            return None;
        }
        self.crc.update(&self.pending);
        let crc = self.crc.finalize();
        self.pending.extend_from_slice(&crc.to_le_bytes());
        Some(self.pending)
    }
}

/// A hint file whose checksum and header have been verified.
#[derive(Debug)]
pub struct Hint<'a> {
    /// The segment it indexes.
    pub segment: SegmentId,
    /// The length of the segment file it was written for.
    pub segment_len: u64,
    count: u32,
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
        Ok(Hint {
            segment: header.segment,
            segment_len: read_u64(bytes, FILE_HEADER_LEN),
            count: read_u32(bytes, FILE_HEADER_LEN + 8),
            entries: &bytes[PREAMBLE_LEN..body_end],
        })
    }

    /// Number of entries the file claims.
    pub fn len(&self) -> u32 {
        self.count
    }

    /// True when the hint indexes no record.
    #[allow(dead_code, reason = "unused since the module went private")]
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Visits every entry in order. Stops with an error at the first entry that
    /// does not decode (possible only if a writer was buggy: the checksum held).
    pub fn for_each(&self, mut visit: impl FnMut(HintEntry<'a>)) -> Result<(), DecodeError> {
        let mut rest = self.entries;
        for _ in 0..self.count {
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
            let expiry = read_u64(rest, 1);
            let offset = read_u32(rest, 9);
            let key_len = read_u32(rest, 13);
            let value_len = read_u32(rest, 17);
            if key_len > KEY_LEN_LIMIT || (key_len as usize) > rest.len() - ENTRY_FIXED_LEN {
                return Err(DecodeError::Invalid {
                    field: "hint key length",
                    value: u64::from(key_len),
                });
            }
            let key_end = ENTRY_FIXED_LEN + key_len as usize;
            visit(HintEntry {
                kind,
                expiry,
                offset,
                value_len,
                key: &rest[ENTRY_FIXED_LEN..key_end],
            });
            rest = &rest[key_end..];
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
    fn a_streamed_hint_is_the_bytes_a_built_one_is() {
        let entries: Vec<(Vec<u8>, u32)> = (0..5000u32)
            .map(|i| (format!("key{i}").into_bytes(), i * 40))
            .collect();
        fn entry((key, offset): &(Vec<u8>, u32)) -> HintEntry<'_> {
            HintEntry {
                kind: RecordKind::Put,
                expiry: u64::from(*offset % 3),
                offset: *offset,
                value_len: 9,
                key,
            }
        }
        let mut built = HintWriter::new(SegmentId(3), 77_000);
        let mut stream = HintStream::new(SegmentId(3), 77_000, 5000);
        let mut streamed = Vec::new();
        for (n, e) in entries.iter().enumerate() {
            built.push(&entry(e));
            stream.push(&entry(e));
            if n % 700 == 0 {
                stream
                    .take(|b| {
                        streamed.extend_from_slice(b);
                        Ok::<(), ()>(())
                    })
                    .unwrap();
            }
        }
        streamed.extend(stream.finish().unwrap());
        assert_eq!(streamed, built.finish());
        assert_eq!(Hint::parse(&streamed).unwrap().len(), 5000);
        assert!(HintStream::new(SegmentId(3), 0, 1).finish().is_none());
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
}
