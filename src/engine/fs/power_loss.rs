//! [`PowerLossFs`]: a simulated power cut, the way RocksDB's
//! `FaultInjectionTestFS` and sled's crash tests make one.
//!
//! Killing a process keeps the page cache, so a crash test that only sends
//! SIGKILL never loses a byte that was written but not fsynced. This seam keeps
//! its own account of what a disk would hold if the power went out now, and
//! [`PowerLossFs::power_loss`] rewrites the directory to that state.
//!
//! What it models:
//! - **file contents**: a file's durable image is what it held when
//!   [`AppendFile::sync`] was last called on it (read through its descriptor
//!   before the real fdatasync starts, so bytes stored concurrently with the
//!   sync are not counted as covered). `wal.log` is written through a shared
//!   mapping that no seam sees; its stores are caught by this read. The durable
//!   length is the length at that sync (`allocate` and `set_len` become durable
//!   with the next sync, as with fdatasync);
//! - **directory entries**: creations, renames and removals are durable once
//!   [`Fs::sync_dir`] of their directory returns. Of those made since, a power
//!   loss keeps none ([`Tail::Synced`]) or, otherwise, a random prefix in the
//!   order they were made — the ordered metadata journal of ext4 or XFS, never
//!   a later one without an earlier one; a rename is one change, never half
//!   done (the file keeps exactly one of its two names). A name lost this way vanishes (or
//!   reverts to the file it named before), and a removal lost this way brings
//!   the name back with its file's durable image;
//! - **the unsynced tail**: per file, [`Tail`] chooses whether nothing written
//!   since the last sync survives, a random prefix of it does, or such a prefix
//!   with a random piece (up to 1 KiB) zeroed or garbled (a torn write);
//! - **the cut itself**: from [`cut_power`](PowerLossFs::cut_power) (or the
//!   call chosen by [`cut_power_at_call`](PowerLossFs::cut_power_at_call)) on,
//!   every call through the seam fails with `EIO`, so engine threads still
//!   running make nothing more durable; stores into a mapping still land, but
//!   only in the page cache, which the power loss then discards.
//!
//! What it does not model:
//! - reordering inside the unsynced region beyond "a prefix, maybe torn": a
//!   disk can persist a later page without an earlier one (sled's "random
//!   subset of pages" is stronger);
//! - metadata other than names and sizes (mtime, permissions, the directory
//!   itself being created — it is taken as durable);
//! - a sync that reports success without persisting (lying disks), or bit rot
//!   of synced data;
//! - more than one directory level: entries are tracked per parent directory;
//! - a file's data reaching the disk on its own (writeback) before any sync:
//!   unsynced bytes survive only through [`Tail`] at the power loss, which
//!   covers the same outcomes for the bytes of the last sync onward.
//!
//! Negative controls, to show a checker can fail:
//! [`drop_dir_syncs`](PowerLossFs::drop_dir_syncs) and
//! [`drop_syncs_of`](PowerLossFs::drop_syncs_of) make chosen syncs succeed
//! without making anything durable.
//!
//! Files the seam never saw created (the lock file, anything written with
//! `std::fs` directly, everything present at [`PowerLossFs::new`]) are taken
//! as durable with the contents they have when first seen; a removal made
//! outside the seam becomes durable at the next directory sync.
//!
//! Use: open an engine with [`Options::fs`](crate::engine::Options::fs) set
//! to a `PowerLossFs`, work, cut the power, drop the engine (its threads then
//! fail their calls and stop), call `power_loss`, reopen with any `Fs`.
//!
//! ```
//! use kvstore::engine::fs::{AppendFile, Fs, PowerLossFs, Tail};
//! let dir = tempfile::tempdir().expect("temp dir");
//! let fs = PowerLossFs::new(dir.path()).expect("snapshot");
//! let mut f = fs.open_append(&dir.path().join("a")).expect("create");
//! f.write_all(b"synced").expect("write");
//! f.sync().expect("sync");
//! fs.sync_dir(dir.path()).expect("sync dir");
//! f.write_all(b" and not").expect("write");
//! drop(f);
//! fs.power_loss(7, Tail::Synced).expect("restore");
//! assert_eq!(std::fs::read(dir.path().join("a")).expect("read"), b"synced");
//! ```

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::fmt::Debug;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use super::{AppendFile, Fs, MmapRaw, StdAppendFile, open_rw_append};

