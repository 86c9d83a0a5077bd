//! The writer: group commit onto `wal.log`, pipelined with its fsync.
//!
//! Writes are queued as requests. Whoever holds the writer lock — a thread
//! calling [`Engine::apply`](super::Engine::apply), or the background thread on
//! behalf of async callers — takes everything queued and commits it as a group:
//!
//! 1. plan each request in order against the keydir, the groups appended but not
//!    yet synced, and an overlay of the group's earlier writes (so `created`
//!    flags, deletes and in-batch gets are exact);
//! 2. encode every record into one buffer (a request with more than one record
//!    is framed behind a batch marker);
//! 3. copy the buffer into `wal.log`'s mapping — no system call;
//! 4. sync per mode. `Always`: the group joins the *unsynced* queue and the
//!    writer lock is released at once, so group N+1 is planned and appended while
//!    group N's `fdatasync` runs; whoever holds the sync lock syncs every queued
//!    group with one `fdatasync` (and the directory, once after a rotation),
//!    then publishes them in log order and acknowledges them (through the relay:
//!    see [`Shared::relay`]). `Periodic`/`Never`: no
//!    sync here (the syncer thread syncs every interval in `Periodic`);
//! 5. publish: apply every record to the keydir under one write lock, so a batch
//!    becomes visible all at once; then acknowledge.
//!
//! A single put or delete with nothing else in flight takes [`Shared::write_one`]:
//! the same steps with no queue, no channel and no allocation.
//!
//! A failed fsync fails every request it covered and latches the engine
//! read-only (the page cache may have dropped what it failed to write). A segment
//! that cannot be allocated (a full disk) fails only the writes that needed it:
//! nothing was written, so later writes try again.
//!
//! Lock order: sync → writer → unsynced → keydir; writer → spare; writer → segments.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use super::batch::{Expiry, Op, OpResult, Prior};
use super::clock::LazyNow;
use super::error::{Error, Fault, Result};
use super::format::record::{self, RecordKind};
use super::keydir::{Entry, Key};
use super::memtable::Memtable;
use super::options::SyncMode;
use super::segment::active::ActiveSegment;
use super::stats::Counters;
use super::{SegmentId, Shared};

/// What a queued request's submitter waits on.
pub(crate) type Reply = Result<Vec<OpResult>>;

/// A request's reply channel and its results, once they are known.
type Ack = (oneshot::Sender<Reply>, Vec<OpResult>);

type Replies = Vec<Ack>;

/// Acknowledgements waiting to be sent, oldest first.
pub(crate) type Relay = VecDeque<Ack>;

/// Acknowledgements a thread sends at once from the relay: the thread that
/// synced a round, and then each waiter it woke. Waking a thread is a system
/// call (and on a VM often an interrupt to the other core); sent all by the
/// thread that synced, they held up its next fsync by ~4 µs each — at 64
/// writers a round's wakes took as long as its fsync. Relayed, each woken
/// waiter wakes a few more and the wakes spread over both cores in a tree.
/// 64 durable writers on 2 cores: 1 was slower, 2, 4 and 8 alike, 4 the
/// steadiest.
pub(crate) const RELAY_FANOUT: usize = 4;

/// A queued write request.
#[derive(Debug)]
pub(crate) struct Request {
    pub ops: Vec<Op>,
    pub reply: oneshot::Sender<Reply>,
}

/// State owned by whoever holds the writer lock.
#[derive(Debug)]
pub(crate) struct Writer {
    /// `None` once a failed rotation left no usable `wal.log`.
    pub active: Option<ActiveSegment>,
    /// The encoding buffer of [`Shared::write_one`], reused.
    scratch: Vec<u8>,
    /// Sequence number of the last group appended.
    seq: u64,
    /// The active segment whose successor the sealer was asked to make.
    spare_asked: Option<SegmentId>,
    /// How far the prefault thread was asked to populate `wal.log`.
    populated: super::prefault::Populated,
}

impl Writer {
    pub(crate) fn new(active: Option<ActiveSegment>) -> Writer {
        Writer {
            active,
            scratch: Vec::with_capacity(4096),
            seq: 0,
            spare_asked: None,
            populated: Default::default(),
        }
    }
}

/// Groups appended under `Always` whose covering fsync has not completed, in
/// log order, and the state of the keys they wrote.
#[derive(Debug, Default)]
pub(crate) struct Unsynced {
    groups: VecDeque<Appended>,
    keys: HashMap<Key, Written>,
    /// The write of [`Shared::write_one`]'s fast path while it syncs: older
    /// than every group (the fast path runs only when none is unsynced) and
    /// unpublished, so a group planned meanwhile must see it.
    fast: Option<(Key, Written)>,
    /// Set at close: the syncer drains what is left and stops.
    pub shutdown: bool,
}

