//! Recovery: rebuilding the keydir, segment set and `wal.log` handle at open.
//!
//! Steps (DESIGN.md, "Recovery"):
//! 1. finish or undo an interrupted legacy migration, then migrate a legacy `wal.log`;
//! 2. undo an interrupted compaction and remove `*.tmp` leftovers;
//! 3. per sealed segment, oldest first: load its hint file if it is whole and
//!    matches the segment, else scan the segment (CRC of every record checked,
//!    damaged records skipped and counted, damaged batches discarded whole);
//! 4. scan `wal.log`, truncating a torn or corrupt tail (and an incomplete batch)
//!    to the last good record;
//! 5. keep the newest record of each key; drop tombstones and expired puts.
//!
//! Each segment (and `wal.log`) yields one sorted run: its entries in key
//! order, one per key. A SORTED hint file is such a run as read; other hints
//! and scans are sorted in memory. Step 5 is then a k-way merge of the runs
//! (newer segment wins a tie) straight into the keydir's bulk builder.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SegmentId;
use super::dir;
use super::error::{Error, Result};
use super::format::hint::{HintEntry, RunIter, SortedRun};
use super::format::record::{self, RecordKind};
use super::format::{DecodeError, FILE_HEADER_LEN, FileHeader, FileKind};
use super::keydir::{Builder, Entry, Keydir};
use super::memtable::Memtable;
use super::migrate;
use super::options::Options;
use super::segment::SegmentSet;
use super::segment::active::ActiveSegment;
use super::segment::scan::{OnDamage, ScanSummary, scan};
use super::segment::sealed::SealedSegment;

/// What [`Engine::open`](super::Engine::open) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct RecoveryReport {
    /// Sealed segments loaded.
    pub segments: usize,
    /// Of those, how many were loaded from their hint file.
    pub hints_used: usize,
    /// Records (puts and tombstones) read from hints and scans.
    pub records: u64,
    /// Live keys after recovery.
    pub live_keys: u64,
    /// Bytes cut from the end of `wal.log` (torn or corrupt tail, incomplete
    /// batch); a read-only open cuts them only in memory.
    pub bytes_truncated: u64,
    /// Batches dropped whole because some of their records were missing or damaged.
    pub batches_discarded: u64,
    /// Damaged records skipped inside sealed segments (or found at `wal.log`'s tail).
    pub corrupt_records: u64,
    /// Leftover files of interrupted writes and compactions removed.
    pub leftovers_removed: usize,
    /// Where the legacy JSON-lines `wal.log` was kept, if one was migrated now.
    pub migrated_legacy_backup: Option<std::path::PathBuf>,
    /// Operations read from a migrated legacy log.
    pub legacy_operations: u64,
    /// Wall time recovery took.
    pub duration: Duration,
}

/// Whether an open may change the directory.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A normal open: interrupted work is finished, torn tails truncated.
    Write,
    /// [`Engine::open_read_only`](super::Engine::open_read_only): the same
    /// state is computed in memory; no file is created, changed or removed.
    ReadOnly,
}

/// The state recovery hands to the engine.
#[derive(Debug)]
pub(crate) struct Recovered {
    pub keydir: Keydir,
    pub segments: SegmentSet,
    /// `None` in a read-only open: `wal.log` is not opened for writing.
    pub active: Option<ActiveSegment>,
    pub disk_bytes: u64,
    pub report: RecoveryReport,
}

/// One segment's records, sorted; runs are kept in history order.
struct Run {
    segment: SegmentId,
    entries: SortedRun,
}

