//! The storage engine: a Bitcask-style log-structured store of byte keys and values.
//!
//! [`Engine`] is a cheap, cloneable handle; every clone shares one open data
//! directory. The pieces, each in its own module:
//!
//! - [`format`](mod@format): byte layouts of records, hint files and file headers;
//! - [`segment`]: `wal.log` (active), sealed segments (mmap), scanning;
//! - [`keydir`]: the ordered key → location index; [`memtable`]: `wal.log` in memory;
//! - `writer` (see [Writes](self#writes)): group commit; [`recovery`]: rebuilding state at open
//!   (or, for [`Engine::open_read_only`], computing it without changing a file);
//! - [`migrate`]: the one-time conversion of a legacy JSON-lines `wal.log`;
//! - [`fs`] and [`clock`]: seams through which tests fail I/O and move time.
//!
//! # Writes
//! All writes go through one writer that groups concurrent requests into one
//! append and one fsync (see DESIGN.md, "Write path"). [`Engine::apply`] blocks the
//! calling thread; [`Engine::submit`] returns a [`Pending`] that can be awaited
//! without blocking an async runtime, or waited on.
//!
//! # Reads
//! A read looks the key up in the keydir (read lock, released at once), then copies
//! the value from the memtable or a mapped sealed segment. Reads never wait for an
//! fsync.

pub mod batch;
pub mod clock;
pub mod compaction;
mod dir;
pub mod error;
pub mod format;
pub mod fs;
mod iter;
mod key;
pub mod keydir;
pub mod memtable;
pub mod migrate;
pub mod options;
mod readonly;
pub mod recovery;
mod sealer;
pub mod segment;
pub mod stats;
mod writer;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{
    Arc, Condvar, Mutex, MutexGuard, OnceLock, RwLock, RwLockReadGuard, RwLockWriteGuard,
};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use batch::{Batch, Expiry, Op, OpResult, Prior};
pub use compaction::CompactionReport;
pub use error::{Error, Fault, Result};
pub use iter::{Iter, KvPair};
pub use options::{Observer, Options, SyncMode};
pub use recovery::RecoveryReport;
pub use stats::Stats;

use format::record::RecordKind;
use keydir::Keydir;
use sealer::SpareSlot;
use segment::{SegmentRef, SegmentSet};
use stats::Counters;
use writer::{Reply, Request, Unsynced, Writer};

/// Identifies a segment. Segments are ordered by id: a record in a higher id is
/// newer. Rotation moves to the next generation (`id >> 16` + 1); compaction
/// outputs take ids between their newest input and the next generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct SegmentId(pub u64);

impl SegmentId {
    /// The first id of a fresh directory.
    pub const FIRST: SegmentId = SegmentId(1 << 16);

    /// The id rotation gives the segment after this one.
    pub fn next_generation(self) -> SegmentId {
        SegmentId(((self.0 >> 16) + 1) << 16)
    }
}

impl fmt::Display for SegmentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:016x}", self.0)
    }
}

/// Whether a prefix scan stopped at its limit with keys left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScanEnd {
    /// No further key matches.
    Exhausted,
    /// The limit was reached and at least one more key matches.
    More,
}

#[derive(Debug, Default)]
pub(crate) struct Queue {
    pending: Vec<Request>,
    shutdown: bool,
}

/// State shared by every handle and the background thread.
#[derive(Debug)]
pub(crate) struct Shared {
    dir: PathBuf,
    opts: Options,
    keydir: RwLock<Keydir>,
    segments: RwLock<SegmentSet>,
    writer: Mutex<Writer>,
    queue: Mutex<Queue>,
    queue_cv: Condvar,
    /// Held by whoever syncs `wal.log` and publishes what the sync covered.
    sync_lock: Mutex<()>,
    unsynced: Mutex<Unsynced>,
    /// Wakes the syncer thread: groups appended, or shutdown.
    syncer_cv: Condvar,
    /// The next segment, made ahead of its rotation.
    spare: Mutex<SpareSlot>,
    spare_wanted: AtomicBool,
    sealer: Mutex<sealer::SealerQueue>,
    sealer_cv: Condvar,
    failure: OnceLock<Fault>,
    counters: Counters,
    closed: AtomicBool,
    compaction: compaction::State,
    access: recovery::Mode,
    _lock: Option<dir::DirLock>,
}

