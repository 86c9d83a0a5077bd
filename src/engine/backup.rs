//! Online backup: a consistent point-in-time copy of the data directory that
//! opens as a store of its own (DESIGN.md, "Backups").
//!
//! The *point* is taken under the writer lock, held only for as long as it
//! takes to clone a few `Arc`s: nothing is appended while it is held, so the
//! active memtable's length is the end of a whole group (never half a batch)
//! and every write acknowledged before the call lies below it — or in a
//! memtable being sealed, or a sealed segment, all named by the segment set
//! at that instant.
//!
//! What is in the backup, and where it comes from:
//! - sealed segments and their hints: immutable, so hard-linked (copied when a
//!   link fails, e.g. across file systems). The compaction lock is held from
//!   before the point until the last link, so no segment of the point is
//!   deleted — nor its id reused by a compaction output — in between. A file
//!   that could not be linked is pinned (the segment by its mapping, the hint
//!   by an open descriptor) and copied after the lock is released;
//! - memtables rotated out but not yet sealed: their records, copied out of
//!   the mapping, with a hint built from them;
//! - `wal.log`: the active memtable's records up to the point, copied out of
//!   the mapping (later appends land beyond them, so no lock is needed).
//!
//! Everything is written into `<to>.tmp-<pid>`, every file and the directory
//! fsynced, and only then renamed to `<to>`: a crash leaves at most a
//! directory whose name says it is unfinished.

use std::fs::File;
use std::io::{self, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use super::dir;
use super::error::{Error, Result};
use super::fs::Fs;
use super::memtable::Memtable;
use super::segment::active::{build_hint, create_empty};
use super::segment::sealed::SealedSegment;
use super::{Engine, SegmentId, Shared};

/// Bytes handed to one write while copying, so a large file is not one call.
const COPY_CHUNK: usize = 4 << 20;

/// What one [`Engine::backup`] wrote.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct BackupReport {
    /// Files in the backup (segments, hints and `wal.log`).
    pub files: u64,
    /// Their total size in bytes.
    pub bytes: u64,
    /// Of the files, how many are hard links to the data directory's own.
    pub linked: u64,
    /// Of the files, how many were written (copied or built).
    pub copied: u64,
    /// Live keys at the backup's point (as published then; an expiry may
    /// remove some by the time the backup is opened).
    pub live_keys: u64,
    /// Wall time the backup took.
    pub elapsed: Duration,
}

/// The segment set at the backup's point.
struct Point {
    /// The active memtable and its length then.
    wal: (Arc<Memtable>, usize),
    /// Memtables rotated out whose sealing has not finished (their length is final).
    sealing: Vec<Arc<Memtable>>,
    sealed: Vec<Arc<SealedSegment>>,
    live_keys: u64,
}

/// A file that could not be linked, pinned until it is copied.
enum Pinned {
    Segment(Arc<SealedSegment>),
    Hint(SegmentId, File),
}

impl Engine {
    /// Writes a consistent point-in-time copy of the store to the directory
    /// `to`, which must not exist or be empty, and must not lie inside the data
    /// directory; its parent must exist. Every write acknowledged before the
    /// call is in the copy, and no batch is in it in part. The copy opens with
    /// [`Engine::open`] as a store of its own.
    ///
    /// Writers are held up only while the point is taken (a few `Arc` clones
    /// under the writer lock); compaction waits until the sealed segments are
    /// linked (and a running compaction is waited for first). Sealed segments
    /// and hints are hard-linked, so a backup on the same file system costs
    /// little space — and shares the disk with the store. The copy is built
    /// in `<to>.tmp-<pid>` and renamed into place once every file and the
    /// directory are synced; a failed backup removes it.
    pub fn backup(&self, to: impl AsRef<Path>) -> Result<BackupReport> {
        let started = Instant::now();
        let to = to.as_ref();
        let s = &self.shared;
        s.check_open()?;
        let fs = &*s.opts.fs;
        let Target {
            parent,
            tmp,
            target,
        } = target_paths(&s.dir, to)?;
        fs.create_dir(&tmp).map_err(|e| match e.kind() {
            io::ErrorKind::AlreadyExists => Error::BackupTarget {
                path: to.to_path_buf(),
                reason: "its temporary directory (<target>.tmp-<pid>) exists: another backup \
                         to it is under way, or was killed (remove it)",
            },
            io::ErrorKind::PermissionDenied | io::ErrorKind::ReadOnlyFilesystem => {
                Error::BackupTarget {
                    path: to.to_path_buf(),
                    reason: "cannot be created: its parent directory is not writable",
                }
            }
            _ => Error::io("creating backup directory", &tmp, e),
        })?;
        let written = s.backup_into(&tmp).and_then(|mut report| {
            fs.rename(&tmp, &target).map_err(|e| match e.kind() {
                io::ErrorKind::DirectoryNotEmpty | io::ErrorKind::AlreadyExists => {
                    Error::BackupTarget {
                        path: to.to_path_buf(),
                        reason: "was filled while the backup ran",
                    }
                }
                _ => Error::io("renaming backup into place", &tmp, e),
            })?;
            fs.sync_dir(&parent)
                .map_err(|e| Error::io("syncing directory", &parent, e))?;
            report.elapsed = started.elapsed();
            Ok(report)
        });
        if written.is_err() {
            // Best effort: its name already says it is unfinished.
            let _ = std::fs::remove_dir_all(&tmp);
        }
        written
    }
}