/// Runs recovery on `dir`, whose lock the caller holds (under [`Mode::Write`]).
pub(crate) fn recover(dir: &Path, opts: &Options, mode: Mode) -> Result<Recovered> {
    let started = Instant::now();
    let fs = &*opts.fs;
    let now = opts.clock.now_ms();
    let mut report = RecoveryReport::default();

    let mut listing = dir::list(dir)?;
    let max_sealed = listing.segments.last().copied();
    if mode == Mode::ReadOnly {
        super::readonly::refuse_migration(dir, opts, &listing)?;
    } else if let Some(m) = migrate::recover_or_migrate(dir, opts, &listing, max_sealed)? {
        report.migrated_legacy_backup = m.backup;
        report.legacy_operations = m.operations;
        listing = dir::list(dir)?;
    }
    report.leftovers_removed += super::compaction::recover(dir, opts, &mut listing, mode)?;
    for path in &listing.leftovers {
        if mode == Mode::Write {
            fs.remove_file(path)
                .map_err(|e| Error::io("removing leftover", path, e))?;
        }
        report.leftovers_removed += 1;
    }

    let next_id = listing
        .segments
        .last()
        .map_or(SegmentId::FIRST, |id| id.next_generation());
    // The two halves of an open that take the time run side by side: hint
    // files are read and verified on a second thread (plain reads, outside the
    // Fs seam) while this thread scans and sorts `wal.log`, the one run that
    // has no hint. So `wal.log`'s repair now comes before the sealed
    // segments' tail cuts: different files, each repair idempotent, and the
    // crash sweep at every recovery step covers this order. A hint
    // thread that fails (it cannot panic on bad bytes, but a spawn can fail)
    // costs only scans: every segment without a preloaded hint is scanned.
    let with_hints: Vec<SegmentId> = listing
        .segments
        .iter()
        .copied()
        .filter(|id| listing.hints.binary_search(id).is_ok())
        .collect();
    let mut wal_runs: Vec<Run> = Vec::with_capacity(1);
    let mut wal_report = RecoveryReport::default();
    let (wal, mut preloaded) = std::thread::scope(|scope| {
        let preload = std::thread::Builder::new()
            .name("kvstore-open-hints".into())
            .spawn_scoped(scope, || preload_hints(dir, &with_hints));
        let wal = recover_wal(dir, opts, next_id, &mut wal_runs, &mut wal_report, mode);
        let preloaded = match preload {
            Ok(handle) => handle.join().unwrap_or_default(),
            Err(_) => std::collections::BTreeMap::new(),
        };
        (wal, preloaded)
    });
    let (active, memtable) = wal?;
    report.records += wal_report.records;
    report.corrupt_records += wal_report.corrupt_records;
    report.batches_discarded += wal_report.batches_discarded;
    report.bytes_truncated += wal_report.bytes_truncated;

    let mut runs: Vec<Run> = Vec::with_capacity(listing.segments.len() + 1);
    let mut sealed = std::collections::BTreeMap::new();
    let mut disk_bytes = 0u64;
    for &id in &listing.segments {
        let path = dir::segment_path(dir, id);
        let mut seg = SealedSegment::open(id, &path)?;
        let from_hint = preloaded
            .remove(&id)
            .and_then(|hint| use_hint(dir, hint, &seg, &mut report));
        if let Some(entries) = from_hint {
            report.hints_used += 1;
            runs.push(Run {
                segment: id,
                entries,
            });
        } else {
            if !seg.header_ok() {
                report.corrupt_records += 1;
                tracing::warn!(segment = %id, "damaged segment header; scanning its records");
            }
            // The sealer cuts a segment's preallocated tail only after
            // syncing its records, and writes the hint after that. A segment
            // still carrying a zeroed tail, or damaged right up to its end,
            // was renamed by a rotation whose sealing never finished, so its
            // records after the last sync can be torn: read it as `wal.log`
            // is read, up to the first damage. Resyncing there could land
            // inside a batch whose marker was torn and apply the rest of it.
            // A trimmed segment damaged in the middle (bit rot) keeps Resync:
            // only the damaged records are lost.
            let mut unsealed = has_zero_tail(seg.bytes());
            let on_damage = if unsealed {
                OnDamage::Stop
            } else {
                OnDamage::Resync
            };
            let (mut entries, mut s) = scan_entries(seg.bytes(), on_damage);
            if !unsealed && !s.clean_end && (s.end as u64) < seg.len() {
                unsealed = true;
                (entries, s) = scan_entries(seg.bytes(), OnDamage::Stop);
            }
            push_run(id, entries, &s, &mut runs, &mut report);
            if s.corrupt > 0 || s.batches_discarded > 0 {
                tracing::warn!(segment = %id, corrupt = s.corrupt, batches = s.batches_discarded, "skipped damaged records in sealed segment");
            }
            if (s.clean_end || unsealed) && (s.end as u64) < seg.len() {
                // Sealed by a rotation that was killed before its unused,
                // preallocated tail was cut (and maybe its torn records
                // after the last sync): cut it now, or (read-only) say so.
                match mode {
                    Mode::Write => seg = cut_zero_tail(opts, &path, id, s.end as u64)?,
                    Mode::ReadOnly => seg.mark_uncut(),
                }
            }
        }
        disk_bytes += seg.len();
        report.segments += 1;
        sealed.insert(id, Arc::new(seg));
    }

    // wal.log is newer than every sealed segment: its run goes last.
    runs.append(&mut wal_runs);
    disk_bytes += memtable.len() as u64;

    let keydir = merge_newest_live(&runs, now);
    drop(runs);
    report.live_keys = keydir.len() as u64;

    report.duration = started.elapsed();
    Ok(Recovered {
        keydir,
        segments: SegmentSet {
            active: memtable,
            sealing: std::collections::BTreeMap::new(),
            sealed,
        },
        active,
        disk_bytes,
        report,
    })
}

