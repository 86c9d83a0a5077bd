//! The prefault thread: takes the page faults of `wal.log`'s mapping a window
//! ahead of the writer, and starts the writeback of what it wrote behind it,
//! on the other core.
//!
//! The first store into each 4 KiB page of the shared mapping faults, and the
//! kernel allocates and zeroes a page-cache page for the preallocated (unwritten)
//! block under it: profiled at an eighth of a put's time with sync never. Asked
//! by the writer each time it comes within half a window of the populated end,
//! this thread populates the next window writable (`MADV_POPULATE_WRITE`), so
//! the writer's stores find their pages mapped. The `sync_file_range` that
//! starts writeback of each 8 MiB written (so the seal's fsync does not find a
//! whole segment dirty) submits its I/O synchronously: a tenth of the writer's
//! time when it made that call itself; this thread makes it instead.
//!
//! Not under `SyncMode::Always`: a populated page is dirty, so the next
//! `fdatasync` would write the window's zeros along with the acknowledged
//! bytes. (Under `Periodic`, each page's zeros are written at most once, a
//! window's worth per interval.) Populating changes no byte of the file and
//! only ever touches `[len, capacity)` pages, which recovery reads as the
//! preallocated end whether zeros reached the disk or not; a failure (an old
//! kernel without the advice) costs only speed and is ignored.

use std::ops::Range;
use std::sync::Arc;

use super::Shared;
use super::memtable::Memtable;
use super::options::SyncMode;

/// Bytes populated ahead of the write position.
pub(crate) const AHEAD: usize = 4 << 20;

/// The outstanding requests (a newer one replaces an older: the writer
/// only moves forward) and the stop flag.
#[derive(Debug, Default)]
pub(crate) struct PrefaultQueue {
    populate: Option<(Arc<Memtable>, Range<usize>)>,
    writeback: Option<(Arc<Memtable>, Range<u64>)>,
    pub shutdown: bool,
}

/// The writer's side: how far the active segment has been asked to be populated.
#[derive(Debug, Default, Clone, Copy)]
pub(crate) struct Populated {
    segment: Option<super::SegmentId>,
    to: usize,
}

impl Shared {
    /// Whether this engine runs a prefault thread (see the module docs).
    pub(crate) fn prefaults(&self) -> bool {
        !matches!(self.opts.sync, SyncMode::Always)
    }

    /// After an append that left `memtable` `len` bytes long: asks for the
    /// next window once the write position is within half a window of the
    /// populated end. Cheap when not due (two compares).
    pub(crate) fn prefault_ahead(
        &self,
        done: &mut Populated,
        memtable: &Arc<Memtable>,
        len: usize,
    ) {
        let cap = memtable.capacity();
        let id = Some(memtable.id());
        if done.segment != id {
            *done = Populated {
                segment: id,
                to: len,
            };
        }
        if done.to >= cap || len + AHEAD / 2 <= done.to {
            return;
        }
        let range = done.to.max(len)..(len + AHEAD).min(cap);
        done.to = range.end;
        if let Ok(mut q) = self.prefault.lock() {
            q.populate = Some((Arc::clone(memtable), range));
        }
        self.prefault_cv.notify_one();
    }

    /// Has the thread start writeback of `len` bytes of `memtable` from
    /// `from`. A request not yet taken for the same memtable is widened; one
    /// for an older memtable is dropped (its seal fsyncs it whole).
    pub(crate) fn start_writeback_in_background(
        &self,
        memtable: &Arc<Memtable>,
        from: u64,
        len: u64,
    ) {
        let mut range = from..from + len;
        if let Ok(mut q) = self.prefault.lock() {
            if let Some((m, r)) = &q.writeback
                && Arc::ptr_eq(m, memtable)
            {
                range = r.start.min(range.start)..r.end.max(range.end);
            }
            q.writeback = Some((Arc::clone(memtable), range));
        }
        self.prefault_cv.notify_one();
    }

    /// The prefault thread's loop; returns once shut down.
    pub(crate) fn prefaulter(self: &Arc<Self>) {
        loop {
            let (writeback, populate) = {
                let Ok(mut q) = self.lock(&self.prefault, "the prefault queue") else {
                    return;
                };
                loop {
                    if q.shutdown {
                        return;
                    }
                    if q.writeback.is_some() || q.populate.is_some() {
                        break (q.writeback.take(), q.populate.take());
                    }
                    q = match self.prefault_cv.wait(q) {
                        Ok(q) => q,
                        Err(_) => return,
                    };
                }
            };
            if let Some((memtable, r)) = writeback {
                if let (Ok(start), Ok(end)) = (usize::try_from(r.start), usize::try_from(r.end)) {
                    memtable.unmap_pages(start..end, true);
                }
                // Skipped if a sync holds the file: that sync writes them anyway.
                memtable.try_with_file(|f| f.start_sync(r.start, r.end - r.start));
            }
            if let Some((memtable, range)) = populate {
                memtable.populate(range);
            }
        }
    }

    /// Stops the prefault thread (its join follows).
    pub(crate) fn stop_prefaulter(&self) {
        if let Ok(mut q) = self.prefault.lock() {
            q.shutdown = true;
            q.populate = None;
            q.writeback = None;
        }
        self.prefault_cv.notify_all();
    }
}
