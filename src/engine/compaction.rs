//! Compaction: rewriting the live records of sealed segments into new segments
//! so the space of dead records (overwritten, deleted, expired) is reclaimed.
//!
//! Steps (DESIGN.md, "Compaction"), with the crash-safety argument of each:
//! 1. (on demand only) seal `wal.log` so its dead records can be reclaimed too;
//! 2. take every sealed segment as input — all of history older than `wal.log`,
//!    so a tombstone or expired record can be dropped: no older record of its
//!    key survives outside the inputs;
//! 3. walk the keydir for entries pointing into an input (and not expired), sort
//!    them by location, and copy those records byte for byte, checksum verified,
//!    into outputs `<id>.seg.tmp` + `<id>.hint.tmp`, fsynced. A damaged live
//!    record fails the compaction (nothing changes; reads keep reporting it as
//!    corrupt) rather than vanish with its input. Output
//!    ids lie between the newest input and `wal.log`, so on recovery an output
//!    overrides the inputs and is overridden by anything written since. Killed
//!    here: the `.tmp` files are removed at open, inputs untouched;
//! 4. write the manifest `COMPACTION` (inputs, outputs) atomically, then rename the
//!    outputs into place. Killed here: open finds the manifest; if not every
//!    output is in place it removes the outputs (roll back), else step 6;
//! 5. swap in memory: add outputs to the segment set, move each keydir entry that
//!    still points where it did (a write made meanwhile keeps its newer
//!    location) in short write-locked chunks, then drop the inputs from the set;
//! 6. delete inputs oldest first, then the manifest. Killed here: open finishes
//!    the deletions. Deleting oldest first keeps the surviving inputs a suffix of
//!    history, so no tombstone is ever gone while a value it hides remains.
//!
//! Readers holding an input keep reading it through its mapping; the mapping is
//! released with the last reader, and no file descriptor stays open per segment.

use std::ops::Range;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::dir::{self, Listing};
use super::error::{Error, Result};
use super::format::hint::{HintEntry, HintStream};
use super::format::record::{self, RecordKind, RecordRef};
use super::format::{FILE_HEADER_LEN, FileHeader, FileKind};
use super::fs::{AppendFile, Fs};
use super::keydir::{Entry, Key};
use super::options::Options;
use super::segment::active::{create_empty, write_file_atomically};
use super::segment::sealed::SealedSegment;
use super::segment::{corrupt, record_at};
use super::stats::Counters;
use super::{Engine, SegmentId, Shared};

/// The manifest of a compaction whose outputs are being put in place.
pub const MANIFEST: &str = "COMPACTION";
const MANIFEST_HEADER: &str = "kvstore compaction manifest v1";
/// Keydir entries moved per write-lock hold during the swap.
const SWAP_CHUNK: usize = 4096;
/// Records copied between checks for a close.
const STOP_CHECK_EVERY: usize = 4096;
/// Bytes of an output buffered before a write(2).
const OUTPUT_BUF: usize = 1 << 20;

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CompactionReport {
    /// Disk bytes freed (inputs' size minus outputs' size).
    pub reclaimed_bytes: u64,
    /// Segment files (including `wal.log`) before.
    pub segments_before: u64,
    /// Segment files (including `wal.log`) after.
    pub segments_after: u64,
    /// Bytes of live records rewritten.
    pub live_bytes_rewritten: u64,
    /// Wall time, in ms.
    pub duration_ms: u64,
    /// Of that, ms spent finding the live records and copying them into
    /// outputs made durable (the rest: sealing `wal.log`, the swap, retiring).
    pub rewrite_ms: u64,
    /// Of that, ms spent deleting the inputs.
    pub retire_ms: u64,
}

/// Compaction bookkeeping shared with the background thread.
#[derive(Debug, Default)]
pub(crate) struct State {
    running: Mutex<()>,
    background: Mutex<Option<JoinHandle<()>>>,
    stopping: AtomicBool,
    // Dead bytes left after the last compaction: the background trigger waits
    // until this many plus `compaction_min_bytes` have accumulated, so dead bytes
    // that compaction cannot reach (in wal.log) do not make it spin.
    dead_after_last: AtomicU64,
}

