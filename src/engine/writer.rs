//! The writer: group commit onto `wal.log`.
//!
//! Writes are queued as requests. Whoever holds the writer lock — a thread
//! calling [`Engine::apply`](super::Engine::apply), or the background thread on
//! behalf of async callers — takes everything queued and commits it as a group:
//!
//! 1. plan each request in order against the keydir plus an overlay of the
//!    group's earlier writes (so `created` flags and in-batch gets are exact);
//! 2. encode every record into one buffer (a request with more than one record
//!    is framed behind a batch marker);
//! 3. append the buffer with one write, then fsync once if the sync mode says so;
//! 4. publish: append to the memtable, then apply every record to the keydir
//!    under one write lock, so a batch becomes visible all at once;
//! 5. acknowledge every request; rotate `wal.log` if it reached the segment size.
//!
//! A failed write or fsync fails every request of the group and latches the
//! engine read-only: the page cache may have dropped what it failed to write.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::batch::{Expiry, Op, OpResult, Prior};
use super::error::{Error, Result};
use super::format::record::{self, RecordKind};
use super::keydir::Entry;
use super::memtable::Memtable;
use super::options::{MAX_SEGMENT_BYTES, SyncMode};
use super::segment::active::{ActiveSegment, build_hint, write_hint};
use super::segment::sealed::SealedSegment;
use super::stats::Counters;
use super::{SegmentId, Shared};

/// What a queued request's submitter waits on.
pub(crate) type Reply = Result<Vec<OpResult>>;

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
    /// Appended bytes not yet fsynced.
    pub dirty: bool,
    pub last_sync: Instant,
}

/// A record planned for the group, pointing into the group buffer.
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
type Pending = Option<std::ops::Range<usize>>;

#[derive(Default)]
struct Group {
    buf: Vec<u8>,
    pubs: Vec<Publication>,
    replies: Vec<(oneshot::Sender<Reply>, Vec<OpResult>)>,
    // The state of keys written by this group and not yet published.
    overlay: HashMap<Vec<u8>, Pending>,
}

impl Shared {
    /// Takes the writer lock and commits everything queued.
    pub(crate) fn lead(&self) {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        let requests =
            std::mem::take(&mut self.queue.lock().unwrap_or_else(|p| p.into_inner()).pending);
        if !requests.is_empty() {
            self.commit(&mut w, requests);
        }
    }

