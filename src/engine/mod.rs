//! The storage engine: a Bitcask-style log-structured store of byte keys and values.
//!
//! [`Engine`] is a cheap, cloneable handle (`Send + Sync + Clone`); every clone
//! shares one open data directory. Open one with [`Engine::builder`] (or
//! [`Engine::open`] and [`Options`]); everything an embedder names is
//! re-exported here. The modules behind it are private:
//!
//! - `format`: byte layouts of records, hint files and file headers; `dir`: every
//!   file name and magic number of a data directory, and its lock;
//! - `segment`: `wal.log` (active), sealed segments (mmap), scanning;
//! - `keydir`: the ordered key → location index; `memtable`: `wal.log` in memory;
//! - `shared`: the state every handle and thread shares, its lock helpers and
//!   the read path; `latch`: the read-only latch and its typed cause;
//! - `writer` (see [Writes](self#writes)): group commit, pipelined with its
//!   fsync; `rotation`: the renames that swap in the next `wal.log`; `sealer`:
//!   the rest of a rotation, off the writer's path; `pending`: the
//!   acknowledgement [`Engine::submit`] returns; `background`: the engine's
//!   threads; `iter`: ordered (key, value) iterators; `compaction`: reclaiming
//!   dead space in bounded steps; `recovery`: rebuilding state at open (or, for
//!   [`Engine::open_read_only`], computing it without changing a file);
//!   `backup`: [`Engine::backup`], a point-in-time copy of the directory;
//! - `migrate`: the one-time conversion of a legacy `wal.log` through a
//!   [`LegacyDecoder`];
//! - [`fs`] and [`clock`]: public *seams* through which tests fail I/O and move
//!   time (set with the builder's seam methods).
//!
//! # Writes
//! All writes go through one writer that groups concurrent requests into one
//! append and one fsync (see DESIGN.md, "Write path"). [`Engine::apply`] blocks the
//! calling thread; [`Engine::submit`] returns a [`PendingWrite`] that can be awaited
//! without blocking an async runtime, or waited on.
//!
//! # Reads
//! A read looks the key up in the keydir (read lock, released at once), then copies
//! the value from the memtable or a mapped sealed segment. Reads never wait for an
//! fsync.
//!
//! # Lock order
//! A thread holding one of these locks takes only locks to its right:
//! sync → writer → queue → unsynced → keydir; writer → spare; writer → segments;
//! compaction → writer (a compaction's sealing, and a backup's point).
//! The keydir and the segment set are never held together: a read releases the
//! keydir before it looks the segment up, and compaction's install takes them
//! one after the other. Every lock a panic poisoned latches the engine
//! read-only (`Shared::lock`).

mod background;
mod backup;
mod batch;
pub mod clock;
mod compaction;
mod dir;
mod error;
mod format;
pub mod fs;
mod iter;
mod key;
mod keydir;
mod latch;
mod memtable;
mod migrate;
mod options;
mod pending;
mod prefault;
mod readonly;
mod recovery;
mod rotation;
mod sealer;
mod segment;
mod shared;
mod stats;
mod writer;

use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, OnceLock, RwLock};
use std::time::Duration;

pub use backup::BackupReport;
pub use batch::{Batch, Expiry, Op, OpResult, Prior};
pub use compaction::CompactionReport;
pub use error::{Error, Fault, Result};
pub use format::DecodeError;
pub use iter::{Iter, KvPair};
pub use migrate::{LegacyDecoder, LegacyError, LegacyLog, LegacyOp};
pub use options::{
    EngineBuilder, MAX_SEGMENT_BYTES, MIN_SEGMENT_BYTES, Observer, Options, SyncMode,
};
pub use pending::PendingWrite;
pub use recovery::RecoveryReport;
pub use segment::SegmentId;
pub use stats::Stats;

use background::Threads;
use format::record::RecordKind;
use sealer::SpareSlot;

use shared::{Queue, Shared};
use stats::Counters;
use writer::{Request, Unsynced, Writer};

/// The handle is shared across threads and tasks (actix workers, `spawn`ed
/// closures); losing any of these would break every embedder, so it is
/// checked at compile time rather than by the first user.
const _: () = {
    const fn assert_handle<T: Send + Sync + Clone>() {}
    assert_handle::<Engine>();
    const fn assert_send<T: Send>() {}
    assert_send::<PendingWrite>();
    assert_send::<Iter>();
};

