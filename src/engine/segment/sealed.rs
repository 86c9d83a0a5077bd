//! A sealed segment: immutable, read through a memory map.
//!
//! The file is never written again once sealed, so the map's contents cannot
//! change under a reader. The file descriptor is closed right after mapping; the
//! mapping keeps the data reachable even after compaction unlinks the file, until
//! the last reader drops its `Arc`.

use std::fs::File;
use std::path::Path;

use memmap2::Mmap;

use crate::engine::SegmentId;
use crate::engine::error::{Error, Result};
use crate::engine::format::{FileHeader, FileKind};

/// One mapped sealed segment.
#[derive(Debug)]
pub struct SealedSegment {
    id: SegmentId,
    map: Mmap,
    /// A read-only open left a tail in place that a read-write open cuts
    /// (an unfinished sealing): a backup must copy this file, not link it,
    /// or opening the backup would cut the original through the shared inode.
    uncut: bool,
}

impl SealedSegment {
    /// Maps the segment file at `path`. Fails on a version this build cannot read;
    /// a damaged header is left for the scan to report.
    pub fn open(id: SegmentId, path: &Path) -> Result<SealedSegment> {
        let file = File::open(path).map_err(|e| Error::io("opening segment", path, e))?;
        #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
        // SAFETY: sealed segments are never modified or truncated while mapped:
        // the engine holds the directory lock, only writes new files, and removes
        // (unlinks) a segment only after no keydir entry points into it. Unlinking
        // leaves the mapping valid.
        let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io("mapping segment", path, e))?;
        if let Err(reason @ crate::engine::format::DecodeError::UnsupportedVersion { .. }) =
            FileHeader::decode(&map)
        {
            return Err(Error::Format {
                path: path.to_path_buf(),
                reason,
            });
        }
        Ok(SealedSegment {
            id,
            map,
            uncut: false,
        })
    }

    /// Whether the header is intact and names this segment.
    pub fn header_ok(&self) -> bool {
        FileHeader::decode(&self.map)
            .is_ok_and(|h| h.kind == FileKind::Segment && h.segment == self.id)
    }

    /// Notes that a read-write open would cut this segment's tail.
    pub(crate) fn mark_uncut(&mut self) {
        self.uncut = true;
    }

    /// Whether a read-write open would cut this segment's tail.
    pub(crate) fn is_uncut(&self) -> bool {
        self.uncut
    }

    /// The segment id.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// The whole file.
    pub fn bytes(&self) -> &[u8] {
        &self.map
    }

    /// File length in bytes.
    pub fn len(&self) -> u64 {
        self.map.len() as u64
    }

    /// Copies out the value of the record of `key` at `offset`.
    pub fn read_value(&self, offset: u32, key: &[u8]) -> Result<Vec<u8>> {
        super::read_value(self.id, &self.map, offset, key)
    }
}