impl State {
    /// Asks a running compaction to stop and waits for the background one.
    pub(crate) fn stop(&self) {
        self.stopping.store(true, Ordering::SeqCst);
        let handle = self
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .take();
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("compaction thread panicked");
        }
    }
}

/// An output segment written as `.tmp` files, not yet in place.
struct Output {
    id: SegmentId,
    len: u64,
}

impl Engine {
    /// Compacts now: seals `wal.log`, then rewrites every sealed segment's live
    /// records. Blocks the caller (not writers) for the duration.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.shared.check_open()?;
        self.shared.compact(true)
    }
}

impl Shared {
    /// Starts a background compaction when dead bytes pass both thresholds.
    pub(crate) fn maybe_compact_in_background(self: &Arc<Self>) {
        if !self.opts.background_compaction || self.compaction.stopping.load(Ordering::SeqCst) {
            return;
        }
        let disk = Counters::get(&self.counters.disk_bytes);
        let dead = self.dead_bytes();
        let floor = self.compaction.dead_after_last.load(Ordering::Relaxed);
        let due = dead as f64 > self.opts.compaction_ratio * disk as f64
            && dead > self.opts.compaction_min_bytes
            && dead >= floor.saturating_add(self.opts.compaction_min_bytes);
        if !due {
            return;
        }
        let mut slot = self
            .compaction
            .background
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        if slot.as_ref().is_some_and(|h| !h.is_finished()) {
            return;
        }
        if let Some(h) = slot.take() {
            let _ = h.join();
        }
        let me = Arc::clone(self);
        let spawned = std::thread::Builder::new()
            .name("kvstore-compaction".into())
            .spawn(move || match me.compact(false) {
                Ok(r) => tracing::info!(?r, "background compaction finished"),
                Err(e) => {
                    // Retrying at once would most likely fail the same way (a
                    // damaged record stays damaged): wait for more dead bytes.
                    me.compaction
                        .dead_after_last
                        .store(me.dead_bytes(), Ordering::Relaxed);
                    tracing::warn!(error = %e, "background compaction failed");
                }
            });
        match spawned {
            Ok(h) => *slot = Some(h),
            Err(e) => tracing::warn!(error = %e, "could not start compaction thread"),
        }
    }

    /// Disk bytes not holding a live record.
    fn dead_bytes(&self) -> u64 {
        let live = self
            .keydir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .live_record_bytes();
        Counters::get(&self.counters.disk_bytes).saturating_sub(live)
    }

    fn compact(&self, on_demand: bool) -> Result<CompactionReport> {
        let _one_at_a_time = self
            .compaction
            .running
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let started = Instant::now();
        if let Some(cause) = self.failure() {
            return Err(Error::ReadOnly { cause });
        }
        let segments_before = Counters::get(&self.counters.segments);
        if on_demand {
            self.seal_active_now()?;
            if let Some(cause) = self.failure() {
                return Err(Error::ReadOnly { cause });
            }
        }
        let inputs: Vec<Arc<SealedSegment>> = self
            .segments
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .sealed
            .values()
            .cloned()
            .collect();
        let Some(newest) = inputs.last().map(|s| s.id()) else {
            return Ok(CompactionReport {
                segments_before,
                segments_after: segments_before,
                duration_ms: elapsed_ms(started),
                ..CompactionReport::default()
            });
        };
        let mut moves: Vec<Move> = Vec::new();
        let rewrite_started = Instant::now();
        let outputs = match self.write_outputs(&inputs, newest, &mut moves) {
            Ok(o) => o,
            Err(e) => {
                self.remove_tmp_outputs(newest);
                return Err(e);
            }
        };
        let rewrite_ms = elapsed_ms(rewrite_started);
        let input_ids: Vec<SegmentId> = inputs.iter().map(|s| s.id()).collect();
        let output_ids: Vec<SegmentId> = outputs.iter().map(|o| o.id).collect();
        self.install(&input_ids, &output_ids).inspect_err(|_| {
            self.remove_tmp_outputs(newest);
        })?;
        self.swap(&inputs, &outputs, &moves)?;
        let input_bytes: u64 = inputs.iter().map(|s| s.len()).sum();
        let output_bytes: u64 = outputs.iter().map(|o| o.len).sum();
        drop(inputs);
        let retire_started = Instant::now();
        // Inputs left on disk (with the manifest naming them) must not outlive
        // this process's next compaction, which would replace the manifest and
        // drop tombstones hiding their values: stop writing; the next open
        // finishes the deletions.
        self.retire(&input_ids).inspect_err(|e| self.latch(e))?;
        let retire_ms = elapsed_ms(retire_started);

        let c = &self.counters;
        Counters::add(&c.compactions, 1);
        let reclaimed = input_bytes.saturating_sub(output_bytes);
        Counters::add(&c.reclaimed_bytes, reclaimed);
        let duration_ms = elapsed_ms(started);
        c.last_compaction_ms.store(duration_ms, Ordering::Relaxed);
        self.compaction
            .dead_after_last
            .store(self.dead_bytes(), Ordering::Relaxed);
        Ok(CompactionReport {
            reclaimed_bytes: reclaimed,
            segments_before,
            segments_after: Counters::get(&c.segments),
            live_bytes_rewritten: output_bytes
                .saturating_sub(FILE_HEADER_LEN as u64 * outputs.len() as u64),
            duration_ms,
            rewrite_ms,
            retire_ms,
        })
    }