/// Byte-level access for tests that hand-craft or damage data files (the
/// record and file-header encoders and their constants), and the keydir for
/// the read bench's side-by-side of index structures. Not part of the API: it
/// changes with the on-disk format and the internals, without notice.
#[doc(hidden)]
pub mod __test_support {
    pub use super::format::hint;
    pub use super::format::record::{self, RecordKind};
    pub use super::format::{DecodeError, FILE_HEADER_LEN, MAGIC};
    pub use super::keydir::{Entry, Key, KeySlice, Keydir};
    pub use super::segment::active::header;
}

/// Whether a prefix scan stopped at its limit with keys left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// No further key matches.
    Exhausted,
    /// The limit was reached and at least one more key matches.
    More,
}

/// Stops the engine's threads and syncs when the last handle goes away.
#[derive(Debug)]
struct Guard {
    shared: Arc<Shared>,
    background: Mutex<Threads>,
}

impl Drop for Guard {
    fn drop(&mut self) {
        if let Err(e) = self.shared.shutdown(&self.background) {
            tracing::error!(error = %e, "final sync at close failed");
        }
    }
}

/// An open data directory. Clone it freely: clones share one engine, and the
/// directory is closed (acknowledged data synced) when the last clone drops.
///
/// ```
/// # fn main() -> Result<(), kvstore::engine::Error> {
/// use kvstore::engine::{Engine, Options, Prior};
/// let dir = tempfile::tempdir().expect("temp dir");
/// let (db, report) = Engine::open(dir.path(), Options::default())?;
/// assert_eq!(report.records, 0);
/// assert_eq!(db.put(b"hello", b"world")?, Prior::Absent);
/// assert_eq!(db.get(b"hello")?.as_deref(), Some(&b"world"[..]));
/// assert_eq!(db.delete(b"hello")?, Prior::Live);
/// db.close()?;
/// # Ok(()) }
/// ```
#[derive(Debug, Clone)]
pub struct Engine {
    shared: Arc<Shared>,
    guard: Arc<Guard>,
}

impl Engine {
    /// Starts an [`EngineBuilder`] for `dir` with the default [`Options`].
    pub fn builder(dir: impl AsRef<Path>) -> EngineBuilder {
        EngineBuilder::new(dir.as_ref())
    }

    /// Opens (creating if needed) the data directory `dir`, recovering its
    /// contents. Fails if the directory is already open by another engine, in this
    /// process or another.
    pub fn open(dir: impl AsRef<Path>, options: Options) -> Result<(Engine, RecoveryReport)> {
        Self::open_as(dir.as_ref(), options, recovery::Mode::Write)
    }

    fn open_as(
        dir: &Path,
        options: Options,
        access: recovery::Mode,
    ) -> Result<(Engine, RecoveryReport)> {
        options.validate()?;
        let dir = dir.to_path_buf();
        let lock = match access {
            recovery::Mode::Write => Some(dir::lock(&dir)?),
            recovery::Mode::ReadOnly => readonly::lock(&dir)?,
        };
        let rec = recovery::recover(&dir, &options, access)?;
        let counters = Counters::default();
        Counters::add(&counters.disk_bytes, rec.disk_bytes);
        Counters::add(&counters.segments, rec.segments.sealed.len() as u64 + 1);
        let shared = Arc::new(Shared {
            opts: options,
            keydir: RwLock::new(rec.keydir),
            segments: RwLock::new(rec.segments),
            writer: Mutex::new(Writer::new(rec.active)),
            queue: Mutex::new(Queue::default()),
            queued: AtomicBool::new(false),
            queue_cv: Condvar::new(),
            sync_lock: Mutex::new(()),
            unsynced: Mutex::new(Unsynced::default()),
            syncer_cv: Condvar::new(),
            relay: Mutex::default(),
            relaying: AtomicBool::new(false),
            spare: Mutex::new(SpareSlot::default()),
            spare_wanted: AtomicBool::new(false),
            sealer: Mutex::new(sealer::SealerQueue::default()),
            sealer_cv: Condvar::new(),
            prefault: Mutex::new(prefault::PrefaultQueue::default()),
            prefault_cv: Condvar::new(),
            failure: OnceLock::new(),
            counters,
            closed: AtomicBool::new(false),
            compaction: compaction::State::default(),
            access,
            _lock: lock,
            dir,
        });
        let guard = Arc::new(Guard {
            shared: Arc::clone(&shared),
            background: Mutex::new(Threads::default()),
        });
        // Dropping `guard` on an error below stops whatever was started.
        {
            let mut t = guard
                .background
                .lock()
                .map_err(|_| shared.poisoned("the thread handles"))?;
            // A read-only engine has nothing to commit, sync, seal or compact.
            if access == recovery::Mode::Write {
                t.start(&shared)?;
            }
        }
        let report = rec.report;
        tracing::debug!(?report, "engine opened");
        Ok((Engine { shared, guard }, report))
    }

