//! `kvstore compact`: one compaction of a data directory, offline.

use std::process::ExitCode;

use super::progress::Progress;
use super::{CliError, DirArgs, open_existing};

/// Compacts and prints what was reclaimed.
pub fn run(args: &DirArgs) -> Result<ExitCode, CliError> {
    let dir = &args.data_dir;
    let (engine, _report) = open_existing(dir)?;
    let progress = Progress::spinner().message(format!("compacting {}", dir.display()));
    let r = engine.compact().map_err(super::engine_err(dir))?;
    drop(progress);
    engine.close().map_err(super::engine_err(dir))?;
    println!(
        "compacted {}: reclaimed {} bytes, segments {} -> {}, {} live bytes rewritten, {} ms",
        dir.display(),
        r.reclaimed_bytes,
        r.segments_before,
        r.segments_after,
        r.live_bytes_rewritten,
        r.duration_ms
    );
    Ok(ExitCode::SUCCESS)
}