    /// Step 3: copy live records into `.tmp` outputs; fills `moves`, in key order.
    fn write_outputs(
        &self,
        inputs: &[Arc<SealedSegment>],
        newest: SegmentId,
        moves: &mut Vec<Move>,
    ) -> Result<Vec<Output>> {
        let now = self.opts.clock.now_ms();
        moves.reserve(self.keydir.read().unwrap_or_else(|p| p.into_inner()).len());
        let per_input = self.collect_live(inputs, now, moves)?;
        let workers = self.opts.compaction_threads.max(1);
        // Copy in file order, so inputs are read sequentially and each output
        // keeps the relative order of its records. The copy reads only `order`
        // and the inputs: touching `moves` (in key order) from it cost a cache
        // miss per record. Groups of consecutive inputs are ordered in parallel
        // and concatenated.
        let order = std::thread::scope(|scope| -> Result<Vec<Vec<Slot>>> {
            let moves: &[Move] = moves;
            let handles: Vec<_> = input_groups(&per_input, workers)
                .into_iter()
                .map(|group| scope.spawn(move || file_order(inputs, moves, group)))
                .collect();
            handles.into_iter().map(join_worker).collect()
        })?
        .concat();
        let plan = self.plan_outputs(&order, newest)?;

        // Each worker writes and syncs whole outputs; `placed[n]` says where
        // `order[n]` went.
        let mut placed = vec![Placed::default(); order.len()];
        let mut jobs: Vec<(&OutputPlan, &[Slot], &mut [Placed])> = Vec::new();
        let mut rest = placed.as_mut_slice();
        for p in &plan {
            let (mine, tail) = rest.split_at_mut(p.slots.len());
            jobs.push((p, &order[p.slots.clone()], mine));
            rest = tail;
        }
        let workers = workers.min(plan.len().max(1));
        let mut shares: Vec<Vec<_>> = (0..workers).map(|_| Vec::new()).collect();
        for (n, job) in jobs.into_iter().enumerate() {
            shares[n % workers].push(job);
        }
        let mut outputs = std::thread::scope(|scope| -> Result<Vec<Vec<Output>>> {
            let handles: Vec<_> = shares
                .into_iter()
                .map(|share| {
                    scope.spawn(move || -> Result<Vec<Output>> {
                        share
                            .into_iter()
                            .map(|(p, slots, placed)| self.write_output(inputs, p, slots, placed))
                            .collect()
                    })
                })
                .collect();
            handles.into_iter().map(join_worker).collect()
        })?
        .into_iter()
        .flatten()
        .collect::<Vec<_>>();
        outputs.sort_by_key(|o| o.id);

        for p in &plan {
            for n in p.slots.clone() {
                let m = &mut moves[order[n].index as usize];
                m.to = p.id;
                m.offset = placed[n].offset;
                m.check = placed[n].check;
            }
        }
        verify_moves(moves)?;
        Ok(outputs)
    }