/// What survives of the bytes written to a file since its last sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tail {
    /// Nothing: every file holds exactly its last synced image.
    Synced,
    /// A random prefix of what was written since (maybe all, maybe none).
    Prefix,
    /// A random prefix, with a random piece of it zeroed or garbled.
    Torn,
    /// One of the three, chosen per file.
    Mixed,
}

/// What [`PowerLossFs::power_loss`] did to the directory.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerLossReport {
    /// Files left in the directory.
    pub files: usize,
    /// Names present before the cut that were not durable (created or renamed
    /// since the last directory sync), now gone or naming their old file.
    pub names_lost: usize,
    /// Names removed or renamed away since the last directory sync, back again.
    pub names_revived: usize,
    /// Files whose contents differ from what they held at the cut.
    pub files_reverted: usize,
    /// Files that kept some unsynced bytes (a prefix of their tail).
    pub tails_kept: usize,
    /// Files with a torn (zeroed or garbled) piece.
    pub tails_torn: usize,
}

/// How many calls of each kind the seam has seen; see [`PowerLossFs::counts`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PowerLossCounts {
    /// Calls through the seam, every kind.
    pub calls: u64,
    /// File syncs that recorded a durable image.
    pub syncs: u64,
    /// Directory syncs that made entries durable.
    pub dir_syncs: u64,
    /// Directory syncs dropped by [`PowerLossFs::drop_dir_syncs`].
    pub dir_syncs_dropped: u64,
    /// File syncs dropped by [`PowerLossFs::drop_syncs_of`].
    pub syncs_dropped: u64,
    /// Calls failed because the power was cut.
    pub failed_after_cut: u64,
    /// Files found changed outside the seam (created or removed with `std::fs`).
    pub outside_seam: u64,
}

type FileId = u64;
/// A directory entry: (directory, name).
type Name = (PathBuf, OsString);

#[derive(Debug, Default)]
struct Model {
    next_id: FileId,
    /// Each file's durable image; a file never synced has none (empty).
    synced: HashMap<FileId, Vec<u8>>,
    /// Names as the running engine sees them.
    live: BTreeMap<Name, FileId>,
    /// Names as they were at the last directory sync.
    durable: BTreeMap<Name, FileId>,
    /// Per directory, the entry changes made since its last sync, in order.
    pending: BTreeMap<PathBuf, Vec<DirOp>>,
    dirs: BTreeSet<PathBuf>,
}

/// One change to a directory's entries.
#[derive(Debug, Clone)]
enum DirOp {
    /// `name` now names file `id` (a creation, or the target of a rename).
    Link(OsString, FileId),
    /// `name` is gone (a removal).
    Unlink(OsString),
    /// The first name now names the file the second named before, atomically
    /// (a rename never leaves the file with no name, or with both).
    Rename(OsString, OsString),
}

impl Model {
    fn new_file(&mut self) -> FileId {
        self.next_id += 1;
        self.next_id
    }

    fn link(&mut self, name: Name, id: FileId) {
        self.pending
            .entry(name.0.clone())
            .or_default()
            .push(DirOp::Link(name.1.clone(), id));
        self.live.insert(name, id);
    }

    fn rename(&mut self, from: &Name, to: Name, id: Option<FileId>) {
        self.live.remove(from);
        if from.0 == to.0 {
            self.pending
                .entry(to.0.clone())
                .or_default()
                .push(DirOp::Rename(to.1.clone(), from.1.clone()));
        } else {
            // Across directories the two halves are made durable by the sync
            // of each: the seam does not model their order.
            self.pending
                .entry(from.0.clone())
                .or_default()
                .push(DirOp::Unlink(from.1.clone()));
            if let Some(id) = id {
                self.pending
                    .entry(to.0.clone())
                    .or_default()
                    .push(DirOp::Link(to.1.clone(), id));
            }
        }
        if let Some(id) = id {
            self.live.insert(to, id);
        }
    }

