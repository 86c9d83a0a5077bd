//! Helpers shared by the engine tests.

use kvstore::engine::{Engine, Options, RecoveryReport, SyncMode};
use std::path::Path;

/// Options with tiny segments so rotation happens constantly.
pub fn tiny() -> Options {
    Options {
        segment_bytes: 4096,
        sync: SyncMode::Never,
        background_compaction: false,
        ..Options::default()
    }
}

pub fn open(dir: &Path, opts: Options) -> (Engine, RecoveryReport) {
    Engine::open(dir, opts).unwrap()
}
