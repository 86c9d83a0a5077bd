//! The memtable: `wal.log` itself, mapped shared into memory, so a write is one
//! copy into the page cache and reads of fresh data are one copy out of it.
//!
//! The file is preallocated with real blocks ([`AppendFile::allocate`]) before it
//! is mapped, so a store into the mapping can never meet a hole or the end of the
//! file (no SIGBUS), and a full disk fails when a segment is allocated instead.
//!
//! Invariants:
//! - bytes `[0, len)` hold whole records and are never written again; only the
//!   one [`ActiveSegment`](super::segment::active::ActiveSegment) of this
//!   memtable stores into the mapping, and only at `[len, capacity)`, before it
//!   raises `len` (release) — so a reader's slice of `[0, len)` (acquire) never
//!   overlaps a store;
//! - a store into a shared mapping is in the page cache once made: it survives
//!   the process being killed with no system call at all;
//! - `fdatasync` of the file (through `Memtable::sync`) writes back the pages
//!   stored through the mapping, like any other dirty page of the file.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use memmap2::MmapRaw;

use super::SegmentId;
use super::error::{Error, Result};
use super::fs::AppendFile;
use super::segment::read_value;

/// The mapped image of the active segment, shared by the writer, readers and
/// the threads that sync and seal it.
#[derive(Debug)]
pub struct Memtable {
    id: SegmentId,
    path: PathBuf,
    image: Image,
    len: AtomicUsize,
    /// Bytes known durable: `[0, synced)` was covered by a completed sync.
    synced: AtomicUsize,
    /// The file, for syncing (any thread) and writeback hints; `None` for a
    /// frozen image.
    file: Mutex<Option<Box<dyn AppendFile>>>,
    /// Set while the directory entry that names this file `wal.log` may not be
    /// durable (a rotation renamed it there): the next sync also syncs the directory.
    dir_unsynced: AtomicBool,
}

/// Where the bytes live.
#[derive(Debug)]
enum Image {
    /// `wal.log`, mapped shared and writable.
    Mapped(MmapRaw),
    /// A copy of `wal.log`'s records (a read-only open maps nothing writable).
    Frozen(Vec<u8>),
}

impl Memtable {
    /// A memtable that only serves reads of `bytes` (a read-only open).
    pub(crate) fn frozen(id: SegmentId, bytes: Vec<u8>) -> Memtable {
        Memtable {
            id,
            path: PathBuf::from(super::dir::WAL),
            len: AtomicUsize::new(bytes.len()),
            synced: AtomicUsize::new(bytes.len()),
            image: Image::Frozen(bytes),
            file: Mutex::new(None),
            dir_unsynced: AtomicBool::new(false),
        }
    }

    /// Maps `capacity` bytes of `file` (already allocated), of which the first
    /// `len` hold records.
    pub(crate) fn map(
        id: SegmentId,
        path: &Path,
        mut file: Box<dyn AppendFile>,
        len: usize,
        capacity: usize,
    ) -> Result<Memtable> {
        let map = file
            .map(capacity)
            .map_err(|e| Error::io("mapping", path, e))?;
        Ok(Memtable {
            id,
            path: path.to_path_buf(),
            image: Image::Mapped(map),
            len: AtomicUsize::new(len.min(capacity)),
            synced: AtomicUsize::new(len.min(capacity)),
            file: Mutex::new(Some(file)),
            dir_unsynced: AtomicBool::new(false),
        })
    }

    /// The segment this memtable mirrors.
    pub fn id(&self) -> SegmentId {
        self.id
    }