    fn unlink(&mut self, name: &Name) {
        self.pending
            .entry(name.0.clone())
            .or_default()
            .push(DirOp::Unlink(name.1.clone()));
        self.live.remove(name);
    }

    /// The names a power loss leaves: the synced ones, then of each
    /// directory's later changes the first `keep(dir, count)`.
    fn names_after(&self, mut keep: impl FnMut(usize) -> usize) -> BTreeMap<Name, FileId> {
        let mut names = self.durable.clone();
        for (dir, ops) in &self.pending {
            for op in &ops[..keep(ops.len()).min(ops.len())] {
                match op {
                    DirOp::Link(n, id) => names.insert((dir.clone(), n.clone()), *id),
                    DirOp::Unlink(n) => names.remove(&(dir.clone(), n.clone())),
                    DirOp::Rename(to, from) => match names.remove(&(dir.clone(), from.clone())) {
                        Some(id) => names.insert((dir.clone(), to.clone()), id),
                        None => None,
                    },
                };
            }
        }
        names
    }

    /// A file found at `name` on disk that the seam did not create: durable
    /// as it is.
    fn adopt(&mut self, name: &Name, bytes: Vec<u8>, counts: &Counters) -> FileId {
        let id = self.new_file();
        self.synced.insert(id, bytes);
        self.live.insert(name.clone(), id);
        self.durable.insert(name.clone(), id);
        Counters::bump(&counts.outside_seam);
        id
    }

    /// The id `path` names now, adopting a file the seam never saw.
    fn lookup(&mut self, name: &Name, path: &Path, counts: &Counters) -> Option<FileId> {
        if let Some(&id) = self.live.get(name) {
            return Some(id);
        }
        let bytes = std::fs::read(path).ok()?;
        Some(self.adopt(name, bytes, counts))
    }
}

#[derive(Debug, Default)]
struct Counters {
    calls: AtomicU64,
    syncs: AtomicU64,
    dir_syncs: AtomicU64,
    dir_syncs_dropped: AtomicU64,
    syncs_dropped: AtomicU64,
    failed_after_cut: AtomicU64,
    outside_seam: AtomicU64,
}

impl Counters {
    fn bump(c: &AtomicU64) {
        c.fetch_add(1, Ordering::SeqCst);
    }
}

#[derive(Debug, Default)]
struct State {
    model: Mutex<Model>,
    cut: AtomicBool,
    /// 0 = no planned cut; otherwise the call number (1-based, of all kinds)
    /// that finds the power gone.
    cut_at: AtomicU64,
    drop_dir_syncs: AtomicBool,
    /// File syncs of names ending so are dropped (see `drop_syncs_of`).
    drop_syncs_of: Mutex<Option<OsString>>,
    counts: Counters,
}

impl State {
    fn model(&self) -> MutexGuard<'_, Model> {
        // A panic while the lock was held leaves a model that is still
        // consistent enough for a test to report from.
        self.model.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Admits one call, or fails it because the power is (now) gone.
    fn enter(&self) -> io::Result<()> {
        let n = self.counts.calls.fetch_add(1, Ordering::SeqCst) + 1;
        let at = self.cut_at.load(Ordering::SeqCst);
        if at != 0 && n >= at {
            self.cut.store(true, Ordering::SeqCst);
        }
        if self.cut.load(Ordering::SeqCst) {
            Counters::bump(&self.counts.failed_after_cut);
            return Err(io::Error::from_raw_os_error(libc::EIO));
        }
        Ok(())
    }
}

/// A [`Fs`] over the real file system that can simulate losing power: see the
/// [module documentation](self) for what it models. A test seam, like
/// [`FaultyFs`](super::FaultyFs).
#[derive(Debug, Clone)]
pub struct PowerLossFs {
    state: Arc<State>,
}

fn split(path: &Path) -> io::Result<Name> {
    match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => Ok((dir.to_path_buf(), name.to_owned())),
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} names no file in a directory", path.display()),
        )),
    }
}

