//! Engine configuration: [`Options`], its [`EngineBuilder`], and [`SyncMode`].
//!
//! Tuning (sizes, sync mode, compaction) is set apart from the *seams* (file
//! system, clock, observer, legacy decoder): the seams exist so tests can fail
//! I/O and move time, and a server can observe fsyncs; an embedder rarely sets
//! one.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use super::Engine;
use super::clock::{Clock, SystemClock};
use super::error::{Error, Result};
use super::fs::{Fs, StdFs};
use super::migrate::LegacyDecoder;
use super::recovery::RecoveryReport;

/// When appended records are made durable with fsync.
///
/// In every mode an acknowledged write has reached the OS before it is
/// acknowledged, so it survives the process being killed; only `Always` also
/// survives power loss or a kernel crash.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncMode {
    /// fsync before acknowledging; concurrent writers share one fsync (group commit).
    Always,
    /// fsync at most this long after a write; a power loss can drop that window.
    Periodic(Duration),
    /// Never fsync while running (the OS writes back); close and rotation still sync.
    Never,
}

/// Receives engine events that a server turns into metrics.
pub trait Observer: Send + Sync + std::fmt::Debug {
    /// One fsync of the active segment took `elapsed`, covering `writes` acknowledged writes.
    fn fsync(&self, elapsed: Duration, writes: usize) {
        let _ = (elapsed, writes);
    }
}

/// How an [`Engine`] is opened. Start from [`Engine::builder`], or from
/// `Options::default()` and its `with_*` setters; fields can be read, and new
/// ones may be added in any release (so no struct literal outside the crate).
///
/// ```
/// # fn main() -> Result<(), kvstore::engine::Error> {
/// use kvstore::engine::{Engine, Options, SyncMode};
/// let dir = tempfile::tempdir().expect("temp dir");
/// let (db, _report) = Engine::builder(dir.path())
///     .sync(SyncMode::Never)
///     .segment_bytes(1 << 20)
///     .open()?;
/// assert_eq!(db.options().segment_bytes, 1 << 20);
/// drop(db);
/// let opts = Options::default().with_sync(SyncMode::Never);
/// let (db, report) = Engine::open(dir.path(), opts)?;
/// assert_eq!(report.live_keys, 0);
/// # drop(db); Ok(()) }
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct Options {
    /// `wal.log` is sealed into a new segment once it reaches this size
    /// (default 64 MiB; at least 4 KiB, at most 1 GiB).
    pub segment_bytes: u64,
    /// Durability of acknowledged writes (default [`SyncMode::Always`]).
    pub sync: SyncMode,
    /// Longest key accepted, in bytes (default 1024).
    pub max_key_bytes: usize,
    /// Longest value accepted, in bytes (default 16 MiB).
    pub max_value_bytes: usize,
    /// How often expired keys are dropped from the keydir (default 1 s). They read
    /// as absent from the moment they expire regardless.
    pub expiry_sweep_interval: Duration,
    /// Background compaction starts when dead bytes exceed this share of disk
    /// bytes (default 0.5) ...
    pub compaction_ratio: f64,
    /// ... and also exceed this many bytes (default 64 MiB).
    pub compaction_min_bytes: u64,
    /// Whether the engine compacts in the background on its own (default true).
    pub background_compaction: bool,
    /// Threads a compaction copies with, one output segment each at a time
    /// (default 2; 1 to 64). More finish sooner and take more CPU from writers;
    /// a step has about `compaction_step_segments` outputs to share out.
    pub compaction_threads: usize,
    /// Live data one compaction step copies at most, in segments (default 1;
    /// 1 to 1024; a single input holding more is still one step). A step's
    /// outputs need that much free disk before its inputs are deleted, and its
    /// bookkeeping about 100 bytes per live key it copies. Copy threads work on
    /// one step's outputs, so more than this many threads gain nothing.
    pub compaction_step_segments: u32,
    /// Seam: the file system (default: the real one).
    pub fs: Arc<dyn Fs>,
    /// Seam: the clock that decides expiry (default: the system clock).
    pub clock: Arc<dyn Clock>,
    /// Seam: reads a `wal.log` in a legacy format for migration (default,
    /// with the `json-lines` feature: the JSON-lines format of the reference
    /// implementations; without it, none).
    pub legacy_decoder: Option<Arc<dyn LegacyDecoder>>,
    /// Seam: receives fsync timings (default: none).
    pub observer: Option<Arc<dyn Observer>>,
}