    /// Bytes holding records (header included).
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Acquire)
    }

    /// True when only the header (or nothing) is there.
    pub fn is_empty(&self) -> bool {
        self.len() <= super::format::FILE_HEADER_LEN
    }

    /// Bytes the mapping can hold.
    pub fn capacity(&self) -> usize {
        match &self.image {
            Image::Mapped(m) => m.len(),
            Image::Frozen(v) => v.len(),
        }
    }

    /// The file's path when it was mapped (`wal.log`, until sealed).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The records written so far.
    pub fn bytes(&self) -> &[u8] {
        let len = self.len();
        match &self.image {
            #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
            // SAFETY: `[0, len)` lies within the mapping (len ≤ capacity) and is
            // never stored to again once `len` covers it (module invariants): the
            // shared slice aliases no write. The mapping lives as long as `self`.
            Image::Mapped(map) => unsafe { std::slice::from_raw_parts(map.as_ptr(), len) },
            Image::Frozen(v) => v.get(..len).unwrap_or(v),
        }
    }

    /// Copies `bytes` in at the end and makes them visible to readers.
    ///
    /// # Safety
    /// Only the one `ActiveSegment` owning this memtable may call it (one writer),
    /// and `bytes` must fit: `len() + bytes.len() <= capacity()`.
    #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
    pub(crate) unsafe fn append(&self, bytes: &[u8]) {
        let Image::Mapped(map) = &self.image else {
            return;
        };
        let at = self.len.load(Ordering::Relaxed);
        debug_assert!(at + bytes.len() <= map.len());
        // SAFETY: the caller is the only writer and the range [at, at + n) lies in
        // the mapping and beyond `len`, where no reader looks.
        unsafe {
            std::ptr::copy_nonoverlapping(bytes.as_ptr(), map.as_mut_ptr().add(at), bytes.len());
        }
        self.len.store(at + bytes.len(), Ordering::Release);
    }

    /// Faults the mapping's pages of `range` in, writable (see `prefault`);
    /// a no-op for a frozen image, out-of-range bytes or an unsupported kernel.
    pub(crate) fn populate(&self, range: std::ops::Range<usize>) {
        let Image::Mapped(map) = &self.image else {
            return;
        };
        let end = range.end.min(map.len());
        if range.start >= end {
            return;
        }
        #[cfg(target_os = "linux")]
        let _ = map.advise_range(
            memmap2::Advice::PopulateWrite,
            range.start,
            end - range.start,
        );
    }

    /// Drops the mapping's page-table entries for the whole pages of `range`,
    /// keeping their (dirty) pages in the page cache: writeback of a page
    /// mapped writable must write-protect it first, one TLB shootdown (an IPI
    /// to the writer's core) per 4 KiB page — profiled at 14 % of a buffered
    /// load. Unmapped, the whole range costs one flush here, and a later read
    /// faults the page back in, unchanged. `below_len` keeps to the pages
    /// wholly written (the active segment, whose writer stores beyond `len`);
    /// a rotated-out memtable, never written again, drops them all.
    pub(crate) fn unmap_pages(&self, range: std::ops::Range<usize>, below_len: bool) {
        let Image::Mapped(map) = &self.image else {
            return;
        };
        const PAGE: usize = 4096;
        let limit = if below_len { self.len() } else { map.len() };
        let start = range.start.next_multiple_of(PAGE);
        let end = (range.end.min(limit) / PAGE) * PAGE;
        if start >= end {
            return;
        }
        #[cfg(target_os = "linux")]
        {
            #[allow(unsafe_code, reason = "audited: see the SAFETY comment")]
            // SAFETY: the mapping is MAP_SHARED of a file: MADV_DONTNEED drops
            // only page-table entries, the dirty bits pass to the page cache and
            // a later access maps the same file bytes again, so no reader's slice
            // sees a change; a store racing it (beyond `len`, into a memtable
            // still written) faults the same page back in.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, start, end - start)
            };
        }
    }

    /// Copies out the value of the record of `key` at `offset`.
    pub fn read_value(&self, offset: u32, key: &[u8]) -> Result<Vec<u8>> {
        read_value(self.id, self.bytes(), offset, key)
    }

    /// Runs `f` over the records written so far.
    #[allow(dead_code, reason = "unused since the module went private")]
    pub fn with_bytes<R>(&self, f: impl FnOnce(&[u8]) -> R) -> R {
        f(self.bytes())
    }

    /// Runs `f` on the file, under its lock.
    pub(crate) fn with_file<R>(
        &self,
        f: impl FnOnce(&mut dyn AppendFile) -> std::io::Result<R>,
    ) -> std::io::Result<R> {
        let mut file = self
            .file
            .lock()
            .map_err(|_| std::io::Error::other("a panic interrupted a sync of this file"))?;
        match file.as_mut() {
            Some(file) => f(&mut **file),
            None => Err(std::io::Error::other(
                "the memtable of a read-only open has no file",
            )),
        }
    }

    /// Runs `f` on the file unless another thread holds it; says whether it ran.
    pub(crate) fn try_with_file(&self, f: impl FnOnce(&mut dyn AppendFile)) -> bool {
        match self.file.try_lock() {
            Ok(mut file) => {
                if let Some(file) = file.as_mut() {
                    f(&mut **file);
                }
                true
            }
            Err(_) => false,
        }
    }

    /// Makes every byte written so far durable (fdatasync; the size does not
    /// change, the blocks were allocated up front).
    pub(crate) fn sync(&self) -> Result<()> {
        let upto = self.len();
        self.with_file(|f| f.sync())
            .map_err(|e| Error::io("syncing", &self.path, e))?;
        self.synced.fetch_max(upto, Ordering::AcqRel);
        Ok(())
    }

    /// Whether bytes were written since the last completed sync.
    pub(crate) fn is_dirty(&self) -> bool {
        self.len() > self.synced.load(Ordering::Acquire)
    }

    /// Notes that the entry naming this file may not be durable yet.
    pub(crate) fn mark_dir_unsynced(&self) {
        self.dir_unsynced.store(true, Ordering::SeqCst);
    }

    /// Whether a sync must first make the directory durable; clears the mark.
    pub(crate) fn take_dir_unsynced(&self) -> bool {
        self.dir_unsynced.swap(false, Ordering::SeqCst)
    }

    /// Puts the mark back after a failed directory sync.
    pub(crate) fn restore_dir_unsynced(&self) {
        self.mark_dir_unsynced();
    }
}