/// Regular files of `dir` and their contents (none if `dir` does not exist).
fn regular_files(dir: &Path) -> io::Result<Vec<(OsString, PathBuf)>> {
    let rd = match std::fs::read_dir(dir) {
        Ok(rd) => rd,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut out = Vec::new();
    for entry in rd {
        let entry = entry?;
        if entry.file_type()?.is_file() {
            out.push((entry.file_name(), entry.path()));
        }
    }
    Ok(out)
}

impl PowerLossFs {
    /// A seam for the files of `dir`, taking everything already there as
    /// durable. `dir` need not exist yet.
    pub fn new(dir: &Path) -> io::Result<PowerLossFs> {
        let state = State::default();
        {
            let mut m = state.model();
            m.dirs.insert(dir.to_path_buf());
            for (name, path) in regular_files(dir)? {
                let bytes = std::fs::read(&path)?;
                let id = m.new_file();
                m.synced.insert(id, bytes);
                let name = (dir.to_path_buf(), name);
                m.live.insert(name.clone(), id);
                m.durable.insert(name, id);
            }
        }
        Ok(PowerLossFs {
            state: Arc::new(state),
        })
    }

    /// Cuts the power now: every later call through the seam fails with `EIO`.
    pub fn cut_power(&self) {
        self.state.cut.store(true, Ordering::SeqCst);
    }

    /// Cuts the power at the `nth` (1-based, counted from now) call through
    /// the seam, whatever its kind, on whichever engine thread makes it; that
    /// call fails, as do all after it.
    pub fn cut_power_at_call(&self, nth: u64) {
        let done = self.state.counts.calls.load(Ordering::SeqCst);
        self.state.cut_at.store(done + nth.max(1), Ordering::SeqCst);
    }

    /// Whether the power is cut.
    pub fn is_cut(&self) -> bool {
        self.state.cut.load(Ordering::SeqCst)
    }

    /// A negative control: while set, [`Fs::sync_dir`] succeeds without making
    /// anything durable (what a build that forgot its directory fsyncs
    /// would do), so a checker can be shown to catch the loss.
    pub fn drop_dir_syncs(&self, drop: bool) {
        self.state.drop_dir_syncs.store(drop, Ordering::SeqCst);
    }

    /// A negative control: while set, [`AppendFile::sync`] of a file whose
    /// name (when opened) ends with `suffix` succeeds without making anything
    /// durable — say `".seg.tmp"`, for a build that forgot to sync compaction
    /// outputs before their manifest. `None` stops dropping.
    pub fn drop_syncs_of(&self, suffix: Option<&str>) {
        *self
            .state
            .drop_syncs_of
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = suffix.map(OsString::from);
    }

    /// Calls seen so far.
    pub fn counts(&self) -> PowerLossCounts {
        let c = &self.state.counts;
        let get = |a: &AtomicU64| a.load(Ordering::SeqCst);
        PowerLossCounts {
            calls: get(&c.calls),
            syncs: get(&c.syncs),
            dir_syncs: get(&c.dir_syncs),
            dir_syncs_dropped: get(&c.dir_syncs_dropped),
            syncs_dropped: get(&c.syncs_dropped),
            failed_after_cut: get(&c.failed_after_cut),
            outside_seam: get(&c.outside_seam),
        }
    }

    /// Cuts the power (if not yet cut) and rewrites the directory to what a
    /// disk would hold afterwards, choosing the fate of unsynced bytes with
    /// `tail` and the random `seed`.
    ///
    /// Call it once the engine is dropped: the directory's files are deleted
    /// and written anew (fresh inodes, so a mapping still alive cannot reach
    /// them), and nothing must race with that. The seam stays cut; open the
    /// directory again with a fresh one.
    pub fn power_loss(&self, seed: u64, tail: Tail) -> io::Result<PowerLossReport> {
        self.cut_power();
        let mut rng = Rng::new(seed);
        let m = self.state.model();
        let mut report = PowerLossReport::default();
        let names = m.names_after(|n| match tail {
            Tail::Synced => 0,
            _ => rng.below(n + 1),
        });
        // What each live file holds at the cut (the page cache).
        let mut current: HashMap<FileId, Vec<u8>> = HashMap::new();
        for ((dir, name), &id) in &m.live {
            if let Ok(bytes) = std::fs::read(dir.join(name)) {
                current.insert(id, bytes);
            }
        }
        report.names_lost = m
            .live
            .iter()
            .filter(|(n, id)| names.get(*n) != Some(*id))
            .count();
        report.names_revived = names
            .iter()
            .filter(|(n, id)| m.live.get(*n) != Some(*id))
            .count();
        // A file named twice durably (a hard link the engine never makes, or
        // two names in flux) gets one fate, decided once.
        let mut fate: HashMap<FileId, Vec<u8>> = HashMap::new();
        for &id in names.values() {
            if fate.contains_key(&id) {
                continue;
            }
            let empty = Vec::new();
            let synced = m.synced.get(&id).unwrap_or(&empty);
            let now = current.get(&id).unwrap_or(synced);
            let tail = match tail {
                Tail::Mixed => [Tail::Synced, Tail::Prefix, Tail::Torn][rng.below(3)],
                t => t,
            };
            let (bytes, outcome) = after_power_loss(synced, now, tail, &mut rng);
            match outcome {
                Outcome::Synced => {}
                Outcome::Prefix => report.tails_kept += 1,
                Outcome::Torn => report.tails_torn += 1,
            }
            if bytes != *now {
                report.files_reverted += 1;
            }
            fate.insert(id, bytes);
        }
        for dir in &m.dirs {
            for (_, path) in regular_files(dir)? {
                std::fs::remove_file(&path)?;
            }
        }
        for ((dir, name), id) in &names {
            if let Some(bytes) = fate.get(id) {
                std::fs::create_dir_all(dir)?;
                std::fs::write(dir.join(name), bytes)?;
                report.files += 1;
            }
        }
        Ok(report)
    }

    fn wrap(&self, id: FileId, name: OsString, file: std::fs::File) -> Box<dyn AppendFile> {
        Box::new(PowerLossFile {
            inner: StdAppendFile(file),
            id,
            name,
            state: Arc::clone(&self.state),
        })
    }
}

impl Fs for PowerLossFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        self.state.enter()?;
        let name = split(path)?;
        let mut m = self.state.model();
        m.dirs.insert(name.0.clone());
        let known = m.lookup(&name, path, &self.state.counts);
        let file = open_rw_append(path)?;
        let file_name = name.1.clone();
        let id = match known {
            Some(id) => id,
            None => {
                let id = m.new_file();
                m.link(name, id);
                id
            }
        };
        Ok(self.wrap(id, file_name, file))
    }

    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.state.enter()?;
        let (src, dst) = (split(from)?, split(to)?);
        let mut m = self.state.model();
        m.dirs.insert(dst.0.clone());
        let id = m.lookup(&src, from, &self.state.counts);
        std::fs::rename(from, to)?;
        m.rename(&src, dst, id);
        Ok(())
    }

    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.state.enter()?;
        let name = split(path)?;
        let mut m = self.state.model();
        let _ = m.lookup(&name, path, &self.state.counts);
        std::fs::remove_file(path)?;
        m.unlink(&name);
        Ok(())
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.state.enter()?;
        if self.state.drop_dir_syncs.load(Ordering::SeqCst) {
            Counters::bump(&self.state.counts.dir_syncs_dropped);
            return Ok(());
        }
        let mut m = self.state.model();
        m.dirs.insert(dir.to_path_buf());
        // Reconcile with the disk first: a real directory fsync also makes
        // durable what changed outside the seam.
        let on_disk = regular_files(dir)?;
        let names: BTreeSet<&OsString> = on_disk.iter().map(|(n, _)| n).collect();
        let gone: Vec<Name> = m
            .live
            .keys()
            .filter(|(d, n)| d == dir && !names.contains(n))
            .cloned()
            .collect();
        for name in gone {
            m.live.remove(&name);
            Counters::bump(&self.state.counts.outside_seam);
        }
        for (n, path) in &on_disk {
            let name = (dir.to_path_buf(), n.clone());
            if !m.live.contains_key(&name) {
                let bytes = std::fs::read(path).unwrap_or_default();
                m.adopt(&name, bytes, &self.state.counts);
            }
        }
        std::fs::File::open(dir)?.sync_all()?;
        m.durable.retain(|(d, _), _| d != dir);
        m.pending.remove(dir);
        let entries: Vec<(Name, FileId)> = m
            .live
            .iter()
            .filter(|((d, _), _)| d == dir)
            .map(|(n, &id)| (n.clone(), id))
            .collect();
        m.durable.extend(entries);
        Counters::bump(&self.state.counts.dir_syncs);
        Ok(())
    }
}

