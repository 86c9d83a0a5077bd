//! The file-system seam: every call through which the engine changes a file.
//!
//! Reads (mmap, reading a file whole) go straight to `std`; what can lose data is
//! a write, a sync, an allocation, a rename, a truncation or a removal, so exactly
//! those pass through [`Fs`]. `wal.log` is written through a shared mapping that
//! [`AppendFile::map`] makes: those stores reach the page cache without a call, so
//! a test seam sees them only at [`AppendFile::sync`] (read the file there).
//! [`FaultyFs`] fails the N-th call of one kind, deterministically, so tests can
//! show what the engine does when the disk says no; [`PowerLossFs`] keeps what a
//! disk would hold after a power cut and rewrites the directory to it.

pub mod power_loss;

use std::ffi::OsString;
use std::fmt::Debug;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

pub use power_loss::{PowerLossCounts, PowerLossFs, PowerLossReport, Tail};

/// The shared, writable mapping [`AppendFile::map`] returns.
pub use memmap2::MmapRaw;

/// A file opened for appending.
pub trait AppendFile: Send + Debug {
    /// Appends all of `buf` at the end of the file.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// Makes everything written so far durable (fdatasync).
    fn sync(&mut self) -> io::Result<()>;
    /// Truncates or extends the file to `len` bytes.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Starts writing `len` bytes at `offset` to the device without waiting for
    /// them, so a later `sync` has less left to do. Only a hint: it promises no
    /// durability, and an I/O error it meets surfaces at `sync`.
    fn start_sync(&mut self, offset: u64, len: u64) {
        let _ = (offset, len);
    }
    /// Gives the file at least `len` bytes backed by real, zeroed blocks
    /// (`fallocate`, not a sparse extension): a full disk fails here, cleanly,
    /// rather than later as SIGBUS through a mapping. The file grows to `len`
    /// if shorter; it never shrinks.
    fn allocate(&mut self, len: u64) -> io::Result<()>;
    /// Maps the first `len` bytes shared and writable. The file must already
    /// be at least `len` long (see [`allocate`](Self::allocate)).
    fn map(&mut self, len: usize) -> io::Result<MmapRaw>;
    /// How many directory entries name this file: 0 once it was unlinked
    /// (say, the data directory was removed under the engine).
    fn link_count(&mut self) -> io::Result<u64>;
}

/// The operations through which the engine modifies the data directory.
pub trait Fs: Send + Sync + Debug {
    /// Opens `path` for appending, creating it when missing.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>>;
    /// Renames `from` to `to`, replacing `to`.
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()>;
    /// Removes a file.
    fn remove_file(&self, path: &Path) -> io::Result<()>;
    /// Makes the directory's entries (creations, renames, removals) durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
    /// Gives the file `from` a second name `to` (a hard link), as a backup
    /// does for immutable sealed segments. Fails across file systems (`EXDEV`).
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::hard_link(from, to)
    }
    /// Creates the directory `path`; its parent must exist.
    fn create_dir(&self, path: &Path) -> io::Result<()> {
        std::fs::create_dir(path)
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct StdFs;

#[derive(Debug)]
struct StdAppendFile(File);

impl AppendFile for StdAppendFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.0.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        self.0.sync_data()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.0.set_len(len)
    }
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        allocate(&self.0, len)
    }
    fn map(&mut self, len: usize) -> io::Result<MmapRaw> {
        memmap2::MmapOptions::new().len(len).map_raw(&self.0)
    }
    fn link_count(&mut self) -> io::Result<u64> {
        link_count(&self.0)
    }
    #[cfg(target_os = "linux")]
    fn start_sync(&mut self, offset: u64, len: u64) {
        use std::os::fd::AsRawFd;
        let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
            return;
        };
        #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
        // SAFETY: sync_file_range only reads its integer arguments; the fd is
        // open for as long as `self.0` lives.
        let _ = unsafe {
            libc::sync_file_range(self.0.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE)
        };
    }
}