impl Unsynced {
    pub(crate) fn is_empty(&self) -> bool {
        self.groups.is_empty()
    }

    /// True when no write appended under `Always` awaits publication: none
    /// queued, none in a sync round (drained from `groups`, keys still
    /// here), no fast-path write syncing. Only then may an answer that
    /// wrote nothing be sent at once: it may rest on any of them.
    fn settled(&self) -> bool {
        self.groups.is_empty() && self.keys.is_empty() && self.fast.is_none()
    }

    /// What the unpublished writes left `key` as, newest first.
    fn written(&self, key: &[u8]) -> Option<&Written> {
        self.keys
            .get(super::keydir::KeySlice::new(key))
            .or_else(|| {
                self.fast
                    .as_ref()
                    .filter(|(k, _)| &k[..] == key)
                    .map(|(_, w)| w)
            })
    }
}

/// A key's state as an unsynced group left it.
#[derive(Debug)]
struct Written {
    seq: u64,
    /// `Some((memtable, offset))` of a live put, `None` for a delete.
    value: Option<(Arc<Memtable>, u32)>,
}

/// A group in `wal.log`, awaiting its fsync.
#[derive(Debug)]
struct Appended {
    seq: u64,
    memtable: Arc<Memtable>,
    base: u64,
    buf: Vec<u8>,
    pubs: Vec<Publication>,
    replies: Replies,
}

/// A record planned for the group, pointing into the group buffer.
#[derive(Debug)]
struct Publication {
    kind: RecordKind,
    expiry: u64,
    offset_in_buf: usize,
    /// Where the key lies in the group buffer.
    key_at: usize,
    key_len: usize,
    value_len: u32,
    /// A put's result whose `Prior` is read off the keydir at publish time
    /// (reply index, op index): one descent of the keydir instead of two.
    prior_slot: Option<(usize, usize)>,
}

/// A key's state as written earlier in the same group: `Some(range)` of its
/// value in the group buffer, or `None` when deleted or already expired.
type InGroup = Option<std::ops::Range<usize>>;

#[derive(Default)]
struct Group {
    buf: Vec<u8>,
    pubs: Vec<Publication>,
    replies: Replies,
    // The state of keys written by this group and not yet appended.
    overlay: HashMap<Vec<u8>, InGroup>,
}

/// What a key was before a planned write, as far as planning can tell.
enum Seen {
    Absent,
    Live(Option<Vec<u8>>),
}

impl Shared {
    /// Takes the writer lock and commits everything queued.
    pub(crate) fn lead(&self) {
        match self.lock(&self.writer, "the writer lock") {
            Ok(mut w) => {
                let requests = self.take_queued();
                if !requests.is_empty() {
                    self.commit(&mut w, requests);
                }
            }
            Err(e) => self.fail_queued(&e),
        }
    }

