//! The record: the unit of every segment.
//!
//! ```text
//! offset  size   field
//! 0       4      crc32 of bytes 4..end (crc32fast)
//! 4       1      kind: low 2 bits 1 put, 2 tombstone, 3 batch marker;
//!                bit 7 set = an expiry follows; other bits zero
//! 5       0 | 8  expiry, ms since the Unix epoch (u64 LE), only when bit 7 is set
//! ..      1–5    key length (LEB128 varint, u32)
//! ..      1–5    value length (LEB128 varint, u32)
//! ..      k      key
//! ..      v      value (a batch marker's value is its record count, u32 LE)
//! ```
//!
//! A 16-byte key with a 100-byte value and no expiry costs 7 bytes of header.
//! Invariant: a decoded record's lengths fit inside the slice it came from, so a
//! corrupt length can never cause an allocation or an out-of-bounds read.

use super::{DecodeError, read_u32, read_u64};

/// Fewest bytes any record takes (no expiry, empty key and value).
pub const MIN_RECORD_LEN: usize = 7;

/// Length of a batch marker record (its value is a 4-byte count).
pub const BATCH_MARKER_LEN: usize = MIN_RECORD_LEN + 4;

/// Upper bound on a key length any record may claim; larger is corruption.
pub const KEY_LEN_LIMIT: u32 = 1 << 20;

const EXPIRY_FLAG: u8 = 0x80;

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
        match b & !EXPIRY_FLAG {
            1 => Ok(RecordKind::Put),
            2 => Ok(RecordKind::Tombstone),
            3 => Ok(RecordKind::BatchMarker),
            _ => Err(DecodeError::Invalid {
                field: "record kind",
                value: u64::from(b),
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
        encoded_len(self.key.len(), self.value.len(), self.expiry)
    }

    /// For a batch marker, the number of records the batch holds.
    pub fn batch_count(&self) -> Option<u32> {
        match (self.kind, self.value.len()) {
            (RecordKind::BatchMarker, 4) => Some(read_u32(self.value, 0)),
            _ => None,
        }
    }
}

fn varint_len(v: usize) -> usize {
    match v {
        0..0x80 => 1,
        0x80..0x4000 => 2,
        0x4000..0x20_0000 => 3,
        0x20_0000..0x1000_0000 => 4,
        _ => 5,
    }
}

fn put_varint(out: &mut Vec<u8>, mut v: u32) {
    while v >= 0x80 {
        // Truncation intended: the low seven bits, with the continuation bit.
        out.push((v & 0x7f) as u8 | 0x80);
        v >>= 7;
    }
    out.push((v & 0x7f) as u8);
}

/// Reads a u32 LEB128 varint at `*at`, advancing it.
fn get_varint(bytes: &[u8], at: &mut usize, field: &'static str) -> Result<u32, DecodeError> {
    let mut v: u64 = 0;
    for i in 0..5 {
        let b = *bytes.get(*at).ok_or(DecodeError::Truncated {
            needed: *at + 1,
            available: bytes.len(),
        })?;
        *at += 1;
        v |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            return u32::try_from(v).map_err(|_| DecodeError::Invalid { field, value: v });
        }
    }
    Err(DecodeError::Invalid { field, value: v })
}

/// Total encoded length of a record with these key and value lengths and expiry
/// (raw form: 0 = never).
pub fn encoded_len(key_len: usize, value_len: usize, expiry: u64) -> usize {
    let expiry_len = if expiry == 0 { 0 } else { 8 };
    5 + expiry_len + varint_len(key_len) + varint_len(value_len) + key_len + value_len
}

/// Appends one record to `out`. The caller has bounded the lengths to u32.
pub fn encode(out: &mut Vec<u8>, kind: RecordKind, expiry: u64, key: &[u8], value: &[u8]) {
    let start = out.len();
    out.reserve(encoded_len(key.len(), value.len(), expiry));
    out.extend_from_slice(&[0u8; 4]);
    if expiry == 0 {
        out.push(kind as u8);
    } else {
        out.push(kind as u8 | EXPIRY_FLAG);
        out.extend_from_slice(&expiry.to_le_bytes());
    }
    put_varint(out, len_u32(key.len()));
    put_varint(out, len_u32(value.len()));
    out.extend_from_slice(key);
    out.extend_from_slice(value);
    // `start + 4 <= out.len()`: the placeholder was pushed above.
    let crc = crc32fast::hash(out.get(start + 4..).unwrap_or_default());
    if let Some(slot) = out.get_mut(start..start + 4) {
        slot.copy_from_slice(&crc.to_le_bytes());
    }
}

