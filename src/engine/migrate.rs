//! Migration of a legacy `wal.log` (such as the JSON-lines log of the reference
//! implementations) into the segment format, once, at open.
//!
//! The engine knows nothing of JSON: a [`LegacyDecoder`] (by default, with the
//! `json-lines` feature, `kvstore::legacy::JsonLines`) recognises the old file
//! and turns it into operations, and this module makes the switch crash-safe:
//! 1. replay the operations into their final state and write it as records to
//!    `wal.log.migrating`, fsynced;
//! 2. rename the original `wal.log` to `wal.log.legacy.bak` (byte for byte);
//! 3. rename `wal.log.migrating` to `wal.log`; fsync the directory.
//!
//! Killed after 1, the next open deletes the unfinished file and starts over;
//! killed after 2, it finishes step 3. The legacy file is never modified.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::io::Read;
use std::path::{Path, PathBuf};

use super::SegmentId;
use super::batch::Expiry;
use super::dir::{self, Listing};
use super::error::{Error, Result};
use super::format::record::{self, RecordKind};
use super::format::{FileHeader, FileKind, MAGIC};
use super::options::{MAX_SEGMENT_BYTES, Options};
use super::segment::active::create_empty;

/// One operation of a legacy log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LegacyOp {
    /// Set `key` to `value` (already in the byte form the store keeps).
    Set {
        /// The key.
        key: Vec<u8>,
        /// The value's stored bytes.
        value: Vec<u8>,
        /// Absolute expiry computed from the line's ttl and timestamp.
        expiry: Expiry,
    },
    /// Remove `key`.
    Delete {
        /// The key.
        key: Vec<u8>,
    },
}

/// A decoded legacy log.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyLog {
    /// Operations in file order.
    pub ops: Vec<LegacyOp>,
    /// A final line that did not parse (a write torn by a crash) and was skipped.
    pub torn_last_line: bool,
}

/// Why a legacy log could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LegacyError {
    /// 1-based line number.
    pub line: usize,
    /// What was wrong with it.
    pub reason: String,
}

/// Recognises and decodes a legacy log format.
pub trait LegacyDecoder: Send + Sync + Debug {
    /// True when a file starting with `head` is in this format.
    fn detect(&self, head: &[u8]) -> bool;
    /// Decodes the whole file. `now_ms` stands in for a missing timestamp.
    fn decode(&self, bytes: &[u8], now_ms: u64) -> Result<LegacyLog, LegacyError>;
}

/// What a migration did.
#[derive(Debug)]
pub(crate) struct Migrated {
    pub backup: Option<PathBuf>,
    pub operations: u64,
}

