//! `wal.log`, the active segment: a preallocated file written through a shared
//! mapping (the [`Memtable`]), and the files of rotation.
//!
//! A segment file is allocated whole before its first record (real zeroed
//! blocks, so a full disk fails there and a store into the mapping never faults),
//! so appending is a copy into memory: no system call per write, and an
//! `fdatasync` never has to update the file's size.
//!
//! Rotation (DESIGN.md, "Rotation"), the part on the writer's path:
//! 1. a *spare* — the next segment, `<id>.wal.tmp`, with its header written, its
//!    blocks allocated and synced, already mapped — was made off the writer's
//!    path (by the sealer thread; made now only if none is ready);
//! 2. rename `wal.log` to `<id>.seg`;
//! 3. rename the spare to `wal.log` — the writer appends to it at once.
//!
//! The directory is synced before anything written to the new `wal.log` is
//! acknowledged as durable (`Memtable::mark_dir_unsynced`). Sealing the old
//! segment (sync, cut its unused tail, hint file) happens on the sealer thread.
//!
//! Killed after 2 and before 3 the directory has no `wal.log`: open creates one
//! and removes the spare with the other `*.tmp` leftovers.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::engine::SegmentId;
use crate::engine::dir;
use crate::engine::error::{Error, Result};
use crate::engine::format::hint::{HintEntry, HintWriter};
use crate::engine::format::record::len_u32;
use crate::engine::format::{FILE_HEADER_LEN, FileHeader, FileKind};
use crate::engine::fs::{AppendFile, Fs};
use crate::engine::memtable::Memtable;

use super::scan::{OnDamage, scan};

/// The writer's handle on `wal.log`: the only one that appends to its memtable.
#[derive(Debug)]
pub struct ActiveSegment {
    memtable: Arc<Memtable>,
    /// Bytes before this offset have had their writeback started.
    writeback_from: u64,
}

/// A segment file made ready to become `wal.log`.
#[derive(Debug)]
pub struct Spare {
    tmp: PathBuf,
    memtable: Memtable,
}

impl Spare {
    /// The segment id the spare was made for.
    pub fn id(&self) -> SegmentId {
        self.memtable.id()
    }

    /// Bytes it can hold.
    pub fn capacity(&self) -> u64 {
        self.memtable.capacity() as u64
    }

    /// Removes its file (a spare that will not be used).
    pub fn discard(self, fs: &dyn Fs) {
        let _ = fs.remove_file(&self.tmp);
    }
}

/// Bytes appended between starts of writeback (see [`ActiveSegment::writeback_due`]).
const WRITEBACK_EVERY: u64 = 8 << 20;

/// The header of segment `id`.
pub fn header(id: SegmentId) -> Vec<u8> {
    let mut header = Vec::with_capacity(FILE_HEADER_LEN);
    FileHeader {
        kind: FileKind::Segment,
        segment: id,
    }
    .encode(&mut header);
    header
}

/// Makes the file at `path` a fresh segment `id` of `capacity` bytes: header
/// written, blocks allocated, synced, mapped.
fn make_segment(
    fs: &dyn Fs,
    path: &Path,
    final_path: &Path,
    id: SegmentId,
    capacity: u64,
) -> Result<Memtable> {
    let header = header(id);
    let capacity = capacity.max(header.len() as u64);
    let mut file = create_empty(fs, path)?;
    file.write_all(&header)
        .map_err(|e| Error::io("writing", path, e))?;
    file.allocate(capacity)
        .map_err(|e| Error::io("allocating", path, e))?;
    file.sync().map_err(|e| Error::io("syncing", path, e))?;
    let cap = usize::try_from(capacity).map_err(|_| Error::OffsetOverflow {
        what: "a segment's capacity",
        len: capacity,
        max: usize::MAX as u64,
    })?;
    Memtable::map(id, final_path, file, header.len(), cap)
}