/// How many directory entries name `file`, asking the kernel for nothing else.
///
/// A stat that includes the timestamps (as `File::metadata` does) marks them
/// queried, and with multigrain timestamps (Linux 6.13+) the next write then
/// stamps a fine-grained time, which dirties the inode: each `fdatasync`
/// after such a check wrote the inode's block as well as the data, a third
/// I/O per durable write (~75 us of ~230 on this machine's disk).
#[cfg(all(target_os = "linux", any(target_env = "gnu", target_env = "musl")))]
fn link_count(file: &File) -> io::Result<u64> {
    use std::os::fd::AsRawFd;
    #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
    // SAFETY: statx writes only into `buf`, a zeroed statx owned here, and
    // reads the empty C string; the fd is open for as long as `file` lives.
    let (rc, buf) = unsafe {
        let mut buf: libc::statx = std::mem::zeroed();
        let rc = libc::statx(
            file.as_raw_fd(),
            c"".as_ptr(),
            libc::AT_EMPTY_PATH,
            libc::STATX_NLINK,
            &raw mut buf,
        );
        (rc, buf)
    };
    if rc != 0 {
        let err = io::Error::last_os_error();
        return match err.raw_os_error() {
            // A kernel older than statx (4.11).
            Some(libc::ENOSYS) => std_link_count(file),
            _ => Err(err),
        };
    }
    if buf.stx_mask & libc::STATX_NLINK == 0 {
        return std_link_count(file);
    }
    Ok(u64::from(buf.stx_nlink))
}

#[cfg(not(all(target_os = "linux", any(target_env = "gnu", target_env = "musl"))))]
fn link_count(file: &File) -> io::Result<u64> {
    std_link_count(file)
}

fn std_link_count(file: &File) -> io::Result<u64> {
    use std::os::unix::fs::MetadataExt;
    Ok(file.metadata()?.nlink())
}

/// Real blocks for the first `len` bytes of `file`.
#[cfg(target_os = "linux")]
fn allocate(file: &File, len: u64) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let len = i64::try_from(len).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    loop {
        #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
        // SAFETY: fallocate only reads its integer arguments; the fd is open
        // for as long as `file` lives.
        let rc = unsafe { libc::fallocate(file.as_raw_fd(), 0, 0, len) };
        if rc == 0 {
            return Ok(());
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::EINTR) => continue,
            // A file system without fallocate: write zeros the slow way, so the
            // blocks are still real.
            Some(libc::EOPNOTSUPP) => return allocate_by_writing(file, len.unsigned_abs()),
            _ => return Err(err),
        }
    }
}

#[cfg(not(target_os = "linux"))]
fn allocate(file: &File, len: u64) -> io::Result<()> {
    allocate_by_writing(file, len)
}

/// Extends `file` to `len` by writing zeros (real blocks, unlike `set_len`).
fn allocate_by_writing(file: &File, len: u64) -> io::Result<()> {
    use std::os::unix::fs::FileExt;
    let mut at = file.metadata()?.len();
    let zeros = vec![0u8; 1 << 16];
    while at < len {
        let n = usize::try_from((len - at).min(zeros.len() as u64)).unwrap_or(zeros.len());
        file.write_all_at(&zeros[..n], at)?;
        at += n as u64;
    }
    Ok(())
}

/// Opens `path` readable (mappings need it) and appending, creating it.
fn open_rw_append(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .read(true)
        .create(true)
        .append(true)
        .open(path)
}

impl Fs for StdFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(StdAppendFile(open_rw_append(path)?)))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

/// A kind of call [`FaultyFs`] can fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FsOp {
    /// [`AppendFile::write_all`].
    Write,
    /// [`AppendFile::sync`].
    Sync,
    /// [`AppendFile::set_len`].
    SetLen,
    /// [`AppendFile::allocate`].
    Allocate,
    /// [`Fs::rename`].
    Rename,
    /// [`Fs::remove_file`].
    Remove,
    /// [`Fs::sync_dir`].
    SyncDir,
}

const OPS: usize = 7;

fn index(op: FsOp) -> usize {
    op as usize
}