/// Stops the engine's threads and syncs when the last handle goes away.
#[derive(Debug)]
struct Guard {
    shared: Arc<Shared>,
    background: Mutex<Threads>,
}

/// The engine's threads: the background thread (async commits, sweeps,
/// compaction triggers), the syncer (fsyncs and publishes under `Always`,
/// syncs every interval under `Periodic`, watches `wal.log`'s link count) and
/// the sealer (finishes rotations, makes spares).
#[derive(Debug, Default)]
struct Threads {
    background: Option<JoinHandle<()>>,
    syncer: Option<JoinHandle<()>>,
    sealer: Option<JoinHandle<()>>,
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

/// A submitted write awaiting its acknowledgement. `.await` it from async code
/// (it never blocks the runtime), or call [`Pending::wait`] from a thread.
#[derive(Debug)]
pub struct Pending(PendingState, Option<Arc<Shared>>);

#[derive(Debug)]
enum PendingState {
    Ready(Option<Reply>),
    Waiting(oneshot::Receiver<Reply>),
    Polling(oneshot::AsyncReceiver<Reply>),
    Done,
}

impl Pending {
    /// Blocks until the write is acknowledged (durable per the sync mode) or failed.
    pub fn wait(self) -> Result<Vec<OpResult>> {
        let shared = self.1;
        let reply = match self.0 {
            PendingState::Ready(r) => r,
            PendingState::Waiting(rx) => rx.recv().ok(),
            PendingState::Polling(rx) => futures_block_on(rx),
            PendingState::Done => None,
        };
        reply.unwrap_or_else(|| Err(gone(shared.as_deref())))
    }
}

/// The error for a request whose reply was dropped unsent: the engine closed,
/// or a panic on the path that held it latched the engine.
fn gone(shared: Option<&Shared>) -> Error {
    match shared.and_then(Shared::failure) {
        Some(cause) => Error::ReadOnly { cause },
        None => Error::Closed,
    }
}

impl Future for Pending {
    type Output = Result<Vec<OpResult>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.get_mut();
        let state = &mut this.0;
        loop {
            match state {
                PendingState::Ready(r) => {
                    return Poll::Ready(r.take().unwrap_or(Err(Error::Closed)));
                }
                PendingState::Waiting(_) => {
                    // Polled for the first time: turn the receiver into its future.
                    if let PendingState::Waiting(rx) = std::mem::replace(state, PendingState::Done)
                    {
                        *state = PendingState::Polling(std::future::IntoFuture::into_future(rx));
                    }
                }
                PendingState::Polling(rx) => {
                    let shared = this.1.as_deref();
                    return Pin::new(rx)
                        .poll(cx)
                        .map(|r| r.unwrap_or_else(|_| Err(gone(shared))));
                }
                PendingState::Done => return Poll::Ready(Err(Error::Closed)),
            }
        }
    }
}