/// The hint entry of a scanned record.
fn hint_entry<'a>(offset: u32, rec: &record::RecordRef<'a>) -> HintEntry<'a> {
    HintEntry {
        kind: rec.kind,
        expiry: rec.expiry,
        offset,
        value_len: record::len_u32(rec.value.len()),
        key: rec.key,
    }
}

/// A run's current entry and its key's leading words.
type Head<'a> = Option<((u64, u64), HintEntry<'a>)>;

/// True when head `a` (of run `ra`) comes out of the merge before head `b`:
/// smaller key first, and among equal keys the newer (later) run first; an
/// exhausted run never does.
fn beats(a: &Head<'_>, ra: usize, b: &Head<'_>, rb: usize) -> bool {
    match (a, b) {
        (Some((wa, ea)), Some((wb, eb))) => wa
            .cmp(wb)
            .then_with(|| super::key::cmp_past_words(ea.key, eb.key))
            .then(rb.cmp(&ra))
            .is_lt(),
        (Some(_), None) => true,
        (None, _) => false,
    }
}

/// Step 5: the newest record of each key over all runs (a later run is newer),
/// kept if it is a live put, built into the keydir in key order.
///
/// A k-way merge through a loser tree: each run is already sorted with one
/// entry per key, so no sort and no per-key search happen here, and each
/// entry costs log2(k) comparisons, most settled by the keys' leading two
/// words (no memcmp). A binary heap took twice the comparisons and moves.
fn merge_newest_live(runs: &[Run], now: u64) -> Keydir {
    let mut out = Builder::new();
    let k = runs.len();
    if k == 0 {
        return out.finish();
    }
    let mut iters: Vec<RunIter<'_>> = runs.iter().map(|r| r.entries.iter()).collect();
    fn next<'a>(it: &mut RunIter<'a>) -> Head<'a> {
        it.next().map(|e| (super::key::words(e.key), e))
    }
    let mut heads: Vec<Head<'_>> = iters.iter_mut().map(next).collect();
    // tree[0]: the winner; tree[n] (1 <= n < k): the loser of the match at
    // node n, whose children are nodes 2n and 2n + 1 (leaf i is node k + i).
    let mut tree = vec![0usize; k];
    {
        let mut winners = vec![0usize; 2 * k];
        for (i, w) in winners.iter_mut().skip(k).enumerate() {
            *w = i;
        }
        for n in (1..k).rev() {
            let (a, b) = (winners[2 * n], winners[2 * n + 1]);
            let (w, l) = if beats(&heads[a], a, &heads[b], b) {
                (a, b)
            } else {
                (b, a)
            };
            winners[n] = w;
            tree[n] = l;
        }
        if k > 1 {
            tree[0] = winners[1];
        }
    }
    // Moves the winner's run on and replays its path to the root.
    fn advance<'a>(
        k: usize,
        tree: &mut [usize],
        heads: &mut [Head<'a>],
        iters: &mut [RunIter<'a>],
    ) {
        let mut w = tree[0];
        heads[w] = next(&mut iters[w]);
        let mut n = (k + w) / 2;
        while n >= 1 {
            let l = tree[n];
            if beats(&heads[l], l, &heads[w], w) {
                tree[n] = w;
                w = l;
            }
            n /= 2;
        }
        tree[0] = w;
    }
    loop {
        let run = tree[0];
        let Some((words, e)) = heads[run] else { break };
        advance(k, &mut tree, &mut heads, &mut iters);
        // Older entries of the same key come next: skip them.
        while let Some((w, older)) = &heads[tree[0]] {
            if *w != words || super::key::cmp_past_words(older.key, e.key).is_ne() {
                break;
            }
            advance(k, &mut tree, &mut heads, &mut iters);
        }
        let entry = Entry {
            segment: runs[run].segment,
            offset: e.offset,
            value_len: e.value_len,
            expiry: e.expiry,
        };
        if e.kind == RecordKind::Put && !entry.is_expired(now) {
            out.push(e.key, entry);
        }
    }
    out.finish()
}

/// Loads a hint if it is whole and describes `seg` exactly; `None` means scan.
/// What reading and verifying one hint file gave.
type Preloaded = std::result::Result<(SegmentId, u64, u32, SortedRun), DecodeError>;

