//! The sealer thread: the slow half of a rotation, off the writer's path.
//!
//! A rotation (in `writer`) only renames files and swaps memtables; the old
//! memtable then waits here, still serving reads from `SegmentSet::sealing`.
//! For each, in rotation order:
//! 1. fsync it (in every sync mode: a sealed segment is durable before its hint);
//! 2. cut the file to its records (the preallocated rest goes) and fsync;
//! 3. fsync the directory: the rotation's renames are durable;
//! 4. write its hint file (`<id>.hint.tmp`, fsync, rename, fsync the directory;
//!    a failure costs only start-up speed: recovery scans instead);
//! 5. map the sealed file and put it in the segment set in place of the memtable.
//!
//! It also makes the next *spare* segment once `wal.log` is half full, so a
//! rotation finds one ready. A failed fsync latches the engine read-only, as on
//! the writer's path; the memtable then keeps serving reads.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::dir;
use super::error::{Error, Result};
use super::memtable::Memtable;
use super::segment::active::{ActiveSegment, Spare, build_hint, write_hint};
use super::segment::sealed::SealedSegment;
use super::{SegmentId, Shared};

/// The spare segment, and the newest segment id a rotation took one for:
/// a spare is made for the segment after that, never for one already taken
/// (making it would empty the file the writer just mapped).
#[derive(Debug, Default)]
pub(crate) struct SpareSlot {
    pub spare: Option<Spare>,
    pub taken: Option<SegmentId>,
}

/// Work queued for the sealer thread.
#[derive(Debug, Default)]
pub(crate) struct SealerQueue {
    jobs: VecDeque<Arc<Memtable>>,
    /// A job is being worked on (so waiters know sealing is not done).
    busy: bool,
    pub shutdown: bool,
}

/// The smallest `wal.log` a close seals (see `seal_large_wal_at_close`).
const SEAL_AT_CLOSE_FLOOR: u64 = 4 << 20;

impl Shared {
    /// Moves a rotated-out memtable to `sealing` (and makes `fresh` the active
    /// one, if given) and queues it for the sealer.
    pub(crate) fn hand_to_sealer(&self, old: Arc<Memtable>, fresh: Option<Arc<Memtable>>) {
        if let Ok(mut set) = self.segments_write() {
            set.sealing.insert(old.id(), Arc::clone(&old));
            if let Some(f) = fresh {
                set.active = f;
            }
        }
        if let Ok(mut q) = self.lock(&self.sealer, "the sealer queue") {
            q.jobs.push_back(old);
        }
        self.sealer_cv.notify_all();
    }

    /// Asks the sealer for a spare segment (idempotent).
    pub(crate) fn want_spare(&self) {
        if !self.spare_wanted.swap(true, Ordering::SeqCst) {
            self.sealer_cv.notify_all();
        }
    }

    /// At a clean close, rotates a `wal.log` holding at least an eighth of a
    /// segment, for the sealer (still running) to seal with its sorted hint:
    /// the next open then loads that hint instead of scanning and sorting
    /// `wal.log`'s records, which was half of an open's time. The eighth keeps
    /// a store that is opened and closed often from collecting tiny segments,
    /// and below 4 MiB (some 30,000 small records) the scan costs an open only
    /// a few milliseconds, so such a `wal.log` is left as it is.
    /// A rotation that fails is left to the close's own sync (a full disk: the
    /// records stay in `wal.log`); one that latches shows in the close's result.
    pub(crate) fn seal_large_wal_at_close(&self) {
        if self.failure().is_some() {
            return;
        }
        let threshold = (self.opts.segment_bytes / 8).max(SEAL_AT_CLOSE_FLOOR);
        let Ok(mut w) = self.lock(&self.writer, "the writer lock") else {
            return;
        };
        if w.active.as_ref().is_some_and(|a| a.len() >= threshold)
            && let Err(e) = self.rotate(&mut w, 0)
        {
            tracing::warn!(error = %e, "could not seal wal.log at close; the next open scans it");
        }
    }