    /// Splits `order` into outputs of at most `segment_bytes` (or one record).
    fn plan_outputs(&self, order: &[Slot], newest: SegmentId) -> Result<Vec<OutputPlan>> {
        let mut plan = Vec::new();
        let mut start = 0;
        let mut len = FILE_HEADER_LEN as u64;
        for (n, s) in order.iter().enumerate() {
            if n > start && len + u64::from(s.len) > self.opts.segment_bytes {
                plan.push((start..n, len));
                start = n;
                len = FILE_HEADER_LEN as u64;
            }
            len += u64::from(s.len);
        }
        if order.len() > start {
            plan.push((start..order.len(), len));
        }
        plan.into_iter()
            .enumerate()
            .map(|(k, (slots, len))| {
                Ok(OutputPlan {
                    id: self.output_id(newest, newest.0 + 1 + k as u64)?,
                    slots,
                    len,
                })
            })
            .collect()
    }

    /// Copies the records `slots` names into the output `plan` describes,
    /// made durable.
    fn write_output(
        &self,
        inputs: &[Arc<SealedSegment>],
        plan: &OutputPlan,
        slots: &[Slot],
        placed: &mut [Placed],
    ) -> Result<Output> {
        let mut out = self.create_output(plan)?;
        for (n, (slot, placed)) in slots.iter().zip(placed).enumerate() {
            if n % STOP_CHECK_EVERY == 0 && self.compaction.stopping.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            let input = &inputs[slot.input as usize];
            let (rec, bytes) = put_record_bytes(input, slot.offset, slot.len)?;
            placed.offset = out.push(&rec, bytes)?;
            placed.check = fingerprint(rec.key, record::len_u32(rec.value.len()), rec.expiry);
        }
        out.finish()
    }

    /// Every unexpired keydir entry that points into an input, in key order;
    /// returns how many point into each input.
    /// Walking the keydir costs one descent per chunk, where looking up each
    /// scanned record cost one random descent per record, live or dead.
    fn collect_live(
        &self,
        inputs: &[Arc<SealedSegment>],
        now: u64,
        moves: &mut Vec<Move>,
    ) -> Result<Vec<usize>> {
        let ids: Vec<SegmentId> = inputs.iter().map(|s| s.id()).collect();
        let mut per_input = vec![0; ids.len()];
        let mut after: Option<Key> = None;
        loop {
            if self.compaction.stopping.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            let mut visited = 0;
            let mut last = None;
            {
                // A short read-lock hold per chunk keeps writers waiting briefly.
                let kd = self.keydir.read().unwrap_or_else(|p| p.into_inner());
                kd.scan(b"", after.as_deref(), now, |key, e| {
                    if let Ok(input) = ids.binary_search(&e.segment) {
                        per_input[input] += 1;
                        moves.push(Move {
                            key: Key::from_slice(key),
                            old: *e,
                            to: e.segment,
                            offset: e.offset,
                            check: 0,
                        });
                    }
                    visited += 1;
                    if visited == SWAP_CHUNK {
                        last = Some(Key::from_slice(key));
                        return false;
                    }
                    true
                });
            }
            match last {
                Some(k) => after = Some(k),
                None => return Ok(per_input),
            }
        }
    }

    fn create_output(&self, plan: &OutputPlan) -> Result<OutputFile> {
        let id = plan.id;
        let count = u32::try_from(plan.slots.len())
            .map_err(|_| too_many("more than 2^32 live keys to compact"))?;
        let mut buf = Vec::with_capacity(OUTPUT_BUF);
        FileHeader {
            kind: FileKind::Segment,
            segment: id,
        }
        .encode(&mut buf);
        Ok(OutputFile {
            id,
            seg: TmpFile::create(&*self.opts.fs, dir::segment_path(&self.dir, id))?,
            hint_file: TmpFile::create(&*self.opts.fs, dir::hint_path(&self.dir, id))?,
            buf,
            hint: HintStream::new(id, plan.len, count),
        })
    }

