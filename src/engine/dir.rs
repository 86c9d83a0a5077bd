//! The data directory: every file name and magic number the engine uses,
//! listing them, and the lock that keeps a directory to one engine at a time.
//! No other module spells a file name.
//!
//! ```text
//! LOCK                      held (flock) while an engine has the directory open
//! wal.log                   the active segment
//! <id:016x>.seg             a sealed segment
//! <id:016x>.hint            its hint file
//! COMPACTION                the manifest of a compaction step being installed
//! *.tmp                     a file being written; leftovers are removed at open
//! wal.log.migrating         a legacy wal.log converted, not yet swapped in
//! wal.log.legacy[.N].bak    the original legacy wal.log, kept byte for byte
//! ```
//!
//! Segment and hint files start with [`MAGIC`] (their header's layout is in
//! `format`); the manifest, a text file, with [`MANIFEST_HEADER`].

use std::fs::{File, OpenOptions, TryLockError};
use std::path::{Path, PathBuf};

use super::SegmentId;
use super::error::{Error, Result};

/// The active segment's file name.
pub const WAL: &str = "wal.log";
/// The lock file's name.
pub const LOCK: &str = "LOCK";
/// Suffix of files still being written.
pub const TMP_SUFFIX: &str = ".tmp";
/// A converted legacy log awaiting its swap into `wal.log`.
pub const MIGRATING: &str = "wal.log.migrating";
/// The manifest of a compaction step being installed: its inputs and outputs.
pub const MANIFEST: &str = "COMPACTION";
/// The first line of a manifest, naming its version.
pub const MANIFEST_HEADER: &str = "kvstore compaction manifest v1";
/// The first bytes of every segment and hint file.
pub const MAGIC: [u8; 8] = *b"KVSTORE\0";
const LEGACY_BACKUP: &str = "wal.log.legacy";
const BACKUP_EXT: &str = "bak";
const SEG_EXT: &str = "seg";
const HINT_EXT: &str = "hint";

/// Path of sealed segment `id`.
pub fn segment_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{:016x}.{SEG_EXT}", id.0))
}

/// Path of the hint file of segment `id`.
pub fn hint_path(dir: &Path, id: SegmentId) -> PathBuf {
    dir.join(format!("{:016x}.{HINT_EXT}", id.0))
}

/// `path` with the temporary suffix added.
pub fn tmp_path(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(TMP_SUFFIX);
    PathBuf::from(s)
}

/// A free backup name for a legacy `wal.log`.
pub fn legacy_backup_path(dir: &Path) -> PathBuf {
    let first = dir.join(format!("{LEGACY_BACKUP}.{BACKUP_EXT}"));
    if !first.exists() {
        return first;
    }
    (1u32..)
        .map(|n| dir.join(format!("{LEGACY_BACKUP}.{n}.{BACKUP_EXT}")))
        .find(|p| !p.exists())
        .unwrap_or(first)
}

/// What the directory holds.
#[derive(Debug, Default)]
pub struct Listing {
    /// Sealed segments, sorted by id.
    pub segments: Vec<SegmentId>,
    /// Segments that have a hint file.
    pub hints: Vec<SegmentId>,
    /// Files to delete: unfinished writes.
    pub leftovers: Vec<PathBuf>,
    /// Whether `wal.log` exists.
    pub has_wal: bool,
    /// Whether a migrated legacy log awaits its swap.
    pub has_migrating: bool,
}

fn parse_id(stem: &str) -> Option<SegmentId> {
    (stem.len() == 16)
        .then(|| u64::from_str_radix(stem, 16).ok())
        .flatten()
        .map(SegmentId)
}

/// Lists the data directory.
pub fn list(dir: &Path) -> Result<Listing> {
    let mut l = Listing::default();
    let rd = std::fs::read_dir(dir).map_err(|e| Error::io("listing", dir, e))?;
    for ent in rd {
        let ent = ent.map_err(|e| Error::io("listing", dir, e))?;
        let name = ent.file_name();
        let Some(name) = name.to_str() else { continue };
        if name == WAL {
            l.has_wal = true;
        } else if name == MIGRATING {
            l.has_migrating = true;
        } else if name.ends_with(TMP_SUFFIX) {
            l.leftovers.push(ent.path());
        } else if let Some((stem, ext)) = name.split_once('.') {
            match (parse_id(stem), ext) {
                (Some(id), SEG_EXT) => l.segments.push(id),
                (Some(id), HINT_EXT) => l.hints.push(id),
                _ => {}
            }
        }
    }
    l.segments.sort_unstable();
    l.hints.sort_unstable();
    Ok(l)
}

/// The held directory lock; dropping it unlocks the directory.
///
/// It unlocks explicitly before the file is closed: a child process forked
/// meanwhile shares the lock through its copy of the descriptor until it
/// execs, so closing alone would leave the directory looking locked to an
/// immediate reopen.
#[derive(Debug)]
pub struct DirLock(File);

impl Drop for DirLock {
    fn drop(&mut self) {
        let _ = self.0.unlock();
    }
}

/// Takes the directory lock, creating the directory when missing.
pub fn lock(dir: &Path) -> Result<DirLock> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io("creating data directory", dir, e))?;
    let path = dir.join(LOCK);
    let file = OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| Error::io("opening lock file", &path, e))?;
    match file.try_lock() {
        Ok(()) => Ok(DirLock(file)),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io("locking", &path, e)),
    }
}

/// Takes a shared lock on an existing `LOCK` without creating or writing
/// anything; `None` when there is no lock file (nothing to share with).
/// Fails with [`Error::Locked`] while a read-write engine holds the directory.
pub fn lock_shared(dir: &Path) -> Result<Option<DirLock>> {
    let path = dir.join(LOCK);
    let file = match File::open(&path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(Error::io("opening lock file", &path, e)),
    };
    match file.try_lock_shared() {
        Ok(()) => Ok(Some(DirLock(file))),
        Err(TryLockError::WouldBlock) => Err(Error::Locked {
            path: dir.to_path_buf(),
        }),
        Err(TryLockError::Error(e)) => Err(Error::io("locking", &path, e)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_sorts_segments_and_flags_leftovers() {
        let d = tempfile::tempdir().unwrap();
        for name in [
            "0000000000020000.seg",
            "0000000000010000.seg",
            "0000000000010000.hint",
            "0000000000030000.seg.tmp",
            "wal.log",
            "notes.txt",
        ] {
            std::fs::write(d.path().join(name), b"").unwrap();
        }
        let l = list(d.path()).unwrap();
        assert_eq!(l.segments, vec![SegmentId(0x10000), SegmentId(0x20000)]);
        assert_eq!(l.hints, vec![SegmentId(0x10000)]);
        assert_eq!(l.leftovers.len(), 1);
        assert!(l.has_wal);
    }

    #[test]
    fn second_lock_of_one_directory_fails() {
        let d = tempfile::tempdir().unwrap();
        let _held = lock(d.path()).unwrap();
        assert!(matches!(lock(d.path()), Err(Error::Locked { .. })));
    }
}