    /// Seals `wal.log` unless it is empty, and waits until every rotated-out
    /// segment is sealed: after this, everything written is in `sealed`.
    pub(crate) fn seal_active_now(&self) -> Result<()> {
        {
            let mut w = self.lock(&self.writer, "the writer lock")?;
            if w.active.as_ref().is_some_and(|a| !a.is_empty()) {
                self.rotate(&mut w, 0)?;
            }
        }
        self.wait_for_seals()
    }

    /// Blocks until every queued seal is done (compaction wants them sealed).
    pub(crate) fn wait_for_seals(&self) -> Result<()> {
        let mut q = self.lock(&self.sealer, "the sealer queue")?;
        while !q.jobs.is_empty() || q.busy {
            q = self
                .sealer_cv
                .wait(q)
                .map_err(|_| self.poisoned("the sealer queue"))?;
        }
        Ok(())
    }

    /// The sealer thread's loop; returns once shut down with no work left.
    pub(crate) fn sealer_loop(self: &Arc<Self>) {
        loop {
            let job = {
                let Ok(mut q) = self.lock(&self.sealer, "the sealer queue") else {
                    return;
                };
                loop {
                    if let Some(job) = q.jobs.pop_front() {
                        q.busy = true;
                        break Some(job);
                    }
                    if self.spare_wanted.load(Ordering::SeqCst) {
                        break None;
                    }
                    if q.shutdown {
                        return;
                    }
                    q = match self.sealer_cv.wait(q) {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
            };
            match job {
                Some(m) => {
                    if let Err(e) = self.seal(&m) {
                        self.latch(&e);
                    }
                    if let Ok(mut q) = self.sealer.lock() {
                        q.busy = false;
                    }
                    self.sealer_cv.notify_all();
                }
                None => self.make_spare(),
            }
        }
    }

    /// Steps 1–5 for one rotated-out memtable.
    fn seal(&self, m: &Arc<Memtable>) -> Result<()> {
        let id = m.id();
        let fs = &*self.opts.fs;
        let path = dir::segment_path(&self.dir, id);
        // No writer stores here again: the fsync need not write-protect (and
        // shoot down the TLB entry of) each page still mapped.
        m.unmap_pages(0..usize::MAX, false);
        self.sync_memtable(m)?;
        let len = m.len() as u64;
        let cut = m.with_file(|f| {
            f.set_len(len)?;
            f.sync()
        });
        let mut hint_ok = true;
        if let Err(e) = cut {
            // The unused tail stays: recovery reads it as the end (zeros).
            tracing::warn!(segment = %id, error = %e, "could not cut the sealed segment's unused tail");
            hint_ok = false;
        }
        fs.sync_dir(&self.dir)
            .map_err(|e| Error::io("syncing directory", &self.dir, e))?;
        if hint_ok {
            let hint = build_hint(id, m.bytes());
            if let Err(e) = write_hint(fs, &self.dir, id, &hint) {
                tracing::warn!(segment = %id, error = %e, "hint file not written; next open scans this segment");
            }
        }
        let sealed = Arc::new(SealedSegment::open(id, &path)?);
        let mut set = self.segments_write()?;
        set.sealing.remove(&id);
        set.sealed.insert(id, sealed);
        Ok(())
    }

    /// Makes the spare for the segment after the active one, unless it exists.
    fn make_spare(&self) {
        self.spare_wanted.store(false, Ordering::SeqCst);
        let Ok(mut slot) = self.lock(&self.spare, "the spare segment") else {
            return;
        };
        let active = match self.segments_read() {
            Ok(set) => set.active.id(),
            Err(_) => return,
        };
        let next = slot
            .taken
            .map_or(active, |t| t.max(active))
            .next_generation();
        if slot.spare.as_ref().is_some_and(|s| s.id() == next) {
            return;
        }
        if let Some(stale) = slot.spare.take() {
            stale.discard(&*self.opts.fs);
        }
        match ActiveSegment::prepare(&*self.opts.fs, &self.dir, next, self.opts.segment_bytes) {
            Ok(s) => slot.spare = Some(s),
            // The rotation will try again itself, and report the error there.
            Err(e) => tracing::warn!(error = %e, "could not make the next segment ahead of time"),
        }
    }
}
