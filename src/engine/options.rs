//! Engine configuration: [`Options`] and [`SyncMode`].

use std::sync::Arc;
use std::time::Duration;

use super::clock::{Clock, SystemClock};
use super::error::Error;
use super::fs::{Fs, StdFs};
use super::migrate::LegacyDecoder;

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

/// How an [`Engine`](super::Engine) is opened. Start from `Options::default()`.
#[derive(Debug, Clone)]
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
    /// The file-system seam (default: the real file system).
    pub fs: Arc<dyn Fs>,
    /// The clock that decides expiry (default: the system clock).
    pub clock: Arc<dyn Clock>,
    /// Reads a `wal.log` in the legacy format for migration (default: the
    /// JSON-lines format of the reference implementations).
    pub legacy_decoder: Option<Arc<dyn LegacyDecoder>>,
    /// Receives fsync timings (default: none).
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
            legacy_decoder: Some(Arc::new(crate::legacy::JsonLines)),
            observer: None,
        }
    }
}

impl Options {
    /// Checks every setting, naming the first that is out of range.
    pub fn validate(&self) -> Result<(), Error> {
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
                Options {
                    segment_bytes: MIN_SEGMENT_BYTES - 1,
                    ..Options::default()
                },
            ),
            (
                "max_key_bytes",
                Options {
                    max_key_bytes: 0,
                    ..Options::default()
                },
            ),
            (
                "sync",
                Options {
                    sync: SyncMode::Periodic(Duration::ZERO),
                    ..Options::default()
                },
            ),
            (
                "compaction_ratio",
                Options {
                    compaction_ratio: 0.0,
                    ..Options::default()
                },
            ),
            (
                "compaction_threads",
                Options {
                    compaction_threads: 0,
                    ..Options::default()
                },
            ),
            (
                "compaction_step_segments",
                Options {
                    compaction_step_segments: 0,
                    ..Options::default()
                },
            ),
            (
                "expiry_sweep_interval",
                Options {
                    expiry_sweep_interval: Duration::ZERO,
                    ..Options::default()
                },
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