/// Reads and verifies the hints of `ids`; a hint that cannot be read is left
/// out (its segment is scanned).
fn preload_hints(
    dir: &Path,
    ids: &[SegmentId],
) -> std::collections::BTreeMap<SegmentId, Preloaded> {
    ids.iter()
        .filter_map(|&id| {
            let bytes = std::fs::read(dir::hint_path(dir, id)).ok()?;
            Some((id, SortedRun::load(bytes)))
        })
        .collect()
}

/// Uses a preloaded hint if it is whole and describes `seg` exactly; `None`
/// means scan.
fn use_hint(
    dir: &Path,
    hint: Preloaded,
    seg: &SealedSegment,
    report: &mut RecoveryReport,
) -> Option<SortedRun> {
    let path = dir::hint_path(dir, seg.id());
    match hint {
        Ok((segment, len, count, run)) if segment == seg.id() && len == seg.len() => {
            report.records += u64::from(count);
            Some(run)
        }
        Ok(_) => {
            tracing::warn!(path = %path.display(), "hint file does not match its segment; scanning");
            None
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unusable hint file; scanning");
            None
        }
    }
}

/// Step 4: scan `wal.log` (creating it when missing) and cut its bad tail
/// (under [`Mode::ReadOnly`], only in memory). Returns the segment open for
/// appends (`None` when read-only) and the memtable readers use.
///
/// `wal.log` is preallocated: zeros after the last record are unused space,
/// not a torn tail. Anything else after the good prefix is cut (and counted in
/// `bytes_truncated`), then the file is allocated again, so the space after the
/// records reads as zeros and no stale bytes can line up behind a later record.
fn recover_wal(
    dir: &Path,
    opts: &Options,
    next_id: SegmentId,
    runs: &mut Vec<Run>,
    report: &mut RecoveryReport,
    mode: Mode,
) -> Result<(Option<ActiveSegment>, Arc<Memtable>)> {
    let fs = &*opts.fs;
    let path = dir.join(dir::WAL);
    let create = || match mode {
        Mode::Write => ActiveSegment::create(fs, dir, next_id, opts.segment_bytes).map(writable),
        Mode::ReadOnly => Ok((None, Arc::new(Memtable::frozen(next_id, Vec::new())))),
    };
    let mut bytes = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            return create();
        }
        Err(e) => return Err(Error::io("reading", &path, e)),
    };
    if bytes.len() < FILE_HEADER_LEN || super::segment::scan::all_zero(&bytes[..FILE_HEADER_LEN]) {
        // A wal.log torn while its header was being written holds no record.
        report.bytes_truncated += data_len(&bytes) as u64;
        return create();
    }
    let id = match FileHeader::decode(&bytes) {
        // wal.log is always newer than every sealed segment. A header naming an
        // older id is damaged: trusting it would shadow that sealed segment in
        // reads, and rotation would overwrite it (or order it before newer data).
        Ok(h) if h.kind == FileKind::Segment && h.segment < next_id => {
            tracing::warn!(found = %h.segment, using = %next_id, "wal.log header names a sealed segment's id; using the next id");
            next_id
        }
        Ok(h) if h.kind == FileKind::Segment => h.segment,
        Ok(_) | Err(_) if holds_no_record(&bytes) => {
            // Every writer syncs a segment's header before a record follows
            // it, so a bad header with nothing decodable after it was torn
            // while wal.log was being (re)created: nothing acknowledged lived
            // here. Refusing to open would strand the sealed segments.
            let torn = data_len(&bytes) as u64;
            report.bytes_truncated += torn;
            tracing::warn!(
                bytes = torn,
                "wal.log has a torn header and no record; recreating it"
            );
            return create();
        }
        Ok(_) => {
            return Err(Error::Format {
                path,
                reason: DecodeError::Invalid {
                    field: "file kind",
                    value: 2,
                },
            });
        }
        Err(reason) => return Err(Error::Format { path, reason }),
    };
    let (entries, s) = scan_entries(&bytes, OnDamage::Stop);
    push_run(id, entries, &s, runs, report);
    let good = s.end as u64;
    if !s.clean_end {
        let torn = data_len(&bytes).saturating_sub(s.end) as u64;
        report.bytes_truncated += torn;
        tracing::warn!(bytes = torn, "cutting torn tail of wal.log");
    }
    match mode {
        Mode::Write => {
            ActiveSegment::reopen(fs, dir, id, good, !s.clean_end, opts.segment_bytes).map(writable)
        }
        Mode::ReadOnly => {
            bytes.truncate(s.end);
            Ok((None, Arc::new(Memtable::frozen(id, bytes))))
        }
    }
}

