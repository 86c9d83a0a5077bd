//! The memtable: an in-memory image of `wal.log`, byte for byte, so reads of
//! fresh data never touch the file. Offsets in it are file offsets.
//!
//! Only the writer appends, and only after the bytes are in the file (and synced
//! as the sync mode requires), so everything readable here is acknowledged.
//! Dropped when the segment is sealed; readers then find the sealed segment.

use std::sync::RwLock;

use super::SegmentId;
use super::error::Result;
use super::segment::read_value;

/// The image of the active segment.
#[derive(Debug)]
pub struct Memtable {
    id: SegmentId,
    buf: RwLock<Vec<u8>>,
}

/// Bytes to reserve for the memtable of a segment of `segment_bytes`: the whole
/// segment (so appends never reallocate under readers), capped at 256 MiB.
pub fn capacity_for(segment_bytes: u64) -> usize {
    usize::try_from(segment_bytes.min(256 << 20)).unwrap_or(0) + 4096
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

    /// Copies out the value of the record of `key` at `offset`.
    pub fn read_value(&self, offset: u32, key: &[u8]) -> Result<Vec<u8>> {
        let buf = self.buf.read().unwrap_or_else(|p| p.into_inner());
        read_value(self.id, &buf, offset, key)
    }

    /// Runs `f` over the whole image (used to build the hint file at seal time).
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        let buf = self.buf.read().unwrap_or_else(|p| p.into_inner());
        f(&buf)
    }
}