/// A file opened through [`PowerLossFs`].
#[derive(Debug)]
struct PowerLossFile {
    inner: StdAppendFile,
    id: FileId,
    /// The name it was opened under (for `drop_syncs_of`).
    name: OsString,
    state: Arc<State>,
}

impl PowerLossFile {
    fn sync_dropped(&self) -> bool {
        let drop = self
            .state
            .drop_syncs_of
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        drop.as_ref().is_some_and(|suffix| {
            self.name
                .as_encoded_bytes()
                .ends_with(suffix.as_encoded_bytes())
        })
    }
}

impl AppendFile for PowerLossFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.state.enter()?;
        self.inner.write_all(buf)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.state.enter()?;
        if self.sync_dropped() {
            Counters::bump(&self.state.counts.syncs_dropped);
            return Ok(());
        }
        // Read before the real sync: what is stored meanwhile is not covered.
        let file = &self.inner.0;
        let len = usize::try_from(file.metadata()?.len())
            .map_err(|_| io::Error::from(io::ErrorKind::FileTooLarge))?;
        let mut image = vec![0u8; len];
        file.read_exact_at(&mut image, 0)?;
        self.inner.sync()?;
        self.state.model().synced.insert(self.id, image);
        Counters::bump(&self.state.counts.syncs);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.state.enter()?;
        self.inner.set_len(len)
    }

    fn start_sync(&mut self, offset: u64, len: u64) {
        // Only a hint: it makes nothing durable, so it changes no image.
        if !self.state.cut.load(Ordering::SeqCst) {
            self.inner.start_sync(offset, len);
        }
    }

    fn allocate(&mut self, len: u64) -> io::Result<()> {
        self.state.enter()?;
        self.inner.allocate(len)
    }

    fn map(&mut self, len: usize) -> io::Result<MmapRaw> {
        self.state.enter()?;
        self.inner.map(len)
    }

    fn link_count(&mut self) -> io::Result<u64> {
        self.state.enter()?;
        self.inner.link_count()
    }
}

