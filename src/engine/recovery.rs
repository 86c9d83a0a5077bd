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

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::SegmentId;
use super::dir;
use super::error::{Error, Result};
use super::format::hint::Hint;
use super::format::record::{self, RecordKind};
use super::format::{DecodeError, FILE_HEADER_LEN, FileHeader, FileKind};
use super::keydir::{Entry, Key, Keydir};
use super::memtable::Memtable;
use super::migrate;
use super::options::Options;
use super::segment::SegmentSet;
use super::segment::active::ActiveSegment;
use super::segment::scan::{OnDamage, ScanSummary, scan};
use super::segment::sealed::SealedSegment;

/// What [`Engine::open`](super::Engine::open) found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
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

/// One record found; its index in the list of finds is its position in history.
struct Found {
    key: Key,
    kind: RecordKind,
    entry: Entry,
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

    let mut found: Vec<Found> = Vec::new();
    let mut sealed = std::collections::BTreeMap::new();
    let mut disk_bytes = 0u64;
    for &id in &listing.segments {
        let path = dir::segment_path(dir, id);
        let mut seg = SealedSegment::open(id, &path)?;
        let from_hint = listing.hints.binary_search(&id).is_ok()
            && load_hint(dir, &seg, &mut found, &mut report);
        if from_hint {
            report.hints_used += 1;
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
            let mark = found.len();
            let mut unsealed = has_zero_tail(seg.bytes());
            let on_damage = if unsealed {
                OnDamage::Stop
            } else {
                OnDamage::Resync
            };
            let mut s = scan_sealed(&seg, on_damage, &mut found);
            if !unsealed && !s.clean_end && (s.end as u64) < seg.len() {
                unsealed = true;
                found.truncate(mark);
                s = scan_sealed(&seg, OnDamage::Stop, &mut found);
            }
            report.records += s.records;
            report.corrupt_records += s.corrupt;
            report.batches_discarded += s.batches_discarded;
            if s.corrupt > 0 || s.batches_discarded > 0 {
                tracing::warn!(segment = %id, corrupt = s.corrupt, batches = s.batches_discarded, "skipped damaged records in sealed segment");
            }
            if mode == Mode::Write && (s.clean_end || unsealed) && (s.end as u64) < seg.len() {
                // Sealed by a rotation that was killed before its unused,
                // preallocated tail was cut (and maybe its torn records
                // after the last sync): cut it now.
                seg = cut_zero_tail(opts, &path, id, s.end as u64)?;
            }
        }
        disk_bytes += seg.len();
        report.segments += 1;
        sealed.insert(id, Arc::new(seg));
    }

    let next_id = listing
        .segments
        .last()
        .map_or(SegmentId::FIRST, |id| id.next_generation());
    let (active, memtable) = recover_wal(dir, opts, next_id, &mut found, &mut report, mode)?;
    disk_bytes += memtable.len() as u64;

    let live = newest_live(found, now);
    let keydir = Keydir::from_sorted(live);
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

/// Step 7: the newest record of each key, if it is a live put, in key order.
///
/// Sorts a permutation of small (first two key words, index) triples rather
/// than the records themselves: for keys up to 16 bytes a comparison is two
/// integer compares with no pointer to follow, and moving 24 bytes instead of
/// a whole record is what made sorting the bulk of open.
fn newest_live(mut found: Vec<Found>, now: u64) -> Vec<(Key, Entry)> {
    // `found` is in history order; its index is the record's age.
    let mut order: Vec<(u64, u64, usize)> = found
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let (w1, w2) = super::key::words(&f.key);
            (w1, w2, i)
        })
        .collect();
    order.sort_unstable_by(|a, b| {
        (a.0, a.1)
            .cmp(&(b.0, b.1))
            .then_with(|| found[a.2].key.cmp(&found[b.2].key))
            .then(b.2.cmp(&a.2))
    });
    let mut live = Vec::with_capacity(order.len());
    let mut previous: Option<usize> = None;
    for &(_, _, i) in &order {
        if previous.is_some_and(|p| found[p].key == found[i].key) {
            continue;
        }
        previous = Some(i);
        let f = &found[i];
        if f.kind == RecordKind::Put && !f.entry.is_expired(now) {
            live.push((f.key.clone(), f.entry));
        }
    }
    found.clear();
    live
}

/// Loads a hint if it is whole and describes `seg` exactly; false means scan.
fn load_hint(
    dir: &Path,
    seg: &SealedSegment,
    found: &mut Vec<Found>,
    report: &mut RecoveryReport,
) -> bool {
    let path = dir::hint_path(dir, seg.id());
    let Ok(bytes) = std::fs::read(&path) else {
        return false;
    };
    let hint = match Hint::parse(&bytes) {
        Ok(h) if h.segment == seg.id() && h.segment_len == seg.len() => h,
        Ok(_) => {
            tracing::warn!(path = %path.display(), "hint file does not match its segment; scanning");
            return false;
        }
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unusable hint file; scanning");
            return false;
        }
    };
    let mark = found.len();
    found.reserve(hint.len() as usize);
    let id = seg.id();
    let ok = hint.for_each(|e| {
        found.push(Found {
            key: Key::from_slice(e.key),
            kind: e.kind,
            entry: Entry {
                segment: id,
                offset: e.offset,
                value_len: e.value_len,
                expiry: e.expiry,
            },
        });
    });
    if ok.is_err() {
        found.truncate(mark);
        return false;
    }
    report.records += u64::from(hint.len());
    true
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
    found: &mut Vec<Found>,
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
    let s = scan(&bytes, FILE_HEADER_LEN, OnDamage::Stop, |offset, rec| {
        found.push(Found {
            key: Key::from_slice(rec.key),
            kind: rec.kind,
            entry: Entry {
                segment: id,
                offset,
                value_len: record::len_u32(rec.value.len()),
                expiry: rec.expiry,
            },
        });
    });
    report.records += s.records;
    report.corrupt_records += s.corrupt;
    report.batches_discarded += s.batches_discarded;
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

/// Scans sealed segment `seg`, pushing every record it accepts.
fn scan_sealed(seg: &SealedSegment, on_damage: OnDamage, found: &mut Vec<Found>) -> ScanSummary {
    let id = seg.id();
    scan(seg.bytes(), FILE_HEADER_LEN, on_damage, |offset, rec| {
        found.push(Found {
            key: Key::from_slice(rec.key),
            kind: rec.kind,
            entry: Entry {
                segment: id,
                offset,
                value_len: record::len_u32(rec.value.len()),
                expiry: rec.expiry,
            },
        });
    })
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