impl ActiveSegment {
    /// Creates a fresh `wal.log` for segment `id` holding `capacity` bytes,
    /// durable with its header and directory entry.
    pub fn create(fs: &dyn Fs, dir: &Path, id: SegmentId, capacity: u64) -> Result<ActiveSegment> {
        let path = dir.join(dir::WAL);
        let memtable = make_segment(fs, &path, &path, id, capacity)?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("syncing directory", dir, e))?;
        Ok(ActiveSegment::over(memtable))
    }

    /// Step 1 of rotation: a spare for segment `id`, off the writer's path.
    pub fn prepare(fs: &dyn Fs, dir: &Path, id: SegmentId, capacity: u64) -> Result<Spare> {
        let tmp = dir.join(format!("{:016x}.wal{}", id.0, dir::TMP_SUFFIX));
        match make_segment(fs, &tmp, &dir.join(dir::WAL), id, capacity) {
            Ok(memtable) => Ok(Spare { tmp, memtable }),
            Err(e) => {
                let _ = fs.remove_file(&tmp);
                Err(e)
            }
        }
    }

    /// Reopens an existing `wal.log` of segment `id` whose first `len` bytes are
    /// good. Bytes after them (a torn tail) are cut, and the file is allocated
    /// to `capacity` (or its length, if longer) before it is mapped.
    pub fn reopen(
        fs: &dyn Fs,
        dir: &Path,
        id: SegmentId,
        len: u64,
        dirty_tail: bool,
        capacity: u64,
    ) -> Result<ActiveSegment> {
        let path = dir.join(dir::WAL);
        let mut file = fs
            .open_append(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        if dirty_tail {
            // Cut, then allocate again: the space after the good prefix reads
            // as zeros, so no stale bytes can line up behind a later record.
            file.set_len(len)
                .map_err(|e| Error::io("truncating torn tail of", &path, e))?;
        }
        let on_disk = std::fs::metadata(&path)
            .map_err(|e| Error::io("reading size of", &path, e))?
            .len();
        let capacity = capacity.max(on_disk).max(len);
        file.allocate(capacity)
            .map_err(|e| Error::io("allocating", &path, e))?;
        file.sync().map_err(|e| Error::io("syncing", &path, e))?;
        let (len, cap) = (usize::try_from(len), usize::try_from(capacity));
        let (Ok(len), Ok(cap)) = (len, cap) else {
            return Err(Error::OffsetOverflow {
                what: "a segment's capacity",
                len: capacity,
                max: usize::MAX as u64,
            });
        };
        let memtable = Memtable::map(id, &path, file, len, cap)?;
        Ok(ActiveSegment::over(memtable))
    }

    fn over(memtable: Memtable) -> ActiveSegment {
        let len = memtable.len() as u64;
        ActiveSegment {
            memtable: Arc::new(memtable),
            writeback_from: len,
        }
    }

    /// Steps 2–3 of rotation: `wal.log` becomes `<id>.seg` and `spare` becomes
    /// `wal.log`. Returns the new active segment; `self` (the old one) goes to
    /// the sealer. On failure nothing was renamed if the first rename failed;
    /// otherwise the caller must latch: the directory has no `wal.log`.
    pub fn rotate_to(
        &self,
        fs: &dyn Fs,
        dir: &Path,
        spare: Spare,
    ) -> Result<ActiveSegment, RotateError> {
        let wal = dir.join(dir::WAL);
        let sealed = dir::segment_path(dir, self.id());
        if let Err(e) = fs.rename(&wal, &sealed) {
            spare.discard(fs);
            return Err(RotateError::Unchanged(Error::io(
                "sealing (rename)",
                &wal,
                e,
            )));
        }
        if let Err(e) = fs.rename(&spare.tmp, &wal) {
            return Err(RotateError::NoWal(Error::io("renaming", &spare.tmp, e)));
        }
        spare.memtable.mark_dir_unsynced();
        Ok(ActiveSegment::over(spare.memtable))
    }

    /// The memtable readers use.
    pub fn memtable(&self) -> &Arc<Memtable> {
        &self.memtable
    }

    /// The segment id of this `wal.log`.
    pub fn id(&self) -> SegmentId {
        self.memtable.id()
    }

    /// Bytes written (records and header).
    pub fn len(&self) -> u64 {
        self.memtable.len() as u64
    }

    /// Bytes the file was allocated.
    pub fn capacity(&self) -> u64 {
        self.memtable.capacity() as u64
    }

    /// Bytes that can still be appended.
    pub fn room(&self) -> u64 {
        self.capacity() - self.len()
    }

    /// True when only the header is there.
    pub fn is_empty(&self) -> bool {
        self.memtable.is_empty()
    }

    /// The file path.
    #[allow(dead_code, reason = "unused since the module went private")]
    pub fn path(&self) -> &Path {
        self.memtable.path()
    }

    /// Appends encoded records: a copy into the mapping, no system call.
    /// The caller made room ([`room`](Self::room)).
    #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        if bytes.len() as u64 > self.room() {
            return Err(Error::BatchTooLarge {
                len: bytes.len() as u64,
                max: self.room(),
            });
        }
        // SAFETY: this handle is the memtable's only appender (it is created
        // with it and never cloned), and the bytes fit, checked above.
        unsafe { self.memtable.append(bytes) };
        Ok(())
    }

    /// `(from, len)` of the bytes appended since writeback was last started,
    /// once there are [`WRITEBACK_EVERY`] of them. Without fsyncs (sync never /
    /// periodic) a full wal.log would leave all of its bytes to the fsync that
    /// seals it, so the writer has their writeback started as they come.
    pub fn writeback_due(&self) -> Option<(u64, u64)> {
        let len = self.len();
        (len - self.writeback_from >= WRITEBACK_EVERY)
            .then(|| (self.writeback_from, len - self.writeback_from))
    }

    /// Writeback of the bytes before `to` was started (or left to a sync).
    pub fn writeback_started(&mut self, to: u64) {
        self.writeback_from = self.writeback_from.max(to);
    }
}