/// What became of one file's unsynced tail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Outcome {
    Synced,
    Prefix,
    Torn,
}

/// Longest piece a torn write garbles.
const MAX_TORN: usize = 1024;

/// The bytes a file holds after the power loss, given its last synced image
/// and its contents at the cut.
fn after_power_loss(synced: &[u8], now: &[u8], tail: Tail, rng: &mut Rng) -> (Vec<u8>, Outcome) {
    let first_diff = synced
        .iter()
        .zip(now)
        .position(|(a, b)| a != b)
        .unwrap_or(synced.len().min(now.len()));
    let unchanged = first_diff == synced.len() && synced.len() == now.len();
    if unchanged || tail == Tail::Synced {
        return (synced.to_vec(), Outcome::Synced);
    }
    // The writes since the sync reached the disk in order up to byte `k`.
    let end = synced.len().max(now.len());
    let k = first_diff + rng.below(end - first_diff + 1);
    let mut bytes = if k >= now.len() {
        now.to_vec()
    } else {
        let mut b = now[..k].to_vec();
        b.extend_from_slice(synced.get(k..).unwrap_or_default());
        b
    };
    // A torn write garbles only bytes that were being written: never the
    // allocated zeros past the last byte that changed.
    let changed_end = if now.len() > synced.len() {
        now.len()
    } else {
        synced
            .iter()
            .zip(now)
            .rposition(|(a, b)| a != b)
            .map_or(first_diff, |p| p + 1)
    };
    let torn_end = changed_end.min(bytes.len());
    if tail == Tail::Prefix || torn_end <= first_diff {
        return (bytes, Outcome::Prefix);
    }
    let at = first_diff + rng.below(torn_end - first_diff);
    let len = 1 + rng.below(MAX_TORN.min(torn_end - at));
    let zero = rng.below(2) == 0;
    for b in &mut bytes[at..at + len] {
        *b = if zero { 0 } else { rng.byte() };
    }
    (bytes, Outcome::Torn)
}

