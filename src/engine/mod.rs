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
mod key;
pub mod keydir;
pub mod memtable;
pub mod migrate;
pub mod options;
mod readonly;
pub mod recovery;
pub mod segment;
pub mod stats;
mod writer;

use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::task::{Context, Poll};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

pub use batch::{Batch, Expiry, Op, OpResult, Prior};
pub use compaction::CompactionReport;
pub use error::{Error, Result};
pub use options::{Observer, Options, SyncMode};
pub use recovery::RecoveryReport;
pub use stats::Stats;

use keydir::Keydir;
use segment::{SegmentRef, SegmentSet};
use stats::Counters;
use writer::{Reply, Request, Writer};

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
    failure: Mutex<Option<String>>,
    counters: Counters,
    closed: AtomicBool,
    compaction: compaction::State,
    access: recovery::Mode,
    _lock: Option<dir::DirLock>,
}

/// Stops the background thread and syncs when the last handle goes away.
#[derive(Debug)]
struct Guard {
    shared: Arc<Shared>,
    background: Mutex<Option<JoinHandle<()>>>,
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
pub struct Pending(PendingState);

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
        match self.0 {
            PendingState::Ready(r) => r.unwrap_or(Err(Error::Closed)),
            PendingState::Waiting(rx) => rx.recv().unwrap_or(Err(Error::Closed)),
            PendingState::Polling(rx) => futures_block_on(rx),
            PendingState::Done => Err(Error::Closed),
        }
    }
}

