//! Planning a compaction: which sealed segments each step takes, which live
//! records a step copies in which order, how they split into outputs, and
//! which ids those outputs get.
//!
//! Invariants kept here (DESIGN.md, "Compaction", explains why they make
//! dropping tombstones safe):
//! - a run's steps partition the sealed segments that existed when it started,
//!   oldest first, each step a run of *consecutive* segments, except segments
//!   every byte of which was a live record at the start and that are at least
//!   half full (skipped: nothing to reclaim, nothing worth merging), and steps
//!   that would only rewrite one wholly live segment;
//! - a step's live bytes stay within the step budget, or it is one segment;
//! - an output id lies strictly between the sealed segments just older and just
//!   newer than the step's inputs (or `wal.log`), and is no input's id, so the
//!   outputs take the inputs' place in history.

use std::ops::Range;
use std::sync::Arc;
use std::sync::atomic::Ordering;

use super::super::error::{Error, Result};
use super::super::format::FILE_HEADER_LEN;
use super::super::format::record;
use super::super::keydir::{Entry, Key};
use super::super::segment::sealed::SealedSegment;
use super::super::{SegmentId, Shared};
use super::output::Move;
use super::{KEYDIR_CHUNK, too_many};

/// A live record to copy, in the order records are copied (by location).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) struct Slot {
    pub input: u32,
    pub offset: u32,
    pub len: u32,
    /// Index into the moves.
    pub index: u32,
}

/// An output to write: its id, the range of `order` it holds, and its length.
pub(super) struct OutputPlan {
    pub id: SegmentId,
    pub slots: Range<usize>,
    pub len: u64,
}

/// One step's inputs, oldest first, and how many live keys they held at the start.
#[derive(Default)]
pub(super) struct Step {
    pub inputs: Vec<Arc<SealedSegment>>,
    pub live_keys: usize,
}

impl Shared {
    /// Visits every keydir entry unexpired at `now`, in key order, holding the
    /// read lock for one chunk at a time so writers wait briefly.
    pub(super) fn walk_keydir(&self, now: u64, mut visit: impl FnMut(&[u8], &Entry)) -> Result<()> {
        let mut after: Option<Key> = None;
        loop {
            if self.compaction.stopping.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            let mut visited = 0;
            let mut last = None;
            {
                let kd = self.keydir_read()?;
                kd.scan(b"", after.as_deref(), now, |key, e| {
                    visit(key, e);
                    visited += 1;
                    if visited == KEYDIR_CHUNK {
                        last = Some(Key::from_slice(key));
                        return false;
                    }
                    true
                });
            }
            match last {
                Some(k) => after = Some(k),
                None => return Ok(()),
            }
        }
    }

    /// Splits `sealed` (every sealed segment, oldest first) into steps of at
    /// most `budget` live bytes each (or one segment). A segment that is wholly
    /// live and at least half full is left out (nothing to reclaim, nothing
    /// worth merging); so is a step that would only rewrite one wholly live
    /// segment.
    pub(super) fn plan_steps(
        &self,
        sealed: Vec<Arc<SealedSegment>>,
        now: u64,
        budget: u64,
    ) -> Result<Vec<Step>> {
        let ids: Vec<SegmentId> = sealed.iter().map(|s| s.id()).collect();
        let mut live = vec![(0u64, 0usize); ids.len()];
        self.walk_keydir(now, |key, e| {
            if let Ok(i) = ids.binary_search(&e.segment) {
                let len = record::encoded_len(key.len(), e.value_len as usize, e.expiry);
                live[i].0 += len as u64;
                live[i].1 += 1;
            }
        })?;
        let mut steps = Vec::new();
        let mut cur = Step::default();
        let mut cur_bytes = 0u64;
        let mut cur_gains = false;
        let mut close = |cur: &mut Step, cur_bytes: &mut u64, cur_gains: &mut bool| {
            let step = std::mem::take(cur);
            if *cur_gains || step.inputs.len() > 1 {
                steps.push(step);
            }
            (*cur_bytes, *cur_gains) = (0, false);
        };
        for (seg, (bytes, keys)) in sealed.into_iter().zip(live) {
            let records = seg.len().saturating_sub(FILE_HEADER_LEN as u64);
            let wholly_live = bytes >= records;
            let kept = wholly_live && bytes > 0 && 2 * seg.len() >= self.opts.segment_bytes;
            let over = cur_bytes.saturating_add(bytes) > budget;
            if (kept || over) && !cur.inputs.is_empty() {
                close(&mut cur, &mut cur_bytes, &mut cur_gains);
            }
            if kept {
                // No step spans it, so each step's inputs stay consecutive and
                // its outputs can take their place.
                continue;
            }
            cur.inputs.push(seg);
            cur.live_keys += keys;
            cur_bytes += bytes;
            cur_gains |= !wholly_live || bytes == 0;
        }
        if !cur.inputs.is_empty() {
            close(&mut cur, &mut cur_bytes, &mut cur_gains);
        }
        Ok(steps)
    }