    fn output_id(&self, newest: SegmentId, candidate: u64) -> Result<SegmentId> {
        if candidate >= newest.next_generation().0 {
            return Err(Error::InvalidOption {
                name: "compaction",
                reason: "no segment id left below wal.log; write more data before compacting again",
            });
        }
        Ok(SegmentId(candidate))
    }

    /// Step 4: manifest, then outputs into place.
    fn install(&self, inputs: &[SegmentId], outputs: &[SegmentId]) -> Result<()> {
        let fs = &*self.opts.fs;
        let manifest = self.dir.join(MANIFEST);
        write_file_atomically(
            fs,
            &self.dir,
            &manifest,
            encode_manifest(inputs, outputs).as_bytes(),
        )?;
        let renamed = (|| {
            for &id in outputs {
                for path in [
                    dir::segment_path(&self.dir, id),
                    dir::hint_path(&self.dir, id),
                ] {
                    let tmp = dir::tmp_path(&path);
                    fs.rename(&tmp, &path)
                        .map_err(|e| Error::io("installing compacted", &tmp, e))?;
                }
            }
            fs.sync_dir(&self.dir)
                .map_err(|e| Error::io("syncing directory", &self.dir, e))
        })();
        if let Err(e) = renamed {
            // Roll back now if we can; otherwise the next open does (manifest).
            let undo = (|| -> std::io::Result<()> {
                for &id in outputs {
                    remove_if_present(fs, &dir::segment_path(&self.dir, id))?;
                    remove_if_present(fs, &dir::hint_path(&self.dir, id))?;
                }
                fs.remove_file(&manifest)?;
                fs.sync_dir(&self.dir)
            })();
            if let Err(u) = undo {
                // Outputs and manifest may be left in place: as after a failed
                // retirement, only the next open may decide what they mean.
                tracing::warn!(error = %u, "could not roll back compaction; the next open will");
                self.latch(&Error::io("rolling back compaction", &self.dir, u));
            }
            return Err(e);
        }
        Ok(())
    }

    /// Step 5: the in-memory swap.
    fn swap(
        &self,
        inputs: &[Arc<SealedSegment>],
        outputs: &[Output],
        moves: &[Move],
    ) -> Result<()> {
        let mut mapped = Vec::with_capacity(outputs.len());
        for o in outputs {
            let seg = SealedSegment::open(o.id, &dir::segment_path(&self.dir, o.id)).inspect_err(
                |e| {
                    // The outputs are in place on disk but unusable here: keep serving
                    // the inputs, and let the next open finish from the manifest.
                    self.latch(e);
                },
            )?;
            mapped.push(Arc::new(seg));
        }
        {
            let mut set = self.segments.write().unwrap_or_else(|p| p.into_inner());
            for seg in mapped {
                set.sealed.insert(seg.id(), seg);
            }
        }
        for chunk in moves.chunks(SWAP_CHUNK) {
            self.keydir
                .write()
                .unwrap_or_else(|p| p.into_inner())
                .relocate_sorted(chunk.iter().map(|m| (&m.key, &m.old, m.new_entry())));
        }
        let c = &self.counters;
        {
            let mut set = self.segments.write().unwrap_or_else(|p| p.into_inner());
            for seg in inputs {
                set.sealed.remove(&seg.id());
            }
        }
        Counters::add(&c.segments, outputs.len() as u64);
        Counters::add(&c.disk_bytes, outputs.iter().map(|o| o.len).sum());
        Ok(())
    }