/// Step 1 of recovery: finishes an interrupted migration or performs one.
pub(crate) fn recover_or_migrate(
    dir: &Path,
    opts: &Options,
    listing: &Listing,
    max_sealed: Option<SegmentId>,
) -> Result<Option<Migrated>> {
    let fs = &*opts.fs;
    let wal = dir.join(dir::WAL);
    let migrating = dir.join(dir::MIGRATING);
    if listing.has_migrating {
        if listing.has_wal {
            // Killed before the legacy file was moved aside: start over.
            fs.remove_file(&migrating)
                .map_err(|e| Error::io("removing unfinished", &migrating, e))?;
        } else {
            fs.rename(&migrating, &wal)
                .map_err(|e| Error::io("finishing migration of", &migrating, e))?;
            fs.sync_dir(dir)
                .map_err(|e| Error::io("syncing directory", dir, e))?;
            return Ok(Some(Migrated {
                backup: None,
                operations: 0,
            }));
        }
    }
    if !listing.has_wal {
        return Ok(None);
    }
    let head = wal_head(&wal)?;
    let head = head.as_slice();
    if head.is_empty() || head.starts_with(&MAGIC) {
        return Ok(None);
    }
    // Recognising a format is the decoder's job alone; without one, the engine
    // only knows what a segment looks like.
    let Some(decoder) = &opts.legacy_decoder else {
        return if cannot_be_a_segment(head) {
            Err(Error::LegacyWithoutDecoder { path: wal })
        } else {
            Ok(None)
        };
    };
    if !decoder.detect(head) {
        return Ok(None);
    }
    let bytes = std::fs::read(&wal).map_err(|e| Error::io("reading", &wal, e))?;
    let log = decoder
        .decode(&bytes, opts.clock.now_ms())
        .map_err(|e| Error::Legacy {
            path: wal.clone(),
            line: e.line,
            reason: e.reason,
        })?;
    if log.torn_last_line {
        tracing::warn!(path = %wal.display(), "legacy wal.log ends in a torn line; it was skipped");
    }
    let id = max_sealed.map_or(SegmentId::FIRST, SegmentId::next_generation);
    let segment = encode_final_state(&log.ops, id, opts.clock.now_ms(), max_sealed.is_some());
    if segment.len() as u64 > MAX_SEGMENT_BYTES {
        return Err(Error::Legacy {
            path: wal,
            line: 0,
            reason: format!(
                "its live data ({} bytes) exceeds one segment",
                segment.len()
            ),
        });
    }
    let mut f = create_empty(fs, &migrating)?;
    f.write_all(&segment)
        .map_err(|e| Error::io("writing", &migrating, e))?;
    f.sync().map_err(|e| Error::io("syncing", &migrating, e))?;
    drop(f);
    let backup = dir::legacy_backup_path(dir);
    fs.rename(&wal, &backup)
        .map_err(|e| Error::io("backing up legacy", &wal, e))?;
    fs.rename(&migrating, &wal)
        .map_err(|e| Error::io("installing migrated", &migrating, e))?;
    fs.sync_dir(dir)
        .map_err(|e| Error::io("syncing directory", dir, e))?;
    tracing::info!(backup = %backup.display(), operations = log.ops.len(), "migrated legacy JSON-lines wal.log");
    Ok(Some(Migrated {
        backup: Some(backup),
        operations: log.ops.len() as u64,
    }))
}

/// The first bytes of `wal.log`: enough for a decoder to recognise its format.
pub(crate) fn wal_head(wal: &Path) -> Result<Vec<u8>> {
    let mut head = Vec::with_capacity(64);
    std::fs::File::open(wal)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .map_err(|e| Error::io("reading", wal, e))?;
    Ok(head)
}

/// True when a `wal.log` starting with `head` is no segment, not even one
/// whose header a crash tore (a prefix of the magic) or never wrote (zeros).
fn cannot_be_a_segment(head: &[u8]) -> bool {
    let n = head.len().min(MAGIC.len());
    head.get(..n) != MAGIC.get(..n) && head.iter().any(|&b| b != 0)
}

/// The segment holding the log's final state: one put per live key, and a
/// tombstone per removed key when older segments might still hold it.
fn encode_final_state(ops: &[LegacyOp], id: SegmentId, now: u64, older_segments: bool) -> Vec<u8> {
    let mut state: BTreeMap<&[u8], Option<(&[u8], Expiry)>> = BTreeMap::new();
    for op in ops {
        match op {
            LegacyOp::Set { key, value, expiry } => {
                state.insert(key, Some((value, *expiry)));
            }
            LegacyOp::Delete { key } => {
                state.insert(key, None);
            }
        }
    }
    let mut out = Vec::new();
    FileHeader {
        kind: FileKind::Segment,
        segment: id,
    }
    .encode(&mut out);
    for (key, v) in state {
        match v {
            Some((value, expiry)) if !matches!(expiry, Expiry::At(t) if t <= now) => {
                record::encode(&mut out, RecordKind::Put, expiry.to_raw(), key, value);
            }
            _ if older_segments => record::encode(&mut out, RecordKind::Tombstone, 0, key, &[]),
            _ => {}
        }
    }
    out
}
