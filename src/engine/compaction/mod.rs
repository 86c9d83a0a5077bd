//! Compaction: rewriting the live records of sealed segments into new segments
//! so the space of dead records (overwritten, deleted, expired) is reclaimed,
//! in bounded *steps* (DESIGN.md, "Compaction").
//!
//! A run:
//! 1. (on demand only) seals `wal.log` so its dead records can be reclaimed too;
//! 2. takes the sealed segments that exist now, oldest first, and splits them
//!    into steps of consecutive segments holding at most
//!    `compaction_step_segments` × `segment_bytes` live bytes (or one segment),
//!    leaving out segments every byte of which is a live record and that are
//!    at least half full (`plan.rs`);
//! 3. runs the steps one after the other, each installed and its inputs
//!    deleted before the next starts, so a run needs free space for one step's
//!    outputs and memory for one step's live keys.
//!
//! A step drops tombstones and expired records (copies only keydir-live puts)
//! although its inputs are not all of history. That is safe because every
//! segment older than a step's inputs is an earlier step's output or a segment
//! left out as wholly live, and neither holds a record of a key that has a
//! record in the step's inputs: a put that was live when it was copied (or at
//! the start of the run) had no newer record in any segment that existed at
//! the start — and the step's inputs all did. Segments sealed during the run
//! are never inputs of it, so a delete made during the run (the tombstone in a
//! newer segment) keeps hiding a value an earlier step copied.
//!
//! A step (`output.rs`, `install.rs`), with what a crash at each point leaves:
//! 1. walk the keydir for entries pointing into an input (and not expired),
//!    sort them by location, copy those records byte for byte, checksum
//!    verified, into outputs `<id>.seg.tmp` + `<id>.hint.tmp`, fsynced. A
//!    damaged live record fails the step (nothing of it changes). Output ids lie
//!    between the inputs' neighbours, so the outputs take the inputs' place in
//!    history. Killed here: the `.tmp` files are removed at open;
//! 2. sync `wal.log` and every segment still being sealed (the records that
//!    made the left-out ones dead must outlive a power loss before the inputs
//!    go); write the manifest `COMPACTION` (inputs, outputs) atomically, rename the
//!    outputs into place. Killed here: open rolls back or forward (`manifest.rs`);
//! 3. swap in memory: add outputs to the segment set, move each keydir entry that
//!    still points where it did (a write made meanwhile keeps its newer
//!    location) in short write-locked chunks, then drop the inputs from the set;
//! 4. delete inputs oldest first, then the manifest. Killed here: open finishes
//!    the deletions; failing here latches the engine read-only.
//!
//! Readers holding an input keep reading it through its mapping; the mapping is
//! released with the last reader, and no file descriptor stays open per segment.

mod install;
mod manifest;
mod output;
mod plan;
mod trigger;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::error::{Error, Fault, Result};
use super::format::FILE_HEADER_LEN;
use super::segment::sealed::SealedSegment;
use super::stats::Counters;
use super::{Engine, SegmentId, Shared};

pub(crate) use manifest::recover;
use output::Move;
use plan::Step;

/// Keydir entries visited or moved per lock hold.
const KEYDIR_CHUNK: usize = 4096;
/// Keydir entries moved per write-lock hold during the swap.
const SWAP_CHUNK: usize = KEYDIR_CHUNK;

/// What one compaction did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct CompactionReport {
    /// Disk bytes freed (inputs' size minus outputs' size).
    pub reclaimed_bytes: u64,
    /// Segment files (including `wal.log`) before.
    pub segments_before: u64,
    /// Segment files (including `wal.log`) after.
    pub segments_after: u64,
    /// Bytes of live records rewritten.
    pub live_bytes_rewritten: u64,
    /// Steps run, each installed before the next started.
    pub steps: u64,
    /// Wall time, in ms.
    pub duration_ms: u64,
    /// Of that, ms spent finding the live records and copying them into
    /// outputs made durable (the rest: sealing `wal.log`, the swaps, retiring).
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
        // The slot holds no invariant (a handle or none), so a poisoned one is
        // still the handle to join; the thread's own panics are caught in
        // `compact` and latch the engine there.
        let handle = match self.background.lock() {
            Ok(mut slot) => slot.take(),
            Err(p) => p.into_inner().take(),
        };
        if let Some(h) = handle
            && h.join().is_err()
        {
            tracing::error!("compaction thread panicked");
        }
    }
}

impl Engine {
    /// Compacts now: seals `wal.log`, then rewrites the live records of the
    /// sealed segments, a bounded step at a time. Blocks the caller (not
    /// writers) for the duration. A failing step leaves the steps before it
    /// installed and changes nothing of its own.
    pub fn compact(&self) -> Result<CompactionReport> {
        self.shared.check_open()?;
        self.shared.check_writable("compacting")?;
        self.shared.compact(true)
    }
}

