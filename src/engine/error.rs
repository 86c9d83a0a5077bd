//! The engine's error type. Findings of recovery that are not failures (a torn
//! tail truncated, a batch discarded) are in [`RecoveryReport`](super::RecoveryReport).

use std::io;
use std::path::PathBuf;

use super::SegmentId;
use super::format::DecodeError;

/// Everything an engine call can fail with. New variants may come in any
/// release: match with a `_` arm.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// An operating-system call on a data file failed.
    #[error("{action} {path}: {source}")]
    Io {
        /// What the engine was doing ("writing", "syncing", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The data directory is already open in this or another process.
    #[error("data directory {path} is already open by another kvstore engine (lock file held)")]
    Locked {
        /// The data directory.
        path: PathBuf,
    },
    /// A key of zero bytes was given.
    #[error("key must not be empty")]
    EmptyKey,
    /// A key longer than the configured limit.
    #[error("key is {len} bytes; the limit is {max}")]
    KeyTooLarge {
        /// Length of the key given.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A value longer than the configured limit.
    #[error("value is {len} bytes; the limit is {max}")]
    ValueTooLarge {
        /// Length of the value given.
        len: usize,
        /// The configured limit.
        max: usize,
    },
    /// A batch too large to be written as one atomic unit within a segment.
    #[error("batch encodes to {len} bytes; at most {max} fit one segment")]
    BatchTooLarge {
        /// Encoded size of the batch.
        len: u64,
        /// The largest that fits.
        max: u64,
    },
    /// A fault latched the engine read-only; it refuses writes until reopened.
    #[error("engine is read-only: {cause}; restart to recover")]
    ReadOnly {
        /// The fault that latched the engine.
        cause: Fault,
    },
    /// The engine was opened with
    /// [`Engine::open_read_only`](super::Engine::open_read_only), which never
    /// changes the directory.
    #[error("data directory {path} is open read-only; {refused} needs a read-write open")]
    ReadOnlyOpen {
        /// The data directory.
        path: PathBuf,
        /// What was refused ("writing", "compacting", ...).
        refused: &'static str,
    },
    /// The engine was closed.
    #[error("engine is closed")]
    Closed,
    /// A stored record failed its checksum when read.
    #[error("corrupt record in segment {segment} at offset {offset}: {reason}")]
    Corrupt {
        /// The segment holding it.
        segment: SegmentId,
        /// The record's offset.
        offset: u64,
        /// What was wrong.
        reason: DecodeError,
    },
    /// A data file was written by an unsupported format version.
    #[error("{path}: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// What was wrong with its header.
        reason: DecodeError,
    },
    /// An [`Options`](super::Options) field is out of range.
    #[error("invalid option {name}: {reason}")]
    InvalidOption {
        /// The field.
        name: &'static str,
        /// Its valid range.
        reason: &'static str,
    },
    /// The legacy `wal.log` could not be migrated; it was left untouched.
    #[error("cannot migrate legacy {path} (line {line}): {reason}")]
    Legacy {
        /// The legacy file.
        path: PathBuf,
        /// 1-based line number of the problem.
        line: usize,
        /// What was wrong.
        reason: String,
    },
    /// `wal.log` is not in the segment format (a legacy log?) and no legacy
    /// decoder was configured to migrate it.
    #[error(
        "{path} is not in the segment format (a legacy JSON-lines log?); open with \
         Options::legacy_decoder set (feature `json-lines`) to migrate it"
    )]
    LegacyWithoutDecoder {
        /// The legacy file.
        path: PathBuf,
    },
    /// Compaction found no free segment id for its outputs between its inputs
    /// and their neighbours; writing more data (a rotation) makes room.
    #[error("no segment id is free for compaction: {reason}")]
    SegmentIdsExhausted {
        /// Where ids ran out.
        reason: &'static str,
    },
    /// A compaction step holds more than its bookkeeping can count.
    #[error("too much to compact in one step: {reason}")]
    CompactionTooLarge {
        /// What overflowed.
        reason: &'static str,
    },
    /// A file offset or size does not fit the integer it must be stored in
    /// (a record offset is a u32; a mapping's length a usize).
    #[error("{what} of {len} bytes exceeds the largest representable, {max}")]
    OffsetOverflow {
        /// The offset or size involved.
        what: &'static str,
        /// Its value.
        len: u64,
        /// The largest that fits.
        max: u64,
    },
    /// The compaction manifest (`COMPACTION`) is damaged: an interrupted step
    /// cannot be finished or undone safely, so the open stops.
    #[error("compaction manifest {path} is damaged: {reason}")]
    Manifest {
        /// The manifest.
        path: PathBuf,
        /// What does not parse.
        reason: &'static str,
    },
    /// A read kept finding its key's segment retired by compaction, lookup
    /// after lookup. Nothing is wrong with the store: try again.
    #[error("a read lost the race with compaction {attempts} times in a row")]
    ReadRetriesExhausted {
        /// Lookups made.
        attempts: u32,
    },
    /// [`Engine::backup`](super::Engine::backup) cannot write to its target:
    /// it exists and is not an empty directory, lies inside the data
    /// directory, or a backup to it is already under way.
    #[error("backup target {path}: {reason}")]
    BackupTarget {
        /// The target given.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A broken invariant of the engine itself (a bug), reported instead of a
    /// panic.
    #[error("internal error: {what}")]
    Internal {
        /// What was found.
        what: &'static str,
    },
}