    /// The value of `key`, or `None` when absent, deleted or expired.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.shared.check_open()?;
        self.shared.read(key, None)
    }

    /// The value of `key` without a copy: a [`KvPair`] lending key and value
    /// from the segment's mapping (checksum verified), which keeps the segment
    /// mapped while it lives. `None` when absent, deleted or expired.
    ///
    /// ```
    /// # let dir = tempfile::tempdir().unwrap();
    /// # let (db, _) = kvstore::engine::Engine::open(dir.path(), Default::default()).unwrap();
    /// db.put(b"user:1", b"ada")?;
    /// let pair = db.get_pair(b"user:1")?.expect("just put");
    /// assert_eq!(pair.value(), b"ada");
    /// # Ok::<(), kvstore::engine::Error>(())
    /// ```
    pub fn get_pair(&self, key: &[u8]) -> Result<Option<KvPair>> {
        self.shared.check_open()?;
        self.shared
            .look_up(key, None, |seg, e| iter::pair_at(seg, key, e))
    }

    /// Sets `key` to `value` with no expiry; says whether a live value existed.
    pub fn put(&self, key: &[u8], value: &[u8]) -> Result<Prior> {
        self.put_with_expiry(key, value, Expiry::Never)
    }

    /// Sets `key` to `value`, expiring at `expiry`.
    pub fn put_with_expiry(&self, key: &[u8], value: &[u8], expiry: Expiry) -> Result<Prior> {
        let op = Op::Put {
            key: Vec::new(),
            value: Vec::new(),
            expiry,
        };
        self.write_one(&op, key, value)
    }

    /// Sets `key` to `value`, expiring `ttl` from now.
    pub fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<Prior> {
        self.put_with_expiry(key, value, Expiry::after(self.now_ms(), ttl))
    }

    /// Removes `key`; says whether a live value existed.
    pub fn delete(&self, key: &[u8]) -> Result<Prior> {
        self.write_one(&Op::Delete { key: Vec::new() }, key, &[])
    }

    /// One put (`op` carries its expiry) or delete of `key`: straight through
    /// the writer when nothing else is in flight, else as a one-op batch.
    fn write_one(&self, op: &Op, key: &[u8], value: &[u8]) -> Result<Prior> {
        self.shared.check_open()?;
        self.shared.check_writable("writing")?;
        let s = &self.shared;
        s.validate_op(key, matches!(op, Op::Put { .. }).then_some(value))?;
        let (kind, expiry) = match op {
            Op::Put { expiry, .. } => (RecordKind::Put, expiry.to_raw()),
            _ => (RecordKind::Tombstone, 0),
        };
        if let Some(r) = s.write_one(kind, key, value, expiry) {
            return r;
        }
        let mut b = Batch::new();
        match op {
            Op::Put { expiry, .. } => b.put_with_expiry(key, value, *expiry),
            _ => b.delete(key),
        };
        single_prior(self.apply(b)?)
    }

    /// Applies `batch` atomically, blocking until it is acknowledged. Results are
    /// in operation order.
    pub fn apply(&self, batch: Batch) -> Result<Vec<OpResult>> {
        let pending = self.enqueue(batch)?;
        if self.shared.lead_or_hand_off() && self.shared.opts.sync == SyncMode::Always {
            self.shared.sync_unsynced(false);
        }
        pending.wait()
    }

    /// Queues `batch` for the writer and returns at once. Await the result (it
    /// never blocks an async runtime's thread) or [`PendingWrite::wait`] for it.
    /// Validation errors are reported when the result is taken.
    ///
    /// When the writer is free (`try_lock`: this never waits for it), the
    /// request is committed on the calling thread — encoding and a copy into
    /// the mapping, microseconds — instead of being handed to the background
    /// thread, which would cost two context switches per request. The fsync of
    /// `SyncMode::Always` is never made here: the syncer thread makes it, and
    /// the returned future completes after it.
    pub fn submit(&self, batch: Batch) -> PendingWrite {
        match self.enqueue(batch) {
            Ok(p) => {
                // A busy writer was told (queue_cv) to take the request.
                self.shared.lead_or_hand_off();
                p
            }
            Err(e) => PendingWrite::failed(e),
        }
    }

    fn enqueue(&self, batch: Batch) -> Result<PendingWrite> {
        self.shared.check_open()?;
        self.shared.check_writable("writing")?;
        self.shared.validate(&batch)?;
        if let Some(cause) = self.shared.failure() {
            return Err(Error::ReadOnly { cause });
        }
        let (tx, rx) = oneshot::channel();
        let mut q = self.shared.lock(&self.shared.queue, "the write queue")?;
        // Checked under the queue lock: shutdown drains the queue under it too,
        // so no request can slip in after the last drain and wait forever.
        if q.shutdown {
            return Err(Error::Closed);
        }
        q.pending.push(Request {
            ops: batch.ops,
            reply: tx,
        });
        self.shared.queued.store(true, Ordering::Release);
        Ok(PendingWrite::waiting(rx, Arc::clone(&self.shared)))
    }

    /// Up to `limit` live keys starting with `prefix` and strictly greater than
    /// `after`, in byte order. Page by passing the last key back as `after`.
    pub fn scan_prefix(&self, prefix: &[u8], after: Option<&[u8]>, limit: usize) -> Vec<Vec<u8>> {
        let mut keys = Vec::with_capacity(limit.min(1024));
        self.scan_prefix_with(prefix, after, limit, |k| keys.push(k.to_vec()));
        keys
    }

    /// Like [`scan_prefix`](Self::scan_prefix) but hands each key to `visit`
    /// without copying it, and says whether keys remain past the limit. The
    /// keydir's read lock is held throughout, delaying the next publish: keep
    /// `limit` to a page and `visit` cheap.
    pub fn scan_prefix_with(
        &self,
        prefix: &[u8],
        after: Option<&[u8]>,
        limit: usize,
        mut visit: impl FnMut(&[u8]),
    ) -> ScanEnd {
        let now = self.shared.opts.clock.now_ms();
        let Ok(kd) = self.shared.keydir_read() else {
            return ScanEnd::Exhausted;
        };
        let mut seen = 0usize;
        let mut end = ScanEnd::Exhausted;
        kd.scan(prefix, after, now, |k, _| {
            if seen == limit {
                end = ScanEnd::More;
                return false;
            }
            visit(k);
            seen += 1;
            true
        });
        end
    }

    /// Every live key in `range` with its value, in key order (see [`Iter`]).
    pub fn range<K: AsRef<[u8]>>(&self, range: impl std::ops::RangeBounds<K>) -> Iter {
        Iter::new(Arc::clone(&self.shared), iter::bounds(range))
    }

    /// Every live key starting with `prefix` with its value, in key order.
    pub fn prefix(&self, prefix: &[u8]) -> Iter {
        Iter::new(Arc::clone(&self.shared), iter::prefix_bounds(prefix))
    }

    /// The store's figures, in O(1) (expired keys due for a sweep are swept first,
    /// so they are never counted).
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let now = s.opts.clock.now_ms();
        s.sweep_if_due(now);
        let disk = Counters::get(&s.counters.disk_bytes);
        let (live_keys, live_value_bytes, live_record_bytes) = match s.keydir_read() {
            Ok(kd) => (
                kd.len() as u64,
                kd.live_value_bytes(),
                kd.live_record_bytes(),
            ),
            Err(_) => (0, 0, 0),
        };
        Stats {
            live_keys,
            live_value_bytes,
            disk_bytes: disk,
            dead_bytes: disk.saturating_sub(live_record_bytes),
            segments: Counters::get(&s.counters.segments),
            fsyncs: Counters::get(&s.counters.fsyncs),
            writes: Counters::get(&s.counters.writes),
            compactions: Counters::get(&s.counters.compactions),
            reclaimed_bytes: Counters::get(&s.counters.reclaimed_bytes),
            last_compaction_ms: Counters::get(&s.counters.last_compaction_ms),
            read_only: s.counters.read_only.load(Ordering::SeqCst),
        }
    }

    /// The fault that latched the engine read-only, if one did.
    pub fn fault(&self) -> Option<Fault> {
        self.shared.failure()
    }

    /// Makes every acknowledged write durable now, whatever the sync mode.
    pub fn sync(&self) -> Result<()> {
        self.shared.check_open()?;
        self.shared.sync_now()
    }

    /// Closes the engine for every clone: pending writes are committed, everything
    /// is synced, the directory is unlocked once the last clone is dropped.
    pub fn close(self) -> Result<()> {
        self.shared.shutdown(&self.guard.background)
    }

    /// Now, by the engine's clock, in ms since the Unix epoch.
    pub fn now_ms(&self) -> u64 {
        self.shared.opts.clock.now_ms()
    }

    /// The options the engine was opened with.
    pub fn options(&self) -> &Options {
        &self.shared.opts
    }

    /// The data directory.
    pub fn dir(&self) -> &Path {
        &self.shared.dir
    }
}

fn single_prior(results: Vec<OpResult>) -> Result<Prior> {
    match results.first() {
        Some(OpResult::Put(p) | OpResult::Delete(p)) => Ok(*p),
        _ => Err(Error::Internal {
            what: "a one-operation write was acknowledged without its put or delete result",
        }),
    }
}