    /// Commits everything queued if no other thread is committing; otherwise
    /// leaves it to the background thread. Returns whether it committed.
    ///
    /// A caller whose request is already queued must not wait on the writer
    /// lock: every waiter would then pass through the lock one after another,
    /// each committing only what was queued meanwhile.
    pub(crate) fn lead_or_hand_off(&self) -> bool {
        let mut w = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(_)) => {
                let e = self.poisoned("the writer lock");
                self.fail_queued(&e);
                return true;
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                self.queue_cv.notify_one();
                return false;
            }
        };
        let requests = self.take_queued();
        if !requests.is_empty() {
            self.commit(&mut w, requests);
        }
        true
    }

    fn take_queued(&self) -> Vec<Request> {
        match self.queue.lock() {
            Ok(mut q) => {
                self.queued.store(false, Ordering::Release);
                std::mem::take(&mut q.pending)
            }
            // A poisoned queue holds only requests; failing them is all we do.
            Err(p) => {
                self.latch_fault(Fault::Panic {
                    place: "the write queue",
                    message: "a panic while the queue was held".into(),
                });
                let mut q = p.into_inner();
                self.queued.store(false, Ordering::Release);
                std::mem::take(&mut q.pending)
            }
        }
    }

    /// Fails every queued request with `e`.
    pub(crate) fn fail_queued(&self, e: &Error) {
        for r in self.take_queued() {
            let _ = r.reply.send(Err(replicate(e)));
        }
    }

    /// Step 1–5 for one put or tombstone with no queue, channel or allocation,
    /// when nothing else is in flight; `None` sends the caller to the queue.
    pub(crate) fn write_one(
        &self,
        kind: RecordKind,
        key: &[u8],
        value: &[u8],
        expiry: u64,
    ) -> Option<Result<Prior>> {
        let always = self.opts.sync == SyncMode::Always;
        // Held through the fsync so no later group publishes before this one.
        let _sync = if always {
            Some(self.sync_lock.try_lock().ok()?)
        } else {
            None
        };
        let mut guard = self.writer.try_lock().ok()?;
        let w = &mut *guard;
        // The flag, not the lock: a lock round trip is two more atomics.
        if self.queued.load(Ordering::Acquire) {
            return None;
        }
        if always && !self.unsynced.lock().ok()?.is_empty() {
            return None;
        }
        if let Some(cause) = self.failure() {
            return Some(Err(Error::ReadOnly { cause }));
        }
        let now = LazyNow::new(&*self.opts.clock);
        if kind == RecordKind::Tombstone {
            let live = match self.keydir_read() {
                Ok(kd) => kd.get(key).is_some_and(|e| !now.passed(e.expiry)),
                Err(e) => return Some(Err(e)),
            };
            if !live {
                return Some(Ok(Prior::Absent));
            }
        }
        if kind == RecordKind::Put
            && let Ok(kd) = self.keydir_read()
        {
            // The publish's lookup then finds its line loaded (or on its way).
            kd.prefetch(key);
        }
        let mut buf = std::mem::take(&mut w.scratch);
        buf.clear();
        record::encode(&mut buf, kind, expiry, key, value);
        // A buffered write needs only the segment's id: no reference-count
        // round trip (each atomic waits for the record's stores to drain).
        let keep = |m: &Arc<Memtable>| (m.id(), always.then(|| Arc::clone(m)));
        let ((segment, memtable), base) = match self.append_group(w, &buf, keep) {
            Ok(x) => x,
            Err(e) => {
                w.scratch = buf;
                return Some(Err(e));
            }
        };
        let p = Publication {
            kind,
            expiry,
            offset_in_buf: 0,
            key_at: buf.len() - value.len() - key.len(),
            key_len: key.len(),
            value_len: record::len_u32(value.len()),
            prior_slot: None,
        };
        let prior = |old: Option<Entry>| live_prior(old.is_some_and(|e| !now.passed(e.expiry)));
        let Some(memtable) = memtable else {
            let old = self.publish_one(segment, base, &buf, &p, &now);
            w.scratch = buf;
            return Some(old.map(prior));
        };
        // Groups planned while this write syncs must see it (see `Unsynced::fast`).
        match self.lock(&self.unsynced, "the unsynced queue") {
            Ok(mut u) => {
                let value =
                    (kind == RecordKind::Put).then(|| (Arc::clone(&memtable), offset_u32(base)));
                u.fast = Some((Key::from_slice(key), Written { seq: 0, value }));
            }
            Err(e) => return Some(Err(e)),
        }
        // Let the next group append while this one syncs.
        drop(guard);
        let started = Instant::now();
        if let Err(e) = self
            .sync_memtable(&memtable)
            .and_then(|()| self.check_not_removed(&memtable))
        {
            self.latch(&e);
            if let Ok(mut u) = self.unsynced.lock() {
                u.fast = None;
            }
            return Some(Err(e));
        }
        let elapsed = started.elapsed();
        let old = self.publish_one(segment, base, &buf, &p, &now);
        if let Ok(mut u) = self.unsynced.lock() {
            u.fast = None;
        }
        drop(_sync);
        if let Ok(mut w) = self.writer.try_lock() {
            w.scratch = buf;
        }
        // Groups appended while this one synced: nobody else may be syncing.
        if self.unsynced.lock().is_ok_and(|u| !u.is_empty()) {
            self.sync_unsynced(false);
        }
        self.observe_fsync(Some(elapsed), 1);
        Some(old.map(prior))
    }

    fn commit(&self, w: &mut Writer, requests: Vec<Request>) {
        if let Some(cause) = self.failure() {
            for r in requests {
                let _ = r.reply.send(Err(Error::ReadOnly {
                    cause: cause.clone(),
                }));
            }
            return;
        }
        let now = self.opts.clock.now_ms();
        let mut g = Group::default();
        let last = requests.len().saturating_sub(1);
        for (i, req) in requests.into_iter().enumerate() {
            let size = planned_size(&req.ops) as u64;
            let room = w.active.as_ref().map_or(0, ActiveSegment::room);
            if !g.replies.is_empty() && g.buf.len() as u64 + size > room {
                self.flush(w, &mut g, now);
            }
            match self.plan(&req.ops, &mut g, now, i == last) {
                Ok(results) => g.replies.push((req.reply, results)),
                Err(e) => {
                    let _ = req.reply.send(Err(e));
                }
            }
        }
        self.flush(w, &mut g, now);
    }

    /// Step 1–2 for one request: results, records, overlay.
    fn plan(
        &self,
        ops: &[Op],
        g: &mut Group,
        now: u64,
        last_request: bool,
    ) -> Result<Vec<OpResult>> {
        let reply_index = g.replies.len();
        let writes = ops.iter().filter(|op| op.is_write()).count();
        let marker_at = g.buf.len();
        let first_pub = g.pubs.len();
        if writes > 1 {
            // Placeholder; rewritten below with the real record count.
            record::encode_batch_marker(&mut g.buf, 0);
        }
        let mut results = Vec::with_capacity(ops.len());
        for (op_index, op) in ops.iter().enumerate() {
            // Nothing after the group's very last operation can consult the overlay.
            let remember = !(last_request && op_index + 1 == ops.len());
            match op {
                Op::Put { key, value, expiry } => {
                    // Known from the overlay, or read off the keydir when published.
                    let (prior, slot) = match g.overlay.get(key.as_slice()) {
                        Some(state) => (live_prior(state.is_some()), None),
                        None => (Prior::Absent, Some((reply_index, op_index))),
                    };
                    let raw = expiry.to_raw();
                    let value_at = push_record(g, key, RecordKind::Put, raw, value, slot);
                    if remember {
                        let live = !matches!(expiry, Expiry::At(t) if *t <= now);
                        g.overlay
                            .insert(key.clone(), live.then(|| value_at..value_at + value.len()));
                    }
                    results.push(OpResult::Put(prior));
                }
                Op::Delete { key } => {
                    let prior = match self.seen(key, g, now, false) {
                        Ok(Seen::Live(_)) => Prior::Live,
                        Ok(Seen::Absent) => Prior::Absent,
                        Err(e) => {
                            g.buf.truncate(marker_at);
                            g.pubs.truncate(first_pub);
                            return Err(e);
                        }
                    };
                    // A delete of an absent key writes nothing — except inside
                    // a batch when the sync mode may leave earlier writes
                    // unsynced: the key may read as absent only because of an
                    // unsynced earlier delete, which a power loss can drop
                    // while the batch's other records survive (writeback keeps
                    // no order); the batch's own tombstone keeps it whole.
                    let keep = writes > 1 && self.opts.sync != SyncMode::Always;
                    if prior == Prior::Live || keep {
                        push_record(g, key, RecordKind::Tombstone, 0, &[], None);
                        if remember {
                            g.overlay.insert(key.clone(), None);
                        }
                    }
                    results.push(OpResult::Delete(prior));
                }
                Op::Get { key } => {
                    // A read failure inside a batch reads as absent rather than
                    // failing writes that are otherwise fine; it is logged.
                    let value = match self.seen(key, g, now, true) {
                        Ok(Seen::Live(v)) => v,
                        Ok(Seen::Absent) => None,
                        Err(e) => {
                            tracing::error!(error = %e, "read inside batch failed");
                            None
                        }
                    };
                    results.push(OpResult::Get(value));
                }
            }
        }
        let records = g.pubs.len() - first_pub;
        if writes > 1 {
            if records > 1 {
                let mut marker = Vec::with_capacity(record::BATCH_MARKER_LEN);
                record::encode_batch_marker(
                    &mut marker,
                    u32::try_from(records).unwrap_or(u32::MAX),
                );
                g.buf[marker_at..marker_at + marker.len()].copy_from_slice(&marker);
            } else {
                // Deletes of absent keys left at most one record: no framing needed.
                let marker_len = record::BATCH_MARKER_LEN;
                g.buf.drain(marker_at..marker_at + marker_len);
                for p in &mut g.pubs[first_pub..] {
                    p.offset_in_buf -= marker_len;
                    p.key_at -= marker_len;
                }
                for state in g.overlay.values_mut() {
                    if let Some(r) = state.as_mut().filter(|r| r.start > marker_at) {
                        *r = r.start - marker_len..r.end - marker_len;
                    }
                }
            }
        }
        Ok(results)
    }

    /// The state of `key` before the op being planned: this group's overlay,
    /// then the unsynced groups, then the keydir. `value`: fetch it (a get).
    fn seen(&self, key: &[u8], g: &Group, now: u64, value: bool) -> Result<Seen> {
        if let Some(state) = g.overlay.get(key) {
            return Ok(match state {
                Some(r) => Seen::Live(value.then(|| g.buf[r.clone()].to_vec())),
                None => Seen::Absent,
            });
        }
        if self.opts.sync == SyncMode::Always {
            let u = self.lock(&self.unsynced, "the unsynced queue")?;
            if let Some(w) = u.written(key) {
                return match &w.value {
                    None => Ok(Seen::Absent),
                    Some((m, offset)) => {
                        let rec = super::segment::record_at(m.id(), m.bytes(), *offset)?;
                        if rec.expiry != 0 && rec.expiry <= now {
                            Ok(Seen::Absent)
                        } else {
                            Ok(Seen::Live(value.then(|| rec.value.to_vec())))
                        }
                    }
                };
            }
        }
        if value {
            return Ok(match self.read(key, Some(now))? {
                Some(v) => Seen::Live(Some(v)),
                None => Seen::Absent,
            });
        }
        let live = self
            .keydir_read()?
            .get(key)
            .is_some_and(|e| !e.is_expired(now));
        Ok(if live { Seen::Live(None) } else { Seen::Absent })
    }

    /// Steps 3–5 for the group so far.
    fn flush(&self, w: &mut Writer, g: &mut Group, now: u64) {
        let mut replies = std::mem::take(&mut g.replies);
        let pubs = std::mem::take(&mut g.pubs);
        g.overlay.clear();
        let buf = std::mem::take(&mut g.buf);
        let always = self.opts.sync == SyncMode::Always;
        if let Some(cause) = self.failure() {
            for (tx, _) in replies {
                let _ = tx.send(Err(Error::ReadOnly {
                    cause: cause.clone(),
                }));
            }
            return;
        }
        if buf.is_empty() {
            // Nothing to write; under `Always` the answer may rest on unsynced
            // groups, so it waits its turn behind them.
            let unsynced = always && self.unsynced.lock().is_ok_and(|u| !u.settled());
            if !unsynced {
                return send_all(replies);
            }
        }
        let (memtable, base) = if buf.is_empty() {
            match self.segments_read() {
                Ok(set) => (Arc::clone(&set.active), 0),
                Err(e) => return fail_all(replies, &e),
            }
        } else {
            match self.append_group(w, &buf, Arc::clone) {
                Ok(x) => x,
                Err(e) => return fail_all(replies, &e),
            }
        };
        if always {
            w.seq += 1;
            let seq = w.seq;
            let mut u = match self.lock(&self.unsynced, "the unsynced queue") {
                Ok(u) => u,
                Err(e) => return fail_all(replies, &e),
            };
            for p in &pubs {
                let live = p.kind == RecordKind::Put;
                let offset = offset_u32(base + p.offset_in_buf as u64);
                u.keys.insert(
                    Key::from_slice(&buf[p.key_at..p.key_at + p.key_len]),
                    Written {
                        seq,
                        value: live.then(|| (Arc::clone(&memtable), offset)),
                    },
                );
            }
            u.groups.push_back(Appended {
                seq,
                memtable,
                base,
                buf,
                pubs,
                replies,
            });
            drop(u);
            self.syncer_cv.notify_one();
            return;
        }
        if let Err(e) = self.publish(memtable.id(), base, &buf, &pubs, &mut replies, now) {
            return fail_all(replies, &e);
        }
        Counters::add(&self.counters.writes, replies.len() as u64);
        send_all(replies);
    }

    /// Step 3: copies `buf` into `wal.log`, rotating first if it does not fit
    /// and after if the segment is full. Returns where it went: what `keep`
    /// takes of the memtable written to, and the offset.
    fn append_group<T>(
        &self,
        w: &mut Writer,
        buf: &[u8],
        keep: impl FnOnce(&Arc<Memtable>) -> T,
    ) -> Result<(T, u64)> {
        let n = buf.len() as u64;
        let room = match w.active.as_ref() {
            Some(a) => a.room(),
            None => return Err(self.no_active()),
        };
        if n > room {
            self.rotate(w, n)?;
        }
        let active = w.active.as_mut().ok_or_else(|| self.no_active())?;
        let base = active.len();
        active.append(buf)?;
        Counters::add(&self.counters.disk_bytes, n);
        let kept = keep(active.memtable());
        if let Some((from, len)) = active.writeback_due() {
            let memtable = Arc::clone(active.memtable());
            if self.prefaults() {
                self.start_writeback_in_background(&memtable, from, len);
                active.writeback_started(from + len);
            } else if memtable.try_with_file(|f| f.start_sync(from, len)) {
                // Skipped if a sync holds the file: that sync writes them anyway.
                active.writeback_started(from + len);
            }
        }
        if self.prefaults() {
            let len = usize::try_from(active.len()).unwrap_or(usize::MAX);
            self.prefault_ahead(&mut w.populated, active.memtable(), len);
        }
        if active.len() * 2 >= active.capacity() && w.spare_asked != Some(active.id()) {
            w.spare_asked = Some(active.id());
            self.want_spare();
        }
        if active.len() >= self.opts.segment_bytes {
            // The group is in the file either way; a failed rotation latched.
            let _ = self.rotate(w, 0);
        }
        Ok((kept, base))
    }

    pub(super) fn no_active(&self) -> Error {
        Error::ReadOnly {
            cause: self.failure().unwrap_or(Fault::Other {
                message: "no active segment after a failed rotation".into(),
            }),
        }
    }

    /// Syncs every unsynced group with one fdatasync per segment, then publishes
    /// them in log order and acknowledges them (step 4–5 under `Always`); again
    /// while more groups arrived meanwhile.
    ///
    /// If another thread is syncing, returns at once (unless `wait`): that
    /// thread goes round again before it lets go of the sync lock and finds the
    /// groups appended meanwhile — callers must not queue on the sync lock, or
    /// each would sync only what arrived while it waited (a convoy of fsyncs).
    /// Returns false when it left the groups to that other thread.
    ///
    /// Whichever way it returns, it first sends what the relay holds: no
    /// round of its may follow to move it on.
    pub(crate) fn sync_unsynced(&self, wait: bool) -> bool {
        let all = self.sync_rounds(wait);
        self.relay(usize::MAX);
        all
    }

    fn sync_rounds(&self, wait: bool) -> bool {
        loop {
            let guard = if wait {
                match self.sync_lock.lock() {
                    Ok(g) => g,
                    Err(_) => {
                        let e = self.poisoned("the sync lock");
                        self.fail_unsynced(&e);
                        return true;
                    }
                }
            } else {
                match self.sync_lock.try_lock() {
                    Ok(g) => g,
                    Err(std::sync::TryLockError::WouldBlock) => return false,
                    Err(std::sync::TryLockError::Poisoned(_)) => {
                        let e = self.poisoned("the sync lock");
                        self.fail_unsynced(&e);
                        return true;
                    }
                }
            };
            self.sync_round(guard);
            match self.unsynced.lock() {
                Ok(u) if !u.is_empty() => continue,
                _ => return true,
            }
        }
    }

    /// One round of [`sync_unsynced`](Self::sync_unsynced), under the sync lock.
    fn sync_round(&self, sync: std::sync::MutexGuard<'_, ()>) {
        let groups: Vec<Appended> = match self.unsynced.lock() {
            Ok(mut u) => u.groups.drain(..).collect(),
            Err(_) => {
                drop(sync);
                let e = self.poisoned("the unsynced queue");
                self.fail_unsynced(&e);
                return;
            }
        };
        if groups.is_empty() {
            return;
        }
        let started = Instant::now();
        let mut result = Ok(());
        let mut synced: Option<&Arc<Memtable>> = None;
        for g in &groups {
            if synced.is_some_and(|m| Arc::ptr_eq(m, &g.memtable)) {
                continue;
            }
            synced = Some(&g.memtable);
            result = self
                .sync_memtable(&g.memtable)
                .and_then(|()| self.check_not_removed(&g.memtable));
            if result.is_err() {
                break;
            }
        }
        let elapsed = started.elapsed();
        let writes: usize = groups.iter().map(|g| g.replies.len()).sum();
        let now = self.opts.clock.now_ms();
        let mut done = Vec::with_capacity(groups.len());
        for mut g in groups {
            let published = result.as_ref().map_err(replicate).and_then(|()| {
                self.publish(
                    g.memtable.id(),
                    g.base,
                    &g.buf,
                    &g.pubs,
                    &mut g.replies,
                    now,
                )
            });
            done.push((g, published));
        }
        if let Err(e) = &result {
            self.latch(e);
        }
        self.forget_unsynced(done.iter().map(|(g, _)| g));
        drop(sync);
        let mut acks = Replies::new();
        for (g, published) in done {
            match published {
                Ok(()) => {
                    Counters::add(&self.counters.writes, g.replies.len() as u64);
                    acks.extend(g.replies);
                }
                Err(e) => fail_all(g.replies, &e),
            }
        }
        self.acknowledge(acks);
        if result.is_ok() {
            self.observe_fsync(Some(elapsed), writes);
        }
    }

    /// Drops the unsynced-key entries of `groups` (published or failed), unless
    /// a later group wrote the key again.
    fn forget_unsynced<'a>(&self, groups: impl Iterator<Item = &'a Appended>) {
        let Ok(mut u) = self.unsynced.lock() else {
            return;
        };
        for g in groups {
            for p in &g.pubs {
                let key = super::keydir::KeySlice::new(&g.buf[p.key_at..p.key_at + p.key_len]);
                if u.keys.get(key).is_some_and(|w| w.seq == g.seq) {
                    u.keys.remove(key);
                }
            }
        }
    }

    /// Fails every unsynced group with `e` (the sync path itself broke).
    fn fail_unsynced(&self, e: &Error) {
        let groups: Vec<Appended> = match self.unsynced.lock() {
            Ok(mut u) => {
                u.keys.clear();
                u.groups.drain(..).collect()
            }
            Err(p) => {
                let mut u = p.into_inner();
                u.keys.clear();
                u.groups.drain(..).collect()
            }
        };
        for g in groups {
            fail_all(g.replies, e);
        }
    }

    /// Sends `acks` (synced and published writes): [`RELAY_FANOUT`] now, the
    /// rest through the relay, for the waiters woken to pass on. What the
    /// last round left there is sent first: a dropped future passes nothing
    /// on, so no acknowledgement waits longer than one round.
    ///
    /// Every write acknowledged here was published first, all of the round
    /// in log order: the order the acknowledgements reach their threads in
    /// tells nothing, as between any two writes in flight at once.
    fn acknowledge(&self, mut acks: Replies) {
        let rest = acks.split_off(RELAY_FANOUT.min(acks.len()));
        if rest.is_empty() && !self.relaying.load(Ordering::Acquire) {
            return send_all(acks);
        }
        let mut relay = self.relay_queue();
        let mut now: Replies = relay.drain(..).collect();
        now.append(&mut acks);
        relay.extend(rest);
        self.relaying.store(!relay.is_empty(), Ordering::Release);
        drop(relay);
        send_all(now);
    }

    /// Sends up to `n` acknowledgements waiting in the relay, oldest first.
    /// Called by each waiter once woken (blocking or a future), and by a
    /// syncing thread when it stops (so the relay never holds an
    /// acknowledgement nobody will send: a dropped future passes none on).
    pub(crate) fn relay(&self, n: usize) {
        if !self.relaying.load(Ordering::Acquire) {
            return;
        }
        let mut relay = self.relay_queue();
        let take = n.min(relay.len());
        let batch: Replies = relay.drain(..take).collect();
        self.relaying.store(!relay.is_empty(), Ordering::Release);
        drop(relay);
        send_all(batch);
    }

    fn relay_queue(&self) -> std::sync::MutexGuard<'_, Relay> {
        // Plain data under the lock: a poisoned one is still whole.
        self.relay
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// fsyncs `m` (and first the directory, if a rotation named it), counting it.
    pub(crate) fn sync_memtable(&self, m: &Memtable) -> Result<()> {
        if m.take_dir_unsynced()
            && let Err(e) = self.opts.fs.sync_dir(&self.dir)
        {
            m.restore_dir_unsynced();
            return Err(Error::io("syncing directory", &self.dir, e));
        }
        m.sync()?;
        Counters::add(&self.counters.fsyncs, 1);
        Ok(())
    }

    /// Tells the embedder's observer about an fsync, outside every engine lock;
    /// a panic in it latches the engine like any panic on an engine path.
    fn observe_fsync(&self, elapsed: Option<std::time::Duration>, writes: usize) {
        let (Some(elapsed), Some(obs)) = (elapsed, &self.opts.observer) else {
            return;
        };
        let call = std::panic::AssertUnwindSafe(|| obs.fsync(elapsed, writes));
        if let Err(payload) = std::panic::catch_unwind(call) {
            self.latch_fault(Fault::panic("the fsync observer", &*payload));
        }
    }

    /// Step 5 for one record of [`write_one`](Self::write_one); returns the entry it replaced.
    fn publish_one(
        &self,
        segment: SegmentId,
        base: u64,
        buf: &[u8],
        p: &Publication,
        now: &LazyNow<'_>,
    ) -> Result<Option<Entry>> {
        let key = &buf[p.key_at..p.key_at + p.key_len];
        let mut kd = self.keydir_write()?;
        let old = if p.kind == RecordKind::Put && !now.passed(p.expiry) {
            kd.insert(key, entry(segment, base, p))
        } else {
            kd.remove(key)
        };
        drop(kd);
        Counters::add(&self.counters.writes, 1);
        Ok(old)
    }

    /// Step 5: every record of a group to the keydir under one write lock.
    fn publish(
        &self,
        segment: SegmentId,
        base: u64,
        buf: &[u8],
        pubs: &[Publication],
        replies: &mut Replies,
        now: u64,
    ) -> Result<()> {
        let mut kd = self.keydir_write()?;
        for p in pubs {
            let key = &buf[p.key_at..p.key_at + p.key_len];
            let live = p.kind == RecordKind::Put && !(p.expiry != 0 && p.expiry <= now);
            let old = if live {
                kd.insert(key, entry(segment, base, p))
            } else {
                kd.remove(key)
            };
            if let Some((r, o)) = p.prior_slot
                && let Some(slot) = replies.get_mut(r).and_then(|(_, res)| res.get_mut(o))
            {
                *slot = OpResult::Put(live_prior(old.is_some_and(|e| !e.is_expired(now))));
            }
        }
        Ok(())
    }

    /// Syncs the active memtable if it has unsynced bytes (`Periodic`, `sync()`).
    pub(crate) fn sync_dirty(&self) -> Result<()> {
        let _sync = self.lock(&self.sync_lock, "the sync lock")?;
        let memtables: Vec<Arc<Memtable>> = {
            let set = self.segments_read()?;
            set.sealing
                .values()
                .chain(std::iter::once(&set.active))
                .cloned()
                .collect()
        };
        let mut synced = None;
        for m in memtables {
            if m.is_dirty() {
                let started = Instant::now();
                self.sync_memtable(&m).inspect_err(|e| self.latch(e))?;
                synced = Some(started.elapsed());
            }
        }
        drop(_sync);
        self.observe_fsync(synced, 0);
        Ok(())
    }
}