#[derive(Debug)]
struct FaultState {
    calls: [AtomicU64; OPS],
    // 0 = never fail; otherwise the 1-based call number that fails, and every
    // later one of the same kind (a disk that failed once stays failed).
    fail_from: [AtomicU64; OPS],
    // Whether the injected failures read as a full disk (ENOSPC).
    disk_full: [std::sync::atomic::AtomicBool; OPS],
    // 0 = no limit; otherwise the most bytes a directory's files may hold.
    space_limit: AtomicU64,
    // Whether hard links fail as they do across file systems (EXDEV).
    links_fail: std::sync::atomic::AtomicBool,
    before_remove: Mutex<Option<(OsString, Hook)>>,
}

/// Code a test runs at a chosen call, on the engine's thread making it.
struct Hook(Box<dyn FnOnce() + Send>);

impl Debug for Hook {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Hook")
    }
}

/// A [`Fs`] over the real file system that fails chosen calls.
///
/// ```
/// use kvstore::engine::fs::{FaultyFs, FsOp};
/// let fs = FaultyFs::new();
/// fs.fail_from(FsOp::Sync, 3); // the third sync and all after it fail
/// ```
#[derive(Debug, Clone)]
pub struct FaultyFs {
    state: Arc<FaultState>,
}

impl Default for FaultyFs {
    fn default() -> Self {
        Self::new()
    }
}

impl FaultyFs {
    /// A seam that fails nothing until told to.
    pub fn new() -> FaultyFs {
        FaultyFs {
            state: Arc::new(FaultState {
                calls: Default::default(),
                fail_from: Default::default(),
                disk_full: Default::default(),
                space_limit: AtomicU64::new(0),
                links_fail: std::sync::atomic::AtomicBool::new(false),
                before_remove: Mutex::new(None),
            }),
        }
    }

    /// Fails the `nth` (1-based, counted from now) call of `op` and every later one.
    pub fn fail_from(&self, op: FsOp, nth: u64) {
        let done = self.state.calls[index(op)].load(Ordering::SeqCst);
        self.state.fail_from[index(op)].store(done + nth.max(1), Ordering::SeqCst);
    }

    /// Like [`fail_from`](Self::fail_from), but the failures say "no space left
    /// on device" (ENOSPC), as a full disk does.
    pub fn fill_disk_from(&self, op: FsOp, nth: u64) {
        self.state.disk_full[index(op)].store(true, Ordering::SeqCst);
        self.fail_from(op, nth);
    }

    /// Stops failing calls of `op`.
    pub fn heal(&self, op: FsOp) {
        self.state.fail_from[index(op)].store(0, Ordering::SeqCst);
        self.state.disk_full[index(op)].store(false, Ordering::SeqCst);
    }

    /// Fails writes with `ENOSPC` (as a full disk does) while they would make
    /// the files of the written file's directory hold more than `bytes` in
    /// total; 0 lifts the limit.
    pub fn limit_space(&self, bytes: u64) {
        self.state.space_limit.store(bytes, Ordering::SeqCst);
    }

    /// Runs `hook` once, just before the first later removal of a file named
    /// `file_name`, on the thread removing it (so a test can act between two
    /// steps of the engine). The hook must not hold the engine: drop clones
    /// it captured before returning, or the engine never closes.
    pub fn before_remove_of(&self, file_name: &str, hook: impl FnOnce() + Send + 'static) {
        *self
            .state
            .before_remove
            .lock()
            .unwrap_or_else(|p| p.into_inner()) = Some((file_name.into(), Hook(Box::new(hook))));
    }

    /// Makes every later [`Fs::hard_link`] fail with `EXDEV`, as a link
    /// across file systems does (`false` lets them work again).
    pub fn fail_links(&self, fail: bool) {
        self.state.links_fail.store(fail, Ordering::SeqCst);
    }

    /// How many calls of `op` were made so far.
    pub fn calls(&self, op: FsOp) -> u64 {
        self.state.calls[index(op)].load(Ordering::SeqCst)
    }

    fn check(&self, op: FsOp) -> io::Result<()> {
        check(&self.state, op)
    }
}

