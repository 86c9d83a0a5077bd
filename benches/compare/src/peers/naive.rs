//! The naive log: what a Bitcask's write path must beat. One append-only file
//! behind a 64 KiB buffer (`BufWriter`), a `HashMap` from key to value location,
//! `pread` for every read. No checksums, no segments, no hints, no compaction.
//!
//! Record layout: key length (u32 LE), value length (u32 LE), key, value.
//!
//! Invariants: the index only points at records already appended (possibly
//! still in the buffer); a read whose record is not yet flushed flushes first.
//! A durable put writes, flushes and fdatasyncs under the writer mutex, so
//! concurrent durable writers take turns, one fdatasync each (no group commit).
//! Opening reads the whole file to rebuild the index. A prefix scan visits the
//! whole index (it is unordered) and reads matching values in hash order.

use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{BufReader, BufWriter, Read, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, RwLock};

use crate::error::{Error, Result};
use crate::peer::{Durability, Peer, Reader};

const BUFFER_BYTES: usize = 64 << 10;
const HEADER_BYTES: u64 = 8;

/// An open naive log.
pub struct NaiveLog {
    path: PathBuf,
    durability: Durability,
    writer: Mutex<Appender>,
    /// Bytes known to be in the file (not in the buffer): reads below it need no flush.
    flushed: AtomicU64,
    file: File,
    index: RwLock<Index>,
}

/// Key → where its latest value is in the log.
type Index = HashMap<Box<[u8]>, Location>;

struct Appender {
    out: BufWriter<File>,
    /// Length of the log, buffered bytes included.
    end: u64,
}

#[derive(Clone, Copy)]
struct Location {
    value_offset: u64,
    value_len: u32,
}

impl Location {
    fn end(self) -> u64 {
        self.value_offset + u64::from(self.value_len)
    }
}

impl NaiveLog {
    fn lock(&self) -> MutexGuard<'_, Appender> {
        // A panic mid-append leaves at worst a torn buffer; this harness stops anyway.
        self.writer.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn flush(&self, w: &mut Appender) -> Result<()> {
        w.out
            .flush()
            .map_err(|e| Error::io("appending to", &self.path, e))?;
        self.flushed.store(w.end, Ordering::Release);
        Ok(())
    }

    /// Flushes the buffer when it may still hold bytes below `end`.
    fn flushed_to(&self, end: u64) -> Result<()> {
        if end > self.flushed.load(Ordering::Acquire) {
            let mut w = self.lock();
            self.flush(&mut w)?;
        }
        Ok(())
    }

    /// Reads a value whose record is already in the file.
    fn read_value(&self, loc: Location, buf: &mut Vec<u8>) -> Result<()> {
        buf.resize(loc.value_len as usize, 0);
        self.file
            .read_exact_at(buf, loc.value_offset)
            .map_err(|e| Error::io("reading", &self.path, e))
    }
}

/// Rebuilds the index by reading every record of the log at `path`.
fn load_index(path: &Path, file: &File) -> Result<(Index, u64)> {
    let mut index = HashMap::new();
    let mut input = BufReader::with_capacity(BUFFER_BYTES, file);
    let mut offset = 0u64;
    let mut header = [0u8; HEADER_BYTES as usize];
    let mut key = Vec::new();
    let mut value = Vec::new();
    loop {
        match input.read_exact(&mut header) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => break,
            Err(e) => return Err(Error::io("reading", path, e)),
        }
        let [k0, k1, k2, k3, v0, v1, v2, v3] = header;
        let key_len = u32::from_le_bytes([k0, k1, k2, k3]);
        let value_len = u32::from_le_bytes([v0, v1, v2, v3]);
        key.resize(key_len as usize, 0);
        value.resize(value_len as usize, 0);
        input
            .read_exact(&mut key)
            .and_then(|()| input.read_exact(&mut value))
            .map_err(|_| Error::Corrupt {
                path: path.to_path_buf(),
                offset,
                what: "a record cut short",
            })?;
        let value_offset = offset + HEADER_BYTES + u64::from(key_len);
        index.insert(
            key.as_slice().into(),
            Location {
                value_offset,
                value_len,
            },
        );
        offset = value_offset + u64::from(value_len);
    }
    Ok((index, offset))
}

impl Peer for NaiveLog {
    const NAME: &'static str = "naive";
    type Reader<'a> = &'a NaiveLog;

    fn open(dir: &Path, durability: Durability) -> Result<Self> {
        let path = dir.join("naive.log");
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)
            .map_err(|e| Error::io("opening", &path, e))?;
        let (index, end) = load_index(&path, &file)?;
        let out = file
            .try_clone()
            .map_err(|e| Error::io("opening", &path, e))?;
        Ok(NaiveLog {
            durability,
            writer: Mutex::new(Appender {
                out: BufWriter::with_capacity(BUFFER_BYTES, out),
                end,
            }),
            flushed: AtomicU64::new(end),
            file,
            index: RwLock::new(index),
            path,
        })
    }

    fn put(&self, key: &[u8], value: &[u8]) -> Result<()> {
        let (Ok(key_len), Ok(value_len)) = (u32::try_from(key.len()), u32::try_from(value.len()))
        else {
            return Err(Error::Usage("naive log: key or value over 4 GiB".into()));
        };
        let mut w = self.lock();
        let append = |out: &mut BufWriter<File>| {
            out.write_all(&key_len.to_le_bytes())?;
            out.write_all(&value_len.to_le_bytes())?;
            out.write_all(key)?;
            out.write_all(value)
        };
        append(&mut w.out).map_err(|e| Error::io("appending to", &self.path, e))?;
        let value_offset = w.end + HEADER_BYTES + u64::from(key_len);
        w.end = value_offset + u64::from(value_len);
        if self.durability == Durability::Synced {
            self.flush(&mut w)?;
            w.out
                .get_ref()
                .sync_data()
                .map_err(|e| Error::io("syncing", &self.path, e))?;
        }
        let loc = Location {
            value_offset,
            value_len,
        };
        // Indexed under the writer lock, so the index order is the log order.
        self.index
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key.into(), loc);
        Ok(())
    }

    fn reader(&self) -> Result<&NaiveLog> {
        Ok(self)
    }

    fn sync(&self) -> Result<()> {
        let mut w = self.lock();
        self.flush(&mut w)?;
        w.out
            .get_ref()
            .sync_data()
            .map_err(|e| Error::io("syncing", &self.path, e))
    }

    fn close(self) -> Result<()> {
        self.sync()
    }
}

thread_local! {
    static VALUE: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Reader for &NaiveLog {
    fn get(&self, key: &[u8], mut seen: impl FnMut(&[u8])) -> Result<bool> {
        let loc = self
            .index
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(key)
            .copied();
        let Some(loc) = loc else { return Ok(false) };
        self.flushed_to(loc.end())?;
        VALUE.with_borrow_mut(|buf| {
            self.read_value(loc, buf)?;
            seen(buf);
            Ok(true)
        })
    }

    fn scan_prefix(&self, prefix: &[u8], mut visit: impl FnMut(&[u8], &[u8])) -> Result<()> {
        // Flushed before the index lock: a put takes the writer lock, then the index's.
        self.flushed_to(u64::MAX)?;
        let index = self.index.read().unwrap_or_else(|p| p.into_inner());
        let mut buf = Vec::new();
        for (key, loc) in index.iter().filter(|(k, _)| k.starts_with(prefix)) {
            self.read_value(*loc, &mut buf)?;
            visit(key, &buf);
        }
        Ok(())
    }
}
