//! Compaction: rewriting the live records of sealed segments to reclaim space.

use std::path::Path;

use super::dir::Listing;
use super::error::Result;
use super::options::Options;
use super::{Engine, Shared};

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Disk bytes freed.
    pub reclaimed_bytes: u64,
    /// Segment files (including `wal.log`) before.
    pub segments_before: u64,
    /// Segment files (including `wal.log`) after.
    pub segments_after: u64,
    /// Wall time, in ms.
    pub duration_ms: u64,
}

/// Compaction bookkeeping shared with the background thread.
#[derive(Debug, Default)]
pub(crate) struct State {}

impl State {
    pub(crate) fn stop(&self) {}
}

/// Undoes an interrupted compaction; returns how many files were removed.
pub(crate) fn recover(_dir: &Path, _opts: &Options, _listing: &mut Listing) -> Result<usize> {
    Ok(0)
}

impl Shared {
    pub(crate) fn compaction_hint(&self) {}
    pub(crate) fn maybe_compact_in_background(&self) {}
}

impl Engine {
    /// Compacts now.
    pub fn compact(&self) -> Result<CompactionReport> {
        Ok(CompactionReport::default())
    }
}