/// How a rotation failed.
#[derive(Debug)]
pub enum RotateError {
    /// Nothing changed: `wal.log` is still the active segment.
    Unchanged(Error),
    /// `wal.log` was sealed but its successor could not take the name.
    NoWal(Error),
}

/// Builds the hint of a segment from its bytes (which decode cleanly), sorted
/// by key so that open can merge it without sorting.
pub fn build_hint(id: SegmentId, bytes: &[u8]) -> Vec<u8> {
    let mut entries = Vec::new();
    scan(bytes, FILE_HEADER_LEN, OnDamage::Resync, |offset, rec| {
        entries.push(HintEntry {
            kind: rec.kind,
            expiry: rec.expiry,
            offset,
            value_len: len_u32(rec.value.len()),
            key: rec.key,
        });
    });
    HintWriter::sorted(id, bytes.len() as u64, entries)
}

/// Step 3 of sealing (and of compaction): writes a hint file atomically.
pub fn write_hint(fs: &dyn Fs, dir: &Path, id: SegmentId, hint: &[u8]) -> Result<()> {
    let path = dir::hint_path(dir, id);
    write_file_atomically(fs, dir, &path, hint)
}

/// Opens `path` for appending through `fs`, created or emptied.
pub fn create_empty(fs: &dyn Fs, path: &Path) -> Result<Box<dyn AppendFile>> {
    let mut file = fs
        .open_append(path)
        .map_err(|e| Error::io("creating", path, e))?;
    file.set_len(0)
        .map_err(|e| Error::io("truncating", path, e))?;
    Ok(file)
}

/// Writes `bytes` to `path` through a `.tmp` file, fsyncing file and directory.
pub fn write_file_atomically(fs: &dyn Fs, dir: &Path, path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = dir::tmp_path(path);
    let result = (|| {
        let mut f = create_empty(fs, &tmp)?;
        f.write_all(bytes)
            .map_err(|e| Error::io("writing", &tmp, e))?;
        f.sync().map_err(|e| Error::io("syncing", &tmp, e))?;
        fs.rename(&tmp, path)
            .map_err(|e| Error::io("renaming", &tmp, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("syncing directory", dir, e))
    })();
    if result.is_err() {
        // Best effort: open removes any *.tmp left behind anyway.
        let _ = fs.remove_file(&tmp);
    }
    result
}