impl Shared {
    /// Fills `tmp` with the backup and syncs it; the caller renames it.
    fn backup_into(&self, tmp: &Path) -> Result<BackupReport> {
        let fs = &*self.opts.fs;
        let mut report = BackupReport::default();
        let mut linked: Vec<PathBuf> = Vec::new();
        let mut pinned: Vec<Pinned> = Vec::new();
        let point = {
            let _no_compaction = self.hold_compaction()?;
            let point = self.point()?;
            for seg in &point.sealed {
                self.link_sealed(seg, tmp, &mut report, &mut linked, &mut pinned)?;
            }
            point
        };

        // The bulk copies, with no engine lock held.
        for p in pinned {
            match p {
                Pinned::Segment(seg) => {
                    write_file(fs, &dir::segment_path(tmp, seg.id()), seg.bytes())?;
                    report.note_copied(seg.bytes().len());
                }
                Pinned::Hint(id, mut file) => {
                    let mut hint = Vec::new();
                    file.read_to_end(&mut hint)
                        .map_err(|e| Error::io("reading hint", dir::hint_path(&self.dir, id), e))?;
                    write_file(fs, &dir::hint_path(tmp, id), &hint)?;
                    report.note_copied(hint.len());
                }
            }
        }
        for m in &point.sealing {
            let records = m.bytes();
            write_file(fs, &dir::segment_path(tmp, m.id()), records)?;
            report.note_copied(records.len());
            // A sealing memtable has no hint yet; one built here spares the
            // backup's first open a scan.
            let hint = build_hint(m.id(), records);
            write_file(fs, &dir::hint_path(tmp, m.id()), &hint)?;
            report.note_copied(hint.len());
        }
        let (wal, len) = &point.wal;
        let records = wal.bytes().get(..*len).unwrap_or(wal.bytes());
        write_file(fs, &tmp.join(dir::WAL), records)?;
        report.note_copied(records.len());

        // A link's data was synced by whoever wrote the file, but fsyncing it
        // again costs nothing then and keeps "every file synced" unconditional.
        for path in &linked {
            fs.open_append(path)
                .and_then(|mut f| f.sync())
                .map_err(|e| Error::io("syncing", path, e))?;
        }
        fs.sync_dir(tmp)
            .map_err(|e| Error::io("syncing directory", tmp, e))?;
        report.live_keys = point.live_keys;
        Ok(report)
    }

    /// The segment set under the writer lock: nothing is appended meanwhile,
    /// so the active memtable's length ends a whole group.
    fn point(&self) -> Result<Point> {
        let _writer = self.lock(&self.writer, "the writer lock")?;
        let (wal, sealing, sealed) = {
            let set = self.segments_read()?;
            (
                (Arc::clone(&set.active), set.active.len()),
                set.sealing.values().cloned().collect(),
                set.sealed.values().cloned().collect(),
            )
        };
        // After the segment set is released: the two are never held together.
        let live_keys = self.keydir_read()?.len() as u64;
        Ok(Point {
            wal,
            sealing,
            sealed,
            live_keys,
        })
    }