    /// Step 6: delete inputs oldest first, then the manifest.
    fn retire(&self, inputs: &[SegmentId]) -> Result<()> {
        let fs = &*self.opts.fs;
        let c = &self.counters;
        for &id in inputs {
            let seg = dir::segment_path(&self.dir, id);
            let len = std::fs::metadata(&seg).map(|m| m.len()).unwrap_or(0);
            remove_if_present(fs, &dir::hint_path(&self.dir, id))
                .and_then(|()| remove_if_present(fs, &seg))
                .map_err(|e| Error::io("removing compacted", &seg, e))?;
            Counters::sub(&c.disk_bytes, len);
            Counters::sub(&c.segments, 1);
        }
        let manifest = self.dir.join(MANIFEST);
        fs.sync_dir(&self.dir)
            .and_then(|()| fs.remove_file(&manifest))
            .and_then(|()| fs.sync_dir(&self.dir))
            .map_err(|e| Error::io("removing", &manifest, e))
    }

    fn remove_tmp_outputs(&self, newest: SegmentId) {
        let end = newest.next_generation().0;
        let Ok(listing) = std::fs::read_dir(&self.dir) else {
            return;
        };
        for ent in listing.flatten() {
            let name = ent.file_name();
            let Some(name) = name.to_str() else { continue };
            let Some(stem) = name.strip_suffix(dir::TMP_SUFFIX) else {
                continue;
            };
            let Some((id, _)) = stem.split_once('.') else {
                continue;
            };
            if u64::from_str_radix(id, 16).is_ok_and(|id| id > newest.0 && id < end) {
                let _ = std::fs::remove_file(ent.path());
            }
        }
    }
}

/// An output being filled: its two `.tmp` files, the segment bytes not yet
/// written, and its hint.
struct OutputFile {
    id: SegmentId,
    seg: TmpFile,
    hint_file: TmpFile,
    buf: Vec<u8>,
    hint: HintStream,
}

impl OutputFile {
    /// Appends a record (its exact bytes) and its hint entry; returns its offset.
    fn push(&mut self, rec: &RecordRef<'_>, bytes: &[u8]) -> Result<u32> {
        let len = self.seg.written + self.buf.len() as u64;
        let offset = u32::try_from(len).map_err(|_| Error::BatchTooLarge {
            len,
            max: u64::from(u32::MAX),
        })?;
        if self.buf.len() + bytes.len() > OUTPUT_BUF {
            self.seg.append(&self.buf)?;
            self.buf.clear();
        }
        self.buf.extend_from_slice(bytes);
        self.hint.push(&HintEntry {
            kind: RecordKind::Put,
            expiry: rec.expiry,
            offset,
            value_len: record::len_u32(rec.value.len()),
            key: rec.key,
        });
        if self.hint.pending_len() > OUTPUT_BUF {
            let file = &mut self.hint_file;
            self.hint.take(|b| file.append(b))?;
        }
        Ok(offset)
    }

    /// Writes the rest of both files and makes them durable.
    fn finish(mut self) -> Result<Output> {
        self.seg.append(&self.buf)?;
        let rest = self.hint.finish().ok_or_else(|| {
            Error::io(
                "writing",
                &self.hint_file.path,
                std::io::Error::other("fewer hint entries than planned"),
            )
        })?;
        self.hint_file.append(&rest)?;
        self.seg.sync()?;
        self.hint_file.sync()?;
        Ok(Output {
            id: self.id,
            len: self.seg.written,
        })
    }
}

/// A `.tmp` file being written from its start.
struct TmpFile {
    path: PathBuf,
    file: Box<dyn AppendFile>,
    written: u64,
}

impl TmpFile {
    /// Creates (or empties) the `.tmp` of `path`.
    fn create(fs: &dyn Fs, path: PathBuf) -> Result<TmpFile> {
        let path = dir::tmp_path(&path);
        Ok(TmpFile {
            file: create_empty(fs, &path)?,
            path,
            written: 0,
        })
    }

    fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io("writing", &self.path, e))?;
        // Writeback of what is written runs beside the copy of what follows.
        self.file.start_sync(self.written, bytes.len() as u64);
        self.written += bytes.len() as u64;
        Ok(())
    }

    fn sync(&mut self) -> Result<()> {
        self.file
            .sync()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }
}

/// A live record being moved: its key, the keydir entry it had, and where it
/// was copied, with a check that the record copied is the one the keydir named.
struct Move {
    key: Key,
    old: Entry,
    to: SegmentId,
    offset: u32,
    check: u32,
}