/// Smallest accepted segment size.
pub const MIN_SEGMENT_BYTES: u64 = 4096;
/// Largest accepted segment size: record offsets are stored as u32.
pub const MAX_SEGMENT_BYTES: u64 = 1 << 30;

impl Default for Options {
    fn default() -> Self {
        Options {
            segment_bytes: 64 << 20,
            sync: SyncMode::Always,
            max_key_bytes: 1024,
            max_value_bytes: 16 << 20,
            expiry_sweep_interval: Duration::from_secs(1),
            compaction_ratio: 0.5,
            compaction_min_bytes: 64 << 20,
            background_compaction: true,
            compaction_threads: 2,
            compaction_step_segments: 1,
            fs: Arc::new(StdFs),
            clock: Arc::new(SystemClock),
            legacy_decoder: default_legacy_decoder(),
            observer: None,
        }
    }
}

/// The JSON-lines decoder when the library is built with it: the engine
/// itself knows no JSON.
fn default_legacy_decoder() -> Option<Arc<dyn LegacyDecoder>> {
    #[cfg(feature = "json-lines")]
    {
        Some(Arc::new(crate::legacy::JsonLines))
    }
    #[cfg(not(feature = "json-lines"))]
    {
        None
    }
}

/// Generates, for each setting, `Options::with_<name>` and
/// `EngineBuilder::<name>`: one list, so the two can never disagree.
macro_rules! setters {
    ($( $(#[$doc:meta])* $name:ident, $with:ident: $ty:ty => |$v:ident| $value:expr; )*) => {
        impl Options {
            $(
                $(#[$doc])*
                #[must_use]
                pub fn $with(mut self, $v: $ty) -> Options {
                    self.$name = $value;
                    self
                }
            )*
        }

        impl EngineBuilder {
            $(
                $(#[$doc])*
                pub fn $name(mut self, $v: $ty) -> EngineBuilder {
                    self.options.$name = $value;
                    self
                }
            )*
        }
    };
}

setters! {
    /// Size at which `wal.log` is sealed (see [`Options::segment_bytes`]).
    segment_bytes, with_segment_bytes: u64 => |v| v;
    /// Durability of acknowledged writes (see [`Options::sync`]).
    sync, with_sync: SyncMode => |v| v;
    /// Longest key accepted (see [`Options::max_key_bytes`]).
    max_key_bytes, with_max_key_bytes: usize => |v| v;
    /// Longest value accepted (see [`Options::max_value_bytes`]).
    max_value_bytes, with_max_value_bytes: usize => |v| v;
    /// How often expired keys are swept (see [`Options::expiry_sweep_interval`]).
    expiry_sweep_interval, with_expiry_sweep_interval: Duration => |v| v;
    /// Dead share of disk bytes that starts a compaction (see [`Options::compaction_ratio`]).
    compaction_ratio, with_compaction_ratio: f64 => |v| v;
    /// Dead bytes below which no compaction starts (see [`Options::compaction_min_bytes`]).
    compaction_min_bytes, with_compaction_min_bytes: u64 => |v| v;
    /// Whether to compact in the background (see [`Options::background_compaction`]).
    background_compaction, with_background_compaction: bool => |v| v;
    /// Copy threads of a compaction (see [`Options::compaction_threads`]).
    compaction_threads, with_compaction_threads: usize => |v| v;
    /// Live data of one compaction step (see [`Options::compaction_step_segments`]).
    compaction_step_segments, with_compaction_step_segments: u32 => |v| v;

    /// Seam: the file system, e.g. a fault-injecting one in tests (see [`Options::fs`]).
    fs, with_fs: Arc<dyn Fs> => |v| v;
    /// Seam: the clock that decides expiry (see [`Options::clock`]).
    clock, with_clock: Arc<dyn Clock> => |v| v;
    /// Seam: the legacy-log decoder, `None` to refuse migration (see [`Options::legacy_decoder`]).
    legacy_decoder, with_legacy_decoder: Option<Arc<dyn LegacyDecoder>> => |v| v;
    /// Seam: the fsync observer (see [`Options::observer`]).
    observer, with_observer: Arc<dyn Observer> => |v| Some(v);
}

/// Opens an [`Engine`] with settings given one by one:
/// `Engine::builder(dir).sync(SyncMode::Always).segment_bytes(..).open()`.
///
/// Every setting has a method named after its [`Options`] field; the seam
/// methods (`fs`, `clock`, `legacy_decoder`, `observer`) are for tests and
/// servers.
#[derive(Debug, Clone)]
#[must_use = "a builder does nothing until `open`"]
pub struct EngineBuilder {
    dir: PathBuf,
    options: Options,
}

impl EngineBuilder {
    pub(crate) fn new(dir: &Path) -> EngineBuilder {
        EngineBuilder {
            dir: dir.to_path_buf(),
            options: Options::default(),
        }
    }

    /// Starts from `options` instead of the defaults.
    pub fn options(mut self, options: Options) -> EngineBuilder {
        self.options = options;
        self
    }

    /// Opens the directory read-write, as [`Engine::open`].
    pub fn open(self) -> Result<(Engine, RecoveryReport)> {
        Engine::open(&self.dir, self.options)
    }

    /// Opens the directory without changing it, as [`Engine::open_read_only`].
    pub fn open_read_only(self) -> Result<(Engine, RecoveryReport)> {
        Engine::open_read_only(&self.dir, self.options)
    }
}

impl Options {
    /// Checks every setting, naming the first that is out of range.
    pub fn validate(&self) -> Result<()> {
        let bad =
            |name: &'static str, reason: &'static str| Err(Error::InvalidOption { name, reason });
        if !(MIN_SEGMENT_BYTES..=MAX_SEGMENT_BYTES).contains(&self.segment_bytes) {
            return bad("segment_bytes", "must be between 4 KiB and 1 GiB");
        }
        if self.max_key_bytes == 0 || self.max_key_bytes > (1 << 20) {
            return bad("max_key_bytes", "must be between 1 and 1 MiB");
        }
        if self.max_value_bytes > (512 << 20) {
            return bad("max_value_bytes", "must be at most 512 MiB");
        }
        if let SyncMode::Periodic(d) = self.sync
            && d.is_zero()
        {
            return bad("sync", "periodic interval must be positive");
        }
        if !(self.compaction_ratio > 0.0 && self.compaction_ratio <= 1.0) {
            return bad("compaction_ratio", "must be in (0, 1]");
        }
        if !(1..=64).contains(&self.compaction_threads) {
            return bad("compaction_threads", "must be between 1 and 64");
        }
        if !(1..=1024).contains(&self.compaction_step_segments) {
            return bad("compaction_step_segments", "must be between 1 and 1024");
        }
        if self.expiry_sweep_interval.is_zero() {
            return bad("expiry_sweep_interval", "must be positive");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_out_of_range_setting_is_named() {
        assert!(Options::default().validate().is_ok());
        let cases: Vec<(&str, Options)> = vec![
            (
                "segment_bytes",
                Options::default().with_segment_bytes(MIN_SEGMENT_BYTES - 1),
            ),
            ("max_key_bytes", Options::default().with_max_key_bytes(0)),
            (
                "sync",
                Options::default().with_sync(SyncMode::Periodic(Duration::ZERO)),
            ),
            (
                "compaction_ratio",
                Options::default().with_compaction_ratio(0.0),
            ),
            (
                "compaction_threads",
                Options::default().with_compaction_threads(0),
            ),
            (
                "compaction_step_segments",
                Options::default().with_compaction_step_segments(0),
            ),
            (
                "expiry_sweep_interval",
                Options::default().with_expiry_sweep_interval(Duration::ZERO),
            ),
        ];
        for (want, opts) in cases {
            match opts.validate() {
                Err(Error::InvalidOption { name, .. }) => assert_eq!(name, want),
                other => panic!("{want}: expected InvalidOption, got {other:?}"),
            }
        }
    }
}
