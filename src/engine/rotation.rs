//! Rotation on the writer's path: only renames (the spare becomes `wal.log`);
//! the sealer thread finishes the old segment. And the cut of `wal.log`'s
//! unused tail at close. See `segment::active` for the file steps.

use std::sync::Arc;

use super::error::{Error, Result};
use super::format::FILE_HEADER_LEN;
use super::segment::active::{ActiveSegment, RotateError, Spare};
use super::stats::Counters;
use super::writer::Writer;
use super::{SegmentId, Shared};

impl Shared {
    /// Seals `wal.log` and makes the spare (or a new segment big enough for
    /// `needed` more bytes) the active segment; the sealer thread finishes the
    /// old one. See `segment::active` for the steps.
    pub(crate) fn rotate(&self, w: &mut Writer, needed: u64) -> Result<()> {
        let Some(active) = w.active.as_ref() else {
            return Err(self.no_active());
        };
        let next = active.id().next_generation();
        let capacity = self.opts.segment_bytes.max(FILE_HEADER_LEN as u64 + needed);
        let spare = match self.take_spare(next, capacity) {
            Ok(s) => s,
            // A failed fsync latches, wherever it is; a segment that could not
            // be written or allocated (a full disk) fails only this write.
            Err(e) if is_sync_failure(&e) => return Err(self.latch_and_refuse(&e)),
            Err(e) => return Err(e),
        };
        let fs = &*self.opts.fs;
        let rotated = active.rotate_to(fs, &self.dir, spare);
        let new = match rotated {
            Ok(new) => new,
            Err(RotateError::Unchanged(e)) => return Err(self.latch_and_refuse(&e)),
            Err(RotateError::NoWal(e)) => {
                // The old memtable keeps serving reads; writes stop.
                if let Some(old) = w.active.take() {
                    self.hand_to_sealer(Arc::clone(old.memtable()), None);
                }
                self.latch(&e);
                return Err(e);
            }
        };
        Counters::add(&self.counters.disk_bytes, new.len());
        Counters::add(&self.counters.segments, 1);
        let fresh = Arc::clone(new.memtable());
        let old = w.active.replace(new).map(|a| Arc::clone(a.memtable()));
        if let Some(old) = old {
            self.hand_to_sealer(old, Some(fresh));
        }
        Ok(())
    }

    /// The spare for segment `next` if one of `capacity` is ready, else a new one.
    fn take_spare(&self, next: SegmentId, capacity: u64) -> Result<Spare> {
        let fs = &*self.opts.fs;
        let mut slot = self.lock(&self.spare, "the spare segment")?;
        slot.taken = Some(next);
        if let Some(s) = slot.spare.take() {
            if s.id() == next && s.capacity() >= capacity {
                return Ok(s);
            }
            s.discard(fs);
        }
        ActiveSegment::prepare(fs, &self.dir, next, capacity)
    }

    /// Seals nothing more: takes `wal.log` away from the writer and cuts its
    /// unused, preallocated tail (a cleanly closed directory holds no
    /// preallocated space). Runs at close, after the last sync.
    pub(crate) fn cut_active(&self) -> Result<()> {
        let Some(active) = self.lock(&self.writer, "the writer lock")?.active.take() else {
            return Ok(());
        };
        let m = active.memtable();
        let len = m.len() as u64;
        m.with_file(|f| {
            f.set_len(len)?;
            f.sync()
        })
        .map_err(|e| Error::io("cutting the unused tail of", m.path(), e))
    }
}

/// Whether `e` is a failed fsync (of a file or the directory).
fn is_sync_failure(e: &Error) -> bool {
    matches!(e, Error::Io { action, .. } if action.starts_with("syncing"))
}