impl Move {
    fn new_entry(&self) -> Entry {
        Entry {
            segment: self.to,
            offset: self.offset,
            ..self.old
        }
    }
}

/// Every move was copied (outputs and inputs never share an id), and copied
/// from the record its keydir entry named.
fn verify_moves(moves: &[Move]) -> Result<()> {
    for m in moves {
        if m.to == m.old.segment || m.check != fingerprint(&m.key, m.old.value_len, m.old.expiry) {
            return Err(corrupt(
                m.old.segment,
                m.old.offset,
                super::format::DecodeError::Invalid {
                    field: "record key",
                    value: m.key.len() as u64,
                },
            ));
        }
    }
    Ok(())
}

fn fingerprint(key: &[u8], value_len: u32, expiry: u64) -> u32 {
    let mut h = crc32fast::Hasher::new();
    h.update(key);
    h.update(&value_len.to_le_bytes());
    h.update(&expiry.to_le_bytes());
    h.finalize()
}

/// The put record at `offset` in `input`, `len` bytes long as its keydir entry
/// says, and its exact bytes, checksum verified.
fn put_record_bytes(
    input: &SealedSegment,
    offset: u32,
    len: u32,
) -> Result<(RecordRef<'_>, &[u8])> {
    let rec = record_at(input.id(), input.bytes(), offset)?;
    if rec.kind != RecordKind::Put || rec.encoded_len() != len as usize {
        return Err(corrupt(
            input.id(),
            offset,
            super::format::DecodeError::Invalid {
                field: "record kind or length",
                value: rec.encoded_len() as u64,
            },
        ));
    }
    // Present: the record decoded from these bytes.
    let start = offset as usize;
    let bytes = input
        .bytes()
        .get(start..start + rec.encoded_len())
        .unwrap_or_default();
    Ok((rec, bytes))
}

/// Splits inputs into at most `workers` runs of consecutive inputs holding
/// about equal numbers of the live records (`per_input`).
fn input_groups(per_input: &[usize], workers: usize) -> Vec<Range<usize>> {
    let total: usize = per_input.iter().sum();
    let share = total.div_ceil(workers.max(1)).max(1);
    let mut groups = Vec::new();
    let (mut start, mut acc) = (0, 0);
    for (i, n) in per_input.iter().enumerate() {
        acc += n;
        if acc >= share && groups.len() + 1 < workers {
            groups.push(start..i + 1);
            (start, acc) = (i + 1, 0);
        }
    }
    if start < per_input.len() {
        groups.push(start..per_input.len());
    }
    groups
}

/// The moves into inputs `group`, sorted by location.
fn file_order(
    inputs: &[Arc<SealedSegment>],
    moves: &[Move],
    group: Range<usize>,
) -> Result<Vec<Slot>> {
    let mut order = Vec::new();
    for (i, m) in moves.iter().enumerate() {
        // `collect_live` took only entries pointing into an input.
        let Ok(input) = inputs.binary_search_by_key(&m.old.segment, |s| s.id()) else {
            continue;
        };
        if group.contains(&input) {
            order.push(Slot {
                input: u32::try_from(input)
                    .map_err(|_| too_many("more than 2^32 segments to compact"))?,
                offset: m.old.offset,
                len: record::len_u32(record::encoded_len(
                    m.key.len(),
                    m.old.value_len as usize,
                    m.old.expiry,
                )),
                index: u32::try_from(i)
                    .map_err(|_| too_many("more than 2^32 live keys to compact"))?,
            });
        }
    }
    order.sort_unstable_by_key(|s| u64::from(s.input) << 32 | u64::from(s.offset));
    Ok(order)
}

/// A worker's result; a worker's panic is this thread's.
fn join_worker<T>(h: std::thread::ScopedJoinHandle<'_, Result<T>>) -> Result<T> {
    h.join().unwrap_or_else(|p| std::panic::resume_unwind(p))
}

/// A live record to copy, in the order records are copied (by location).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Slot {
    input: u32,
    offset: u32,
    len: u32,
    /// Index into the moves.
    index: u32,
}