/// Encodes a record into the group buffer; returns where its value starts.
fn push_record(
    g: &mut Group,
    key: &[u8],
    kind: RecordKind,
    expiry: u64,
    value: &[u8],
    prior_slot: Option<(usize, usize)>,
) -> usize {
    let offset_in_buf = g.buf.len();
    record::encode(&mut g.buf, kind, expiry, key, value);
    let value_at = g.buf.len() - value.len();
    g.pubs.push(Publication {
        kind,
        expiry,
        offset_in_buf,
        key_at: value_at - key.len(),
        key_len: key.len(),
        value_len: record::len_u32(value.len()),
        prior_slot,
    });
    value_at
}

fn entry(segment: SegmentId, base: u64, p: &Publication) -> Entry {
    Entry {
        segment,
        offset: offset_u32(base + p.offset_in_buf as u64),
        value_len: p.value_len,
        expiry: p.expiry,
    }
}

/// Offsets fit: segments are bounded by `MAX_SEGMENT_BYTES` plus a header < 4 GiB.
fn offset_u32(offset: u64) -> u32 {
    u32::try_from(offset).unwrap_or(u32::MAX)
}

fn live_prior(live: bool) -> Prior {
    if live { Prior::Live } else { Prior::Absent }
}

fn send_all(acks: Replies) {
    for (tx, results) in acks {
        let _ = tx.send(Ok(results));
    }
}

fn fail_all(replies: Replies, e: &Error) {
    for (tx, _) in replies {
        let _ = tx.send(Err(replicate(e)));
    }
}

/// Encoded size of a request's records, at most (deletes may write nothing).
pub(crate) fn planned_size(ops: &[Op]) -> usize {
    let writes = ops.iter().filter(|op| op.is_write()).count();
    let marker = if writes > 1 {
        record::BATCH_MARKER_LEN
    } else {
        0
    };
    marker
        + ops
            .iter()
            .map(|op| match op {
                Op::Put { key, value, expiry } => {
                    record::encoded_len(key.len(), value.len(), expiry.to_raw())
                }
                Op::Delete { key } => record::encoded_len(key.len(), 0, 0),
                Op::Get { .. } => 0,
            })
            .sum::<usize>()
}

/// One error for each waiter of a failed group (io::Error is not Clone).
pub(crate) fn replicate(e: &Error) -> Error {
    match e {
        Error::Io {
            action,
            path,
            source,
        } => Error::Io {
            action,
            path: path.clone(),
            source: std::io::Error::new(source.kind(), source.to_string()),
        },
        other => Error::ReadOnly {
            cause: Fault::of(other),
        },
    }
}