/// Appends a batch marker announcing `count` records.
pub fn encode_batch_marker(out: &mut Vec<u8>, count: u32) {
    encode(out, RecordKind::BatchMarker, 0, &[], &count.to_le_bytes());
}

/// A key or value length as stored (u32). Writers reject keys and values past
/// the configured limits (far below u32::MAX) before encoding, and decoded
/// lengths came from u32 fields; saturating keeps this total regardless.
pub fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// Decodes the record at the start of `bytes`, verifying its checksum.
pub fn decode(bytes: &[u8]) -> Result<RecordRef<'_>, DecodeError> {
    let truncated = |needed: usize| DecodeError::Truncated {
        needed,
        available: bytes.len(),
    };
    if bytes.len() < MIN_RECORD_LEN {
        return Err(truncated(MIN_RECORD_LEN));
    }
    let kind_byte = *bytes.get(4).ok_or(truncated(MIN_RECORD_LEN))?;
    let kind = RecordKind::from_byte(kind_byte)?;
    let mut at = 5;
    let expiry = if kind_byte & EXPIRY_FLAG != 0 {
        if bytes.len() < at + 8 {
            return Err(DecodeError::Truncated {
                needed: at + 8,
                available: bytes.len(),
            });
        }
        let e = read_u64(bytes, at);
        at += 8;
        if e == 0 {
            return Err(DecodeError::Invalid {
                field: "expiry",
                value: 0,
            });
        }
        e
    } else {
        0
    };
    let key_len = get_varint(bytes, &mut at, "key length")?;
    let value_len = get_varint(bytes, &mut at, "value length")?;
    if key_len > KEY_LEN_LIMIT {
        return Err(DecodeError::Invalid {
            field: "key length",
            value: u64::from(key_len),
        });
    }
    let total = at as u64 + u64::from(key_len) + u64::from(value_len);
    if total > bytes.len() as u64 {
        return Err(DecodeError::Truncated {
            needed: usize::try_from(total).unwrap_or(usize::MAX),
            available: bytes.len(),
        });
    }
    // total fits in bytes.len(), so these conversions are exact.
    let key_end = at + key_len as usize;
    let end = key_end + value_len as usize;
    let stored = read_u32(bytes, 0);
    let computed = crc32fast::hash(bytes.get(4..end).ok_or(truncated(end))?);
    if stored != computed {
        return Err(DecodeError::Checksum { stored, computed });
    }
    Ok(RecordRef {
        kind,
        expiry,
        key: bytes.get(at..key_end).ok_or(truncated(end))?,
        value: bytes.get(key_end..end).ok_or(truncated(end))?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn put_round_trips() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Put, 42, b"key", b"value");
        assert_eq!(buf.len(), encoded_len(3, 5, 42));
        let r = decode(&buf).unwrap();
        assert_eq!(r.kind, RecordKind::Put);
        assert_eq!(r.expiry, 42);
        assert_eq!(r.key, b"key");
        assert_eq!(r.value, b"value");
        assert_eq!(r.encoded_len(), buf.len());
    }

    #[test]
    fn a_small_record_without_expiry_has_a_seven_byte_header() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Put, 0, &[7; 16], &[1; 100]);
        assert_eq!(buf.len(), 7 + 16 + 100);
    }

    #[test]
    fn long_lengths_round_trip_through_varints() {
        for len in [0usize, 127, 128, 16_383, 16_384, 300_000] {
            let value = vec![3u8; len];
            let mut buf = Vec::new();
            encode(&mut buf, RecordKind::Put, 0, b"k", &value);
            assert_eq!(buf.len(), encoded_len(1, len, 0));
            assert_eq!(decode(&buf).unwrap().value.len(), len);
        }
    }

    #[test]
    fn batch_marker_carries_its_count() {
        let mut buf = Vec::new();
        encode_batch_marker(&mut buf, 7);
        assert_eq!(buf.len(), BATCH_MARKER_LEN);
        assert_eq!(decode(&buf).unwrap().batch_count(), Some(7));
    }

    #[test]
    fn every_flipped_byte_is_detected() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Put, 99, b"k", b"v");
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
            assert!(decode(&buf[..len]).is_err());
        }
    }

    #[test]
    fn absurd_length_is_corruption_not_allocation() {
        let mut buf = Vec::new();
        encode(&mut buf, RecordKind::Put, 0, b"k", b"v");
        // Value length varint at byte 6: claim 2^28 bytes.
        buf.splice(6..7, [0x80, 0x80, 0x80, 0x80, 0x01]);
        assert!(matches!(decode(&buf), Err(DecodeError::Truncated { .. })));
    }
}
