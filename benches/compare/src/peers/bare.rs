//! The bare loop: the disk's limit for one durable writer. A file preallocated
//! by writing zeros and fsyncing (so no write below changes its size or
//! allocation), then `pwrite` of one record + `fdatasync`, again and again. It
//! only runs the durable single-writer phase; no store does less per write.

use std::fs::OpenOptions;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::time::{Duration, Instant};

use crate::error::{Error, Result};
use crate::phases::Measure;
use crate::workload::{Rng, Workload};

/// Name of the bare loop's column.
pub const NAME: &str = "bare loop";

/// Largest preallocation; the loop wraps around inside it.
const MAX_FILE_BYTES: u64 = 64 << 20;

/// Runs write + fdatasync of one record until the durable phase's op or time
/// budget runs out, in a file under `dir`.
pub fn durable_single_writer(dir: &Path, w: &Workload) -> Result<Measure> {
    let path = dir.join("bare.log");
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(true)
        .open(&path)
        .map_err(|e| Error::io("creating", &path, e))?;
    let mut record = Vec::with_capacity(8 + w.value_bytes + 16);
    let mut value = Vec::new();
    let record_bytes = (8 + 16 + w.value_bytes) as u64;
    let file_bytes = (record_bytes * w.durable_ops.max(1)).min(MAX_FILE_BYTES);
    let slots = (file_bytes / record_bytes).max(1);
    let zeros = vec![0u8; 1 << 20];
    let mut at = 0u64;
    while at < slots * record_bytes {
        let n = (slots * record_bytes - at).min(zeros.len() as u64);
        file.write_all_at(&zeros[..n as usize], at)
            .map_err(|e| Error::io("preallocating", &path, e))?;
        at += n;
    }
    file.sync_all()
        .map_err(|e| Error::io("syncing", &path, e))?;

    let mut rng = Rng(0xba5e);
    let limit = Duration::from_secs_f64(w.durable_secs);
    let start = Instant::now();
    let mut ops = 0u64;
    while ops < w.durable_ops && start.elapsed() < limit {
        let i = rng.below(w.keys);
        w.value_into(i, 2, &mut value);
        record.clear();
        record.extend_from_slice(&16u32.to_le_bytes());
        record.extend_from_slice(&(value.len() as u32).to_le_bytes());
        record.extend_from_slice(&w.key(i));
        record.extend_from_slice(&value);
        let offset = (ops % slots) * record_bytes;
        file.write_all_at(&record, offset)
            .map_err(|e| Error::io("writing", &path, e))?;
        file.sync_data()
            .map_err(|e| Error::io("syncing", &path, e))?;
        ops += 1;
    }
    let secs = start.elapsed().as_secs_f64();

    // The last record must read back as written, or the loop measured nothing.
    let mut back = vec![0u8; record.len()];
    let last = (ops.saturating_sub(1) % slots) * record_bytes;
    file.read_exact_at(&mut back, last)
        .map_err(|e| Error::io("reading", &path, e))?;
    if ops > 0 && back != record {
        return Err(Error::Wrong {
            engine: NAME,
            phase: "durable, 1 writer",
            what: format!("record at offset {last} differs from the one written"),
        });
    }
    drop(file);
    std::fs::remove_file(&path).map_err(|e| Error::io("removing", &path, e))?;
    Ok(Measure::Rate { ops, secs })
}