fn check(state: &FaultState, op: FsOp) -> io::Result<()> {
    let n = state.calls[index(op)].fetch_add(1, Ordering::SeqCst) + 1;
    let from = state.fail_from[index(op)].load(Ordering::SeqCst);
    if from != 0 && n >= from {
        if state.disk_full[index(op)].load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        Err(io::Error::other(format!(
            "injected failure of {op:?} call {n}"
        )))
    } else {
        Ok(())
    }
}

/// Total length of the files in `dir`.
fn dir_bytes(dir: &Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|rd| {
            rd.filter_map(Result::ok)
                .filter_map(|e| e.metadata().ok())
                .filter(|m| m.is_file())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

#[derive(Debug)]
struct FaultyAppendFile {
    inner: StdAppendFile,
    path: PathBuf,
    state: Arc<FaultState>,
}

impl AppendFile for FaultyAppendFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        check(&self.state, FsOp::Write)?;
        let limit = self.state.space_limit.load(Ordering::SeqCst);
        if limit != 0 {
            let used = self.path.parent().map_or(0, dir_bytes);
            if used + buf.len() as u64 > limit {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        self.inner.write_all(buf)
    }
    fn sync(&mut self) -> io::Result<()> {
        check(&self.state, FsOp::Sync)?;
        self.inner.sync()
    }
    fn set_len(&mut self, len: u64) -> io::Result<()> {
        check(&self.state, FsOp::SetLen)?;
        self.inner.set_len(len)
    }
    fn start_sync(&mut self, offset: u64, len: u64) {
        self.inner.start_sync(offset, len);
    }
    fn allocate(&mut self, len: u64) -> io::Result<()> {
        check(&self.state, FsOp::Allocate)?;
        let limit = self.state.space_limit.load(Ordering::SeqCst);
        if limit != 0 {
            let used = self.path.parent().map_or(0, dir_bytes);
            let grows = len.saturating_sub(self.inner.0.metadata()?.len());
            if used + grows > limit {
                return Err(io::Error::from_raw_os_error(libc::ENOSPC));
            }
        }
        self.inner.allocate(len)
    }
    fn map(&mut self, len: usize) -> io::Result<MmapRaw> {
        self.inner.map(len)
    }
    fn link_count(&mut self) -> io::Result<u64> {
        self.inner.link_count()
    }
}

impl Fs for FaultyFs {
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn AppendFile>> {
        Ok(Box::new(FaultyAppendFile {
            inner: StdAppendFile(open_rw_append(path)?),
            path: path.to_path_buf(),
            state: Arc::clone(&self.state),
        }))
    }
    fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.check(FsOp::Rename)?;
        std::fs::rename(from, to)
    }
    fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.check(FsOp::Remove)?;
        let hook = {
            let mut slot = self
                .state
                .before_remove
                .lock()
                .unwrap_or_else(|p| p.into_inner());
            match &*slot {
                Some((name, _)) if path.file_name() == Some(name.as_os_str()) => slot.take(),
                _ => None,
            }
        };
        if let Some((_, Hook(run))) = hook {
            run();
        }
        std::fs::remove_file(path)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.check(FsOp::SyncDir)?;
        File::open(dir)?.sync_all()
    }
    fn hard_link(&self, from: &Path, to: &Path) -> io::Result<()> {
        if self.state.links_fail.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(libc::EXDEV));
        }
        std::fs::hard_link(from, to)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn faulty_fs_fails_the_chosen_call_and_after() {
        let dir = tempfile::tempdir().unwrap();
        let fs = FaultyFs::new();
        let mut f = fs.open_append(&dir.path().join("x")).unwrap();
        fs.fail_from(FsOp::Write, 2);
        assert!(f.write_all(b"a").is_ok());
        assert!(f.write_all(b"b").is_err());
        assert!(f.write_all(b"c").is_err());
        fs.heal(FsOp::Write);
        assert!(f.write_all(b"d").is_ok());
        assert_eq!(std::fs::read(dir.path().join("x")).unwrap(), b"ad");
        assert_eq!(fs.calls(FsOp::Write), 4);
    }
}