impl Shared {
    /// Holds off compaction (waiting for a running one to finish) while the
    /// guard lives: no sealed segment is deleted and no output installed.
    /// Lock order: compaction → writer, as a compaction's own sealing takes it.
    pub(crate) fn hold_compaction(&self) -> Result<std::sync::MutexGuard<'_, ()>> {
        self.lock(&self.compaction.running, "compaction")
    }

    /// A panic anywhere in a compaction (between install and retire, a retired
    /// input's tombstones could be dropped while the input remains) latches the
    /// engine read-only with its cause: the next open finishes from the manifest.
    fn compact(&self, on_demand: bool) -> Result<CompactionReport> {
        let _one_at_a_time = self.lock(&self.compaction.running, "compaction")?;
        let run = std::panic::AssertUnwindSafe(|| self.compact_steps(on_demand));
        std::panic::catch_unwind(run).unwrap_or_else(|payload| {
            Err(self.latch_and_refuse_with(Fault::panic("compaction", &*payload)))
        })
    }

    fn compact_steps(&self, on_demand: bool) -> Result<CompactionReport> {
        let started = Instant::now();
        if let Some(cause) = self.failure() {
            return Err(Error::ReadOnly { cause });
        }
        let mut report = CompactionReport {
            segments_before: Counters::get(&self.counters.segments),
            ..CompactionReport::default()
        };
        if on_demand {
            self.seal_active_now()?;
            if let Some(cause) = self.failure() {
                return Err(Error::ReadOnly { cause });
            }
        }
        // Fixed now: segments sealed from here on are newer than every input.
        let sealed: Vec<Arc<SealedSegment>> =
            self.segments_read()?.sealed.values().cloned().collect();
        let budget = self
            .opts
            .segment_bytes
            .saturating_mul(u64::from(self.opts.compaction_step_segments));
        let steps = self.plan_steps(sealed, self.opts.clock.now_ms(), budget)?;
        for step in steps {
            if self.compaction.stopping.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            // Consumed: the inputs' mappings go with the step, so the disk
            // space of deleted inputs is free before the next step writes.
            match self.compact_step(step, &mut report) {
                // Output ids are chosen before anything is written, so a step
                // with none free beside its inputs changed nothing: skip it
                // and let the later steps reclaim (its dead bytes wait until
                // its neighbours change).
                Err(Error::SegmentIdsExhausted { reason }) => {
                    tracing::warn!(
                        reason,
                        "compaction step skipped: no segment id free beside its inputs"
                    );
                }
                r => r?,
            }
        }

        let c = &self.counters;
        Counters::add(&c.compactions, 1);
        report.duration_ms = elapsed_ms(started);
        report.segments_after = Counters::get(&c.segments);
        c.last_compaction_ms
            .store(report.duration_ms, Ordering::Relaxed);
        self.compaction
            .dead_after_last
            .store(self.dead_bytes(), Ordering::Relaxed);
        Ok(report)
    }

    /// One step: outputs written, installed, swapped in, inputs retired.
    fn compact_step(&self, step: Step, report: &mut CompactionReport) -> Result<()> {
        let Step { inputs, live_keys } = step;
        let mut moves: Vec<Move> = Vec::new();
        let rewrite_started = Instant::now();
        let outputs = self.write_outputs(&inputs, live_keys, &mut moves)?;
        report.rewrite_ms += elapsed_ms(rewrite_started);
        let input_ids: Vec<SegmentId> = inputs.iter().map(|s| s.id()).collect();
        let output_ids: Vec<SegmentId> = outputs.iter().map(|o| o.id).collect();
        // The step left out every record a newer one superseded, and newer may
        // mean still only in the page cache (sync never / periodic, or a
        // segment not sealed yet). The inputs are deleted below: make those
        // newer records durable first, or a power loss loses both versions.
        self.sync_dirty()
            .and_then(|()| self.install(&input_ids, &output_ids))
            .inspect_err(|_| self.remove_tmp_outputs(output_ids.iter().copied()))?;
        self.swap(&inputs, &outputs, &moves)?;
        drop(moves);
        let input_bytes: u64 = inputs.iter().map(|s| s.len()).sum();
        let output_bytes: u64 = outputs.iter().map(|o| o.len).sum();
        drop(inputs);
        let retire_started = Instant::now();
        // Inputs left on disk (with the manifest naming them) must not outlive
        // this process's next step, which would replace the manifest and drop
        // tombstones hiding their values: stop writing; the next open finishes
        // the deletions.
        self.retire(&input_ids).inspect_err(|e| self.latch(e))?;
        report.retire_ms += elapsed_ms(retire_started);
        report.steps += 1;
        let reclaimed = input_bytes.saturating_sub(output_bytes);
        report.reclaimed_bytes += reclaimed;
        Counters::add(&self.counters.reclaimed_bytes, reclaimed);
        report.live_bytes_rewritten +=
            output_bytes.saturating_sub(FILE_HEADER_LEN as u64 * outputs.len() as u64);
        Ok(())
    }
}

fn too_many(reason: &'static str) -> Error {
    Error::CompactionTooLarge { reason }
}

fn elapsed_ms(started: Instant) -> u64 {
    u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX)
}
