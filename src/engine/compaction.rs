//! Compaction: rewriting the live records of sealed segments into new segments
//! so the space of dead records (overwritten, deleted, expired) is reclaimed.
//!
//! Steps (DESIGN.md, "Compaction"), with the crash-safety argument of each:
//! 1. (on demand only) seal `wal.log` so its dead records can be reclaimed too;
//! 2. take every sealed segment as input — all of history older than `wal.log`,
//!    so a tombstone or expired record can be dropped: no older record of its
//!    key survives outside the inputs;
//! 3. copy each put record the keydir still points at (and that has not expired)
//!    byte for byte into outputs `<id>.seg.tmp` + `<id>.hint.tmp`, fsynced. Output
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

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use super::dir::{self, Listing};
use super::error::{Error, Result};
use super::format::hint::{HintEntry, HintWriter};
use super::format::record::RecordKind;
use super::format::{FILE_HEADER_LEN, FileHeader, FileKind};
use super::keydir::{Entry, Key};
use super::options::Options;
use super::segment::active::write_file_atomically;
use super::segment::scan::{OnDamage, scan};
use super::segment::sealed::SealedSegment;
use super::stats::Counters;
use super::{Engine, SegmentId, Shared};

/// The manifest of a compaction whose outputs are being put in place.
pub const MANIFEST: &str = "COMPACTION";
const MANIFEST_HEADER: &str = "kvstore compaction manifest v1";
/// Keydir entries moved per write-lock hold during the swap.
const SWAP_CHUNK: usize = 4096;

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
        let live = self
            .keydir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .live_record_bytes();
        let dead = disk.saturating_sub(live);
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
                Err(e) => tracing::warn!(error = %e, "background compaction failed"),
            });
        match spawned {
            Ok(h) => *slot = Some(h),
            Err(e) => tracing::warn!(error = %e, "could not start compaction thread"),
        }
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
            let mut w = self.writer.lock().unwrap_or_else(|p| p.into_inner());
            if w.active.as_ref().is_some_and(|a| !a.is_empty()) {
                self.rotate(&mut w);
            }
            drop(w);
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
        let mut moves: Vec<(Key, Entry, Entry)> = Vec::new();
        let outputs = match self.write_outputs(&inputs, newest, &mut moves) {
            Ok(o) => o,
            Err(e) => {
                self.remove_tmp_outputs(newest);
                return Err(e);
            }
        };
        let input_ids: Vec<SegmentId> = inputs.iter().map(|s| s.id()).collect();
        let output_ids: Vec<SegmentId> = outputs.iter().map(|o| o.id).collect();
        self.install(&input_ids, &output_ids).inspect_err(|_| {
            self.remove_tmp_outputs(newest);
        })?;
        self.swap(&inputs, &outputs, &moves)?;
        let input_bytes: u64 = inputs.iter().map(|s| s.len()).sum();
        let output_bytes: u64 = outputs.iter().map(|o| o.len).sum();
        drop(inputs);
        self.retire(&input_ids)?;

        let c = &self.counters;
        Counters::add(&c.compactions, 1);
        let reclaimed = input_bytes.saturating_sub(output_bytes);
        Counters::add(&c.reclaimed_bytes, reclaimed);
        let duration_ms = elapsed_ms(started);
        c.last_compaction_ms.store(duration_ms, Ordering::Relaxed);
        let disk = Counters::get(&c.disk_bytes);
        let live = self
            .keydir
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .live_record_bytes();
        self.compaction
            .dead_after_last
            .store(disk.saturating_sub(live), Ordering::Relaxed);
        Ok(CompactionReport {
            reclaimed_bytes: reclaimed,
            segments_before,
            segments_after: Counters::get(&c.segments),
            live_bytes_rewritten: output_bytes
                .saturating_sub(FILE_HEADER_LEN as u64 * outputs.len() as u64),
            duration_ms,
        })
    }

    /// Step 3: copy live records into `.tmp` outputs; fills `moves`.
    fn write_outputs(
        &self,
        inputs: &[Arc<SealedSegment>],
        newest: SegmentId,
        moves: &mut Vec<(Key, Entry, Entry)>,
    ) -> Result<Vec<Output>> {
        let now = self.opts.clock.now_ms();
        let mut outputs = Vec::new();
        let mut next = newest.0 + 1;
        let mut out = OutputBuf::new(self.output_id(newest, next)?);
        for seg in inputs {
            if self.compaction.stopping.load(Ordering::SeqCst) {
                return Err(Error::Closed);
            }
            // Collect first: the visitor cannot do I/O or return errors.
            let mut live: Vec<(u32, usize, Entry, Key)> = Vec::new();
            let kd = &self.keydir;
            scan(
                seg.bytes(),
                FILE_HEADER_LEN,
                OnDamage::Resync,
                |offset, rec| {
                    if rec.kind != RecordKind::Put || (rec.expiry != 0 && rec.expiry <= now) {
                        return;
                    }
                    let cur = kd.read().unwrap_or_else(|p| p.into_inner()).get(rec.key);
                    if let Some(e) = cur.filter(|e| e.segment == seg.id() && e.offset == offset) {
                        live.push((offset, rec.encoded_len(), e, Key::from_slice(rec.key)));
                    }
                },
            );
            let bytes = seg.bytes();
            for (offset, len, old, key) in live {
                let start = offset as usize;
                let Some(record) = bytes.get(start..start + len) else {
                    continue;
                };
                if out.has_records() && (out.buf.len() + len) as u64 > self.opts.segment_bytes {
                    outputs.push(self.finish_output(out)?);
                    next += 1;
                    out = OutputBuf::new(self.output_id(newest, next)?);
                }
                let new_offset =
                    u32::try_from(out.buf.len()).map_err(|_| Error::BatchTooLarge {
                        len: out.buf.len() as u64,
                        max: u64::from(u32::MAX),
                    })?;
                out.hint.push(&HintEntry {
                    kind: RecordKind::Put,
                    expiry: old.expiry,
                    offset: new_offset,
                    value_len: old.value_len,
                    key: &key,
                });
                out.buf.extend_from_slice(record);
                moves.push((
                    key,
                    old,
                    Entry {
                        segment: out.id,
                        offset: new_offset,
                        ..old
                    },
                ));
            }
        }
        if out.has_records() {
            outputs.push(self.finish_output(out)?);
        }
        Ok(outputs)
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

    fn finish_output(&self, out: OutputBuf) -> Result<Output> {
        let fs = &*self.opts.fs;
        let seg_tmp = dir::tmp_path(&dir::segment_path(&self.dir, out.id));
        let hint_tmp = dir::tmp_path(&dir::hint_path(&self.dir, out.id));
        let hint = out.hint.finish_with_segment_len(out.buf.len() as u64);
        for (path, bytes) in [(&seg_tmp, &out.buf), (&hint_tmp, &hint)] {
            let mut f = fs
                .open_append(path)
                .map_err(|e| Error::io("creating", path, e))?;
            f.set_len(0).map_err(|e| Error::io("truncating", path, e))?;
            f.write_all(bytes)
                .map_err(|e| Error::io("writing", path, e))?;
            f.sync().map_err(|e| Error::io("syncing", path, e))?;
        }
        Ok(Output {
            id: out.id,
            len: out.buf.len() as u64,
        })
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
                tracing::warn!(error = %u, "could not roll back compaction; the next open will");
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
        moves: &[(Key, Entry, Entry)],
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
            let mut kd = self.keydir.write().unwrap_or_else(|p| p.into_inner());
            for (key, old, new) in chunk {
                kd.relocate(key, old, *new);
            }
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

/// An output being filled: its bytes and its hint.
struct OutputBuf {
    id: SegmentId,
    buf: Vec<u8>,
    hint: HintWriter,
}

impl OutputBuf {
    fn new(id: SegmentId) -> OutputBuf {
        let mut buf = Vec::new();
        FileHeader {
            kind: FileKind::Segment,
            segment: id,
        }
        .encode(&mut buf);
        OutputBuf {
            id,
            buf,
            hint: HintWriter::new(id, 0),
        }
    }

    fn has_records(&self) -> bool {
        self.buf.len() > FILE_HEADER_LEN
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