/// Why an engine latched read-only: what it could no longer promise.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Fault {
    /// An I/O call failed where going on could acknowledge writes the disk may
    /// not hold (a failed fsync may have dropped dirty pages).
    Io {
        /// What the engine was doing ("syncing", "sealing (rename)", ...).
        action: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The kind of the OS error (`StorageFull` for a full disk).
        kind: io::ErrorKind,
        /// The OS error's message.
        message: String,
    },
    /// A thread of the engine panicked, or a panic unwound through an engine
    /// lock: the state that lock guards may be half-updated.
    Panic {
        /// Where: the thread or lock.
        place: &'static str,
        /// The panic's message.
        message: String,
    },
    /// `wal.log` was unlinked (the data directory removed?) while open: writes
    /// would go to a file no directory names.
    Removed {
        /// The file that is gone.
        path: PathBuf,
    },
    /// Any other failure that left the engine unable to write safely.
    Other {
        /// What happened.
        message: String,
    },
}

impl std::fmt::Display for Fault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Fault::Io {
                action,
                path,
                message,
                ..
            } => write!(f, "{action} {} failed: {message}", path.display()),
            Fault::Panic { place, message } => write!(f, "a panic in {place}: {message}"),
            Fault::Removed { path } => write!(
                f,
                "{} was removed while open (was the data directory deleted?)",
                path.display()
            ),
            Fault::Other { message } => f.write_str(message),
        }
    }
}

impl Fault {
    /// The fault an error leaves behind when it latches the engine.
    pub fn of(e: &Error) -> Fault {
        match e {
            Error::Io {
                action,
                path,
                source,
            } => Fault::Io {
                action,
                path: path.clone(),
                kind: source.kind(),
                message: source.to_string(),
            },
            Error::ReadOnly { cause } => cause.clone(),
            other => Fault::Other {
                message: other.to_string(),
            },
        }
    }

    /// A panic's payload as text.
    pub(crate) fn panic(place: &'static str, payload: &(dyn std::any::Any + Send)) -> Fault {
        let message = payload
            .downcast_ref::<&str>()
            .map(|s| (*s).to_string())
            .or_else(|| payload.downcast_ref::<String>().cloned())
            .unwrap_or_else(|| "(no message)".into());
        Fault::Panic { place, message }
    }

    /// True when the fault is a full disk.
    pub fn is_disk_full(&self) -> bool {
        matches!(self, Fault::Io { kind, .. } if *kind == io::ErrorKind::StorageFull)
    }
}

/// Result of engine calls.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }

    /// True when the error (or the fault behind a latch) is a full disk.
    pub fn is_disk_full(&self) -> bool {
        match self {
            Error::Io { source, .. } => source.kind() == io::ErrorKind::StorageFull,
            Error::ReadOnly { cause } => cause.is_disk_full(),
            _ => false,
        }
    }

    /// True for errors caused by the caller's input rather than the store.
    pub fn is_invalid_input(&self) -> bool {
        matches!(
            self,
            Error::EmptyKey
                | Error::KeyTooLarge { .. }
                | Error::ValueTooLarge { .. }
                | Error::BatchTooLarge { .. }
        )
    }
}