/// A segment's records from `bytes`, as hint entries, and what the scan found.
fn scan_entries(bytes: &[u8], on_damage: OnDamage) -> (Vec<HintEntry<'_>>, ScanSummary) {
    let mut entries = Vec::new();
    let s = scan(bytes, FILE_HEADER_LEN, on_damage, |offset, rec| {
        entries.push(hint_entry(offset, &rec));
    });
    (entries, s)
}

/// Makes segment `id`'s scanned entries one sorted run (newest entry per
/// key) and counts what its scan found in `report`.
fn push_run(
    id: SegmentId,
    entries: Vec<HintEntry<'_>>,
    s: &ScanSummary,
    runs: &mut Vec<Run>,
    report: &mut RecoveryReport,
) {
    runs.push(Run {
        segment: id,
        entries: SortedRun::from_entries(entries),
    });
    report.records += s.records;
    report.corrupt_records += s.corrupt;
    report.batches_discarded += s.batches_discarded;
}

fn writable(a: ActiveSegment) -> (Option<ActiveSegment>, Arc<Memtable>) {
    let m = Arc::clone(a.memtable());
    (Some(a), m)
}

/// Cuts a sealed segment's zeroed tail at `len` and maps it again.
fn cut_zero_tail(opts: &Options, path: &Path, id: SegmentId, len: u64) -> Result<SealedSegment> {
    let mut file = opts
        .fs
        .open_append(path)
        .map_err(|e| Error::io("opening", path, e))?;
    file.set_len(len)
        .map_err(|e| Error::io("cutting the unused tail of", path, e))?;
    file.sync().map_err(|e| Error::io("syncing", path, e))?;
    SealedSegment::open(id, path)
}

/// True when no record decodes anywhere after the header of `bytes` (a bad
/// header over records is damage to report, not a tear to clean up).
fn holds_no_record(bytes: &[u8]) -> bool {
    let data = &bytes[..data_len(bytes)];
    data.len() <= FILE_HEADER_LEN
        || scan(data, FILE_HEADER_LEN, OnDamage::Resync, |_, _| {}).records == 0
}

/// True when `bytes` ends in zeros after its last nonzero byte (a sealed
/// segment's tail is cut to its last record, which ends in a CRC-covered
/// value; a run of at least a record's worth of zeros is preallocation).
fn has_zero_tail(bytes: &[u8]) -> bool {
    bytes.len() - data_len(bytes) >= record::MIN_RECORD_LEN
}

/// Length of `bytes` without its trailing zeros.
fn data_len(bytes: &[u8]) -> usize {
    bytes.iter().rposition(|&b| b != 0).map_or(0, |p| p + 1)
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    proptest! {
        #[test]
        fn the_merge_keeps_the_newest_live_record_of_each_key(
            runs in proptest::collection::vec(
                proptest::collection::vec((0u8..40, any::<bool>(), 0u64..4), 0..60),
                0..7,
            )
        ) {
            // Key k is "k" + k; expiry 1 means expired at now = 2.
            let keys: Vec<Vec<u8>> = (0..40u8).map(|k| format!("k{k}").into_bytes()).collect();
            let mut model: BTreeMap<Vec<u8>, Option<Entry>> = BTreeMap::new();
            let mut built = Vec::new();
            for (r, recs) in runs.iter().enumerate() {
                let segment = SegmentId(r as u64 + 1);
                let entries: Vec<HintEntry<'_>> = recs
                    .iter()
                    .enumerate()
                    .map(|(i, &(k, put, expiry))| HintEntry {
                        kind: if put { RecordKind::Put } else { RecordKind::Tombstone },
                        expiry,
                        offset: u32::try_from(i).unwrap_or(u32::MAX),
                        value_len: 1,
                        key: &keys[k as usize],
                    })
                    .collect();
                for e in &entries {
                    let entry = Entry { segment, offset: e.offset, value_len: 1, expiry: e.expiry };
                    let live = e.kind == RecordKind::Put && !entry.is_expired(2);
                    model.insert(e.key.to_vec(), live.then_some(entry));
                }
                built.push(Run { segment, entries: SortedRun::from_entries(entries) });
            }
            let kd = merge_newest_live(&built, 2);
            let want: Vec<(Vec<u8>, Entry)> =
                model.into_iter().filter_map(|(k, e)| e.map(|e| (k, e))).collect();
            let got: Vec<(Vec<u8>, Entry)> = kd.iter().map(|(k, e)| (k.to_vec(), e)).collect();
            prop_assert_eq!(got, want);
        }
    }
}