    /// Commits everything queued if no other thread is committing; otherwise
    /// leaves it to the background thread and returns at once.
    ///
    /// A caller whose request is already queued must not wait on the writer
    /// lock: every waiter would then pass through the lock one after another,
    /// each committing only what was queued meanwhile — about one fsync per
    /// write. Woken, the background thread takes the lock once the current
    /// group is done and commits everything queued by then as one group.
    pub(crate) fn lead_or_hand_off(&self) {
        let mut w = match self.writer.try_lock() {
            Ok(w) => w,
            Err(std::sync::TryLockError::Poisoned(p)) => p.into_inner(),
            Err(std::sync::TryLockError::WouldBlock) => {
                self.queue_cv.notify_one();
                return;
            }
        };
        let requests =
            std::mem::take(&mut self.queue.lock().unwrap_or_else(|p| p.into_inner()).pending);
        if !requests.is_empty() {
            self.commit(&mut w, requests);
        }
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
            let size = planned_size(&req.ops);
            let active_len = w.active.as_ref().map_or(0, ActiveSegment::len);
            if !g.replies.is_empty()
                && active_len + (g.buf.len() + size) as u64 > self.opts.segment_bytes
            {
                self.flush(w, &mut g, now);
            }
            let results = self.plan(&req.ops, &mut g, now, i == last);
            g.replies.push((req.reply, results));
        }
        self.flush(w, &mut g, now);
    }

    /// Step 1–2 for one request: results, records, overlay.
    fn plan(&self, ops: &[Op], g: &mut Group, now: u64, last_request: bool) -> Vec<OpResult> {
        let reply_index = g.replies.len();
        let writes = ops.iter().filter(|op| op.is_write()).count();
        let marker_at = g.buf.len();
        if writes > 1 {
            // Placeholder; rewritten below with the real record count.
            record::encode_batch_marker(&mut g.buf, 0);
        }
        let first_pub = g.pubs.len();
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
                    let value_at = self.push_record(g, key, RecordKind::Put, raw, value, slot);
                    if remember {
                        let live = !matches!(expiry, Expiry::At(t) if *t <= now);
                        g.overlay
                            .insert(key.clone(), live.then(|| value_at..value_at + value.len()));
                    }
                    results.push(OpResult::Put(prior));
                }
                Op::Delete { key } => {
                    let prior = self.prior(key, g, now);
                    if prior == Prior::Live {
                        self.push_record(g, key, RecordKind::Tombstone, 0, &[], None);
                        if remember {
                            g.overlay.insert(key.clone(), None);
                        }
                    }
                    results.push(OpResult::Delete(prior));
                }
                Op::Get { key } => {
                    let value = match g.overlay.get(key.as_slice()) {
                        Some(v) => Ok(v.clone().map(|r| g.buf[r].to_vec())),
                        None => self.read(key, now),
                    };
                    // A read failure inside a batch reads as absent rather than
                    // failing writes that are otherwise fine; it is logged.
                    let value = value.unwrap_or_else(|e| {
                        tracing::error!(error = %e, "read inside batch failed");
                        None
                    });
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
        results
    }

    fn prior(&self, key: &[u8], g: &Group, now: u64) -> Prior {
        let live = match g.overlay.get(key) {
            Some(state) => state.is_some(),
            None => self
                .keydir
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .get(key)
                .is_some_and(|e| !e.is_expired(now)),
        };
        live_prior(live)
    }

    /// Encodes a record into the group buffer; returns where its value starts.
    fn push_record(
        &self,
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

    /// Steps 3–5 for the group so far.
    fn flush(&self, w: &mut Writer, g: &mut Group, now: u64) {
        let replies = std::mem::take(&mut g.replies);
        let pubs = std::mem::take(&mut g.pubs);
        let mut replies = replies;
        g.overlay.clear();
        let buf = std::mem::take(&mut g.buf);
        if buf.is_empty() {
            for (tx, results) in replies {
                let _ = tx.send(Ok(results));
            }
            return;
        }
        // An earlier flush of this group may have failed after part of its bytes
        // reached wal.log: nothing may be appended (and acknowledged) after them.
        if let Some(cause) = self.failure() {
            for (tx, _) in replies {
                let _ = tx.send(Err(Error::ReadOnly {
                    cause: cause.clone(),
                }));
            }
            return;
        }
        if let Err(e) = self.append_and_sync(w, &buf, replies.len()) {
            self.latch(&e);
            for (tx, _) in replies {
                let _ = tx.send(Err(replicate(&e)));
            }
            return;
        }
        let Some(active) = w.active.as_ref() else {
            return;
        };
        let segment = active.id();
        let base = active.len() - buf.len() as u64;
        self.publish(segment, base, &buf, &pubs, &mut replies, now);
        Counters::add(&self.counters.writes, replies.len() as u64);
        for (tx, results) in replies {
            let _ = tx.send(Ok(results));
        }
        if active.len() >= self.opts.segment_bytes {
            self.rotate(w);
        }
    }

    fn append_and_sync(&self, w: &mut Writer, buf: &[u8], writes: usize) -> Result<()> {
        let active = w.active.as_mut().ok_or_else(|| Error::ReadOnly {
            cause: "no active segment after a failed rotation".into(),
        })?;
        if active.len() + buf.len() as u64 > 2 * MAX_SEGMENT_BYTES {
            return Err(Error::BatchTooLarge {
                len: buf.len() as u64,
                max: MAX_SEGMENT_BYTES,
            });
        }
        active.append(buf)?;
        Counters::add(&self.counters.disk_bytes, buf.len() as u64);
        let sync_now = match self.opts.sync {
            SyncMode::Always => true,
            SyncMode::Periodic(every) => w.last_sync.elapsed() >= every,
            SyncMode::Never => false,
        };
        if sync_now {
            self.sync_active(w, writes)
        } else {
            w.dirty = true;
            Ok(())
        }
    }

    /// fsyncs `wal.log`, counting and reporting it.
    pub(crate) fn sync_active(&self, w: &mut Writer, writes: usize) -> Result<()> {
        let Some(active) = w.active.as_mut() else {
            return Ok(());
        };
        let started = Instant::now();
        active.sync()?;
        let elapsed = started.elapsed();
        Counters::add(&self.counters.fsyncs, 1);
        if let Some(obs) = &self.opts.observer {
            obs.fsync(elapsed, writes);
        }
        w.dirty = false;
        w.last_sync = Instant::now();
        Ok(())
    }

    /// Step 4: memtable first, then the keydir, so a published entry is readable.
    fn publish(
        &self,
        segment: SegmentId,
        base: u64,
        buf: &[u8],
        pubs: &[Publication],
        replies: &mut [(oneshot::Sender<Reply>, Vec<OpResult>)],
        now: u64,
    ) {
        self.segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .active
            .append(buf);
        let mut kd = self.keydir.write().unwrap_or_else(|p| p.into_inner());
        for p in pubs {
            let key = &buf[p.key_at..p.key_at + p.key_len];
            let live = p.kind == RecordKind::Put && !(p.expiry != 0 && p.expiry <= now);
            let old = if live {
                // Offsets fit: segments are bounded by 2 × MAX_SEGMENT_BYTES < 4 GiB.
                let offset = u32::try_from(base + p.offset_in_buf as u64).unwrap_or(u32::MAX);
                kd.insert(
                    key,
                    Entry {
                        segment,
                        offset,
                        value_len: p.value_len,
                        expiry: p.expiry,
                    },
                )
            } else {
                kd.remove(key)
            };
            if let Some((r, o)) = p.prior_slot
                && let Some(slot) = replies.get_mut(r).and_then(|(_, res)| res.get_mut(o))
            {
                *slot = OpResult::Put(live_prior(old.is_some_and(|e| !e.is_expired(now))));
            }
        }
    }

    /// Seals `wal.log` and starts the next one (see `segment::active`).
    pub(crate) fn rotate(&self, w: &mut Writer) {
        let Some(active) = w.active.take() else {
            return;
        };
        let id = active.id();
        let fs = &*self.opts.fs;
        let memtable = Arc::clone(
            &self
                .segments
                .read()
                .unwrap_or_else(|p| p.into_inner())
                .active,
        );
        let sealed_path = match active.seal(fs, &self.dir) {
            Ok(p) => p,
            Err(e) => {
                // The memtable still serves every published key; writes stop.
                self.latch(&e);
                return;
            }
        };
        Counters::add(&self.counters.fsyncs, 1);
        let hint = memtable.with_bytes(|b| build_hint(id, b));
        if let Err(e) = write_hint(fs, &self.dir, id, &hint) {
            tracing::warn!(segment = %id, error = %e, "hint file not written; next open scans this segment");
        }
        let sealed = match SealedSegment::open(id, &sealed_path) {
            Ok(s) => Arc::new(s),
            Err(e) => {
                self.latch(&e);
                return;
            }
        };
        let next = id.next_generation();
        let (new_active, header) = match ActiveSegment::create(fs, &self.dir, next) {
            Ok(x) => x,
            Err(e) => {
                // Keep reads whole: the sealed map serves the old memtable's keys.
                self.segments
                    .write()
                    .unwrap_or_else(|p| p.into_inner())
                    .sealed
                    .insert(id, sealed);
                self.latch(&e);
                return;
            }
        };
        Counters::add(&self.counters.disk_bytes, header.len() as u64);
        Counters::add(&self.counters.segments, 1);
        let fresh = Arc::new(Memtable::new(
            next,
            header,
            super::memtable::capacity_for(self.opts.segment_bytes),
        ));
        {
            let mut set = self.segments.write().unwrap_or_else(|p| p.into_inner());
            set.sealed.insert(id, sealed);
            set.active = fresh;
        }
        w.active = Some(new_active);
        w.dirty = false;
        w.last_sync = Instant::now();
    }

    /// Syncs if the periodic interval has passed since the last sync.
    pub(crate) fn periodic_sync(&self, every: Duration) {
        let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
        if w.dirty
            && w.last_sync.elapsed() >= every
            && let Err(e) = self.sync_active(&mut w, 0)
        {
            self.latch(&e);
        }
    }

    /// Latches the engine read-only after `e`.
    pub(crate) fn latch(&self, e: &Error) {
        let mut f = self.failure.lock().unwrap_or_else(|p| p.into_inner());
        if f.is_none() {
            tracing::error!(error = %e, "I/O failure: engine is now read-only");
            *f = Some(e.to_string());
            self.counters
                .read_only
                .store(true, std::sync::atomic::Ordering::SeqCst);
        }
    }

    /// The failure that latched the engine, if any.
    pub(crate) fn failure(&self) -> Option<String> {
        if !self
            .counters
            .read_only
            .load(std::sync::atomic::Ordering::SeqCst)
        {
            return None;
        }
        self.failure
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn live_prior(live: bool) -> Prior {
    if live { Prior::Live } else { Prior::Absent }
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
fn replicate(e: &Error) -> Error {
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
            cause: other.to_string(),
        },
    }
}