/// Where in its output a record was copied, and a check of what was copied.
#[derive(Debug, Clone, Copy, Default)]
struct Placed {
    offset: u32,
    check: u32,
}

/// An output to write: its id, the range of `order` it holds, and its length.
struct OutputPlan {
    id: SegmentId,
    slots: Range<usize>,
    len: u64,
}

fn too_many(reason: &'static str) -> Error {
    Error::InvalidOption {
        name: "compaction",
        reason,
    }
}

fn remove_if_present(fs: &dyn super::fs::Fs, path: &Path) -> std::io::Result<()> {
    match fs.remove_file(path) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        other => other,
    }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}

fn encode_manifest(inputs: &[SegmentId], outputs: &[SegmentId]) -> String {
    let mut s = format!("{MANIFEST_HEADER}\n");
    for id in inputs {
        s.push_str(&format!("input {id}\n"));
    }
    for id in outputs {
        s.push_str(&format!("output {id}\n"));
    }
    s.push_str("end\n");
    s
}

fn decode_manifest(text: &str) -> Option<(Vec<SegmentId>, Vec<SegmentId>)> {
    let mut lines = text.lines();
    if lines.next()? != MANIFEST_HEADER {
        return None;
    }
    let (mut inputs, mut outputs) = (Vec::new(), Vec::new());
    for line in lines {
        if line == "end" {
            return Some((inputs, outputs));
        }
        let (kind, id) = line.split_once(' ')?;
        let id = SegmentId(u64::from_str_radix(id, 16).ok()?);
        match kind {
            "input" => inputs.push(id),
            "output" => outputs.push(id),
            _ => return None,
        }
    }
    None
}

/// At open: finishes or undoes a compaction that a crash interrupted after its
/// manifest was written. Returns how many files were removed; updates `listing`.
pub(crate) fn recover(dir: &Path, opts: &Options, listing: &mut Listing) -> Result<usize> {
    let fs = &*opts.fs;
    let manifest = dir.join(MANIFEST);
    let text = match std::fs::read_to_string(&manifest) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(Error::io("reading", &manifest, e)),
    };
    // The manifest is written whole (tmp + rename) or not at all.
    let Some((inputs, outputs)) = decode_manifest(&text) else {
        return Err(Error::Format {
            path: manifest,
            reason: super::format::DecodeError::BadMagic,
        });
    };
    let all_in_place = outputs
        .iter()
        .all(|id| listing.segments.binary_search(id).is_ok());
    let doomed: Vec<SegmentId> = if all_in_place { inputs } else { outputs };
    let mut removed = 0;
    let mut remove = |path: PathBuf| -> Result<()> {
        if path.exists() {
            fs.remove_file(&path)
                .map_err(|e| Error::io("removing leftover of compaction", &path, e))?;
            removed += 1;
        }
        Ok(())
    };
    // Oldest first, as in step 6.
    for &id in &doomed {
        remove(dir::hint_path(dir, id))?;
        remove(dir::segment_path(dir, id))?;
    }
    fs.sync_dir(dir)
        .map_err(|e| Error::io("syncing directory", dir, e))?;
    fs.remove_file(&manifest)
        .map_err(|e| Error::io("removing", &manifest, e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("syncing directory", dir, e))?;
    tracing::info!(
        rolled = if all_in_place { "forward" } else { "back" },
        files = removed,
        "finished an interrupted compaction"
    );
    listing.segments.retain(|id| !doomed.contains(id));
    listing.hints.retain(|id| !doomed.contains(id));
    Ok(removed + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manifest_round_trips() {
        let text = encode_manifest(
            &[SegmentId(0x10000), SegmentId(0x20000)],
            &[SegmentId(0x20001)],
        );
        assert_eq!(
            decode_manifest(&text),
            Some((
                vec![SegmentId(0x10000), SegmentId(0x20000)],
                vec![SegmentId(0x20001)]
            ))
        );
        assert_eq!(decode_manifest(&text[..text.len() - 4]), None);
    }
}