    /// Links `seg` and its hint into `tmp`, or pins what cannot be linked.
    fn link_sealed(
        &self,
        seg: &Arc<SealedSegment>,
        tmp: &Path,
        report: &mut BackupReport,
        linked: &mut Vec<PathBuf>,
        pinned: &mut Vec<Pinned>,
    ) -> Result<()> {
        let fs = &*self.opts.fs;
        let id = seg.id();
        let (from, to) = (dir::segment_path(&self.dir, id), dir::segment_path(tmp, id));
        // An uncut segment would be cut by the backup's first open, through
        // the shared inode, under a reader of the original: copy it instead.
        if !seg.is_uncut() && fs.hard_link(&from, &to).is_ok() {
            report.note_linked(seg.len());
            linked.push(to);
        } else {
            // Any failure (EXDEV, no hard links, the file gone with a removed
            // data directory): the mapping still holds every byte.
            pinned.push(Pinned::Segment(Arc::clone(seg)));
        }
        let (from, to) = (dir::hint_path(&self.dir, id), dir::hint_path(tmp, id));
        match fs.hard_link(&from, &to) {
            Ok(()) => {
                let len = std::fs::metadata(&to).map_or(0, |m| m.len());
                report.note_linked(len);
                linked.push(to);
            }
            Err(_) => match File::open(&from) {
                Ok(file) => pinned.push(Pinned::Hint(id, file)),
                // A hint whose writing failed: the backup's open scans instead.
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("opening hint", &from, e)),
            },
        }
        Ok(())
    }
}

impl BackupReport {
    fn note_linked(&mut self, len: u64) {
        self.files += 1;
        self.linked += 1;
        self.bytes += len;
    }

    fn note_copied(&mut self, len: usize) {
        self.files += 1;
        self.copied += 1;
        self.bytes += len as u64;
    }
}

/// Checks `to` and returns its parent and the temporary directory beside it.
fn target_paths(data_dir: &Path, to: &Path) -> Result<Target> {
    let bad = |reason| Error::BackupTarget {
        path: to.to_path_buf(),
        reason,
    };
    match std::fs::symlink_metadata(to) {
        Ok(m) if m.is_dir() => {
            let mut entries =
                std::fs::read_dir(to).map_err(|e| Error::io("listing backup target", to, e))?;
            if entries.next().is_some() {
                return Err(bad("exists and is not an empty directory"));
            }
        }
        Ok(_) => return Err(bad("exists and is not an empty directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(Error::io("examining backup target", to, e)),
    }
    let abs = std::path::absolute(to).map_err(|e| Error::io("resolving backup target", to, e))?;
    // A last component `..` (or a root) has no name; a `..` further up is
    // resolved with the parent below.
    let (Some(parent), Some(name)) = (abs.parent(), abs.file_name()) else {
        return Err(bad("names no directory that can be created"));
    };
    let parent = match std::fs::canonicalize(parent) {
        Ok(p) if p.is_dir() => p,
        Ok(_) => return Err(bad("its parent directory does not exist")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(bad("its parent directory does not exist"));
        }
        Err(e) => return Err(Error::io("resolving backup target", parent, e)),
    };
    let data = std::fs::canonicalize(data_dir)
        .map_err(|e| Error::io("resolving data directory", data_dir, e))?;
    let target = parent.join(name);
    if target.starts_with(&data) {
        return Err(bad("lies inside the data directory"));
    }
    let mut tmp_name = name.to_owned();
    tmp_name.push(format!(".tmp-{}", std::process::id()));
    let tmp = parent.join(tmp_name);
    Ok(Target {
        parent,
        tmp,
        target,
    })
}

/// Where a backup goes, with symlinks and `..` of its parent resolved.
struct Target {
    parent: PathBuf,
    tmp: PathBuf,
    target: PathBuf,
}

/// Writes `bytes` to the new file `path` through the seam and syncs it.
fn write_file(fs: &dyn Fs, path: &Path, bytes: &[u8]) -> Result<()> {
    let mut f = create_empty(fs, path)?;
    for chunk in bytes.chunks(COPY_CHUNK) {
        f.write_all(chunk)
            .map_err(|e| Error::io("writing", path, e))?;
    }
    f.sync().map_err(|e| Error::io("syncing", path, e))
}
