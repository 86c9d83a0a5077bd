//! The record: the unit of every segment.
//!
//! ```text
//! offset  size  field
//! 0       4     crc32 of bytes 4..end (crc32fast)
//! 4       1     kind: 1 put, 2 tombstone, 3 batch marker
//! 5       8     expiry, ms since the Unix epoch, 0 = never (u64 LE)
//! 13      4     key length (u32 LE)
//! 17      4     value length (u32 LE)
//! 21      k     key
//! 21+k    v     value (a batch marker's value is its record count, u32 LE)
//! ```
//!
//! Invariant: a decoded record's lengths fit inside the slice it came from, so a
//! corrupt length can never cause an allocation or an out-of-bounds read.

use super::{DecodeError, read_u32, read_u64};

/// Bytes before the key in every record.
pub const RECORD_HEADER_LEN: usize = 21;

/// Upper bound on a key length any record may claim; larger is corruption.
pub const KEY_LEN_LIMIT: u32 = 1 << 20;

/// What a record means.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum RecordKind {
    /// Sets the key to the value (with the record's expiry).
    Put = 1,
    /// Removes the key.
    Tombstone = 2,
    /// Opens a batch: the next `count` records are all applied or none.
    BatchMarker = 3,
}

impl RecordKind {
    fn from_byte(b: u8) -> Result<RecordKind, DecodeError> {
        match b {
            1 => Ok(RecordKind::Put),
            2 => Ok(RecordKind::Tombstone),
            3 => Ok(RecordKind::BatchMarker),
            other => Err(DecodeError::Invalid {
                field: "record kind",
                value: u64::from(other),
            }),
        }
    }
}

/// A record borrowed from the bytes it was decoded from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordRef<'a> {
    /// Put, tombstone or batch marker.
    pub kind: RecordKind,
    /// Absolute expiry in ms since the Unix epoch; 0 = never.
    pub expiry: u64,
    /// The key (empty for a batch marker).
    pub key: &'a [u8],
    /// The value (empty for a tombstone; the count for a batch marker).
    pub value: &'a [u8],
}

impl RecordRef<'_> {
    /// Total encoded length of this record.
    pub fn encoded_len(&self) -> usize {
        RECORD_HEADER_LEN + self.key.len() + self.value.len()
    }

    /// For a batch marker, the number of records the batch holds.
    pub fn batch_count(&self) -> Option<u32> {
        match (self.kind, self.value.len()) {
            (RecordKind::BatchMarker, 4) => Some(read_u32(self.value, 0)),
            _ => None,
        }
    }
}

/// Total encoded length of a record with these key and value lengths.
pub fn encoded_len(key_len: usize, value_len: usize) -> usize {
    RECORD_HEADER_LEN + key_len + value_len
}

/// Appends one record to `out`. The caller has bounded the lengths to u32.
pub fn encode(out: &mut Vec<u8>, kind: RecordKind, expiry: u64, key: &[u8], value: &[u8]) {
    let start = out.len();
    out.extend_from_slice(&[0u8; 4]);
    out.push(kind as u8);
    out.extend_from_slice(&expiry.to_le_bytes());
    out.extend_from_slice(&len_u32(key.len()).to_le_bytes());
    out.extend_from_slice(&len_u32(value.len()).to_le_bytes());
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    let crc = crc32fast::hash(&out[start + 4..]);
    out[start..start + 4].copy_from_slice(&crc.to_le_bytes());
}

/// Appends a batch marker announcing `count` records.
pub fn encode_batch_marker(out: &mut Vec<u8>, count: u32) {
    encode(out, RecordKind::BatchMarker, 0, &[], &count.to_le_bytes());
}

fn len_u32(len: usize) -> u32 {
    // Writers reject keys and values past the configured limits (far below
    // u32::MAX) before encoding; saturating keeps this total regardless.
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Decodes the record at the start of `bytes`, verifying its checksum.
pub fn decode(bytes: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    if bytes.len() < RECORD_HEADER_LEN {
        return Err(DecodeError::Truncated {
            needed: RECORD_HEADER_LEN,
            available: bytes.len(),
        });
    }
    let kind = RecordKind::from_byte(bytes[4])?;
    let expiry = read_u64(bytes, 5);
    let key_len = read_u32(bytes, 13);
    let value_len = read_u32(bytes, 17);
    if key_len > KEY_LEN_LIMIT {
        return Err(DecodeError::Invalid {
            field: "key length",
            value: u64::from(key_len),
        });
    }
    let total = RECORD_HEADER_LEN as u64 + u64::from(key_len) + u64::from(value_len);
    if total > bytes.len() as u64 {
        return Err(DecodeError::Truncated {
            needed: usize::try_from(total).unwrap_or(usize::MAX),
            available: bytes.len(),
        });
    }
    // total fits in bytes.len(), so these conversions are exact.
    let key_end = RECORD_HEADER_LEN + key_len as usize;
    let end = key_end + value_len as usize;
    let stored = read_u32(bytes, 0);
    let computed = crc32fast::hash(&bytes[4..end]);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(RecordRef {
        kind,
        expiry,
        key: &bytes[RECORD_HEADER_LEN..key_end],
        value: &bytes[key_end..end],
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_round_trips() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Put, 42, b"key", b"value");
        assert_eq!(buf.len(), encoded_len(3, 5));
        let r = decode(&buf).unwrap();
        assert_eq!(r.kind, RecordKind::Put);
        assert_eq!(r.expiry, 42);
        assert_eq!(r.key, b"key");
        assert_eq!(r.value, b"value");
        assert_eq!(r.encoded_len(), buf.len());
    }

    #[test]
    fn batch_marker_carries_its_count() {
        let mut buf = Vec::new();
        encode_batch_marker(&mut buf, 7);
        assert_eq!(decode(&buf).unwrap().batch_count(), Some(7));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Put, 0, b"k", b"v");
        for i in 0..buf.len() {
            let mut bad = buf.clone();
            bad[i] ^= 0x40;
            assert!(decode(&bad).is_err(), "flip at byte {i} went unnoticed");
        }
    }

    #[test]
    fn every_truncation_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Tombstone, 0, b"some key", b"");
        for len in 0..buf.len() {
            assert!(matches!(
                decode(&buf[..len]),
                Err(DecodeError::Truncated { .. })
            ));
        }
    }

    #[test]
    fn absurd_length_is_corruption_not_allocation() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Put, 0, b"k", b"v");
        buf[17..21].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(decode(&buf), Err(DecodeError::Truncated { .. })));
    }
}
