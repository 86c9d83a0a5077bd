//! `kvstore verify`: opens the directory read-only (recovery checks every
//! record it scans) and reads every live key (reads from sealed segments check
//! the record's CRC). Any corrupt record makes the exit code non-zero.
//!
//! Nothing in the directory changes: a torn `wal.log` tail, which a serving
//! start would truncate, is reported (not counted as corruption) and left.

use std::process::ExitCode;

use super::progress::Progress;
use super::{CliError, DirArgs, open_read_only, summary};
use crate::engine::Error;

const PAGE: usize = 1024;

/// Verifies and reports.
pub fn run(args: &DirArgs) -> Result<ExitCode, CliError> {
    let dir = &args.data_dir;
    let (engine, report) = open_read_only(dir)?;
    println!("recovery: {}", summary(&report));
    if report.bytes_truncated > 0 {
        println!(
            "torn tail: the last {} bytes of wal.log hold no whole record; left as they are \
             (a read-write open truncates them)",
            report.bytes_truncated
        );
    }
    let mut keys = 0u64;
    let mut bad_reads = 0u64;
    let mut after: Option<Vec<u8>> = None;
    let progress = Progress::bar(engine.stats().live_keys, "keys").message("verifying");
    loop {
        let page = engine.scan_prefix(b"", after.as_deref(), PAGE);
        for key in &page {
            keys += 1;
            progress.inc(1);
            match engine.get(key) {
                Ok(_) => {}
                Err(e @ Error::Corrupt { .. }) => {
                    bad_reads += 1;
                    progress.suspend(|| {
                        println!("corrupt: key {:?}: {e}", String::from_utf8_lossy(key));
                    });
                }
                Err(e) => return Err(super::engine_err(dir)(e)),
            }
        }
        match page.last() {
            Some(last) if page.len() == PAGE => after = Some(last.clone()),
            _ => break,
        }
    }
    drop(progress);
    engine.close().map_err(super::engine_err(dir))?;
    let corrupt = report.corrupt_records + bad_reads;
    println!(
        "read {keys} keys: {bad_reads} corrupt on read, {} corrupt found by recovery, \
         {} batches discarded",
        report.corrupt_records, report.batches_discarded
    );
    if corrupt > 0 {
        return Err(CliError::Corrupt(corrupt));
    }
    println!("ok");
    Ok(ExitCode::SUCCESS)
}