/// splitmix64: deterministic per seed, and no dependency for the library.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// A number in `[0, n)`; 0 when `n` is 0.
    fn below(&mut self, n: usize) -> usize {
        if n == 0 {
            return 0;
        }
        usize::try_from(self.next() % n as u64).unwrap_or(0)
    }

    fn byte(&mut self) -> u8 {
        self.next().to_le_bytes()[0]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(dir: &Path, name: &str) -> Option<Vec<u8>> {
        std::fs::read(dir.join(name)).ok()
    }

    #[test]
    fn names_not_dir_synced_are_lost_and_removals_revert() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        std::fs::write(dir.join("old"), b"old bytes").unwrap();
        let fs = PowerLossFs::new(dir).unwrap();
        let mut a = fs.open_append(&dir.join("a")).unwrap();
        a.write_all(b"a1").unwrap();
        a.sync().unwrap();
        fs.sync_dir(dir).unwrap();
        // Not dir-synced: the new name, the rename and the removal.
        let mut b = fs.open_append(&dir.join("b")).unwrap();
        b.write_all(b"b1").unwrap();
        b.sync().unwrap();
        fs.rename(&dir.join("a"), &dir.join("c")).unwrap();
        fs.remove_file(&dir.join("old")).unwrap();
        let report = fs.power_loss(1, Tail::Synced).unwrap();
        assert_eq!(read(dir, "a").as_deref(), Some(&b"a1"[..]));
        assert_eq!(read(dir, "b"), None);
        assert_eq!(read(dir, "c"), None);
        assert_eq!(read(dir, "old").as_deref(), Some(&b"old bytes"[..]));
        assert_eq!(report.names_lost, 2, "{report:?}");
        assert_eq!(report.names_revived, 2, "{report:?}");
    }

    #[test]
    fn unsynced_entry_changes_survive_as_a_prefix_in_order() {
        let mut seen = BTreeSet::new();
        for seed in 0..64 {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path();
            let fs = PowerLossFs::new(dir).unwrap();
            for name in ["1", "2", "3"] {
                let mut f = fs.open_append(&dir.join(name)).unwrap();
                f.sync().unwrap();
            }
            fs.power_loss(seed, Tail::Prefix).unwrap();
            let left: Vec<bool> = ["1", "2", "3"]
                .iter()
                .map(|n| dir.join(n).exists())
                .collect();
            assert!(
                left.windows(2).all(|w| w[0] || !w[1]),
                "seed {seed}: a later creation survived an earlier one: {left:?}"
            );
            seen.insert(left);
        }
        assert_eq!(seen.len(), 4, "every prefix happens: {seen:?}");
    }

    #[test]
    fn a_rename_is_atomic_in_every_prefix() {
        let mut seen = BTreeSet::new();
        for seed in 0..32 {
            let d = tempfile::tempdir().unwrap();
            let dir = d.path();
            let fs = PowerLossFs::new(dir).unwrap();
            let mut f = fs.open_append(&dir.join("a")).unwrap();
            f.write_all(b"x").unwrap();
            f.sync().unwrap();
            fs.sync_dir(dir).unwrap();
            fs.rename(&dir.join("a"), &dir.join("b")).unwrap();
            fs.power_loss(seed, Tail::Prefix).unwrap();
            let (a, b) = (read(dir, "a"), read(dir, "b"));
            assert!(a.is_some() != b.is_some(), "seed {seed}: {a:?} {b:?}");
            seen.insert(a.is_some());
        }
        assert_eq!(seen.len(), 2, "both outcomes happen");
    }

    #[test]
    fn a_dir_synced_rename_keeps_the_synced_image_only() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let fs = PowerLossFs::new(dir).unwrap();
        let mut f = fs.open_append(&dir.join("x.tmp")).unwrap();
        f.write_all(b"whole").unwrap();
        f.sync().unwrap();
        f.write_all(b"+unsynced").unwrap();
        fs.rename(&dir.join("x.tmp"), &dir.join("x")).unwrap();
        fs.sync_dir(dir).unwrap();
        drop(f);
        fs.power_loss(3, Tail::Synced).unwrap();
        assert_eq!(read(dir, "x").as_deref(), Some(&b"whole"[..]));
        assert_eq!(read(dir, "x.tmp"), None);
    }

    #[test]
    fn after_the_cut_every_call_fails() {
        let d = tempfile::tempdir().unwrap();
        let fs = PowerLossFs::new(d.path()).unwrap();
        let mut f = fs.open_append(&d.path().join("f")).unwrap();
        fs.cut_power_at_call(2);
        assert!(f.write_all(b"1").is_ok());
        assert!(!fs.is_cut());
        assert!(f.sync().is_err(), "the second call finds the power gone");
        assert!(fs.is_cut());
        assert!(f.write_all(b"2").is_err());
        assert!(fs.sync_dir(d.path()).is_err());
        assert!(fs.open_append(&d.path().join("g")).is_err());
        assert!(fs.counts().failed_after_cut >= 3);
    }

    #[test]
    fn dropped_dir_syncs_make_nothing_durable() {
        let d = tempfile::tempdir().unwrap();
        let dir = d.path();
        let fs = PowerLossFs::new(dir).unwrap();
        fs.drop_dir_syncs(true);
        let mut f = fs.open_append(&dir.join("f")).unwrap();
        f.write_all(b"data").unwrap();
        f.sync().unwrap();
        fs.sync_dir(dir).unwrap();
        assert_eq!(fs.counts().dir_syncs_dropped, 1);
        fs.power_loss(5, Tail::Synced).unwrap();
        assert_eq!(read(dir, "f"), None);
    }

    #[test]
    fn a_torn_write_never_garbles_allocated_zeros_past_the_last_change() {
        let mut synced = b"header".to_vec();
        synced.resize(4096, 0);
        let mut now = synced.clone();
        now[6..106].fill(b'r');
        for seed in 0..200 {
            let (b, _) = after_power_loss(&synced, &now, Tail::Torn, &mut Rng::new(seed));
            assert_eq!(b.len(), 4096);
            assert!(b[106..].iter().all(|&x| x == 0), "seed {seed}");
            assert!(b.starts_with(b"header"), "seed {seed}");
        }
    }

    #[test]
    fn tails_are_a_prefix_or_torn_and_never_touch_synced_bytes() {
        let synced = b"0123456789".to_vec();
        let mut now = synced.clone();
        now.extend_from_slice(b"abcdefghij");
        let (mut prefixes, mut torn) = (0, 0);
        for seed in 0..200 {
            let mut rng = Rng::new(seed);
            let (b, o) = after_power_loss(&synced, &now, Tail::Prefix, &mut rng);
            assert_eq!(o, Outcome::Prefix);
            assert!(now.starts_with(&b), "seed {seed}: {b:?}");
            assert!(b.starts_with(&synced));
            prefixes += usize::from(b.len() > synced.len() && b.len() < now.len());
            let (b, o) = after_power_loss(&synced, &now, Tail::Torn, &mut rng);
            assert!(b.starts_with(&synced), "seed {seed}: {b:?}");
            torn += usize::from(o == Outcome::Torn && !now.starts_with(&b));
            let (b, _) = after_power_loss(&synced, &now, Tail::Synced, &mut rng);
            assert_eq!(b, synced);
        }
        assert!(prefixes > 0 && torn > 0, "{prefixes} {torn}");
    }
}
