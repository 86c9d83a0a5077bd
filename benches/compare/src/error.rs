//! The comparison's one error type: an engine's failure, an I/O failure with the
//! path it hit, a wrong result read back, or a bad flag.

use std::path::PathBuf;

/// What can stop a comparison run.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// kvstore's engine failed.
    #[error("kvstore: {0}")]
    Kvstore(#[from] kvstore::engine::Error),
    /// fjall failed.
    #[error("fjall: {0}")]
    Fjall(#[from] fjall::Error),
    /// redb failed.
    #[error("redb: {0}")]
    Redb(#[from] redb::Error),
    /// A file operation of the naive log, the bare loop or the harness failed.
    #[error("{action} {}: {source}", path.display())]
    Io {
        /// What was being done, e.g. "appending to".
        action: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// An engine returned something other than what was written: the run is void.
    #[error("{engine} returned a wrong result in {phase}: {what}")]
    Wrong {
        /// The engine.
        engine: &'static str,
        /// The phase that read it.
        phase: &'static str,
        /// What differed.
        what: String,
    },
    /// A naive-log file that does not parse as the records it writes.
    #[error("naive log {}: {what} at offset {offset}", path.display())]
    Corrupt {
        /// The log file.
        path: PathBuf,
        /// Where parsing stopped.
        offset: u64,
        /// What was wrong there.
        what: &'static str,
    },
    /// A command-line flag that is unknown or out of range.
    #[error("{0} (run with --help for the flags)")]
    Usage(String),
    /// The chart could not be drawn or written.
    #[error("drawing the chart {}: {what}", path.display())]
    Chart {
        /// The SVG file.
        path: PathBuf,
        /// The plotting error.
        what: String,
    },
}

/// The comparison's result type.
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// An I/O error while `action` on `path`.
    pub fn io(action: &'static str, path: impl Into<PathBuf>, source: std::io::Error) -> Error {
        Error::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Converts any of redb's per-operation errors into [`Error::Redb`].
pub fn redb_err(e: impl Into<redb::Error>) -> Error {
    Error::Redb(e.into())
}