    /// Every unexpired keydir entry that points into an input, in key order;
    /// returns how many point into each input.
    /// Walking the keydir costs one descent per chunk, where looking up each
    /// scanned record cost one random descent per record, live or dead.
    pub(super) fn collect_live(
        &self,
        inputs: &[Arc<SealedSegment>],
        now: u64,
        moves: &mut Vec<Move>,
    ) -> Result<Vec<usize>> {
        let ids: Vec<SegmentId> = inputs.iter().map(|s| s.id()).collect();
        let mut per_input = vec![0; ids.len()];
        self.walk_keydir(now, |key, e| {
            if let Ok(input) = ids.binary_search(&e.segment) {
                per_input[input] += 1;
                moves.push(Move::new(key, *e));
            }
        })?;
        Ok(per_input)
    }

    /// Splits `order` into outputs of at most `segment_bytes` (or one record),
    /// and gives each an id that takes the inputs' place in history.
    pub(super) fn plan_outputs(
        &self,
        inputs: &[Arc<SealedSegment>],
        order: &[Slot],
    ) -> Result<Vec<OutputPlan>> {
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
        let ids = self.output_ids(inputs, plan.len())?;
        Ok(plan
            .into_iter()
            .zip(ids)
            .map(|((slots, len), id)| OutputPlan { id, slots, len })
            .collect())
    }

    /// `count` free ids between the inputs' older and newer neighbours: above
    /// the newest input first (as a one-step compaction always did), then below
    /// the oldest (where earlier steps' retired inputs left room), then between.
    fn output_ids(&self, inputs: &[Arc<SealedSegment>], count: usize) -> Result<Vec<SegmentId>> {
        let (Some(first), Some(last)) = (inputs.first(), inputs.last()) else {
            return Ok(Vec::new());
        };
        let (a, b) = (first.id().0, last.id().0);
        let set = self.segments_read()?;
        let low = set
            .sealed
            .range(..first.id())
            .next_back()
            .map_or(0, |(id, _)| id.0);
        let newer = set
            .sealed
            .range(SegmentId(b.saturating_add(1))..)
            .next()
            .map(|(id, _)| id.0);
        let active = set.active.id().0;
        let high = newer.map_or(active, |n| n.min(active));
        let ids: Vec<SegmentId> = (b + 1..high)
            .chain((low + 1..a).rev())
            .chain(a + 1..b)
            .map(SegmentId)
            .filter(|id| !set.sealed.contains_key(id))
            .take(count)
            .collect();
        drop(set);
        if ids.len() < count {
            return Err(Error::SegmentIdsExhausted {
                reason: "none beside the inputs; write more data before compacting again",
            });
        }
        Ok(ids)
    }
}

/// Splits inputs into at most `workers` runs of consecutive inputs holding
/// about equal numbers of the live records (`per_input`).
pub(super) fn input_groups(per_input: &[usize], workers: usize) -> Vec<Range<usize>> {
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

/// The moves into inputs `group`, in the moves' (key) order.
pub(super) fn slots_of(
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
    Ok(order)
}