impl Future for Pending {
    type Output = Result<Vec<OpResult>>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let state = &mut self.get_mut().0;
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
                    return Pin::new(rx)
                        .poll(cx)
                        .map(|r| r.unwrap_or(Err(Error::Closed)));
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
            writer: Mutex::new(Writer {
                active: rec.active,
                dirty: false,
                last_sync: Instant::now(),
            }),
            queue: Mutex::new(Queue::default()),
            queue_cv: Condvar::new(),
            failure: Mutex::new(None),
            counters,
            closed: AtomicBool::new(false),
            compaction: compaction::State::default(),
            access,
            _lock: lock,
            dir,
        });
        // A read-only engine has nothing to commit, sync or compact.
        let handle = match access {
            recovery::Mode::Write => {
                let bg = Arc::clone(&shared);
                let h = std::thread::Builder::new()
                    .name("kvstore-engine".into())
                    .spawn(move || bg.background())
                    .map_err(|e| Error::io("spawning background thread for", &shared.dir, e))?;
                Some(h)
            }
            recovery::Mode::ReadOnly => None,
        };
        let guard = Arc::new(Guard {
            shared: Arc::clone(&shared),
            background: Mutex::new(handle),
        });
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
        let mut b = Batch::new();
        b.put_with_expiry(key, value, expiry);
        single_prior(self.apply(b)?)
    }

    /// Sets `key` to `value`, expiring `ttl` from now.
    pub fn put_with_ttl(&self, key: &[u8], value: &[u8], ttl: Duration) -> Result<Prior> {
        self.put_with_expiry(key, value, Expiry::after(self.now_ms(), ttl))
    }

    /// Removes `key`; says whether a live value existed.
    pub fn delete(&self, key: &[u8]) -> Result<Prior> {
        let mut b = Batch::new();
        b.delete(key);
        single_prior(self.apply(b)?)
    }

    /// Applies `batch` atomically, blocking until it is acknowledged. Results are
    /// in operation order.
    pub fn apply(&self, batch: Batch) -> Result<Vec<OpResult>> {
        let pending = self.enqueue(batch)?;
        self.shared.lead_or_hand_off();
        pending.wait()
    }

    /// Queues `batch` for the writer and returns at once. Await the result (it
    /// never blocks an async runtime's thread) or [`Pending::wait`] for it.
    /// Validation errors are reported when the result is taken.
    pub fn submit(&self, batch: Batch) -> Pending {
        match self.enqueue(batch) {
            Ok(p) => {
                self.shared.queue_cv.notify_one();
                p
            }
            Err(e) => Pending(PendingState::Ready(Some(Err(e)))),
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
        let mut q = self.shared.queue.lock().unwrap_or_else(|p| p.into_inner());
        // Checked under the queue lock: shutdown drains the queue under it too,
        // so no request can slip in after the last drain and wait forever.
        if q.shutdown {
            return Err(Error::Closed);
        }
        q.pending.push(Request {
            ops: batch.ops,
            reply: tx,
        });
        Ok(Pending(PendingState::Waiting(rx)))
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
        let kd = self.shared.keydir.read().unwrap_or_else(|p| p.into_inner());
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

    /// The store's figures, in O(1) (expired keys due for a sweep are swept first,
    /// so they are never counted).
    pub fn stats(&self) -> Stats {
        let s = &self.shared;
        let now = s.opts.clock.now_ms();
        s.sweep_if_due(now);
        let kd = s.keydir.read().unwrap_or_else(|p| p.into_inner());
        let disk = Counters::get(&s.counters.disk_bytes);
        Stats {
            live_keys: kd.len() as u64,
            live_value_bytes: kd.live_value_bytes(),
            disk_bytes: disk,
            dead_bytes: disk.saturating_sub(kd.live_record_bytes()),
            segments: Counters::get(&s.counters.segments),
            fsyncs: Counters::get(&s.counters.fsyncs),
            writes: Counters::get(&s.counters.writes),
            compactions: Counters::get(&s.counters.compactions),
            reclaimed_bytes: Counters::get(&s.counters.reclaimed_bytes),
            last_compaction_ms: Counters::get(&s.counters.last_compaction_ms),
            read_only: s.counters.read_only.load(Ordering::SeqCst),
        }
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
fn futures_block_on(mut rx: oneshot::AsyncReceiver<Reply>) -> Reply {
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
            Poll::Ready(r) => return r.unwrap_or(Err(Error::Closed)),
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

    fn validate(&self, batch: &Batch) -> Result<()> {
        let max_key = self.opts.max_key_bytes;
        let max_value = self.opts.max_value_bytes;
        for op in &batch.ops {
            let key = op.key();
            if key.is_empty() {
                return Err(Error::EmptyKey);
            }
            if key.len() > max_key {
                return Err(Error::KeyTooLarge {
                    len: key.len(),
                    max: max_key,
                });
            }
            if let Op::Put { value, .. } = op
                && value.len() > max_value
            {
                return Err(Error::ValueTooLarge {
                    len: value.len(),
                    max: max_value,
                });
            }
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

    /// Reads `key` as of `now`; the keydir lock is released before copying.
    pub(crate) fn read(&self, key: &[u8], now: u64) -> Result<Option<Vec<u8>>> {
        // A lookup can race with compaction retiring the segment it found;
        // the keydir then already points at the new copy, so look again.
        for _ in 0..16 {
            let entry = self
                .keydir
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(key);
            let Some(e) = entry else { return Ok(None) };
            if e.is_expired(now) {
                return Ok(None);
            }
            let seg = self
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(e.segment);
            match seg {
                Some(SegmentRef::Active(m)) => {
                    return m.read_value(e.offset, key).map(Some);
                }
                Some(SegmentRef::Sealed(s)) => return s.read_value(e.offset, key).map(Some),
                None => continue,
            }
        }
        Err(Error::ReadOnly {
            cause: "a key's segment kept disappearing during reads".into(),
        })
    }

    fn sweep_if_due(&self, now: u64) {
        if self
            .keydir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .has_expired(now)
        {
            self.keydir
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .sweep(now);
        }
    }

    fn sync_now(&self) -> Result<()> {
        self.lead();
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.dirty
            && let Err(e) = self.sync_active(&mut w, 0)
        {
            self.latch(&e);
            return Err(e);
        }
        Ok(())
    }

    /// Stops the background thread, commits what is queued and syncs. Idempotent.
    fn shutdown(&self, background: &Mutex<Option<JoinHandle<()>>>) -> Result<()> {
        {
            let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
            q.shutdown = true;
        }
        self.queue_cv.notify_all();
        self.compaction.stop();
        let handle = background.lock().unwrap_or_else(|p| p.into_inner()).take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("engine background thread panicked");
        }
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        let result = self.sync_now();
        // Fail whatever was queued after the last commit.
        let rest =
            std::mem::take(&mut self.queue.lock().unwrap_or_else(|p| p.into_inner()).pending);
        for r in rest {
            let _ = r.reply.send(Err(Error::Closed));
        }
        result
    }

    /// The background thread: commits async requests, periodic fsyncs, expiry
    /// sweeps and compaction triggers.
    fn background(self: Arc<Self>) {
        let sweep_every = self.opts.expiry_sweep_interval;
        let tick = match self.opts.sync {
            SyncMode::Periodic(d) => d.min(sweep_every),
            _ => sweep_every,
        }
        .min(Duration::from_millis(250));
        let mut last_sweep = Instant::now();
        loop {
            let has_work = {
                let mut q = self.queue.lock().unwrap_or_else(|p| p.into_inner());
                if q.pending.is_empty() && !q.shutdown {
                    q = self
                        .queue_cv
                        .wait_timeout(q, tick)
                        .map(|(g, _)| g)
                        .unwrap_or_else(|p| p.into_inner().0);
                }
                if q.shutdown {
                    break;
                }
                !q.pending.is_empty()
            };
            if has_work {
                self.lead();
            }
            if let SyncMode::Periodic(every) = self.opts.sync {
                self.periodic_sync(every);
            }
            if last_sweep.elapsed() >= sweep_every {
                self.sweep_if_due(self.opts.clock.now_ms());
                last_sweep = Instant::now();
            }
            self.maybe_compact_in_background();
        }
        self.lead();
    }
}
