//! Figures about the store, all O(1) to read: live totals come from the keydir's
//! running sums, the rest from counters the writer and compactor bump.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};

/// A snapshot of the engine's figures.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
#[non_exhaustive]
pub struct Stats {
    /// Live (unexpired, undeleted) keys.
    pub live_keys: u64,
    /// Sum of the live values' lengths.
    pub live_value_bytes: u64,
    /// Bytes of all segment files (sealed and `wal.log`).
    pub disk_bytes: u64,
    /// Bytes of segment files that hold no live record (overwritten, deleted,
    /// expired records, tombstones, batch markers, headers).
    pub dead_bytes: u64,
    /// Segment files, including `wal.log`.
    pub segments: u64,
    /// fsyncs of `wal.log` since open.
    pub fsyncs: u64,
    /// Acknowledged write requests (puts, deletes, batches) since open.
    pub writes: u64,
    /// Compactions completed since open.
    pub compactions: u64,
    /// Bytes reclaimed by compaction since open.
    pub reclaimed_bytes: u64,
    /// Duration of the last compaction, in ms (0 when none ran).
    pub last_compaction_ms: u64,
    /// True after an I/O failure latched the engine read-only.
    pub read_only: bool,
}

/// Counters maintained outside the keydir.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub disk_bytes: AtomicU64,
    pub segments: AtomicU64,
    pub fsyncs: AtomicU64,
    pub writes: AtomicU64,
    pub compactions: AtomicU64,
    pub reclaimed_bytes: AtomicU64,
    pub last_compaction_ms: AtomicU64,
    pub read_only: AtomicBool,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub fn sub(counter: &AtomicU64, n: u64) {
        counter.fetch_sub(n, Ordering::Relaxed);
    }

    pub fn get(counter: &AtomicU64) -> u64 {
        counter.load(Ordering::Relaxed)
    }
}
