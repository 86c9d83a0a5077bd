//! The memtable: an in-memory image of `wal.log`, byte for byte, so reads of
//! fresh data never touch the file. Offsets in it are file offsets.
//!
//! Only the writer appends, and only after the bytes are in the file (and synced
//! as the sync mode requires), so everything readable here is acknowledged.
//! Dropped when the segment is sealed; readers then find the sealed segment.

use std::sync::RwLock;

use super::SegmentId;
use super::error::{Error, Result};
use super::format::record;

/// The image of the active segment.
#[derive(Debug)]
pub struct Memtable {
    id: SegmentId,
    buf: RwLock<Vec<u8>>,
}

impl Memtable {
    /// A memtable holding `bytes`, the current contents of `wal.log`.
    pub fn new(id: SegmentId, mut bytes: Vec<u8>, capacity: usize) -> Memtable {
        bytes.reserve(capacity.saturating_sub(bytes.len()));
        Memtable {
            id,
            buf: RwLock::new(bytes),
        }
    }

    /// The segment this memtable mirrors.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// Appends bytes already written to the file.
    pub fn append(&self, bytes: &[u8]) {
        let mut buf = self.buf.write().unwrap_or_else(|p| p.into_inner());
        buf.extend_from_slice(bytes);
    }

    /// Copies out the value of the record at `offset`.
    pub fn read_value(&self, offset: u32, key_len: usize, value_len: u32) -> Result<Vec<u8>> {
        let buf = self.buf.read().unwrap_or_else(|p| p.into_inner());
        let start = offset as usize + record::RECORD_HEADER_LEN + key_len;
        let end = start + value_len as usize;
        buf.get(start..end)
            .map(<[u8]>::to_vec)
            .ok_or(Error::Corrupt {
                segment: self.id,
                offset: u64::from(offset),
                reason: super::format::DecodeError::Truncated {
                    needed: end,
                    available: buf.len(),
                },
            })
    }

    /// Runs `f` over the whole image (used to build the hint file at seal time).
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let buf = self.buf.read().unwrap_or_else(|p| p.into_inner());
        f(&buf)
    }
}
