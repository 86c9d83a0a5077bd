//! Byte layouts of every file the engine writes (their names are in `dir`).
//!
//! Everything here is pure: encoders append to a `Vec<u8>`, decoders take a byte
//! slice and never trust a length they read — a length that does not fit the slice
//! is reported as [`DecodeError`], never used to allocate or index. DESIGN.md draws
//! each layout byte by byte; the constants below are the single source of truth.

// Bytes here come from disk: a slice index is a panic waiting for a damaged
// file, so every access is checked (`get`) and this is enforced (unit tests,
// which build their own bytes, may index).
#![cfg_attr(not(test), deny(clippy::indexing_slicing))]

pub mod hint;
pub mod record;

/// Kept here too: every layout below starts with it.
pub use super::dir::MAGIC;
/// Version of the segment and hint formats this build reads and writes.
pub const FORMAT_VERSION: u16 = 1;
/// Bytes of the header that starts every segment and hint file.
pub const FILE_HEADER_LEN: usize = 20;

/// What a data file holds, stored in its header so a hint file can never be
/// mistaken for a segment.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FileKind {
    /// A segment: a sequence of records.
    Segment = 1,
    /// A hint file: the key → location index of one sealed segment.
    Hint = 2,
}

/// Why bytes could not be decoded. Decoders report; callers decide whether the
/// finding is a torn tail, a corrupt record or an unreadable file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes remain than the structure needs (a torn write, or the end).
    #[error("truncated: {needed} bytes needed, {available} available")]
    Truncated {
        /// Bytes the structure needs.
        needed: usize,
        /// Bytes that were there.
        available: usize,
    },
    /// The checksum stored with the bytes does not match them.
    #[error("checksum mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    Checksum {
        /// The CRC32 found in the file.
        stored: u32,
        /// The CRC32 of the bytes as read.
        computed: u32,
    },
    /// A field holds a value no writer produces (unknown kind, absurd length).
    #[error("invalid field {field}: {value}")]
    Invalid {
        /// Which field.
        field: &'static str,
        /// The value found.
        value: u64,
    },
    /// The file does not start with the kvstore magic bytes.
    #[error("not a kvstore file (bad magic)")]
    BadMagic,
    /// The file was written by a format version this build does not read.
    #[error("format version {found} is not supported (this build reads {FORMAT_VERSION})")]
    UnsupportedVersion {
        /// The version in the file.
        found: u16,
    },
}

/// The decoded header of a segment or hint file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileHeader {
    /// Segment or hint.
    pub kind: FileKind,
    /// The segment this file belongs to.
    pub segment: super::SegmentId,
}

impl FileHeader {
    /// Appends the 20-byte header: magic, version, kind, one zero byte, segment id.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
        out.push(self.kind as u8);
        out.push(0);
        out.extend_from_slice(&self.segment.0.to_le_bytes());
    }

    /// Decodes and checks a header at the start of `bytes`.
    pub fn decode(bytes: &[u8]) -> Result<FileHeader, DecodeError> {
        let header: &[u8; FILE_HEADER_LEN] = bytes.first_chunk().ok_or(DecodeError::Truncated {
            needed: FILE_HEADER_LEN,
            available: bytes.len(),
        })?;
        if header[..8] != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let version = u16::from_le_bytes([header[8], header[9]]);
        if version != FORMAT_VERSION {
            return Err(DecodeError::UnsupportedVersion { found: version });
        }
        let kind = match header[10] {
            1 => FileKind::Segment,
            2 => FileKind::Hint,
            other => {
                return Err(DecodeError::Invalid {
                    field: "file kind",
                    value: u64::from(other),
                });
            }
        };
        let segment = super::SegmentId(read_u64(header, 12));
        Ok(FileHeader { kind, segment })
    }
}

/// Reads a little-endian u32 at `at`; the caller has checked the bounds
/// (out of them it reads 0 rather than panic).
pub(crate) fn read_u32(bytes: &[u8], at: usize) -> u32 {
    bytes
        .get(at..)
        .and_then(<[u8]>::first_chunk)
        .map_or(0, |b| u32::from_le_bytes(*b))
}

/// Reads a little-endian u64 at `at`; the caller has checked the bounds
/// (out of them it reads 0 rather than panic).
pub(crate) fn read_u64(bytes: &[u8], at: usize) -> u64 {
    bytes
        .get(at..)
        .and_then(<[u8]>::first_chunk)
        .map_or(0, |b| u64::from_le_bytes(*b))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::SegmentId;

    #[test]
    fn header_round_trips() {
        let h = FileHeader {
            kind: FileKind::Hint,
            segment: SegmentId(0x1234_5678_9abc),
        };
        let mut buf = Vec::new();
        h.encode(&mut buf);
        assert_eq!(buf.len(), FILE_HEADER_LEN);
        assert_eq!(FileHeader::decode(&buf), Ok(h));
    }

    #[test]
    fn header_with_future_version_is_refused() {
        let mut buf = Vec::new();
        FileHeader {
            kind: FileKind::Segment,
            segment: SegmentId(1),
        }
        .encode(&mut buf);
        buf[8] = 9;
        assert_eq!(
            FileHeader::decode(&buf),
            Err(DecodeError::UnsupportedVersion { found: 9 })
        );
    }

    #[test]
    fn header_of_json_lines_is_bad_magic() {
        let line = br#"{"op":"set","key":"a","value":1,"timestamp":1}"#;
        assert_eq!(FileHeader::decode(line), Err(DecodeError::BadMagic));
    }
}