impl Engine {
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
            queue_cv: Condvar::new(),
            sync_lock: Mutex::new(()),
            unsynced: Mutex::new(Unsynced::default()),
            syncer_cv: Condvar::new(),
            spare: Mutex::new(SpareSlot::default()),
            spare_wanted: AtomicBool::new(false),
            sealer: Mutex::new(sealer::SealerQueue::default()),
            sealer_cv: Condvar::new(),
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
                t.background = Some(shared.spawn("kvstore-engine", Shared::background)?);
                t.syncer = Some(shared.spawn("kvstore-syncer", Shared::syncer)?);
                t.sealer = Some(shared.spawn("kvstore-sealer", Shared::sealer_loop)?);
            }
        }
        let report = rec.report;
        tracing::debug!(?report, "engine opened");
        Ok((Engine { shared, guard }, report))
    }

    /// The value of `key`, or `None` when absent, deleted or expired.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>> {
        self.shared.check_open()?;
        self.shared.read(key, self.shared.opts.clock.now_ms())
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
    /// never blocks an async runtime's thread) or [`Pending::wait`] for it.
    /// Validation errors are reported when the result is taken.
    ///
    /// When the writer is free (`try_lock`: this never waits for it), the
    /// request is committed on the calling thread — encoding and a copy into
    /// the mapping, microseconds — instead of being handed to the background
    /// thread, which would cost two context switches per request. The fsync of
    /// `SyncMode::Always` is never made here: the syncer thread makes it, and
    /// the returned future completes after it.
    pub fn submit(&self, batch: Batch) -> Pending {
        match self.enqueue(batch) {
            Ok(p) => {
                // A busy writer was told (queue_cv) to take the request.
                self.shared.lead_or_hand_off();
                p
            }
            Err(e) => Pending(PendingState::Ready(Some(Err(e))), None),
        }
    }

    fn enqueue(&self, batch: Batch) -> Result<Pending> {
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
        Ok(Pending(
            PendingState::Waiting(rx),
            Some(Arc::clone(&self.shared)),
        ))
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
        Iter::new(Arc::clone(&self.shared), iter::bounds(range), None)
    }

    /// Every live key starting with `prefix` with its value, in key order.
    pub fn prefix(&self, prefix: &[u8]) -> Iter {
        Iter::new(
            Arc::clone(&self.shared),
            iter::prefix_bounds(prefix),
            Some(prefix.to_vec()),
        )
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

/// Waits for an already-polled receiver from a plain thread.
fn futures_block_on(mut rx: oneshot::AsyncReceiver<Reply>) -> Option<Reply> {
    struct ThreadWaker(std::thread::Thread);
    impl std::task::Wake for ThreadWaker {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = std::task::Waker::from(Arc::new(ThreadWaker(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    loop {
        match Pin::new(&mut rx).poll(&mut cx) {
            Poll::Ready(r) => return r.ok(),
            Poll::Pending => std::thread::park(),
        }
    }
}

fn single_prior(results: Vec<OpResult>) -> Result<Prior> {
    match results.first() {
        Some(OpResult::Put(p) | OpResult::Delete(p)) => Ok(*p),
        _ => Err(Error::Closed),
    }
}

impl Shared {
    fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::SeqCst) {
            Err(Error::Closed)
        } else {
            Ok(())
        }
    }

    /// Locks `m`. A lock a panic left poisoned guards state that may be
    /// half-updated: it is never used; the engine latches read-only instead.
    pub(crate) fn lock<'a, T>(
        &self,
        m: &'a Mutex<T>,
        place: &'static str,
    ) -> Result<MutexGuard<'a, T>> {
        m.lock().map_err(|_| self.poisoned(place))
    }

    /// Latches the engine for a lock a panic poisoned; the error to return.
    pub(crate) fn poisoned(&self, place: &'static str) -> Error {
        self.latch_fault(Fault::Panic {
            place,
            message: "a panic while the lock was held".into(),
        });
        Error::ReadOnly {
            cause: self.failure().unwrap_or(Fault::Panic {
                place,
                message: "a panic while the lock was held".into(),
            }),
        }
    }

    pub(crate) fn keydir_read(&self) -> Result<RwLockReadGuard<'_, Keydir>> {
        self.keydir.read().map_err(|_| self.poisoned("the keydir"))
    }

    pub(crate) fn keydir_write(&self) -> Result<RwLockWriteGuard<'_, Keydir>> {
        self.keydir.write().map_err(|_| self.poisoned("the keydir"))
    }

    pub(crate) fn segments_read(&self) -> Result<RwLockReadGuard<'_, SegmentSet>> {
        self.segments
            .read()
            .map_err(|_| self.poisoned("the segment set"))
    }

    pub(crate) fn segments_write(&self) -> Result<RwLockWriteGuard<'_, SegmentSet>> {
        self.segments
            .write()
            .map_err(|_| self.poisoned("the segment set"))
    }

    /// Starts an engine thread; a panic in it latches the engine read-only and
    /// fails every waiter, instead of leaving them hanging.
    fn spawn(
        self: &Arc<Self>,
        name: &'static str,
        body: fn(&Arc<Shared>),
    ) -> Result<JoinHandle<()>> {
        let me = Arc::clone(self);
        std::thread::Builder::new()
            .name(name.into())
            .spawn(move || {
                let run = std::panic::AssertUnwindSafe(|| body(&me));
                if let Err(payload) = std::panic::catch_unwind(run) {
                    me.latch_fault(Fault::panic(name, &*payload));
                    me.fail_everything_waiting();
                }
            })
            .map_err(|e| Error::io("spawning a thread for", &self.dir, e))
    }

    /// After a latch: fails every queued and unsynced request.
    fn fail_everything_waiting(&self) {
        let e = Error::ReadOnly {
            cause: self.failure().unwrap_or(Fault::Other {
                message: "engine failed".into(),
            }),
        };
        self.fail_queued(&e);
        self.sync_unsynced(false);
    }

    fn validate(&self, batch: &Batch) -> Result<()> {
        for op in &batch.ops {
            let value = match op {
                Op::Put { value, .. } => Some(value.as_slice()),
                _ => None,
            };
            self.validate_op(op.key(), value)?;
        }
        let size = writer::planned_size(&batch.ops) as u64;
        if size > options::MAX_SEGMENT_BYTES {
            return Err(Error::BatchTooLarge {
                len: size,
                max: options::MAX_SEGMENT_BYTES,
            });
        }
        Ok(())
    }

    fn validate_op(&self, key: &[u8], value: Option<&[u8]>) -> Result<()> {
        let max_key = self.opts.max_key_bytes;
        if key.is_empty() {
            return Err(Error::EmptyKey);
        }
        if key.len() > max_key {
            return Err(Error::KeyTooLarge {
                len: key.len(),
                max: max_key,
            });
        }
        if let Some(value) = value
            && value.len() > self.opts.max_value_bytes
        {
            return Err(Error::ValueTooLarge {
                len: value.len(),
                max: self.opts.max_value_bytes,
            });
        }
        Ok(())
    }

    /// Reads `key` as of `now`; the keydir lock is released before copying.
    pub(crate) fn read(&self, key: &[u8], now: u64) -> Result<Option<Vec<u8>>> {
        // A lookup can race with compaction retiring the segment it found;
        // the keydir then already points at the new copy, so look again.
        for _ in 0..16 {
            let entry = self.keydir_read()?.get(key);
            let Some(e) = entry else { return Ok(None) };
            if e.is_expired(now) {
                return Ok(None);
            }
            let seg = self.segments_read()?.get(e.segment);
            match seg {
                Some(SegmentRef::Active(m)) => {
                    return m.read_value(e.offset, key).map(Some);
                }
                Some(SegmentRef::Sealed(s)) => return s.read_value(e.offset, key).map(Some),
                None => continue,
            }
        }
        Err(Error::ReadOnly {
            cause: Fault::Other {
                message: "a key's segment kept disappearing during reads".into(),
            },
        })
    }

    fn sweep_if_due(&self, now: u64) {
        let due = self.keydir_read().is_ok_and(|kd| kd.has_expired(now));
        if due && let Ok(mut kd) = self.keydir_write() {
            kd.sweep(now);
        }
    }

    fn sync_now(&self) -> Result<()> {
        self.lead();
        if self.opts.sync == SyncMode::Always {
            self.sync_unsynced(true);
        }
        self.sync_dirty()
    }

    /// Stops the threads, commits what is queued and syncs. Idempotent.
    fn shutdown(&self, threads: &Mutex<Threads>) -> Result<()> {
        if let Ok(mut q) = self.queue.lock() {
            q.shutdown = true;
        }
        self.queue_cv.notify_all();
        self.compaction.stop();
        let mut t = match threads.lock() {
            Ok(mut t) => std::mem::take(&mut *t),
            Err(p) => std::mem::take(&mut *p.into_inner()),
        };
        // In order: the background thread commits what was queued, the syncer
        // syncs it, the sealer finishes the rotations.
        join(t.background.take(), "background");
        if let Ok(mut u) = self.unsynced.lock() {
            u.shutdown = true;
        }
        self.syncer_cv.notify_all();
        join(t.syncer.take(), "syncer");
        if let Ok(mut q) = self.sealer.lock() {
            q.shutdown = true;
        }
        self.sealer_cv.notify_all();
        join(t.sealer.take(), "sealer");
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.sync_now().and_then(|()| self.cut_active());
        // Fail whatever was queued after the last commit.
        self.fail_queued(&Error::Closed);
        if let Ok(mut slot) = self.spare.lock()
            && let Some(s) = slot.spare.take()
        {
            s.discard(&*self.opts.fs);
        }
        match self.failure() {
            Some(cause) => result.and(Err(Error::ReadOnly { cause })),
            None => result,
        }
    }

    /// The background thread: commits async requests, expiry sweeps and
    /// compaction triggers.
    fn background(self: &Arc<Self>) {
        let sweep_every = self.opts.expiry_sweep_interval;
        let tick = sweep_every.min(Duration::from_millis(250));
        let mut last_sweep = Instant::now();
        loop {
            let has_work = {
                let Ok(mut q) = self.lock(&self.queue, "the write queue") else {
                    return;
                };
                if q.pending.is_empty() && !q.shutdown {
                    q = match self.queue_cv.wait_timeout(q, tick) {
                        Ok((q, _)) => q,
                        Err(_) => return,
                    };
                }
                if q.shutdown {
                    break;
                }
                !q.pending.is_empty()
            };
            if has_work {
                self.lead();
            }
            if last_sweep.elapsed() >= sweep_every {
                self.sweep_if_due(self.opts.clock.now_ms());
                last_sweep = Instant::now();
            }
            self.maybe_compact_in_background();
        }
        self.lead();
    }

    /// The syncer thread: under `Always`, syncs and publishes appended groups as
    /// they come (so the appender never waits for an fsync); under `Periodic`,
    /// syncs every interval; in every mode, checks each second that `wal.log`
    /// still has a name.
    fn syncer(self: &Arc<Self>) {
        let every = match self.opts.sync {
            SyncMode::Periodic(d) => Some(d),
            _ => None,
        };
        let tick = every.map_or(Duration::from_secs(1), |d| d.min(Duration::from_secs(1)));
        let (mut last_sync, mut last_check) = (Instant::now(), Instant::now());
        // Whether the last round left the groups to a thread already syncing:
        // that thread syncs until the queue is empty, so wait for a new group
        // rather than spin on its lock (which took a core from the writers).
        let mut left_to_other = false;
        loop {
            let shutdown = {
                let Ok(mut u) = self.lock(&self.unsynced, "the unsynced queue") else {
                    return;
                };
                if (u.is_empty() || left_to_other) && !u.shutdown {
                    let wait = if left_to_other {
                        tick.min(Duration::from_millis(20))
                    } else {
                        tick.saturating_sub(last_sync.elapsed().min(tick))
                    };
                    u = match self
                        .syncer_cv
                        .wait_timeout(u, wait.max(Duration::from_millis(1)))
                    {
                        Ok((u, _)) => u,
                        Err(_) => return,
                    };
                }
                u.shutdown
            };
            left_to_other = !self.sync_unsynced(false);
            if let Some(d) = every
                && last_sync.elapsed() >= d
            {
                let _ = self.sync_dirty();
                last_sync = Instant::now();
            }
            if last_check.elapsed() >= Duration::from_secs(1) {
                if let Ok(set) = self.segments_read() {
                    let active = Arc::clone(&set.active);
                    drop(set);
                    let _ = self.check_not_removed(&active);
                }
                last_check = Instant::now();
            }
            if shutdown {
                break;
            }
        }
    }
}

fn join(handle: Option<JoinHandle<()>>, name: &str) {
    if let Some(h) = handle
        && h.join().is_err()
    {
        tracing::error!(thread = name, "engine thread panicked");
    }
}
