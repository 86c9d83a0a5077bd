//! `wal.log`, the active segment: appends, syncs, and sealing (rotation).
//!
//! Sealing, in order (DESIGN.md, "Rotation"):
//! 1. fsync `wal.log`;
//! 2. rename it to `<id>.seg` and fsync the directory — the segment is sealed;
//! 3. write `<id>.hint.tmp`, fsync, rename to `<id>.hint`, fsync the directory
//!    (a failure here costs only start-up speed: recovery scans instead);
//! 4. create a fresh `wal.log` with the next id, write its header, fsync it and
//!    the directory.
//!
//! A crash between 2 and 4 leaves no `wal.log`; open creates one.

use std::path::{Path, PathBuf};

use crate::engine::SegmentId;
use crate::engine::dir;
use crate::engine::error::{Error, Result};
use crate::engine::format::hint::{HintEntry, HintWriter};
use crate::engine::format::record::len_u32;
use crate::engine::format::{FILE_HEADER_LEN, FileHeader, FileKind};
use crate::engine::fs::{AppendFile, Fs};

use super::scan::{OnDamage, scan};

/// The open `wal.log`.
#[derive(Debug)]
pub struct ActiveSegment {
    file: Box<dyn AppendFile>,
    path: PathBuf,
    id: SegmentId,
    len: u64,
    /// Bytes before this offset have had their writeback started.
    writeback_from: u64,
}

/// Bytes appended between starts of writeback (see [`ActiveSegment::append`]).
const WRITEBACK_EVERY: u64 = 8 << 20;

impl ActiveSegment {
    /// Creates a fresh `wal.log` for segment `id`, durable with its header.
    /// Returns it with the header bytes (the new memtable's contents).
    pub fn create(fs: &dyn Fs, dir: &Path, id: SegmentId) -> Result<(ActiveSegment, Vec<u8>)> {
        let path = dir.join(dir::WAL);
        let mut header = Vec::with_capacity(FILE_HEADER_LEN);
        FileHeader {
            kind: FileKind::Segment,
            segment: id,
        }
        .encode(&mut header);
        // A previous wal.log may have been left shorter than a header.
        let mut file = create_empty(fs, &path)?;
        file.write_all(&header)
            .map_err(|e| Error::io("writing", &path, e))?;
        file.sync().map_err(|e| Error::io("syncing", &path, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("syncing directory", dir, e))?;
        let len = header.len() as u64;
        Ok((
            ActiveSegment {
                file,
                path,
                id,
                len,
                writeback_from: len,
            },
            header,
        ))
    }

    /// Reopens an existing `wal.log` of segment `id` whose first `len` bytes are
    /// good, truncating anything after them.
    pub fn reopen(
        fs: &dyn Fs,
        dir: &Path,
        id: SegmentId,
        len: u64,
        file_len: u64,
    ) -> Result<ActiveSegment> {
        let path = dir.join(dir::WAL);
        let mut file = fs
            .open_append(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        if file_len != len {
            file.set_len(len)
                .map_err(|e| Error::io("truncating torn tail of", &path, e))?;
            file.sync().map_err(|e| Error::io("syncing", &path, e))?;
        }
        Ok(ActiveSegment {
            file,
            path,
            id,
            len,
            writeback_from: len,
        })
    }

    /// The segment id of this `wal.log`.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// Current file length.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when only the header is there.
    pub fn is_empty(&self) -> bool {
        self.len <= FILE_HEADER_LEN as u64
    }

    /// The file path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends encoded records.
    pub fn append(&mut self, bytes: &[u8]) -> Result<()> {
        self.file
            .write_all(bytes)
            .map_err(|e| Error::io("writing", &self.path, e))?;
        self.len += bytes.len() as u64;
        // Without fsyncs (sync never / periodic) a full wal.log would leave all
        // of its bytes to the fsync that seals it, under the writer lock: start
        // their writeback as they come instead.
        if self.len - self.writeback_from >= WRITEBACK_EVERY {
            self.file
                .start_sync(self.writeback_from, self.len - self.writeback_from);
            self.writeback_from = self.len;
        }
        Ok(())
    }

    /// Makes every appended byte durable.
    pub fn sync(&mut self) -> Result<()> {
        self.file
            .sync()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }

    /// Steps 1–2 of sealing: after this the segment is `<id>.seg`. Consumes the
    /// handle; the caller creates the next `wal.log`.
    pub fn seal(mut self, fs: &dyn Fs, dir: &Path) -> Result<PathBuf> {
        self.sync()?;
        let sealed = dir::segment_path(dir, self.id);
        fs.rename(&self.path, &sealed)
            .map_err(|e| Error::io("sealing (rename)", &self.path, e))?;
        fs.sync_dir(dir)
            .map_err(|e| Error::io("syncing directory", dir, e))?;
        Ok(sealed)
    }
}

/// Builds the hint of a segment from its bytes (which decode cleanly).
pub fn build_hint(id: SegmentId, bytes: &[u8]) -> Vec<u8> {
    let mut hint = HintWriter::new(id, bytes.len() as u64);
    scan(bytes, FILE_HEADER_LEN, OnDamage::Resync, |offset, rec| {
        hint.push(&HintEntry {
            kind: rec.kind,
            expiry: rec.expiry,
            offset,
            value_len: len_u32(rec.value.len()),
            key: rec.key,
        });
    });
    hint.finish()
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
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
