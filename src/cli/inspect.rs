//! `kvstore inspect`: what recovery found, the store's figures, and the files
//! of the data directory, which it opens read-only and so leaves as they are.

use std::process::ExitCode;

use super::{CliError, DirArgs, open_read_only, summary};

/// Prints the report, the stats and the files.
pub fn run(args: &DirArgs) -> Result<ExitCode, CliError> {
    let dir = &args.data_dir;
    let (engine, report) = open_read_only(dir)?;
    let s = engine.stats();
    println!("data directory: {}", dir.display());
    println!("recovery: {}", summary(&report));
    println!(
        "stats: keys {}, live value bytes {}, disk bytes {}, dead bytes {}, segments {}",
        s.live_keys, s.live_value_bytes, s.disk_bytes, s.dead_bytes, s.segments
    );
    let entries = std::fs::read_dir(dir).map_err(|source| CliError::Io {
        action: "listing",
        path: dir.clone(),
        source,
    })?;
    let mut files: Vec<(String, u64)> = entries
        .filter_map(Result::ok)
        .filter_map(|e| {
            let len = e.metadata().ok()?.len();
            Some((e.file_name().to_string_lossy().into_owned(), len))
        })
        .collect();
    files.sort();
    println!("files:");
    for (name, len) in files {
        println!("  {name:<32} {len:>14} bytes");
    }
    engine.close().map_err(super::engine_err(dir))?;
    Ok(ExitCode::SUCCESS)
}
