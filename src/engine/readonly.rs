//! The read-only open: what offline tools (`verify`, `inspect`, `export`) use
//! so that looking at a directory never changes it, and works on a copy they
//! may not write to.
//!
//! Invariants of an engine opened with [`Engine::open_read_only`]:
//! - no file or directory is created, written, truncated, renamed or removed:
//!   no `LOCK` is created (an existing one is locked shared), a torn `wal.log`
//!   tail is cut only in memory, an interrupted compaction step is rolled
//!   forward or back only in the in-memory listing, leftovers stay;
//! - the state served is the one a read-write open would have produced;
//! - no background thread runs, and every write and compaction fails with
//!   [`Error::ReadOnlyOpen`].
//!
//! What it cannot do in memory it refuses: a legacy `wal.log` (or one being
//! migrated) needs a read-write open first.

use std::path::Path;

use super::dir::{self, DirLock, Listing};
use super::error::{Error, Result};
use super::format::MAGIC;
use super::options::Options;
use super::recovery::{Mode, RecoveryReport};
use super::{Engine, Shared};

impl Engine {
    /// Opens the existing data directory `dir` without changing anything in
    /// it; every write and [`compact`](Engine::compact) fails with
    /// [`Error::ReadOnlyOpen`]. Fails with [`Error::Locked`] while a
    /// read-write engine has it open, and when `dir` does not exist.
    ///
    /// ```
    /// # fn main() -> Result<(), kvstore::engine::Error> {
    /// use kvstore::engine::{Engine, Error, Options};
    /// let dir = tempfile::tempdir().expect("temp dir");
    /// let (db, _) = Engine::open(dir.path(), Options::default())?;
    /// db.put(b"k", b"v")?;
    /// db.close()?;
    /// let (db, _) = Engine::open_read_only(dir.path(), Options::default())?;
    /// assert_eq!(db.get(b"k")?.as_deref(), Some(&b"v"[..]));
    /// assert!(matches!(db.put(b"k", b"w"), Err(Error::ReadOnlyOpen { .. })));
    /// # Ok(()) }
    /// ```
    pub fn open_read_only(
        dir: impl AsRef<Path>,
        options: Options,
    ) -> Result<(Engine, RecoveryReport)> {
        Self::open_as(dir.as_ref(), options, Mode::ReadOnly)
    }

    /// Whether this engine was opened with [`open_read_only`](Engine::open_read_only).
    pub fn is_read_only_open(&self) -> bool {
        self.shared.access == Mode::ReadOnly
    }
}

impl Shared {
    /// Refuses `what` in a read-only open.
    pub(crate) fn check_writable(&self, what: &'static str) -> Result<()> {
        match self.access {
            Mode::Write => Ok(()),
            Mode::ReadOnly => Err(Error::ReadOnlyOpen {
                path: self.dir.clone(),
                refused: what,
            }),
        }
    }
}

/// The lock a read-only open holds: shared on an existing `LOCK`, none if
/// there is none. The directory must exist (it is never created).
pub(crate) fn lock(dir: &Path) -> Result<Option<DirLock>> {
    std::fs::metadata(dir).map_err(|e| Error::io("opening data directory", dir, e))?;
    dir::lock_shared(dir)
}

/// A legacy `wal.log`, or a migration in progress, would be rewritten by a
/// read-write open; a read-only one cannot stand in for that, so it refuses.
pub(crate) fn refuse_migration(dir: &Path, opts: &Options, listing: &Listing) -> Result<()> {
    let refuse = || {
        Err(Error::ReadOnlyOpen {
            path: dir.to_path_buf(),
            refused: "migrating a legacy wal.log",
        })
    };
    if listing.has_migrating {
        return refuse();
    }
    if !listing.has_wal {
        return Ok(());
    }
    let wal = dir.join(dir::WAL);
    let head = super::migrate::wal_head(&wal)?;
    let head = head.as_slice();
    let legacy = !head.is_empty()
        && !head.starts_with(&MAGIC)
        && opts.legacy_decoder.as_ref().is_some_and(|d| d.detect(head));
    if legacy { refuse() } else { Ok(()) }
}
